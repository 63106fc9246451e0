//! `SignHttpMessage` and `VerifyHttpMessage`: the gRPC side of RFC 9421
//! HTTP message signatures. The rules live in `crate::httpsig`; this file
//! turns proto messages into its types, signs on the device, and audits.

use super::caller::Caller;
use super::signer::SignerService;
use super::status::{audit_code, device, to_status};
use super::verifier::{accepted, refused, VerifierService};
use crate::audit::Event;
use crate::error::Error;
use crate::httpsig::base::{self, SignatureParams};
use crate::httpsig::check::{self, Policy};
use crate::httpsig::component::Component;
use crate::httpsig::{digest, keys, HttpAlg, Message, TAG_REQUEST, TAG_RESPONSE};
use crate::keyring::keyset::Purpose;
use crate::keyring::now;
use crate::verdict::{invalid, Invalid, Reason};
use custos_proto::v1 as pb;
use serde_json::{json, Map, Value};
use tonic::Status;

/// The default oldest `created` a verifier accepts, in seconds.
pub(crate) const DEFAULT_MAX_AGE: i64 = 300;
/// The largest body Custos digests (the gRPC message limit is the other bound).
const MAX_BODY: usize = 1024 * 1024;
/// The most header fields a message may have.
const MAX_FIELDS: usize = 200;

fn bad(m: impl Into<String>) -> Status {
    to_status(Error::invalid(m.into()))
}

/// A proto message as an [`httpsig::Message`](Message).
pub(crate) fn message(m: pb::HttpMessage, what: &str) -> Result<Message, Status> {
    if m.body.len() > MAX_BODY {
        return Err(bad(format!("the {what} body is larger than 1 MiB")));
    }
    let is_response = m.status != 0;
    if is_response == (!m.method.is_empty() || !m.target_uri.is_empty()) {
        return Err(bad(format!(
            "the {what} must be a request (method and target_uri) or a response (status), not both or neither"
        )));
    }
    if !is_response && (m.method.is_empty() || m.target_uri.is_empty()) {
        return Err(bad(format!(
            "the {what} is a request: give both method and target_uri"
        )));
    }
    let status = match m.status {
        0 => None,
        s @ 100..=999 => Some(s as u16),
        s => return Err(bad(format!("status {s} is not a three-digit HTTP status"))),
    };
    if !is_response {
        crate::httpsig::message::check_target_uri(&m.target_uri).map_err(bad)?;
    }
    if m.fields.len() > MAX_FIELDS {
        return Err(bad(format!(
            "the {what} has {} header fields; at most {MAX_FIELDS} are accepted",
            m.fields.len()
        )));
    }
    for f in &m.fields {
        if f.name.is_empty()
            || !f.name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            || f.value.chars().any(|c| c.is_control() && c != '\t')
        {
            return Err(bad(format!(
                "header field {:?} is not a valid field",
                f.name
            )));
        }
    }
    Ok(Message {
        method: Some(m.method).filter(|s| !s.is_empty()),
        target_uri: Some(m.target_uri).filter(|s| !s.is_empty()),
        status,
        fields: m.fields.into_iter().map(|f| (f.name, f.value)).collect(),
        body: Some(m.body).filter(|b| !b.is_empty()),
    })
}

fn components(list: &[String]) -> Result<Vec<Component>, Status> {
    list.iter()
        .map(|c| Component::parse(c).map_err(bad))
        .collect()
}

/// SHA-256 (hex) of a whole RFC 9421 signature base, for the audit line
/// (the whole base: it holds host names full of dots, so nothing is cut at
/// a `.` as a JWS's signing input is).
fn base_sha256(base: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(base.as_bytes()))
}

impl SignerService {
    /// Signs an HTTP message with the keyset's active key.
    pub(crate) async fn sign_http(
        &self,
        caller: Caller,
        req: pb::SignHttpMessageRequest,
    ) -> Result<pb::SignHttpMessageResponse, Status> {
        // Only the keyset name is needed for the audit line: no copy of the
        // message (bodies can be a megabyte).
        let keyset = req.keyset.clone();
        let result = self.sign_http_inner(req).await;
        let (kid, outcome, detail) = match &result {
            Ok(r) => (Some(r.kid.as_str()), "ok", None),
            Err(s) => (None, "error", Some(audit_code(s))),
        };
        let digest = result.as_ref().ok().map(|r| base_sha256(&r.signature_base));
        self.gate
            .audit
            .record(
                caller.to_json(),
                &Event {
                    operation: "sign_http_message",
                    keyset: Some(&keyset),
                    kid,
                    purpose: Some(Purpose::HttpMessage.as_str()),
                    input_sha256: digest,
                    outcome,
                    detail: detail.as_deref(),
                },
            )
            .await
            .map_err(to_status)?;
        result
    }

