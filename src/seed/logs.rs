//! The fake usage logs of `seed --dev`, decided from the table itself.
//!
//! The rows one set of flags makes are a *dataset*: row `i` of it has an id made of a mark
//! (`ad0c5eed`), the dataset's tag (from `--rng-seed`, the days and `--users`) and `i`, so the
//! rows of a dataset are one range of the primary key, in row order. What a run keeps, adds or
//! removes is read from that range (never from a record alone): after `migrate down` and `up`,
//! after a restore, after an older release's seed, the same flags leave exactly `--usage-logs`
//! rows. The run record (`aidock_provision.seed_runs`) only keeps the moment the timestamps count back from,
//! and is used only when the rows it describes are there.
//!
//! Loading runs inside the seed's one transaction; over several connections each loads its share
//! into an unlogged staging table that the transaction moves in with one INSERT. Staging tables
//! are dropped on every way out ([`Stages::clean`]), and by the next run before anything else.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use super::binary::{Micros, RawJson, Uuid};
use crate::db::Target;
use crate::db::ident::{Ident, Name};
use crate::db::sql::Sql as _;

/// What a `seed --dev` run asks of the usage logs.
#[derive(Debug, Clone, Copy)]
pub struct LogRun {
    pub n: u64,
    pub days: u32,
    pub rng_seed: u64,
    /// `--users`: part of the dataset (the logs are spread over those users).
    pub users: u32,
    /// COPY connections wanted (capped by what the role and the server allow).
    pub connections: usize,
}

/// What loading usage logs did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UsageReport {
    /// Rows this run added.
    pub rows: u64,
    /// Rows this run removed: past `--usage-logs`, of other flags, or made by an earlier release.
    pub trimmed: u64,
    /// Of `trimmed`, the rows an earlier release's seed made (recognised by their generated form).
    pub earlier_release: u64,
    /// Rows of these flags that were there already (kept).
    pub already: u64,
    /// Quota counters whose current usage was set to this month's tokens of the stored logs.
    pub quotas_updated: u64,
    /// How many connections ran COPY side by side.
    pub connections: usize,
}

/// Rows per generated chunk; chunk `k` has its own seeded generator, so any range of rows can be
/// made again (a top-up continues where the table stops).
const CHUNK: u64 = 8192;

/// The first bytes of every id `seed --dev` gives a usage log.
const MARK: [u8; 4] = [0xad, 0x0c, 0x5e, 0xed];

/// One set of flags' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dataset {
    /// 28 bits naming the flags.
    tag: u32,
}

impl Dataset {
    fn of(run: &LogRun) -> Dataset {
        let h = mix(mix(run.rng_seed, u64::from(run.days)), u64::from(run.users));
        Dataset {
            tag: u32::try_from(h & 0x0fff_ffff).expect("28 bits"),
        }
    }

    /// Row `i`'s id: the mark, the tag (version-4 nibble in between), then `i` under the variant
    /// bits; ids of one dataset sort as their rows do.
    fn id(self, i: u64) -> Uuid {
        debug_assert!(i < 1 << 62);
        let t = self.tag.to_be_bytes();
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&MARK);
        b[4] = (t[0] << 4) | (t[1] >> 4);
        b[5] = (t[1] << 4) | (t[2] >> 4);
        b[6] = 0x40 | (t[2] & 0x0f);
        b[7] = t[3];
        b[8..].copy_from_slice(&i.to_be_bytes());
        b[8] = 0x80 | (b[8] & 0x3f);
        Uuid(b)
    }

    /// What the run record calls it.
    fn identity(self, run: &LogRun) -> String {
        format!(
            "usage_logs dataset={:07x} rng_seed={} days={} users={}",
            self.tag, run.rng_seed, run.days, run.users
        )
    }
}

/// Every id with the mark, lowest and highest.
fn marked() -> (Uuid, Uuid) {
    let mut lo = [0u8; 16];
    lo[..4].copy_from_slice(&MARK);
    let mut hi = [0xffu8; 16];
    hi[..4].copy_from_slice(&MARK);
    (Uuid(lo), Uuid(hi))
}

