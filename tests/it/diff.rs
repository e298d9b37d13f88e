//! `migrate diff` (issue #14): from a desired schema file to a tested migration pair whose `up`
//! gives the same `pg_dump -s` as psql applying that file to a fresh database, whose `down`
//! returns to the previous dump, and after which `verify` is clean.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    TestDb, cluster, expect_exit, migrations_dir, run_ok, schema_dump, scratch_dir, stderr,
    with_db, write_files,
};

/// A project directory whose `sql/` holds `sql` (a migrations directory).
fn project(sql: PathBuf) -> PathBuf {
    let root = scratch_dir("diff-project");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::rename(sql, root.join("sql")).expect("move sql/");
    root
}

fn in_project(t: &TestDb, root: &Path, args: &[&str]) -> Command {
    let mut c = t.cmd();
    c.current_dir(root).args(args);
    c
}

/// A project whose migrations are 0001 and a 0002 (`up`, `down`), initialised for `t`.
fn initialised(t: &TestDb, up: &str, down: &str) -> PathBuf {
    let root = project(migrations_dir(&[
        ("0002_start.up.sql", up),
        ("0002_start.down.sql", down),
    ]));
    run_ok(&mut in_project(t, &root, &["init", "-q"]));
    root
}

/// `desired.sql` in the project: 0001 as written, then `more`.
fn desire(root: &Path, more: &str) {
    let base = std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
    write_files(root, &[("desired.sql", &format!("{base}\n{more}"))]);
}

/// `migrate diff NAME --to desired.sql` (and `more` arguments), asserting success; the up
/// scripts it wrote, in order.
#[track_caller]
fn diff_ok(t: &TestDb, root: &Path, name: &str, more: &[&str]) -> String {
    let before = files_in(&root.join("sql"));
    let out = in_project(t, root, &["migrate", "diff", name, "--to", "desired.sql"])
        .args(more)
        .output()
        .expect("diff");
    assert!(out.status.success(), "{}", stderr(&out));
    files_in(&root.join("sql"))
        .into_iter()
        .filter(|f| f.ends_with(".up.sql") && !before.contains(f))
        .map(|f| std::fs::read_to_string(root.join("sql").join(f)).expect("up"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `migrate up`, `verify`, down to 0002 (what `initialised` made), `verify`; judged by an
/// oracle of its own, not the tool's checker (issue #47): after `up`, `pg_dump -s` of the live
/// database equals psql applying `desired.sql` to a fresh one, and after `down` it equals the
/// dump from before.
#[track_caller]
fn up_and_back(t: &TestDb, root: &Path) {
    let live = with_db(&t.app_url(), &t.name);
    let before = columns_unordered(&schema_dump(&live));
    run_ok(&mut in_project(t, root, &["migrate", "up"]));
    let reference = psql_reference(t, "oracle", &root.join("desired.sql"));
    assert_same_dump(
        &columns_unordered(&schema_dump(&live)),
        &columns_unordered(&schema_dump(&reference)),
        "up must reach what psql makes of desired.sql",
    );
    up_and_back_from_up(t, root);
    assert_same_dump(
        &columns_unordered(&schema_dump(&live)),
        &before,
        "down must return to the schema before up",
    );
}

/// After `migrate up`: the live database dumps as psql's application of `desired.sql` does
/// (the oracle of its own; column order aside, see [`columns_unordered`]).
#[track_caller]
fn matches_psql(t: &TestDb, root: &Path) {
    let reference = psql_reference(t, "oracle", &root.join("desired.sql"));
    assert_same_dump(
        &columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name))),
        &columns_unordered(&schema_dump(&reference)),
        "up must reach what psql makes of desired.sql",
    );
}

/// A dump with each `CREATE TABLE`'s column lines sorted, as scripts/diff_corpus.py compares:
/// PostgreSQL cannot add a column between existing ones, so a column a down adds back goes last
/// (the tool says so in a note); everything else must match line for line.
pub(crate) fn columns_unordered(dump: &str) -> String {
    let mut out = Vec::new();
    let mut block: Option<Vec<&str>> = None;
    for line in dump.lines() {
        if let Some(columns) = block.as_mut() {
            if line.starts_with(')') {
                let mut sorted: Vec<&str> =
                    columns.iter().map(|c| c.trim_end_matches(',')).collect();
                sorted.sort_unstable();
                out.extend(sorted.into_iter().map(str::to_string));
                out.push(line.to_string());
                block = None;
            } else {
                columns.push(line);
            }
            continue;
        }
        out.push(line.to_string());
        if line.starts_with("CREATE TABLE ") && line.ends_with('(') {
            block = Some(Vec::new());
        }
    }
    out.join("\n")
}

/// After `migrate up`: `verify`, down to 0002, `verify`.
fn up_and_back_from_up(t: &TestDb, root: &Path) {
    run_ok(&mut in_project(t, root, &["migrate", "verify"]));
    run_ok(&mut in_project(
        t,
        root,
        &["migrate", "down", "--to", "2", "--yes"],
    ));
    run_ok(&mut in_project(t, root, &["migrate", "verify"]));
}

/// psql applies `file` to a fresh database owned by the test's role, as that role; its URL.
pub(crate) fn psql_reference(t: &TestDb, tag: &str, file: &Path) -> String {
    let name = format!("{}_{tag}", t.name);
    let admin = &cluster().admin_url;
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", admin, "-c"])
        .arg(format!("DROP DATABASE IF EXISTS {name}"))
        .arg("-c")
        .arg(format!(
            "CREATE DATABASE {name} OWNER {} TEMPLATE template0",
            t.name
        ))
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", stderr(&out));
    // As init leaves schema public: owned by the app's role.
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            &with_db(admin, &name),
            "-c",
        ])
        .arg(format!(
            "ALTER SCHEMA public OWNER TO {}; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            t.name
        ))
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", stderr(&out));
    let url = with_db(&t.app_url(), &name);
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(file)
        .arg(&url)
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql -f {}: {}",
        file.display(),
        stderr(&out)
    );
    url
}

