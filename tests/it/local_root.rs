//! The local cluster as root (issue #32): root never writes, chowns, reads or deletes through a
//! path another user controls (the `postgres` user that runs the server, or the owner of a
//! checkout), a location record names only what this project made, a pid file is checked
//! against the postmaster it names, and a password file's line goes only to its own host.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{
    TestDb, bin, cluster, expect_exit, free_port, run_ok, scratch_dir, server_owner, stderr,
};

/// `local ARGS` for the cluster configured at `data` on `port`.
fn local(data: &Path, port: u16, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.env("AIDOCK__LOCAL__DATA_DIR", data)
        .env("AIDOCK__LOCAL__PORT", port.to_string())
        .arg("local")
        .args(args);
    cmd
}

/// Run a shell command as the `postgres` user; whether it succeeded.
fn as_postgres(script: &str) -> bool {
    let (uid, gid) = server_owner().expect("root has a postgres user");
    Command::new("sh")
        .args(["-c", script])
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .output()
        .expect("sh")
        .status
        .success()
}

/// A root-only file holding a secret, to point links at.
fn victim(tag: &str) -> PathBuf {
    let path = scratch_dir(tag);
    std::fs::write(&path, "root-secret").expect("victim");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

#[track_caller]
fn assert_untouched(path: &Path) {
    let meta = std::fs::symlink_metadata(path).expect("still there");
    assert!(meta.is_file(), "{} is still a file", path.display());
    assert_eq!(meta.uid(), 0, "{} still root's", path.display());
    assert_eq!(meta.mode() & 0o777, 0o600, "{} still 0600", path.display());
    assert_eq!(
        std::fs::read_to_string(path).expect("read"),
        "root-secret",
        "{} unchanged",
        path.display()
    );
}

/// A directory root keeps for itself (mode 700), like a container's /root.
fn private_dir(tag: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

#[test]
fn links_the_server_user_plants_are_never_followed_by_root() {
    if !crate::support::root_or_missing() {
        return;
    }
    let data = scratch_dir("lroot");
    let port = free_port();
    run_ok(&mut local(&data, port, &["start"]));
    run_ok(&mut local(&data, port, &["stop"]));
    let target = victim("lroot-victim");
    let t = target.display();
    let d = data.display();
    // What the server's user owns: it may plant links there, and root must not follow them.
    assert!(as_postgres(&format!(
        "ln -sf {t} {d}/pgdata/aidock.conf && ln -sf {t} {d}/log/server.log && ln -sf {t} {d}/pgdata/postmaster.pid"
    )));
    // What root keeps: the server's user cannot even plant a link there.
    for name in ["admin.password", ".lock", "aidock.conf", "socket_dir"] {
        assert!(
            !as_postgres(&format!("ln -sf {t} {d}/{name}")),
            "postgres could replace {name}"
        );
    }
    let out = run_ok(&mut local(&data, port, &["start"]));
    assert!(out.contains("started"), "{out}");
    assert_untouched(&target);
    let url = run_ok(&mut local(&data, port, &["url", "--admin"]));
    assert!(!url.contains("root-secret"), "{url}");
    assert!(run_ok(&mut local(&data, port, &["status"])).contains("running"));
    // The root's own files: root's, private.
    for (name, mode) in [("admin.password", 0o600), ("aidock.conf", 0o644)] {
        let meta = std::fs::symlink_metadata(data.join(name)).expect(name);
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, mode), "{name}");
    }
    assert_eq!(
        std::fs::symlink_metadata(&data).expect("root").uid(),
        0,
        "the data directory stays root's"
    );
    run_ok(&mut local(&data, port, &["destroy", "--yes"]));
    assert_untouched(&target);
}

