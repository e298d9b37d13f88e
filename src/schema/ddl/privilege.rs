//! Privileges: an object's grants are written whole (revoke from everyone involved, then grant
//! what the desired ACL holds), from the catalog's `aclexplode()` parts: each grantee is a role
//! name from `pg_roles` (or PUBLIC) and goes through [`Grantee`], never parsed from ACL text.

use std::collections::BTreeSet;

use serde_json::Value;

use super::target::{Target, object_of, target};
use super::{Generator, Key, Op, Place, Planner, key, s};
use crate::db::ident::{Grantee, Ident};
use crate::schema::catalog::Catalog;

/// A kind written whole by one function whatever the change (an object's privileges, default
/// privileges): create, drop and alter all make the entry what the desired catalog says.
pub(super) struct WrittenWhole(pub(super) fn(&mut Planner, &Key));

impl Generator for WrittenWhole {
    fn create(&self, p: &mut Planner, k: &Key) {
        (self.0)(p, k);
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        (self.0)(p, k);
    }

    fn alter(&self, p: &mut Planner, k: &Key) {
        (self.0)(p, k);
    }
}

pub(super) static PRIVILEGES: WrittenWhole = WrittenWhole(write);

/// Each grantee's privileges on an object (`*` marks WITH GRANT OPTION), in the ACL's own
/// order (granting in that order gives back the same ACL); `None` when the catalog holds the
/// entry but not its parts. `k` is a `privileges` key (its meta the ACL's parts) or a `default
/// privileges` one (its meta's `grants`).
pub(super) fn grants(cat: &Catalog, k: &Key) -> Option<Vec<(Grantee, Vec<String>)>> {
    if !cat.objects.contains_key(k) {
        return Some(Vec::new());
    }
    let meta = Planner::meta(cat, &k.0, &k.1)?;
    let entries = meta.get("grants").unwrap_or(meta).as_array()?;
    let mut out: Vec<(Grantee, Vec<String>)> = Vec::new();
    for e in entries {
        let grantee = match e.get("grantee").and_then(Value::as_str) {
            None => Grantee::Public,
            Some(role) => Grantee::Role(Ident::new(role)),
        };
        let privilege = s(e, "privilege")?;
        // aclexplode() names privileges in upper-case words; anything else is not one.
        if privilege.is_empty()
            || !privilege
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ')
        {
            return None;
        }
        let grantable = e.get("grantable").and_then(Value::as_bool) == Some(true);
        let privilege = format!("{privilege}{}", if grantable { "*" } else { "" });
        match out.iter_mut().find(|(g, _)| *g == grantee) {
            Some((_, privileges)) => privileges.push(privilege),
            None => out.push((grantee, vec![privilege])),
        }
    }
    Some(out)
}

/// Make the privileges of entry `k` what the desired catalog says (its defaults when it has no
/// entry).
pub(super) fn write(p: &mut Planner, k: &Key) {
    let cat = p.holder(k);
    let parts = object_of(cat, "privileges", &k.1)
        .and_then(|o| Some((o.clone(), target(cat, &o, "privileges")?)));
    let (Some((object, on)), Some(before), Some(after)) =
        (parts, grants(p.from, k), grants(p.to, k))
    else {
        p.note(format!(
            "privileges on {} are not written by the tool: grant them by hand",
            k.1
        ));
        return;
    };
    let owner =
        p.to.objects
            .get(&key("owner", &k.1))
            .cloned()
            .unwrap_or_else(|| p.role.to_string());
    let owner = Grantee::Role(Ident::new(owner));
    // What PUBLIC holds by default: EXECUTE on routines, USAGE on types and domains.
    let public_default = match &on {
        Target::Routine { .. } => Some("EXECUTE"),
        Target::Type { .. } => Some("USAGE"),
        _ => None,
    };
    let (on, column) = match &on {
        Target::Column(m) => (format!("TABLE {}", m.of), format!(" ({})", m.name)),
        other => (other.to_string(), String::new()),
    };
    let mut grantees: BTreeSet<Grantee> = before
        .iter()
        .chain(&after)
        .map(|(g, _)| g.clone())
        .collect();
    grantees.insert(Grantee::Public);
    if column.is_empty() {
        grantees.insert(owner.clone());
    }
    let mut sql: Vec<String> = grantees
        .iter()
        .map(|g| format!("REVOKE ALL{column} ON {on} FROM {g};"))
        .collect();
    if after.is_empty() && column.is_empty() {
        sql.push(format!("GRANT ALL ON {on} TO {owner};"));
        if let Some(privilege) = public_default {
            sql.push(format!("GRANT {privilege} ON {on} TO PUBLIC;"));
        }
        p.note(format!(
            "privileges on {} go back to the defaults, written as explicit grants",
            k.1
        ));
    }
    sql.extend(grant_statements(&after, "", &column, &on));
    let op = if p.to.objects.contains_key(k) {
        Op::Create
    } else {
        Op::Drop
    };
    p.unit(op, k, Place::Main, sql.join("\n"))
        .needing(vec![object]);
}

/// `GRANT` statements giving each grantee its privileges (`*`: WITH GRANT OPTION), after
/// `prefix` (an `ALTER DEFAULT PRIVILEGES ...` head, or nothing).
pub(super) fn grant_statements(
    grants: &[(Grantee, Vec<String>)],
    prefix: &str,
    column: &str,
    on: &str,
) -> Vec<String> {
    let mut sql = Vec::new();
    for (g, privs) in grants {
        let plain: Vec<&str> = privs
            .iter()
            .filter(|p| !p.ends_with('*'))
            .map(String::as_str)
            .collect();
        let with: Vec<&str> = privs.iter().filter_map(|p| p.strip_suffix('*')).collect();
        for (list, option) in [(plain, ""), (with, " WITH GRANT OPTION")] {
            if !list.is_empty() {
                sql.push(format!(
                    "{prefix}GRANT {}{column} ON {on} TO {g}{option};",
                    list.join(", ")
                ));
            }
        }
    }
    sql
}
