//! Issue #34 under a real Patroni cluster: one etcd and two Patroni nodes from Debian's packages
//! (`patroni`, `etcd-server`) on loopback, PostgreSQL from the system's binaries, asynchronous
//! streaming replication. A switchover (`patronictl switchover`) in the middle of `migrate up`
//! and of `seed --dev` is ridden over under `--wait`; without `--wait` it is exit 4 and nothing
//! is applied. Skipped, saying so, where Patroni or etcd is not installed (`.ci/run` installs
//! them).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aidock_provision::local_pg;

use crate::support::{
    TestDb, connect, free_port, migrations_dir, run_ok, scratch_dir, server_owner, stderr,
};

/// A frozen node's processes, resumed when dropped.
struct Frozen {
    patroni: i32,
    postgres: Vec<i32>,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in self.postgres.iter().chain(std::iter::once(&self.patroni)) {
            // SAFETY: kill has no memory preconditions; resuming a resumed process is harmless.
            unsafe { libc::kill(*pid, libc::SIGCONT) };
        }
    }
}

/// One member of the cluster: its name, PostgreSQL port, config file and process.
struct Node {
    name: String,
    port: u16,
    config: PathBuf,
    process: Child,
}

/// etcd plus two Patroni nodes; stopped (Patroni stops its PostgreSQL) when dropped.
struct Patroni {
    etcd: Child,
    etcd_dir: PathBuf,
    nodes: Vec<Node>,
    password: String,
}

/// `patroni` and `etcd` on this machine, or why not.
fn installed() -> Result<(), String> {
    for tool in ["patroni", "patronictl", "etcd"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!(
                "{tool} is not installed (Debian: apt-get install patroni etcd-server)"
            ));
        }
    }
    Ok(())
}

/// A command run as the server's user when the tests run as root (PostgreSQL refuses root), in
/// a process group of its own, output to `log`, its pid beside it in `*.child-pid`.
fn spawn_as_server_user(mut cmd: Command, log: &Path) -> Child {
    if let Some((uid, gid)) = server_owner() {
        cmd.uid(uid).gid(gid);
    }
    // In the scratch directory (the server's user's): the tests' own working directory may be
    // one that user cannot enter (a fresh clone under a mode-700 directory), and Patroni's
    // worker processes change into the directory they started in.
    if let Some(dir) = log.parent() {
        cmd.current_dir(dir);
    }
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawning");
    // The scratch area's watchdog kills it if this process dies without dropping it.
    std::fs::write(log.with_extension("child-pid"), child.id().to_string()).expect("pid file");
    child
}

