//! `completions SHELL` and `man`: generated from the clap definition, so they never drift from it.

use clap::CommandFactory as _;

use crate::app::output::{out, outln};
use crate::cli::Cli;

const BIN: &str = "aidock-provision";

/// Print shell completions for `shell`.
pub fn completions(shell: clap_complete::Shell) {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut out);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if shell == clap_complete::Shell::Bash {
        text = fix_bash(&text);
    }
    out!("{text}");
}

/// clap_complete's bash script names each subcommand's case `aidock__subcmd__provision__...`
/// while it tracks the command as `aidock__provision__...` (a hyphen in the binary's name;
/// clap-rs/clap#6421, open), so nothing past the first word completed: use one spelling.
fn fix_bash(text: &str) -> String {
    let tracked = BIN.replace('-', "__");
    let cased = BIN.replace('-', "__subcmd__");
    text.replace(&cased, &tracked)
}

/// Print the man page of the binary (roff), or with `dir` write one page per command there
/// (`aidock-provision.1`, `aidock-provision-migrate-up.1` ...), which the pages refer to.
///
/// # Errors
/// When rendering or writing fails.
pub fn man(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let Some(dir) = dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut out)?;
        out!("{}", String::from_utf8_lossy(&out));
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into `{}`", dir.display()))?;
    outln!("man pages written to {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bash_cases_match_the_tracked_command() {
        let mut out = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut <crate::cli::Cli as clap::CommandFactory>::command(),
            super::BIN,
            &mut out,
        );
        let fixed = super::fix_bash(&String::from_utf8_lossy(&out));
        assert!(!fixed.contains("__subcmd__provision"));
        assert!(fixed.contains("aidock__provision__subcmd__migrate)"));
    }
}
