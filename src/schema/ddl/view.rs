//! Views and materialized views: created from the server's `pg_get_viewdef`, re-made (drop and
//! create) when their definition changes or what they read is re-made.

use super::{BTreeSet, RELATION_KINDS, key, split_member};
use super::{Effect, comment, owner, privilege, target};
use super::{Generator, Key, Op, Place, Planner, s, strings};

pub(super) struct Views;

impl Generator for Views {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let m = Planner::meta_or_null(p.to, "rel", &k.1);
        let def = s(&m, "viewdef").unwrap_or("").trim().trim_end_matches(';');
        let options = strings(&m, "options");
        let with = if options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", options.join(", "))
        };
        let sql = if k.0 == "view" {
            format!("CREATE VIEW {name}{with} AS\n{def};")
        } else {
            format!("CREATE MATERIALIZED VIEW {name}{with} AS\n{def}\nWITH DATA;")
        };
        p.unit(Op::Create, k, Place::Main, sql);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let word = if k.0 == "view" {
            "VIEW"
        } else {
            "MATERIALIZED VIEW"
        };
        p.unit(Op::Drop, k, Place::Main, format!("DROP {word} {name};"));
    }
}

/// What the plan asks about views and the objects re-made with them (moved here from the walk, issue #41).
impl Planner<'_> {
    /// A dropped and re-made object loses its grants, comment and owner: write them again
    /// (those that differ are written by the main loop anyway).
    pub(super) fn reapply_attached(&mut self, k: &Key) {
        let attached: Vec<(Key, String)> = self
            .to
            .objects
            .iter()
            .filter(|((kind, _), _)| matches!(kind.as_str(), "privileges" | "comment" | "owner"))
            .filter(|(ek, v)| self.from.objects.get(*ek) == Some(*v))
            .filter(|((kind, name), _)| {
                target::object_of(self.to, kind, name).is_some_and(|obj| &obj == k)
            })
            .map(|(ek, v)| (ek.clone(), v.clone()))
            .collect();
        for (ek, v) in attached {
            match ek.0.as_str() {
                "privileges" => privilege::write(self, &ek),
                "comment" => comment::write(self, &ek, Some(&v)),
                _ => {
                    if v != self.role {
                        owner::write(self, &ek, &v);
                    }
                }
            }
        }
    }

    /// Objects that use what is dropped and made again (or a column whose type changes) must
    /// be dropped before and made again after: views, triggers, policies, constraints, indexes.
    pub(super) fn recreate_dependents(&mut self) {
        let mut work: Vec<(Key, bool)> = Vec::new();
        for u in &self.units {
            // Made again, or replaced by a relation of another kind under the same name (a
            // table turned into a view): what used it is made again on top of the new one.
            let replaced = RELATION_KINDS.contains(&u.key.0.as_str())
                && RELATION_KINDS
                    .iter()
                    .any(|k| self.to.objects.contains_key(&key(k, &u.key.1)));
            if u.op == Op::Drop && (self.to.objects.contains_key(&u.key) || replaced) {
                work.push((u.key.clone(), false));
            }
            if u.op == Op::Alter && u.effect == Effect::Retype {
                work.push((u.key.clone(), true));
            }
            if u.op == Op::Alter && u.effect == Effect::EnumSwap {
                // An enum swap converts every column of the type.
                for (col, m) in self.from.meta.iter().filter(|((k, _), _)| k == "column") {
                    let ty = s(m, "type").unwrap_or("");
                    if ty == u.key.1 || ty == format!("{}[]", u.key.1) {
                        work.push((col.clone(), true));
                    }
                }
            }
        }
        // A table made again takes its partitions with its drop: those the desired schema has
        // are made again too (and what uses them, below).
        let mut remade: Vec<String> = work
            .iter()
            .filter(|(k, _)| k.0 == "table")
            .map(|(k, _)| k.1.clone())
            .collect();
        let mut i = 0;
        while i < remade.len() {
            let parent = remade[i].clone();
            i += 1;
            // Partitions (dropped with it), not INHERITS children (which block its drop).
            let partitions: Vec<String> = Self::children(self.from, &parent)
                .into_iter()
                .filter(|name| {
                    Self::partition_of(self.from, name) == Some(parent.as_str())
                        && self.to.objects.contains_key(&key("table", name))
                })
                .collect();
            for part in partitions {
                let k = key("table", &part);
                if !self.units.iter().any(|u| u.key == k) {
                    self.create(&k);
                    self.reapply_attached(&k);
                    work.push((k, false));
                }
                remade.push(part);
            }
        }
        let owned: Vec<(Key, Key)> = self
            .from
            .meta
            .iter()
            .filter(|((kind, name), _)| {
                kind == "sequence" && self.to.objects.contains_key(&key("sequence", name))
            })
            .filter_map(|((_, name), m)| {
                let table = split_member(s(m, "owned_by")?).0;
                remade
                    .iter()
                    .any(|t| t == table)
                    .then(|| (key("sequence", name), key("table", table)))
            })
            .collect();
        for (seq, table) in owned {
            if !self.units.iter().any(|u| u.key == seq) {
                // Its table's drop takes it: made again after that.
                self.create_after_drop_of(&seq, &table);
                self.reapply_attached(&seq);
            }
        }
        let mut seen: BTreeSet<Key> = work.iter().map(|(k, _)| k.clone()).collect();
        while let Some((x, column_type)) = work.pop() {
            // A relation is used through its columns too (a view's rule names columns).
            let mut used: Vec<Key> = vec![x.clone()];
            if RELATION_KINDS.contains(&x.0.as_str()) {
                used.extend(
                    Self::columns_of(self.from, &x.1)
                        .into_iter()
                        .map(|(_, c)| key("column", &c)),
                );
            }
            let users: Vec<Key> = self
                .from
                .deps
                .iter()
                .filter(|(_, ds)| used.iter().any(|u| ds.contains(u)))
                .map(|(j, _)| j.clone())
                .collect();
            for j in users {
                let kinds: &[&str] = if column_type {
                    &["view", "materialized view", "policy"]
                } else {
                    &[
                        "view",
                        "materialized view",
                        "trigger",
                        "policy",
                        "constraint",
                        "index",
                    ]
                };
                // (Only objects the old catalog has: a foreign key's per-partition copies are
                // in pg_depend, not in the catalog.)
                if !kinds.contains(&j.0.as_str())
                    || seen.contains(&j)
                    || !self.to.objects.contains_key(&j)
                    || !self.from.objects.contains_key(&j)
                    || Self::automatic(self.from, &j)
                {
                    continue;
                }
                seen.insert(j.clone());
                if !self.units.iter().any(|u| u.key == j && u.op == Op::Drop) {
                    self.drop(&j);
                    if !self.units.iter().any(|u| u.key == j && u.op == Op::Create) {
                        self.create(&j);
                    }
                    self.reapply_attached(&j);
                }
                work.push((j, false));
            }
        }
    }
}
