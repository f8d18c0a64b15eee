//! Kernel drops, the loader's side: the structure layout the drop program reads (from the
//! kernel's BTF), the names of the kernel's drop reasons (BTF too: the enum is not UAPI and
//! moves between kernels, as pwru reads it), the symbols of drop locations (`/proc/kallsyms`),
//! and the program at `tp_btf/kfree_skb` (see `ntptap-ebpf/src/drops.rs`).

use std::{collections::HashMap, os::unix::fs::MetadataExt as _, sync::Arc};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray},
    programs::BtfTracePoint,
};
use ntptap_common::{
    DIRECTIONS, DROP_REASON_SLOTS, DROP_STATS, DROP_WINDOW, DropLayout, DropStat, drop_index, names,
};
use tracing::debug;

use super::{btf::Btf, refusal::Refusal};
use crate::counts::DropCounts;

/// The prefix the kernel gives its drop reasons, left out of ntptap's names.
const PREFIX: &str = "SKB_DROP_REASON_";

/// What the drop program needs from the running kernel, found before the programs load.
pub struct DropPlan {
    /// Written into the drop program's `.rodata`.
    pub layout: DropLayout,
    /// Whether the tracepoint passes a reason (5.17 and later).
    pub with_reason: bool,
    /// The reasons' names.
    pub reasons: Arc<Reasons>,
}

impl DropPlan {
    /// Read the kernel's BTF: where the fields are, the reasons' names, the tracepoint's
    /// arguments. The error names what the kernel lacks.
    pub fn probe() -> anyhow::Result<Self> {
        let btf = Btf::kernel()?;
        let args = btf.tracepoint_args("kfree_skb").context(
            "the kernel has no kfree_skb tracepoint in its BTF (it needs CONFIG_DEBUG_INFO_BTF \
             and tracepoints)",
        )?;
        let with_reason = args >= 3;
        let netns = std::fs::metadata("/proc/self/ns/net")
            .context("cannot read this process's network namespace (/proc/self/ns/net)")?
            .ino() as u32;
        let layout = layout(&btf, netns)?;
        let reasons = Reasons::from_btf(&btf, with_reason);
        Ok(Self {
            layout: DropLayout {
                consumed: reasons.consumed.unwrap_or(u32::MAX),
                ..layout
            },
            with_reason,
            reasons: Arc::new(reasons),
        })
    }
}

/// Where the fields are in this kernel.
fn layout(btf: &Btf, netns: u32) -> anyhow::Result<DropLayout> {
    let skb = |field: &str, size: u32| -> anyhow::Result<u32> {
        let (off, got) = btf.offset("sk_buff", field)?;
        if got != size {
            bail!("sk_buff.{field} is {got} bytes in this kernel, not {size}");
        }
        Ok(off)
    };
    let fields = [
        skb("dev", 8)?,
        skb("sk", 8)?,
        skb("len", 4)?,
        skb("data_len", 4)?,
        skb("skb_iif", 4)?,
        skb("protocol", 2)?,
        skb("network_header", 2)?,
        skb("head", 8)?,
        skb("data", 8)?,
    ];
    let sizes = [8, 8, 4, 4, 4, 2, 2, 8, 8];
    let window = *fields.iter().min().unwrap_or(&0);
    let end = fields
        .iter()
        .zip(sizes)
        .map(|(off, size)| off + size)
        .max()
        .unwrap_or(0);
    if (end - window) as usize > DROP_WINDOW {
        bail!(
            "this kernel's sk_buff spreads the fields ntptap reads over {} bytes, more than its \
             {DROP_WINDOW}-byte window",
            end - window
        );
    }
    // protocol, network_header and head: read first, for every drop.
    let quick_window = fields[5].min(fields[6]).min(fields[7]);
    let quick_end = (fields[5] + 2).max(fields[6] + 2).max(fields[7] + 8);
    let (dev_net, _) = btf.offset("net_device", "nd_net")?;
    let (sk_net, _) = btf.offset("sock", "__sk_common.skc_net")?;
    let (net_inum, _) = btf.offset("net", "ns.inum")?;
    let [
        dev,
        sk,
        len,
        data_len,
        skb_iif,
        protocol,
        network_header,
        head,
        data,
    ] = fields.map(|f| f - window);
    Ok(DropLayout {
        window,
        window_len: end - window,
        dev,
        sk,
        len,
        data_len,
        skb_iif,
        protocol,
        network_header,
        head,
        data,
        dev_ifindex: btf.offset("net_device", "ifindex")?.0,
        dev_net,
        sk_net,
        net_inum,
        netns,
        consumed: u32::MAX,
        quick: quick_window,
        quick_len: quick_end - quick_window,
        quick_protocol: fields[5] - quick_window,
        quick_network_header: fields[6] - quick_window,
        quick_head: fields[7] - quick_window,
        pad: [0; 2],
    })
}

