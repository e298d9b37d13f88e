//! `migrate capture` (issue #43): what the live database has beyond what its applied migrations
//! make (an Alembic revision of the backend's own, a change by hand) becomes the next migration
//! pair, tested in a scratch database (the migrations replayed, then the pair: up must reach the
//! live catalog, down must come back) before anything is written, then recorded as applied with
//! `alembic_version` stamped at the new head, in one transaction under the migration lock that
//! first checks nothing moved since (the ledger, the stamp, the live catalog). The files are
//! written inside that transaction, before it commits, and removed if it does not.

use std::path::{Path, PathBuf};

use super::diff::{self, Generated, Scratchpad};
use crate::db::{Target, quote_literal};
use crate::error;
use crate::migrate::source::Migration;
use crate::migrate::{ledger, runner};
use crate::schema::catalog::Catalog;

/// A capture, made and tested, not yet recorded.
pub struct Capture {
    /// The pair (or pairs: enum values, main, concurrent), as they will be written.
    pub generated: Generated,
    /// The same, parsed as the project will load them (checksums included).
    pub migrations: Vec<Migration>,
    /// The backend's revisions in `alembic_version` that it replaces (empty: a change by hand).
    pub foreign: Vec<String>,
    /// The versions the ledger held when it was made.
    pub applied: Vec<i64>,
    /// The live catalog the pair reaches.
    live: Catalog,
}

impl Capture {
    /// Whether the live schema was already the migrations' (the capture only records the
    /// backend's revision, a data migration, so the histories stay one line).
    #[must_use]
    pub fn data_only(&self) -> bool {
        self.generated
            .files
            .iter()
            .all(|f| f.text.contains(DATA_ONLY_MARK))
    }
}

/// How a data-only capture's files say what they are.
const DATA_ONLY_MARK: &str = "changed no schema";

/// Make and test the pair from what the applied migrations make to the live schema. `None`:
/// nothing to capture (the schema is the migrations', and `alembic_version` holds no revision of
/// the backend's).
///
/// # Errors
/// No migration of ours recorded (adoption is `migrate baseline`'s), migration files not applied
/// (they would come before the capture), an applied migration without its file, lossy steps
/// without `allow_data_loss` (exit 3), a pair that fails its test, connections.
pub async fn prepare(
    pad: &Scratchpad<'_>,
    migrations: &[Migration],
    name: &str,
    allow_data_loss: bool,
) -> anyhow::Result<Option<Capture>> {
    let live = pad.app.connect().await?;
    let rows = ledger::read(&live).await?;
    if rows.is_empty() {
        return Err(error::refused(format!(
            "no aidock-provision migration is recorded in {}: capture adds to the history of a database that is ours; a database other tools made is adopted with `aidock-provision migrate baseline`",
            pad.app.describe()
        )));
    }
    let applied: Vec<i64> = rows.iter().map(|r| r.version).collect();
    if let Some(r) = rows
        .iter()
        .find(|r| !migrations.iter().any(|m| m.version == r.version))
    {
        return Err(error::usage(format!(
            "the database has migration {:04} `{}` applied, which is not among the migration files; capture replays them all (use the right --migrations-dir)",
            r.version, r.name
        )));
    }
    let pending: Vec<String> = migrations
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| m.up.file.clone())
        .collect();
    if !pending.is_empty() {
        return Err(error::refused(format!(
            "{} migration file(s) are not applied to the database ({}): the capture is recorded on top of the applied ones and numbered after every file, so it cannot come before them; move them out of the migrations directory, capture, then give them numbers after the capture",
            pending.len(),
            pending.join(", ")
        )));
    }
    let foreign = ledger::foreign_revisions(&live).await?;
    let (mut generated, reached) =
        diff::capture(pad, migrations, &live, name, allow_data_loss).await?;
    let from = if foreign.is_empty() {
        "from the live database".to_string()
    } else {
        format!(
            "from the live database after the backend's Alembic revision {}",
            foreign.join(", ")
        )
    };
    if generated.files.is_empty() {
        if foreign.is_empty() {
            return Ok(None);
        }
        let version = migrations.iter().map(|m| m.version).max().unwrap_or(0) + 1;
        generated.files = vec![
            diff::File {
                name: format!("{version:04}_{name}.up.sql"),
                text: format!(
                    "-- {version:04} {name}: captured by `aidock-provision migrate capture` {from}, which {DATA_ONLY_MARK} (a data migration: what it did to rows is not repeated here); recorded so the backend's history and ours stay one line.\n"
                ),
            },
            diff::File {
                name: format!("{version:04}_{name}.down.sql"),
                text: format!(
                    "-- Reverts {version:04} {name}: it {DATA_ONLY_MARK}, so there is nothing to undo.\n"
                ),
            },
        ];
    } else {
        for f in &mut generated.files {
            f.text = f.text.replacen(
                "written by `aidock-provision migrate diff`",
                &format!("captured by `aidock-provision migrate capture` {from}"),
                1,
            );
        }
    }
    let parsed = crate::migrate::from_files(
        generated
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.text.clone())),
        "the captured pair",
    )?;
    Ok(Some(Capture {
        generated,
        migrations: parsed,
        foreign,
        applied,
        live: reached,
    }))
}

