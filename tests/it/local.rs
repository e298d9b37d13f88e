//! `local start|stop|status|url|destroy`, driving the real binary.

use std::process::Command;

use crate::support::{bin, expect_exit, free_port, run_ok, scratch_dir, stderr};

#[test]
fn local_cluster_lifecycle() {
    let dir = scratch_dir("local");
    let port = free_port().to_string();
    let local = || {
        let mut cmd = bin();
        cmd.env("AIDOCK__LOCAL__DATA_DIR", &dir)
            .env("AIDOCK__LOCAL__PORT", &port)
            .arg("local");
        cmd
    };

    let first = run_ok(local().arg("start"));
    assert!(first.contains("created and started"), "{first}");
    let second = run_ok(local().arg("start"));
    assert!(second.contains("already running"), "{second}");
    let status = run_ok(local().arg("status"));
    assert!(status.contains("running"), "{status}");
    let json = run_ok(local().args(["status", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).expect("status --json is JSON");
    assert_eq!(json["state"], "running");

    let url = run_ok(local().args(["url", "--admin"]));
    assert_eq!(url.lines().count(), 1, "url is one line: {url}");
    let json = run_ok(local().args(["--json", "url", "--admin"]));
    crate::json::check("local url", &json);
    assert!(json.contains(url.trim()), "{json}");
    let psql = Command::new("psql")
        .arg(url.trim())
        .args(["-XAtc", "select 1"])
        .output()
        .expect("running psql");
    assert!(psql.status.success(), "psql: {}", stderr(&psql));
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "1");

    // The password file is private.
    let meta = std::fs::metadata(dir.join("admin.password")).expect("password file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );

    let stopped = run_ok(local().arg("stop"));
    assert!(stopped.contains("stopped"), "{stopped}");
    let again = run_ok(local().arg("stop"));
    assert!(again.contains("not running"), "{again}");
    let status = expect_exit(local().arg("status"), 3);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("stopped"),
        "exit 3 when not running"
    );

    // A stale pid file from a crash does not stop the next start.
    std::fs::write(dir.join("pgdata/postmaster.pid"), "999999\n").expect("stale pid file");
    assert!(run_ok(local().arg("start")).contains("started"));

    let refused = expect_exit(local().arg("destroy"), 3);
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(dir.exists(), "destroy without --yes must keep the data");
    let gone = run_ok(local().args(["destroy", "--yes"]));
    assert!(gone.contains("destroyed"), "{gone}");
    assert!(!dir.exists());
    let status = expect_exit(local().arg("status"), 3);
    assert!(String::from_utf8_lossy(&status.stdout).contains("absent"));
}

#[test]
fn an_unreachable_data_dir_moves_the_cluster_where_the_server_can_reach_it() {
    // Only root hands the server to the postgres user.
    if !crate::support::root_or_missing() {
        return;
    }
    // A container's /root: mode 700, which the postgres user cannot enter.
    let parent = scratch_dir("private");
    std::fs::create_dir_all(&parent).expect("mkdir");
    std::fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let configured = parent.join(".aidock/pg");
    let port = free_port().to_string();
    let local = |args: &[&str]| {
        let mut cmd = bin();
        cmd.env("AIDOCK__LOCAL__DATA_DIR", &configured)
            .env("AIDOCK__LOCAL__PORT", &port)
            .arg("local")
            .args(args);
        cmd
    };
    let out = run_ok(&mut local(&["start"]));
    assert!(
        out.contains("/var/lib/aidock-provision/"),
        "says where it is: {out}"
    );
    let record = parent.join(".aidock/pg.location");
    let elsewhere = std::fs::read_to_string(&record).expect("recorded next to the configured dir");
    assert!(
        std::path::Path::new(elsewhere.trim())
            .join("pgdata/PG_VERSION")
            .is_file()
    );
    // Every later command finds it through the record.
    assert!(run_ok(&mut local(&["status"])).contains("running"));
    run_ok(&mut local(&["destroy", "--yes"]));
    assert!(
        !std::path::Path::new(elsewhere.trim()).exists(),
        "the relocated cluster is gone"
    );
    assert!(!record.exists(), "and its record");
    let _ = std::fs::remove_dir_all(&parent);
}

#[test]
fn local_cluster_lifecycle_as_an_ordinary_user() {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: geteuid has no preconditions.
    if !crate::support::root_or_missing() {
        return;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "nobody"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let (Some(uid), Some(gid)) = (id("-u"), id("-g")) else {
        crate::support::missing("the `nobody` user", "useradd nobody");
        return;
    };
    let home = scratch_dir("nobody");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown");
    let binary = home.join("aidock-provision");
    std::fs::copy(env!("CARGO_BIN_EXE_aidock-provision"), &binary).expect("copy the binary");
    let port = free_port().to_string();
    let data = home.join("pg");
    let local = |args: &[&str]| {
        let mut cmd = Command::new(&binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AIDOCK__LOCAL__DATA_DIR", &data)
            .env("AIDOCK__LOCAL__PORT", &port)
            .current_dir(&home)
            .uid(uid)
            .gid(gid)
            .arg("local")
            .args(args);
        cmd
    };
    assert!(run_ok(&mut local(&["start"])).contains("created and started"));
    assert!(run_ok(&mut local(&["start"])).contains("already running"));
    assert!(run_ok(&mut local(&["status"])).contains("running"));
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(data.join("pgdata")).expect("pgdata"),
    );
    assert_eq!(owner, uid, "the cluster belongs to the user who started it");
    let url = run_ok(&mut local(&["url", "--admin"]));
    let psql = Command::new("psql")
        .arg(url.trim())
        .args(["-XAtc", "select 1"])
        .output()
        .expect("psql");
    assert!(psql.status.success(), "psql: {}", stderr(&psql));
    assert!(run_ok(&mut local(&["stop"])).contains("stopped"));
    assert!(run_ok(&mut local(&["destroy", "--yes"])).contains("destroyed"));
    assert!(!data.exists());
}

#[test]
fn concurrent_inits_share_one_local_cluster() {
    // No server configured: every init starts (or finds) the same project-local cluster.
    let dir = scratch_dir("localrace");
    let port = free_port().to_string();
    let all = crate::support::run_concurrently((0..4).map(|_| {
        let mut cmd = bin();
        cmd.env("AIDOCK__LOCAL__DATA_DIR", &dir)
            .env("AIDOCK__LOCAL__PORT", &port)
            .arg("init");
        cmd
    }));
    assert_eq!(all.matches("role aidock: created").count(), 1, "{all}");
    assert_eq!(
        all.matches("applied 0001_initial_tables").count(),
        1,
        "{all}"
    );
    let mut destroy = bin();
    destroy
        .env("AIDOCK__LOCAL__DATA_DIR", &dir)
        .env("AIDOCK__LOCAL__PORT", &port)
        .args(["local", "destroy", "--yes"]);
    run_ok(&mut destroy);
}

#[test]
fn read_only_commands_do_not_create_a_local_cluster() {
    let dir = scratch_dir("nocluster");
    for args in [
        &["migrate", "status"][..],
        &["seed"],
        &["migrate", "verify"],
    ] {
        let out = expect_exit(bin().env("AIDOCK__LOCAL__DATA_DIR", &dir).args(args), 1);
        assert!(
            stderr(&out).contains("aidock-provision init"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }
}

#[test]
fn the_cluster_is_found_from_anywhere_in_the_project_and_keeps_its_port() {
    let project = scratch_dir("project");
    std::fs::create_dir_all(project.join("config")).expect("config/");
    std::fs::create_dir_all(project.join("src")).expect("src/");
    let port = free_port().to_string();
    let at = |dir: &std::path::Path| {
        let mut cmd = bin();
        cmd.current_dir(dir)
            .env_remove("AIDOCK__LOCAL__DATA_DIR")
            .env("AIDOCK__DATABASE__PASSWORD", "app-pw");
        cmd
    };
    // Started from the root with a port of its own; `init` says it started a server.
    let out = expect_exit(
        at(&project).env("AIDOCK__LOCAL__PORT", &port).arg("init"),
        0,
    );
    assert!(project.join(".aidock/pg/pgdata/PG_VERSION").is_file());
    assert!(stderr(&out).contains("local stop"), "{}", stderr(&out));
    // From src/, without the port setting: the same cluster, on the port it really listens on.
    let src = project.join("src");
    let status = run_ok(at(&src).args(["local", "status"]));
    assert!(
        status.contains("running") && status.contains(&format!(":{port}")),
        "{status}"
    );
    run_ok(at(&src).args(["init", "-q"]));
    assert!(
        !src.join(".aidock").exists(),
        "no second cluster under src/"
    );
    // `local url` is the app's URL (psql works with it); --admin the superuser's.
    let url = run_ok(at(&src).args(["local", "url"]));
    assert!(
        url.starts_with("postgresql://aidock:app-pw@127.0.0.1:"),
        "{url}"
    );
    let psql = Command::new("psql")
        .arg(url.trim())
        .args(["-XAtc", "select current_user"])
        .output()
        .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&psql.stdout).trim(),
        "aidock",
        "{}",
        stderr(&psql)
    );
    assert!(run_ok(at(&src).args(["local", "url", "--admin"])).contains("postgres:"));
    run_ok(at(&src).args(["local", "destroy", "--yes"]));
    assert!(!project.join(".aidock/pg").exists());
}

/// Issue #40: `local destroy` deletes only what the tool made, and `local start` does not move
/// into a directory holding someone else's files: `local.data_dir` may name any directory.
#[test]
fn destroy_and_start_touch_only_what_the_tool_made() {
    let port = free_port().to_string();
    let local = |dir: &std::path::Path| {
        let mut cmd = bin();
        cmd.env("AIDOCK__LOCAL__DATA_DIR", dir)
            .env("AIDOCK__LOCAL__PORT", &port)
            .arg("local");
        cmd
    };
    // The repro: a directory holding sub/data.txt, named as the data directory.
    let victim = scratch_dir("local-victim");
    std::fs::create_dir_all(victim.join("sub")).expect("mkdir");
    std::fs::write(victim.join("sub/data.txt"), "keep me").expect("write");
    let out = expect_exit(local(&victim).args(["destroy", "--yes"]), 3);
    assert!(
        stderr(&out).contains("holds what aidock-provision did not make (sub)"),
        "{}",
        stderr(&out)
    );
    let out = expect_exit(local(&victim).arg("start"), 3);
    assert!(stderr(&out).contains("(sub)"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(victim.join("sub/data.txt")).expect("kept"),
        "keep me"
    );
    assert!(!victim.join("pgdata").exists(), "no cluster was made in it");

    // A cluster the tool made, with a file added to it later: destroy refuses and keeps all.
    let project = scratch_dir("local-own");
    let data = project.join(".aidock/pg");
    run_ok(local(&data).arg("start"));
    std::fs::write(data.join("notes.txt"), "mine").expect("write");
    let out = expect_exit(local(&data).args(["destroy", "--yes"]), 3);
    assert!(stderr(&out).contains("(notes.txt)"), "{}", stderr(&out));
    assert!(
        data.join("pgdata/PG_VERSION").exists(),
        "the cluster is kept"
    );
    std::fs::remove_file(data.join("notes.txt")).expect("rm");
    run_ok(local(&data).args(["destroy", "--yes"]));
    assert!(!data.exists(), "the cluster is gone");
    assert!(
        !project.join(".aidock").exists(),
        "no empty .aidock/ is left to make the folder look like a project"
    );
}

/// Issue #44 (1): a second project beside a running cluster on its port: `local url` gives no
/// URL for a cluster that does not run (it would reach the other project's server), and `init`
/// starts this project's cluster on the next free port, said, with a URL that reaches it.
#[tokio::test]
async fn a_second_project_takes_a_free_port_and_never_anothers_server() {
    let port = free_port().to_string();
    let (a, b) = (scratch_dir("proj-a"), scratch_dir("proj-b"));
    let at = |dir: &std::path::Path| {
        let mut cmd = bin();
        cmd.env("AIDOCK__LOCAL__DATA_DIR", dir)
            .env("AIDOCK__LOCAL__PORT", &port)
            .env("AIDOCK__DATABASE__PASSWORD", "app-pw");
        cmd
    };
    run_ok(at(&a).args(["local", "start"]));
    let a_admin = run_ok(at(&a).args(["local", "url", "--admin"]));
    crate::support::connect(a_admin.trim())
        .await
        .batch_execute("CREATE DATABASE only_in_a")
        .await
        .expect("marker");
    for args in [&["local", "url"][..], &["local", "url", "--admin"]] {
        let out = expect_exit(at(&b).args(args), 3);
        assert!(
            out.stdout.is_empty(),
            "no URL for a cluster that does not run"
        );
        assert!(stderr(&out).contains("local start"), "{}", stderr(&out));
    }
    let out = expect_exit(at(&b).arg("init"), 0);
    assert!(stderr(&out).contains("taken"), "{}", stderr(&out));
    let b_admin = run_ok(at(&b).args(["local", "url", "--admin"]));
    assert!(!b_admin.contains(&format!(":{port}/")), "{b_admin}");
    let found: i64 = crate::support::connect(b_admin.trim())
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'only_in_a'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(found, 0, "b's URL reaches b's own server");
    let status = run_ok(at(&b).args(["local", "status"]));
    assert!(status.contains("taken"), "{status}");
    run_ok(at(&a).args(["local", "destroy", "--yes"]));
    run_ok(at(&b).args(["local", "destroy", "--yes"]));
}

/// Issue #44 (2): outside any project, nothing is made in the current directory: the command
/// says where it looked and how to name the project.
#[test]
fn outside_a_project_no_cluster_is_made_here() {
    let dir = scratch_dir("no-project");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for args in [
        &["init"][..],
        &["local", "start"],
        &["seed"],
        &["migrate", "up"],
    ] {
        let mut cmd = bin();
        cmd.current_dir(&dir)
            .env_remove("AIDOCK__LOCAL__DATA_DIR")
            .args(args);
        let out = expect_exit(&mut cmd, 2);
        let err = stderr(&out);
        assert!(
            err.contains("not inside an aidock-provision project")
                && err.contains("--project")
                && err.contains("AIDOCK_PROJECT_DIR"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        0,
        "nothing was made in the current directory"
    );
}
