//! `seed` and `seed --dev`.

use std::io::IsTerminal as _;

use crate::app::output::emit;
use crate::app::settings::Settings;
use crate::app::{policy, targets};
use crate::cli::{DevArgs, SeedArgs};
use crate::{db, seed};

/// Run `seed`.
///
/// # Errors
/// A guard (`--dev` in production, before connecting), bad seed files, a connection or
/// statement failure.
pub fn run(settings: &Settings, args: &SeedArgs) -> anyhow::Result<()> {
    policy::check(settings, policy::Action::Seed { dev: args.dev.dev })?;
    let seeds = seed::load(settings.seed.dir.as_deref())?;
    let dev = dev_options(settings, &args.dev);
    let target = targets::app(settings)?;
    let progress = progress_bar(settings.output.quiet || settings.output.json);
    let report = db::block_on(seed::seed(
        &targets::seed_options(settings),
        &target,
        &seeds,
        args.overwrite,
        dev,
        &progress,
        &targets::confirm(settings),
    ))
    .map_err(|e| targets::explain_app_error(settings, e))?;
    emit(settings.output, &report, || report.to_string())
}

/// `seed --dev`'s options from its flags, with the settings' defaults.
#[must_use]
pub fn dev_options(settings: &Settings, args: &DevArgs) -> Option<seed::DevOptions> {
    args.dev.then(|| seed::DevOptions {
        users: args.users.unwrap_or(settings.seed.dev_users),
        usage_logs: args.usage_logs.unwrap_or(settings.seed.dev_usage_logs),
        rng_seed: args.rng_seed.unwrap_or(settings.seed.rng_seed),
    })
}

/// A progress bar on a terminal (its length is set when the work is known), hidden otherwise.
#[must_use]
pub fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "usage logs {bar:40} {human_pos}/{human_len} ({rate}, {eta})",
        )
        .expect("a valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        ),
    );
    bar
}
