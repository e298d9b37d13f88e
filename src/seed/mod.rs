//! `seed` and `seed --dev`: reference data from `seeds/`, and (dev) the accounts, fake users and
//! usage logs, all in one transaction: a failure or Ctrl-C leaves nothing of the run behind.

pub mod binary;
pub mod bulk;
pub mod dev;
pub mod files;
pub mod logs;
pub mod reference;

use anyhow::Context as _;
use serde::Serialize;

use crate::db::Target;
use crate::db::ident::{Ident, Name};
use crate::db::sql::Sql as _;
use files::Seeds;
use reference::{Counts, TableReport};

/// How to seed (from `seed.*` and the profile).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub argon: dev::ArgonParams,
    /// `seed.password_scheme`; `None`: follow the users already there, else argon2id.
    pub scheme: Option<dev::Scheme>,
    /// Threads hashing passwords (0: one per core).
    pub hash_threads: u32,
    /// Connections loading usage logs side by side (0: one per core).
    pub copy_connections: u32,
    /// Dev-only reference rows (e.g. the local ollama configuration) are left out.
    pub production: bool,
    /// What a connection pooler in between keeps: through a transaction pooler the logs load
    /// over the seed's own connection only (its open transaction would otherwise hold a pooled
    /// server connection while helpers wait for one).
    pub pool_mode: crate::db::pooler::PoolMode,
}

/// What `seed --dev` adds.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub users: u32,
    pub usage_logs: u64,
    pub rng_seed: u64,
}

/// Everything a seed run did.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tables: Vec<TableReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accounts: Option<Counts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fake_users: Option<Counts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_logs: Option<logs::UsageReport>,
    /// The fixed test accounts' credentials (dev only), printed once.
    #[serde(skip)]
    pub credentials: Vec<(String, String, String)>,
    /// How the dev passwords were hashed (dev only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_scheme: Option<PasswordScheme>,
}

/// The scheme the dev passwords were stored in, and whether it was taken from the users already
/// in the database (an adopted database keeps one scheme).
#[derive(Debug, Clone, Serialize)]
pub struct PasswordScheme {
    pub scheme: &'static str,
    pub followed_existing_users: bool,
    /// Accounts already there whose hash was of another scheme, hashed again in this one (the
    /// scheme was chosen: `seed.password_scheme`).
    pub rehashed: u64,
}

/// The one scheme every user's hash is in, if they agree (and are ours to recognise).
async fn existing_scheme(client: &tokio_postgres::Client) -> anyhow::Result<Option<dev::Scheme>> {
    let rows = client
        .rows(
            "SELECT DISTINCT substr(hashed_password, 1, 10) FROM users",
            &[],
        )
        .await
        .context("reading the users' password schemes")?;
    let schemes: Vec<Option<dev::Scheme>> = rows
        .iter()
        .map(|r| dev::Scheme::of_hash(r.get::<_, &str>(0)))
        .collect();
    Ok(match schemes.first() {
        Some(Some(first)) if schemes.iter().all(|s| *s == Some(*first)) => Some(*first),
        _ => None,
    })
}

/// Load the seed files: a directory (`--seeds-dir`) or the built-in set.
///
/// # Errors
/// Invalid files.
pub fn load(dir: Option<&std::path::Path>) -> anyhow::Result<Seeds> {
    match dir {
        Some(dir) => Seeds::from_dir(dir),
        None => Seeds::embedded(),
    }
}

