//! The audit log: one JSON line per sign, decrypt, verification failure,
//! admin operation and denial. It records who (caller identity), what
//! (operation, keyset, kid, purpose), the SHA-256 of the signing input (never
//! the claims themselves) and the outcome.
//!
//! Lines are written by one writer thread fed through a bounded queue, so a
//! slow or stuck disk never blocks the async workers that serve requests; the
//! writer takes every line queued so far in one write (and one fsync, with
//! `fsync = true`). Lines are hash-chained and sealed by signed checkpoints
//! ([`chain`]). With `required = true` (the default) an operation waits
//! until its line is written and fails when the queue is full, the write
//! fails, or the line is not written within `write_timeout`: nothing is
//! signed that is not recorded.

pub(crate) mod chain;
mod sink;

use sink::{open_file, put, rfc3339_now, Sink};

use crate::config::AuditConfig;
use crate::error::{Error, Outage, Result};
use chain::Chain;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::time::Duration;

/// Lines taken by the writer in one write at most.
const GROUP: usize = 256;

/// Who waits for a line to be written.
enum Done {
    Async(tokio::sync::oneshot::Sender<bool>),
    Blocking(SyncSender<bool>),
}

/// What a checkpoint's signer returns: the audit keyset, the kid that
/// signed, and the compact JWS over [`chain::checkpoint_claims`].
#[derive(Debug, Clone)]
pub struct Seal {
    /// The audit keyset.
    pub keyset: String,
    /// The key version that signed.
    pub kid: String,
    /// The JWS.
    pub jws: String,
}

/// Signs a checkpoint over the chain as it stands (run on the writer
/// thread, in order with the lines).
pub(crate) type Sealer = Box<dyn FnOnce(&Chain) -> std::result::Result<Seal, String> + Send>;

/// One or more lines for the writer thread.
struct Job {
    text: String,
    done: Option<Done>,
    /// Reopen the file (after the lines queued before it are written).
    reopen: bool,
    /// Write a checkpoint (after the lines queued before it).
    seal: Option<Sealer>,
}

impl Job {
    fn lines(text: String, done: Option<Done>) -> Self {
        Self {
            text,
            done,
            reopen: false,
            seal: None,
        }
    }

    /// A job that must not be grouped with lines: a reopen or a checkpoint.
    fn is_control(&self) -> bool {
        self.reopen || self.seal.is_some()
    }
}

/// Queues audit lines for the writer thread.
pub struct Auditor {
    queue: SyncSender<Job>,
    capacity: usize,
    required: bool,
    fsync: bool,
    write_timeout: Duration,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("fsync", &self.fsync)
            .field("required", &self.required)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// What happened, for one audit line.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// The operation (`sign_id_token`, `rotate`, `verify_access_token`, ...).
    pub operation: &'a str,
    /// The keyset, when there is one.
    pub keyset: Option<&'a str>,
    /// The key version, when there is one.
    pub kid: Option<&'a str>,
    /// The purpose signed for.
    pub purpose: Option<&'a str>,
    /// SHA-256 (hex) of the JWS signing input.
    pub input_sha256: Option<String>,
    /// `ok`, `denied`, `invalid` or `error`.
    pub outcome: &'a str,
    /// A reason code or message (never secrets or claims).
    pub detail: Option<&'a str>,
}

