//! A network HSM's bad days, under a steady load: the token is SoftHSM2
//! reached through the fault-injecting PKCS#11 module (`tests/p11-fault`),
//! and each test turns one kind of fault on for a while under a running
//! daemon. Every request must end, within its deadline, either signed or
//! with UNAVAILABLE; the backend shows as degraded while calls fail; and once
//! the weather clears every request succeeds again, with no restart.

use custos_client::Client;
use custos_e2e::fault::{self, Weather};
use custos_e2e::{spec, Daemon, DaemonConfig, Hsm};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's call deadline in these tests.
const CALL_TIMEOUT_MS: u64 = 1500;

#[derive(Debug, Default)]
struct Tally {
    ok: AtomicUsize,
    unavailable: AtomicUsize,
    other: AtomicUsize,
    late: AtomicUsize,
}

async fn setup(pool: usize) -> (Hsm, Daemon, Weather, Client) {
    let mut hsm = Hsm::new();
    let (d, weather) =
        fault::daemon(&mut hsm, pool, CALL_TIMEOUT_MS, DaemonConfig::default()).await;
    let c = d.client().await;
    c.create_keyset(spec("as-gen", "ES256", &["generic"]))
        .await
        .expect("create");
    (hsm, d, weather, c)
}

/// `workers` callers signing in a loop until `stop`, each request timed
/// against the call deadline plus a second of slack.
fn load(
    c: &Client,
    workers: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (c, stop, tally) = (c.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let deadline = Duration::from_millis(CALL_TIMEOUT_MS + 1000);
                    match tokio::time::timeout(
                        deadline,
                        c.sign_jwt("as-gen", "generic", None, "{}"),
                    )
                    .await
                    {
                        Err(_) => tally.late.fetch_add(1, Ordering::AcqRel),
                        Ok(Ok(_)) => tally.ok.fetch_add(1, Ordering::AcqRel),
                        Ok(Err(e))
                            if e.status()
                                .is_some_and(|s| s.code() == tonic::Code::Unavailable) =>
                        {
                            tally.unavailable.fetch_add(1, Ordering::AcqRel)
                        }
                        Ok(Err(e)) => {
                            eprintln!("unexpected failure: {e}");
                            tally.other.fetch_add(1, Ordering::AcqRel)
                        }
                    };
                }
            })
        })
        .collect()
}

