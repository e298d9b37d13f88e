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
mod default_privilege;
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
    /// Write schema public's privileges too (`verify --fix`: the expected side holds the live
    /// database's own schema public, as `init` left it, and what the migrations granted there,
    /// so any other grant is drift to undo). Off for `diff`, where they are `init`'s.
    pub public_privileges: bool,
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
            public_privileges: false,
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
        "privileges" => &privilege::PRIVILEGES,
        "default privileges" => &default_privilege::DEFAULT_PRIVILEGES,
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

impl<'a> Planner<'a> {
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
                if init_owned(&k) && !(self.options.public_privileges && k.0 == "privileges") {
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

    /// The catalog that holds `k`: the desired one when it has it (a create or change), else the
    /// current one (a drop).
    fn holder(&self, k: &Key) -> &'a Catalog {
        if self.to.objects.contains_key(k) {
            self.to
        } else {
            self.from
        }
    }

    /// A meta record, or `Null` when the catalog has none.
    fn meta_or_null(cat: &Catalog, kind: &str, name: &str) -> Value {
        Self::meta(cat, kind, name).cloned().unwrap_or(Value::Null)
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

    /// Whether an object differs between the schemas (made, dropped or changed by the plan).
    fn changes(&self, k: &Key) -> bool {
        self.from.objects.get(k) != self.to.objects.get(k)
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
}

#[cfg(test)]
mod tests;
