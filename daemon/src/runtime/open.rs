//! Opening what the config names beyond PKCS#11: the etcd manifest store,
//! TPM backends; and copying the manifest between file and etcd.

use crate::backend::KeyBackend;
use crate::config::Config;
use crate::keyring::store::{FileStore, ManifestStore};
use crate::secret::Secret;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Connects to the etcd cluster named by `[keyring.etcd]`.
pub(super) fn open_etcd(
    etcd: &crate::config::EtcdConfig,
) -> Result<crate::keyring::etcd_store::EtcdStore, String> {
    use crate::files::{read_trusted, Kind};
    let timeout = crate::keyring::policy::parse_duration(&etcd.timeout)
        .map_err(|e| format!("[keyring.etcd] timeout: {e}"))?;
    let user = match (&etcd.user, &etcd.password) {
        (Some(u), Some(p)) => Some((
            u.clone(),
            Secret::from_source(p)
                .map_err(|e| format!("[keyring.etcd] password: {e}"))?
                .expose()
                .to_string(),
        )),
        _ => None,
    };
    let read = |p: &Path, kind| {
        read_trusted(p, kind)
            .map(|b| b.to_vec())
            .map_err(|e| format!("[keyring.etcd]: {e}"))
    };
    let tls = match &etcd.ca {
        Some(ca) => Some(crate::keyring::etcd_store::EtcdTls {
            ca: read(ca, Kind::Config)?,
            identity: match (&etcd.cert, &etcd.key) {
                (Some(c), Some(k)) => Some((read(c, Kind::Config)?, read(k, Kind::Secret)?)),
                _ => None,
            },
        }),
        None => None,
    };
    crate::keyring::etcd_store::EtcdStore::connect(crate::keyring::etcd_store::EtcdSettings {
        endpoints: etcd.endpoints.clone(),
        prefix: etcd.prefix.clone(),
        timeout: Duration::from_secs(timeout.unsigned_abs().max(1)),
        user,
        tls,
    })
    .map_err(|e| e.to_string())
}

/// Copies the manifest from the config's state directory to its etcd
/// (`to = "etcd"`) or back (`to = "file"`). The destination must be empty
/// unless `force`; the copy keeps the generation, so daemons that had the
/// source see no step back. Blocking.
///
/// # Errors
/// A config without `[keyring.etcd]`, an unreachable store, a destination
/// that already holds a manifest.
pub fn migrate(config: &Path, to: &str, force: bool) -> Result<String, String> {
    let config = Config::load(config)?;
    let etcd = config
        .keyring
        .etcd
        .as_ref()
        .ok_or("the config has no [keyring.etcd] table to migrate to or from")?;
    let etcd: Box<dyn ManifestStore> = Box::new(open_etcd(etcd)?);
    let file: Box<dyn ManifestStore> = Box::new(FileStore::new(config.server.state_dir.clone()));
    let (from, dest) = match to {
        "etcd" => (file, etcd),
        "file" => (etcd, file),
        other => return Err(format!("--to {other:?}: use etcd or file")),
    };
    let manifest = from.load().map_err(|e| e.to_string())?;
    if manifest.generation == 0 && manifest.keysets.is_empty() {
        return Err(format!(
            "{} holds no manifest; nothing to copy",
            from.describe()
        ));
    }
    let existing = dest.load().map_err(|e| e.to_string())?;
    if existing.generation != 0 && !force {
        return Err(format!(
            "{} already holds a manifest (generation {}, {} keysets); give --force to overwrite it",
            dest.describe(),
            existing.generation,
            existing.keysets.len()
        ));
    }
    let mut next = manifest.clone();
    next.generation = manifest.generation.max(existing.generation + 1);
    match dest
        .commit(existing.generation, &next)
        .map_err(|e| e.to_string())?
    {
        crate::keyring::store::Commit::Done => Ok(format!(
            "copied {} keysets (generation {}) from {} to {}",
            next.keysets.len(),
            next.generation,
            from.describe(),
            dest.describe()
        )),
        crate::keyring::store::Commit::Conflict => Err(format!(
            "{} changed during the copy; run it again",
            dest.describe()
        )),
    }
}

#[cfg(feature = "tpm")]
pub(super) fn open_tpm(
    name: &str,
    t: &crate::config::TpmConfig,
    config: &Config,
) -> Result<Arc<dyn KeyBackend>, String> {
    let mut profile = crate::backend::profile::TpmProfile::load(
        &t.profile,
        config.server.profiles_dir.as_deref(),
    )?;
    tracing::info!(
        backend = name,
        profile = %profile.name,
        description = %profile.description,
        tested = profile.tested,
        "TPM profile loaded"
    );
    if !profile.tested {
        tracing::warn!(
            backend = name,
            profile = %profile.name,
            "this TPM profile has not been checked against the TPM model it names; test it on that model before production"
        );
    }
    if let Some(timeout) = &t.call_timeout {
        profile.call_timeout_ms = crate::config::call_timeout_ms(name, timeout)?;
    }
    let secret = |s: &Option<String>| {
        s.as_deref()
            .map(Secret::from_source)
            .transpose()
            .map_err(|e| format!("backend {name}: {e}"))
    };
    let backend = crate::backend::tpm::TpmBackend::open(
        t,
        profile,
        config.server.state_dir.join(format!("tpm-{name}")),
        secret(&t.owner_auth)?,
        secret(&t.key_auth)?,
    )
    .map_err(|e| format!("backend {name}: {e}"))?;
    Ok(Arc::new(backend))
}

#[cfg(not(feature = "tpm"))]
pub(super) fn open_tpm(
    name: &str,
    _t: &crate::config::TpmConfig,
    _config: &Config,
) -> Result<Arc<dyn KeyBackend>, String> {
    Err(format!(
        "backend {name}: this custosd was built without TPM support; build it with `cargo build --features custos-daemon/tpm` (needs libtss2-dev)"
    ))
}
