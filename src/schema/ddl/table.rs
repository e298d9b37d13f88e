//! Tables and foreign tables: created with their columns (partitions as `PARTITION OF` their
//! parent), dropped with their rows (lossy), and changed in place where PostgreSQL can:
//! partition attachment, logging, row-level security, storage parameters.

use std::fmt::Write as _;

use serde_json::Value;

use super::RELATION_KINDS;
use super::column::definition;
use super::{Generator, Key, Op, Place, Planner, b, key, s, strings};
use crate::db::ident::{Member, Name};
use crate::schema::catalog::Catalog;

pub(super) struct Tables;

/// A relation name found in a meta field (the parent of a partition ...), or a note.
fn named(p: &mut Planner, what: &str, text: &str) -> Option<Name> {
    let name = Name::parse(text);
    if name.is_none() {
        p.note(format!(
            "{what} `{text}` is not a name the catalog writes: write that part by hand"
        ));
    }
    name
}

impl Generator for Tables {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let m = Planner::meta_or_null(p.to, "rel", &k.1);
        let unlogged = if b(&m, "unlogged") { "UNLOGGED " } else { "" };
        let foreign = k.0 == "foreign table";
        let mut attach = String::new();
        let mut sql = if let Some(parent) = s(&m, "parent") {
            let Some(parent) = named(p, "the parent table", parent) else {
                return;
            };
            let bound = s(&m, "bound").unwrap_or("DEFAULT");
            // Its own keys whose indexes a parent's index attaches: made before it is attached
            // (a partition made with PARTITION OF gets a copy of each parent index instead).
            let keys = p.partition_keys_made_first(&k.1);
            if keys.is_empty() {
                format!("CREATE {unlogged}TABLE {name} PARTITION OF {parent} {bound}")
            } else {
                for c in keys {
                    let Some(member) = p.member(&c) else { return };
                    let _ = write!(
                        attach,
                        "\nALTER TABLE {name} ADD CONSTRAINT {} {};",
                        member.name, p.to.objects[&c]
                    );
                }
                let _ = write!(
                    attach,
                    "\nALTER TABLE {parent} ATTACH PARTITION {name} {bound};"
                );
                format!(
                    "CREATE {unlogged}TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)"
                )
            }
        } else {
            let mut cols = Vec::new();
            for (_, c) in Planner::columns_of(p.to, &k.1) {
                if Planner::automatic(p.to, &key("column", &c)) {
                    continue;
                }
                let Some(def) = definition(p, &c) else { return };
                cols.push(format!("    {def}"));
            }
            let body = if cols.is_empty() {
                "()".to_string()
            } else {
                format!("(\n{}\n)", cols.join(",\n"))
            };
            let mut sql = format!(
                "CREATE {unlogged}{}TABLE {name} {body}",
                if foreign { "FOREIGN " } else { "" }
            );
            let parents = strings(&m, "inherits");
            if !parents.is_empty() {
                let mut list = Vec::new();
                for parent in &parents {
                    let Some(parent) = named(p, "the parent table", parent) else {
                        return;
                    };
                    list.push(parent.to_string());
                }
                let _ = write!(sql, " INHERITS ({})", list.join(", "));
            }
            sql
        };
        if let Some(k) = s(&m, "partkey") {
            let _ = write!(sql, " PARTITION BY {k}");
        }
        let options = strings(&m, "options");
        if !options.is_empty() {
            let _ = write!(sql, " WITH ({})", options.join(", "));
        }
        sql.push(';');
        sql.push_str(&attach);
        if b(&m, "rls") {
            let _ = write!(sql, "\nALTER TABLE {name} ENABLE ROW LEVEL SECURITY;");
        }
        if b(&m, "force_rls") {
            let _ = write!(sql, "\nALTER TABLE {name} FORCE ROW LEVEL SECURITY;");
        }
        // A partition or child table takes NOT NULL and the default of its parent's column;
        // where its own differ, they are set after.
        for (_, c) in Planner::columns_of(p.to, &k.1) {
            let (Some(own), Some(col)) = (Planner::meta(p.to, "column", &c), Member::parse(&c))
            else {
                continue;
            };
            let Some(from_parent) = Planner::parent_columns(p.to, &k.1, super::split_member(&c).1)
                .first()
                .and_then(|pc| Planner::meta(p.to, "column", pc))
            else {
                continue;
            };
            if b(own, "notnull") && !b(from_parent, "notnull") {
                let _ = write!(
                    sql,
                    "\nALTER TABLE {name} ALTER COLUMN {} SET NOT NULL;",
                    col.name
                );
            }
            if own["default"] != from_parent["default"] {
                let _ = match s(own, "default") {
                    Some(d) => write!(
                        sql,
                        "\nALTER TABLE {name} ALTER COLUMN {} SET DEFAULT {d};",
                        col.name
                    ),
                    None => write!(
                        sql,
                        "\nALTER TABLE {name} ALTER COLUMN {} DROP DEFAULT;",
                        col.name
                    ),
                };
            }
        }
        for (_, c) in Planner::columns_of(p.to, &k.1) {
            let storage = Planner::meta(p.to, "column", &c).and_then(|m| s(m, "storage"));
            if let (Some(st), Some(col)) = (storage, Member::parse(&c)) {
                let _ = write!(
                    sql,
                    "\nALTER TABLE {name} ALTER COLUMN {} SET STORAGE {st};",
                    col.name
                );
            }
        }
        p.unit(Op::Create, k, Place::Main, sql);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let foreign = if k.0 == "foreign table" {
            "FOREIGN "
        } else {
            ""
        };
        // A partition of a table that stays is detached first: a foreign key to the parent
        // holds a copy on each of its partitions, which a plain DROP TABLE refuses to drop.
        let detach = Planner::meta(p.from, "rel", &k.1)
            .and_then(|m| s(m, "parent"))
            .filter(|parent| p.to.objects.contains_key(&key("table", parent)))
            .and_then(Name::parse)
            .map(|parent| format!("ALTER TABLE {parent} DETACH PARTITION {name};\n"))
            .unwrap_or_default();
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!("{detach}DROP {foreign}TABLE {name};"),
        )
        .lossy(format!("table {} is dropped with its rows", k.1));
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        if k.0 == "foreign table" {
            p.recreate(k);
            return;
        }
        let (Some(a), Some(z)) = (
            Planner::meta(p.from, "rel", &k.1).cloned(),
            Planner::meta(p.to, "rel", &k.1).cloned(),
        ) else {
            return;
        };
        let Some(name) = p.name(k) else { return };
        if a["partkey"] != z["partkey"] || a["relkind"] != z["relkind"] {
            // PostgreSQL cannot partition a table in place (nor change its partition key): it is
            // made again, with what depends on it; its rows are lost, which is said (refused
            // without --allow-data-loss) with the way to keep them.
            // Its columns come with the new table: steps the walk wrote for them (an added
            // column, a changed type) would repeat or undo that.
            p.units.retain(|u| {
                !(matches!(u.key.0.as_str(), "column" | "column loosened")
                    && super::split_member(&u.key.1).0 == k.1)
            });
            p.recreate(k);
            p.note(format!(
                "table {}: its partitioning changes, which PostgreSQL cannot alter, so it is dropped and made again (its rows are lost); to keep them, write that migration by hand: create the new table under another name, copy the rows, swap the names",
                k.1
            ));
            return;
        }
        let mut sql = Vec::new();
        let mut detach_stops = Vec::new();
        let mut remake = Vec::new();
        // Inheritance: each parent left, then each parent taken.
        if a["inherits"] != z["inherits"] {
            let (was, want) = (strings(&a, "inherits"), strings(&z, "inherits"));
            for parent in was.iter().filter(|t| !want.contains(t)) {
                let Some(parent) = named(p, "the parent table", parent) else {
                    return;
                };
                sql.push(format!("ALTER TABLE {name} NO INHERIT {parent};"));
            }
            for parent in want.iter().filter(|t| !was.contains(t)) {
                let Some(parent) = named(p, "the parent table", parent) else {
                    return;
                };
                sql.push(format!("ALTER TABLE {name} INHERIT {parent};"));
            }
        }
        if a["parent"] != z["parent"] || a["bound"] != z["bound"] {
            if let Some(parent) = s(&a, "parent") {
                let Some(parent) = named(p, "the parent table", parent) else {
                    return;
                };
                sql.push(format!("ALTER TABLE {parent} DETACH PARTITION {name};"));
                let (kept, gone) = detached_copies(p, &k.1);
                detach_stops = kept;
                for g in gone {
                    let Some(sql_drop) = drop_copy(p, &g) else {
                        return;
                    };
                    sql.push(sql_drop);
                }
            }
            if let Some(parent_key) = s(&z, "parent") {
                let Some(parent) = named(p, "the parent table", parent_key) else {
                    return;
                };
                // Its own indexes that match one of the parent's, which the new schema keeps
                // apart: ATTACH PARTITION would attach them, so they are made again after it.
                for index in matching_own_indexes(p, &k.1, parent_key) {
                    let Some(index_name) = p.name(&index) else {
                        return;
                    };
                    sql.push(format!("DROP INDEX {index_name};"));
                    remake.push(index);
                }
                sql.push(format!(
                    "ALTER TABLE {parent} ATTACH PARTITION {name} {};",
                    s(&z, "bound").unwrap_or("DEFAULT")
                ));
            }
        }
        if b(&a, "unlogged") != b(&z, "unlogged") {
            sql.push(format!(
                "ALTER TABLE {name} SET {};",
                if b(&z, "unlogged") {
                    "UNLOGGED"
                } else {
                    "LOGGED"
                }
            ));
        }
        if b(&a, "rls") != b(&z, "rls") {
            sql.push(format!(
                "ALTER TABLE {name} {} ROW LEVEL SECURITY;",
                if b(&z, "rls") { "ENABLE" } else { "DISABLE" }
            ));
        }
        if b(&a, "force_rls") != b(&z, "force_rls") {
            sql.push(format!(
                "ALTER TABLE {name} {}FORCE ROW LEVEL SECURITY;",
                if b(&z, "force_rls") { "" } else { "NO " }
            ));
        }
        if a["options"] != z["options"] {
            sql.extend(storage_parameters(&name, &a, &z));
        }
        // REPLICA IDENTITY (logical replication's row key), after the index it names.
        let mut needs = Vec::new();
        if a["replident"] != z["replident"] || a["replident_index"] != z["replident_index"] {
            let identity = match s(&z, "replident") {
                Some("f") => Some("FULL".to_string()),
                Some("n") => Some("NOTHING".to_string()),
                Some("i") => s(&z, "replident_index")
                    .and_then(|i| {
                        needs.push(key("index", i));
                        Name::parse(i)
                    })
                    .map(|i| format!("USING INDEX {}", i.name)),
                _ => Some("DEFAULT".to_string()),
            };
            match identity {
                // A unit of its own: it comes after the index it names, which itself needs the
                // table (one unit for both would be a cycle).
                Some(identity) => {
                    // ... and before the drop of the index it stops naming.
                    let stops = s(&a, "replident_index")
                        .map(|i| vec![key("index", i)])
                        .unwrap_or_default();
                    p.unit(
                        Op::Alter,
                        &key("replica identity", &k.1),
                        Place::Main,
                        format!("ALTER TABLE {name} REPLICA IDENTITY {identity};"),
                    )
                    .needing(needs)
                    .stopping(stops);
                }
                None => p.note(format!(
                    "table {}: its replica identity index could not be named; set REPLICA IDENTITY by hand",
                    k.1
                )),
            }
        }
        if !sql.is_empty() {
            p.unit(Op::Alter, k, Place::Main, sql.join("\n"))
                .stopping(detach_stops);
        }
        for index in remake {
            p.create(&index);
        }
    }
}

