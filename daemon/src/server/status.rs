//! The one mapping from the domain [`Error`] to a gRPC [`Status`].

use crate::backend::guard::DeviceGuard;
use crate::error::{Error, Outage};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tonic::metadata::MetadataValue;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt};

/// Converts a domain error into the gRPC status a caller acts on.
pub(crate) fn to_status(e: Error) -> Status {
    match e {
        Error::NotFound(missing) => {
            let mut status = Status::not_found(missing.to_string());
            let meta = status.metadata_mut();
            meta.insert("custos-missing", MetadataValue::from_static(missing.kind()));
            // Names are ASCII by the keyring's rules; one that is not a valid
            // header value is left to the message.
            if let Ok(v) = MetadataValue::try_from(missing.name()) {
                meta.insert("custos-missing-name", v);
            }
            status
        }
        Error::InvalidArgument(invalid) => match invalid.field {
            // The standard detail (google.rpc.BadRequest) naming the claim,
            // which gRPC libraries in every language read.
            Some(field) => Status::with_error_details(
                tonic::Code::InvalidArgument,
                invalid.detail.clone(),
                ErrorDetails::with_bad_request_violation(field, invalid.detail),
            ),
            None => Status::invalid_argument(invalid.detail),
        },
        Error::FailedPrecondition(m) => Status::failed_precondition(m),
        Error::AlreadyExists(m) => Status::already_exists(m),
        Error::PermissionDenied(m) => Status::permission_denied(m),
        Error::ResourceExhausted(e) => match e.retry_after {
            // The standard detail (google.rpc.RetryInfo) that gRPC
            // libraries in every language read.
            Some(after) => Status::with_error_details(
                tonic::Code::ResourceExhausted,
                e.detail,
                ErrorDetails::with_retry_info(Some(after)),
            ),
            None => Status::resource_exhausted(e.detail),
        },
        Error::Unavailable(outage) => {
            let mut status = Status::unavailable(outage.to_string());
            let meta = status.metadata_mut();
            meta.insert(
                "custos-unavailable",
                MetadataValue::from_static(outage.kind()),
            );
            // Backend names are ASCII by the config's rules; one that is not
            // a valid header value is left to the message.
            if let Some(Ok(v)) = outage.backend().map(MetadataValue::try_from) {
                meta.insert("custos-backend", v);
            }
            status
        }
        Error::Internal(m) => {
            // The detail (paths, device codes) is for the operator's log, not
            // for every caller: the caller gets a reference to find it there.
            let reference = hex::encode(rand::random::<[u8; 6]>());
            tracing::error!(error = %m, reference = %reference, "internal error");
            Status::internal(format!(
                "custosd hit an internal fault (reference {reference}); the daemon log has \
                 the details under that reference"
            ))
        }
    }
}

/// The outcome code an audit line records for a failed call: the gRPC code's
/// name (`PermissionDenied`, `Unavailable`, ...), the same for every
/// operation, so an auditor can count failures by kind.
pub(crate) fn audit_code(s: &Status) -> String {
    format!("{:?}", s.code())
}

/// Runs device work for a key under its backend's watch: on the request's
/// own task when the backend is an in-process software token (`[sessions]
/// inline_calls`: no thread hand-off, which on a small machine costs more
/// than the signature) and a slot is free, else on a blocking thread with the
/// backend's deadline. Past the deadline the caller gets UNAVAILABLE naming
/// the backend and the call keeps its thread until the device answers; a
/// backend whose threads are all held that way is refused at once.
pub(crate) async fn device<T: Send + 'static>(
    guard: &Arc<DeviceGuard>,
    alg: crate::alg::Algorithm,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    let started = std::time::Instant::now();
    let result = if let Some(_slot) = guard.inline_slot() {
        f().map_err(to_status)
    } else {
        on_thread(guard, f).await
    };
    let timed_out = matches!(&result, Err(s) if s.code() == tonic::Code::Unavailable);
    guard.call_outcome(match &result {
        Err(s) if timed_out => Some(s.message()),
        _ => None,
    });
    crate::metrics::device_call(&guard.name, alg.as_str(), started.elapsed(), timed_out);
    result
}

