//! Signing in one `C_Sign` call. cryptoki's `Session::sign` asks the module
//! for the signature's length first (a `C_Sign` with no buffer) and then
//! signs: two round trips to a network HSM where one does, since PKCS#11
//! (section 5.2) lets a caller hand over a buffer that is large enough, and
//! keeps the operation active on `CKR_BUFFER_TOO_SMALL`. This module calls
//! the module's own `C_Sign` with such a buffer, after cryptoki's
//! `C_SignInit`; it takes the function from the module's function list,
//! loaded from the same path (so the same, already initialised, library).
//!
//! Measured with `tests/bench/network-hsm` (2 ms on each `C_Sign`): one
//! signature holds its session for one round trip instead of two.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Rv};
use cryptoki::session::Session;
use cryptoki_sys::{CKR_BUFFER_TOO_SMALL, CK_FUNCTION_LIST_PTR, CK_RV, CK_ULONG};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

type CSign = unsafe extern "C" fn(
    cryptoki_sys::CK_SESSION_HANDLE,
    *mut u8,
    CK_ULONG,
    *mut u8,
    *mut CK_ULONG,
) -> CK_RV;

/// The module's `C_Sign`, kept with the library handle that keeps it loaded.
pub(super) struct OneCallSign {
    c_sign: CSign,
    /// Cleared for good when the module says it is not initialised (another
    /// instance after all): signing goes back to cryptoki's two calls.
    usable: AtomicBool,
    _library: libloading::Library,
}

impl std::fmt::Debug for OneCallSign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneCallSign")
    }
}

impl OneCallSign {
    /// The `C_Sign` of the module at `path` (already loaded and initialised
    /// by cryptoki), or `None` when it cannot be had (then cryptoki's
    /// two-call signing is used).
    #[allow(unsafe_code)]
    pub(super) fn load(path: &Path) -> Option<Self> {
        // SAFETY: the library was loaded by cryptoki from this path already;
        // dlopen of the same path returns that instance and runs no new
        // initialisers. It stays loaded while `_library` lives.
        let library = unsafe { libloading::Library::new(path) }.ok()?;
        // SAFETY: `C_GetFunctionList` has this signature in every PKCS#11
        // version; the list it fills is owned by the module and lives as
        // long as the module stays loaded.
        let c_sign = unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn(*mut CK_FUNCTION_LIST_PTR) -> CK_RV> =
                library.get(b"C_GetFunctionList\0").ok()?;
            let mut list: CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
            if get(&mut list) != cryptoki_sys::CKR_OK || list.is_null() {
                return None;
            }
            // Some modules hand out a new, uninitialised instance per
            // function list (p11-kit's client module does): only a list
            // whose C_GetInfo works is the instance cryptoki initialised.
            let mut info: cryptoki_sys::CK_INFO = std::mem::zeroed();
            if (*list).C_GetInfo?(&mut info) != cryptoki_sys::CKR_OK {
                return None;
            }
            (*list).C_Sign?
        };
        Some(Self {
            c_sign,
            usable: AtomicBool::new(true),
            _library: library,
        })
    }

    /// Signs `data` in the operation `C_SignInit` started on `session`,
    /// with a buffer of `expected` bytes (the signature's length, or more);
    /// a module that wants more says so and gets it on a second call.
    /// Whether one-call signing is still in use.
    pub(super) fn usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    #[allow(unsafe_code)]
    pub(super) fn sign(
        &self,
        session: &Session,
        data: &[u8],
        expected: usize,
    ) -> Result<Vec<u8>, CkError> {
        let mut out = vec![0u8; expected.max(1)];
        let data_len: CK_ULONG = data.len().try_into()?;
        let call = |out: &mut Vec<u8>| -> Result<(CK_RV, CK_ULONG), CkError> {
            let mut len: CK_ULONG = out.len().try_into()?;
            // SAFETY: the pointers and lengths describe live buffers of those
            // sizes; the module reads `data` (it does not keep it, and does
            // not write it despite the non-const pointer in the C signature)
            // and writes at most `len` bytes into `out`, setting `len`.
            let rv = unsafe {
                (self.c_sign)(
                    session.handle(),
                    data.as_ptr().cast_mut(),
                    data_len,
                    out.as_mut_ptr(),
                    &mut len,
                )
            };
            Ok((rv, len))
        };
        let (mut rv, mut len) = call(&mut out)?;
        if rv == CKR_BUFFER_TOO_SMALL {
            // The operation stays active: again, with the length the module asked for.
            out.resize(len.try_into()?, 0);
            (rv, len) = call(&mut out)?;
        }
        if rv == cryptoki_sys::CKR_CRYPTOKI_NOT_INITIALIZED {
            self.usable.store(false, Ordering::Release);
            tracing::warn!("the module's function list is another instance; signing with cryptoki's two calls from now on");
        }
        Rv::from(rv).into_result(Function::Sign)?;
        out.truncate(len.try_into()?);
        Ok(out)
    }
}
