//! Triggers: created from the server's `pg_get_triggerdef` with their enabled state; a change of
//! state alone is an `ALTER TABLE ... ENABLE/DISABLE TRIGGER`, anything else a re-make.

use super::{Generator, Key, Op, Place, Planner, s};
use crate::db::ident::Member;

pub(super) struct Triggers;

/// A trigger's catalog definition without the enabled state the catalog appends to it.
fn body(def: &str) -> &str {
    [" (DISABLED)", " (ENABLED"]
        .iter()
        .find_map(|m| def.rfind(m))
        .map_or(def, |at| &def[..at])
}

/// The statement that gives trigger `trigger` the enabled state its meta records (`None` for
/// the default, enabled).
fn state(p: &Planner, k: &Key, trigger: &Member) -> Option<String> {
    let m = Planner::meta(p.to, "trigger", &k.1)?;
    let state = match s(m, "enabled") {
        Some("D") => "DISABLE",
        Some("R") => "ENABLE REPLICA",
        Some("A") => "ENABLE ALWAYS",
        _ => "ENABLE",
    };
    Some(format!(
        "ALTER TABLE {} {state} TRIGGER {};",
        trigger.of, trigger.name
    ))
}

impl Generator for Triggers {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(trigger) = p.member(k) else { return };
        let def = p.to.objects[k].clone();
        let mut sql = format!("{};", body(&def));
        let enabled = Planner::meta(p.to, "trigger", &k.1).and_then(|m| s(m, "enabled"));
        if enabled.is_some_and(|e| e != "O")
            && let Some(state) = state(p, k, &trigger)
        {
            sql = format!("{sql}\n{state}");
        }
        p.unit(Op::Create, k, Place::Main, sql);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(trigger) = p.member(k) else { return };
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!("DROP TRIGGER {} ON {};", trigger.name, trigger.of),
        );
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        if body(&p.from.objects[k]) != body(&p.to.objects[k]) {
            p.recreate(k);
            return;
        }
        let Some(trigger) = p.member(k) else { return };
        if let Some(state) = state(p, k, &trigger) {
            p.unit(Op::Alter, k, Place::Main, state);
        }
    }
}