/// Runs device work on a blocking thread under its backend's watch, with
/// the backend's deadline (see [`device`]); never inline.
pub(crate) async fn on_thread<T: Send + 'static>(
    guard: &Arc<DeviceGuard>,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    let started = tokio::time::Instant::now();
    let Some(slot) = guard.wait_thread_slot(guard.timeout).await else {
        return Err(unavailable(
            guard,
            if guard.overdue() >= guard.max_threads() {
                format!(
                "backend {:?} is not answering: all {} of its device threads wait on calls past \
                 their deadline; other backends are unaffected; retry later",
                guard.name,
                guard.max_threads()
            )
            } else {
                format!(
                    "backend {:?} is saturated: all {} of its device threads stayed busy for the \
                 whole call deadline ({} ms); retry later or spread keysets over more backends",
                    guard.name,
                    guard.max_threads(),
                    guard.timeout.as_millis()
                )
            },
        ));
    };
    // Waiting for a thread counts against the call's deadline.
    let remaining = guard.timeout.saturating_sub(started.elapsed());
    const RUNNING: u8 = 0;
    const DONE: u8 = 1;
    const OVERDUE: u8 = 2;
    let state = Arc::new(AtomicU8::new(RUNNING));
    let mut handle = tokio::task::spawn_blocking({
        let state = state.clone();
        let guard = guard.clone();
        move || {
            let r = f();
            drop(slot);
            if state.swap(DONE, Ordering::AcqRel) == OVERDUE {
                guard.overdue_returned();
            }
            r
        }
    });
    match tokio::time::timeout(remaining, &mut handle).await {
        Ok(joined) => joined_status(joined),
        Err(_) => {
            guard.mark_overdue();
            if state
                .compare_exchange(RUNNING, OVERDUE, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // It finished just now after all.
                guard.overdue_returned();
                return joined_status(handle.await);
            }
            tracing::error!(backend = %guard.name, timeout_ms = guard.timeout.as_millis() as u64,
                "device call past its deadline; the request gets UNAVAILABLE");
            Err(unavailable(
                guard,
                format!(
                    "backend {:?} did not answer within {} ms; the call was abandoned (other \
                     backends are unaffected); retry later",
                    guard.name,
                    guard.timeout.as_millis()
                ),
            ))
        }
    }
}

/// UNAVAILABLE for a device call the guard gave up on, through the one
/// mapping, naming the backend in the metadata as well as the message.
fn unavailable(guard: &DeviceGuard, detail: String) -> Status {
    to_status(Error::Unavailable(Outage::device(
        Some(&guard.name),
        detail,
    )))
}

fn joined_status<T>(joined: Result<Result<T, Error>, tokio::task::JoinError>) -> Result<T, Status> {
    match joined {
        Ok(r) => r.map_err(to_status),
        Err(e) => Err(to_status(Error::Internal(format!(
            "device task failed: {e}"
        )))),
    }
}

/// Runs blocking device work off the async runtime and maps its error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(to_status),
        Err(e) => Err(to_status(Error::Internal(format!(
            "device task failed: {e}"
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Missing;

    #[test]
    fn not_found_carries_what_was_missing_as_metadata() {
        let s = to_status(Error::NotFound(Missing::Version {
            keyset: "id".into(),
            kid: "k-1".into(),
        }));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "keyset \"id\" has no version with kid k-1");
        assert_eq!(s.metadata().get("custos-missing").unwrap(), "version");
        assert_eq!(s.metadata().get("custos-missing-name").unwrap(), "k-1");
        // A name that is no header value stays in the message only.
        let s = to_status(Error::NotFound(Missing::Keyset {
            name: "bad\nname".into(),
        }));
        assert_eq!(s.metadata().get("custos-missing").unwrap(), "keyset");
        assert!(s.metadata().get("custos-missing-name").is_none());
    }

    #[test]
    fn unavailable_says_what_is_down_as_metadata() {
        let s = to_status(Error::Unavailable(Outage::device(
            Some("hsm"),
            "backend \"hsm\" did not answer",
        )));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(s.message(), "backend \"hsm\" did not answer");
        assert_eq!(s.metadata().get("custos-unavailable").unwrap(), "device");
        assert_eq!(s.metadata().get("custos-backend").unwrap(), "hsm");
        let s = to_status(Error::Unavailable(Outage::AuditLog("disk full".into())));
        assert_eq!(s.metadata().get("custos-unavailable").unwrap(), "audit-log");
        assert!(s.metadata().get("custos-backend").is_none());
        let s = to_status(Error::Unavailable(Outage::KeyringStore("etcd".into())));
        assert_eq!(
            s.metadata().get("custos-unavailable").unwrap(),
            "keyring-store"
        );
    }

    #[test]
    fn exhausted_says_when_to_retry_in_the_standard_detail() {
        let s = to_status(Error::ResourceExhausted(crate::error::Exhausted {
            detail: "rate limit".into(),
            retry_after: Some(std::time::Duration::from_millis(200)),
        }));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "rate limit");
        let info = s.get_details_retry_info().expect("RetryInfo");
        assert_eq!(
            info.retry_delay,
            Some(std::time::Duration::from_millis(200))
        );
    }

    #[test]
    fn a_bad_claim_is_named_in_the_standard_detail() {
        let s = to_status(Error::invalid_claim("exp", "claim \"exp\" is required"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "claim \"exp\" is required");
        let bad = s.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "claims.exp");
        let s = to_status(Error::invalid("not JSON"));
        assert!(s.get_details_bad_request().is_none());
    }

    #[test]
    fn internal_detail_stays_in_the_log() {
        let s = to_status(Error::Internal("/var/lib/custos/secret-path: EIO".into()));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("secret-path"), "{}", s.message());
        assert!(s.message().contains("reference"), "{}", s.message());
    }
}