#[test]
fn a_location_record_is_honoured_only_for_what_this_project_made() {
    if !crate::support::root_or_missing() {
        return;
    }
    let parent = private_dir("lrec");
    let configured = parent.join(".aidock/pg");
    std::fs::create_dir_all(parent.join(".aidock")).expect("mkdir");
    let port = free_port();
    // A directory only root may touch, named by a tampered record.
    let precious = scratch_dir("lrec-precious");
    std::fs::create_dir_all(&precious).expect("mkdir");
    std::fs::set_permissions(&precious, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(precious.join("keep"), "keep").expect("file");
    let record = parent.join(".aidock/pg.location");
    std::fs::write(&record, precious.display().to_string()).expect("record");

    let out = expect_exit(&mut local(&configured, port, &["status"]), 3);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("absent")
            && stderr(&out).contains("ignoring"),
        "{}",
        stderr(&out)
    );
    let out = run_ok(&mut local(&configured, port, &["destroy", "--yes"]));
    assert!(out.contains("absent"), "{out}");
    assert!(precious.join("keep").is_file(), "destroy deleted nothing");
    let out = run_ok(&mut local(&configured, port, &["start"]));
    assert!(out.contains("/var/lib/aidock-provision/"), "{out}");
    let meta = std::fs::symlink_metadata(&precious).expect("precious");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o700), "not chowned");
    assert!(!precious.join("pgdata").exists(), "no initdb there");
    let now = std::fs::read_to_string(&record).expect("record");
    assert!(now.starts_with("/var/lib/aidock-provision/"), "{now}");
    run_ok(&mut local(&configured, port, &["destroy", "--yes"]));
    assert!(!Path::new(now.trim()).exists());
    assert!(precious.join("keep").is_file());
}

#[test]
fn a_copied_checkout_gets_its_own_cluster() {
    if !crate::support::root_or_missing() {
        return;
    }
    let p = private_dir("lcopy-p");
    let (port_p, port_q) = (free_port(), free_port());
    let cluster_p = p.join(".aidock/pg");
    run_ok(&mut local(&cluster_p, port_p, &["start"]));
    let where_p = std::fs::read_to_string(p.join(".aidock/pg.location")).expect("record");
    let q = scratch_dir("lcopy-q");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&p)
        .arg(&q)
        .output()
        .expect("cp");
    assert!(cp.status.success(), "{}", stderr(&cp));
    let cluster_q = q.join(".aidock/pg");
    let out = run_ok(&mut local(&cluster_q, port_q, &["destroy", "--yes"]));
    assert!(
        out.contains("absent"),
        "q has no cluster of its own yet: {out}"
    );
    assert!(
        run_ok(&mut local(&cluster_p, port_p, &["status"])).contains("running"),
        "p's cluster is untouched"
    );
    run_ok(&mut local(&cluster_q, port_q, &["start"]));
    let where_q = std::fs::read_to_string(q.join(".aidock/pg.location")).expect("record");
    assert_ne!(where_p, where_q, "each checkout its own cluster");
    run_ok(&mut local(&cluster_q, port_q, &["destroy", "--yes"]));
    assert!(run_ok(&mut local(&cluster_p, port_p, &["status"])).contains("running"));
    run_ok(&mut local(&cluster_p, port_p, &["destroy", "--yes"]));
    assert!(!Path::new(where_p.trim()).exists());
}

#[test]
fn a_pid_file_naming_another_postmaster_is_stale() {
    let Some(log) = &cluster().log_file else {
        return; // an external server: no postmaster of ours to point at
    };
    let shared_pgdata = log
        .parent()
        .and_then(Path::parent)
        .expect("cluster root")
        .join("pgdata");
    let shared_pid = std::fs::read_to_string(shared_pgdata.join("postmaster.pid")).expect("pid");
    let data = scratch_dir("lstale");
    let port = free_port();
    run_ok(&mut local(&data, port, &["start"]));
    run_ok(&mut local(&data, port, &["stop"]));
    std::fs::write(data.join("pgdata/postmaster.pid"), &shared_pid).expect("stale pid file");
    let out = expect_exit(&mut local(&data, port, &["status"]), 3);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    let out = run_ok(&mut local(&data, port, &["stop"]));
    assert!(out.contains("not running"), "{out}");
    let psql = Command::new("psql")
        .arg(&cluster().admin_url)
        .args(["-XAtc", "select 1"])
        .output()
        .expect("psql");
    assert!(psql.status.success(), "the other cluster still runs");
    assert!(run_ok(&mut local(&data, port, &["start"])).contains("started"));
    run_ok(&mut local(&data, port, &["destroy", "--yes"]));
}