/// Two `pg_dump -s` texts are the same; on failure, only the lines that differ are shown.
#[track_caller]
pub(crate) fn assert_same_dump(got: &str, want: &str, what: &str) {
    if got == want {
        return;
    }
    let dir = scratch_dir("dump-diff");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("got.sql"), got).expect("write");
    std::fs::write(dir.join("want.sql"), want).expect("write");
    let out = Command::new("diff")
        .arg("-u")
        .arg(dir.join("want.sql"))
        .arg(dir.join("got.sql"))
        .output()
        .expect("diff");
    panic!("{what}:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// `pg_dump -s` of both are the same.
#[track_caller]
fn same_schema(got: &str, want: &str, what: &str) {
    assert_same_dump(&schema_dump(got), &schema_dump(want), what);
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read sql/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const CHANGES: &str = "
ALTER TABLE users ADD COLUMN avatar_url text;
CREATE INDEX ix_usage_logs_cost ON usage_logs (cost_estimated);
CREATE TYPE ticket_state AS ENUM ('open', 'closed');
CREATE TABLE tickets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    department_id uuid REFERENCES departments (id),
    state ticket_state NOT NULL DEFAULT 'open',
    title text NOT NULL CHECK (title <> '')
);
CREATE INDEX ix_tickets_user_id ON tickets (user_id);
CREATE VIEW open_tickets AS
    SELECT t.id, t.title, u.email FROM tickets t JOIN users u ON u.id = t.user_id WHERE t.state = 'open';
ALTER TABLE roles ALTER COLUMN permissions SET DEFAULT '[\"read\"]'::jsonb;
COMMENT ON TABLE tickets IS 'Support tickets, one per request';
COMMENT ON COLUMN users.avatar_url IS 'Where the avatar lives';
";

#[tokio::test]
async fn diff_writes_a_tested_pair_whose_up_and_down_match_psql() {
    let t = TestDb::new("diff_pair");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    // None when pg_dump is older than the server (version matrix): the dumps are then not
    // compared, the rest of the test runs (the tool compares catalogs itself before writing).
    let before = schema_dump(&with_db(&t.app_url(), &t.name));
    let base = std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
    let desired = root.join("desired.sql");
    std::fs::write(&desired, format!("{base}\n{CHANGES}")).expect("write");

    let out = run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "diff", "add_tickets", "--to", "desired.sql"],
    ));
    assert!(out.contains("0002_add_tickets.up.sql"), "{out}");
    // The index on the existing, busy table is built concurrently in a pair of its own.
    let files = files_in(&root.join("sql"));
    assert!(
        files.contains(&"0003_add_tickets_concurrently.up.sql".to_string()),
        "{files:?}"
    );
    let post = std::fs::read_to_string(root.join("sql/0003_add_tickets_concurrently.up.sql"))
        .expect("0003");
    assert!(post.starts_with("-- aidock:no-transaction"), "{post}");
    assert!(
        post.contains("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_usage_logs_cost"),
        "{post}"
    );
    let main = std::fs::read_to_string(root.join("sql/0002_add_tickets.up.sql")).expect("0002");
    assert!(main.contains("CREATE TYPE ticket_state"), "{main}");
    assert!(!main.contains("ix_usage_logs_cost"), "{main}");

    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    let reference = psql_reference(&t, "want", &desired);
    same_schema(
        &with_db(&t.app_url(), &t.name),
        &reference,
        "up must give psql's schema",
    );
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));

    // Nothing left to do: a second diff writes nothing.
    let again = run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "diff", "again", "--to", "desired.sql"],
    ));
    assert!(again.contains("no difference"), "{again}");

    // An enum value added to an existing type gets its own pair, before the main one.
    let desired2 = root.join("desired2.sql");
    std::fs::write(
        &desired2,
        format!("{base}\n{CHANGES}\nALTER TYPE ticket_state ADD VALUE 'waiting' BEFORE 'closed';\nALTER TABLE tickets ADD COLUMN priority smallint NOT NULL DEFAULT 3;\n"),
    )
    .expect("write");
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "diff", "ticket_waiting", "--to", "desired2.sql"],
    ));
    let pre = std::fs::read_to_string(root.join("sql/0004_ticket_waiting_enum_values.up.sql"))
        .expect("0004");
    assert!(pre.starts_with("-- aidock:no-transaction"), "{pre}");
    assert!(
        pre.contains("ADD VALUE IF NOT EXISTS 'waiting' BEFORE 'closed'"),
        "{pre}"
    );
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    let reference2 = psql_reference(&t, "want2", &desired2);
    same_schema(
        &with_db(&t.app_url(), &t.name),
        &reference2,
        "up of the enum pair must give psql's schema",
    );
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));

    // Down, all the way back to 0001, returns exactly to the previous dump.
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "down", "--to", "1", "--yes"],
    ));
    assert_same_dump(
        &schema_dump(&with_db(&t.app_url(), &t.name)),
        &before,
        "down must return to the previous schema",
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn lossy_steps_are_refused_unless_allowed_and_named() {
    let t = TestDb::new("diff_lossy");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    let base = std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
    // The desired schema has no refresh_tokens.remember_me and no usage_logs index on cost.
    let desired = base.replace("    remember_me boolean NOT NULL DEFAULT false,\n", "");
    assert_ne!(desired, base, "fixture must drop a column");
    write_files(&root, &[("desired.sql", &desired)]);
    let out = expect_exit(
        &mut in_project(
            &t,
            &root,
            &["migrate", "diff", "drop_remember", "--to", "desired.sql"],
        ),
        3,
    );
    let err = stderr(&out);
    assert!(
        err.contains("column refresh_tokens.remember_me is dropped"),
        "{err}"
    );
    assert!(err.contains("--allow-data-loss"), "{err}");
    assert_eq!(files_in(&root.join("sql")).len(), 2, "nothing written");
    let out = run_ok(&mut in_project(
        &t,
        &root,
        &[
            "migrate",
            "diff",
            "drop_remember",
            "--to",
            "desired.sql",
            "--allow-data-loss",
        ],
    ));
    assert!(out.contains("0002_drop_remember.up.sql"), "{out}");
    let up = std::fs::read_to_string(root.join("sql/0002_drop_remember.up.sql")).expect("up");
    assert!(
        up.contains("ALTER TABLE refresh_tokens DROP COLUMN remember_me;"),
        "{up}"
    );
    let down = std::fs::read_to_string(root.join("sql/0002_drop_remember.down.sql")).expect("down");
    assert!(
        down.contains("ADD COLUMN remember_me boolean DEFAULT false NOT NULL"),
        "{down}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// A schema of every kind the engine writes, built by psql and dumped by the real pg_dump.
const LARGE: &str = r"
CREATE SCHEMA billing;
CREATE DOMAIN year AS integer CONSTRAINT year_check CHECK (VALUE >= 1901 AND VALUE <= 2155);
CREATE DOMAIN billing.amount AS numeric(12,2) DEFAULT 0 NOT NULL CONSTRAINT amount_positive CHECK (VALUE >= 0);
CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
CREATE TYPE billing.money_range AS RANGE (SUBTYPE = numeric);
CREATE TYPE address AS (street text, city text, zip varchar(10));
CREATE SEQUENCE film_seq START WITH 100 INCREMENT BY 5 CACHE 1;
CREATE TABLE language (
    language_id serial PRIMARY KEY,
    name character(20) NOT NULL,
    last_update timestamptz DEFAULT now() NOT NULL
);
CREATE TABLE film (
    film_id integer DEFAULT nextval('film_seq') PRIMARY KEY,
    title text NOT NULL,
    description text,
    release_year year,
    language_id integer NOT NULL REFERENCES language (language_id) ON UPDATE CASCADE ON DELETE RESTRICT,
    rental_rate numeric(4,2) DEFAULT 4.99 NOT NULL,
    rating mpaa_rating DEFAULT 'G',
    special_features text[],
    fulltext tsvector GENERATED ALWAYS AS (to_tsvector('simple', coalesce(title, ''))) STORED,
    home address,
    last_update timestamptz DEFAULT now() NOT NULL,
    CONSTRAINT film_rate_check CHECK (rental_rate >= 0)
);
ALTER SEQUENCE film_seq OWNED BY film.film_id;
CREATE TABLE customer (
    customer_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    active boolean DEFAULT true NOT NULL,
    UNIQUE (email)
);
CREATE INDEX film_title_idx ON film USING btree (lower(title)) WHERE description IS NOT NULL;
CREATE INDEX film_fulltext_idx ON film USING gin (fulltext);
CREATE TABLE billing.payment (
    payment_id bigint GENERATED ALWAYS AS IDENTITY,
    customer_id bigint NOT NULL REFERENCES customer (customer_id),
    amount billing.amount,
    payment_date timestamptz NOT NULL,
    PRIMARY KEY (payment_date, payment_id)
) PARTITION BY RANGE (payment_date);
CREATE TABLE billing.payment_2024 PARTITION OF billing.payment FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE billing.payment_2025 PARTITION OF billing.payment FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE billing.payment_rest PARTITION OF billing.payment DEFAULT;
CREATE INDEX payment_customer_idx ON billing.payment (customer_id);
CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.last_update = CURRENT_TIMESTAMP;
    RETURN NEW;
END $$;
CREATE FUNCTION film_in_stock(p_film_id integer, OUT p_count integer) RETURNS SETOF integer
    LANGUAGE sql AS $$ SELECT film_id FROM film WHERE film_id = $1 $$;
CREATE FUNCTION customer_films(c customer) RETURNS SETOF film LANGUAGE sql STABLE AS $$ SELECT * FROM film LIMIT 1 $$;
CREATE FUNCTION _group_concat(text, text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN $2 IS NULL THEN $1 WHEN $1 IS NULL THEN $2 ELSE $1 || ', ' || $2 END $$;
CREATE AGGREGATE group_concat(text) (SFUNC = _group_concat, STYPE = text);
CREATE TRIGGER last_updated BEFORE UPDATE ON film FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TRIGGER language_last_updated BEFORE UPDATE ON language FOR EACH ROW EXECUTE FUNCTION last_updated();
ALTER TABLE language DISABLE TRIGGER language_last_updated;
CREATE VIEW film_list AS
    SELECT f.film_id AS fid, f.title, l.name AS language, group_concat(f.description) AS descriptions
    FROM film f JOIN language l USING (language_id) GROUP BY f.film_id, f.title, l.name;
CREATE VIEW short_film_list AS SELECT fid, title FROM film_list WHERE length(title) < 20;
CREATE MATERIALIZED VIEW rating_counts AS SELECT rating, count(*) AS n FROM film GROUP BY rating;
CREATE UNIQUE INDEX rating_counts_rating ON rating_counts (rating);
ALTER TABLE customer ENABLE ROW LEVEL SECURITY;
CREATE POLICY customer_active ON customer FOR SELECT TO PUBLIC USING (active);
COMMENT ON TABLE film IS 'Films we rent';
COMMENT ON COLUMN film.title IS 'As on the box';
COMMENT ON SCHEMA billing IS 'Money';
COMMENT ON FUNCTION last_updated() IS 'Touches last_update';
COMMENT ON CONSTRAINT film_rate_check ON film IS 'No negative rates';
GRANT SELECT ON film_list TO PUBLIC;
";

#[tokio::test]
async fn a_large_pg_dump_is_generated_from_nothing_and_matches_psql() {
    let t = TestDb::new("diff_large");
    let empty = scratch_dir("empty-sql");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let root = project(empty);
    run_ok(&mut in_project(&t, &root, &["init", "--no-migrate", "-q"]));
    write_files(&root, &[("large.sql", LARGE)]);
    let source = psql_reference(&t, "source", &root.join("large.sql"));
    // The desired schema is what the real pg_dump wrote, `\restrict` lines and all.
    let out = Command::new(crate::support::pg_dump())
        .arg("-s")
        .arg(&source)
        .output()
        .expect("pg_dump");
    if out.status.success() {
        std::fs::write(root.join("dump.sql"), &out.stdout).expect("write dump");
    } else {
        // pg_dump older than the server (version matrix): the SQL itself is the desired schema.
        assert!(
            stderr(&out).contains("version mismatch"),
            "{}",
            stderr(&out)
        );
        std::fs::copy(root.join("large.sql"), root.join("dump.sql")).expect("copy");
    }
    let out = run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "diff", "everything", "--to", "dump.sql"],
    ));
    assert!(out.contains("0001_everything.up.sql"), "{out}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    same_schema(
        &with_db(&t.app_url(), &t.name),
        &source,
        "migrate up of the generated migration must give pg_dump's schema",
    );
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    // And back to nothing.
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "down", "--base", "--yes"],
    ));
    let _ = std::fs::remove_dir_all(&root);
}

