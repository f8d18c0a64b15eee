//! Exact accounting under overload: NTP floods at rising rates, with the default ring and a
//! small one, against an independent count taken behind the tap (an nftables counter on the
//! same interface in the receiving namespace). Every run, exactly: received by filter = the
//! nftables count, captured + dropped = received, the file holds the captured frames, and the
//! metrics and the pcapng interface statistics say the same as the exit summary.

use std::time::Duration;

use nix::sys::signal::Signal;
use ntptap_tests::{Lab, Netns, NftCounter, Proc, exit_counts, ntptap_bin, read_pcap, run};

/// NTP requests from `ns` to `server` for `seconds`, `rate` a second (0: as fast as Python
/// sends).
fn flood(ns: &Netns, server: &str, rate: u32, seconds: f64) {
    let script = ntptap_tests::paced_requests(server, rate, seconds);
    run(ns.command("/usr/bin/python3").args(["-c", &script]));
}

fn metric_u64(text: &str, prefix: &str) -> u64 {
    ntptap_tests::metric(text, prefix)
        .try_into()
        .expect("a count")
}

#[test]
fn floods_at_rising_rates_are_counted_exactly() {
    let lab = Lab::new("overload");
    let behind_tap = NftCounter::new(&lab.a, "va");
    let dir = tempfile::tempdir().expect("tempdir");
    // (packets a second, ring KiB): the default ring at a rate it keeps up with, then a small
    // ring at 2x, 5x, and Python's full speed.
    let runs: [(u32, Option<&str>); 4] = [
        (5_000, None),
        (10_000, Some("8")),
        (25_000, Some("8")),
        (0, Some("4")),
    ];
    let mut report = Vec::new();
    for (i, (rate, ring)) in runs.into_iter().enumerate() {
        // The rule's counter runs on across the runs: take the difference.
        let before = behind_tap.count();
        let file = dir.path().join(format!("overload{i}.pcapng"));
        let port = format!("127.0.0.1:{}", 9200 + i);
        let ntptap = Proc::listening(
            "ntptap",
            lab.a
                .command(ntptap_bin())
                .args(["-i", "va", "-Q", "in", "--metrics", &port])
                .args(ring.map_or_else(Vec::new, |kib| vec!["-B", kib]))
                .arg("-w")
                .arg(&file),
        );
        // Full speed for 3 s: the ring stays full for all of it.
        flood(&lab.b, Lab::A4, rate, if rate == 0 { 3.0 } else { 2.0 });
        // The metrics are rendered once a second.
        std::thread::sleep(Duration::from_millis(2200));
        let scrape = run(lab.a.command("/usr/bin/python3").args([
            "-c",
            &format!("import urllib.request; print(urllib.request.urlopen('http://{port}/metrics').read().decode())"),
        ]));
        let metrics = String::from_utf8_lossy(&scrape.stdout).into_owned();
        let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
        assert!(status.success(), "{stderr}");
        let behind = behind_tap.count() - before;
        let counts = exit_counts(&stderr);
        let what = format!("rate {rate}/s, ring {ring:?} KiB:\n{stderr}\n{metrics}");
        assert!(behind > 1000, "a flood: {what}");
        assert_eq!(
            counts.received, behind,
            "received = the nftables count: {what}"
        );
        assert_eq!(counts.captured + counts.dropped, counts.received, "{what}");
        assert_eq!(
            read_pcap(&file).len() as u64,
            counts.captured,
            "the file: {what}"
        );
        // The metrics, scraped after the flood and before the stop, say the same.
        let kernel = |reason: &str| {
            metric_u64(
                &metrics,
                &format!(
                    "ntptap_kernel_frames_total{{interface=\"va\",direction=\"in\",reason=\"{reason}\"}}"
                ),
            )
        };
        assert_eq!(kernel("matched"), counts.received, "metrics: {what}");
        assert_eq!(
            kernel("ring_full") + kernel("copy_failed"),
            counts.dropped,
            "metrics: {what}"
        );
        assert_eq!(
            metric_u64(&metrics, "ntptap_frames_written_total"),
            counts.captured,
            "metrics: {what}"
        );
        // And the pcapng interface statistics.
        let bytes = std::fs::read(&file).unwrap();
        let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("valid pcapng");
        let mut isb = Vec::new();
        while let Some(block) = reader.next_block() {
            if let pcap_file::pcapng::Block::InterfaceStatistics(s) = block.expect("valid block").0
            {
                isb.extend(s.options.iter().map(|o| format!("{o:?}")));
            }
        }
        for want in [
            format!("IsbIfRecv({})", counts.received),
            format!("IsbIfDrop({})", counts.dropped),
            format!("IsbFilterAccept({})", counts.captured),
        ] {
            assert!(isb.contains(&want), "{want} in {isb:?}: {what}");
        }
        report.push(format!(
            "{rate}/s ring {ring:?}: received {} (nftables {behind}), captured {}, dropped {}",
            counts.received, counts.captured, counts.dropped
        ));
    }
    // At least one run overloaded the ring, or the test proved nothing about overload.
    assert!(
        report.iter().any(|r| !r.ends_with("dropped 0")),
        "{report:#?}"
    );
    eprintln!("{}", report.join("\n"));
}

/// A reader slower than the flood keeps reading. The kernel wakes the reader only as a ring
/// passes its wake-up mark (a quarter); a read that ends with the ring already past it
/// (records came while it read) must read again at once. It slept until the 250 ms timer
/// instead, and `-w FILE.pcapng` (which decodes and tracks every frame) then kept about 4 % of
/// the bench's flood. Here: the smallest rings, a pcapng file, Python's full speed for 3 s;
/// reading only on the timer would take at most a ring's worth of records per CPU every
/// 250 ms.
#[test]
fn a_reader_slower_than_the_flood_reads_again_at_once() {
    const SECONDS: f64 = 3.0;
    let lab = Lab::new("behind");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("behind.pcapng");
    let ntptap = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-v", "-i", "va", "-Q", "in", "-B", "32", "-w"])
            .arg(&file),
    );
    // "ring buffers: N of K KiB, ...", said before "listening on".
    let geometry = ntptap
        .stderr_seen
        .iter()
        .find_map(|l| {
            l.split_once("ring buffers: ")
                .map(|(_, rest)| rest.to_owned())
        })
        .expect("the ring geometry");
    let mut words = geometry.split(' ');
    let rings: u64 = words.next().and_then(|n| n.parse().ok()).expect("a count");
    let kib: u64 = words.nth(1).and_then(|n| n.parse().ok()).expect("a size");
    flood(&lab.b, Lab::A4, 0, SECONDS);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let counts = exit_counts(&stderr);
    assert_eq!(
        counts.captured + counts.dropped,
        counts.received,
        "{stderr}"
    );
    // A record of a plain NTP frame takes 232 bytes of a ring (the 128-byte class, the
    // header, the ring's own 8).
    let per_ring = kib * 1024 / 232;
    let timer_reads = (SECONDS + 1.0) as u64 * 4 + 2;
    let timer_only = timer_reads * rings * per_ring;
    assert!(
        counts.received > 10 * timer_only,
        "the flood must overrun rings read only on the timer ({timer_only}): {stderr}"
    );
    eprintln!(
        "captured {} of {} (timer only: at most {timer_only})",
        counts.captured, counts.received
    );
    assert!(
        counts.captured > 3 * timer_only,
        "captured {} of {}; a reader woken only by the timer takes at most {timer_only}: {stderr}",
        counts.captured,
        counts.received
    );
}
