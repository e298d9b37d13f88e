//! Database-level objects: schemas, extensions (from the catalog's parts: name, schema,
//! version), and publications (noted, not written).

use super::{Generator, Key, Op, Place, Planner, s};
use crate::db::ident::Ident;
use crate::db::quote_literal;

pub(super) struct Schemas;

impl Generator for Schemas {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.parsed(k, Ident::parse) else {
            return;
        };
        p.unit(Op::Create, k, Place::Main, format!("CREATE SCHEMA {name};"));
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        if k.1 == "public" {
            p.note("schema public is kept, though the desired schema has none".into());
            return;
        }
        let Some(name) = p.parsed(k, Ident::parse) else {
            return;
        };
        p.unit(Op::Drop, k, Place::Main, format!("DROP SCHEMA {name};"));
    }

    /// A schema's definition is empty: only its owner and grants change, as entries of their own.
    fn alter(&self, _p: &mut Planner, _k: &Key) {}
}

pub(super) struct Extensions;

/// An extension's schema (a name) and version (a literal), from the catalog's parts.
fn parts(p: &Planner, k: &Key, desired: bool) -> Option<(Ident, String)> {
    let cat = if desired { p.to } else { p.from };
    let m = Planner::meta(cat, "extension", &k.1)?;
    Some((Ident::new(s(m, "schema")?), s(m, "version")?.to_string()))
}

impl Generator for Extensions {
    fn create(&self, p: &mut Planner, k: &Key) {
        let (Some(name), Some((schema, version))) = (p.parsed(k, Ident::parse), parts(p, k, true))
        else {
            return;
        };
        // The version the desired schema has (not whatever is newest where it runs).
        p.unit(
            Op::Create,
            k,
            Place::Main,
            format!(
                "CREATE EXTENSION IF NOT EXISTS {name} WITH SCHEMA {schema} VERSION {};",
                quote_literal(&version)
            ),
        );
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.parsed(k, Ident::parse) else {
            return;
        };
        p.unit(Op::Drop, k, Place::Main, format!("DROP EXTENSION {name};"));
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        let (Some(name), Some((schema, version)), Some((old_schema, old_version))) = (
            p.parsed(k, Ident::parse),
            parts(p, k, true),
            parts(p, k, false),
        ) else {
            return;
        };
        if older(&version, &old_version) {
            // Extensions ship update scripts forward only: back to an older version is a drop
            // and a create at that version (what uses it is made again on top).
            p.recreate(k);
            return;
        }
        let mut sql = Vec::new();
        if version != old_version {
            sql.push(format!(
                "ALTER EXTENSION {name} UPDATE TO {};",
                quote_literal(&version)
            ));
        }
        if schema != old_schema {
            sql.push(format!("ALTER EXTENSION {name} SET SCHEMA {schema};"));
        }
        if !sql.is_empty() {
            p.unit(Op::Alter, k, Place::Main, sql.join("\n"));
        }
    }
}

/// Whether version `a` comes before `b` (dotted numbers, compared part by part; anything else
/// is not known to be older).
fn older(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Option<Vec<u64>> { v.split('.').map(|x| x.parse().ok()).collect() };
    match (parts(a), parts(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

pub(super) struct Publications;

impl Generator for Publications {
    fn create(&self, p: &mut Planner, k: &Key) {
        p.note(format!(
            "publication {} is not written by the tool: add CREATE PUBLICATION by hand",
            k.1
        ));
    }

    fn drop(&self, _p: &mut Planner, _k: &Key) {}

    fn alter(&self, p: &mut Planner, k: &Key) {
        p.note(format!(
            "publication {} differs: change it by hand (ALTER PUBLICATION)",
            k.1
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::older;

    #[test]
    fn versions_compare_part_by_part() {
        assert!(older("1.3", "1.4"));
        assert!(older("1.9", "1.10"));
        assert!(!older("1.10", "1.9"));
        assert!(!older("1.4", "1.4"));
        assert!(older("1", "1.0"));
        assert!(!older("2.0beta", "1.0"));
    }
}
