//! `custosd doctor` (and `custos doctor`, which runs it): will this token
//! work? For each PKCS#11 backend of a config: load the module, find the
//! token, log in, list its mechanisms, then for every algorithm the profile
//! promises generate a throwaway key, sign (or decrypt), verify the result
//! with software that is not the token, check the key's attributes, and
//! destroy the key. Also compares the token's Custos keys with the manifest.

use crate::alg::Algorithm;
use crate::backend::pkcs11::{mechanism_type, Pkcs11Backend};
use crate::backend::profile::HsmProfile;
use crate::backend::{KeyBackend, KeyRef};
use crate::config::{BackendConfig, Config};
use crate::jose::verify::VerifyKey;
use crate::keyring::keyset::VersionState;
use crate::keyring::manifest::Manifest;
use crate::keyring::store::{FileStore, ManifestStore};
use crate::secret::Secret;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Signatures timed per algorithm.
const TIMED_SIGNATURES: u32 = 20;

/// One algorithm's check.
#[derive(Debug, Clone, Serialize)]
pub struct AlgorithmCheck {
    /// JOSE algorithm.
    pub alg: String,
    /// The mechanism used (after any fallback).
    pub mechanism: String,
    /// Whether every step passed.
    pub ok: bool,
    /// What failed, or what was checked.
    pub detail: String,
    /// Mean time per signature (or decryption), microseconds.
    pub micros_per_op: Option<u64>,
}

/// One backend's report.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    /// Backend name in the config.
    pub name: String,
    /// Profile name.
    pub profile: String,
    /// Whether the profile was checked against the real module.
    pub profile_tested: bool,
    /// Module path.
    pub module: String,
    /// Why the token could not be used at all, if so.
    pub error: Option<String>,
    /// Mechanisms the token lists.
    pub mechanisms: Vec<String>,
    /// Per-algorithm results.
    pub algorithms: Vec<AlgorithmCheck>,
    /// Custos keys on the token that the manifest does not know.
    pub orphans: Vec<String>,
    /// Manifest keys (not destroyed) missing from the token.
    pub missing: Vec<String>,
    /// The profile's known limits.
    pub limits: Vec<String>,
    /// Why the manifest could not be read (orphans and missing keys unchecked).
    pub manifest_error: Option<String>,
}

impl BackendReport {
    /// Whether the token does everything its profile promises.
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.manifest_error.is_none()
            && self.algorithms.iter().all(|a| a.ok)
    }
}

/// Checks the PKCS#11 backends of `config` (only `only` when given).
///
/// # Errors
/// A message for a config that cannot be read or a backend name that is not
/// a PKCS#11 backend of it.
pub fn run(config: &Path, only: Option<&str>) -> Result<Vec<BackendReport>, String> {
    let config = Config::load(config)?;
    if let Some(name) = only {
        match config.backends.get(name) {
            Some(BackendConfig::Pkcs11(_)) => {}
            Some(_) => return Err(format!("backend {name:?} is not a PKCS#11 backend")),
            None => {
                let known: Vec<_> = config.backends.keys().collect();
                return Err(format!(
                    "no backend {name:?} in the config (backends: {known:?})"
                ));
            }
        }
    }
    // The throwaway keys are created and destroyed on the real token: both
    // are audited in the daemon's log when it is a file (appending is safe
    // beside a running daemon; a stdout log belongs to the daemon's process).
    let audit = if config.audit.file == "stdout" {
        None
    } else {
        Some(crate::audit::Auditor::open(&config.audit)?)
    };
    let manifest: std::result::Result<Option<Manifest>, String> =
        FileStore::new(config.server.state_dir.clone())
            .load()
            .map(Some)
            .map_err(|e| e.to_string());
    let mut reports = Vec::new();
    for (name, b) in &config.backends {
        let BackendConfig::Pkcs11(p) = b else {
            continue;
        };
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let mut report = BackendReport {
            name: name.clone(),
            profile: p.profile.clone(),
            profile_tested: false,
            module: p.module.display().to_string(),
            error: None,
            mechanisms: Vec::new(),
            algorithms: Vec::new(),
            orphans: Vec::new(),
            missing: Vec::new(),
            limits: Vec::new(),
            manifest_error: manifest.as_ref().err().cloned(),
        };
        let opened = HsmProfile::load(&p.profile, config.server.profiles_dir.as_deref()).and_then(
            |profile| {
                report.profile_tested = profile.tested;
                report.limits = profile.limits.clone();
                let pin = Secret::from_source(&p.pin)?;
                Pkcs11Backend::open(p, profile, pin).map_err(|e| e.to_string())
            },
        );
        match opened {
            Ok(backend) => {
                check_backend(
                    &backend,
                    name,
                    manifest.as_ref().ok().and_then(Option::as_ref),
                    audit.as_ref(),
                    &mut report,
                );
                backend.release_sessions();
                // Not dropped: opencryptoki 3.8 crashes in C_Finalize; the
                // doctor is a one-shot process and the OS ends its sessions.
                std::mem::forget(backend);
            }
            Err(e) => report.error = Some(e),
        }
        reports.push(report);
    }
    if reports.is_empty() {
        return Err("the config has no PKCS#11 backend to check".into());
    }
    Ok(reports)
}

