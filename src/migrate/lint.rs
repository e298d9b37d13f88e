//! `migrate lint`: the squawk rule set (through its library crate) over migration scripts, for
//! DDL that takes an ACCESS EXCLUSIVE lock on a busy table or rewrites it.
//!
//! Rules for what the runner already guarantees stay off: it sets `lock_timeout` and
//! `statement_timeout` itself (the timeout rules are opt-in anyway), and in a transactional
//! script `prefer-robust-stmts` is moot (a failure rolls everything back; in a
//! `-- aidock:no-transaction` script it applies). Rules about column types in new tables
//! (`prefer-text-field`, `prefer-bigint-over-int` ...) are style, not locks or rewrites, and stay
//! off too. A statement carrying squawk's own `-- squawk-ignore RULE` comment is not reported.

use serde::Serialize;
use squawk_linter::{Linter, Rule};

use super::lexer;
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
    let mut findings: Vec<Finding> = linter
        .lint(&parse, &text)
        .into_iter()
        .map(|v| {
            let offset = usize::from(v.text_range.start());
            let (line, column) = lexer::line_col(&text, offset);
            let rule = v.code.to_string();
            Finding {
                file: script.file.clone(),
                line,
                column,
                help: Some(v.help.unwrap_or_else(|| safer_form(&rule))),
                rule,
                message: v.message,
            }
        })
        .collect();
    findings.sort_by_key(|f| (f.line, f.column));
    findings
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
    fn squawk_ignore_comments_are_honoured() {
        assert!(rules("-- squawk-ignore ban-drop-column\nALTER TABLE a DROP COLUMN c;").is_empty());
    }

    #[test]
    fn the_built_in_migrations_lint_clean() {
        for m in crate::migrate::source::embedded().expect("built-in") {
            let f = lint(&m.up);
            assert!(f.is_empty(), "{}: {f:#?}", m.up.file);
        }
    }
}
