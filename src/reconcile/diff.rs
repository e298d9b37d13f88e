//! `migrate diff` and `verify --fix`: the server is the normaliser. The schema the migrations
//! make and the desired schema are both built in scratch databases (from `template0`, owned by
//! the migrating role) and read back as catalogs; [`crate::schema::ddl`] writes the DDL between
//! them. Before anything is written, the generated pair is tested where it was made: `up` is
//! applied on top of the migrations and must give the desired catalog, then `down` must give
//! back the starting one. A pair that fails its test is never written.

use anyhow::Context as _;
use serde::Serialize;
use std::fmt::Write as _;
use tokio_postgres::Client;

use super::scratch::{self, Scratch};
use super::verify;
use crate::db::Target;
use crate::db::trust::CatalogSession;
use crate::error;
use crate::migrate::runner;
use crate::migrate::source::{self, Migration, NO_TRANSACTION, Script};
use crate::schema::catalog::{self, Catalog, ReadOptions};
use crate::schema::ddl::{self, Direction, Place};

/// One generated file.
#[derive(Debug, Clone, Serialize)]
pub struct File {
    pub name: String,
    pub text: String,
}

/// What `migrate diff` made.
#[derive(Debug, Clone, Serialize)]
pub struct Generated {
    /// Up and down files, in version order (empty: the migrations already make that schema).
    pub files: Vec<File>,
    /// Steps that lose data (allowed with `--allow-data-loss`).
    pub lossy: Vec<String>,
    /// Guesses and limits the reviewer must read.
    pub notes: Vec<String>,
    /// The live database already has the desired schema (a change made by hand): the next step
    /// is recording the pair, not `migrate up`.
    #[serde(skip)]
    pub live_has_it: bool,
}

/// Where the desired schema comes from: `(name for messages, SQL text)`, applied in order.
pub type Desired = Vec<(String, String)>;

/// Read a `.sql` file, or every `.sql` file of a directory in name order.
///
/// # Errors
/// A missing or unreadable path, or a directory without `.sql` files (exit 2).
pub fn read_desired(path: &std::path::Path) -> anyhow::Result<Desired> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| {
            error::usage(format!(
                "cannot read the desired schema `{}`: {e}",
                p.display()
            ))
        })
    };
    if path.is_dir() {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
            .map_err(|e| error::usage(format!("cannot read `{}`: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(error::usage(format!(
                "`{}` holds no .sql file; pass a .sql file (e.g. an edited `pg_dump -s`) or a directory of them",
                path.display()
            )));
        }
        files
            .iter()
            .map(|p| Ok((p.display().to_string(), read(p)?)))
            .collect()
    } else {
        Ok(vec![(path.display().to_string(), read(path)?)])
    }
}

/// Everything the engine needs to build scratch databases.
pub struct Scratchpad<'a> {
    pub admin: &'a Target,
    /// The role migrations run as (owns the scratch databases, runs every script).
    pub app: &'a Target,
    pub opts: &'a runner::Options,
}

const READ: ReadOptions<'static> = ReadOptions {
    exclude: &verify::ENGINE_TABLES,
    meta: true,
    platform: false,
};

fn pseudo(version: i64, name: &str, up: Script, down: Option<Script>) -> Migration {
    Migration {
        version,
        name: name.to_string(),
        up,
        down,
    }
}

/// Build the migrations' schema and the desired one, write the pair between them, test it.
///
/// # Errors
/// Refused lossy steps (exit 3, naming them), a desired file that does not apply (its file and
/// line), a generated pair that fails its test (a bug: the drift is listed, nothing written).
pub async fn generate(
    pad: &Scratchpad<'_>,
    migrations: &[Migration],
    desired: &Desired,
    name: &str,
    allow_data_loss: bool,
) -> anyhow::Result<Generated> {
    if !source::is_valid_slug(name) {
        return Err(error::usage(format!(
            "migration name `{name}` must be lower-case letters, digits and underscores, e.g. add_user_avatar"
        )));
    }
    match in_scratch(
        pad,
        migrations,
        Want::Schema(desired),
        Job::Write {
            name,
            allow_data_loss,
        },
    )
    .await?
    {
        Done::Written(generated, _) => Ok(generated),
        Done::Compared(_) => unreachable!("a write job writes"),
    }
}