/// Seed the database at `target`.
///
/// # Errors
/// Connection failures, a schema that is not migrated, failing statements.
pub async fn seed(
    options: &Options,
    target: &Target,
    seeds: &Seeds,
    overwrite: bool,
    dev_options: Option<DevOptions>,
    progress: &indicatif::ProgressBar,
    confirmation: &crate::db::ha::Confirm,
) -> anyhow::Result<Report> {
    if let Some(d) = &dev_options {
        check_bounds(d)?;
    }
    // Connect first: an unreachable server is said at once, not after seconds of hashing.
    let (mut client, host) = target.connect_to_host().await?;
    let sessions_hold = options.pool_mode.sessions_hold(&client).await;
    crate::db::require_primary(&client, target).await?;
    let migrated: bool = client
        .one("SELECT to_regclass('department_quotas') IS NOT NULL", &[])
        .await
        .context("checking the schema")?
        .get(0);
    if !migrated {
        anyhow::bail!(
            "database `{}` has no AI Dock tables yet; run `aidock-provision init` (or `migrate up`) first",
            target.dbname()
        );
    }
    // The schema seeds are written for is the migrations': not one an Alembic revision of the
    // backend's own changed since (a dropped default fails a row with no word of why).
    let foreign = crate::migrate::foreign_revisions(&client).await?;
    if !foreign.is_empty() {
        return Err(crate::migrate::ForeignRevision { revisions: foreign }.into());
    }
    // Hash before the transaction opens: CPU-heavy, and no transaction should stay open meanwhile.
    let prepared = match &dev_options {
        Some(opts) => {
            let accounts = dev::accounts(seeds);
            let fakes = dev::fake_users(seeds, opts.users, opts.rng_seed);
            let (scheme, followed) = match options.scheme {
                Some(scheme) => (scheme, false),
                None => match existing_scheme(&client).await? {
                    Some(scheme) => (scheme, true),
                    None => (dev::Scheme::Argon2id, false),
                },
            };
            let hasher = dev::Hasher::new(scheme, &options.argon)?;
            let threads = per_core(options.hash_threads);
            // The documented accounts get their own hashes; the fake users share one password,
            // so they share one hash (which makes `--users 100000` practical, even with bcrypt).
            let mut passwords: Vec<String> = accounts.iter().map(|a| a.password.clone()).collect();
            if let Some(fake) = fakes.first() {
                passwords.push(fake.password.clone());
            }
            let computed = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = passwords.iter().map(String::as_str).collect();
                dev::hash_all(&hasher, &refs, threads)
            })
            .await
            .context("the hashing task failed")??;
            let shared = computed.get(accounts.len()).cloned().unwrap_or_default();
            let mut all = computed[..accounts.len()].to_vec();
            all.extend(std::iter::repeat_n(shared, fakes.len()));
            Some((accounts, fakes, all, scheme, followed))
        }
        None => None,
    };

    // Staging tables a killed run left go first, each in a committed transaction of its own.
    if dev_options.is_some() {
        logs::drop_stale_stages(&mut client).await?;
    }
    let stages = logs::Stages::default();
    let tx = client
        .transaction()
        .await
        .context("starting the seed transaction")?;
    let work = async {
        tx.batch_execute(logs::SESSION_SETTINGS)
            .await
            .context("setting the seed's timeouts")?;
        // Dev seeds one at a time, from the start: a bulk load locks `users` whole, and a second
        // run holding a row of it (an account it inserted) would deadlock with it.
        if dev_options.is_some() {
            tx.batch_execute(&format!(
                "SELECT pg_advisory_xact_lock({})",
                crate::db::advisory::key("seed", "runs")
            ))
            .await
            .context("taking the seed lock")?;
        }
        let tables = reference::seed(&tx, seeds, overwrite, options.production).await?;
        let mut report = Report {
            tables,
            accounts: None,
            fake_users: None,
            usage_logs: None,
            credentials: Vec::new(),
            password_scheme: None,
        };
        if let Some((accounts, fakes, hashes, scheme, followed)) = prepared {
            let mut rehashed = 0;
            let (account_hashes, fake_hashes) = hashes.split_at(accounts.len());
            let existing = if overwrite {
                dev::Existing::Overwrite
            } else {
                dev::Existing::Keep
            };
            report.accounts =
                Some(dev::insert_users(&tx, &accounts, account_hashes, existing).await?);
            // The dataset follows the flags: fake users of an earlier run's flags that these
            // do not make go (with their logs), as the logs of other flags do.
            let removed = match (logs::previous_flags(&tx).await?, &dev_options) {
                (Some((seed_before, users_before)), Some(now))
                    if (seed_before, users_before) != (now.rng_seed, now.users) =>
                {
                    let earlier = dev::fake_users(seeds, users_before, seed_before);
                    dev::remove_other_fake_users(&tx, &earlier, &fakes, &accounts).await?
                }
                _ => 0,
            };
            // Many fake users into few: in pg_restore's order (see bulk.rs).
            let users_table = Name {
                schema: Some(Ident::new("public")),
                name: Ident::new("users"),
            };
            let deferred = if overwrite {
                None
            } else {
                bulk::defer(&tx, &users_table, fakes.len() as u64).await?
            };
            let existing = if deferred.is_some() {
                dev::Existing::KeepUnindexed
            } else {
                existing
            };
            let mut fake_counts = dev::insert_users(&tx, &fakes, fake_hashes, existing).await?;
            fake_counts.removed = removed;
            report.fake_users = Some(fake_counts);
            if let Some(deferred) = deferred {
                deferred.rebuild(&tx).await?;
            }
            // A scheme chosen by setting holds for the accounts kept too.
            if options.scheme.is_some() && !overwrite {
                rehashed = dev::rehash_other_schemes(&tx, &accounts, account_hashes, scheme)
                    .await?
                    + dev::rehash_other_schemes(&tx, &fakes, fake_hashes, scheme).await?;
            }
            report.password_scheme = Some(PasswordScheme {
                scheme: scheme.as_str(),
                followed_existing_users: followed,
                rehashed,
            });
            report.credentials = accounts
                .iter()
                .map(|a| (a.username.clone(), a.email.clone(), a.password.clone()))
                .collect();
        }
        // Usage logs (loaded side by side over several connections when the server allows)
        // appear with everything else when this one transaction commits.
        if let Some(opts) = &dev_options {
            report.usage_logs = Some(
                logs::load(
                    &tx,
                    target,
                    logs::LogRun {
                        n: opts.usage_logs,
                        days: seeds.dev.usage_days,
                        rng_seed: opts.rng_seed,
                        users: opts.users,
                        connections: if sessions_hold {
                            per_core(options.copy_connections)
                        } else {
                            1
                        },
                    },
                    &stages,
                    progress,
                )
                .await?,
            );
        }
        anyhow::Ok(report)
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(crate::error::interrupted(
            "interrupted (Ctrl-C): the seed transaction was rolled back; nothing of this run was kept. The rows it had already written stay as dead space (and their WAL) until autovacuum reclaims them; after a large run, `VACUUM usage_logs` does it at once"
        )),
    };
    progress.finish_and_clear();
    let result = match result {
        Ok(report) => tx
            .commit()
            .await
            .map(|()| report)
            .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))
            .context("committing the seed data"),
        Err(e) => {
            drop(tx);
            Err(e)
        }
    };
    // Committed: its staging tables went with the transaction that moved them in. Otherwise,
    // whatever ended the run, they go now.
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            if !stages.is_empty()
                && let Err(clean) = stages.clean(&client, target).await
            {
                return Err(crate::error::and_also(&e, &format!("{clean:#}")));
            }
            return Err(e);
        }
    };
    // Under a URL listing several hosts: the commit must be on a standby of the node that made
    // it (db::ha: a primary the cluster has left would otherwise report a lost seed as done).
    crate::db::ha::confirm(&client, target, host, "the seed", confirmation).await?;
    Ok(report)
}

