//! Compare two catalogs: what the migrations make (expected) against what is there (live). Pure:
//! no I/O, so every rule is unit-tested without a database.

use serde::Serialize;

use super::catalog::Catalog;

/// How an object differs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// The migrations make it; the live database lacks it.
    Missing,
    /// The live database has it; no migration makes it.
    Extra,
    /// Both have it, defined differently.
    Differs,
    /// An index left INVALID by a failed `CREATE INDEX CONCURRENTLY`.
    Invalid,
    /// An applied script was edited afterwards (the expected schema uses today's file).
    Edited,
}

/// One difference between the live schema and what the migrations make.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Drift {
    /// table, column, constraint, index, trigger, function, type, policy, owner, privileges ...
    pub kind: String,
    pub object: String,
    pub drift: DriftKind,
    pub problem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One line, as written: a name is the app role's to choose, and a line break or a
        // bidirectional override in it must not forge another line of a report or a CI log.
        let shown = |t: &str| printable(t);
        write!(
            f,
            "{} {}: {}",
            self.kind,
            shown(&self.object),
            shown(&self.problem)
        )?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " (expected {}; found {})", shown(e), shown(x)),
            (Some(e), None) => write!(f, " (expected {})", shown(e)),
            (None, Some(x)) => write!(f, " (found {})", shown(x)),
            (None, None) => Ok(()),
        }
    }
}

/// Text for one line of a report: control characters (line breaks, tabs, escapes) and the
/// Unicode controls that reorder or hide text (bidirectional overrides and isolates, zero-width
/// marks) written as escapes (`\n`, `\u{202e}`); everything else as it is.
#[must_use]
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}') =>
            {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Kinds whose definitions are too long to print whole (function bodies).
fn long(kind: &str) -> bool {
    matches!(
        kind,
        "function" | "procedure" | "view" | "materialized view"
    )
}

/// Every difference, in a stable order (by kind, then name).
#[must_use]
pub fn diff(expected: &Catalog, live: &Catalog) -> Vec<Drift> {
    let mut out = Vec::new();
    for ((kind, object), want) in &expected.objects {
        let show = |d: &String| (!long(kind) && !d.is_empty()).then(|| d.clone());
        match live.objects.get(&(kind.clone(), object.clone())) {
            None => out.push(Drift {
                kind: kind.clone(),
                object: object.clone(),
                drift: DriftKind::Missing,
                problem: "missing".into(),
                expected: show(want),
                found: None,
            }),
            Some(have) if have != want => out.push(Drift {
                kind: kind.clone(),
                object: object.clone(),
                drift: DriftKind::Differs,
                problem: match kind.as_str() {
                    "owner" => "owned by another role".into(),
                    "function" | "procedure" => "body or attributes differ".into(),
                    "view" | "materialized view" => "definition differs".into(),
                    _ => "differs".into(),
                },
                expected: show(want),
                found: show(have),
            }),
            Some(_) => {}
        }
    }
    for ((kind, object), have) in &live.objects {
        if !expected
            .objects
            .contains_key(&(kind.clone(), object.clone()))
        {
            out.push(Drift {
                kind: kind.clone(),
                object: object.clone(),
                drift: DriftKind::Extra,
                problem: "not made by any migration".into(),
                expected: None,
                found: (!long(kind) && !have.is_empty()).then(|| have.clone()),
            });
        }
    }
    for index in &live.invalid_indexes {
        if !expected.invalid_indexes.contains(index) {
            out.push(Drift {
                kind: "index".into(),
                object: index.clone(),
                drift: DriftKind::Invalid,
                problem: "INVALID (left by a failed CREATE INDEX CONCURRENTLY); drop it with DROP INDEX CONCURRENTLY and run the migration again".into(),
                expected: None,
                found: None,
            });
        }
    }
    out.sort_by(|a, b| (&a.kind, &a.object).cmp(&(&b.kind, &b.object)));
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn drift_lines_stay_one_line_and_show_hidden_characters() {
        let d = Drift {
            kind: "table".into(),
            object: "evil\nCLEAN: nothing to see\u{202e}txt.exe".into(),
            drift: DriftKind::Extra,
            problem: "only in the live database".into(),
            expected: None,
            found: Some("a\tb".into()),
        };
        let line = d.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(
            line,
            "table evil\\nCLEAN: nothing to see\\u{202e}txt.exe: only in the live database (found a\\tb)"
        );
    }

    use super::*;

    fn catalog(entries: &[(&str, &str, &str)]) -> Catalog {
        Catalog {
            objects: entries
                .iter()
                .map(|(k, n, d)| (((*k).to_string(), (*n).to_string()), (*d).to_string()))
                .collect(),
            ..Catalog::default()
        }
    }

    #[test]
    fn identical_catalogs_have_no_drift() {
        let c = catalog(&[("table", "t", "table"), ("column", "t.a", "integer NULL")]);
        assert!(diff(&c, &c.clone()).is_empty());
    }

    #[test]
    fn missing_extra_and_changed_objects_are_named() {
        let expected = catalog(&[
            ("column", "t.a", "integer NOT NULL"),
            ("index", "t_a", "CREATE INDEX t_a ON t USING btree (a)"),
            ("owner", "t", "app"),
            ("function", "f()", "CREATE FUNCTION f() ... long body"),
        ]);
        let live = catalog(&[
            ("column", "t.a", "integer NULL"),
            ("column", "t.b", "text NULL"),
            ("owner", "t", "postgres"),
            ("function", "f()", "CREATE FUNCTION f() ... other body"),
        ]);
        let text: Vec<String> = diff(&expected, &live)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "column t.a: differs (expected integer NOT NULL; found integer NULL)",
                "column t.b: not made by any migration (found text NULL)",
                "function f(): body or attributes differ",
                "index t_a: missing (expected CREATE INDEX t_a ON t USING btree (a))",
                "owner t: owned by another role (expected app; found postgres)",
            ]
        );
    }

    #[test]
    fn invalid_indexes_are_reported_unless_expected() {
        let expected = catalog(&[]);
        let mut live = catalog(&[]);
        live.invalid_indexes.push("ix".into());
        let d = diff(&expected, &live);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].drift, DriftKind::Invalid);
        assert!(diff(&live.clone(), &live).is_empty());
    }
}
