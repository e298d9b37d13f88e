//! `migrate.schemas`: the schemas the migrations own. Outside them, objects belong to the
//! platform (Supabase's `auth`, pg_cron's `cron`, an `extensions` schema): they are not foreign
//! (init and `migrate up` do not refuse the database for them), not compared by verify, diff or
//! baseline, and the scratch databases those build get a copy of them first, so migrations may
//! reference them. Empty (the default): every non-system schema is the migrations'.
//!
//! Set once per process by the application layer when it resolves the settings (the engine's
//! option structs do not carry it: it reaches every catalog read, the foreign-object check of
//! `init`, `up` and `status`, and the scratch databases alike).

use std::sync::OnceLock;

static OWNED: OnceLock<Vec<String>> = OnceLock::new();

/// Set the owned schemas (the first call wins; later ones are ignored).
pub fn set_owned(schemas: Vec<String>) {
    let _ = OWNED.set(schemas);
}

/// The owned schemas; empty means every non-system schema.
#[must_use]
pub fn owned() -> &'static [String] {
    OWNED.get().map_or(&[], Vec::as_slice)
}

/// A SQL condition on the schema name `column`: in the owned schemas (true when all are owned).
#[must_use]
pub fn condition(column: &str) -> String {
    let owned = owned();
    if owned.is_empty() {
        "true".to_string()
    } else {
        format!("{column} = ANY (ARRAY[{}]::text[])", literals(owned))
    }
}

/// A SQL condition on `column`: a platform schema (not owned, not system, not our
/// bookkeeping's); false when every schema is owned.
#[must_use]
pub fn platform_condition(column: &str) -> String {
    let owned = owned();
    if owned.is_empty() {
        "false".to_string()
    } else {
        format!(
            "NOT ({column} = ANY (ARRAY[{}]::text[])) AND {column} NOT IN ('information_schema', 'aidock_provision') AND {column} NOT LIKE 'pg\\_%'",
            literals(owned)
        )
    }
}

fn literals(names: &[String]) -> String {
    names
        .iter()
        .map(|n| crate::db::quote_literal(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A name in `migrate.schemas` that the database does not have, but that is one or two letters
/// away from one it has (`pubilc` for `public`), is a typo: said (exit 2) before anything treats
/// the real schema as the platform's. `existing` are the database's schema names.
///
/// # Errors
/// The first such name, with the one it probably means.
pub fn check_names(existing: &[String]) -> anyhow::Result<()> {
    for name in owned() {
        if existing.contains(name) {
            continue;
        }
        if let Some(near) = existing
            .iter()
            .filter(|e| !e.starts_with("pg_") && *e != "information_schema")
            .find(|e| strsim::damerau_levenshtein(e, name) <= 2)
        {
            return Err(crate::error::usage(format!(
                "migrate.schemas names `{name}`, which this database does not have; did you mean `{near}`? (the schemas not named there are taken for the platform's and left alone)"
            )));
        }
    }
    Ok(())
}