impl Auditor {
    /// Opens the configured sink (appending to a file, created with mode
    /// 0600) and starts the writer thread.
    ///
    /// # Errors
    /// A message naming the file when it cannot be opened.
    pub fn open(config: &AuditConfig) -> std::result::Result<Self, String> {
        let datagram = config.datagram_socket()?;
        let sink = if let Some(socket) = datagram {
            let path = std::path::PathBuf::from(&socket);
            let s = std::os::unix::net::UnixDatagram::unbound()
                .map_err(|e| format!("[audit] socket: {e}"))?;
            s.set_write_timeout(Some(std::time::Duration::from_secs(1)))
                .map_err(|e| format!("[audit] socket: {e}"))?;
            // Checked now, so a wrong path fails at start, not at the first line.
            s.connect(&path)
                .map_err(|e| format!("[audit] sink {}: cannot reach {socket}: {e}", config.sink))?;
            if config.sink == "journal" {
                Sink::Journal(s, path)
            } else {
                Sink::Syslog(s, path)
            }
        } else if config.file == "stdout" {
            Sink::Stdout
        } else {
            let path = std::path::PathBuf::from(&config.file);
            let f = open_file(&path)
                .map_err(|e| format!("[audit] cannot open {}: {e}", config.file))?;
            Sink::File(path, f)
        };
        let write_timeout = config.write_timeout()?;
        let capacity = config.queue_lines.max(1);
        let (queue, lines) = sync_channel::<Job>(capacity);
        let fsync = config.fsync;
        let file = match &sink {
            Sink::File(path, _) => Some(path.clone()),
            _ => None,
        };
        let state = config.chain_state.clone();
        let chain = Chain::resume(file.as_deref(), state.as_deref());
        std::thread::Builder::new()
            .name("custos-audit".into())
            .spawn(move || writer(sink, fsync, chain, state, &lines))
            .map_err(|e| format!("[audit] cannot start the writer thread: {e}"))?;
        Ok(Self {
            queue,
            capacity,
            required: config.required,
            fsync,
            write_timeout,
            dropped: AtomicU64::new(0),
        })
    }

    /// Writes one line for `caller` (a JSON object describing the identity).
    ///
    /// # Errors
    /// `Unavailable` when the log is required and the line could not be
    /// written (queue full, write failed, or not written in time).
    pub async fn record(&self, caller: Value, event: &Event<'_>) -> Result<()> {
        self.write(line(&caller, event)).await
    }

    /// Writes one line per event for the same caller, in one write (a
    /// batch's items): all are recorded, or, when the log is required and
    /// cannot be written, the call fails as a whole.
    ///
    /// # Errors
    /// As [`Auditor::record`].
    pub async fn record_all(&self, caller: &Value, events: &[Event<'_>]) -> Result<()> {
        let text: String = events.iter().map(|e| line(caller, e)).collect();
        self.write(text).await
    }

    /// [`Auditor::record`] for blocking threads (the keyring, tools).
    ///
    /// # Errors
    /// As [`Auditor::record`].
    pub fn record_blocking(&self, caller: Value, event: &Event<'_>) -> Result<()> {
        let text = line(&caller, event);
        if !self.required {
            self.enqueue(text, None)?;
            return Ok(());
        }
        let (tx, rx) = sync_channel(1);
        self.enqueue(text, Some(Done::Blocking(tx)))?;
        match rx.recv_timeout(self.write_timeout) {
            Ok(true) => Ok(()),
            _ => Err(self.not_written()),
        }
    }

    /// Reopens the audit file (SIGHUP, for logrotate) once the lines queued
    /// so far are written; `false` when it could not be reopened (the old
    /// file stays in use).
    pub async fn reopen(&self) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            reopen: true,
            ..Job::lines(String::new(), Some(Done::Async(tx)))
        };
        if self.queue.try_send(job).is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(self.write_timeout, rx).await,
            Ok(Ok(true))
        )
    }

    /// Writes a checkpoint signed by `seal` after the lines queued so far;
    /// `false` when it could not be signed or written (a line saying why is
    /// written instead when the log can be written at all).
    pub async fn checkpoint(&self, seal: Sealer) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            seal: Some(seal),
            ..Job::lines(String::new(), Some(Done::Async(tx)))
        };
        if self.queue.try_send(job).is_err() {
            return false;
        }
        // Signing may wait on the device: its own call deadline applies there.
        matches!(
            tokio::time::timeout(self.write_timeout.saturating_mul(3), rx).await,
            Ok(Ok(true))
        )
    }

    /// Queues a line without waiting for it (denials: the operation is
    /// refused whether or not its line is written).
    pub fn record_nowait(&self, caller: Value, event: &Event<'_>) {
        let _ = self.enqueue(line(&caller, event), None);
    }

    async fn write(&self, text: String) -> Result<()> {
        if !self.required {
            self.enqueue(text, None)?;
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.enqueue(text, Some(Done::Async(tx)))?;
        match tokio::time::timeout(self.write_timeout, rx).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(self.not_written()),
        }
    }

    /// Hands a line to the writer. A full queue fails a required line and
    /// drops (and counts) an optional one.
    fn enqueue(&self, text: String, done: Option<Done>) -> Result<()> {
        match self.queue.try_send(Job::lines(text, done)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) if self.required => {
                crate::metrics::audit_failure();
                tracing::error!(
                    capacity = self.capacity,
                    "audit queue full; refusing the operation"
                );
                Err(Error::Unavailable(Outage::AuditLog(format!(
                    "the audit log is not keeping up (its queue of {} lines is full); the operation \
                     was not performed; check the audit file's disk",
                    self.capacity
                ))))
            }
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::error!(
                        dropped = n,
                        "audit queue full; lines dropped (audit not required)"
                    );
                }
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(self.not_written()),
        }
    }

    fn not_written(&self) -> Error {
        crate::metrics::audit_failure();
        Error::Unavailable(Outage::AuditLog(format!(
            "the audit log could not be written within {} s; the operation was not performed",
            self.write_timeout.as_secs()
        )))
    }
}

