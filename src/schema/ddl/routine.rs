//! Functions, procedures and aggregates: functions and procedures from the server's own
//! `pg_get_functiondef` (replaced in place unless the result type changes), aggregates from their
//! parts.

use super::{Generator, Key, Op, Place, Planner, s};
use crate::db::quote_literal;

pub(super) struct Routines;

fn word(kind: &str) -> &'static str {
    match kind {
        "procedure" => "PROCEDURE",
        "aggregate" => "AGGREGATE",
        _ => "FUNCTION",
    }
}

impl Generator for Routines {
    fn create(&self, p: &mut Planner, k: &Key) {
        if k.0 == "aggregate" {
            create_aggregate(p, k);
            return;
        }
        let def = p.to.objects[k].trim_end().to_string();
        p.unit(Op::Create, k, Place::Main, format!("{def};"));
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(routine) = p.routine(k) else { return };
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!("DROP {} {routine};", word(&k.0)),
        );
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        if k.0 == "aggregate" {
            p.recreate(k);
            return;
        }
        let result = |cat| Planner::meta(cat, "routine", &k.1).and_then(|m| s(m, "result"));
        if result(p.from) == result(p.to) {
            // `CREATE OR REPLACE`, as pg_get_functiondef writes it.
            let def = p.to.objects[k].trim_end().to_string();
            p.unit(Op::Alter, k, Place::Main, format!("{def};"));
        } else {
            p.recreate(k);
        }
    }
}

fn create_aggregate(p: &mut Planner, k: &Key) {
    let Some(routine) = p.routine(k) else { return };
    let m = Planner::meta_or_null(p.to, "routine", &k.1);
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
    // Operator names are made of operator characters only.
    if let Some(o) = s(&m, "sortop").filter(|o| o.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c)))
    {
        parts.push(format!("SORTOP = OPERATOR({o})"));
    }
    match s(&m, "parallel") {
        Some("s") => parts.push("PARALLEL = SAFE".into()),
        Some("r") => parts.push("PARALLEL = RESTRICTED".into()),
        _ => {}
    }
    p.unit(
        Op::Create,
        k,
        Place::Main,
        format!(
            "CREATE AGGREGATE {}({}) ({});",
            routine.name,
            s(&m, "arguments").unwrap_or(""),
            parts.join(", ")
        ),
    );
}
