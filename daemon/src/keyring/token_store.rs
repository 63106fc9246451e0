//! The manifest kept on the PKCS#11 token itself, so several daemons sharing
//! one (network) HSM agree on keysets without any other store.
//!
//! Each generation is a private, read-only data object (application
//! `custos-manifest`, label `custos-manifest:<generation>:<random>`). PKCS#11
//! has no compare-and-swap, so a write is optimistic:
//!
//! 1. create the object for generation `base + 1`;
//! 2. list the objects: the write stands only if it is the *only* object of
//!    its generation and no newer generation exists; otherwise it removes
//!    its own object and reports a conflict (the caller reloads and retries);
//! 3. remove generations older than `base` (the previous one stays as a fallback).
//!
//! Readers take the newest generation that has exactly one object, so a
//! losing writer's short-lived object is never read. Two concurrent writers
//! may both lose (and retry with jitter); they can never both win. The
//! next write goes above the highest generation seen, so even a duplicate
//! left behind by a writer that died between steps 1 and 2 is written over,
//! not retried against forever.

use super::manifest::Manifest;
use super::store::{Commit, ManifestStore};
use crate::backend::pkcs11::data::DataObject;
use crate::backend::pkcs11::Pkcs11Backend;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

const APPLICATION: &str = "custos-manifest";

/// The manifest on a token.
#[derive(Debug)]
pub struct TokenStore {
    backend: Arc<Pkcs11Backend>,
    name: String,
}

impl TokenStore {
    /// A store on `backend` (named `name` in the config).
    pub fn new(backend: Arc<Pkcs11Backend>, name: String) -> Self {
        Self { backend, name }
    }

    fn generations(&self) -> Result<BTreeMap<u64, Vec<DataObject>>> {
        let mut by_gen: BTreeMap<u64, Vec<DataObject>> = BTreeMap::new();
        for o in self.backend.list_data(APPLICATION)? {
            let Some(gen) = o
                .label
                .strip_prefix("custos-manifest:")
                .and_then(|rest| rest.split(':').next())
                .and_then(|g| g.parse::<u64>().ok())
            else {
                continue;
            };
            by_gen.entry(gen).or_default().push(o);
        }
        Ok(by_gen)
    }
}

impl ManifestStore for TokenStore {
    fn load(&self) -> Result<Manifest> {
        let gens = self.generations()?;
        for (gen, objects) in gens.iter().rev() {
            let [only] = objects.as_slice() else {
                continue;
            };
            let bytes = match self.backend.read_data(only) {
                Ok(b) => b,
                // Removed by a writer between listing and reading: look again.
                Err(crate::backend::BackendError::KeyNotFound(_)) => return self.load_retry(),
                Err(e) => return Err(e.into()),
            };
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Internal(format!(
                    "manifest generation {gen} on token backend {:?} is damaged: {e}",
                    self.name
                ))
            })?;
            return Ok(m);
        }
        Ok(Manifest {
            format: 1,
            ..Manifest::default()
        })
    }

    fn commit(&self, base: u64, next: &Manifest) -> Result<Commit> {
        let before = self.generations()?;
        let top = before.keys().next_back().copied().unwrap_or(0);
        if top > base && before.get(&top).is_some_and(|v| v.len() == 1) {
            // Someone committed a newer generation: reload and reapply.
            return Ok(Commit::Conflict);
        }
        // Write above anything seen, so stale duplicates (a writer that died
        // between creating and withdrawing its object) are written over.
        let gen = top.max(base) + 1;
        let mut next = next.clone();
        next.generation = gen;
        let bytes = serde_json::to_vec(&next)
            .map_err(|e| Error::Internal(format!("serializing the manifest: {e}")))?;
        let label = format!("custos-manifest:{gen}:{:016x}", rand::random::<u64>());
        let ours = self.backend.create_data(APPLICATION, &label, bytes)?;
        let gens = self.generations()?;
        let alone = gens.get(&gen).is_some_and(|v| v.len() == 1);
        let newer = gens.range(gen + 1..).next().is_some();
        if !alone || newer {
            self.backend.destroy_data(&ours)?;
            return Ok(Commit::Conflict);
        }
        for objects in gens.range(..base).map(|(_, v)| v) {
            for o in objects {
                if let Err(e) = self.backend.destroy_data(o) {
                    tracing::warn!(error = %e, label = %o.label, "could not remove an old manifest generation");
                }
            }
        }
        Ok(Commit::Done)
    }

    fn describe(&self) -> String {
        format!("data objects on token backend {:?}", self.name)
    }
}

impl TokenStore {
    fn load_retry(&self) -> Result<Manifest> {
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.load()
    }
}