/// The largest `--users` and `--usage-logs` a run accepts (memory for users; a day's work for
/// logs), said before anything starts.
pub const MAX_USERS: u32 = 1_000_000;
pub const MAX_USAGE_LOGS: u64 = 1_000_000_000;

fn check_bounds(d: &DevOptions) -> anyhow::Result<()> {
    if d.users > MAX_USERS {
        return Err(crate::error::usage(format!(
            "--users {} is more than the {MAX_USERS} fake users seed --dev makes; ask for fewer",
            d.users
        )));
    }
    if d.usage_logs > MAX_USAGE_LOGS {
        return Err(crate::error::usage(format!(
            "--usage-logs {} is more than the {MAX_USAGE_LOGS} seed --dev loads; ask for fewer",
            d.usage_logs
        )));
    }
    Ok(())
}

/// A configured count where 0 means one per core.
fn per_core(configured: u32) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n as usize,
    }
}

impl std::fmt::Display for Report {
    /// For people: per table inserted / updated / kept, then the test credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, name: &str, c: &Counts| {
            writeln!(
                f,
                "{name:<20} {} inserted, {} updated, {} kept{}",
                c.inserted,
                c.updated,
                c.kept,
                if c.removed > 0 {
                    format!(
                        ", {} removed (an earlier run's --users / --rng-seed made them)",
                        c.removed
                    )
                } else {
                    String::new()
                }
            )
        };
        for t in &self.tables {
            line(f, t.table, &t.counts)?;
        }
        if let Some(c) = &self.accounts {
            line(f, "test accounts", c)?;
        }
        if let Some(c) = &self.fake_users {
            line(f, "fake users", c)?;
        }
        if let Some(u) = &self.usage_logs {
            writeln!(
                f,
                "{:<20} {} inserted, {} removed{}, {} kept; {} quotas' current usage set to this month's tokens",
                "usage_logs",
                u.rows,
                u.trimmed,
                if u.earlier_release > 0 {
                    format!(" ({} made by an earlier release's seed)", u.earlier_release)
                } else {
                    String::new()
                },
                u.already,
                u.quotas_updated
            )?;
        }
        if let Some(p) = &self.password_scheme {
            writeln!(
                f,
                "{:<20} {}{}",
                "passwords",
                p.scheme,
                if p.followed_existing_users {
                    " (the scheme of the users already in the database; set seed.password_scheme to choose)".to_string()
                } else if p.rehashed > 0 {
                    format!(
                        " ({} account(s) kept from an earlier run had another scheme's hash and were hashed again in this one)",
                        p.rehashed
                    )
                } else {
                    String::new()
                }
            )?;
        }
        // The passwords are printed when this run wrote the accounts; on later runs, where.
        let wrote = self
            .accounts
            .as_ref()
            .is_some_and(|a| a.inserted + a.updated > 0)
            || self
                .password_scheme
                .as_ref()
                .is_some_and(|p| p.rehashed > 0);
        if !self.credentials.is_empty() && wrote {
            writeln!(f, "\ntest accounts (dev only):")?;
            for (user, email, password) in &self.credentials {
                writeln!(f, "  {user:<10} {email:<22} {password}")?;
            }
        } else if !self.credentials.is_empty() {
            let names: Vec<&str> = self
                .credentials
                .iter()
                .map(|(u, _, _)| u.as_str())
                .collect();
            writeln!(
                f,
                "\ntest accounts (dev only): {} were there already; their passwords are in the seed files (seeds/dev.toml) and README",
                names.join(", ")
            )?;
        }
        Ok(())
    }
}
