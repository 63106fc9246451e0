//! Wiring: config to backends, keyring, audit log, listeners and server;
//! signals to shutdown; process hardening.
//!
//! `open.rs` opens what the config names (TPM backends, the etcd store) and
//! migrates the manifest; `socket.rs` binds the Unix socket and waits for
//! signals; `background.rs` runs the schedule, the refresh and the audit
//! checkpoints.

mod background;
mod open;
mod socket;

pub use open::migrate;

use crate::audit::Auditor;
use crate::backend::pkcs11::Pkcs11Backend;
use crate::backend::profile::HsmProfile;
use crate::backend::software::SoftwareBackend;
use crate::backend::KeyBackend;
use crate::config::{AuditConfig, BackendConfig, Config, ServerConfig};
use crate::keyring::policy::parse_duration;
use crate::keyring::store::{FileStore, ManifestStore};
use crate::keyring::Keyring;
use crate::secret::Secret;
use crate::server::ServeOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How `custosd` was asked to run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `--config FILE`.
    Config(PathBuf),
    /// `--dev`: software keys in `./custos-dev/`, socket `./custos-dev.sock`.
    Dev,
}

const DEV_BANNER: &str = "\
**********************************************************************
*  custosd --dev: SOFTWARE KEYS. Keys are NOT hardware-protected.    *
*  They are stored in ./custos-dev/ in the clear. Never use them to  *
*  sign anything that matters.                                       *
**********************************************************************";

type Backends = BTreeMap<String, Arc<dyn KeyBackend>>;

/// The keyring being served. Held for the life of the process: it is never
/// dropped, so no `C_Finalize` runs (opencryptoki 3.8 crashes in it after
/// multi-threaded use; the OS ends what is left at exit).
static SERVED: std::sync::OnceLock<Arc<Keyring>> = std::sync::OnceLock::new();

/// Closes the served keyring's pooled device sessions. Call after the async
/// runtime has shut down, when no device call is still running.
pub fn finish() {
    if let Some(k) = SERVED.get() {
        k.release_sessions();
    }
}

/// Everything the server needs, built from the mode.
struct Setup {
    config: Config,
    keyring: Keyring,
    audit: Arc<Auditor>,
}

/// Keeps secrets out of core dumps and other processes' ptrace reach
/// (PR_SET_DUMPABLE 0, core size 0), where the OS allows.
fn harden_process() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not clear PR_SET_DUMPABLE");
    }
    if let Err(e) = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
}

fn dev_config() -> Config {
    Config {
        server: ServerConfig {
            socket_mode: "0660".into(),
            // --dev is for trying Custos out: the user who started it may do
            // everything, as an explicit rule would grant.
            owner_operations: crate::config::OPERATIONS.map(String::from).to_vec(),
            ..ServerConfig::defaults(
                PathBuf::from("custos-dev.sock"),
                PathBuf::from("custos-dev"),
            )
        },
        backends: BTreeMap::new(),
        verify: Default::default(),
        keyring: Default::default(),
        access: Vec::new(),
        audit: AuditConfig::default(),
        dual_control: Default::default(),
        limits: Default::default(),
        log: Default::default(),
        metrics: Default::default(),
    }
}

fn setup(mode: &Mode) -> Result<Setup, String> {
    let (config, backends, store): (Config, Backends, Box<dyn ManifestStore>) = match mode {
        Mode::Dev => {
            eprintln!("{DEV_BANNER}");
            let config = dev_config();
            let dev: Arc<dyn KeyBackend> = Arc::new(
                SoftwareBackend::new(config.server.state_dir.join("dev-keys"))
                    .map_err(|e| e.to_string())?,
            );
            let store = Box::new(FileStore::new(config.server.state_dir.clone()));
            (config, BTreeMap::from([("dev".to_string(), dev)]), store)
        }
        Mode::Config(path) => {
            let config = Config::load(path)?;
            let mut backends: BTreeMap<String, Arc<dyn KeyBackend>> = BTreeMap::new();
            for (name, b) in &config.backends {
                match b {
                    BackendConfig::Pkcs11(p) => {
                        let mut profile =
                            HsmProfile::load(&p.profile, config.server.profiles_dir.as_deref())?;
                        if let Some(t) = &p.call_timeout {
                            profile.sessions.call_timeout_ms =
                                crate::config::call_timeout_ms(name, t)?;
                        }
                        if let Some(n) = p.pool_size {
                            if !(1..=1024).contains(&n) {
                                return Err(format!(
                                    "[backends.{name}] pool_size {n} must be between 1 and 1024"
                                ));
                            }
                            profile.sessions.pool_size = n;
                        }
                        let pin = Secret::from_source(&p.pin)
                            .map_err(|e| format!("backend {name}: {e}"))?;
                        let backend = Arc::new(
                            Pkcs11Backend::open(p, profile, pin)
                                .map_err(|e| format!("backend {name}: {e}"))?,
                        );
                        backends.insert(name.clone(), backend);
                    }
                    BackendConfig::Tpm(t) => {
                        backends.insert(name.clone(), open::open_tpm(name, t, &config)?);
                    }
                }
            }
            let store: Box<dyn ManifestStore> = match &config.keyring.etcd {
                Some(etcd) if config.keyring.manifest == "etcd" => Box::new(open::open_etcd(etcd)?),
                _ => Box::new(FileStore::new(config.server.state_dir.clone())),
            };
            (config, backends, store)
        }
    };
    let mut audit_config = config.audit.clone();
    audit_config.chain_state = Some(config.server.state_dir.join("audit-chain"));
    let audit = Arc::new(Auditor::open(&audit_config)?);
    let keyring = Keyring::open(store, backends).map_err(|e| e.to_string())?;
    keyring.set_limits(config.keyring.limits()?);
    keyring.set_max_stale(
        crate::keyring::policy::parse_duration(&config.keyring.max_stale)
            .map_err(|e| format!("[keyring] max_stale: {e}"))?,
    );
    keyring.set_auditor(audit.clone());
    if let Some(dc) = config.dual_control.checked()? {
        keyring.set_dual_control(dc);
    }
    Ok(Setup {
        config,
        keyring,
        audit,
    })
}