#[test]
fn a_deleted_data_directory_under_a_running_server_is_said_and_stopped() {
    let data = scratch_dir("lorphan");
    let port = free_port();
    run_ok(&mut local(&data, port, &["start"]));
    std::fs::remove_dir_all(data.join("pgdata")).expect("rm -rf pgdata");
    let out = expect_exit(&mut local(&data, port, &["status"]), 3);
    assert!(stderr(&out).contains("still runs"), "{}", stderr(&out));
    let out = expect_exit(&mut local(&data, port, &["start"]), 1);
    assert!(
        stderr(&out).contains("was deleted under it"),
        "{}",
        stderr(&out)
    );
    run_ok(&mut local(&data, port, &["destroy", "--yes"]));
    // The port is free again: a new cluster starts on it.
    assert!(run_ok(&mut local(&data, port, &["start"])).contains("created"));
    run_ok(&mut local(&data, port, &["destroy", "--yes"]));
}

#[test]
fn a_taken_port_moves_and_a_symlinked_data_directory_is_refused_with_the_fix() {
    let (a, b) = (scratch_dir("lport-a"), scratch_dir("lport-b"));
    let port = free_port();
    run_ok(&mut local(&a, port, &["start"]));
    // Issue #44: a taken local.port is said, and the cluster takes the next free one.
    let out = run_ok(&mut local(&b, port, &["start"]));
    assert!(out.contains("(local.port) was taken"), "{out}");
    run_ok(&mut local(&a, port, &["destroy", "--yes"]));
    run_ok(&mut local(&b, port, &["destroy", "--yes"]));

    let real = scratch_dir("lsym-real");
    std::fs::create_dir_all(&real).expect("mkdir");
    let link = scratch_dir("lsym-link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = expect_exit(&mut local(&link, free_port(), &["start"]), 1);
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert!(
        std::fs::read_dir(&real).expect("real").next().is_none(),
        "nothing created through the link"
    );
    let out = expect_exit(&mut local(&link, free_port(), &["destroy", "--yes"]), 1);
    assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    assert!(real.exists(), "the link's target is kept");
}

#[test]
fn root_in_another_users_checkout_changes_nothing_and_says_why() {
    if !crate::support::root_or_missing() {
        return;
    }
    let checkout = scratch_dir("lforeign");
    std::fs::create_dir_all(checkout.join(".aidock")).expect("mkdir");
    for dir in [&checkout, &checkout.join(".aidock")] {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).expect("chown to nobody");
    }
    let data = checkout.join(".aidock/pg");
    let out = expect_exit(&mut local(&data, free_port(), &["start"]), 1);
    assert!(
        stderr(&out).contains("belongs to uid 65534") && stderr(&out).contains("local.data_dir"),
        "{}",
        stderr(&out)
    );
    assert!(!data.exists(), "nothing was created");
    assert_eq!(
        std::fs::symlink_metadata(checkout.join(".aidock"))
            .expect("kept")
            .uid(),
        65534,
        "nothing was chowned"
    );
}

/// A server that asks for a clear-text password and records what it is sent.
fn password_recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let read_len = |s: &mut std::net::TcpStream| -> Option<Vec<u8>> {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).ok()?;
                let len = u32::from_be_bytes(len) as usize;
                let mut body = vec![0u8; len.saturating_sub(4)];
                s.read_exact(&mut body).ok()?;
                Some(body)
            };
            // The startup packet (after an SSL request, answered "no").
            let Some(mut body) = read_len(&mut s) else {
                continue;
            };
            if body.len() == 4 && body == 80_877_103u32.to_be_bytes() {
                let _ = s.write_all(b"N");
                let Some(next) = read_len(&mut s) else {
                    continue;
                };
                body = next;
            }
            let _ = body;
            // AuthenticationCleartextPassword.
            let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
            let mut tag = [0u8; 1];
            if s.read_exact(&mut tag).is_ok()
                && tag[0] == b'p'
                && let Some(body) = read_len(&mut s)
            {
                let text = String::from_utf8_lossy(&body)
                    .trim_end_matches('\0')
                    .to_string();
                record.lock().expect("lock").push(text);
            }
        }
    });
    (port, seen)
}

