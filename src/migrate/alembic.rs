//! Coexistence with the backend's own Alembic: one Alembic revision file per migration, with the
//! revision ids we stamp into `alembic_version`, so `alembic current`, `history` and
//! `upgrade head` keep working on a database this tool migrates. The files never change the
//! schema: `upgrade()` only checks that our ledger has the migration (else it says to run
//! `aidock-provision migrate up`), and `downgrade()` always refuses (our ledger and
//! `alembic_version` must never disagree). They import only `alembic` and `sqlalchemy`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::source::Migration;
use crate::error;

/// The Alembic revision id of a migration: what `alembic_version` holds when it is the head.
#[must_use]
pub fn revision_id(version: i64) -> String {
    format!("{version:04}")
}

/// The revision file for `m`, chained to `previous`, or (the first migration) to `before`: the
/// backend's own last revision, when the folder has one.
#[must_use]
pub fn render(m: &Migration, previous: Option<&Migration>, before: Option<&str>) -> String {
    render_with(m, previous, before, LEDGER_CHECK)
}

/// How `upgrade()` finds our ledger: in its own schema, or (a database no run has written to
/// since the move) where releases before kept it.
const LEDGER_CHECK: &str = r#"    table = bind.execute(
        sa.text(
            "SELECT coalesce(to_regclass('aidock_provision.schema_history'), "
            "to_regclass('public.aidock_schema_history'))::text"
        )
    ).scalar()
    applied = table is not None and bind.execute(
        sa.text("SELECT count(*) FROM " + table + " WHERE version = :v"),
        {"v": VERSION},
    ).scalar()"#;

/// The check files written before the ledger moved had (re-exporting replaces such files without
/// `--force`: they are ours, unedited).
const LEDGER_CHECK_BEFORE_THE_MOVE: &str = r#"    has_ledger = bind.execute(
        sa.text("SELECT to_regclass('public.aidock_schema_history') IS NOT NULL")
    ).scalar()
    applied = has_ledger and bind.execute(
        sa.text("SELECT count(*) FROM public.aidock_schema_history WHERE version = :v"),
        {"v": VERSION},
    ).scalar()"#;

