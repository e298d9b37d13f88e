//! Constraints of tables and domains, from the server's `pg_get_constraintdef`. A foreign key or
//! check added to a table that exists is added `NOT VALID` and validated in the script after the
//! transaction (no full scan under ACCESS EXCLUSIVE); a change is a re-make.

use super::{Check, Direction, Generator, Key, Op, Place, Planner, key, s, split_member};
use crate::schema::catalog::Catalog;

pub(super) struct Constraints;

impl Generator for Constraints {
    fn create(&self, p: &mut Planner, k: &Key) {
        let def = p.to.objects[k].clone();
        let Some(member) = p.member(k) else { return };
        let (of, con) = (&member.of, &member.name);
        if k.1.starts_with("domain ") {
            p.unit(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER DOMAIN {of} ADD CONSTRAINT {con} {def};"),
            );
            return;
        }
        let table = Planner::meta(p.to, "constraint", &k.1)
            .and_then(|m| s(m, "on"))
            .unwrap_or_default()
            .to_string();
        let kind = Planner::meta(p.to, "constraint", &k.1)
            .and_then(|m| s(m, "type"))
            .unwrap_or_default()
            .to_string();
        let existing = !p.table_is_new(&table) && !Planner::is_partitioned(p.to, &table);
        let check = existing.then(|| Check::Constraint {
            table: of.clone(),
            def: def.clone(),
            rows: p.converted_rows(&table, of),
        });
        if p.direction == Direction::Up
            && !p.options.one_transaction
            && existing
            && matches!(kind.as_str(), "f" | "c")
            && !def.ends_with("NOT VALID")
        {
            // Added without a full-table scan under ACCESS EXCLUSIVE; checked afterwards.
            p.unit(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER TABLE {of} ADD CONSTRAINT {con} {def} NOT VALID;"),
            );
            let unit = p
                .unit(
                    Op::Create,
                    &key("validate", &k.1),
                    Place::Post,
                    format!("ALTER TABLE {of} VALIDATE CONSTRAINT {con};"),
                )
                .needing(vec![k.clone()]);
            if let Some(c) = check {
                unit.check(c);
            }
        } else {
            // A primary key or unique constraint over a unique index that is already there
            // under its name (the same definition): the index becomes the constraint's.
            // Where it cannot (a partitioned table, another definition), that index goes first.
            let taken = taken_index(p, k, &kind, &table);
            let sql = if taken.as_ref().is_some_and(|ix| can_take(p, ix, &table)) {
                let word = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
                let tail = def.find(" DEFERRABLE").map_or("", |at| &def[at..]);
                format!("ALTER TABLE {of} ADD CONSTRAINT {con} {word} USING INDEX {con}{tail};")
            } else {
                // (A changed definition is dropped by the walk already.)
                if let Some(ix) = taken
                    .as_ref()
                    .filter(|ix| p.to.objects.get(*ix) == p.from.objects.get(*ix))
                {
                    p.drop(ix);
                }
                // On a partitioned table whose partitions the new schema has not all attached
                // to the constraint's index: on the table alone (attachments are written).
                let only = if matches!(kind.as_str(), "p" | "u")
                    && Planner::is_partitioned(p.to, &table)
                    && !Planner::index_complete(p.to, &index_key(k).1)
                {
                    "ONLY "
                } else {
                    ""
                };
                format!("ALTER TABLE {only}{of} ADD CONSTRAINT {con} {def};")
            };
            // Partitions' indexes its index attaches under their own names come first.
            let before = p.named_partition_indexes_of(&index_key(k).1);
            let unit = p
                .unit(Op::Create, k, Place::Main, sql)
                .after_drops(taken.into_iter().collect())
                .needing(before);
            if let Some(c) = check {
                unit.check(c);
            }
            validate_copies(p, k, &table, &def);
        }
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(member) = p.member(k) else { return };
        let word = if k.1.starts_with("domain ") {
            "DOMAIN"
        } else {
            "TABLE"
        };
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!(
                "ALTER {word} {} DROP CONSTRAINT {};",
                member.of, member.name
            ),
        );
    }
}

