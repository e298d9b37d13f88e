//! The one code path that applies migrations: take the lock (polled, never a blocking wait),
//! re-read the ledger under it, run the scripts and their ledger rows in one transaction.
//!
//! Transactional runs poll `pg_try_advisory_xact_lock` in short transactions, so a waiter never
//! holds a transaction open while sleeping (PgBouncer-safe, and no deadlock with another
//! migrator's `CREATE INDEX CONCURRENTLY`). A run that includes a `-- aidock:no-transaction`
//! script takes the same key as a session lock on this dedicated connection instead.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::ledger;
use super::lexer;
use super::plan::{self, Step, Target};
use super::source::{Migration, Script};
use crate::db;
use crate::db::sql::Sql as _;
use tokio_postgres::types::Type;

/// The server is a streaming-replication standby: nothing can be applied there (the caller, who
/// knows the server's name, says so; exit 4).
#[derive(Debug, thiserror::Error)]
#[error(
    "the server is a read-only standby (pg_is_in_recovery() is true), so migrations cannot be applied there"
)]
pub struct Standby;

/// Timeouts and output for a run.
#[derive(Clone, Copy)]
pub struct Options {
    /// How long one attempt's statement may wait for a lock.
    pub lock_timeout: Duration,
    /// How long to keep trying again after an attempt's lock wait timed out (zero: never).
    pub lock_retry_for: Duration,
    pub statement_timeout: Duration,
    pub wait_timeout: Duration,
    /// Print each statement with its file line and duration (through `log`).
    pub verbose: bool,
    /// Where notes and verbose lines go; the engine itself never prints.
    pub log: fn(&str),
    /// What a connection pooler in between keeps (no-transaction scripts need a session).
    pub pool_mode: db::pooler::PoolMode,
}

/// One script that ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Done {
    pub version: i64,
    pub migration: String,
    pub direction: plan::Direction,
    pub ms: u128,
}

/// The advisory lock key every migrator of every database uses (locks are per database).
#[must_use]
pub fn lock_key() -> i64 {
    crate::db::advisory::key("migrate", "")
}

/// The statements that open a transactional run (after the lock is taken).
#[must_use]
pub fn session_settings(opts: &Options, local: bool) -> String {
    let scope = if local { "SET LOCAL" } else { "SET" };
    format!(
        "{scope} lock_timeout = '{}ms'; {scope} statement_timeout = '{}ms'",
        opts.lock_timeout.as_millis(),
        opts.statement_timeout.as_millis()
    )
}