/// SplitMix64 of two values: well spread, stable across releases.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Chunk `chunk`'s generator for the rows (the salt keeps releases' streams apart).
fn chunk_rng(rng_seed: u64, chunk: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(rng_seed, 1), chunk))
}

/// The form every row an earlier release's `seed --dev` made has (ids from a random or a
/// different generator, no mark): exactly these request and response keys. Rows of this form
/// without the mark are that seed's, and are replaced.
const EARLIER_RELEASE_FORM: &str = "NOT (id BETWEEN $1 AND $2) \
     AND request_details ?& ARRAY['endpoint', 'messages', 'temperature', 'stream'] \
     AND request_details - ARRAY['messages', 'temperature', 'stream'] = '{\"endpoint\": \"/api/v1/chat\"}'::jsonb \
     AND response_details ?& ARRAY['finish_reason', 'latency_ms'] \
     AND response_details - ARRAY['finish_reason', 'latency_ms'] = '{}'::jsonb";

/// The bookkeeping of `seed --dev` runs: the moment a dataset's timestamps count back from. Like
/// the migration ledger, the tool's own, in its schema (verify and Alembic's autogenerate never
/// see it); a record from before the move (`public.aidock_seed_runs`) is moved over by the seed's
/// transaction, with its rows.
const RUNS_CREATE: &str = "CREATE SCHEMA IF NOT EXISTS aidock_provision;
ALTER TABLE IF EXISTS public.aidock_seed_runs SET SCHEMA aidock_provision;
ALTER TABLE IF EXISTS aidock_provision.aidock_seed_runs RENAME TO seed_runs;
ALTER INDEX IF EXISTS aidock_provision.aidock_seed_runs_pkey RENAME TO seed_runs_pkey;
CREATE TABLE IF NOT EXISTS aidock_provision.seed_runs (
    identity   text PRIMARY KEY,
    usage_logs bigint NOT NULL,
    anchor     timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// The flags of the last `seed --dev` run, from its run record: (`--rng-seed`, `--users`);
/// `None` when there is no record (a first run, or one from before records).
///
/// # Errors
/// A failing read.
pub async fn previous_flags(tx: &Transaction<'_>) -> anyhow::Result<Option<(u64, u32)>> {
    let exists: bool = tx
        .one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = 'aidock_provision' AND c.relname = 'seed_runs' AND c.relkind = 'r')",
            &[],
        )
        .await
        .context("looking for the seed's run record")?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = tx
        .opt(
            "SELECT identity FROM aidock_provision.seed_runs ORDER BY updated_at DESC LIMIT 1",
            &[],
        )
        .await
        .context("reading the seed's run record")?;
    Ok(row.and_then(|r| parse_identity(r.get::<_, &str>(0))))
}

/// (`rng_seed`, `users`) from a run record's identity ([`Dataset::identity`]).
fn parse_identity(identity: &str) -> Option<(u64, u32)> {
    let value = |key: &str| {
        identity
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    };
    Some((
        value("rng_seed")?.parse().ok()?,
        value("users")?.parse().ok()?,
    ))
}

/// The seed's own limits for each of its transactions, as migrations set theirs: a role's
/// `statement_timeout` or `idle_in_transaction_session_timeout` (the main transaction waits while
/// helpers COPY) would otherwise end a long load half-way; and a killed seed's server session
/// stops within a second (PostgreSQL 14+) instead of finishing an index build under its lock.
pub const SESSION_SETTINGS: &str = "SET LOCAL statement_timeout = 0; \
     SET LOCAL idle_in_transaction_session_timeout = 0; \
     SELECT set_config('client_connection_check_interval', '1s', true) \
     WHERE current_setting('server_version_num')::int >= 140000";

/// Staging tables for parallel loads: `aidock_seed_stage_<run>_<n>`, unlogged, never seen by the
/// application.
const STAGE_PREFIX: &str = "aidock_seed_stage_";

fn stage_name(run: &str, i: usize) -> Name {
    Name {
        schema: Some(Ident::new("public")),
        name: Ident::new(format!("{STAGE_PREFIX}{run}_{i}")),
    }
}

