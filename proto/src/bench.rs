//! The figures of one benchmark run, shared by `custosd bench` (the device
//! directly) and `custos bench` (through the daemon), so both print the
//! same JSON and `tests/bench/run` reads one shape.

use serde::Serialize;
use std::time::Duration;

/// What a bench run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Tokens signed (or verified) per second.
    pub ops_per_sec: f64,
    /// Median latency of one call, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// 99.9th percentile latency, microseconds.
    pub p999_us: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Tokens signed (or verified) in all.
    pub ops: u64,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Tokens per call.
    pub batch: usize,
    /// Measured seconds.
    pub duration_s: f64,
}

/// Builds a report from per-call latencies (microseconds).
pub fn report(
    mut latencies: Vec<u64>,
    errors: u64,
    ops: u64,
    elapsed: Duration,
    concurrency: usize,
    batch: usize,
) -> Report {
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    Report {
        ops_per_sec: ops as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        errors,
        ops,
        concurrency,
        batch,
        duration_s: secs,
    }
}
