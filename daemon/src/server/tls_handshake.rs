//! `SignTlsHandshake`: the gRPC side of TLS keysets. The rules (which side,
//! which scheme, which message shapes) are `fapi::tls`'s; this file checks
//! the caller, signs on the device and writes the audit line, which names
//! the handshake kind and the peer only as the caller describes it.

use super::caller::Caller;
use super::signer::SignerService;
use super::status::{audit_code, device, to_status};
use crate::audit::Event;
use crate::error::Error;
use crate::fapi::tls;
use crate::keyring::keyset::Purpose;
use custos_proto::v1 as pb;
use tonic::Status;

/// The longest peer description kept for the audit line.
const MAX_PEER: usize = 200;

/// The caller's peer text as the audit line may carry it: printable
/// characters only, at most [`MAX_PEER`] of them.
fn peer_text(peer: &str) -> String {
    peer.chars()
        .filter(|c| !c.is_control())
        .take(MAX_PEER)
        .collect()
}

impl SignerService {
    /// Signs a TLS handshake message with a TLS keyset's active key.
    pub(crate) async fn sign_tls(
        &self,
        caller: Caller,
        req: pb::SignTlsHandshakeRequest,
    ) -> Result<pb::SignTlsHandshakeResponse, Status> {
        let digest = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&req.message))
        };
        let keyset = req.keyset.clone();
        let peer = peer_text(&req.peer);
        let purpose = req
            .purpose
            .parse::<Purpose>()
            .map_err(|m| to_status(Error::invalid(m)));
        let result = match &purpose {
            Ok(p) => self.sign_tls_inner(*p, req).await,
            Err(e) => Err(e.clone()),
        };
        let (kid, outcome, detail) = match &result {
            Ok(r) if peer.is_empty() => (Some(r.kid.as_str()), "ok", r.message_kind.clone()),
            Ok(r) => (
                Some(r.kid.as_str()),
                "ok",
                format!("{}; peer {peer}", r.message_kind),
            ),
            Err(s) => (None, "error", audit_code(s)),
        };
        self.gate
            .audit
            .record(
                caller.to_json(),
                &Event {
                    operation: "sign_tls_handshake",
                    keyset: Some(&keyset),
                    kid,
                    purpose: purpose.as_ref().ok().map(|p| p.as_str()),
                    input_sha256: Some(digest),
                    outcome,
                    detail: Some(&detail),
                },
            )
            .await
            .map_err(to_status)?;
        result
    }

    async fn sign_tls_inner(
        &self,
        purpose: Purpose,
        req: pb::SignTlsHandshakeRequest,
    ) -> Result<pb::SignTlsHandshakeResponse, Status> {
        let key = self
            .keyring
            .active_key(&req.keyset, purpose)
            .map_err(to_status)?;
        if !req.kid.is_empty() && req.kid != key.kid {
            return Err(to_status(Error::FailedPrecondition(format!(
                "kid {} is not keyset {:?}'s active key (that is {}): present the active \
                 version's certificate (rotated or disabled?)",
                req.kid, req.keyset, key.kid
            ))));
        }
        let kind = tls::check(purpose, key.alg, &req.scheme, &req.message).map_err(to_status)?;
        let (kid, alg, guard) = (key.kid.clone(), key.alg, key.guard.clone());
        let message = req.message;
        let signature = device(&guard, alg, move || {
            let raw = key.sign(&message)?;
            tls::wire_signature(alg, raw)
        })
        .await?;
        Ok(pb::SignTlsHandshakeResponse {
            signature,
            kid,
            message_kind: kind.describe(purpose).into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_text_is_printable_and_bounded() {
        assert_eq!(
            peer_text("bank.example\n{\"forged\":1}"),
            "bank.example{\"forged\":1}"
        );
        assert_eq!(peer_text(&"x".repeat(500)).len(), MAX_PEER);
    }
}
