//! TLS modes against a cluster with a certificate from a CA made in the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use aidock_provision::cli::Global;
use aidock_provision::db::Target;
use aidock_provision::settings::Settings;

use crate::support::{
    bin, dedicated_cluster, env_map, expect_exit, run_ok, scratch_dir, server_owner, stderr,
};

pub(crate) struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A CA and a server certificate for `localhost` only (not 127.0.0.1).
pub(crate) fn make_pki() -> Pki {
    let dir = scratch_dir("pki");
    std::fs::create_dir_all(&dir).expect("mkdir");
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=aidock test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName = DNS:localhost\n").expect("ext");
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    if let Some((uid, gid)) = server_owner() {
        for f in ["server.key", "server.crt"] {
            std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).expect("chown");
        }
    }
    Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.crt"),
        key,
        dir,
    }
}

#[tokio::test]
async fn tls_modes_against_a_server_with_a_private_ca() {
    let pki = make_pki();
    let pg = dedicated_cluster(
        "tls",
        vec![
            "ssl = on".into(),
            format!("ssl_cert_file = '{}'", pki.cert.display()),
            format!("ssl_key_file = '{}'", pki.key.display()),
        ],
    );
    let password = pg.admin_password().expect("password");
    let url = |host: &str, extra: &str| {
        format!(
            "postgresql://postgres:{password}@{host}:{}/postgres{extra}",
            pg.port()
        )
    };
    let status = |url: &str, env: &[(&str, &str)]| {
        let mut cmd = bin();
        cmd.env("DATABASE_URL", url);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["migrate", "status"]);
        cmd
    };
    let ca = pki.ca.to_str().expect("utf-8 path");

    // verify-full with the CA and the certificate's host name: connects.
    run_ok(&mut status(
        &url("localhost", ""),
        &[
            ("AIDOCK__TLS__MODE", "verify-full"),
            ("AIDOCK__TLS__ROOT_CERT", ca),
        ],
    ));
    // The URL's sslmode is honoured (tokio-postgres alone would reject verify-full).
    run_ok(&mut status(
        &url("localhost", "?sslmode=verify-full"),
        &[("AIDOCK__TLS__ROOT_CERT", ca)],
    ));

    // Wrong host name: refused with a message that says why.
    let out = expect_exit(
        &mut status(
            &url("127.0.0.1", ""),
            &[
                ("AIDOCK__TLS__MODE", "verify-full"),
                ("AIDOCK__TLS__ROOT_CERT", ca),
            ],
        ),
        1,
    );
    let err = stderr(&out);
    assert!(
        err.contains("TLS verification") && err.contains("host name"),
        "{err}"
    );
    // Without the CA (system roots only): refused.
    let out = expect_exit(
        &mut status(
            &url("localhost", ""),
            &[("AIDOCK__TLS__MODE", "verify-full")],
        ),
        1,
    );
    assert!(
        stderr(&out).contains("TLS verification"),
        "{}",
        stderr(&out)
    );
    // A missing CA file is a settings error naming the key.
    let out = expect_exit(
        &mut status(
            &url("localhost", ""),
            &[
                ("AIDOCK__TLS__MODE", "verify-full"),
                ("AIDOCK__TLS__ROOT_CERT", "/nonexistent/ca.pem"),
            ],
        ),
        2,
    );
    assert!(stderr(&out).contains("tls.root_cert"), "{}", stderr(&out));

    // require encrypts without a CA; disable does not encrypt.
    let settings = |mode: &str| {
        Settings::load_with(&Global::default(), &env_map(&[("AIDOCK__TLS__MODE", mode)]))
            .expect("settings")
    };
    for (mode, host, encrypted) in [
        ("require", "127.0.0.1", true),
        ("prefer", "127.0.0.1", true),
        ("disable", "127.0.0.1", false),
    ] {
        let target = Target::parse(&url(host, ""), "test", &settings(mode).connect_options())
            .expect("target");
        let client = target
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        let ssl: bool = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_ssl")
            .get(0);
        assert_eq!(ssl, encrypted, "tls.mode {mode}");
    }
    let _ = pg.destroy();
    let _ = std::fs::remove_dir_all(&pki.dir);
}