/// Opens the config's backends and keyring without serving (for
/// `custosd bench` and tools). Blocking.
///
/// # Errors
/// As for starting the daemon.
pub fn open_keyring(config: &Path) -> Result<Keyring, String> {
    setup(&Mode::Config(config.to_path_buf())).map(|s| s.keyring)
}
/// A setting's interval (at least a second); errors name the setting.
fn interval(setting: &str, d: &str) -> Result<Duration, String> {
    parse_duration(d)
        .map(|s| Duration::from_secs(s.max(1).unsigned_abs()))
        .map_err(|e| format!("{setting}: {e}"))
}
/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// A message for the operator: config, device, keyring or socket problems.
pub async fn run(mode: Mode) -> Result<(), String> {
    harden_process();
    let config_path = match &mode {
        Mode::Config(p) => Some(p.clone()),
        Mode::Dev => None,
    };
    let setup = tokio::task::spawn_blocking(move || setup(&mode))
        .await
        .map_err(|e| format!("start-up task failed: {e}"))??;
    let config = setup.config;
    if let Some(level) = &config.log.level {
        crate::logging::apply(level)?;
    }
    if let Some(addr) = config.metrics.address()? {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("[metrics] cannot listen on {addr}: {e}"))?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        crate::metrics::spawn_server(listener);
    }
    let keyring = Arc::new(setup.keyring);
    let tls = match &config.server.tcp {
        Some(addr) => {
            use crate::server::tls::Identity;
            let Some(ca) = &config.server.client_ca else {
                return Err("[server] tcp needs client_ca".into());
            };
            let identity = match (
                &config.server.tls_keyset,
                &config.server.tls_cert,
                &config.server.tls_key,
            ) {
                (Some(name), _, _) => Identity::Keyset(Arc::new(
                    crate::server::tls_key::KeysetCertificate::new(keyring.clone(), name)?,
                )),
                (None, Some(cert), Some(key)) => Identity::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                _ => return Err("[server] tcp needs tls_cert and tls_key, or tls_keyset".into()),
            };
            let files = crate::server::tls::TlsFiles {
                identity,
                client_ca: ca.clone(),
                client_crl: config.server.client_crl.clone(),
            };
            let tls = Arc::new(crate::server::tls::Tls::new(files, &config.server)?);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            Some((listener, tls))
        }
        None => None,
    };
    // Socket activation: systemd (or systemd-socket-activate) bound the
    // socket and owns its file; otherwise custosd binds it.
    let activated = crate::systemd::activated_unix_listener()?;
    let socket_owned = activated.is_none();
    let listener = match activated {
        Some(l) => tokio::net::UnixListener::from_std(l)
            .map_err(|e| format!("the socket systemd passed: {e}"))?,
        None => socket::bind(&config.server)?,
    };
    tracing::info!(
        socket = %config.server.socket.display(),
        tcp = config.server.tcp.as_deref().unwrap_or("-"),
        keysets = keyring.snapshot().keysets.len(),
        manifest = %keyring.store_description(),
        backends = ?keyring.backend_names(),
        socket_activated = !socket_owned,
        "custosd ready"
    );
    crate::systemd::ready();
    crate::systemd::spawn_watchdog();
    let background = background::spawn_background(
        keyring.clone(),
        interval("[keyring] refresh", &config.keyring.refresh)?,
        interval("[keyring] schedule_tick", &config.keyring.schedule_tick)?,
    );
    let policy = crate::server::PolicyCell::new(crate::server::Policy {
        rules: config.access.clone(),
        owner_operations: config.server.owner_operations.clone(),
        limits: config.limits,
    });
    crate::reload::spawn(crate::reload::Reloader {
        path: config_path,
        running: config.clone(),
        policy: policy.clone(),
        tls: tls.as_ref().map(|(_, t)| t.clone()),
        audit: setup.audit.clone(),
    });
    let audit = setup.audit.clone();
    let options = ServeOptions {
        request_timeout: ServerConfig::duration("request_timeout", &config.server.request_timeout)?,
        max_concurrent_streams: config.server.max_concurrent_streams,
        verify: config.verify,
        policy,
        limits: config.limits,
        audit: setup.audit,
        tls,
    };
    // Kept for `finish` (and so never dropped: see there).
    let _ = SERVED.set(keyring.clone());
    let checkpoints = config
        .audit
        .keyset
        .as_ref()
        .map(|name| {
            let every = interval("[audit] checkpoint_every", &config.audit.checkpoint_every)?;
            Ok::<_, String>(background::spawn_checkpoints(
                audit.clone(),
                keyring.clone(),
                name.clone(),
                every,
            ))
        })
        .transpose()?;
    let result = crate::server::serve(
        keyring.clone(),
        options,
        listener,
        socket::shutdown_signal(),
    )
    .await;
    background.abort();
    if let (Some(task), Some(name)) = (checkpoints, &config.audit.keyset) {
        task.abort();
        // The last lines of this run are sealed before custosd exits.
        if !audit
            .checkpoint(background::sealer(keyring.clone(), name.clone()))
            .await
        {
            tracing::error!("the shutdown audit checkpoint was not written");
        }
    }
    if socket_owned {
        let _ = std::fs::remove_file(&config.server.socket);
    }
    tracing::info!("custosd stopped");
    result
}
