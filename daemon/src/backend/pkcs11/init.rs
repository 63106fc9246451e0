//! `C_Initialize`, with the `pReserved` string some modules need (NSS
//! softokn reads its database location from it). One of the daemon's two
//! `unsafe` places (the other is `one_call.rs`): cryptoki takes the
//! reserved pointer as a raw pointer.

use super::errors;
use crate::backend::BackendError;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use std::ffi::{c_void, CString};
use std::ptr::NonNull;

/// Initialises the module, passing `reserved` as `pReserved` when given.
///
/// # Errors
/// `InvalidArgument`-like `Unavailable` for a string with a NUL byte, or the
/// module's own refusal.
pub(super) fn initialize(ctx: &Pkcs11, reserved: Option<&str>) -> Result<(), BackendError> {
    let flags = CInitializeFlags::OS_LOCKING_OK;
    let args = match reserved {
        None => CInitializeArgs::new(flags),
        Some(text) => {
            let c = CString::new(text).map_err(|_| {
                BackendError::Unavailable("initialize_args must not contain a NUL byte".into())
            })?;
            // The string is leaked on purpose: a module may keep the pointer
            // for as long as it stays initialised, which is the process's life.
            let ptr: &'static mut [u8] = Box::leak(c.into_bytes_with_nul().into_boxed_slice());
            let ptr = NonNull::new(ptr.as_mut_ptr().cast::<c_void>())
                .ok_or_else(|| BackendError::Internal("initialize_args pointer is null".into()))?;
            // SAFETY: `ptr` points to a NUL-terminated string that lives for
            // the rest of the process (leaked above) and is never written.
            #[allow(unsafe_code)]
            unsafe {
                CInitializeArgs::new_with_reserved(flags, ptr)
            }
        }
    };
    match ctx.initialize(args) {
        Ok(()) => Ok(()),
        // Already initialised by another backend of this process: fine
        // unless this one needed its own arguments, which would be ignored.
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) if reserved.is_none() => {
            Ok(())
        }
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
            Err(BackendError::Unavailable(
                "the module is already initialised in this process, so its initialize_args \
                 would be ignored: configure one backend per module that needs initialize_args"
                    .into(),
            ))
        }
        Err(e) => Err(errors::map("C_Initialize", e)),
    }
}
