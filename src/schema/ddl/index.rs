//! Indexes, from the server's `pg_get_indexdef`. On a table that exists before and after (and is
//! not partitioned) an index is built and dropped `CONCURRENTLY` in the script after the
//! transaction, re-runnable (`IF NOT EXISTS` / `IF EXISTS`); a change is a re-make.

use super::{Check, Generator, Key, Op, Place, Planner, s};
use crate::db::ident::Name;

pub(super) struct Indexes;

impl Generator for Indexes {
    fn create(&self, p: &mut Planner, k: &Key) {
        let def = p.to.objects[k].replacen(" ON ONLY ", " ON ", 1);
        let table = Planner::owner_table(p.to, k).unwrap_or_default();
        let check = (!p.table_is_new(&table) && def.starts_with("CREATE UNIQUE INDEX "))
            .then(|| Name::parse(&table))
            .flatten()
            .map(|table| Check::UniqueIndex {
                table,
                def: def.clone(),
            });
        let before = p.named_partition_indexes_of(&k.1);
        let unit = if p.concurrent_ok(&table) {
            let concurrent = def.replacen(" INDEX ", " INDEX CONCURRENTLY IF NOT EXISTS ", 1);
            p.unit(Op::Create, k, Place::Post, format!("{concurrent};"))
                .in_transaction(format!("{def};"))
        } else {
            p.unit(Op::Create, k, Place::Main, format!("{def};"))
        };
        unit.needing(before);
        if let Some(c) = check {
            unit.check(c);
        }
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        // A partitioned index with a partition's primary key or unique constraint built on an
        // index attached to it: PostgreSQL drops neither alone.
        let held: Vec<String> = p
            .from
            .meta
            .iter()
            .filter(|((kind, _), m)| kind == "rel" && s(m, "index_parent") == Some(k.1.as_str()))
            .filter_map(|(_, m)| s(m, "index_constraint").map(str::to_string))
            .collect();
        if !held.is_empty() {
            p.unsupported.push(format!(
                "index {}: the partitions' constraint(s) {} are built on indexes attached to it, and PostgreSQL drops neither the index nor those constraints alone; write this step by hand (DROP INDEX {name} CASCADE drops those constraints with it; add back the ones that stay)",
                k.1,
                held.join(", ")
            ));
            return;
        }
        let table = Planner::owner_table(p.from, k).unwrap_or_default();
        if p.concurrent_ok(&table) {
            p.unit(
                Op::Drop,
                k,
                Place::Post,
                format!("DROP INDEX CONCURRENTLY IF EXISTS {name};"),
            )
            .in_transaction(format!("DROP INDEX IF EXISTS {name};"));
        } else {
            p.unit(Op::Drop, k, Place::Main, format!("DROP INDEX {name};"));
        }
    }
}
