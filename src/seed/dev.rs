//! Dev data for `seed --dev`: the fixed test accounts, N fake users (deterministic per RNG seed,
//! argon2id-hashed on all cores) and fake usage logs streamed with binary COPY while they are
//! generated.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
use fake::Fake as _;
use fake::faker::name::en::{FirstName, LastName};
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::binary::{Micros, RawJson, Uuid};
use super::files::Seeds;
use super::reference::Counts;
use crate::db::Target;
use crate::db::sql::Sql as _;

/// A user to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub role: String,
    pub department: String,
    pub superuser: bool,
    pub active: bool,
}

/// The fixed test accounts from `dev.toml`.
#[must_use]
pub fn accounts(seeds: &Seeds) -> Vec<NewUser> {
    seeds
        .dev
        .account
        .iter()
        .map(|a| NewUser {
            username: a.username.clone(),
            email: a.email.clone(),
            password: a.password.clone(),
            role: a.role.clone(),
            department: a.department.clone(),
            superuser: a.superuser,
            active: true,
        })
        .collect()
}

/// `n` fake users, the same for the same `rng_seed` (ChaCha8: stable across rand releases).
#[must_use]
pub fn fake_users(seeds: &Seeds, n: u32, rng_seed: u64) -> Vec<NewUser> {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let mut taken: HashSet<String> = seeds
        .dev
        .account
        .iter()
        .map(|a| a.username.clone())
        .collect();
    let weights: Vec<(&String, u32)> = seeds
        .dev
        .fake_role_weights
        .iter()
        .map(|(r, w)| (r, *w))
        .collect();
    let total_weight: u32 = weights.iter().map(|(_, w)| w).sum::<u32>().max(1);
    let mut users = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let first: String = FirstName().fake_with_rng(&mut rng);
        let last: String = LastName().fake_with_rng(&mut rng);
        let base: String = format!("{first}.{last}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.')
            .take(40)
            .collect();
        let mut username = base.clone();
        let mut suffix = 2;
        while !taken.insert(username.clone()) {
            username = format!("{base}{suffix}");
            suffix += 1;
        }
        let mut pick = rng.random_range(0..total_weight);
        let role = weights
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or_else(|| "user".to_string(), |(r, _)| (*r).clone());
        let department = seeds.departments[rng.random_range(0..seeds.departments.len())]
            .name
            .clone();
        users.push(NewUser {
            email: format!("{username}@example.com"),
            username,
            password: seeds.dev.fake_user_password.clone(),
            role,
            department,
            superuser: false,
            active: rng.random_bool(0.9),
        });
    }
    users
}

/// argon2id cost parameters (`seed.argon2.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgonParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The argon2id hasher for these parameters.
///
/// # Errors
/// Parameters argon2 refuses.
pub fn hasher(p: &ArgonParams) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None).map_err(|e| {
        crate::error::usage(format!(
            "seed.argon2 parameters (memory_kib {}, iterations {}, parallelism {}) are invalid: {e}",
            p.memory_kib, p.iterations, p.parallelism
        ))
    })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// How dev passwords are stored (`seed.password_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// PHC `$argon2id$...` (argon2-cffi verifies it).
    Argon2id,
    /// `$2b$12$...`, the only format the AI Dock backend's passlib context verifies.
    Bcrypt,
}

impl Scheme {
    /// `argon2id` or `bcrypt`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Scheme> {
        match text {
            "argon2id" => Some(Scheme::Argon2id),
            "bcrypt" => Some(Scheme::Bcrypt),
            _ => None,
        }
    }

    /// The scheme a stored hash is in, if one of ours.
    #[must_use]
    pub fn of_hash(hash: &str) -> Option<Scheme> {
        if hash.starts_with("$argon2id$") {
            Some(Scheme::Argon2id)
        } else if hash.starts_with("$2b$") || hash.starts_with("$2a$") || hash.starts_with("$2y$") {
            Some(Scheme::Bcrypt)
        } else {
            None
        }
    }

    /// The setting's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Argon2id => "argon2id",
            Scheme::Bcrypt => "bcrypt",
        }
    }
}

/// bcrypt's cost, as the AI Dock backend configures passlib (`bcrypt__rounds=12`).
pub const BCRYPT_COST: u32 = 12;

