//! Checking an audit log (`custos audit verify`): the hash chain custosd
//! writes (`seq`, and `prev` = SHA-256 of the line before, as written) and
//! the checkpoints that seal it (a JWS by the audit keyset's key over the
//! seq and hash of the line before the checkpoint).
//!
//! This is a second implementation, on purpose: it shares no code with the
//! daemon's writer, and checks signatures with RustCrypto (`p256`, `rsa`),
//! not with the code that made them.

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash before the first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a check found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Lines read.
    pub lines: u64,
    /// The first line's seq.
    pub first_seq: Option<u64>,
    /// The last line's seq.
    pub last_seq: Option<u64>,
    /// Checkpoints whose signature verified.
    pub checkpoints_verified: u64,
    /// Checkpoints seen but not checked (no JWKS given).
    pub checkpoints_unchecked: u64,
    /// The seq up to which a verified checkpoint seals the log.
    pub sealed_through: Option<u64>,
    /// Lines after the last verified checkpoint.
    pub unsealed: u64,
    /// Every break found, first first, each naming file, line and seq.
    pub problems: Vec<String>,
}

impl Report {
    /// Intact: no problem, and (unless `allow_unsealed`) every line sealed.
    pub fn intact(&self, allow_unsealed: bool) -> bool {
        self.problems.is_empty() && (allow_unsealed || self.unsealed == 0) && self.lines > 0
    }
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// Verifies a checkpoint's compact JWS with the JWKS; returns its claims.
fn verify_jws(jws: &str, kid: &str, jwks: &Value) -> Result<Value, String> {
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("its JWS is not compact (three parts)".into());
    };
    let header: Value = b64(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("its JWS header is not base64url JSON")?;
    if header["kid"] != kid {
        return Err(format!(
            "its JWS kid {} is not the line's kid {kid}",
            header["kid"]
        ));
    }
    if header["typ"] != "custos-audit-checkpoint+jwt" {
        return Err(format!(
            "its JWS typ is {}, not custos-audit-checkpoint+jwt",
            header["typ"]
        ));
    }
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .ok_or_else(|| {
            format!(
                "kid {kid} is not in the JWKS given (an older audit key? keep every published key)"
            )
        })?;
    let sig = b64(s).ok_or("its signature is not base64url")?;
    let input = format!("{h}.{p}");
    let alg = header["alg"].as_str().unwrap_or_default();
    let ok = match (alg, key["kty"].as_str()) {
        ("ES256", Some("EC")) => {
            use p256::ecdsa::signature::Verifier;
            let x = key["x"].as_str().and_then(b64).ok_or("the JWK has no x")?;
            let y = key["y"].as_str().and_then(b64).ok_or("the JWK has no y")?;
            let coord = |c: Vec<u8>| -> Result<p256::FieldBytes, String> {
                let a: [u8; 32] = c
                    .try_into()
                    .map_err(|_| "a JWK coordinate is not 32 bytes")?;
                Ok(a.into())
            };
            let point = p256::EncodedPoint::from_affine_coordinates(&coord(x)?, &coord(y)?, false);
            let vk = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                .map_err(|_| "the JWK is not a P-256 point")?;
            let sig =
                p256::ecdsa::Signature::from_slice(&sig).map_err(|_| "not an ES256 signature")?;
            vk.verify(input.as_bytes(), &sig).is_ok()
        }
        ("PS256", Some("RSA")) => {
            use rsa::signature::Verifier;
            let n = key["n"].as_str().and_then(b64).ok_or("the JWK has no n")?;
            let e = key["e"].as_str().and_then(b64).ok_or("the JWK has no e")?;
            let pk = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&n),
                rsa::BigUint::from_bytes_be(&e),
            )
            .map_err(|e| format!("the JWK is not an RSA key: {e}"))?;
            let vk = rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(pk, 32);
            let sig = rsa::pss::Signature::try_from(sig.as_slice())
                .map_err(|_| "not a PS256 signature")?;
            vk.verify(input.as_bytes(), &sig).is_ok()
        }
        (alg, _) => {
            return Err(format!(
                "alg {alg:?} with that key is not an audit algorithm (ES256, PS256)"
            ))
        }
    };
    if !ok {
        return Err("its signature does not verify with the audit key".into());
    }
    b64(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "its JWS payload is not base64url JSON".into())
}