#[test]
fn a_password_file_line_goes_only_to_its_own_host() {
    let (fake, seen) = password_recorder();
    let gone = free_port();
    let file = scratch_dir("pgpass");
    let write = |text: &str| {
        std::fs::write(&file, text).expect("pgpass");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    let url = format!("postgresql://pp@127.0.0.2:{gone},127.0.0.1:{fake}/postgres");
    let status = || {
        let mut cmd = bin();
        cmd.env("DATABASE_URL", &url)
            .env("PGPASSFILE", &file)
            .args(["migrate", "status"]);
        cmd.output().expect("status")
    };
    // Only the first host has a line: the second gets no password at all.
    write(&format!("127.0.0.2:{gone}:*:pp:SECRET-FOR-HOST-A\n"));
    let out = status();
    assert!(!out.status.success());
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the other host was sent: {:?}",
        seen.lock().expect("lock")
    );
    assert!(
        stderr(&out).contains("asks role `pp` for a password and none was given"),
        "{}",
        stderr(&out)
    );
    // Each host its own line.
    write(&format!(
        "127.0.0.2:{gone}:*:pp:SECRET-FOR-HOST-A\n127.0.0.1:{fake}:*:pp:SECRET-FOR-HOST-B\n"
    ));
    let _ = status();
    assert_eq!(*seen.lock().expect("lock"), ["SECRET-FOR-HOST-B"]);
    // A wrong password from the file says which file.
    let t = TestDb::new("pgpass_wrong");
    run_ok(t.cmd().args(["init", "-q"]));
    let app = t.app_url().replace(&format!(":{}@", t.password), "@");
    write(&format!(
        "127.0.0.1:{}:{}:{}:wrong\n",
        cluster().port,
        t.name,
        t.name
    ));
    let out = expect_exit(
        t.cmd()
            .env("DATABASE_URL", &app)
            .env("PGPASSFILE", &file)
            .args(["migrate", "status"]),
        1,
    );
    assert!(
        stderr(&out).contains(&format!("password file `{}`", file.display())),
        "{}",
        stderr(&out)
    );
    // A directory for a password file is said as such.
    let out = t
        .cmd()
        .env("DATABASE_URL", &app)
        .env(
            "PGPASSFILE",
            scratch_dir("pgpass-dir").parent().expect("a dir"),
        )
        .args(["migrate", "status"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a plain file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_read_only_role_is_told_how_to_write_again() {
    let t = TestDb::new("readonly");
    run_ok(t.cmd().args(["init", "-q", "--no-migrate"]));
    let admin = cluster().admin_url.clone();
    let out = Command::new("psql")
        .arg(&admin)
        .args([
            "-Xqc",
            &format!(
                "ALTER ROLE {} SET default_transaction_read_only = on",
                t.name
            ),
        ])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = expect_exit(t.cmd().args(["migrate", "up"]), 2);
    assert!(
        stderr(&out).contains("default_transaction_read_only")
            && stderr(&out).contains("RESET default_transaction_read_only"),
        "{}",
        stderr(&out)
    );
}

/// Issue #40: as root, a settings file that another user could write does not choose the
/// directory root creates and deletes; root's own environment does.
#[test]
fn root_takes_the_data_directory_only_from_files_root_owns() {
    if !crate::support::root_or_missing() {
        return;
    }
    let project = scratch_dir("lsettings");
    std::fs::create_dir_all(project.join("config")).expect("mkdir");
    let victim = scratch_dir("lsettings-victim");
    std::fs::create_dir_all(&victim).expect("mkdir");
    std::fs::write(
        project.join("config/test.toml"),
        format!("[local]\ndata_dir = \"{}\"\n", victim.display()),
    )
    .expect("write");
    std::os::unix::fs::chown(project.join("config/test.toml"), Some(65534), Some(65534))
        .expect("chown to nobody");
    let mut cmd = bin();
    cmd.env_remove("AIDOCK__LOCAL__DATA_DIR")
        .env("AIDOCK_PROJECT_DIR", &project)
        .args(["local", "destroy", "--yes"]);
    let out = expect_exit(&mut cmd, 1);
    assert!(
        stderr(&out).contains("belongs to uid 65534")
            && stderr(&out).contains("AIDOCK__LOCAL__DATA_DIR"),
        "{}",
        stderr(&out)
    );
    assert!(victim.exists(), "nothing was deleted");
    // The same file, root's alone: taken (and the empty directory it names is the tool's to use).
    std::os::unix::fs::chown(project.join("config/test.toml"), Some(0), Some(0)).expect("chown");
    let mut cmd = bin();
    cmd.env_remove("AIDOCK__LOCAL__DATA_DIR")
        .env("AIDOCK_PROJECT_DIR", &project)
        .args(["local", "status"]);
    let out = expect_exit(&mut cmd, 3);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&victim.display().to_string()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
