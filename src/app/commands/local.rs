//! `local start | stop | status | url | destroy`: the project-local cluster.

use crate::app::output::{errln, outln};
use crate::app::settings::Settings;
use crate::app::{policy, targets};
use crate::cli::LocalCommand;
use crate::local_pg::{Started, State};

/// Run one `local` subcommand.
///
/// # Errors
/// The server binaries missing (start), initdb or pg_ctl failing, a missing confirmation.
pub fn run(settings: &Settings, cmd: &LocalCommand) -> anyhow::Result<()> {
    let out = settings.output;
    let say = |msg: String| {
        if !out.quiet {
            outln!("{msg}");
        }
    };
    let pg = targets::local_cluster(settings)?;
    if let Some(why) = pg.ignored_record()
        && !out.quiet
    {
        errln!("warning: {why}");
    }
    match cmd {
        LocalCommand::Start => {
            let what = match pg.start()? {
                Started::Created => "created and started",
                Started::Started => "started",
                Started::AlreadyRunning => "already running",
            };
            let moved = pg
                .moved_from()
                .map(|p| format!("; port {p} (local.port) was taken by another server"))
                .unwrap_or_default();
            say(format!(
                "local cluster {what}: {} (127.0.0.1:{}{moved})",
                pg.root().display(),
                pg.port()
            ));
        }
        LocalCommand::Stop => {
            let what = if pg.stop()? { "stopped" } else { "not running" };
            say(format!("local cluster {what}: {}", pg.root().display()));
        }
        LocalCommand::Status => {
            let state = pg.state()?;
            let word = match state {
                State::Absent => "absent",
                State::Stopped => "stopped",
                State::Running => "running",
            };
            if out.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "state": word,
                        "data_dir": pg.root(),
                        "port": pg.port(),
                        "socket_dir": pg.socket_dir(),
                    })
                );
            } else {
                outln!(
                    "local cluster {word}: {} (127.0.0.1:{}{}, socket in {})",
                    pg.root().display(),
                    pg.port(),
                    pg.moved_from()
                        .map(|p| format!("; local.port {p} was taken by another server"))
                        .unwrap_or_default(),
                    pg.socket_dir().display()
                );
            }
            if let Some(pid) = pg.orphaned_server() {
                errln!(
                    "a server (pid {pid}) still runs on the cluster's deleted data directory; `aidock-provision local destroy --yes` stops it"
                );
            }
            // As `pg_ctl status`: a cluster that does not run is exit 3.
            if state != State::Running {
                return Err(crate::error::refused(format!(
                    "the local cluster is {word}"
                )));
            }
        }
        LocalCommand::Url { admin } => {
            // A URL for a cluster that does not run would reach whatever listens on local.port
            // (another checkout's cluster): none, exit 3 as `local status`.
            let state = pg.state()?;
            if state != State::Running {
                return Err(crate::error::refused(format!(
                    "the local cluster in {} is {}, so it has no URL (another server may listen on its port); start it with `aidock-provision local start` (or `aidock-provision init`)",
                    pg.root().display(),
                    if state == State::Absent {
                        "absent"
                    } else {
                        "stopped"
                    }
                )));
            }
            let url = if *admin {
                pg.admin_url()?
            } else {
                let d = &settings.database;
                format!(
                    "postgresql://{}:{}@127.0.0.1:{}/{}",
                    d.owner,
                    percent_encode(d.password.expose()),
                    pg.port(),
                    d.name
                )
            };
            if out.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"url": url}))?
                );
            } else {
                outln!("{url}");
            }
        }
        LocalCommand::Destroy => {
            policy::confirm(
                settings,
                &format!(
                    "`local destroy` deletes the local cluster in {} and all its data",
                    pg.root().display()
                ),
            )?;
            let what = if pg.destroy()? { "destroyed" } else { "absent" };
            say(format!("local cluster {what}: {}", pg.root().display()));
        }
    }
    Ok(())
}

/// Percent-encode a URL's userinfo part (RFC 3986 unreserved characters stay as they are).
fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
