//! Who is calling: the Unix peer's credentials from the kernel (SO_PEERCRED),
//! checked before any key is touched.
//!
//! Policy today: with no `[[access]]` rules configured, only the daemon's own
//! uid and root may call. Every decision is logged.

use std::os::unix::fs::MetadataExt;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

/// A caller's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Peer uid.
    pub(crate) uid: u32,
    /// Peer gid.
    pub(crate) gid: u32,
    /// Peer pid, when the kernel reports it.
    pub(crate) pid: Option<i32>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid={} gid={}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid={pid}")?;
        }
        Ok(())
    }
}

/// The access check shared by every service.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    own_uid: u32,
}

impl Gate {
    /// A gate allowing the daemon's own uid and root.
    pub(crate) fn new() -> Self {
        // /proc/self belongs to the process's effective uid.
        let own_uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        Self { own_uid }
    }

    /// Identifies the caller of `req` and checks it may perform `operation`.
    pub(crate) fn check<T>(&self, req: &Request<T>, operation: &str) -> Result<Caller, Status> {
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred);
        let Some(cred) = cred else {
            tracing::warn!(operation, "refused a caller without peer credentials");
            return Err(Status::permission_denied(format!(
                "{operation}: the caller could not be identified"
            )));
        };
        let caller = Caller {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        if caller.uid == 0 || caller.uid == self.own_uid {
            return Ok(caller);
        }
        tracing::warn!(target: "custos::audit", %caller, operation, outcome = "denied", "access denied");
        Err(Status::permission_denied(format!(
            "{operation} denied for uid {}: only the daemon's uid ({}) and root may call when no [[access]] policy is configured",
            caller.uid, self.own_uid
        )))
    }
}
