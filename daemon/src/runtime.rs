//! Wiring: config to backends, keyring, audit log, listeners and server;
//! signals to shutdown; process hardening.

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
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
                        backends.insert(name.clone(), open_tpm(name, t, &config)?);
                    }
                }
            }
            let store: Box<dyn ManifestStore> = match &config.keyring.etcd {
                Some(etcd) if config.keyring.manifest == "etcd" => Box::new(open_etcd(etcd)?),
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

/// Connects to the etcd cluster named by `[keyring.etcd]`.
fn open_etcd(
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

/// Opens the config's backends and keyring without serving (for
/// `custosd bench` and tools). Blocking.
///
/// # Errors
/// As for starting the daemon.
pub fn open_keyring(config: &Path) -> Result<Keyring, String> {
    setup(&Mode::Config(config.to_path_buf())).map(|s| s.keyring)
}

#[cfg(feature = "tpm")]
fn open_tpm(
    name: &str,
    t: &crate::config::TpmConfig,
    config: &Config,
) -> Result<Arc<dyn KeyBackend>, String> {
    let mut profile = crate::backend::profile::TpmProfile::load(
        &t.profile,
        config.server.profiles_dir.as_deref(),
    )?;
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
fn open_tpm(
    name: &str,
    _t: &crate::config::TpmConfig,
    _config: &Config,
) -> Result<Arc<dyn KeyBackend>, String> {
    Err(format!(
        "backend {name}: this custosd was built without TPM support; build it with `cargo build --features custos-daemon/tpm` (needs libtss2-dev)"
    ))
}

/// A setting's interval (at least a second); errors name the setting.
fn interval(setting: &str, d: &str) -> Result<Duration, String> {
    parse_duration(d)
        .map(|s| Duration::from_secs(s.max(1).unsigned_abs()))
        .map_err(|e| format!("{setting}: {e}"))
}

/// Binds the Unix socket with the configured mode and group: a stale socket
/// file is replaced, a live one (another daemon answering) is an error, and
/// a world-writable socket directory is refused.
fn bind(server: &ServerConfig) -> Result<tokio::net::UnixListener, String> {
    let path = &server.socket;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another process is already serving on {}; stop it or choose another [server] socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let dir = std::fs::metadata(parent)
        .map_err(|e| format!("cannot inspect {}: {e}", parent.display()))?;
    let dir_mode = dir.permissions().mode();
    if dir_mode & 0o002 != 0 {
        return Err(format!(
            "the socket directory {} is world-writable; put the socket in a directory only custosd's user (and group) can write, e.g. /run/custos",
            parent.display()
        ));
    }
    let socket_gid = server.socket_group.as_deref().map(group_id).transpose()?;
    // Whoever can write the directory can replace the socket with their own.
    let own_uid = nix::unistd::geteuid().as_raw();
    if dir.uid() != 0 && dir.uid() != own_uid {
        return Err(format!(
            "the socket directory {} belongs to uid {}, not to custosd's user or root; \
             whoever owns it can replace the socket",
            parent.display(),
            dir.uid()
        ));
    }
    if dir_mode & 0o020 != 0 && socket_gid.map(|g| g.as_raw()) != Some(dir.gid()) {
        return Err(format!(
            "the socket directory {} is group-writable (gid {}); make it writable only by \
             custosd's user (chmod g-w), or by the [server] socket_group",
            parent.display(),
            dir.gid()
        ));
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    let mode = server.socket_mode()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:o} on {}: {e}", path.display()))?;
    if let (Some(group), Some(gid)) = (&server.socket_group, socket_gid) {
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| format!("cannot give {} to group {group}: {e}", path.display()))?;
    }
    Ok(listener)
}

/// A group name or number as a gid.
fn group_id(group: &str) -> Result<nix::unistd::Gid, String> {
    match group.parse::<u32>() {
        Ok(n) => Ok(nix::unistd::Gid::from_raw(n)),
        Err(_) => Ok(nix::unistd::Group::from_name(group)
            .map_err(|e| format!("[server] socket_group {group:?}: {e}"))?
            .ok_or_else(|| format!("[server] socket_group {group:?} does not exist"))?
            .gid),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining in-flight calls"),
        _ = int.recv() => tracing::info!("SIGINT: draining in-flight calls"),
    }
    crate::systemd::stopping();
}

/// Runs the rotation schedule and the refresh from a shared store.
fn spawn_background(
    keyring: Arc<Keyring>,
    refresh: Duration,
    tick: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let running: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
        let mut refresh_timer = tokio::time::interval(refresh);
        let mut tick_timer = tokio::time::interval(tick);
        refresh_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let changes = keyring.store_changes();
        // A keyset quarantined because its device did not show a key yet
        // (another daemon's new key, a replicating HSM cluster) is screened
        // again every 250 ms, not only at the next refresh.
        let mut recheck_timer = tokio::time::interval(Duration::from_millis(250));
        recheck_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let quarantined = !keyring.quarantined().is_empty();
            let changed = async {
                match &changes {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let schedule = tokio::select! {
                _ = refresh_timer.tick() => false,
                _ = tick_timer.tick() => true,
                () = changed => false,
                _ = recheck_timer.tick(), if quarantined => false,
            };
            let k = keyring.clone();
            match tokio::task::spawn_blocking(move || k.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "keyring refresh failed; retrying next tick")
                }
                Err(e) => tracing::error!(error = %e, "keyring refresh task panicked"),
            }
            if schedule {
                run_schedule(&keyring, &running).await;
            }
        }
    })
}

