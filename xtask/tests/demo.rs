//! `cargo xtask demo`, end to end: it shows a real exchange, writes a readable capture, and
//! leaves no namespace behind, also when interrupted.

use std::{
    io::Read as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

fn ntptap_bin() -> PathBuf {
    std::env::var_os("NTPTAP_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/ntptap"),
        PathBuf::from,
    )
}

fn namespaces_of(pid: u32) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ntptap-demo-") && l.contains(&format!("-{pid}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn demo_shows_the_exchange_and_writes_a_capture() {
    ntptap_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["demo", "--ntptap"])
        .arg(ntptap_bin())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("demo output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for line in [
        "> 10.203.0.1.123: NTPv4, Client, length 48",
        "10.203.0.1.123 > 10.203.0.2.",
        ": NTPv4, Server, length 48",
        "fd00:203::2.",
        "Stratum 8 (secondary reference)",
    ] {
        assert!(stdout.contains(line), "{line:?} not shown:\n{stdout}");
    }
    assert!(
        stderr.contains("packets captured") && stderr.contains("tshark -r"),
        "{stderr}"
    );
    assert!(
        stderr.contains("NTP servers seen") && stderr.lines().any(|l| l.starts_with("10.203.0.1 ")),
        "health table: {stderr}"
    );
    let file = dir.path().join("ntp-demo.pcapng");
    let frames = ntptap_tests::read_pcap(&file);
    assert!(frames.len() >= 8, "{} frames in the capture", frames.len());
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        tshark.status.success(),
        "{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    assert!(
        namespaces_of(pid).is_empty(),
        "lab left behind: {:?}",
        namespaces_of(pid)
    );
}

#[test]
fn interrupted_demo_removes_its_lab() {
    ntptap_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["demo", "--ntptap"])
        .arg(ntptap_bin())
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    // Interrupt once the lab exists.
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces_of(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !namespaces_of(pid).is_empty(),
        "the demo never made its lab"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.code().is_some(),
        "the demo died from the signal instead of cleaning up"
    );
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        namespaces_of(pid).is_empty(),
        "lab left behind after Ctrl-C: {:?}\n{stderr}",
        namespaces_of(pid)
    );
}
