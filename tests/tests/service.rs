//! The systemd unit's command line, run as the unit would run it (in a namespace whose default
//! route leads to the lab's peer): files rotate on the hour, the ring keeps 48 (counting the
//! files an earlier run left), metrics answer on loopback only.

use std::{path::Path, time::Duration};

use nix::sys::signal::Signal;
use ntptap_tests::{Lab, Proc, exit_counts, ntptap_bin, numbered_requests, read_pcap, run};

/// The unit's ExecStart arguments, `%%` unescaped, with the state directory at `state`.
fn unit_arguments(state: &Path) -> Vec<String> {
    let unit = include_str!("../../dist/ntptap.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    let mut words = exec.split_whitespace();
    assert!(
        words.next().is_some_and(|w| w.ends_with("/ntptap")),
        "{exec}"
    );
    words
        .map(|w| {
            w.replace("%%", "%")
                .replace("/var/lib/ntptap", &state.display().to_string())
        })
        .collect()
}

/// 50 files an earlier run left in `dir`, oldest first.
fn earlier_run(dir: &Path) -> Vec<std::path::PathBuf> {
    let earlier: Vec<_> = (0..50)
        .map(|i| dir.join(format!("ntp-20250101T{:02}{:02}00.pcapng", i / 60, i % 60)))
        .collect();
    for (i, path) in earlier.iter().enumerate() {
        std::fs::write(path, b"earlier").unwrap();
        let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + i as u64);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    earlier
}

#[test]
fn the_units_command_line_rotates_on_the_hour_keeps_48_and_serves_metrics_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let args = unit_arguments(dir.path());
    let joined = args.join(" ");
    for expected in ["-G 3600", "--rotate-align", "-W 48", "--metrics 127.0.0.1:"] {
        assert!(joined.contains(expected), "{expected} in {joined}");
    }
    let pattern = args
        .iter()
        .skip_while(|a| *a != "-w")
        .nth(1)
        .expect("-w FILE")
        .clone();
    // A host that ran for a while before.
    let earlier = earlier_run(dir.path());

    let lab = Lab::new("unit");
    lab.b.ip(&["route", "add", "default", "via", Lab::A4]);
    let mut tap = Proc::spawn(
        "ntptap as the unit runs it",
        lab.b.command(ntptap_bin()).args(&args),
    );
    tap.wait_for_stderr("listening on vb", Duration::from_secs(20));
    numbered_requests(&lab.b, Lab::A4, 6, Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(2200));
    let scrape = |ns: &ntptap_tests::Netns| {
        let out = ns
            .command("/usr/bin/python3")
            .args([
                "-c",
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9123/metrics', timeout=2).read().decode())",
            ])
            .output()
            .expect("python3");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = scrape(&lab.b);
    assert!(ok, "metrics on the host's loopback");
    assert_eq!(
        ntptap_tests::metric(&text, "ntptap_frames_written_total"),
        6,
        "{text}"
    );
    // Loopback only: not on the host's address, from the peer.
    let from_peer = run(lab.a.command("/usr/bin/python3").args([
        "-c",
        &format!(
            "import socket\ns = socket.socket()\ns.settimeout(2)\nprint(s.connect_ex(({:?}, 9123)))",
            Lab::B4
        ),
    ]));
    assert_ne!(
        String::from_utf8_lossy(&from_peer.stdout).trim(),
        "0",
        "the metrics port answered the network"
    );
    let (status, _, stderr) = tap.stop(Signal::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert_eq!(exit_counts(&stderr).captured, 6, "{stderr}");

    // The ring: 48 files in all, the newest of the earlier run's and this run's own.
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 48, "{files:?}");
    for gone in &earlier[..3] {
        assert!(!gone.exists(), "{} should have gone", gone.display());
    }
    let ours: Vec<_> = files
        .iter()
        .filter(|p| std::fs::read(p).unwrap() != b"earlier")
        .collect();
    assert_eq!(ours.len(), 1, "{files:?}");
    assert_eq!(read_pcap(ours[0]).len(), 6);
    let name = ours[0].file_name().unwrap().to_string_lossy().into_owned();
    let expected_prefix = Path::new(&pattern)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('%')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with(&expected_prefix) && name.ends_with(".pcapng"),
        "{name}"
    );
}
