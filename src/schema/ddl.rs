//! From two catalogs to the DDL that turns one into the other. Pure: no I/O.
//!
//! Every difference becomes one or more *units* (a statement or a few that belong together),
//! each creating, changing or dropping one object. Units are ordered by what the objects need:
//! `pg_depend` as read into [`Catalog::deps`] on both sides (a drop waits for what depends on the
//! object to go first; a create waits for what it needs), with a phase per kind as the tie-break
//! (schemas, extensions, types, functions, sequences, tables, columns, constraints, indexes,
//! foreign keys, views, triggers, policies, comments, privileges, owners), so the result reads the
//! way an expert writes it. Objects that PostgreSQL makes by itself (a partition's copy of its
//! parent's index, constraint or trigger; an identity column's sequence; a column's NOT NULL
//! constraint on 18) are never written, and what goes with a dropped table is not dropped twice.
//!
//! Where an expert splits work out of the one transaction, so does this: an index on a table
//! that already exists is built `CONCURRENTLY` in a `no-transaction` script that runs after
//! ([`Place::Post`]), a foreign key or check added to an existing table is added `NOT VALID` and
//! validated there, and enum values are added in a script of their own before ([`Place::Pre`]).
//!
//! What loses data (a dropped table or column, a narrowing type change, a removed enum value) is
//! listed in [`Plan::lossy`]; guesses (a column renamed) and what cannot be reached (column
//! order) in [`Plan::notes`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::catalog::Catalog;
use crate::db::quote_literal;

type Key = (String, String);

/// Which script a unit belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// A `no-transaction` script before the main one (enum values).
    Pre,
    /// The one-transaction script.
    Main,
    /// A `no-transaction` script after the main one (concurrent index builds, validations).
    Post,
}

/// Which way the plan goes: up runs pre, main, post; down runs post, main, pre (the reverse
/// versions), so a down's post units may not need anything its main units make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// One statement group, with the object it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub place: Place,
    pub object: String,
    pub sql: String,
}

/// The ordered DDL, and what a reviewer must know about it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Steps that lose data, named (refused unless the caller allows it).
    pub lossy: Vec<String>,
    /// Guesses and limits worth reading (a rename guessed, a column order not reachable).
    pub notes: Vec<String>,
}

impl Plan {
    /// Nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The SQL of one script, `None` when it has nothing.
    #[must_use]
    pub fn script(&self, place: Place) -> Option<String> {
        let parts: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.place == place)
            .map(|s| s.sql.as_str())
            .collect();
        if parts.is_empty() {
            return None;
        }
        let mut text = parts.join("\n");
        if place == Place::Main && text.contains("FUNCTION") {
            // As pg_dump does: bodies are checked when called, so order among functions and
            // the tables their bodies read does not matter.
            text = format!("SET LOCAL check_function_bodies = off;\n\n{text}");
        }
        Some(text)
    }
}

/// What a unit does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Drop,
    Alter,
    Create,
}

#[derive(Debug, Clone)]
struct Unit {
    op: Op,
    key: Key,
    place: Place,
    sql: String,
    /// Extra keys this unit needs created first (beyond `to.deps[key]`).
    needs: Vec<Key>,
}

/// How to write the plan.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub direction: Direction,
    /// Everything in the one transaction (no concurrent builds, no `NOT VALID` split): for
    /// `migrate baseline --reconcile`, which must change all or nothing.
    pub one_transaction: bool,
    /// Take a column that disappears while a same-shaped one appears for a rename (off for
    /// adoption, where a wrong guess would move data into another column's meaning).
    pub guess_renames: bool,
}

/// The DDL that turns `from` into `to`. `role` runs it (new objects are its own).
#[must_use]
pub fn plan(from: &Catalog, to: &Catalog, role: &str, direction: Direction) -> Plan {
    plan_with(
        from,
        to,
        role,
        Options {
            direction,
            one_transaction: false,
            guess_renames: true,
        },
    )
}

/// As [`plan`], with [`Options`].
#[must_use]
pub fn plan_with(from: &Catalog, to: &Catalog, role: &str, options: Options) -> Plan {
    let direction = options.direction;
    Planner {
        from,
        to,
        role,
        direction,
        options,
        units: Vec::new(),
        lossy: Vec::new(),
        notes: Vec::new(),
        renamed: BTreeMap::new(),
    }
    .run()
}

struct Planner<'a> {
    from: &'a Catalog,
    to: &'a Catalog,
    role: &'a str,
    direction: Direction,
    options: Options,
    units: Vec<Unit>,
    lossy: Vec<String>,
    notes: Vec<String>,
    /// Column renames guessed: new column key -> old column key.
    renamed: BTreeMap<Key, Key>,
}

fn key(kind: &str, name: &str) -> Key {
    (kind.to_string(), name.to_string())
}

fn s<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field).and_then(Value::as_str)
}

fn b(v: &Value, field: &str) -> bool {
    v.get(field).and_then(Value::as_bool).unwrap_or(false)
}

/// An identifier as PostgreSQL's `quote_ident` writes it (role names come unquoted).
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain || name == "PUBLIC" {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `table.column` key -> (table, column), splitting at the last unquoted dot.
#[must_use]
pub fn split_member(name: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut at = None;
    for (i, c) in name.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => at = Some(i),
            _ => {}
        }
    }
    at.map_or(("", name), |i| (&name[..i], &name[i + 1..]))
}

const RELATION_KINDS: [&str; 5] = [
    "table",
    "view",
    "materialized view",
    "sequence",
    "foreign table",
];

