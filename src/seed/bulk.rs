//! Bulk loads in `pg_restore`'s order: a table's secondary indexes and foreign keys are dropped
//! inside the seed's transaction, the rows go in, and they are built again (same names, the
//! server's own definitions, foreign keys validated) before it commits. A failure, a kill or
//! Ctrl-C rolls the drop back with everything else, so no one ever sees the table without them.
//!
//! Only what can be made again exactly is dropped: not the primary key or unique constraints
//! (foreign keys may point at them, and a sorted load keeps them cheap), not an index that is
//! commented, clustered, the replica identity, in another tablespace, carries column statistics
//! settings, or is invalid; not a commented foreign key. A table with a deferrable trigger of its
//! own is left alone (its pending events forbid `ALTER TABLE` before commit). The drop takes
//! `ACCESS EXCLUSIVE` on the table until commit: acceptable where `seed --dev` runs (dev and test;
//! production refuses it), see ARCHITECTURE.md.

use anyhow::Context as _;
use tokio_postgres::Transaction;
use tokio_postgres::types::Type;

use crate::db::ident::{Ident, Name};
use crate::db::sql::Sql as _;

/// What was dropped, and the statements that make it again.
#[derive(Debug)]
pub struct Deferred {
    table: Name,
    indexes: Vec<String>,
    foreign_keys: Vec<(Ident, String)>,
}

/// The indexes of `table` that may be dropped and made again exactly.
const INDEXES: &str = "
SELECT n.nspname::text, c.relname::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = $1::regclass
  AND i.indisvalid AND NOT i.indisclustered AND NOT i.indisreplident
  AND c.reltablespace = 0
  AND obj_description(i.indexrelid, 'pg_class') IS NULL
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attstattarget >= 0)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indexrelid
                    AND d.classid <> 'pg_class'::regclass)
ORDER BY c.relname";

/// The foreign keys of `table` that may be dropped and made again exactly.
const FOREIGN_KEYS: &str = "
SELECT k.conname::text, pg_get_constraintdef(k.oid)
FROM pg_constraint k
WHERE k.conrelid = $1::regclass AND k.contype = 'f' AND k.conparentid = 0
  AND obj_description(k.oid, 'pg_constraint') IS NULL
ORDER BY k.conname";

/// Whether the load should go in `pg_restore`'s order: the table is ours to alter, has no
/// deferrable trigger of its own, and holds no more rows than the load adds (building an index over what is there
/// costs more than adding a few rows to it).
async fn worth_it(tx: &Transaction<'_>, table: &Name, adding: u64) -> anyhow::Result<bool> {
    let limit = i64::try_from(adding).unwrap_or(i64::MAX);
    let qualified = table.to_string();
    let row = tx
        .one(
            "SELECT c.relkind = 'r' AND pg_has_role(c.relowner, 'USAGE'),
                    EXISTS (SELECT 1 FROM pg_trigger t
                            WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgdeferrable)
             FROM pg_class c WHERE c.oid = $1::regclass",
            &[(&qualified, Type::TEXT)],
        )
        .await
        .context("reading the table's kind, owner and triggers")?;
    let (ours, triggers): (bool, bool) = (row.get(0), row.get(1));
    if !ours || triggers {
        return Ok(false);
    }
    let there: i64 = tx
        .one(
            &format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT $1) s"),
            &[(&limit, Type::INT8)],
        )
        .await
        .context("counting the rows already there")?
        .get(0);
    Ok(there < limit)
}

/// Drop `table`'s secondary indexes and foreign keys for a load of `adding` rows, when that pays.
///
/// # Errors
/// Failing catalog reads or statements.
pub async fn defer(
    tx: &Transaction<'_>,
    table: &Name,
    adding: u64,
) -> anyhow::Result<Option<Deferred>> {
    if adding == 0 || !worth_it(tx, table, adding).await? {
        return Ok(None);
    }
    let qualified = table.to_string();
    let indexes = tx
        .rows(INDEXES, &[(&qualified, Type::TEXT)])
        .await
        .context("reading the table's indexes")?;
    let foreign_keys = tx
        .rows(FOREIGN_KEYS, &[(&qualified, Type::TEXT)])
        .await
        .context("reading the table's foreign keys")?;
    let deferred = Deferred {
        table: table.clone(),
        indexes: indexes.iter().map(|r| r.get::<_, String>(2)).collect(),
        foreign_keys: foreign_keys
            .iter()
            .map(|r| (Ident::new(r.get::<_, String>(0)), r.get::<_, String>(1)))
            .collect(),
    };
    let mut drop = Vec::new();
    if !deferred.foreign_keys.is_empty() {
        drop.push(format!(
            "ALTER TABLE {table} {}",
            deferred
                .foreign_keys
                .iter()
                .map(|(name, _)| format!("DROP CONSTRAINT {name}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let index_names: Vec<String> = indexes
        .iter()
        .map(|r| {
            Name {
                schema: Some(Ident::new(r.get::<_, String>(0))),
                name: Ident::new(r.get::<_, String>(1)),
            }
            .to_string()
        })
        .collect();
    if !index_names.is_empty() {
        drop.push(format!("DROP INDEX {}", index_names.join(", ")));
    }
    if drop.is_empty() {
        return Ok(None);
    }
    tx.batch_execute(&drop.join("; "))
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .with_context(|| format!("dropping {table}'s indexes and foreign keys for the load"))?;
    Ok(Some(deferred))
}

impl Deferred {
    /// Build the indexes and foreign keys again, in the same transaction.
    ///
    /// # Errors
    /// A failing statement (a foreign key the loaded rows break, for one).
    pub async fn rebuild(self, tx: &Transaction<'_>) -> anyhow::Result<()> {
        let table = &self.table;
        for def in &self.indexes {
            tx.batch_execute(def)
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .with_context(|| format!("building an index of {table} again: {def}"))?;
        }
        if !self.foreign_keys.is_empty() {
            let adds = self
                .foreign_keys
                .iter()
                .map(|(name, def)| format!("ADD CONSTRAINT {name} {def}"))
                .collect::<Vec<_>>()
                .join(", ");
            tx.batch_execute(&format!("ALTER TABLE {table} {adds}"))
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .with_context(|| format!("adding {table}'s foreign keys again"))?;
        }
        Ok(())
    }
}
