//! Issue #40: the admin never runs the app role's code. The app role owns its database, so it may
//! plant anything there; here it plants all of it at once and every command that connects as
//! the admin runs over it:
//!
//! - a schema named after the admin (first in the admin's default `search_path`) holding views
//!   named after every table the tool reads;
//! - more specific overloads of functions and operators the tool's SQL uses, in `public` and in
//!   that schema (CVE-2018-1058);
//! - triggers and row-level security policies on every table;
//! - default privileges;
//! - (a second database) views in place of the bookkeeping tables: the ledger, the seed record,
//!   `alembic_version`;
//! - (a third, adopted database) the same, with differences `migrate baseline` checks with data
//!   queries.
//!
//! Every planted function calls a probe that writes `session_user` and `current_user` to the
//! server log, then tries to become the admin (`RESET ROLE`) and make the app role a superuser,
//! and to run an OS command. Afterwards: the probe never ran as the admin, no role changed, no
//! command ran. The cluster has TLS, so the production profile's `init` (the normal deploy
//! command) runs too. A second test reads `src/` for the rule's one door.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    bin, connect, dedicated_cluster, expect_exit, migrations_dir, run_ok, scratch_dir, stderr,
};

/// The app's tables and the tool's bookkeeping relations: the names a view may take.
const TABLE_NAMES: &[&str] = &[
    "roles",
    "departments",
    "users",
    "llm_configurations",
    "department_quotas",
    "usage_logs",
    "refresh_tokens",
    "alembic_version",
    "schema_history",
    "aidock_schema_history",
    "seed_runs",
];

/// One matrix cluster (TLS on, its own log).
struct Matrix {
    pg: aidock_provision::local_pg::LocalPg,
    admin_url: String,
    /// A file the probe's OS command would create.
    marker: PathBuf,
}

