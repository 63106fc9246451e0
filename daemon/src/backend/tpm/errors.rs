//! The one place TSS results become [`BackendError`]s, as
//! `pkcs11/errors.rs` is for PKCS#11.
//!
//! A refused authorization (a wrong owner or key auth value, or a TPM in
//! dictionary-attack lockout) is `Refused`, which the backend never retries:
//! retrying a wrong auth value would count against the TPM's lockout. Other
//! TPM response codes are `Unavailable` (the connection is reset and the
//! command tried once more); a failure inside the TSS wrapper is `Internal`.

use crate::backend::BackendError;
use crate::secret::Secret;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::structures::{Auth, HashcheckTicket};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

/// Maps a TSS error met while doing `what`.
pub(super) fn tpm_err(what: &str) -> impl Fn(tss_esapi::Error) -> BackendError + '_ {
    move |e| map(what, &e)
}

fn map(what: &str, e: &tss_esapi::Error) -> BackendError {
    match e {
        tss_esapi::Error::Tss2Error(rc) => match rc.kind() {
            Some(
                Tss2ResponseCodeKind::AuthFail
                | Tss2ResponseCodeKind::BadAuth
                | Tss2ResponseCodeKind::Lockout,
            ) => BackendError::Refused(format!(
                "TPM {what}: {e}; check the backend's `owner_auth` / `key_auth` source (not retried: wrong values count toward the TPM's lockout)"
            )),
            _ => BackendError::Unavailable(format!("TPM {what}: {e}")),
        },
        tss_esapi::Error::WrapperError(_) => BackendError::Internal(format!("TPM {what}: {e}")),
    }
}

/// Maps a failure to (un)marshal or build a TPM structure: our data, not the
/// TPM, so `Internal`.
pub(super) fn blob_err(what: &str) -> impl Fn(tss_esapi::Error) -> BackendError + '_ {
    move |e| BackendError::Internal(format!("TPM key blob {what}: {e}"))
}

/// The null hash-check ticket for signing a digest the TPM did not hash.
pub(super) fn null_ticket() -> Result<HashcheckTicket, BackendError> {
    HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    })
    .map_err(blob_err("ticket"))
}

/// An auth value for the TPM from a configured secret.
pub(super) fn auth(secret: &Option<Secret>) -> Result<Option<Auth>, BackendError> {
    secret
        .as_ref()
        .map(|s| Auth::try_from(s.expose().as_bytes().to_vec()))
        .transpose()
        .map_err(|_| BackendError::Internal("the TPM auth value is too long".into()))
}
