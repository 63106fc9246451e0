//! The FAPI profiles' algorithm rules (FAPI 1.0 Advanced 8.6, FAPI 2.0
//! Security Profile 5.4, plain OpenID Connect).

use crate::alg::Algorithm;
use crate::error::{Error, Result};
use crate::keyring::keyset::{Profile, Purpose};

/// The algorithms `profile` allows.
pub(crate) fn allowed(profile: Profile) -> &'static [Algorithm] {
    match profile {
        Profile::Fapi1Advanced => &[Algorithm::PS256, Algorithm::ES256],
        Profile::Fapi2 => &[Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA],
        Profile::Oidc => &[
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
        ],
    }
}

/// Refuses `alg` when `profile` does not allow it.
///
/// # Errors
/// `FailedPrecondition` naming the profile and the algorithms it allows.
pub(crate) fn check(profile: Profile, alg: Algorithm) -> Result<()> {
    let allowed = allowed(profile);
    if allowed.contains(&alg) {
        return Ok(());
    }
    let names: Vec<_> = allowed.iter().map(|a| a.as_str()).collect();
    Err(Error::FailedPrecondition(format!(
        "profile {} does not allow {alg}; it allows {}",
        profile.as_str(),
        names.join(", ")
    )))
}

/// Checks a new keyset's algorithm against its profile and purposes: a
/// decryption algorithm serves only `request_object_decryption`, and a
/// signature algorithm never does.
///
/// # Errors
/// `FailedPrecondition` naming the profile, or `InvalidArgument` for a
/// purpose the algorithm cannot serve.
pub(crate) fn check_keyset(profile: Profile, alg: Algorithm, purposes: &[Purpose]) -> Result<()> {
    if purposes.contains(&Purpose::Generic) && purposes.len() > 1 {
        return Err(Error::invalid(
            "purpose generic cannot be combined with other purposes: a generic keyset signs \
             whatever its callers send, so its keys must never be trusted for a token kind; \
             create a separate keyset",
        ));
    }
    // A keyset has one owner: the issuer's own keys, a client's keys, or
    // HTTP-message keys; mixing them would make a client key trusted for
    // the issuer's tokens (or the other way round).
    let owner = |p: &Purpose| match p {
        p if p.published_by_issuer() => "the authorization server's own tokens",
        Purpose::RequestObject | Purpose::ClientAssertion => {
            "a client's request objects and assertions"
        }
        // A TLS key signs whatever its TLS stack hands over, so it must
        // never be trusted for a token (or the other side's handshake).
        Purpose::TlsClient => "a TLS client's transport key",
        Purpose::TlsServer => "a TLS server's certificate key",
        // custosd signs its own checkpoints with it; nothing else may.
        Purpose::Audit => "the audit log's checkpoints",
        _ => "HTTP message signatures",
    };
    if let Some(first) = purposes.first() {
        if let Some(other) = purposes.iter().find(|p| owner(p) != owner(first)) {
            return Err(Error::invalid(format!(
                "purposes {first} and {other} belong to different owners ({} and {}); \
                 a keyset serves one owner: create one keyset for each",
                owner(first),
                owner(other)
            )));
        }
    }
    if purposes.iter().any(|p| p.is_tls()) && !crate::fapi::tls::ALGORITHMS.contains(&alg) {
        return Err(Error::invalid(format!(
            "a TLS keyset needs alg ES256, PS256 or EdDSA (TLS 1.3 signature schemes \
             ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, ed25519), not {alg}"
        )));
    }
    if purposes.contains(&Purpose::Audit) && !matches!(alg, Algorithm::ES256 | Algorithm::PS256) {
        return Err(Error::invalid(format!(
            "an audit keyset needs alg ES256 or PS256 (what `custos audit verify` checks), not {alg}"
        )));
    }
    let decrypts = purposes.contains(&Purpose::RequestObjectDecryption);
    if alg.is_signing() {
        if decrypts {
            return Err(Error::invalid(format!(
                "purpose request_object_decryption needs alg RSA-OAEP-256, not {alg}"
            )));
        }
        return check(profile, alg);
    }
    if purposes
        .iter()
        .any(|p| *p != Purpose::RequestObjectDecryption)
    {
        return Err(Error::invalid(format!(
            "{alg} keys only decrypt: their one purpose is request_object_decryption"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs256_only_under_oidc() {
        assert!(check(Profile::Oidc, Algorithm::RS256).is_ok());
        let err = check(Profile::Fapi2, Algorithm::RS256)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fapi2") && err.contains("PS256, ES256, EdDSA"),
            "{err}"
        );
        assert!(check(Profile::Fapi1Advanced, Algorithm::EdDSA).is_err());
        assert!(check(Profile::Fapi1Advanced, Algorithm::PS256).is_ok());
    }

    #[test]
    fn decryption_keysets_only_decrypt() {
        let dec = [Purpose::RequestObjectDecryption];
        assert!(check_keyset(Profile::Fapi1Advanced, Algorithm::RsaOaep256, &dec).is_ok());
        assert!(check_keyset(Profile::Fapi2, Algorithm::PS256, &dec).is_err());
        assert!(check_keyset(Profile::Fapi2, Algorithm::RsaOaep256, &[Purpose::IdToken]).is_err());
        assert!(check_keyset(Profile::Fapi2, Algorithm::ES256, &[Purpose::IdToken]).is_ok());
    }

    #[test]
    fn tls_keysets_serve_only_tls() {
        let client = [Purpose::TlsClient];
        assert!(check_keyset(Profile::Fapi2, Algorithm::ES256, &client).is_ok());
        assert!(check_keyset(Profile::Fapi1Advanced, Algorithm::PS256, &client).is_ok());
        let mixed = [Purpose::TlsClient, Purpose::ClientAssertion];
        let err = check_keyset(Profile::Fapi2, Algorithm::ES256, &mixed).unwrap_err();
        assert!(err.to_string().contains("one owner"), "{err}");
        let both = [Purpose::TlsClient, Purpose::TlsServer];
        assert!(check_keyset(Profile::Fapi2, Algorithm::ES256, &both).is_err());
        let err = check_keyset(Profile::Oidc, Algorithm::RS256, &client).unwrap_err();
        assert!(err.to_string().contains("TLS keyset"), "{err}");
    }
}
