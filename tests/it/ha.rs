//! High availability (issue #17): a multi-host URL reaches the primary of a real
//! streaming-replication pair (the standby made with `pg_basebackup -R`); pointed only at the
//! standby, commands that write exit 4 and name it.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use aidock_provision::local_pg::{self, LocalPg};

use crate::support::{
    TestDb, dedicated_cluster, expect_exit, free_port, migrations_dir, run_ok, scratch_dir,
    server_owner, stderr,
};

/// A hot standby of `primary`, started on its own port.
fn standby_of(primary: &LocalPg) -> LocalPg {
    // The layout LocalPg keeps: the root the tool user's, pgdata/ the server user's.
    let root = scratch_dir("standby");
    std::fs::create_dir_all(root.join("pgdata")).expect("mkdir");
    std::fs::set_permissions(
        root.join("pgdata"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    let owner = server_owner();
    if let Some((uid, gid)) = owner {
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        std::os::unix::fs::chown(root.join("pgdata"), Some(uid), Some(gid)).expect("chown");
    }
    let bindir = local_pg::find_bindir().expect("server binaries");
    let mut cmd = Command::new(bindir.join("pg_basebackup"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &primary.port().to_string(),
        "-U",
        "postgres",
    ])
    .arg("-D")
    .arg(root.join("pgdata"))
    .args(["-R", "-X", "stream", "--no-sync"])
    .env("PGPASSWORD", primary.admin_password().expect("password"));
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().expect("pg_basebackup");
    assert!(out.status.success(), "pg_basebackup: {}", stderr(&out));
    std::fs::copy(
        primary.root().join("admin.password"),
        root.join("admin.password"),
    )
    .expect("password file");
    let options = local_pg::Options {
        tcp: true,
        fsync: false,
        extra_conf: vec!["hot_standby = on".into()],
        bindir: None,
    };
    let standby = LocalPg::new(&root, free_port(), options).expect("standby");
    standby.start().expect("starting the standby");
    standby
}

#[tokio::test]
async fn a_multi_host_url_reaches_the_primary_and_the_standby_alone_is_exit_4() {
    let primary = dedicated_cluster("primary", Vec::new());
    let standby = standby_of(&primary);
    let password = primary.admin_password().expect("password");
    let t = TestDb::new("ha");
    // The standby first: target_session_attrs=read-write skips it.
    let both = format!(
        "postgresql://postgres:{password}@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        standby.port(),
        primary.port()
    );
    let out = run_ok(t.cmd().env("AIDOCK_ADMIN_URL", &both).arg("init"));
    assert!(out.contains("applied 0001"), "{out}");
    // The printed app URL keeps every host and target_session_attrs (issue #34).
    assert!(
        out.contains(&format!(
            "@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
            standby.port(),
            primary.port(),
            t.name
        )),
        "{out}"
    );
    // doctor under the HA URL: asynchronous replication is reported, with the setting.
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &both).arg("doctor"), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("asynchronous") && text.contains("synchronous_standby_names"),
        "{text}"
    );

    // Only the standby: init (as admin) and migrate up (as the app) refuse with exit 4.
    let only = format!(
        "postgresql://postgres:{password}@127.0.0.1:{}/postgres",
        standby.port()
    );
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &only).arg("init"), 4);
    assert!(
        stderr(&out).contains("read-only standby")
            && stderr(&out).contains(&standby.port().to_string()),
        "{}",
        stderr(&out)
    );
    // Wait for the app database to reach the standby, then try to migrate it there.
    let app_on_standby = format!(
        "postgresql://{n}:{p}@127.0.0.1:{port}/{n}",
        n = t.name,
        p = t.password,
        port = standby.port()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio_postgres::connect(&app_on_standby, tokio_postgres::NoTls)
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never caught up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // verify and doctor on the standby alone: the standby message, not a raw read-only error.
    let out = expect_exit(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &only)
            .args(["migrate", "verify"]),
        4,
    );
    assert!(
        stderr(&out).contains("read-only standby")
            && stderr(&out).contains("target_session_attrs=read-write"),
        "{}",
        stderr(&out)
    );
    let out = expect_exit(t.cmd().env("AIDOCK_ADMIN_URL", &only).arg("doctor"), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("read-only standby") && text.contains("target_session_attrs=read-write"),
        "{text}"
    );
    assert!(!text.contains("read-only transaction"), "{text}");
    let dir = migrations_dir(&[("0002_more.up.sql", "CREATE TABLE more (id int);\n")]);
    let out = expect_exit(
        t.cmd()
            .env("DATABASE_URL", &app_on_standby)
            .arg("--migrations-dir")
            .arg(&dir)
            .args(["migrate", "up"]),
        4,
    );
    let err = stderr(&out);
    assert!(
        err.contains("read-only standby") && err.contains("target_session_attrs=read-write"),
        "{err}"
    );
    assert!(
        err.contains(&standby.port().to_string()),
        "names the standby: {err}"
    );
    let _ = standby.stop();
    let _ = primary.stop();
}
