//! The one way a name enters generated SQL: [`Ident`] holds a name as the catalog stores it
//! (`nspname`, `relname`, `attname`, a role name from `pg_roles` or `aclexplode()`), and its
//! `Display` quotes it the way the server's `quote_ident` does. [`Name`] (an object, maybe
//! schema-qualified), [`Member`] (a column, constraint, trigger or policy of a table or domain)
//! and [`Routine`] (a function with its argument types) are built from idents, or parsed from the
//! catalog's keys, which the server itself wrote with `quote_ident`. Parsing is strict: anything
//! that is not a sequence of well-formed identifiers (description text such as
//! `constraint c on table t`, a stray quote) is refused, so text that was never a name cannot
//! reach SQL through these types.

use std::fmt;

/// Keywords that `quote_ident` quotes (every category but unreserved), from
/// `pg_get_keywords()` of PostgreSQL 13 to 18. Quoting one more than needed is harmless.
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "merge_action",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// PostgreSQL keeps names to 63 bytes (NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

/// One SQL identifier, held unquoted; `Display` quotes it when needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident(String);

impl Ident {
    /// A name as the catalog stores it (not quoted).
    #[must_use]
    pub fn new(raw: impl Into<String>) -> Ident {
        Ident(raw.into())
    }

    /// The name as stored (for messages and comparisons, never for SQL).
    #[must_use]
    pub fn raw(&self) -> &str {
        &self.0
    }

    /// This name with `suffix`, cut so that the whole stays within 63 bytes (the server would
    /// otherwise truncate the suffix away and hit the original name).
    #[must_use]
    pub fn with_suffix(&self, suffix: &str) -> Ident {
        let room = MAX_NAME_BYTES.saturating_sub(suffix.len());
        let mut end = self.0.len().min(room);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        Ident(format!("{}{suffix}", &self.0[..end]))
    }

    /// Whether `quote_ident` leaves this name bare.
    fn is_plain(&self) -> bool {
        let mut chars = self.0.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && QUOTED_KEYWORDS.binary_search(&self.0.as_str()).is_err()
    }

    /// Read one identifier as the server's `quote_ident` writes it from the start of `text`:
    /// `"..."` with `""` for a quote inside, or a bare lower-case name. Returns it and the rest.
    #[must_use]
    pub fn parse_prefix(text: &str) -> Option<(Ident, &str)> {
        if let Some(rest) = text.strip_prefix('"') {
            let mut raw = String::new();
            let mut chars = rest.char_indices();
            while let Some((i, c)) = chars.next() {
                if c != '"' {
                    raw.push(c);
                    continue;
                }
                if rest[i + 1..].starts_with('"') {
                    raw.push('"');
                    chars.next();
                    continue;
                }
                return (!raw.is_empty()).then(|| (Ident(raw), &rest[i + 1..]));
            }
            return None;
        }
        let end = text
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(text.len());
        let (word, rest) = text.split_at(end);
        let ident = Ident(word.to_string());
        ident.is_plain().then_some((ident, rest))
    }

    /// Exactly one identifier, nothing else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Ident> {
        match Ident::parse_prefix(text)? {
            (ident, "") => Some(ident),
            _ => None,
        }
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_plain() {
            f.write_str(&self.0)
        } else {
            write!(f, "\"{}\"", self.0.replace('"', "\"\""))
        }
    }
}

/// A role in a grant, a policy or an owner: a role name, or PUBLIC (which is no role).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grantee {
    Public,
    Role(Ident),
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grantee::Public => f.write_str("PUBLIC"),
            Grantee::Role(r) => r.fmt(f),
        }
    }
}

/// An object, schema-qualified unless it lives in `public` (as the catalog keys write it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    pub schema: Option<Ident>,
    pub name: Ident,
}

impl Name {
    /// Parse `name` or `schema.name` (each part as `quote_ident` writes it); all of `text`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Name> {
        let (parts, rest) = idents(text, 2)?;
        (rest.is_empty()).then(|| Name::from_parts(parts))?
    }

    fn from_parts(mut parts: Vec<Ident>) -> Option<Name> {
        let name = parts.pop()?;
        Some(Name {
            schema: parts.pop(),
            name,
        })
    }

    /// The same schema, another name (an enum's `_old` twin).
    #[must_use]
    pub fn sibling(&self, name: Ident) -> Name {
        Name {
            schema: self.schema.clone(),
            name,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}.")?;
        }
        self.name.fmt(f)
    }
}