/// Apply or revert migrations to reach `target`.
///
/// # Errors
/// A planning problem (edited, unknown, gap ...), a script that fails its checks (transaction
/// control, unterminated quote ...: found before anything runs), a lock wait that timed out, or
/// a failing script (reported with file, line and column); nothing of a failed transactional run
/// remains.
pub async fn run(
    client: &mut Client,
    watch_from: &db::Target,
    migrations: &[Migration],
    target: Target,
    opts: &Options,
) -> anyhow::Result<Vec<Done>> {
    // A run with nothing to do only reads: no lock, no SET, no DDL (every replica of an app runs
    // this at start-up). Reading without the lock is safe: what it sees applied is committed, and
    // anything it sees pending is re-read under the lock below.
    let steps = plan::plan(&read_applied(&*client).await?, migrations, target)?;
    // An Alembic revision of the backend's own on top of ours: the schema is not what the
    // ledger says, with work to do or none (a deploy must not stay green on it).
    let foreign = ledger::foreign_revisions(&*client).await?;
    if !foreign.is_empty() {
        return Err(super::alembic::ForeignRevision { revisions: foreign }.into());
    }
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    check_scripts(migrations, &steps)?;
    // A schema other tools made (no ledger of ours, but tables): applying 0001 on top would fail
    // half-way at best. Adoption is `migrate baseline`'s job.
    if let Some(foreign) = ledger::foreign_objects(&*client).await? {
        return Err(crate::error::refused(format!(
            "the database holds {} object(s) that no aidock-provision migration made ({}) and has no migration ledger: its schema was built by other tools (the backend's Alembic or create_all, or by hand), and nothing was applied. Run `aidock-provision migrate baseline` to compare it with the migrations and adopt it without losing data",
            foreign.count,
            foreign.listed()
        )));
    }
    // There is work: a standby or a read-only role cannot take it (its first write would fail
    // half-way).
    match db::writable(&*client).await? {
        db::Writable::Yes => {}
        db::Writable::Standby => return Err(Standby.into()),
        db::Writable::ReadOnly(role) => return Err(db::read_only_error(&role)),
    }
    let deadline = Instant::now() + opts.wait_timeout;
    let key = lock_key();
    let session = Session {
        check_interval: watch_for_client_death(client).await?,
        opts: *opts,
    };
    let mut retries = Retries::new(opts);
    let mut watch: Option<Watch> = None;
    loop {
        let tx = client
            .transaction()
            .await
            .context("starting a transaction")?;
        if !try_lock(&tx, &format!("SELECT pg_try_advisory_xact_lock({key})")).await? {
            tx.rollback().await.context("ending the lock poll")?;
            wait_or_fail(client, deadline, opts.wait_timeout).await?;
            continue;
        }
        let steps = plan::plan(&read_applied(&tx).await?, migrations, target)?;
        if steps.is_empty() {
            tx.commit().await.context("committing")?;
            return Ok(Vec::new());
        }
        check_scripts(migrations, &steps)?;
        if let Some(step) = steps
            .iter()
            .find(|s| script(migrations, **s).no_transaction)
        {
            tx.rollback().await.context("leaving the transaction")?;
            if !opts.pool_mode.sessions_hold(client).await {
                return Err(pooled_no_transaction(migration(migrations, step.version)));
            }
            return run_with_session_lock(client, migrations, target, &session, deadline).await;
        }
        // Who our statements wait for, watched from a connection of its own (opened on the
        // first attempt that has work; a lock wait names its holder from what it saw).
        if watch.is_none() && !opts.lock_retry_for.is_zero() {
            watch = Watch::start(watch_from).await;
        }
        if let Some(w) = &watch {
            w.follow(&tx).await;
        }
        let attempt = async {
            tx.batch_execute(&session.restore(true))
                .await
                .context("setting lock_timeout and statement_timeout")?;
            tx.batch_execute(ledger::create(Some(ledger::is_legacy(&tx).await?)))
                .await
                .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
                .context("creating the migration ledger")?;
            let mut done = Vec::new();
            for step in &steps {
                done.push(apply(&tx, migrations, *step, &session, true).await?);
            }
            tx.batch_execute(ledger::STAMP_ALEMBIC)
                .await
                .context("stamping alembic_version")?;
            anyhow::Ok(done)
        }
        .await;
        match attempt {
            Ok(done) => {
                tx.commit().await.context("committing the migrations")?;
                return Ok(done);
            }
            Err(e) if e.is::<LockWaitTimedOut>() => {
                // Rolled back: nothing of this attempt remains, and the queue behind our
                // waiting statement drains while we pause.
                let _ = tx.rollback().await;
                let holders = watch.as_ref().map(Watch::seen).unwrap_or_default();
                match retries.next_pause() {
                    Some(pause) => {
                        (opts.log)(&format!(
                            "lock wait over migrate.lock_timeout ({} ms), attempt {} rolled back; the lock is held {}; trying again in {} ms",
                            opts.lock_timeout.as_millis(),
                            retries.attempts,
                            describe_holders(&holders),
                            pause.as_millis()
                        ));
                        tokio::time::sleep(pause).await;
                    }
                    None => {
                        return Err(e.context(format!(
                            "gave up after {} attempt(s) over {} s (migrate.lock_retry_for); nothing was applied. The lock was held {}. Run again when that session has finished, end it (SELECT pg_terminate_backend(PID)), or raise migrate.lock_retry_for",
                            retries.attempts,
                            retries.started.elapsed().as_secs(),
                            describe_holders(&holders)
                        )));
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A statement of a transactional attempt waited longer than `lock_timeout` (SQLSTATE 55P03):
/// the attempt is rolled back and may be tried again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LockWaitTimedOut(String);

/// The pauses between attempts: from 200 ms doubling to 5 s, each with ±50% jitter (many
/// deploys retrying at once do not come back together), until `lock_retry_for` is spent.
struct Retries {
    started: Instant,
    budget: Duration,
    attempts: u32,
}

impl Retries {
    fn new(opts: &Options) -> Retries {
        Retries {
            started: Instant::now(),
            budget: opts.lock_retry_for,
            attempts: 0,
        }
    }

    /// The pause before the next attempt, or `None` when the budget is spent.
    fn next_pause(&mut self) -> Option<Duration> {
        use rand::RngExt as _;
        self.attempts += 1;
        let base = Duration::from_millis(200)
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(5))
            .min(Duration::from_secs(5));
        let pause = base.mul_f64(rand::rng().random_range(0.5..1.5));
        let left = self.budget.checked_sub(self.started.elapsed())?;
        (!left.is_zero()).then(|| pause.min(left))
    }
}

/// Polls, from a connection of its own, which sessions block the attempt's backend
/// (`pg_blocking_pids`), keeping the last non-empty answer: who held the lock we waited for.
struct Watch {
    pid: std::sync::Arc<std::sync::atomic::AtomicI32>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    /// `None` when no connection can be had (the retry then names no holder).
    async fn start(target: &db::Target) -> Option<Watch> {
        let client = target.connect().await.ok()?;
        let pid = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (p, s) = (pid.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let ours = p.load(std::sync::atomic::Ordering::Relaxed);
                if ours != 0 {
                    let rows = client
                        .rows(
                            "SELECT format('pid %s (application_name %L, %s, transaction open %s s): %s', \
                                    a.pid, coalesce(a.application_name, ''), coalesce(a.state, '?'), \
                                    coalesce(extract(epoch FROM now() - a.xact_start)::int::text, '?'), \
                                    coalesce(nullif(split_part(a.query, E'\\n', 1), ''), '(query not visible to this role)')) \
                             FROM pg_stat_activity a WHERE a.pid = ANY (pg_blocking_pids($1)) ORDER BY a.pid",
                            &[(&ours, Type::INT4)],
                        )
                        .await;
                    match rows {
                        Ok(rows) if !rows.is_empty() => {
                            let found = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                            *s.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = found;
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Some(Watch { pid, seen, task })
    }

    /// Watch the backend running `tx` (through a pooler, each transaction may have another).
    async fn follow(&self, tx: &tokio_postgres::Transaction<'_>) {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        if let Ok(row) = tx.one("SELECT pg_backend_pid()", &[]).await {
            self.pid
                .store(row.get(0), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Who held the lock, in words ("the lock is held by ...").
fn describe_holders(holders: &[String]) -> String {
    if holders.is_empty() {
        "by a session that was not seen (it may have ended meanwhile)".to_string()
    } else {
        format!("by {}", holders.join("; "))
    }
}

/// What the runner restores after each script.
struct Session {
    /// Whether the server has `client_connection_check_interval` (PostgreSQL 14+).
    check_interval: bool,
    opts: Options,
}

impl Session {
    /// Undo what a script changed in the session, then put back the runner's own settings: in a
    /// transaction, local to it (nothing outlives the transaction, as a pooler needs), outside
    /// one for the session.
    fn restore(&self, in_tx: bool) -> String {
        let mut sql = ledger::RESET_SESSION.to_string();
        let scope = if in_tx { "SET LOCAL" } else { "SET" };
        if self.check_interval {
            let _ = write!(sql, "; {scope} {CHECK_INTERVAL}");
        }
        sql.push_str("; ");
        sql.push_str(&session_settings(&self.opts, in_tx));
        sql
    }
}

/// Make the server notice promptly when this process dies mid-script (killed, crashed), so its
/// transaction rolls back and the lock frees within a second rather than when a long statement
/// ends (PostgreSQL 14+).
const CHECK_INTERVAL: &str = "client_connection_check_interval = '1s'";

/// The refusal for a no-transaction migration through a transaction pooler: exit 2, with the two
/// ways through.
fn pooled_no_transaction(m: &Migration) -> anyhow::Error {
    crate::error::usage(format!(
        "migration {} runs outside a transaction (`-- aidock:no-transaction`), statement by statement under a session lock and session settings, and this connection goes (or may go: it could not be told) through a connection pooler that may hand each transaction to another server session (PgBouncer's pool_mode = transaction), so nothing was applied. Run it against the server directly (--database-url, or DATABASE_URL, with the server's own host and port), or, if the pooler keeps whole sessions (pool_mode = session), set server.pool_mode = \"session\" (AIDOCK__SERVER__POOL_MODE=session)",
        m.label()
    ))
}

/// The ledger as planning input (it is not created when missing).
async fn read_applied(client: &impl GenericClient) -> anyhow::Result<Vec<plan::Applied>> {
    Ok(ledger::read(client)
        .await?
        .iter()
        .map(ledger::Row::applied)
        .collect())
}

/// Lex and check every script of the plan before the first one runs.
fn check_scripts(migrations: &[Migration], steps: &[Step]) -> anyhow::Result<()> {
    for step in steps {
        let m = migration(migrations, step.version);
        script(migrations, *step)
            .statements()
            .with_context(|| format!("migration {} cannot run as written", m.label()))?;
    }
    Ok(())
}

/// Whether the server has `client_connection_check_interval` (PostgreSQL 14+; older servers
/// notice a dead client at the next write to its socket). Set with each transaction's settings.
async fn watch_for_client_death(client: &Client) -> anyhow::Result<bool> {
    let rows = ledger::simple_rows(client, "SHOW server_version_num").await?;
    let version: i32 = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(version >= 140_000)
}

/// Runs that include a no-transaction script: a session lock, polled, on this connection.
async fn run_with_session_lock(
    client: &mut Client,
    migrations: &[Migration],
    target: Target,
    session: &Session,
    deadline: Instant,
) -> anyhow::Result<Vec<Done>> {
    let key = lock_key();
    let opts = &session.opts;
    while !try_lock(&*client, &format!("SELECT pg_try_advisory_lock({key})")).await? {
        wait_or_fail(client, deadline, opts.wait_timeout).await?;
    }
    let result = async {
        let steps = plan::plan(&read_applied(&*client).await?, migrations, target)?;
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        check_scripts(migrations, &steps)?;
        let legacy = ledger::is_legacy(&*client).await?;
        client
            .batch_execute(ledger::create(Some(legacy)))
            .await
            .context("creating the migration ledger")?;
        let mut done = Vec::new();
        for step in steps {
            if script(migrations, step).no_transaction {
                client
                    .batch_execute(&session.restore(false))
                    .await
                    .context("setting lock_timeout and statement_timeout")?;
                done.push(apply(&*client, migrations, step, session, false).await?);
                client
                    .batch_execute(ledger::STAMP_ALEMBIC)
                    .await
                    .context("stamping alembic_version")?;
            } else {
                // Each transactional script of such a run gets the same lock-wait retries as a
                // transactional run (issue #40: they were skipped here).
                let mut retries = Retries::new(opts);
                loop {
                    let tx = client
                        .transaction()
                        .await
                        .context("starting a transaction")?;
                    let attempt = async {
                        tx.batch_execute(&session.restore(true))
                            .await
                            .context("setting timeouts")?;
                        let one = apply(&tx, migrations, step, session, true).await?;
                        tx.batch_execute(ledger::STAMP_ALEMBIC)
                            .await
                            .context("stamping alembic_version")?;
                        anyhow::Ok(one)
                    }
                    .await;
                    match attempt {
                        Ok(one) => {
                            tx.commit().await.context("committing the migration")?;
                            done.push(one);
                            break;
                        }
                        Err(e) if e.is::<LockWaitTimedOut>() => {
                            let _ = tx.rollback().await;
                            let Some(pause) = retries.next_pause() else {
                                return Err(e.context(format!(
                                    "gave up after {} attempt(s) over {} s (migrate.lock_retry_for); the migrations before it stay applied and recorded. Run again when it is quieter, or raise migrate.lock_retry_for",
                                    retries.attempts,
                                    retries.started.elapsed().as_secs()
                                )));
                            };
                            (opts.log)(&format!(
                                "lock wait over migrate.lock_timeout ({} ms), attempt {} of {} rolled back; trying again in {} ms",
                                opts.lock_timeout.as_millis(),
                                retries.attempts,
                                migration(migrations, step.version).label(),
                                pause.as_millis()
                            ));
                            tokio::time::sleep(pause).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(done)
    }
    .await;
    let _ = client
        .simple_query(&format!("SELECT pg_advisory_unlock({key})"))
        .await;
    result
}

fn migration(migrations: &[Migration], version: i64) -> &Migration {
    migrations
        .iter()
        .find(|m| m.version == version)
        .expect("plan only returns known versions")
}

fn script(migrations: &[Migration], step: Step) -> &Script {
    let m = migration(migrations, step.version);
    if step.direction == plan::Direction::Up {
        &m.up
    } else {
        m.down
            .as_ref()
            .expect("plan checks that down scripts exist")
    }
}

/// Run one script and write its ledger row, on `client` (a transaction, `in_tx`, or for
/// no-transaction scripts the bare connection).
async fn apply(
    client: &(impl GenericClient + Sync),
    migrations: &[Migration],
    step: Step,
    session: &Session,
    in_tx: bool,
) -> anyhow::Result<Done> {
    let m = migration(migrations, step.version);
    let script = script(migrations, step);
    let started = Instant::now();
    run_statements(client, script, m, &session.opts).await?;
    let ms = started.elapsed().as_millis();
    // The bookkeeping runs with the session as the run set it up, whatever the script did to
    // search_path, the role or the timeouts (a pg_dump file empties search_path).
    client
        .batch_execute(&session.restore(in_tx))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .context("resetting the session after the script")?;
    if !in_tx {
        refuse_invalid_indexes(client, script, m).await?;
    }
    let bookkeeping = if step.direction == plan::Direction::Up {
        ledger::insert(m, Some(ms))
    } else {
        ledger::delete(m.version)
    };
    client
        .batch_execute(&bookkeeping)
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| {
            let state = if in_tx {
                "the transaction was rolled back"
            } else {
                "its statements ran outside a transaction and stay applied"
            };
            format!("recording migration {} in the ledger ({state})", m.label())
        })?;
    Ok(Done {
        version: m.version,
        migration: m.label(),
        direction: step.direction,
        ms,
    })
}

/// Send a script's statements one by one (the split psql would make), mapping a failure to the
/// file, line and column.
async fn run_statements(
    client: &(impl GenericClient + Sync),
    script: &Script,
    m: &Migration,
    opts: &Options,
) -> anyhow::Result<()> {
    let split = script.statements()?;
    if let Some((begin, _)) = split.unwrapped {
        let (line, _) = lexer::line_col(&script.sql, begin);
        (opts.log)(&format!(
            "note: {}:{line}: the file's own BEGIN ... COMMIT around all of it was left out: the run's one transaction holds it already",
            script.location()
        ));
    }
    for (offset, command) in &split.skipped {
        let (line, _) = lexer::line_col(&script.sql, *offset);
        (opts.log)(&format!(
            "note: {}:{line}: skipped the psql meta-command `\\{command}` (pg_dump writes it for psql; it is not SQL)",
            script.location()
        ));
    }
    let from_pg_dump = lexer::is_pg_dump_file(&script.sql);
    // The server's setting names, read once per script at its first `SET` (pg_dump repeats
    // `SET default_tablespace` and the like before many objects).
    let mut settings: Option<std::collections::HashSet<String>> = None;
    for statement in &split.statements {
        let text = statement.text(&script.sql);
        let unknown_setting = match lexer::session_setting_name(text) {
            Some(name) if from_pg_dump => {
                if settings.is_none() {
                    settings = Some(setting_names(client).await?);
                }
                let known = settings.as_ref().is_some_and(|k| k.contains(name));
                (!known).then_some(name)
            }
            _ => None,
        };
        if let Some(name) = unknown_setting {
            let (line, _) = lexer::line_col(&script.sql, statement.first_token);
            (opts.log)(&format!(
                "note: {}:{line}: skipped `{}`: this server has no setting `{name}` (the file was written by a newer pg_dump than the server; psql goes past this line too)",
                script.location(),
                text.lines().next().unwrap_or_default()
            ));
            continue;
        }
        if script.no_transaction {
            drop_leftover_invalid_index(client, text, m, opts).await?;
        }
        let began = Instant::now();
        if let Err(e) = client.batch_execute(text).await {
            return Err(script_error(script, statement, &e, m));
        }
        if opts.verbose {
            let (line, _) = lexer::line_col(&script.sql, statement.first_token);
            let first = text.lines().next().unwrap_or_default();
            (opts.log)(&format!(
                "  {}:{line} {first} ({} ms)",
                script.location(),
                began.elapsed().as_millis()
            ));
        }
    }
    Ok(())
}

/// Every setting name the server has (`pg_settings`).
async fn setting_names(
    client: &(impl GenericClient + Sync),
) -> anyhow::Result<std::collections::HashSet<String>> {
    Ok(client
        .rows("SELECT name FROM pg_catalog.pg_settings", &[])
        .await
        .context("reading the server's setting names")?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Replay the up scripts of `versions` into another database (verify's scratch database) the
/// way `up` ran them: each in its own transaction with the run's timeouts, a no-transaction
/// script statement by statement, the session reset after each; no bookkeeping.
///
/// # Errors
/// A script failing (file, line and column), or the connection.
pub async fn replay(
    client: &mut Client,
    migrations: &[Migration],
    versions: &[i64],
    opts: &Options,
) -> anyhow::Result<()> {
    for version in versions {
        let m = migration(migrations, *version);
        run_script(client, m, &m.up, opts).await?;
    }
    Ok(())
}

/// Run one script of `m` as `up` and `down` run it, without bookkeeping (scratch databases:
/// `verify`'s replay, `migrate diff`'s desired schema and its test of the generated pair).
///
/// # Errors
/// A script failing (file, line and column), or the connection.
pub async fn run_script(
    client: &mut Client,
    m: &Migration,
    script: &Script,
    opts: &Options,
) -> anyhow::Result<()> {
    script.statements()?;
    if script.no_transaction && !opts.pool_mode.sessions_hold(client).await {
        return Err(pooled_no_transaction(m));
    }
    if script.no_transaction {
        client
            .batch_execute(&session_settings(opts, false))
            .await
            .context("setting lock_timeout and statement_timeout")?;
        run_statements(&*client, script, m, opts).await?;
    } else {
        let tx = client
            .transaction()
            .await
            .context("starting a transaction")?;
        tx.batch_execute(&session_settings(opts, true))
            .await
            .context("setting lock_timeout and statement_timeout")?;
        run_statements(&tx, script, m, opts).await?;
        tx.commit().await.context("committing")?;
    }
    client
        .batch_execute(ledger::RESET_SESSION)
        .await
        .context("resetting the session after the script")?;
    Ok(())
}

/// Before a `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON table` of a
/// no-transaction script (not recorded, so not applied): an INVALID index of that name on that
/// table is what an interrupted run of this very migration left (killed, or its server lost
/// mid-build), which `IF NOT EXISTS` would skip and the check after the script would then refuse.
/// It enforces nothing and no query uses it: dropped (concurrently), said, and built again.
/// One that another session is building right now is left alone.
async fn drop_leftover_invalid_index(
    client: &(impl GenericClient + Sync),
    statement: &str,
    m: &Migration,
    opts: &Options,
) -> anyhow::Result<()> {
    let Some((index, table)) = lexer::concurrent_index_target(statement) else {
        return Ok(());
    };
    let found = client
        .opt(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 AND c.relkind = 'i' AND NOT i.indisvalid \
               AND i.indrelid = pg_catalog.to_regclass($2) \
               AND i.indexrelid NOT IN (SELECT index_relid FROM pg_catalog.pg_stat_progress_create_index \
                                        WHERE index_relid IS NOT NULL)",
            &[
                (&index, tokio_postgres::types::Type::TEXT),
                (&table, tokio_postgres::types::Type::TEXT),
            ],
        )
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .context("looking for an INVALID index an interrupted run left")?;
    let Some(row) = found else {
        return Ok(());
    };
    let name: String = row.get(0);
    client
        .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        .await
        .map_err(|e| anyhow::anyhow!(db::describe_error(&e)))
        .with_context(|| format!("dropping the INVALID index {name} an interrupted run left"))?;
    (opts.log)(&format!(
        "note: dropped the INVALID index {name} that an interrupted run of {} left (it enforced nothing and no query used it); building it again",
        m.label()
    ));
    Ok(())
}

/// After a no-transaction script: a failed `CREATE INDEX CONCURRENTLY` (or `REINDEX
/// CONCURRENTLY`) leaves an INVALID index behind, which `IF NOT EXISTS` then skips on a re-run;
/// recording the migration would claim a unique index that enforces nothing. Indexes another
/// session is building right now are invalid too, and are not counted; so is a partitioned
/// index made `ON ONLY` whose partitions are not all attached yet (invalid by design, and never
/// built concurrently).
async fn refuse_invalid_indexes(
    client: &(impl GenericClient + Sync),
    script: &Script,
    m: &Migration,
) -> anyhow::Result<()> {
    let rows = ledger::simple_rows(
        client,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND c.relkind = 'i' AND i.indexrelid NOT IN \
               (SELECT index_relid FROM pg_stat_progress_create_index WHERE index_relid IS NOT NULL) \
         ORDER BY 1",
    )
    .await
    .context("checking for INVALID indexes")?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    anyhow::bail!(
        "after {} the database has INVALID index(es) {}: a CREATE INDEX CONCURRENTLY (or REINDEX CONCURRENTLY) failed, e.g. on duplicate keys for a unique index, and left it behind; an invalid index is not used and enforces nothing, so migration {} is not recorded.\nfix: {}; fix the data it failed on; then run `aidock-provision migrate up` again",
        script.location(),
        names.join(", "),
        m.label(),
        names
            .iter()
            .map(|n| format!("DROP INDEX CONCURRENTLY {n}"))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// `0002_x.up.sql:4:8: relation "nope" does not exist (SQLSTATE 42P01)` plus detail, hint and
/// what happened to the database.
fn script_error(
    script: &Script,
    statement: &lexer::Statement,
    e: &tokio_postgres::Error,
    m: &Migration,
) -> anyhow::Error {
    let text = statement.text(&script.sql);
    let offset = match e.as_db_error().and_then(|d| d.position()) {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
            statement.first_token + lexer::char_position_to_byte(text, *p as usize)
        }
        _ => statement.first_token,
    };
    let (line, col) = lexer::line_col(&script.sql, offset);
    let mut message = format!(
        "{}: line {line}, column {col}: {}",
        script.location(),
        db::describe_error(e)
    );
    if db::sqlstate(e) == Some(&SqlState::LOCK_NOT_AVAILABLE) {
        if !script.no_transaction {
            return anyhow::Error::new(LockWaitTimedOut(format!(
                "migration {} waited longer than migrate.lock_timeout at {message}; the transaction was rolled back: the database is as it was before this run",
                m.label()
            )));
        }
        message.push_str(
            "\nhint: the migration waited longer than migrate.lock_timeout for a lock held by other sessions (application traffic); retry when it is quieter or raise migrate.lock_timeout",
        );
    } else if db::sqlstate(e) == Some(&SqlState::DUPLICATE_TABLE) {
        message.push_str(
            "\nhint: the object exists but no recorded migration made it: the schema was changed outside aidock-provision (e.g. by hand as a hotfix, or by the backend's create_all or its own alembic run); `aidock-provision migrate verify` lists what differs. If this migration captures a change already made by hand, record it instead of applying it: `aidock-provision migrate baseline --to <its version>` (it checks that the schema is exactly what the migrations make first)",
        );
    } else if db::sqlstate(e) == Some(&SqlState::QUERY_CANCELED) {
        message.push_str("\nhint: the statement ran longer than migrate.statement_timeout; raise it for this migration");
    }
    let state = if script.no_transaction {
        "it ran outside a transaction, so statements before this one stay applied and the migration is not recorded; make its statements idempotent (IF NOT EXISTS) and run `migrate up` again"
    } else {
        "the transaction was rolled back: the database is as it was before this run"
    };
    anyhow::anyhow!("migration {} failed at {message}\n{state}", m.label())
}

async fn try_lock(client: &impl GenericClient, sql: &str) -> anyhow::Result<bool> {
    let rows = ledger::simple_rows(client, sql)
        .await
        .context("polling the migration lock")?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .is_some_and(|v| v == "t"))
}

/// Sleep a little before the next poll, or fail with who holds the lock.
async fn wait_or_fail(client: &Client, deadline: Instant, wait: Duration) -> anyhow::Result<()> {
    if Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(());
    }
    let key = lock_key();
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    let (classid, objid) = ((key >> 32) as u32, key as u32);
    let holder = client
        .opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.query, ''), \
                    coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start))::float8, 0) \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[(&classid, Type::OID), (&objid, Type::OID)],
        )
        .await
        .ok()
        .flatten();
    let who = match holder {
        Some(r) => format!(
            "pid {} ({}), running for {:.0}s, last query: {}",
            r.get::<_, i32>(0),
            r.get::<_, String>(1),
            r.get::<_, f64>(3),
            r.get::<_, String>(2)
        ),
        None => "a session that has since released it".into(),
    };
    anyhow::bail!(
        "waited {wait:?} for the migration lock held by {who}; let that migration finish, or raise migrate.wait_timeout"
    )
}