fn render_with(
    m: &Migration,
    previous: Option<&Migration>,
    before: Option<&str>,
    check: &str,
) -> String {
    let rev = revision_id(m.version);
    let revises = previous
        .map(|p| revision_id(p.version))
        .or_else(|| before.map(str::to_string));
    let down = revises
        .as_deref()
        .map_or_else(|| "None".to_string(), |r| format!("{r:?}"));
    let label = m.label();
    let mut text = String::new();
    let _ = write!(
        text,
        r#""""{label}: applied by aidock-provision, not by Alembic.

Written by `aidock-provision migrate alembic-export`; do not edit. The schema change is
{file} (sha256 {checksum}); this revision only lets Alembic see the database as stamped.

Revision ID: {rev}
Revises: {revises}
"""
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
    if op.get_context().as_sql:
        return
    bind = op.get_bind()
{check}
    if not applied:
        raise RuntimeError(
            "migration {label} is applied by aidock-provision, not by Alembic: "
            "run `aidock-provision migrate up`"
        )


def downgrade():
    raise RuntimeError(
        "migration {label} is reverted by aidock-provision, not by Alembic (its ledger and "
        "alembic_version must agree): run `aidock-provision migrate down`"
    )
"#,
        file = m.up.file,
        checksum = m.up.checksum,
        revises = revises.as_deref().unwrap_or("(none)"),
        check = check.replace("VERSION", &m.version.to_string()),
    );
    text
}

/// What happened to one revision file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Unchanged,
    /// It existed with other content and `--force` replaced it.
    Replaced,
}

/// Write (or check) one revision file per migration into `dir`.
///
/// # Errors
/// A missing directory; a file with one of our revision ids but other content (listed, nothing
/// written) unless `force`; I/O failures.
pub fn export(
    dir: &Path,
    migrations: &[Migration],
    force: bool,
    down_revision: Option<&str>,
) -> anyhow::Result<Vec<(PathBuf, Written)>> {
    if !dir.is_dir() {
        return Err(error::usage(format!(
            "`{}` is not a directory; pass the backend's Alembic versions directory (e.g. Back/alembic/versions)",
            dir.display()
        )));
    }
    let before = match down_revision {
        Some(r) if r.eq_ignore_ascii_case("none") => None,
        Some(r) => Some(r.to_string()),
        None => backend_head(dir, migrations)?,
    };
    // It goes into Python source: an id as Alembic makes them, nothing else.
    if let Some(r) = &before
        && (r.is_empty()
            || !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(error::usage(format!(
            "revision id {r:?} is not one Alembic makes (letters, digits, `_`, `-`); nothing written"
        )));
    }
    let mut planned = Vec::new();
    // Files of ours with other content (--force overwrites them), and other files claiming our
    // revision ids (never touched: two files with one id would break Alembic either way).
    let mut conflicts = Vec::new();
    let mut foreign = Vec::new();
    for (i, m) in migrations.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &migrations[p]);
        let path = dir.join(format!("{}_{}.py", revision_id(m.version), m.name));
        let text = render(m, previous, before.as_deref());
        // Another file that claims the same revision id (a hand-made or renamed one).
        for other in files_declaring(dir, &revision_id(m.version))? {
            if other != path {
                foreign.push(format!(
                    "`{}` also declares revision \"{}\"",
                    other.display(),
                    revision_id(m.version)
                ));
            }
        }
        let outcome = match std::fs::read_to_string(&path) {
            Ok(existing) if existing == text => Written::Unchanged,
            // Written by a release from before the ledger moved, and not edited since.
            Ok(existing)
                if [before.as_deref(), None].iter().any(|b| {
                    existing == render_with(m, previous, *b, LEDGER_CHECK_BEFORE_THE_MOVE)
                }) =>
            {
                Written::Replaced
            }
            Ok(_) => {
                if !force {
                    conflicts.push(format!(
                        "`{}` has other content than aidock-provision writes",
                        path.display()
                    ));
                }
                Written::Replaced
            }
            Err(_) => Written::Created,
        };
        planned.push((path, text, outcome));
    }
    if !foreign.is_empty() {
        return Err(anyhow::anyhow!(
            "nothing written: {}; Alembic needs each revision id once, so move or renumber that file first",
            foreign.join("; ")
        ));
    }
    if !conflicts.is_empty() && !force {
        return Err(anyhow::anyhow!(
            "nothing written: {}; pass --force to overwrite it with the generated file",
            conflicts.join("; ")
        ));
    }
    let mut done = Vec::new();
    for (path, text, outcome) in planned {
        if outcome != Written::Unchanged {
            std::fs::write(&path, text).with_context(|| format!("writing `{}`", path.display()))?;
        }
        done.push((path, outcome));
    }
    Ok(done)
}

/// One revision file of a versions folder: its id and the ids it revises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub path: PathBuf,
    pub id: String,
    pub revises: Vec<String>,
}

/// The value of a module-level `name = ...` (or `name: Type = ...`) assignment in `line`: the
/// quoted strings in it (`None` gives none; a tuple or list gives each).
fn assignment(line: &str, name: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix(name)?;
    let (target, value) = rest.split_once('=')?;
    let target = target.trim();
    if !(target.is_empty() || target.starts_with(':')) || value.starts_with('=') {
        return None;
    }
    let mut strings = Vec::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            '"' | '\'' => {
                let s: String = chars.by_ref().take_while(|&d| d != c).collect();
                strings.push(s);
            }
            _ => {}
        }
    }
    Some(strings)
}

/// The revision files in `dir` (`.py` files declaring `revision`), sorted by path.
///
/// # Errors
/// The directory cannot be listed.
pub fn revisions(dir: &Path) -> anyhow::Result<Vec<Revision>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing `{}`", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "py") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut id = None;
        let mut revises = Vec::new();
        for line in text.lines() {
            if let Some(v) = assignment(line, "revision") {
                id = v.into_iter().next();
            } else if let Some(v) = assignment(line, "down_revision") {
                revises = v;
            }
        }
        if let Some(id) = id {
            found.push(Revision { path, id, revises });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// `.py` files in `dir` whose `revision` names `rev`.
fn files_declaring(dir: &Path, rev: &str) -> anyhow::Result<Vec<PathBuf>> {
    Ok(revisions(dir)?
        .into_iter()
        .filter(|r| r.id == rev)
        .map(|r| r.path)
        .collect())
}

/// The backend's own head in `dir`: the one revision of the files that are not ours which no
/// other of them revises (what our first revision then revises, so the history is one line).
/// `None` when there are none.
///
/// # Errors
/// Several heads, or one of the backend's revisions built on ours: what to do is said.
fn backend_head(dir: &Path, migrations: &[Migration]) -> anyhow::Result<Option<String>> {
    let ours: std::collections::BTreeSet<String> =
        migrations.iter().map(|m| revision_id(m.version)).collect();
    let theirs: Vec<Revision> = revisions(dir)?
        .into_iter()
        .filter(|r| !ours.contains(&r.id))
        .collect();
    if let Some(on_ours) = theirs
        .iter()
        .find(|r| r.revises.iter().any(|d| ours.contains(d)))
    {
        return Err(error::refused(format!(
            "`{}` (revision {}) revises aidock-provision's revision {}: the backend's Alembic must not add revisions after ours (the schema is changed with `aidock-provision migrate new`); move that change into a migration of ours and delete the file, then run alembic-export again",
            on_ours.path.display(),
            on_ours.id,
            on_ours.revises.join(", ")
        )));
    }
    let revised: std::collections::BTreeSet<&String> =
        theirs.iter().flat_map(|r| r.revises.iter()).collect();
    let heads: Vec<&Revision> = theirs.iter().filter(|r| !revised.contains(&r.id)).collect();
    match heads.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.id.clone())),
        many => Err(error::refused(format!(
            "nothing written: the folder holds {} heads of the backend's own revisions ({}), and ours can follow only one; merge them first (`alembic merge -m \"merge heads\" {}`), or name the one to follow with --down-revision",
            many.len(),
            many.iter()
                .map(|r| format!("{} in `{}`", r.id, r.path.display()))
                .collect::<Vec<_>>()
                .join(", "),
            many.iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ))),
    }
}

/// Alembic revisions of the backend's own found in `alembic_version` on top of our ledger
/// ([`super::ledger::foreign_revisions`]): the schema may have changed under the migrations, so
/// `migrate up`/`down`, `init` and `seed` refuse before changing anything, and `status`,
/// `doctor` and `verify` say it. The way out is `migrate capture`.
#[derive(Debug, Clone)]
pub struct ForeignRevision {
    pub revisions: Vec<String>,
}

impl ForeignRevision {
    /// The revision ids, quoted and joined.
    #[must_use]
    pub fn ids(&self) -> String {
        self.revisions
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for ForeignRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "alembic_version holds {}, an Alembic revision of the backend's own applied on top of aidock-provision's migrations (`alembic upgrade head`); nothing was changed. `aidock-provision migrate verify` shows what it changed in the schema; `aidock-provision migrate capture NAME --alembic-dir <the backend's alembic/versions>` makes it a migration of ours",
            self.ids()
        )
    }
}

impl std::error::Error for ForeignRevision {}

/// The problem, if `alembic_version` does not hold what our ledger implies (`head`: the highest
/// applied version; `stamped`: the rows of `alembic_version`, `None` when the table is absent).
#[must_use]
pub fn stamp_problem(head: Option<i64>, stamped: Option<&[String]>) -> Option<String> {
    let expected: Vec<String> = head.map(revision_id).into_iter().collect();
    let found = stamped.unwrap_or_default();
    if found == expected.as_slice() || (stamped.is_none() && head.is_none()) {
        return None;
    }
    let want = head.map_or_else(
        || "nothing".to_string(),
        |h| format!("`{}`", revision_id(h)),
    );
    let have = if found.is_empty() {
        "nothing".to_string()
    } else {
        found
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "alembic_version holds {have}, but the ledger's head is {want}: someone ran `alembic stamp` (or emptied the table); `aidock-provision migrate verify` says whether the schema is still what the migrations make, and only then is putting the stamp back right (`migrate status` with an admin connection compares it and gives the statement)"
    ))
}

/// The statement that puts our stamp back (`head`: the ledger's), for when the schema is what
/// the migrations make and `alembic_version` holds only revisions of ours.
#[must_use]
pub fn restamp_sql(head: Option<i64>) -> String {
    match head {
        Some(h) => format!(
            "DELETE FROM alembic_version; INSERT INTO alembic_version VALUES ('{}')",
            revision_id(h)
        ),
        None => "DELETE FROM alembic_version".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_agree_or_say_what_to_do() {
        assert_eq!(stamp_problem(None, None), None);
        assert_eq!(stamp_problem(Some(1), Some(&["0001".to_string()])), None);
        assert_eq!(stamp_problem(None, Some(&[])), None);
        let p = stamp_problem(Some(2), Some(&["1a2b3c4d5e6f".to_string()])).expect("problem");
        assert!(p.contains("`1a2b3c4d5e6f`") && p.contains("`0002`"), "{p}");
        // Putting the stamp back is advice only once verify is clean (the caller's to give).
        assert!(!p.contains("INSERT INTO"), "{p}");
        assert_eq!(
            restamp_sql(Some(2)),
            "DELETE FROM alembic_version; INSERT INTO alembic_version VALUES ('0002')"
        );
        assert_eq!(revision_id(12345), "12345");
        assert!(stamp_problem(Some(1), Some(&[])).is_some());
    }

    #[test]
    fn revisions_chain_and_import_only_alembic_and_sqlalchemy() {
        let ms = super::super::source::from_files(
            [
                ("0001_a.up.sql", "SELECT 1;".to_string()),
                ("0002_b.up.sql", "SELECT 2;".to_string()),
            ],
            "test",
        )
        .expect("migrations");
        let first = render(&ms[0], None, None);
        let second = render(&ms[1], Some(&ms[0]), Some("9c3e5a1b7d20"));
        let after_backend = render(&ms[0], None, Some("9c3e5a1b7d20"));
        assert!(after_backend.contains("revision = \"0001\"\ndown_revision = \"9c3e5a1b7d20\""));
        assert!(first.contains("revision = \"0001\"\ndown_revision = None"));
        assert!(second.contains("revision = \"0002\"\ndown_revision = \"0001\""));
        let imports: Vec<&str> = second
            .lines()
            .filter(|l| l.starts_with("import ") || l.starts_with("from "))
            .collect();
        assert_eq!(
            imports,
            ["from alembic import op", "import sqlalchemy as sa"]
        );
    }
}
