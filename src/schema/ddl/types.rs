//! Types: enums (values added in place in a script of their own; removed or reordered by a swap
//! through text), domains, composite and range types.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Effect, Generator, Key, Op, Place, Planner, b, s, strings};
use crate::db::ident::{Ident, Member, Name};
use crate::db::quote_literal;

pub(super) struct Types;

/// A composite type's attributes: (name, type as the server writes it).
fn attributes(m: &Value) -> Vec<(Ident, String)> {
    m["attributes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((Ident::new(s(x, "name")?), s(x, "type")?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn literals(values: &[String]) -> String {
    values
        .iter()
        .map(|v| quote_literal(v))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Generator for Types {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let m = Planner::meta_or_null(p.to, "type", &k.1);
        let sql = match s(&m, "typtype") {
            Some("e") => format!(
                "CREATE TYPE {name} AS ENUM ({});",
                literals(&strings(&m, "values"))
            ),
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
                attributes(&m)
                    .iter()
                    .map(|(n, t)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        p.unit(Op::Create, k, Place::Main, sql);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let domain = Planner::meta(p.from, "type", &k.1).and_then(|m| s(m, "typtype")) == Some("d");
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!("DROP {} {name};", if domain { "DOMAIN" } else { "TYPE" }),
        );
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        let (Some(was), Some(want)) = (
            Planner::meta(p.from, "type", &k.1).cloned(),
            Planner::meta(p.to, "type", &k.1).cloned(),
        ) else {
            return;
        };
        let Some(name) = p.name(k) else { return };
        if was["typtype"] != want["typtype"] {
            p.note(format!(
                "type {} changes what kind of type it is: write that migration by hand",
                k.1
            ));
            return;
        }
        match s(&want, "typtype") {
            Some("e") => change_enum(p, k, &name, &was, &want),
            Some("d") => {
                if was["base"] != want["base"] || was["collate"] != want["collate"] {
                    p.note(format!(
                        "domain {} changes its base type or collation, which ALTER DOMAIN cannot do: write that migration by hand",
                        k.1
                    ));
                    return;
                }
                let mut sql = Vec::new();
                if was["default"] != want["default"] {
                    sql.push(match s(&want, "default") {
                        Some(d) => format!("ALTER DOMAIN {name} SET DEFAULT {d};"),
                        None => format!("ALTER DOMAIN {name} DROP DEFAULT;"),
                    });
                }
                if b(&was, "notnull") != b(&want, "notnull") {
                    sql.push(format!(
                        "ALTER DOMAIN {name} {} NOT NULL;",
                        if b(&want, "notnull") { "SET" } else { "DROP" }
                    ));
                }
                if !sql.is_empty() {
                    p.unit(Op::Alter, k, Place::Main, sql.join("\n"));
                }
            }
            Some("c") => change_composite(p, k, &name, &was, &want),
            _ => p.note(format!(
                "type {} changes its subtype, which ALTER TYPE cannot do: write that migration by hand",
                k.1
            )),
        }
    }
}

/// Composite types: attributes added, dropped or retyped in place.
fn change_composite(p: &mut Planner, k: &Key, name: &Name, was: &Value, want: &Value) {
    let (old, new) = (attributes(was), attributes(want));
    let mut sql = Vec::new();
    let mut lost = Vec::new();
    for (n, _) in &old {
        if !new.iter().any(|(m, _)| m == n) {
            sql.push(format!("ALTER TYPE {name} DROP ATTRIBUTE {n};"));
            lost.push(format!("attribute {n} of type {} is dropped", k.1));
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
        let unit = p.unit(Op::Alter, k, Place::Main, sql.join("\n"));
        if !lost.is_empty() {
            unit.lossy(lost.join("; "));
        }
    }
}

fn change_enum(p: &mut Planner, k: &Key, name: &Name, was: &Value, want: &Value) {
    let (old, new) = (strings(was, "values"), strings(want, "values"));
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
        let place = if p.options.one_transaction {
            Place::Main
        } else {
            Place::Pre
        };
        p.unit(Op::Alter, k, place, sql.join("\n"));
        return;
    }
    let removed: Vec<String> = old.iter().filter(|v| !new.contains(v)).cloned().collect();
    let pure_removal = new.iter().all(|v| old.contains(v));
    let place =
        if p.direction == super::Direction::Down && pure_removal && !p.options.one_transaction {
            Place::Pre
        } else {
            Place::Main
        };
    let sql = enum_swap(p, &k.1, name, &new);
    let unit = p.unit(Op::Alter, k, place, sql).effect(Effect::EnumSwap);
    if !removed.is_empty() {
        unit.lossy(format!(
            "enum {} loses value(s) {}: rows holding them make the migration fail until they are changed",
            k.1,
            literals(&removed)
        ));
    }
    p.reapply_attached(k);
}

/// Replace an enum whose values are removed or reordered: rename the old one, create the new
/// one, convert each column through text, drop the old one.
fn enum_swap(p: &Planner, key_name: &str, name: &Name, values: &[String]) -> String {
    let old = name.sibling(name.name.with_suffix("_old"));
    let mut sql = vec![
        format!("ALTER TYPE {name} RENAME TO {};", old.name),
        format!("CREATE TYPE {name} AS ENUM ({});", literals(values)),
    ];
    for (col, m) in p
        .from
        .meta
        .iter()
        .filter(|((k, _), _)| k == "column")
        .map(|((_, n), m)| (n, m))
    {
        let ty = s(m, "type").unwrap_or("");
        let array = ty == format!("{key_name}[]");
        if ty != key_name && !array {
            continue;
        }
        let Some(Member { of: table, name: c }) = Member::parse(col) else {
            continue;
        };
        // A column whose table this plan drops (it goes first) is not converted.
        if !super::RELATION_KINDS.iter().any(|k| {
            p.to.objects
                .contains_key(&super::key(k, &table.to_string()))
        }) {
            continue;
        }
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
        // Set again when this plan keeps it (a default the plan changes or drops is the
        // column's own step).
        if let Some(d) = s(m, "default").filter(|d| {
            Planner::meta(p.to, "column", col).and_then(|z| s(z, "default")) == Some(*d)
        }) {
            sql.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {c} SET DEFAULT {d};"
            ));
        }
    }
    sql.push(format!("DROP TYPE {old};"));
    sql.join("\n")
}