fn check_backend(
    backend: &Pkcs11Backend,
    name: &str,
    manifest: Option<&Manifest>,
    audit: Option<&crate::audit::Auditor>,
    report: &mut BackendReport,
) {
    let listed = match backend.mechanisms() {
        Ok(m) => m,
        Err(e) => {
            report.error = Some(format!("cannot list mechanisms: {e}"));
            return;
        }
    };
    report.mechanisms = listed.iter().map(|m| m.to_string()).collect();
    for (alg_name, settings) in &backend.profile().algorithms {
        let mechanism = format!("{:?}", settings.mechanism);
        let check = match alg_name.parse::<Algorithm>() {
            Err(e) => Err(e),
            Ok(_) if !listed.contains(&mechanism_type(settings.mechanism)) => Err(format!(
                "the token does not list {mechanism} (nor the profile's fallback)"
            )),
            Ok(alg) => check_algorithm(backend, alg, name, audit),
        };
        report.algorithms.push(match check {
            Ok((detail, micros)) => AlgorithmCheck {
                alg: alg_name.clone(),
                mechanism,
                ok: true,
                detail,
                micros_per_op: Some(micros),
            },
            Err(detail) => AlgorithmCheck {
                alg: alg_name.clone(),
                mechanism,
                ok: false,
                detail,
                micros_per_op: None,
            },
        });
    }
    let on_token = match backend.list_keys() {
        Ok(k) => k,
        Err(e) => {
            report.error = Some(format!("cannot list the token's keys: {e}"));
            return;
        }
    };
    let Some(m) = manifest else { return };
    let known: Vec<(&KeyRef, Algorithm, VersionState)> = m
        .keysets
        .values()
        .filter(|ks| ks.backend == name)
        .flat_map(|ks| {
            ks.versions
                .iter()
                .map(move |v| (&v.key_ref, ks.alg, v.state))
        })
        .collect();
    for k in &on_token {
        if !known.iter().any(|(r, _, _)| r.id == k.id) {
            report.orphans.push(format!("{} (id {})", k.label, k.id));
        }
    }
    for (r, alg, state) in known {
        if state == VersionState::Destroyed {
            continue;
        }
        if backend.load(r, alg).is_err() {
            report.missing.push(format!("{} (id {})", r.label, r.id));
        }
    }
}