    async fn sign_http_inner(
        &self,
        req: pb::SignHttpMessageRequest,
    ) -> Result<pb::SignHttpMessageResponse, Status> {
        let mut msg = message(req.message.unwrap_or_default(), "message")?;
        let request = request_of(req.request, &msg)?;
        let key = self
            .keyring
            .active_key(&req.keyset, Purpose::HttpMessage)
            .map_err(to_status)?;
        let alg = HttpAlg::for_key(key.alg).ok_or_else(|| {
            to_status(Error::FailedPrecondition(format!(
                "a {} keyset does not sign HTTP messages: use ES256, EdDSA or PS256",
                key.alg
            )))
        })?;
        let mut content_digest = String::new();
        if let Some(body) = msg.body.as_deref() {
            if !msg.has_field("content-digest") {
                let alg = if req.digest_algorithm.is_empty() {
                    "sha-256"
                } else {
                    req.digest_algorithm.as_str()
                };
                content_digest = digest::content_digest(alg, body).map_err(bad)?;
                msg.fields
                    .push(("Content-Digest".into(), content_digest.clone()));
            } else {
                let field = msg.field("content-digest").unwrap_or_default();
                digest::check(&field, body).map_err(|i| bad(i.detail))?;
            }
        }
        let covered = if req.components.is_empty() {
            check::fapi_components(&msg, request.as_ref())
        } else {
            components(&req.components)?
        };
        let label = if req.label.is_empty() {
            "sig1".to_string()
        } else {
            req.label
        };
        let tag = if req.tag.is_empty() {
            if msg.is_response() {
                TAG_RESPONSE
            } else {
                TAG_REQUEST
            }
            .to_string()
        } else {
            req.tag
        };
        let params = SignatureParams {
            created: now(),
            expires: None,
            keyid: key.kid.clone(),
            alg: Some(alg.as_str().into()),
            tag: Some(tag),
        };
        let input = base::signature_input(&label, &covered, &params).map_err(bad)?;
        let line = base::params_line(&input, &label)
            .ok_or_else(|| bad("the signature label does not serialize"))?
            .to_string();
        let signature_base =
            base::signature_base(&covered, &msg, request.as_ref(), &line).map_err(bad)?;
        let kid = key.kid.clone();
        let to_sign = signature_base.clone().into_bytes();
        let guard = key.guard.clone();
        let key_alg = key.alg;
        let signature = device(&guard, key_alg, move || match alg {
            HttpAlg::RsaPssSha512 => key.sign_rsa_pss_sha512(&to_sign),
            HttpAlg::EcdsaP256Sha256 | HttpAlg::Ed25519 => key.sign(&to_sign),
        })
        .await?;
        Ok(pb::SignHttpMessageResponse {
            signature_input: input,
            signature: base::signature_field(&label, &signature).map_err(bad)?,
            content_digest,
            label,
            kid,
            alg: alg.as_str().into(),
            signature_base,
        })
    }
}

/// The request a response answers, checked to be a request.
fn request_of(r: Option<pb::HttpMessage>, msg: &Message) -> Result<Option<Message>, Status> {
    let Some(r) = r else { return Ok(None) };
    if !msg.is_response() {
        return Err(bad("a request is given only with a response"));
    }
    let request = message(r, "request")?;
    if request.is_response() {
        return Err(bad("the request must be a request (method and target_uri)"));
    }
    Ok(Some(request))
}