impl Patroni {
    fn start() -> Patroni {
        let dir = scratch_dir("patroni");
        std::fs::create_dir_all(&dir).expect("mkdir");
        if let Some((uid, gid)) = server_owner() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        }
        let (client, peer) = (free_port(), free_port());
        // etcd's data on tmpfs where there is one: its fsyncs on a disk the whole suite is
        // writing to can stall it past Patroni's retry timeout, and the leader steps down.
        let etcd_dir = etcd_data_dir(&dir);
        let mut etcd = Command::new("etcd");
        etcd.args(["--name", "e1", "--data-dir"])
            .arg(&etcd_dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("e1=http://127.0.0.1:{peer}"),
            ]);
        let etcd = spawn_as_server_user(etcd, &dir.join("etcd.log"));
        // Runtime-made passwords (nothing secret in the repository).
        let password = format!("su-{}", crate::support::unique_name("p"));
        let bindir = local_pg::find_bindir().expect("server binaries");
        let scope = crate::support::unique_name("cluster");
        let nodes = ["n1", "n2"]
            .into_iter()
            .map(|name| {
                let (port, api) = (free_port(), free_port());
                let config = dir.join(format!("{name}.yml"));
                std::fs::write(
                    &config,
                    node_config(name, &scope, &dir, &bindir, port, api, client, &password),
                )
                .expect("config");
                let mut cmd = Command::new("patroni");
                cmd.arg(&config);
                let process = spawn_as_server_user(cmd, &dir.join(format!("{name}.log")));
                Node {
                    name: name.to_string(),
                    port,
                    config,
                    process,
                }
            })
            .collect();
        Patroni {
            etcd,
            etcd_dir,
            nodes,
            password,
        }
    }

    /// `patronictl list` as (member, role, state, lag) rows.
    fn members(&self) -> Vec<(String, String, String, Option<i64>)> {
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(&self.nodes[0].config)
            .args(["list", "-f", "json"])
            .output()
            .expect("patronictl");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.iter()
            .map(|r| {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (
                    text("Member"),
                    text("Role"),
                    text("State"),
                    r["Lag in MB"].as_i64(),
                )
            })
            .collect()
    }

    /// Waits (up to 90 s) for a leader and every replica running and streaming; the leader.
    async fn healthy(&self) -> &Node {
        // A guard against a hang, not a timing assertion: generous for a loaded machine.
        let deadline = Instant::now() + Duration::from_mins(3);
        loop {
            let members = self.members();
            let leader = members.iter().find(|m| m.1 == "Leader" && m.2 == "running");
            let replicas_ok = members
                .iter()
                .filter(|m| m.1 != "Leader")
                .all(|m| (m.2 == "running" || m.2 == "streaming") && m.3 == Some(0));
            if let Some(leader) = leader
                && members.len() == self.nodes.len()
                && replicas_ok
            {
                let node = self.node(&leader.0);
                // Streaming for real: the replica is connected to the leader.
                let db = connect(&self.url(node.port, "postgres")).await;
                let streaming: i64 = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                        &[],
                    )
                    .await
                    .expect("pg_stat_replication")
                    .get(0);
                if usize::try_from(streaming) == Ok(self.nodes.len() - 1) {
                    return node;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Patroni cluster never became healthy: {members:?}\n{}",
                self.log_tails()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The last lines of each node's log and etcd's, for a failure message.
    fn log_tails(&self) -> String {
        let mut logs: Vec<PathBuf> = self
            .nodes
            .iter()
            .map(|n| n.config.with_extension("log"))
            .collect();
        if let Some(dir) = self.nodes.first().and_then(|n| n.config.parent()) {
            logs.push(dir.join("etcd.log"));
        }
        logs.iter()
            .map(|log| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {} (last 25 lines)\n{}",
                    log.display(),
                    lines[lines.len().saturating_sub(25)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every replica has replayed what the leader has written so far.
    async fn caught_up(&self) {
        let leader = self.healthy().await;
        let db = connect(&self.url(leader.port, "postgres")).await;
        let lsn: String = db
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("lsn")
            .get(0);
        for node in self.nodes.iter().filter(|n| n.port != leader.port) {
            let replica = connect(&self.url(node.port, "postgres")).await;
            let deadline = Instant::now() + Duration::from_mins(1);
            loop {
                let done: bool = replica
                    .query_one(
                        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                        &[&lsn],
                    )
                    .await
                    .expect("replay lsn")
                    .get(0);
                if done {
                    break;
                }
                assert!(Instant::now() < deadline, "{} never caught up", node.name);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("a member")
    }

    /// Switch the leader over to the other node (does not wait for the old one to rejoin).
    fn switchover(&self, from: &Node) {
        let to = self
            .nodes
            .iter()
            .find(|n| n.name != from.name)
            .expect("a candidate");
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(&self.nodes[0].config)
            .args([
                "switchover",
                "--leader",
                &from.name,
                "--candidate",
                &to.name,
            ])
            .arg("--force")
            .output()
            .expect("patronictl switchover");
        assert!(
            out.status.success(),
            "switchover: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }

    /// Runs `seed` (a `seed --dev`) and switches the leader over once it copies usage logs
    /// there; its output.
    async fn switch_over_while_copying(
        &self,
        mut seed: Command,
        leader: &Node,
        t: &TestDb,
    ) -> std::process::Output {
        let mut child = seed
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("seed");
        let on_leader = connect(&self.url(leader.port, &t.name)).await;
        crate::seed::wait_for_copy(&on_leader, &mut child).await;
        drop(on_leader);
        self.switchover(leader);
        child.wait_with_output().expect("seed")
    }

    /// The processes of a node: its Patroni, and its PostgreSQL (postmaster and every child).
    fn processes(node: &Node) -> (i32, Vec<i32>) {
        let data = node.config.with_extension("");
        let postmaster: i32 = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
            .expect("the node's postmaster.pid");
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the ppid is the second field after the last ')'.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
        (node.process.id().cast_signed(), pids)
    }

    /// Freeze a node as a VM pause would: its Patroni first, then its PostgreSQL. Resumed when
    /// the guard goes, whatever happens (a stopped process ignores all but SIGKILL and SIGCONT,
    /// so a test that failed while it was frozen would otherwise leave it for good).
    fn freeze(node: &Node) -> Frozen {
        let (patroni, postgres) = Self::processes(node);
        for pid in std::iter::once(patroni).chain(postgres.iter().copied()) {
            // SAFETY: kill has no memory preconditions; the pids are this test's children's.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
        }
        Frozen { patroni, postgres }
    }

    /// Resume a frozen node: its PostgreSQL, then (`gap` later) its Patroni, which then finds
    /// that the cluster has elected another leader and demotes it.
    async fn thaw(frozen: &Frozen, gap: Duration) {
        for pid in &frozen.postgres {
            // SAFETY: as in `freeze`.
            unsafe { libc::kill(*pid, libc::SIGCONT) };
        }
        tokio::time::sleep(gap).await;
        // SAFETY: as in `freeze`.
        unsafe { libc::kill(frozen.patroni, libc::SIGCONT) };
    }

    /// Wait until node `name` runs as a primary (its PostgreSQL out of recovery).
    async fn promoted(&self, name: &str) {
        let node = self.node(name);
        let deadline = Instant::now() + Duration::from_mins(3);
        loop {
            if let Ok((db, conn)) =
                tokio_postgres::connect(&self.url(node.port, "postgres"), tokio_postgres::NoTls)
                    .await
            {
                tokio::spawn(conn);
                if let Ok(row) = db.query_one("SELECT pg_is_in_recovery()", &[]).await
                    && !row.get::<_, bool>(0)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{name} was never promoted\n{}",
                self.log_tails()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Shorter leader leases, so that a frozen leader is replaced in seconds (loop_wait +
    /// 2 * retry_timeout must stay under ttl).
    fn quick_failover(&self) {
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(&self.nodes[0].config)
            .args([
                "edit-config",
                "--force",
                "-s",
                "ttl=12",
                "-s",
                "retry_timeout=5",
            ])
            .output()
            .expect("patronictl edit-config");
        assert!(
            out.status.success(),
            "edit-config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }

    /// The superuser's URL of one node.
    fn url(&self, port: u16, db: &str) -> String {
        format!(
            "postgresql://postgres:{}@127.0.0.1:{port}/{db}",
            self.password
        )
    }

    /// The superuser's URL naming every node, for the primary.
    fn ha_url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!(
            "postgresql://postgres:{}@{}/postgres?target_session_attrs=read-write",
            self.password,
            hosts.join(",")
        )
    }

    /// The schema_history versions on the current leader.
    async fn ledger(&self, t: &TestDb) -> Vec<i64> {
        let leader = self.healthy().await;
        crate::support::ledger_versions(&connect(&self.url(leader.port, &t.name)).await).await
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        // SIGTERM: Patroni stops its PostgreSQL, then exits; etcd last.
        for node in &mut self.nodes {
            // SAFETY: kill has no memory preconditions; the pid is our child's.
            unsafe { libc::kill(node.process.id().cast_signed(), libc::SIGTERM) };
        }
        for node in &mut self.nodes {
            let deadline = Instant::now() + Duration::from_secs(30);
            while node.process.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = node.process.kill();
            let _ = node.process.wait();
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if self.etcd_dir.starts_with("/dev/shm") {
            let _ = std::fs::remove_dir_all(&self.etcd_dir);
        }
    }
}

/// Where etcd keeps its data: under /dev/shm when it is there (named by this test process,
/// whose earlier runs' leftovers are removed), else in the scratch directory.
fn etcd_data_dir(scratch: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return scratch.join("etcd");
    }
    if let Ok(entries) = std::fs::read_dir(shm) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name
                .strip_prefix("aidock-etcd-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = shm.join(format!(
        "aidock-etcd-{}-{}",
        std::process::id(),
        crate::support::unique_name("e")
    ));
    std::fs::create_dir_all(&dir).expect("etcd data dir");
    if let Some((uid, gid)) = server_owner() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
    }
    dir
}

#[allow(clippy::too_many_arguments)]
fn node_config(
    name: &str,
    scope: &str,
    dir: &Path,
    bindir: &Path,
    port: u16,
    api: u16,
    etcd: u16,
    password: &str,
) -> String {
    let data = dir.join(name);
    format!(
        "scope: {scope}
name: {name}
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 1
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        fsync: 'off'
        wal_log_hints: 'on'
        wal_level: replica
        hot_standby: 'on'
        max_wal_senders: 5
        max_replication_slots: 5
  initdb:
    - encoding: UTF8
    - auth-local: trust
    - auth-host: scram-sha-256
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bindir}
  pgpass: {data}.pgpass
  authentication:
    replication:
      username: replicator
      password: rep-{password}
    superuser:
      username: postgres
      password: {password}
  parameters:
    unix_socket_directories: {dir}
",
        data = data.display(),
        bindir = bindir.display(),
        dir = dir.display(),
    )
}

/// Issue #34's "Done when" on Patroni: a switchover in the middle of `migrate up --wait 90s`
/// (a slow migration) and of `seed --dev --usage-logs 200000 --wait 90s`: each exits 0 in one
/// run, the migration recorded once and exactly the requested logs on the new primary; without
/// `--wait`, both exit 4 and nothing is applied.
#[tokio::test]
async fn one_run_rides_over_a_patroni_switchover() {
    if let Err(why) = installed() {
        crate::support::missing("Patroni and etcd", &why);
        return;
    }
    let cluster = Patroni::start();
    cluster.healthy().await;
    let ha = cluster.ha_url();
    let t = TestDb::new("patroni");
    let dir = migrations_dir(&[
        (
            "0002_slow.up.sql",
            "SELECT pg_sleep(5);\nCREATE TABLE slow (id int);\n",
        ),
        (
            "0003_slower.up.sql",
            "SELECT pg_sleep(5);\nCREATE TABLE slower (id int);\n",
        ),
    ]);
    let cmd = || {
        let mut cmd = t.cmd();
        cmd.env("AIDOCK_ADMIN_URL", &ha)
            .arg("--migrations-dir")
            .arg(&dir);
        cmd
    };
    let first = migrations_dir(&[]);
    run_ok(
        t.cmd()
            .env("AIDOCK_ADMIN_URL", &ha)
            .arg("--migrations-dir")
            .arg(&first)
            .args(["init", "-q"]),
    );
    run_ok(cmd().args(["seed", "-q"]));
    // Printed URLs name every node (migrate status's database line).
    let hosts: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = run_ok(cmd().args(["migrate", "status"]));
    assert!(
        out.contains(&format!(
            "@{}/{}?target_session_attrs=read-write",
            hosts.join(","),
            t.name
        )),
        "{out}"
    );
    cluster.caught_up().await;

    // migrate up --wait: a switchover 1.5 s into 0002's five seconds of sleep.
    let leader = cluster.healthy().await;
    let mut up = cmd();
    up.args(["--wait", "90s", "migrate", "up", "--to", "2"]);
    let run = tokio::task::spawn_blocking(move || up.output().expect("run"));
    let on_leader = connect(&cluster.url(leader.port, "postgres")).await;
    crate::support::wait_for_statement(&on_leader, "SELECT pg_sleep(5)").await;
    drop(on_leader);
    cluster.switchover(leader);
    let out = run.await.expect("join");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("the server was lost in the middle of the run")
            && err.contains("running the command again"),
        "the switchover hit the run: {err}"
    );
    assert_eq!(
        cluster.ledger(&t).await,
        [1, 2],
        "0002 applied once, on the new primary"
    );

    // seed --dev --wait: a switchover once the usage logs are being copied.
    cluster.caught_up().await;
    let leader = cluster.healthy().await;
    let mut seed = cmd();
    seed.args(["--wait", "90s", "seed", "--dev", "--users", "5"])
        .args(["--usage-logs", "200000"]);
    let out = cluster.switch_over_while_copying(seed, leader, &t).await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("running the command again"),
        "the switchover hit the run: {err}"
    );
    let leader = cluster.healthy().await;
    let db = connect(&cluster.url(leader.port, &t.name)).await;
    assert_eq!(crate::seed::count(&db, "usage_logs").await, 200_000);
    crate::seed::quotas_match_logs(&db).await;
    drop(db);

    // Without --wait: exit 4, 0003 not applied anywhere.
    cluster.caught_up().await;
    let leader = cluster.healthy().await;
    let mut up = cmd();
    up.args(["migrate", "up"]);
    let run = tokio::task::spawn_blocking(move || up.output().expect("run"));
    let on_leader = connect(&cluster.url(leader.port, "postgres")).await;
    crate::support::wait_for_statement(&on_leader, "SELECT pg_sleep(5)").await;
    drop(on_leader);
    cluster.switchover(leader);
    let out = run.await.expect("join");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("went away in the middle of the run") && err.contains("--wait"),
        "{err}"
    );
    assert_eq!(cluster.ledger(&t).await, [1, 2], "0003 was rolled back");

    // seed --dev without --wait (more logs than there are): exit 4, the logs as they were.
    cluster.caught_up().await;
    let leader = cluster.healthy().await;
    let mut seed = cmd();
    seed.args(["seed", "--dev", "--users", "5", "--usage-logs", "400000"]);
    let out = cluster.switch_over_while_copying(seed, leader, &t).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("went away in the middle of the run"), "{err}");
    let leader = cluster.healthy().await;
    let db = connect(&cluster.url(leader.port, &t.name)).await;
    assert_eq!(crate::seed::count(&db, "usage_logs").await, 200_000);
    crate::seed::quotas_match_logs(&db).await;
}

/// Issue #46: the leader (first in the URL) freezes during `migrate up` of a slow migration,
/// another node is elected, and the old one resumes (its PostgreSQL a second before its
/// Patroni): for that moment it is still writable and the frozen backend commits there, and
/// then Patroni rewinds it. Without `--wait` that run must not exit 0 unless the migration is on
/// the new primary; with `--wait` it exits 0 with the migration on the new primary. While the
/// first host is frozen and the new leader is up, `migrate status` reaches the new leader.
#[tokio::test]
async fn a_frozen_leader_that_comes_back_never_turns_into_a_success() {
    if let Err(why) = installed() {
        crate::support::missing("Patroni and etcd", &why);
        return;
    }
    let cluster = Patroni::start();
    cluster.healthy().await;
    cluster.quick_failover();
    let t = TestDb::new("patronifreeze");
    let dir = migrations_dir(&[
        (
            "0002_frozen.up.sql",
            "SELECT pg_sleep(4);\nCREATE TABLE frozen (id int);\n",
        ),
        (
            "0003_frozen_again.up.sql",
            "SELECT pg_sleep(4);\nCREATE TABLE frozen_again (id int);\n",
        ),
    ]);
    let first = migrations_dir(&[]);
    // The leader first in the URL, as the deployment lists it.
    let leader = cluster.healthy().await;
    let others: Vec<&Node> = cluster
        .nodes
        .iter()
        .filter(|n| n.port != leader.port)
        .collect();
    let hosts: Vec<String> = std::iter::once(leader)
        .chain(others.iter().copied())
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let ha = format!(
        "postgresql://postgres:{}@{}/postgres?target_session_attrs=read-write",
        cluster.password,
        hosts.join(",")
    );
    let cmd = |dir: &Path| {
        let mut cmd = t.cmd();
        cmd.env("AIDOCK_ADMIN_URL", &ha)
            .env("AIDOCK__SERVER__CONNECT_TIMEOUT", "3s")
            .arg("--migrations-dir")
            .arg(dir);
        cmd
    };
    run_ok(cmd(&first).args(["init", "-q"]));
    cluster.caught_up().await;

    for (wait, version) in [(false, 2_i64), (true, 3_i64)] {
        let leader = cluster.healthy().await;
        cluster.caught_up().await;
        let successor = cluster
            .nodes
            .iter()
            .find(|n| n.port != leader.port)
            .expect("another node")
            .name
            .clone();
        let mut up = cmd(&dir);
        if wait {
            up.args(["--wait", "150s"]);
        }
        up.args(["migrate", "up", "--to", &version.to_string()]);
        let run = tokio::task::spawn_blocking(move || up.output().expect("run"));
        // Frozen while the migration sleeps (the run is in its transaction on the leader).
        let on_leader = connect(&cluster.url(leader.port, &t.name)).await;
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let sleeping: i64 = on_leader
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(4)%' \
                     AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if sleeping > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the migration never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(on_leader);
        let frozen = Patroni::freeze(leader);
        cluster.promoted(&successor).await;
        if !wait {
            // The first host frozen, the new leader up: status reaches the new leader.
            let out = cmd(&dir)
                .args(["migrate", "status"])
                .output()
                .expect("status");
            assert!(
                out.status.success(),
                "status with the first host frozen: {}",
                stderr(&out)
            );
        }
        Patroni::thaw(&frozen, Duration::from_secs(1)).await;
        let out = run.await.expect("join");
        let err = stderr(&out);
        // Where the cluster settles, the migration is there or not; exit 0 only when it is.
        let on_new = cluster.ledger(&t).await;
        eprintln!(
            "freeze case (wait: {wait}): exit {:?}\n{err}",
            out.status.code()
        );
        if wait {
            assert!(out.status.success(), "--wait rides over it: {err}");
            assert!(
                on_new.contains(&version),
                "exit 0 with it on the new primary: {on_new:?}\n{err}"
            );
        } else if out.status.success() {
            assert!(
                on_new.contains(&version),
                "exit 0 with {version} missing on the new primary: {on_new:?}\n{err}"
            );
        } else {
            assert_eq!(out.status.code(), Some(4), "{err}");
            assert!(err.contains("run the command again"), "{err}");
            // The next run settles it on the new primary.
            run_ok(cmd(&dir).args([
                "--wait",
                "150s",
                "migrate",
                "up",
                "--to",
                &version.to_string(),
            ]));
            assert!(cluster.ledger(&t).await.contains(&version));
        }
    }
}
