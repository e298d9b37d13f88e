//! Indexes, from the server's `pg_get_indexdef`. On a table that exists before and after (and is
//! not partitioned) an index is built and dropped `CONCURRENTLY` in the script after the
//! transaction, re-runnable (`IF NOT EXISTS` / `IF EXISTS`); a change is a re-make.

use super::{Check, Generator, Key, Op, Place, Planner};
use crate::db::ident::Name;

pub(super) struct Indexes;

impl Generator for Indexes {
    fn create(&self, p: &mut Planner, k: &Key) {
        // A partitioned index is made for every partition at once, unless the new schema has
        // it `ON ONLY` with partitions not attached yet (its attachments are written then).
        let def = if Planner::index_complete(p.to, &k.1) {
            p.to.objects[k].replacen(" ON ONLY ", " ON ", 1)
        } else {
            p.to.objects[k].clone()
        };
        let table = Planner::owner_table(p.to, k).unwrap_or_default();
        let check = (!p.table_is_new(&table) && def.starts_with("CREATE UNIQUE INDEX "))
            .then(|| Name::parse(&table))
            .flatten()
            .map(|table| Check::UniqueIndex {
                table,
                def: def.clone(),
            });
        let mut before = p.named_partition_indexes_of(&k.1);
        // The partitions' own constraints whose indexes it attaches come first.
        before.extend(Planner::partition_constraints_on(p.to, &k.1));
        // A partition's index its partitioned index attaches is made right before that one.
        let unit = if p.concurrent_ok(&table) && !p.named_partition_index(k) {
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
        // index attached to it: PostgreSQL drops neither alone, so the drop cascades to those
        // constraints, and the ones the new schema keeps as they are are made again after it.
        let held = Planner::partition_constraints_on(p.from, &k.1);
        if !held.is_empty() {
            p.unit(
                Op::Drop,
                k,
                Place::Main,
                format!("DROP INDEX {name} CASCADE;"),
            );
            for c in held {
                if p.to.objects.contains_key(&c) && !p.changes(&c) {
                    p.create_after_drop_of(&c, k);
                }
            }
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