/// The backend's revision files a capture replaces: from each revision in `alembic_version` back
/// through `down_revision` to ours (`ours`: our revision ids). Every one must have its file in
/// `dir` (else the folder is not the backend's, or the revision was applied from elsewhere).
///
/// # Errors
/// A revision without its file, or a chain that leaves the folder before reaching ours.
pub fn replaced_files(
    dir: &Path,
    foreign: &[String],
    ours: &[String],
) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(error::usage(format!(
            "`{}` is not a directory; pass the backend's Alembic versions directory (e.g. Back/alembic/versions)",
            dir.display()
        )));
    }
    let revisions = crate::migrate::alembic::revisions(dir)?;
    let mut files = Vec::new();
    let mut queue: Vec<String> = foreign.to_vec();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = queue.pop() {
        if ours.contains(&id) || !seen.insert(id.clone()) {
            continue;
        }
        let Some(r) = revisions.iter().find(|r| r.id == id) else {
            return Err(error::usage(format!(
                "revision `{id}` (in the backend's chain from alembic_version down to ours) has no file in `{}`: pass the folder `alembic upgrade head` ran from (Back/alembic/versions), or capture without --alembic-dir and remove the revision files by hand",
                dir.display()
            )));
        };
        if r.revises.is_empty() {
            return Err(error::refused(format!(
                "revision `{id}` in `{}` revises nothing, so the chain from alembic_version never reaches aidock-provision's revisions: is `{}` the folder `migrate alembic-export` writes to?",
                r.path.display(),
                dir.display()
            )));
        }
        files.push(r.path.clone());
        queue.extend(r.revises.iter().cloned());
    }
    files.sort();
    Ok(files)
}

