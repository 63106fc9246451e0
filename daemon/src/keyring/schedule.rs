//! The rotation schedule as pure functions: which transitions of a keyset
//! are due at a given time, and when the next one is.

use super::keyset::{Keyset, VersionState};

/// A transition the schedule wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    /// Make this pending version active (its publish-ahead time has passed).
    Promote(String),
    /// Generate a new pending version (the active one nears its rotation period).
    Rotate,
    /// Age this retired version out: disabled, or destroyed with `auto_destroy`.
    Expire(String),
}

impl Due {
    /// A short name for logs and `keyset show`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Due::Promote(_) => "promote",
            Due::Rotate => "rotate",
            Due::Expire(_) => "expire",
        }
    }
}

/// Every transition due at `now`, with the time each became due, soonest first.
pub(crate) fn all(ks: &Keyset) -> Vec<(i64, Due)> {
    let p = ks.policy;
    let mut out = Vec::new();
    let pending: Vec<_> = ks
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Pending)
        .collect();
    if let Some(oldest) = pending.iter().min_by_key(|v| v.state_since()) {
        out.push((
            oldest.state_since().saturating_add(p.publish_ahead),
            Due::Promote(oldest.kid.clone()),
        ));
    }
    if let (Some(period), Some(active), true) = (p.rotation_period, ks.active(), pending.is_empty())
    {
        let since = active
            .entered(VersionState::Active)
            .unwrap_or(active.created_at);
        // Saturating: a manifest's durations are bounded when set, but a
        // file is input too, and a sum must never wrap into the past.
        out.push((
            since.saturating_add(period).saturating_sub(p.publish_ahead),
            Due::Rotate,
        ));
    }
    for v in ks
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Retired)
    {
        out.push((
            v.state_since().saturating_add(p.retain_for),
            Due::Expire(v.kid.clone()),
        ));
    }
    out.sort_by_key(|(t, _)| *t);
    out
}

/// The transitions due at `now`.
pub(crate) fn due(ks: &Keyset, now: i64) -> Vec<Due> {
    all(ks)
        .into_iter()
        .filter(|(t, _)| *t <= now)
        .map(|(_, d)| d)
        .collect()
}

/// The next scheduled transition, if any.
pub(crate) fn next(ks: &Keyset) -> Option<(i64, Due)> {
    all(ks).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Algorithm;
    use crate::backend::{KeyRef, PublicKey};
    use crate::keyring::keyset::{KeyVersion, Profile, Purpose};
    use crate::keyring::policy::Policy;

    fn version(kid: &str) -> KeyVersion {
        KeyVersion {
            kid: kid.into(),
            state: VersionState::Pending,
            created_at: 0,
            key_ref: KeyRef {
                id: "00".into(),
                label: "l".into(),
            },
            public: PublicKey::ed25519(&[0; 32]),
            history: vec![],
            certificate_chain: vec![],
        }
    }

    fn keyset(policy: Policy) -> Keyset {
        let mut ks = Keyset {
            name: "k".into(),
            alg: Algorithm::ES256,
            purposes: vec![Purpose::IdToken],
            backend: "b".into(),
            profile: Profile::Fapi2,
            issuer: None,
            max_token_lifetime: 60,
            created_at: 0,
            policy,
            versions: vec![],
        };
        ks.add_version(version("a"), true, 0, "test");
        ks
    }

    #[test]
    fn rotation_publishes_ahead_then_promotes_then_expires() {
        let policy = Policy {
            rotation_period: Some(100),
            publish_ahead: 10,
            retain_for: 60,
            auto_destroy: false,
        };
        let mut ks = keyset(policy);
        assert!(due(&ks, 89).is_empty());
        assert_eq!(due(&ks, 90), vec![Due::Rotate]);
        ks.add_version(version("b"), false, 90, "schedule");
        assert!(
            due(&ks, 99).is_empty(),
            "no second rotation while one is pending"
        );
        assert_eq!(due(&ks, 100), vec![Due::Promote("b".into())]);
        ks.activate("b", 100, "schedule").unwrap();
        assert_eq!(ks.active().unwrap().kid, "b");
        assert_eq!(next(&ks).unwrap().0, 160, "a's retention ends first");
        assert_eq!(due(&ks, 160), vec![Due::Expire("a".into())]);
    }

    #[test]
    fn manual_policy_schedules_nothing() {
        let ks = keyset(Policy::default());
        assert!(next(&ks).is_none());
    }

    /// Property: whatever the durations (even unchecked ones from a hostile
    /// manifest) and whatever the time, a retired key is never due to expire
    /// before its retention has run, and a pending key is never promoted
    /// before its publish-ahead time: the sums saturate, never wrap.
    #[test]
    fn no_duration_or_time_makes_a_transition_due_early() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let pick = |rng: &mut rand::rngs::StdRng| -> i64 {
            match rng.gen_range(0..4) {
                0 => rng.gen_range(0..=1_000),
                1 => rng.gen_range(0..=super::super::policy::MAX_DURATION),
                2 => i64::MAX - rng.gen_range(0..=1_000),
                _ => rng.gen_range(0..=i64::MAX),
            }
        };
        let mut expiries = 0;
        for _ in 0..20_000 {
            let t0 = rng.gen_range(0..=crate::numeric_date::MAX_TIME);
            let policy = Policy {
                rotation_period: Some(pick(&mut rng).max(1)),
                publish_ahead: pick(&mut rng),
                retain_for: pick(&mut rng),
                auto_destroy: true,
            };
            let mut ks = keyset(policy);
            ks.versions.clear();
            ks.add_version(version("a"), true, t0, "test");
            ks.add_version(version("b"), true, t0, "test");
            ks.add_version(version("c"), false, t0, "test");
            for (at, what) in all(&ks) {
                match what {
                    Due::Expire(_) => {
                        expiries += 1;
                        assert!(
                            at >= t0 && (policy.retain_for == 0 || at > t0),
                            "expire at {at} < retired at {t0} + {}",
                            policy.retain_for
                        )
                    }
                    Due::Promote(_) => assert!(at >= t0, "promote at {at} before {t0}"),
                    Due::Rotate => {}
                }
            }
            if policy.retain_for > 0 {
                assert!(
                    !due(&ks, t0).iter().any(|d| matches!(d, Due::Expire(_))),
                    "{policy:?} at {t0}"
                );
            }
        }
        assert!(
            expiries >= 20_000,
            "every case has a retired version: {expiries}"
        );
    }
}
