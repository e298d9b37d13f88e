//! `migrate lint`: the squawk rule set (through its library crate) over migration scripts, for
//! DDL that takes an ACCESS EXCLUSIVE lock on a busy table or rewrites it.
//!
//! Rules for what the runner already guarantees stay off: it sets `lock_timeout` and
//! `statement_timeout` itself (the timeout rules are opt-in anyway), and in a transactional
//! script `prefer-robust-stmts` is moot (a failure rolls everything back; in a
//! `-- aidock:no-transaction` script it applies). Rules about column types in new tables
//! (`prefer-text-field`, `prefer-bigint-over-int` ...) are style, not locks or rewrites, and stay
//! off too. A statement carrying squawk's own `-- squawk-ignore RULE` comment is not reported.
//!
//! One rule of our own, `dynamic-sql`: a `DO` block or a top-level `EXECUTE` runs SQL the rules
//! cannot see (it is a string, or a body), so it is reported as "not checked" rather than passing
//! as clean; in production it is refused like any finding unless ignored, with the same comment
//! forms squawk honours.

use serde::Serialize;
use squawk_linter::{Linter, Rule};

use super::lexer::{self, Token};
use super::source::Script;

/// One finding: which rule, where, what it means, and the safer form.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub rule: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.rule, self.message
        )?;
        if let Some(h) = &self.help {
            write!(f, "\n    safer: {h}")?;
        }
        Ok(())
    }
}

/// Our rule for a statement the linter cannot parse.
pub const SYNTAX_ERROR: &str = "syntax-error";

/// Style rules about new tables' column types: not about locks or rewrites.
const STYLE: [Rule; 6] = [
    Rule::PreferBigintOverInt,
    Rule::PreferBigintOverSmallint,
    Rule::PreferIdentity,
    Rule::PreferTextField,
    Rule::PreferTimestampTz,
    Rule::BanCharField,
];

/// Lint one script.
#[must_use]
pub fn lint(script: &Script) -> Vec<Finding> {
    // pg_dump's `\restrict` lines are not SQL; blank them (same length, so offsets hold).
    let text = blank_meta_commands(&script.sql);
    let parse = squawk_syntax::SourceFile::parse(&text);
    let mut exclude: Vec<Rule> = STYLE.to_vec();
    // The runner sets both itself (migrate.lock_timeout, migrate.statement_timeout).
    exclude.extend([Rule::RequireLockTimeout, Rule::RequireStatementTimeout]);
    if !script.no_transaction {
        exclude.push(Rule::PreferRobustStmts);
    }
    let mut linter = Linter::with_rules(&[], &exclude);
    linter.settings.assume_in_transaction = !script.no_transaction;
    if let Ok(v) = "13".parse() {
        // The oldest server we support: what is safe only on newer ones is reported.
        linter.settings.pg_version = v;
    }
    // Statements on a platform's objects (outside migrate.schemas) are the platform's business.
    let platform = platform_statements(&text);
    let mut findings: Vec<Finding> = linter
        .lint(&parse, &text)
        .into_iter()
        .filter(|v| {
            let offset = usize::from(v.text_range.start());
            !platform.iter().any(|(a, b)| (*a..=*b).contains(&offset))
        })
        .map(|v| {
            let offset = usize::from(v.text_range.start());
            let (line, column) = lexer::line_col(&text, offset);
            let rule = v.code.to_string();
            Finding {
                file: script.location(),
                line,
                column,
                help: Some(v.help.unwrap_or_else(|| safer_form(&rule))),
                rule,
                message: v.message,
            }
        })
        .collect();
    // A statement that does not parse was not checked: said, never "no findings". (The first
    // error only: the parser's recovery reports follow-on errors that add nothing.)
    let lines: Vec<&str> = text.lines().collect();
    if let Some(e) = parse.errors().first() {
        let (line, column) = lexer::line_col(&text, usize::from(e.range().start()));
        // Ignored in the file, on the error's line, or on the two lines before it.
        let ignored = lines.iter().any(|l| ignores(l, true, SYNTAX_ERROR))
            || [
                line.checked_sub(3),
                line.checked_sub(2),
                line.checked_sub(1),
            ]
            .into_iter()
            .flatten()
            .filter_map(|i| lines.get(i))
            .any(|l| ignores(l, false, SYNTAX_ERROR));
        if !ignored {
            findings.push(Finding {
            file: script.location(),
            line,
            column,
            rule: SYNTAX_ERROR.to_string(),
            message: format!(
                "{}: the statement does not parse, so it and the rest of the file were not checked",
                e.message()
            ),
            help: Some(
                "fix the syntax (`psql -v ON_ERROR_STOP=1 -f FILE` on a scratch database shows PostgreSQL's own error); if PostgreSQL accepts it, the linter does not know that syntax: `-- squawk-ignore syntax-error -- why` before the statement"
                    .to_string(),
            ),
        });
        }
    }
    // Squawk does not know our rules, and calls an ignore of them unused.
    findings.retain(|f| {
        !(f.rule == "unused-ignore"
            && (f.message.contains(DYNAMIC_SQL) || f.message.contains(SYNTAX_ERROR)))
    });
    findings.extend(dynamic_sql(script, &text));
    findings.sort_by_key(|f| (f.line, f.column));
    findings
}