fn stage_lock(run: &str) -> i64 {
    crate::db::advisory::key("seed-stage", run)
}

/// Load (or top up, or trim to) `run.n` usage logs inside `tx`, the seed's one transaction: they
/// become visible, with the quota counters set to this month's tokens, when it commits, and not
/// at all if anything fails or the run is interrupted. The caller holds the seed lock (taken
/// first in the transaction, see `seed::seed`).
///
/// # Errors
/// No users or no enabled configurations to log against; connection and COPY failures.
pub async fn load(
    tx: &Transaction<'_>,
    target: &Target,
    run: LogRun,
    stages: &Stages,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<UsageReport> {
    tx.batch_execute(RUNS_CREATE)
        .await
        .context("creating the seed bookkeeping table")?;
    let kind = tx
        .one(
            "SELECT c.relkind::text, pg_catalog.pg_get_userbyid(c.relowner)::text, \
                    pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') \
                    OR c.relowner = (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'aidock_provision' AND c.relname = 'seed_runs'",
            &[],
        )
        .await
        .context("reading the seed bookkeeping table's kind")?;
    crate::migrate::check_bookkeeping(
        "aidock_provision.seed_runs",
        kind.get(0),
        kind.get(1),
        if kind.get::<_, bool>(2) { "t" } else { "f" },
    )?;
    let set = Dataset::of(&run);
    let identity = set.identity(&run);
    let (lo, hi) = marked();
    // What is not this dataset's first n rows, but was made by a seed, goes. Rows without the
    // mark are looked at only when there are any (two probes of the primary key, written as
    // ORDER BY .. LIMIT 1 so that a table just loaded and not yet analyzed is not scanned whole).
    let unmarked: bool = tx
        .one(
            "SELECT (SELECT id FROM usage_logs WHERE id < $1 ORDER BY id LIMIT 1) IS NOT NULL \
                 OR (SELECT id FROM usage_logs WHERE id > $2 ORDER BY id DESC LIMIT 1) IS NOT NULL",
            &[(&lo, Type::UUID), (&hi, Type::UUID)],
        )
        .await
        .context("looking for usage logs without the seed's mark")?
        .get(0);
    let earlier_release = if unmarked {
        tx.exec(
            &format!("DELETE FROM usage_logs WHERE {EARLIER_RELEASE_FORM}"),
            &[(&lo, Type::UUID), (&hi, Type::UUID)],
        )
        .await
        .context("removing usage logs an earlier release's seed made")?
    } else {
        0
    };
    let others = if run.n == 0 {
        tx.exec(
            "DELETE FROM usage_logs WHERE id BETWEEN $1 AND $2",
            &[(&lo, Type::UUID), (&hi, Type::UUID)],
        )
        .await
    } else {
        tx.exec(
            // Two ranges of the primary key, not the whole mark's range filtered: a top-up
            // does not walk the rows it keeps.
            "DELETE FROM usage_logs WHERE (id >= $1 AND id < $3) OR (id > $4 AND id <= $2)",
            &[
                (&lo, Type::UUID),
                (&hi, Type::UUID),
                (&set.id(0), Type::UUID),
                (&set.id(run.n - 1), Type::UUID),
            ],
        )
        .await
    }
    .context("removing usage logs of other flags or past --usage-logs")?;
    let mut report = UsageReport {
        trimmed: earlier_release + others,
        earlier_release,
        ..UsageReport::default()
    };

    // What of this dataset is there: rows 0..have, or (with holes) start again.
    let (mut have, mut present) = (0, 0);
    if run.n > 0 {
        let (first, last) = (set.id(0), set.id(run.n - 1));
        // The count reads the table in one sequential pass (FILTER, not WHERE): on a table just
        // loaded (no visibility map, no statistics) that is three to eight times faster than
        // walking the primary key's range.
        let row = tx
            .one(
                "SELECT count(*) FILTER (WHERE id BETWEEN $1 AND $2), \
                        (SELECT l.id::text FROM usage_logs l WHERE l.id BETWEEN $1 AND $2 ORDER BY l.id DESC LIMIT 1) \
                 FROM usage_logs",
                &[(&first, Type::UUID), (&last, Type::UUID)],
            )
            .await
            .context("counting the usage logs of these flags")?;
        let count = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        let top = row.get::<_, Option<&str>>(1).and_then(Uuid::parse);
        present = count;
        if count > 0 && top == Some(set.id(count - 1)) {
            have = count;
        } else if count > 0 {
            report.trimmed += tx
                .exec(
                    "DELETE FROM usage_logs WHERE id BETWEEN $1 AND $2",
                    &[(&first, Type::UUID), (&last, Type::UUID)],
                )
                .await
                .context("removing an incomplete set of usage logs")?;
        }
    }
    report.already = have;

    // The moment the timestamps count back from: the record's, when rows it describes are there.
    let recorded = if present > 0 {
        tx.opt(
            "SELECT extract(epoch FROM anchor)::float8 FROM aidock_provision.seed_runs WHERE identity = $1",
            &[(&identity, Type::TEXT)],
        )
        .await
        .context("reading the seed bookkeeping")?
        .map(|r| r.get::<_, f64>(0))
    } else {
        None
    };
    let anchor_epoch = match recorded {
        Some(a) => a,
        None => tx
            .one("SELECT extract(epoch FROM now())::float8", &[])
            .await
            .context("reading the time")?
            .get(0),
    };
    if run.n > have {
        progress.set_length(run.n - have);
        let anchor = UNIX_EPOCH + Duration::from_secs_f64(anchor_epoch);
        let table = Name {
            schema: Some(Ident::new("public")),
            name: Ident::new("usage_logs"),
        };
        let deferred = super::bulk::defer(tx, &table, run.n - have).await?;
        let (rows, connections) =
            generate_and_load(tx, target, run, set, have, anchor, stages, progress).await?;
        if let Some(deferred) = deferred {
            progress.set_message("building indexes");
            deferred.rebuild(tx).await?;
        }
        report.rows = rows;
        report.connections = connections;
    }
    report.quotas_updated = set_quota_usage(tx).await?;
    let n = i64::try_from(run.n).unwrap_or(i64::MAX);
    tx.exec(
        "DELETE FROM aidock_provision.seed_runs WHERE identity <> $1",
        &[(&identity, Type::TEXT)],
    )
    .await
    .context("recording the seed run")?;
    tx.exec(
        "INSERT INTO aidock_provision.seed_runs (identity, usage_logs, anchor) \
         VALUES ($1, $2, to_timestamp($3)) \
         ON CONFLICT (identity) DO UPDATE SET usage_logs = EXCLUDED.usage_logs, anchor = EXCLUDED.anchor, updated_at = now()",
        &[
            (&identity, Type::TEXT),
            (&n, Type::INT8),
            (&anchor_epoch, Type::FLOAT8),
        ],
    )
    .await
    .context("recording the seed run")?;
    Ok(report)
}

/// Set every quota's current usage to this month's tokens of the stored logs (set, not added:
/// the counters then agree with the logs whatever was there before).
async fn set_quota_usage(tx: &Transaction<'_>) -> anyhow::Result<u64> {
    tx.exec(
        "WITH used AS (
             SELECT department_id, llm_config_id, sum(tokens_total)::bigint AS tokens
             FROM usage_logs WHERE \"timestamp\" >= date_trunc('month', now())
             GROUP BY department_id, llm_config_id),
         target AS (
             SELECT q.id, coalesce(u.tokens, 0) AS tokens
             FROM department_quotas q
             LEFT JOIN used u ON u.department_id = q.department_id AND u.llm_config_id = q.llm_config_id)
         UPDATE department_quotas q SET current_usage_tokens = t.tokens
         FROM target t WHERE q.id = t.id AND q.current_usage_tokens IS DISTINCT FROM t.tokens",
        &[],
    )
    .await
    .context("setting the quotas' current usage")
}

