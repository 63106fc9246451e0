//! A replay cache for one-time identifiers (DPoP proof `jti`s, client
//! assertion `jti`s), partitioned so one caller cannot exhaust it for others.
//!
//! Identifiers live in partitions: one per caller and scope (the scope names
//! the client or DPoP key, e.g. `assertion:client-1` or `dpop:<jkt>`). Each
//! partition holds at most `partition_entries` live identifiers and each
//! caller at most `caller_entries` across its partitions. A full partition
//! (or caller) fails closed for itself only. Entries leave when their token
//! expires; the verifiers record an identifier only after every other check
//! of the token passed, and only until the token's checked expiry.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

/// Why an identifier was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen before and not yet expired.
    Replayed,
    /// This partition (or this caller's share) is full of live entries;
    /// refusing is the safe answer. Other partitions are not affected.
    Full,
}

#[derive(Debug, Default)]
struct Partition {
    seen: HashMap<String, i64>,
    expiries: BinaryHeap<Reverse<(i64, String)>>,
}

impl Partition {
    /// Drops expired entries; returns how many left.
    fn expire(&mut self, now: i64) -> usize {
        let before = self.seen.len();
        while let Some(Reverse((exp, _))) = self.expiries.peek() {
            if *exp >= now {
                break;
            }
            if let Some(Reverse((exp, k))) = self.expiries.pop() {
                if self.seen.get(&k) == Some(&exp) {
                    self.seen.remove(&k);
                }
            }
        }
        before - self.seen.len()
    }
}

#[derive(Debug, Default)]
struct CallerShare {
    entries: usize,
    partitions: HashMap<String, Partition>,
}

impl CallerShare {
    fn expire_all(&mut self, now: i64) {
        let mut freed = 0;
        self.partitions.retain(|_, p| {
            freed += p.expire(now);
            !p.seen.is_empty()
        });
        self.entries = self.entries.saturating_sub(freed);
    }
}

/// Remembers identifiers until they expire, per caller and scope.
#[derive(Debug)]
pub struct ReplayCache {
    partition_entries: usize,
    caller_entries: usize,
    inner: Mutex<HashMap<String, CallerShare>>,
}

impl ReplayCache {
    /// A cache holding at most `partition_entries` live identifiers per
    /// partition and `caller_entries` per caller.
    pub fn new(partition_entries: usize, caller_entries: usize) -> Self {
        Self {
            partition_entries: partition_entries.max(1),
            caller_entries: caller_entries.max(1),
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// Records `id` in `caller`'s partition `scope` until `expires_at`,
    /// refusing it if it is already live there.
    ///
    /// # Errors
    /// `Refusal::Replayed` or `Refusal::Full`.
    pub fn check_and_insert(
        &self,
        caller: &str,
        scope: &str,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), Refusal> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let share = inner.entry(caller.to_string()).or_default();
        if let Some(p) = share.partitions.get_mut(scope) {
            let freed = p.expire(now);
            share.entries = share.entries.saturating_sub(freed);
            if p.seen.get(id).is_some_and(|exp| *exp >= now) {
                crate::metrics::replay_refused();
                return Err(Refusal::Replayed);
            }
        }
        if share.entries >= self.caller_entries {
            share.expire_all(now);
            if share.entries >= self.caller_entries {
                return Err(Refusal::Full);
            }
        }
        let p = share.partitions.entry(scope.to_string()).or_default();
        if p.seen.len() >= self.partition_entries {
            return Err(Refusal::Full);
        }
        p.seen.insert(id.to_string(), expires_at);
        p.expiries.push(Reverse((expires_at, id.to_string())));
        share.entries += 1;
        crate::metrics::replay_entries(inner.values().map(|s| s.entries).sum());
        Ok(())
    }

    /// How many identifiers are remembered, over every caller.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|s| s.entries)
            .sum()
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
        let c = ReplayCache::new(2, 100);
        assert_eq!(c.check_and_insert("u", "s", "a", 100, 0), Ok(()));
        assert_eq!(
            c.check_and_insert("u", "s", "a", 100, 50),
            Err(Refusal::Replayed)
        );
        assert_eq!(c.check_and_insert("u", "s", "b", 10, 0), Ok(()));
        assert_eq!(c.check_and_insert("u", "s", "c", 10, 0), Err(Refusal::Full));
        // After b expires there is room again, and a is still remembered.
        assert_eq!(c.check_and_insert("u", "s", "c", 200, 11), Ok(()));
        assert_eq!(
            c.check_and_insert("u", "s", "a", 300, 99),
            Err(Refusal::Replayed)
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c.check_and_insert("u", "s", "a", 300, 101), Ok(()));
    }

    #[test]
    fn a_full_partition_or_caller_refuses_only_itself() {
        let c = ReplayCache::new(2, 3);
        for id in ["1", "2"] {
            assert_eq!(
                c.check_and_insert("attacker", "client-x", id, 1000, 0),
                Ok(())
            );
        }
        assert_eq!(
            c.check_and_insert("attacker", "client-x", "3", 1000, 0),
            Err(Refusal::Full)
        );
        // The same caller's other partition has room until the caller's share is full.
        assert_eq!(
            c.check_and_insert("attacker", "client-y", "1", 1000, 0),
            Ok(())
        );
        assert_eq!(
            c.check_and_insert("attacker", "client-z", "1", 1000, 0),
            Err(Refusal::Full)
        );
        // Other callers, and the same id in another partition, are untouched.
        assert_eq!(c.check_and_insert("as", "client-x", "1", 1000, 0), Ok(()));
        assert_eq!(c.check_and_insert("as", "dpop:k", "3", 1000, 0), Ok(()));
        // Expiry frees the caller's share.
        assert_eq!(
            c.check_and_insert("attacker", "client-z", "1", 2000, 1001),
            Ok(())
        );
    }
}
