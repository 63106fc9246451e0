//! EME-OAEP decoding (RFC 8017 7.1.2) with SHA-256 and MGF1-SHA-256, for
//! devices that can do the raw RSA private-key operation (`CKM_RSA_X_509`)
//! but not OAEP with SHA-256 (SoftHSM2 2.6 accepts only SHA-1 OAEP). The
//! private key still never leaves the device; only the padding is removed
//! here, in constant time with respect to where it fails, and every failure
//! is the same error (no padding oracle).

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
pub fn decode_sha256(em: &[u8], k: usize) -> Option<Vec<u8>> {
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
}
