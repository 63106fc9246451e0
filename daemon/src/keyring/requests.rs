//! Dual control: a destructive key operation (destroy, disable, a policy
//! change) becomes a pending request that other people must approve before
//! it is carried out. Requests live in the keyring manifest, so every daemon
//! sharing the keyring sees them and they survive a restart; they expire.
//!
//! What an approver approves is the request's digest: the SHA-256 of its
//! operation, parameters, requester and times, shown by `custos requests
//! show`. An approval naming another digest is refused, so a request that
//! changed (in the manifest) after an approver looked at it is never
//! carried out on that approval. The requester cannot approve, nobody counts
//! twice, and the operation runs once, exactly as requested.

use crate::error::{Error, Missing, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An operation dual control can hold back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum Guarded {
    /// Destroy a key version on the device.
    DestroyVersion {
        /// Keyset.
        keyset: String,
        /// Version.
        kid: String,
    },
    /// Disable a key version.
    DisableVersion {
        /// Keyset.
        keyset: String,
        /// Version.
        kid: String,
    },
    /// Change a keyset's rotation policy.
    SetPolicy {
        /// Keyset.
        keyset: String,
        /// New rotation period (`None`: unchanged; `Some(None)`: manual).
        rotation_period: Option<Option<i64>>,
        /// New publish-ahead time.
        publish_ahead: Option<i64>,
        /// New retention.
        retain_for: Option<i64>,
        /// New auto-destroy.
        auto_destroy: Option<bool>,
    },
}

impl Guarded {
    /// The `[dual_control] operations` name of this operation.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DestroyVersion { .. } => "destroy",
            Self::DisableVersion { .. } => "disable",
            Self::SetPolicy { .. } => "set_policy",
        }
    }

    /// The keyset it acts on.
    pub fn keyset(&self) -> &str {
        match self {
            Self::DestroyVersion { keyset, .. }
            | Self::DisableVersion { keyset, .. }
            | Self::SetPolicy { keyset, .. } => keyset,
        }
    }

    /// The access right an approver needs on the keyset (the one the
    /// operation itself needs).
    pub fn right(&self) -> &'static str {
        match self {
            // As the RPCs: DisableVersion needs `destroy` too.
            Self::DestroyVersion { .. } | Self::DisableVersion { .. } => "destroy",
            Self::SetPolicy { .. } => "manage",
        }
    }

    /// The kid it acts on, if one.
    pub fn kid(&self) -> Option<&str> {
        match self {
            Self::DestroyVersion { kid, .. } | Self::DisableVersion { kid, .. } => Some(kid),
            Self::SetPolicy { .. } => None,
        }
    }
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for approvals.
    Pending,
    /// Approved and carried out.
    Done,
    /// Approved, and the operation failed when carried out.
    Failed,
    /// Rejected by an approver.
    Rejected,
}

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who (a caller identity).
    pub by: String,
    /// When (Unix seconds).
    pub at: i64,
}

