//! Dual control over gRPC: holding a guarded operation back as a request,
//! and listing, showing, approving and rejecting requests. The rules are
//! `keyring::requests`'s; this file checks callers, converts, and audits
//! every step.

use super::caller::Caller;
use super::keys::KeyAdminService;
use super::status::{audit_code, blocking, to_status};
use crate::error::Error;
use crate::keyring::requests::{Guarded, Request, RequestState};
use custos_proto::v1 as pb;
use tonic::Status;

/// The request as the API shows it.
pub(crate) fn shown(r: &Request) -> pb::PendingRequest {
    let state = if r.expired(crate::keyring::now()) {
        "expired"
    } else {
        match r.state {
            RequestState::Pending => "pending",
            RequestState::Done => "done",
            RequestState::Failed => "failed",
            RequestState::Rejected => "rejected",
        }
    };
    pb::PendingRequest {
        id: r.id.clone(),
        operation: r.guarded.kind().into(),
        keyset: r.guarded.keyset().into(),
        kid: r.guarded.kid().unwrap_or_default().into(),
        operation_json: serde_json::to_string(&r.guarded).unwrap_or_default(),
        requested_by: r.requested_by.clone(),
        requested_at: r.requested_at,
        expires_at: r.expires_at,
        needed: r.needed,
        approvals: r
            .approvals
            .iter()
            .map(|a| pb::RequestApproval {
                by: a.by.clone(),
                at: a.at,
            })
            .collect(),
        state: state.into(),
        outcome: r.outcome.clone().unwrap_or_default(),
        digest: r.digest(),
    }
}

impl KeyAdminService {
    /// When dual control holds `guarded` back: records the request, audits
    /// it, and returns the status that tells the caller so (FAILED_PRECONDITION,
    /// with the request id in the message and the `custos-request-id`
    /// metadata). `None`: not guarded, go on.
    pub(crate) async fn hold(&self, caller: &Caller, guarded: Guarded) -> Option<Status> {
        let dc = self.keyring.dual_control()?;
        if !dc.guards(guarded.kind()) {
            return None;
        }
        let keyring = self.keyring.clone();
        let by = caller.identity();
        let (keyset, kid, kind) = (
            guarded.keyset().to_string(),
            guarded.kid().map(str::to_string),
            guarded.kind(),
        );
        let result = blocking(move || keyring.submit(guarded, &by)).await;
        let detail = match &result {
            Ok(r) => format!("{kind} held for approval as request {}", r.id),
            Err(s) => audit_code(s),
        };
        if let Err(e) = self
            .gate
            .audit_admin(
                caller,
                "request_submitted",
                &keyset,
                kid.as_deref(),
                result.is_ok(),
                Some(&detail),
            )
            .await
        {
            return Some(e);
        }
        Some(match result {
            Ok(r) => {
                let mut status = to_status(Error::FailedPrecondition(format!(
                    "dual control: this {kind} is request {} and needs {} approval(s) by other \
                     people before it is carried out: `custos requests show {}`, then \
                     `custos requests approve {} --digest ...`; it expires at {}",
                    r.id, r.needed, r.id, r.id, r.expires_at
                )));
                if let Ok(v) = r.id.parse() {
                    status.metadata_mut().insert("custos-request-id", v);
                }
                status
            }
            Err(s) => s,
        })
    }

    /// The caller of a call on request `id`, checked for the right
    /// `right_of` names on the request's keyset, and the request. For an
    /// unknown id the caller is checked first (for `manage` on any keyset),
    /// so identification and rate limits come before any answer and an
    /// unauthorised caller cannot tell which ids exist.
    pub(crate) fn request_caller<T>(
        &self,
        request: &tonic::Request<T>,
        id: &str,
        right_of: fn(&Guarded) -> &'static str,
    ) -> Result<(Caller, Request), Status> {
        match self.keyring.request(id) {
            Ok(r) => {
                let caller =
                    self.gate
                        .check(request, right_of(&r.guarded), Some(r.guarded.keyset()))?;
                Ok((caller, r))
            }
            Err(e) => {
                self.gate.check(request, "manage", None)?;
                Err(to_status(e))
            }
        }
    }

    /// `ApproveRequest` and `RejectRequest` on request `r`, after the
    /// caller's right on its keyset was checked ([`Self::request_caller`]).
    /// The decision itself is made on the manifest as it is then.
    pub(crate) async fn decide(
        &self,
        caller: Caller,
        r: Request,
        approve: Option<String>,
        reason: String,
    ) -> Result<pb::PendingRequest, Status> {
        let id = r.id.clone();
        let (keyset, kid) = (
            r.guarded.keyset().to_string(),
            r.guarded.kid().map(str::to_string),
        );
        let keyring = self.keyring.clone();
        let by = caller.identity();
        let approving = approve.is_some();
        let result = blocking(move || match approve {
            Some(digest) => keyring.approve(&id, &digest, &by),
            None => keyring.reject(&id, &by, &reason),
        })
        .await;
        let (operation, detail) = match (&result, approving) {
            (Ok(r), true) if r.state == RequestState::Pending => (
                "request_approved",
                format!(
                    "request {} approved ({} of {})",
                    r.id,
                    r.approvals.len(),
                    r.needed
                ),
            ),
            (Ok(r), true) => (
                "request_carried_out",
                format!(
                    "request {} ({}) approved by {}: {}",
                    r.id,
                    r.guarded.kind(),
                    r.approvals
                        .iter()
                        .map(|a| a.by.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    r.outcome.as_deref().unwrap_or("")
                ),
            ),
            (Ok(r), false) => ("request_rejected", format!("request {} rejected", r.id)),
            (Err(s), true) => ("request_approved", format!("refused: {}", s.message())),
            (Err(s), false) => ("request_rejected", format!("refused: {}", s.message())),
        };
        let ok = result
            .as_ref()
            .is_ok_and(|r| r.state != RequestState::Failed);
        self.gate
            .audit_admin(
                &caller,
                operation,
                &keyset,
                kid.as_deref(),
                ok,
                Some(&detail),
            )
            .await?;
        result.map(|r| shown(&r))
    }
}
