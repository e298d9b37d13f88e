//! Exit-code classification: the few error kinds a caller (main) must tell apart, and why a
//! connection failed. Depends on nothing else in the crate (`db` builds on it).

use std::fmt;

/// What kind of failure an error is, which decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad flags, settings or names (exit 2).
    Usage,
    /// A safety guard said no, e.g. the production profile (exit 3).
    Refused,
    /// The server could not be reached (exit 4).
    Unreachable,
    /// Ctrl-C (exit 130, as a shell reports SIGINT), after cleaning up.
    Interrupted,
    /// The server was lost in the middle of the run (failover, restart), or a commit is not on
    /// the current primary (exit 4, as unreachable; `--wait` runs the command again).
    Lost,
    /// A commit was made, but not on a node the cluster can be seen to keep (no standby has it):
    /// it may be lost (exit 4; `--wait` runs the command again, which settles it).
    Unconfirmed,
}

impl Kind {
    /// The process exit code for this kind.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 2,
            Kind::Refused => 3,
            Kind::Unreachable | Kind::Lost | Kind::Unconfirmed => 4,
            Kind::Interrupted => 130,
        }
    }
}

/// An error message tagged with its [`Kind`]; anywhere in an `anyhow` chain it decides the exit code.
#[derive(Debug)]
pub struct Classified {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// A usage or configuration error (exit 2).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Usage, message)
}

/// A refusal by a safety guard (exit 3).
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Refused, message)
}

/// The server is unreachable (exit 4).
pub fn unreachable(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Unreachable, message)
}

/// Interrupted by Ctrl-C, after cleaning up (exit 130).
pub fn interrupted(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Interrupted, message)
}

fn classified(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        kind,
        message: message.into(),
    })
}

/// `err`'s message with `more` after it, keeping its kind (and so its exit code): for a
/// second failure while handling the first (the cause stays first).
#[must_use]
pub fn and_also(err: &anyhow::Error, more: &str) -> anyhow::Error {
    let message = format!("{err:#}; and {more}");
    match err.chain().find_map(|e| e.downcast_ref::<Classified>()) {
        Some(c) => classified(c.kind, message),
        // A server lost mid-run stays one (exit 4, re-run under --wait), whatever failed after
        // it: its SQLSTATE or closed connection is only in the error being replaced.
        None if server_lost(err) => classified(Kind::Lost, message),
        None => anyhow::Error::msg(message),
    }
}

/// SQLSTATEs that mean the server went away under a run: terminated by an administrator or a
/// crash (57P01, 57P02), shutting down or starting (57P03), and a read-only transaction where
/// the run had checked it could write (25006: the node was demoted meanwhile).
const LOST: [&str; 4] = ["57P01", "57P02", "57P03", "25006"];

/// Whether `err` says the server was lost in the middle of a run (a failover, a restart, a
/// crash), as opposed to a refusal or a failing statement: the connection closed, or one of
/// [`LOST`]. What was in flight was rolled back by the server; running the command again (every
/// command is idempotent) finishes it.
#[must_use]
pub fn server_lost(err: &anyhow::Error) -> bool {
    match err.chain().find_map(|e| e.downcast_ref::<Classified>()) {
        Some(c) if c.kind == Kind::Lost || c.kind == Kind::Unconfirmed => return true,
        // A refusal, a usage error or Ctrl-C is what it says, whatever text it quotes.
        Some(c) if c.kind != Kind::Unreachable => return false,
        _ => {}
    }
    let typed = err.chain().any(|e| {
        e.downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|pg| pg.is_closed() || pg.code().is_some_and(|c| LOST.contains(&c.code())))
    });
    // Many messages carry the server's error as text (file, line and column added).
    let text = format!("{err:#}");
    typed
        || text.contains("connection closed")
        || LOST
            .iter()
            .any(|code| text.contains(&format!("(SQLSTATE {code})")))
}

/// The server was lost mid-run, or a commit it acknowledged is not on the current primary
/// (exit 4; `--wait` runs the command again).
pub fn lost(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Lost, message)
}

/// A commit that could not be confirmed on the cluster's primary (exit 4; `--wait` runs the
/// command again): unlike a lost server, the commit was made, and may or may not survive.
pub fn unconfirmed(message: impl Into<String>) -> anyhow::Error {
    classified(Kind::Unconfirmed, message)
}

/// Whether `err` is a commit that could not be confirmed ([`unconfirmed`]).
#[must_use]
pub fn is_unconfirmed(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<Classified>())
        .any(|c| c.kind == Kind::Unconfirmed)
}

/// The exit code for an error: the first classified error in its chain (a connection that
/// could not be made counts as unreachable when the server is down, full or starting; a server
/// lost mid-run too), else 1.
#[must_use]
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(c) = err.chain().find_map(|e| e.downcast_ref::<Classified>()) {
        return c.kind.exit_code();
    }
    if server_lost(err) {
        return Kind::Lost.exit_code();
    }
    match connect_reason(err) {
        Some(Reason::Unreachable | Reason::NoSlot | Reason::StartingUp) => {
            Kind::Unreachable.exit_code()
        }
        _ => 1,
    }
}

/// Why a connection failed, for callers that give advice (doctor) and for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Down, unreachable, timed out (exit 4).
    Unreachable,
    /// No free connection slot, SQLSTATE 53300 (exit 4).
    NoSlot,
    /// Starting up or shutting down, SQLSTATE 57P03 (exit 4).
    StartingUp,
    WrongPassword,
    /// pg_hba.conf or a missing role.
    Refused,
    NoDatabase,
    Tls,
    Other,
}

/// A failed connection: what happened, in words, and the [`Reason`].
#[derive(Debug)]
pub struct ConnectError {
    pub reason: Reason,
    message: String,
}

pub(crate) fn connect_error(reason: Reason, message: String) -> anyhow::Error {
    anyhow::Error::new(ConnectError { reason, message })
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

/// The connection failure's reason anywhere in an error chain.
#[must_use]
pub fn connect_reason(err: &anyhow::Error) -> Option<Reason> {
    err.chain()
        .find_map(|e| e.downcast_ref::<ConnectError>())
        .map(|c| c.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_server_stays_lost_whatever_failed_after_it() {
        let first = anyhow::anyhow!(
            "writing usage logs: terminating connection due to administrator command (SQLSTATE 57P01)"
        );
        let joined = and_also(
            &first,
            "dropping the staging tables failed: connection closed",
        );
        assert_eq!(exit_code(&joined), 4);
        assert!(server_lost(&joined));
        let unconfirmed = unconfirmed("committed on a node no standby follows");
        assert!(server_lost(&unconfirmed) && is_unconfirmed(&unconfirmed));
        assert_eq!(exit_code(&unconfirmed), 4);
    }
}