impl Matrix {
    fn new(tag: &str) -> Matrix {
        let pki = crate::tls::make_pki();
        let pg = dedicated_cluster(
            tag,
            vec![
                "ssl = on".into(),
                format!("ssl_cert_file = '{}'", pki.cert.display()),
                format!("ssl_key_file = '{}'", pki.key.display()),
                "log_statement = 'none'".into(),
            ],
        );
        let admin_url = format!(
            "postgresql://postgres:{}@127.0.0.1:{}/postgres",
            pg.admin_password().expect("password"),
            pg.port()
        );
        let marker = PathBuf::from(format!("/tmp/aidock-probe-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        Matrix {
            pg,
            admin_url,
            marker,
        }
    }

    /// The binary for database and role `name`, on this cluster.
    fn cmd(&self, name: &str) -> Command {
        let mut cmd = bin();
        cmd.env("AIDOCK_ADMIN_URL", &self.admin_url)
            .env("AIDOCK__DATABASE__NAME", name)
            .env("AIDOCK__DATABASE__OWNER", name)
            .env("AIDOCK__DATABASE__PASSWORD", format!("pw-{name}"))
            .env("AIDOCK__TLS__MODE", "prefer");
        cmd
    }

    /// The same in the production profile (TLS required, a config without the local cluster).
    fn production(&self, name: &str) -> Command {
        let mut cmd = self.cmd(name);
        cmd.env("AIDOCK_PROFILE", "production")
            .env("AIDOCK__TLS__MODE", "require");
        cmd
    }

    fn app_url(&self, name: &str) -> String {
        format!(
            "postgresql://{name}:pw-{name}@127.0.0.1:{}/{name}",
            self.pg.port()
        )
    }

    async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.admin_url).await
    }

    /// The probe, as the app role in its database: logs who runs it, then tries to escalate.
    /// Cheapest of all (COST), so the planner evaluates it before any other condition of a
    /// query over a planted view.
    async fn plant_probe(&self, app: &tokio_postgres::Client, name: &str) {
        app.batch_execute(&format!(
            "CREATE FUNCTION public.aidock_probe(what text) RETURNS boolean LANGUAGE plpgsql AS $probe$
             BEGIN
               RAISE LOG 'aidock-probe what=% session_user=% current_user=%', what, session_user, current_user;
               BEGIN
                 RESET ROLE;
                 EXECUTE 'ALTER ROLE {name} SUPERUSER';
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
               BEGIN
                 EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
               RETURN true;
             END $probe$ COST 0.0001;
             GRANT EXECUTE ON FUNCTION public.aidock_probe(text) TO PUBLIC;
             CREATE FUNCTION public.aidock_probe_trigger() RETURNS trigger LANGUAGE plpgsql AS $t$
             BEGIN PERFORM public.aidock_probe('trigger ' || TG_TABLE_NAME); RETURN NULL; END $t$;",
            marker = self.marker.display()
        ))
        .await
        .expect("the probe");
    }

    /// Every stealth plant (nothing here stops a command from working). `adopted`: a database
    /// `migrate baseline` reconciles, so the views in the admin-named schema take the columns of
    /// the tables they stand in for (a query written for the table then runs against the view),
    /// and no operators are planted (the diff engine does not model them, so it could not drop
    /// them); otherwise the views are stand-ins that keep no column of a table from changing.
    async fn plant_stealth(&self, app: &tokio_postgres::Client, adopted: bool) {
        let operators = !adopted;
        let mut sql = String::from("CREATE SCHEMA postgres;\n");
        // Each view looks like the table it stands in for (same columns), so a query written
        // for the table runs against it; OFFSET 0 keeps the query's own conditions out of it, so
        // the probe runs on every row whatever the query asks.
        let tables: Vec<String> = app
            .query(
                "SELECT c.relname::text FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind = 'r'",
                &[],
            )
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        for table in TABLE_NAMES {
            let body = if adopted && tables.iter().any(|t| t == table) {
                format!("SELECT * FROM public.{table}")
            } else {
                "SELECT 1 AS id".to_string()
            };
            let _ = writeln!(
                sql,
                "CREATE VIEW postgres.{table} AS {body} WHERE public.aidock_probe('view postgres.{table}') OFFSET 0;"
            );
        }
        // CVE-2018-1058: overloads more specific than pg_catalog's for what the tool's SQL calls.
        for schema in ["public", "postgres"] {
            let _ = write!(
                sql,
                "CREATE FUNCTION {schema}.format(text, name, name) RETURNS text LANGUAGE sql AS
                   $f$ SELECT pg_catalog.format($1, $2, $3) WHERE public.aidock_probe('format') $f$;
                 CREATE FUNCTION {schema}.format(text, name) RETURNS text LANGUAGE sql AS
                   $f$ SELECT pg_catalog.format($1, $2) WHERE public.aidock_probe('format') $f$;
                 CREATE FUNCTION {schema}.quote_ident(name) RETURNS text LANGUAGE sql AS
                   $f$ SELECT pg_catalog.quote_ident($1::text) WHERE public.aidock_probe('quote_ident') $f$;
                 CREATE FUNCTION {schema}.lower(character varying) RETURNS text LANGUAGE sql AS
                   $f$ SELECT pg_catalog.lower($1::text) WHERE public.aidock_probe('lower') $f$;
                 CREATE FUNCTION {schema}.md5(character varying) RETURNS text LANGUAGE sql AS
                   $f$ SELECT pg_catalog.md5($1::text) WHERE public.aidock_probe('md5') $f$;
{}\n",
                if operators { format!("
                 CREATE FUNCTION {schema}.probe_eq(character varying, character varying) RETURNS boolean LANGUAGE sql AS
                   $f$ SELECT public.aidock_probe('=') AND $1::text OPERATOR(pg_catalog.=) $2::text $f$;
                 CREATE OPERATOR {schema}.= (LEFTARG = character varying, RIGHTARG = character varying, FUNCTION = {schema}.probe_eq);
                 CREATE FUNCTION {schema}.probe_cat(text, bigint) RETURNS text LANGUAGE sql AS
                   $f$ SELECT $1 OPERATOR(pg_catalog.||) $2::text WHERE public.aidock_probe('||') $f$;
                 CREATE OPERATOR {schema}.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = {schema}.probe_cat);
                 CREATE FUNCTION {schema}.probe_cat_name(text, name) RETURNS text LANGUAGE sql AS
                   $f$ SELECT $1 OPERATOR(pg_catalog.||) $2::text WHERE public.aidock_probe('||') $f$;
                 CREATE OPERATOR {schema}.|| (LEFTARG = text, RIGHTARG = name, FUNCTION = {schema}.probe_cat_name);") } else { String::new() }
            );
        }
        sql.push_str(
            "ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO PUBLIC;
             ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;\n",
        );
        app.batch_execute(&sql).await.expect("stealth plants");
        self.plant_on_tables(app).await;
    }

    /// A statement trigger and a row-level security policy (not forced: the app's own commands
    /// go on working) on every table of the app's there now, the bookkeeping included.
    async fn plant_on_tables(&self, app: &tokio_postgres::Client) {
        let tables: Vec<String> = app
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'aidock_provision')
                   AND pg_catalog.pg_get_userbyid(c.relowner) = current_user",
                &[],
            )
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut sql = String::new();
        for t in &tables {
            let _ = write!(
                sql,
                "DROP TRIGGER IF EXISTS aidock_probe_t ON {t};
                 CREATE TRIGGER aidock_probe_t BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t}
                   FOR EACH STATEMENT EXECUTE FUNCTION public.aidock_probe_trigger();
                 ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
                 DROP POLICY IF EXISTS aidock_probe_p ON {t};
                 CREATE POLICY aidock_probe_p ON {t} USING (public.aidock_probe('policy {t}'));\n"
            );
        }
        app.batch_execute(&sql)
            .await
            .expect("triggers and policies");
    }

    /// Put views in place of the bookkeeping tables (kept under another name).
    async fn replace_bookkeeping(&self, app: &tokio_postgres::Client) {
        app.batch_execute(
            "ALTER TABLE aidock_provision.schema_history RENAME TO schema_history_kept;
             CREATE VIEW aidock_provision.schema_history AS
               SELECT * FROM aidock_provision.schema_history_kept WHERE public.aidock_probe('ledger view');
             ALTER TABLE public.alembic_version RENAME TO alembic_version_kept;
             CREATE VIEW public.alembic_version AS
               SELECT * FROM public.alembic_version_kept WHERE public.aidock_probe('alembic_version view');",
        )
        .await
        .expect("bookkeeping views");
    }

    /// The probe's log lines.
    fn probes(&self) -> Vec<String> {
        std::fs::read_to_string(self.pg.log_file())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("aidock-probe what="))
            .map(str::to_string)
            .collect()
    }

    /// Nothing ran as the admin, no role became a superuser, no OS command ran.
    async fn assert_held(&self, what: &str) {
        let as_admin: Vec<String> = self
            .probes()
            .into_iter()
            .filter(|l| l.contains("session_user=postgres") || l.contains("current_user=postgres"))
            .collect();
        assert!(
            as_admin.is_empty(),
            "{what}: the app's code ran with the admin's rights:\n{}",
            as_admin.join("\n")
        );
        let superusers: Vec<String> = self
            .admin()
            .await
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolsuper AND rolname <> 'postgres'",
                &[],
            )
            .await
            .expect("roles")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(
            superusers.is_empty(),
            "{what}: new superusers {superusers:?}"
        );
        assert!(
            !self.marker.exists(),
            "{what}: the probe's OS command ran ({})",
            self.marker.display()
        );
    }
}