/// An index definition without its name and table: whether it is unique, and from `USING` on.
fn index_shape(def: &str) -> Option<(bool, &str)> {
    Some((
        def.starts_with("CREATE UNIQUE "),
        &def[def.find(" USING ")?..],
    ))
}

/// The indexes of `table` (attached to nothing in either schema) that match an index of
/// `parent` the old schema has already.
fn matching_own_indexes(p: &Planner, table: &str, parent: &str) -> Vec<Key> {
    let of = |cat: &Catalog, t: &str| -> Vec<(String, String)> {
        Planner::indexes_on(cat, t)
            .filter_map(|name| {
                cat.objects
                    .get(&key("index", name))
                    .map(|d| (name.clone(), d.clone()))
            })
            .collect()
    };
    let parents: Vec<String> = of(p.to, parent)
        .into_iter()
        .filter(|(name, def)| p.from.objects.get(&key("index", name)) == Some(def))
        .map(|(_, def)| def)
        .collect();
    of(p.from, table)
        .into_iter()
        .filter(|(name, def)| {
            p.to.objects.get(&key("index", name)) == Some(def)
                && !p.to.objects.contains_key(&key("index attachment", name))
                && !p.from.objects.contains_key(&key("index attachment", name))
                && parents
                    .iter()
                    .any(|pd| index_shape(pd).is_some() && index_shape(pd) == index_shape(def))
        })
        .map(|(name, _)| key("index", &name))
        .collect()
}

