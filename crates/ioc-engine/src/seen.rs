//! Dedupe keys of applied inputs (`call:ID`, `incident:ID`, `command:ID`,
//! `closed:ID`), remembered for a retention of event time and then
//! forgotten, so that a process running for months does not keep every id.
//!
//! Each key carries the engine time (ms) at which it was recorded and sits
//! in the bucket of the hour of that time. Forgetting drops whole buckets
//! whose every key is older than the cutoff (now − retention): on each clock
//! advance one look at the oldest bucket, and once an hour of event time a
//! bucket's keys leave the map. No scan of the keys, ever; insertion is a
//! hash insert plus a push into its bucket (a B-tree of ~retention/1 h
//! buckets, 169 for 7 days). Buckets accept keys in any time order, so a
//! key can be recorded at the time of the log event that carried it (after
//! a restore) however late it is learnt.
//!
//! A key is thus kept at least `retention` and less than `retention` + 1 h
//! after it was recorded. Nothing reads a clock: the same inputs (or the
//! same output log) forget the same keys at the same points.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Width of a bucket, ms of event time: the pruning granularity.
pub(crate) const BUCKET_MS: i64 = 3_600_000;

#[derive(Debug, Clone)]
pub(crate) struct SeenIds {
    /// Key → engine time (ms) it was recorded at.
    stamps: HashMap<Arc<str>, i64>,
    /// Bucket start (ms, a multiple of [`BUCKET_MS`]) → its keys. Every key
    /// of `stamps` is in exactly the bucket of its stamp and vice versa.
    buckets: BTreeMap<i64, Vec<Arc<str>>>,
    /// End of the oldest bucket (`i64::MAX` when empty): nothing can be
    /// forgotten before the cutoff reaches it.
    oldest_end_ms: i64,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self {
            stamps: HashMap::new(),
            buckets: BTreeMap::new(),
            oldest_end_ms: i64::MAX,
        }
    }
}

impl SeenIds {
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.stamps.contains_key(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Records `key` at `at_ms` unless it is already there (its first time
    /// stays: a redelivery does not extend it). True if newly recorded.
    pub(crate) fn insert(&mut self, key: String, at_ms: i64) -> bool {
        if self.stamps.contains_key(key.as_str()) {
            return false;
        }
        let key: Arc<str> = key.into();
        self.stamps.insert(Arc::clone(&key), at_ms);
        let bucket = at_ms.div_euclid(BUCKET_MS).saturating_mul(BUCKET_MS);
        self.buckets.entry(bucket).or_default().push(key);
        self.oldest_end_ms = self.oldest_end_ms.min(bucket.saturating_add(BUCKET_MS));
        true
    }

    /// Forgets the buckets whose keys are all older than `cutoff_ms`: one
    /// comparison when there are none. True if any key was forgotten.
    pub(crate) fn prune(&mut self, cutoff_ms: i64) -> bool {
        if cutoff_ms < self.oldest_end_ms {
            return false;
        }
        while let Some(entry) = self.buckets.first_entry() {
            if entry.key().saturating_add(BUCKET_MS) > cutoff_ms {
                break;
            }
            for key in entry.remove() {
                self.stamps.remove(&key);
            }
        }
        self.oldest_end_ms = self
            .buckets
            .first_key_value()
            .map_or(i64::MAX, |(b, _)| b.saturating_add(BUCKET_MS));
        if self.stamps.capacity() > 64 && self.stamps.len() < self.stamps.capacity() / 4 {
            // After a burst (a busy day leaving the window) give memory back.
            self.stamps.shrink_to(self.stamps.len() * 2);
        }
        true
    }

    /// Every key with its time, sorted (tests compare live and restored).
    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> BTreeMap<String, i64> {
        self.stamps
            .iter()
            .map(|(k, &t)| (k.to_string(), t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_leave_a_bucket_at_a_time_once_all_are_older_than_the_cutoff() {
        let mut s = SeenIds::default();
        let h = BUCKET_MS;
        assert!(s.insert("call:a".into(), 10 * h + 5));
        assert!(s.insert("call:b".into(), 11 * h - 1));
        assert!(s.insert("call:c".into(), 11 * h));
        // Out of order: recorded late, at an earlier time.
        assert!(s.insert("command:k".into(), 9 * h));
        assert!(!s.insert("call:a".into(), 12 * h), "first time stays");
        assert_eq!(s.len(), 4);
        assert!(!s.prune(9 * h), "nothing is older than 9 h yet");
        assert!(s.prune(10 * h));
        assert_eq!(s.len(), 3);
        assert!(!s.contains("command:k"));
        // b (11 h − 1 ms) is older than the cutoff but shares a bucket
        // with a, which is not: both stay until the bucket is all older.
        assert!(!s.prune(11 * h - 1));
        assert!(s.contains("call:a") && s.contains("call:b"));
        assert!(s.prune(11 * h));
        assert_eq!(s.snapshot().into_keys().collect::<Vec<_>>(), ["call:c"]);
        assert!(s.insert("call:a".into(), 12 * h), "forgotten: new again");
    }
}
