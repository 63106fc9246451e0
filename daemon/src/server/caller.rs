//! Who is calling, and may they? Every request is identified (Unix peer
//! credentials from the kernel, or the mTLS client certificate), rate
//! limited, and checked against the `[[access]]` policy before anything
//! touches a key. Denials are audited.
//!
//! Policy: no caller is trusted implicitly for keys. The daemon's own uid
//! and root may do what `[server] owner_operations` lists (default `manage`,
//! `destroy`, `jwks`: they own the daemon's state anyway), and nothing else
//! unless a rule grants it; signing, decryption and verification come only
//! from `[[access]]` rules naming the caller (by uid, gid or certificate
//! SAN), the operation, and a glob matching the keyset. `admin` in a rule
//! or list means both `manage` and `destroy`.
use super::status::to_status;
use crate::audit::{Auditor, Event};
use crate::config::{AccessRule, LimitsConfig};
use crate::error::{Error, Exhausted};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Status};

/// A caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A local process on the Unix socket.
    Unix {
        /// Peer uid.
        uid: u32,
        /// Peer gid.
        gid: u32,
        /// Peer pid, when the kernel reports it.
        pid: Option<i32>,
    },
    /// A remote client with a verified certificate.
    Tls {
        /// Subject alternative names (DNS names and URIs).
        sans: Vec<String>,
        /// The certificate subject.
        subject: String,
    },
}

impl Caller {
    /// The identity in a verified client certificate (DER): its DNS and URI
    /// subject alternative names and its subject. `None` when it does not
    /// parse (rustls verified it, so this means a certificate x509-parser
    /// cannot read).
    pub(crate) fn from_certificate(der: &[u8]) -> Option<Caller> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                    x509_parser::extensions::GeneralName::URI(u) => sans.push(u.to_string()),
                    _ => {}
                }
            }
        }
        Some(Caller::Tls {
            sans,
            subject: cert.subject().to_string(),
        })
    }

    /// The identity as a JSON object, for audit lines.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Caller::Unix { uid, gid, pid } => json!({"uid": uid, "gid": gid, "pid": pid}),
            Caller::Tls { sans, subject } => json!({"tls_san": sans, "subject": subject}),
        }
    }

    /// A stable key for this identity (rate-limit buckets, replay partitions).
    pub(crate) fn key(&self) -> String {
        match self {
            Caller::Unix { uid, .. } => format!("uid:{uid}"),
            Caller::Tls { sans, subject } => format!("tls:{}:{subject}", sans.join(",")),
        }
    }
}

impl Caller {
    /// Who the caller is as a person or service, for dual control: the uid,
    /// or the certificate's SANs (never the pid: the same person calling
    /// twice is one approver).
    pub(crate) fn identity(&self) -> String {
        match self {
            Caller::Unix { uid, .. } => format!("uid:{uid}"),
            Caller::Tls { sans, subject } if sans.is_empty() => format!("tls-subject:{subject}"),
            Caller::Tls { sans, .. } => format!("tls-san:{}", sans.join(",")),
        }
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Unix { uid, gid, pid } => {
                write!(f, "uid={uid} gid={gid}")?;
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
            Caller::Tls { sans, subject } => {
                write!(f, "tls san={} subject={subject}", sans.join(","))
            }
        }
    }
}

/// `*` and `?` glob matching.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a list of operation names grants `operation` (`admin` grants
/// `manage` and `destroy`).
fn grants(list: &[String], operation: &str) -> bool {
    list.iter()
        .any(|o| o == operation || (o == "admin" && matches!(operation, "manage" | "destroy")))
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Events refused since the last one let through (failure lines only).
    refused: u64,
}

/// Token buckets per caller key.
#[derive(Debug, Default)]
struct Buckets(Mutex<HashMap<String, Bucket>>);

impl Buckets {
    /// Takes one token from `key`'s bucket: `Ok(refused since the last
    /// token)` when there was one, `Err(wait)` when it is empty, `wait`
    /// being the time until the next token (a rate of 0 never refills:
    /// `Duration::MAX`).
    fn take(&self, key: String, rate: u32, burst: u32) -> Result<u64, Duration> {
        let rate = f64::from(rate);
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        let mut buckets = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.last).as_secs() < 60);
        }
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
            refused: 0,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(std::mem::take(&mut b.refused))
        } else {
            b.refused = b.refused.saturating_add(1);
            Err(Duration::try_from_secs_f64((1.0 - b.tokens) / rate).unwrap_or(Duration::MAX))
        }
    }
}

