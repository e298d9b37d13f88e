//! Migration files: naming (`NNNN_slug.up.sql` / `.down.sql`), checksums, directives; read from
//! the binary (embedded `sql/`) or from a directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use super::lexer;
use crate::error;

/// The first-line directive that runs a script outside a transaction.
pub const NO_TRANSACTION: &str = "-- aidock:no-transaction";

/// One script (an up or a down file).
#[derive(Debug, Clone)]
pub struct Script {
    /// The file name (`0001_initial_tables.up.sql`): what the ledger, status and the Alembic
    /// revision files name.
    pub file: String,
    /// The directory it was read from, as given (`sql`): with `file`, where messages point
    /// ([`Script::location`]), so an editor or terminal opens it from where the command ran.
    pub dir: Option<String>,
    /// The text with a BOM stripped and CRLF normalised to LF.
    pub sql: String,
    /// Hex SHA-256 of `sql`.
    pub checksum: String,
    /// Runs statement by statement outside a transaction.
    pub no_transaction: bool,
}

impl Script {
    /// Where messages point: `sql/0002_x.up.sql` for a file read from `sql/`, else the name.
    #[must_use]
    pub fn location(&self) -> String {
        match &self.dir {
            Some(dir) => Path::new(dir).join(&self.file).display().to_string(),
            None => self.file.clone(),
        }
    }

    /// A script from text (`file` names it in messages).
    #[must_use]
    pub fn new(file: String, raw: &str) -> Script {
        let sql = normalise(raw);
        let no_transaction = sql
            .lines()
            .next()
            .is_some_and(|l| l.trim() == NO_TRANSACTION);
        Script {
            dir: None,
            checksum: checksum(&sql),
            file,
            sql,
            no_transaction,
        }
    }
}

impl Script {
    /// The statements to send, split as psql would, after the checks that must pass before
    /// anything runs: no unterminated token, no psql meta-command but pg_dump's `\restrict` /
    /// `\unrestrict` (skipped), and no transaction control (the runner owns the transaction).
    ///
    /// # Errors
    /// The first problem, as `file:line:column: what; what to do`.
    pub fn statements(&self) -> anyhow::Result<lexer::Split> {
        let mut split = lexer::split(&self.sql).map_err(|e| {
            let (line, col) = lexer::line_col(&self.sql, e.offset());
            anyhow::anyhow!("{}:{line}:{col}: {}", self.location(), e.describe())
        })?;
        // A file written for golang-migrate or by hand often wraps itself in BEGIN; ... COMMIT;.
        // As its first and last statements, with nothing else controlling the transaction, the
        // wrapper does nothing inside the run's transaction: it is left out (and said).
        if !self.no_transaction
            && split.statements.len() >= 2
            && split
                .statements
                .first()
                .is_some_and(|s| lexer::plain_begin(s, &self.sql))
            && split
                .statements
                .last()
                .is_some_and(|s| lexer::plain_commit(s, &self.sql))
        {
            let last = split.statements.pop().expect("two or more");
            let first = split.statements.remove(0);
            split.unwrapped = Some((first.first_token, last.first_token));
        }
        for statement in &split.statements {
            if let Some(command) = lexer::transaction_control(statement, &self.sql) {
                let (line, col) = lexer::line_col(&self.sql, statement.first_token);
                bail!(
                    "{}:{line}:{col}: `{command}` controls the transaction, which belongs to the runner: each run applies its migrations and their ledger rows in one transaction so that a failure leaves nothing behind, and a script that begins, commits or rolls back would break that; remove the transaction statements (for CREATE INDEX CONCURRENTLY and the like, make `{NO_TRANSACTION}` the first line instead)",
                    self.location()
                );
            }
        }
        Ok(split)
    }
}

/// One version: its up script and (usually) its down script.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub up: Script,
    pub down: Option<Script>,
}

