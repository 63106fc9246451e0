//! Evidence an auditor can check, and dual control, end to end on SoftHSM2.
//!
//! Dual control: distinct callers are distinct uids (`setpriv`), as the
//! kernel reports them to the daemon. A destroy needs two approvals by other
//! people and happens only after the second; self-approval, a second
//! approval by the same person, an approval of another digest (a changed
//! request) and an expired request are refused; every step is audited.
//!
//! The audit log: a real daemon writes a hash-chained log sealed by
//! checkpoints signed by an audit keyset in the HSM; `custos audit verify`
//! passes it untouched (across a rotation of the audit key and a reopen of
//! the file by SIGHUP), and names each edit, deletion, reordering and
//! truncation made to copies of it.

use custos_e2e::{as_uid, audit_lines, shared_dir, spec, Daemon, DaemonConfig, Hsm};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Three admins (uids 1001, 1002, 1003) allowed to manage and destroy `as-*`.
fn admins() -> String {
    (1001..=1003)
        .map(|uid| {
            format!(
                "\n[[access]]\nname = \"admin {uid}\"\nunix_uid = {uid}\nkeysets = [\"as-*\"]\noperations = [\"admin\", \"jwks\"]\n"
            )
        })
        .collect()
}

/// Keyset `as-id` with a retired first key (returned) and a new active one.
async fn retired_key(d: &Daemon) -> (custos_client::Client, String) {
    let c = d.client().await;
    c.create_keyset(spec("as-id", "ES256", &["id_token"]))
        .await
        .expect("create");
    let old = c.get_keyset("as-id").await.expect("ks").versions[0]
        .kid
        .clone();
    c.rotate("as-id", true).await.expect("rotate");
    (c, old)
}

/// A daemon whose socket the admins' uids can reach (group 65534, in the
/// shared directory), with `toml` and the three admins' access rules.
async fn dual_control_daemon(hsm: &Hsm, shared: &Path, toml: &str) -> Daemon {
    Daemon::start_with(
        hsm,
        DaemonConfig {
            socket_dir: Some(shared.to_path_buf()),
            server_toml: "socket_mode = \"0660\"\nsocket_group = \"65534\"\n".into(),
            extra_toml: format!("{toml}{}", admins()),
            ..DaemonConfig::default()
        },
    )
    .await
}

