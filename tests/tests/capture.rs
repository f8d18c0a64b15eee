//! Live captures in network namespaces: real NTP peers (chronyd as server; chronyd and
//! ntpsec's ntpdig as clients), ntptap and `tcpdump -w` on the same interface at the same time.
//! The two files must hold the same frames, byte for byte, with the same original lengths and
//! timestamps within 100 µs; tshark must read ntptap's file; and ntptap's exit summary must
//! account for every frame.

use std::{process::Command, time::Duration};

use nix::sys::signal::Signal;
use ntptap_tests::{
    Lab, Proc, Record, chrony_client, chrony_server, exit_counts, ntpdig, ntptap_bin, read_pcap,
    run,
};

/// Most a frame's timestamp may differ between ntptap and tcpdump.
const MAX_SKEW: Duration = Duration::from_micros(100);

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

fn exchange_matches_tcpdump(hook: &str, family: Family) {
    let lab = Lab::new(&format!("cap-{hook}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = match family {
        Family::V4 => Lab::A4,
        Family::V6 => Lab::A6,
    };
    let _chronyd = chrony_server(&lab.a, dir.path());

    let ours = dir.path().join("ntptap.pcap");
    let theirs = dir.path().join("tcpdump.pcap");
    let mut ntptap = Proc::spawn(
        "ntptap",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "--hook", hook, "-w"])
            .arg(&ours),
    );
    ntptap.wait_for_stderr("listening on", Duration::from_secs(10));
    let mut tcpdump = Proc::spawn(
        "tcpdump",
        lab.b
            .command("tcpdump")
            .args(["-U", "--immediate-mode", "-s0", "-i", "vb", "-w"])
            .arg(&theirs)
            .args(["udp", "port", "123"]),
    );
    tcpdump.wait_for_stderr("listening on", Duration::from_secs(10));

    chrony_client(&lab.b, dir.path(), server);
    ntpdig(&lab.b, server);
    // Let the last replies reach both taps before stopping them.
    std::thread::sleep(Duration::from_millis(300));

    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "ntptap failed: {stderr}");
    let _ = tcpdump.stop(Signal::SIGINT);

    let ours = read_pcap(&ours);
    let theirs = read_pcap(&theirs);
    // chronyd -Q with maxsamples 4 makes at least 2 exchanges; ntpdig one more.
    assert!(
        theirs.len() >= 6,
        "tcpdump saw only {} NTP frames",
        theirs.len()
    );
    compare(&ours, &theirs);

    let counts = exit_counts(&stderr);
    assert_eq!(
        counts.captured,
        ours.len() as u64,
        "summary vs file:\n{stderr}"
    );
    assert_eq!(
        counts.captured + counts.dropped,
        counts.received,
        "accounting:\n{stderr}"
    );

    let tshark = run(Command::new("tshark")
        .arg("-r")
        .arg(dir.path().join("ntptap.pcap"))
        .args(["-Y", "ntp", "-T", "fields", "-e", "ntp.flags.mode"]));
    let modes = String::from_utf8_lossy(&tshark.stdout);
    assert_eq!(
        modes.lines().count(),
        ours.len(),
        "tshark decoded:\n{modes}"
    );
    assert!(
        modes.lines().any(|m| m == "3") && modes.lines().any(|m| m == "4"),
        "tshark modes: {modes}"
    );
}

/// Every tcpdump frame is in ntptap's file with the same bytes, length and (nearly) time, and
/// ntptap has nothing more.
fn compare(ours: &[Record], theirs: &[Record]) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "frame counts differ: ntptap {} tcpdump {}",
        ours.len(),
        theirs.len()
    );
    let mut skews = Vec::new();
    for (i, t) in theirs.iter().enumerate() {
        let o = ours.iter().find(|o| o.data == t.data).unwrap_or_else(|| {
            panic!(
                "tcpdump frame {} ({} bytes) is not in ntptap's file",
                i + 1,
                t.data.len()
            )
        });
        assert_eq!(o.orig_len, t.orig_len, "original length of frame {}", i + 1);
        let skew = o.ts.abs_diff(t.ts);
        skews.push(skew);
    }
    let worst = skews.iter().max().copied().unwrap_or_default();
    eprintln!("timestamp skews vs tcpdump: {skews:?}");
    assert!(
        worst <= MAX_SKEW,
        "timestamps differ by up to {worst:?} (> {MAX_SKEW:?}): {skews:?}"
    );
}

#[test]
fn ipv4_xdp_hook_matches_tcpdump() {
    exchange_matches_tcpdump("xdp", Family::V4);
}

#[test]
fn ipv6_xdp_hook_matches_tcpdump() {
    exchange_matches_tcpdump("xdp", Family::V6);
}

#[test]
fn ipv4_tc_hook_matches_tcpdump() {
    exchange_matches_tcpdump("tc", Family::V4);
}

#[test]
fn ipv6_tc_hook_matches_tcpdump() {
    exchange_matches_tcpdump("tc", Family::V6);
}