/// Staging tables a run made, and the sessions filling them: what [`Stages::clean`] undoes.
#[derive(Debug, Default)]
pub struct Stages {
    inner: Mutex<StagesInner>,
}

#[derive(Debug, Default)]
struct StagesInner {
    tables: Vec<Name>,
    pids: Vec<i32>,
    workers: Vec<tokio::task::AbortHandle>,
}

impl Stages {
    fn lock(&self) -> std::sync::MutexGuard<'_, StagesInner> {
        // A panic elsewhere cannot leave these lists half-written: each push is one step.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Staging tables not yet dropped.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().tables.is_empty()
    }

    /// Drop this run's staging tables after its transaction ended without them being moved in
    /// (a failure, Ctrl-C): the COPY workers are stopped and their sessions ended first, so none
    /// commits a table afterwards. On `client` when it still works, else over a new connection.
    ///
    /// # Errors
    /// The drop failed; the message gives the statement to run.
    pub async fn clean(&self, client: &Client, target: &Target) -> anyhow::Result<()> {
        let (tables, pids, workers) = {
            let mut inner = self.lock();
            (
                std::mem::take(&mut inner.tables),
                std::mem::take(&mut inner.pids),
                std::mem::take(&mut inner.workers),
            )
        };
        for w in &workers {
            w.abort();
        }
        if tables.is_empty() {
            return Ok(());
        }
        let list = tables
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let drop = format!("DROP TABLE IF EXISTS {list}");
        let result = async {
            let fresh;
            let client = if client.is_closed() || client.batch_execute("ROLLBACK").await.is_err() {
                fresh = target.connect().await?;
                &fresh
            } else {
                client
            };
            end_sessions(client, &pids).await?;
            client
                .batch_execute(&format!(
                    "BEGIN; SET LOCAL statement_timeout = '60s'; {drop}; COMMIT"
                ))
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        }
        .await;
        result.with_context(|| {
            format!(
                "the run's staging tables are left; drop them as the database owner with `{drop};` (the next seed --dev also does)"
            )
        })
    }
}