/// A part of a table or domain: `table.column`, `schema.table.constraint`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    pub of: Name,
    pub name: Ident,
}

impl Member {
    /// Parse `table.member` or `schema.table.member`; all of `text`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Member> {
        let (mut parts, rest) = idents(text, 3)?;
        if !rest.is_empty() || parts.len() < 2 {
            return None;
        }
        let name = parts.pop()?;
        Some(Member {
            of: Name::from_parts(parts)?,
            name,
        })
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.of, self.name)
    }
}

/// A function, procedure or aggregate with its identity arguments, as the catalog keys write it:
/// `schema.name(integer, text)`. The argument list is the server's own text
/// (`pg_get_function_identity_arguments`: types by `format_type`, names by `quote_ident`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    pub name: Name,
    pub args: String,
}

impl Routine {
    /// Parse `name(args)` / `schema.name(args)`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Routine> {
        let (parts, rest) = idents(text, 2)?;
        let args = rest.strip_prefix('(')?.strip_suffix(')')?;
        Some(Routine {
            name: Name::from_parts(parts)?,
            args: args.to_string(),
        })
    }
}

impl fmt::Display for Routine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.args)
    }
}

/// Up to `max` dot-separated identifiers from the start of `text`, and what follows them.
fn idents(text: &str, max: usize) -> Option<(Vec<Ident>, &str)> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let (ident, after) = Ident::parse_prefix(rest)?;
        parts.push(ident);
        rest = after;
        match rest.strip_prefix('.') {
            Some(after) if parts.len() < max => rest = after,
            _ => return Some((parts, rest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_sorted_for_binary_search() {
        assert!(QUOTED_KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn display_quotes_as_quote_ident_does() {
        assert_eq!(Ident::new("users").to_string(), "users");
        assert_eq!(Ident::new("Users").to_string(), "\"Users\"");
        assert_eq!(Ident::new("user").to_string(), "\"user\"");
        assert_eq!(Ident::new("a\"b").to_string(), "\"a\"\"b\"");
        assert_eq!(Ident::new("app=ro").to_string(), "\"app=ro\"");
        assert_eq!(Ident::new("é").to_string(), "\"é\"");
        assert_eq!(Ident::new("1a").to_string(), "\"1a\"");
    }

    #[test]
    fn parsing_is_strict_and_round_trips() {
        let hostile = "k ON users IS NULL;RESET ROLE;ALTER ROLE app SUPERUSER;--";
        let quoted = Ident::new(hostile).to_string();
        assert_eq!(Ident::parse(&quoted), Some(Ident::new(hostile)));
        let member = Member::parse(&format!("billing.\"T.x\".{quoted}")).expect("member");
        assert_eq!(member.of.schema, Some(Ident::new("billing")));
        assert_eq!(member.of.name, Ident::new("T.x"));
        assert_eq!(member.name, Ident::new(hostile));
        assert_eq!(
            member.to_string(),
            format!("billing.\"T.x\".{quoted}"),
            "display writes back what was parsed"
        );
        // Description text, unquoted mixed case, a stray quote: not names.
        for text in [
            "constraint c on table users",
            "Users",
            "\"open",
            "a\"b",
            "",
            "users.",
            "select",
        ] {
            assert_eq!(Name::parse(text), None, "{text}");
        }
        assert_eq!(Member::parse("users"), None, "a member needs its table");
        let r = Routine::parse("utils.\"f(x\"(a integer, b text)").expect("routine");
        assert_eq!(r.name.name, Ident::new("f(x"));
        assert_eq!(r.args, "a integer, b text");
    }

    #[test]
    fn suffixes_keep_within_63_bytes() {
        let long = Ident::new("é".repeat(31) + "x");
        let old = long.with_suffix("_old");
        assert!(old.raw().len() <= MAX_NAME_BYTES);
        assert!(old.raw().ends_with("_old"));
        assert_eq!(Ident::new("mood").with_suffix("_old").raw(), "mood_old");
    }
}
