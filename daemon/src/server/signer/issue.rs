//! The one path that signs, encrypts and audits ([`SignerService::issue`])
//! and the helpers the handlers share.

use super::SignerService;
use crate::audit::Event;
use crate::error::Error;
use crate::fapi::{self, claims::Context, claims::Token};
use crate::jose::{jwe, jws};
use crate::keyring::keyset::Purpose;
use crate::keyring::{now, ActiveKey};
use crate::server::caller::Caller;
use crate::server::status::{audit_code, device, to_status};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use custos_proto::v1 as pb;
use serde_json::{Map, Value};
use tonic::{Response, Status};

/// INVALID_ARGUMENT with `m`, through the one error mapping.
pub(super) fn invalid(m: impl Into<String>) -> Status {
    to_status(Error::invalid(m.into()))
}

/// A fresh `jti`: 128 random bits, base64url.
pub(super) fn jti() -> String {
    B64.encode(rand::random::<[u8; 16]>())
}

/// A proto string field, where empty means absent.
pub(super) fn optional(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// A requested token lifetime, where 0 means the kind's default.
pub(super) fn lifetime(secs: i64) -> Option<i64> {
    (secs != 0).then_some(secs)
}

/// The caller's claims: a JSON object within `jws::MAX_CLAIMS_BYTES`.
pub(super) fn claims_of(json: &str) -> Result<Map<String, Value>, Status> {
    jws::parse_claims(json).map_err(to_status)
}

/// Generic signing serves purposes `generic` and `userinfo` only, and a
/// `generic` purpose only on a keyset that serves nothing else (a manifest
/// from before that rule may still hold such a mix).
pub(super) fn generic_allowed(key: &ActiveKey, purpose: Purpose) -> Result<(), Error> {
    match purpose {
        Purpose::Generic if key.purposes.len() > 1 => Err(Error::FailedPrecondition(
            "this keyset mixes purpose generic with typed purposes; generic signing is refused \
             on it (its keys serve token kinds): move generic signing to a keyset of its own"
                .into(),
        )),
        Purpose::Generic | Purpose::Userinfo => Ok(()),
        other => Err(fapi::generic::typed_only(other)),
    }
}

impl SignerService {
    pub(super) fn key(&self, keyset: &str, purpose: Purpose) -> Result<ActiveKey, Status> {
        let key = self
            .keyring
            .active_key(keyset, purpose)
            .map_err(to_status)?;
        fapi::profile::check(key.profile, key.alg).map_err(to_status)?;
        Ok(key)
    }

    /// Builds the token with `build`, signs it on the device, encrypts it when
    /// asked, and writes the audit record (a token whose audit line cannot be
    /// written is not returned).
    pub(super) async fn issue(
        &self,
        caller: Caller,
        operation: &'static str,
        keyset: &str,
        purpose: Purpose,
        encrypt_to: Option<pb::Encryption>,
        build: impl FnOnce(&ActiveKey, &Context) -> Result<Token, Error>,
    ) -> Result<Response<pb::SignedToken>, Status> {
        let encrypt_to = encrypt_to.filter(|e| !e.recipient_jwk.is_empty());
        let encrypted = encrypt_to.is_some();
        let result = async {
            let key = self.key(keyset, purpose)?;
            let ctx = Context {
                now: now(),
                max_lifetime: key.max_token_lifetime,
                issuer: key.issuer.clone(),
            };
            let token = build(&key, &ctx).map_err(to_status)?;
            let kid = key.kid.clone();
            let (guard, alg) = (key.guard.clone(), key.alg);
            let (signed, digest) = device(&guard, alg, move || {
                let jws::SignedJws {
                    token: jws,
                    input_sha256: digest,
                } = jws::sign_jwt(&key, token.typ.as_deref(), &token.claims)?;
                match encrypt_to {
                    Some(e) => {
                        jwe::encrypt_nested(&jws, &e.recipient_jwk, optional(e.enc).as_deref())
                            .map(|t| (t, digest))
                    }
                    None => Ok((jws, digest)),
                }
            })
            .await?;
            Ok::<_, Status>((signed, digest, kid))
        }
        .await;
        let result = result.map(|(signed, digest, kid)| ((signed, kid.clone()), kid, Some(digest)));
        let (token, kid) = self
            .audited(&caller, operation, keyset, purpose, None, result)
            .await?;
        Ok(Response::new(pb::SignedToken {
            token,
            kid,
            encrypted,
        }))
    }

    /// Writes the audit line of a signing call, `ok` with its kid and input
    /// digest or `error` with the status code (and `digest_on_error`, when
    /// the input was known), and passes the result on; a success whose line
    /// cannot be written fails.
    pub(super) async fn audited<T>(
        &self,
        caller: &Caller,
        operation: &'static str,
        keyset: &str,
        purpose: Purpose,
        digest_on_error: Option<String>,
        result: Result<(T, String, Option<String>), Status>,
    ) -> Result<T, Status> {
        match result {
            Ok((value, kid, digest)) => {
                self.audit(
                    caller,
                    operation,
                    keyset,
                    Some(&kid),
                    purpose,
                    digest,
                    "ok",
                    None,
                )
                .await?;
                Ok(value)
            }
            Err(status) => {
                let code = audit_code(&status);
                self.audit(
                    caller,
                    operation,
                    keyset,
                    None,
                    purpose,
                    digest_on_error,
                    "error",
                    Some(&code),
                )
                .await?;
                Err(status)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn audit(
        &self,
        caller: &Caller,
        operation: &str,
        keyset: &str,
        kid: Option<&str>,
        purpose: Purpose,
        input_sha256: Option<String>,
        outcome: &str,
        detail: Option<&str>,
    ) -> Result<(), Status> {
        self.gate
            .audit
            .record(
                caller.to_json(),
                &Event {
                    operation,
                    keyset: Some(keyset),
                    kid,
                    purpose: Some(purpose.as_str()),
                    input_sha256,
                    outcome,
                    detail,
                },
            )
            .await
            .map_err(to_status)
    }
}
