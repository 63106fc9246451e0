//! A tower layer that counts every gRPC request by method and status code
//! and times it until the response headers (`custos_grpc_requests_total`,
//! `custos_grpc_request_duration_seconds`). Methods Custos does not serve
//! are counted as `unknown`, so made-up paths cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::http;

/// Wraps the router's service.
#[derive(Debug, Clone, Default)]
pub(crate) struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The wrapped service.
#[derive(Debug, Clone)]
pub(crate) struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let started = Instant::now();
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await;
            if let Ok(r) = &response {
                // A failure's status is in the headers (trailers-only
                // response); a success's comes in the trailers, later.
                let code = r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                let rpc = if code == tonic::Code::Unimplemented {
                    "unknown"
                } else {
                    method.as_str()
                };
                crate::metrics::rpc(rpc, &format!("{code:?}"), started.elapsed());
            }
            response
        })
    }
}
