//! The kernel programs' per-CPU counters, summed over CPUs, per captured interface: read by
//! the capture, shown by the exit summary and the metrics.

use aya::maps::{MapData, PerCpuArray};
use ntptap_common::{COUNTER_SLOTS, Counter, DIRECTIONS, IFINDEX_SLOTS, counter_index};

type Block = [[u64; COUNTER_SLOTS as usize]; DIRECTIONS as usize];

/// Every counter, per interface and direction, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// (interface index, name, counters) for each interface read.
    interfaces: Vec<(u32, String, Block)>,
}

impl Counts {
    /// Read the counters of `interfaces` (index, name). Two interfaces whose indexes share a
    /// slot (`ifindex % 256`) share counters: the second is folded into the first, whose name
    /// then stands for both.
    pub fn read<'a>(
        map: &PerCpuArray<MapData, u64>,
        interfaces: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> anyhow::Result<Self> {
        let mut counts = Counts::default();
        let mut slots = Vec::new();
        for (index, name) in interfaces {
            if slots.contains(&(index % IFINDEX_SLOTS)) {
                continue;
            }
            slots.push(index % IFINDEX_SLOTS);
            let mut block = Block::default();
            for direction in 0..DIRECTIONS as u8 {
                for counter in Counter::ALL {
                    let per_cpu = map.get(&counter_index(index, direction, counter), 0)?;
                    block[usize::from(direction)][counter as usize] = per_cpu.iter().sum();
                }
            }
            counts.interfaces.push((index, name.to_owned(), block));
        }
        Ok(counts)
    }

    /// Interfaces whose counters the kernel keeps in the same slot as an earlier one.
    #[must_use]
    pub fn shared_slots<'a>(interfaces: impl IntoIterator<Item = (u32, &'a str)>) -> Vec<String> {
        let mut seen: Vec<(u32, &str)> = Vec::new();
        let mut shared = Vec::new();
        for (index, name) in interfaces {
            if let Some((_, first)) = seen
                .iter()
                .find(|(i, _)| i % IFINDEX_SLOTS == index % IFINDEX_SLOTS)
            {
                shared.push(format!("{name} is counted with {first}"));
            } else {
                seen.push((index, name));
            }
        }
        shared
    }

    /// One counter for one direction, all interfaces.
    #[must_use]
    pub fn get(&self, direction: u8, counter: Counter) -> u64 {
        self.interfaces
            .iter()
            .map(|(_, _, b)| b[usize::from(direction)][counter as usize])
            .sum()
    }

    /// One counter, both directions, all interfaces.
    #[must_use]
    pub fn total(&self, counter: Counter) -> u64 {
        (0..DIRECTIONS as u8).map(|d| self.get(d, counter)).sum()
    }

    /// Matched frames that never reached the ring ("dropped by kernel").
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.total(Counter::RingFull) + self.total(Counter::CopyFailed)
    }

    /// Per interface: (name, direction, counter, value), for the metrics.
    pub fn each(&self) -> impl Iterator<Item = (&str, u8, Counter, u64)> {
        self.interfaces.iter().flat_map(|(_, name, block)| {
            (0..DIRECTIONS as u8).flat_map(move |d| {
                Counter::ALL
                    .into_iter()
                    .map(move |c| (name.as_str(), d, c, block[usize::from(d)][c as usize]))
            })
        })
    }
}