impl Migration {
    /// `0001_initial_tables`.
    #[must_use]
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// Strip a UTF-8 BOM and turn CRLF into LF, so that checkouts on Windows hash the same.
#[must_use]
pub fn normalise(raw: &str) -> String {
    raw.strip_prefix('\u{feff}')
        .unwrap_or(raw)
        .replace("\r\n", "\n")
}

/// Hex SHA-256 of a normalised script.
#[must_use]
pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Split `NNNN_slug.up.sql` into (version, slug, is_up).
fn parse_name(file: &str) -> Option<(i64, &str, bool)> {
    let (stem, up) = if let Some(s) = file.strip_suffix(".up.sql") {
        (s, true)
    } else {
        (file.strip_suffix(".down.sql")?, false)
    };
    let (number, slug) = stem.split_once('_')?;
    if number.len() < 4 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !is_valid_slug(slug) {
        return None;
    }
    Some((number.parse().ok()?, slug, up))
}

/// A migration name: lower-case letters, digits, underscores.
#[must_use]
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 100
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Build migrations from (file name, text) pairs; `origin` names where they came from.
///
/// # Errors
/// A file that does not follow the naming pattern, two files for one version, a down script
/// without its up script.
pub fn from_files<'a>(
    files: impl IntoIterator<Item = (&'a str, String)>,
    origin: &str,
) -> anyhow::Result<Vec<Migration>> {
    let mut ups: BTreeMap<i64, (String, Script)> = BTreeMap::new();
    let mut downs: BTreeMap<i64, (String, Script)> = BTreeMap::new();
    for (file, text) in files {
        let Some((version, slug, up)) = parse_name(file) else {
            return Err(error::usage(format!(
                "`{file}` in {origin} is not a migration file name: expected NNNN_name.up.sql or NNNN_name.down.sql (4+ digits, then lower-case letters, digits and underscores)"
            )));
        };
        let map = if up { &mut ups } else { &mut downs };
        if let Some((other, _)) = map.get(&version) {
            return Err(error::usage(format!(
                "migration version {version:04} appears twice in {origin}: `{other}` and `{file}`; give one of them the next free number"
            )));
        }
        map.insert(
            version,
            (slug.to_string(), Script::new(file.to_string(), &text)),
        );
    }
    let mut migrations = Vec::new();
    for (version, (name, up)) in ups {
        let down = match downs.remove(&version) {
            Some((down_name, script)) if down_name == name => Some(script),
            Some((down_name, script)) => bail!(
                "`{}` does not match `{}` in {origin}: an up and a down script of one version must share its name ({name} vs {down_name})",
                script.file,
                up.file
            ),
            None => None,
        };
        migrations.push(Migration {
            version,
            name,
            up,
            down,
        });
    }
    if let Some((version, (_, script))) = downs.into_iter().next() {
        return Err(error::usage(format!(
            "`{}` in {origin} has no up script; add {version:04}_<name>.up.sql or remove it",
            script.file
        )));
    }
    Ok(migrations)
}

/// The migrations built into the binary.
///
/// # Errors
/// Never for a correctly built binary; the same checks as for a directory.
pub fn embedded() -> anyhow::Result<Vec<Migration>> {
    from_files(
        crate::embedded::MIGRATIONS
            .iter()
            .map(|(name, text)| (*name, (*text).to_string())),
        "the built-in migrations",
    )
}

/// The migrations in a directory (hidden files are ignored).
///
/// # Errors
/// An unreadable directory or file, or a naming problem.
pub fn from_dir(dir: &Path) -> anyhow::Result<Vec<Migration>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        error::usage(format!(
            "cannot read the migrations directory `{}` (from migrate.dir / --migrations-dir): {e}",
            dir.display()
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing `{}`", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .with_context(|| format!("reading `{}`", entry.path().display()))?;
        files.push((name, text));
    }
    let origin = format!("`{}`", dir.display());
    let mut migrations = from_files(files.iter().map(|(n, t)| (n.as_str(), t.clone())), &origin)?;
    let shown = dir.display().to_string();
    for m in &mut migrations {
        m.up.dir = Some(shown.clone());
        if let Some(down) = &mut m.down {
            down.dir = Some(shown.clone());
        }
    }
    Ok(migrations)
}

/// Load from `dir` when given, else the built-in set.
///
/// # Errors
/// As [`from_dir`] and [`embedded`].
pub fn load(dir: Option<&Path>) -> anyhow::Result<Vec<Migration>> {
    match dir {
        Some(dir) => from_dir(dir),
        None => embedded(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&'static str, &str)]) -> anyhow::Result<Vec<Migration>> {
        from_files(list.iter().map(|(n, t)| (*n, (*t).to_string())), "test")
    }

    #[test]
    fn pairs_up_and_down_scripts() {
        let m = files(&[
            ("0002_b.up.sql", "B"),
            ("0001_a.up.sql", "A"),
            ("0001_a.down.sql", "a"),
        ])
        .expect("valid");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].label(), "0001_a");
        assert!(m[0].down.is_some());
        assert!(m[1].down.is_none());
    }

    #[test]
    fn rejects_bad_names_duplicates_and_orphans() {
        for bad in [
            "README.md",
            "1_a.up.sql",
            "0001_A.up.sql",
            "0001-a.up.sql",
            "0001_.up.sql",
        ] {
            let err = files(&[(bad, "x")]).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
        let err = files(&[("0001_a.up.sql", ""), ("0001_b.up.sql", "")]).expect_err("dup");
        assert!(err.to_string().contains("appears twice"), "{err}");
        let err = files(&[("0001_a.down.sql", "")]).expect_err("orphan");
        assert!(err.to_string().contains("no up script"), "{err}");
        let err = files(&[("0001_a.up.sql", ""), ("0001_b.down.sql", "")]).expect_err("mismatch");
        assert!(err.to_string().contains("share its name"), "{err}");
    }

    #[test]
    fn checksums_ignore_crlf_and_bom_only() {
        let lf = Script::new("x".into(), "SELECT 1;\nSELECT 2;\n");
        let crlf = Script::new("x".into(), "\u{feff}SELECT 1;\r\nSELECT 2;\r\n");
        let edited = Script::new("x".into(), "SELECT 1;\nSELECT 3;\n");
        assert_eq!(lf.checksum, crlf.checksum);
        assert_ne!(lf.checksum, edited.checksum);
        assert_eq!(lf.checksum.len(), 64);
    }

    #[test]
    fn directive_on_the_first_line_only() {
        assert!(
            Script::new(
                "x".into(),
                "-- aidock:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);"
            )
            .no_transaction
        );
        assert!(!Script::new("x".into(), "SELECT 1;\n-- aidock:no-transaction\n").no_transaction);
    }

    #[test]
    fn the_built_in_set_loads() {
        let m = embedded().expect("built-in migrations");
        assert_eq!(m[0].label(), "0001_initial_tables");
        assert!(m[0].down.is_some());
    }
}
