//! Indexes, from the server's `pg_get_indexdef`. On a table that exists before and after (and is
//! not partitioned) an index is built and dropped `CONCURRENTLY` in the script after the
//! transaction, re-runnable (`IF NOT EXISTS` / `IF EXISTS`); a change is a re-make.

use super::{BTreeSet, RELATION_KINDS, key, s};
use super::{Check, Generator, Key, Op, Place, Planner};
use crate::db::ident::Name;
use crate::schema::catalog::Catalog;

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

/// What the plan asks about indexes (partitioned ones and their attachments included) (moved here from the walk, issue #41).
impl Planner<'_> {
    /// An index or constraint on a table that exists before and after (and is not
    /// partitioned) is built, dropped or validated outside the transaction.
    pub(super) fn concurrent_ok(&self, table: &str) -> bool {
        !self.options.one_transaction
            && !self.table_is_new(table)
            && RELATION_KINDS
                .iter()
                .any(|k| self.to.objects.contains_key(&key(k, table)))
            && !Self::is_partitioned(self.to, table)
            && !Self::is_partitioned(self.from, table)
    }

    /// An index both schemas have (the same definition) that goes with the drop of what owned
    /// it in the old one (a constraint, or the partitioned index it was attached to), while the
    /// new one has it on its own or attached to an index made in this plan: that owner's key
    /// (it is made again after that drop).
    pub(super) fn index_taken_by(&self, k: &Key) -> Option<Key> {
        if Self::automatic(self.to, k) && !self.named_partition_index(k) {
            return None;
        }
        // A partition detached (or moved to another parent) keeps its indexes and keys.
        if self.detached(k) {
            return None;
        }
        Self::index_owner(self.from, &k.1).filter(|c| {
            !self.to.objects.contains_key(c) || (c.0 == "index" && self.index_made(&c.1))
        })
    }

    /// The constraint an index is built for in `cat` (its key), if any.
    pub(super) fn index_constraint(cat: &Catalog, index: &str) -> Option<Key> {
        Self::meta(cat, "rel", index)
            .and_then(|m| s(m, "index_constraint"))
            .map(|c| key("constraint", c))
    }

    /// What an index goes with in `cat`: its constraint, or the partitioned index it is
    /// attached to.
    pub(super) fn index_owner(cat: &Catalog, index: &str) -> Option<Key> {
        Self::index_constraint(cat, index).or_else(|| {
            Self::meta(cat, "rel", index)
                .and_then(|m| s(m, "index_parent"))
                .map(|i| key("index", i))
        })
    }

    /// The index a constraint is built on in `cat` (its key), if it is one that has one.
    pub(super) fn index_of_constraint(cat: &Catalog, k: &Key) -> Option<Key> {
        if k.0 != "constraint" {
            return None;
        }
        cat.meta
            .iter()
            .find(|((kind, _), m)| kind == "rel" && s(m, "index_constraint") == Some(k.1.as_str()))
            .map(|((_, index), _)| key("index", index))
    }

    /// An index both schemas have, the same, one of whose attached indexes (which stays, on a
    /// partition that stays) is not attached to it in the new schema.
    pub(super) fn index_detaches(&self, name: &str) -> bool {
        let k = key("index", name);
        let table = Self::index_table;
        self.from.objects.get(&k) == self.to.objects.get(&k)
            && self.from.objects.iter().any(|((kind, child), parent)| {
                kind == "index attachment"
                    && parent == name
                    && self.to.objects.contains_key(&key("index", child))
                    && self.to.objects.get(&key("index attachment", child)) != Some(parent)
                    && table(self.to, child)
                        .is_some_and(|t| Self::partition_of(self.to, t) == table(self.to, name))
            })
    }

    /// The indexes on `table` in `cat` (their key names).
    pub(super) fn indexes_on<'c>(
        cat: &'c Catalog,
        table: &'c str,
    ) -> impl Iterator<Item = &'c String> {
        cat.meta
            .iter()
            .filter(move |((kind, _), m)| kind == "rel" && s(m, "index_table") == Some(table))
            .map(|((_, name), _)| name)
    }

    /// The table an index is on (its key name), from its meta.
    pub(super) fn index_table<'c>(cat: &'c Catalog, index: &str) -> Option<&'c str> {
        Self::meta(cat, "rel", index).and_then(|m| s(m, "index_table"))
    }

    /// Whether every partition of `index`'s table has an index attached to it in `cat` (a
    /// partitioned index made with `ON ONLY` is valid only then).
    pub(super) fn index_complete(cat: &Catalog, index: &str) -> bool {
        let Some(table) = Self::index_table(cat, index) else {
            return true;
        };
        let attached: BTreeSet<&str> = cat
            .objects
            .iter()
            .filter(|((kind, _), parent)| kind == "index attachment" && parent.as_str() == index)
            .filter_map(|((_, child), _)| Self::index_table(cat, child))
            .collect();
        Self::children(cat, table).iter().all(|part| {
            Self::partition_of(cat, part) != Some(table) || attached.contains(part.as_str())
        })
    }

    /// Whether this plan makes the index `name` (new, changed or made again).
    pub(super) fn index_made(&self, name: &str) -> bool {
        let k = key("index", name);
        match (self.from.objects.get(&k), self.to.objects.get(&k)) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) if a != b => true,
            (Some(_), Some(_)) if self.index_detaches(name) => true,
            (Some(_), Some(_)) => {
                // Its owner in the old schema goes, and the new one has it on its own.
                !Self::automatic(self.to, &k)
                    && Self::index_owner(self.from, name)
                        .is_some_and(|c| !self.to.objects.contains_key(&c))
            }
            _ => false,
        }
    }

    /// A partition's index attached to a partitioned index that this plan makes: made first,
    /// under its own name, so that the partitioned index's CREATE attaches it (instead of
    /// building one named by PostgreSQL).
    pub(super) fn named_partition_index(&self, k: &Key) -> bool {
        k.0 == "index"
            && Self::meta(self.to, "rel", &k.1)
                .and_then(|m| s(m, "index_parent"))
                .is_some_and(|parent| self.index_made(parent))
            && Self::meta(self.to, "rel", &k.1).is_some_and(|m| m["index_constraint"].is_null())
    }

    /// The partitions' indexes made under their own names (see above) that the new
    /// partitioned index `index` attaches: made before it.
    pub(super) fn named_partition_indexes_of(&self, index: &str) -> Vec<Key> {
        self.to
            .meta
            .iter()
            .filter(|((kind, _), m)| kind == "rel" && s(m, "index_parent") == Some(index))
            .map(|((_, name), _)| key("index", name))
            .filter(|k| self.named_partition_index(k))
            .collect()
    }

    /// The partitions' own primary keys and unique constraints (`cat`) whose indexes are
    /// attached to the partitioned index `index`.
    pub(super) fn partition_constraints_on(cat: &Catalog, index: &str) -> Vec<Key> {
        cat.meta
            .iter()
            .filter(|((kind, _), m)| kind == "rel" && s(m, "index_parent") == Some(index))
            .filter_map(|(_, m)| s(m, "index_constraint"))
            .map(|c| key("constraint", c))
            .filter(|c| !Self::automatic(cat, c))
            .collect()
    }

    /// A partition's own constraint whose index is attached to a partitioned index this plan
    /// drops (or makes again): that index, whose drop takes the constraint (`DROP INDEX ...
    /// CASCADE`).
    pub(super) fn index_drop_taking(&self, k: &Key) -> Option<Key> {
        if k.0 != "constraint" {
            return None;
        }
        let index = Self::index_of_constraint(self.from, k)?;
        Self::meta(self.from, "rel", &index.1)
            .and_then(|m| s(m, "index_parent"))
            .map(|parent| key("index", parent))
            .filter(|parent| {
                // Dropped: gone, made again, or (a partitioned index) taken over by a new
                // constraint of the same name, which cannot take it as it is.
                self.from.objects.contains_key(parent)
                    && !Self::automatic(self.from, parent)
                    && (!self.to.objects.contains_key(parent)
                        || self.index_made(&parent.1)
                        || Self::automatic(self.to, parent))
            })
    }

    /// A new partition's own primary key and unique constraints whose indexes are attached to
    /// its parent's: made with the table, before it is attached (see `table.rs`).
    pub(super) fn partition_keys_made_first(&self, table: &str) -> Vec<Key> {
        if !self.table_is_new(table) || Self::partition_of(self.to, table).is_none() {
            return Vec::new();
        }
        Self::indexes_on(self.to, table)
            .filter(|name| self.to.objects.contains_key(&key("index attachment", name)))
            .filter_map(|name| Self::index_constraint(self.to, name))
            .filter(|c| {
                !Self::automatic(self.to, c)
                    && Self::meta(self.to, "constraint", &c.1)
                        .and_then(|m| s(m, "type"))
                        .is_some_and(|t| t == "p" || t == "u")
            })
            .collect()
    }
}
