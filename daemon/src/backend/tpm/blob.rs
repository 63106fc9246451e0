//! The key blob files in the state directory: the TPM-wrapped public and
//! private parts of each key (the private part is readable only by this
//! TPM), and the public key they carry.

use super::errors::blob_err;
use crate::backend::{BackendError, PublicKey};
use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};

/// An ECDSA component as exactly 32 bytes (leading zeros stripped, then
/// left-padded).
pub(super) fn pad32(v: &[u8]) -> Result<Vec<u8>, BackendError> {
    let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..];
    if v.len() > 32 {
        return Err(BackendError::Internal(
            "ECDSA component longer than 32 bytes".into(),
        ));
    }
    let mut out = vec![0u8; 32 - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}

/// The public key of a TPM key.
pub(super) fn public_of(public: &Public) -> Result<PublicKey, BackendError> {
    match public {
        Public::Ecc { unique, .. } => Ok(PublicKey::p256(
            &pad32(unique.x().value())?,
            &pad32(unique.y().value())?,
        )),
        Public::Rsa { unique, .. } => Ok(PublicKey::rsa(unique.value(), &[1, 0, 1])),
        _ => Err(BackendError::Internal("unexpected TPM key type".into())),
    }
}

/// The blob file: public and private parts, hex, one per line.
pub(super) fn encode_blob(public: &Public, private: &Private) -> Result<String, BackendError> {
    Ok(format!(
        "{}\n{}\n",
        hex::encode(public.marshall().map_err(blob_err("public"))?),
        hex::encode(private.value())
    ))
}

/// Reads a blob file written by [`encode_blob`].
pub(super) fn decode_blob(text: &str) -> Result<(Public, Private), BackendError> {
    let mut lines = text.lines();
    let bad = || BackendError::Internal("TPM key blob file is damaged".into());
    let public = hex::decode(lines.next().ok_or_else(bad)?).map_err(|_| bad())?;
    let private = hex::decode(lines.next().ok_or_else(bad)?).map_err(|_| bad())?;
    Ok((
        Public::unmarshall(&public).map_err(blob_err("public"))?,
        Private::try_from(private).map_err(blob_err("private"))?,
    ))
}

/// Writes a new blob file, owner-only, and syncs it.
pub(super) fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), BackendError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackendError::Internal(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| BackendError::Internal(format!("{}: {e}", path.display())))
}
