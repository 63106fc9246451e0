//! Health beyond "the process answers": one `grpc.health.v1` service name
//! per backend (`custos.backend.NAME`: NOT_SERVING while its device does
//! not answer its probe or a call is past its deadline) and per quarantined
//! keyset (`custos.keyset.NAME`: NOT_SERVING while the manifest's record of
//! it does not match the device). Updated every two seconds.

use super::status::on_thread;
use crate::error::Error;
use crate::keyring::Keyring;
use std::collections::BTreeSet;
use std::sync::Arc;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// How often backends are probed and the statuses updated.
const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds without an answer from a shared keyring store before
/// `custos.keyring` reports NOT_SERVING.
const STORE_SILENCE: i64 = 5;

/// The health name of backend `name`.
pub(crate) fn backend_service(name: &str) -> String {
    format!("custos.backend.{name}")
}

/// Probes backends and publishes per-backend and per-keyset health until aborted.
pub(crate) fn spawn(
    keyring: Arc<Keyring>,
    reporter: HealthReporter,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut quarantined: BTreeSet<String> = BTreeSet::new();
        let mut failing: BTreeSet<String> = BTreeSet::new();
        let mut timer = tokio::time::interval(EVERY);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            for (name, guard) in keyring.guards() {
                // A call past its deadline says enough; do not add a stuck probe.
                if guard.overdue() == 0 {
                    let backend = guard.backend.clone();
                    // On a thread even for inline backends: a probe waiting for a
                    // free session must not hold an async worker.
                    let outcome =
                        on_thread(guard, move || backend.probe().map_err(Error::from)).await;
                    guard.probed(outcome.map_err(|s| s.message().to_string()));
                }
                let problem = guard.problem();
                // Logged when it changes, not every round.
                match &problem {
                    Some(why) if failing.insert(name.clone()) => {
                        tracing::warn!(backend = %name, problem = %why, "backend not serving");
                    }
                    None if failing.remove(name) => {
                        tracing::info!(backend = %name, "backend serving again");
                    }
                    _ => {}
                }
                crate::metrics::backend(name, problem.is_none(), guard.in_flight());
                if let Some(pool) = guard.backend.capabilities().pool {
                    crate::metrics::pool(name, pool.stats());
                }
                let status = if problem.is_none() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter
                    .set_service_status(backend_service(name), status)
                    .await;
            }
            let now: BTreeSet<String> = keyring.quarantined().into_keys().collect();
            for name in now.difference(&quarantined) {
                reporter
                    .set_service_status(format!("custos.keyset.{name}"), ServingStatus::NotServing)
                    .await;
            }
            for name in quarantined.difference(&now) {
                reporter
                    .set_service_status(format!("custos.keyset.{name}"), ServingStatus::Serving)
                    .await;
            }
            quarantined = now;
            keyring_metrics(&keyring);
            // A shared store that stopped answering: degraded (signing goes
            // on until [keyring] max_stale; key administration waits).
            if let Some(silence) = keyring.store_silence() {
                let status = if silence > STORE_SILENCE {
                    ServingStatus::NotServing
                } else {
                    ServingStatus::Serving
                };
                reporter.set_service_status("custos.keyring", status).await;
            }
        }
    })
}

/// Versions by keyset and state, seconds to each keyset's next transition,
/// and the quarantined count, for the metrics.
fn keyring_metrics(keyring: &Keyring) {
    let snapshot = keyring.snapshot();
    let now = crate::keyring::now();
    let mut keys = Vec::new();
    let mut next = Vec::new();
    for (name, ks) in &snapshot.keysets {
        let mut counts: std::collections::BTreeMap<&'static str, i64> = Default::default();
        for v in &ks.versions {
            *counts.entry(v.state.as_str()).or_default() += 1;
        }
        keys.extend(
            counts
                .into_iter()
                .map(|(state, n)| (name.clone(), state, n)),
        );
        if let Some((at, _)) = crate::keyring::schedule::next(ks) {
            next.push((name.clone(), at.saturating_sub(now)));
        }
    }
    crate::metrics::keyring(&keys, &next, keyring.quarantined().len());
}