/// Writes a doctor audit line (key created or destroyed on the token).
fn audit_line(
    audit: Option<&crate::audit::Auditor>,
    operation: &str,
    backend: &str,
    key: &KeyRef,
    outcome: &str,
) -> Result<(), String> {
    let Some(a) = audit else { return Ok(()) };
    let caller =
        serde_json::json!({"tool": "custosd doctor", "uid": nix::unistd::getuid().as_raw()});
    let detail = format!("backend {backend}, test key {} (id {})", key.label, key.id);
    a.record_blocking(
        caller,
        &crate::audit::Event {
            operation,
            outcome,
            detail: Some(&detail),
            ..crate::audit::Event::default()
        },
    )
    .map_err(|e| e.to_string())
}

/// Generates a throwaway key, uses it, checks it independently, destroys it.
fn check_algorithm(
    backend: &Pkcs11Backend,
    alg: Algorithm,
    name: &str,
    audit: Option<&crate::audit::Auditor>,
) -> Result<(String, u64), String> {
    let key = KeyRef::generate(format!("custos-doctor:{alg}"));
    let public = backend
        .generate(&key, alg)
        .map_err(|e| format!("key generation failed: {e}"))?;
    let result = audit_line(audit, "doctor_generate_key", name, &key, "ok")
        .and_then(|()| use_key(backend, &key, alg, &public));
    let destroyed = backend.destroy(&key);
    let logged = audit_line(
        audit,
        "doctor_destroy_key",
        name,
        &key,
        if destroyed.is_ok() { "ok" } else { "error" },
    );
    let result = result.and_then(|r| logged.map(|()| r));
    match (result, destroyed) {
        (Ok(r), Ok(())) => Ok(r),
        (Ok((detail, _)), Err(e)) => Err(format!(
            "{detail}; but destroying the test key {} failed: {e}",
            key.label
        )),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => Err(format!(
            "{e}; and destroying the test key {} failed too: {d}",
            key.label
        )),
    }
}

fn use_key(
    backend: &Pkcs11Backend,
    key: &KeyRef,
    alg: Algorithm,
    public: &crate::backend::PublicKey,
) -> Result<(String, u64), String> {
    let protection = backend
        .protection(key)
        .map_err(|e| format!("reading attributes failed: {e}"))?;
    if !protection.sensitive || protection.extractable {
        return Err(format!(
            "the key is not protected: CKA_SENSITIVE={} CKA_EXTRACTABLE={}",
            protection.sensitive, protection.extractable
        ));
    }
    let started = Instant::now();
    if alg == Algorithm::RsaOaep256 {
        let secret: [u8; 32] = rand::random();
        let ciphertext = oaep_encrypt(public, &secret)?;
        for _ in 0..TIMED_SIGNATURES {
            let out = backend
                .decrypt(key, alg, &ciphertext)
                .map_err(|e| format!("decryption failed: {e}"))?;
            if out != secret {
                return Err("the token decrypted to the wrong value".into());
            }
        }
        let micros = started.elapsed().as_micros() as u64 / u64::from(TIMED_SIGNATURES);
        return Ok((
            "decrypts what OpenSSL encrypted; sensitive, not extractable".into(),
            micros,
        ));
    }
    let message = b"custos doctor";
    let mut signature = Vec::new();
    for _ in 0..TIMED_SIGNATURES {
        signature = backend
            .sign(key, alg, message)
            .map_err(|e| format!("signing failed: {e}"))?;
    }
    let micros = started.elapsed().as_micros() as u64 / u64::from(TIMED_SIGNATURES);
    let jwk = crate::jose::jwk::public_jwk(public, "doctor", alg);
    let verifier = jwk
        .as_object()
        .ok_or("no JWK".to_string())
        .and_then(|j| VerifyKey::from_jwk(j, alg))?;
    verifier
        .verify_raw(message, &signature)
        .map_err(|_| "the signature does not verify with OpenSSL".to_string())?;
    let mut detail = String::from("signature verified by OpenSSL; sensitive, not extractable");
    if alg == Algorithm::PS256 {
        // RSA keys also sign HTTP messages as rsa-pss-sha512 (RFC 9421).
        // A PKCS#11 backend always has rsa-pss-sha512: call it directly.
        let sig = crate::backend::RsaPssSha512::sign_rsa_pss_sha512(backend, key, alg, message)
            .map_err(|e| format!("PS256 works, but rsa-pss-sha512 (HTTP signatures) fails: {e}"))?;
        let members = jwk.as_object().cloned().unwrap_or_default();
        crate::httpsig::keys::verify(&members, Some("rsa-pss-sha512"), message, &sig).map_err(
            |e| {
                format!(
                    "rsa-pss-sha512 signature does not verify with OpenSSL: {}",
                    e.detail
                )
            },
        )?;
        detail.push_str("; rsa-pss-sha512 too");
    }
    Ok((detail, micros))
}