/// `migrate capture`: the pair from what the migrations make to the live schema (read on
/// `live`, the app's login), tested on the migrations' scratch database (up reaches the live
/// catalog, down returns); with the live catalog it was made for.
///
/// # Errors
/// As [`generate`].
pub async fn capture(
    pad: &Scratchpad<'_>,
    migrations: &[Migration],
    live: &Client,
    name: &str,
    allow_data_loss: bool,
) -> anyhow::Result<(Generated, Catalog)> {
    if !source::is_valid_slug(name) {
        return Err(error::usage(format!(
            "migration name `{name}` must be lower-case letters, digits and underscores, e.g. add_phone_number"
        )));
    }
    match in_scratch(
        pad,
        migrations,
        Want::Live(live),
        Job::Write {
            name,
            allow_data_loss,
        },
    )
    .await?
    {
        Done::Written(generated, reached) => Ok((generated, *reached)),
        Done::Compared(_) => unreachable!("a write job writes"),
    }
}

/// The live catalog as `capture` reads it (to check, when recording, that the schema is still
/// the one the pair was made for).
///
/// # Errors
/// Connections, catalog reads.
pub async fn live_catalog(live: &impl tokio_postgres::GenericClient) -> anyhow::Result<Catalog> {
    catalog::read(live, READ).await
}

/// Where the desired schema and the migrations' disagree: each difference, the migrations'
/// side as expected (`migrate verify --models`: the models are what should change).
///
/// # Errors
/// A desired schema that does not apply, a migration that does not replay, connections.
pub async fn compare(
    pad: &Scratchpad<'_>,
    migrations: &[Migration],
    desired: &Desired,
) -> anyhow::Result<Vec<crate::schema::diff::Drift>> {
    match in_scratch(pad, migrations, Want::Schema(desired), Job::Compare).await? {
        Done::Compared(drift) => Ok(drift),
        Done::Written(..) => unreachable!("a compare job compares"),
    }
}

/// The schema to reach: a desired schema (built in a scratch database of its own), or the live
/// database itself (read on the app's login).
enum Want<'a> {
    Schema(&'a Desired),
    Live(&'a Client),
}

/// What to do with the two schemas once built.
enum Job<'a> {
    Write {
        name: &'a str,
        allow_data_loss: bool,
    },
    Compare,
}

enum Done {
    /// The pair, and the catalog it reaches.
    Written(Generated, Box<Catalog>),
    Compared(Vec<crate::schema::diff::Drift>),
}

