//! The manifest in etcd, shared by every daemon of a deployment
//! (`[keyring] manifest = "etcd"`).
//!
//! Two keys under the prefix: `manifest` (the JSON manifest) and
//! `generation` (its generation, as text). A commit is one transaction:
//! *if `generation` is still the base, put both*; a lost race is
//! [`Commit::Conflict`] and the keyring reloads and retries. Every daemon
//! watches the prefix and refreshes on each change, so a rotation or a
//! disable on one daemon is in force on all of them as soon as the watch
//! delivers it (no polling; the `[keyring] refresh` timer stays as a
//! safety net). What is read passes the keyring's screening like a file
//! manifest: etcd alone cannot make Custos trust a key its device does not
//! hold.
//!
//! etcd-client is async; the keyring is blocking. The store runs its own
//! runtime on its own thread and the keyring's calls wait on a channel, so a
//! call from any thread (async worker or blocking) is safe.

use super::manifest::{self, Manifest};
use super::store::{Commit, ManifestStore};
use crate::error::{Error, Outage, Result};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp, WatchOptions};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Duration;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub(crate) struct EtcdSettings {
    /// Client URLs, e.g. `http://10.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix (`/custos/`).
    pub prefix: String,
    /// Deadline of one request.
    pub timeout: Duration,
    /// User and password, when etcd has authentication on.
    pub user: Option<(String, String)>,
    /// TLS to etcd.
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: the CA of its certificates, and optionally a client
/// certificate and key (PEM).
#[derive(Debug, Clone)]
pub(crate) struct EtcdTls {
    /// PEM CA.
    pub ca: Vec<u8>,
    /// PEM client certificate and key, for TLS client authentication.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

enum Request {
    Load(SyncSender<Result<Manifest>>),
    /// base generation, next generation, the manifest.
    Commit(u64, u64, Vec<u8>, SyncSender<Result<Commit>>),
}

/// The etcd-backed store.
pub(crate) struct EtcdStore {
    /// To the client thread (a tokio channel: sending needs no runtime).
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    settings: EtcdSettings,
    /// Unix time of the last answer from etcd (a read, a write, a watch event
    /// or progress notification).
    last_contact: Arc<AtomicI64>,
    changed: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.settings.endpoints)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(settings: &EtcdSettings, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(Outage::KeyringStore(format!(
        "the keyring store (etcd at {}) {what}: {e}; signing goes on with the last manifest, \
         key administration waits until etcd answers",
        settings.endpoints.join(",")
    )))
}

impl EtcdStore {
    /// Connects (lazily: etcd may come up later) and starts the watch.
    ///
    /// # Errors
    /// A bad endpoint or TLS setting, or a runtime that cannot start.
    pub(crate) fn connect(settings: EtcdSettings) -> Result<Self> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Request>();
        let last_contact = Arc::new(AtomicI64::new(0));
        let changed = Arc::new(tokio::sync::Notify::new());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("etcd client runtime: {e}")))?;
        let mut options = ConnectOptions::new()
            .with_timeout(settings.timeout)
            .with_connect_timeout(settings.timeout)
            .with_keep_alive(Duration::from_secs(2), settings.timeout)
            .with_keep_alive_while_idle(true);
        if let Some((u, p)) = &settings.user {
            options = options.with_user(u.clone(), p.clone());
        }
        if let Some(t) = &settings.tls {
            let mut tls = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(t.ca.clone()));
            if let Some((cert, key)) = &t.identity {
                tls = tls.identity(etcd_client::Identity::from_pem(cert.clone(), key.clone()));
            }
            options = options.with_tls(tls);
        }
        let client = rt
            .block_on(Client::connect(settings.endpoints.clone(), Some(options)))
            .map_err(|e| unavailable(&settings, "cannot be reached", e))?;
        let s = settings.clone();
        let (contact, notify) = (last_contact.clone(), changed.clone());
        std::thread::Builder::new()
            .name("custos-etcd".into())
            .spawn(move || rt.block_on(serve(client, s, rx, contact, notify)))
            .map_err(|e| Error::Internal(format!("etcd client thread: {e}")))?;
        Ok(Self {
            requests: tx,
            settings,
            last_contact,
            changed,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(SyncSender<Result<T>>) -> Request) -> Result<T> {
        let (tx, rx) = sync_channel(1);
        self.requests
            .send(make(tx))
            .map_err(|_| Error::Internal("the etcd client thread stopped".into()))?;
        // The client retries within 3 request deadlines; wait a little longer.
        rx.recv_timeout(self.settings.timeout.saturating_mul(4))
            .map_err(|_| unavailable(&self.settings, "did not answer", "timed out"))?
    }
}

fn key(settings: &EtcdSettings, name: &str) -> String {
    format!("{}{name}", settings.prefix)
}

