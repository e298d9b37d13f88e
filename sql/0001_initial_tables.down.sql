-- Reverse of 0001 initial_tables: drop in reverse creation order, then the trigger function.
DROP TABLE usage_logs;
DROP TABLE refresh_tokens;
DROP TABLE department_quotas;
DROP TABLE users;
DROP TABLE llm_configurations;
DROP TABLE departments;
DROP TABLE roles;
DROP FUNCTION set_updated_at();