/// A migrations directory with 0001 and a small 0002 (so `down --steps 1` has something to
/// revert that is not everything).
fn two_migrations() -> PathBuf {
    migrations_dir(&[
        (
            "0002_add_note.up.sql",
            "ALTER TABLE users ADD COLUMN note text;\n",
        ),
        (
            "0002_add_note.down.sql",
            "ALTER TABLE users DROP COLUMN note;\n",
        ),
    ])
}

/// Run and return (exit code, stderr), whatever the exit.
fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("running aidock-provision");
    (out.status.code(), stderr(&out))
}

#[tokio::test]
async fn no_command_runs_the_app_roles_code_as_the_admin() {
    let m = Matrix::new("trust");
    let name = "trustapp";
    let dir = two_migrations();
    let with_dir = |mut c: Command| {
        c.arg("--migrations-dir").arg(&dir);
        c
    };
    run_ok(with_dir(m.cmd(name)).arg("init"));
    run_ok(with_dir(m.cmd(name)).arg("seed"));
    let app = connect(&m.app_url(name)).await;
    m.plant_probe(&app, name).await;
    m.plant_stealth(&app, false).await;
    // The app's own commands run its own code as itself: that is allowed, and shows the plants
    // are live (the probe logs as the app role).
    app.batch_execute("SELECT count(*) FROM users")
        .await
        .expect("a read");
    let desired = scratch_dir("trust-desired");
    std::fs::create_dir_all(&desired).expect("dir");
    let schema = format!(
        "{}\nALTER TABLE users ADD COLUMN note text;\nALTER TABLE users ADD COLUMN bio text;\n",
        std::fs::read_to_string(dir.join("0001_initial_tables.up.sql")).expect("0001")
    );
    std::fs::write(desired.join("schema.sql"), schema).expect("write");
    let alembic = scratch_dir("trust-alembic");
    std::fs::create_dir_all(&alembic).expect("dir");

    // Every command that connects as the admin (and those that do not, for good measure), with
    // the exit each must have on this database.
    let steps: Vec<(&str, Command, i32)> = vec![
        ("init", with_dir(m.cmd(name)).arg("init").owned_copy(), 0),
        (
            "init --dry-run",
            with_dir(m.cmd(name))
                .args(["init", "--dry-run"])
                .owned_copy(),
            0,
        ),
        (
            "production init",
            with_dir(m.production(name)).arg("init").owned_copy(),
            0,
        ),
        (
            "production init --dry-run",
            with_dir(m.production(name))
                .args(["init", "--dry-run"])
                .owned_copy(),
            0,
        ),
        (
            "migrate status",
            with_dir(m.cmd(name))
                .args(["migrate", "status"])
                .owned_copy(),
            0,
        ),
        (
            "migrate history",
            with_dir(m.cmd(name))
                .args(["migrate", "history"])
                .owned_copy(),
            0,
        ),
        (
            "migrate plan",
            with_dir(m.cmd(name)).args(["migrate", "plan"]).owned_copy(),
            0,
        ),
        (
            "migrate down",
            with_dir(m.cmd(name))
                .args(["migrate", "down", "--steps", "1", "--yes"])
                .owned_copy(),
            0,
        ),
        (
            "migrate up",
            with_dir(m.cmd(name)).args(["migrate", "up"]).owned_copy(),
            0,
        ),
        (
            "migrate verify",
            with_dir(m.cmd(name))
                .args(["migrate", "verify"])
                .owned_copy(),
            1,
        ),
        (
            "migrate verify --fix",
            with_dir(m.cmd(name))
                .args(["migrate", "verify", "--fix"])
                .owned_copy(),
            1,
        ),
        (
            "migrate diff",
            with_dir(m.cmd(name))
                .args(["migrate", "diff", "add_bio", "--print", "--to"])
                .arg(desired.join("schema.sql"))
                .owned_copy(),
            0,
        ),
        (
            "migrate baseline",
            with_dir(m.cmd(name))
                .args(["migrate", "baseline"])
                .owned_copy(),
            0,
        ),
        (
            "migrate baseline --dry-run",
            with_dir(m.cmd(name))
                .args(["migrate", "baseline", "--dry-run"])
                .owned_copy(),
            0,
        ),
        (
            "migrate alembic-export",
            with_dir(m.cmd(name))
                .args(["migrate", "alembic-export"])
                .arg(&alembic)
                .owned_copy(),
            0,
        ),
        ("seed", with_dir(m.cmd(name)).arg("seed").owned_copy(), 0),
        (
            "seed --dev",
            with_dir(m.cmd(name))
                .args(["seed", "--dev", "--users", "3", "--usage-logs", "50"])
                .owned_copy(),
            0,
        ),
        (
            "doctor",
            with_dir(m.cmd(name)).arg("doctor").owned_copy(),
            1,
        ),
        (
            "template",
            with_dir(m.cmd(name))
                .args(["template", "--name", "trustapp_tpl"])
                .owned_copy(),
            0,
        ),
        (
            "init --from-template",
            with_dir(m.cmd("trustclone"))
                .args(["init", "--from-template", "trustapp_tpl"])
                .owned_copy(),
            0,
        ),
    ];
    for (what, mut cmd, code) in steps {
        let (got, err) = run(&mut cmd);
        // doctor's and verify's findings (the planted objects are drift) are not the point here;
        // every other command must do its work over the plants.
        if what != "doctor" {
            assert_eq!(got, Some(code), "{what}: {err}");
        }
        m.assert_held(what).await;
    }
    // The plants were live all along: the probe ran, as the app role only.
    assert!(
        m.probes()
            .iter()
            .any(|l| l.contains(&format!("current_user={name}"))),
        "the probe never ran at all: {:?}",
        m.probes()
    );
    run_ok(with_dir(m.cmd(name)).args(["reset", "--yes"]));
    m.assert_held("reset").await;
}