/// One schedule tick: each keyset on its own blocking thread, waited for up
/// to three of its backend's call deadlines. A keyset whose device hangs is
/// left to finish on its own (one thread per keyset at most, skipped while
/// its backend has a call past its deadline); the others go on.
async fn run_schedule(
    keyring: &Arc<Keyring>,
    running: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
) {
    let at = crate::keyring::now();
    let names: Vec<String> = keyring.snapshot().keysets.keys().cloned().collect();
    for name in names {
        let Some(guard) = keyring.guard_of(&name) else {
            continue;
        };
        if guard.overdue() > 0 {
            continue;
        }
        if !running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone())
        {
            continue;
        }
        let (k, r, n) = (keyring.clone(), running.clone(), name.clone());
        let task = tokio::task::spawn_blocking(move || {
            let out = k.tick_named(&n, at);
            r.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
            out
        });
        let wait = guard.timeout.saturating_mul(3);
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(keyset = %name, error = %e, "schedule task panicked"),
            Err(_) => tracing::warn!(keyset = %name, backend = %guard.name,
                "the schedule of this keyset waits on its device; the other keysets go on"),
        }
    }
}

/// Signs audit checkpoints with the active key of audit keyset `name`.
fn sealer(keyring: Arc<Keyring>, name: String) -> crate::audit::Sealer {
    Box::new(move |chain| {
        use crate::keyring::keyset::Purpose;
        let key = keyring
            .active_key(&name, Purpose::Audit)
            .map_err(|e| format!("[audit] keyset {name:?}: {e}"))?;
        let claims = crate::audit::chain::checkpoint_claims(chain, crate::keyring::now());
        let jws =
            crate::jose::jws::sign_jwt(&key, Some(crate::audit::chain::CHECKPOINT_TYP), &claims)
                .map_err(|e| format!("[audit] keyset {name:?}: signing the checkpoint: {e}"))?
                .token;
        Ok(crate::audit::Seal {
            keyset: name.clone(),
            kid: key.kid.clone(),
            jws,
        })
    })
}

/// Writes an audit checkpoint every `every` until aborted.
fn spawn_checkpoints(
    audit: Arc<Auditor>,
    keyring: Arc<Keyring>,
    name: String,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.tick().await;
        loop {
            timer.tick().await;
            if !audit
                .checkpoint(sealer(keyring.clone(), name.clone()))
                .await
            {
                tracing::error!(keyset = %name, "an audit checkpoint was not written");
            }
        }
    })
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
        None => bind(&config.server)?,
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
    let background = spawn_background(
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
            Ok::<_, String>(spawn_checkpoints(
                audit.clone(),
                keyring.clone(),
                name.clone(),
                every,
            ))
        })
        .transpose()?;
    let result = crate::server::serve(keyring.clone(), options, listener, shutdown_signal()).await;
    background.abort();
    if let (Some(task), Some(name)) = (checkpoints, &config.audit.keyset) {
        task.abort();
        // The last lines of this run are sealed before custosd exits.
        if !audit
            .checkpoint(sealer(keyring.clone(), name.clone()))
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
