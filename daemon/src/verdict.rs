//! Why a presented token or message is invalid: one [`Reason`] from a
//! documented set and a detail for people. Every checker (`fapi/`,
//! `binding/`, `httpsig/`, `jose/`) returns these; `server/` turns them into
//! a `custos.v1.Verdict`. It sits at the bottom of the module graph so the
//! checkers need not depend on each other for it.

/// Why a token is not valid. The wire names are stable; clients switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Not a compact JWS with base64url JSON header and claims.
    Malformed,
    /// `alg` is `none`, HMAC, or not allowed here.
    AlgNotAllowed,
    /// `alg` is not the algorithm of the key named by `kid`.
    AlgMismatch,
    /// `kid` missing, unknown, or naming a key that may not verify (pending, disabled, destroyed).
    UnknownKid,
    /// The header has `crit` members Custos does not understand.
    CritUnsupported,
    /// `typ` is not the one this kind of token must have.
    WrongTyp,
    /// The signature does not verify.
    BadSignature,
    /// A required claim is missing or has the wrong type.
    MissingClaim,
    /// `exp` has passed (beyond the clock skew).
    Expired,
    /// `nbf` is in the future, or `iat` is further in the future than the skew.
    NotYetValid,
    /// `iss` is not the expected issuer.
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    WrongAudience,
    /// The token lives longer than allowed (`exp - nbf` or `exp - iat`).
    LifetimeTooLong,
    /// Claims that must agree do not (`iss` = `sub` = `client_id`, ...).
    ClaimsMismatch,
    /// A `jti` seen before within its lifetime.
    Replay,
    /// A binding was presented but the token has no matching `cnf` (or none was presented for a bound-only check).
    CnfMissing,
    /// The token's `cnf` does not match the presented certificate or DPoP key.
    CnfMismatch,
    /// The DPoP proof is not valid (see the detail).
    DpopInvalid,
    /// The DPoP proof's `jti` was used before.
    DpopReplay,
    /// An HTTP message signature does not cover a component the verifier requires.
    MissingComponent,
    /// The body does not match its `Content-Digest`.
    DigestMismatch,
    /// An HTTP message signature's `tag` is not the one expected.
    WrongTag,
}

impl Reason {
    /// The reason's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::AlgMismatch => "alg_mismatch",
            Self::UnknownKid => "unknown_kid",
            Self::CritUnsupported => "crit_unsupported",
            Self::WrongTyp => "wrong_typ",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim => "missing_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::ClaimsMismatch => "claims_mismatch",
            Self::Replay => "replay",
            Self::CnfMissing => "cnf_missing",
            Self::CnfMismatch => "cnf_mismatch",
            Self::DpopInvalid => "dpop_invalid",
            Self::DpopReplay => "dpop_replay",
            Self::MissingComponent => "missing_component",
            Self::DigestMismatch => "digest_mismatch",
            Self::WrongTag => "wrong_tag",
        }
    }
}

/// A failed check: the reason code and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The reason code.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

/// Shorthand for an [`Invalid`].
pub fn invalid(reason: Reason, detail: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        detail: detail.into(),
    }
}