/// End the COPY workers' sessions (the role's own) and wait until they are gone.
async fn end_sessions(client: &Client, pids: &[i32]) -> anyhow::Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let pids = pids.to_vec();
    client
        .rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1)",
            &[(&pids, Type::INT4_ARRAY)],
        )
        .await
        .context("ending the COPY sessions")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = client
            .one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)",
                &[(&pids, Type::INT4_ARRAY)],
            )
            .await
            .context("waiting for the COPY sessions to end")?
            .get(0);
        if left == 0 || std::time::Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drop staging tables no live run holds (a run killed before it could clean up), each in a
/// transaction of its own, before the seed's transaction begins: a later failure cannot roll the
/// clean-up back, and a full disk the tables filled is freed first.
///
/// # Errors
/// A failing statement; the message names the table.
pub async fn drop_stale_stages(client: &mut Client) -> anyhow::Result<usize> {
    let rows = client
        .rows(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname LIKE 'aidock\\_seed\\_stage\\_%'",
            &[],
        )
        .await
        .context("looking for staging tables")?;
    let mut dropped = 0;
    for r in rows {
        let name: String = r.get(0);
        let run = name
            .trim_start_matches(STAGE_PREFIX)
            .split('_')
            .next()
            .unwrap_or_default()
            .to_string();
        let table = Name {
            schema: Some(Ident::new("public")),
            name: Ident::new(name),
        };
        let tx = client
            .transaction()
            .await
            .context("starting a clean-up transaction")?;
        let free: bool = tx
            .one(
                &format!("SELECT pg_try_advisory_xact_lock({})", stage_lock(&run)),
                &[],
            )
            .await
            .context("checking a staging table's run")?
            .get(0);
        if free {
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .with_context(|| {
                    format!("dropping {table}, left by an earlier seed --dev run; drop it as the database owner")
                })?;
            dropped += 1;
        }
        tx.commit()
            .await
            .context("committing the clean-up of staging tables")?;
    }
    Ok(dropped)
}