/// The writer's state: where lines go and the chain over them.
struct Writer {
    sink: Sink,
    fsync: bool,
    chain: Chain,
    state: Option<std::path::PathBuf>,
}

impl Writer {
    /// Chains and writes `raw` lines; the chain moves on only when they were written.
    fn write(&mut self, raw: &str) -> std::io::Result<()> {
        let mut next = self.chain.clone();
        let text = next.link(raw);
        put(&mut self.sink, self.fsync, &text)?;
        self.chain = next;
        Ok(())
    }

    /// A reopen or a checkpoint.
    fn control(&mut self, job: Job) {
        if job.reopen {
            let ok = self.sink.reopen();
            tell(job.done, ok);
            return;
        }
        let Some(seal) = job.seal else {
            return tell(job.done, true);
        };
        let sealed = self.chain.clone();
        let (line, signed) = match seal(&sealed) {
            Ok(s) => (checkpoint_line(&s, &sealed), true),
            Err(why) => {
                tracing::error!(error = %why, "the audit checkpoint could not be signed");
                (checkpoint_failed_line(&why), false)
            }
        };
        let written = self.write(&line);
        if let Err(e) = &written {
            crate::metrics::audit_failure();
            tracing::error!(error = %e, "audit checkpoint write failed");
        } else if let Some(state) = &self.state {
            self.chain.save(state);
        }
        tell(job.done, signed && written.is_ok());
    }
}

