//! The gRPC edge: services that turn proto messages into checked domain
//! calls, identify and check every caller first, and map domain errors to
//! statuses (`status.rs`, the only place that does). Nothing below this
//! folder knows about tonic.

mod caller;
mod convert;
mod keys;
mod signer;
mod status;
mod verifier;

use crate::config::VerifyConfig;
use crate::keyring::Keyring;
use custos_proto::v1::key_admin_server::KeyAdminServer;
use custos_proto::v1::signer_server::SignerServer;
use custos_proto::v1::verifier_server::VerifierServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

/// Serves every Custos service, health and reflection on `listener` until
/// `shutdown` resolves, then drains in-flight calls.
///
/// # Errors
/// A transport failure, as text.
pub async fn serve(
    keyring: Arc<Keyring>,
    rules: VerifyConfig,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let gate = caller::Gate::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<KeyAdminServer<keys::KeyAdminService>>()
        .await;
    reporter
        .set_serving::<SignerServer<signer::SignerService>>()
        .await;
    reporter
        .set_serving::<VerifierServer<verifier::VerifierService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(custos_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("building reflection: {e}"))?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(KeyAdminServer::new(keys::KeyAdminService {
            keyring: keyring.clone(),
            gate: gate.clone(),
        }))
        .add_service(VerifierServer::new(verifier::VerifierService {
            keyring: keyring.clone(),
            gate: gate.clone(),
            rules,
            keys: Arc::new(crate::jose::verify::KeyCache::default()),
            replay: Arc::new(crate::binding::replay::ReplayCache::new(
                rules.replay_cache_entries,
            )),
        }))
        .add_service(SignerServer::new(signer::SignerService { keyring, gate }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| format!("gRPC server failed: {e}"))
}