/// The client thread: requests in order, and the watch beside them.
async fn serve(
    client: Client,
    settings: EtcdSettings,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>,
    contact: Arc<AtomicI64>,
    changed: Arc<tokio::sync::Notify>,
) {
    tokio::spawn(watch(
        client.clone(),
        settings.clone(),
        contact.clone(),
        changed,
    ));
    tokio::spawn(heartbeat(client.clone(), settings.clone(), contact.clone()));
    while let Some(request) = requests.recv().await {
        match request {
            Request::Load(reply) => {
                let r = retry(&settings, || load(&client, &settings)).await;
                if r.is_ok() {
                    contact.store(crate::keyring::now(), Ordering::Release);
                }
                let _ = reply.send(r);
            }
            Request::Commit(base, next, bytes, reply) => {
                let r = retry(&settings, || {
                    commit(&client, &settings, base, next, bytes.clone())
                })
                .await;
                if r.is_ok() {
                    contact.store(crate::keyring::now(), Ordering::Release);
                }
                let _ = reply.send(r);
            }
        }
    }
}

/// Up to three tries, each within the request deadline: one stopped member
/// of a cluster costs a retry, not a failed call.
async fn retry<T, F, Fut>(settings: &EtcdSettings, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, String>>,
{
    let mut last = String::new();
    for _ in 0..3 {
        match tokio::time::timeout(settings.timeout, f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {} ms", settings.timeout.as_millis()),
        }
    }
    Err(unavailable(settings, "failed", last))
}

async fn load(client: &Client, settings: &EtcdSettings) -> std::result::Result<Manifest, String> {
    let mut kv = client.kv_client();
    let name = key(settings, "manifest");
    let resp = kv
        .get(name.clone(), None)
        .await
        .map_err(|e| e.to_string())?;
    match resp.kvs().first() {
        None => Ok(manifest::empty()),
        Some(kv) => manifest::parse(kv.value(), &format!("etcd:{name}")).map_err(|e| e.to_string()),
    }
}

async fn commit(
    client: &Client,
    settings: &EtcdSettings,
    base: u64,
    next: u64,
    bytes: Vec<u8>,
) -> std::result::Result<Commit, String> {
    let mut kv = client.kv_client();
    let generation = key(settings, "generation");
    let guard = if base == 0 {
        Compare::version(generation.clone(), CompareOp::Equal, 0)
    } else {
        Compare::value(generation.clone(), CompareOp::Equal, base.to_string())
    };
    let txn = Txn::new().when([guard]).and_then([
        TxnOp::put(key(settings, "manifest"), bytes, None),
        TxnOp::put(generation, next.to_string(), None),
    ]);
    let resp = kv.txn(txn).await.map_err(|e| e.to_string())?;
    Ok(if resp.succeeded() {
        Commit::Done
    } else {
        Commit::Conflict
    })
}

/// Asks etcd for the generation every second, so `last_contact` says
/// whether the store answers even when nothing changes.
async fn heartbeat(client: Client, settings: EtcdSettings, contact: Arc<AtomicI64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut kv = client.kv_client();
        let asked = kv.get(key(&settings, "generation"), None);
        if let Ok(Ok(_)) = tokio::time::timeout(settings.timeout, asked).await {
            contact.store(crate::keyring::now(), Ordering::Release);
        }
    }
}

/// Watches the prefix and wakes the keyring on each change; re-established
/// with backoff when etcd goes away (a missed event is caught by the
/// refresh that follows the reconnection).
async fn watch(
    client: Client,
    settings: EtcdSettings,
    contact: Arc<AtomicI64>,
    changed: Arc<tokio::sync::Notify>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut w = client.watch_client();
        let opened = w
            .watch(
                settings.prefix.clone(),
                Some(WatchOptions::new().with_prefix().with_progress_notify()),
            )
            .await;
        match opened {
            Ok(mut stream) => {
                // A fresh watch may have missed changes: refresh now.
                changed.notify_one();
                backoff = Duration::from_millis(100);
                loop {
                    match stream.message().await {
                        Ok(Some(resp)) => {
                            contact.store(crate::keyring::now(), Ordering::Release);
                            if !resp.events().is_empty() {
                                changed.notify_one();
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "etcd watch broken; re-establishing");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch etcd; retrying");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl ManifestStore for EtcdStore {
    fn load(&self) -> Result<Manifest> {
        self.ask(Request::Load)
    }

    fn commit(&self, base: u64, next: &Manifest) -> Result<Commit> {
        let bytes = manifest::to_bytes(next)?;
        let generation = next.generation;
        self.ask(|reply| Request::Commit(base, generation, bytes, reply))
    }

    fn describe(&self) -> String {
        format!(
            "etcd:{}{}manifest",
            self.settings.endpoints.join(","),
            self.settings.prefix
        )
    }

    fn changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.changed.clone())
    }

    fn last_contact(&self) -> Option<i64> {
        Some(self.last_contact.load(Ordering::Acquire))
    }
}