/// Issue #30 (class 9): what the desired file says about schema public's privileges is `init`'s,
/// left out of the pair, and said so instead of without a word.
#[tokio::test]
async fn schema_public_privileges_in_the_desired_file_are_left_out_with_a_note() {
    let t = TestDb::new("diff_public");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    let base = std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
    let desired =
        format!("{base}\nGRANT ALL ON SCHEMA public TO PUBLIC;\nCREATE TABLE notes (id int);\n");
    write_files(&root, &[("desired.sql", &desired)]);
    let out = in_project(
        &t,
        &root,
        &["migrate", "diff", "notes", "--to", "desired.sql"],
    )
    .output()
    .expect("diff");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{said}");
    let up = std::fs::read_to_string(root.join("sql/0002_notes.up.sql")).expect("up");
    assert!(up.contains("CREATE TABLE notes"), "{up}");
    assert!(!up.contains("GRANT"), "left out: {up}");
    assert!(
        said.contains("privileges of schema public") || up.contains("privileges of schema public"),
        "said: {said}\n{up}"
    );
}

/// Issue #30 (class 1): a collation made with CREATE COLLATION is an object of its own: diff
/// writes it (before a column that uses it) and its removal, and verify sees it.
#[tokio::test]
async fn collations_are_diffed_and_verified() {
    let t = TestDb::new("diff_coll");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    let base = std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
    let desired = format!(
        "{base}\nCREATE COLLATION posix FROM \"POSIX\";\nCREATE TABLE labels (name text COLLATE posix);\n"
    );
    write_files(&root, &[("desired.sql", &desired)]);
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "diff", "labels", "--to", "desired.sql"],
    ));
    let up = std::fs::read_to_string(root.join("sql/0002_labels.up.sql")).expect("up");
    let create = up
        .find("CREATE COLLATION posix (provider = libc")
        .expect(&up);
    assert!(create < up.find("CREATE TABLE labels").expect(&up), "{up}");
    let down = std::fs::read_to_string(root.join("sql/0002_labels.down.sql")).expect("down");
    assert!(down.contains("DROP COLLATION posix;"), "{down}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    matches_psql(&t, &root);
    // A column's collation alone changes: not lossy, said as a collation change.
    write_files(
        &root,
        &[(
            "desired.sql",
            &desired.replace("name text COLLATE posix", "name text COLLATE \"C\""),
        )],
    );
    let out = in_project(
        &t,
        &root,
        &["migrate", "diff", "relabel", "--to", "desired.sql"],
    )
    .output()
    .expect("diff");
    assert!(out.status.success(), "{}", stderr(&out));
    let up = std::fs::read_to_string(root.join("sql/0003_relabel.up.sql")).expect("up");
    let said = format!("{}{up}", stderr(&out));
    assert!(
        said.contains("changes collation from posix to \"C\""),
        "{said}"
    );
    assert!(!said.contains("changes type from text to text"), "{said}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    // A collation made by hand is drift.
    let db = t.admin().await;
    db.batch_execute(&format!(
        "SET ROLE \"{}\"; CREATE COLLATION c_by_hand FROM \"C\"",
        t.name
    ))
    .await
    .expect("by hand");
    let out = expect_exit(&mut in_project(&t, &root, &["migrate", "verify"]), 1);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("c_by_hand"), "{text}");
}

