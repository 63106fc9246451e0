//! Wiring: config to backends, keyring, socket and server; signals to shutdown.

use crate::backend::pkcs11::Pkcs11Backend;
use crate::backend::profile::HsmProfile;
use crate::backend::software::SoftwareBackend;
use crate::backend::KeyBackend;
use crate::config::{BackendConfig, Config, VerifyConfig};
use crate::keyring::policy::parse_duration;
use crate::keyring::store::{FileStore, ManifestStore};
use crate::keyring::token_store::TokenStore;
use crate::keyring::Keyring;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Everything the server needs, built from the mode.
struct Setup {
    socket: PathBuf,
    keyring: Keyring,
    verify: VerifyConfig,
    refresh: std::time::Duration,
    tick: std::time::Duration,
}

fn setup(mode: &Mode) -> Result<Setup, String> {
    match mode {
        Mode::Dev => {
            eprintln!("{DEV_BANNER}");
            let state = PathBuf::from("custos-dev");
            let dev: Arc<dyn KeyBackend> =
                Arc::new(SoftwareBackend::new(state.join("dev-keys")).map_err(|e| e.to_string())?);
            let keyring = Keyring::open(
                Box::new(FileStore::new(state)),
                BTreeMap::from([("dev".to_string(), dev)]),
            )
            .map_err(|e| e.to_string())?;
            Ok(Setup {
                socket: PathBuf::from("custos-dev.sock"),
                keyring,
                verify: VerifyConfig::default(),
                refresh: std::time::Duration::from_secs(10),
                tick: std::time::Duration::from_secs(10),
            })
        }
        Mode::Config(path) => {
            let config = Config::load(path)?;
            let mut backends: BTreeMap<String, Arc<dyn KeyBackend>> = BTreeMap::new();
            let mut pkcs11: BTreeMap<String, Arc<Pkcs11Backend>> = BTreeMap::new();
            for (name, b) in &config.backends {
                match b {
                    BackendConfig::Pkcs11(p) => {
                        let profile =
                            HsmProfile::load(&p.profile, config.server.profiles_dir.as_deref())?;
                        let pin = Secret::from_source(&p.pin)
                            .map_err(|e| format!("backend {name}: {e}"))?;
                        let backend = Arc::new(
                            Pkcs11Backend::open(p, profile, pin)
                                .map_err(|e| format!("backend {name}: {e}"))?,
                        );
                        pkcs11.insert(name.clone(), backend.clone());
                        backends.insert(name.clone(), backend);
                    }
                }
            }
            let store: Box<dyn ManifestStore> = match config.keyring.manifest.strip_prefix("token:")
            {
                Some(name) => {
                    let backend = pkcs11.get(name).cloned().ok_or_else(|| {
                        format!("[keyring] manifest names backend {name:?}, which is not pkcs11")
                    })?;
                    Box::new(TokenStore::new(backend, name.to_string()))
                }
                None => Box::new(FileStore::new(config.server.state_dir.clone())),
            };
            let keyring = Keyring::open(store, backends).map_err(|e| e.to_string())?;
            let secs = |d: &str| {
                parse_duration(d)
                    .map(|s| std::time::Duration::from_secs(s.max(1).unsigned_abs()))
                    .map_err(|e| format!("[keyring] {e}"))
            };
            Ok(Setup {
                socket: config.server.socket.clone(),
                keyring,
                verify: config.verify,
                refresh: secs(&config.keyring.refresh)?,
                tick: secs(&config.keyring.schedule_tick)?,
            })
        }
    }
}

/// Binds the Unix socket with mode 0660: a stale socket file is replaced,
/// a live one (another daemon answering) is an error.
fn bind(path: &Path) -> Result<tokio::net::UnixListener, String> {
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
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set mode 0660 on {}: {e}", path.display()))?;
    Ok(listener)
}

/// Runs the rotation schedule and the refresh from a shared store.
fn spawn_background(
    keyring: Arc<Keyring>,
    refresh: std::time::Duration,
    tick: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut refresh_timer = tokio::time::interval(refresh);
        let mut tick_timer = tokio::time::interval(tick);
        refresh_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let schedule = tokio::select! {
                _ = refresh_timer.tick() => false,
                _ = tick_timer.tick() => true,
            };
            let k = keyring.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                if schedule {
                    k.refresh()
                        .and_then(|_| k.tick(crate::keyring::now()))
                        .map(|_| ())
                } else {
                    k.refresh().map(|_| ())
                }
            })
            .await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "keyring background work failed; retrying next tick")
                }
                Err(e) => tracing::error!(error = %e, "keyring background task panicked"),
            }
        }
    })
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
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// A message for the operator: config, device, keyring or socket problems.
pub async fn run(mode: Mode) -> Result<(), String> {
    let setup = tokio::task::spawn_blocking(move || setup(&mode))
        .await
        .map_err(|e| format!("start-up task failed: {e}"))??;
    let listener = bind(&setup.socket)?;
    let keyring = Arc::new(setup.keyring);
    tracing::info!(
        socket = %setup.socket.display(),
        keysets = keyring.snapshot().keysets.len(),
        manifest = %keyring.store_description(),
        backends = ?keyring.backend_names(),
        "custosd ready"
    );
    let background = spawn_background(keyring.clone(), setup.refresh, setup.tick);
    let result = crate::server::serve(keyring, setup.verify, listener, shutdown_signal()).await;
    background.abort();
    let _ = std::fs::remove_file(&setup.socket);
    tracing::info!("custosd stopped");
    result
}
