//! Collations (`CREATE COLLATION`), from the catalog's parts: provider, locale or lc_collate /
//! lc_ctype, deterministic, ICU rules. A changed one is made again (there is no ALTER for them).

use super::{Generator, Key, Op, Place, Planner, s};
use crate::db::quote_literal;

pub(super) struct Collations;

/// The `(...)` of `CREATE COLLATION` for the collation `k` in the desired catalog.
fn options(p: &Planner, k: &Key) -> Option<String> {
    let m = Planner::meta(p.to, "collation", &k.1)?;
    let mut parts = Vec::new();
    match s(m, "provider")? {
        "i" => {
            parts.push("provider = icu".to_string());
            parts.push(format!("locale = {}", quote_literal(s(m, "locale")?)));
            if let Some(rules) = s(m, "rules") {
                parts.push(format!("rules = {}", quote_literal(rules)));
            }
        }
        "b" => {
            parts.push("provider = builtin".to_string());
            parts.push(format!("locale = {}", quote_literal(s(m, "locale")?)));
        }
        _ => {
            parts.push("provider = libc".to_string());
            parts.push(format!("lc_collate = {}", quote_literal(s(m, "collate")?)));
            parts.push(format!("lc_ctype = {}", quote_literal(s(m, "ctype")?)));
        }
    }
    if s(m, "deterministic") == Some("false") {
        parts.push("deterministic = false".to_string());
    }
    Some(format!("({})", parts.join(", ")))
}

impl Generator for Collations {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let Some(options) = options(p, k) else {
            p.note(format!(
                "collation {}: its definition could not be read; not written",
                k.1
            ));
            return;
        };
        p.unit(
            Op::Create,
            k,
            Place::Main,
            format!("CREATE COLLATION {name} {options};"),
        );
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        p.unit(Op::Drop, k, Place::Main, format!("DROP COLLATION {name};"));
    }
}
