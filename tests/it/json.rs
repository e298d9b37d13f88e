//! Every `--json` output against docs/JSON.md (issue #26): each documented field is there with
//! its type (unless marked optional), and each field the output has is documented.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{
    TestDb, connect, expect_exit, migrations_dir, run_ok, scratch_dir, write_files,
};

/// One documented field: its types, and whether it may be left out.
#[derive(Debug)]
struct Field {
    types: Vec<String>,
    optional: bool,
}

/// The tables of docs/JSON.md, by section (`## name`).
fn documented() -> BTreeMap<String, BTreeMap<String, Field>> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md"),
    )
    .expect("docs/JSON.md");
    let mut out: BTreeMap<String, BTreeMap<String, Field>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            section = Some(name.trim().to_string());
            continue;
        }
        let Some(name) = &section else { continue };
        // `\|` inside a cell is a type union, not a column break.
        let line = line.replace("\\|", "\u{1}");
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || cells[1] == "path" || cells[1].starts_with("---") {
            continue;
        }
        let (kind, optional) = match cells[2].strip_suffix('?') {
            Some(k) => (k, true),
            None => (cells[2], false),
        };
        out.entry(name.clone()).or_default().insert(
            cells[1].to_string(),
            Field {
                types: kind.split('\u{1}').map(str::to_string).collect(),
                optional,
            },
        );
    }
    out
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every (path, value) in a document, paths as docs/JSON.md writes them.
fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push((path.clone(), child.clone()));
                walk(&path, child, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                let path = format!("{prefix}[]");
                out.push((path.clone(), item.clone()));
                walk(&path, item, out);
            }
        }
        _ => {}
    }
}

