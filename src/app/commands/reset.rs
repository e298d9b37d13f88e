//! `reset`: drop the database (disconnecting its sessions) and the role, after the guards and a
//! confirmation.

use crate::app::output::emit;
use crate::app::output::outln;
use crate::app::settings::Settings;
use crate::app::{policy, targets};
use crate::cli::ResetArgs;
use crate::local_pg::State;
use crate::{db, provision};

/// Run `reset`.
///
/// # Errors
/// A guard or missing confirmation (exit 3), a connection failure, a role that still owns
/// objects elsewhere.
pub fn run(settings: &Settings, args: &ResetArgs) -> anyhow::Result<()> {
    policy::check(settings, policy::Action::Reset { force: args.force })?;
    if settings.server.admin_url.is_none() && !settings.production {
        let pg = targets::local_cluster(settings)?;
        if pg.state()? == State::Absent {
            if !settings.output.quiet {
                outln!(
                    "nothing to reset: there is no local cluster at {}",
                    pg.root().display()
                );
            }
            return Ok(());
        }
    }
    let admin = targets::admin(settings, targets::Local::Start)?;
    policy::confirm(
        settings,
        &format!(
            "`reset` drops database `{}` (disconnecting its sessions) and role `{}` on {}",
            settings.database.name,
            settings.database.owner,
            admin.describe()
        ),
    )?;
    let items = db::block_on(provision::reset(
        &targets::database(settings),
        &admin,
        &targets::provision_options(settings),
    ))?;
    emit(settings.output, &items, || {
        items
            .iter()
            .map(|item| {
                let what = match item.status {
                    provision::Gone::Dropped => "dropped",
                    provision::Gone::Absent => "already gone",
                };
                format!("{}: {what}", item.object)
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}
