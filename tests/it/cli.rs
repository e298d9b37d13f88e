//! CLI conventions and `--wait` (issue #17): completions and a man page, `-y`, `-vv`,
//! `migrate status --exit-code`, durations with units, "did you mean" for settings, and a wait
//! for a server that starts late or is full.

use crate::support::{TestDb, bin, dedicated_cluster, expect_exit, run_ok, stderr};

#[test]
fn completions_and_the_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_ok(bin().args(["completions", shell]));
        assert!(out.contains("aidock-provision"), "{shell}: {out}");
        assert!(out.contains("template"), "{shell} knows every command");
    }
    let man = run_ok(bin().arg("man"));
    assert!(man.contains(".TH aidock-provision"), "{man}");
    assert!(man.contains("migrate"), "{man}");
}

#[test]
fn settings_mistakes_say_what_was_meant() {
    let out = expect_exit(
        bin()
            .env("AIDOCK__DATABASE__NMAE", "x")
            .args(["local", "status"]),
        2,
    );
    assert!(
        stderr(&out).contains("did you mean `database.name`?"),
        "{}",
        stderr(&out)
    );
    let out = expect_exit(
        bin()
            .env("AIDOCK__SERVER__CONNECT_TIMEOUT", "5")
            .args(["local", "status"]),
        2,
    );
    assert!(
        stderr(&out).contains("a bare number has no unit"),
        "{}",
        stderr(&out)
    );
    // humantime's units are accepted.
    let out = bin()
        .env("AIDOCK__SERVER__CONNECT_TIMEOUT", "1m30s")
        .env("AIDOCK__MIGRATE__WAIT_TIMEOUT", "5sec")
        .args(["local", "status"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "absent cluster, valid settings: {}",
        stderr(&out)
    );
}

#[test]
fn short_flags_and_status_exit_code() {
    let t = TestDb::new("cliflags");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    // Pending migrations: 0 by default (compatible), 1 with --exit-code.
    let out = run_ok(t.cmd().args(["migrate", "status", "-vv"]));
    assert!(out.contains("pending"), "{out}");
    let out = expect_exit(t.cmd().args(["migrate", "status", "--exit-code"]), 1);
    assert!(stderr(&out).contains("pending"), "{}", stderr(&out));
    run_ok(t.cmd().args(["migrate", "up", "-q"]));
    run_ok(t.cmd().args(["migrate", "status", "--exit-code"]));
    // -y confirms.
    run_ok(t.cmd().args(["migrate", "down", "--base", "-y", "-q"]));
}

#[tokio::test]
async fn wait_rides_out_a_server_that_starts_late_or_is_full() {
    // A server that is down: without --wait exit 4 at once; with it, init succeeds once the
    // server starts a few seconds later.
    let pg = dedicated_cluster("late", Vec::new());
    let url = pg.admin_url().expect("url");
    pg.stop().expect("stop");
    let t = TestDb::new("late");
    let cmd = || {
        let mut cmd = t.cmd();
        cmd.env("AIDOCK_ADMIN_URL", &url);
        cmd
    };
    let out = expect_exit(cmd().args(["init", "-q"]), 4);
    assert!(!stderr(&out).contains("--wait"), "{}", stderr(&out));
    let mut child = crate::support::Watched::spawn(cmd().args(["init", "--wait", "30s"]));
    // It says at once that it waits: then the server comes.
    child.wait_for("waiting for");
    pg.start().expect("start");
    let (status, _, err) = child.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    // Gave up after the wait: exit 4 still, saying so.
    pg.stop().expect("stop");
    let out = expect_exit(cmd().args(["migrate", "status", "--wait", "1s"]), 4);
    assert!(
        stderr(&out).contains("gave up after waiting"),
        "{}",
        stderr(&out)
    );
    pg.start().expect("start");

    // No free slot (53300) is retried too.
    let db = crate::support::connect(&url).await;
    db.batch_execute(&format!("ALTER ROLE \"{}\" CONNECTION LIMIT 0", t.name))
        .await
        .expect("limit");
    let mut child = crate::support::Watched::spawn(
        cmd()
            .env("AIDOCK__DATABASE__CONNECTION_LIMIT", "0")
            .args(["migrate", "status", "--wait", "30s"]),
    );
    child.wait_for("no free connection slot");
    db.batch_execute(&format!("ALTER ROLE \"{}\" CONNECTION LIMIT -1", t.name))
        .await
        .expect("unlimit");
    let (status, _, err) = child.finish();
    assert_eq!(status.code(), Some(0), "{err}");
    pg.stop().expect("stop");
}
