//! `migrate verify`: build the expected schema by running the applied migrations' up scripts in a
//! scratch schema inside a transaction that is always rolled back, read both catalogs from
//! `pg_catalog`, and report every difference. Needs no second database and no CREATEDB.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use super::ledger;
use super::source::Migration;
use crate::db;

/// Tables the migration engine itself owns; no migration creates them.
const ENGINE_TABLES: [&str; 2] = ["aidock_schema_history", "alembic_version"];

/// One difference between the live schema and what the migrations make.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    /// table, column, constraint, index, trigger, function, owner.
    pub kind: &'static str,
    pub object: String,
    pub problem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.object, self.problem)?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " (expected {e}; found {x})"),
            (Some(e), None) => write!(f, " (expected {e})"),
            (None, Some(x)) => write!(f, " (found {x})"),
            (None, None) => Ok(()),
        }
    }
}

/// A schema's objects, each a key and a normalised description.
#[derive(Debug, Default, PartialEq, Eq)]
struct Catalog {
    /// (kind, object) -> definition
    objects: BTreeMap<(&'static str, String), String>,
    /// index name -> valid
    invalid_indexes: Vec<String>,
    /// relation -> owner
    owners: BTreeMap<String, String>,
}

/// Compare the live schema `public` with what the applied migrations produce.
///
/// # Errors
/// Connection failures, or an applied script that fails in the scratch schema.
pub async fn verify(client: &mut Client, migrations: &[Migration]) -> anyhow::Result<Vec<Drift>> {
    let applied = ledger::read(&*client).await?;
    let mut drift = Vec::new();
    let mut scripts = Vec::new();
    for row in &applied {
        match migrations.iter().find(|m| m.version == row.version) {
            Some(m) => {
                if m.up.checksum != row.checksum {
                    drift.push(Drift {
                        kind: "migration",
                        object: m.up.file.clone(),
                        problem:
                            "edited after it was applied; the expected schema uses today's file"
                                .into(),
                        expected: None,
                        found: None,
                    });
                }
                scripts.push(&m.up);
            }
            None => anyhow::bail!(
                "the database has migration {:04} `{}` applied, which this binary does not know; verify needs its script (use the right --migrations-dir)",
                row.version,
                row.name
            ),
        }
    }

    let live = read_catalog(&*client, "public").await?;
    let scratch = format!("aidock_verify_{}", std::process::id());
    let tx = client
        .transaction()
        .await
        .context("starting the verify transaction")?;
    // Everything below is rolled back: the scratch schema never becomes visible to anyone, and a
    // killed verify leaves nothing behind.
    tx.batch_execute(&format!(
        "CREATE SCHEMA {s}; SET LOCAL search_path = {s}",
        s = db::quote_ident(&scratch)
    ))
    .await
    .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
    .context(
        "creating the scratch schema (the role needs CREATE on the database, which the owner has)",
    )?;
    for script in scripts {
        for statement in script.statements()?.statements {
            let text = statement.text(&script.sql);
            // No-transaction scripts build indexes CONCURRENTLY; inside this transaction the
            // plain form makes the same index.
            let text = if script.no_transaction {
                text.replace(" CONCURRENTLY ", " ")
                    .replace(" concurrently ", " ")
            } else {
                text.to_string()
            };
            tx.batch_execute(&text)
                .await
                .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
                .with_context(|| format!("replaying {} in the scratch schema", script.file))?;
        }
    }
    let expected = read_catalog(&tx, &scratch).await?;
    tx.rollback()
        .await
        .context("rolling back the verify transaction")?;

    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .context("reading current_user")?
        .get(0);
    drift.extend(diff(&expected, &live, &role));
    Ok(drift)
}

async fn read_catalog(client: &impl GenericClient, schema: &str) -> anyhow::Result<Catalog> {
    let rows = client
        .query(
            "WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1),
             rels AS (SELECT c.oid, c.relname, c.relkind, c.relowner FROM pg_class c, ns
                      WHERE c.relnamespace = ns.oid AND c.relname <> ALL($2::text[])
                        AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
                                        WHERE x.indexrelid = c.oid AND t.relname = ANY($2::text[])))
             SELECT 'table', relname::text, CASE relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                    WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                    WHEN 'f' THEN 'foreign table' END
               FROM rels WHERE relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
             UNION ALL
             SELECT 'column', r.relname || '.' || a.attname,
                    format_type(a.atttypid, a.atttypmod)
                    || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
                    || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS ' || pg_get_expr(d.adbin, d.adrelid) || ' STORED'
                            WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END
                    || CASE WHEN a.attidentity <> '' THEN ' IDENTITY' ELSE '' END
               FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'v', 'm', 'f')
             UNION ALL
             SELECT 'constraint', r.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
               FROM rels r JOIN pg_constraint con ON con.conrelid = r.oid
             UNION ALL
             SELECT 'index', i.relname, pg_get_indexdef(x.indexrelid)
               FROM pg_index x JOIN rels i ON i.oid = x.indexrelid
             UNION ALL
             SELECT 'trigger', r.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
               FROM rels r JOIN pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal
             UNION ALL
             SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
                    pg_get_functiondef(p.oid)
               FROM pg_proc p, ns WHERE p.pronamespace = ns.oid AND p.prokind IN ('f', 'p')
             UNION ALL
             SELECT 'invalid', i.relname, '' FROM pg_index x JOIN rels i ON i.oid = x.indexrelid WHERE NOT x.indisvalid
             UNION ALL
             SELECT 'owner', c.relname, pg_get_userbyid(c.relowner)
               FROM rels c WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
            &[&schema, &ENGINE_TABLES.as_slice()],
        )
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("reading the catalog of schema `{schema}`"))?;
    let qualified = format!("{}.", db::quote_ident(schema));
    let plain = format!("{schema}.");
    let mut catalog = Catalog::default();
    for row in rows {
        let (kind, object, definition): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        // Definitions name their own schema (`ON public.users`); take it out so both compare.
        let definition = definition.replace(&qualified, "").replace(&plain, "");
        match kind.as_str() {
            "invalid" => catalog.invalid_indexes.push(object),
            "owner" => {
                catalog.owners.insert(object, definition);
            }
            _ => {
                let kind: &'static str = match kind.as_str() {
                    "table" => "table",
                    "column" => "column",
                    "constraint" => "constraint",
                    "index" => "index",
                    "trigger" => "trigger",
                    _ => "function",
                };
                catalog.objects.insert((kind, object), definition);
            }
        }
    }
    Ok(catalog)
}

