//! What a `comment`, `privileges` or `owner` entry is about: the object's key, and how SQL names
//! it (`TABLE billing.t`, `COLUMN users.email`, `CONSTRAINT c ON DOMAIN d` ...), built from typed
//! names only.

use std::fmt;

use super::{Key, Planner, key, s};
use crate::db::ident::{Ident, Member, Name, Routine};
use crate::schema::catalog::Catalog;

/// An object as a `COMMENT ON`, `GRANT ... ON` or `ALTER ... OWNER TO` names it.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Schema(Ident),
    Extension(Ident),
    /// `TYPE` or `DOMAIN`.
    Type {
        word: &'static str,
        name: Name,
    },
    /// `TABLE`, `VIEW`, `SEQUENCE`, `INDEX` ...
    Relation {
        word: &'static str,
        name: Name,
    },
    /// `FUNCTION`, `PROCEDURE`, `AGGREGATE`.
    Routine {
        word: &'static str,
        routine: Routine,
    },
    Column(Member),
    /// `CONSTRAINT`, `TRIGGER`, `POLICY` on a table; `CONSTRAINT` on a domain.
    OnTable {
        word: &'static str,
        member: Member,
    },
    OnDomain(Member),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Schema(n) => write!(f, "SCHEMA {n}"),
            Target::Extension(n) => write!(f, "EXTENSION {n}"),
            Target::Type { word, name } | Target::Relation { word, name } => {
                write!(f, "{word} {name}")
            }
            Target::Routine { word, routine } => write!(f, "{word} {routine}"),
            Target::Column(m) => write!(f, "COLUMN {m}"),
            Target::OnTable { word, member } => {
                write!(f, "{word} {} ON {}", member.name, member.of)
            }
            Target::OnDomain(m) => write!(f, "CONSTRAINT {} ON DOMAIN {}", m.name, m.of),
        }
    }
}

/// Kinds a comment key can start with (`comment <kind> <name>`), longest first.
const COMMENT_KINDS: &[&str] = &[
    "materialized view",
    "foreign table",
    "constraint",
    "extension",
    "procedure",
    "aggregate",
    "function",
    "sequence",
    "trigger",
    "column",
    "policy",
    "schema",
    "index",
    "table",
    "view",
    "type",
];

/// The key of the object an entry is about.
pub(super) fn object_of(cat: &Catalog, kind: &str, name: &str) -> Option<Key> {
    if kind == "comment" {
        let (k, n) = split_comment(name)?;
        return Some(key(k, n));
    }
    if let Some(s) = name.strip_prefix("schema ") {
        return Some(key("schema", s));
    }
    if let Some(t) = name.strip_prefix("type ") {
        return Some(key("type", t));
    }
    if let Some(rk) = Planner::relation_kind(cat, name) {
        return Some(key(rk, name));
    }
    ["function", "procedure", "aggregate", "column"]
        .iter()
        .find(|k| cat.objects.contains_key(&key(k, name)))
        .map(|k| key(k, name))
}

/// `table users` -> (`table`, `users`).
pub(super) fn split_comment(name: &str) -> Option<(&'static str, &str)> {
    COMMENT_KINDS
        .iter()
        .find_map(|k| Some((*k, name.strip_prefix(k)?.strip_prefix(' ')?)))
}

/// How SQL names the object `object` (a key from [`object_of`]); `entry` is the kind of entry
/// asking, since a few words differ (`GRANT ... ON TABLE` a view, `ON FUNCTION` an aggregate).
pub(super) fn target(cat: &Catalog, object: &Key, entry: &str) -> Option<Target> {
    let (kind, name) = (object.0.as_str(), object.1.as_str());
    Some(match kind {
        "schema" => Target::Schema(Ident::parse(name)?),
        "extension" => Target::Extension(Ident::parse(name)?),
        "type" => {
            let domain =
                Planner::meta(cat, "type", name).and_then(|m| s(m, "typtype")) == Some("d");
            Target::Type {
                word: if domain { "DOMAIN" } else { "TYPE" },
                name: Name::parse(name)?,
            }
        }
        "table" | "view" | "materialized view" | "sequence" | "foreign table" | "index" => {
            let word = match (kind, entry) {
                ("sequence", _) => "SEQUENCE",
                ("index", _) => "INDEX",
                ("table", _) | (_, "privileges") => "TABLE",
                ("view", _) => "VIEW",
                ("materialized view", _) => "MATERIALIZED VIEW",
                _ => "FOREIGN TABLE",
            };
            Target::Relation {
                word,
                name: Name::parse(name)?,
            }
        }
        "function" | "procedure" | "aggregate" => {
            let word = match (kind, entry) {
                ("procedure", _) => "PROCEDURE",
                ("aggregate", "privileges") | ("function", _) => "FUNCTION",
                _ => "AGGREGATE",
            };
            Target::Routine {
                word,
                routine: Routine::parse(name)?,
            }
        }
        "column" => Target::Column(Member::parse(name)?),
        "constraint" => match name.strip_prefix("domain ") {
            Some(d) => Target::OnDomain(Member::parse(d)?),
            None => Target::OnTable {
                word: "CONSTRAINT",
                member: Member::parse(name)?,
            },
        },
        "trigger" => Target::OnTable {
            word: "TRIGGER",
            member: Member::parse(name)?,
        },
        "policy" => Target::OnTable {
            word: "POLICY",
            member: Member::parse(name)?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_written_from_typed_names() {
        let cat = Catalog::default();
        let hostile = "\"k ON users IS NULL;RESET ROLE;ALTER ROLE app SUPERUSER;--\"";
        let t = target(
            &cat,
            &key("constraint", &format!("\"Users\".{hostile}")),
            "comment",
        )
        .expect("target");
        assert_eq!(t.to_string(), format!("CONSTRAINT {hostile} ON \"Users\""));
        let t = target(&cat, &key("column", "\"Users\".\"Email\""), "comment").expect("column");
        assert_eq!(t.to_string(), "COLUMN \"Users\".\"Email\"");
        // Description text is not a name.
        assert!(target(&cat, &key("constraint", "k on table users"), "comment").is_none());
        assert_eq!(
            split_comment("materialized view billing.m"),
            Some(("materialized view", "billing.m"))
        );
    }
}