/// The writer thread: takes what is queued, writes it in one go, tells the
/// waiters. Ends when the auditor is dropped.
fn writer(
    sink: Sink,
    fsync: bool,
    chain: Chain,
    state: Option<std::path::PathBuf>,
    lines: &std::sync::mpsc::Receiver<Job>,
) {
    let mut w = Writer {
        sink,
        fsync,
        chain,
        state,
    };
    while let Ok(first) = lines.recv() {
        if first.is_control() {
            w.control(first);
            continue;
        }
        let mut jobs = vec![first];
        let mut control = None;
        while jobs.len() < GROUP {
            match lines.try_recv() {
                Ok(j) if j.is_control() => {
                    control = Some(j);
                    break;
                }
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let text: String = jobs.iter().map(|j| j.text.as_str()).collect();
        let written = w.write(&text);
        if let Err(e) = &written {
            crate::metrics::audit_failure();
            tracing::error!(error = %e, lines = jobs.len(), "audit log write failed");
        }
        for j in jobs {
            tell(j.done, written.is_ok());
        }
        if let Some(j) = control {
            w.control(j);
        }
    }
}

/// A checkpoint line: the seal over every line up to `sealed`.
fn checkpoint_line(seal: &Seal, sealed: &Chain) -> String {
    let mut line = Map::new();
    line.insert("time".into(), json!(rfc3339_now()));
    line.insert("caller".into(), json!({"custosd": "audit"}));
    line.insert("operation".into(), json!("audit_checkpoint"));
    line.insert("keyset".into(), json!(seal.keyset));
    line.insert("kid".into(), json!(seal.kid));
    line.insert(
        "detail".into(),
        json!(format!("seals every line up to seq {}", sealed.seq)),
    );
    line.insert("jws".into(), json!(seal.jws));
    line.insert("outcome".into(), json!("ok"));
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    text
}

/// The line written when a checkpoint could not be signed.
fn checkpoint_failed_line(why: &str) -> String {
    let mut line = Map::new();
    line.insert("time".into(), json!(rfc3339_now()));
    line.insert("caller".into(), json!({"custosd": "audit"}));
    line.insert("operation".into(), json!("audit_checkpoint"));
    line.insert("detail".into(), json!(why));
    line.insert("outcome".into(), json!("error"));
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    text
}

/// Tells whoever waits for a job how it went.
fn tell(done: Option<Done>, ok: bool) {
    match done {
        Some(Done::Async(tx)) => {
            let _ = tx.send(ok);
        }
        Some(Done::Blocking(tx)) => {
            let _ = tx.try_send(ok);
        }
        None => {}
    }
}

/// Appends `,"name":value` (a JSON string) to `out`.
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// One audit line (JSON and a newline), written straight into one buffer:
/// `time`, `caller`, `operation`, then `keyset`, `kid`, `purpose`, `detail`
/// and `input_sha256` when present, and `outcome`.
fn line(caller: &Value, event: &Event<'_>) -> String {
    crate::metrics::operation(event.operation, event.keyset, event.outcome);
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(rfc3339_now().as_bytes());
    out.extend_from_slice(b"\",\"caller\":");
    let _ = serde_json::to_writer(&mut out, caller);
    field(&mut out, "operation", event.operation);
    for (k, v) in [
        ("keyset", event.keyset),
        ("kid", event.kid),
        ("purpose", event.purpose),
        ("detail", event.detail),
        ("input_sha256", event.input_sha256.as_deref()),
    ] {
        if let Some(v) = v {
            field(&mut out, k, v);
        }
    }
    field(&mut out, "outcome", event.outcome);
    out.extend_from_slice(b"}\n");
    // serde_json writes UTF-8 and every literal above is ASCII.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_json_line_per_event_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let a = Auditor::open(&AuditConfig {
            file: path.display().to_string(),
            fsync: true,
            required: true,
            ..AuditConfig::default()
        })
        .unwrap();
        a.record_blocking(
            json!({"uid": 5}),
            &Event {
                operation: "sign_jwt",
                keyset: Some("k"),
                outcome: "ok",
                ..Event::default()
            },
        )
        .unwrap();
        a.record_blocking(
            json!({"uid": 6}),
            &Event {
                operation: "admin",
                outcome: "denied",
                ..Event::default()
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["keyset"], "k");
        assert_eq!(lines[1]["outcome"], "denied");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn a_line_is_one_json_object_in_a_fixed_order_with_escaping() {
        let text = line(
            &json!({"uid": 5, "gid": 6, "pid": null}),
            &Event {
                operation: "sign_jwt",
                keyset: Some("k\"1\n"),
                kid: Some("kid-1"),
                purpose: Some("generic"),
                input_sha256: Some("ab".repeat(32)),
                outcome: "ok",
                detail: None,
            },
        );
        assert!(
            text.ends_with("}\n") && text.matches('\n').count() == 1,
            "{text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["keyset"], "k\"1\n");
        assert_eq!(v["caller"]["uid"], 5);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "time",
                "caller",
                "operation",
                "keyset",
                "kid",
                "purpose",
                "input_sha256",
                "outcome"
            ]
        );
    }

    #[test]
    fn rfc3339_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20"));
    }
}
