//! SIGHUP: re-read the configuration and put in force what may change while
//! serving, as a whole or not at all.
//!
//! Reloaded: `[[access]]`, `[server] owner_operations`, the rates of
//! `[limits]`, `[log] level`, the contents of the TLS files (certificate,
//! key, client CA, CRLs), and the audit file, reopened for logrotate.
//! Everything else (backends, keyring, sockets, paths, sizes) needs a
//! restart: a new config that changes it is refused, naming the section, and
//! the running configuration stays. Calls in flight finish under the policy
//! they started with; calls that start after the reload get the new one.

use crate::audit::{Auditor, Event};
use crate::config::Config;
use crate::server::tls::Tls;
use crate::server::{Policy, PolicyCell};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// What a reload needs to reach.
#[derive(Debug)]
pub(crate) struct Reloader {
    /// The config file (`None` in `--dev`: nothing to re-read).
    pub path: Option<PathBuf>,
    /// The configuration in force.
    pub running: Config,
    /// The access policy the services read.
    pub policy: PolicyCell,
    /// The TLS listener's settings, when there is one.
    pub tls: Option<Arc<Tls>>,
    /// The audit log.
    pub audit: Arc<Auditor>,
}

/// Names the sections of `new` that differ from `old` and cannot change
/// without a restart.
fn fixed_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut server = new.server.clone();
    server
        .owner_operations
        .clone_from(&old.server.owner_operations);
    if format!("{:?}", old.server) != format!("{server:?}") {
        changed.push("[server] (other than owner_operations)");
    }
    let mut limits = new.limits;
    limits.rate_per_second = old.limits.rate_per_second;
    limits.burst = old.limits.burst;
    limits.failure_lines_per_second = old.limits.failure_lines_per_second;
    if format!("{:?}", old.limits) != format!("{limits:?}") {
        changed.push("[limits] (other than the rates)");
    }
    for (name, a, b) in [
        (
            "[backends]",
            format!("{:?}", old.backends),
            format!("{:?}", new.backends),
        ),
        (
            "[keyring]",
            format!("{:?}", old.keyring),
            format!("{:?}", new.keyring),
        ),
        (
            "[verify]",
            format!("{:?}", old.verify),
            format!("{:?}", new.verify),
        ),
        (
            "[audit]",
            format!("{:?}", old.audit),
            format!("{:?}", new.audit),
        ),
    ] {
        if a != b {
            changed.push(name);
        }
    }
    changed
}

impl Reloader {
    /// Reloads; returns what changed, or why nothing did.
    ///
    /// # Errors
    /// The new config's problem; the running configuration stays.
    pub(crate) async fn reload(&mut self) -> Result<String, String> {
        let new = match &self.path {
            Some(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || Config::load(&path))
                    .await
                    .map_err(|e| format!("reading the config: {e}"))??
            }
            None => self.running.clone(),
        };
        let fixed = fixed_changes(&self.running, &new);
        if !fixed.is_empty() {
            return Err(format!(
                "the new config changes {}, which need a restart; nothing was applied",
                fixed.join(", ")
            ));
        }
        let level = new.log.level.clone();
        if let Some(l) = &level {
            crate::logging::parse(l)?;
        }
        // TLS last of the checks: it swaps its settings itself, only when
        // every file is good.
        if let Some(tls) = &self.tls {
            let t = tls.clone();
            tokio::task::spawn_blocking(move || t.reload())
                .await
                .map_err(|e| format!("TLS reload task: {e}"))?
                .map_err(|e| format!("TLS files: {e}; nothing was applied"))?;
        }
        self.policy.replace(Policy {
            rules: new.access.clone(),
            owner_operations: new.server.owner_operations.clone(),
            limits: new.limits,
        });
        if let Some(l) = &level {
            crate::logging::apply(l)?;
        }
        let reopened = self.audit.reopen().await;
        let summary = format!(
            "{} access rules, rate {}/s (burst {}){}{}",
            new.access.len(),
            new.limits.rate_per_second,
            new.limits.burst,
            if self.tls.is_some() {
                ", TLS files re-read"
            } else {
                ""
            },
            if reopened {
                ", audit file reopened"
            } else {
                ", the audit file could NOT be reopened (still writing the old one)"
            },
        );
        self.running = new;
        Ok(summary)
    }
}

/// Reloads on every SIGHUP, telling systemd (`RELOADING=1`, then
/// `READY=1`), logging and auditing the outcome.
pub(crate) fn spawn(mut reloader: Reloader) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::error!("cannot install the SIGHUP handler; reload by restarting");
            return;
        };
        let me = json!({"process": "custosd"});
        while hup.recv().await.is_some() {
            crate::systemd::reloading();
            let outcome = reloader.reload().await;
            let (result, detail) = match &outcome {
                Ok(summary) => {
                    tracing::info!(%summary, "SIGHUP: configuration reloaded");
                    crate::metrics::reload(true);
                    ("ok", summary.clone())
                }
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload refused; the running configuration stays");
                    crate::metrics::reload(false);
                    ("error", e.clone())
                }
            };
            let _ = reloader
                .audit
                .record(
                    me.clone(),
                    &Event {
                        operation: "config_reload",
                        outcome: result,
                        detail: Some(&detail),
                        ..Event::default()
                    },
                )
                .await;
            crate::systemd::ready();
        }
    });
}
