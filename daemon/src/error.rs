//! The daemon's domain error: one enum every layer below `server/` returns.
//!
//! Each variant says what kind of failure it is, so `server/status.rs` can map
//! it to exactly one gRPC status; the message is written for the person who
//! reads it and never contains secrets.

use thiserror::Error;

/// A failure of a Custos operation, with a message a person can act on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The named keyset, key version or backend does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed (bad name, claims that are not a JSON object, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well-formed but not allowed in the current state (wrong purpose, profile, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The object to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller has used up a quota (the rate limit, a replay cache
    /// partition); slowing down and retrying helps.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The key device (HSM/TPM) cannot be reached or is not answering; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// A fault inside Custos or its state directory. The message goes to the
    /// daemon log; the caller gets a reference to it, not the detail.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The message, whatever the kind.
    pub fn detail(&self) -> String {
        self.to_string()
    }

    /// Prefixes the message with where the error happened, keeping the kind.
    pub fn with_context(self, ctx: &str) -> Self {
        let at = |m: String| format!("{ctx}: {m}");
        match self {
            Error::NotFound(m) => Error::NotFound(at(m)),
            Error::InvalidArgument(m) => Error::InvalidArgument(at(m)),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(at(m)),
            Error::AlreadyExists(m) => Error::AlreadyExists(at(m)),
            Error::PermissionDenied(m) => Error::PermissionDenied(at(m)),
            Error::ResourceExhausted(m) => Error::ResourceExhausted(at(m)),
            Error::Unavailable(m) => Error::Unavailable(at(m)),
            Error::Internal(m) => Error::Internal(at(m)),
        }
    }
}

/// Result alias for the daemon's domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
