//! Prometheus metrics (`prometheus-client`), served on an opt-in HTTP
//! listener (`[metrics] listen`).
//!
//! One process-wide registry, so any module counts without plumbing. Labels
//! are bounded: keyset names appear only for operations that succeeded (a
//! keyset must exist for that), RPC names only for methods Custos serves,
//! and nothing carries a token, a claim, a caller identity or a secret.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
    keyset: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rpc {
    rpc: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcName {
    rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Backend {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolFigure {
    backend: String,
    figure: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeviceCall {
    backend: String,
    alg: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyState {
    keyset: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Keyset {
    keyset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

type Seconds = Family<RpcName, Histogram, fn() -> Histogram>;
type DeviceSeconds = Family<DeviceCall, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 100 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Every metric Custos exports.
struct Metrics {
    registry: Registry,
    operations: Family<Operation, Counter>,
    rpcs: Family<Rpc, Counter>,
    rpc_seconds: Seconds,
    device_seconds: DeviceSeconds,
    device_timeouts: Family<Backend, Counter>,
    backend_up: Family<Backend, Gauge>,
    backend_threads: Family<Backend, Gauge>,
    pool: Family<PoolFigure, Gauge>,
    keys: Family<KeyState, Gauge>,
    next_transition: Family<Keyset, Gauge>,
    quarantined: Gauge,
    audit_failures: Counter,
    rate_limited: Counter,
    replay_refused: Counter,
    replay_entries: Gauge,
    reloads: Family<Outcome, Counter>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

fn m() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let mut r = Registry::default();
        let operations = Family::<Operation, Counter>::default();
        r.register(
            "custos_operations",
            "Audited operations by operation, keyset (successes only) and outcome",
            operations.clone(),
        );
        let rpcs = Family::<Rpc, Counter>::default();
        r.register(
            "custos_grpc_requests",
            "gRPC requests by method and status code",
            rpcs.clone(),
        );
        let rpc_seconds: Seconds = Family::new_with_constructor(latency);
        r.register(
            "custos_grpc_request_duration_seconds",
            "gRPC request latency until the response headers, by method",
            rpc_seconds.clone(),
        );
        let device_seconds: DeviceSeconds = Family::new_with_constructor(latency);
        r.register(
            "custos_device_call_duration_seconds",
            "Latency of signing and decryption calls into a key device, by backend and algorithm",
            device_seconds.clone(),
        );
        let device_timeouts = Family::<Backend, Counter>::default();
        r.register(
            "custos_device_call_timeouts",
            "Device calls answered UNAVAILABLE: past call_timeout, or no free thread or session",
            device_timeouts.clone(),
        );
        let backend_up = Family::<Backend, Gauge>::default();
        r.register(
            "custos_backend_up",
            "1 when the backend answered its last probe, 0 when not",
            backend_up.clone(),
        );
        let backend_threads = Family::<Backend, Gauge>::default();
        r.register(
            "custos_backend_calls_in_flight",
            "Device calls running on a backend now (inline and on helper threads)",
            backend_threads.clone(),
        );
        let pool = Family::<PoolFigure, Gauge>::default();
        r.register(
            "custos_session_pool_sessions",
            "PKCS#11 session pool by figure: size (the most it opens), open, in_use, waiters",
            pool.clone(),
        );
        let keys = Family::<KeyState, Gauge>::default();
        r.register(
            "custos_keys",
            "Key versions by keyset and state",
            keys.clone(),
        );
        let next_transition = Family::<Keyset, Gauge>::default();
        r.register(
            "custos_keyset_next_transition_seconds",
            "Seconds until the keyset's next scheduled transition (negative: overdue)",
            next_transition.clone(),
        );
        let quarantined = Gauge::default();
        r.register(
            "custos_keysets_quarantined",
            "Keysets withheld because their manifest entry does not match the device",
            quarantined.clone(),
        );
        let audit_failures = Counter::default();
        r.register(
            "custos_audit_write_failures",
            "Audit writes that failed or were not done in time (lines lost or operations refused)",
            audit_failures.clone(),
        );
        let rate_limited = Counter::default();
        r.register(
            "custos_rate_limited",
            "Requests refused by [limits] rate_per_second",
            rate_limited.clone(),
        );
        let replay_refused = Counter::default();
        r.register(
            "custos_replay_refused",
            "DPoP proofs and client assertions refused as replays",
            replay_refused.clone(),
        );
        let replay_entries = Gauge::default();
        r.register(
            "custos_replay_cache_entries",
            "jti values held by the replay cache",
            replay_entries.clone(),
        );
        let reloads = Family::<Outcome, Counter>::default();
        r.register(
            "custos_config_reloads",
            "SIGHUP reloads by outcome (ok, refused)",
            reloads.clone(),
        );
        // A gauge rather than an OpenMetrics info metric: promtool and the
        // Prometheus text format know no "info" type.
        let build = Family::<Version, Gauge>::default();
        build
            .get_or_create(&Version {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        r.register("custos_build_info", "The custosd build (always 1)", build);
        Metrics {
            registry: r,
            operations,
            rpcs,
            rpc_seconds,
            device_seconds,
            device_timeouts,
            backend_up,
            backend_threads,
            pool,
            keys,
            next_transition,
            quarantined,
            audit_failures,
            rate_limited,
            replay_refused,
            replay_entries,
            reloads,
        }
    })
}

/// The OpenMetrics text exposition.
pub(crate) fn encode() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &m().registry).is_err() {
        out.clear();
    }
    out
}

/// The same metrics in the Prometheus text format 0.0.4, for scrapers that
/// do not ask for OpenMetrics (and for `promtool check metrics`): a
/// counter's HELP and TYPE name its `_total` samples, and there is no
/// `# EOF` or `# UNIT`.
pub(crate) fn encode_text() -> String {
    to_text_format(&encode())
}

fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// One audited operation. The keyset is kept only for successes, so callers
/// naming keysets that do not exist cannot grow the label set.
pub(crate) fn operation(operation: &str, keyset: Option<&str>, outcome: &str) {
    let keyset = if outcome == "ok" {
        keyset.unwrap_or("")
    } else {
        ""
    };
    m().operations
        .get_or_create(&Operation {
            operation: operation.into(),
            keyset: keyset.into(),
            outcome: outcome.into(),
        })
        .inc();
}

/// One gRPC request: `rpc` is the method name (or `unknown`), `code` the
/// status code's name.
pub(crate) fn rpc(rpc: &str, code: &str, took: Duration) {
    m().rpcs
        .get_or_create(&Rpc {
            rpc: rpc.into(),
            code: code.into(),
        })
        .inc();
    m().rpc_seconds
        .get_or_create(&RpcName { rpc: rpc.into() })
        .observe(took.as_secs_f64());
}

/// One device call on `backend` with a key of algorithm `alg`; `timed_out`
/// when it passed its deadline.
pub(crate) fn device_call(backend: &str, alg: &str, took: Duration, timed_out: bool) {
    m().device_seconds
        .get_or_create(&DeviceCall {
            backend: backend.into(),
            alg: alg.into(),
        })
        .observe(took.as_secs_f64());
    if timed_out {
        m().device_timeouts
            .get_or_create(&Backend {
                backend: backend.into(),
            })
            .inc();
    }
}

/// A backend's session pool figures.
pub(crate) fn pool(backend: &str, stats: crate::backend::PoolStats) {
    for (figure, n) in [
        ("size", stats.size),
        ("open", stats.open),
        ("in_use", stats.in_use),
        ("waiters", stats.waiters),
    ] {
        m().pool
            .get_or_create(&PoolFigure {
                backend: backend.into(),
                figure: figure.into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// A backend's probe result and calls in flight.
pub(crate) fn backend(backend: &str, up: bool, in_flight: usize) {
    let label = Backend {
        backend: backend.into(),
    };
    m().backend_up.get_or_create(&label).set(i64::from(up));
    m().backend_threads
        .get_or_create(&label)
        .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
}

/// The keyring's state: versions by keyset and state, seconds to each
/// keyset's next transition, quarantined keysets. Replaces what was there.
pub(crate) fn keyring(
    keys: &[(String, &'static str, i64)],
    next: &[(String, i64)],
    quarantined: usize,
) {
    m().keys.clear();
    for (keyset, state, n) in keys {
        m().keys
            .get_or_create(&KeyState {
                keyset: keyset.clone(),
                state: (*state).into(),
            })
            .set(*n);
    }
    m().next_transition.clear();
    for (keyset, secs) in next {
        m().next_transition
            .get_or_create(&Keyset {
                keyset: keyset.clone(),
            })
            .set(*secs);
    }
    m().quarantined
        .set(i64::try_from(quarantined).unwrap_or(i64::MAX));
}

/// An audit write that failed or was not done in time.
pub(crate) fn audit_failure() {
    m().audit_failures.inc();
}

/// A request refused by the rate limit.
pub(crate) fn rate_limited() {
    m().rate_limited.inc();
}

/// A replayed `jti`, refused.
pub(crate) fn replay_refused() {
    m().replay_refused.inc();
}

/// The replay cache's size.
pub(crate) fn replay_entries(n: usize) {
    m().replay_entries.set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// A SIGHUP reload, applied or refused.
pub(crate) fn reload(applied: bool) {
    m().reloads
        .get_or_create(&Outcome {
            outcome: if applied { "ok" } else { "refused" }.into(),
        })
        .inc();
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub(crate) fn spawn_server(listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let openmetrics = req
                            .headers()
                            .get(hyper::header::ACCEPT)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|a| a.contains("application/openmetrics-text"));
                        let response = if req.method() == hyper::Method::GET
                            && req.uri().path() == "/metrics"
                        {
                            let (kind, body) = if openmetrics {
                                (
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                    encode(),
                                )
                            } else {
                                ("text/plain; version=0.0.4; charset=utf-8", encode_text())
                            };
                            Response::builder()
                                .header("content-type", kind)
                                .body(Full::new(Bytes::from(body)))
                        } else {
                            Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"only GET /metrics\n")))
                        };
                        Ok::<_, std::convert::Infallible>(response.unwrap_or_default())
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(io, service);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_by_their_samples_in_the_text_format() {
        let om = "# HELP a_ops Ops.\n# TYPE a_ops counter\na_ops_total{x=\"1\"} 2\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            super::to_text_format(om),
            "# HELP a_ops_total Ops.\n# TYPE a_ops_total counter\na_ops_total{x=\"1\"} 2\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