/// The two scratch databases (the migrations' schema, the desired one), `job` done between
/// them, both dropped whatever happens.
async fn in_scratch(
    pad: &Scratchpad<'_>,
    migrations: &[Migration],
    want: Want<'_>,
    job: Job<'_>,
) -> anyhow::Result<Done> {
    let admin = pad.admin.connect().await?;
    scratch::require_createdb(&admin, pad.admin).await?;
    scratch::drop_stale_scratch_databases(&admin).await;
    // The encoding and locale of the admin connection's database.
    let (locale, _) = scratch::live_settings(&admin).await?;
    // Schema public as `init` leaves it (owned by the app's role, no CREATE for PUBLIC), in
    // both: on PostgreSQL 13 and 14 template0 gives it to the bootstrap superuser, and a
    // desired schema dumped from an app database says `ALTER SCHEMA public OWNER TO` the role.
    // The platform's schemas (outside migrate.schemas), and the extensions the admin made, are
    // copied from the app's database into both (when it exists: a project not yet initialised
    // has neither), read on the admin's catalog session there (db::trust).
    let source = match CatalogSession::connect(pad.admin, pad.app.dbname()).await {
        Ok(mut session) => {
            let mut source = scratch::Source::read(&mut session, pad.app.user()).await?;
            source.locale = locale;
            source.public = Some((pad.app.user().to_string(), false));
            source
        }
        Err(e) if !crate::schema::scope::owned().is_empty() => return Err(e),
        Err(_) => scratch::Source::empty(locale, pad.app.user()),
    };
    let current = Scratch::create(&admin, pad.admin, &source.locale, pad.opts.pool_mode).await?;
    // The desired schema's own scratch database (none when the live database is the target).
    let target = match want {
        Want::Live(_) => None,
        Want::Schema(_) => {
            match Scratch::create(&admin, pad.admin, &source.locale, pad.opts.pool_mode).await {
                Ok(t) => Some(t),
                Err(e) => {
                    let _ = current.drop(&admin).await;
                    return Err(e);
                }
            }
        }
    };
    let mut prepared = Ok(());
    for scratch in std::iter::once(&current).chain(target.as_ref()) {
        prepared = prepared.and(scratch.furnish(pad.admin, &source).await);
        prepared = prepared.and(scratch.hand_over(&admin, pad.app).await);
    }
    if let Err(e) = prepared {
        let _ = current.drop(&admin).await;
        if let Some(t) = target {
            let _ = t.drop(&admin).await;
        }
        return Err(e);
    }
    let work = async {
        let mut here = pad.app.with_dbname(&current.name).connect().await?;
        let versions: Vec<i64> = migrations.iter().map(|m| m.version).collect();
        let (from, to) = match (&want, &target) {
            (Want::Schema(desired), Some(target)) => {
                let mut there = pad.app.with_dbname(&target.name).connect().await?;
                let (replayed, applied) = tokio::join!(
                    runner::replay(&mut here, migrations, &versions, pad.opts),
                    apply_desired(&mut there, desired, pad.app.user(), pad.opts)
                );
                replayed
                    .map_err(|e| verify::explain_replay_error(e, pad.app.user()))
                    .context("replaying the migrations in a scratch database")?;
                applied?;
                let (from, to) =
                    tokio::join!(catalog::read(&here, READ), catalog::read(&there, READ));
                (from?, to?)
            }
            (Want::Live(live), _) => {
                // The live catalog is read while the migrations replay.
                let (replayed, to) = tokio::join!(
                    runner::replay(&mut here, migrations, &versions, pad.opts),
                    catalog::read(*live, READ)
                );
                replayed
                    .map_err(|e| verify::explain_replay_error(e, pad.app.user()))
                    .context("replaying the migrations in a scratch database")?;
                (catalog::read(&here, READ).await?, to?)
            }
            (Want::Schema(_), None) => unreachable!("a desired schema has its scratch database"),
        };
        match job {
            Job::Compare => {
                let mut drift = crate::schema::diff::diff(&from, &to);
                drift.retain(|d| !ddl::init_owned(&(d.kind.clone(), d.object.clone())));
                Ok(Done::Compared(drift))
            }
            Job::Write {
                name,
                allow_data_loss,
            } => {
                let mut generated = generate_in(
                    pad,
                    migrations,
                    name,
                    allow_data_loss,
                    &mut here,
                    &from,
                    &to,
                )
                .await?;
                // A desired schema the live database already has (dumped after a change by
                // hand): `migrate up` would fail on it.
                if matches!(want, Want::Schema(_)) && !generated.files.is_empty() {
                    generated.live_has_it = match pad.app.connect().await {
                        Ok(live) => catalog::read(&live, READ)
                            .await
                            .is_ok_and(|live| crate::schema::diff::diff(&to, &live).is_empty()),
                        Err(_) => false,
                    };
                }
                Ok(Done::Written(generated, Box::new(to)))
            }
        }
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => Err(error::interrupted("interrupted (Ctrl-C); the scratch databases were dropped")),
    };
    let a = current.drop(&admin).await;
    let b = match target {
        Some(t) => t.drop(&admin).await,
        None => Ok(()),
    };
    let done = result?;
    a?;
    b?;
    Ok(done)
}

