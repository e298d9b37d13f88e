-- 0001 initial_tables: the seven AI Dock tables (see docs/SCHEMA.md in the design notes).
-- Names follow the backend's SQLAlchemy models; defaults and constraints live in the database.

CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TABLE roles (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(50) NOT NULL,
    description text,
    permissions jsonb NOT NULL DEFAULT '[]'::jsonb
                CONSTRAINT ck_roles_permissions_array CHECK (jsonb_typeof(permissions) = 'array'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ix_roles_name ON roles (name);
CREATE TRIGGER trg_roles_updated_at BEFORE UPDATE ON roles
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE departments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(100) NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ix_departments_name ON departments (name);
CREATE TRIGGER trg_departments_updated_at BEFORE UPDATE ON departments
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE llm_configurations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    model_name        varchar(100) NOT NULL,
    provider          varchar(50) NOT NULL
                      CONSTRAINT ck_llm_configurations_provider_lower CHECK (provider = lower(provider)),
    api_key_encrypted text,
    base_url          text,
    enabled           boolean NOT NULL DEFAULT true,
    config_json       jsonb NOT NULL DEFAULT '{}'::jsonb
                      CONSTRAINT ck_llm_configurations_config_json_object CHECK (jsonb_typeof(config_json) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_llm_configurations_provider_model UNIQUE (provider, model_name)
);
CREATE TRIGGER trg_llm_configurations_updated_at BEFORE UPDATE ON llm_configurations
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username        varchar(50) NOT NULL,
    email           varchar(255) NOT NULL,
    hashed_password varchar(255) NOT NULL
                    CONSTRAINT ck_users_hashed_password_not_empty CHECK (hashed_password <> ''),
    is_active       boolean NOT NULL DEFAULT true,
    is_superuser    boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    role_id         uuid CONSTRAINT users_role_id_fkey
                    REFERENCES roles (id) ON DELETE RESTRICT,
    department_id   uuid CONSTRAINT users_department_id_fkey
                    REFERENCES departments (id) ON DELETE RESTRICT
);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_role_id ON users (role_id);
CREATE INDEX ix_users_department_id ON users (department_id);
CREATE INDEX ix_users_is_active ON users (is_active);
CREATE TRIGGER trg_users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE department_quotas (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    department_id        uuid NOT NULL CONSTRAINT department_quotas_department_id_fkey
                         REFERENCES departments (id) ON DELETE CASCADE,
    llm_config_id        uuid NOT NULL CONSTRAINT department_quotas_llm_config_id_fkey
                         REFERENCES llm_configurations (id) ON DELETE CASCADE,
    -- 0 means unlimited.
    monthly_limit_tokens bigint NOT NULL DEFAULT 0
                         CONSTRAINT ck_department_quotas_monthly_limit_tokens CHECK (monthly_limit_tokens >= 0),
    current_usage_tokens bigint NOT NULL DEFAULT 0
                         CONSTRAINT ck_department_quotas_current_usage_tokens CHECK (current_usage_tokens >= 0),
    last_reset           timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_department_llm_quota UNIQUE (department_id, llm_config_id)
);
-- The unique constraint's index already leads with department_id.
CREATE INDEX ix_department_quotas_llm_config_id ON department_quotas (llm_config_id);
CREATE TRIGGER trg_department_quotas_updated_at BEFORE UPDATE ON department_quotas
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash  varchar(255) NOT NULL,
    user_id     uuid NOT NULL CONSTRAINT refresh_tokens_user_id_fkey
                REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    is_revoked  boolean NOT NULL DEFAULT false,
    revoked_at  timestamptz,
    remember_me boolean NOT NULL DEFAULT false,
    user_agent  text,
    ip_address  inet,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ix_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX ix_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE INDEX ix_refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE INDEX ix_refresh_tokens_is_revoked ON refresh_tokens (is_revoked);

-- An audit trail: referenced rows are deactivated, never deleted (ON DELETE RESTRICT).
CREATE TABLE usage_logs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL CONSTRAINT usage_logs_user_id_fkey
                      REFERENCES users (id) ON DELETE RESTRICT,
    department_id     uuid NOT NULL CONSTRAINT usage_logs_department_id_fkey
                      REFERENCES departments (id) ON DELETE RESTRICT,
    llm_config_id     uuid NOT NULL CONSTRAINT usage_logs_llm_config_id_fkey
                      REFERENCES llm_configurations (id) ON DELETE RESTRICT,
    "timestamp"       timestamptz NOT NULL DEFAULT now(),
    tokens_prompt     integer NOT NULL DEFAULT 0
                      CONSTRAINT ck_usage_logs_tokens_prompt CHECK (tokens_prompt >= 0),
    tokens_completion integer NOT NULL DEFAULT 0
                      CONSTRAINT ck_usage_logs_tokens_completion CHECK (tokens_completion >= 0),
    tokens_total      integer GENERATED ALWAYS AS (tokens_prompt + tokens_completion) STORED,
    cost_estimated    numeric(14,6) NOT NULL DEFAULT 0
                      CONSTRAINT ck_usage_logs_cost_estimated CHECK (cost_estimated >= 0),
    request_details   jsonb NOT NULL DEFAULT '{}'::jsonb
                      CONSTRAINT ck_usage_logs_request_details_object CHECK (jsonb_typeof(request_details) = 'object'),
    response_details  jsonb NOT NULL DEFAULT '{}'::jsonb
                      CONSTRAINT ck_usage_logs_response_details_object CHECK (jsonb_typeof(response_details) = 'object')
);
CREATE INDEX ix_usage_logs_user_id ON usage_logs (user_id);
CREATE INDEX ix_usage_logs_department_id ON usage_logs (department_id);
CREATE INDEX ix_usage_logs_llm_config_id ON usage_logs (llm_config_id);
CREATE INDEX ix_usage_logs_timestamp ON usage_logs ("timestamp");