/// A held-back operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Random id, `r-` and 16 hex digits.
    pub id: String,
    /// What is to be done, exactly.
    pub guarded: Guarded,
    /// Who asked.
    pub requested_by: String,
    /// When (Unix seconds).
    pub requested_at: i64,
    /// After this it can no longer be approved.
    pub expires_at: i64,
    /// Distinct approvals needed (besides the requester).
    pub needed: u32,
    /// Approvals so far.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// Where it stands.
    pub state: RequestState,
    /// What happened when carried out, or why rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Request {
    /// A new pending request.
    pub fn new(guarded: Guarded, by: &str, at: i64, ttl: i64, needed: u32) -> Self {
        Self {
            id: format!("r-{}", hex::encode(rand::random::<[u8; 8]>())),
            guarded,
            requested_by: by.to_string(),
            requested_at: at,
            expires_at: at.saturating_add(ttl),
            needed,
            approvals: Vec::new(),
            state: RequestState::Pending,
            outcome: None,
        }
    }

    /// What approvers approve: SHA-256 (hex) over the id, operation and its
    /// parameters, requester, times and approvals needed.
    pub fn digest(&self) -> String {
        let fixed = serde_json::json!({
            "id": self.id,
            "guarded": self.guarded,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "needed": self.needed,
        });
        hex::encode(Sha256::digest(fixed.to_string().as_bytes()))
    }

    /// Whether it is past its time (and still pending).
    pub fn expired(&self, now: i64) -> bool {
        self.state == RequestState::Pending && now >= self.expires_at
    }

    /// Records `by`'s approval of `digest`; `true` when that makes enough.
    ///
    /// # Errors
    /// `PermissionDenied` for the requester; `FailedPrecondition` for a
    /// request no longer pending, expired, already approved by `by`, or a
    /// digest that is not this request's.
    pub fn approve(&mut self, by: &str, digest: &str, now: i64) -> Result<bool> {
        self.check_open(now)?;
        if digest != self.digest() {
            return Err(Error::FailedPrecondition(format!(
                "request {} is not the one you approved: its digest is {}, you approved {digest}; \
                 look at it again (`custos requests show {}`)",
                self.id,
                self.digest(),
                self.id
            )));
        }
        if by == self.requested_by {
            return Err(Error::PermissionDenied(format!(
                "request {}: the requester cannot approve their own request; another person must",
                self.id
            )));
        }
        if self.approvals.iter().any(|a| a.by == by) {
            return Err(Error::FailedPrecondition(format!(
                "request {}: {by} approved it already; an approver counts once",
                self.id
            )));
        }
        self.approvals.push(Approval {
            by: by.to_string(),
            at: now,
        });
        Ok(self.approvals.len() >= self.needed as usize)
    }

    /// Fails unless the request can still be decided.
    ///
    /// # Errors
    /// `FailedPrecondition` naming its state or expiry.
    pub fn check_open(&self, now: i64) -> Result<()> {
        if self.state != RequestState::Pending {
            return Err(Error::FailedPrecondition(format!(
                "request {} is {:?}, not pending",
                self.id, self.state
            )));
        }
        if self.expired(now) {
            return Err(Error::FailedPrecondition(format!(
                "request {} expired at {}: submit the operation again",
                self.id, self.expires_at
            )));
        }
        Ok(())
    }
}

pub(crate) use crate::config::DualControl;

fn no_request(id: &str) -> Error {
    Error::NotFound(Missing::Request { id: id.to_string() })
}

impl super::Keyring {
    /// Dual control's settings, when on.
    pub fn dual_control(&self) -> Option<DualControl> {
        self.dual_control.get().cloned()
    }

    /// Turns dual control on (at start).
    pub fn set_dual_control(&self, dc: DualControl) {
        let _ = self.dual_control.set(dc);
    }

    /// Records `guarded` as a pending request by `by`. Blocking.
    ///
    /// # Errors
    /// `NotFound` for an unknown keyset or kid; `FailedPrecondition` when
    /// dual control is off.
    pub fn submit(&self, guarded: Guarded, by: &str) -> Result<Request> {
        let dc = self.dual_control().ok_or_else(|| {
            Error::FailedPrecondition("dual control is not configured ([dual_control])".into())
        })?;
        self.refuse_quarantined(guarded.keyset())?;
        let ks = self.keyset(guarded.keyset())?;
        if let Some(kid) = guarded.kid() {
            if !ks.versions.iter().any(|v| v.kid == kid) {
                return Err(Error::NotFound(Missing::Version {
                    keyset: ks.name.clone(),
                    kid: kid.to_string(),
                }));
            }
        }
        let request = Request::new(guarded, by, super::now(), dc.ttl, dc.approvals);
        self.mutate(|m| {
            m.requests.insert(request.id.clone(), request.clone());
            Ok(())
        })?;
        Ok(request)
    }

    /// Every request the manifest holds, newest first.
    pub fn requests(&self) -> Vec<Request> {
        let mut all: Vec<Request> = self.snapshot().requests.values().cloned().collect();
        all.sort_by(|a, b| b.requested_at.cmp(&a.requested_at).then(a.id.cmp(&b.id)));
        all
    }