/// A password hasher for one scheme.
pub enum Hasher {
    Argon2(Argon2<'static>),
    Bcrypt { cost: u32 },
}

impl Hasher {
    /// The hasher for `scheme` (argon2id with `argon` parameters, bcrypt at [`BCRYPT_COST`]).
    ///
    /// # Errors
    /// argon2 parameters it refuses.
    pub fn new(scheme: Scheme, argon: &ArgonParams) -> anyhow::Result<Hasher> {
        Ok(match scheme {
            Scheme::Argon2id => Hasher::Argon2(hasher(argon)?),
            Scheme::Bcrypt => Hasher::Bcrypt { cost: BCRYPT_COST },
        })
    }

    fn hash(&self, password: &str, rng: &mut impl rand::Rng) -> anyhow::Result<String> {
        match self {
            Hasher::Argon2(argon) => {
                let mut salt = [0u8; 16];
                rng.fill_bytes(&mut salt);
                argon
                    .hash_password_with_salt(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
            }
            Hasher::Bcrypt { cost } => bcrypt::hash(password, *cost)
                .map_err(|e| anyhow::anyhow!("hashing a password with bcrypt: {e}")),
        }
    }
}

/// Hash every password on `threads` threads (PHC strings for argon2id, `$2b$` for bcrypt).
///
/// # Errors
/// A hashing failure.
pub fn hash_all(
    hasher: &Hasher,
    passwords: &[&str],
    threads: usize,
) -> anyhow::Result<Vec<String>> {
    let threads = threads.max(1);
    let chunk = passwords.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = passwords
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut rng = rand::rng();
                    part.iter()
                        .map(|p| hasher.hash(p, &mut rng))
                        .collect::<anyhow::Result<Vec<String>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(passwords.len());
        for h in handles {
            out.extend(h.join().expect("hashing threads do not panic")?);
        }
        Ok(out)
    })
}

/// Insert users (by username; existing ones kept, or updated with `overwrite`).
///
/// # Errors
/// A failing statement.
pub async fn insert_users(
    tx: &Transaction<'_>,
    users: &[NewUser],
    hashes: &[String],
    overwrite: bool,
) -> anyhow::Result<Counts> {
    let usernames: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    let roles: Vec<&str> = users.iter().map(|u| u.role.as_str()).collect();
    let departments: Vec<&str> = users.iter().map(|u| u.department.as_str()).collect();
    let superusers: Vec<bool> = users.iter().map(|u| u.superuser).collect();
    let active: Vec<bool> = users.iter().map(|u| u.active).collect();
    let conflict = if overwrite {
        "ON CONFLICT (username) DO UPDATE SET email = EXCLUDED.email, hashed_password = EXCLUDED.hashed_password, \
         role_id = EXCLUDED.role_id, department_id = EXCLUDED.department_id, is_superuser = EXCLUDED.is_superuser, \
         is_active = EXCLUDED.is_active RETURNING (xmax = 0)"
    } else {
        // Any conflict (username or email) keeps the existing account.
        "ON CONFLICT DO NOTHING RETURNING true"
    };
    let sql = format!(
        "INSERT INTO users (username, email, hashed_password, role_id, department_id, is_superuser, is_active) \
         SELECT u.username, u.email, u.hash, r.id, d.id, u.su, u.active \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::bool[]) \
              u(username, email, hash, role, dept, su, active) \
         JOIN roles r ON r.name = u.role JOIN departments d ON d.name = u.dept \
         ORDER BY u.username {conflict}"
    );
    let rows = tx
        .rows(
            &sql,
            &[
                (&usernames, Type::TEXT_ARRAY),
                (&emails, Type::TEXT_ARRAY),
                (&hashes, Type::TEXT_ARRAY),
                (&roles, Type::TEXT_ARRAY),
                (&departments, Type::TEXT_ARRAY),
                (&superusers, Type::BOOL_ARRAY),
                (&active, Type::BOOL_ARRAY),
            ],
        )
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("inserting users")?;
    let inserted = rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64;
    let updated = rows.len() as u64 - inserted;
    Ok(Counts {
        inserted,
        updated,
        kept: users.len() as u64 - inserted - updated,
    })
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

/// What loading usage logs did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageReport {
    /// Rows this run added.
    pub rows: u64,
    /// Rows this run removed (`--usage-logs` lowered for the same seed).
    pub trimmed: u64,
    /// Rows of this run's identity that were there already (kept).
    pub already: u64,
    pub quotas_updated: u64,
    /// How many connections ran COPY side by side.
    pub connections: usize,
}