/// Who may do what, and how often: the part of the configuration a SIGHUP
/// replaces as a whole (`[[access]]`, `[server] owner_operations`, the rate
/// limits of `[limits]`).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// `[[access]]` rules.
    pub rules: Vec<AccessRule>,
    /// What the daemon's own uid and root may do without a rule.
    pub owner_operations: Vec<String>,
    /// Request limits (only the rates are taken from a reload).
    pub limits: LimitsConfig,
}

/// The policy in force, shared by the services and the reload handler.
#[derive(Debug, Clone)]
pub(crate) struct PolicyCell(Arc<std::sync::RwLock<Arc<Policy>>>);

impl PolicyCell {
    /// A cell holding `policy`.
    pub(crate) fn new(policy: Policy) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(policy))))
    }

    /// The policy now (calls in flight keep the one they started with).
    pub(crate) fn current(&self) -> Arc<Policy> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `policy` in force for the calls that start from now on.
    pub(crate) fn replace(&self, policy: Policy) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }
}

/// The access check shared by every service.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    own_uid: u32,
    policy: PolicyCell,
    requests: Arc<Buckets>,
    failure_lines: Arc<Buckets>,
    pub(crate) audit: Arc<Auditor>,
}

impl Gate {
    /// Writes the audit line of an admin step (no purpose, no input digest):
    /// `ok` or `error`, with `detail`. A step whose line cannot be written
    /// fails (the log is required).
    ///
    /// # Errors
    /// UNAVAILABLE when the required audit line cannot be written.
    pub(crate) async fn audit_admin(
        &self,
        caller: &Caller,
        operation: &str,
        keyset: &str,
        kid: Option<&str>,
        ok: bool,
        detail: Option<&str>,
    ) -> Result<(), Status> {
        self.audit
            .record(
                caller.to_json(),
                &crate::audit::Event {
                    operation,
                    keyset: Some(keyset),
                    kid,
                    outcome: if ok { "ok" } else { "error" },
                    detail,
                    ..crate::audit::Event::default()
                },
            )
            .await
            .map_err(super::status::to_status)
    }

    /// A gate applying `policy`, auditing to `audit`.
    pub(crate) fn new(policy: PolicyCell, audit: Arc<Auditor>) -> Self {
        // /proc/self belongs to the process's effective uid.
        let own_uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        Self {
            own_uid,
            policy,
            requests: Arc::default(),
            failure_lines: Arc::default(),
            audit,
        }
    }