    /// One request.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn request(&self, id: &str) -> Result<Request> {
        self.snapshot()
            .requests
            .get(id)
            .cloned()
            .ok_or_else(|| no_request(id))
    }

    /// Approves request `id` (of digest `digest`) as `by`; the approval that
    /// makes enough carries the operation out, once. Blocking. Returns the
    /// request as it ends up.
    ///
    /// # Errors
    /// As `Request::approve`; `NotFound`.
    pub fn approve(&self, id: &str, digest: &str, by: &str) -> Result<Request> {
        let at = super::now();
        // One CAS write records the approval and, when it is the last one
        // needed, claims the request (state done): a second daemon or a
        // racing approver then finds it decided, so it runs once.
        let (request, run) = self.mutate(|m| {
            let r = m.requests.get_mut(id).ok_or_else(|| no_request(id))?;
            let enough = r.approve(by, digest, at)?;
            if enough {
                r.state = RequestState::Done;
            }
            Ok((r.clone(), enough))
        })?;
        if !run {
            return Ok(request);
        }
        let approvers: Vec<&str> = request.approvals.iter().map(|a| a.by.as_str()).collect();
        let on_behalf = format!(
            "{} (request {}, approved by {})",
            request.requested_by,
            request.id,
            approvers.join(", ")
        );
        let outcome = match &request.guarded {
            Guarded::DestroyVersion { keyset, kid } => self.destroy(keyset, kid, &on_behalf),
            Guarded::DisableVersion { keyset, kid } => self.disable(keyset, kid, &on_behalf),
            Guarded::SetPolicy {
                keyset,
                rotation_period,
                publish_ahead,
                retain_for,
                auto_destroy,
            } => self.set_policy(
                keyset,
                super::PolicyUpdate {
                    rotation_period: *rotation_period,
                    publish_ahead: *publish_ahead,
                    retain_for: *retain_for,
                    auto_destroy: *auto_destroy,
                },
                &on_behalf,
            ),
        };
        let (state, text) = match &outcome {
            Ok(_) => (RequestState::Done, "carried out".to_string()),
            Err(e) => (RequestState::Failed, e.to_string()),
        };
        self.mutate(|m| {
            let r = m.requests.get_mut(id).ok_or_else(|| no_request(id))?;
            r.state = state;
            r.outcome = Some(text.clone());
            Ok(r.clone())
        })
    }

    /// Rejects a pending request (the requester withdrawing it, or an
    /// approver refusing). Blocking.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` for a request no longer pending.
    pub fn reject(&self, id: &str, by: &str, reason: &str) -> Result<Request> {
        let at = super::now();
        self.mutate(|m| {
            let r = m.requests.get_mut(id).ok_or_else(|| no_request(id))?;
            r.check_open(at)?;
            r.state = RequestState::Rejected;
            r.outcome = Some(format!("rejected by {by}: {reason}"));
            Ok(r.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destroy() -> Request {
        Request::new(
            Guarded::DestroyVersion {
                keyset: "as-id".into(),
                kid: "k1".into(),
            },
            "uid:1001",
            100,
            60,
            2,
        )
    }

    #[test]
    fn two_other_people_approve_the_exact_request() {
        let mut r = destroy();
        let d = r.digest();
        assert!(matches!(
            r.approve("uid:1001", &d, 110),
            Err(Error::PermissionDenied(_))
        ));
        assert!(!r.approve("uid:1002", &d, 110).unwrap());
        assert!(r.approve("uid:1002", &d, 111).is_err(), "twice");
        assert!(r.approve("uid:1003", &d, 112).unwrap());
    }

    #[test]
    fn a_changed_or_expired_request_is_not_approved() {
        let mut r = destroy();
        let d = r.digest();
        let mut changed = r.clone();
        changed.guarded = Guarded::DestroyVersion {
            keyset: "as-id".into(),
            kid: "k2".into(),
        };
        assert!(changed.approve("uid:1002", &d, 110).is_err());
        assert!(r.approve("uid:1002", &d, 160).is_err(), "expired");
        assert!(r.expired(160) && !r.expired(159));
    }
}