/// Record a capture: under the migration lock, in one transaction on the app's login, check that
/// the ledger, `alembic_version` and the live catalog are still what the capture was made from,
/// record each new migration as applied (by `migrate capture`, naming the revision), stamp
/// `alembic_version` at the new head, write the files into `dir` (none may exist), then commit;
/// the files are removed when the commit does not happen. Under a multi-host URL the commit is
/// confirmed as `migrate up`'s is.
///
/// # Errors
/// Something moved since the capture was made (run it again), a file already there,
/// connections, a commit that cannot be confirmed (exit 4).
pub async fn record(
    app: &Target,
    capture: &Capture,
    dir: &Path,
    confirm: &crate::db::ha::Confirm,
) -> anyhow::Result<()> {
    for f in &capture.generated.files {
        if dir.join(&f.name).exists() {
            return Err(error::usage(format!(
                "`{}` already exists; nothing was written or recorded",
                dir.join(&f.name).display()
            )));
        }
    }
    let (mut client, host) = app.connect_to_host().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({})",
        runner::lock_key()
    ))
    .await
    .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))?;
    let moved = |what: &str| {
        anyhow::anyhow!(
            "{what} changed while the capture was made (another deploy or revision ran); nothing was written or recorded: run `aidock-provision migrate capture` again"
        )
    };
    let now: Vec<i64> = ledger::read(&tx).await?.iter().map(|r| r.version).collect();
    if now != capture.applied {
        return Err(moved("the migration ledger"));
    }
    if ledger::foreign_revisions(&tx).await? != capture.foreign {
        return Err(moved("alembic_version"));
    }
    let live = diff::live_catalog(&tx).await?;
    if !crate::schema::diff::diff(&capture.live, &live).is_empty() {
        return Err(moved("the live schema"));
    }
    tx.batch_execute(ledger::CREATE)
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))?;
    let by = if capture.foreign.is_empty() {
        "'migrate capture (' || current_user || ')'".to_string()
    } else {
        format!(
            "'migrate capture (' || current_user || {} || ')'",
            quote_literal(&format!(
                "; Alembic revision {}",
                capture.foreign.join(", ")
            ))
        )
    };
    for m in &capture.migrations {
        tx.batch_execute(&format!(
            "INSERT INTO {} (version, name, checksum, execution_ms, applied_by) VALUES ({}, {}, {}, 0, {by})",
            ledger::HISTORY,
            m.version,
            quote_literal(&m.name),
            quote_literal(&m.up.checksum)
        ))
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))?;
    }
    tx.batch_execute(ledger::STAMP_ALEMBIC)
        .await
        .map_err(|e| anyhow::anyhow!(crate::db::describe_error(&e)))?;
    let mut written = Vec::new();
    let wrote = capture.generated.files.iter().try_for_each(|f| {
        let path = dir.join(&f.name);
        std::fs::write(&path, &f.text)
            .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", path.display()))?;
        written.push(path);
        anyhow::Ok(())
    });
    let remove = |written: &[PathBuf]| {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
    };
    if let Err(e) = wrote {
        remove(&written);
        return Err(e.context("nothing was recorded"));
    }
    if let Err(e) = tx.commit().await {
        remove(&written);
        return Err(anyhow::anyhow!(crate::db::describe_error(&e))
            .context("committing the capture; the files were removed and nothing was recorded"));
    }
    let what = capture
        .migrations
        .iter()
        .map(Migration::label)
        .collect::<Vec<_>>()
        .join(", ");
    crate::db::ha::confirm(
        &client,
        app,
        host,
        &format!("the capture ({what})"),
        confirm,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::replaced_files;

    /// A merge revision of the backend's (`down_revision` a tuple, as `alembic merge` writes
    /// it) is walked through both of its parents down to ours; a parent without a file is named.
    #[test]
    fn a_merge_revision_is_walked_through_both_parents() {
        let dir = std::env::temp_dir().join(format!("aidock-capture-merge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
        file(
            "0001_initial.py",
            "revision = \"0001\"\ndown_revision = None\n",
        );
        file(
            "a1_phone.py",
            "revision = \"a1\"\ndown_revision = \"0001\"\n",
        );
        file(
            "b2_avatar.py",
            "revision: str = 'b2'\ndown_revision: Union[str, None] = '0001'\n",
        );
        file(
            "c3_merge.py",
            "revision = 'c3'\ndown_revision = ('a1', 'b2')\nbranch_labels = None\n",
        );
        let files =
            replaced_files(&dir, &["c3".to_string()], &["0001".to_string()]).expect("walked");
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a1_phone.py", "b2_avatar.py", "c3_merge.py"]);

        std::fs::remove_file(dir.join("b2_avatar.py")).expect("rm");
        let err = replaced_files(&dir, &["c3".to_string()], &["0001".to_string()])
            .expect_err("a parent without its file");
        assert!(err.to_string().contains("revision `b2`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