/// Issue #30 (class 2): new columns are added in the desired schema's order, not by name.
#[tokio::test]
async fn new_columns_are_added_in_the_desired_order() {
    let t = TestDb::new("diff_order");
    let root = initialised(&t, "CREATE TABLE m (id int);\n", "DROP TABLE m;\n");
    desire(&root, "CREATE TABLE m (id int, b int, a int, c2 int);\n");
    let up = diff_ok(&t, &root, "more", &[]);
    let at = |c: &str| {
        up.find(&format!("ADD COLUMN {c} "))
            .unwrap_or_else(|| panic!("{c}: {up}"))
    };
    assert!(at("b") < at("a") && at("a") < at("c2"), "{up}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    let db = t.admin().await;
    let order: String = db
        .query_one(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'm'::regclass AND attnum > 0",
            &[],
        )
        .await
        .expect("order")
        .get(0);
    assert_eq!(order, "id,b,a,c2");
    // The oracle, column order included here (new columns do go where the file puts them).
    let reference = psql_reference(&t, "oracle", &root.join("desired.sql"));
    assert_same_dump(
        &schema_dump(&with_db(&t.app_url(), &t.name)),
        &schema_dump(&reference),
        "up must reach what psql makes of desired.sql, column order included",
    );
}

/// Issue #30 (class 5): a column moved from one enum type to another casts through text.
#[tokio::test]
async fn a_column_moved_to_another_enum_casts_through_text() {
    let t = TestDb::new("diff_enum2");
    let root = initialised(
        &t,
        "CREATE TYPE old_status AS ENUM ('open', 'closed');\nCREATE TABLE tickets (id int, status old_status);\nINSERT INTO tickets VALUES (1, 'open');\n",
        "DROP TABLE tickets;\nDROP TYPE old_status;\n",
    );
    desire(
        &root,
        "CREATE TYPE old_status AS ENUM ('open', 'closed');\nCREATE TYPE new_status AS ENUM ('open', 'closed', 'archived');\nCREATE TABLE tickets (id int, status new_status);\n",
    );
    let up = diff_ok(&t, &root, "new_status", &["--allow-data-loss"]);
    assert!(up.contains("USING status::text::new_status"), "{up}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    let db = t.admin().await;
    let v: String = db
        .query_one("SELECT status::text FROM tickets", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(v, "open");
    up_and_back_from_up(&t, &root);
}

/// Issue #30 (class 3): a grant-only change makes a pair whose up and down pass their test.
#[tokio::test]
async fn a_grant_only_change_is_a_tested_pair() {
    let t = TestDb::new("diff_grant");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    let base = std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
    write_files(
        &root,
        &[(
            "desired.sql",
            &format!("{base}\nGRANT SELECT ON TABLE users TO PUBLIC;\n"),
        )],
    );
    let out = in_project(
        &t,
        &root,
        &["migrate", "diff", "grant_users", "--to", "desired.sql"],
    )
    .output()
    .expect("diff");
    assert!(out.status.success(), "{}", stderr(&out));
    let up = std::fs::read_to_string(root.join("sql/0002_grant_users.up.sql")).expect("up");
    assert!(up.contains("GRANT SELECT ON TABLE users TO PUBLIC"), "{up}");
    let live = with_db(&t.app_url(), &t.name);
    let before = schema_dump(&live);
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    matches_psql(&t, &root);
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "down", "--steps", "1", "--yes"],
    ));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    assert_same_dump(
        &schema_dump(&live),
        &before,
        "down returns to the dump before",
    );
}

