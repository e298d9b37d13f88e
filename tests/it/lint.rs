//! `migrate lint` (issue #14): risky DDL on existing tables is named with rule and file:line;
//! the safe rewrites are clean; `plan` shows the same findings.

use crate::support::{TestDb, expect_exit, migrations_dir, run_ok, scratch_dir, write_files};

/// Each risky statement, on a known line, and its safer form.
const RISKY: [(&str, &str, &str); 5] = [
    (
        "CREATE INDEX ix_users_created_at ON users (created_at);",
        "require-concurrent-index-creation",
        "-- aidock:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_users_created_at ON users (created_at);",
    ),
    (
        "ALTER TABLE users ALTER COLUMN email TYPE varchar(300);",
        "changing-column-type",
        "ALTER TABLE users ADD COLUMN email_long text;",
    ),
    (
        "ALTER TABLE usage_logs ADD CONSTRAINT usage_logs_role_fkey FOREIGN KEY (user_id) REFERENCES users (id);",
        "adding-foreign-key-constraint",
        "ALTER TABLE usage_logs ADD CONSTRAINT usage_logs_role_fkey FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
    ),
    (
        "ALTER TABLE users ADD COLUMN locale text NOT NULL;",
        "adding-required-field",
        "ALTER TABLE users ADD COLUMN locale text NOT NULL DEFAULT 'en';",
    ),
    (
        "ALTER TABLE refresh_tokens DROP COLUMN user_agent;",
        "ban-drop-column",
        "-- squawk-ignore ban-drop-column -- the backend stopped reading it in 2.3\nALTER TABLE refresh_tokens DROP COLUMN user_agent;",
    ),
];

#[test]
fn each_risky_statement_is_named_with_its_line_and_its_safe_form_is_clean() {
    let dir = scratch_dir("lint");
    for (i, (risky, rule, safe)) in RISKY.iter().enumerate() {
        let name = format!("000{}_risky.up.sql", i + 2);
        // Two lines of preamble: the statement is on line 3.
        write_files(
            &dir,
            &[(&name, &format!("-- a change\nSELECT 1;\n{risky}\n"))],
        );
        let mut cmd = crate::support::bin();
        cmd.args(["migrate", "lint"]).arg(dir.join(&name));
        let out = expect_exit(&mut cmd, 1);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains(rule)).unwrap_or_default();
        assert!(line.contains(&format!("{name}:3:")), "{rule}: {text}");
        assert!(text.contains("safer:"), "the safer form is said: {text}");
        let json = expect_exit(
            crate::support::bin()
                .args(["--json", "migrate", "lint"])
                .arg(dir.join(&name)),
            1,
        );
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
        assert!(
            v.as_array()
                .is_some_and(|a| a.iter().any(|f| f["rule"] == *rule && f["line"] == 3)),
            "{v}"
        );

        let safe_name = format!("000{}_safe.up.sql", i + 2);
        write_files(&dir, &[(&safe_name, safe)]);
        let mut cmd = crate::support::bin();
        cmd.args(["migrate", "lint"]).arg(dir.join(&safe_name));
        let out = run_ok(&mut cmd);
        assert!(out.contains("no findings"), "{safe_name}: {out}");
    }
}

#[tokio::test]
async fn plan_shows_the_findings_of_pending_migrations() {
    let t = TestDb::new("lint_plan");
    let dir = migrations_dir(&[("0002_index.up.sql", RISKY[0].0)]);
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["init", "--no-migrate", "-q"]),
    );
    let plan = run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "plan"]),
    );
    // Where the file is, as the command was told (issue #44: clickable from where it ran).
    assert!(
        plan.contains(&format!(
            "-- lint: {}:1:1: require-concurrent-index-creation",
            dir.join("0002_index.up.sql").display()
        )),
        "{plan}"
    );
    // The whole set, and --pending after 0001 is applied: only 0002.
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "lint"]),
        1,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0002_index.up.sql:1:1"));
    run_ok(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up", "--to", "1"]),
    );
    let out = expect_exit(
        t.cmd()
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "lint", "--pending"]),
        1,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0002_index.up.sql") && !text.contains("0001"),
        "{text}"
    );
}

/// Issue #44 (7): a file that does not parse is not "no findings": the statement is named, and
/// an ignore in squawk's form lets through what PostgreSQL accepts and the linter does not know.
#[test]
fn a_statement_that_does_not_parse_is_a_finding() {
    let dir = scratch_dir("lint-syntax");
    write_files(
        &dir,
        &[(
            "0002_typo.up.sql",
            "-- a change\nALTER TABLE users ADD COLUMN locale text;\nCREAT INDEX ix_users_locale ON users (locale);\n",
        )],
    );
    let mut cmd = crate::support::bin();
    cmd.args(["migrate", "lint"])
        .arg(dir.join("0002_typo.up.sql"));
    let out = expect_exit(&mut cmd, 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0002_typo.up.sql:3:") && text.contains("syntax-error"),
        "{text}"
    );
    assert!(!text.contains("no findings"), "{text}");
    write_files(
        &dir,
        &[(
            "0002_typo.up.sql",
            "-- a change\n-- squawk-ignore syntax-error -- checked by hand\nCREAT INDEX ix_users_locale ON users (locale);\n",
        )],
    );
    let mut cmd = crate::support::bin();
    cmd.args(["migrate", "lint"])
        .arg(dir.join("0002_typo.up.sql"));
    assert!(run_ok(&mut cmd).contains("no findings"));
}
