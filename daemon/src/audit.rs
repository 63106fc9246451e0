//! The audit log: one JSON line per sign, decrypt, verification failure,
//! admin operation and denial. It records who (caller identity), what
//! (operation, keyset, kid, purpose), the SHA-256 of the signing input (never
//! the claims themselves) and the outcome.
//!
//! With `required = true` (the default) an operation whose audit line cannot
//! be written fails: nothing is signed that is not recorded.

use crate::config::AuditConfig;
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::sync::Mutex;

enum Sink {
    Stdout,
    File(std::fs::File),
}

/// Writes audit lines.
pub struct Auditor {
    sink: Mutex<Sink>,
    fsync: bool,
    required: bool,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("fsync", &self.fsync)
            .field("required", &self.required)
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
    /// Opens the configured sink (appending to a file, created with mode 0600).
    ///
    /// # Errors
    /// A message naming the file when it cannot be opened.
    pub fn open(config: &AuditConfig) -> std::result::Result<Self, String> {
        let sink = if config.file == "stdout" {
            Sink::Stdout
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&config.file)
                .map_err(|e| format!("[audit] cannot open {}: {e}", config.file))?;
            Sink::File(f)
        };
        Ok(Self {
            sink: Mutex::new(sink),
            fsync: config.fsync,
            required: config.required,
        })
    }

    /// Writes one line for `caller` (a JSON object describing the identity).
    ///
    /// # Errors
    /// `Unavailable` when the line cannot be written and the log is required.
    pub fn record(&self, caller: Value, event: &Event<'_>) -> Result<()> {
        let text = line(caller, event);
        self.write(&text)
    }

    /// Writes one line per event for the same caller, in one write (a
    /// batch's items): all are recorded, or, when the log is required and
    /// cannot be written, the call fails as a whole.
    ///
    /// # Errors
    /// As [`Auditor::record`].
    pub fn record_all(&self, caller: &Value, events: &[Event<'_>]) -> Result<()> {
        let text: String = events.iter().map(|e| line(caller.clone(), e)).collect();
        self.write(&text)
    }

    fn write(&self, text: &str) -> Result<()> {
        let written = {
            let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *sink {
                Sink::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(text.as_bytes()).and_then(|()| out.flush())
                }
                Sink::File(f) => f.write_all(text.as_bytes()).and_then(|()| {
                    if self.fsync {
                        f.sync_data()
                    } else {
                        Ok(())
                    }
                }),
            }
        };
        match written {
            Ok(()) => Ok(()),
            Err(e) if self.required => {
                tracing::error!(error = %e, "audit log write failed; refusing the operation");
                Err(Error::Unavailable(
                    "the audit log cannot be written; the operation was not performed".into(),
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "audit log write failed (audit not required)");
                Ok(())
            }
        }
    }
}

/// One audit line (JSON and a newline).
fn line(caller: Value, event: &Event<'_>) -> String {
    let mut line = Map::new();
    line.insert("time".into(), json!(rfc3339_now()));
    line.insert("caller".into(), caller);
    line.insert("operation".into(), json!(event.operation));
    for (k, v) in [
        ("keyset", event.keyset),
        ("kid", event.kid),
        ("purpose", event.purpose),
        ("detail", event.detail),
    ] {
        if let Some(v) = v {
            line.insert(k.into(), json!(v));
        }
    }
    if let Some(h) = &event.input_sha256 {
        line.insert("input_sha256".into(), json!(h));
    }
    line.insert("outcome".into(), json!(event.outcome));
    let mut text = Value::Object(line).to_string();
    text.push('\n');
    text
}

/// The current UTC time as RFC 3339 with milliseconds.
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
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
        })
        .unwrap();
        a.record(
            json!({"uid": 5}),
            &Event {
                operation: "sign_jwt",
                keyset: Some("k"),
                outcome: "ok",
                ..Event::default()
            },
        )
        .unwrap();
        a.record(
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
    fn rfc3339_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20"));
    }
}