/// Issue #30 (class 4): drop order. Each case: the migrations' schema (0002), the desired one;
/// the pair must pass its own test (up reaches it, down returns) and apply.
#[tokio::test]
async fn drops_go_in_dependency_order() {
    let cases: [(&str, &str, &str); 3] = [
        (
            "pk_before_fk",
            "CREATE TABLE p (id int PRIMARY KEY);\nCREATE TABLE c (pid int REFERENCES p (id));\n",
            "CREATE TABLE p (id int);\nCREATE TABLE c (pid int);\n",
        ),
        (
            "function_in_domain",
            "CREATE FUNCTION is_even(x int) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT x % 2 = 0 $$;\nCREATE DOMAIN even AS int CHECK (is_even(VALUE));\n",
            "",
        ),
        (
            "table_to_view",
            "CREATE TABLE t (id int);\nCREATE VIEW v AS SELECT id FROM t;\n",
            "CREATE TABLE t0 (id int);\nCREATE VIEW t AS SELECT id FROM t0;\nCREATE VIEW v AS SELECT id FROM t;\n",
        ),
    ];
    let mut failed = Vec::new();
    for (tag, current, desired) in cases {
        let t = TestDb::new(&format!("diff_drop_{tag}"));
        let down = "SELECT 1;\n";
        let root = project(migrations_dir(&[
            ("0002_cur.up.sql", current),
            ("0002_cur.down.sql", down),
        ]));
        run_ok(&mut in_project(&t, &root, &["init", "-q"]));
        let base =
            std::fs::read_to_string(root.join("sql/0001_initial_tables.up.sql")).expect("0001");
        write_files(&root, &[("desired.sql", &format!("{base}\n{desired}"))]);
        let out = in_project(
            &t,
            &root,
            &[
                "migrate",
                "diff",
                "next",
                "--to",
                "desired.sql",
                "--allow-data-loss",
            ],
        )
        .output()
        .expect("diff");
        if !out.status.success() {
            failed.push(format!("{tag}: {}", stderr(&out)));
            continue;
        }
        let up = in_project(&t, &root, &["migrate", "up"])
            .output()
            .expect("up");
        if !up.status.success() {
            failed.push(format!("{tag} (up): {}", stderr(&up)));
            continue;
        }
        matches_psql(&t, &root);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Issue #30 (migra's identitycols): an identity added to a nullable column sets NOT NULL first.
#[tokio::test]
async fn an_identity_added_to_a_nullable_column() {
    let t = TestDb::new("diff_ident");
    let root = initialised(
        &t,
        "CREATE TABLE ic (c int DEFAULT 77, f int GENERATED ALWAYS AS IDENTITY);\n",
        "DROP TABLE ic;\n",
    );
    desire(
        &root,
        "CREATE TABLE ic (c int GENERATED BY DEFAULT AS IDENTITY, f int);\n",
    );
    diff_ok(&t, &root, "ident", &[]);
    up_and_back(&t, &root);
}

/// Issue #30 (classes 1 and 7): an identity's sequence options are part of its column: a change
/// is written (not "no difference"), and a new identity column keeps its options.
#[tokio::test]
async fn identity_options_are_diffed() {
    let t = TestDb::new("diff_idopt");
    let root = initialised(
        &t,
        "CREATE TABLE ids (id int GENERATED ALWAYS AS IDENTITY);\n",
        "DROP TABLE ids;\n",
    );
    desire(
        &root,
        "CREATE TABLE ids (id int GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 5 CACHE 3 CYCLE));\nCREATE TABLE more_ids (id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 7 MAXVALUE 1000));\n",
    );
    let up = diff_ok(&t, &root, "idopt", &[]);
    assert!(
        up.contains("SET START WITH 100")
            && up.contains("SET INCREMENT BY 5")
            && up.contains("SET CYCLE"),
        "{up}"
    );
    assert!(up.contains("START WITH 7"), "{up}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    let db = t.admin().await;
    // The options changed in place (an existing identity keeps its position: SET START is what
    // a later RESTART goes back to, as in PostgreSQL).
    let start: i64 = db
        .query_one(
            "SELECT seqstart FROM pg_sequence WHERE seqrelid = pg_get_serial_sequence('ids', 'id')::regclass",
            &[],
        )
        .await
        .expect("seq")
        .get(0);
    assert_eq!(start, 100);
    up_and_back_from_up(&t, &root);
}

/// Issue #30: a value added to an enum while a new table uses it: the down drops the table and
/// swaps the enum back without converting the dropped table's column.
#[tokio::test]
async fn an_enum_value_and_a_new_table_using_it_revert() {
    let t = TestDb::new("diff_enumdep");
    let mood = "CREATE TYPE mood AS ENUM ('ok', 'meh');\nCREATE TABLE days (id int PRIMARY KEY, mood mood);\nCREATE VIEW good_days AS SELECT *, 'ok'::mood AS best FROM days;\n";
    let root = initialised(
        &t,
        mood,
        "DROP VIEW good_days;\nDROP TABLE days;\nDROP TYPE mood;\n",
    );
    desire(
        &root,
        &format!(
            "{}CREATE TABLE weeks (id int, mood mood);\n",
            mood.replace("('ok', 'meh')", "('ok', 'meh', 'great')")
        ),
    );
    diff_ok(&t, &root, "great", &[]);
    up_and_back(&t, &root);
}

/// Issue #30: REPLICA IDENTITY is part of a table: a change is written (not "no difference").
#[tokio::test]
async fn replica_identity_is_diffed() {
    let t = TestDb::new("diff_replid");
    let root = initialised(
        &t,
        "CREATE TABLE rep (id int NOT NULL, v text);\nCREATE TABLE rep2 (id int NOT NULL);\n",
        "DROP TABLE rep;\nDROP TABLE rep2;\n",
    );
    desire(
        &root,
        "CREATE TABLE rep (id int NOT NULL, v text);\nALTER TABLE rep REPLICA IDENTITY FULL;\nCREATE TABLE rep2 (id int NOT NULL);\nCREATE UNIQUE INDEX rep2_id ON rep2 (id);\nALTER TABLE rep2 REPLICA IDENTITY USING INDEX rep2_id;\n",
    );
    let up = diff_ok(&t, &root, "replid", &[]);
    assert!(
        up.contains("ALTER TABLE rep REPLICA IDENTITY FULL;"),
        "{up}"
    );
    let using = up.find("REPLICA IDENTITY USING INDEX rep2_id").expect(&up);
    assert!(
        up.find("CREATE UNIQUE INDEX rep2_id").expect(&up) < using,
        "{up}"
    );
    up_and_back(&t, &root);
}

/// A sequence's owning column moves: to a new table (after it is made), and away from a table
/// that is dropped (before the drop, which would take the sequence along).
#[tokio::test]
async fn sequence_ownership_moves_between_tables() {
    let t = TestDb::new("diff_seqown");
    let root = initialised(
        &t,
        "CREATE SEQUENCE \"free seq\";\nCREATE TABLE \"old owner\" (id bigint);\nCREATE SEQUENCE owned_seq OWNED BY \"old owner\".id;\n",
        "DROP TABLE \"old owner\";\nDROP SEQUENCE \"free seq\";\n",
    );
    desire(
        &root,
        "CREATE SEQUENCE \"free seq\";\nCREATE SEQUENCE owned_seq;\nCREATE TABLE \"new owner\" (\"some id\" bigint);\nALTER SEQUENCE \"free seq\" OWNED BY \"new owner\".\"some id\";\n",
    );
    let up = diff_ok(&t, &root, "seqown", &["--allow-data-loss"]);
    let pos = |what: &str| up.find(what).unwrap_or_else(|| panic!("{what} in {up}"));
    assert!(
        pos("CREATE TABLE \"new owner\"") < pos("ALTER SEQUENCE \"free seq\" AS"),
        "{up}"
    );
    assert!(
        pos("ALTER SEQUENCE owned_seq OWNED BY NONE") < pos("DROP TABLE \"old owner\""),
        "{up}"
    );
    up_and_back(&t, &root);
}

/// Issue #30 (class 8): a changed partition key, which PostgreSQL cannot alter, is a re-made
/// table: refused as losing rows unless allowed (never "no difference"), then a pair that goes
/// up and back with the table's index and partition made again (and a new column made with it,
/// not added a second time).
#[tokio::test]
async fn a_changed_partition_key_remakes_the_table() {
    let t = TestDb::new("diff_partkey");
    let root = initialised(
        &t,
        "CREATE TABLE pt (a int, b int) PARTITION BY RANGE (a);\nCREATE INDEX pt_b ON pt (b);\nCREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (10);\n",
        "DROP TABLE pt;\n",
    );
    desire(
        &root,
        "CREATE TABLE pt (a int, b int, c text) PARTITION BY RANGE (b);\nCREATE INDEX pt_b ON pt (b);\nCREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (10);\n",
    );
    let out = expect_exit(
        &mut in_project(
            &t,
            &root,
            &["migrate", "diff", "repartition", "--to", "desired.sql"],
        ),
        3,
    );
    let err = stderr(&out);
    assert!(
        err.contains("loses data") && err.contains("table pt is dropped with its rows"),
        "{err}"
    );
    assert_eq!(files_in(&root.join("sql")).len(), 4, "nothing written");
    let up = diff_ok(&t, &root, "repartition", &["--allow-data-loss"]);
    assert!(up.contains("PARTITION BY RANGE (b)"), "{up}");
    up_and_back(&t, &root);
}

/// A primary key over a unique index already there under its name takes that index
/// (`USING INDEX`, no second build); the down drops the constraint and makes the index again.
#[tokio::test]
async fn a_primary_key_takes_the_index_already_there() {
    let t = TestDb::new("diff_pkidx");
    let root = initialised(
        &t,
        "CREATE TABLE pk_later (id int);\nCREATE UNIQUE INDEX pk_later_pkey ON pk_later (id);\n",
        "DROP TABLE pk_later;\n",
    );
    desire(
        &root,
        "CREATE TABLE pk_later (id int);\nCREATE UNIQUE INDEX pk_later_pkey ON pk_later (id);\nALTER TABLE pk_later ADD CONSTRAINT pk_later_pkey PRIMARY KEY USING INDEX pk_later_pkey;\n",
    );
    let up = diff_ok(&t, &root, "pk", &[]);
    assert!(
        up.contains("ADD CONSTRAINT pk_later_pkey PRIMARY KEY USING INDEX pk_later_pkey;"),
        "{up}"
    );
    up_and_back(&t, &root);
    let db = t.admin().await;
    let indexes: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'pk_later_pkey'",
            &[],
        )
        .await
        .expect("indexes")
        .get(0);
    assert_eq!(indexes, 1, "the down made the index again");
}

/// A trigger turned into a constraint trigger (and back, in the down): its constraint row comes
/// and goes with the trigger, never as an `ADD CONSTRAINT` of its own.
#[tokio::test]
async fn a_trigger_becomes_a_constraint_trigger() {
    let t = TestDb::new("diff_ctrig");
    let function = "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\nCREATE TABLE watched (id int PRIMARY KEY);\n";
    let root = initialised(
        &t,
        &format!(
            "{function}CREATE TRIGGER watch AFTER UPDATE ON watched FOR EACH ROW EXECUTE FUNCTION touch();\n"
        ),
        "DROP TABLE watched;\nDROP FUNCTION touch();\n",
    );
    desire(
        &root,
        &format!(
            "{function}CREATE CONSTRAINT TRIGGER watch AFTER UPDATE ON watched DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION touch();\n"
        ),
    );
    let up = diff_ok(&t, &root, "ctrig", &[]);
    assert!(up.contains("CREATE CONSTRAINT TRIGGER watch"), "{up}");
    assert!(!up.contains("ADD CONSTRAINT watch"), "{up}");
    up_and_back(&t, &root);
}

/// A type change PostgreSQL has no cast for (bigint to timestamp) is refused with what to do,
/// not a guessed conversion and not "the engine failed its test".
#[tokio::test]
async fn a_type_change_without_a_cast_is_refused_with_what_to_do() {
    let t = TestDb::new("diff_nocast");
    let root = initialised(
        &t,
        "CREATE TABLE events (id int, at bigint);\n",
        "DROP TABLE events;\n",
    );
    desire(&root, "CREATE TABLE events (id int, at timestamp);\n");
    let out = expect_exit(
        &mut in_project(
            &t,
            &root,
            &[
                "migrate",
                "diff",
                "retype",
                "--to",
                "desired.sql",
                "--allow-data-loss",
            ],
        ),
        3,
    );
    let err = stderr(&out);
    assert!(
        err.contains("no cast for")
            && err.contains("cannot cast type bigint to timestamp")
            && err.contains("USING <expression>")
            && !err.contains("please report it"),
        "{err}"
    );
    assert_eq!(files_in(&root.join("sql")).len(), 4, "nothing written");
}

/// A partition's own NOT NULL and default (an existing partition's changed, a new partition's
/// set after it is made), and a foreign key to a partitioned table (whose per-partition copies
/// PostgreSQL names by itself, and which are not compared).
#[tokio::test]
async fn partition_columns_and_a_foreign_key_to_a_partitioned_table() {
    let t = TestDb::new("diff_partcol");
    let parts = "CREATE TABLE parts (id int PRIMARY KEY, v int DEFAULT 1) PARTITION BY LIST (id);\nCREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1);\n";
    let root = initialised(&t, parts, "DROP TABLE parts;\n");
    desire(
        &root,
        &format!(
            "{parts}ALTER TABLE parts_1 ALTER COLUMN v SET NOT NULL;\nALTER TABLE parts_1 ALTER COLUMN v SET DEFAULT 7;\nCREATE TABLE parts_2 PARTITION OF parts (v NOT NULL DEFAULT 9) FOR VALUES IN (2);\nCREATE TABLE refs (part int REFERENCES parts (id));\n"
        ),
    );
    let up = diff_ok(&t, &root, "partcol", &[]);
    assert!(
        up.contains("ALTER TABLE parts_1 ALTER COLUMN v SET NOT NULL;")
            && up.contains("ALTER TABLE parts_2 ALTER COLUMN v SET DEFAULT 9;"),
        "{up}"
    );
    up_and_back(&t, &root);
}

/// A parent's column dropped with an index on a partition that uses it: the down adds the
/// column back (to the parent, so to the partition) before it makes that index again.
#[tokio::test]
async fn an_index_on_a_partition_comes_back_after_the_parent_column() {
    let t = TestDb::new("diff_partidx");
    let root = initialised(
        &t,
        "CREATE TABLE pl (id int, foo text) PARTITION BY LIST (foo);\nCREATE TABLE pl_1 PARTITION OF pl FOR VALUES IN ('a');\nCREATE UNIQUE INDEX pl_1_uniq ON pl_1 (foo, id);\n",
        "DROP TABLE pl;\n",
    );
    desire(
        &root,
        "CREATE TABLE pl (foo text) PARTITION BY LIST (foo);\nCREATE TABLE pl_1 PARTITION OF pl FOR VALUES IN ('a');\n",
    );
    diff_ok(&t, &root, "dropid", &["--allow-data-loss"]);
    up_and_back(&t, &root);
}

/// A new partitioned index whose partition's index has a name of its own in the desired schema:
/// that index is made first, and the partitioned index attaches it (no index named by
/// PostgreSQL instead).
#[tokio::test]
async fn a_partition_index_keeps_its_own_name() {
    let t = TestDb::new("diff_partname");
    let table = "CREATE TABLE pi (id int, foo text) PARTITION BY LIST (foo);\nCREATE TABLE pi_1 PARTITION OF pi FOR VALUES IN ('a');\n";
    let root = initialised(&t, table, "DROP TABLE pi;\n");
    desire(
        &root,
        &format!(
            "{table}CREATE INDEX pi_1_mine ON pi_1 (foo, id);\nCREATE INDEX pi_all ON pi (foo, id);\n"
        ),
    );
    diff_ok(&t, &root, "partname", &[]);
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    let db = t.admin().await;
    let names: Vec<String> = db
        .query(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'pi_1'::regclass ORDER BY 1",
            &[],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["pi_1_mine"], "attached under its own name");
    up_and_back_from_up(&t, &root);
}

/// New enum values and a new default that uses one: the down's enum swap does not set back a
/// default the plan drops (its value would not exist any more).
#[tokio::test]
async fn enum_values_with_a_new_default_revert() {
    let t = TestDb::new("diff_enumdef");
    let root = initialised(
        &t,
        "CREATE TYPE level AS ENUM ('1', '2');\nCREATE TABLE lv (val level);\n",
        "DROP TABLE lv;\nDROP TYPE level;\n",
    );
    desire(
        &root,
        "CREATE TYPE level AS ENUM ('0', '1', '1.5', '2');\nCREATE TABLE lv (val level DEFAULT '1.5');\n",
    );
    diff_ok(&t, &root, "levels", &[]);
    up_and_back(&t, &root);
}

/// An extension made at the desired schema's version (not the newest), updated forward, and
/// made again at the older version in the down (extensions have no downgrade scripts).
#[tokio::test]
async fn extension_versions_go_up_and_back() {
    let t = TestDb::new("diff_extver");
    let root = initialised(
        &t,
        "CREATE EXTENSION pg_trgm VERSION '1.3';\n",
        "DROP EXTENSION pg_trgm;\n",
    );
    desire(
        &root,
        "CREATE EXTENSION pg_trgm VERSION '1.4';\nCREATE EXTENSION citext VERSION '1.5';\n",
    );
    let up = diff_ok(&t, &root, "extver", &[]);
    assert!(
        up.contains("ALTER EXTENSION pg_trgm UPDATE TO '1.4';")
            && up.contains(
                "CREATE EXTENSION IF NOT EXISTS citext WITH SCHEMA public VERSION '1.5';"
            ),
        "{up}"
    );
    up_and_back(&t, &root);
}

/// Issue #30 (class 2's second half): a down that adds a dropped column back puts it last and
/// says so, as the up does for its new columns.
#[tokio::test]
async fn a_column_the_down_adds_back_is_said_to_go_last() {
    let t = TestDb::new("diff_downorder");
    let root = initialised(
        &t,
        "CREATE TABLE m (id int, a int, b int);\n",
        "DROP TABLE m;\n",
    );
    desire(&root, "CREATE TABLE m (id int, b int);\n");
    let out = in_project(
        &t,
        &root,
        &[
            "migrate",
            "diff",
            "drop_a",
            "--to",
            "desired.sql",
            "--allow-data-loss",
        ],
    )
    .output()
    .expect("diff");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("in the down script: column m.a is added last"),
        "{err}"
    );
    up_and_back(&t, &root);
}

/// Issue #30 (class 6): the desired file runs as psql runs a file (CREATE INDEX CONCURRENTLY in
/// it works); a statement the migrating role may not run (LEAKPROOF) is refused naming the
/// statement's line and why.
#[tokio::test]
async fn a_desired_file_is_built_as_psql_runs_it_and_rights_are_named() {
    let t = TestDb::new("diff_rights");
    let root = initialised(&t, "CREATE TABLE ci (v text);\n", "DROP TABLE ci;\n");
    desire(
        &root,
        "CREATE TABLE ci (v text);\nCREATE INDEX CONCURRENTLY ci_v ON ci (v);\n",
    );
    let up = diff_ok(&t, &root, "ci_v", &[]);
    assert!(up.contains("ci_v"), "{up}");
    up_and_back(&t, &root);
    desire(
        &root,
        "CREATE TABLE ci (v text);\nCREATE INDEX ci_v ON ci (v);\nCREATE FUNCTION lp(int) RETURNS int LANGUAGE sql IMMUTABLE LEAKPROOF AS 'SELECT 1';\n",
    );
    let out = in_project(&t, &root, &["migrate", "diff", "lp", "--to", "desired.sql"])
        .output()
        .expect("diff");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("leakproof")
            && err.contains(&format!("built as `{}`", t.name))
            && err.contains("have the admin run it by hand"),
        "{err}"
    );
}