/// Byte ranges of the statements whose object is in a platform schema (its first
/// schema-qualified name, as in `ALTER TABLE auth.users ...`, names a schema outside
/// `migrate.schemas`); none when every schema is the migrations'.
fn platform_statements(text: &str) -> Vec<(usize, usize)> {
    let owned = crate::schema::scope::owned();
    if owned.is_empty() {
        return Vec::new();
    }
    let Ok(split) = lexer::split(text) else {
        return Vec::new();
    };
    split
        .statements
        .iter()
        .filter(|st| {
            first_schema(st.text(text)).is_some_and(|schema| {
                !owned.contains(&schema)
                    && !matches!(schema.as_str(), "pg_catalog" | "information_schema")
            })
        })
        .map(|st| (st.start, st.end))
        .collect()
}

/// Words that come before a statement's object name.
const LEADING: [&str; 22] = [
    "create",
    "alter",
    "drop",
    "table",
    "unique",
    "index",
    "concurrently",
    "if",
    "not",
    "exists",
    "only",
    "or",
    "replace",
    "materialized",
    "view",
    "sequence",
    "type",
    "unlogged",
    "temp",
    "temporary",
    "foreign",
    "domain",
];

/// The schema a statement's object is named in (`auth` of `ALTER TABLE auth.users ...`, of
/// `CREATE INDEX i ON auth.users ...`), folded to lower case unless quoted; `None` when the
/// object's name is not schema-qualified.
fn first_schema(statement: &str) -> Option<String> {
    // Names (qualified ones as (schema, name), quoted or not), from the lexer's tokens:
    // comments and literals are not names.
    let mut names: Vec<(Option<String>, String, bool)> = Vec::new();
    let mut dotted = false;
    for token in lexer::tokens(statement) {
        match token {
            Token::Word { text, quoted } => {
                match names.last_mut() {
                    Some(last) if dotted && last.0.is_none() => {
                        last.0 = Some(std::mem::replace(&mut last.1, text));
                    }
                    _ => names.push((None, text, quoted)),
                }
                dotted = false;
            }
            Token::Dot => dotted = !names.is_empty(),
            Token::Other => dotted = false,
        }
    }
    let is_index = names.len() > 2
        && names[0].1 == "create"
        && names.iter().take(3).any(|n| n.1 == "index" && !n.2);
    let target = if is_index {
        let on = names.iter().position(|n| n.1 == "on" && !n.2)?;
        names[on + 1..].iter().find(|n| n.1 != "only" || n.2)
    } else {
        names
            .iter()
            .find(|n| n.2 || n.0.is_some() || !LEADING.contains(&n.1.as_str()))
    }?;
    target.0.clone()
}

/// Our rule's name.
const DYNAMIC_SQL: &str = "dynamic-sql";

/// `DO` blocks and top-level `EXECUTE` statements, unless ignored.
fn dynamic_sql(script: &Script, text: &str) -> Vec<Finding> {
    let Ok(split) = script.statements() else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.iter().any(|l| ignores(l, true, DYNAMIC_SQL)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for statement in &split.statements {
        let body = statement.text(&script.sql);
        let first = body
            .split(|c: char| c.is_whitespace() || c == ';' || c == '$' || c == '\'')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let what = match first.as_str() {
            "DO" => "a DO block",
            "EXECUTE" => "EXECUTE of a prepared statement",
            _ => continue,
        };
        let (line, column) = lexer::line_col(&script.sql, statement.first_token);
        // Ignored on the statement's first line, or on the line before it.
        let ignored = [line.checked_sub(2), line.checked_sub(1)]
            .into_iter()
            .flatten()
            .filter_map(|i| lines.get(i))
            .any(|l| ignores(l, false, DYNAMIC_SQL));
        if ignored {
            continue;
        }
        out.push(Finding {
            file: script.location(),
            line,
            column,
            rule: DYNAMIC_SQL.to_string(),
            message: format!(
                "not checked: dynamic SQL ({what}): the statements it runs are invisible to the lock and rewrite rules"
            ),
            help: Some(
                "write the statements out as plain SQL so they are checked; where the block must stay, say why on the line before it: `-- squawk-ignore dynamic-sql -- why`".into(),
            ),
        });
    }
    out
}

/// Whether `line` holds an ignore comment covering our rule: `squawk-ignore` (`file`: the
/// `squawk-ignore-file` form) after `--` or `/*`, naming `dynamic-sql` or (file form) no rule.
fn ignores(line: &str, file: bool, rule: &str) -> bool {
    let directive = if file {
        "squawk-ignore-file"
    } else {
        "squawk-ignore"
    };
    for opener in ["--", "/*"] {
        let mut rest = line;
        while let Some(at) = rest.find(opener) {
            let after = rest[at + opener.len()..].trim_start();
            rest = &rest[at + opener.len()..];
            let Some(tail) = after.strip_prefix(directive) else {
                continue;
            };
            if !file && tail.starts_with("-file") {
                continue;
            }
            if !tail.is_empty() && !tail.starts_with(char::is_whitespace) && !tail.starts_with("*/")
            {
                continue;
            }
            // The rule list ends at a `--` (the reason) or the block comment's end.
            let list = tail.split("--").next().unwrap_or_default();
            let list = list.split("*/").next().unwrap_or_default();
            let rules: Vec<&str> = list
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|r| !r.is_empty())
                .collect();
            if rules.contains(&rule) || (file && rules.is_empty()) {
                return true;
            }
        }
    }
    false
}

