//! Screening a manifest against the devices before it is trusted: kids,
//! public keys, duplicate device keys, stored certificates; the keysets
//! that fail are quarantined. And the start-up inventory (orphan keys).

use super::*;

impl Keyring {
    /// What is wrong with each keyset whose record in `m` cannot be
    /// trusted: a live version's public key must hash to its kid, fit the
    /// algorithm, be the key the device holds under its id, and no device
    /// key may be recorded twice. The device is asked once per key; its
    /// answer is remembered. Blocking.
    pub(super) fn screen(&self, m: &Manifest) -> BTreeMap<String, String> {
        let mut problems = BTreeMap::new();
        let mut seen: HashMap<(&str, &str), &str> = HashMap::new();
        for ks in m.keysets.values() {
            let mut problem = None;
            for v in ks
                .versions
                .iter()
                .filter(|v| v.state != VersionState::Destroyed)
            {
                if let Some(other) = seen.insert((&ks.backend, &v.key_ref.id), &ks.name) {
                    problem = Some(format!(
                        "device key {} is recorded twice (also in keyset {other:?})",
                        v.key_ref.id
                    ));
                    problems.entry(other.to_string()).or_insert_with(|| {
                        format!(
                            "device key {} is recorded twice (also in keyset {:?})",
                            v.key_ref.id, ks.name
                        )
                    });
                } else if !v.public.fits(ks.alg) {
                    problem = Some(format!(
                        "the recorded public key of kid {} is not an {} key",
                        v.kid, ks.alg
                    ));
                } else if jwk::thumbprint(&v.public) != v.kid {
                    problem = Some(format!(
                        "the recorded public key of kid {} does not hash to that kid",
                        v.kid
                    ));
                } else if let Some(p) = certificate_problem(v) {
                    problem = Some(p);
                } else {
                    match self.device_public(ks, v) {
                        Ok(device) if device == v.public => {}
                        Ok(_) => {
                            problem = Some(format!(
                                "the device key {} is not the recorded public key of kid {}",
                                v.key_ref.label, v.kid
                            ))
                        }
                        Err(e) => {
                            problem = Some(format!(
                                "kid {} cannot be checked against its device key {}: {e}",
                                v.kid, v.key_ref.label
                            ))
                        }
                    }
                }
                if problem.is_some() {
                    break;
                }
            }
            if let Some(p) = problem {
                problems.insert(ks.name.clone(), p);
            }
        }
        problems
    }

    /// The public key the device holds for version `v` of `ks` (remembered
    /// after the first answer).
    pub(super) fn device_public(&self, ks: &Keyset, v: &KeyVersion) -> Result<PublicKey> {
        let slot = (ks.backend.clone(), v.key_ref.id.clone());
        if let Some(k) = self
            .device_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&slot)
        {
            return Ok(k.clone());
        }
        let backend = self.backend_of(&ks.backend)?;
        let public = backend.load(&v.key_ref, ks.alg)?;
        self.device_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slot, public.clone());
        Ok(public)
    }

    /// Keysets held back because the manifest's record of them does not
    /// match the device: (name, why).
    pub fn quarantined(&self) -> BTreeMap<String, String> {
        self.quarantine
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Removes what a crash left behind (objects of destroyed versions) and
    /// reports unrecorded keys as orphans.
    pub(super) fn reconcile(&self) -> Result<()> {
        let m = self.store.load()?;
        let mut recorded: BTreeMap<&str, Vec<&KeyRef>> = BTreeMap::new();
        for ks in m.keysets.values() {
            let Some(backend) = self.backends.get(&ks.backend) else {
                continue;
            };
            for v in &ks.versions {
                recorded
                    .entry(ks.backend.as_str())
                    .or_default()
                    .push(&v.key_ref);
                if v.state == VersionState::Destroyed {
                    // Marked destroyed, maybe not yet removed (a crash in between).
                    if let Err(e) = backend.destroy(&v.key_ref) {
                        tracing::warn!(keyset = %ks.name, kid = %v.kid, error = %e, "could not remove a destroyed key");
                    }
                }
            }
        }
        let mut orphans = Vec::new();
        for (name, backend) in &self.backends {
            let known: Vec<&KeyRef> = recorded.get(name.as_str()).cloned().unwrap_or_default();
            match backend.list_keys() {
                Ok(keys) => {
                    for k in keys
                        .into_iter()
                        .filter(|k| !known.iter().any(|r| r.id == k.id))
                    {
                        tracing::warn!(backend = %name, label = %k.label, id = %k.id,
                            "orphan key: on the device but not in the keyring manifest; it is never used (run `custos doctor`)");
                        orphans.push((name.clone(), k));
                    }
                }
                Err(e) => {
                    tracing::warn!(backend = %name, error = %e, "could not list keys to look for orphans")
                }
            }
        }
        *self.orphans.lock().unwrap_or_else(|p| p.into_inner()) = orphans;
        Ok(())
    }
}

/// Why the certificate chain stored with `v` cannot be served, if it cannot:
/// not DER, or its leaf certifies another key.
pub(super) fn certificate_problem(v: &KeyVersion) -> Option<String> {
    let chain = v.chain_der();
    if chain.len() != v.certificate_chain.len() {
        return Some(format!(
            "the certificate chain of kid {} is not base64 DER",
            v.kid
        ));
    }
    match chain
        .first()
        .map(|leaf| crate::pki::certifies(leaf, &v.public))
    {
        None | Some(Ok(true)) => None,
        _ => Some(format!(
            "the certificate stored for kid {} does not certify its public key",
            v.kid
        )),
    }
}