/// A partitioned index a partition's primary key is attached to: PostgreSQL drops neither
/// alone, so the index goes with CASCADE and a key that stays is made again.
#[tokio::test]
async fn a_partitioned_index_holding_a_partitions_own_key_is_dropped_with_cascade() {
    let t = TestDb::new("diff_cycle");
    let table = "CREATE TABLE f (id int NOT NULL, foo text NOT NULL) PARTITION BY LIST (foo);\nCREATE TABLE f1 PARTITION OF f FOR VALUES IN ('a');\n";
    let root = initialised(&t, table, "DROP TABLE f;\n");
    let key = "CREATE UNIQUE INDEX f1_pkey ON f1 (foo, id);\nALTER TABLE f1 ADD CONSTRAINT f1_pkey PRIMARY KEY USING INDEX f1_pkey;\n";
    // The partition's own primary key first, then the partitioned index that attaches its
    // index; the down drops that index with CASCADE (PostgreSQL drops neither alone).
    desire(
        &root,
        &format!(
            "{table}CREATE UNIQUE INDEX some_idx ON ONLY f (foo, id);\n{key}ALTER INDEX some_idx ATTACH PARTITION f1_pkey;\n"
        ),
    );
    let up = diff_ok(&t, &root, "cycle", &[]);
    let (pk, ix) = (
        up.find("ADD CONSTRAINT f1_pkey").expect("pk"),
        up.find("CREATE UNIQUE INDEX some_idx").expect("index"),
    );
    assert!(pk < ix, "{up}");
    let down = std::fs::read_to_string(root.join("sql/0003_cycle.down.sql")).expect("down");
    assert!(down.contains("DROP INDEX some_idx CASCADE;"), "{down}");
    up_and_back(&t, &root);
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    // Dropping the partitioned index alone: the cascade takes the key, which is made again.
    desire(&root, &format!("{table}{key}"));
    let up = diff_ok(&t, &root, "unindex", &[]);
    let (drop, pk) = (
        up.find("DROP INDEX some_idx CASCADE;").expect("drop"),
        up.find("ADD CONSTRAINT f1_pkey").expect("pk again"),
    );
    assert!(drop < pk, "{up}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "down", "--to", "3", "--yes"],
    ));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
}

