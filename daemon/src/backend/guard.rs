//! The watch kept on one backend, so a stuck device stops only its own
//! keysets: how many threads its calls hold (bounded), how many calls ran
//! past their deadline and have not come back yet, and what the last health
//! probe said. The async side (`server/status.rs`) runs each call on a
//! blocking thread under this watch and stops waiting at the deadline.

use super::KeyBackend;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The fewest threads one backend's calls may hold at once; a backend with
/// a larger session pool gets one thread per session, so a network HSM that
/// signs on 64 sessions in parallel is not held to 16. Past the limit, calls
/// wait for a thread (up to the call deadline), and are refused at once when
/// every thread is held by a call the device has not answered.
pub(crate) const MAX_THREADS: usize = 16;

/// The watch on one backend.
#[derive(Debug)]
pub struct DeviceGuard {
    /// The backend's name in the config.
    pub name: String,
    /// The backend itself.
    pub backend: Arc<dyn KeyBackend>,
    /// The deadline of one call.
    pub timeout: Duration,
    busy: AtomicUsize,
    inline_busy: AtomicUsize,
    inline_max: usize,
    max_threads: usize,
    overdue: AtomicUsize,
    /// The last device call's failure (UNAVAILABLE), until a call succeeds.
    call_error: Mutex<Option<String>>,
    /// Whether `call_error` is set (read without the lock on every call).
    failing: AtomicBool,
    probe_ok: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// Woken when a thread slot is given back.
    freed: tokio::sync::Notify,
}

/// A thread slot of one backend, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    guard: Arc<DeviceGuard>,
    inline: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counter = if self.inline {
            &self.guard.inline_busy
        } else {
            &self.guard.busy
        };
        counter.fetch_sub(1, Ordering::AcqRel);
        if !self.inline {
            self.guard.freed.notify_one();
        }
    }
}

impl DeviceGuard {
    /// A watch on `backend` named `name`.
    pub fn new(name: &str, backend: Arc<dyn KeyBackend>) -> Arc<Self> {
        // Inline calls run on the async workers: leave at least one worker
        // free for everything else (verification, health) if a device hangs.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = backend.capabilities().pool;
        let inline_max = if pool.is_some_and(|p| p.inline_calls()) {
            workers.saturating_sub(1)
        } else {
            0
        };
        let max_threads = pool.map_or(MAX_THREADS, |p| p.stats().size.max(MAX_THREADS));
        Arc::new(Self {
            name: name.to_string(),
            timeout: backend.call_timeout(),
            max_threads,
            call_error: Mutex::new(None),
            failing: AtomicBool::new(false),
            backend,
            busy: AtomicUsize::new(0),
            inline_busy: AtomicUsize::new(0),
            inline_max,
            overdue: AtomicUsize::new(0),
            probe_ok: AtomicBool::new(true),
            last_error: Mutex::new(None),
            freed: tokio::sync::Notify::new(),
        })
    }

    fn take(self: &Arc<Self>, counter: &AtomicUsize, max: usize, inline: bool) -> Option<Slot> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                guard: self.clone(),
                inline,
            })
    }

    /// A slot to run a call on the request's own task (in-process software
    /// tokens only, never all the async workers, never while a call is overdue).
    pub fn inline_slot(self: &Arc<Self>) -> Option<Slot> {
        if self.inline_max == 0 || self.overdue() > 0 {
            return None;
        }
        self.take(&self.inline_busy, self.inline_max, true)
    }

    /// A blocking-thread slot, or `None` when every slot is held (by calls
    /// the device has not answered).
    pub fn thread_slot(self: &Arc<Self>) -> Option<Slot> {
        self.take(&self.busy, self.max_threads, false)
    }

    /// How many blocking threads this backend's calls may hold at once.
    pub fn max_threads(&self) -> usize {
        self.max_threads
    }

    /// Records a device call's outcome: a failure that says the device is
    /// unavailable makes the backend degraded (health NOT_SERVING, `keyset
    /// show`) until a later call succeeds.
    pub fn call_outcome(&self, unavailable: Option<&str>) {
        if unavailable.is_none() && !self.failing.load(Ordering::Acquire) {
            return;
        }
        self.failing.store(unavailable.is_some(), Ordering::Release);
        let mut e = self.call_error.lock().unwrap_or_else(|p| p.into_inner());
        match unavailable {
            Some(why) => {
                if e.is_none() {
                    tracing::warn!(backend = %self.name, error = why, "device calls failing: backend degraded");
                }
                *e = Some(why.to_string());
            }
            None if e.is_some() => {
                tracing::info!(backend = %self.name, "device calls succeed again: backend recovered");
                *e = None;
            }
            None => {}
        }
    }

    /// A blocking-thread slot, waiting up to `within` for one to be given
    /// back while every slot is busy; `None` when none came, or at once when
    /// every slot is held by a call past its deadline (the device is not
    /// answering: queueing behind it would only pile up).
    pub async fn wait_thread_slot(self: &Arc<Self>, within: Duration) -> Option<Slot> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(slot) = self.thread_slot() {
                return Some(slot);
            }
            if self.overdue() >= self.max_threads {
                return None;
            }
            if tokio::time::timeout_at(deadline, self.freed.notified())
                .await
                .is_err()
            {
                return self.thread_slot();
            }
        }
    }

    /// A call passed its deadline (it keeps its thread until the device answers).
    pub fn mark_overdue(&self) {
        self.overdue.fetch_add(1, Ordering::AcqRel);
    }

    /// An overdue call came back: its sessions are not trusted again (they
    /// are closed and opened afresh).
    pub fn overdue_returned(&self) {
        self.overdue.fetch_sub(1, Ordering::AcqRel);
        self.backend.release_sessions();
        tracing::warn!(backend = %self.name, "a device call answered after its deadline; its sessions were closed");
    }

    /// Device calls running now (inline and on helper threads).
    pub fn in_flight(&self) -> usize {
        self.busy.load(Ordering::Acquire) + self.inline_busy.load(Ordering::Acquire)
    }

    /// Calls past their deadline that have not come back.
    pub fn overdue(&self) -> usize {
        self.overdue.load(Ordering::Acquire)
    }

    /// Records a health probe's outcome.
    pub fn probed(&self, outcome: Result<(), String>) {
        self.probe_ok.store(outcome.is_ok(), Ordering::Release);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = outcome.err();
    }

    /// `None` when the backend answers; else why not, for health and `keyset show`.
    pub fn problem(&self) -> Option<String> {
        let overdue = self.overdue();
        if overdue > 0 {
            return Some(format!(
                "{overdue} call(s) did not answer within {} ms",
                self.timeout.as_millis()
            ));
        }
        if let Some(why) = self
            .call_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(format!("the last device call failed: {why}"));
        }
        if !self.probe_ok.load(Ordering::Acquire) {
            return Some(
                self.last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_else(|| "the health probe failed".into()),
            );
        }
        None
    }
}
