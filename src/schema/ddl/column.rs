//! Columns: added (with a note when the desired order cannot be reached), dropped (lossy),
//! renamed when a same-shaped column replaces one (a guess, said so), and changed in place:
//! type (with `USING`), collation, default, NOT NULL, identity, generated expression, storage.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{Check, Effect, Generator, Key, Op, Place, Planner, Unit, b, key, s, split_member};
use crate::db::ident::Member;
use crate::db::ident::Name;
use crate::schema::catalog::Catalog;

pub(super) struct Columns;

/// `name type [COLLATE c] [DEFAULT d | GENERATED ...] [NOT NULL]` for the column `name` of
/// `p.to`, or `None` (with a note) when its key is not a name.
pub(super) fn definition(p: &mut Planner, name: &str) -> Option<String> {
    let k = key("column", name);
    let col = p.member(&k)?;
    let m = Planner::meta_or_null(p.to, "column", name);
    let mut sql = format!("{} {}", col.name, s(&m, "type").unwrap_or("text"));
    if let Some(c) = s(&m, "collate") {
        let _ = write!(sql, " COLLATE {c}");
    }
    if let Some(g) = s(&m, "generated") {
        let _ = write!(sql, " GENERATED ALWAYS AS ({g}) STORED");
    } else if let Some(d) = s(&m, "default") {
        let _ = write!(sql, " DEFAULT {d}");
    }
    if let Some(i) = s(&m, "identity") {
        let _ = write!(sql, " GENERATED {i} AS IDENTITY{}", identity_options(&m));
    }
    if b(&m, "notnull") {
        sql.push_str(" NOT NULL");
    }
    Some(sql)
}

impl Generator for Columns {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(col) = p.member(k) else { return };
        let Some(def) = definition(p, &k.1) else {
            return;
        };
        order_note(p, &k.1);
        p.unit(
            Op::Create,
            k,
            Place::Main,
            format!("ALTER TABLE {} ADD COLUMN {def};", col.of),
        );
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(col) = p.member(k) else { return };
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!("ALTER TABLE {} DROP COLUMN {};", col.of, col.name),
        )
        .lossy(format!("column {} is dropped with its values", k.1));
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        change(p, k);
    }
}

/// ` (START WITH 1 INCREMENT BY 1 ...)` of an identity column's meta, or nothing when unknown.
fn identity_options(m: &serde_json::Value) -> String {
    let q = &m["identity_seq"];
    if q.is_null() {
        return String::new();
    }
    format!(" ({})", super::sequence::parameters(q, "2147483647"))
}

/// `SET START WITH 5 SET INCREMENT BY 2 ...` for the options that differ (numbers from the
/// server's catalog, so digits and a sign only).
fn identity_changes(was: &serde_json::Value, want: &serde_json::Value) -> Option<String> {
    let mut set = Vec::new();
    for (field, clause) in [
        ("start", "START WITH"),
        ("increment", "INCREMENT BY"),
        ("min", "MINVALUE"),
        ("max", "MAXVALUE"),
        ("cache", "CACHE"),
    ] {
        if was[field] != want[field] {
            let v = s(want, field)?;
            if !v.chars().all(|c| c.is_ascii_digit() || c == '-') {
                return None;
            }
            set.push(format!("SET {clause} {v}"));
        }
    }
    if was["cycle"] != want["cycle"] {
        set.push(
            if b(want, "cycle") {
                "SET CYCLE"
            } else {
                "SET NO CYCLE"
            }
            .to_string(),
        );
    }
    (!set.is_empty()).then(|| set.join(" "))
}

/// Whether `type_name` (as `format_type` writes it) is an enum of the catalog.
fn is_enum(cat: &crate::schema::catalog::Catalog, type_name: &str) -> bool {
    Planner::meta(cat, "type", type_name).and_then(|m| s(m, "typtype")) == Some("e")
}