/// A check or foreign key added `NOT VALID` to a table whose partitions or children have their
/// copy of it valid (they were made after it): each copy is validated on its own.
fn validate_copies(p: &mut Planner, k: &Key, table: &str, def: &str) {
    let Some(valid) = def.strip_suffix(" NOT VALID") else {
        return;
    };
    let con = split_member(&k.1).1.to_string();
    for child in Planner::children(p.to, table) {
        let copy = key("constraint", &format!("{child}.{con}"));
        if p.to.objects.get(&copy).map(String::as_str) != Some(valid) {
            continue;
        }
        let Some(member) = p.member(&copy) else {
            continue;
        };
        p.unit(
            Op::Create,
            &key("validate", &copy.1),
            Place::Main,
            format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {};",
                member.of, member.name
            ),
        )
        .needing(vec![k.clone()]);
    }
}

/// The index a primary key or unique constraint `k` is built on: same schema as the
/// table, the constraint's name.
fn index_key(k: &Key) -> Key {
    let (table, con) = split_member(&k.1);
    let (schema, _) = split_member(table);
    if schema.is_empty() {
        key("index", con)
    } else {
        key("index", &format!("{schema}.{con}"))
    }
}

/// The index of its own (not a constraint's) that the old schema has on `table` under the
/// name a new primary key or unique constraint `k` gives its index.
fn taken_index(p: &Planner, k: &Key, kind: &str, table: &str) -> Option<Key> {
    if !matches!(kind, "p" | "u") {
        return None;
    }
    let index = index_key(k);
    (p.from.objects.contains_key(&index)
        && !Planner::automatic(p.from, &index)
        && Planner::owner_table(p.from, &index).as_deref() == Some(table))
    .then_some(index)
}

/// Whether that index can become the constraint's as it is (`ADD CONSTRAINT .. USING INDEX`):
/// the same definition, a table that is not partitioned.
fn can_take(p: &Planner, index: &Key, table: &str) -> bool {
    !Planner::is_partitioned(p.to, table)
        && !Planner::is_partitioned(p.from, table)
        && p.to.objects.get(index) == p.from.objects.get(index)
}

/// What the plan asks about constraints (moved here from the walk, issue #41).
impl Planner<'_> {
    /// A partition's constraint made by its parent's in the old schema and its own in the new
    /// one: the parent's constraint (dropped by this plan), whose drop takes it.
    pub(super) fn constraint_taken_by(&self, k: &Key) -> Option<Key> {
        if !Self::automatic(self.from, k) || Self::automatic(self.to, k) || self.detached(k) {
            return None;
        }
        let parent = Self::parent_constraint(self.from, k)?;
        (self.changes(&parent) || self.constraint_detaches(&parent)).then_some(parent)
    }

    /// The constraint on the parent table that made a partition's constraint `k` in `cat`:
    /// the constraint of the partitioned index `k`'s index is attached to.
    pub(super) fn parent_constraint(cat: &Catalog, k: &Key) -> Option<Key> {
        let index = Self::index_of_constraint(cat, k)?;
        let parent = Self::meta(cat, "rel", &index.1).and_then(|m| s(m, "index_parent"))?;
        Self::index_constraint(cat, parent)
    }

    /// A primary key or unique constraint both schemas have, the same, whose index has an
    /// attached index the new schema does not attach to it (made again, see below).
    pub(super) fn constraint_detaches(&self, k: &Key) -> bool {
        Self::index_of_constraint(self.from, k).is_some_and(|index| self.index_detaches(&index.1))
    }

    /// A partition's constraint that the new schema has as its parent's, on an index this plan
    /// attaches by hand (the parent's index is `ON ONLY`): made as the partition's own first,
    /// and the attachment makes it the parent's.
    pub(super) fn explicit_partition_constraint(&self, k: &Key) -> bool {
        k.0 == "constraint"
            && !self.from.objects.contains_key(k)
            && Self::index_of_constraint(self.to, k).is_some_and(|index| {
                self.to
                    .objects
                    .get(&key("index attachment", &index.1))
                    .is_some_and(|parent| !self.attach_is_automatic(&index.1, parent))
            })
    }
}