/// The pair between `from` (the migrations' catalog, built on `here`) and `to` (the desired),
/// tested on `here`: up reaches `to`, down comes back to `from`.
async fn generate_in(
    pad: &Scratchpad<'_>,
    migrations: &[Migration],
    name: &str,
    allow_data_loss: bool,
    here: &mut Client,
    from: &Catalog,
    to: &Catalog,
) -> anyhow::Result<Generated> {
    let role = pad.app.user().to_string();
    let up = ddl::plan(from, to, &role, Direction::Up);
    let down = ddl::plan(to, from, &role, Direction::Down);
    // What the plan needs that the tool does not write: refused, each named.
    let unsupported: Vec<String> = up
        .unsupported
        .iter()
        .cloned()
        .chain(
            down.unsupported
                .iter()
                .map(|u| format!("in the down script: {u}")),
        )
        .collect();
    if !unsupported.is_empty() {
        return Err(error::refused(format!(
            "the change needs steps migrate diff does not write, so nothing was written:\n  {}",
            unsupported.join("\n  ")
        )));
    }
    if up.is_empty() {
        // Nothing to write, but the schemas differ: what differs is beyond the engine (a
        // partition key, a change PostgreSQL cannot alter). Refused, never "no difference".
        let mut drift = crate::schema::diff::diff(to, from);
        drift.retain(|d| !ddl::init_owned(&(d.kind.clone(), d.object.clone())));
        if !drift.is_empty() {
            let mut why: Vec<String> = drift.iter().map(ToString::to_string).collect();
            why.extend(up.notes.iter().map(|n| format!("note: {n}")));
            return Err(error::refused(format!(
                "the desired schema differs in ways migrate diff does not write, so nothing was written; write this migration by hand (`migrate new`):\n  {}",
                why.join("\n  ")
            )));
        }
        return Ok(Generated {
            files: Vec::new(),
            lossy: Vec::new(),
            notes: up.notes,
            live_has_it: false,
        });
    }
    if !up.lossy.is_empty() && !allow_data_loss {
        return Err(error::refused(format!(
            "the change loses data, so no migration was written:\n  {}\nmake the desired schema keep them, or pass --allow-data-loss to write it anyway",
            up.lossy.join("\n  ")
        )));
    }
    let next = migrations.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    let pairs = files(&up, &down, next, name);
    // The test: up on top of the migrations reaches the desired catalog; down comes back.
    // Named as what they are: generated, and not written anywhere (yet).
    let generated: Vec<Migration> = pairs
        .iter()
        .map(|(v, n, u, d)| {
            pseudo(
                *v,
                n,
                Script::new(format!("the generated {v:04}_{n}.up.sql (not written)"), u),
                Some(Script::new(
                    format!("the generated {v:04}_{n}.down.sql (not written)"),
                    d,
                )),
            )
        })
        .collect();
    // The failure first, then what was tried.
    let failed = |which: &str, e: anyhow::Error| {
        let text = format!("{e:#}");
        if text.contains("(SQLSTATE 42846)") {
            // A column type change PostgreSQL has no cast for: how values convert is the
            // author's call (epoch seconds or milliseconds?), not a guess of ours.
            return error::refused(format!(
                "a column's type changes between types PostgreSQL has no cast for, so nothing was written: {text}\nmigrate diff does not guess how existing values convert; write this migration by hand (`aidock-provision migrate new NAME`) with ALTER TABLE ... ALTER COLUMN ... TYPE ... USING <expression>. The scripts tried:\n{}",
                show(&pairs)
            ));
        }
        anyhow::anyhow!(
            "{e:#}\n\nthe generated {which} script failed its test in a scratch database, so nothing was written; this is a limit of the diff engine, please report it. The scripts tried:\n{}",
            show(&pairs)
        )
    };
    for m in &generated {
        runner::run_script(here, m, &m.up, pad.opts)
            .await
            .map_err(|e| failed("up", e))?;
    }
    let reached = catalog::read(&*here, READ).await?;
    check_same(to, &reached, "up", &pairs)?;
    for m in generated.iter().rev() {
        let down = m.down.as_ref().expect("generated pairs have a down");
        runner::run_script(here, m, down, pad.opts)
            .await
            .map_err(|e| failed("down", e))?;
    }
    let back = catalog::read(&*here, READ).await?;
    check_same(from, &back, "down", &pairs)?;
    Ok(Generated {
        files: pairs
            .into_iter()
            .flat_map(|(v, n, u, d)| {
                [
                    File {
                        name: format!("{v:04}_{n}.up.sql"),
                        text: u,
                    },
                    File {
                        name: format!("{v:04}_{n}.down.sql"),
                        text: d,
                    },
                ]
            })
            .collect(),
        lossy: up.lossy,
        // The down's own notes too (a column it adds back goes last), said as the down's.
        notes: up
            .notes
            .into_iter()
            .chain(
                down.notes
                    .into_iter()
                    .map(|n| format!("in the down script: {n}")),
            )
            .collect(),
        live_has_it: false,
    })
}