fn order_note(p: &mut Planner, name: &str) {
    let (table, _) = split_member(name);
    let num = Planner::meta(p.to, "column", name).and_then(|m| m["num"].as_i64());
    let later = Planner::columns_of(p.to, table)
        .iter()
        .any(|(n, c)| Some(*n) > num && p.from.objects.contains_key(&key("column", c)));
    if later {
        p.note(format!(
            "column {name} is added last: PostgreSQL cannot put a new column between existing ones (the desired schema has it earlier)"
        ));
    }
}

fn change(p: &mut Planner, k: &Key) {
    let (Some(was), Some(want)) = (
        Planner::meta(p.from, "column", &k.1).cloned(),
        Planner::meta(p.to, "column", &k.1).cloned(),
    ) else {
        return;
    };
    // A column a partition or child table inherits (or will, once its table is attached): its
    // type is the parent's, but NOT NULL and its default are its own, unless the parent's same
    // change reaches it.
    if Planner::automatic(p.to, k) {
        inherited_change(p, k, &was, &want);
        return;
    }
    let Some(Member {
        of: table,
        name: col,
    }) = p.member(k)
    else {
        return;
    };
    let alter = |what: String| format!("ALTER TABLE {table} ALTER COLUMN {col} {what};");
    // Generated columns: an expression cannot be changed in place.
    if was["generated"] != want["generated"] {
        if want["generated"].is_null() {
            p.unit(Op::Alter, k, Place::Main, alter("DROP EXPRESSION".into()));
        } else {
            let Some(def) = definition(p, &k.1) else {
                return;
            };
            let rows = p.converted_rows(split_member(&k.1).0, &table);
            let unit = p.unit(
                Op::Alter,
                k,
                Place::Main,
                format!(
                    "ALTER TABLE {table} DROP COLUMN {col};\nALTER TABLE {table} ADD COLUMN {def};"
                ),
            );
            if was["generated"].is_null() {
                unit.lossy(format!(
                    "column {} is dropped and added again as a generated column (its values are replaced)",
                    k.1
                ))
                .check(Check::GeneratedMatches {
                    table: table.clone(),
                    column: col.clone(),
                    expr: s(&want, "generated").unwrap_or_default().to_string(),
                    rows: rows.clone(),
                });
            }
            return;
        }
    }
    let mut drop_part = Vec::new();
    let mut set_part = Vec::new();
    let mut lossy = None;
    let mut check = None;
    if was["identity"] != want["identity"] {
        match (s(&was, "identity"), s(&want, "identity")) {
            (Some(_), None) => drop_part.push(alter("DROP IDENTITY".into())),
            (None, Some(i)) => set_part.push(alter(format!(
                "ADD GENERATED {i} AS IDENTITY{}",
                identity_options(&want)
            ))),
            (_, Some(i)) => set_part.push(alter(format!("SET GENERATED {i}"))),
            _ => {}
        }
    }
    // The identity's sequence options (START, INCREMENT, ...), changed in place.
    if s(&was, "identity").is_some()
        && s(&want, "identity").is_some()
        && was["identity_seq"] != want["identity_seq"]
        && let Some(set) = identity_changes(&was["identity_seq"], &want["identity_seq"])
    {
        set_part.push(alter(set));
    }
    if was["default"] != want["default"] && !was["default"].is_null() {
        drop_part.push(alter("DROP DEFAULT".into()));
    }
    let retyped = was["type"] != want["type"] || was["collate"] != want["collate"];
    if retyped {
        let (old, new) = (
            s(&was, "type").unwrap_or(""),
            s(&want, "type").unwrap_or(""),
        );
        if old == new {
            // Only the collation: every value stays; comparisons and the indexes on it change.
            p.note(format!(
                "column {} changes collation from {} to {} (its indexes are rebuilt; ordering and equality follow the new one)",
                k.1,
                s(&was, "collate").unwrap_or("the type's default"),
                s(&want, "collate").unwrap_or("the type's default")
            ));
        } else if !widening(old, new) {
            lossy = Some(format!(
                "column {} changes type from {old} to {new}, which can fail or lose precision on existing values",
                k.1
            ));
        }
        let collate = s(&want, "collate")
            .map(|c| format!(" COLLATE {c}"))
            .unwrap_or_default();
        let using = if old == new {
            String::new()
        } else if is_enum(p.from, old) || is_enum(p.to, new) {
            // There is no cast between two enum types (nor from an enum to most types): through
            // text, as the enum swap does.
            format!(" USING {col}::text::{new}")
        } else {
            format!(" USING {col}::{new}")
        };
        set_part.push(alter(format!("TYPE {new}{collate}{using}")));
    }
    if was["default"] != want["default"]
        && let Some(d) = s(&want, "default")
    {
        set_part.push(alter(format!("SET DEFAULT {d}")));
    }
    if b(&was, "notnull") != b(&want, "notnull") {
        if b(&want, "notnull") {
            let not_null = alter("SET NOT NULL".into());
            // An identity can only be added to a NOT NULL column: that comes first.
            match set_part.iter().position(|x| x.contains(" ADD GENERATED ")) {
                Some(at) => set_part.insert(at, not_null),
                None => set_part.push(not_null),
            }
            check = Some(Check::NotNull {
                table: table.clone(),
                column: col.clone(),
            });
        } else {
            drop_part.push(alter("DROP NOT NULL".into()));
        }
    }
    if was["storage"] != want["storage"] {
        set_part.push(alter(format!(
            "SET STORAGE {}",
            s(&want, "storage").unwrap_or("EXTENDED")
        )));
    }
    if let Some(unit) = column_units(p, k, &drop_part, &set_part) {
        if retyped {
            unit.effect(Effect::Retype);
        }
        if let Some(l) = lossy {
            unit.lossy(l);
        }
        if let Some(c) = check {
            unit.check(c);
        }
    }
}

