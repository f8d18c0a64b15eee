//! Requests waiting for their replies, by what pairs them (client, server, transmit
//! timestamp), and in the order they came, so that the oldest is found in O(1) to expire or
//! evict it. The exchange tracker keeps one, and so does [`super::residence::Residence`],
//! which pairs only what a pcapng file's comments need.

use std::{collections::VecDeque, net::SocketAddr, time::Duration};

use super::Table;

/// What pairs a reply with its request: the request's client and server, and its transmit
/// timestamp (the reply's origin timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The client's address and port (not a `SocketAddr`: IPv6's flow label and scope make
    /// that 32 bytes, and 65,536 keys wait in three tables).
    pub client: (std::net::IpAddr, u16),
    pub server: (std::net::IpAddr, u16),
    pub transmit: u64,
}

impl Key {
    pub fn new(client: SocketAddr, server: SocketAddr, transmit: u64) -> Self {
        Self {
            client: (client.ip(), client.port()),
            server: (server.ip(), server.port()),
            transmit,
        }
    }
}

/// A waiting request's value: it knows when the request was seen.
pub(crate) trait Seen {
    /// The request's capture time.
    fn seen(&self) -> Duration;
}

/// Requests waiting, by key, with their arrival order.
#[derive(Debug)]
pub(crate) struct Waiting<V> {
    table: Table<Key, V>,
    /// The requests in `table` in the order they came, with when: an entry whose request was
    /// answered (or seen again) is stale and skipped; the queue is compacted when stale
    /// entries outnumber live ones by half.
    order: VecDeque<(Duration, Key)>,
}

impl<V> Default for Waiting<V> {
    fn default() -> Self {
        Self {
            table: Table::default(),
            order: VecDeque::new(),
        }
    }
}

impl<V: Seen> Waiting<V> {
    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.table.contains_key(key)
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut V> {
        self.table.get_mut(key)
    }

    /// The request `key` taken out: its reply came.
    pub fn remove(&mut self, key: &Key) -> Option<V> {
        self.table.remove(key)
    }

    /// A request seen: it waits (in place of one with the same key, seen before it).
    pub fn insert(&mut self, key: Key, value: V) {
        self.order.push_back((value.seen(), key));
        self.table.insert(key, value);
        if self.order.len() > self.table.len() + self.table.len() / 2 + 1024 {
            let table = &self.table;
            self.order
                .retain(|(seen, k)| table.get(k).is_some_and(|p| p.seen() == *seen));
        }
    }

    fn live(&self, (seen, key): &(Duration, Key)) -> bool {
        self.table.get(key).is_some_and(|p| p.seen() == *seen)
    }

    /// The oldest request still waiting, taken out.
    pub fn pop_oldest(&mut self) -> Option<(Key, V)> {
        while let Some(entry) = self.order.pop_front() {
            if self.live(&entry) {
                return self.table.remove(&entry.1).map(|p| (entry.1, p));
            }
        }
        None
    }

    /// The oldest request seen more than `timeout` before `now`, taken out; `None` when
    /// none is that old. (O(1) but for the stale entries it skips. The queue is in order of
    /// time: while its front is not that old, nothing is, stale or not, and the table is not
    /// asked; that lookup for every packet was a tenth of `-w FILE.pcapng`'s reader.)
    pub fn pop_expired(&mut self, now: Duration, timeout: Duration) -> Option<(Key, V)> {
        while let Some(entry) = self.order.front().copied() {
            if now.saturating_sub(entry.0) <= timeout {
                return None;
            }
            self.order.pop_front();
            if self.live(&entry) {
                return self.table.remove(&entry.1).map(|p| (entry.1, p));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct At(u64);
    impl Seen for At {
        fn seen(&self) -> Duration {
            Duration::from_secs(self.0)
        }
    }

    fn key(n: u64) -> Key {
        let a: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:123".parse().unwrap();
        Key::new(a, b, n)
    }

    #[test]
    fn the_oldest_live_request_expires_or_is_evicted_first_and_stale_entries_are_skipped() {
        let mut w = Waiting::default();
        w.insert(key(1), At(1));
        w.insert(key(2), At(2));
        // Seen again later: its first entry is stale.
        w.insert(key(1), At(3));
        assert_eq!(w.len(), 2);
        // Answered: gone, its entry stale.
        assert_eq!(w.remove(&key(2)), Some(At(2)));
        assert_eq!(
            w.pop_expired(Duration::from_secs(10), Duration::from_secs(8)),
            None
        );
        assert_eq!(
            w.pop_expired(Duration::from_secs(12), Duration::from_secs(8)),
            Some((key(1), At(3)))
        );
        w.insert(key(4), At(4));
        w.insert(key(5), At(5));
        assert_eq!(w.pop_oldest(), Some((key(4), At(4))));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn the_queue_stays_within_half_again_its_live_requests() {
        let mut w = Waiting::default();
        for t in 0..100_000 {
            w.insert(key(7), At(t));
        }
        assert_eq!(w.len(), 1);
        assert!(w.order.len() <= 1 + 1024 + 1, "{} queued", w.order.len());
        assert_eq!(w.pop_oldest(), Some((key(7), At(99_999))));
    }
}