impl Planner<'_> {
    fn run(mut self) -> Plan {
        if self.options.guess_renames {
            self.guess_column_renames();
        }
        let kinds: BTreeSet<&str> = self
            .from
            .objects
            .keys()
            .chain(self.to.objects.keys())
            .map(|(k, _)| k.as_str())
            .collect();
        // Schemas and extensions first, so types and tables see them.
        for kind in kinds {
            let names: BTreeSet<&String> = self
                .from
                .objects
                .keys()
                .chain(self.to.objects.keys())
                .filter(|(k, _)| k == kind)
                .map(|(_, n)| n)
                .collect();
            for name in names {
                let k = key(kind, name);
                if init_owned(&k) {
                    continue;
                }
                let before = self.from.objects.get(&k);
                let after = self.to.objects.get(&k);
                match (before, after) {
                    (None, Some(_)) => self.create(&k),
                    (Some(_), None) => self.drop(&k),
                    (Some(x), Some(y)) if x != y => self.change(&k),
                    _ => {}
                }
            }
        }
        self.recreate_dependents();
        let steps = self.order();
        Plan {
            steps,
            lossy: self.lossy,
            notes: self.notes,
        }
    }

    fn meta<'c>(cat: &'c Catalog, kind: &str, name: &str) -> Option<&'c Value> {
        cat.meta.get(&key(kind, name))
    }

    fn push(&mut self, op: Op, k: &Key, place: Place, sql: String) {
        self.units.push(Unit {
            op,
            key: k.clone(),
            place,
            sql,
            needs: Vec::new(),
        });
    }

    fn push_needing(&mut self, op: Op, k: &Key, place: Place, sql: String, needs: Vec<Key>) {
        self.units.push(Unit {
            op,
            key: k.clone(),
            place,
            sql,
            needs,
        });
    }

    /// The table a column, constraint, trigger, policy or index belongs to.
    fn owner_table(cat: &Catalog, k: &Key) -> Option<String> {
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        match kind {
            "column" => {
                Self::meta(cat, "column", name).and_then(|m| s(m, "table").map(str::to_string))
            }
            "constraint" | "trigger" | "policy" => {
                Self::meta(cat, kind, name).and_then(|m| s(m, "on").map(str::to_string))
            }
            "index" => {
                Self::meta(cat, "rel", name).and_then(|m| s(m, "index_table").map(str::to_string))
            }
            _ => None,
        }
    }

    /// A relation's kind word in `cat` (`table`, `view` ...), if `name` is one.
    fn relation_kind(cat: &Catalog, name: &str) -> Option<&'static str> {
        RELATION_KINDS
            .iter()
            .find(|k| cat.objects.contains_key(&key(k, name)))
            .copied()
    }

    fn is_partitioned(cat: &Catalog, table: &str) -> bool {
        Self::meta(cat, "rel", table).and_then(|m| s(m, "relkind")) == Some("p")
    }

    /// Made by PostgreSQL itself: not written, not dropped.
    fn automatic(cat: &Catalog, k: &Key) -> bool {
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        match kind {
            "constraint" => Self::meta(cat, "constraint", name)
                .is_some_and(|m| b(m, "inherited") || s(m, "type") == Some("n")),
            "trigger" => Self::meta(cat, "trigger", name).is_some_and(|m| b(m, "inherited")),
            "index" => Self::meta(cat, "rel", name)
                .is_some_and(|m| b(m, "index_partition") || !m["index_constraint"].is_null()),
            "sequence" => Self::meta(cat, "rel", name).is_some_and(|m| b(m, "identity_seq")),
            "column" => Self::meta(cat, "column", name).is_some_and(|m| !b(m, "local")),
            _ => false,
        }
    }

    /// Dropped with something else that is dropped (a table takes its columns, indexes ...; a
    /// partitioned table its partitions; a column its sequence).
    fn goes_with_drop(&self, k: &Key) -> bool {
        let cat = self.from;
        let dropped = |kind: &str, name: &str| {
            cat.objects.contains_key(&key(kind, name))
                && !self.to.objects.contains_key(&key(kind, name))
        };
        let table_dropped =
            |t: &str| RELATION_KINDS.iter().any(|rk| dropped(rk, t)) || self.parent_dropped(t);
        // A foreign key to another table is dropped on its own first: two tables that point at
        // each other could not otherwise be dropped one after the other.
        let foreign_key = k.0 == "constraint"
            && Self::meta(cat, "constraint", &k.1).and_then(|m| s(m, "type")) == Some("f");
        if let Some(t) = Self::owner_table(cat, k)
            && table_dropped(&t)
            && !foreign_key
        {
            return true;
        }
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        match kind {
            "table" | "foreign table" => self.parent_dropped(name),
            "sequence" => Self::meta(cat, "sequence", name)
                .and_then(|m| s(m, "owned_by"))
                .is_some_and(|col| {
                    let (t, _) = split_member(col);
                    table_dropped(t) || dropped("column", col)
                }),
            "constraint" if name.starts_with("domain ") => {
                let (d, _) = split_member(&name["domain ".len()..]);
                dropped("type", d)
            }
            "comment" | "privileges" | "owner" => {
                Self::target_of(cat, kind, name).is_some_and(|(obj, _)| {
                    !self.to.objects.contains_key(&obj) && cat.objects.contains_key(&obj)
                        || Self::owner_table(cat, &obj).is_some_and(|t| table_dropped(&t))
                        || (obj.0 == "table" && self.parent_dropped(&obj.1))
                })
            }
            _ => false,
        }
    }

    fn parent_dropped(&self, table: &str) -> bool {
        let mut current = table.to_string();
        for _ in 0..32 {
            let Some(parent) = Self::meta(self.from, "rel", &current)
                .and_then(|m| s(m, "parent"))
                .map(str::to_string)
            else {
                return false;
            };
            if !self.to.objects.contains_key(&key("table", &parent)) {
                return true;
            }
            current = parent;
        }
        false
    }

    /// Created together with something else that is created (a new table's columns).
    fn comes_with_create(&self, k: &Key) -> bool {
        if k.0 == "column"
            && let Some(t) = Self::owner_table(self.to, k)
        {
            return !self.from.objects.contains_key(&key("table", &t))
                && !self.from.objects.contains_key(&key("foreign table", &t));
        }
        false
    }

    // ---------------------------------------------------------------- renames

    /// A column that disappears while one with the same definition appears in the same table
    /// is taken for a rename (and said so).
    fn guess_column_renames(&mut self) {
        let cols = |cat: &Catalog| -> BTreeSet<String> {
            cat.objects
                .keys()
                .filter(|(k, _)| k == "column")
                .map(|(_, n)| n.clone())
                .collect()
        };
        let (before, after) = (cols(self.from), cols(self.to));
        let gone: Vec<&String> = before.difference(&after).collect();
        let new: Vec<&String> = after.difference(&before).collect();
        let shape = |cat: &Catalog, name: &str| {
            Self::meta(cat, "column", name).map(|m| {
                let mut m = m.clone();
                for f in ["num", "name"] {
                    m.as_object_mut().map(|o| o.remove(f));
                }
                m
            })
        };
        for old in &gone {
            let (table, _) = split_member(old);
            if !self.to.objects.contains_key(&key("table", table)) {
                continue;
            }
            let old_shape = shape(self.from, old);
            let same = |n: &&&String| split_member(n).0 == table && shape(self.to, n) == old_shape;
            let candidates: Vec<&&String> = new.iter().filter(same).collect();
            let rivals = gone
                .iter()
                .filter(|g| split_member(g).0 == table && shape(self.from, g) == old_shape)
                .count();
            if let ([one], 1) = (candidates.as_slice(), rivals) {
                self.renamed.insert(key("column", one), key("column", old));
            }
        }
        for (new, old) in self.renamed.clone() {
            let (table, from_col) = split_member(&old.1);
            let (_, to_col) = split_member(&new.1);
            self.notes.push(format!(
                "guessed a rename: column {} disappears and {} with the same definition appears, so the migration renames it (edit to DROP and ADD if it is not the same data)",
                old.1, new.1
            ));
            self.push(
                Op::Alter,
                &new,
                Place::Main,
                format!("ALTER TABLE {table} RENAME COLUMN {from_col} TO {to_col};"),
            );
        }
    }

    fn is_renamed_from(&self, old: &Key) -> bool {
        self.renamed.values().any(|o| o == old)
    }

    // ---------------------------------------------------------------- create

    fn create(&mut self, k: &Key) {
        if Self::automatic(self.to, k) || self.comes_with_create(k) || self.renamed.contains_key(k)
        {
            return;
        }
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        let def = self.to.objects[k].clone();
        match kind {
            "schema" => self.push(Op::Create, k, Place::Main, format!("CREATE SCHEMA {name};")),
            "extension" => {
                let schema = def.split(" SCHEMA ").nth(1).unwrap_or("public");
                self.push(
                    Op::Create,
                    k,
                    Place::Main,
                    format!("CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema};"),
                );
            }
            "type" => {
                let sql = self.create_type(name);
                self.push(Op::Create, k, Place::Main, sql);
            }
            "function" | "procedure" => {
                self.push(Op::Create, k, Place::Main, format!("{};", def.trim_end()));
            }
            "aggregate" => {
                let sql = self.create_aggregate(name);
                self.push(Op::Create, k, Place::Main, sql);
            }
            "sequence" => self.create_sequence(k),
            "table" | "foreign table" => {
                let sql = self.create_table(name);
                self.push(Op::Create, k, Place::Main, sql);
            }
            "column" => {
                let (table, _) = split_member(name);
                let sql = format!(
                    "ALTER TABLE {table} ADD COLUMN {};",
                    Self::column_def(self.to, name)
                );
                self.column_order_note(name);
                self.push(Op::Create, k, Place::Main, sql);
            }
            "view" | "materialized view" => {
                let sql = self.create_view(kind, name);
                self.push(Op::Create, k, Place::Main, sql);
            }
            "constraint" => self.create_constraint(k, &def),
            "index" => self.create_index(k, &def),
            "trigger" => {
                let mut sql = format!("{};", trigger_body(&def));
                if let Some(m) = Self::meta(self.to, "trigger", name)
                    && s(m, "enabled").is_some_and(|e| e != "O")
                {
                    let _ = write!(sql, "\n{}", trigger_state(m));
                }
                self.push(Op::Create, k, Place::Main, sql);
            }
            "policy" => {
                let (on, pol) = split_member(name);
                self.push(
                    Op::Create,
                    k,
                    Place::Main,
                    format!("CREATE POLICY {pol} ON {on} AS {};", quote_roles(&def)),
                );
            }
            "comment" => self.comment(k, Some(&def)),
            "privileges" => self.privileges(k),
            "owner" => {
                if def != self.role {
                    self.owner(k, &def);
                }
            }
            "publication" => self.notes.push(format!(
                "publication {name} is not written by the tool: add CREATE PUBLICATION by hand"
            )),
            _ => self.notes.push(format!(
                "{kind} {name} is not written by the tool: add it by hand"
            )),
        }
    }

    fn create_type(&self, name: &str) -> String {
        let m = Self::meta(self.to, "type", name)
            .cloned()
            .unwrap_or(Value::Null);
        match s(&m, "typtype") {
            Some("e") => format!("CREATE TYPE {name} AS ENUM ({});", enum_list(&m)),
            Some("d") => {
                let mut sql = format!(
                    "CREATE DOMAIN {name} AS {}",
                    s(&m, "base").unwrap_or("text")
                );
                if let Some(c) = s(&m, "collate") {
                    let _ = write!(sql, " COLLATE {c}");
                }
                if let Some(d) = s(&m, "default") {
                    let _ = write!(sql, " DEFAULT {d}");
                }
                if b(&m, "notnull") {
                    sql.push_str(" NOT NULL");
                }
                sql + ";"
            }
            Some("r") => format!(
                "CREATE TYPE {name} AS RANGE (SUBTYPE = {});",
                s(&m, "subtype").unwrap_or("text")
            ),
            _ => format!(
                "CREATE TYPE {name} AS ({});",
                m["attributes"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            ),
        }
    }

    fn create_aggregate(&self, name: &str) -> String {
        let m = Self::meta(self.to, "routine", name)
            .cloned()
            .unwrap_or(Value::Null);
        let bare = name.split('(').next().unwrap_or(name);
        let mut parts = vec![
            format!("SFUNC = {}", s(&m, "sfunc").unwrap_or("")),
            format!("STYPE = {}", s(&m, "stype").unwrap_or("")),
        ];
        if let Some(f) = s(&m, "finalfunc") {
            parts.push(format!("FINALFUNC = {f}"));
        }
        if let Some(f) = s(&m, "combinefunc") {
            parts.push(format!("COMBINEFUNC = {f}"));
        }
        if let Some(i) = s(&m, "initcond") {
            parts.push(format!("INITCOND = {}", quote_literal(i)));
        }
        if let Some(o) = s(&m, "sortop") {
            parts.push(format!("SORTOP = OPERATOR({o})"));
        }
        match s(&m, "parallel") {
            Some("s") => parts.push("PARALLEL = SAFE".into()),
            Some("r") => parts.push("PARALLEL = RESTRICTED".into()),
            _ => {}
        }
        format!(
            "CREATE AGGREGATE {bare}({}) ({});",
            s(&m, "arguments").unwrap_or(""),
            parts.join(", ")
        )
    }

    fn sequence_options(m: &Value) -> String {
        format!(
            "AS {} START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {}{}",
            s(m, "type").unwrap_or("bigint"),
            s(m, "start").unwrap_or("1"),
            s(m, "increment").unwrap_or("1"),
            s(m, "min").unwrap_or("1"),
            s(m, "max").unwrap_or("9223372036854775807"),
            s(m, "cache").unwrap_or("1"),
            if b(m, "cycle") { " CYCLE" } else { " NO CYCLE" }
        )
    }

    fn create_sequence(&mut self, k: &Key) {
        let name = k.1.clone();
        let m = Self::meta(self.to, "sequence", &name)
            .cloned()
            .unwrap_or(Value::Null);
        self.push(
            Op::Create,
            k,
            Place::Main,
            format!("CREATE SEQUENCE {name} {};", Self::sequence_options(&m)),
        );
        if let Some(col) = s(&m, "owned_by") {
            let (table, _) = split_member(col);
            self.push_needing(
                Op::Create,
                &key("sequence owned", &name),
                Place::Main,
                format!("ALTER SEQUENCE {name} OWNED BY {col};"),
                vec![
                    key("sequence", &name),
                    key("table", table),
                    key("column", col),
                ],
            );
        }
    }

    fn column_def(cat: &Catalog, name: &str) -> String {
        let m = Self::meta(cat, "column", name)
            .cloned()
            .unwrap_or(Value::Null);
        let mut sql = format!(
            "{} {}",
            s(&m, "name").unwrap_or(split_member(name).1),
            s(&m, "type").unwrap_or("text")
        );
        if let Some(c) = s(&m, "collate") {
            let _ = write!(sql, " COLLATE {c}");
        }
        if let Some(g) = s(&m, "generated") {
            let _ = write!(sql, " GENERATED ALWAYS AS ({g}) STORED");
        } else if let Some(d) = s(&m, "default") {
            let _ = write!(sql, " DEFAULT {d}");
        }
        if let Some(i) = s(&m, "identity") {
            let _ = write!(sql, " GENERATED {i} AS IDENTITY");
        }
        if b(&m, "notnull") {
            sql.push_str(" NOT NULL");
        }
        sql
    }

    fn columns_of(cat: &Catalog, table: &str) -> Vec<(i64, String)> {
        let mut cols: Vec<(i64, String)> = cat
            .meta
            .iter()
            .filter(|((k, _), m)| k == "column" && s(m, "table") == Some(table))
            .map(|((_, n), m)| (m["num"].as_i64().unwrap_or(0), n.clone()))
            .collect();
        cols.sort();
        cols
    }

    fn create_table(&mut self, name: &str) -> String {
        let m = Self::meta(self.to, "rel", name)
            .cloned()
            .unwrap_or(Value::Null);
        let unlogged = if b(&m, "unlogged") { "UNLOGGED " } else { "" };
        let foreign = self.to.objects.contains_key(&key("foreign table", name));
        let mut sql = if let Some(parent) = s(&m, "parent") {
            format!(
                "CREATE {unlogged}TABLE {name} PARTITION OF {parent} {}",
                s(&m, "bound").unwrap_or("DEFAULT")
            )
        } else {
            let cols: Vec<String> = Self::columns_of(self.to, name)
                .into_iter()
                .filter(|(_, c)| !Self::automatic(self.to, &key("column", c)))
                .map(|(_, c)| format!("    {}", Self::column_def(self.to, &c)))
                .collect();
            let body = if cols.is_empty() {
                "()".to_string()
            } else {
                format!("(\n{}\n)", cols.join(",\n"))
            };
            let mut sql = format!(
                "CREATE {unlogged}{}TABLE {name} {body}",
                if foreign { "FOREIGN " } else { "" }
            );
            if let Some(parents) = m["inherits"].as_array() {
                let list: Vec<&str> = parents.iter().filter_map(Value::as_str).collect();
                let _ = write!(sql, " INHERITS ({})", list.join(", "));
            }
            sql
        };
        if let Some(k) = s(&m, "partkey") {
            let _ = write!(sql, " PARTITION BY {k}");
        }
        if let Some(opts) = m["options"].as_array() {
            let list: Vec<&str> = opts.iter().filter_map(Value::as_str).collect();
            let _ = write!(sql, " WITH ({})", list.join(", "));
        }
        sql.push(';');
        if b(&m, "rls") {
            let _ = write!(sql, "\nALTER TABLE {name} ENABLE ROW LEVEL SECURITY;");
        }
        if b(&m, "force_rls") {
            let _ = write!(sql, "\nALTER TABLE {name} FORCE ROW LEVEL SECURITY;");
        }
        for (_, c) in Self::columns_of(self.to, name) {
            if let Some(st) = Self::meta(self.to, "column", &c).and_then(|m| s(m, "storage")) {
                let (_, col) = split_member(&c);
                let _ = write!(
                    sql,
                    "\nALTER TABLE {name} ALTER COLUMN {col} SET STORAGE {st};"
                );
            }
        }
        sql
    }

    fn column_order_note(&mut self, name: &str) {
        let (table, _) = split_member(name);
        let num = Self::meta(self.to, "column", name).and_then(|m| m["num"].as_i64());
        let later = Self::columns_of(self.to, table)
            .iter()
            .any(|(n, c)| Some(*n) > num && self.from.objects.contains_key(&key("column", c)));
        if later {
            self.notes.push(format!(
                "column {name} is added last: PostgreSQL cannot put a new column between existing ones (the desired schema has it earlier)"
            ));
        }
    }

    fn create_view(&self, kind: &str, name: &str) -> String {
        let m = Self::meta(self.to, "rel", name)
            .cloned()
            .unwrap_or(Value::Null);
        let def = s(&m, "viewdef").unwrap_or("").trim().trim_end_matches(';');
        let with = m["options"]
            .as_array()
            .map(|o| {
                format!(
                    " WITH ({})",
                    o.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .unwrap_or_default();
        if kind == "view" {
            format!("CREATE VIEW {name}{with} AS\n{def};")
        } else {
            format!("CREATE MATERIALIZED VIEW {name}{with} AS\n{def}\nWITH DATA;")
        }
    }

    fn table_is_new(&self, table: &str) -> bool {
        !RELATION_KINDS
            .iter()
            .any(|k| self.from.objects.contains_key(&key(k, table)))
    }

    fn create_constraint(&mut self, k: &Key, def: &str) {
        let name = &k.1;
        if let Some(domain) = name.strip_prefix("domain ") {
            let (d, c) = split_member(domain);
            self.push(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER DOMAIN {d} ADD CONSTRAINT {c} {def};"),
            );
            return;
        }
        let (table, con) = split_member(name);
        let m = Self::meta(self.to, "constraint", name)
            .cloned()
            .unwrap_or(Value::Null);
        let kind = s(&m, "type").unwrap_or("");
        let existing = !self.table_is_new(table) && !Self::is_partitioned(self.to, table);
        if self.direction == Direction::Up
            && !self.options.one_transaction
            && existing
            && matches!(kind, "f" | "c")
            && !def.ends_with("NOT VALID")
        {
            // Added without a full-table scan under ACCESS EXCLUSIVE; checked afterwards.
            self.push(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER TABLE {table} ADD CONSTRAINT {con} {def} NOT VALID;"),
            );
            self.push_needing(
                Op::Create,
                &key("validate", name),
                Place::Post,
                format!("ALTER TABLE {table} VALIDATE CONSTRAINT {con};"),
                vec![k.clone()],
            );
        } else {
            self.push(
                Op::Create,
                k,
                Place::Main,
                format!("ALTER TABLE {table} ADD CONSTRAINT {con} {def};"),
            );
        }
    }

    fn create_index(&mut self, k: &Key, def: &str) {
        let def = def.replacen(" ON ONLY ", " ON ", 1);
        let table = Self::owner_table(self.to, k).unwrap_or_default();
        if self.concurrent_ok(&table) {
            let sql = def.replacen(" INDEX ", " INDEX CONCURRENTLY IF NOT EXISTS ", 1);
            self.push(Op::Create, k, Place::Post, format!("{sql};"));
        } else {
            self.push(Op::Create, k, Place::Main, format!("{def};"));
        }
    }

    /// An index on a table that exists before and after (and is not partitioned) is built or
    /// dropped concurrently, outside the transaction.
    fn concurrent_ok(&self, table: &str) -> bool {
        !self.options.one_transaction
            && !self.table_is_new(table)
            && RELATION_KINDS
                .iter()
                .any(|k| self.to.objects.contains_key(&key(k, table)))
            && !Self::is_partitioned(self.to, table)
            && !Self::is_partitioned(self.from, table)
    }

    // ---------------------------------------------------------------- drop

    fn drop(&mut self, k: &Key) {
        if Self::automatic(self.from, k) || self.goes_with_drop(k) || self.is_renamed_from(k) {
            return;
        }
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        let sql = match kind {
            "schema" => {
                if name == "public" {
                    self.notes
                        .push("schema public is kept, though the desired schema has none".into());
                    return;
                }
                format!("DROP SCHEMA {name};")
            }
            "extension" => format!("DROP EXTENSION {name};"),
            "type" => {
                let domain =
                    Self::meta(self.from, "type", name).and_then(|m| s(m, "typtype")) == Some("d");
                format!("DROP {} {name};", if domain { "DOMAIN" } else { "TYPE" })
            }
            "function" => format!("DROP FUNCTION {name};"),
            "procedure" => format!("DROP PROCEDURE {name};"),
            "aggregate" => format!("DROP AGGREGATE {name};"),
            "sequence" => {
                self.lossy.push(format!(
                    "sequence {name} is dropped (its current value is lost)"
                ));
                format!("DROP SEQUENCE {name};")
            }
            "table" | "foreign table" => {
                self.lossy
                    .push(format!("table {name} is dropped with its rows"));
                format!(
                    "DROP {}TABLE {name};",
                    if kind == "foreign table" {
                        "FOREIGN "
                    } else {
                        ""
                    }
                )
            }
            "column" => {
                let (table, col) = split_member(name);
                self.lossy
                    .push(format!("column {name} is dropped with its values"));
                format!("ALTER TABLE {table} DROP COLUMN {col};")
            }
            "view" => format!("DROP VIEW {name};"),
            "materialized view" => format!("DROP MATERIALIZED VIEW {name};"),
            "constraint" => {
                if let Some(domain) = name.strip_prefix("domain ") {
                    let (d, c) = split_member(domain);
                    format!("ALTER DOMAIN {d} DROP CONSTRAINT {c};")
                } else {
                    let (table, con) = split_member(name);
                    format!("ALTER TABLE {table} DROP CONSTRAINT {con};")
                }
            }
            "index" => {
                let table = Self::owner_table(self.from, k).unwrap_or_default();
                if self.concurrent_ok(&table) {
                    self.push(
                        Op::Drop,
                        k,
                        Place::Post,
                        format!("DROP INDEX CONCURRENTLY IF EXISTS {name};"),
                    );
                    return;
                }
                format!("DROP INDEX {name};")
            }
            "trigger" | "policy" => {
                let (table, obj) = split_member(name);
                format!("DROP {} {obj} ON {table};", kind.to_uppercase())
            }
            "comment" => {
                self.comment(k, None);
                return;
            }
            "privileges" => {
                self.privileges(k);
                return;
            }
            // The owner goes with the object; an owner entry never disappears alone.
            // The owner goes with the object; an owner entry never disappears alone.
            _ => return,
        };
        self.push(Op::Drop, k, Place::Main, sql);
    }

    // ---------------------------------------------------------------- change

    fn change(&mut self, k: &Key) {
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        match kind {
            "column" => self.change_column(k),
            "type" => self.change_type(k),
            "table" => self.change_table(k),
            "sequence" => {
                let m = Self::meta(self.to, "sequence", name)
                    .cloned()
                    .unwrap_or(Value::Null);
                if Self::automatic(self.to, k) {
                    return;
                }
                let owned = s(&m, "owned_by").map_or("NONE".to_string(), str::to_string);
                self.push(
                    Op::Alter,
                    k,
                    Place::Main,
                    format!(
                        "ALTER SEQUENCE {name} {};\nALTER SEQUENCE {name} OWNED BY {owned};",
                        Self::sequence_options(&m).replacen("START WITH", "START", 1)
                    ),
                );
            }
            "function" | "procedure" => {
                let result = |cat: &Catalog| {
                    Self::meta(cat, "routine", name)
                        .and_then(|m| s(m, "result").map(str::to_string))
                };
                if result(self.from) == result(self.to) {
                    let def = self.to.objects[k].clone();
                    self.push(Op::Alter, k, Place::Main, format!("{};", def.trim_end()));
                } else {
                    self.recreate(k);
                }
            }
            "extension" => {
                let def = &self.to.objects[k];
                let version = def
                    .strip_prefix("VERSION ")
                    .and_then(|v| v.split(" SCHEMA ").next())
                    .unwrap_or("");
                let schema = def.split(" SCHEMA ").nth(1).unwrap_or("public");
                let old_schema = self.from.objects[k]
                    .split(" SCHEMA ")
                    .nth(1)
                    .unwrap_or("public");
                let mut sql = format!(
                    "ALTER EXTENSION {name} UPDATE TO {};",
                    quote_literal(version)
                );
                if schema != old_schema {
                    let _ = write!(sql, "\nALTER EXTENSION {name} SET SCHEMA {schema};");
                }
                self.push(Op::Alter, k, Place::Main, sql);
            }
            "trigger" => {
                if trigger_body(&self.from.objects[k]) == trigger_body(&self.to.objects[k]) {
                    let m = Self::meta(self.to, "trigger", name)
                        .cloned()
                        .unwrap_or(Value::Null);
                    self.push(Op::Alter, k, Place::Main, trigger_state(&m));
                } else {
                    self.recreate(k);
                }
            }
            "comment" => {
                let def = self.to.objects[k].clone();
                self.comment(k, Some(&def));
            }
            "privileges" => self.privileges(k),
            "owner" => {
                let def = self.to.objects[k].clone();
                self.owner(k, &def);
            }
            "publication" => self.notes.push(format!(
                "publication {name} differs: change it by hand (ALTER PUBLICATION)"
            )),
            "schema" => {}
            _ => self.recreate(k),
        }
    }

    /// Drop and create again (views, constraints, indexes, policies, routines whose result
    /// type changes ...).
    fn recreate(&mut self, k: &Key) {
        self.drop(k);
        self.create(k);
        self.reapply_attached(k);
    }

    /// A dropped and re-made object loses its grants, comment and owner: write them again
    /// (those that differ are written by the main loop anyway).
    fn reapply_attached(&mut self, k: &Key) {
        let attached: Vec<(Key, String)> = self
            .to
            .objects
            .iter()
            .filter(|((kind, _), _)| matches!(kind.as_str(), "privileges" | "comment" | "owner"))
            .filter(|(ek, v)| self.from.objects.get(*ek) == Some(*v))
            .filter(|((kind, name), _)| {
                Self::target_of(self.to, kind, name).is_some_and(|(obj, _)| &obj == k)
            })
            .map(|(ek, v)| (ek.clone(), v.clone()))
            .collect();
        for (ek, v) in attached {
            match ek.0.as_str() {
                "privileges" => self.privileges(&ek),
                "comment" => self.comment(&ek, Some(&v)),
                _ => {
                    if v != self.role {
                        self.owner(&ek, &v);
                    }
                }
            }
        }
    }

    fn change_table(&mut self, k: &Key) {
        let name = k.1.clone();
        let (Some(a), Some(z)) = (
            Self::meta(self.from, "rel", &name).cloned(),
            Self::meta(self.to, "rel", &name).cloned(),
        ) else {
            return;
        };
        if a["partkey"] != z["partkey"]
            || a["relkind"] != z["relkind"]
            || a["inherits"] != z["inherits"]
        {
            self.notes.push(format!(
                "table {name}: its partitioning or inheritance changes, which PostgreSQL cannot alter; write that migration by hand (create the new table, copy, swap)"
            ));
            return;
        }
        let mut sql = Vec::new();
        if a["parent"] != z["parent"] || a["bound"] != z["bound"] {
            if let Some(p) = s(&a, "parent") {
                sql.push(format!("ALTER TABLE {p} DETACH PARTITION {name};"));
            }
            if let Some(p) = s(&z, "parent") {
                sql.push(format!(
                    "ALTER TABLE {p} ATTACH PARTITION {name} {};",
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
            let list = |v: &Value| -> Vec<String> {
                v.as_array()
                    .map(|o| {
                        o.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (old, new) = (list(&a["options"]), list(&z["options"]));
            let reset: Vec<String> = old
                .iter()
                .filter_map(|o| o.split('=').next())
                .filter(|k| !new.iter().any(|n| n.split('=').next() == Some(k)))
                .map(str::to_string)
                .collect();
            if !reset.is_empty() {
                sql.push(format!("ALTER TABLE {name} RESET ({});", reset.join(", ")));
            }
            if !new.is_empty() {
                sql.push(format!("ALTER TABLE {name} SET ({});", new.join(", ")));
            }
        }
        if !sql.is_empty() {
            self.push(Op::Alter, k, Place::Main, sql.join("\n"));
        }
    }

    fn change_column(&mut self, k: &Key) {
        let name = k.1.clone();
        let (table, col) = split_member(&name);
        let (table, col) = (table.to_string(), col.to_string());
        let (Some(a), Some(z)) = (
            Self::meta(self.from, "column", &name).cloned(),
            Self::meta(self.to, "column", &name).cloned(),
        ) else {
            return;
        };
        if Self::automatic(self.to, k) {
            return;
        }
        let alter = |what: String| format!("ALTER TABLE {table} ALTER COLUMN {col} {what};");
        // Generated columns: an expression cannot be changed in place.
        if a["generated"] != z["generated"] {
            if z["generated"].is_null() {
                self.push(Op::Alter, k, Place::Main, alter("DROP EXPRESSION".into()));
            } else {
                if a["generated"].is_null() {
                    self.lossy.push(format!("column {name} is dropped and added again as a generated column (its values are replaced)"));
                }
                let def = Self::column_def(self.to, &name);
                self.push(
                    Op::Alter,
                    k,
                    Place::Main,
                    format!("ALTER TABLE {table} DROP COLUMN {col};\nALTER TABLE {table} ADD COLUMN {def};"),
                );
                return;
            }
        }
        let mut drop_part = Vec::new();
        let mut set_part = Vec::new();
        if a["identity"] != z["identity"] {
            match (s(&a, "identity"), s(&z, "identity")) {
                (Some(_), None) => drop_part.push(alter("DROP IDENTITY".into())),
                (None, Some(i)) => set_part.push(alter(format!("ADD GENERATED {i} AS IDENTITY"))),
                (_, Some(i)) => set_part.push(alter(format!("SET GENERATED {i}"))),
                _ => {}
            }
        }
        if a["default"] != z["default"] && !a["default"].is_null() {
            drop_part.push(alter("DROP DEFAULT".into()));
        }
        if a["type"] != z["type"] || a["collate"] != z["collate"] {
            let (old, new) = (s(&a, "type").unwrap_or(""), s(&z, "type").unwrap_or(""));
            if !widening(old, new) {
                self.lossy.push(format!(
                    "column {name} changes type from {old} to {new}, which can fail or lose precision on existing values"
                ));
            }
            let collate = s(&z, "collate")
                .map(|c| format!(" COLLATE {c}"))
                .unwrap_or_default();
            let using = if old == new {
                String::new()
            } else {
                format!(" USING {col}::{new}")
            };
            set_part.push(alter(format!("TYPE {new}{collate}{using}")));
        }
        if a["default"] != z["default"]
            && let Some(d) = s(&z, "default")
        {
            set_part.push(alter(format!("SET DEFAULT {d}")));
        }
        if b(&a, "notnull") != b(&z, "notnull") {
            if b(&z, "notnull") {
                set_part.push(alter("SET NOT NULL".into()));
            } else {
                drop_part.push(alter("DROP NOT NULL".into()));
            }
        }
        if a["storage"] != z["storage"] {
            set_part.push(alter(format!(
                "SET STORAGE {}",
                s(&z, "storage").unwrap_or("EXTENDED")
            )));
        }
        // Loosening comes before the drops it makes possible; tightening after the creates it
        // needs (a default naming a new function or sequence).
        if !drop_part.is_empty() {
            self.push(
                Op::Drop,
                &key("column loosened", &name),
                Place::Main,
                drop_part.join("\n"),
            );
        }
        if !set_part.is_empty() {
            self.push(Op::Alter, k, Place::Main, set_part.join("\n"));
        }
    }
}

impl Planner<'_> {
    fn change_type(&mut self, k: &Key) {
        let name = k.1.clone();
        let (Some(a), Some(z)) = (
            Self::meta(self.from, "type", &name).cloned(),
            Self::meta(self.to, "type", &name).cloned(),
        ) else {
            return;
        };
        if a["typtype"] != z["typtype"] {
            self.notes.push(format!(
                "type {name} changes what kind of type it is: write that migration by hand"
            ));
            return;
        }
        match s(&z, "typtype") {
            Some("e") => self.change_enum(k, &a, &z),
            Some("d") => {
                if a["base"] != z["base"] || a["collate"] != z["collate"] {
                    self.notes.push(format!(
                        "domain {name} changes its base type or collation, which ALTER DOMAIN cannot do: write that migration by hand"
                    ));
                    return;
                }
                let mut sql = Vec::new();
                if a["default"] != z["default"] {
                    sql.push(match s(&z, "default") {
                        Some(d) => format!("ALTER DOMAIN {name} SET DEFAULT {d};"),
                        None => format!("ALTER DOMAIN {name} DROP DEFAULT;"),
                    });
                }
                if b(&a, "notnull") != b(&z, "notnull") {
                    sql.push(format!(
                        "ALTER DOMAIN {name} {} NOT NULL;",
                        if b(&z, "notnull") { "SET" } else { "DROP" }
                    ));
                }
                if !sql.is_empty() {
                    self.push(Op::Alter, k, Place::Main, sql.join("\n"));
                }
            }
            Some("c") => self.change_composite(k, &a, &z),
            _ => self.notes.push(format!(
                "type {name} changes its subtype, which ALTER TYPE cannot do: write that migration by hand"
            )),
        }
    }

    /// Composite types: attributes added, dropped or retyped in place.
    fn change_composite(&mut self, k: &Key, a: &Value, z: &Value) {
        let name = &k.1;
        let attrs = |v: &Value| -> Vec<(String, String)> {
            v["attributes"]
                .as_array()
                .map(|x| {
                    x.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|s| s.split_once(' '))
                        .map(|(n, t)| (n.to_string(), t.to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old, new) = (attrs(a), attrs(z));
        let mut sql = Vec::new();
        for (n, _) in &old {
            if !new.iter().any(|(m, _)| m == n) {
                sql.push(format!("ALTER TYPE {name} DROP ATTRIBUTE {n};"));
                self.lossy
                    .push(format!("attribute {n} of type {name} is dropped"));
            }
        }
        for (n, t) in &new {
            match old.iter().find(|(m, _)| m == n) {
                None => sql.push(format!("ALTER TYPE {name} ADD ATTRIBUTE {n} {t};")),
                Some((_, was)) if was != t => {
                    sql.push(format!("ALTER TYPE {name} ALTER ATTRIBUTE {n} TYPE {t};"));
                }
                Some(_) => {}
            }
        }
        if !sql.is_empty() {
            self.push(Op::Alter, k, Place::Main, sql.join("\n"));
        }
    }

    fn change_enum(&mut self, k: &Key, a: &Value, z: &Value) {
        let name = k.1.clone();
        let values = |v: &Value| -> Vec<String> {
            v["values"]
                .as_array()
                .map(|x| {
                    x.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (old, new) = (values(a), values(z));
        let kept: Vec<&String> = new.iter().filter(|v| old.contains(v)).collect();
        let only_added = kept.len() == old.len() && kept.iter().zip(&old).all(|(x, y)| *x == y);
        if only_added {
            // Transaction-safe form: a script of its own, re-runnable (IF NOT EXISTS), each value
            // placed where the desired type has it.
            let mut sql = Vec::new();
            for (i, v) in new.iter().enumerate().rev() {
                if old.contains(v) {
                    continue;
                }
                let place = new
                    .get(i + 1)
                    .map(|next| format!(" BEFORE {}", quote_literal(next)))
                    .unwrap_or_default();
                sql.push(format!(
                    "ALTER TYPE {name} ADD VALUE IF NOT EXISTS {}{place};",
                    quote_literal(v)
                ));
            }
            let place = if self.options.one_transaction {
                Place::Main
            } else {
                Place::Pre
            };
            self.push(Op::Alter, k, place, sql.join("\n"));
            return;
        }
        let removed: Vec<&String> = old.iter().filter(|v| !new.contains(v)).collect();
        if !removed.is_empty() {
            self.lossy.push(format!(
                "enum {name} loses value(s) {}: rows holding them make the migration fail until they are changed",
                removed.iter().map(|v| quote_literal(v)).collect::<Vec<_>>().join(", ")
            ));
        }
        let pure_removal = new.iter().all(|v| old.contains(v));
        let place =
            if self.direction == Direction::Down && pure_removal && !self.options.one_transaction {
                Place::Pre
            } else {
                Place::Main
            };
        let sql = self.enum_swap(&name, &new);
        self.push(Op::Alter, k, place, sql);
        self.reapply_attached(k);
    }

    /// Replace an enum whose values are removed or reordered: rename the old one, create the new
    /// one, convert each column through text, drop the old one.
    fn enum_swap(&self, name: &str, values: &[String]) -> String {
        let (schema, bare) = split_member(name);
        let old_bare = ident(&format!("{}_old", bare.trim_matches('"')));
        let old_full = if schema.is_empty() {
            old_bare.clone()
        } else {
            format!("{schema}.{old_bare}")
        };
        let list = values
            .iter()
            .map(|v| quote_literal(v))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = vec![
            format!("ALTER TYPE {name} RENAME TO {old_bare};"),
            format!("CREATE TYPE {name} AS ENUM ({list});"),
        ];
        for (col, m) in self
            .from
            .meta
            .iter()
            .filter(|((k, _), _)| k == "column")
            .map(|((_, n), m)| (n, m))
        {
            let ty = s(m, "type").unwrap_or("");
            let array = ty == format!("{name}[]");
            if ty != name && !array {
                continue;
            }
            let (table, c) = split_member(col);
            let target = if array {
                format!("{name}[]")
            } else {
                name.to_string()
            };
            let via = if array { "text[]" } else { "text" };
            if s(m, "default").is_some() {
                sql.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {c} DROP DEFAULT;"
                ));
            }
            sql.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {c} TYPE {target} USING {c}::{via}::{target};"
            ));
            if let Some(d) = s(m, "default") {
                sql.push(format!(
                    "ALTER TABLE {table} ALTER COLUMN {c} SET DEFAULT {d};"
                ));
            }
        }
        sql.push(format!("DROP TYPE {old_full};"));
        sql.join("\n")
    }

    /// The object a `comment`, `privileges` or `owner` entry is about, and how SQL names it.
    fn target_of(cat: &Catalog, kind: &str, name: &str) -> Option<(Key, String)> {
        if kind == "comment" {
            return comment_target(name);
        }
        if let Some(s) = name.strip_prefix("schema ") {
            return Some((key("schema", s), format!("SCHEMA {s}")));
        }
        if let Some(t) = name.strip_prefix("type ") {
            let domain = Self::meta(cat, "type", t).and_then(|m| s(m, "typtype")) == Some("d");
            return Some((
                key("type", t),
                format!("{} {t}", if domain { "DOMAIN" } else { "TYPE" }),
            ));
        }
        if let Some(rk) = Self::relation_kind(cat, name) {
            let word = match rk {
                "sequence" => "SEQUENCE",
                "view" if kind == "owner" => "VIEW",
                "materialized view" if kind == "owner" => "MATERIALIZED VIEW",
                "foreign table" if kind == "owner" => "FOREIGN TABLE",
                _ => "TABLE",
            };
            return Some((key(rk, name), format!("{word} {name}")));
        }
        for (k, word) in [
            ("function", "FUNCTION"),
            ("procedure", "PROCEDURE"),
            ("aggregate", "AGGREGATE"),
        ] {
            if cat.objects.contains_key(&key(k, name)) {
                let word = if kind == "privileges" && k == "aggregate" {
                    "FUNCTION"
                } else {
                    word
                };
                return Some((key(k, name), format!("{word} {name}")));
            }
        }
        if cat.objects.contains_key(&key("column", name)) {
            let (t, c) = split_member(name);
            return Some((key("column", name), format!("COLUMN {t} {c}")));
        }
        None
    }

    fn comment(&mut self, k: &Key, text: Option<&str>) {
        let Some((object, target)) = comment_target(&k.1) else {
            self.notes.push(format!(
                "comment on {} is not written by the tool: add it by hand",
                k.1
            ));
            return;
        };
        let value = text.map_or("NULL".to_string(), quote_literal);
        let op = if text.is_some() { Op::Create } else { Op::Drop };
        self.push_needing(
            op,
            k,
            Place::Main,
            format!("COMMENT ON {target} IS {value};"),
            vec![object],
        );
    }

    fn privileges(&mut self, k: &Key) {
        let cat = if self.to.objects.contains_key(k) {
            self.to
        } else {
            self.from
        };
        let Some((object, target)) = Self::target_of(cat, "privileges", &k.1) else {
            self.notes.push(format!(
                "privileges on {} are not written by the tool: grant them by hand",
                k.1
            ));
            return;
        };
        let parse = |v: Option<&String>| -> BTreeMap<String, Vec<String>> {
            v.map(|text| {
                text.split(", ")
                    .filter_map(|e| e.split_once('='))
                    .map(|(g, p)| (g.to_string(), p.split(',').map(str::to_string).collect()))
                    .collect()
            })
            .unwrap_or_default()
        };
        let before = parse(self.from.objects.get(k));
        let after = parse(self.to.objects.get(k));
        let owner = self
            .to
            .objects
            .get(&key("owner", &k.1))
            .cloned()
            .unwrap_or_else(|| self.role.to_string());
        let (on, column) = match target.strip_prefix("COLUMN ") {
            Some(rest) => {
                let (t, c) = rest.split_once(' ').unwrap_or((rest, ""));
                (format!("TABLE {t}"), format!(" ({c})"))
            }
            None => (target.clone(), String::new()),
        };
        let mut grantees: BTreeSet<String> = before.keys().chain(after.keys()).cloned().collect();
        grantees.insert("PUBLIC".into());
        if column.is_empty() {
            grantees.insert(owner.clone());
        }
        let mut sql: Vec<String> = grantees
            .iter()
            .map(|g| format!("REVOKE ALL{column} ON {on} FROM {};", ident(g)))
            .collect();
        if after.is_empty() && column.is_empty() {
            sql.push(format!("GRANT ALL ON {on} TO {};", ident(&owner)));
            self.notes.push(format!(
                "privileges on {} go back to the defaults, written as explicit grants",
                k.1
            ));
        }
        for (g, privs) in &after {
            let plain: Vec<&str> = privs
                .iter()
                .filter(|p| !p.ends_with('*'))
                .map(String::as_str)
                .collect();
            let with: Vec<&str> = privs.iter().filter_map(|p| p.strip_suffix('*')).collect();
            for (list, option) in [(plain, ""), (with, " WITH GRANT OPTION")] {
                if !list.is_empty() {
                    sql.push(format!(
                        "GRANT {}{column} ON {on} TO {}{option};",
                        list.join(", "),
                        ident(g)
                    ));
                }
            }
        }
        let op = if self.to.objects.contains_key(k) {
            Op::Create
        } else {
            Op::Drop
        };
        self.push_needing(op, k, Place::Main, sql.join("\n"), vec![object]);
    }

    fn owner(&mut self, k: &Key, role: &str) {
        let Some((object, target)) = Self::target_of(self.to, "owner", &k.1) else {
            return;
        };
        self.push_needing(
            Op::Alter,
            k,
            Place::Main,
            format!("ALTER {target} OWNER TO {};", ident(role)),
            vec![object],
        );
    }

    /// Objects that use what is dropped and made again (or a column whose type changes) must
    /// be dropped before and made again after: views, triggers, policies, constraints, indexes.
    fn recreate_dependents(&mut self) {
        let mut work: Vec<(Key, bool)> = Vec::new();
        for u in &self.units {
            if u.op == Op::Drop && self.to.objects.contains_key(&u.key) {
                work.push((u.key.clone(), false));
            }
            if u.op == Op::Alter && u.key.0 == "column" && u.sql.contains(" TYPE ") {
                work.push((u.key.clone(), true));
            }
            if u.op == Op::Alter && u.key.0 == "type" && u.sql.contains(" RENAME TO ") {
                // An enum swap converts every column of the type.
                for (col, m) in self.from.meta.iter().filter(|((k, _), _)| k == "column") {
                    let ty = s(m, "type").unwrap_or("");
                    if ty == u.key.1 || ty == format!("{}[]", u.key.1) {
                        work.push((col.clone(), true));
                    }
                }
            }
        }
        let mut seen: BTreeSet<Key> = work.iter().map(|(k, _)| k.clone()).collect();
        while let Some((x, column_type)) = work.pop() {
            let users: Vec<Key> = self
                .from
                .deps
                .iter()
                .filter(|(_, ds)| ds.contains(&x))
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
                if !kinds.contains(&j.0.as_str())
                    || seen.contains(&j)
                    || !self.to.objects.contains_key(&j)
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

    // ---------------------------------------------------------------- order

    fn phase(u: &Unit, to: &Catalog) -> u8 {
        if u.op == Op::Drop {
            return 0;
        }
        match u.key.0.as_str() {
            "schema" => 1,
            "extension" => 2,
            "type" => 3,
            "function" | "procedure" | "aggregate" => 4,
            "sequence" => 5,
            "table" | "foreign table" => 6,
            "column" => 7,
            "sequence owned" => 8,
            "constraint" => {
                match Self::meta(to, "constraint", &u.key.1).and_then(|m| s(m, "type")) {
                    Some("f") => 11,
                    _ => 9,
                }
            }
            "index" => 10,
            "view" | "materialized view" => 12,
            "trigger" => 13,
            "policy" => 14,
            "validate" => 15,
            "comment" => 16,
            "privileges" => 17,
            "owner" => 18,
            _ => 19,
        }
    }

    fn base(k: &Key) -> Key {
        match k.0.as_str() {
            "column loosened" => key("column", &k.1),
            "sequence owned" => key("sequence", &k.1),
            "validate" => key("constraint", &k.1),
            _ => k.clone(),
        }
    }

    fn order(&mut self) -> Vec<Step> {
        let n = self.units.len();
        let mut by_key: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
        for (i, u) in self.units.iter().enumerate() {
            by_key.entry(Self::base(&u.key)).or_default().push(i);
        }
        let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
        let empty = BTreeSet::new();
        for (i, u) in self.units.iter().enumerate() {
            let base = Self::base(&u.key);
            let same = by_key.get(&base).cloned().unwrap_or_default();
            if u.op == Op::Drop {
                // Before everything else done to the same object (a recreate, a tightening).
                for &j in &same {
                    if j != i && self.units[j].op != Op::Drop {
                        edges.insert((i, j));
                    }
                }
                // After whatever drops or loosens what depended on it (or on its columns).
                let mut covered = vec![base.clone()];
                if RELATION_KINDS.contains(&base.0.as_str()) {
                    covered.extend(
                        Self::columns_of(self.from, &base.1)
                            .into_iter()
                            .map(|(_, c)| key("column", &c)),
                    );
                }
                for (user, deps) in &self.from.deps {
                    if covered.iter().any(|c| deps.contains(c)) {
                        // A user dropped with its table (a trigger, a column) is the table's drop.
                        let user = if by_key.contains_key(user) {
                            user.clone()
                        } else {
                            Self::owner_table(self.from, user)
                                .and_then(|t| {
                                    Self::relation_kind(self.from, &t).map(|k| key(k, &t))
                                })
                                .unwrap_or_else(|| user.clone())
                        };
                        for &j in by_key.get(&user).unwrap_or(&Vec::new()) {
                            if j != i && matches!(self.units[j].op, Op::Drop | Op::Alter) {
                                edges.insert((j, i));
                            }
                        }
                    }
                }
                if let Some(t) = Self::owner_table(self.from, &base) {
                    for kind in RELATION_KINDS {
                        for &j in by_key.get(&key(kind, &t)).unwrap_or(&Vec::new()) {
                            if self.units[j].op == Op::Drop && j != i {
                                edges.insert((i, j));
                            }
                        }
                    }
                }
                continue;
            }
            // Creates and alters: after what they need.
            let mut needs: BTreeSet<Key> = self.to.deps.get(&base).unwrap_or(&empty).clone();
            needs.extend(u.needs.iter().cloned());
            if let Some(t) = Self::owner_table(self.to, &base) {
                for kind in RELATION_KINDS {
                    needs.insert(key(kind, &t));
                }
                needs.insert(key("column", &format!("{t}.")));
            }
            if base.0 == "column" || base.0 == "index" || base.0 == "constraint" {
                // Columns renamed in this plan come first.
                for new in self.renamed.keys() {
                    if let Some(t) = Self::owner_table(self.to, &base)
                        && split_member(&new.1).0 == t
                    {
                        needs.insert(new.clone());
                    }
                }
            }
            // A column made with its table is needed through the table's unit.
            let needs: BTreeSet<Key> = needs
                .into_iter()
                .map(|d| {
                    if d.0 == "column"
                        && !by_key.contains_key(&d)
                        && let Some(t) = Self::owner_table(self.to, &d)
                    {
                        return key(Self::relation_kind(self.to, &t).unwrap_or("table"), &t);
                    }
                    d
                })
                .collect();
            for d in &needs {
                for &j in by_key.get(d).unwrap_or(&Vec::new()) {
                    if j != i && self.units[j].op != Op::Drop {
                        edges.insert((j, i));
                    }
                }
            }
            for &j in &same {
                if j != i && self.units[j].op == Op::Create && u.op == Op::Alter {
                    edges.insert((j, i));
                }
            }
            if u.op == Op::Alter {
                // An alter that stops using something comes before that thing's drop.
                for d in self.from.deps.get(&base).unwrap_or(&empty) {
                    for &j in by_key.get(d).unwrap_or(&Vec::new()) {
                        if self.units[j].op == Op::Drop && j != i {
                            edges.insert((i, j));
                        }
                    }
                }
            }
        }
        self.settle_places(&edges);
        // Kahn's algorithm, lowest (phase, position) first; a cycle is broken at its lowest node.
        let mut indegree = vec![0usize; n];
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(a, b) in &edges {
            if a != b {
                indegree[b] += 1;
                out[a].push(b);
            }
        }
        let phases: Vec<u8> = self.units.iter().map(|u| Self::phase(u, self.to)).collect();
        let mut ready: BTreeSet<(u8, usize)> = (0..n)
            .filter(|&i| indegree[i] == 0)
            .map(|i| (phases[i], i))
            .collect();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = match ready.pop_first() {
                Some((_, i)) => i,
                None => (0..n)
                    .filter(|&i| !done[i])
                    .min_by_key(|&i| (phases[i], i))
                    .unwrap_or(0),
            };
            if done[next] {
                continue;
            }
            done[next] = true;
            order.push(next);
            for &m in &out[next] {
                indegree[m] = indegree[m].saturating_sub(1);
                if indegree[m] == 0 && !done[m] {
                    ready.insert((phases[m], m));
                }
            }
        }
        order
            .into_iter()
            .map(|i| {
                let u = &self.units[i];
                Step {
                    place: u.place,
                    object: format!("{} {}", u.key.0, u.key.1),
                    sql: u.sql.clone(),
                }
            })
            .collect()
    }

    /// A script may only need what ran before it: up runs pre, main, post; down runs post,
    /// main, pre. Units that would need a later script move into the main one (an index a new
    /// foreign key needs is built inside the transaction, not concurrently after it).
    fn settle_places(&mut self, edges: &BTreeSet<(usize, usize)>) {
        loop {
            let mut moved = false;
            for &(a, b) in edges {
                let (pa, pb) = (self.units[a].place, self.units[b].place);
                let wrong = match self.direction {
                    Direction::Up => pa > pb,
                    Direction::Down => {
                        (pa == Place::Main && pb == Place::Post)
                            || (pa == Place::Pre && pb != Place::Pre)
                    }
                };
                if wrong {
                    let fix = match self.direction {
                        Direction::Up if pa == Place::Post => a,
                        Direction::Up => b,
                        Direction::Down if pb == Place::Post => b,
                        Direction::Down => a,
                    };
                    let u = &mut self.units[fix];
                    u.place = Place::Main;
                    u.sql = u
                        .sql
                        .replace("INDEX CONCURRENTLY IF NOT EXISTS ", "INDEX ")
                        .replace(
                            "DROP INDEX CONCURRENTLY IF EXISTS ",
                            "DROP INDEX IF EXISTS ",
                        );
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }
}

/// Schema public's owner and privileges are `init`'s, not the migrations' business.
#[must_use]
pub fn init_owned(k: &(String, String)) -> bool {
    (k.0 == "owner" || k.0 == "privileges") && k.1 == "schema public"
}

/// A trigger's catalog definition without the enabled state the catalog appends to it.
fn trigger_body(def: &str) -> &str {
    [" (DISABLED)", " (ENABLED"]
        .iter()
        .find_map(|m| def.find(m))
        .map_or(def, |at| &def[..at])
}

/// The statement that gives a trigger the enabled state its meta records.
fn trigger_state(m: &Value) -> String {
    let (on, tg) = (s(m, "on").unwrap_or(""), s(m, "name").unwrap_or(""));
    let state = match s(m, "enabled") {
        Some("D") => "DISABLE",
        Some("R") => "ENABLE REPLICA",
        Some("A") => "ENABLE ALWAYS",
        _ => "ENABLE",
    };
    format!("ALTER TABLE {on} {state} TRIGGER {tg};")
}

/// `'a', 'b'` from an enum's meta.
fn enum_list(m: &Value) -> String {
    m["values"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .map(quote_literal)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A policy definition with its role names quoted for SQL.
fn quote_roles(def: &str) -> String {
    let Some((head, rest)) = def.split_once(" TO ") else {
        return def.to_string();
    };
    let end = [" USING (", " WITH CHECK ("]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    let roles: Vec<String> = rest[..end].split(", ").map(ident).collect();
    format!("{head} TO {}{}", roles.join(", "), &rest[end..])
}

/// Type changes that keep every value (no rewrite risk of loss).
fn widening(old: &str, new: &str) -> bool {
    let len = |t: &str, base: &str| -> Option<Option<u32>> {
        let rest = t.strip_prefix(base)?;
        if rest.is_empty() {
            return Some(None);
        }
        rest.strip_prefix('(')?
            .strip_suffix(')')?
            .parse()
            .ok()
            .map(Some)
    };
    for base in ["character varying", "bit varying"] {
        if let (Some(a), Some(b)) = (len(old, base), len(new, base)) {
            return match (a, b) {
                (_, None) => true,
                (Some(x), Some(y)) => y >= x,
                (None, Some(_)) => false,
            };
        }
    }
    if old.starts_with("character varying") && new == "text" {
        return true;
    }
    if old == "text" && new == "character varying" {
        return true;
    }
    if old.starts_with("numeric") && new == "numeric" {
        return true;
    }
    // numeric(p, s) -> numeric(p2, s2) keeps every value when neither the scale nor the digits
    // before the point shrink.
    let precision = |t: &str| -> Option<(i64, i64)> {
        let inner = t.strip_prefix("numeric(")?.strip_suffix(')')?;
        let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
        Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
    };
    if let (Some((p, s)), Some((p2, s2))) = (precision(old), precision(new)) {
        return s2 >= s && p2 - s2 >= p - s;
    }
    matches!(
        (old, new),
        ("smallint", "integer" | "bigint")
            | ("integer", "bigint")
            | ("real", "double precision")
            | ("json", "jsonb")
            | ("timestamp without time zone", "timestamp with time zone")
    )
}

/// `COMMENT ON` target for a `pg_describe_object` text, with the object's key.
fn comment_target(describe: &str) -> Option<(Key, String)> {
    let on = |rest: &str, what: &str| -> Option<(String, String)> {
        let (obj, table) = rest.split_once(&format!(" on {what} "))?;
        Some((obj.to_string(), table.to_string()))
    };
    for (prefix, kind, word) in [
        (
            "materialized view ",
            "materialized view",
            "MATERIALIZED VIEW",
        ),
        ("foreign table ", "foreign table", "FOREIGN TABLE"),
        ("table ", "table", "TABLE"),
        ("view ", "view", "VIEW"),
        ("sequence ", "sequence", "SEQUENCE"),
        ("index ", "index", "INDEX"),
        ("function ", "function", "FUNCTION"),
        ("procedure ", "procedure", "PROCEDURE"),
        ("aggregate ", "aggregate", "AGGREGATE"),
        ("type ", "type", "TYPE"),
        ("schema ", "schema", "SCHEMA"),
        ("extension ", "extension", "EXTENSION"),
    ] {
        if let Some(rest) = describe.strip_prefix(prefix) {
            return Some((key(kind, rest), format!("{word} {rest}")));
        }
    }
    if let Some(rest) = describe.strip_prefix("column ") {
        for what in [
            "table",
            "view",
            "materialized view",
            "foreign table",
            "composite type",
        ] {
            if let Some((col, table)) = rest.split_once(&format!(" of {what} ")) {
                let member = format!("{table}.{col}");
                return Some((key("column", &member), format!("COLUMN {member}")));
            }
        }
    }
    for (prefix, kind, word, on_what) in [
        ("constraint ", "constraint", "CONSTRAINT", "table"),
        ("trigger ", "trigger", "TRIGGER", "table"),
        ("policy ", "policy", "POLICY", "table"),
    ] {
        if let Some(rest) = describe.strip_prefix(prefix) {
            if let Some((obj, table)) = on(rest, on_what) {
                return Some((
                    key(kind, &format!("{table}.{obj}")),
                    format!("{word} {obj} ON {table}"),
                ));
            }
            if let Some((obj, domain)) = on(rest, "domain") {
                return Some((
                    key(kind, &format!("domain {domain}.{obj}")),
                    format!("{word} {obj} ON DOMAIN {domain}"),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cat(objects: &[(&str, &str, &str)], meta: &[(&str, &str, Value)]) -> Catalog {
        Catalog {
            objects: objects
                .iter()
                .map(|(k, n, d)| (key(k, n), (*d).to_string()))
                .collect(),
            meta: meta
                .iter()
                .map(|(k, n, v)| (key(k, n), v.clone()))
                .collect(),
            ..Catalog::default()
        }
    }

    #[test]
    fn widening_type_changes_keep_every_value() {
        assert!(widening("character varying(50)", "character varying(100)"));
        assert!(widening("character varying(50)", "text"));
        assert!(widening("integer", "bigint"));
        assert!(!widening("character varying(100)", "character varying(50)"));
        assert!(!widening("bigint", "integer"));
        assert!(!widening("text", "integer"));
    }

    #[test]
    fn comment_targets_from_pg_describe_object() {
        assert_eq!(
            comment_target("column avatar of table users"),
            Some((key("column", "users.avatar"), "COLUMN users.avatar".into()))
        );
        assert_eq!(
            comment_target("constraint c on table billing.t"),
            Some((
                key("constraint", "billing.t.c"),
                "CONSTRAINT c ON billing.t".into()
            ))
        );
        assert_eq!(
            comment_target("materialized view m"),
            Some((key("materialized view", "m"), "MATERIALIZED VIEW m".into()))
        );
    }

    #[test]
    fn policy_roles_are_quoted_for_sql() {
        assert_eq!(
            quote_roles("PERMISSIVE FOR SELECT TO PUBLIC, App User USING (true)"),
            "PERMISSIVE FOR SELECT TO PUBLIC, \"App User\" USING (true)"
        );
    }

    #[test]
    fn enum_values_are_added_in_place_in_a_script_of_their_own() {
        let t = |values: Value| json!({"typtype": "e", "values": values});
        let from = cat(
            &[("type", "state", "ENUM ('a', 'c')")],
            &[("type", "state", t(json!(["a", "c"])))],
        );
        let to = cat(
            &[("type", "state", "ENUM ('a', 'b', 'c', 'd')")],
            &[("type", "state", t(json!(["a", "b", "c", "d"])))],
        );
        let up = plan(&from, &to, "app", Direction::Up);
        assert_eq!(
            up.script(Place::Pre).expect("pre"),
            "ALTER TYPE state ADD VALUE IF NOT EXISTS 'd';\nALTER TYPE state ADD VALUE IF NOT EXISTS 'b' BEFORE 'c';"
        );
        assert!(up.script(Place::Main).is_none());
        let down = plan(&to, &from, "app", Direction::Down);
        let sql = down.script(Place::Pre).expect("down swaps the type");
        assert!(
            sql.contains("CREATE TYPE state AS ENUM ('a', 'c');"),
            "{sql}"
        );
        assert!(
            down.lossy.iter().any(|l| l.contains("'b', 'd'")),
            "{:?}",
            down.lossy
        );
    }

    #[test]
    fn a_dropped_column_is_lossy_and_a_same_shaped_new_one_is_a_rename() {
        let col = |t: &str, n: &str, num: i64| {
            (
                "column",
                format!("{t}.{n}"),
                json!({"table": t, "name": n, "num": num, "type": "text", "notnull": false, "local": true}),
            )
        };
        let (a, b) = (col("users", "nick", 2), col("users", "nickname", 2));
        let from = cat(
            &[
                ("table", "users", "table"),
                ("column", "users.nick", "text NULL"),
            ],
            &[(a.0, &a.1, a.2.clone())],
        );
        let to = cat(
            &[
                ("table", "users", "table"),
                ("column", "users.nickname", "text NULL"),
            ],
            &[(b.0, &b.1, b.2.clone())],
        );
        let up = plan(&from, &to, "app", Direction::Up);
        assert_eq!(
            up.script(Place::Main).expect("main"),
            "ALTER TABLE users RENAME COLUMN nick TO nickname;"
        );
        assert!(up.lossy.is_empty(), "{:?}", up.lossy);
        assert!(up.notes.iter().any(|n| n.contains("guessed a rename")));
        let gone = cat(&[("table", "users", "table")], &[]);
        let up = plan(&from, &gone, "app", Direction::Up);
        assert_eq!(up.lossy, ["column users.nick is dropped with its values"]);
    }
}
