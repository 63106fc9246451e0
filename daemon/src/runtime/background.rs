//! What runs beside the server: the rotation schedule, the refresh from a
//! shared store, and the audit checkpoints.

use crate::audit::Auditor;
use crate::keyring::Keyring;
use std::sync::Arc;
use std::time::Duration;

/// Runs the rotation schedule and the refresh from a shared store.
pub(super) fn spawn_background(
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
pub(super) fn sealer(keyring: Arc<Keyring>, name: String) -> crate::audit::Sealer {
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
pub(super) fn spawn_checkpoints(
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
