//! The one mapping from the domain [`Error`] to a gRPC [`Status`].

use crate::error::Error;
use tonic::Status;

/// Converts a domain error into the gRPC status a caller acts on.
pub(crate) fn to_status(e: Error) -> Status {
    match e {
        Error::NotFound(m) => Status::not_found(m),
        Error::InvalidArgument(m) => Status::invalid_argument(m),
        Error::FailedPrecondition(m) => Status::failed_precondition(m),
        Error::AlreadyExists(m) => Status::already_exists(m),
        Error::PermissionDenied(m) => Status::permission_denied(m),
        Error::Unavailable(m) => Status::unavailable(m),
        Error::Internal(m) => {
            tracing::error!(error = %m, "internal error");
            Status::internal(m)
        }
    }
}

/// Runs device work for a key: on the request's own task when the backend
/// is an in-process software token (`[sessions] inline_calls`: no thread
/// hand-off, which on a small machine costs more than the signature), else
/// on the blocking pool.
pub(crate) async fn device<T: Send + 'static>(
    inline: bool,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    if inline {
        f().map_err(to_status)
    } else {
        blocking(f).await
    }
}

/// Runs blocking device work off the async runtime and maps its error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(to_status),
        Err(e) => Err(Status::internal(format!("device task failed: {e}"))),
    }
}
