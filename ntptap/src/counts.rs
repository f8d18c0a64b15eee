//! The kernel programs' per-CPU counters, summed over CPUs, per captured interface: read by
//! the capture, shown by the exit summary and the metrics.

use aya::maps::{MapData, PerCpuArray};
use ntptap_common::{
    COUNTER_SLOTS, Counter, CounterBlock, DIRECTIONS, DROP_STATS, DropStat, counter_key,
};

/// One interface's counters: per direction, per [`Counter`].
pub type Block = [[u64; COUNTER_SLOTS as usize]; DIRECTIONS as usize];

/// Every counter, per interface and direction, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// (name, counters) for each interface, one entry a name: an interface that went and came
    /// back under the same name adds up.
    interfaces: Vec<(String, Block)>,
    /// What the process attribution hooks counted, when they run.
    pub owners: Option<OwnerCounts>,
    /// What the drop program counted, when it runs.
    pub drops: Option<DropCounts>,
    /// The interfaces attached now (the others' counts are what they left when they went
    /// away); empty when the source does not say.
    pub live: Vec<String>,
}

/// What the drop program counted so far: NTP frames the kernel dropped after ntptap's hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Per direction, per [`DropStat`].
    pub stats: [[u64; DROP_STATS as usize]; DIRECTIONS as usize],
    /// (direction, reason, drops) for each reason seen.
    pub reasons: Vec<(u8, String, u64)>,
}

impl DropCounts {
    /// `stat` over both directions.
    #[must_use]
    pub fn total(&self, stat: DropStat) -> u64 {
        self.stats.iter().map(|s| s[stat as usize]).sum()
    }

    /// Drops by reason over both directions, most first.
    #[must_use]
    pub fn by_reason(&self) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = Vec::new();
        for (_, reason, n) in &self.reasons {
            match all.iter_mut().find(|(r, _)| r == reason) {
                Some((_, sum)) => *sum += n,
                None => all.push((reason, *n)),
            }
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all
    }
}

/// What the attribution hooks counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerCounts {
    /// Sockets whose owner was recorded.
    pub recorded: u64,
    /// Owners replaced by another process or thread.
    pub changed: u64,
    /// Recorded sockets closed.
    pub released: u64,
    /// UDP sockets open before the start whose owners were found in `/proc`.
    pub earlier_sockets: u64,
    /// How many times the kernel named a frame's socket from them (at TC once per socket: it
    /// is recorded under its address then; at XDP every frame).
    pub earlier_frames: u64,
    /// Owners held now.
    pub live: u64,
}

impl OwnerCounts {
    /// Owners the full map pushed out: recorded, neither closed nor held now.
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.recorded.saturating_sub(self.released + self.live)
    }
}

/// Read the counters of the interface slot `slot`, summed over CPUs.
pub fn read_block(map: &PerCpuArray<MapData, CounterBlock>, slot: u32) -> anyhow::Result<Block> {
    let mut block = Block::default();
    for direction in 0..DIRECTIONS as u8 {
        let per_cpu = map.get(&counter_key(slot, direction), 0)?;
        for counter in Counter::ALL {
            block[usize::from(direction)][counter as usize] =
                per_cpu.iter().map(|cpu| cpu[counter as usize]).sum();
        }
    }
    Ok(block)
}

impl Counts {
    /// Read the counters of `interfaces` (counter slot, name).
    pub fn read<'a>(
        map: &PerCpuArray<MapData, CounterBlock>,
        interfaces: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> anyhow::Result<Self> {
        let mut counts = Counts::default();
        for (slot, name) in interfaces {
            counts.add(name, &read_block(map, slot)?);
        }
        Ok(counts)
    }

    /// Add every interface of `other`, by name.
    pub fn merge(&mut self, other: &Counts) {
        for (name, block) in &other.interfaces {
            self.add(name, block);
        }
    }

    /// Add `block` to the counts of `name`.
    pub fn add(&mut self, name: &str, block: &Block) {
        let i = self
            .interfaces
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| {
                self.interfaces.push((name.to_owned(), Block::default()));
                self.interfaces.len() - 1
            });
        let entry = &mut self.interfaces[i].1;
        for (sum, more) in entry.iter_mut().flatten().zip(block.iter().flatten()) {
            *sum += more;
        }
    }

    /// One counter for one direction, all interfaces.
    #[must_use]
    pub fn get(&self, direction: u8, counter: Counter) -> u64 {
        self.interfaces
            .iter()
            .map(|(_, b)| b[usize::from(direction)][counter as usize])
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
        self.interfaces.iter().flat_map(|(name, block)| {
            (0..DIRECTIONS as u8).flat_map(move |d| {
                Counter::ALL
                    .into_iter()
                    .map(move |c| (name.as_str(), d, c, block[usize::from(d)][c as usize]))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_that_comes_back_adds_up_and_others_stay_apart() {
        let mut one = Block::default();
        one[0][Counter::Matched as usize] = 3;
        let mut two = Block::default();
        two[1][Counter::Matched as usize] = 4;
        let mut counts = Counts::default();
        counts.add("veth0", &one);
        counts.add("eth0", &two);
        counts.add("veth0", &one);
        assert_eq!(counts.total(Counter::Matched), 10);
        let veth0: u64 = counts
            .each()
            .filter(|(n, _, c, _)| *n == "veth0" && *c == Counter::Matched)
            .map(|(_, _, _, v)| v)
            .sum();
        assert_eq!(veth0, 6);
        assert_eq!(
            counts.each().filter(|(n, ..)| *n == "eth0").count(),
            2 * Counter::ALL.len()
        );
    }
}