/// How many extra connections this role may open now: its `connection_limit` and the server's
/// free slots, whichever is smaller.
async fn free_connections(tx: &Transaction<'_>) -> anyhow::Result<usize> {
    let row = tx
        .one(
            "SELECT (SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user),
                    (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user),
                    current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
                      - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
            &[],
        )
        .await
        .context("reading the connection limits")?;
    let (limit, mine, server_free): (i32, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let role_free = if limit < 0 {
        i64::MAX
    } else {
        i64::from(limit) - mine
    };
    Ok(usize::try_from(role_free.min(server_free).max(0)).unwrap_or(0))
}

struct Model {
    id: Uuid,
    max_tokens: u32,
    price_prompt: f64,
    price_completion: f64,
}

/// One generated row.
struct Log {
    id: Uuid,
    user: Uuid,
    department: Uuid,
    model: usize,
    at: SystemTime,
    prompt: i32,
    completion: i32,
    cost: Micros,
    request: RawJson,
    response: RawJson,
}

/// The column types COPY fills (`tokens_total` is generated).
const COPY_TYPES: [Type; 10] = [
    Type::UUID,
    Type::UUID,
    Type::UUID,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::INT4,
    Type::INT4,
    Type::NUMERIC,
    Type::JSONB,
    Type::JSONB,
];

const COLUMNS: &str = "id, user_id, department_id, llm_config_id, \"timestamp\", tokens_prompt, \
                       tokens_completion, cost_estimated, request_details, response_details";

/// Generate rows `from..run.n` of `set` and load them; returns (rows, connections used).
#[allow(clippy::too_many_arguments)]
async fn generate_and_load(
    tx: &Transaction<'_>,
    target: &Target,
    run: LogRun,
    set: Dataset,
    from: u64,
    anchor: SystemTime,
    stages: &Stages,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, usize)> {
    let users: Vec<(Uuid, Uuid)> = tx
        .rows(
            "SELECT id::text, department_id::text FROM users WHERE department_id IS NOT NULL ORDER BY username",
            &[],
        )
        .await
        .context("reading users for usage logs")?
        .iter()
        .filter_map(|r| Some((Uuid::parse(r.get(0))?, Uuid::parse(r.get(1))?)))
        .collect();
    let models: Vec<Model> = tx
        .rows(
            "SELECT id::text, config_json::text FROM llm_configurations WHERE enabled ORDER BY provider, model_name",
            &[],
        )
        .await
        .context("reading LLM configurations for usage logs")?
        .iter()
        .filter_map(|r| {
            let config: serde_json::Value = serde_json::from_str(r.get(1)).ok()?;
            Some(Model {
                id: Uuid::parse(r.get(0))?,
                max_tokens: config["max_tokens"]
                    .as_u64()
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(4096),
                price_prompt: config["price_per_1k_prompt"].as_f64().unwrap_or(0.0),
                price_completion: config["price_per_1k_completion"].as_f64().unwrap_or(0.0),
            })
        })
        .collect();
    if users.is_empty() || models.is_empty() {
        anyhow::bail!(
            "usage logs need at least one user with a department and one enabled LLM configuration; run `seed --dev` with the reference data in place"
        );
    }
    let model_ids: Arc<Vec<Uuid>> = Arc::new(models.iter().map(|m| m.id).collect());
    let model_meta: Vec<(u32, f64, f64)> = models
        .iter()
        .map(|m| (m.max_tokens, m.price_prompt, m.price_completion))
        .collect();
    // One connection loads straight into usage_logs inside `tx`; more load side by side into
    // staging tables (as many as the role and the server allow).
    let wanted = run.connections.max(1);
    let workers = if wanted > 1 {
        wanted.min(free_connections(tx).await?)
    } else {
        0
    };
    let lanes = workers.max(1);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes)
        .map(|_| tokio::sync::mpsc::channel::<Vec<Log>>(2))
        .unzip();
    let n = run.n;
    let (rng_seed, days) = (run.rng_seed, run.days);
    let generator = std::thread::spawn(move || {
        let span_micros = u64::from(days.max(1)) * 86_400 * 1_000_000;
        let mut k = from / CHUNK;
        let mut turn = 0;
        while k * CHUNK < n {
            let mut rng = chunk_rng(rng_seed, k);
            let mut chunk = Vec::with_capacity(8192);
            for i in k * CHUNK..((k + 1) * CHUNK).min(n) {
                // Earlier rows of the chunk are made too: they advance its generator.
                let log = fake_log(
                    &mut rng,
                    set.id(i),
                    &users,
                    &model_meta,
                    anchor,
                    span_micros,
                );
                if i >= from {
                    chunk.push(log);
                }
            }
            k += 1;
            if chunk.is_empty() {
                continue;
            }
            if senders[turn % senders.len()].blocking_send(chunk).is_err() {
                return; // a writer failed; its error is reported
            }
            turn += 1;
        }
    });

    let result = if workers == 0 {
        let sink = crate::db::sql::copy_in(tx, &copy_sql("usage_logs"))
            .await
            .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
            .context("starting COPY into usage_logs")?;
        let receiver = receivers.into_iter().next().expect("one lane");
        write_logs(sink, receiver, model_ids, progress.clone())
            .await
            .map(|written| (written, 1))
    } else {
        staged(tx, target, receivers, model_ids, stages, progress).await
    };
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("the usage log generator panicked"))?;
    result
}

