//! The one place PKCS#11 return values become [`BackendError`]s.

use crate::backend::BackendError;
use cryptoki::error::{Error as CkError, RvError};

/// Whether a session that returned this error should be thrown away rather
/// than reused (the token went away, the session died, or the login was lost).
pub(super) fn session_is_broken(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::GeneralError
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Maps a cryptoki error met while doing `what` to a [`BackendError`].
pub(super) fn map(what: &str, e: CkError) -> BackendError {
    match &e {
        CkError::Pkcs11(rv, func) => {
            let detail = format!("{what}: {func:?} returned {rv:?}");
            match rv {
                RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::GeneralError
                | RvError::CryptokiNotInitialized
                | RvError::SessionCount => BackendError::Unavailable(detail),
                RvError::PinIncorrect | RvError::PinExpired | RvError::PinLocked => {
                    BackendError::Unavailable(format!(
                        "{what}: the token refused the PIN ({rv:?}); check the backend's `pin` source"
                    ))
                }
                RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
                    BackendError::Unsupported(format!(
                        "{detail}; the HSM profile names a mechanism this token lacks"
                    ))
                }
                RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => {
                    BackendError::KeyNotFound(detail)
                }
                _ => BackendError::Internal(detail),
            }
        }
        CkError::LibraryLoading(_) => BackendError::Unavailable(format!("{what}: {e}")),
        _ => BackendError::Internal(format!("{what}: {e}")),
    }
}