/// NOT NULL and the default of an inherited column `k` (of a partition or a child table), where
/// they change and no parent's column changes the same way (that change recurses to it).
fn inherited_change(p: &mut Planner, k: &Key, was: &serde_json::Value, want: &serde_json::Value) {
    let (table, column) = split_member(&k.1);
    let parent_columns = Planner::parent_columns(p.to, table, column);
    let follows = |field: &str| {
        parent_columns.iter().any(|col| {
            let (a, z) = (
                Planner::meta(p.from, "column", col),
                Planner::meta(p.to, "column", col),
            );
            a.is_some_and(|a| a[field] == was[field]) && z.is_some_and(|z| z[field] == want[field])
        })
    };
    let notnull = b(was, "notnull") != b(want, "notnull") && !follows("notnull");
    let default = was["default"] != want["default"] && !follows("default");
    if !notnull && !default {
        return;
    }
    let Some(Member { of, name: col }) = p.member(k) else {
        return;
    };
    let alter = |what: &str| format!("ALTER TABLE {of} ALTER COLUMN {col} {what};");
    let (mut loosen, mut tighten) = (Vec::new(), Vec::new());
    if default {
        match s(want, "default") {
            Some(d) => tighten.push(alter(&format!("SET DEFAULT {d}"))),
            None => loosen.push(alter("DROP DEFAULT")),
        }
    }
    let mut check = None;
    if notnull {
        if b(want, "notnull") {
            tighten.push(alter("SET NOT NULL"));
            check = Some(Check::NotNull {
                table: of.clone(),
                column: col.clone(),
            });
        } else {
            loosen.push(alter("DROP NOT NULL"));
        }
    }
    if let Some(unit) = column_units(p, k, &loosen, &tighten)
        && let Some(c) = check
    {
        unit.check(c);
    }
}

/// A column's loosening (its own unit, before the drops it makes possible) and tightening
/// (after the creates it needs, such as a default naming a new function); the latter returned.
fn column_units<'p>(
    p: &'p mut Planner,
    k: &Key,
    loosen: &[String],
    tighten: &[String],
) -> Option<&'p mut Unit> {
    if !loosen.is_empty() {
        p.unit(
            Op::Drop,
            &key("column loosened", &k.1),
            Place::Main,
            loosen.join("\n"),
        );
    }
    (!tighten.is_empty()).then(|| p.unit(Op::Alter, k, Place::Main, tighten.join("\n")))
}

