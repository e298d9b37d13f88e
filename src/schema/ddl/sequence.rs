//! Sequences: every parameter, and the column that owns one. An identity column's sequence is
//! PostgreSQL's own and never written.

use serde_json::Value;

use super::{Generator, Key, Op, Place, Planner, b, key, s, split_member};
use crate::db::ident::Member;

pub(super) struct Sequences;

/// `AS bigint START WITH 1 ...` (numbers and the type from the server).
fn options(m: &Value) -> String {
    format!(
        "AS {} {}",
        s(m, "type").unwrap_or("bigint"),
        parameters(m, "9223372036854775807")
    )
}

/// `START WITH 1 INCREMENT BY 1 MINVALUE 1 MAXVALUE .. CACHE 1 NO CYCLE` of a sequence's (or
/// an identity column's) parts; `max` when the parts have none.
pub(super) fn parameters(m: &Value, max: &str) -> String {
    format!(
        "START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {}{}",
        s(m, "start").unwrap_or("1"),
        s(m, "increment").unwrap_or("1"),
        s(m, "min").unwrap_or("1"),
        s(m, "max").unwrap_or(max),
        s(m, "cache").unwrap_or("1"),
        if b(m, "cycle") { " CYCLE" } else { " NO CYCLE" }
    )
}

impl Generator for Sequences {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        let m = Planner::meta_or_null(p.to, "sequence", &k.1);
        p.unit(
            Op::Create,
            k,
            Place::Main,
            format!("CREATE SEQUENCE {name} {};", options(&m)),
        );
        if let Some(col) = s(&m, "owned_by") {
            let Some(owner) = Member::parse(col) else {
                p.note(format!("the owning column of sequence {} is not written by the tool: add ALTER SEQUENCE ... OWNED BY by hand", k.1));
                return;
            };
            let (table, _) = split_member(col);
            let needs = vec![
                key("sequence", &k.1),
                key("table", table),
                key("column", col),
            ];
            p.unit(
                Op::Create,
                &key("sequence owned", &k.1),
                Place::Main,
                format!("ALTER SEQUENCE {name} OWNED BY {owner};"),
            )
            .needing(needs);
        }
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(name) = p.name(k) else { return };
        p.unit(Op::Drop, k, Place::Main, format!("DROP SEQUENCE {name};"))
            .lossy(format!(
                "sequence {} is dropped (its current value is lost)",
                k.1
            ));
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        if Planner::automatic(p.to, k) {
            return;
        }
        let Some(name) = p.name(k) else { return };
        let m = Planner::meta_or_null(p.to, "sequence", &k.1);
        let old = Planner::meta_or_null(p.from, "sequence", &k.1);
        // After the new owning column is made, before the old one (or its table) goes: dropping
        // it would take the sequence along.
        let owner_keys = |col: Option<&str>| {
            col.map(|c| vec![key("table", split_member(c).0), key("column", c)])
                .unwrap_or_default()
        };
        let needs = owner_keys(s(&m, "owned_by"));
        let stops = owner_keys(s(&old, "owned_by"));
        let owned = match s(&m, "owned_by").map(Member::parse) {
            None => "NONE".to_string(),
            Some(Some(col)) => col.to_string(),
            Some(None) => {
                p.note(format!("the owning column of sequence {} is not written by the tool: add ALTER SEQUENCE ... OWNED BY by hand", k.1));
                return;
            }
        };
        p.unit(
            Op::Alter,
            k,
            Place::Main,
            format!(
                "ALTER SEQUENCE {name} {};\nALTER SEQUENCE {name} OWNED BY {owned};",
                options(&m).replacen("START WITH", "START", 1)
            ),
        )
        .needing(needs)
        .stopping(stops);
    }
}
