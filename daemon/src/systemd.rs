//! systemd integration: readiness and reload notifications (`sd_notify`),
//! the watchdog, and socket activation (`LISTEN_FDS`). Each is a no-op when
//! systemd did not ask for it (no `NOTIFY_SOCKET`, no `WATCHDOG_USEC`, no
//! `LISTEN_FDS`), so the daemon runs the same under any supervisor.

use sd_notify::NotifyState;
use std::os::fd::{FromRawFd, RawFd};

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// `READY=1`: the daemon serves.
pub(crate) fn ready() {
    notify(&[NotifyState::Ready]);
}

/// `RELOADING=1` (with `MONOTONIC_USEC`, as systemd's reload protocol wants).
pub(crate) fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// `STOPPING=1`: draining in-flight calls.
pub(crate) fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// When systemd set `WatchdogSec`, sends `WATCHDOG=1` at half the interval
/// from the runtime (so a wedged runtime stops the pings and systemd restarts
/// the daemon).
pub(crate) fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) else {
        return;
    };
    let every = (interval / 2).max(std::time::Duration::from_millis(10));
    tracing::info!(
        interval_ms = every.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// The listening Unix socket systemd passed (socket activation), if any.
///
/// # Errors
/// When `LISTEN_FDS` names more than one socket or one that is not a
/// listening Unix stream socket.
#[allow(unsafe_code)]
pub(crate) fn activated_unix_listener() -> Result<Option<std::os::unix::net::UnixListener>, String>
{
    let fds: Vec<RawFd> = match sd_notify::listen_fds() {
        Ok(fds) => fds.collect(),
        Err(e) => return Err(format!("LISTEN_FDS: {e}")),
    };
    match fds.as_slice() {
        [] => Ok(None),
        [fd] => {
            check_unix_stream_listener(*fd)?;
            // SAFETY: systemd hands this descriptor to this process, and
            // nothing else in it owns or closes it.
            let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(*fd) };
            listener
                .set_nonblocking(true)
                .map_err(|e| format!("the activated socket: {e}"))?;
            Ok(Some(listener))
        }
        more => Err(format!(
            "systemd passed {} sockets; custosd takes one (ListenStream= a Unix socket path)",
            more.len()
        )),
    }
}

#[allow(unsafe_code)]
fn check_unix_stream_listener(fd: RawFd) -> Result<(), String> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
    // SAFETY: fd is open for the life of this call (systemd passed it).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let ty = getsockopt(&borrowed, sockopt::SockType)
        .map_err(|e| format!("the activated descriptor {fd} is not a socket: {e}"))?;
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false);
    let addr: UnixAddr = getsockname(fd).map_err(|e| {
        format!("the activated socket {fd} is not a Unix socket ({e}); use ListenStream=/run/custos/custos.sock")
    })?;
    if ty != SockType::Stream || !listening {
        return Err(format!(
            "the activated socket {addr} is not a listening stream socket"
        ));
    }
    Ok(())
}
