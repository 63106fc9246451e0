//! Domain types to proto messages.

use crate::keyring::keyset::Keyset;
use crate::keyring::schedule;
use custos_proto::v1 as pb;

/// A keyset as its proto message.
pub(crate) fn keyset(ks: &Keyset) -> pb::Keyset {
    pb::Keyset {
        name: ks.name.clone(),
        alg: ks.alg.as_str().into(),
        purposes: ks.purposes.iter().map(|p| p.as_str().into()).collect(),
        backend: ks.backend.clone(),
        profile: ks.profile.as_str().into(),
        created_at: ks.created_at,
        issuer: ks.issuer.clone().unwrap_or_default(),
        max_token_lifetime: ks.max_token_lifetime,
        published: ks.published(),
        backend_problem: String::new(),
        policy: Some(pb::Policy {
            rotation_period: ks.policy.rotation_period.unwrap_or(0),
            publish_ahead: ks.policy.publish_ahead,
            retain_for: ks.policy.retain_for,
            auto_destroy: ks.policy.auto_destroy,
        }),
        next_transition: schedule::next(ks).map(|(at, due)| pb::ScheduledTransition {
            at,
            action: due.name().into(),
            kid: match due {
                schedule::Due::Promote(k) | schedule::Due::Expire(k) => k,
                schedule::Due::Rotate => String::new(),
            },
        }),
        versions: ks
            .versions
            .iter()
            .map(|v| pb::KeyVersion {
                kid: v.kid.clone(),
                state: v.state.as_str().into(),
                created_at: v.created_at,
                transitions: v
                    .history
                    .iter()
                    .map(|t| pb::Transition {
                        from: t.from.map(|s| s.as_str().to_string()).unwrap_or_default(),
                        to: t.to.as_str().into(),
                        at: t.at,
                        by: t.by.clone(),
                    })
                    .collect(),
                certificate_chain_pem: crate::pki::chain_pem(&v.chain_der()),
                x5t_s256: v
                    .chain_der()
                    .first()
                    .map(|leaf| crate::pki::x5t_s256(leaf))
                    .unwrap_or_default(),
            })
            .collect(),
    }
}
