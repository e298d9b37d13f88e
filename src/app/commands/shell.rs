//! `completions SHELL` and `man`: generated from the clap definition, so they never drift from it.

use clap::CommandFactory as _;

use crate::cli::Cli;

/// Print shell completions for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "aidock-provision", &mut out);
    crate::out!("{}", String::from_utf8_lossy(&out));
}

/// Print the man page (roff).
///
/// # Errors
/// When rendering fails.
pub fn man() -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    crate::out!("{}", String::from_utf8_lossy(&out));
    Ok(())
}
