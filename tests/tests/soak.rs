//! The soak: a long NTP flood at a rate ntptap keeps up with, `-C` rotation with `-W` and
//! `-z` on, sampling the resident memory and open descriptors of ntptap every few seconds.
//! Resident memory must stay flat, descriptors constant, every rotated file handed to `-z`,
//! and the accounting exact. It runs for `NTPTAP_SOAK_SECONDS` (600 by default) and is not
//! part of `cargo xtask test`: run it with `cargo xtask soak`, which prints the curve.

use std::{
    fmt::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::Path,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use ntptap_tests::{Lab, NftCounter, Proc, exit_counts, ntptap_bin, read_pcap};

fn status_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// (seconds since the start, resident KiB, open descriptors) of `pid` every 10 s for `seconds`.
fn sample(pid: i32, seconds: u64) -> Vec<(u64, u64, usize)> {
    let start = Instant::now();
    let mut curve = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds)));
        curve.push((
            start.elapsed().as_secs(),
            status_kib(pid, "VmRSS:"),
            open_fds(pid),
        ));
    }
    curve
}

#[test]
#[ignore = "ten minutes; run with cargo xtask soak"]
fn ten_minutes_of_rotation_at_the_lossless_rate() {
    let seconds: u64 = std::env::var("NTPTAP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let rate = 5_000;
    let lab = Lab::new("soak");
    let behind_tap = NftCounter::new(&lab.a, "va");
    let dir = tempfile::tempdir().expect("tempdir");
    let closed_log = dir.path().join("closed.log");
    let hook = dir.path().join("closed.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$1\" >> {}\n", closed_log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ntptap = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va", "-Q", "in", "-C", "2", "-W", "4", "-z"])
            .arg(&hook)
            .arg("-w")
            .arg(out.join("soak.pcap")),
    );
    let pid = ntptap.pid();
    let script = ntptap_tests::paced_requests(Lab::A4, rate, seconds as f64);
    let sender = Proc::spawn(
        "flood",
        lab.b.command("/usr/bin/python3").args(["-c", &script]),
    );
    let curve = sample(pid, seconds);
    let _ = sender.wait(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let counts = exit_counts(&stderr);
    let behind = behind_tap.count();

    let mut report = String::new();
    let _ = writeln!(report, "seconds  rss_kib  fds");
    for (t, rss, fds) in &curve {
        let _ = writeln!(report, "{t:>7}  {rss:>7}  {fds:>3}");
    }
    let closed = std::fs::read_to_string(&closed_log).unwrap_or_default();
    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let in_files: usize = files.iter().map(|f| read_pcap(Path::new(f)).len()).sum();
    let _ = writeln!(
        report,
        "received {} (nftables {behind}), captured {}, dropped {}; {} files closed and handed to -z, {} kept (-W 4) holding {in_files} frames",
        counts.received,
        counts.captured,
        counts.dropped,
        closed.lines().count(),
        files.len()
    );
    eprintln!("{report}");
    if let Ok(path) = std::env::var("NTPTAP_SOAK_REPORT") {
        std::fs::write(path, &report).unwrap();
    }

    assert_eq!(counts.received, behind, "{report}");
    assert_eq!(
        counts.captured + counts.dropped,
        counts.received,
        "{report}"
    );
    assert_eq!(
        counts.dropped, 0,
        "the rate is one ntptap keeps up with: {report}"
    );
    // 106 bytes a frame, a new file past 2 MB: every closed file went to -z, in order.
    let expected_files = (counts.captured * 106 / 2_000_000) as usize;
    assert!(
        closed.lines().count().abs_diff(expected_files) <= 1 && files.len() == 4,
        "{report}"
    );
    // After the first minute (buffers and maps warmed up), resident memory is flat and the
    // descriptors do not grow.
    let settled: Vec<_> = curve.iter().filter(|(t, ..)| *t >= 60).collect();
    if let (Some(first), Some(last)) = (settled.first(), settled.last()) {
        assert!(last.1 <= first.1 + 1024, "RSS grew over 1 MiB: {report}");
        // A sample taken while one file is closed and the next not yet open sees fewer
        // (the file and its two extra handles); a leak shows as more.
        let usual = settled.iter().take(6).map(|(_, _, fds)| *fds).max();
        assert!(
            settled.iter().all(|(_, _, fds)| Some(*fds) <= usual),
            "fds grew: {report}"
        );
    }
}
