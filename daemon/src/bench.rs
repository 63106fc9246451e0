//! `custosd bench`: the device's own ceiling. Signs with a keyset's key
//! directly, in process (no gRPC, no JOSE), using the same session pool as
//! the server, from N threads for a fixed time. `--no-pool` opens a session,
//! logs in, finds the key and signs for every operation instead, to show
//! what the pool saves.

use crate::keyring::{ActiveKey, Keyring};
use std::time::{Duration, Instant};

/// A typical ID token signing input (`header.payload`), ~330 bytes.
const SIGNING_INPUT: &[u8] = b"eyJraWQiOiJVZ0N2cjhwWVZRby1LZ0J2Y1ZfZWx1ak5KYTBFazNJbDAzWV9kdFdyZUI0IiwiYWxnIjoiRVMyNTYifQ.eyJpc3MiOiJodHRwczovL2FzLmJhbmsuZXhhbXBsZSIsInN1YiI6IjI0ODI4OTc2MTAwMSIsImF1ZCI6ImNsaWVudC1hcHAtMSIsImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJub25jZSI6Im4tMFM2X1d6QTJNaiIsImF1dGhfdGltZSI6MTcwMDAwMDAwMH0";

pub use custos_proto::bench::Report;

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keyset whose active key signs.
    pub keyset: String,
    /// Threads.
    pub concurrency: usize,
    /// How long.
    pub duration: Duration,
    /// Open, log in, find and sign per operation instead of using the pool.
    pub no_pool: bool,
}

fn active_key(keyring: &Keyring, name: &str) -> Result<ActiveKey, String> {
    let ks = keyring.keyset(name).map_err(|e| e.to_string())?;
    let purpose = *ks
        .purposes
        .first()
        .ok_or_else(|| format!("keyset {name} has no purpose"))?;
    keyring.active_key(name, purpose).map_err(|e| e.to_string())
}

/// Runs the benchmark on an opened keyring. Blocking.
///
/// # Errors
/// An unknown keyset, or a key that cannot sign even once.
pub fn run(keyring: &Keyring, opts: &Options) -> Result<Report, String> {
    let key = active_key(keyring, &opts.keyset)?;
    // --no-pool: the pool to bypass, looked up once (every worker's key is
    // a clone of this one, on the same backend).
    let unpooled = if opts.no_pool {
        let pool = key.backend.capabilities().pool.ok_or_else(|| {
            format!(
                "--no-pool: the {} backend has no session pool to bypass",
                key.backend.kind()
            )
        })?;
        key.backend.release_sessions();
        Some(pool)
    } else {
        None
    };
    let sign = |k: &ActiveKey| match unpooled {
        Some(pool) => pool.sign_unpooled(&k.key_ref, k.alg, SIGNING_INPUT),
        None => k.backend.sign(&k.key_ref, k.alg, SIGNING_INPUT),
    };
    sign(&key).map_err(|e| format!("the key cannot sign: {e}"))?;
    let start = Instant::now();
    let deadline = start + opts.duration;
    let results: Vec<(Vec<u64>, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..opts.concurrency.max(1))
            .map(|_| {
                let key = key.clone();
                let sign = &sign;
                scope.spawn(move || {
                    let (mut lat, mut errors) = (Vec::new(), 0u64);
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        match sign(&key) {
                            Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                            Err(_) => errors += 1,
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let errors = results.iter().map(|(_, e)| e).sum();
    let lat: Vec<u64> = results.into_iter().flat_map(|(l, _)| l).collect();
    let ops = lat.len() as u64;
    Ok(custos_proto::bench::report(
        lat,
        errors,
        ops,
        Duration::from_secs_f64(elapsed),
        opts.concurrency.max(1),
        1,
    ))
}
