//! A replay cache for one-time identifiers (DPoP proof `jti`s, client
//! assertion `jti`s): bounded in memory and in time. Entries leave when they
//! expire; when the cache is full of live entries it fails closed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

/// Why an identifier was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before and not yet expired.
    Replayed,
    /// The cache is full of live entries; refusing is the safe answer.
    Full,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<String, i64>,
    expiries: BinaryHeap<Reverse<(i64, String)>>,
}

/// Remembers identifiers until they expire.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live identifiers.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `key` until `expires_at`, refusing it if it is already live.
    ///
    /// # Errors
    /// [`Refusal::Replayed`] or [`Refusal::Full`].
    pub fn check_and_insert(&self, key: &str, expires_at: i64, now: i64) -> Result<(), Refusal> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Reverse((exp, _))) = inner.expiries.peek() {
            if *exp >= now {
                break;
            }
            if let Some(Reverse((exp, k))) = inner.expiries.pop() {
                if inner.seen.get(&k) == Some(&exp) {
                    inner.seen.remove(&k);
                }
            }
        }
        if let Some(&exp) = inner.seen.get(key) {
            if exp >= now {
                return Err(Refusal::Replayed);
            }
        }
        if inner.seen.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        inner.seen.insert(key.to_string(), expires_at);
        inner.expiries.push(Reverse((expires_at, key.to_string())));
        Ok(())
    }

    /// How many identifiers are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_are_refused_until_expiry_and_memory_is_bounded() {
        let c = ReplayCache::new(2);
        assert_eq!(c.check_and_insert("a", 100, 0), Ok(()));
        assert_eq!(c.check_and_insert("a", 100, 50), Err(Refusal::Replayed));
        assert_eq!(c.check_and_insert("b", 10, 0), Ok(()));
        assert_eq!(c.check_and_insert("c", 10, 0), Err(Refusal::Full));
        // After b expires there is room again, and a is still remembered.
        assert_eq!(c.check_and_insert("c", 200, 11), Ok(()));
        assert_eq!(c.check_and_insert("a", 300, 99), Err(Refusal::Replayed));
        assert_eq!(c.len(), 2);
        assert_eq!(c.check_and_insert("a", 300, 101), Ok(()));
    }
}
