//! High availability: when a URL lists several hosts, success means the commit is on the node
//! the cluster elected (issue #46).
//!
//! A primary that froze (a VM pause, a stall, a network that dropped its packets) while another
//! node was elected can come back for a moment still writable, commit there, and be rewound by
//! its HA manager a second later: the commit exists nowhere. Reading it back through
//! `target_session_attrs=read-write` can reach that same node and believe it, since two
//! primaries look alike to that check. So a commit is confirmed where a split brain cannot fool
//! the check: on the committing session itself, by waiting (bounded) until a standby has flushed
//! the commit's WAL position (`pg_stat_replication.flush_lsn`). A node the cluster has left has
//! no standby following it; a standby that has the commit is one a failover keeps it on (HA
//! managers elect the most advanced standby). When it cannot be confirmed, the run says what is
//! known (committed on which node, not confirmed) and ends as a lost server does (exit 4, and
//! `--wait` runs the command again; the re-run confirms what it reads the same way).
//!
//! Why not ask every listed host for its timeline instead: in the moment before the new leader
//! finishes promoting, both nodes still show the old timeline and the frozen one looks like the
//! primary; the standby check has no such window (a standby still receiving from the old node
//! flushes the commit, and a promotion keeps what was flushed).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::Client;

use super::{Target, describe_error, error};

/// How a commit under a multi-host URL is confirmed.
#[derive(Debug, Clone, Default)]
pub struct Confirm {
    /// How long a standby gets to flush the commit (zero: no confirmation).
    pub within: Duration,
    /// An admin endpoint listing the same hosts: its session on the committing node can see the
    /// standbys' positions where the app role cannot (`pg_read_all_stats`).
    pub admin: Option<Target>,
    /// A re-run after a commit that could not be confirmed: a run that commits nothing confirms
    /// that what it read is replicated too.
    pub reads: bool,
}

/// Where the committing session is: its node's WAL position now, and how the standbys stand.
struct Standbys {
    in_recovery: bool,
    flushed: i64,
    hidden: i64,
    connected: i64,
}

const STANDBYS: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
       (SELECT count(*) FROM pg_catalog.pg_stat_replication WHERE flush_lsn >= $1::text::pg_lsn), \
       (SELECT count(*) FROM pg_catalog.pg_stat_replication WHERE flush_lsn IS NULL), \
       (SELECT count(*) FROM pg_catalog.pg_stat_replication)";

async fn standbys(client: &Client, lsn: &str) -> Result<Standbys, tokio_postgres::Error> {
    use super::sql::Sql as _;
    let row = client
        .one(STANDBYS, &[(&lsn, tokio_postgres::types::Type::TEXT)])
        .await?;
    Ok(Standbys {
        in_recovery: row.get(0),
        flushed: row.get(1),
        hidden: row.get(2),
        connected: row.get(3),
    })
}

