//! From two catalogs to the DDL that turns one into the other. Pure: no I/O.
//!
//! Every difference becomes one or more *units* (a statement or a few that belong together),
//! each creating, changing or dropping one object. [`plan_with`] walks the differences and asks
//! the generator of each object's kind (one file per kind, the same small [`Generator`]
//! interface: create, drop, alter) for its units; [`order`] then sorts them by what the objects
//! need: `pg_depend` as read into [`Catalog::deps`] on both sides (a drop waits for what depends
//! on the object to go first; a create waits for what it needs), with a phase per kind as the
//! tie-break, so the result reads the way an expert writes it. Objects that PostgreSQL makes by
//! itself (a partition's copy of its parent's index, constraint or trigger; an identity column's
//! sequence; a column's NOT NULL constraint on 18) are never written, and what goes with a
//! dropped table is not dropped twice.
//!
//! Names enter the SQL only through [`crate::db::ident`]: generators parse the catalog's keys
//! (which the server itself quoted) into [`Name`], [`Member`] and [`Routine`], and
//! role names into [`Ident`], whose `Display` quotes. Description text (the server's
//! describe/identify functions, ACL item text) is never read by the catalog, so it cannot reach
//! SQL; a key that does not parse as names is left out with a note instead of being written.
//!
//! Where an expert splits work out of the one transaction, so does this: an index on a table
//! that already exists is built `CONCURRENTLY` in a `no-transaction` script that runs after
//! ([`Place::Post`]), a foreign key or check added to an existing table is added `NOT VALID` and
//! validated there, and enum values are added in a script of their own before ([`Place::Pre`]).
//!
//! What loses data (a dropped table or column, a narrowing type change, a removed enum value) is
//! marked on its step and listed in [`Plan::lossy`]; guesses (a column renamed) and what cannot
//! be reached (column order) in [`Plan::notes`]. Steps that existing rows could make fail carry
//! a [`Check`] that `migrate baseline` runs first.

mod attachment;
mod collation;
mod column;
mod comment;
mod constraint;
mod index;
mod order;
mod owner;
mod policy;
mod privilege;
mod routine;
mod schema;
mod sequence;
mod table;
mod target;
mod trigger;
mod types;
mod view;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::catalog::Catalog;
use crate::db::ident::{Ident, Member, Name, Routine};

pub use column::widening;

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

/// What existing rows must satisfy for a step to succeed (or to keep every value): `migrate
/// baseline` turns each into a read-only query before it reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `SET NOT NULL`: no NULL in the column.
    NotNull { table: Name, column: Ident },
    /// A constraint added to an existing table; `def` is the server's `pg_get_constraintdef`,
    /// `rows` the table's rows as the plan converts them first (`(SELECT ... ) t`).
    Constraint {
        table: Name,
        def: String,
        rows: String,
    },
    /// A unique index built on an existing table; `def` is the server's `pg_get_indexdef`.
    UniqueIndex { table: Name, def: String },
    /// A plain column re-made as a generated one: each stored value must equal what `expr`
    /// (the server's text) computes, or the re-make changes it.
    GeneratedMatches {
        table: Name,
        column: Ident,
        expr: String,
        rows: String,
    },
}

/// What a step does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Drop,
    Alter,
    Create,
}

/// One statement group, with the object it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub place: Place,
    pub object: String,
    pub sql: String,
    /// What this step loses, if anything.
    pub lossy: Option<String>,
    /// What existing rows must satisfy.
    pub check: Option<Check>,
    /// It drops an object the desired schema does not have (not part of a re-make).
    pub removes: bool,
}

/// The ordered DDL, and what a reviewer must know about it.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Steps that lose data, named (refused unless the caller allows it).
    pub lossy: Vec<String>,
    /// Guesses and limits worth reading (a rename guessed, a column order not reachable).
    pub notes: Vec<String>,
    /// What the plan needs that the tool does not write (each named, with what to do): a plan
    /// with any is refused, never written.
    pub unsupported: Vec<String>,
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
        let steps: Vec<&Step> = self.steps.iter().filter(|s| s.place == place).collect();
        if steps.is_empty() {
            return None;
        }
        let text = steps
            .iter()
            .map(|s| s.sql.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if place == Place::Main && steps.iter().any(|s| is_routine_step(&s.object)) {
            // As pg_dump does: bodies are checked when called, so order among functions and
            // the tables their bodies read does not matter.
            return Some(format!("SET LOCAL check_function_bodies = off;\n\n{text}"));
        }
        Some(text)
    }
}

