//! OpenID Connect token hashes (`at_hash`, `c_hash`, `s_hash`, `rt_hash`):
//! base64url of the left-most half of the hash of the ASCII value, where the
//! hash is the one of the signing algorithm: SHA-256 for ES256, PS256 and
//! RS256; SHA-512 for EdDSA with Ed25519 (OpenID Connect Core 3.1.3.6 and the
//! FAPI 1 Advanced detached signature).

use crate::alg::Algorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};

/// The token hash of `value` for a token signed with `alg`.
pub(crate) fn token_hash(alg: Algorithm, value: &str) -> String {
    match alg {
        // RSA-OAEP-256 never signs a token; SHA-256 keeps the match total.
        Algorithm::ES256 | Algorithm::PS256 | Algorithm::RS256 | Algorithm::RsaOaep256 => {
            let h = Sha256::digest(value.as_bytes());
            B64.encode(&h[..16])
        }
        Algorithm::EdDSA => {
            let h = Sha512::digest(value.as_bytes());
            B64.encode(&h[..32])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenID Connect Core 1.0, appendix A.3 (`code id_token`, RS256).
    #[test]
    fn oidc_core_c_hash_example() {
        assert_eq!(
            token_hash(
                Algorithm::RS256,
                "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"
            ),
            "LDktKdoQak3Pk0cnXxCltA"
        );
    }

    /// OpenID Connect Core 1.0, appendix A.4 (`id_token token`, RS256).
    #[test]
    fn oidc_core_at_hash_example() {
        assert_eq!(
            token_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn eddsa_uses_the_left_half_of_sha512() {
        let h = token_hash(Algorithm::EdDSA, "abc");
        // SHA-512("abc") starts ddaf35a1...; half of 64 bytes is 32 bytes = 43 chars.
        assert_eq!(h.len(), 43);
        assert_eq!(B64.decode(&h).unwrap()[..4], [0xdd, 0xaf, 0x35, 0xa1]);
        assert_eq!(token_hash(Algorithm::ES256, "abc").len(), 22);
    }
}
