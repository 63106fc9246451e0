//! What `custos` prints: keysets, requests and tokens as text or JSON.

use custos_client::proto;
use serde_json::json;

pub(crate) fn request_json(r: &proto::PendingRequest) -> serde_json::Value {
    json!({
        "id": r.id, "state": r.state, "operation": r.operation, "keyset": r.keyset,
        "kid": (!r.kid.is_empty()).then_some(&r.kid),
        "parameters": serde_json::from_str::<serde_json::Value>(&r.operation_json).unwrap_or_default(),
        "requested_by": r.requested_by, "requested_at": r.requested_at, "expires_at": r.expires_at,
        "needed": r.needed,
        "approvals": r.approvals.iter().map(|a| json!({"by": a.by, "at": a.at})).collect::<Vec<_>>(),
        "outcome": (!r.outcome.is_empty()).then_some(&r.outcome),
        "digest": r.digest,
    })
}

pub(crate) fn keyset_json(ks: &proto::Keyset) -> serde_json::Value {
    json!({
        "name": ks.name,
        "alg": ks.alg,
        "purposes": ks.purposes,
        "backend": ks.backend,
        "backend_problem": (!ks.backend_problem.is_empty()).then_some(&ks.backend_problem),
        "profile": ks.profile,
        "created_at": ks.created_at,
        "issuer": ks.issuer,
        "max_token_lifetime": ks.max_token_lifetime,
        "policy": ks.policy.as_ref().map(|p| json!({
            "rotation_period": (p.rotation_period != 0).then_some(p.rotation_period),
            "publish_ahead": p.publish_ahead,
            "retain_for": p.retain_for,
            "auto_destroy": p.auto_destroy,
        })),
        "next_transition": ks.next_transition.as_ref().map(|t| json!({
            "at": t.at, "action": t.action, "kid": (!t.kid.is_empty()).then_some(&t.kid),
        })),
        "versions": ks.versions.iter().map(|v| json!({
            "kid": v.kid, "state": v.state, "created_at": v.created_at,
            "x5t#S256": (!v.x5t_s256.is_empty()).then_some(&v.x5t_s256),
            "transitions": v.transitions.iter().map(|t| json!({
                "from": (!t.from.is_empty()).then_some(&t.from), "to": t.to, "at": t.at, "by": t.by,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// A keyset after a change: one line for a person, the keyset with `--json`.
pub(crate) fn changed(json: bool, ks: &proto::Keyset, line: &str) {
    if json {
        print_json(&keyset_json(ks));
    } else {
        println!("{line}");
    }
}

/// A signed token: the compact token alone, or with `--json` `{token, kid, encrypted}`.
pub(crate) fn print_signed(json: bool, t: &proto::SignedToken) {
    if json {
        print_json(&json!({"token": t.token, "kid": t.kid, "encrypted": t.encrypted}));
    } else {
        println!("{}", t.token);
    }
}

pub(crate) fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

pub(crate) fn active_kid(ks: &proto::Keyset) -> &str {
    ks.versions
        .iter()
        .find(|v| v.state == "active")
        .map_or("-", |v| v.kid.as_str())
}

/// Whether the version's stored chain starts with the first certificate of `pem`.
pub(crate) fn pem_has_leaf(pem: &str, v: &proto::KeyVersion) -> bool {
    let first = |t: &str| {
        t.split("-----END CERTIFICATE-----")
            .next()
            .map(|b| b.split_whitespace().collect::<String>())
    };
    first(pem) == first(&v.certificate_chain_pem)
}