/// Issue #14: in production (which needs TLS, hence this cluster), `init` and `migrate up`
/// refuse a pending migration with lint findings before changing anything; squawk's ignore
/// comment lets a reviewed statement through.
#[tokio::test]
async fn production_refuses_migrations_with_lint_findings() {
    let pki = make_pki();
    let pg = dedicated_cluster(
        "tls-lint",
        vec![
            "ssl = on".into(),
            format!("ssl_cert_file = '{}'", pki.cert.display()),
            format!("ssl_key_file = '{}'", pki.key.display()),
        ],
    );
    let password = pg.admin_password().expect("password");
    let admin = format!(
        "postgresql://postgres:{password}@127.0.0.1:{}/postgres?sslmode=require",
        pg.port()
    );
    let risky = "CREATE INDEX ix_users_created_at ON users (created_at);\n";
    let dir = crate::support::migrations_dir(&[("0002_index.up.sql", risky)]);
    let prod = |args: &[&str]| {
        let mut cmd = bin();
        cmd.env("AIDOCK_ADMIN_URL", &admin)
            .env("AIDOCK__TLS__MODE", "require")
            .env("AIDOCK__DATABASE__NAME", "lintprod")
            .env("AIDOCK__DATABASE__OWNER", "lintprod")
            .env("AIDOCK__DATABASE__PASSWORD", "Prod-Grade-Password-4711")
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["--profile", "production", "--yes"])
            .args(args);
        cmd
    };
    let out = expect_exit(&mut prod(&["init"]), 3);
    let err = stderr(&out);
    assert!(
        err.contains("0002_index.up.sql:1:1: require-concurrent-index-creation"),
        "{err}"
    );
    let client = crate::support::connect(&admin.replace("?sslmode=require", "")).await;
    let exists = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM pg_database WHERE datname = $1",
                    &[&name],
                )
                .await
                .expect("query")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        exists("lintprod").await,
        0,
        "a refused init changed nothing"
    );

    // 0001 alone is clean; then `up` refuses 0002 and applies nothing.
    run_ok(&mut prod(&["init", "--no-migrate"]));
    run_ok(&mut prod(&["migrate", "up", "--to", "1"]));
    let out = expect_exit(&mut prod(&["migrate", "up"]), 3);
    assert!(stderr(&out).contains("squawk-ignore"), "{}", stderr(&out));
    let status = run_ok(&mut prod(&["migrate", "status"]));
    assert!(status.contains("pending  0002"), "{status}");

    // Reviewed and marked: applied.
    crate::support::write_files(
        &dir,
        &[(
            "0002_index.up.sql",
            &format!(
                "-- squawk-ignore require-concurrent-index-creation -- users is small here\n{risky}"
            ),
        )],
    );
    run_ok(&mut prod(&["migrate", "up"]));
    let status = run_ok(&mut prod(&["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");

    // Dynamic SQL (issue #29): invisible to the rules, so "not checked", and refused here.
    let block =
        "DO $$ BEGIN EXECUTE 'ALTER TABLE users ADD COLUMN locale text NOT NULL'; END $$;\n";
    crate::support::write_files(&dir, &[("0003_dynamic.up.sql", block)]);
    let out = expect_exit(&mut prod(&["migrate", "up"]), 3);
    let err = stderr(&out);
    assert!(
        err.contains("0003_dynamic.up.sql:1:1: dynamic-sql") && err.contains("not checked"),
        "{err}"
    );
    let status = run_ok(&mut prod(&["migrate", "status"]));
    assert!(status.contains("pending  0003"), "{status}");
    crate::support::write_files(
        &dir,
        &[(
            "0003_dynamic.up.sql",
            &format!(
                "-- squawk-ignore dynamic-sql -- reviewed: users is empty here\n{}",
                block.replace("NOT NULL", "")
            ),
        )],
    );
    run_ok(&mut prod(&["migrate", "up"]));
    let status = run_ok(&mut prod(&["migrate", "status"]));
    assert!(status.contains("up to date"), "{status}");

    // Issue #44 (11): a database.password that no longer logs in (a typo, or a password set
    // elsewhere) is not set by production init unless asked: every client would break.
    client
        .batch_execute("ALTER ROLE lintprod PASSWORD 'Set-Elsewhere-0815'")
        .await
        .expect("password set elsewhere");
    let out = expect_exit(&mut prod(&["init"]), 3);
    let err = stderr(&out);
    assert!(
        err.contains("--reset-password") && err.contains("lintprod"),
        "{err}"
    );
    let elsewhere = format!(
        "postgresql://lintprod:Set-Elsewhere-0815@127.0.0.1:{}/lintprod",
        pg.port()
    );
    let (still, conn) = tokio_postgres::connect(&elsewhere, tokio_postgres::NoTls)
        .await
        .expect("the password set elsewhere still logs in");
    drop((still, conn));
    let out = run_ok(&mut prod(&["init", "--reset-password"]));
    assert!(out.contains("password updated"), "{out}");
    assert!(
        tokio_postgres::connect(&elsewhere, tokio_postgres::NoTls)
            .await
            .is_err(),
        "asked: the configured password is the role's now"
    );
}
