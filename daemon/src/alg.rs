//! The JOSE signature algorithms Custos signs with: the shared vocabulary of every layer.

use std::fmt;
use std::str::FromStr;

/// A JWS signature algorithm (RFC 7518 / RFC 8037) that a Custos key can sign with.
///
/// `none` and the HMAC algorithms are deliberately absent: a value of this type
/// can never name them, so no code path can sign or verify with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256; the signature is the 64-byte `r || s`.
    ES256,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
    PS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (allowed only by the `oidc` profile).
    RS256,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256: key encryption for JWE
    /// (decryption keysets only; it never signs).
    #[serde(rename = "RSA-OAEP-256")]
    RsaOaep256,
}

impl Algorithm {
    /// Every algorithm, in the order they are documented.
    pub const ALL: [Algorithm; 5] = [
        Self::ES256,
        Self::PS256,
        Self::EdDSA,
        Self::RS256,
        Self::RsaOaep256,
    ];

    /// The JOSE `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::PS256 => "PS256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
            Self::RsaOaep256 => "RSA-OAEP-256",
        }
    }

    /// Whether this is a signature algorithm (everything but RSA-OAEP-256).
    pub fn is_signing(self) -> bool {
        !matches!(self, Self::RsaOaep256)
    }

    /// Whether the key behind this algorithm is an RSA key.
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::PS256 | Self::RS256 | Self::RsaOaep256)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unsupported algorithm {s:?}: use one of ES256, PS256, EdDSA, RS256 (signing) or RSA-OAEP-256 (decryption)")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_and_clients_name_exactly_these_algorithms() {
        let ours: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(ours, custos_proto::ALGORITHMS);
    }

    #[test]
    fn parses_only_known_asymmetric_algorithms() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
        for bad in ["none", "HS256", "es256", "", "RS512"] {
            assert!(bad.parse::<Algorithm>().is_err(), "{bad} must be refused");
        }
    }
}
