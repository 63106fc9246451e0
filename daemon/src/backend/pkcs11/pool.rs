//! A pool of logged-in PKCS#11 sessions.
//!
//! `cryptoki::Session` is `Send` but not `Sync`, so each request borrows a
//! whole session from the pool and gives it back when done. Sessions are
//! opened and logged in once (the PKCS#11 login is per token, so later
//! sessions share it); a session that fails with a broken-session error is
//! dropped and a fresh one opened on the next request, which is how the pool
//! recovers after a token restart.

use super::errors;
use crate::backend::BackendError;
use crate::secret::Secret;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

struct State {
    idle: Vec<Session>,
    open: usize,
    waiters: usize,
}

/// Logged-in sessions on one token, shared by every request.
pub(super) struct SessionPool {
    ctx: Pkcs11,
    slot: Slot,
    pin: Secret,
    size: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("slot", &self.slot.id())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A session borrowed from the pool; it goes back when dropped unless marked broken.
pub(super) struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
    broken: bool,
}

impl PooledSession<'_> {
    /// The borrowed session.
    pub(super) fn session(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a PooledSession holds its session until dropped")
    }

    /// Whether a call on it failed with a broken-session error (it is then
    /// closed, not returned to the pool, when dropped; a `fresh` session
    /// always is).
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Runs `f` on the session; a broken-session error retires the session.
    pub(super) fn run<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Session) -> Result<T, CkError>,
    ) -> Result<T, BackendError> {
        match f(self.session()) {
            Ok(v) => Ok(v),
            Err(e) => {
                if errors::session_is_broken(&e) {
                    self.broken = true;
                }
                Err(errors::map(what, e))
            }
        }
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let mut state = match self.pool.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if self.broken {
            state.open = state.open.saturating_sub(1);
            drop(session);
        } else {
            state.idle.push(session);
        }
        self.pool.freed.notify_one();
    }
}

impl SessionPool {
    /// Opens the first session and logs in, so a bad PIN or missing token is
    /// reported at start-up rather than on the first request.
    pub(super) fn new(
        ctx: Pkcs11,
        slot: Slot,
        pin: Secret,
        size: usize,
        wait: Duration,
    ) -> Result<Self, BackendError> {
        let pool = Self {
            ctx,
            slot,
            pin,
            size: size.max(1),
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                waiters: 0,
                open: 0,
            }),
            freed: Condvar::new(),
        };
        let first = pool.open_session()?;
        let mut state = pool.lock();
        state.idle.push(first);
        state.open = 1;
        drop(state);
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The mechanisms the token lists.
    pub(super) fn mechanisms(
        &self,
    ) -> Result<Vec<cryptoki::mechanism::MechanismType>, BackendError> {
        self.ctx
            .get_mechanism_list(self.slot)
            .map_err(|e| super::errors::map("listing mechanisms", e))
    }

    fn open_session(&self) -> Result<Session, BackendError> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| errors::map("opening a session", e))?;
        let pin = AuthPin::new(self.pin.expose().into());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(errors::map("logging in to the token", e)),
        }
    }

    /// Borrows a session, opening one when the pool is below its size, or
    /// waiting up to the profile's `wait_ms` for one to be returned.
    pub(super) fn get(&self) -> Result<PooledSession<'_>, BackendError> {
        let mut state = self.lock();
        let deadline = std::time::Instant::now() + self.wait;
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                    broken: false,
                });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.open_session() {
                    Ok(session) => Ok(PooledSession {
                        pool: self,
                        session: Some(session),
                        broken: false,
                    }),
                    Err(e) => {
                        let mut state = self.lock();
                        state.open = state.open.saturating_sub(1);
                        Err(e)
                    }
                };
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(BackendError::Unavailable(format!(
                    "all {} token sessions stayed busy for {} ms; raise [sessions] pool_size in the HSM profile or reduce load",
                    self.size,
                    self.wait.as_millis()
                )));
            }
            state.waiters += 1;
            state = match self.freed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.waiters = state.waiters.saturating_sub(1);
        }
    }

    /// A session outside the pool, opened and logged in now and closed when
    /// dropped (for measuring what the pool saves).
    pub(super) fn fresh(&self) -> Result<PooledSession<'_>, BackendError> {
        let session = self.open_session()?;
        let mut state = self.lock();
        // Counted as open so that dropping it (as broken) balances the count.
        state.open += 1;
        drop(state);
        Ok(PooledSession {
            pool: self,
            session: Some(session),
            broken: true,
        })
    }

    /// Size, open, lent and waiting, now.
    pub(super) fn stats(&self) -> crate::backend::PoolStats {
        let state = self.lock();
        crate::backend::PoolStats {
            size: self.size,
            open: state.open,
            in_use: state.open.saturating_sub(state.idle.len()),
            waiters: state.waiters,
        }
    }

    /// Closes every idle session.
    pub(super) fn drain(&self) {
        let mut state = self.lock();
        let n = state.idle.len();
        state.idle.clear();
        state.open = state.open.saturating_sub(n);
    }
}
