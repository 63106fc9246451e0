//! Key generation, lookup, attribute checks and destruction on a PKCS#11 token.

use super::pool::PooledSession;
use crate::alg::Algorithm;
use crate::backend::profile::{AlgorithmSettings, EcParamsStyle, KeygenSettings};
use crate::backend::{BackendError, KeyProtection, KeyRef, PublicKey};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the OID id-Ed25519 (1.3.101.112).
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER PrintableString "edwards25519".
const ED25519_PRINTABLE: &[u8] = b"\x13\x0cedwards25519";

/// A profile's `[keygen]` addition as an attribute (names checked at profile load).
fn extra_attribute(name: &str, value: bool) -> Option<Attribute> {
    Some(match name {
        "CKA_MODIFIABLE" => Attribute::Modifiable(value),
        "CKA_COPYABLE" => Attribute::Copyable(value),
        "CKA_DESTROYABLE" => Attribute::Destroyable(value),
        "CKA_WRAP_WITH_TRUSTED" => Attribute::WrapWithTrusted(value),
        "CKA_ALWAYS_AUTHENTICATE" => Attribute::AlwaysAuthenticate(value),
        _ => return None,
    })
}

/// Generates a key pair on the token; returns the private handle and the public key.
pub(super) fn generate(
    s: &mut PooledSession<'_>,
    key: &KeyRef,
    alg: Algorithm,
    settings: &AlgorithmSettings,
    rsa_bits: u64,
    keygen: &KeygenSettings,
) -> Result<(ObjectHandle, PublicKey), BackendError> {
    let id = key.id_bytes()?;
    let label = key.label.as_bytes().to_vec();
    // A key does one job: a signing key only signs, a decryption key only
    // decrypts; neither unwraps or derives.
    let signs = alg.is_signing();
    let mut public_t = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(signs),
        Attribute::Encrypt(!signs),
        Attribute::Id(id.clone()),
        Attribute::Label(label.clone()),
    ];
    let mut private_t = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(signs),
        Attribute::Decrypt(!signs),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(id),
        Attribute::Label(label),
    ];
    public_t.extend(
        keygen
            .public
            .iter()
            .filter_map(|(n, v)| extra_attribute(n, *v)),
    );
    private_t.extend(
        keygen
            .private
            .iter()
            .filter_map(|(n, v)| extra_attribute(n, *v)),
    );
    let mechanism = match alg {
        Algorithm::ES256 => {
            public_t.push(Attribute::EcParams(P256_OID.to_vec()));
            Mechanism::EccKeyPairGen
        }
        Algorithm::EdDSA => {
            let params = match settings.ec_params {
                EcParamsStyle::Oid => ED25519_OID,
                EcParamsStyle::Printable => ED25519_PRINTABLE,
            };
            public_t.push(Attribute::EcParams(params.to_vec()));
            Mechanism::EccEdwardsKeyPairGen
        }
        Algorithm::PS256 | Algorithm::RS256 | Algorithm::RsaOaep256 => {
            public_t.push(Attribute::ModulusBits(rsa_bits.into()));
            public_t.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (public, private) = s.run("generating a key pair", |session| {
        session.generate_key_pair(&mechanism, &public_t, &private_t)
    })?;
    let pk = read_public(s, public, alg)?;
    Ok((private, pk))
}

fn find_one(
    s: &mut PooledSession<'_>,
    key: &KeyRef,
    class: ObjectClass,
) -> Result<Option<ObjectHandle>, BackendError> {
    let id = key.id_bytes()?;
    let found = s.run("finding a key", |session| {
        session.find_objects(&[Attribute::Class(class), Attribute::Id(id)])
    })?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(BackendError::Internal(format!(
            "{} objects on the token share the id of {}; remove the duplicates",
            found.len(),
            key.label
        ))),
    }
}

/// Finds an existing key pair by id; returns the private handle and the public key.
pub(super) fn find(
    s: &mut PooledSession<'_>,
    key: &KeyRef,
    alg: Algorithm,
) -> Result<(ObjectHandle, PublicKey), BackendError> {
    let private = find_one(s, key, ObjectClass::PRIVATE_KEY)?.ok_or_else(|| {
        BackendError::KeyNotFound(format!("private key {} ({})", key.label, key.id))
    })?;
    let public = find_one(s, key, ObjectClass::PUBLIC_KEY)?.ok_or_else(|| {
        BackendError::KeyNotFound(format!("public key {} ({})", key.label, key.id))
    })?;
    let pk = read_public(s, public, alg)?;
    Ok((private, pk))
}