/// Whether a step creates or changes a function, procedure or aggregate.
#[must_use]
pub fn is_routine_step(object: &str) -> bool {
    ["function ", "procedure ", "aggregate "]
        .iter()
        .any(|p| object.starts_with(p))
}

use Action as Op;

/// What else a unit does that its dependents must know of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    /// A column's type changes (views and policies on it are re-made).
    Retype,
    /// An enum is swapped for a new one (every column of the type is converted).
    EnumSwap,
}

#[derive(Debug, Clone)]
struct Unit {
    op: Op,
    key: Key,
    place: Place,
    sql: String,
    /// For a unit outside the transaction: the same work inside it (used when it must move).
    in_transaction: Option<String>,
    /// Extra keys this unit needs created first (beyond `to.deps[key]`).
    needs: Vec<Key>,
    /// Keys of the old schema this unit stops using: it runs before their drop (or, for a
    /// column, before its table's).
    stops_using: Vec<Key>,
    /// Keys of the old schema whose drop must come first (it would take this unit's object).
    after_drop_of: Vec<Key>,
    effect: Effect,
    lossy: Option<String>,
    check: Option<Check>,
}

impl Unit {
    fn needing(&mut self, keys: Vec<Key>) -> &mut Unit {
        self.needs.extend(keys);
        self
    }

    fn stopping(&mut self, keys: Vec<Key>) -> &mut Unit {
        self.stops_using.extend(keys);
        self
    }

    fn after_drops(&mut self, keys: Vec<Key>) -> &mut Unit {
        self.after_drop_of.extend(keys);
        self
    }

    fn lossy(&mut self, what: String) -> &mut Unit {
        self.lossy = Some(what);
        self
    }

    fn check(&mut self, check: Check) -> &mut Unit {
        self.check = Some(check);
        self
    }

    fn in_transaction(&mut self, sql: String) -> &mut Unit {
        self.in_transaction = Some(sql);
        self
    }

    fn effect(&mut self, effect: Effect) -> &mut Unit {
        self.effect = effect;
        self
    }
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
    Planner {
        from,
        to,
        role,
        direction: options.direction,
        options,
        units: Vec::new(),
        notes: Vec::new(),
        unsupported: Vec::new(),
        renamed: BTreeMap::new(),
    }
    .run()
}

/// Schema public's owner and privileges are `init`'s, not the migrations' business.
#[must_use]
pub fn init_owned(k: &(String, String)) -> bool {
    (k.0 == "owner" || k.0 == "privileges") && k.1 == "schema public"
}

/// The same small interface for every kind of object: how to create, drop and change one.
trait Generator: Sync {
    fn create(&self, p: &mut Planner, k: &Key);
    fn drop(&self, p: &mut Planner, k: &Key);
    /// Change in place where PostgreSQL can; by default drop and create again.
    fn alter(&self, p: &mut Planner, k: &Key) {
        p.recreate(k);
    }
}

/// The generator for a kind of object, if the tool writes that kind.
fn generator(kind: &str) -> Option<&'static dyn Generator> {
    Some(match kind {
        "schema" => &schema::Schemas,
        "extension" => &schema::Extensions,
        "publication" => &schema::Publications,
        "type" => &types::Types,
        "collation" => &collation::Collations,
        "function" | "procedure" | "aggregate" => &routine::Routines,
        "sequence" => &sequence::Sequences,
        "table" | "foreign table" => &table::Tables,
        "column" => &column::Columns,
        "view" | "materialized view" => &view::Views,
        "constraint" => &constraint::Constraints,
        "index" => &index::Indexes,
        "index attachment" => &attachment::Attachments,
        "trigger" => &trigger::Triggers,
        "policy" => &policy::Policies,
        "comment" => &comment::Comments,
        "privileges" => &privilege::Privileges,
        "owner" => &owner::Owners,
        _ => return None,
    })
}

