//! Every production and confirmation guard in one place. [`check`] decides from the settings
//! alone (before anything connects); [`confirm`] asks on a terminal.

use std::io::IsTerminal as _;

use super::settings::Settings;
use crate::error;
use crate::provision::preflight;

/// What a command is about to do, as far as the guards care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `init` (also `--dry-run`, which refuses the same way).
    Init,
    /// `seed`, or `seed --dev`.
    Seed { dev: bool },
    /// `migrate up`, `status`, `history`, `plan` (online), `verify`: they connect.
    Migrate,
    /// `migrate down`.
    MigrateDown { force: bool },
    /// `reset`.
    Reset { force: bool },
    /// Nothing connects (`migrate new`, `plan --offline`, `alembic-export`).
    Offline,
    /// `pool`: throwaway databases for a test session.
    Pool,
}

/// Refuse what the profile forbids, before connecting anywhere: exit 3 for a guard (production
/// without `--force`, dev data in production, a system database), exit 2 for settings production
/// requires (a real password, TLS on every connection, an explicit server).
///
/// # Errors
/// The refusal, naming the profile and what to pass or set.
pub fn check(settings: &Settings, action: Action) -> anyhow::Result<()> {
    let profile = &settings.profile;
    let d = &settings.database;
    match action {
        Action::Offline => return Ok(()),
        Action::Seed { dev: true } if settings.production => {
            return Err(error::refused(format!(
                "`seed --dev` adds fake users with known passwords and is refused in the {profile} profile"
            )));
        }
        Action::Pool if settings.production => {
            return Err(error::refused(format!(
                "`pool` makes throwaway test databases and is refused in the {profile} profile"
            )));
        }
        Action::MigrateDown { force: false } if settings.production => {
            return Err(error::refused(format!(
                "`migrate down` is refused in the {profile} profile; pass --force if you really mean to revert production"
            )));
        }
        Action::Reset { force: false } if settings.production => {
            return Err(error::refused(format!(
                "`reset` drops database `{}` and role `{}` and is refused in the {profile} profile; pass --force if you really mean it",
                d.name, d.owner
            )));
        }
        Action::Init | Action::Reset { .. } => {
            // The names alone can be refused (system databases), even with --force.
            let purpose = if action == Action::Init {
                preflight::Purpose::Init
            } else {
                preflight::Purpose::Reset
            };
            preflight::check(
                &d.name,
                &d.owner,
                &preflight::Observed::default(),
                purpose,
                false,
            )?;
        }
        _ => {}
    }
    settings.check_production()?;
    if action == Action::Init {
        settings.check_password()?;
    }
    Ok(())
}

/// Ask before destroying something: `--yes`, or "yes" typed on a terminal; refuse otherwise.
///
/// # Errors
/// A refusal (exit 3) when not confirmed or when there is no terminal to ask.
pub fn confirm(settings: &Settings, what: &str) -> anyhow::Result<()> {
    if settings.output.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(error::refused(format!(
            "{what}: refusing without confirmation; there is no terminal to ask, so pass --yes"
        )));
    }
    super::output::stderr(format_args!("{what}. Type `yes` to continue: "));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(error::refused(format!(
            "{what}: not confirmed, nothing done"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cli::Global;

    fn settings(profile: &str, env: &[(&str, &str)]) -> Settings {
        let global = Global {
            profile: Some(profile.to_string()),
            admin_url: Some("postgres://admin@db.internal/postgres".into()),
            ..Global::default()
        };
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        Settings::load_with(&global, &env).expect("settings")
    }

    fn code(settings: &Settings, action: Action) -> u8 {
        check(settings, action).map_or_else(|e| crate::error::exit_code(&e), |()| 0)
    }

    const ACTIONS: [Action; 10] = [
        Action::Init,
        Action::Seed { dev: false },
        Action::Seed { dev: true },
        Action::Migrate,
        Action::MigrateDown { force: false },
        Action::MigrateDown { force: true },
        Action::Reset { force: false },
        Action::Reset { force: true },
        Action::Offline,
        Action::Offline,
    ];

    #[test]
    fn dev_and_test_profiles_allow_everything() {
        for profile in ["dev", "test"] {
            let s = settings(profile, &[]);
            for action in ACTIONS {
                assert_eq!(code(&s, action), 0, "{profile} {action:?}");
            }
        }
    }

    #[test]
    fn production_refuses_destruction_and_dev_data_and_needs_secure_settings() {
        let ready = [
            ("AIDOCK__DATABASE__PASSWORD", "a-real-secret"),
            ("AIDOCK__TLS__MODE", "require"),
        ];
        let s = settings("production", &ready);
        let expected = [0, 0, 3, 0, 3, 0, 3, 0, 0, 0];
        for (action, want) in ACTIONS.into_iter().zip(expected) {
            assert_eq!(code(&s, action), want, "production {action:?}");
        }
        // A production that cannot be switched off, and settings it requires.
        let off = settings(
            "production",
            &[ready[0], ready[1], ("AIDOCK__PRODUCTION", "false")],
        );
        assert_eq!(code(&off, Action::Seed { dev: true }), 3);
        let no_password = settings("production", &[ready[1]]);
        assert_eq!(code(&no_password, Action::Migrate), 2);
        assert_eq!(code(&no_password, Action::Offline), 0);
        let plain = settings("production", &[ready[0], ("AIDOCK__TLS__MODE", "prefer")]);
        assert_eq!(code(&plain, Action::Init), 2);
        let url = settings(
            "production",
            &[
                ready[0],
                ready[1],
                ("DATABASE_URL", "postgres://a@h/d?sslmode=disable"),
            ],
        );
        assert_eq!(code(&url, Action::Migrate), 2);
    }

    #[test]
    fn system_databases_are_refused_in_every_profile() {
        for profile in ["dev", "production"] {
            let s = settings(
                profile,
                &[
                    ("AIDOCK__DATABASE__NAME", "template1"),
                    ("AIDOCK__DATABASE__PASSWORD", "a-real-secret"),
                    ("AIDOCK__TLS__MODE", "require"),
                ],
            );
            assert_eq!(code(&s, Action::Init), 3, "{profile}");
            assert_eq!(code(&s, Action::Reset { force: true }), 3, "{profile}");
        }
    }

    #[test]
    fn an_empty_password_stops_init_before_connecting() {
        let s = settings("dev", &[("AIDOCK__DATABASE__PASSWORD", "")]);
        assert_eq!(code(&s, Action::Init), 2);
    }
}