fn diff(expected: &Catalog, live: &Catalog, role: &str) -> Vec<Drift> {
    let mut out = Vec::new();
    for ((kind, object), want) in &expected.objects {
        match live.objects.get(&(*kind, object.clone())) {
            None => out.push(Drift {
                kind,
                object: object.clone(),
                problem: "missing".into(),
                expected: Some(want.clone()),
                found: None,
            }),
            Some(have) if have != want => out.push(Drift {
                kind,
                object: object.clone(),
                problem: if *kind == "function" {
                    "body or attributes differ".into()
                } else {
                    "differs".into()
                },
                expected: (*kind != "function").then(|| want.clone()),
                found: (*kind != "function").then(|| have.clone()),
            }),
            Some(_) => {}
        }
    }
    for ((kind, object), have) in &live.objects {
        if !expected.objects.contains_key(&(*kind, object.clone())) {
            out.push(Drift {
                kind,
                object: object.clone(),
                problem: "not made by any migration".into(),
                expected: None,
                found: (*kind != "function").then(|| have.clone()),
            });
        }
    }
    for index in &live.invalid_indexes {
        out.push(Drift {
            kind: "index",
            object: index.clone(),
            problem: "INVALID (left by a failed CREATE INDEX CONCURRENTLY); drop it and run the migration again".into(),
            expected: None,
            found: None,
        });
    }
    for (relation, owner) in &live.owners {
        if expected.owners.contains_key(relation) && owner != role {
            out.push(Drift {
                kind: "owner",
                object: relation.clone(),
                problem: format!(
                    "owned by another role; run `ALTER TABLE {} OWNER TO {}` as a superuser",
                    db::quote_ident(relation),
                    db::quote_ident(role)
                ),
                expected: Some(role.to_string()),
                found: Some(owner.clone()),
            });
        }
    }
    out
}