/// Tokens per (department, configuration) that fall in the current month.
type Deltas = HashMap<(Uuid, Uuid), i64>;

/// Rows per generated chunk; chunk `k` has its own seeded generators, so any range of rows can
/// be made again (a top-up continues where the last run stopped; a trim finds the ids to delete).
const CHUNK: u64 = 8192;

/// The bookkeeping of `seed --dev` runs: which identity loaded how many usage logs, counted back
/// from which moment. Like the migration ledger, it is the tool's own (verify leaves it out).
const RUNS_CREATE: &str = "CREATE TABLE IF NOT EXISTS public.aidock_seed_runs (
    identity   text PRIMARY KEY,
    usage_logs bigint NOT NULL,
    anchor     timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// Staging tables for parallel loads: `aidock_seed_stage_<run>_<n>`, unlogged, never seen by the
/// application; moved into `usage_logs` by the seed's one transaction.
const STAGE_PREFIX: &str = "aidock_seed_stage_";

/// What a `seed --dev` run asks of the usage logs.
#[derive(Debug, Clone, Copy)]
pub struct LogRun {
    pub n: u64,
    pub days: u32,
    pub rng_seed: u64,
    /// `--users`: part of the run's identity (the logs are spread over those users).
    pub users: u32,
    /// COPY connections wanted (capped by what the role and the server allow).
    pub connections: usize,
}

impl LogRun {
    fn identity(&self) -> String {
        format!(
            "usage_logs rng_seed={} days={} users={}",
            self.rng_seed, self.days, self.users
        )
    }
}

