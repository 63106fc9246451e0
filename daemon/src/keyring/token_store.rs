//! The manifest kept on the PKCS#11 token itself, so several daemons sharing
//! one (network) HSM agree on keysets without any other store.
//!
//! PKCS#11 offers no compare-and-swap, and SoftHSM2 does not always show one
//! process the objects another just created (its per-process object index is
//! refreshed only when it notices another process's write). What every
//! token does offer is one atomic step: of several callers destroying the
//! same object, exactly one succeeds. So:
//!
//! - **lease** objects `custos-manifest:lease:<n>`, created in batches well
//!   ahead of use, are tickets: to write generation `n` a writer must destroy
//!   lease `n`, the smallest one above the generation it read;
//! - the winner then creates the generation object
//!   `custos-manifest:gen:<n>` holding the manifest, and removes generations
//!   older than the one it read;
//! - everyone else reloads and retries (with jitter).
//!
//! Readers take the newest generation object. No two writers can both own a
//! generation, so no change is ever lost. A writer that died between taking
//! a lease and writing its generation leaves a gap; after 30 s the next
//! lease up is used instead.

use super::manifest::Manifest;
use super::store::{Commit, ManifestStore};
use crate::backend::pkcs11::data::DataObject;
use crate::backend::pkcs11::Pkcs11Backend;
use crate::backend::BackendError;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const APPLICATION: &str = "custos-manifest";
const GEN: &str = "custos-manifest:gen:";
const LEASE: &str = "custos-manifest:lease:";
/// Leases created per batch.
const BATCH: u64 = 64;
/// A new batch is created when fewer than this many leases are left.
const LOW_WATER: usize = 32;
/// How long a taken lease may stay without its generation before it is skipped.
const GAP_TIMEOUT: Duration = Duration::from_secs(30);

/// The manifest on a token.
#[derive(Debug)]
pub struct TokenStore {
    backend: Arc<Pkcs11Backend>,
    name: String,
    /// Since when (locally) generation `.0` has been missing although its lease is taken.
    gap_seen: Mutex<Option<(u64, Instant)>>,
}

struct View {
    gens: BTreeMap<u64, DataObject>,
    leases: BTreeMap<u64, DataObject>,
}

fn number(label: &str, prefix: &str) -> Option<u64> {
    label.strip_prefix(prefix)?.split(':').next()?.parse().ok()
}

impl TokenStore {
    /// A store on `backend` (named `name` in the config).
    pub fn new(backend: Arc<Pkcs11Backend>, name: String) -> Self {
        Self {
            backend,
            name,
            gap_seen: Mutex::new(None),
        }
    }

    fn view(&self) -> Result<View> {
        let mut view = View {
            gens: BTreeMap::new(),
            leases: BTreeMap::new(),
        };
        for o in self.backend.list_data(APPLICATION)? {
            if let Some(n) = number(&o.label, GEN) {
                view.gens.insert(n, o);
            } else if let Some(n) = number(&o.label, LEASE) {
                view.leases.insert(n, o);
            }
        }
        Ok(view)
    }

    fn create_leases(&self, after: u64) -> Result<()> {
        for n in after + 1..=after + BATCH {
            self.backend
                .create_data(APPLICATION, &format!("{LEASE}{n}"), vec![0])?;
        }
        Ok(())
    }

    fn read(&self, n: u64, object: &DataObject) -> Result<Manifest> {
        let bytes = self.backend.read_data(object)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Internal(format!(
                "manifest generation {n} on token backend {:?} is damaged: {e}",
                self.name
            ))
        })
    }

    /// Whether a missing generation `n` (lease taken) has been missing long
    /// enough to skip it.
    fn gap_expired(&self, n: u64) -> bool {
        let mut seen = self.gap_seen.lock().unwrap_or_else(|p| p.into_inner());
        match *seen {
            Some((m, since)) if m == n => since.elapsed() >= GAP_TIMEOUT,
            _ => {
                *seen = Some((n, Instant::now()));
                false
            }
        }
    }
}

impl ManifestStore for TokenStore {
    fn load(&self) -> Result<Manifest> {
        let view = self.view()?;
        match view.gens.iter().next_back() {
            Some((n, object)) => match self.read(*n, object) {
                Ok(m) => Ok(m),
                // Removed by a writer's clean-up between listing and reading.
                Err(Error::FailedPrecondition(_)) => self.load(),
                Err(e) => Err(e),
            },
            None => Ok(Manifest {
                format: 1,
                ..Manifest::default()
            }),
        }
    }

    fn commit(&self, base: u64, next: &Manifest) -> Result<Commit> {
        let view = self.view()?;
        let newest = view.gens.keys().next_back().copied().unwrap_or(0);
        if newest != base {
            return Ok(Commit::Conflict);
        }
        if view.leases.is_empty() && view.gens.is_empty() {
            self.create_leases(0)?;
            return self.commit(base, next);
        }
        let mut above = view.leases.range(base + 1..);
        let Some((&n, lease)) = above.next() else {
            // No lease visible above the newest generation: this view may be
            // behind; reload and retry.
            return Ok(Commit::Conflict);
        };
        if n != base + 1 && !self.gap_expired(base + 1) {
            // Lease base+1 is taken and its generation not (yet) visible.
            return Ok(Commit::Conflict);
        }
        match self.backend.destroy_data(lease) {
            Ok(()) => {}
            Err(BackendError::Unavailable(m)) => return Err(Error::Unavailable(m)),
            Err(_) => return Ok(Commit::Conflict),
        }
        let mut next = next.clone();
        next.generation = n;
        let bytes = serde_json::to_vec(&next)
            .map_err(|e| Error::Internal(format!("serializing the manifest: {e}")))?;
        self.backend
            .create_data(APPLICATION, &format!("{GEN}{n}"), bytes)?;
        for (_, old) in view.gens.range(..base) {
            if let Err(e) = self.backend.destroy_data(old) {
                tracing::debug!(error = %e, label = %old.label, "old manifest generation already removed");
            }
        }
        if above.count() < LOW_WATER {
            let last = view.leases.keys().next_back().copied().unwrap_or(n);
            if let Err(e) = self.create_leases(last) {
                tracing::warn!(error = %e, "could not create more manifest leases");
            }
        }
        Ok(Commit::Done)
    }

    fn describe(&self) -> String {
        format!("data objects on token backend {:?}", self.name)
    }
}