/// A column that disappears while one with the same definition appears in the same table is
/// taken for a rename (and said so).
pub(super) fn guess_renames(p: &mut Planner) {
    let cols = |cat: &Catalog| -> BTreeSet<String> {
        cat.objects
            .keys()
            .filter(|(k, _)| k == "column")
            .map(|(_, n)| n.clone())
            .collect()
    };
    let (before, after) = (cols(p.from), cols(p.to));
    let gone: Vec<&String> = before.difference(&after).collect();
    let new: Vec<&String> = after.difference(&before).collect();
    let shape = |cat: &Catalog, name: &str| {
        Planner::meta(cat, "column", name).map(|m| {
            let mut m = m.clone();
            for f in ["num", "name"] {
                m.as_object_mut().map(|o| o.remove(f));
            }
            m
        })
    };
    for old in &gone {
        let (table, _) = split_member(old);
        if !p.to.objects.contains_key(&key("table", table)) {
            continue;
        }
        let old_shape = shape(p.from, old);
        let same = |n: &&&String| split_member(n).0 == table && shape(p.to, n) == old_shape;
        let candidates: Vec<&&String> = new.iter().filter(same).collect();
        let rivals = gone
            .iter()
            .filter(|g| split_member(g).0 == table && shape(p.from, g) == old_shape)
            .count();
        if let ([one], 1) = (candidates.as_slice(), rivals) {
            p.renamed.insert(key("column", one), key("column", old));
        }
    }
    for (new, old) in p.renamed.clone() {
        let (Some(from), Some(to)) = (Member::parse(&old.1), Member::parse(&new.1)) else {
            p.renamed.remove(&new);
            continue;
        };
        p.note(format!(
            "guessed a rename: column {} disappears and {} with the same definition appears, so the migration renames it (edit to DROP and ADD if it is not the same data)",
            old.1, new.1
        ));
        p.unit(
            Op::Alter,
            &new,
            Place::Main,
            format!(
                "ALTER TABLE {} RENAME COLUMN {} TO {};",
                from.of, from.name, to.name
            ),
        );
    }
}

/// Type changes that keep every value (no rewrite risk of loss).
#[must_use]
pub fn widening(old: &str, new: &str) -> bool {
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

/// What the plan asks about columns (moved here from the walk, issue #41).
impl Planner<'_> {
    /// The same column in each table `table` takes columns from (keys' names, parents that
    /// have it, in order).
    pub(super) fn parent_columns(cat: &Catalog, table: &str, column: &str) -> Vec<String> {
        Self::parents(cat, table)
            .into_iter()
            .map(|parent| format!("{parent}.{column}"))
            .filter(|c| cat.objects.contains_key(&key("column", c)))
            .collect()
    }

    /// The rows of the existing table `table` as the plan converts them (columns whose type
    /// changes cast to their new type), for checks that must read them the way the new
    /// constraint will: `(SELECT ctid, a, b::jsonb AS b FROM t) t`.
    pub(super) fn converted_rows(&self, table: &str, name: &Name) -> String {
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

    /// A child's column inherited in the old schema and its own in the new one, whose parent's
    /// column this plan drops (taking it along): that parent column.
    pub(super) fn column_taken_by(&self, k: &Key) -> Option<Key> {
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
    pub(super) fn column_merges(&self, k: &Key) -> bool {
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

    pub(super) fn is_renamed_from(&self, old: &Key) -> bool {
        self.renamed.values().any(|o| o == old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_type_changes_keep_every_value() {
        assert!(widening("character varying(50)", "character varying(100)"));
        assert!(widening("character varying(50)", "text"));
        assert!(widening("integer", "bigint"));
        assert!(!widening("character varying(100)", "character varying(50)"));
        assert!(!widening("bigint", "integer"));
        assert!(!widening("text", "integer"));
    }
}