#[tokio::test]
async fn bookkeeping_views_are_refused_and_never_read_as_the_admin() {
    let m = Matrix::new("trust-books");
    let name = "trustbooks";
    let dir = two_migrations();
    let with_dir = |mut c: Command| {
        c.arg("--migrations-dir").arg(&dir);
        c
    };
    run_ok(with_dir(m.cmd(name)).arg("init"));
    run_ok(with_dir(m.cmd(name)).args(["seed", "--dev", "--users", "2", "--usage-logs", "10"]));
    let app = connect(&m.app_url(name)).await;
    m.plant_probe(&app, name).await;
    m.replace_bookkeeping(&app).await;
    app.batch_execute(
        "ALTER TABLE aidock_provision.seed_runs RENAME TO seed_runs_kept;
         CREATE VIEW aidock_provision.seed_runs AS
           SELECT * FROM aidock_provision.seed_runs_kept WHERE public.aidock_probe('seed_runs view');",
    )
    .await
    .expect("seed record view");
    for (what, mut cmd) in [
        ("init", with_dir(m.cmd(name)).arg("init").owned_copy()),
        (
            "init --dry-run",
            with_dir(m.cmd(name))
                .args(["init", "--dry-run"])
                .owned_copy(),
        ),
        (
            "production init",
            with_dir(m.production(name)).arg("init").owned_copy(),
        ),
        (
            "migrate status",
            with_dir(m.cmd(name))
                .args(["migrate", "status"])
                .owned_copy(),
        ),
        (
            "migrate up",
            with_dir(m.cmd(name)).args(["migrate", "up"]).owned_copy(),
        ),
        (
            "migrate verify",
            with_dir(m.cmd(name))
                .args(["migrate", "verify"])
                .owned_copy(),
        ),
        (
            "migrate baseline --dry-run",
            with_dir(m.cmd(name))
                .args(["migrate", "baseline", "--dry-run"])
                .owned_copy(),
        ),
        (
            "seed --dev",
            with_dir(m.cmd(name))
                .args(["seed", "--dev", "--users", "2", "--usage-logs", "10"])
                .owned_copy(),
        ),
    ] {
        let (code, err) = run(&mut cmd);
        assert_eq!(code, Some(3), "{what} must refuse: {err}");
        assert!(
            err.contains("is a view, not the table aidock-provision made"),
            "{what}: {err}"
        );
        m.assert_held(what).await;
    }
}