/// Parallel load: each worker connection COPYs its share into its own unlogged staging table
/// (committed, but invisible to the application); then `tx` moves every row into usage_logs with
/// one INSERT and drops the staging tables, so the logs appear when `tx` commits. The run's
/// advisory lock (held by `tx`) marks the staging tables as alive.
async fn staged(
    tx: &Transaction<'_>,
    target: &Target,
    receivers: Vec<tokio::sync::mpsc::Receiver<Vec<Log>>>,
    model_ids: Arc<Vec<Uuid>>,
    stages: &Stages,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, usize)> {
    let run = crate::db::random_tag();
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({})",
        stage_lock(&run)
    ))
    .await
    .context("taking the staging lock")?;
    let names: Vec<Name> = (0..receivers.len()).map(|i| stage_name(&run, i)).collect();
    let mut handles = Vec::new();
    for (name, receiver) in names.iter().zip(receivers) {
        let mut client = target.connect().await?;
        let pid: i32 = client
            .one("SELECT pg_backend_pid()", &[])
            .await
            .context("starting a COPY session")?
            .get(0);
        {
            let mut inner = stages.lock();
            inner.tables.push(name.clone());
            inner.pids.push(pid);
        }
        let (name, model_ids, progress) = (name.clone(), model_ids.clone(), progress.clone());
        let handle = tokio::spawn(async move {
            // Each worker's table and rows commit together, in a transaction of its own.
            let tx = client
                .transaction()
                .await
                .context("starting a staging transaction")?;
            tx.batch_execute(&format!(
                "{SESSION_SETTINGS}; CREATE UNLOGGED TABLE {name} (id uuid, user_id uuid, department_id uuid, llm_config_id uuid, \
                 \"timestamp\" timestamptz, tokens_prompt integer, tokens_completion integer, \
                 cost_estimated numeric(14,6), request_details jsonb, response_details jsonb)"
            ))
            .await
            .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
            .context("creating a staging table")?;
            let sink = crate::db::sql::copy_in(&tx, &copy_sql(&name.to_string()))
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .context("starting COPY into a staging table")?;
            let written = write_logs(sink, receiver, model_ids, progress).await?;
            tx.commit()
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .context("committing a staging table")?;
            Ok(written)
        });
        stages.lock().workers.push(handle.abort_handle());
        handles.push(handle);
    }
    let mut written = 0;
    let mut failure = None;
    for h in handles {
        match h.await {
            Ok(Ok(w)) => written += w,
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow::anyhow!("a COPY worker panicked: {e}"))),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let union = names
        .iter()
        .map(|n| format!("SELECT {COLUMNS} FROM {n}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    tx.batch_execute(&format!("INSERT INTO usage_logs ({COLUMNS}) {union}"))
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("moving the staged usage logs into usage_logs")?;
    // Dropped in `tx`, gone with its commit; if `tx` does not commit, `Stages::clean` drops them.
    let list = names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    tx.batch_execute(&format!("DROP TABLE {list}"))
        .await
        .context("dropping the staging tables")?;
    Ok((written, names.len()))
}

fn copy_sql(table: &str) -> String {
    format!("COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)")
}

/// Write every chunk a lane is dealt into one COPY; returns the rows written.
async fn write_logs(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    mut chunks: tokio::sync::mpsc::Receiver<Vec<Log>>,
    model_ids: Arc<Vec<Uuid>>,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    tokio::pin!(writer);
    let mut written = 0u64;
    while let Some(chunk) = chunks.recv().await {
        for log in &chunk {
            writer
                .as_mut()
                .write(&[
                    &log.id,
                    &log.user,
                    &log.department,
                    &model_ids[log.model],
                    &log.at,
                    &log.prompt,
                    &log.completion,
                    &log.cost,
                    &log.request,
                    &log.response,
                ])
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .context("writing usage logs")?;
        }
        written += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    writer
        .finish()
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("finishing COPY")?;
    Ok(written)
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn fake_log(
    rng: &mut ChaCha8Rng,
    id: Uuid,
    users: &[(Uuid, Uuid)],
    models: &[(u32, f64, f64)],
    now: SystemTime,
    span_micros: u64,
) -> Log {
    let (user, department) = users[rng.random_range(0..users.len())];
    let model = rng.random_range(0..models.len());
    let (max_tokens, price_prompt, price_completion) = models[model];
    // Most requests are short, a few are long: square a uniform draw.
    let r: f64 = rng.random();
    let prompt = 20 + (r * r * 3000.0) as i32;
    let r: f64 = rng.random();
    let completion = 10 + (r * r * f64::from(max_tokens.min(2000))) as i32;
    let cost =
        (f64::from(prompt) * price_prompt + f64::from(completion) * price_completion) / 1000.0;
    let at = now - Duration::from_micros(rng.random_range(0..span_micros));
    let messages = rng.random_range(1..12);
    let temperature = f64::from(rng.random_range(0..=10u8)) / 10.0;
    let latency = rng.random_range(200..8000);
    Log {
        id,
        user,
        department,
        model,
        at,
        prompt,
        completion,
        cost: Micros((cost * 1_000_000.0).round() as u64),
        request: RawJson(format!(
            r#"{{"endpoint": "/api/v1/chat", "messages": {messages}, "temperature": {temperature}, "stream": {}}}"#,
            rng.random_bool(0.5)
        )),
        response: RawJson(format!(
            r#"{{"finish_reason": "{}", "latency_ms": {latency}}}"#,
            if rng.random_bool(0.95) {
                "stop"
            } else {
                "length"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rng_seed: u64, users: u32) -> LogRun {
        LogRun {
            n: 10,
            days: 90,
            rng_seed,
            users,
            connections: 1,
        }
    }

    #[test]
    fn ids_are_version_4_marked_and_sort_as_their_rows() {
        let set = Dataset::of(&run(42, 25));
        let ids: Vec<Uuid> = [0, 1, 2, 8191, 8192, 999_999_999]
            .iter()
            .map(|i| set.id(*i))
            .collect();
        assert!(ids.windows(2).all(|w| w[0].0 < w[1].0), "row order");
        let (lo, hi) = marked();
        for id in &ids {
            assert_eq!(id.0[6] >> 4, 4, "version 4: {id}");
            assert_eq!(id.0[8] >> 6, 0b10, "RFC variant: {id}");
            assert!(lo.0 <= id.0 && id.0 <= hi.0);
        }
        assert_eq!(set.id(0).to_string()[..8], *"ad0c5eed");
    }

    #[test]
    fn other_flags_are_other_datasets() {
        let a = Dataset::of(&run(42, 25));
        assert_eq!(a, Dataset::of(&run(42, 25)));
        assert_ne!(a, Dataset::of(&run(42, 30)));
        assert_ne!(a, Dataset::of(&run(43, 25)));
        // Ranges of two datasets do not overlap.
        let b = Dataset::of(&run(42, 30));
        let (a0, a1, b0) = (a.id(0).0, a.id(1 << 40).0, b.id(0).0);
        assert!(b0 < a0 || b0 > a1);
    }
}
