//! The offline rows: a generated capture decoded by ntptap, tcpdump and tshark, CPU time each.

use std::{
    fmt::Write as _,
    fs::File,
    io::{BufWriter, Write as _},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// CPU time (user + system) and wall time of one command, its output thrown away.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cost {
    pub(super) wall: Duration,
    pub(super) cpu: Duration,
}

pub(super) fn measure(program: &Path, args: &[&str]) -> anyhow::Result<Cost> {
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: we wait for our own child, passing pointers to locals that outlive the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &raw mut status, 0, &raw mut usage) };
    let wall = start.elapsed();
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{} {args:?} failed (status {status})", program.display());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Cost {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

pub(super) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A capture of `packets` NTP frames: client requests and server replies between a few
/// hundred clients and one server, checksums right, every field plausible.
pub(super) fn generate(path: &Path, packets: u64) -> anyhow::Result<()> {
    let header = PcapHeader {
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(
        BufWriter::with_capacity(1 << 20, File::create(path)?),
        header,
    )?;
    let mut frame = Vec::with_capacity(128);
    for i in 0..packets {
        let client = [10, 0, (i / 256 % 4) as u8, (i % 250) as u8 + 2];
        let server = [10, 1, 0, 1];
        let port = 40000 + (i / 2 % 20000) as u16;
        let reply = i % 2 == 1;
        let secs = 3_900_000_000u32 + (i / 100) as u32;
        let mut ntp = [0u8; 48];
        ntp[0] = if reply { 0x24 } else { 0x23 };
        ntp[1] = if reply { 2 } else { 0 };
        ntp[2] = 6;
        ntp[3] = 0xec;
        ntp[4..8].copy_from_slice(&0x0000_0155u32.to_be_bytes());
        ntp[8..12].copy_from_slice(&0x0000_0a3du32.to_be_bytes());
        ntp[12..16].copy_from_slice(&[192, 0, 2, 1]);
        if reply {
            ntp[16..20].copy_from_slice(&(secs - 60).to_be_bytes());
            ntp[24..28].copy_from_slice(&secs.to_be_bytes());
            ntp[32..36].copy_from_slice(&secs.to_be_bytes());
            ntp[36..40].copy_from_slice(&0x0010_0000u32.to_be_bytes());
        }
        ntp[40..44].copy_from_slice(&secs.to_be_bytes());
        ntp[44..48].copy_from_slice(&((i as u32).wrapping_mul(2_654_435_761)).to_be_bytes());
        let (src, dst, sport, dport) = if reply {
            (server, client, 123, port)
        } else {
            (client, server, port, 123)
        };
        frame.clear();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut frame, &ntp)
            .context("build a frame")?;
        let ts = Duration::new(1_700_000_000 + i / 1000, (i % 1000) as u32 * 1_000_000);
        writer.write_packet(&PcapPacket::new(ts, frame.len() as u32, frame.as_slice())?)?;
    }
    writer.into_inner().flush()?;
    Ok(())
}

pub(super) struct Row {
    pub(super) what: String,
    pub(super) ntptap: Cost,
    pub(super) peer: Cost,
    pub(super) peer_name: &'static str,
    pub(super) packets: u64,
    pub(super) peer_packets: u64,
}

impl Row {
    pub(super) fn per_packet(c: Cost, n: u64) -> f64 {
        c.cpu.as_secs_f64() * 1e6 / n as f64
    }
    pub(super) fn ratio(&self) -> f64 {
        Self::per_packet(self.peer, self.peer_packets) / Self::per_packet(self.ntptap, self.packets)
    }
}

/// The offline row of the exchange tracker and client analytics.
pub(super) const ANALYSIS: &str =
    "ntptap -r --no-print --stats (decode, exchanges, client analytics) vs tcpdump -n -r";

/// The offline decode table; its rows as JSON.
pub(super) fn decode_report(md: &mut String, rows: &[Row]) -> Vec<serde_json::Value> {
    let _ = writeln!(
        md,
        "## Offline decode (CPU time, user + system, output to /dev/null)\n"
    );
    let _ = writeln!(
        md,
        "| comparison | ntptap µs/packet | peer µs/packet | peer ÷ ntptap (above 1: ntptap is faster) |"
    );
    let _ = writeln!(md, "|---|---|---|---|");
    let mut json_rows = Vec::new();
    for r in rows {
        let (a, b) = (
            Row::per_packet(r.ntptap, r.packets),
            Row::per_packet(r.peer, r.peer_packets),
        );
        let _ = writeln!(
            md,
            "| {} | {a:.3} | {b:.3} ({}) | {:.1}× |",
            r.what,
            r.peer_name,
            r.ratio()
        );
        json_rows.push(serde_json::json!({
            "comparison": r.what, "ntptap_us_per_packet": a, "peer": r.peer_name,
            "peer_us_per_packet": b, "ratio": r.ratio(),
            "ntptap_wall_s": r.ntptap.wall.as_secs_f64(), "peer_wall_s": r.peer.wall.as_secs_f64(),
        }));
    }
    json_rows
}
