//! Default privileges (`ALTER DEFAULT PRIVILEGES`): the database owner's, the role the
//! migrations run as, globally or in a schema. Written whole like an object's privileges:
//! revoke from everyone involved, then grant what the desired entry holds; a global entry that
//! goes away goes back to PostgreSQL's built-in defaults (the owner's ALL, and PUBLIC's
//! EXECUTE on functions and USAGE on types). Role and schema names come from the catalog's
//! parts and reach SQL only through [`Ident`] and [`Grantee`].

use std::collections::BTreeSet;

use super::privilege::{WrittenWhole, grant_statements, grants};
use super::{Key, Op, Place, Planner, key, s};
use crate::db::ident::{Grantee, Ident};

pub(super) static DEFAULT_PRIVILEGES: WrittenWhole = WrittenWhole(write);

/// The object class an entry is for, as `ALTER DEFAULT PRIVILEGES` writes it (a fixed word,
/// never catalog text), and what PUBLIC holds of it by default.
fn class(on: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match on {
        "TABLES" => ("TABLES", None),
        "SEQUENCES" => ("SEQUENCES", None),
        "FUNCTIONS" => ("FUNCTIONS", Some("EXECUTE")),
        "TYPES" => ("TYPES", Some("USAGE")),
        "SCHEMAS" => ("SCHEMAS", None),
        _ => return None,
    })
}

fn write(p: &mut Planner, k: &Key) {
    let cat = p.holder(k);
    let parts = Planner::meta(cat, &k.0, &k.1).and_then(|m| {
        let (on, public_default) = class(s(m, "on")?)?;
        let role = Ident::new(s(m, "role")?);
        let schema = m.get("schema").and_then(serde_json::Value::as_str);
        Some((on, public_default, role, schema.map(Ident::new)))
    });
    let (Some((on, public_default, role, schema)), Some(before), Some(after)) =
        (parts, grants(p.from, k), grants(p.to, k))
    else {
        p.note(format!(
            "default privileges {} are not written by the tool: set them by hand",
            k.1
        ));
        return;
    };
    let prefix = match &schema {
        Some(schema) => format!("ALTER DEFAULT PRIVILEGES FOR ROLE {role} IN SCHEMA {schema} "),
        None => format!("ALTER DEFAULT PRIVILEGES FOR ROLE {role} "),
    };
    let owner = Grantee::Role(role);
    let mut grantees: BTreeSet<Grantee> = before
        .iter()
        .chain(&after)
        .map(|(g, _)| g.clone())
        .collect();
    if schema.is_none() {
        grantees.insert(owner.clone());
        grantees.insert(Grantee::Public);
    }
    let mut sql: Vec<String> = grantees
        .iter()
        .map(|g| format!("{prefix}REVOKE ALL ON {on} FROM {g};"))
        .collect();
    let present = p.to.objects.contains_key(k);
    if schema.is_none() && !present {
        sql.push(format!("{prefix}GRANT ALL ON {on} TO {owner};"));
        if let Some(privilege) = public_default {
            sql.push(format!("{prefix}GRANT {privilege} ON {on} TO PUBLIC;"));
        }
    }
    sql.extend(grant_statements(&after, &prefix, "", on));
    let needs: Vec<Key> = schema
        .map(|sch| key("schema", &sch.to_string()))
        .filter(|sk| p.to.objects.contains_key(sk) || p.from.objects.contains_key(sk))
        .into_iter()
        .collect();
    let op = if present { Op::Create } else { Op::Drop };
    p.unit(op, k, Place::Main, sql.join("\n")).needing(needs);
}