/// Index attachments are part of the schema: a partitioned index made `ON ONLY` with one
/// partition not attached yet. Attaching it is one `ALTER INDEX ... ATTACH PARTITION`; going
/// back (PostgreSQL cannot detach an index) makes the partitioned index again `ON ONLY` and
/// attaches the others. `verify` sees an attachment made by hand.
#[tokio::test]
async fn index_attachments_are_written_and_a_detach_remakes_the_partitioned_index() {
    let t = TestDb::new("diff_attach");
    let base = "CREATE TABLE f (id int, foo text) PARTITION BY LIST (foo);\nCREATE TABLE f1 PARTITION OF f FOR VALUES IN ('a');\nCREATE TABLE f2 PARTITION OF f FOR VALUES IN ('b');\nCREATE INDEX p_idx ON ONLY f (foo);\nCREATE INDEX f1_part ON f1 (foo);\nALTER INDEX p_idx ATTACH PARTITION f1_part;\nCREATE INDEX f2_part ON f2 (foo);\n";
    let root = initialised(&t, base, "DROP TABLE f;\n");
    desire(
        &root,
        &format!("{base}ALTER INDEX p_idx ATTACH PARTITION f2_part;\n"),
    );
    let up = diff_ok(&t, &root, "attach", &[]);
    assert!(
        up.contains("ALTER INDEX p_idx ATTACH PARTITION f2_part;"),
        "{up}"
    );
    assert!(!up.contains("DROP INDEX"), "{up}");
    let down = std::fs::read_to_string(root.join("sql/0003_attach.down.sql")).expect("down");
    assert!(
        down.contains("DROP INDEX p_idx;")
            && down.contains("CREATE INDEX p_idx ON ONLY public.f")
            && down.contains("ALTER INDEX p_idx ATTACH PARTITION f1_part;")
            && !down.contains("ATTACH PARTITION f2_part"),
        "{down}"
    );
    up_and_back(&t, &root);
    // Attached by hand in the live database: verify names the attachment.
    t.admin()
        .await
        .batch_execute("ALTER INDEX p_idx ATTACH PARTITION f2_part")
        .await
        .expect("attach");
    let out = expect_exit(&mut in_project(&t, &root, &["migrate", "verify"]), 1);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr(&out);
    assert!(text.contains("index attachment f2_part"), "{text}");
}

/// A column moved from a parent to its INHERITS child (migra's inherit2): PostgreSQL cannot
/// make an inherited column the child's own, so it goes with the parent's (lossy, said) and is
/// added back; going down, the child's own is dropped before the parent's is added (which would
/// merge with it and keep it the child's own).
#[tokio::test]
async fn a_column_moved_from_parent_to_child_is_dropped_and_added_back() {
    let t = TestDb::new("diff_inh");
    let root = initialised(
        &t,
        "CREATE TABLE base (created_at timestamp DEFAULT now(), e integer);\nCREATE TABLE kid (a1 integer, a2 integer) INHERITS (base);\n",
        "DROP TABLE kid;\nDROP TABLE base;\n",
    );
    desire(
        &root,
        "CREATE TABLE base (created_at timestamp DEFAULT now());\nCREATE TABLE kid (a1 integer) INHERITS (base);\nALTER TABLE kid ADD COLUMN e integer;\n",
    );
    let out = in_project(
        &t,
        &root,
        &["migrate", "diff", "move", "--to", "desired.sql"],
    )
    .output()
    .expect("diff");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("column kid.e: inherited from base.e"),
        "{}",
        stderr(&out)
    );
    let up = diff_ok(&t, &root, "move", &["--allow-data-loss"]);
    let (drop, add) = (
        up.find("ALTER TABLE base DROP COLUMN e;").expect("drop"),
        up.find("ALTER TABLE kid ADD COLUMN e integer;")
            .expect("add"),
    );
    assert!(drop < add, "{up}");
    up_and_back(&t, &root);
}