/// The kernel's drop reasons by value, as it spells them without `SKB_DROP_REASON_`.
#[derive(Debug, Default)]
pub struct Reasons {
    names: HashMap<u32, String>,
    /// `SKB_CONSUMED`'s value, where the enum has it: a free that is no drop.
    consumed: Option<u32>,
    /// Whether the kernel passes reasons at all.
    with_reason: bool,
}

impl Reasons {
    fn from_btf(btf: &Btf, with_reason: bool) -> Self {
        let mut reasons = Self {
            with_reason,
            ..Self::default()
        };
        for (value, name) in btf.enum_values("skb_drop_reason").unwrap_or_default() {
            let Ok(value) = u32::try_from(value) else {
                continue;
            };
            if name == "SKB_CONSUMED" {
                reasons.consumed = Some(value);
            }
            let short = name.strip_prefix(PREFIX).unwrap_or(&name).to_owned();
            reasons.names.entry(value).or_insert(short);
        }
        reasons
    }

    /// A table of names, for tests and readers of other kernels.
    #[must_use]
    pub fn from_names(names: impl IntoIterator<Item = (u32, String)>) -> Self {
        Self {
            names: names.into_iter().collect(),
            consumed: None,
            with_reason: true,
        }
    }

    /// The name of `reason`: `unknown` where the kernel gives none, the number where this
    /// kernel's enum does not name it (a subsystem's reason carries its id in the high bits).
    #[must_use]
    pub fn name(&self, reason: u32) -> String {
        if !self.with_reason {
            return "unknown".to_owned();
        }
        match self.names.get(&reason) {
            Some(name) => name.clone(),
            None if reason >> 16 != 0 => {
                format!("SUBSYS_{}_{}", reason >> 16, reason & 0xffff)
            }
            None => format!("REASON_{reason}"),
        }
    }

    /// The name of counter slot `slot` (the last counts every reason from there on).
    fn slot_name(&self, slot: u32) -> String {
        if slot == DROP_REASON_SLOTS - 1 {
            format!("{}_or_more", self.name(slot))
        } else {
            self.name(slot)
        }
    }
}

/// The kernel's text symbols (`/proc/kallsyms`), to name drop locations; read once, on the
/// first drop.
#[derive(Default)]
pub struct Symbols {
    /// (address, name), by address; `None` until read.
    table: Option<Vec<(u64, String)>>,
    cache: HashMap<u64, Arc<str>>,
}

impl Symbols {
    /// The function `address` is in, or `unknown` where the symbols are hidden
    /// (`kernel.kptr_restrict`, or no `/proc/kallsyms`): a raw kernel address is never shown,
    /// as it would undo the address layout randomisation the kernel hides them for.
    pub fn name(&mut self, address: u64) -> Arc<str> {
        if let Some(name) = self.cache.get(&address) {
            return name.clone();
        }
        let table = self.table.get_or_insert_with(|| {
            let table = read_kallsyms().unwrap_or_else(|e| {
                debug!("cannot name drop locations: {e:#}");
                Vec::new()
            });
            if table.is_empty() {
                tracing::warn!(
                    "/proc/kallsyms shows no addresses (kernel.kptr_restrict?): drop locations \
                     are shown as unknown"
                );
            }
            table
        });
        let name: Arc<str> = match table.partition_point(|(a, _)| *a <= address) {
            0 => "unknown".into(),
            i => table[i - 1].1.as_str().into(),
        };
        if self.cache.len() < 4096 {
            self.cache.insert(address, name.clone());
        }
        name
    }
}

fn read_kallsyms() -> anyhow::Result<Vec<(u64, String)>> {
    let text = std::fs::read_to_string("/proc/kallsyms").context("cannot read /proc/kallsyms")?;
    let mut table: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_ascii_whitespace();
            let address = u64::from_str_radix(parts.next()?, 16).ok()?;
            let kind = parts.next()?;
            let name = parts.next()?;
            (address != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                .then(|| (address, name.to_owned()))
        })
        .collect();
    table.sort_unstable();
    Ok(table)
}

