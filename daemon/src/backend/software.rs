//! In-memory software keys for `custosd --dev` only.
//!
//! Keys are generated with OpenSSL and kept as PKCS#8 PEM files (mode 0600)
//! in the dev state directory so kids survive a restart. They are NOT
//! hardware-protected; the daemon prints a banner saying so, and a config file
//! cannot select this backend.

use crate::alg::Algorithm;
use crate::backend::{BackendError, KeyBackend, KeyProtection, KeyRef, PublicKey};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

/// Software keys in memory, persisted as PEM files in `dir`.
#[derive(Debug)]
pub struct SoftwareBackend {
    dir: PathBuf,
    keys: RwLock<HashMap<String, PKey<Private>>>,
}

fn ossl(what: &str) -> impl Fn(openssl::error::ErrorStack) -> BackendError + '_ {
    move |e| BackendError::Internal(format!("{what}: {e}"))
}

impl SoftwareBackend {
    /// A software backend keeping its key files under `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(dir: PathBuf) -> Result<Self, BackendError> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            BackendError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        Ok(Self {
            dir,
            keys: RwLock::new(HashMap::new()),
        })
    }

    fn path(&self, key: &KeyRef) -> Result<PathBuf, BackendError> {
        key.id_bytes()?;
        Ok(self.dir.join(format!("{}.pem", key.id)))
    }

    fn get(&self, key: &KeyRef) -> Result<PKey<Private>, BackendError> {
        if let Some(k) = self.keys.read().ok().and_then(|m| m.get(&key.id).cloned()) {
            return Ok(k);
        }
        let path = self.path(key)?;
        let pem = std::fs::read(&path).map_err(|_| {
            BackendError::KeyNotFound(format!("{} ({})", key.label, path.display()))
        })?;
        let k = PKey::private_key_from_pem(&pem).map_err(ossl("reading a dev key"))?;
        if let Ok(mut m) = self.keys.write() {
            m.insert(key.id.clone(), k.clone());
        }
        Ok(k)
    }
}

fn public_of(k: &PKey<Private>) -> Result<PublicKey, BackendError> {
    match k.id() {
        Id::EC => {
            let ec = k.ec_key().map_err(ossl("EC key"))?;
            let mut ctx = BigNumContext::new().map_err(ossl("bn"))?;
            let mut x = openssl::bn::BigNum::new().map_err(ossl("bn"))?;
            let mut y = openssl::bn::BigNum::new().map_err(ossl("bn"))?;
            ec.public_key()
                .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                .map_err(ossl("EC point"))?;
            Ok(PublicKey::p256(
                &x.to_vec_padded(32).map_err(ossl("x"))?,
                &y.to_vec_padded(32).map_err(ossl("y"))?,
            ))
        }
        Id::RSA => {
            let rsa = k.rsa().map_err(ossl("RSA key"))?;
            Ok(PublicKey::rsa(&rsa.n().to_vec(), &rsa.e().to_vec()))
        }
        Id::ED25519 => Ok(PublicKey::ed25519(
            &k.raw_public_key().map_err(ossl("Ed25519 key"))?,
        )),
        other => Err(BackendError::Internal(format!(
            "unexpected dev key type {other:?}"
        ))),
    }
}

