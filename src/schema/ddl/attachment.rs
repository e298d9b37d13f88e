//! Which partitioned index a partition's index is attached to (`ALTER INDEX ... ATTACH
//! PARTITION`). Mostly PostgreSQL's own doing: a partitioned index made without `ONLY` attaches
//! (or builds) one index per partition, and a partition made or attached takes one for each of
//! its parent's indexes; an attachment is written only where none of that happens (a
//! partitioned index the new schema has `ON ONLY`, with some partitions not attached yet, or an
//! index of a partition attached later). PostgreSQL cannot detach an index: the partitioned
//! index is made again instead (see [`Planner::index_made`]).

use super::{Generator, Key, Op, Place, Planner, key};
use crate::db::ident::Name;

pub(super) struct Attachments;

impl Generator for Attachments {
    fn create(&self, p: &mut Planner, k: &Key) {
        let parent = p.to.objects[k].clone();
        if p.attach_is_automatic(&k.1, &parent) {
            return;
        }
        let (Some(child), Some(of)) = (Name::parse(&k.1), Name::parse(&parent)) else {
            p.note(format!(
                "index attachment {}: the names are not ones the catalog writes; attach it by hand",
                k.1
            ));
            return;
        };
        let mut needs = vec![key("index", &parent), key("index", &k.1)];
        // A partition's constraint index attaches as the constraint.
        needs.extend(Planner::index_constraint(p.to, &k.1));
        p.unit(
            Op::Create,
            k,
            Place::Main,
            format!("ALTER INDEX {of} ATTACH PARTITION {child};"),
        )
        .needing(needs);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        // Goes with its index, its partitioned index (dropped or made again) or its partition's
        // detach. Otherwise the partitioned index is made again (index_made): never reached.
        let parent = p.from.objects[k].clone();
        if p.attachment_goes(&k.1, &parent) {
            return;
        }
        p.unsupported.push(format!(
            "index {}: attached to {parent}, which the new schema does not have it attached to; PostgreSQL cannot detach an index from a partitioned index: drop {parent} and make it again (ON ONLY, attaching the indexes that stay)",
            k.1
        ));
    }
}

/// What the plan asks about index attachments (moved here from the walk, issue #41).
impl Planner<'_> {
    /// Whether PostgreSQL attaches index `child` to `parent` by itself in this plan: the
    /// partitioned index is made here without `ONLY`, or the partition is made or attached
    /// here (each takes its parent's indexes).
    pub(super) fn attach_is_automatic(&self, child: &str, parent: &str) -> bool {
        let parent_key = key("index", parent);
        let parent_made = self.index_made(parent)
            || (Self::automatic(self.to, &parent_key)
                && Self::index_constraint(self.to, parent).is_some_and(|c| self.changes(&c)));
        if parent_made {
            return Self::index_complete(self.to, parent);
        }
        let Some(table) = Self::index_table(self.to, child) else {
            return false;
        };
        self.table_is_new(table) || self.changes_parent(table)
    }

    /// Whether an attachment of the old schema goes by itself: with its index or partitioned
    /// index (dropped or made again, or their constraints), or with its partition's detach.
    pub(super) fn attachment_goes(&self, child: &str, parent: &str) -> bool {
        let gone = |name: &str| {
            let k = key("index", name);
            !self.to.objects.contains_key(&k)
                || self.index_made(name)
                || self.index_taken_by(&k).is_some()
                || (Self::automatic(self.from, &k)
                    && Self::index_constraint(self.from, name).is_some_and(|c| {
                        self.changes(&c)
                            || self.index_drop_taking(&c).is_some()
                            || self.constraint_taken_by(&c).is_some()
                    }))
        };
        let detached = Self::index_table(self.from, child).is_some_and(|t| {
            self.changes_parent(t) || !self.to.objects.contains_key(&key("table", t))
        });
        gone(child) || gone(parent) || detached
    }
}