struct Planner<'a> {
    from: &'a Catalog,
    to: &'a Catalog,
    role: &'a str,
    direction: Direction,
    options: Options,
    units: Vec<Unit>,
    notes: Vec<String>,
    unsupported: Vec<String>,
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

/// The strings of a JSON array field.
fn strings(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `table.column` key -> (table, column), splitting at the last unquoted dot. For keys only
/// (comparisons, grouping); SQL takes names from [`Member::parse`].
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
            column::guess_renames(&mut self);
        }
        let kinds: BTreeSet<&str> = self
            .from
            .objects
            .keys()
            .chain(self.to.objects.keys())
            .map(|(k, _)| k.as_str())
            .collect();
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
                    // Said, not silently dropped: the desired file asks for something init owns.
                    if self.from.objects.get(&k) != self.to.objects.get(&k) {
                        self.notes.push(format!(
                            "the {} of schema public differ in the desired schema, and were left out: they are `init`'s (the database's app role owns schema public and PUBLIC may not create in it); change them by hand if you must, not in a migration",
                            if k.0 == "owner" { "owner" } else { "privileges" }
                        ));
                    }
                    continue;
                }
                let before = self.from.objects.get(&k);
                let after = self.to.objects.get(&k);
                match (before, after) {
                    (None, Some(_)) => self.create(&k),
                    (Some(_), None) => self.drop(&k),
                    (Some(x), Some(y)) if x != y => self.change(&k),
                    // The same in both, but something this plan drops takes it along, or
                    // PostgreSQL cannot turn what it is into what it must be.
                    (Some(_), Some(_)) => self.same_but_taken(&k),
                    (None, None) => {}
                }
            }
        }
        self.recreate_dependents();
        let steps = order::order(&mut self);
        let lossy = steps.iter().filter_map(|s| s.lossy.clone()).collect();
        Plan {
            steps,
            lossy,
            notes: self.notes,
            unsupported: self.unsupported,
        }
    }

    /// An object both schemas have, the same, that the plan must make again anyway: something
    /// it drops takes it along, or PostgreSQL cannot turn what it is into what it must be.
    fn same_but_taken(&mut self, k: &Key) {
        let name = k.1.as_str();
        let taken = match k.0.as_str() {
            // A column a child inherits in one schema and has as its own in the other: dropped
            // with its parent's column and added back (lossy), or dropped before its parent's
            // is added (which would merge with it and keep it the child's own).
            "column" => {
                if let Some(parent) = self.column_taken_by(k) {
                    let what = format!(
                        "column {name}: inherited from {}, which is dropped; it is added back as the table's own, without its values",
                        parent.1
                    );
                    Some((parent, Some(what)))
                } else {
                    if self.column_merges(k) {
                        self.drop(k);
                    }
                    None
                }
            }
            // A partition's constraint its parent's made, which the new schema has as the
            // partition's own: the parent's drop takes it. Or one whose index cannot let go of a
            // partition's: made again.
            "constraint" => {
                let taken = self.constraint_taken_by(k);
                if taken.is_none() && self.constraint_detaches(k) {
                    self.recreate(k);
                }
                taken.map(|c| (c, None))
            }
            // An index a dropped constraint owned (or a dropped or re-made partitioned index it
            // was attached to), kept as an index of its own. Or a partitioned index that must
            // let go of one (PostgreSQL cannot detach an index): made again, taking its
            // attached indexes along.
            "index" => {
                let taken = self.index_taken_by(k);
                if taken.is_none() && !Self::automatic(self.from, k) && self.index_detaches(name) {
                    self.recreate(k);
                }
                taken.map(|c| (c, None))
            }
            // The same attachment, with its partitioned index or its index made again.
            "index attachment" => {
                let parent = self.to.objects[k].clone();
                if self.index_made(&parent)
                    || self.index_made(name)
                    || self.index_taken_by(&key("index", name)).is_some()
                {
                    self.create(k);
                }
                None
            }
            _ => None,
        };
        if let Some((by, lossy)) = taken {
            let made = self.create_after_drop_of(k, &by);
            if let Some(what) = lossy {
                for u in &mut self.units[made] {
                    u.lossy(what.clone());
                }
            }
        }
    }

    /// Make `k` again after the drop of `by`, which takes it along; the units written for it.
    fn create_after_drop_of(&mut self, k: &Key, by: &Key) -> std::ops::Range<usize> {
        let first = self.units.len();
        self.create(k);
        for u in &mut self.units[first..] {
            u.after_drops(vec![by.clone()]);
        }
        first..self.units.len()
    }

    // ------------------------------------------------------------ what generators build with

    fn unit(&mut self, op: Op, k: &Key, place: Place, sql: String) -> &mut Unit {
        self.units.push(Unit {
            op,
            key: k.clone(),
            place,
            sql,
            in_transaction: None,
            needs: Vec::new(),
            stops_using: Vec::new(),
            after_drop_of: Vec::new(),
            effect: Effect::None,
            lossy: None,
            check: None,
        });
        self.units.last_mut().expect("just pushed")
    }

    fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    /// A key's name as typed names, or a note and `None` (never raw text in SQL).
    fn parsed<T>(&mut self, k: &Key, parse: fn(&str) -> Option<T>) -> Option<T> {
        let parsed = parse(k.1.strip_prefix("domain ").unwrap_or(&k.1));
        if parsed.is_none() {
            self.note(format!(
                "{} {} is not written by the tool: its name is not one the catalog writes; add it by hand",
                k.0, k.1
            ));
        }
        parsed
    }

    fn name(&mut self, k: &Key) -> Option<Name> {
        self.parsed(k, Name::parse)
    }

    fn member(&mut self, k: &Key) -> Option<Member> {
        self.parsed(k, Member::parse)
    }

    fn routine(&mut self, k: &Key) -> Option<Routine> {
        self.parsed(k, Routine::parse)
    }

    fn meta<'c>(cat: &'c Catalog, kind: &str, name: &str) -> Option<&'c Value> {
        cat.meta.get(&key(kind, name))
    }

    /// A meta record, or `Null` when the catalog has none.
    fn meta_or_null(cat: &Catalog, kind: &str, name: &str) -> Value {
        Self::meta(cat, kind, name).cloned().unwrap_or(Value::Null)
    }

    /// The table a column, constraint, trigger, policy or index belongs to (its key name).
    fn owner_table(cat: &Catalog, k: &Key) -> Option<String> {
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

    /// A relation's kind word in `cat` (`table`, `view` ...), if `name` is one.
    fn relation_kind(cat: &Catalog, name: &str) -> Option<&'static str> {
        RELATION_KINDS
            .iter()
            .find(|k| cat.objects.contains_key(&key(k, name)))
            .copied()
    }

    /// The tables `table` takes columns from: its partitioned parent, or what it INHERITS.
    fn parents(cat: &Catalog, table: &str) -> Vec<String> {
        Self::meta(cat, "rel", table)
            .map(|m| s(m, "parent").map_or_else(|| strings(m, "inherits"), |t| vec![t.to_string()]))
            .unwrap_or_default()
    }

    /// The tables that take columns from `table`: its partitions and its INHERITS children.
    fn children(cat: &Catalog, table: &str) -> Vec<String> {
        cat.meta
            .keys()
            .filter(|(kind, name)| {
                kind == "rel" && Self::parents(cat, name).iter().any(|p| p == table)
            })
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// The same column in each table `table` takes columns from (keys' names, parents that
    /// have it, in order).
    fn parent_columns(cat: &Catalog, table: &str, column: &str) -> Vec<String> {
        Self::parents(cat, table)
            .into_iter()
            .map(|parent| format!("{parent}.{column}"))
            .filter(|c| cat.objects.contains_key(&key("column", c)))
            .collect()
    }

    fn is_partitioned(cat: &Catalog, table: &str) -> bool {
        Self::meta(cat, "rel", table).and_then(|m| s(m, "relkind")) == Some("p")
    }

    fn table_is_new(&self, table: &str) -> bool {
        !RELATION_KINDS
            .iter()
            .any(|k| self.from.objects.contains_key(&key(k, table)))
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

    /// The rows of the existing table `table` as the plan converts them (columns whose type
    /// changes cast to their new type), for checks that must read them the way the new
    /// constraint will: `(SELECT ctid, a, b::jsonb AS b FROM t) t`.
    fn converted_rows(&self, table: &str, name: &Name) -> String {
        let mut columns = vec!["ctid".to_string()];
        let mut cast = false;
        for (_, c) in Self::columns_of(self.from, table) {
            let Some(col) = Member::parse(&c) else {
                continue;
            };
            let ty = |cat| Self::meta(cat, "column", &c).and_then(|m| s(m, "type"));
            match (ty(self.from), ty(self.to)) {
                (Some(old), Some(new)) if old != new => {
                    cast = true;
                    columns.push(format!("{n}::{new} AS {n}", n = col.name));
                }
                _ => columns.push(col.name.to_string()),
            }
        }
        if cast {
            format!("(SELECT {} FROM {name}) t", columns.join(", "))
        } else {
            format!("{name} t")
        }
    }

    /// An index or constraint on a table that exists before and after (and is not
    /// partitioned) is built, dropped or validated outside the transaction.
    fn concurrent_ok(&self, table: &str) -> bool {
        !self.options.one_transaction
            && !self.table_is_new(table)
            && RELATION_KINDS
                .iter()
                .any(|k| self.to.objects.contains_key(&key(k, table)))
            && !Self::is_partitioned(self.to, table)
            && !Self::is_partitioned(self.from, table)
    }

    // ------------------------------------------------------------ the walk

    /// Made by PostgreSQL itself: not written, not dropped.
    fn automatic(cat: &Catalog, k: &Key) -> bool {
        let (kind, name) = (k.0.as_str(), k.1.as_str());
        match kind {
            // A constraint trigger's constraint row comes and goes with its trigger.
            "constraint" => Self::meta(cat, "constraint", name).is_some_and(|m| {
                b(m, "inherited") || s(m, "type") == Some("n") || s(m, "type") == Some("t")
            }),
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
            "constraint" if self.index_drop_taking(k).is_some() => true,
            "constraint" if name.starts_with("domain ") => {
                let (d, _) = split_member(&name["domain ".len()..]);
                dropped("type", d)
            }
            "comment" | "privileges" | "owner" => {
                target::object_of(cat, kind, name).is_some_and(|obj| {
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

    /// An index both schemas have (the same definition) that goes with the drop of what owned
    /// it in the old one (a constraint, or the partitioned index it was attached to), while the
    /// new one has it on its own or attached to an index made in this plan: that owner's key
    /// (it is made again after that drop).
    fn index_taken_by(&self, k: &Key) -> Option<Key> {
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

    /// A child's column inherited in the old schema and its own in the new one, whose parent's
    /// column this plan drops (taking it along): that parent column.
    fn column_taken_by(&self, k: &Key) -> Option<Key> {
        if !Self::automatic(self.from, k) || Self::automatic(self.to, k) {
            return None;
        }
        let (table, column) = split_member(&k.1);
        Self::parent_columns(self.from, table, column)
            .into_iter()
            .map(|c| key("column", &c))
            .find(|c| !self.to.objects.contains_key(c))
    }

    /// A child's own column that the new schema has inherited from a column this plan adds to
    /// an existing parent (the add would merge with it and keep it the child's own).
    fn column_merges(&self, k: &Key) -> bool {
        if Self::automatic(self.from, k) || !Self::automatic(self.to, k) {
            return false;
        }
        let (table, column) = split_member(&k.1);
        Self::parents(self.to, table).iter().any(|parent| {
            Self::relation_kind(self.from, parent).is_some()
                && Self::parents(self.from, table).contains(parent)
                && !self
                    .from
                    .objects
                    .contains_key(&key("column", &format!("{parent}.{column}")))
        })
    }

    /// A partition's constraint made by its parent's in the old schema and its own in the new
    /// one: the parent's constraint (dropped by this plan), whose drop takes it.
    fn constraint_taken_by(&self, k: &Key) -> Option<Key> {
        if !Self::automatic(self.from, k) || Self::automatic(self.to, k) || self.detached(k) {
            return None;
        }
        let parent = Self::parent_constraint(self.from, k)?;
        (self.changes(&parent) || self.constraint_detaches(&parent)).then_some(parent)
    }

    /// Whether the table a constraint or index is on is detached from its parent (or moved to
    /// another) in this plan: it keeps its copies of the parent's keys and indexes.
    fn detached(&self, k: &Key) -> bool {
        Self::owner_table(self.from, k)
            .is_some_and(|t| Self::partition_of(self.from, &t).is_some() && self.changes_parent(&t))
    }

    /// A relation's partitioned parent in `cat`, if it is a partition.
    fn partition_of<'c>(cat: &'c Catalog, table: &str) -> Option<&'c str> {
        Self::meta(cat, "rel", table).and_then(|m| s(m, "parent"))
    }

    /// Whether a table is attached, detached or moved to another parent by this plan.
    fn changes_parent(&self, table: &str) -> bool {
        Self::partition_of(self.from, table) != Self::partition_of(self.to, table)
    }

    /// The parent's constraint whose drop takes a partition's constraint `k` (made by it in the
    /// old schema), or the partitioned index whose drop does: for ordering against that drop.
    fn dropped_with(&self, k: &Key) -> Option<Key> {
        if k.0 != "constraint" {
            return None;
        }
        if let Some(index) = self.index_drop_taking(k) {
            return Some(index);
        }
        if !Self::automatic(self.from, k) {
            return None;
        }
        Self::parent_constraint(self.from, k)
    }

    /// The constraint on the parent table that made a partition's constraint `k` in `cat`:
    /// the constraint of the partitioned index `k`'s index is attached to.
    fn parent_constraint(cat: &Catalog, k: &Key) -> Option<Key> {
        let index = Self::index_of_constraint(cat, k)?;
        let parent = Self::meta(cat, "rel", &index.1).and_then(|m| s(m, "index_parent"))?;
        Self::index_constraint(cat, parent)
    }

    /// The constraint an index is built for in `cat` (its key), if any.
    fn index_constraint(cat: &Catalog, index: &str) -> Option<Key> {
        Self::meta(cat, "rel", index)
            .and_then(|m| s(m, "index_constraint"))
            .map(|c| key("constraint", c))
    }

    /// What an index goes with in `cat`: its constraint, or the partitioned index it is
    /// attached to.
    fn index_owner(cat: &Catalog, index: &str) -> Option<Key> {
        Self::index_constraint(cat, index).or_else(|| {
            Self::meta(cat, "rel", index)
                .and_then(|m| s(m, "index_parent"))
                .map(|i| key("index", i))
        })
    }

    /// Whether an object differs between the schemas (made, dropped or changed by the plan).
    fn changes(&self, k: &Key) -> bool {
        self.from.objects.get(k) != self.to.objects.get(k)
    }

    /// The index a constraint is built on in `cat` (its key), if it is one that has one.
    fn index_of_constraint(cat: &Catalog, k: &Key) -> Option<Key> {
        if k.0 != "constraint" {
            return None;
        }
        cat.meta
            .iter()
            .find(|((kind, _), m)| kind == "rel" && s(m, "index_constraint") == Some(k.1.as_str()))
            .map(|((_, index), _)| key("index", index))
    }

    /// A primary key or unique constraint both schemas have, the same, whose index has an
    /// attached index the new schema does not attach to it (made again, see below).
    fn constraint_detaches(&self, k: &Key) -> bool {
        Self::index_of_constraint(self.from, k).is_some_and(|index| self.index_detaches(&index.1))
    }

    /// An index both schemas have, the same, one of whose attached indexes (which stays, on a
    /// partition that stays) is not attached to it in the new schema.
    fn index_detaches(&self, name: &str) -> bool {
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
    fn indexes_on<'c>(cat: &'c Catalog, table: &'c str) -> impl Iterator<Item = &'c String> {
        cat.meta
            .iter()
            .filter(move |((kind, _), m)| kind == "rel" && s(m, "index_table") == Some(table))
            .map(|((_, name), _)| name)
    }

    /// The table an index is on (its key name), from its meta.
    fn index_table<'c>(cat: &'c Catalog, index: &str) -> Option<&'c str> {
        Self::meta(cat, "rel", index).and_then(|m| s(m, "index_table"))
    }

    /// Whether every partition of `index`'s table has an index attached to it in `cat` (a
    /// partitioned index made with `ON ONLY` is valid only then).
    fn index_complete(cat: &Catalog, index: &str) -> bool {
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

    /// Whether PostgreSQL attaches index `child` to `parent` by itself in this plan: the
    /// partitioned index is made here without `ONLY`, or the partition is made or attached
    /// here (each takes its parent's indexes).
    fn attach_is_automatic(&self, child: &str, parent: &str) -> bool {
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
    fn attachment_goes(&self, child: &str, parent: &str) -> bool {
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

    /// Whether this plan makes the index `name` (new, changed or made again).
    fn index_made(&self, name: &str) -> bool {
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
    fn named_partition_index(&self, k: &Key) -> bool {
        k.0 == "index"
            && Self::meta(self.to, "rel", &k.1)
                .and_then(|m| s(m, "index_parent"))
                .is_some_and(|parent| self.index_made(parent))
            && Self::meta(self.to, "rel", &k.1).is_some_and(|m| m["index_constraint"].is_null())
    }

    /// The partitions' indexes made under their own names (see above) that the new
    /// partitioned index `index` attaches: made before it.
    fn named_partition_indexes_of(&self, index: &str) -> Vec<Key> {
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
    fn partition_constraints_on(cat: &Catalog, index: &str) -> Vec<Key> {
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
    fn index_drop_taking(&self, k: &Key) -> Option<Key> {
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
    fn partition_keys_made_first(&self, table: &str) -> Vec<Key> {
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

    /// Created together with something else that is created (a new table's columns).
    fn comes_with_create(&self, k: &Key) -> bool {
        if k.0 == "constraint"
            && let Some(t) = Self::owner_table(self.to, k)
            && self.partition_keys_made_first(&t).contains(k)
        {
            return true;
        }
        if k.0 == "column"
            && let Some(t) = Self::owner_table(self.to, k)
        {
            return !self.from.objects.contains_key(&key("table", &t))
                && !self.from.objects.contains_key(&key("foreign table", &t));
        }
        false
    }

    fn is_renamed_from(&self, old: &Key) -> bool {
        self.renamed.values().any(|o| o == old)
    }

    /// A partition's constraint that the new schema has as its parent's, on an index this plan
    /// attaches by hand (the parent's index is `ON ONLY`): made as the partition's own first,
    /// and the attachment makes it the parent's.
    fn explicit_partition_constraint(&self, k: &Key) -> bool {
        k.0 == "constraint"
            && !self.from.objects.contains_key(k)
            && Self::index_of_constraint(self.to, k).is_some_and(|index| {
                self.to
                    .objects
                    .get(&key("index attachment", &index.1))
                    .is_some_and(|parent| !self.attach_is_automatic(&index.1, parent))
            })
    }

    fn create(&mut self, k: &Key) {
        if (Self::automatic(self.to, k)
            && !self.named_partition_index(k)
            && !self.explicit_partition_constraint(k))
            || self.comes_with_create(k)
            || self.renamed.contains_key(k)
        {
            return;
        }
        match generator(&k.0) {
            Some(g) => g.create(self, k),
            None => self.note(format!(
                "{} {} is not written by the tool: add it by hand",
                k.0, k.1
            )),
        }
    }

    fn drop(&mut self, k: &Key) {
        if Self::automatic(self.from, k) || self.goes_with_drop(k) || self.is_renamed_from(k) {
            return;
        }
        if let Some(g) = generator(&k.0) {
            g.drop(self, k);
        }
    }

    fn change(&mut self, k: &Key) {
        match generator(&k.0) {
            Some(g) => g.alter(self, k),
            None => self.recreate(k),
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
    fn recreate_dependents(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn cat(objects: &[(&str, &str, &str)], meta: &[(&str, &str, Value)]) -> Catalog {
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

    #[test]
    fn a_key_that_is_not_a_name_is_never_written() {
        // As if description text had reached a key: a note, no SQL.
        let hostile = "k ON users IS NULL;RESET ROLE;ALTER ROLE app SUPERUSER;--";
        let to = cat(&[("schema", hostile, "")], &[]);
        let up = plan(&Catalog::default(), &to, "app", Direction::Up);
        assert!(up.steps.is_empty(), "{:?}", up.steps);
        assert!(
            up.notes
                .iter()
                .any(|n| n.contains("not one the catalog writes"))
        );
    }
}
