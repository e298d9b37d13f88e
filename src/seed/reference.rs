//! Reference data (roles, departments, LLM configurations, quotas) upserted by natural key in one
//! statement per table, with bound parameters: missing rows inserted, existing rows kept (an admin
//! may have edited them) unless `--overwrite`.

use anyhow::Context as _;
use serde::Serialize;
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use super::files::Seeds;
use crate::db::sql::Sql as _;

/// What happened to one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub inserted: u64,
    pub updated: u64,
    pub kept: u64,
    /// Fake users an earlier run's flags made that these do not (only `fake_users` has them).
    #[serde(skip_serializing_if = "is_zero")]
    pub removed: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Per-table counts.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: &'static str,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Run an upsert whose rows return `inserted` (xmax = 0 for a new row); `total` rows were offered.
async fn upsert(
    tx: &Transaction<'_>,
    table: &'static str,
    sql: &str,
    params: &[crate::db::sql::Param<'_>],
    total: usize,
) -> anyhow::Result<TableReport> {
    let rows = tx
        .rows(sql, params)
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .with_context(|| format!("seeding {table}"))?;
    let inserted = rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
    let updated = rows.len() as u64 - inserted;
    Ok(TableReport {
        table,
        counts: Counts {
            inserted,
            updated,
            kept: total as u64 - inserted - updated,
            removed: 0,
        },
    })
}

/// The `ON CONFLICT` clause: keep existing rows, or (overwrite) update those that differ.
fn on_conflict(target: &str, table: &str, columns: &[&str], overwrite: bool) -> String {
    if !overwrite {
        return format!("ON CONFLICT ({target}) DO NOTHING RETURNING true");
    }
    let set: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let ours: Vec<String> = columns.iter().map(|c| format!("{table}.{c}")).collect();
    let theirs: Vec<String> = columns.iter().map(|c| format!("EXCLUDED.{c}")).collect();
    format!(
        "ON CONFLICT ({target}) DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({}) RETURNING (xmax = 0)",
        set.join(", "),
        ours.join(", "),
        theirs.join(", ")
    )
}

/// Upsert all reference data in the caller's transaction.
///
/// # Errors
/// A failing statement, naming the table.
pub async fn seed(
    tx: &Transaction<'_>,
    seeds: &Seeds,
    overwrite: bool,
    production: bool,
) -> anyhow::Result<Vec<TableReport>> {
    let mut report = Vec::new();

    let names: Vec<&str> = seeds.roles.iter().map(|r| r.name.as_str()).collect();
    let descriptions: Vec<Option<&str>> = seeds
        .roles
        .iter()
        .map(|r| r.description.as_deref())
        .collect();
    let permissions: Vec<serde_json::Value> = seeds
        .roles
        .iter()
        .map(|r| serde_json::json!(r.permissions))
        .collect();
    let sql = format!(
        "INSERT INTO roles (name, description, permissions) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) {}",
        on_conflict("name", "roles", &["description", "permissions"], overwrite)
    );
    report.push(
        upsert(
            tx,
            "roles",
            &sql,
            &[
                (&names, Type::TEXT_ARRAY),
                (&descriptions, Type::TEXT_ARRAY),
                (&permissions, Type::JSONB_ARRAY),
            ],
            names.len(),
        )
        .await?,
    );

    let names: Vec<&str> = seeds.departments.iter().map(|d| d.name.as_str()).collect();
    let descriptions: Vec<Option<&str>> = seeds
        .departments
        .iter()
        .map(|d| d.description.as_deref())
        .collect();
    let sql = format!(
        "INSERT INTO departments (name, description) SELECT * FROM unnest($1::text[], $2::text[]) {}",
        on_conflict("name", "departments", &["description"], overwrite)
    );
    report.push(
        upsert(
            tx,
            "departments",
            &sql,
            &[
                (&names, Type::TEXT_ARRAY),
                (&descriptions, Type::TEXT_ARRAY),
            ],
            names.len(),
        )
        .await?,
    );

    let providers: Vec<&str> = seeds.llms.iter().map(|l| l.provider.as_str()).collect();
    let models: Vec<&str> = seeds.llms.iter().map(|l| l.model_name.as_str()).collect();
    let keys: Vec<Option<String>> = seeds
        .llms
        .iter()
        .map(|l| l.api_key_env.as_ref().map(|v| format!("${v}")))
        .collect();
    let urls: Vec<Option<&str>> = seeds.llms.iter().map(|l| l.base_url.as_deref()).collect();
    let enabled: Vec<bool> = seeds
        .llms
        .iter()
        .map(|l| l.enabled && !(l.dev_only && production))
        .collect();
    let configs: Vec<serde_json::Value> = seeds
        .llms
        .iter()
        .map(|l| serde_json::to_value(&l.config).expect("TOML tables are JSON objects"))
        .collect();
    let sql = format!(
        "INSERT INTO llm_configurations (provider, model_name, api_key_encrypted, base_url, enabled, config_json) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::jsonb[]) {}",
        on_conflict(
            "provider, model_name",
            "llm_configurations",
            &["api_key_encrypted", "base_url", "enabled", "config_json"],
            overwrite
        )
    );
    report.push(
        upsert(
            tx,
            "llm_configurations",
            &sql,
            &[
                (&providers, Type::TEXT_ARRAY),
                (&models, Type::TEXT_ARRAY),
                (&keys, Type::TEXT_ARRAY),
                (&urls, Type::TEXT_ARRAY),
                (&enabled, Type::BOOL_ARRAY),
                (&configs, Type::JSONB_ARRAY),
            ],
            providers.len(),
        )
        .await?,
    );

    // One quota per department x enabled configuration, as the database now has them.
    let departments: Vec<&str> = seeds.quota_limits.keys().map(String::as_str).collect();
    let limits: Vec<i64> = seeds.quota_limits.values().copied().collect();
    let total: i64 = tx
        .one(
            "SELECT count(*) FROM unnest($1::text[]) q(dept) JOIN departments d ON d.name = q.dept \
             CROSS JOIN llm_configurations l WHERE l.enabled",
            &[(&departments, Type::TEXT_ARRAY)],
        )
        .await
        .context("counting quotas")?
        .get(0);
    let sql = format!(
        "INSERT INTO department_quotas (department_id, llm_config_id, monthly_limit_tokens) \
         SELECT d.id, l.id, q.lim FROM unnest($1::text[], $2::bigint[]) q(dept, lim) \
         JOIN departments d ON d.name = q.dept CROSS JOIN llm_configurations l WHERE l.enabled \
         {}",
        on_conflict(
            "department_id, llm_config_id",
            "department_quotas",
            &["monthly_limit_tokens"],
            overwrite
        )
    );
    report.push(
        upsert(
            tx,
            "department_quotas",
            &sql,
            &[
                (&departments, Type::TEXT_ARRAY),
                (&limits, Type::INT8_ARRAY),
            ],
            usize::try_from(total).unwrap_or(0),
        )
        .await?,
    );
    Ok(report)
}
