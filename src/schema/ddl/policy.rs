//! Row-level security policies, written from their parts: command, permissive or restrictive,
//! the roles (names from `pg_roles`, or PUBLIC) and the server's `USING` / `WITH CHECK` text.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Generator, Key, Op, Place, Planner, s};
use crate::db::ident::{Grantee, Ident};

pub(super) struct Policies;

impl Generator for Policies {
    fn create(&self, p: &mut Planner, k: &Key) {
        let Some(policy) = p.member(k) else { return };
        let m = Planner::meta_or_null(p.to, "policy", &k.1);
        let roles: Vec<String> = m["roles"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|x| match x.as_str() {
                        Some(role) => Grantee::Role(Ident::new(role)),
                        None => Grantee::Public,
                    })
                    .map(|g| g.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let cmd = s(&m, "cmd")
            .filter(|c| ["SELECT", "INSERT", "UPDATE", "DELETE"].contains(c))
            .unwrap_or("ALL");
        let mut sql = format!(
            "CREATE POLICY {} ON {} AS {} FOR {cmd} TO {}",
            policy.name,
            policy.of,
            if m.get("permissive").and_then(Value::as_bool) == Some(false) {
                "RESTRICTIVE"
            } else {
                "PERMISSIVE"
            },
            if roles.is_empty() {
                "PUBLIC".to_string()
            } else {
                roles.join(", ")
            }
        );
        if let Some(u) = s(&m, "using") {
            let _ = write!(sql, " USING ({u})");
        }
        if let Some(c) = s(&m, "check") {
            let _ = write!(sql, " WITH CHECK ({c})");
        }
        p.unit(Op::Create, k, Place::Main, sql + ";");
    }

    fn drop(&self, p: &mut Planner, k: &Key) {
        let Some(policy) = p.member(k) else { return };
        p.unit(
            Op::Drop,
            k,
            Place::Main,
            format!("DROP POLICY {} ON {};", policy.name, policy.of),
        );
    }
}
