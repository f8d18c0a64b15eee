//! The kernel programs' per-CPU counters, summed.

use aya::maps::{MapData, PerCpuArray};
use ntptap_common::{COUNTER_SLOTS, Counter, DIRECTIONS, counter_index};

/// Every counter, per direction, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    values: [[u64; COUNTER_SLOTS as usize]; DIRECTIONS as usize],
}

impl Counts {
    /// Read the counters map.
    pub fn read(map: &PerCpuArray<MapData, u64>) -> anyhow::Result<Self> {
        let mut counts = Counts::default();
        for direction in 0..DIRECTIONS as u8 {
            for counter in Counter::ALL {
                let per_cpu = map.get(&counter_index(direction, counter), 0)?;
                counts.values[usize::from(direction)][counter as usize] = per_cpu.iter().sum();
            }
        }
        Ok(counts)
    }

    /// One counter for one direction.
    #[must_use]
    pub fn get(&self, direction: u8, counter: Counter) -> u64 {
        self.values[usize::from(direction)][counter as usize]
    }

    /// One counter, both directions.
    #[must_use]
    pub fn total(&self, counter: Counter) -> u64 {
        (0..DIRECTIONS as u8).map(|d| self.get(d, counter)).sum()
    }

    /// Matched frames that never reached the ring ("dropped by kernel").
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.total(Counter::RingFull) + self.total(Counter::CopyFailed)
    }
}