impl VerifierService {
    /// Verifies an HTTP message signature; an invalid one is a verdict, not an error.
    pub(crate) async fn verify_http(
        &self,
        caller: &Caller,
        req: pb::VerifyHttpMessageRequest,
    ) -> Result<pb::Verdict, Status> {
        use pb::verify_http_message_request::Keys;
        let msg = message(req.message.unwrap_or_default(), "message")?;
        let request = request_of(req.request, &msg)?;
        let required = if req.required_components.is_empty() {
            if msg.is_response() && request.is_none() {
                return Err(bad(
                    "a response is verified with the request it answers (FAPI binds the two); \
                     give the request, or name required_components to check it alone",
                ));
            }
            check::fapi_components(&msg, request.as_ref())
        } else {
            components(&req.required_components)?
        };
        if req.max_age_seconds < 0 {
            return Err(bad("max_age_seconds must not be negative"));
        }
        let policy = Policy {
            now: now(),
            max_age: if req.max_age_seconds == 0 {
                DEFAULT_MAX_AGE
            } else {
                req.max_age_seconds
            },
            skew: self.rules.clock_skew,
            required,
            // FAPI's tag for the message kind unless another is named.
            tag: Some(if req.tag.is_empty() {
                if msg.is_response() {
                    TAG_RESPONSE
                } else {
                    TAG_REQUEST
                }
                .to_string()
            } else {
                req.tag
            }),
        };
        // Where the public keys come from: a client's JWKS, or a keyset.
        let source = match &req.keys {
            Some(Keys::JwksJson(j)) => KeySource::Jwks(super::verifier::parse_jwks(j)?),
            Some(Keys::Keyset(name)) => {
                self.keyring.keyset(name).map_err(to_status)?;
                KeySource::Keyset(name)
            }
            None => return Err(bad("give a keyset or a JWKS to verify against")),
        };
        let label = Some(req.label.as_str()).filter(|l| !l.is_empty());
        let result = check::received(&msg, request.as_ref(), label, policy.tag.as_deref())
            .and_then(|rec| {
                let keyid = rec
                    .keyid
                    .clone()
                    .ok_or_else(|| invalid(Reason::UnknownKid, "the signature has no keyid"))?;
                let jwk = match &source {
                    KeySource::Jwks(jwks) => jwk_from_set(jwks, &keyid)?,
                    KeySource::Keyset(keyset) => self.keyring_jwk(caller, keyset, &keyid)?,
                };
                let alg = keys::verify(
                    &jwk,
                    rec.alg.as_deref(),
                    rec.base.as_bytes(),
                    &rec.signature,
                )?;
                check::apply(&rec, &msg, &policy)?;
                Ok((rec, keyid, alg))
            });
        let v = match result {
            Ok((rec, kid, alg)) => accepted(
                json!({
                    "label": rec.label,
                    "alg": alg.as_str(),
                    "created": rec.created,
                    "tag": rec.tag,
                    "components": rec.components.iter().map(Component::serialize).collect::<Vec<_>>(),
                })
                .to_string(),
                kid,
                match &source {
                    KeySource::Jwks(_) => "jwks".into(),
                    KeySource::Keyset(name) => (*name).into(),
                },
            ),
            Err(i) => refused(i),
        };
        super::verifier::audit(&self.gate, caller, "verify_http_message", &v).await?;
        Ok(v)
    }

    /// The public JWK of `keyid` in keyset `name`, if it may verify.
    fn keyring_jwk(
        &self,
        caller: &Caller,
        name: &str,
        keyid: &str,
    ) -> Result<Map<String, Value>, Invalid> {
        let snapshot = self.keyring.snapshot();
        let unknown = || {
            invalid(
                Reason::UnknownKid,
                format!("keyid {keyid} is not a key of keyset {name}"),
            )
        };
        let ks = snapshot.keysets.get(name).ok_or_else(unknown)?;
        if !self.gate.may(caller, "verify", Some(name)) {
            return Err(unknown());
        }
        let v = ks
            .versions
            .iter()
            .find(|v| v.kid == keyid)
            .ok_or_else(unknown)?;
        if !v.state.verifies() || !ks.alg.is_signing() {
            return Err(invalid(
                Reason::UnknownKid,
                format!("keyid {keyid} is {} and does not verify", v.state.as_str()),
            ));
        }
        match crate::jose::jwk::public_jwk(&v.public, &v.kid, ks.alg) {
            Value::Object(m) => Ok(m),
            _ => Err(unknown()),
        }
    }
}

/// Where a verifier's public keys come from.
enum KeySource<'a> {
    /// A client's JWK Set.
    Jwks(Value),
    /// A keyset's active and retired versions.
    Keyset(&'a str),
}

/// The JWK with `kid` in a JWK Set.
fn jwk_from_set(jwks: &Value, kid: &str) -> Result<Map<String, Value>, Invalid> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(Reason::UnknownKid, "the JWKS has no \"keys\" array"))?;
    let found: Vec<&Value> = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .collect();
    match found.as_slice() {
        [Value::Object(m)] => Ok(m.clone()),
        _ => Err(invalid(
            Reason::UnknownKid,
            format!("keyid {kid} is not in the JWKS (or is there twice)"),
        )),
    }
}
