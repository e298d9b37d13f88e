//! Exit-code classification: the few error kinds a caller (main) must tell apart.

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
}

impl Kind {
    /// The process exit code for this kind.
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 2,
            Kind::Refused => 3,
            Kind::Unreachable => 4,
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

fn classified(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        kind,
        message: message.into(),
    })
}

/// The exit code for an error: the first classified error in its chain (a connection that
/// could not be made counts as unreachable when the server is down, full or starting), else 1.
#[must_use]
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(c) = err.chain().find_map(|e| e.downcast_ref::<Classified>()) {
        return c.kind.exit_code();
    }
    match crate::db::connect_reason(err) {
        Some(
            crate::db::Reason::Unreachable
            | crate::db::Reason::NoSlot
            | crate::db::Reason::StartingUp,
        ) => Kind::Unreachable.exit_code(),
        _ => 1,
    }
}
