//! The daemon's log (stderr, `tracing`), with a filter that a reload can
//! replace: `CUSTOS_LOG` at start, else `[log] level`, else the default.

use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The filter when neither `CUSTOS_LOG` nor `[log] level` says otherwise
/// (cryptoki logs an ERROR for every vendor mechanism it has no name for).
pub(crate) const DEFAULT: &str = "info,tss_esapi=warn,cryptoki::mechanism=off";

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
static FROM_ENV: OnceLock<bool> = OnceLock::new();

/// Installs the subscriber. Call once, first thing in `main`.
pub fn init() {
    let from_env = EnvFilter::try_from_env("CUSTOS_LOG").ok();
    let _ = FROM_ENV.set(from_env.is_some());
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(DEFAULT));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = HANDLE.set(handle);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
}

/// Checks a `[log] level` filter without applying it.
///
/// # Errors
/// The filter's syntax error.
pub(crate) fn parse(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(level).map_err(|e| format!("[log] level {level:?}: {e}"))
}

/// Puts `level` in force, unless `CUSTOS_LOG` was set at start (the
/// environment wins, so an operator debugging by hand is not overridden).
///
/// # Errors
/// A bad filter, or a subscriber that cannot be reloaded.
pub(crate) fn apply(level: &str) -> Result<bool, String> {
    if FROM_ENV.get().copied().unwrap_or(false) {
        return Ok(false);
    }
    let filter = parse(level)?;
    match HANDLE.get() {
        Some(h) => h
            .reload(filter)
            .map(|()| true)
            .map_err(|e| format!("cannot change the log filter: {e}")),
        None => Ok(false),
    }
}
