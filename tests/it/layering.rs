//! The layering invariant (docs/ARCHITECTURE.md): only `src/app/` (with `lib.rs`, `main.rs` and
//! `cli.rs`) knows settings and flags, and nothing below it prints.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `text` uses `word` as a whole token (not as part of a longer identifier).
fn uses(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric() && text.as_bytes()[i - 1] != b'_'
    })
}

#[test]
fn only_the_application_layer_knows_settings_and_prints() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let top = relative.components().next().expect("a component");
        if ["app", "lib.rs", "main.rs", "cli.rs"]
            .iter()
            .any(|allowed| top.as_os_str() == *allowed)
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        for word in [
            "crate::app",
            "crate::settings",
            "crate::cli",
            "println!",
            "print!(",
            "eprintln!",
            "eprint!(",
            "outln!",
            "out!(",
            "errln!",
            "dbg!",
        ] {
            if uses(&text, word) {
                violations.push(format!("src/{} uses `{word}`", relative.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "engine modules must take their own options and return data:\n{}",
        violations.join("\n")
    );
}

/// The floors (docs/ARCHITECTURE.md, issue #41): `app` on top; `reconcile` (verify, diff,
/// baseline and their scratch database) above the engine it uses; `provision`, `seed` and
/// `migrate` beside each other; `schema` below them; `db` at the bottom. Each file may use only
/// its own floor and those below; `provision` and `seed` use `migrate` only through what its
/// root names (not its files).
#[test]
fn each_floor_uses_only_the_floors_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // Floor -> the modules it must not name.
    let rules: &[(&str, &[&str])] = &[
        (
            "migrate",
            &[
                "crate::reconcile",
                "crate::app",
                "crate::provision",
                "crate::seed",
            ],
        ),
        (
            "schema",
            &[
                "crate::reconcile",
                "crate::app",
                "crate::migrate",
                "crate::provision",
                "crate::seed",
            ],
        ),
        (
            "db",
            &[
                "crate::reconcile",
                "crate::app",
                "crate::migrate",
                "crate::schema",
                "crate::provision",
                "crate::seed",
                "crate::local_pg",
            ],
        ),
        (
            "provision",
            &[
                "crate::reconcile",
                "crate::app",
                "crate::migrate::ledger",
                "crate::migrate::source",
                "crate::migrate::runner",
            ],
        ),
        (
            "seed",
            &[
                "crate::reconcile",
                "crate::app",
                "crate::provision",
                "crate::migrate::ledger",
                "crate::migrate::source",
            ],
        ),
        (
            "local_pg",
            &[
                "crate::reconcile",
                "crate::app",
                "crate::migrate",
                "crate::schema",
                "crate::provision",
                "crate::seed",
            ],
        ),
        ("reconcile", &["crate::app"]),
    ];
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let top = relative
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let Some((_, banned)) = rules.iter().find(|(floor, _)| *floor == top) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        for word in *banned {
            if uses(&text, word) {
                violations.push(format!("src/{} uses `{word}`", relative.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "a floor reaches up (or into another's files):\n{}",
        violations.join("\n")
    );
}