/// A partition that is detached keeps its copies of the parent's indexes and keys (they become
/// its own). The parent's indexes and keys those copies are attached to (its detach comes
/// before their drop, so the copies the new schema keeps survive), and the copies the new schema
/// does not have as they are (dropped right after the detach).
fn detached_copies(p: &Planner, table: &str) -> (Vec<Key>, Vec<Key>) {
    let (mut parents, mut gone) = (Vec::new(), Vec::new());
    for index in Planner::indexes_on(p.from, table) {
        let Some(parent) = p.from.objects.get(&key("index attachment", index)) else {
            continue;
        };
        parents.push(key("index", parent));
        parents.extend(Planner::index_constraint(p.from, parent));
        let copy = Planner::index_constraint(p.from, index).unwrap_or_else(|| key("index", index));
        // (One the new schema has otherwise, under the same name, is made again by the walk.)
        if p.to.objects.get(&copy) != p.from.objects.get(&copy) {
            gone.push(copy);
        }
    }
    (parents, gone)
}

/// The statement that drops a detached partition's copy (an index or a key).
fn drop_copy(p: &mut Planner, k: &Key) -> Option<String> {
    if k.0 == "constraint" {
        let m = p.member(k)?;
        Some(format!("ALTER TABLE {} DROP CONSTRAINT {};", m.of, m.name))
    } else {
        let n = p.name(k)?;
        Some(format!("DROP INDEX {n};"))
    }
}