fn read_public(
    s: &mut PooledSession<'_>,
    public: ObjectHandle,
    alg: Algorithm,
) -> Result<PublicKey, BackendError> {
    let types: &[AttributeType] = if alg.is_rsa() {
        &[
            AttributeType::KeyType,
            AttributeType::Modulus,
            AttributeType::PublicExponent,
        ]
    } else {
        &[AttributeType::KeyType, AttributeType::EcPoint]
    };
    let attrs = s.run("reading the public key", |session| {
        session.get_attributes(public, types)
    })?;
    let (mut n, mut e, mut point, mut key_type) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            Attribute::KeyType(k) => key_type = Some(k),
            _ => {}
        }
    }
    let bad = |what: &str| BackendError::Internal(format!("public key of {alg} key: {what}"));
    match alg {
        Algorithm::PS256 | Algorithm::RS256 | Algorithm::RsaOaep256 => {
            if key_type != Some(KeyType::RSA) {
                return Err(bad("not an RSA key"));
            }
            let (Some(n), Some(e)) = (n, e) else {
                return Err(bad("modulus or exponent missing"));
            };
            Ok(PublicKey::rsa(&n, &e))
        }
        Algorithm::ES256 => {
            let point = point.ok_or_else(|| bad("no CKA_EC_POINT"))?;
            let raw = unwrap_point(&point, 65);
            match raw {
                Some(p) if p[0] == 0x04 => Ok(PublicKey::p256(&p[1..33], &p[33..65])),
                _ => Err(bad("CKA_EC_POINT is not an uncompressed P-256 point")),
            }
        }
        Algorithm::EdDSA => {
            let point = point.ok_or_else(|| bad("no CKA_EC_POINT"))?;
            let raw = unwrap_point(&point, 32);
            raw.map(PublicKey::ed25519)
                .ok_or_else(|| bad("CKA_EC_POINT is not a 32-byte Ed25519 key"))
        }
    }
}

/// Accepts an EC point either raw (`len` bytes) or wrapped in a DER OCTET
/// STRING, as modules differ; returns the raw bytes.
fn unwrap_point(point: &[u8], len: usize) -> Option<&[u8]> {
    if point.len() == len && (len != 65 || point[0] == 0x04) {
        return Some(point);
    }
    match point {
        [0x04, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => Some(rest),
        [0x04, 0x81, l, rest @ ..] if usize::from(*l) == len && rest.len() == len => Some(rest),
        _ => None,
    }
}

/// Reads CKA_SENSITIVE and CKA_EXTRACTABLE of the private key.
pub(super) fn protection(
    s: &mut PooledSession<'_>,
    key: &KeyRef,
) -> Result<KeyProtection, BackendError> {
    let private = find_one(s, key, ObjectClass::PRIVATE_KEY)?
        .ok_or_else(|| BackendError::KeyNotFound(key.label.clone()))?;
    let attrs = s.run("reading key attributes", |session| {
        session.get_attributes(
            private,
            &[AttributeType::Sensitive, AttributeType::Extractable],
        )
    })?;
    let mut p = KeyProtection {
        sensitive: false,
        extractable: true,
    };
    for a in attrs {
        match a {
            Attribute::Sensitive(v) => p.sensitive = v,
            Attribute::Extractable(v) => p.extractable = v,
            _ => {}
        }
    }
    Ok(p)
}

/// Destroys both objects of the key pair (missing halves are not an error).
pub(super) fn destroy(s: &mut PooledSession<'_>, key: &KeyRef) -> Result<(), BackendError> {
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if let Some(h) = find_one(s, key, class)? {
            s.run("destroying a key", |session| session.destroy_object(h))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unwrap_point;

    #[test]
    fn ec_points_are_read_raw_or_der_wrapped() {
        let mut raw = vec![0x04];
        raw.extend([7u8; 64]);
        assert_eq!(unwrap_point(&raw, 65), Some(&raw[..]));
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&raw);
        assert_eq!(unwrap_point(&wrapped, 65), Some(&raw[..]));
        let ed = [9u8; 32];
        let mut ed_wrapped = vec![0x04, 0x20];
        ed_wrapped.extend(ed);
        assert_eq!(unwrap_point(&ed, 32), Some(&ed[..]));
        assert_eq!(unwrap_point(&ed_wrapped, 32), Some(&ed[..]));
        assert_eq!(unwrap_point(&[0x04, 0x41, 1, 2], 65), None);
    }
}
