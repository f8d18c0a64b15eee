//! What a capture left: the frames of a pcap or pcapng file with their comments, the exit
//! summary's counts, a metric's value.

use std::{path::Path, time::Duration};

/// One record of a pcap file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
    /// pcapng only: the EPB flags' direction (1 inbound, 2 outbound, 0 not given).
    pub direction: Option<u32>,
    /// pcapng only: the packet's comments.
    pub comments: Vec<String>,
}

impl Record {
    /// ntptap's owner comment (`ntptap: pid=... comm=...`), as `key=value` pairs.
    #[must_use]
    pub fn owner(&self) -> Option<Vec<(String, String)>> {
        let line = self
            .comments
            .iter()
            .find_map(|c| c.strip_prefix("ntptap: "))?;
        Some(
            line.split(' ')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A drop record's reason and location, from its `drop=REASON at SYMBOL` comment.
    #[must_use]
    pub fn drop(&self) -> Option<(String, String)> {
        self.comments.iter().find_map(|c| {
            let (reason, location) = c.strip_prefix("drop=")?.split_once(" at ")?;
            Some((reason.to_owned(), location.to_owned()))
        })
    }

    /// One fact of ntptap's owner comment (`pid`, `comm`, `socket`, ...).
    #[must_use]
    pub fn owner_fact(&self, key: &str) -> Option<String> {
        self.owner()?
            .into_iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

/// Every captured frame of the pcap file at `path` (drop records, on pcapng's
/// `ntptap-drops` interface, are left out: see [`read_drops`]).
#[must_use]
pub fn read_pcap(path: &Path) -> Vec<Record> {
    read_records(path, false)
}

/// The drop records of the pcapng file at `path`: the IP packets the kernel dropped, each
/// with its `drop=REASON at SYMBOL` comment.
#[must_use]
pub fn read_drops(path: &Path) -> Vec<Record> {
    read_records(path, true)
}

fn read_records(path: &Path, drops: bool) -> Vec<Record> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..])
            .unwrap_or_else(|e| panic!("{} is not a valid pcapng file: {e}", path.display()));
        let mut records = Vec::new();
        let mut names = Vec::new();
        while let Some(block) = reader.next_block() {
            let block = block
                .unwrap_or_else(|e| panic!("{} has a corrupt block: {e}", path.display()))
                .0;
            if let pcap_file::pcapng::Block::InterfaceDescription(i) = &block {
                names.push(i.options.iter().any(|o| {
                    matches!(o, pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfName(n) if n == "ntptap-drops")
                }));
            }
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = block {
                if names.get(p.interface_id as usize).copied().unwrap_or(false) != drops {
                    continue;
                }
                let direction = p.options.iter().find_map(|o| match o {
                    pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(f) => {
                        Some(f & 3)
                    }
                    _ => None,
                });
                let comments = p
                    .options
                    .iter()
                    .filter_map(|o| {
                        match o {
                        pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Common(
                            pcap_file::pcapng::blocks::opt_common::CommonOption::Comment(c),
                        ) => Some(c.to_string()),
                        _ => None,
                    }
                    })
                    .collect();
                records.push(Record {
                    ts: p.timestamp,
                    orig_len: p.original_len,
                    data: p.data.to_vec(),
                    direction: Some(direction.unwrap_or(0)),
                    comments,
                });
            }
        }
        return records;
    }
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file)
        .unwrap_or_else(|e| panic!("{} is not a valid pcap file: {e}", path.display()));
    let mut records = Vec::new();
    if drops {
        return records;
    }
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{} has a corrupt record: {e}", path.display()));
        records.push(Record {
            ts: p.timestamp(),
            orig_len: p.orig_len(),
            data: p.data().to_vec(),
            direction: None,
            comments: Vec::new(),
        });
    }
    records
}

/// The three counts of ntptap's (and tcpdump's) exit summary, and from ntptap's reasons line
/// the frames left unread and not written (0 when the line does not name them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCounts {
    pub captured: u64,
    pub received: u64,
    pub dropped: u64,
    pub unread: u64,
    pub unwritten: u64,
}

/// Parse `N packets captured` / `received by filter` / `dropped by kernel` from stderr, and
/// `N left unread` / `N not written` from the reasons line when there is one.
#[must_use]
pub fn exit_counts(stderr: &str) -> ExitCounts {
    let find = |suffix: &str| -> u64 {
        stderr
            .lines()
            .find_map(|l| l.strip_suffix(suffix).and_then(|n| n.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {suffix:?} line in:\n{stderr}"))
    };
    let reasons = stderr
        .lines()
        .find(|l| l.starts_with("ntptap: dropped:"))
        .unwrap_or_default();
    // "...; 12 left unread (-c reached); 3 not written (the output failed)"
    let reason = |what: &str| -> u64 {
        reasons
            .split(';')
            .find_map(|part| {
                let (count, _) = part.split_once(what)?;
                count.trim().rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or(0)
    };
    ExitCounts {
        captured: find(" packets captured"),
        received: find(" packets received by filter"),
        dropped: find(" packets dropped by kernel"),
        unread: reason("left unread"),
        unwritten: reason("not written"),
    }
}

/// The sum of the Prometheus samples in `text` whose line starts with `prefix`, rounded.
pub fn metric(text: &str, prefix: &str) -> i64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("not a sample: {l}"))
                .round() as i64
        })
        .sum()
}
