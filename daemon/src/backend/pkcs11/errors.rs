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
                // Refused, not Unavailable: no retry path may log in again
                // with the same PIN (each wrong try counts toward the
                // token's lockout).
                RvError::PinIncorrect | RvError::PinExpired | RvError::PinLocked => {
                    BackendError::Refused(format!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn a_refused_pin_is_refused_and_never_a_retryable_outage() {
        for rv in [
            RvError::PinIncorrect,
            RvError::PinExpired,
            RvError::PinLocked,
        ] {
            let e = map(
                "logging in to the token",
                CkError::Pkcs11(rv, Function::Login),
            );
            assert!(matches!(e, BackendError::Refused(_)), "{rv:?}: {e:?}");
            assert!(
                e.to_string().contains("check the backend's `pin` source"),
                "{e}"
            );
        }
        let e = map(
            "signing",
            CkError::Pkcs11(RvError::DeviceError, Function::Sign),
        );
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    }
}
