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
}

impl Kind {
    /// The process exit code for this kind.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 2,
            Kind::Refused => 3,
            Kind::Unreachable => 4,
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
        None => anyhow::Error::msg(message),
    }
}

/// The exit code for an error: the first classified error in its chain (a connection that
/// could not be made counts as unreachable when the server is down, full or starting), else 1.
#[must_use]
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(c) = err.chain().find_map(|e| e.downcast_ref::<Classified>()) {
        return c.kind.exit_code();
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