/// `RESET` what the desired table no longer sets, `SET` what it does (server-normalised
/// `name=value` options).
fn storage_parameters(name: &Name, a: &Value, z: &Value) -> Vec<String> {
    let (old, new) = (strings(a, "options"), strings(z, "options"));
    let option_name = |o: &str| o.split('=').next().unwrap_or_default().to_string();
    let reset: Vec<String> = old
        .iter()
        .map(|o| option_name(o))
        .filter(|n| !new.iter().any(|o| option_name(o) == *n))
        .collect();
    let mut sql = Vec::new();
    if !reset.is_empty() {
        sql.push(format!("ALTER TABLE {name} RESET ({});", reset.join(", ")));
    }
    if !new.is_empty() {
        sql.push(format!("ALTER TABLE {name} SET ({});", new.join(", ")));
    }
    sql
}

/// What the plan asks about tables (moved here from the walk, issue #41).
impl Planner<'_> {
    /// A relation's kind word in `cat` (`table`, `view` ...), if `name` is one.
    pub(super) fn relation_kind(cat: &Catalog, name: &str) -> Option<&'static str> {
        RELATION_KINDS
            .iter()
            .find(|k| cat.objects.contains_key(&key(k, name)))
            .copied()
    }

    /// The table a column, constraint, trigger, policy or index belongs to (its key name).
    pub(super) fn owner_table(cat: &Catalog, k: &Key) -> Option<String> {
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        match kind {
            "column" => {
                Self::meta(cat, "column", name).and_then(|m| s(m, "table").map(str::to_string))
            }
            "constraint" | "trigger" | "policy" => {
                Self::meta(cat, kind, name).and_then(|m| s(m, "on").map(str::to_string))
            }
            "index" => Self::index_table(cat, name).map(str::to_string),
            _ => None,
        }
    }

    /// The tables `table` takes columns from: its partitioned parent, or what it INHERITS.
    pub(super) fn parents(cat: &Catalog, table: &str) -> Vec<String> {
        Self::meta(cat, "rel", table)
            .map(|m| s(m, "parent").map_or_else(|| strings(m, "inherits"), |t| vec![t.to_string()]))
            .unwrap_or_default()
    }

    /// The tables that take columns from `table`: its partitions and its INHERITS children.
    pub(super) fn children(cat: &Catalog, table: &str) -> Vec<String> {
        cat.meta
            .keys()
            .filter(|(kind, name)| {
                kind == "rel" && Self::parents(cat, name).iter().any(|p| p == table)
            })
            .map(|(_, name)| name.clone())
            .collect()
    }

    pub(super) fn is_partitioned(cat: &Catalog, table: &str) -> bool {
        Self::meta(cat, "rel", table).and_then(|m| s(m, "relkind")) == Some("p")
    }

    pub(super) fn table_is_new(&self, table: &str) -> bool {
        !RELATION_KINDS
            .iter()
            .any(|k| self.from.objects.contains_key(&key(k, table)))
    }

    pub(super) fn columns_of(cat: &Catalog, table: &str) -> Vec<(i64, String)> {
        let mut cols: Vec<(i64, String)> = cat
            .meta
            .iter()
            .filter(|((k, _), m)| k == "column" && s(m, "table") == Some(table))
            .map(|((_, n), m)| (m["num"].as_i64().unwrap_or(0), n.clone()))
            .collect();
        cols.sort();
        cols
    }

    /// A relation's partitioned parent in `cat`, if it is a partition.
    pub(super) fn partition_of<'c>(cat: &'c Catalog, table: &str) -> Option<&'c str> {
        Self::meta(cat, "rel", table).and_then(|m| s(m, "parent"))
    }

    /// Whether a table is attached, detached or moved to another parent by this plan.
    pub(super) fn changes_parent(&self, table: &str) -> bool {
        Self::partition_of(self.from, table) != Self::partition_of(self.to, table)
    }

    pub(super) fn parent_dropped(&self, table: &str) -> bool {
        let mut current = table.to_string();
        for _ in 0..32 {
            let Some(parent) = Self::partition_of(self.from, &current).map(str::to_string) else {
                return false;
            };
            if !self.to.objects.contains_key(&key("table", &parent)) {
                return true;
            }
            current = parent;
        }
        false
    }

    /// Whether the table a constraint or index is on is detached from its parent (or moved to
    /// another) in this plan: it keeps its copies of the parent's keys and indexes.
    pub(super) fn detached(&self, k: &Key) -> bool {
        Self::owner_table(self.from, k)
            .is_some_and(|t| Self::partition_of(self.from, &t).is_some() && self.changes_parent(&t))
    }
}