/// The drop program, attached, and its counters.
pub struct DropHook {
    counts: PerCpuArray<MapData, u64>,
    /// The reasons' names.
    pub reasons: Arc<Reasons>,
    /// Which program runs, for `-v`.
    pub program: &'static str,
}

impl DropHook {
    /// Load the drop program that fits the kernel (`plan`) and attach it to `kfree_skb`.
    pub fn open(ebpf: &mut Ebpf, plan: &DropPlan) -> anyhow::Result<Self> {
        let name = if plan.with_reason {
            names::DROP
        } else {
            names::DROP_NO_REASON
        };
        let btf =
            aya::Btf::from_sys_fs().map_err(|e| anyhow!("cannot read the kernel's BTF: {e}"))?;
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?
            .try_into()?;
        if let Err(e) = program.load("kfree_skb", &btf) {
            bail!(
                "the kernel refused the drop program at tp_btf/kfree_skb ({}); NTPTAP_LOG=debug \
                 shows the verifier's log; please report it with `uname -rv`",
                Refusal::of(name, &e)
            );
        }
        program.attach().map_err(|e| {
            anyhow!(
                "cannot attach the drop program to tp_btf/kfree_skb ({})",
                Refusal::of(name, &e)
            )
        })?;
        let counts = ebpf
            .take_map(names::DROP_COUNTS)
            .ok_or_else(|| anyhow!("the BPF object has no map {}", names::DROP_COUNTS))?;
        Ok(Self {
            counts: PerCpuArray::try_from(counts)?,
            reasons: plan.reasons.clone(),
            program: name,
        })
    }

    /// What the drop program counted so far.
    pub fn counts(&self) -> anyhow::Result<DropCounts> {
        let mut counts = DropCounts::default();
        let sum = |index: u32| -> anyhow::Result<u64> {
            Ok(self
                .counts
                .get(&index, 0)
                .context("cannot read the drop counters")?
                .iter()
                .sum())
        };
        for direction in 0..DIRECTIONS as u8 {
            for stat in 0..DROP_STATS {
                counts.stats[usize::from(direction)][stat as usize] =
                    sum(drop_index(direction, DROP_REASON_SLOTS + stat))?;
            }
            if counts.stats[usize::from(direction)][DropStat::Matched as usize] == 0 {
                continue;
            }
            for slot in 0..DROP_REASON_SLOTS {
                let n = sum(drop_index(direction, slot))?;
                if n > 0 {
                    counts
                        .reasons
                        .push((direction, self.reasons.slot_name(slot), n));
                }
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_kernel_lays_out_what_the_drop_program_reads() {
        let Ok(btf) = Btf::kernel() else {
            eprintln!("notice: this kernel has no BTF; skipped");
            return;
        };
        let layout = layout(&btf, 1).unwrap();
        assert!(layout.window_len as usize <= DROP_WINDOW);
        for off in [
            layout.dev,
            layout.len,
            layout.head,
            layout.data,
            layout.protocol,
        ] {
            assert!(off < layout.window_len, "{layout:?}");
        }
        let with_reason = btf.tracepoint_args("kfree_skb").unwrap() >= 3;
        let reasons = Reasons::from_btf(&btf, with_reason);
        if with_reason {
            assert!(!reasons.name(2).is_empty());
            assert!(reasons.names.values().any(|n| n == "NO_SOCKET"));
            assert!(reasons.names.values().any(|n| n == "NETFILTER_DROP"));
        } else {
            assert_eq!(reasons.name(3), "unknown");
        }
    }

    #[test]
    fn reasons_without_a_name_keep_their_number() {
        let reasons = Reasons::from_names([(3, "NO_SOCKET".to_owned())]);
        assert_eq!(reasons.name(3), "NO_SOCKET");
        assert_eq!(reasons.name(9), "REASON_9");
        assert_eq!(reasons.name(0x1_0004), "SUBSYS_1_4");
        assert_eq!(reasons.slot_name(255), "REASON_255_or_more");
    }

    #[test]
    fn a_location_is_named_by_the_symbol_before_it() {
        let mut symbols = Symbols {
            table: Some(vec![(0x1000, "a".to_owned()), (0x2000, "b".to_owned())]),
            cache: HashMap::new(),
        };
        assert_eq!(&*symbols.name(0x1000), "a");
        assert_eq!(&*symbols.name(0x1fff), "a");
        assert_eq!(&*symbols.name(0x2001), "b");
        assert_eq!(
            &*symbols.name(0x10),
            "unknown",
            "never a raw kernel address"
        );
    }
}