/// Check one output against its section.
#[track_caller]
pub(crate) fn check(section: &str, output: &str) {
    let docs = documented();
    let fields = docs
        .get(section)
        .unwrap_or_else(|| panic!("docs/JSON.md has no section `{section}`"));
    let value: Value = serde_json::from_str(output)
        .unwrap_or_else(|e| panic!("{section}: not JSON ({e}):\n{output}"));
    let mut seen = Vec::new();
    walk("", &value, &mut seen);
    let mut problems = Vec::new();
    for (path, v) in &seen {
        // An array of objects is documented through its elements' fields.
        if v.is_object() && path.ends_with("[]") && !fields.contains_key(path) {
            continue;
        }
        match fields.get(path) {
            None => problems.push(format!("`{path}` is in the output but not documented")),
            Some(f) if !f.types.iter().any(|t| t == type_of(v)) => problems.push(format!(
                "`{path}` is {} but documented as {}",
                type_of(v),
                f.types.join("|")
            )),
            Some(_) => {}
        }
    }
    // Required fields: wherever their parent object is.
    for (path, f) in fields {
        if f.optional || path == "[]" {
            continue;
        }
        let (parent, name) = match path.rsplit_once('.') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if name.ends_with("[]") {
            continue;
        }
        let parents: Vec<&Value> = if parent.is_empty() {
            vec![&value]
        } else {
            seen.iter()
                .filter(|(p, _)| *p == parent)
                .map(|(_, v)| v)
                .collect()
        };
        for p in parents {
            if p.is_object() && p.get(&name).is_none() {
                problems.push(format!("documented `{path}` is missing"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{section}: the output disagrees with docs/JSON.md:\n  {}\n{output}",
        problems.join("\n  ")
    );
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn every_json_output_is_what_docs_json_md_says() {
    let t = TestDb::new("json");
    let dir = migrations_dir(&[
        (
            "0002_note.up.sql",
            "CREATE TABLE note (id int);\nCREATE INDEX users_email_lower ON users (lower(email));\n",
        ),
        (
            "0002_note.down.sql",
            "DROP INDEX users_email_lower;\nDROP TABLE note;\n",
        ),
    ]);
    let cmd = |args: &[&str]| {
        let mut c = t.cmd();
        c.arg("--migrations-dir").arg(&dir).arg("--json").args(args);
        c
    };
    check("init", &run_ok(&mut cmd(&["init", "--dry-run"])));
    check("init", &run_ok(&mut cmd(&["init"])));
    check("init", &run_ok(&mut cmd(&["init"])));
    // init --from-template prints init's document too (a clone applies no migrations).
    let template = format!("{}_tpl", t.name);
    run_ok(&mut cmd(&["template", "-q", "--name", &template]));
    let clone = TestDb::new("jsonclone");
    let mut from_template = clone.cmd();
    from_template.arg("--migrations-dir").arg(&dir).args([
        "--json",
        "init",
        "--from-template",
        &template,
    ]);
    check("init", &run_ok(&mut from_template));
    check(
        "template",
        &run_ok(&mut cmd(&["template", "--name", &template])),
    );
    check(
        "template",
        &run_ok(&mut cmd(&["template", "--drop", "--name", &template])),
    );
    check("seed", &run_ok(&mut cmd(&["seed"])));
    check(
        "seed",
        &run_ok(&mut cmd(&[
            "seed",
            "--dev",
            "--users",
            "2",
            "--usage-logs",
            "20",
        ])),
    );
    check("migrate status", &run_ok(&mut cmd(&["migrate", "status"])));
    check("migrate plan", &run_ok(&mut cmd(&["migrate", "plan"])));
    check(
        "migrate history",
        &run_ok(&mut cmd(&["migrate", "history"])),
    );
    check(
        "migrate up",
        &run_ok(&mut cmd(&["migrate", "down", "--steps", "1", "--yes"])),
    );
    check(
        "migrate status",
        &stdout(&expect_exit(
            &mut cmd(&["migrate", "status", "--exit-code"]),
            1,
        )),
    );
    check("migrate up", &run_ok(&mut cmd(&["migrate", "up"])));
    check("migrate up", &run_ok(&mut cmd(&["migrate", "up"])));
    check("migrate verify", &run_ok(&mut cmd(&["migrate", "verify"])));
    let db = t.admin().await;
    db.batch_execute("ALTER TABLE note ADD COLUMN extra text; COMMENT ON TABLE note IS 'x'")
        .await
        .expect("drift");
    check(
        "migrate verify",
        &stdout(&expect_exit(&mut cmd(&["migrate", "verify", "--fix"]), 1)),
    );
    check(
        "migrate lint",
        &stdout(&expect_exit(&mut cmd(&["migrate", "lint"]), 1)),
    );
    check(
        "migrate baseline",
        &run_ok(&mut cmd(&["migrate", "baseline"])),
    );
    let project = scratch_dir("json-diff");
    write_files(
        &project,
        &[("desired.sql", "CREATE TABLE other (id int PRIMARY KEY);\n")],
    );
    check(
        "migrate diff",
        &run_ok(
            cmd(&["migrate", "diff", "other", "--print", "--allow-data-loss"])
                .arg("--to")
                .arg(project.join("desired.sql")),
        ),
    );
    check("doctor", &stdout(&expect_exit(&mut cmd(&["doctor"]), 1)));
    // A revision of the backend's on top of the drift above: status says both, capture takes
    // them, and then has nothing to take.
    db.batch_execute("UPDATE alembic_version SET version_num = 'abc123def456'")
        .await
        .expect("their revision");
    let status = stdout(&expect_exit(&mut cmd(&["migrate", "status"]), 1));
    check("migrate status", &status);
    let v: Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["foreign_revisions"], serde_json::json!(["abc123def456"]));
    assert!(
        v["schema_drift"].as_array().is_some_and(|d| !d.is_empty()),
        "{v}"
    );
    check(
        "migrate capture",
        &run_ok(&mut cmd(&["migrate", "capture", "note_extra", "--yes"])),
    );
    check(
        "migrate capture",
        &run_ok(&mut cmd(&["migrate", "capture", "again", "--yes"])),
    );
    let mut project = crate::support::bin();
    project
        .args(["--json", "project", "init"])
        .arg(scratch_dir("json-project"));
    check("project init", &run_ok(&mut project));
    // A database built by hand, for baseline's other groups.
    let hand = TestDb::new("json_hand");
    let admin = connect(&crate::support::cluster().admin_url).await;
    for sql in [
        format!(
            "CREATE ROLE {n} LOGIN PASSWORD '{p}'",
            n = hand.name,
            p = hand.password
        ),
        format!("CREATE DATABASE {n} OWNER {n}", n = hand.name),
    ] {
        admin.batch_execute(&sql).await.expect("setup");
    }
    connect(&hand.app_url())
        .await
        .batch_execute(
            "CREATE TABLE roles (id uuid PRIMARY KEY, name varchar(50), extra text);\
             INSERT INTO roles VALUES ('00000000-0000-0000-0000-000000000001', NULL, 'x');",
        )
        .await
        .expect("by hand");
    let only_0001 = migrations_dir(&[]);
    let out = expect_exit(
        hand.cmd()
            .arg("--migrations-dir")
            .arg(&only_0001)
            .args(["--json", "migrate", "baseline"]),
        1,
    );
    check("migrate baseline", &stdout(&out));
    check(
        "migrate baseline",
        &run_ok(hand.cmd().arg("--migrations-dir").arg(&only_0001).args([
            "--json",
            "migrate",
            "baseline",
            "--dry-run",
        ])),
    );
    check("reset", &run_ok(&mut cmd(&["reset", "--yes"])));
    let data = scratch_dir("json-local");
    let local = crate::support::bin()
        .env("AIDOCK__LOCAL__DATA_DIR", &data)
        .args(["--json", "local", "status"])
        .output()
        .expect("local status");
    check("local status", &stdout(&local));
    // Every section of the document was run above.
    let ran = [
        "init",
        "seed",
        "migrate up",
        "migrate status",
        "migrate history",
        "migrate verify",
        "migrate lint",
        "migrate baseline",
        "migrate diff",
        "migrate capture",
        "migrate plan",
        "template",
        // With a running cluster, in tests/it/local.rs.
        "local url",
        "project init",
        // With real SQLAlchemy, in tests/it/models.rs.
        "migrate verify --models",
        "doctor",
        "reset",
        "local status",
    ];
    for section in documented().keys() {
        assert!(
            ran.contains(&section.as_str()),
            "section `{section}` is not tested"
        );
    }
}