/// Partitions and the parent's indexes: a table attached as a partition whose own index
/// matches the parent's but stays apart (ATTACH PARTITION would take it: it is made again after
/// the attach); a new partition whose own primary key backs the parent's unique index (made
/// standalone, keyed, then attached: PARTITION OF would give it a copy of the index instead).
#[tokio::test]
async fn partitions_keep_their_own_indexes_apart_or_attached_as_desired() {
    let t = TestDb::new("diff_part_own");
    let start = "CREATE TABLE f (id int, foo text, bar text) PARTITION BY LIST (foo);\nCREATE INDEX f_idx ON f (foo, bar);\nCREATE TABLE loose (id int, foo text, bar text);\nCREATE INDEX loose_idx ON loose (foo, bar);\nCREATE TABLE g (foo text, bar text) PARTITION BY LIST (foo);\nCREATE UNIQUE INDEX g_idx ON g (foo, bar);\n";
    let root = initialised(
        &t,
        start,
        "DROP TABLE f;\nDROP TABLE loose;\nDROP TABLE g;\n",
    );
    // As psql would build it: loose attached before f_idx exists (it gets its own copy), and
    // g1 made with its key before g_idx (which attaches the key's index).
    desire(
        &root,
        "CREATE TABLE f (id int, foo text, bar text) PARTITION BY LIST (foo);\nCREATE TABLE loose (id int, foo text, bar text);\nALTER TABLE f ATTACH PARTITION loose FOR VALUES IN ('a');\nCREATE INDEX f_idx ON f (foo, bar);\nCREATE INDEX loose_idx ON loose (foo, bar);\nCREATE TABLE g (foo text, bar text) PARTITION BY LIST (foo);\nCREATE TABLE g1 PARTITION OF g (PRIMARY KEY (foo, bar)) FOR VALUES IN ('a');\nCREATE UNIQUE INDEX g_idx ON g (foo, bar);\n",
    );
    let up = diff_ok(&t, &root, "own", &[]);
    let (dropped, attached) = (
        up.find("DROP INDEX loose_idx;").expect("made again"),
        up.find("ATTACH PARTITION loose").expect("attach"),
    );
    assert!(dropped < attached, "{up}");
    assert!(up.contains("CREATE TABLE g1 (LIKE g"), "{up}");
    up_and_back(&t, &root);
}

/// Issue #43: `pg_dump -s -n public` (PostgreSQL 15's and later write `CREATE SCHEMA public;`)
/// is a desired schema as it is.
#[tokio::test]
async fn a_pg_dump_of_schema_public_is_a_desired_schema() {
    let t = TestDb::new("diff_dump_public");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    desire(
        &root,
        "ALTER TABLE users ADD COLUMN phone_number varchar(20);\nCREATE INDEX ix_users_phone_number ON users (phone_number);",
    );
    let reference = psql_reference(&t, "dumped", &root.join("desired.sql"));
    let dump = crate::support::dump_with(&reference, &["-s", "-n", "public"]);
    assert!(dump.contains("CREATE SCHEMA public;"), "{dump}");
    write_files(&root, &[("desired.sql", &dump)]);
    let up = diff_ok(&t, &root, "add_phone_number", &[]);
    assert!(up.contains("phone_number"), "{up}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    assert_same_dump(
        &columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name))),
        &columns_unordered(&schema_dump(&reference)),
        "up must reach the dumped schema",
    );
}

/// Issue #44 (8): one change written as two versions (a concurrent index has a pair of its own)
/// comes with the undo that reverts all of it.
#[tokio::test]
async fn diff_says_the_undo_that_reverts_the_whole_change() {
    let t = TestDb::new("diff_undo");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    let before = columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name)));
    desire(
        &root,
        "ALTER TABLE users ADD COLUMN avatar_url text;\nCREATE INDEX ix_users_avatar_url ON users (avatar_url);",
    );
    let out = run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "diff", "add_avatar", "--to", "desired.sql"],
    ));
    assert!(
        out.contains("migrate down --to 1` (all 2 versions of this change"),
        "{out}"
    );
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "down", "--to", "1", "--yes"],
    ));
    assert_same_dump(
        &columns_unordered(&schema_dump(&with_db(&t.app_url(), &t.name))),
        &before,
        "the undo diff printed reverts the whole change",
    );
}

/// Issue #44 (6): after a change made by hand, `migrate diff --to` a dump of the live database
/// writes the pair, and the next step said is recording it, not `migrate up` (which would fail);
/// `migrate baseline` then records it and `up` is a no-op.
#[tokio::test]
async fn a_pair_the_live_database_already_has_is_recorded_not_applied() {
    let t = TestDb::new("diff_live");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    let live = with_db(&t.app_url(), &t.name);
    crate::support::connect(&live)
        .await
        .batch_execute("ALTER TABLE users ADD COLUMN phone_number varchar(20)")
        .await
        .expect("by hand");
    write_files(&root, &[("desired.sql", &schema_dump(&live))]);
    let out = in_project(
        &t,
        &root,
        &["migrate", "diff", "add_phone_number", "--to", "desired.sql"],
    )
    .output()
    .expect("diff");
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        said.contains("already has this schema") && said.contains("migrate baseline"),
        "{said}"
    );
    assert!(!said.contains("`migrate up`, `migrate verify`"), "{said}");
    run_ok(&mut in_project(&t, &root, &["migrate", "baseline"]));
    assert!(run_ok(&mut in_project(&t, &root, &["migrate", "up"])).contains("nothing to do"));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    // Issue #44 (5): no difference left; with --json, a document that says so.
    let out = run_ok(&mut in_project(
        &t,
        &root,
        &["--json", "migrate", "diff", "again", "--to", "desired.sql"],
    ));
    crate::json::check("migrate diff", &out);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["files"], serde_json::json!([]), "{doc}");
}

/// Issue #40 (low): the database owner's default privileges are part of the schema: diff
/// writes them (global and in a schema, a grant and a revoke of a built-in default) as a pair
/// whose up reaches what psql makes of the desired file (pg_dump prints default privileges) and
/// whose down returns; verify is clean at both ends.
#[tokio::test]
async fn default_privileges_are_a_tested_pair() {
    let t = TestDb::new("diff_defacl");
    let root = project(migrations_dir(&[]));
    run_ok(&mut in_project(&t, &root, &["init", "-q"]));
    desire(
        &root,
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;\n",
    );
    let up = diff_ok(&t, &root, "defaults", &[]);
    for expected in [
        "ALTER DEFAULT PRIVILEGES FOR ROLE",
        "GRANT SELECT ON TABLES TO PUBLIC;",
        "IN SCHEMA public GRANT USAGE ON SEQUENCES TO PUBLIC;",
        "REVOKE ALL ON FUNCTIONS FROM PUBLIC;",
    ] {
        assert!(up.contains(expected), "missing `{expected}` in:\n{up}");
    }
    let live = with_db(&t.app_url(), &t.name);
    let before = schema_dump(&live);
    assert!(!before.contains("DEFAULT PRIVILEGES"), "{before}");
    run_ok(&mut in_project(&t, &root, &["migrate", "up"]));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    matches_psql(&t, &root);
    assert!(schema_dump(&live).contains("ALTER DEFAULT PRIVILEGES FOR ROLE"));
    run_ok(&mut in_project(
        &t,
        &root,
        &["migrate", "down", "--steps", "1", "--yes"],
    ));
    run_ok(&mut in_project(&t, &root, &["migrate", "verify"]));
    assert_same_dump(
        &schema_dump(&live),
        &before,
        "down returns to the dump before",
    );
}
