//! End-to-end tests of key lifecycle and rotation on SoftHSM2: manual and
//! emergency rotation, JWKS contents and order, refusals, the schedule, a
//! kill -9 loop, and two daemons sharing one token.

use custos_client::{proto, Client, KeysetSpec};
use custos_e2e::clock::FakeClock;
use custos_e2e::verify::verify_with_jwks;
use custos_e2e::{Daemon, DaemonConfig, Hsm};
use serde_json::Value;
use std::time::{Duration, Instant};
use tonic::Code;

fn spec(name: &str) -> KeysetSpec {
    KeysetSpec {
        name: name.into(),
        alg: "ES256".into(),
        purposes: vec!["generic".into()],
        ..KeysetSpec::default()
    }
}

async fn jwks_kids(c: &Client, keyset: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&c.jwks(Some(keyset)).await.expect("jwks")).expect("json");
    v["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

fn state(ks: &proto::Keyset, kid: &str) -> String {
    ks.versions
        .iter()
        .find(|v| v.kid == kid)
        .expect("version")
        .state
        .clone()
}

fn active(ks: &proto::Keyset) -> String {
    let a: Vec<_> = ks.versions.iter().filter(|v| v.state == "active").collect();
    assert_eq!(a.len(), 1, "exactly one active version: {ks:?}");
    a[0].kid.clone()
}

async fn verify_jws(c: &Client, keyset: &str, token: &str) -> proto::Verdict {
    c.verify_jws(proto::VerifyJwsRequest {
        token: token.into(),
        keys: Some(proto::verify_jws_request::Keys::Keyset(keyset.into())),
        typ: String::new(),
    })
    .await
    .expect("verdict")
}

fn code<T: std::fmt::Debug>(r: Result<T, custos_client::Error>) -> Code {
    r.expect_err("refused").status().expect("status").code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rotation_publishes_first_and_keeps_old_tokens_valid_until_disabled() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    let ks = c.create_keyset(spec("as")).await.expect("create");
    let old = active(&ks);
    let before = c
        .sign_jwt("as", "generic", None, r#"{"n":1}"#)
        .await
        .expect("sign")
        .jws;

    // Rotate without --now: the new key is published (after the active one) but does not sign.
    let ks = c.rotate("as", false).await.expect("rotate");
    let new = ks.versions.last().expect("new").kid.clone();
    assert_eq!(state(&ks, &new), "pending");
    assert_eq!(active(&ks), old);
    assert_eq!(
        jwks_kids(&c, "as").await,
        vec![old.clone(), new.clone()],
        "active first, then pending"
    );
    assert_eq!(
        c.sign_jwt("as", "generic", None, "{}")
            .await
            .expect("sign")
            .kid,
        old
    );
    // A pending key verifies nothing.
    assert!(verify_jws(&c, "as", &before).await.valid);

    // Promote it: it signs, the old key is retired but still published and verifying.
    let ks = c.activate("as", &new).await.expect("activate");
    assert_eq!(active(&ks), new);
    assert_eq!(state(&ks, &old), "retired");
    assert_eq!(
        jwks_kids(&c, "as").await,
        vec![new.clone(), old.clone()],
        "active first, then retired"
    );
    let after = c.sign_jwt("as", "generic", None, "{}").await.expect("sign");
    assert_eq!(after.kid, new);
    let set: Value = serde_json::from_str(&c.jwks(Some("as")).await.expect("jwks")).expect("json");
    verify_with_jwks(&before, &set).expect("the old token verifies independently against the JWKS");
    verify_with_jwks(&after.jws, &set).expect("the new token too");
    assert!(verify_jws(&c, "as", &before).await.valid);

    // Disable the old key: gone from the JWKS, refused by verification at once.
    let ks = c.disable("as", &old).await.expect("disable");
    assert_eq!(state(&ks, &old), "disabled");
    assert_eq!(jwks_kids(&c, "as").await, vec![new.clone()]);
    let v = verify_jws(&c, "as", &before).await;
    assert!(!v.valid);
    assert_eq!(v.reason, "unknown_kid");

    // Transitions are recorded with who made them.
    let shown = c.get_keyset("as").await.expect("show");
    let old_v = shown.versions.iter().find(|v| v.kid == old).expect("old");
    let path: Vec<_> = old_v.transitions.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(path, vec!["pending", "active", "retired", "disabled"]);
    assert!(old_v.transitions.iter().all(|t| t.by.starts_with("uid=")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_rotation_and_every_refusal() {
    let hsm = Hsm::new();
    let d = Daemon::start(&hsm).await;
    let c = d.client().await;
    let first = active(&c.create_keyset(spec("as")).await.expect("create"));
    let token = c
        .sign_jwt("as", "generic", None, "{}")
        .await
        .expect("sign")
        .jws;
    let ks = c.rotate("as", true).await.expect("rotate --now");
    let second = active(&ks);
    assert_ne!(first, second);
    assert_eq!(state(&ks, &first), "retired");
    assert_eq!(
        c.sign_jwt("as", "generic", None, "{}")
            .await
            .expect("sign")
            .kid,
        second
    );
    assert!(
        verify_jws(&c, "as", &token).await.valid,
        "tokens of the retired key still verify"
    );

    // Refusals.
    assert_eq!(
        code(c.destroy("as", &second, true).await),
        Code::FailedPrecondition,
        "never the active key"
    );
    assert_eq!(
        code(c.disable("as", &second).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(c.retire("as", &second).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(c.destroy("as", &first, false).await),
        Code::FailedPrecondition,
        "needs confirmation"
    );
    assert_eq!(code(c.activate("as", "no-such-kid").await), Code::NotFound);
    assert_eq!(code(c.rotate("nope", false).await), Code::NotFound);
    c.disable("as", &first).await.expect("disable");
    assert_eq!(
        code(c.activate("as", &first).await),
        Code::FailedPrecondition,
        "a disabled key never signs again"
    );
    c.destroy("as", &first, true).await.expect("destroy");
    assert_eq!(
        code(c.activate("as", &first).await),
        Code::FailedPrecondition
    );
    let policy = |retain: &str| proto::SetPolicyRequest {
        name: "as".into(),
        retain_for: Some(retain.into()),
        ..Default::default()
    };
    let e = c
        .set_policy(policy("10m"))
        .await
        .expect_err("shorter than max token lifetime");
    assert_eq!(e.status().expect("s").code(), Code::InvalidArgument);
    assert!(e.status().expect("s").message().contains("retain_for"));
    assert_eq!(
        code(c.set_policy(policy("ten days")).await),
        Code::InvalidArgument
    );

    // The destroyed key is gone from the token; the active one is there.
    let listing = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    assert_eq!(
        listing.matches("Private Key Object").count(),
        1,
        "{listing}"
    );
    // Rollback to a retired key.
    let third = c.rotate("as", true).await.expect("rotate");
    let third_kid = active(&third);
    let ks = c.activate("as", &second).await.expect("roll back");
    assert_eq!(active(&ks), second);
    assert_eq!(state(&ks, &third_kid), "retired");

    // A kid is base64url and may start with '-': the CLI takes it as a value.
    let out = d.cli(&["keyset", "activate", "as", "--kid", "-no-such-kid"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    // CLI: destroy without --yes is a usage error; with it, it works.
    let out = d.cli(&["keyset", "destroy", "as", "--kid", &third_kid], None);
    assert_eq!(out.status.code(), Some(2));
    let out = d.cli(
        &["keyset", "destroy", "as", "--kid", &third_kid, "--yes"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(
        &[
            "keyset",
            "policy",
            "as",
            "--rotation-period",
            "90d",
            "--publish-ahead",
            "1d",
            "--retain-for",
            "7d",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value =
        serde_json::from_slice(&d.cli(&["keyset", "show", "as", "--json"], None).stdout)
            .expect("json");
    assert_eq!(shown["policy"]["rotation_period"], 90 * 86_400);
    // No retired key is left (the last one was destroyed), so the next
    // scheduled step is the rotation: 90 days after activation, published 1 day ahead.
    assert_eq!(shown["next_transition"]["action"], "rotate", "{shown}");
    let activated = shown["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["state"] == "active")
        .expect("active")["transitions"]
        .as_array()
        .expect("t")
        .last()
        .expect("last")["at"]
        .as_i64()
        .expect("at");
    assert_eq!(
        shown["next_transition"]["at"].as_i64().expect("at"),
        activated + 89 * 86_400
    );
}

fn fast_schedule() -> DaemonConfig {
    DaemonConfig {
        extra_toml:
            "\n[keyring]\nschedule_tick = \"1s\"\nrefresh = \"1s\"\nmin_rotation_period = \"1s\"\n"
                .into(),
        ..DaemonConfig::default()
    }
}

async fn wait_for(
    c: &Client,
    name: &str,
    what: &str,
    limit: Duration,
    pred: impl Fn(&proto::Keyset) -> bool,
) -> proto::Keyset {
    let start = Instant::now();
    loop {
        let ks = c.get_keyset(name).await.expect("show");
        if pred(&ks) {
            return ks;
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}: {ks:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A schedule policy (no auto-destroy) for keyset `name`.
fn schedule(name: &str, rotation: &str, ahead: &str, retain: &str) -> proto::SetPolicyRequest {
    proto::SetPolicyRequest {
        name: name.into(),
        rotation_period: Some(rotation.into()),
        publish_ahead: Some(ahead.into()),
        retain_for: Some(retain.into()),
        auto_destroy: Some(false),
    }
}

/// Waits until keyset `name` has a pending version: the keyset, and that version.
async fn wait_for_pending(
    c: &Client,
    name: &str,
    limit: Duration,
) -> (proto::Keyset, proto::KeyVersion) {
    let ks = wait_for(c, name, "a pending key", limit, |k| {
        k.versions.iter().any(|v| v.state == "pending")
    })
    .await;
    let pending = ks
        .versions
        .iter()
        .find(|v| v.state == "pending")
        .expect("pending")
        .clone();
    (ks, pending)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_publishes_promotes_and_ages_keys() {
    let hsm = Hsm::new();
    let d = Daemon::start_with(&hsm, fast_schedule()).await;
    let c = d.client().await;
    let mut s = spec("sched");
    s.max_token_lifetime = Some(2);
    let first = active(&c.create_keyset(s).await.expect("create"));
    c.set_policy(schedule("sched", "4s", "2s", "3s"))
        .await
        .expect("policy");
    // ~2 s after creation a pending key appears (published 2 s ahead of the 4 s rotation).
    let (ks, pending) = wait_for_pending(&c, "sched", Duration::from_secs(10)).await;
    assert_eq!(active(&ks), first);
    let pending = pending.kid;
    assert_eq!(
        jwks_kids(&c, "sched").await,
        vec![first.clone(), pending.clone()]
    );
    let by = &ks
        .versions
        .iter()
        .find(|v| v.kid == pending)
        .expect("p")
        .transitions[0]
        .by;
    assert_eq!(by, "schedule");
    // Then it is promoted and the first key retired.
    let ks = wait_for(&c, "sched", "promotion", Duration::from_secs(10), |k| {
        k.versions
            .iter()
            .any(|v| v.kid == pending && v.state == "active")
    })
    .await;
    assert_eq!(state(&ks, &first), "retired");
    assert_eq!(jwks_kids(&c, "sched").await[0], pending);
    // Then the retired key ages out: disabled (auto_destroy is off), leaving the JWKS.
    wait_for(&c, "sched", "expiry", Duration::from_secs(10), |k| {
        k.versions
            .iter()
            .any(|v| v.kid == first && v.state == "disabled")
    })
    .await;
    assert!(!jwks_kids(&c, "sched").await.contains(&first));
    assert!(
        d.log_text().contains("by=\"schedule\""),
        "transitions are audited:\n{}",
        d.log_text()
    );
}

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .try_into()
        .expect("fits")
}

/// The schedule at a bank's periods (rotate every 90 days, publish a day
/// ahead, keep a retired key 7 days) on a wall clock the test moves by days
/// (libfaketime, `custos_e2e::clock`): nothing happens before its date, each
/// step happens once its date has passed, and the transitions carry the
/// daemon's (moved) time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_follows_the_calendar_at_real_periods() {
    let hsm = Hsm::new();
    let clock = FakeClock::new(hsm.dir.path());
    let d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            env: clock.env(),
            extra_toml: "\n[keyring]\nschedule_tick = \"1s\"\nrefresh = \"1s\"\n".into(),
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    let mut s = spec("calendar");
    s.max_token_lifetime = Some(300);
    let created = c.create_keyset(s).await.expect("create");
    let first = active(&created);
    let t0 = created.created_at;
    let ks = c
        .set_policy(schedule("calendar", "90d", "1d", "7d"))
        .await
        .expect("policy");
    let next = ks.next_transition.expect("a scheduled step");
    assert_eq!(next.action, "rotate");
    assert!(
        (t0 + 89 * DAY..=t0 + 89 * DAY + 5).contains(&next.at),
        "the new key is due 1 day before the 90-day rotation: {next:?}, created {t0}"
    );

    // A few schedule ticks on the real date: nothing may happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ks = c.get_keyset("calendar").await.expect("show");
    assert_eq!(ks.versions.len(), 1, "nothing is due yet: {ks:?}");

    // 89 days and a minute later: the next key is published, not yet active.
    clock.set_offset(t0 - now() + 89 * DAY + 60);
    let (ks, pending) = wait_for_pending(&c, "calendar", Duration::from_secs(15)).await;
    assert_eq!(active(&ks), first);
    let step = &pending.transitions[0];
    assert_eq!(step.by, "schedule");
    assert!(
        step.at >= t0 + 89 * DAY,
        "the transition carries the daemon's clock, 89 days on: {step:?}, created {t0}"
    );
    let pending = pending.kid;

    // Half a day later the rotation is still not due.
    clock.set_offset(t0 - now() + 89 * DAY + DAY / 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ks = c.get_keyset("calendar").await.expect("show");
    assert_eq!(active(&ks), first, "promoted early: {ks:?}");

    // Day 90 and 10 minutes (the pending key was published at day 89 + 1 min,
    // plus a tick): promoted, the first key retired but still published.
    clock.set_offset(t0 - now() + 90 * DAY + 600);
    let ks = wait_for(&c, "calendar", "promotion", Duration::from_secs(15), |k| {
        active(k) == pending
    })
    .await;
    assert_eq!(state(&ks, &first), "retired");
    assert_eq!(
        jwks_kids(&c, "calendar").await,
        vec![pending.clone(), first.clone()]
    );

    // Day 97 and 20 minutes (it was retired at day 90 + 10 min): the retired key has aged out of the JWKS.
    clock.set_offset(t0 - now() + 97 * DAY + 1200);
    wait_for(&c, "calendar", "expiry", Duration::from_secs(15), |k| {
        state(k, &first) == "disabled"
    })
    .await;
    assert_eq!(jwks_kids(&c, "calendar").await, vec![pending]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_rotations_never_breaks_the_keyring() {
    let hsm = Hsm::new();
    let mut d = Daemon::start(&hsm).await;
    {
        let c = d.client().await;
        for name in ["a", "b"] {
            c.create_keyset(spec(name)).await.expect("create");
        }
    }
    let mut kills = 0;
    let mut rng_state: u64 = rand::random();
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    while kills < 50 {
        let c = d.client().await;
        let worker = tokio::spawn(async move {
            let mut i = 0u64;
            loop {
                let name = if i.is_multiple_of(2) { "a" } else { "b" };
                let _ = match i % 5 {
                    0 | 3 => c.rotate(name, i.is_multiple_of(3)).await.map(|_| ()),
                    1 => match c.get_keyset(name).await {
                        Ok(ks) => match ks.versions.iter().find(|v| v.state == "pending") {
                            Some(p) => c.activate(name, &p.kid).await.map(|_| ()),
                            None => Ok(()),
                        },
                        Err(e) => Err(e),
                    },
                    2 => match c.get_keyset(name).await {
                        Ok(ks) => match ks.versions.iter().find(|v| v.state == "retired") {
                            Some(r) => c.disable(name, &r.kid).await.map(|_| ()),
                            None => Ok(()),
                        },
                        Err(e) => Err(e),
                    },
                    _ => match c.get_keyset(name).await {
                        Ok(ks) => match ks.versions.iter().find(|v| v.state == "disabled") {
                            Some(r) => c.destroy(name, &r.kid, true).await.map(|_| ()),
                            None => Ok(()),
                        },
                        Err(e) => Err(e),
                    },
                };
                i += 1;
            }
        });
        tokio::time::sleep(Duration::from_millis(next() % 150)).await;
        std::process::Command::new("kill")
            .args(["-KILL", &d.pid().to_string()])
            .status()
            .expect("kill");
        worker.abort();
        kills += 1;
        // The manifest must load and reconcile: the daemon starts again.
        d.respawn_after_kill().await;
        let c = d.client().await;
        for ks in c.list_keysets().await.expect("list") {
            active(&ks);
        }
    }
    // Final invariants: exactly one active per keyset, every non-destroyed
    // kid backed by a key on the token (read with pkcs11-tool), and keys the
    // manifest does not know are only orphans, never used.
    let c = d.client().await;
    let listing = hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"]);
    let mut recorded = 0;
    for ks in c.list_keysets().await.expect("list") {
        active(&ks);
        for v in ks.versions.iter().filter(|v| v.state != "destroyed") {
            recorded += 1;
            let sign = c
                .sign_jwt(&ks.name, "generic", None, "{}")
                .await
                .expect("sign");
            assert_eq!(sign.kid, active(&ks));
            let _ = v;
        }
    }
    // Only Custos's keys count (label `custos:...`). A kill inside SoftHSM2's
    // C_GenerateKeyPair can leave a private key object with an empty label,
    // no id and default usage (seen: "decrypt, sign, unwrap"): SoftHSM2
    // commits an object's defaults before the caller's template. Such a husk
    // is not a key Custos made, named or could use, so it is no orphan.
    let objects: Vec<&str> = listing.split("Private Key Object").skip(1).collect();
    let on_token = objects
        .iter()
        .filter(|o| {
            o.lines()
                .any(|l| l.trim_start().starts_with("label:") && l.contains("custos:"))
        })
        .count();
    let husks = objects.len() - on_token;
    assert!(
        on_token >= recorded,
        "{on_token} keys on the token, {recorded} recorded:\n{listing}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(d.state_dir.join("keyring.json")).expect("manifest"))
            .expect("json");
    for ks in manifest["keysets"].as_object().expect("keysets").values() {
        for v in ks["versions"].as_array().expect("versions") {
            if v["state"] != "destroyed" {
                let id = v["key_ref"]["id"].as_str().expect("id");
                assert!(
                    listing.contains(id),
                    "kid {} (id {id}) has no key on the token",
                    v["kid"]
                );
            }
        }
    }
    if on_token > recorded {
        // Keys generated but never recorded (killed in between) are reported, not used.
        d.restart().await;
        assert!(
            d.log_text().contains("orphan key"),
            "orphans must be reported:\n{}\ntoken:\n{listing}",
            d.log_text()
        );
    }
    eprintln!(
        "{kills} kills; {recorded} recorded live versions; {on_token} keys on the token; \
         {husks} unlabelled husks"
    );
}
