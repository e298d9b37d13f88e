//! `project init`: the settings, migrations and seeds built into the binary, written out as a
//! project of the user's own (issue #43: a team that adopted a database with the binary alone
//! has no migrations directory for `migrate new`, `diff` and `capture` to write into).

use std::path::{Path, PathBuf};

use crate::app::output::outln;
use crate::cli::Global;
use crate::{embedded, error};

/// Write `config/`, `sql/` and `seeds/` into `dir` (the current directory by default). Files
/// already there with the same content are left as they are; any with other content is
/// refused before anything is written.
///
/// # Errors
/// A file in the way (exit 3, each named), I/O failures.
pub fn init(dir: Option<&Path>, global: &Global) -> anyhow::Result<()> {
    let root = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let files: Vec<(PathBuf, &str)> = [
        ("config", embedded::CONFIGS),
        ("sql", embedded::MIGRATIONS),
        ("seeds", embedded::SEEDS),
    ]
    .iter()
    .flat_map(|(sub, list)| {
        list.iter()
            .map(|(name, text)| (root.join(sub).join(name), *text))
            .collect::<Vec<_>>()
    })
    .collect();
    let mut conflicts = Vec::new();
    let mut missing = Vec::new();
    for (path, text) in &files {
        match std::fs::read(path) {
            Ok(existing) if existing == text.as_bytes() => {}
            Ok(_) => conflicts.push(path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push((path, *text)),
            Err(e) => conflicts.push(format!("{} ({e})", path.display())),
        }
    }
    if !conflicts.is_empty() {
        return Err(error::refused(format!(
            "nothing written: {} already there with other content ({}); this is a project already (run commands from `{}`), or pick another directory",
            if conflicts.len() == 1 {
                "a file is"
            } else {
                "files are"
            },
            conflicts.join(", "),
            root.display()
        )));
    }
    for (path, text) in &missing {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("creating `{}`: {e}", parent.display()))?;
        }
        std::fs::write(path, text)
            .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", path.display()))?;
    }
    if global.json {
        let written: Vec<String> = missing
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "project": root.display().to_string(),
                "written": written,
                "unchanged": files.len() - missing.len(),
            }))?
        );
    } else if !global.quiet {
        outln!(
            "{} file(s) written, {} already there in {} (config/, sql/, seeds/: the settings, migrations and seeds built into this binary)",
            missing.len(),
            files.len() - missing.len(),
            root.display()
        );
        outln!(
            "next: run commands from there (or pass --project {}): `aidock-provision migrate status` reads the same ledger, and `migrate new`, `diff` and `capture` write into its sql/",
            root.display()
        );
    }
    Ok(())
}