fn chunk_seed(rng_seed: u64, chunk: u64, salt: u64) -> u64 {
    // SplitMix64 of (seed, chunk, salt): well spread, stable across releases.
    let mut z = rng_seed
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(chunk.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Chunk `chunk`'s generator for the rest of each row, and for the row ids: two streams, so the
/// ids of any range can be made again without the rows.
const ROW_STREAM: u64 = 1;
const ID_STREAM: u64 = 2;

fn chunk_rng(rng_seed: u64, chunk: u64, stream: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(chunk_seed(rng_seed, chunk, stream))
}

fn next_id(ids: &mut ChaCha8Rng) -> Uuid {
    let mut id = [0u8; 16];
    ids.fill_bytes(&mut id);
    Uuid::v4(id)
}

/// The ids of rows `from..to` of a run (without the rest of each row).
fn log_ids(rng_seed: u64, from: u64, to: u64) -> Vec<Uuid> {
    let mut out = Vec::new();
    let mut k = from / CHUNK;
    while k * CHUNK < to {
        let mut ids = chunk_rng(rng_seed, k, ID_STREAM);
        for i in k * CHUNK..((k + 1) * CHUNK).min(to) {
            let id = next_id(&mut ids);
            if i >= from {
                out.push(id);
            }
        }
        k += 1;
    }
    out
}

/// Load (or top up, or trim to) `run.n` usage logs inside `tx`, the seed's one transaction: they
/// become visible, with the quota counters raised by this month's tokens, when it commits, and
/// not at all if anything fails or the run is interrupted. Over several connections, each loads
/// its share into an unlogged staging table, and `tx` moves them in with one INSERT.
///
/// # Errors
/// No users or no enabled configurations to log against; connection and COPY failures.
pub async fn load_usage_logs(
    tx: &Transaction<'_>,
    target: &Target,
    run: LogRun,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<UsageReport> {
    let identity = run.identity();
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({})",
        crate::db::advisory::key("seed", "runs")
    ))
    .await
    .context("taking the seed lock")?;
    tx.batch_execute(RUNS_CREATE)
        .await
        .context("creating the seed bookkeeping table")?;
    drop_stale_stages(tx).await?;
    let row = tx
        .opt(
            "SELECT usage_logs, extract(epoch FROM anchor)::float8 FROM public.aidock_seed_runs WHERE identity = $1",
            &[(&identity, Type::TEXT)],
        )
        .await
        .context("reading the seed bookkeeping")?;
    let (have, anchor_epoch): (u64, f64) = match &row {
        Some(r) => (
            u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
            r.get::<_, f64>(1),
        ),
        None => (
            0,
            tx.one("SELECT extract(epoch FROM now())::float8", &[])
                .await
                .context("reading the time")?
                .get(0),
        ),
    };
    let anchor = UNIX_EPOCH + Duration::from_secs_f64(anchor_epoch);
    let month_start: f64 = tx
        .one(
            "SELECT extract(epoch FROM date_trunc('month', now()))::float8",
            &[],
        )
        .await
        .context("reading the start of the month")?
        .get(0);
    let month_start = UNIX_EPOCH + Duration::from_secs_f64(month_start);

    let mut deltas = Deltas::new();
    let mut rows = 0u64;
    let mut trimmed = 0u64;
    let mut connections = 0;
    if run.n < have {
        // Trim: the rows past n are the ones a run of n would not have made.
        let ids: Vec<String> = log_ids(run.rng_seed, run.n, have)
            .iter()
            .map(ToString::to_string)
            .collect();
        let deleted = tx
            .rows(
                "DELETE FROM usage_logs WHERE id = ANY($1::text[]::uuid[]) \
                 RETURNING department_id::text, llm_config_id::text, tokens_total::bigint, \"timestamp\" >= date_trunc('month', now())",
                &[(&as_strs(&ids), Type::TEXT_ARRAY)],
            )
            .await
            .context("trimming usage logs")?;
        for r in &deleted {
            if r.get::<_, bool>(3)
                && let (Some(d), Some(l)) = (Uuid::parse(r.get(0)), Uuid::parse(r.get(1)))
            {
                *deltas.entry((d, l)).or_default() -= r.get::<_, i64>(2);
            }
        }
        trimmed = deleted.len() as u64;
    } else if run.n > have {
        progress.set_length(run.n - have);
        let (r, c, d) =
            generate_and_load(tx, target, run, have, anchor, month_start, progress).await?;
        rows = r;
        connections = c;
        deltas = d;
    }
    let (departments, (configs, tokens)): (Vec<String>, (Vec<String>, Vec<i64>)) = deltas
        .iter()
        .filter(|(_, t)| **t != 0)
        .map(|((d, l), t)| (d.to_string(), (l.to_string(), *t)))
        .unzip();
    let quotas_updated = if departments.is_empty() {
        0
    } else {
        tx.exec(
            "UPDATE department_quotas q SET current_usage_tokens = greatest(0, q.current_usage_tokens + v.tokens) \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) v(dept, llm, tokens) \
             WHERE q.department_id = v.dept::uuid AND q.llm_config_id = v.llm::uuid",
            &[
                (&as_strs(&departments), Type::TEXT_ARRAY),
                (&as_strs(&configs), Type::TEXT_ARRAY),
                (&tokens, Type::INT8_ARRAY),
            ],
        )
        .await
        .context("updating quota usage")?
    };
    let n = i64::try_from(run.n).unwrap_or(i64::MAX);
    tx.exec(
        "INSERT INTO public.aidock_seed_runs (identity, usage_logs, anchor) \
         VALUES ($1, $2, to_timestamp($3)) \
         ON CONFLICT (identity) DO UPDATE SET usage_logs = EXCLUDED.usage_logs, updated_at = now()",
        &[
            (&identity, Type::TEXT),
            (&n, Type::INT8),
            (&anchor_epoch, Type::FLOAT8),
        ],
    )
    .await
    .context("recording the seed run")?;
    Ok(UsageReport {
        rows,
        trimmed,
        already: have.min(run.n),
        quotas_updated,
        connections,
    })
}

/// Drop staging tables that no live run holds (a run killed before its transaction ended).
async fn drop_stale_stages(tx: &Transaction<'_>) -> anyhow::Result<()> {
    let rows = tx
        .rows(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname LIKE 'aidock\\_seed\\_stage\\_%'",
            &[],
        )
        .await
        .context("looking for staging tables")?;
    for r in rows {
        let name: String = r.get(0);
        let run = name
            .trim_start_matches(STAGE_PREFIX)
            .split('_')
            .next()
            .unwrap_or_default()
            .to_string();
        let key = crate::db::advisory::key("seed-stage", &run);
        let free: bool = tx
            .one(&format!("SELECT pg_try_advisory_xact_lock({key})"), &[])
            .await
            .context("checking a staging table's run")?
            .get(0);
        if free {
            tx.batch_execute(&format!(
                "DROP TABLE IF EXISTS public.{}",
                crate::db::quote_ident(&name)
            ))
            .await
            .context("dropping a stale staging table")?;
        }
    }
    Ok(())
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

/// Generate rows `from..run.n` and load them; returns (rows, connections used, quota deltas).
async fn generate_and_load(
    tx: &Transaction<'_>,
    target: &Target,
    run: LogRun,
    from: u64,
    anchor: SystemTime,
    month_start: SystemTime,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, usize, Deltas)> {
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
            let mut rng = chunk_rng(rng_seed, k, ROW_STREAM);
            let mut ids = chunk_rng(rng_seed, k, ID_STREAM);
            let mut chunk = Vec::with_capacity(8192);
            for i in k * CHUNK..(k + 1) * CHUNK {
                if i >= n {
                    break;
                }
                let log = fake_log(
                    &mut rng,
                    next_id(&mut ids),
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
        write_logs(sink, receiver, model_ids, month_start, progress.clone())
            .await
            .map(|(written, deltas)| (written, 1, deltas))
    } else {
        staged(tx, target, receivers, model_ids, month_start, progress).await
    };
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("the usage log generator panicked"))?;
    result
}

/// Parallel load: each worker connection COPYs its share into its own unlogged staging table
/// (committed, but invisible to the application); then `tx` moves every row into usage_logs with
/// one INSERT and drops the staging tables, so the logs appear when `tx` commits. The run's
/// advisory lock marks the staging tables as alive; a killed run's are dropped by the next one.
async fn staged(
    tx: &Transaction<'_>,
    target: &Target,
    receivers: Vec<tokio::sync::mpsc::Receiver<Vec<Log>>>,
    model_ids: Arc<Vec<Uuid>>,
    month_start: SystemTime,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, usize, Deltas)> {
    let run = crate::db::random_tag();
    let key = crate::db::advisory::key("seed-stage", &run);
    // Held as long as `tx`, which is as long as the staging tables live (they go at its end).
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({key})"))
        .await
        .context("taking the staging lock")?;
    let names: Vec<String> = (0..receivers.len())
        .map(|i| format!("{STAGE_PREFIX}{run}_{i}"))
        .collect();
    let mut handles = Vec::new();
    for (name, receiver) in names.iter().zip(receivers) {
        let mut client = target.connect().await?;
        let (name, model_ids, progress) = (name.clone(), model_ids.clone(), progress.clone());
        handles.push(tokio::spawn(async move {
            // Each worker's table and rows commit together, in a transaction of its own (a
            // pooler then keeps the COPY on one server connection).
            let tx = client
                .transaction()
                .await
                .context("starting a staging transaction")?;
            tx
                .batch_execute(&format!(
                    "CREATE UNLOGGED TABLE public.{name} (id uuid, user_id uuid, department_id uuid, llm_config_id uuid, \
                     \"timestamp\" timestamptz, tokens_prompt integer, tokens_completion integer, \
                     cost_estimated numeric(14,6), request_details jsonb, response_details jsonb)"
                ))
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .context("creating a staging table")?;
            let sink = crate::db::sql::copy_in(&tx, &copy_sql(&format!("public.{name}")))
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .context("starting COPY into a staging table")?;
            let written = write_logs(sink, receiver, model_ids, month_start, progress).await?;
            tx.commit()
                .await
                .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
                .context("committing a staging table")?;
            Ok(written)
        }));
    }
    let mut written = 0;
    let mut deltas = Deltas::new();
    let mut failure = None;
    for h in handles {
        match h.await {
            Ok(Ok((w, d))) => {
                written += w;
                for (k, t) in d {
                    *deltas.entry(k).or_default() += t;
                }
            }
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => failure = failure.or(Some(anyhow::anyhow!("a COPY worker panicked: {e}"))),
        }
    }
    let moved = async {
        if let Some(e) = failure {
            return Err(e);
        }
        let union = names
            .iter()
            .map(|n| format!("SELECT * FROM public.{n}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        tx.batch_execute(&format!(
            "INSERT INTO usage_logs (id, user_id, department_id, llm_config_id, \"timestamp\", tokens_prompt, \
             tokens_completion, cost_estimated, request_details, response_details) {union}"
        ))
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("moving the staged usage logs into usage_logs")?;
        anyhow::Ok(())
    }
    .await;
    // Dropped in `tx` (gone with its commit); on failure, by the next run (no lock holds them).
    let drop = names
        .iter()
        .map(|n| format!("DROP TABLE IF EXISTS public.{n}"))
        .collect::<Vec<_>>()
        .join("; ");
    if moved.is_ok() {
        tx.batch_execute(&drop)
            .await
            .context("dropping the staging tables")?;
    }
    moved?;
    Ok((written, names.len(), deltas))
}

fn copy_sql(table: &str) -> String {
    format!(
        "COPY {table} (id, user_id, department_id, llm_config_id, \"timestamp\", tokens_prompt, \
         tokens_completion, cost_estimated, request_details, response_details) FROM STDIN (FORMAT binary)"
    )
}

/// Write every chunk a lane is dealt into one COPY; returns rows and this month's tokens.
async fn write_logs(
    sink: tokio_postgres::CopyInSink<bytes::Bytes>,
    mut chunks: tokio::sync::mpsc::Receiver<Vec<Log>>,
    model_ids: Arc<Vec<Uuid>>,
    month_start: SystemTime,
    progress: indicatif::ProgressBar,
) -> anyhow::Result<(u64, Deltas)> {
    let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
    tokio::pin!(writer);
    let mut deltas = Deltas::new();
    let mut written = 0u64;
    while let Some(chunk) = chunks.recv().await {
        for log in &chunk {
            let model = &model_ids[log.model];
            writer
                .as_mut()
                .write(&[
                    &log.id,
                    &log.user,
                    &log.department,
                    model,
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
            if log.at >= month_start {
                *deltas.entry((log.department, *model)).or_default() +=
                    i64::from(log.prompt) + i64::from(log.completion);
            }
        }
        written += chunk.len() as u64;
        progress.inc(chunk.len() as u64);
    }
    writer
        .finish()
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
        .context("finishing COPY")?;
    Ok((written, deltas))
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
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

    #[test]
    fn fake_users_are_deterministic_and_unique() {
        let seeds = Seeds::embedded().expect("seeds");
        let a = fake_users(&seeds, 300, 7);
        let b = fake_users(&seeds, 300, 7);
        assert_eq!(a, b);
        assert_ne!(a, fake_users(&seeds, 300, 8));
        let names: HashSet<&str> = a.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names.len(), 300);
        assert!(!names.contains("admin"));
        assert!(a.iter().all(|u| u.email.ends_with("@example.com")));
    }

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        use argon2::PasswordVerifier as _;
        let params = ArgonParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let h = hasher(&params).expect("params");
        let hashes = hash_all(
            &Hasher::new(Scheme::Argon2id, &params).expect("params"),
            &["one", "two", "three"],
            2,
        )
        .expect("hash");
        assert_eq!(hashes.len(), 3);
        assert!(hashes[0].starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(h.verify_password(b"two", hashes[1].as_str()).is_ok());
        assert!(h.verify_password(b"one", hashes[1].as_str()).is_err());
    }

    #[test]
    fn bad_argon2_parameters_are_usage_errors() {
        let err = hasher(&ArgonParams {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        })
        .expect_err("refused");
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("seed.argon2"), "{err}");
    }

    #[test]
    fn bcrypt_hashes_are_2b_at_cost_12_and_verify() {
        let params = ArgonParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let hashes = hash_all(
            &Hasher::new(Scheme::Bcrypt, &params).expect("bcrypt"),
            &["AdminPassword123"],
            1,
        )
        .expect("hash");
        assert!(hashes[0].starts_with("$2b$12$"), "{}", hashes[0]);
        assert!(bcrypt::verify("AdminPassword123", &hashes[0]).expect("verify"));
        assert!(!bcrypt::verify("wrong", &hashes[0]).expect("verify"));
        assert_eq!(Scheme::of_hash(&hashes[0]), Some(Scheme::Bcrypt));
        assert_eq!(
            Scheme::of_hash("$argon2id$v=19$m=1"),
            Some(Scheme::Argon2id)
        );
        assert_eq!(Scheme::of_hash("plain"), None);
    }
}
