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
    /// The named keyset, key version, backend or request does not exist;
    /// [`Missing`] says which, by name, so a caller can branch on it (the
    /// status carries it as `custos-missing` metadata).
    #[error("{0}")]
    NotFound(Missing),
    /// The request itself is malformed (bad name, claims that are not a JSON
    /// object, ...); [`Invalid::field`] names the claim at fault where one is
    /// (the status carries it as a standard `google.rpc.BadRequest` field
    /// violation).
    #[error("{0}")]
    InvalidArgument(Invalid),
    /// The request is well-formed but not allowed in the current state (wrong purpose, profile, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The object to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller is not allowed to do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller has used up a quota (the rate limit); slowing down and
    /// retrying helps, and [`Exhausted::retry_after`] says when (the status
    /// carries it as the standard `google.rpc.RetryInfo` detail).
    #[error("{0}")]
    ResourceExhausted(Exhausted),
    /// Something the operation needs is not answering; [`Outage`] says what
    /// (the key device, the keyring store, the audit log), so a caller can
    /// fail over or alert the right team (the status carries it as
    /// `custos-unavailable` metadata). Retrying later may help.
    #[error("{0}")]
    Unavailable(Outage),
    /// A fault inside Custos or its state directory. The message goes to the
    /// daemon log; the caller gets a reference to it, not the detail.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// INVALID_ARGUMENT that names no single field.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Error::InvalidArgument(Invalid {
            field: None,
            detail: detail.into(),
        })
    }

    /// INVALID_ARGUMENT about one claim of the caller's claim set, named
    /// `claims.<name>` in the field violation.
    pub fn invalid_claim(name: &str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument(Invalid {
            field: Some(format!("claims.{name}")),
            detail: detail.into(),
        })
    }

    /// The message, whatever the kind.
    pub fn detail(&self) -> String {
        self.to_string()
    }
}

/// What a [`Error::NotFound`] looked for: the typed detail, which survives
/// to the caller (`server/status.rs` sends the kind and the name as
/// metadata) instead of only a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// A keyset, by name.
    Keyset {
        /// The name asked for.
        name: String,
    },
    /// A version of a keyset, by kid.
    Version {
        /// The keyset.
        keyset: String,
        /// The kid asked for.
        kid: String,
    },
    /// A backend, by name.
    Backend {
        /// The name asked for.
        name: String,
        /// The configured backends, for the message.
        known: Vec<String>,
    },
    /// A dual-control request, by id.
    Request {
        /// The id asked for.
        id: String,
    },
}

impl Missing {
    /// The kind of thing, as sent in `custos-missing`: `keyset`, `version`,
    /// `backend` or `request`.
    pub fn kind(&self) -> &'static str {
        match self {
            Missing::Keyset { .. } => "keyset",
            Missing::Version { .. } => "version",
            Missing::Backend { .. } => "backend",
            Missing::Request { .. } => "request",
        }
    }

    /// The name (or kid, or id) that was asked for.
    pub fn name(&self) -> &str {
        match self {
            Missing::Keyset { name } | Missing::Backend { name, .. } => name,
            Missing::Version { kid, .. } => kid,
            Missing::Request { id } => id,
        }
    }
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Keyset { name } => write!(
                f,
                "no keyset named {name:?}; `custos keyset list` shows the keysets"
            ),
            Missing::Version { keyset, kid } => {
                write!(f, "keyset {keyset:?} has no version with kid {kid}")
            }
            Missing::Backend { name, known } => write!(
                f,
                "no backend named {name:?}; configured backends: {known:?}"
            ),
            Missing::Request { id } => {
                write!(f, "no request {id:?}: `custos requests list` shows them")
            }
        }
    }
}

/// What an [`Error::Unavailable`] waited on: the typed detail a caller
/// branches on. An authorization server that sees `device` can send the
/// call to another custosd; `audit-log` means nothing is signed anywhere
/// the log is shared until the disk or sink is fixed; `keyring-store` stops
/// key administration while signing goes on for `max_stale`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outage {
    /// A key device (HSM or TPM) is unreachable, refused the login, or did
    /// not answer within its deadline.
    Device {
        /// The backend's name, where the failing layer knows it.
        backend: Option<String>,
        /// What happened, for the person reading it.
        detail: String,
    },
    /// The shared keyring store (etcd) is not answering.
    KeyringStore(String),
    /// The audit log (file or sink) cannot take the line, and it is
    /// required, so the operation was not performed.
    AuditLog(String),
    /// Other writers kept changing the keyring under this one; a retry
    /// normally succeeds.
    Contention(String),
}

impl Outage {
    /// A device outage, with the backend's name when it is known.
    pub fn device(backend: Option<&str>, detail: impl Into<String>) -> Self {
        Outage::Device {
            backend: backend.map(str::to_string),
            detail: detail.into(),
        }
    }

    /// The kind, as sent in `custos-unavailable`: `device`,
    /// `keyring-store`, `audit-log` or `contention`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outage::Device { .. } => "device",
            Outage::KeyringStore(_) => "keyring-store",
            Outage::AuditLog(_) => "audit-log",
            Outage::Contention(_) => "contention",
        }
    }

    /// The backend at fault, for a device outage whose backend is known.
    pub fn backend(&self) -> Option<&str> {
        match self {
            Outage::Device { backend, .. } => backend.as_deref(),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outage::Device { detail, .. } => f.write_str(detail),
            Outage::KeyringStore(m) | Outage::AuditLog(m) | Outage::Contention(m) => f.write_str(m),
        }
    }
}

/// What was wrong with a request, and in which field when one is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as `claims.<claim name>` for a claim the caller supplied
    /// (or should have), when the fault is in one.
    pub field: Option<String>,
    /// What is wrong and what to do, for the person reading it.
    pub detail: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What a [`Error::ResourceExhausted`] ran out of, and when trying again
/// can succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// What was used up, for the person reading it.
    pub detail: String,
    /// How long until the quota has room again, when that is known.
    pub retry_after: Option<std::time::Duration>,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Result alias for the daemon's domain operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
