//! Where the manifest is kept: a file in `state_dir` (one daemon). A store
//! commits with optimistic concurrency: a write names the generation it was
//! based on and fails with [`Commit::Conflict`] when someone else wrote first.
//!
//! Earlier releases could keep the manifest as data objects on the PKCS#11
//! token, so several daemons could share one HSM. It was removed: PKCS#11
//! has no compare-and-swap, its leases were destroy-races, and a writer that
//! stalled past the lease timeout still had its write reported as done after
//! a later writer had skipped it, so a change (a `disable`) could be lost.
//! Fencing built from the same destroy-races would still let a reader on
//! SoftHSM2 (which shows one process another's objects late) install a
//! generation that was then withdrawn. A shared store belongs on an engine
//! with real compare-and-swap and leases (etcd).

use super::manifest::{self, Manifest};
use crate::error::Result;
use std::path::PathBuf;

/// The outcome of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The new manifest is the current one.
    Done,
    /// Another writer got there first; reload and try again.
    Conflict,
}

/// Persistence for the keyring manifest.
pub trait ManifestStore: std::fmt::Debug + Send + Sync {
    /// The current manifest (empty when none was written yet).
    ///
    /// # Errors
    /// A damaged or unreadable store.
    fn load(&self) -> Result<Manifest>;

    /// Writes `next` (whose generation is `base + 1`) if the store is still at `base`.
    ///
    /// # Errors
    /// A failed write; the previous manifest is then intact.
    fn commit(&self, base: u64, next: &Manifest) -> Result<Commit>;

    /// Where the manifest lives, for logs.
    fn describe(&self) -> String;

    /// Woken when another daemon changed the shared manifest (a watch);
    /// `None` for stores nobody else writes.
    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Unix time of the last answer from a shared store; `None` for a
    /// local one (always there).
    fn last_contact(&self) -> Option<i64> {
        None
    }
}

/// `STATE_DIR/keyring.json`, written atomically.
#[derive(Debug)]
pub(crate) struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// A store in `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl ManifestStore for FileStore {
    fn load(&self) -> Result<Manifest> {
        manifest::load(&self.dir)
    }

    fn commit(&self, base: u64, next: &Manifest) -> Result<Commit> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            crate::error::Error::Internal(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        if manifest::load(&self.dir)?.generation != base {
            return Ok(Commit::Conflict);
        }
        manifest::store(&self.dir, next)?;
        Ok(Commit::Done)
    }

    fn describe(&self) -> String {
        manifest::path(&self.dir).display().to_string()
    }
}
