//! Writing to stdout and stderr without ever panicking: `println!` panics when stdout is a closed
//! pipe (`| head`, `| true`) or a full disk (`> /dev/full`), which would abort a command between
//! its database work and its report. A failed write is remembered instead; the command finishes
//! (or rolls back) what it was doing and `main` then exits 1 without another word (issue #11).

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Write to stdout; after the first failure, nothing more is attempted.
pub fn stdout(args: fmt::Arguments<'_>) {
    if STDOUT_FAILED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.flush()).is_err() {
        STDOUT_FAILED.store(true, Ordering::Relaxed);
    }
}

/// Write to stderr, ignoring failures (there is nowhere left to report them).
pub fn stderr(args: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Whether a write to stdout failed (the exit code must then say so).
#[must_use]
pub fn stdout_failed() -> bool {
    STDOUT_FAILED.load(Ordering::Relaxed)
}

/// `println!` that never panics.
macro_rules! outln {
    () => { $crate::app::output::stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::app::output::stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => { $crate::app::output::stdout(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::app::output::stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

// The macros, for the application layer only (the engine never prints): `use
// crate::app::output::{outln, errln}` where a command reports.
pub(crate) use {errln, out, outln};

/// The one way commands report: pretty JSON with `--json`, else `text()` unless `--quiet`.
///
/// # Errors
/// A value that does not serialise.
pub fn emit<T: serde::Serialize>(
    output: super::settings::Output,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if output.json {
        outln!("{}", serde_json::to_string_pretty(value)?);
    } else if !output.quiet {
        let text = text();
        let text = text.trim_end_matches('\n');
        if !text.is_empty() {
            outln!("{text}");
        }
    }
    Ok(())
}
