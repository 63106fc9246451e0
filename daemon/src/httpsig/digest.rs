//! `Content-Digest` (RFC 9530): a Dictionary of hash algorithm to the
//! hash of the message content, e.g. `sha-256=:X48E9q...=:`.

use crate::verdict::{invalid, Invalid, Reason};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sfv::{Dictionary, ListEntry, Parser};
use sha2::{Digest, Sha256, Sha512};

fn hash(alg: &str, body: &[u8]) -> Option<Vec<u8>> {
    match alg {
        "sha-256" => Some(Sha256::digest(body).to_vec()),
        "sha-512" => Some(Sha512::digest(body).to_vec()),
        _ => None,
    }
}

/// The `Content-Digest` field value for `body` with `alg` (`sha-256` or `sha-512`).
///
/// # Errors
/// A message for another algorithm.
pub(crate) fn content_digest(alg: &str, body: &[u8]) -> Result<String, String> {
    let h = hash(alg, body).ok_or_else(|| {
        format!("digest algorithm {alg:?} is not supported: use sha-256 or sha-512")
    })?;
    Ok(format!("{alg}=:{}:", STANDARD.encode(h)))
}

/// Recomputes every supported digest in `field` over `body`; at least one
/// must be present and all present must match.
///
/// # Errors
/// [`Invalid`] with `malformed` or `digest_mismatch`.
pub(crate) fn check(field: &str, body: &[u8]) -> Result<(), Invalid> {
    let dict: Dictionary = Parser::new(field)
        .parse()
        .map_err(|e| invalid(Reason::Malformed, format!("Content-Digest: {e}")))?;
    let mut checked = 0;
    for (alg, entry) in &dict {
        let Some(expected) = hash(alg.as_str(), body) else {
            continue;
        };
        let got = match entry {
            ListEntry::Item(i) => i.bare_item.as_byte_sequence(),
            ListEntry::InnerList(_) => None,
        }
        .ok_or_else(|| {
            invalid(
                Reason::Malformed,
                format!("Content-Digest {alg} is not a byte sequence"),
            )
        })?;
        if got != expected.as_slice() {
            return Err(invalid(
                Reason::DigestMismatch,
                format!("the body does not match Content-Digest {alg}"),
            ));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(invalid(
            Reason::Malformed,
            "Content-Digest has neither sha-256 nor sha-512",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9530 appendix B.1 (`{"hello": "world"}`) and RFC 9421 B.2.
    #[test]
    fn rfc9530_examples() {
        let body = br#"{"hello": "world"}"#;
        assert_eq!(
            content_digest("sha-256", body).unwrap(),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
        assert_eq!(
            content_digest("sha-512", body).unwrap(),
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
        );
        assert!(check(
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            body
        )
        .is_ok());
        let e = check(
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            b"{}",
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::DigestMismatch);
        assert_eq!(
            check("md5=:AAAA:", body).unwrap_err().reason,
            Reason::Malformed
        );
        assert!(content_digest("md5", body).is_err());
    }
}
