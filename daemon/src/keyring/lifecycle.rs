//! A keyset's life: creation, new versions, state changes, destruction,
//! policy, and the certificates of TLS keysets. Each change is one
//! compare-and-swap write of the manifest (`Keyring::mutate`).

use super::*;

impl Keyring {
    pub(super) fn new_version(
        &self,
        ks: &Keyset,
        number: usize,
    ) -> Result<(Arc<dyn KeyBackend>, KeyVersion)> {
        let live = ks
            .versions
            .iter()
            .filter(|v| v.state != VersionState::Destroyed)
            .count();
        let max = self.limits().max_live_versions;
        if live >= max {
            return Err(Error::FailedPrecondition(format!(
                "keyset {:?} holds {live} key versions on the device, the limit ([keyring] \
                 max_live_versions) is {max}: destroy retired or disabled versions first",
                ks.name
            )));
        }
        let backend = self.backend_of(&ks.backend)?;
        let key_ref = KeyRef::generate(format!("custos:{}:{number}", ks.name));
        let public = backend.generate(&key_ref, ks.alg)?;
        self.device_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ks.backend.clone(), key_ref.id.clone()), public.clone());
        Ok((
            backend,
            KeyVersion {
                kid: jwk::thumbprint(&public),
                state: VersionState::Pending,
                created_at: now(),
                key_ref,
                public,
                history: Vec::new(),
                certificate_chain: Vec::new(),
            },
        ))
    }

    /// Records a freshly generated version with `record`, or removes the key
    /// from the device again when recording failed. The key is removed only
    /// when the manifest provably does not name it: a write can fail after
    /// the new manifest reached the disk (the directory fsync after the
    /// rename), and a manifest naming a destroyed key would not start.
    pub(super) fn record_new<T>(
        &self,
        backend: &Arc<dyn KeyBackend>,
        key_ref: &KeyRef,
        record: impl Fn(&mut Manifest) -> Result<T>,
    ) -> Result<T> {
        let e = match self.mutate(record) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        match self.store.load() {
            Ok(m) if !names(&m, key_ref) => {
                if let Err(cleanup) = backend.destroy(key_ref) {
                    tracing::error!(label = %key_ref.label, error = %cleanup,
                        "could not remove a key whose recording failed; it is an orphan");
                }
            }
            Ok(m) => {
                tracing::error!(label = %key_ref.label, error = %e,
                    "the manifest write reported a failure but the manifest names the new key; it is kept");
                let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                self.install(m);
            }
            Err(load) => {
                tracing::error!(label = %key_ref.label, error = %e, reload = %load,
                    "the manifest write failed and the manifest cannot be read back; the new key is kept \
                     (an orphan at worst, reported at start)");
            }
        }
        Err(e)
    }

    /// Creates a keyset with one active version generated on its backend. Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a bad name or no purposes, `AlreadyExists`,
    /// `NotFound` for an unknown backend, or the device's failure.
    pub fn create(&self, req: NewKeyset, by: &str) -> Result<Keyset> {
        keyset::check_name(&req.name).map_err(Error::invalid)?;
        self.refuse_quarantined(&req.name)?;
        let max_token_lifetime = req
            .max_token_lifetime
            .unwrap_or(keyset::DEFAULT_MAX_LIFETIME);
        if !(1..=86_400).contains(&max_token_lifetime) {
            return Err(Error::invalid(format!(
                "max token lifetime must be between 1 second and 24 hours (got {max_token_lifetime} s)"
            )));
        }
        if req.issuer.as_deref() == Some("") {
            return Err(Error::invalid("issuer must not be empty"));
        }
        if req.purposes.is_empty() {
            return Err(Error::invalid("a keyset needs at least one purpose"));
        }
        let backend_name = match req.backend {
            Some(b) if !b.is_empty() => b,
            _ => self
                .backends
                .keys()
                .next()
                .cloned()
                .ok_or_else(|| Error::FailedPrecondition("no backend is configured".into()))?,
        };
        self.backend_of(&backend_name)?;
        if self.snapshot().keysets.contains_key(&req.name) {
            return Err(already(&req.name));
        }
        let on_backend = self
            .snapshot()
            .keysets
            .values()
            .filter(|k| k.backend == backend_name)
            .count();
        let max = self.limits().max_keysets_per_backend;
        if on_backend >= max {
            return Err(Error::FailedPrecondition(format!(
                "backend {backend_name:?} holds {on_backend} keysets, the limit ([keyring] \
                 max_keysets_per_backend) is {max}"
            )));
        }
        let mut purposes = req.purposes;
        purposes.sort();
        purposes.dedup();
        let policy = Policy {
            retain_for: Policy::default().retain_for.max(max_token_lifetime),
            ..Policy::default()
        };
        let mut ks = Keyset {
            name: req.name.clone(),
            alg: req.alg,
            purposes,
            backend: backend_name,
            profile: req.profile,
            issuer: req.issuer,
            max_token_lifetime,
            created_at: now(),
            policy,
            versions: Vec::new(),
        };
        let (backend, version) = self.new_version(&ks, 1)?;
        let key_ref = version.key_ref.clone();
        ks.add_version(version, true, ks.created_at, by);
        self.record_new(&backend, &key_ref, |m| {
            if m.keysets.contains_key(&ks.name) {
                return Err(already(&ks.name));
            }
            m.keysets.insert(ks.name.clone(), ks.clone());
            Ok(ks.clone())
        })
    }

    pub(super) fn change_keyset(
        &self,
        name: &str,
        change: impl Fn(&mut Keyset) -> Result<()>,
    ) -> Result<Keyset> {
        self.refuse_quarantined(name)?;
        self.mutate(|m| {
            let ks = m.keysets.get_mut(name).ok_or_else(|| not_found(name))?;
            change(ks)?;
            Ok(ks.clone())
        })
    }

    /// Makes a new version: pending (published ahead), or active at once when
    /// `now` (emergency rotation; the old active key is retired). Blocking.
    ///
    /// # Errors
    /// `NotFound`, or the device's failure.
    pub fn rotate(&self, name: &str, activate_now: bool, by: &str) -> Result<Keyset> {
        let ks = self.keyset(name)?;
        let (backend, version) = self.new_version(&ks, ks.next_number())?;
        let key_ref = version.key_ref.clone();
        let at = now();
        let ks = self.record_new(&backend, &key_ref, |m| {
            let ks = m.keysets.get_mut(name).ok_or_else(|| not_found(name))?;
            ks.add_version(version.clone(), activate_now, at, by);
            Ok(ks.clone())
        })?;
        self.audit_transition(
            by,
            name,
            &version.kid,
            None,
            if activate_now { "active" } else { "pending" },
        );
        Ok(ks)
    }

    /// Promotes a pending version, or rolls back to a retired one. Blocking.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` for disabled or destroyed versions.
    pub fn activate(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.activate(kid, at, by))?;
        self.audit_transition(by, name, kid, None, "active");
        Ok(ks)
    }

    /// Retires a pending version. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key.
    pub fn retire(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.retire(kid, at, by))?;
        self.audit_transition(by, name, kid, None, "retired");
        Ok(ks)
    }

    /// Disables a version: out of the JWKS, refused by every verification. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key.
    pub fn disable(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.disable(kid, at, by))?;
        self.audit_transition(by, name, kid, None, "disabled");
        Ok(ks)
    }

    /// Destroys a version: recorded first, then removed from the device. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for the active key; the device's failure.
    pub fn destroy(&self, name: &str, kid: &str, by: &str) -> Result<Keyset> {
        let at = now();
        let ks = self.change_keyset(name, |ks| ks.destroy(kid, at, by).map(|_| ()))?;
        if let Some(v) = ks.versions.iter().find(|v| v.kid == kid) {
            self.backend_of(&ks.backend)?.destroy(&v.key_ref)?;
        }
        self.audit_transition(by, name, kid, None, "destroyed");
        Ok(ks)
    }

    /// A PKCS#10 certificate request (PEM) for a TLS keyset's active key,
    /// or its pending version `kid` (so the certificate is issued before the
    /// key signs), signed inside the device; and that key's kid. Blocking.
    ///
    /// # Errors
    /// `FailedPrecondition` for a keyset that is not a TLS one, no active
    /// key, or a kid neither active nor pending; `InvalidArgument` for a bad
    /// subject or SAN; the device's failure.
    pub fn certificate_request(
        &self,
        name: &str,
        kid: Option<&str>,
        subject: &str,
        sans: &[String],
    ) -> Result<(String, String)> {
        self.refuse_stale()?;
        self.refuse_quarantined(name)?;
        let ks = self.keyset(name)?;
        if !ks.purposes.iter().any(|p| p.is_tls()) {
            return Err(Error::FailedPrecondition(format!(
                "keyset {name:?} is not a TLS keyset (purpose tls_client or tls_server): \
                 only transport keys get certificate requests"
            )));
        }
        let version = match kid {
            None => ks.active().ok_or_else(|| {
                Error::FailedPrecondition(format!("keyset {name:?} has no active key version"))
            })?,
            Some(kid) => ks
                .versions
                .iter()
                .find(|v| v.kid == kid)
                .filter(|v| matches!(v.state, VersionState::Active | VersionState::Pending))
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "keyset {name:?} has no active or pending version {kid}: \
                         `custos keyset show {name}` lists them"
                    ))
                })?,
        };
        let info = crate::pki::request_info(subject, sans, &version.public)?;
        let tbs = crate::pki::to_be_signed(&info)?;
        let signature = self
            .backend_of(&ks.backend)?
            .sign(&version.key_ref, ks.alg, &tbs)?;
        Ok((
            crate::pki::assemble(info, ks.alg, &signature)?,
            version.kid.clone(),
        ))
    }

    /// Stores the certificate chain a CA issued for one of a TLS keyset's
    /// versions: the leaf's public key picks the version, which must be live
    /// (not disabled or destroyed). Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a chain that does not parse or certifies none of
    /// the keyset's keys; `FailedPrecondition` for a keyset that is not a TLS
    /// one, or a version no longer live.
    pub fn set_certificate(&self, name: &str, chain_pem: &str, by: &str) -> Result<Keyset> {
        use base64::Engine;
        let chain = crate::pki::parse_chain(chain_pem)?;
        let stored: Vec<String> = chain
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect();
        let ks = self.change_keyset(name, |ks| {
            if !ks.purposes.iter().any(|p| p.is_tls()) {
                return Err(Error::FailedPrecondition(format!(
                    "keyset {name:?} is not a TLS keyset (purpose tls_client or tls_server); \
                     certificates are stored for transport keys only"
                )));
            }
            let mut found = None;
            for v in ks.versions.iter_mut() {
                if crate::pki::certifies(&chain[0], &v.public)? {
                    found = Some(v);
                    break;
                }
            }
            let v = found.ok_or_else(|| {
                Error::invalid(format!(
                    "the leaf certificate certifies none of keyset {name:?}'s keys: give the \
                     chain issued for the CSR `custos keyset csr {name}` made"
                ))
            })?;
            if !v.state.is_live() {
                return Err(Error::FailedPrecondition(format!(
                    "kid {} is {}: a certificate is stored only for a live key",
                    v.kid,
                    v.state.as_str()
                )));
            }
            v.certificate_chain = stored.clone();
            Ok(())
        })?;
        let kid = ks
            .versions
            .iter()
            .find(|v| v.certificate_chain == stored)
            .map(|v| v.kid.clone())
            .unwrap_or_default();
        tracing::info!(target: "custos::audit", by, keyset = name, kid, operation = "set_certificate",
            x5t_s256 = crate::pki::x5t_s256(&chain[0]), outcome = "ok", "certificate stored");
        Ok(ks)
    }

    /// Changes a keyset's policy. Blocking.
    ///
    /// # Errors
    /// `InvalidArgument` for a policy that does not fit the keyset.
    pub fn set_policy(&self, name: &str, update: PolicyUpdate, by: &str) -> Result<Keyset> {
        let min_rotation = self.limits().min_rotation_period;
        let ks = self.change_keyset(name, |ks| {
            let mut p = ks.policy;
            if let Some(r) = update.rotation_period {
                p.rotation_period = r;
            }
            if let Some(v) = update.publish_ahead {
                p.publish_ahead = v;
            }
            if let Some(v) = update.retain_for {
                p.retain_for = v;
            }
            if let Some(v) = update.auto_destroy {
                p.auto_destroy = v;
            }
            p.check(ks.max_token_lifetime, min_rotation)
                .map_err(Error::invalid)?;
            ks.policy = p;
            Ok(())
        })?;
        tracing::info!(target: "custos::audit", by, keyset = name, operation = "set_policy",
            policy = ?ks.policy, outcome = "ok", "policy changed");
        Ok(ks)
    }
}
