//! The TPM connection and its loaded keys: a TPM has few object slots, so
//! keys are loaded once, reused by handle, and the least recently used is
//! flushed when a new one needs room.

use super::sign::RsaPath;
use std::collections::HashMap;
use tss_esapi::handles::KeyHandle;
use tss_esapi::Context;

/// One key loaded in the TPM.
pub(super) struct Loaded {
    pub(super) handle: KeyHandle,
    pub(super) rsa_path: Option<RsaPath>,
}

/// The connection: the ESAPI context, the primary storage key and the
/// loaded keys.
#[derive(Default)]
pub(super) struct Conn {
    pub(super) ctx: Option<Context>,
    pub(super) primary: Option<KeyHandle>,
    pub(super) loaded: HashMap<String, Loaded>,
    /// Key ids, least recently used first.
    pub(super) lru: Vec<String>,
}

impl Conn {
    /// Marks `id` as the most recently used key.
    pub(super) fn touch(&mut self, id: &str) {
        self.lru.retain(|k| k != id);
        self.lru.push(id.to_string());
    }

    /// Flushes the least recently used keys until `room` more fit under `max`.
    pub(super) fn make_room(&mut self, max: usize) {
        while self.loaded.len() >= max.max(1) && !self.lru.is_empty() {
            let id = self.lru.remove(0);
            if let (Some(l), Some(ctx)) = (self.loaded.remove(&id), self.ctx.as_mut()) {
                if let Err(e) = ctx.flush_context(l.handle.into()) {
                    tracing::warn!(error = %e, "could not flush a TPM key");
                }
            }
        }
    }
}
