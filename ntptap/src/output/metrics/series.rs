//! The series that frames count, found by keys that cost nothing to make. A family finds a
//! series by its labels: every frame made them (a `Vec` of owned `String` pairs, the process
//! name escaped, numbers formatted) and hashed them with SipHash, and with `--metrics` that was
//! half of the reader's CPU under the bench's flood (`perf`; BENCHMARKS.md). A series' handle
//! shares its counts with the family (prometheus-client's metrics are `Arc`s), so each is
//! looked up by its labels once, then kept by a small `Copy` key.

use std::hash::Hash;

use prometheus_client::metrics::family::{Family, MetricConstructor};

use super::Labels;
use crate::exchange::Table;

/// Most handles kept; past them all are let go (and looked up again as frames come). The keys
/// are bounded by the labels' own bounds; this bounds the rest (interfaces come and go).
const MOST: usize = 4096;

/// A family, and the handles of its series by key.
pub(super) struct Series<K, M, C = fn() -> M> {
    family: Family<Labels, M, C>,
    handles: Table<K, M>,
}

impl<K: Hash + Eq, M: Clone, C: MetricConstructor<M>> Series<K, M, C> {
    pub fn new(family: Family<Labels, M, C>) -> Self {
        Self {
            family,
            handles: Table::default(),
        }
    }

    /// The series `key` names; its labels are made by `labels` the first time.
    pub fn get(&mut self, key: K, labels: impl FnOnce() -> Labels) -> &M {
        if self.handles.len() >= MOST && !self.handles.contains_key(&key) {
            self.handles.clear();
        }
        self.handles
            .entry(key)
            .or_insert_with(|| self.family.get_or_create(&labels()).clone())
    }

    /// The family, for what is not counted by key (removals, rare series).
    pub fn family(&self) -> &Family<Labels, M, C> {
        &self.family
    }

    /// Let go of every handle: a series was removed from the family, and a handle to it would
    /// count what nobody sees.
    pub fn forget(&mut self) {
        self.handles.clear();
    }
}

/// Up to 16 bytes held in place (an interface name, a process's `comm`): a key that costs no
/// allocation. Longer ones (read from a file) have none, and are counted by their labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Short {
    len: u8,
    bytes: [u8; 16],
}

impl Short {
    pub fn new(b: &[u8]) -> Option<Self> {
        let mut bytes = [0; 16];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(Self {
            len: b.len() as u8,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    fn labels(v: &str) -> Labels {
        vec![("k".to_owned(), v.to_owned())]
    }

    /// Counts through a handle are the family's; a handle let go (or past the most kept) is
    /// looked up again and still counts into the same series.
    #[test]
    fn a_handle_counts_into_its_familys_series() {
        let mut s: Series<u32, Counter> = Series::new(Family::default());
        for _ in 0..3 {
            s.get(1, || labels("a")).inc();
        }
        s.forget();
        s.get(1, || labels("a")).inc();
        for k in 0..(MOST as u32 + 10) {
            s.get(k + 2, || labels(&k.to_string())).inc();
        }
        s.get(1, || labels("a")).inc();
        assert_eq!(s.family().get_or_create(&labels("a")).get(), 5);
        assert_eq!(s.family().get_or_create(&labels("7")).get(), 1);
        assert!(s.handles.len() <= MOST);
    }

    #[test]
    fn short_keys_hold_up_to_sixteen_bytes() {
        assert_eq!(Short::new(b"eth0"), Short::new(b"eth0"));
        assert_ne!(Short::new(b"eth0"), Short::new(b"eth0\0"));
        assert!(Short::new(&[b'x'; 16]).is_some());
        assert!(Short::new(&[b'x'; 17]).is_none());
    }
}
