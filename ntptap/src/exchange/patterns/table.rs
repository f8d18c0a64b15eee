//! A map of at most `capacity` entries for per-address state under floods: when it is full, a
//! newcomer takes the place of the lightest of [`SAMPLES`] entries drawn at random (Redis's
//! approximated LFU eviction). The heavy entries (the clients that keep sending, the victim of
//! an attack) stay; a flood of a million one-packet spoofed sources only churns the light ones.
//!
//! Why not a crate: an LRU (`lru`) evicts the oldest entry, so a flood of new sources pushes
//! out every real client within `capacity` packets (the unit test below shows it for this
//! table's weights); `topk`'s space-saving, which the client analytics use for the busiest
//! clients, keeps counts, not the state each detector needs, and has no remove.

use std::{collections::HashMap, hash::Hash};

use foldhash::fast::RandomState;

/// Entries drawn when one must go.
pub const SAMPLES: usize = 8;

/// See the module's text.
pub struct Table<K, V> {
    capacity: usize,
    slots: Vec<(K, V)>,
    /// foldhash, seeded at random per process: a forged flood cannot aim at its collisions,
    /// and it costs less than SipHash on the path every NTP packet takes (BENCHMARKS.md).
    index: HashMap<K, u32, RandomState>,
    /// xorshift64 state: which entries are drawn needs no more than that.
    rng: u64,
}

impl<K: Copy + Eq + Hash, V> Table<K, V> {
    /// An empty table for at most `capacity` entries (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: Vec::new(),
            index: HashMap::default(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Bytes the table can take at most: its slots, and the index at twice its entries (hash
    /// table slack) and once more while it grows.
    #[must_use]
    pub fn bound(capacity: usize) -> usize {
        capacity * (size_of::<(K, V)>() + 3 * (size_of::<(K, u32)>() + 1))
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The entry of `key`, if held.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let i = *self.index.get(key)? as usize;
        Some(&mut self.slots[i].1)
    }

    /// The entry of `key`, if held.
    #[must_use]
    pub fn get(&self, key: &K) -> Option<&V> {
        let i = *self.index.get(key)? as usize;
        Some(&self.slots[i].1)
    }

    /// The entry of `key`, made by `make` if it is not held; when the table is full, the
    /// lightest of [`SAMPLES`] drawn entries (by `weight`) makes room.
    pub fn entry(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
        weight: impl Fn(&V) -> u64,
    ) -> &mut V {
        if let Some(&i) = self.index.get(&key) {
            return &mut self.slots[i as usize].1;
        }
        let i = if self.slots.len() < self.capacity {
            self.slots.push((key, make()));
            self.slots.len() - 1
        } else {
            let mut lightest = self.draw();
            for _ in 1..SAMPLES {
                let j = self.draw();
                if weight(&self.slots[j].1) < weight(&self.slots[lightest].1) {
                    lightest = j;
                }
            }
            self.index.remove(&self.slots[lightest].0);
            self.slots[lightest] = (key, make());
            lightest
        };
        self.index.insert(key, i as u32);
        &mut self.slots[i].1
    }

    /// Every entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.slots.iter()
    }

    fn draw(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % self.slots.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_entries_survive_a_flood_of_newcomers() {
        let mut t: Table<u32, u64> = Table::new(1024);
        // 100 real clients that have sent 50 requests each ...
        for _ in 0..50 {
            for key in 0..100u32 {
                *t.entry(key, || 0, |w| *w) += 1;
            }
        }
        // ... and go on sending among a million one-packet spoofed sources.
        for round in 0..1_000_000u32 {
            let key = if round % 100 == 0 {
                round / 100 % 100
            } else {
                1_000 + round
            };
            *t.entry(key, || 0, |w| *w) += 1;
            assert!(t.len() <= 1024);
        }
        let kept = (0..100u32).filter(|k| t.get(k).is_some()).count();
        assert_eq!(kept, 100, "real clients evicted by the flood");
        // An LRU of the same size would keep none of them: each is followed by 9,900
        // newcomers before it sends again, and 1,024 push it out.
    }

    #[test]
    fn a_full_table_replaces_and_indexes_consistently() {
        let mut t: Table<u32, u64> = Table::new(4);
        for k in 0..100u32 {
            *t.entry(k, || u64::from(k), |w| *w) += 0;
            assert!(t.len() <= 4);
            for (key, value) in t.iter() {
                assert_eq!(u64::from(*key), *value);
                assert_eq!(t.get(key), Some(value));
            }
        }
        assert_eq!(t.get(&99), Some(&99));
    }
}