/// Checks the files (in order: an older rotated file first) against the
/// chain, and the checkpoints against `jwks` when given.
pub fn verify(files: &[(String, String)], jwks: Option<&Value>) -> Report {
    let mut r = Report::default();
    // The hash and seq of the line before, once one was read.
    let mut before: Option<(String, u64)> = None;
    for (name, text) in files {
        let complete = text.is_empty() || text.ends_with('\n');
        let all: Vec<&str> = text.split('\n').collect();
        let count = if complete {
            all.len().saturating_sub(1)
        } else {
            all.len()
        };
        for (i, raw) in all.iter().take(count).enumerate() {
            let at = format!("{name}:{}", i + 1);
            if i + 1 == count && !complete {
                r.problems.push(format!(
                    "{at}: the last line is incomplete: the file was truncated"
                ));
                break;
            }
            r.lines += 1;
            let hash = sha256_hex(raw.as_bytes());
            let line: Value = match serde_json::from_str(raw) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    r.problems
                        .push(format!("{at}: not a JSON audit line: edited or damaged"));
                    before = None;
                    continue;
                }
            };
            let (Some(seq), Some(prev)) = (line["seq"].as_u64(), line["prev"].as_str()) else {
                r.problems.push(format!(
                    "{at}: no seq/prev: not a line custosd chained (inserted?)"
                ));
                before = None;
                continue;
            };
            r.first_seq.get_or_insert(seq);
            r.last_seq = Some(seq);
            match &before {
                None if r.lines == 1 && seq == 1 && prev != GENESIS => r.problems.push(format!(
                    "{at} (seq 1): its prev is not the start of a chain"
                )),
                None => {}
                // Seqs come from the file: no arithmetic on them may overflow.
                Some((_, last)) if seq > last.saturating_add(1) => r.problems.push(format!(
                    "{at} (seq {seq}): lines with seq {} to {} are missing: deleted",
                    last.saturating_add(1),
                    seq.saturating_sub(1)
                )),
                Some((_, last)) if seq <= *last => r.problems.push(format!(
                    "{at} (seq {seq}): comes after seq {last}: lines were reordered or repeated"
                )),
                Some((h, last)) if prev != h => r.problems.push(format!(
                    "{at} (seq {seq}): the line before it (seq {last}) is not the line this one \
                     was chained to: it was edited or replaced"
                )),
                Some(_) => {}
            }
            if line["operation"] == "audit_checkpoint" && line["jws"].is_string() {
                match jwks {
                    None => r.checkpoints_unchecked += 1,
                    Some(jwks) => {
                        let kid = line["kid"].as_str().unwrap_or_default();
                        match verify_jws(line["jws"].as_str().unwrap_or_default(), kid, jwks) {
                            Ok(claims)
                                if claims["seq"].as_u64() == Some(seq.saturating_sub(1))
                                    && claims["head"].as_str() == Some(prev) =>
                            {
                                r.checkpoints_verified += 1;
                                r.sealed_through = Some(seq.saturating_sub(1));
                                r.unsealed = 0;
                            }
                            Ok(_) => r.problems.push(format!(
                                "{at} (seq {seq}): the checkpoint's signed seq and hash are not \
                                 those of the line before it: a checkpoint moved or forged"
                            )),
                            Err(why) => r
                                .problems
                                .push(format!("{at} (seq {seq}): checkpoint: {why}")),
                        }
                        before = Some((hash, seq));
                        continue;
                    }
                }
            }
            r.unsealed += 1;
            before = Some((hash, seq));
        }
    }
    if jwks.is_none() {
        // Without the key nothing is sealed for sure.
        r.unsealed = r.lines;
        r.sealed_through = None;
    }
    r
}