    fn identify<T>(req: &Request<T>) -> Option<Caller> {
        if let Some(cred) = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|i| i.peer_cred)
        {
            return Some(Caller::Unix {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            });
        }
        let peer = req.extensions().get::<super::tls::TlsPeer>()?;
        peer.caller.as_deref().cloned()
    }

    fn rule_matches(rule: &AccessRule, caller: &Caller) -> bool {
        match caller {
            Caller::Unix { uid, gid, .. } => {
                rule.unix_uid == Some(*uid) || rule.unix_gid == Some(*gid)
            }
            Caller::Tls { sans, .. } => rule
                .tls_san
                .as_ref()
                .is_some_and(|want| sans.iter().any(|s| s == want)),
        }
    }

    /// Whether `caller` may do `operation` on `keyset` (any keyset when `None`).
    pub(crate) fn may(&self, caller: &Caller, operation: &str, keyset: Option<&str>) -> bool {
        let policy = self.policy.current();
        if let Caller::Unix { uid, .. } = caller {
            if (*uid == 0 || *uid == self.own_uid) && grants(&policy.owner_operations, operation) {
                return true;
            }
        }
        policy.rules.iter().any(|r| {
            Self::rule_matches(r, caller)
                && grants(&r.operations, operation)
                && keyset.is_none_or(|k| r.keysets.iter().any(|g| glob(g, k)))
        })
    }

    /// Takes a request token for `caller`: `Err(wait)` when its bucket is
    /// empty, `wait` being the time until the next token.
    fn rate_ok(&self, caller: &Caller) -> Result<(), Duration> {
        let limits = self.policy.current().limits;
        if limits.rate_per_second == 0 {
            return Ok(());
        }
        self.requests
            .take(caller.key(), limits.rate_per_second, limits.burst)
            .map(drop)
    }

    /// Audits a failure a caller can provoke at will (an invalid token, a
    /// denial), at most `[limits] failure_lines_per_second` per caller: past
    /// that, lines are counted and the count is written with the next line
    /// let through, so one caller cannot flood the log.
    ///
    /// # Errors
    /// As [`Auditor::record`].
    pub(crate) async fn audit_failure(
        &self,
        caller: &Caller,
        event: &Event<'_>,
    ) -> crate::error::Result<()> {
        if !self.failure_line_allowed(caller) {
            return Ok(());
        }
        self.audit.record(caller.to_json(), event).await
    }

    /// Queues the audit line of a refused call (the call is refused whether
    /// or not it is written), within the failure-line limit: outcome
    /// `denied`, with `detail` saying why when it is not the access rules.
    fn denied(&self, caller: &Caller, operation: &str, keyset: Option<&str>, detail: Option<&str>) {
        if self.failure_line_allowed(caller) {
            let event = Event {
                operation,
                keyset,
                outcome: "denied",
                detail,
                ..Event::default()
            };
            self.audit.record_nowait(caller.to_json(), &event);
        }
    }

    /// Whether `caller` may have another failure line written now; when
    /// lines were held back since the last one, their count is queued first.
    fn failure_line_allowed(&self, caller: &Caller) -> bool {
        let rate = self.policy.current().limits.failure_lines_per_second;
        if rate == 0 {
            return true;
        }
        let Ok(suppressed) = self
            .failure_lines
            .take(caller.key(), rate, rate.saturating_mul(5))
        else {
            return false;
        };
        if suppressed > 0 {
            let detail = format!(
                "{suppressed} failure lines of this caller were not written ([limits] failure_lines_per_second = {rate})"
            );
            self.audit.record_nowait(
                caller.to_json(),
                &Event {
                    operation: "audit_suppressed",
                    outcome: "error",
                    detail: Some(&detail),
                    ..Event::default()
                },
            );
        }
        true
    }

    /// [`Gate::check`] on the request's own keyset (named by `keyset`), and
    /// the request taken apart: the head of every handler that works on one
    /// keyset.
    ///
    /// # Errors
    /// As [`Gate::check`].
    pub(crate) fn admit<T>(
        &self,
        request: Request<T>,
        operation: &str,
        keyset: impl FnOnce(&T) -> &String,
    ) -> Result<(Caller, T), Status> {
        let caller = self.check(&request, operation, Some(keyset(request.get_ref())))?;
        Ok((caller, request.into_inner()))
    }

    /// Identifies the caller of `req`, applies the rate limit, and checks it
    /// may perform `operation` on `keyset`. Denials are audited.
    pub(crate) fn check<T>(
        &self,
        req: &Request<T>,
        operation: &str,
        keyset: Option<&str>,
    ) -> Result<Caller, Status> {
        let Some(caller) = Self::identify(req) else {
            tracing::warn!(operation, "refused a caller without an identity");
            return Err(to_status(Error::PermissionDenied(format!(
                "{operation}: the caller could not be identified"
            ))));
        };
        if let Err(wait) = self.rate_ok(&caller) {
            self.denied(&caller, operation, keyset, Some("rate_limited"));
            crate::metrics::rate_limited();
            // Rounded up to the millisecond so a client that waits exactly
            // this long finds a token.
            let retry_after = Duration::from_millis(
                u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX),
            );
            return Err(to_status(Error::ResourceExhausted(Exhausted {
                detail: format!(
                    "{operation}: rate limit of {} requests per second exceeded for {caller}; \
                     slow down and retry in {} ms",
                    self.policy.current().limits.rate_per_second,
                    retry_after.as_millis()
                ),
                retry_after: Some(retry_after),
            })));
        }
        if self.may(&caller, operation, keyset) {
            return Ok(caller);
        }
        let target = keyset
            .map(|k| format!(" on keyset {k:?}"))
            .unwrap_or_default();
        self.denied(&caller, operation, keyset, None);
        Err(to_status(Error::PermissionDenied(format!(
            "{operation}{target} denied for {caller}: no [[access]] rule grants it"
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::{glob, grants};

    #[test]
    fn admin_grants_manage_and_destroy_only() {
        let admin = vec!["admin".to_string()];
        assert!(grants(&admin, "manage") && grants(&admin, "destroy"));
        assert!(!grants(&admin, "sign") && !grants(&admin, "decrypt"));
        let manage = vec!["manage".to_string()];
        assert!(grants(&manage, "manage") && !grants(&manage, "destroy"));
    }

    #[test]
    fn globs() {
        assert!(glob("as-*", "as-id-token"));
        assert!(glob("*", "anything"));
        assert!(glob("client-?", "client-1"));
        assert!(!glob("as-*", "bs-id"));
        assert!(!glob("client-?", "client-12"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("", "x"));
    }
}