/// Runs `rules` for `for_ms` under load and checks the outcome.
async fn weather_passes(rules: &str, for_ms: u64) {
    let (_hsm, d, weather, c) = setup(8).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let workers = load(&c, 4, stop.clone(), tally.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tally.ok.load(Ordering::Acquire);
    assert!(before > 0, "the load runs before the fault");
    weather.set(rules);
    // While calls fail, the keyset shows its backend degraded.
    let started = Instant::now();
    let mut degraded = false;
    while started.elapsed() < Duration::from_millis(for_ms) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ks = c
            .get_keyset("as-gen")
            .await
            .expect("keyset show answers during the fault");
        degraded |= !ks.backend_problem.is_empty();
    }
    let failed_during = tally.unavailable.load(Ordering::Acquire);
    weather.clear();
    // Recovery by itself: within a few deadlines, every request succeeds.
    let recovered_by = Instant::now() + Duration::from_millis(4 * CALL_TIMEOUT_MS + 2000);
    let mut streak = 0;
    while streak < 30 {
        assert!(
            Instant::now() < recovered_by,
            "no recovery after {rules:?}: {tally:?}\n{}",
            d.log_text()
        );
        let before = tally.ok.load(Ordering::Acquire);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let unavailable = tally.unavailable.load(Ordering::Acquire);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tally.unavailable.load(Ordering::Acquire) == unavailable
            && tally.ok.load(Ordering::Acquire) > before
        {
            streak += 1;
        } else {
            streak = 0;
        }
    }
    stop.store(true, Ordering::Release);
    for w in workers {
        w.await.expect("worker");
    }
    // Sequential requests after the storm: all signed.
    for _ in 0..20 {
        c.sign_jwt("as-gen", "generic", None, "{}")
            .await
            .expect("signs after recovery");
    }
    let ks = c.get_keyset("as-gen").await.expect("keyset");
    assert!(
        ks.backend_problem.is_empty(),
        "recovered: {}",
        ks.backend_problem
    );
    assert_eq!(
        tally.other.load(Ordering::Acquire),
        0,
        "only UNAVAILABLE: {tally:?}"
    );
    assert_eq!(
        tally.late.load(Ordering::Acquire),
        0,
        "none past its deadline: {tally:?}"
    );
    assert!(failed_during > 0, "the fault was felt: {tally:?}");
    assert!(degraded, "the backend showed degraded during {rules:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_errors_fail_cleanly_and_recover() {
    weather_passes("C_Sign error=CKR_DEVICE_ERROR\n", 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_session_handles_fail_cleanly_and_recover() {
    weather_passes("C_Sign error=CKR_SESSION_HANDLE_INVALID\n", 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_sessions_fail_cleanly_and_recover() {
    weather_passes("C_SignInit error=CKR_SESSION_CLOSED\n", 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_fails_cleanly_and_recovers() {
    // Sessions cannot even be opened while the device is gone.
    weather_passes(
        "C_Sign error=CKR_DEVICE_REMOVED\nC_OpenSession error=CKR_DEVICE_REMOVED\n",
        1500,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_fails_cleanly_and_recovers() {
    weather_passes(
        "C_SignInit error=CKR_TOKEN_NOT_PRESENT\nC_OpenSession error=CKR_TOKEN_NOT_PRESENT\n",
        1500,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_token_fails_cleanly_and_recovers() {
    weather_passes(
        "C_Sign error=CKR_USER_NOT_LOGGED_IN\nC_Login error=CKR_DEVICE_ERROR\n",
        1500,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_device_answers_unavailable_at_the_deadline_and_recovers() {
    // Longer than the call deadline: callers get UNAVAILABLE at the
    // deadline, the stuck calls come back when the hang ends, and their
    // sessions are replaced.
    weather_passes("C_Sign hang\n", 2 * CALL_TIMEOUT_MS + 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_session_is_retried_on_a_fresh_one_and_the_caller_never_sees_it() {
    let (_hsm, _d, weather, c) = setup(4).await;
    for kind in [
        "CKR_SESSION_HANDLE_INVALID",
        "CKR_DEVICE_ERROR",
        "CKR_USER_NOT_LOGGED_IN",
    ] {
        weather.set(&format!("C_Sign error={kind} nth=1\n"));
        c.sign_jwt("as-gen", "generic", None, "{}")
            .await
            .unwrap_or_else(|e| panic!("{kind} on one call is retried: {e}"));
    }
    // Two failures in a row are not hidden: one retry only.
    weather.set("C_Sign error=CKR_DEVICE_ERROR nth=1\nC_Sign error=CKR_DEVICE_ERROR nth=2\n");
    let e = c
        .sign_jwt("as-gen", "generic", None, "{}")
        .await
        .expect_err("the retry failed too");
    assert_eq!(e.status().expect("status").code(), tonic::Code::Unavailable);
    assert_eq!(e.outage(), Some("device"), "{e}");
    weather.clear();
    c.sign_jwt("as-gen", "generic", None, "{}")
        .await
        .expect("and then it signs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_generation_whose_answer_is_lost_is_not_made_twice() {
    let (hsm, d, weather, c) = setup(4).await;
    // The device makes the key but its reply is lost: the daemon must look
    // for the key before trying again, and use the one that was made.
    weather.set("C_GenerateKeyPair error=CKR_DEVICE_ERROR nth=1 after\n");
    c.rotate("as-gen", false)
        .await
        .expect("rotation retried after looking");
    weather.clear();
    let ks = c.get_keyset("as-gen").await.expect("keyset");
    assert_eq!(ks.versions.len(), 2);
    let objects = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert_eq!(
        objects.matches("label:").count(),
        2,
        "one key per version, no orphan: {objects}"
    );
    assert!(
        d.log_text().contains("made the key after all"),
        "{}",
        d.log_text()
    );
}