/// RSA-OAEP (SHA-256) encryption in software, to test decryption on the token.
fn oaep_encrypt(public: &crate::backend::PublicKey, plain: &[u8]) -> Result<Vec<u8>, String> {
    let crate::backend::PublicKey::Rsa { n, e } = public else {
        return Err("an RSA-OAEP-256 key that is not RSA".into());
    };
    let err = |e: openssl::error::ErrorStack| e.to_string();
    let number = |hex_text: &str| {
        let bytes = hex::decode(hex_text).map_err(|e| e.to_string())?;
        openssl::bn::BigNum::from_slice(&bytes).map_err(err)
    };
    let rsa = openssl::rsa::Rsa::from_public_components(number(n)?, number(e)?).map_err(err)?;
    let pkey = openssl::pkey::PKey::from_rsa(rsa).map_err(err)?;
    let mut enc = openssl::encrypt::Encrypter::new(&pkey).map_err(err)?;
    enc.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .map_err(err)?;
    enc.set_rsa_oaep_md(openssl::hash::MessageDigest::sha256())
        .map_err(err)?;
    enc.set_rsa_mgf1_md(openssl::hash::MessageDigest::sha256())
        .map_err(err)?;
    let mut out = vec![0; enc.encrypt_len(plain).map_err(err)?];
    let n = enc.encrypt(plain, &mut out).map_err(err)?;
    out.truncate(n);
    Ok(out)
}

/// The report as a table a person can read.
pub fn render(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!(
            "backend {} — profile {}{} — module {}\n",
            r.name,
            r.profile,
            if r.profile_tested {
                ""
            } else {
                " (UNTESTED profile)"
            },
            r.module
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("  FAILED: {e}\n"));
            continue;
        }
        if let Some(e) = &r.manifest_error {
            out.push_str(&format!("  FAILED: cannot read the manifest: {e}\n"));
        }
        out.push_str(&format!(
            "  token lists {} mechanisms\n",
            r.mechanisms.len()
        ));
        out.push_str(&format!(
            "  {:<13} {:<24} {:<7} {:>9}  {}\n",
            "algorithm", "mechanism", "result", "µs/op", "detail"
        ));
        for a in &r.algorithms {
            out.push_str(&format!(
                "  {:<13} {:<24} {:<7} {:>9}  {}\n",
                a.alg,
                a.mechanism,
                if a.ok { "ok" } else { "FAILED" },
                a.micros_per_op.map(|m| m.to_string()).unwrap_or("-".into()),
                a.detail
            ));
        }
        out.push_str(&format!(
            "  orphans (on the token, not in the manifest): {}\n",
            if r.orphans.is_empty() {
                "none".into()
            } else {
                r.orphans.join(", ")
            }
        ));
        out.push_str(&format!(
            "  missing (in the manifest, not on the token): {}\n",
            if r.missing.is_empty() {
                "none".into()
            } else {
                r.missing.join(", ")
            }
        ));
        for l in &r.limits {
            out.push_str(&format!("  limit: {l}\n"));
        }
        out.push_str(if r.ok() {
            "  => OK\n"
        } else {
            "  => PROBLEMS FOUND\n"
        });
    }
    out
}