/// After `what` committed on `client` (connected to listed host `host` of `target`): wait until
/// a standby has flushed it. Nothing to do for a single-host URL or `within` zero.
///
/// # Errors
/// Exit 4 ([`error::lost`]) when no standby confirms it in time, the node was demoted, or the
/// session was lost: what is known, and that a re-run (`--wait`) settles it.
pub async fn confirm(
    client: &Client,
    target: &Target,
    host: usize,
    what: &str,
    confirm: &Confirm,
) -> anyhow::Result<()> {
    if target.host_count() <= 1 || confirm.within.is_zero() {
        return Ok(());
    }
    let node = target.host_label(host);
    let lost_session = |e: tokio_postgres::Error| {
        error::unconfirmed(format!(
            "{what} was committed on {node}, which went away before a standby could be seen to have it ({}); it may be lost if {node} was a primary the cluster has left: run the command again (with --wait it does so by itself)",
            describe_error(&e)
        ))
    };
    let lsn = {
        let messages = client
            .simple_query("SELECT pg_catalog.pg_current_wal_lsn()::text")
            .await
            .map_err(lost_session)?;
        messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .context("reading the commit's WAL position")?
    };
    // The admin's session on the same node sees the standbys' positions where the app role may
    // not (pg_stat_replication hides them from roles without pg_read_all_stats).
    let admin = match &confirm.admin {
        Some(admin) => match admin
            .endpoint(host)
            .filter(|_| same_hosts(admin, target))
            .and_then(|(h, p)| admin.only(&h, p))
        {
            Some(one) => one.connect().await.ok(),
            None => None,
        },
        None => None,
    };
    let checker = admin.as_ref().unwrap_or(client);
    let deadline = Instant::now() + confirm.within;
    loop {
        let now = standbys(checker, &lsn).await.map_err(lost_session)?;
        if now.in_recovery {
            return Err(error::unconfirmed(format!(
                "{what} was committed on {node}, which has since become a standby: the cluster has left it, so the commit is lost there; run the command again (with --wait it does so by itself)"
            )));
        }
        if now.flushed > 0 {
            return Ok(());
        }
        // Positions hidden from this role: a standby following the node is the most it can see.
        if now.hidden > 0 && now.hidden == now.connected {
            return Ok(());
        }
        // No standby follows it: whether it is the one node left (the others are down, their
        // ports closed) or one the cluster has left (another is up, a primary or a standby
        // following someone else) is asked of the other listed hosts at once.
        if now.connected == 0 {
            return alone_or_left(target, host, what, &node).await;
        }
        if Instant::now() >= deadline {
            return Err(error::unconfirmed(format!(
                "{what} was committed on {node}, but within {:?} none of the {} standby(s) following it has flushed it (position {lsn}); with asynchronous replication a failover now would lose it; run the command again (with --wait it does so by itself), or set server.confirm_timeout longer",
                confirm.within, now.connected
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What another listed host is, seen from here.
enum Seen {
    Primary,
    Standby,
    /// Its port is closed: not running.
    Down,
    /// It did not answer in time, or refused us (frozen, cut off, or unknown): it may be the
    /// cluster's primary.
    Silent,
}

async fn look_at(one: &Target) -> Seen {
    let attempt = async {
        let client = one.connect_config(one.config.clone()).await?;
        let rows = client
            .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
            .await?;
        Ok::<_, tokio_postgres::Error>(rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("t")),
        ))
    };
    match tokio::time::timeout(one.host_timeout(), attempt).await {
        Ok(Ok(true)) => Seen::Standby,
        Ok(Ok(false)) => Seen::Primary,
        Ok(Err(e)) if refused(&e) => Seen::Down,
        _ => Seen::Silent,
    }
}

/// Whether a connection failed because nothing listens on the port (or the host is down).
fn refused(e: &tokio_postgres::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// A committing node no standby follows: confirmed only when every other listed host is down
/// (its port closed); any that is up (a primary, or a standby following another), or that does
/// not answer (frozen, cut off), means the node may be one the cluster has left.
async fn alone_or_left(target: &Target, host: usize, what: &str, node: &str) -> anyhow::Result<()> {
    let mut up = Vec::new();
    for i in (0..target.host_count()).filter(|&i| i != host) {
        let Some(one) = target.endpoint(i).and_then(|(h, p)| target.only(&h, p)) else {
            continue;
        };
        let label = target.host_label(i);
        match look_at(&one).await {
            Seen::Down => {}
            Seen::Primary => up.push(format!("{label} is a primary too")),
            Seen::Standby => up.push(format!("{label} is a standby that does not follow it")),
            Seen::Silent => up.push(format!("{label} did not answer (frozen or cut off?)")),
        }
    }
    if up.is_empty() {
        // The only node left: what it committed is all there is.
        return Ok(());
    }
    Err(error::unconfirmed(format!(
        "{what} was committed on {node}, but no standby is following it and {}: {node} may be a primary the cluster has left (one that froze while another was elected and came back), and then the commit is lost; run the command again (with --wait it does so by itself). If {node} is the primary and the others are being rebuilt, list only it in the URL, or set server.confirm_timeout = \"0\" to skip this check",
        up.join(", ")
    )))
}

/// Whether two endpoints list the same hosts in the same order (so an index names one node).
fn same_hosts(a: &Target, b: &Target) -> bool {
    a.host_count() == b.host_count() && (0..a.host_count()).all(|i| a.endpoint(i) == b.endpoint(i))
}

/// Run `work` (a run on a session with listed host `host`), and, under `--wait` with several
/// hosts, watch that host from the side: a server that froze holds a statement in flight for as
/// long as the freeze lasts (TCP sees nothing wrong: the kernel still answers), while the
/// cluster may have elected another node long ago. When two probes in a row get no answer
/// within `connect_timeout`, the run is given up as a lost server (exit 4; `--wait` runs it
/// again, on the new primary), instead of waiting out the freeze.
///
/// # Errors
/// `work`'s own, or the lost server.
pub async fn watched<T>(
    target: &Target,
    host: usize,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let one = target
        .endpoint(host)
        .and_then(|(h, p)| target.only(&h, p))
        .filter(|_| target.host_count() > 1 && !target.wait.is_zero());
    let Some(one) = one else {
        return work.await;
    };
    let node = target.host_label(host);
    let watch = async {
        let mut silent = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if matches!(look_at(&one).await, Seen::Silent | Seen::Down) {
                silent += 1;
            } else {
                silent = 0;
            }
            if silent >= 2 {
                return error::lost(format!(
                    "{node} stopped answering in the middle of the run (it did not take a new connection within {:?}, twice): it froze or was cut off; what was in flight is not committed",
                    one.host_timeout()
                ));
            }
        }
    };
    tokio::select! {
        r = work => r,
        e = watch => Err(e),
    }
}