#[tokio::test]
async fn baseline_checks_data_on_the_apps_login() {
    let m = Matrix::new("trust-adopt");
    let name = "trustadopt";
    let admin = m.admin().await;
    for sql in [
        format!("CREATE ROLE {name} LOGIN PASSWORD 'pw-{name}'"),
        format!("CREATE DATABASE {name} OWNER {name}"),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .expect("an adopted database");
    }
    let app = connect(&m.app_url(name)).await;
    // What the backend's create_all made (nullable flags, no uniques, rows), then the plants.
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/0001_initial_tables.up.sql"),
    )
    .expect("0001");
    app.batch_execute(&schema).await.expect("the schema");
    app.batch_execute(
        "ALTER TABLE users ALTER COLUMN is_active DROP NOT NULL;
         ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_key;
         INSERT INTO roles (name) VALUES ('user');
         INSERT INTO users (username, email, hashed_password, role_id)
           SELECT 'u' || i, 'u' || i || '@example.org', 'x', (SELECT id FROM roles)
           FROM generate_series(1, 3) i;",
    )
    .await
    .expect("differences and rows");
    m.plant_probe(&app, name).await;
    m.plant_stealth(&app, true).await;
    for (what, args, code) in [
        ("migrate baseline", vec!["migrate", "baseline"], 1),
        (
            "migrate baseline --dry-run",
            vec!["migrate", "baseline", "--dry-run"],
            0,
        ),
        (
            "migrate baseline --reconcile",
            vec![
                "migrate",
                "baseline",
                "--reconcile",
                "--allow-data-loss",
                "--yes",
            ],
            0,
        ),
    ] {
        let (got, err) = run(m.cmd(name).args(&args));
        assert_eq!(got, Some(code), "{what}: {err}");
        m.assert_held(what).await;
    }
    // The data checks ran (as the app: its policies and views saw them), and the adoption held.
    let out = run_ok(m.cmd(name).args(["migrate", "status"]));
    assert!(out.contains("up to date"), "{out}");
    let _ = expect_exit(m.cmd(name).args(["reset", "--yes"]), 0);
    m.assert_held("reset").await;
}