fn check_same(
    want: &Catalog,
    got: &Catalog,
    which: &str,
    pairs: &[(i64, String, String, String)],
) -> anyhow::Result<()> {
    let mut drift = crate::schema::diff::diff(want, got);
    drift.retain(|d| !ddl::init_owned(&(d.kind.clone(), d.object.clone())));
    if drift.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the generated {which} script does not reach the schema it should (so nothing was written); this is a limit of the diff engine, please report it. What differs afterwards:\n  {}\nThe scripts tried:\n{}",
        drift
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  "),
        show(pairs)
    )
}

fn show(pairs: &[(i64, String, String, String)]) -> String {
    pairs
        .iter()
        .map(|(v, n, u, d)| {
            format!("-- ==== {v:04}_{n}.up.sql\n{u}\n-- ==== {v:04}_{n}.down.sql\n{d}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Apply the desired schema's files, each in one transaction, as psql would send them.
async fn apply_desired(
    client: &mut Client,
    desired: &Desired,
    role: &str,
    opts: &runner::Options,
) -> anyhow::Result<()> {
    for (file, text) in desired {
        // In one transaction; where a statement cannot run in one (CREATE INDEX CONCURRENTLY,
        // a new enum value used by the same file), again as psql runs a file: each statement
        // on its own (the first attempt was rolled back; the database is a scratch one).
        let text = without_create_schema_public(text);
        let mut script = Script::new(file.clone(), &text);
        let m = pseudo(0, "desired_schema", script.clone(), None);
        let mut result = runner::run_script(client, &m, &script, opts).await;
        if let Err(e) = &result {
            let text = format!("{e:#}");
            if !script.no_transaction
                && (text.contains("(SQLSTATE 25001)") || text.contains("(SQLSTATE 55P04)"))
            {
                script.no_transaction = true;
                let m = pseudo(0, "desired_schema", script.clone(), None);
                result = runner::run_script(client, &m, &script, opts).await;
            }
        }
        let needs = match &result {
            Err(e) => needed_extension(client, &format!("{e:#}")).await,
            Ok(()) => None,
        };
        result.map_err(|e| {
                let cause = format!("{e:#}").replacen(
                    "migration 0000_desired_schema failed at ",
                    "the desired schema failed at ",
                    1,
                );
                // What the runner says of a migration run outside a transaction is not news
                // for a file applied to a scratch database.
                let cause = cause
                    .lines()
                    .filter(|l| !l.starts_with("it ran outside a transaction"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let rights = if cause.contains("(SQLSTATE 42501)") {
                    format!(
                        "\nthe desired schema is built as `{role}`, the role the migrations run as, which may not run that statement (it needs a superuser or another owner); a migration holding it would fail the same way under `migrate up`: leave it out of the desired file and have the admin run it by hand",
                    )
                } else if let Some(ext) = &needs {
                    format!(
                        "\nit needs the extension `{ext}`, which `{role}` (the role the migrations run as) may not create: have the admin create it in the live database (`CREATE EXTENSION \"{ext}\";` as a superuser, or list it where your platform installs extensions), then run this again; the scratch database gets the live database's extensions",
                    )
                } else {
                    String::new()
                };
                anyhow::anyhow!(
                    "{cause}{rights}\n(`{file}` was applied as psql applies a file, in a scratch database; nothing was written)"
                )
            })?;
    }
    Ok(())
}

/// `pg_dump -s -n public` (PostgreSQL 15 and later) writes `CREATE SCHEMA public;`, which fails
/// in every database (public is there from the start): that line becomes a comment, so such a
/// dump is a desired schema as it is.
fn without_create_schema_public(text: &str) -> String {
    text.lines()
        .map(|line| {
            let bare = line.trim().trim_end_matches(';').trim();
            let words: Vec<&str> = bare.split_whitespace().collect();
            if words.len() == 3
                && words[0].eq_ignore_ascii_case("create")
                && words[1].eq_ignore_ascii_case("schema")
                && (words[2].eq_ignore_ascii_case("public") || words[2] == "\"public\"")
                && line.trim_end().ends_with(';')
            {
                format!("-- {line} (left out: schema public is in every database)")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The extension a failed statement needed, when the failure says so: a type that does not
/// exist named as an extension this server has (citext, hstore, ltree, vector ...), or a function
/// a well-known extension makes (`uuid_generate_v4()`: uuid-ossp).
async fn needed_extension(client: &Client, error: &str) -> Option<String> {
    let quoted = |after: &str| {
        let rest = error.split(after).nth(1)?;
        let rest = rest.strip_prefix('"')?;
        Some(rest.split('"').next()?.to_string())
    };
    let candidate = if error.contains("(SQLSTATE 42704)") {
        quoted("type ")?
    } else if error.contains("(SQLSTATE 42883)") {
        let function = quoted("function ").or_else(|| {
            error
                .split("function ")
                .nth(1)
                .map(|r| r.split('(').next().unwrap_or(r).to_string())
        })?;
        match function.rsplit('.').next().unwrap_or(&function) {
            "uuid_generate_v1" | "uuid_generate_v4" | "uuid_nil" => "uuid-ossp".to_string(),
            "crypt" | "gen_salt" | "digest" | "hmac" => "pgcrypto".to_string(),
            _ => return None,
        }
    } else {
        return None;
    };
    let name = candidate
        .rsplit('.')
        .next()
        .unwrap_or(&candidate)
        .to_string();
    let available = crate::db::sql::Sql::opt(
        client,
        "SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = $1",
        &[(&name, tokio_postgres::types::Type::TEXT)],
    )
    .await
    .ok()
    .flatten()
    .is_some();
    available.then_some(name)
}

/// The pairs to write: `(version, name, up, down)`. The main pair always; an enum-values pair
/// before it and a concurrent pair after it when there is such work.
fn files(
    up: &ddl::Plan,
    down: &ddl::Plan,
    next: i64,
    name: &str,
) -> Vec<(i64, String, String, String)> {
    let mut pairs = Vec::new();
    let mut version = next;
    for (place, suffix, no_tx, what) in [
        (
            Place::Pre,
            "_enum_values",
            true,
            "adds enum values (ALTER TYPE ... ADD VALUE cannot be used by the same transaction that adds it)",
        ),
        (Place::Main, "", false, "runs in one transaction"),
        (
            Place::Post,
            "_concurrently",
            true,
            "builds indexes CONCURRENTLY and validates constraints outside a transaction, so writes go on meanwhile; each statement is idempotent, so a failed run can be re-run",
        ),
    ] {
        let (u, d) = (up.script(place), down.script(place));
        if u.is_none() && d.is_none() {
            continue;
        }
        let marker = if no_tx {
            format!("{NO_TRANSACTION}\n")
        } else {
            String::new()
        };
        let label = format!("{name}{suffix}");
        let head = format!(
            "{marker}-- {version:04} {label}: written by `aidock-provision migrate diff`; {what}.\n-- Review it: it was tested (up, then down) on a scratch copy of the schema, not on your data.\n\n"
        );
        let up_text = format!(
            "{head}{}\n",
            u.unwrap_or_else(|| "-- nothing to do in this step\n".into())
        );
        let down_head = format!("{marker}-- Reverts {version:04} {label}.\n\n");
        let down_text = format!(
            "{down_head}{}\n",
            d.unwrap_or_else(|| "-- nothing to undo in this step\n".into())
        );
        pairs.push((version, label, up_text, down_text));
        version += 1;
    }
    pairs
}

/// `verify --fix`'s SQL, whole and in its two parts (two sessions: see [`fix_sql`]).
#[derive(Debug, Clone)]
pub struct Fix {
    /// Everything, as printed.
    pub text: String,
    /// What the admin runs (ownership, and what objects other roles own need), if anything.
    pub admin: Option<String>,
    /// What the migrating role runs, on its own login.
    pub role: String,
}

/// `verify --fix`: the SQL that turns `live` back into `expected` (printed, never run). Owner
/// changes (and what objects owned by other roles need) come first, as the admin, in a
/// transaction of their own: ownership only, nothing that runs the app's code. Everything else
/// runs as `role`, the migrating role, on its own login (so what it makes is owned as the
/// migrations' objects are; and never through `SET ROLE` from the admin's session, which the
/// app's code could undo: see `db::trust`).
#[must_use]
pub fn fix_sql(expected: &Catalog, live: &Catalog, role: &str) -> Fix {
    let plan = ddl::plan_with(
        live,
        expected,
        role,
        ddl::Options {
            direction: Direction::Up,
            one_transaction: false,
            guess_renames: true,
            public_privileges: true,
        },
    );
    let mut text = String::new();
    let mut admin_part = None;
    let mut role_part = String::new();
    let mut number = 0;
    let as_role = format!(
        "as role {} on its own login (psql as that role, not as the admin)",
        crate::db::ident::Ident::new(role)
    );
    for (place, title) in [
        (Place::Pre, "outside a transaction (enum values)"),
        (Place::Main, "in one transaction"),
        (Place::Post, "outside a transaction, statement by statement"),
    ] {
        let steps: Vec<&ddl::Step> = plan.steps.iter().filter(|s| s.place == place).collect();
        if steps.is_empty() {
            continue;
        }
        number += 1;
        let mut part = String::new();
        if place == Place::Main {
            // As the admin: owner changes of objects that exist now, and what objects owned by
            // other roles need (dropping a table someone else made). An owner change of an
            // object the fix makes again follows its creation, as the role.
            let foreign = |s: &&&ddl::Step| {
                s.object.strip_prefix("owner ").is_some_and(|name| {
                    live.objects
                        .contains_key(&("owner".to_string(), name.to_string()))
                }) || owned_by_other(live, &s.object, role)
            };
            if steps.iter().any(|s| foreign(&s)) {
                let mut admin =
                    format!("-- {number}a. as the admin, in one transaction:\nBEGIN;\n");
                for s in steps.iter().filter(foreign) {
                    let _ = writeln!(admin, "{}", s.sql);
                }
                admin.push_str("COMMIT;\n\n");
                text.push_str(&admin);
                admin_part = Some(admin);
                let _ = writeln!(part, "-- {number}b. {as_role}, {title}:");
            } else {
                let _ = writeln!(part, "-- {number}. {as_role}, {title}:");
            }
            part.push_str("BEGIN;\n");
            if steps.iter().any(|s| s.sql.contains("FUNCTION")) {
                part.push_str("SET LOCAL check_function_bodies = off;\n");
            }
            for s in steps.iter().filter(|s| !foreign(s)) {
                let _ = writeln!(part, "{}", s.sql);
            }
            part.push_str("COMMIT;\n\n");
        } else {
            let _ = writeln!(part, "-- {number}. {as_role}, {title}:");
            for s in &steps {
                let _ = writeln!(part, "{}", s.sql);
            }
            part.push('\n');
        }
        text.push_str(&part);
        role_part.push_str(&part);
    }
    // Comment lines: a name holding a line break must not end the comment.
    let one_line = |t: &str| t.replace(['\n', '\r'], " ");
    let mut tail = String::new();
    for l in &plan.lossy {
        let _ = writeln!(tail, "-- loses data: {}", one_line(l));
    }
    for n in &plan.notes {
        let _ = writeln!(tail, "-- note: {}", one_line(n));
    }
    for u in &plan.unsupported {
        let _ = writeln!(tail, "-- not written (do it by hand): {}", one_line(u));
    }
    text.push_str(&tail);
    role_part.push_str(&tail);
    Fix {
        text,
        admin: admin_part,
        role: role_part,
    }
}

/// Whether the object a step is about is owned, in `live`, by a role other than `role`.
fn owned_by_other(live: &Catalog, object: &str, role: &str) -> bool {
    let Some((kind, name)) = ["materialized view ", "foreign table "]
        .iter()
        .find_map(|p| object.strip_prefix(p).map(|n| (p.trim_end(), n)))
        .or_else(|| object.split_once(' '))
    else {
        return false;
    };
    let key = match kind {
        "schema" => format!("schema {name}"),
        "type" => format!("type {name}"),
        "table" | "view" | "materialized view" | "sequence" | "foreign table" | "function"
        | "procedure" | "aggregate" => name.to_string(),
        _ => return false,
    };
    live.objects
        .get(&("owner".to_string(), key))
        .is_some_and(|owner| owner != role)
}