fn request_id(o: &Output) -> String {
    let text = out(o);
    let at = text.find("request r-").expect("a request id") + "request ".len();
    text[at..at + 18].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destroy_needs_two_other_peoples_approval_of_the_exact_request() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let audit = hsm.dir.path().join("audit.jsonl");
    let d = dual_control_daemon(
        &hsm,
        shared.path(),
        &format!(
            "\n[audit]\nfile = \"{}\"\n\n[dual_control]\noperations = [\"destroy\", \"disable\"]\napprovals = 2\nttl = \"1h\"\n",
            audit.display()
        ),
    )
    .await;
    let (_, old) = retired_key(&d).await;
    let socket = d.socket.clone();
    let as_ = |uid: u32, args: &[&str]| as_uid(uid, &cli, &socket, args);
    let keys_on_device = || {
        hsm.pkcs11_tool(&["--list-objects", "--type", "privkey"])
            .matches("label:")
            .count()
    };
    assert_eq!(keys_on_device(), 2);

    // uid 1001 asks: held back (exit 3), nothing destroyed.
    let asked = as_(
        1001,
        &["keyset", "destroy", "as-id", "--kid", &old, "--yes"],
    );
    assert_eq!(asked.status.code(), Some(3), "{}", out(&asked));
    let id = request_id(&asked);
    assert_eq!(keys_on_device(), 2);
    let show = as_(1002, &["requests", "show", &id]);
    assert!(show.status.success(), "{}", out(&show));
    let shown: Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["kid"], old.as_str());
    assert_eq!(shown["requested_by"], "uid:1001");
    let digest = shown["digest"].as_str().expect("digest").to_string();

    // The requester cannot approve.
    let own = as_(1001, &["requests", "approve", &id, "--digest", &digest]);
    assert_eq!(own.status.code(), Some(1));
    assert!(
        out(&own).contains("PermissionDenied") && out(&own).contains("requester"),
        "{}",
        out(&own)
    );
    // An approval of another digest (the request as someone else saw it) is refused.
    let changed = as_(
        1002,
        &["requests", "approve", &id, "--digest", &"0".repeat(64)],
    );
    assert_eq!(changed.status.code(), Some(1));
    assert!(
        out(&changed).contains("not the one you approved"),
        "{}",
        out(&changed)
    );
    // The first approval: not enough yet.
    let first = as_(1002, &["requests", "approve", &id, "--digest", &digest]);
    assert!(first.status.success(), "{}", out(&first));
    assert!(out(&first).contains("1 of 2"), "{}", out(&first));
    assert_eq!(keys_on_device(), 2);
    // The same approver twice counts once.
    let twice = as_(1002, &["requests", "approve", &id, "--digest", &digest]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(out(&twice).contains("already"), "{}", out(&twice));
    assert_eq!(keys_on_device(), 2);
    // A pending request and its approvals survive a restart (they live in
    // the manifest). This test's TTL is an hour, so the restart's own time
    // cannot expire it.
    let mut d = d;
    d.restart().await;
    let c = d.client().await;
    let kept = c.get_request(&id).await.expect("kept");
    assert_eq!(kept.state, "pending");
    assert_eq!(kept.digest, digest);
    assert_eq!(kept.approvals.len(), 1, "{kept:?}");
    // The second distinct approver: carried out, exactly as requested.
    let second = as_(1003, &["requests", "approve", &id, "--digest", &digest]);
    assert!(second.status.success(), "{}", out(&second));
    assert!(out(&second).contains("done"), "{}", out(&second));
    assert_eq!(keys_on_device(), 1);
    let ks = c.get_keyset("as-id").await.expect("ks");
    let v = ks
        .versions
        .iter()
        .find(|v| v.kid == old)
        .expect("old version");
    assert_eq!(v.state, "destroyed");
    assert!(v.transitions.last().expect("t").by.contains(&id));
    // Decided: no further approval.
    let late = as_(1001, &["requests", "approve", &id, "--digest", &digest]);
    assert_eq!(late.status.code(), Some(1));

    // Every step is in the audit log.
    let lines = audit_lines(&audit);
    let ops: Vec<(String, String)> = lines
        .iter()
        .filter(|l| {
            l["operation"]
                .as_str()
                .is_some_and(|o| o.starts_with("request_"))
        })
        .map(|l| {
            (
                l["operation"].as_str().unwrap().to_string(),
                l["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let count =
        |op: &str, outcome: &str| ops.iter().filter(|(o, r)| o == op && r == outcome).count();
    assert_eq!(count("request_submitted", "ok"), 1, "{ops:?}");
    assert_eq!(
        count("request_approved", "error"),
        4,
        "self, changed, twice, late: {ops:?}"
    );
    assert_eq!(count("request_approved", "ok"), 1, "{ops:?}");
    assert_eq!(count("request_carried_out", "ok"), 1, "{ops:?}");
    let carried = lines
        .iter()
        .find(|l| l["operation"] == "request_carried_out")
        .expect("carried out");
    assert_eq!(carried["caller"]["uid"], 1003);
    assert!(carried["detail"].as_str().unwrap().contains("uid:1002"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_is_never_carried_out() {
    let hsm = Hsm::new();
    let (shared, cli) = shared_dir();
    let d = dual_control_daemon(
        &hsm,
        shared.path(),
        "\n[dual_control]\noperations = [\"disable\"]\napprovals = 1\nttl = \"2s\"\n",
    )
    .await;
    let (c, old) = retired_key(&d).await;
    let asked = as_uid(
        1001,
        &cli,
        &d.socket,
        &["keyset", "disable", "as-id", "--kid", &old],
    );
    assert_eq!(asked.status.code(), Some(3), "{}", out(&asked));
    let id = request_id(&asked);
    let digest = c.get_request(&id).await.expect("request").digest;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(c.get_request(&id).await.expect("request").state, "expired");
    let late = as_uid(
        1002,
        &cli,
        &d.socket,
        &["requests", "approve", &id, "--digest", &digest],
    );
    assert_eq!(late.status.code(), Some(1));
    assert!(out(&late).contains("expired"), "{}", out(&late));
    let ks = c.get_keyset("as-id").await.expect("ks");
    assert_eq!(
        ks.versions.iter().find(|v| v.kid == old).expect("v").state,
        "retired"
    );
}

/// `custos audit verify` on `files` (with the JWKS file): exit code and output.
fn verify(d: &Daemon, files: &[&Path], jwks: &Path) -> (i32, String) {
    let mut args: Vec<String> = vec!["audit".into(), "verify".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.push("--jwks".into());
    args.push(jwks.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = d.cli(&refs, None);
    (o.status.code().unwrap_or(-1), out(&o))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_verifies_untouched_and_every_tampering_is_named() {
    let hsm = Hsm::new();
    let dir = hsm.dir.path().to_path_buf();
    let audit = dir.join("audit.jsonl");
    let mut d = Daemon::start_with(
        &hsm,
        DaemonConfig {
            extra_toml: format!(
                "\n[audit]\nfile = \"{}\"\nkeyset = \"audit-seal\"\ncheckpoint_every = \"1s\"\n",
                audit.display()
            ),
            ..DaemonConfig::default()
        },
    )
    .await;
    let c = d.client().await;
    c.create_keyset(spec("audit-seal", "ES256", &["audit"]))
        .await
        .expect("audit keyset");
    c.create_keyset(spec("as-gen", "ES256", &["generic"]))
        .await
        .expect("keyset");
    for _ in 0..5 {
        c.sign_jwt("as-gen", "generic", None, "{}")
            .await
            .expect("sign");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // The audit key rotates; the log file is moved away and reopened (logrotate).
    c.rotate("audit-seal", true)
        .await
        .expect("rotate the audit key");
    let rotated = dir.join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).expect("move");
    let pid = d.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill")
        .success());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for _ in 0..5 {
        c.sign_jwt("as-gen", "generic", None, "{}")
            .await
            .expect("sign");
    }
    // Stopping writes the final checkpoint; the JWKS holds both audit keys.
    let jwks = dir.join("audit-jwks.json");
    std::fs::write(&jwks, c.jwks(Some("audit-seal")).await.expect("jwks")).expect("write");
    d.restart().await;
    let _ = d.client().await;
    d.stop();

    let kids: std::collections::BTreeSet<String> = [audit_lines(&rotated), audit_lines(&audit)]
        .concat()
        .iter()
        .filter(|l| l["operation"] == "audit_checkpoint")
        .filter_map(|l| l["kid"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        kids.len(),
        2,
        "checkpoints signed before and after the key rotation"
    );
    let (code, text) = verify(&d, &[&rotated, &audit], &jwks);
    assert_eq!(
        code, 0,
        "an untouched log (two files, two audit keys) verifies: {text}"
    );
    assert!(text.contains("INTACT"), "{text}");
    // The second file alone is not the whole chain's start, but it verifies on its own terms.
    let (code, text) = verify(&d, &[&audit], &jwks);
    assert_eq!(code, 0, "{text}");

    let original = std::fs::read_to_string(&rotated).expect("log");
    let all: Vec<&str> = original.lines().collect();
    // The part of the first file up to its last checkpoint: sealed, so it
    // verifies on its own, and every change to it must be named.
    let last_checkpoint = all
        .iter()
        .rposition(|l| l.contains("\"audit_checkpoint\""))
        .expect("a checkpoint in the first file");
    let lines: Vec<&str> = all[..=last_checkpoint].to_vec();
    let tampered = dir.join("tampered.jsonl");
    let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
    std::fs::write(&tampered, join(&lines)).expect("write");
    let (code, report) = verify(&d, &[&tampered], &jwks);
    assert_eq!(code, 0, "the sealed part verifies alone: {report}");
    let check = |text: String, expect: &str| {
        std::fs::write(&tampered, text).expect("write");
        let (code, report) = verify(&d, &[&tampered], &jwks);
        assert_eq!(code, 1, "tampering must fail: {report}");
        assert!(report.contains(expect), "expected {expect:?} in:\n{report}");
    };
    // Edited: a signing line's outcome changed.
    let target = lines
        .iter()
        .position(|l| l.contains("\"sign_jwt\""))
        .expect("a signing line");
    assert!(target + 2 < lines.len(), "room after the target");
    let mut edited = lines.clone();
    let changed = lines[target].replace("\"outcome\":\"ok\"", "\"outcome\":\"error\"");
    assert_ne!(changed, lines[target]);
    edited[target] = &changed;
    check(join(&edited), "was edited or replaced");
    // Deleted.
    let mut deleted = lines.clone();
    deleted.remove(target);
    check(join(&deleted), "missing: deleted");
    // Reordered.
    let mut reordered = lines.clone();
    reordered.swap(target, target + 1);
    check(join(&reordered), "reordered");
    // Truncated in the middle of a line.
    let whole = join(&lines);
    check(whole[..whole.len() - 20].to_string(), "truncated");
    // Truncated at a line boundary, every checkpoint after the last event gone:
    // the tail is unsealed. (Checkpoints are written every second even when no
    // event came in, so a slow run can end in two checkpoints in a row; cutting
    // one alone would leave a file that is rightly still sealed.)
    let mut unsealed = &lines[..lines.len() - 1];
    while unsealed
        .last()
        .is_some_and(|l| l.contains("\"audit_checkpoint\""))
    {
        unsealed = &unsealed[..unsealed.len() - 1];
    }
    assert!(!unsealed.is_empty(), "events before the last checkpoint");
    check(join(unsealed), "not yet sealed");
}