/// The rule's one door, read from `src/`: an admin connection into another database is opened
/// only by `db::trust` (and by the two places that work in a database only the admin can reach:
/// a scratch database before it is handed over, a template being built).
#[test]
fn the_admin_enters_app_databases_only_through_the_catalog_session() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for file in walk(&src) {
        let text = std::fs::read_to_string(&file).expect("read");
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        // Each statement that moves a target to another database, whatever its line breaks.
        for (at, _) in text.match_indices(".with_dbname(") {
            let start = text[..at].rfind([';', '{', '}']).map_or(0, |i| i + 1);
            let end = text[at..].find(';').map_or(text.len(), |i| at + i);
            let statement = text[start..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let line = text[..at].lines().count();
            let admin_into_db = statement.contains("admin");
            let allowed = rel == "db/trust.rs"
                // A scratch database while it is the admin's (checked: still owned, untouched).
                || (rel == "reconcile/scratch.rs" && statement.contains("&self.name"))
                // A template, the admin's own database, built and read by it.
                || (rel == "app/commands/template.rs" && statement.contains(".unpinned()"))
                || (rel == "provision/template.rs" && statement.contains("with_dbname(name)"));
            if admin_into_db && !allowed {
                offenders.push(format!("src/{rel}:{line}: {statement}"));
            }
        }
        for (i, line) in text.lines().enumerate() {
            if line.contains("SET LOCAL ROLE") || line.contains("\"SET ROLE ") {
                offenders.push(format!(
                    "src/{rel}:{}: SET ROLE is no boundary (the app's code can RESET ROLE): {}",
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "admin sessions into app databases outside db::trust:\n{}",
        offenders.join("\n")
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

trait OwnedCopy {
    fn owned_copy(&mut self) -> Command;
}

impl OwnedCopy for Command {
    /// A builder chain's `&mut Command` as an owned one (program, args and env copied).
    fn owned_copy(&mut self) -> Command {
        let mut owned = Command::new(self.get_program());
        owned.args(self.get_args());
        owned.env_clear();
        for (k, v) in self.get_envs() {
            if let Some(v) = v {
                owned.env(k, v);
            }
        }
        if let Some(dir) = self.get_current_dir() {
            owned.current_dir(dir);
        }
        owned
    }
}
