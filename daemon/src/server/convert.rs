//! Domain types to proto messages.

use crate::keyring::keyset::Keyset;
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
        versions: ks
            .versions
            .iter()
            .map(|v| pb::KeyVersion {
                kid: v.kid.clone(),
                state: v.state.as_str().into(),
                created_at: v.created_at,
            })
            .collect(),
    }
}