impl KeyBackend for SoftwareBackend {
    fn kind(&self) -> &'static str {
        "software"
    }

    fn generate(&self, key: &KeyRef, alg: Algorithm) -> Result<PublicKey, BackendError> {
        let k = match alg {
            Algorithm::ES256 => {
                let group =
                    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl("P-256"))?;
                PKey::from_ec_key(EcKey::generate(&group).map_err(ossl("EC keygen"))?)
            }
            Algorithm::PS256 | Algorithm::RS256 | Algorithm::RsaOaep256 => {
                PKey::from_rsa(Rsa::generate(2048).map_err(ossl("RSA keygen"))?)
            }
            Algorithm::EdDSA => PKey::generate_ed25519(),
        }
        .map_err(ossl("keygen"))?;
        let pem = k.private_key_to_pem_pkcs8().map_err(ossl("PEM"))?;
        let path = self.path(key)?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| BackendError::Internal(format!("{}: {e}", path.display())))?;
            f.write_all(&pem)
                .and_then(|()| f.sync_all())
                .map_err(|e| BackendError::Internal(format!("{}: {e}", path.display())))?;
        }
        let public = public_of(&k)?;
        if let Ok(mut m) = self.keys.write() {
            m.insert(key.id.clone(), k);
        }
        Ok(public)
    }

    fn load(&self, key: &KeyRef, _alg: Algorithm) -> Result<PublicKey, BackendError> {
        public_of(&self.get(key)?)
    }

    fn sign(&self, key: &KeyRef, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let k = self.get(key)?;
        let err = ossl("signing");
        match alg {
            Algorithm::ES256 => {
                let mut s = Signer::new(MessageDigest::sha256(), &k).map_err(&err)?;
                let der = s.sign_oneshot_to_vec(message).map_err(&err)?;
                let sig = EcdsaSig::from_der(&der).map_err(&err)?;
                let mut out = sig.r().to_vec_padded(32).map_err(&err)?;
                out.extend(sig.s().to_vec_padded(32).map_err(&err)?);
                Ok(out)
            }
            Algorithm::PS256 | Algorithm::RS256 => {
                let mut s = Signer::new(MessageDigest::sha256(), &k).map_err(&err)?;
                if alg == Algorithm::PS256 {
                    s.set_rsa_padding(Padding::PKCS1_PSS).map_err(&err)?;
                    s.set_rsa_pss_saltlen(RsaPssSaltlen::custom(32))
                        .map_err(&err)?;
                    s.set_rsa_mgf1_md(MessageDigest::sha256()).map_err(&err)?;
                }
                s.sign_oneshot_to_vec(message).map_err(&err)
            }
            Algorithm::EdDSA => {
                let mut s = Signer::new_without_digest(&k).map_err(&err)?;
                s.sign_oneshot_to_vec(message).map_err(&err)
            }
            Algorithm::RsaOaep256 => Err(BackendError::Unsupported(
                "an RSA-OAEP-256 key decrypts; it never signs".into(),
            )),
        }
    }

    fn decrypt(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        if alg != Algorithm::RsaOaep256 {
            return Err(BackendError::Unsupported(format!("{alg} does not decrypt")));
        }
        let k = self.get(key)?;
        let err = ossl("decrypting");
        let mut d = openssl::encrypt::Decrypter::new(&k).map_err(&err)?;
        d.set_rsa_padding(Padding::PKCS1_OAEP).map_err(&err)?;
        d.set_rsa_oaep_md(MessageDigest::sha256()).map_err(&err)?;
        d.set_rsa_mgf1_md(MessageDigest::sha256()).map_err(&err)?;
        let mut out = vec![0u8; d.decrypt_len(ciphertext).map_err(&err)?];
        let n = d.decrypt(ciphertext, &mut out).map_err(&err)?;
        out.truncate(n);
        Ok(out)
    }

    fn protection(&self, _key: &KeyRef) -> Result<KeyProtection, BackendError> {
        Ok(KeyProtection {
            sensitive: false,
            extractable: true,
        })
    }

    fn capabilities(&self) -> super::Capabilities<'_> {
        super::Capabilities {
            rsa_pss_sha512: Some(self),
            pool: None,
        }
    }

    fn list_keys(&self) -> Result<Vec<KeyRef>, BackendError> {
        super::key_files(&self.dir, ".pem", "dev", "dev keys")
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), BackendError> {
        if let Ok(mut m) = self.keys.write() {
            m.remove(&key.id);
        }
        match std::fs::remove_file(self.path(key)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::Internal(format!("removing dev key: {e}"))),
        }
    }
}

impl super::RsaPssSha512 for SoftwareBackend {
    fn sign_rsa_pss_sha512(
        &self,
        key: &KeyRef,
        alg: Algorithm,
        message: &[u8],
    ) -> Result<Vec<u8>, BackendError> {
        if !alg.is_rsa() {
            return Err(BackendError::Unsupported(
                "rsa-pss-sha512 needs an RSA key".into(),
            ));
        }
        let k = self.get(key)?;
        let err = ossl("signing");
        let mut s = Signer::new(MessageDigest::sha512(), &k).map_err(&err)?;
        s.set_rsa_padding(Padding::PKCS1_PSS).map_err(&err)?;
        s.set_rsa_pss_saltlen(RsaPssSaltlen::custom(64))
            .map_err(&err)?;
        s.set_rsa_mgf1_md(MessageDigest::sha512()).map_err(&err)?;
        s.sign_oneshot_to_vec(message).map_err(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let b = SoftwareBackend::new(dir.path().to_path_buf()).unwrap();
        for alg in Algorithm::ALL.into_iter().filter(|a| a.is_signing()) {
            let key = KeyRef::generate(format!("t:{alg}"));
            let public = b.generate(&key, alg).unwrap();
            assert!(public.fits(alg));
            let sig = b.sign(&key, alg, b"hello").unwrap();
            if matches!(alg, Algorithm::ES256 | Algorithm::EdDSA) {
                assert_eq!(sig.len(), 64);
            } else {
                assert_eq!(sig.len(), 256);
            }
            let again = SoftwareBackend::new(dir.path().to_path_buf()).unwrap();
            assert_eq!(again.load(&key, alg).unwrap(), public);
        }
    }
}