/// The safer form for rules whose squawk finding carries no help of its own.
fn safer_form(rule: &str) -> String {
    match rule {
        "changing-column-type" => "add a column of the new type, backfill it in batches, move readers, then drop the old column; on a small table keep the change with `-- squawk-ignore changing-column-type -- why`".into(),
        "require-concurrent-index-creation" => "CREATE INDEX CONCURRENTLY IF NOT EXISTS in a migration whose first line is `-- aidock:no-transaction`".into(),
        "adding-foreign-key-constraint" | "constraint-missing-not-valid" => "ADD CONSTRAINT ... NOT VALID here, and VALIDATE CONSTRAINT in a later migration".into(),
        "adding-required-field" | "adding-not-nullable-field" => "add the column with a DEFAULT (or nullable), backfill, then add NOT NULL after a validated CHECK (col IS NOT NULL)".into(),
        "ban-drop-column" => "stop using the column in the application first, then drop it with `-- squawk-ignore ban-drop-column -- why`".into(),
        _ => format!("see https://squawkhq.com/docs/{rule}"),
    }
}

fn blank_meta_commands(sql: &str) -> String {
    sql.split_inclusive('\n')
        .map(|l| {
            if l.starts_with('\\') {
                l.chars().map(|c| if c == '\n' { c } else { ' ' }).collect()
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(sql: &str) -> Script {
        Script::new("0002_x.up.sql".into(), sql)
    }

    fn rules(sql: &str) -> Vec<String> {
        lint(&script(sql)).into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn risky_ddl_on_existing_tables_is_flagged_where_it_is() {
        let f = lint(&script(
            "SELECT 1;\n\nCREATE INDEX ix_a ON accounts (email);\n",
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule, "require-concurrent-index-creation");
        assert_eq!((f[0].line, f[0].column), (3, 1));
        assert!(
            rules("ALTER TABLE accounts ALTER COLUMN email TYPE varchar(300);")
                .contains(&"changing-column-type".to_string())
        );
        assert!(
            rules("ALTER TABLE a ADD CONSTRAINT a_b_fkey FOREIGN KEY (b) REFERENCES b (id);")
                .iter()
                .any(
                    |r| r == "adding-foreign-key-constraint" || r == "constraint-missing-not-valid"
                )
        );
        assert!(
            rules("ALTER TABLE a ADD COLUMN c integer NOT NULL;")
                .iter()
                .any(|r| r == "adding-required-field" || r == "adding-not-nullable-field")
        );
        assert!(rules("ALTER TABLE a DROP COLUMN c;").contains(&"ban-drop-column".to_string()));
    }

    #[test]
    fn safe_forms_and_new_tables_are_clean() {
        assert!(rules("-- aidock:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_a ON accounts (email);\n").is_empty());
        assert!(rules("CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL);\nCREATE INDEX ix_t ON t (name);\n").is_empty());
        assert!(
            rules(
                "ALTER TABLE a ADD CONSTRAINT a_b_fkey FOREIGN KEY (b) REFERENCES b (id) NOT VALID;"
            )
            .is_empty()
        );
        assert!(rules("ALTER TABLE a ADD COLUMN c integer NOT NULL DEFAULT 0;").is_empty());
    }

    #[test]
    fn dynamic_sql_is_not_checked_unless_ignored_in_squawks_forms() {
        let block = "DO $$ BEGIN EXECUTE 'ALTER TABLE users ADD COLUMN x int NOT NULL'; END $$;";
        assert_eq!(rules(block), ["dynamic-sql"]);
        assert_eq!(rules("EXECUTE add_column;"), ["dynamic-sql"]);
        assert_eq!(
            rules("SELECT 1;\n\n  do $x$ BEGIN NULL; END $x$;"),
            ["dynamic-sql"]
        );
        for ignored in [
            format!("-- squawk-ignore dynamic-sql\n{block}"),
            format!("-- squawk-ignore dynamic-sql -- the backfill is small\n{block}"),
            format!("-- squawk-ignore ban-drop-column, dynamic-sql\n{block}"),
            format!("{block} -- squawk-ignore dynamic-sql"),
            format!("/* squawk-ignore dynamic-sql */\n{block}"),
            format!("/* squawk-ignore dynamic-sql */ {block}"),
            format!("-- squawk-ignore-file\nSELECT 1;\n{block}"),
            format!("SELECT 1;\n{block}\n-- squawk-ignore-file dynamic-sql"),
        ] {
            assert!(
                rules(&ignored).is_empty(),
                "{ignored}: {:?}",
                rules(&ignored)
            );
        }
        for not_ignored in [
            format!("-- squawk-ignore dynamic-sql\n\n{block}"),
            format!("-- squawk-ignore ban-drop-column\n{block}"),
            format!("-- squawk-ignore-file ban-drop-column\n{block}"),
            format!("-- squawk-ignore dynamic-sqlx\n{block}"),
            format!("-- not a squawk-ignore dynamic-sql\n{block}"),
        ] {
            assert!(
                rules(&not_ignored).contains(&"dynamic-sql".to_string()),
                "{not_ignored}"
            );
        }
    }

    #[test]
    fn squawks_own_rules_are_ignored_in_the_same_forms_and_only_those() {
        let stmt = "ALTER TABLE a DROP COLUMN c;";
        for ignored in [
            format!("-- squawk-ignore ban-drop-column\n{stmt}"),
            format!("{stmt} -- squawk-ignore ban-drop-column"),
            format!("/* squawk-ignore ban-drop-column */\n{stmt}"),
            format!("/* squawk-ignore ban-drop-column */ {stmt}"),
            format!("-- squawk-ignore-file\nSELECT 1;\n{stmt}"),
            format!("SELECT 1;\n{stmt}\n-- squawk-ignore-file ban-drop-column"),
        ] {
            assert!(
                rules(&ignored).is_empty(),
                "{ignored}: {:?}",
                rules(&ignored)
            );
        }
        for reported in [
            format!("-- squawk-ignore ban-drop-column\n\n{stmt}"),
            stmt.to_string(),
        ] {
            assert_eq!(rules(&reported), ["ban-drop-column"], "{reported}");
        }
    }

    #[test]
    fn squawk_ignore_comments_are_honoured() {
        assert!(rules("-- squawk-ignore ban-drop-column\nALTER TABLE a DROP COLUMN c;").is_empty());
    }

    #[test]
    fn the_first_qualified_name_gives_a_statements_schema() {
        assert_eq!(
            first_schema("ALTER TABLE auth.users ADD COLUMN x int NOT NULL"),
            Some("auth".into())
        );
        assert_eq!(
            first_schema("CREATE INDEX ON \"Cron\".job (x)"),
            Some("Cron".into())
        );
        assert_eq!(
            first_schema("ALTER TABLE t ADD CONSTRAINT c CHECK (x <> 'a.b')"),
            None
        );
        assert_eq!(
            first_schema("CREATE TABLE profiles (id uuid REFERENCES auth.users)"),
            None
        );
        assert_eq!(
            first_schema("CREATE UNIQUE INDEX CONCURRENTLY i ON ONLY auth.users (email)"),
            Some("auth".into())
        );
        assert_eq!(
            first_schema("ALTER TABLE IF EXISTS public.t ADD COLUMN x int"),
            Some("public".into())
        );
        // Comments and literals hold no names.
        assert_eq!(
            first_schema("ALTER TABLE /* auth.users */ -- cron.job\n app.t ADD COLUMN x int"),
            Some("app".into())
        );
        assert_eq!(
            first_schema("ALTER TABLE t ADD CONSTRAINT c CHECK (x <> E'\\'' || 'auth.users')"),
            None
        );
        assert_eq!(
            first_schema(
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 FROM auth.users $$ LANGUAGE sql"
            ),
            None
        );
        assert_eq!(
            first_schema("ALTER TABLE \"My \"\"Schema\"\"\".t ADD COLUMN x int"),
            Some("My \"Schema\"".into())
        );
    }

    #[test]
    fn the_built_in_migrations_lint_clean() {
        for m in crate::migrate::source::embedded().expect("built-in") {
            let f = lint(&m.up);
            assert!(f.is_empty(), "{}: {f:#?}", m.up.file);
        }
    }
}
