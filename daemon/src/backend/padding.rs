//! RSA paddings done in software around a device's raw RSA private-key
//! operation, for devices that cannot do the JOSE variant themselves. The
//! private key never leaves the device; only the padding is computed here.
//!
//! - EME-OAEP decoding (RFC 8017 7.1.2), SHA-256/MGF1-SHA-256: SoftHSM2 2.6
//!   does OAEP with SHA-1 only. Constant time with respect to where it
//!   fails, and every failure is the same error (no padding oracle).
//! - EMSA-PSS encoding (RFC 8017 9.1.1), SHA-256/MGF1-SHA-256, salt 32 bytes:
//!   a TPM may pick another salt length for its own RSASSA-PSS (RFC 7518 3.5
//!   requires the hash length).
//! - EMSA-PKCS1-v1_5 encoding (RFC 8017 9.2) for RS256.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

const H_LEN: usize = 32;

fn mgf1_xor(out: &mut [u8], seed: &[u8]) {
    for (counter, chunk) in out.chunks_mut(H_LEN).enumerate() {
        let mut h = Sha256::new();
        h.update(seed);
        h.update((counter as u32).to_be_bytes());
        for (o, m) in chunk.iter_mut().zip(h.finalize()) {
            *o ^= m;
        }
    }
}

/// Decodes the encoded message `em` (the raw RSA output, `k` bytes) with an
/// empty label. Returns `None` on any decoding failure.
pub(crate) fn decode_sha256(em: &[u8], k: usize) -> Option<Vec<u8>> {
    if k < 2 * H_LEN + 2 || em.len() > k {
        return None;
    }
    let mut em_full = vec![0u8; k];
    em_full[k - em.len()..].copy_from_slice(em);
    let (y, rest) = em_full.split_at_mut(1);
    let (masked_seed, masked_db) = rest.split_at_mut(H_LEN);
    mgf1_xor(masked_seed, masked_db);
    let seed = masked_seed.to_vec();
    mgf1_xor(masked_db, &seed);
    let db = masked_db;
    let l_hash = Sha256::digest(b"");
    let mut good = y[0].ct_eq(&0) & db[..H_LEN].ct_eq(&l_hash[..]);
    // Find the 0x01 separator after the zero padding without branching on secrets.
    let mut looking = subtle::Choice::from(1u8);
    let mut index: u32 = 0;
    for (i, &b) in db[H_LEN..].iter().enumerate() {
        let is_one = b.ct_eq(&1);
        let is_zero = b.ct_eq(&0);
        let found_here = looking & is_one;
        index.conditional_assign(&(i as u32), found_here);
        // A byte that is neither 0 nor 1 before the separator is an error.
        good &= !(looking & !is_zero & !is_one);
        looking &= !is_one;
    }
    good &= !looking;
    if bool::from(good) {
        Some(db[H_LEN + index as usize + 1..].to_vec())
    } else {
        None
    }
}

#[cfg(any(test, feature = "tpm"))]
/// EMSA-PSS encoding of `message` for a modulus of `mod_bits` bits, with
/// SHA-256, MGF1-SHA-256 and the given 32-byte salt. Returns the `k`-byte
/// block to put through the raw RSA private operation.
pub(crate) fn pss_encode_sha256(
    message: &[u8],
    mod_bits: usize,
    salt: &[u8; 32],
) -> Option<Vec<u8>> {
    let em_bits = mod_bits.checked_sub(1)?;
    let em_len = em_bits.div_ceil(8);
    if em_len < H_LEN + salt.len() + 2 {
        return None;
    }
    let m_hash = Sha256::digest(message);
    let mut h = Sha256::new();
    h.update([0u8; 8]);
    h.update(m_hash);
    h.update(salt);
    let h = h.finalize();
    let db_len = em_len - H_LEN - 1;
    let mut db = vec![0u8; db_len];
    db[db_len - salt.len() - 1] = 0x01;
    db[db_len - salt.len()..].copy_from_slice(salt);
    mgf1_xor(&mut db, &h);
    db[0] &= 0xffu8 >> (8 * em_len - em_bits);
    let mut em = db;
    em.extend_from_slice(&h);
    em.push(0xbc);
    // The raw operation takes k bytes; k = em_len unless mod_bits is a multiple of 8 plus 1.
    let k = mod_bits.div_ceil(8);
    let mut out = vec![0u8; k - em_len];
    out.extend(em);
    Some(out)
}

#[cfg(any(test, feature = "tpm"))]
/// EMSA-PKCS1-v1_5 encoding of SHA-256(`message`) for a `k`-byte modulus.
pub(crate) fn pkcs1_encode_sha256(message: &[u8], k: usize) -> Option<Vec<u8>> {
    const PREFIX: &[u8] = &[
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let t_len = PREFIX.len() + H_LEN;
    if k < t_len + 11 {
        return None;
    }
    let mut em = vec![0x00, 0x01];
    em.extend(std::iter::repeat_n(0xff, k - t_len - 3));
    em.push(0x00);
    em.extend_from_slice(PREFIX);
    em.extend_from_slice(&Sha256::digest(message));
    Some(em)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::encrypt::{Decrypter, Encrypter};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::{Padding, Rsa};

    #[test]
    fn decodes_what_openssl_encodes_and_rejects_tampering() {
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut enc = Encrypter::new(&key).unwrap();
        enc.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        enc.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
        enc.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        let msg = b"a 32-byte content encryption key";
        let mut ct = vec![0; enc.encrypt_len(msg).unwrap()];
        let n = enc.encrypt(msg, &mut ct).unwrap();
        ct.truncate(n);
        // The raw RSA operation, as CKM_RSA_X_509 does it.
        let mut dec = Decrypter::new(&key).unwrap();
        dec.set_rsa_padding(Padding::NONE).unwrap();
        let mut em = vec![0; dec.decrypt_len(&ct).unwrap()];
        let m = dec.decrypt(&ct, &mut em).unwrap();
        em.truncate(m);
        assert_eq!(decode_sha256(&em, 256).unwrap(), msg);
        for i in [0, 1, 40, 255] {
            let mut bad = em.clone();
            bad[i] ^= 1;
            assert_eq!(decode_sha256(&bad, 256), None, "flip at {i}");
        }
        assert_eq!(decode_sha256(&em, 10), None);
    }

    fn raw_sign(key: &PKey<openssl::pkey::Private>, em: &[u8]) -> Vec<u8> {
        let mut dec = Decrypter::new(key).unwrap();
        dec.set_rsa_padding(Padding::NONE).unwrap();
        let mut out = vec![0; dec.decrypt_len(em).unwrap()];
        let n = dec.decrypt(em, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn pss_and_pkcs1_encodings_verify_with_openssl() {
        use openssl::sign::{RsaPssSaltlen, Verifier};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let msg = b"header.payload";
        let em = pss_encode_sha256(msg, 2048, &[7u8; 32]).unwrap();
        let sig = raw_sign(&key, &em);
        let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
        v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32)).unwrap();
        v.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        assert!(v.verify_oneshot(&sig, msg).unwrap(), "PSS with salt 32");
        let em = pkcs1_encode_sha256(msg, 256).unwrap();
        let sig = raw_sign(&key, &em);
        let mut v = Verifier::new(MessageDigest::sha256(), &key).unwrap();
        assert!(v.verify_oneshot(&sig, msg).unwrap(), "PKCS#1 v1.5");
    }
}
