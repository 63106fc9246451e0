//! The gRPC edge: services that turn proto messages into checked domain
//! calls, identify and check every caller first (`caller.rs`), audit, and map
//! domain errors to statuses (`status.rs`, the only place that does). Nothing
//! below this folder knows about tonic.
//!
//! The same services are served on the Unix socket and, when configured, on
//! a TCP listener with mutual TLS (`tls.rs`).

mod caller;
mod convert;
mod health;
mod http_messages;
mod keys;
mod requests;
mod rpc_metrics;
mod signer;
mod status;
pub(crate) mod tls;
mod tls_handshake;
pub(crate) mod tls_key;
mod verifier;

use crate::audit::Auditor;
use crate::config::{LimitsConfig, VerifyConfig};
use crate::keyring::Keyring;
pub(crate) use caller::{Policy, PolicyCell};
use custos_proto::v1::key_admin_server::KeyAdminServer;
use custos_proto::v1::signer_server::SignerServer;
use custos_proto::v1::verifier_server::VerifierServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;

/// Everything the services need besides the keyring.
#[derive(Debug)]
pub(crate) struct ServeOptions {
    /// Verification tunables.
    pub verify: VerifyConfig,
    /// Access rules, owner rights and rate limits; replaced on SIGHUP.
    pub policy: PolicyCell,
    /// Request limits (sizes and batch length; the rates come from `policy`).
    pub limits: LimitsConfig,
    /// The audit log.
    pub audit: Arc<Auditor>,
    /// The optional mutual-TLS TCP listener and its settings.
    pub tls: Option<(TcpListener, Arc<tls::Tls>)>,
    /// Longest a request may run (DEADLINE_EXCEEDED after).
    pub request_timeout: std::time::Duration,
    /// Concurrent requests per connection.
    pub max_concurrent_streams: u32,
}

/// Serves every Custos service, health and reflection on `listener` (and the
/// TLS listener, if any) until `shutdown` resolves, then drains in-flight calls.
///
/// # Errors
/// A transport failure, as text.
pub(crate) async fn serve(
    keyring: Arc<Keyring>,
    options: ServeOptions,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let gate = caller::Gate::new(options.policy, options.audit);
    let max = options.limits.max_request_bytes;
    let verify_keys = Arc::new(crate::jose::verify::KeyCache::default());
    let replay = Arc::new(crate::binding::replay::ReplayCache::new(
        options.verify.replay_partition_entries,
        options.verify.replay_cache_entries,
    ));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<KeyAdminServer<keys::KeyAdminService>>()
        .await;
    health_reporter
        .set_serving::<SignerServer<signer::SignerService>>()
        .await;
    health_reporter
        .set_serving::<VerifierServer<verifier::VerifierService>>()
        .await;
    for name in keyring.guards().keys() {
        health_reporter
            .set_service_status(
                health::backend_service(name),
                tonic_health::ServingStatus::Serving,
            )
            .await;
    }
    let health_task = health::spawn(keyring.clone(), health_reporter.clone());
    type Layered =
        tower::layer::util::Stack<rpc_metrics::RpcMetricsLayer, tower::layer::util::Identity>;
    let router = || -> Result<tonic::transport::server::Router<Layered>, String> {
        // Reflection in both versions: v1, and v1alpha for the clients that
        // still speak only it (Python's grpc_reflection, older grpcurl).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(custos_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| format!("building reflection: {e}"))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| format!("building reflection: {e}"))?;
        Ok(tonic::transport::Server::builder()
            .layer(rpc_metrics::RpcMetricsLayer)
            .timeout(options.request_timeout)
            .max_concurrent_streams(options.max_concurrent_streams)
            .add_service(health.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                KeyAdminServer::new(keys::KeyAdminService {
                    keyring: keyring.clone(),
                    gate: gate.clone(),
                })
                .max_decoding_message_size(max),
            )
            .add_service(
                VerifierServer::new(verifier::VerifierService {
                    keyring: keyring.clone(),
                    gate: gate.clone(),
                    rules: options.verify,
                    keys: verify_keys.clone(),
                    replay: replay.clone(),
                })
                .max_decoding_message_size(max),
            )
            .add_service(
                SignerServer::new(signer::SignerService {
                    keyring: keyring.clone(),
                    gate: gate.clone(),
                    max_batch: options.limits.max_batch,
                })
                .max_decoding_message_size(max),
            ))
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let unix = router()?
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopped(stop_rx.clone()));
    let tcp = match options.tls {
        Some((tcp, config)) => Some(
            router()?
                .serve_with_incoming_shutdown(tls::incoming(tcp, config), stopped(stop_rx.clone())),
        ),
        None => None,
    };
    let signal = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let tcp = async move {
        match tcp {
            Some(t) => t.await,
            None => Ok(()),
        }
    };
    let (_, unix_result, tcp_result) = tokio::join!(signal, unix, tcp);
    health_task.abort();
    unix_result.map_err(|e| format!("gRPC server (Unix socket) failed: {e}"))?;
    tcp_result.map_err(|e| format!("gRPC server (TLS) failed: {e}"))
}
