//! The flight recorder: dumps on SIGUSR1, on a POST to /flight-recorder, and on an event (an
//! offset step a relay makes by shifting a server's timestamps), each holding exactly the
//! frames a simultaneous full capture holds for its interval, byte for byte; eviction counted;
//! a second trigger within the rate limit writes nothing.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use ntptap_tests::{
    Lab, Netns, Proc, Record, chrony_server, http, ntptap_bin, paced_requests, read_pcap,
};

fn post(ns: &Netns, port: u16) -> String {
    http(ns, port, "POST /flight-recorder")
}

/// The dumps in `dir`, by name.
/// ntptap on `va` in `lab.a` with `args`, its flight recorder dumping into DIR/dumps and the
/// whole capture going to DIR/full.pcapng, once it listens; with those two paths.
fn recorder(lab: &Lab, dir: &Path, args: &[&str]) -> (Proc, PathBuf, PathBuf) {
    let out = dir.join("dumps");
    std::fs::create_dir(&out).unwrap();
    let full = dir.join("full.pcapng");
    let tap = Proc::listening(
        "ntptap",
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va"])
            .args(args)
            .arg("--flight-recorder-dir")
            .arg(&out)
            .arg("-w")
            .arg(&full),
    );
    (tap, out, full)
}

fn dumps(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the dump directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ntptap-flight-"))
        })
        .collect();
    all.sort();
    all
}

/// The section header's comments of a pcapng file.
fn section_comments(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("a dump");
    let reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("a pcapng file");
    reader
        .section()
        .options
        .iter()
        .filter_map(|o| match o {
            pcap_file::pcapng::blocks::section_header::SectionHeaderOption::Common(
                pcap_file::pcapng::blocks::opt_common::CommonOption::Comment(c),
            ) => Some(c.to_string()),
            _ => None,
        })
        .collect()
}

/// Where `dump` starts in `full`; it must be the same frames, contiguous, byte for byte.
fn place_in(full: &[Record], dump: &[Record], name: &Path) -> usize {
    let first = dump
        .first()
        .unwrap_or_else(|| panic!("{} is empty", name.display()));
    let at = full
        .iter()
        .position(|r| r.ts == first.ts && r.data == first.data)
        .unwrap_or_else(|| {
            panic!(
                "{}'s first frame is not in the full capture",
                name.display()
            )
        });
    assert!(
        full.len() >= at + dump.len(),
        "{} runs past the full capture",
        name.display()
    );
    assert_eq!(
        &full[at..at + dump.len()],
        dump,
        "{} differs from the full capture's frames {}..{}",
        name.display(),
        at,
        at + dump.len()
    );
    at
}

/// `N frames captured before them had left memory in no dump`, from a dump's comment.
fn evicted(path: &Path) -> usize {
    let comments = section_comments(path);
    let line = comments
        .iter()
        .find(|c| c.starts_with("ntptap flight recorder:"))
        .unwrap_or_else(|| panic!("no recorder comment in {}: {comments:?}", path.display()));
    line.rsplit("; ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no eviction count in {line:?}"))
}

/// SIGUSR1 at 3 s, a POST at 3.5 s (within the 3 s rate limit: 429, no file), another at
/// 6.5 s (200): two dumps, each exactly a run of the full capture's frames; the recorder holds
/// 64 KiB (about 2 s of this traffic), so frames left memory before each dump, and each dump
/// counts exactly those that no dump holds.
#[test]
fn dumps_hold_exactly_the_frames_captured_in_their_interval() {
    let lab = Lab::new("flight");
    let dir = tempfile::tempdir().expect("tempdir");
    let _chronyd = chrony_server(&lab.a, dir.path());
    let (tap, out, full) = recorder(
        &lab,
        dir.path(),
        &[
            "--flight-recorder",
            "64K",
            "--flight-recorder-after",
            "1",
            "--flight-recorder-interval",
            "3",
            "--metrics",
            "9126",
        ],
    );
    let traffic = Proc::spawn(
        "requests",
        lab.b
            .command("/usr/bin/python3")
            .args(["-c", &paced_requests(Lab::A4, 50, 9.0)]),
    );
    let pid = Pid::from_raw(tap.pid());
    std::thread::sleep(Duration::from_secs(3));
    nix::sys::signal::kill(pid, Signal::SIGUSR1).expect("SIGUSR1");
    std::thread::sleep(Duration::from_millis(500));
    let refused = post(&lab.a, 9126);
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("--flight-recorder-interval"), "{refused}");
    std::thread::sleep(Duration::from_secs(3));
    let accepted = post(&lab.a, 9126);
    assert!(accepted.starts_with("HTTP/1.1 200"), "{accepted}");
    assert!(accepted.contains("-POST.pcapng"), "{accepted}");
    let _ = traffic.wait(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = http(&lab.a, 9126, "GET /metrics");
    let (status, _, stderr) = tap.stop(Signal::SIGINT);
    assert!(status.success(), "ntptap failed:\n{stderr}");
    // The metrics count what the summary counts.
    let value = |name: &str| ntptap_tests::metric(&metrics, name);
    assert_eq!(
        value("ntptap_flight_recorder_dumps_total{outcome=\"written\"}"),
        2,
        "{metrics}"
    );
    assert_eq!(
        value("ntptap_flight_recorder_dumps_total{outcome=\"ignored\"}"),
        1,
        "{metrics}"
    );
    let lost = value("ntptap_flight_recorder_evicted_frames_total");
    assert!(
        stderr.contains(&format!("frames {lost} left memory in no dump")),
        "metrics say {lost} evicted:\n{stderr}"
    );
    assert!(
        stderr.contains("dumps 2 written, 1 ignored by the rate limit, 0 failed"),
        "{stderr}"
    );
    // SIGUSR1 printed the counts so far, as tcpdump does, before the final ones.
    assert_eq!(stderr.matches("packets captured").count(), 2, "{stderr}");

    check_dumps(&full, &out);
}

/// The two dumps in `out`: each exactly a run of the frames in `full`, each counting exactly
/// the frames before it that no dump holds.
fn check_dumps(full: &Path, out: &Path) {
    let files = dumps(out);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with("-SIGUSR1.pcapng"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with("-POST.pcapng"))
    );
    let full = read_pcap(full);
    assert!(full.len() > 700, "only {} frames captured", full.len());
    let mut held = vec![false; full.len()];
    let mut by_time: Vec<(usize, usize, &PathBuf)> = files
        .iter()
        .map(|f| {
            let dump = read_pcap(f);
            (place_in(&full, &dump, f), dump.len(), f)
        })
        .collect();
    by_time.sort();
    for (at, len, f) in by_time {
        let before = held[..at].iter().filter(|h| !**h).count();
        assert!(before > 0, "{}: nothing was evicted before it", f.display());
        assert_eq!(evicted(f), before, "{}'s eviction count", f.display());
        // The frames of the second after the trigger are in it: more than 64 KiB holds.
        assert!(len > 100, "{}: {len} frames", f.display());
        for h in &mut held[at..at + len] {
            *h = true;
        }
    }
}

/// A relay between a client and chronyd shifts chronyd's receive and transmit timestamps by
/// 0.5 s from its 10th reply on: the offset steps, and the recorder dumps the frames around
/// it (`offset-step`), exactly as the full capture has them.
#[test]
fn an_offset_step_through_a_relay_triggers_a_dump() {
    let lab = Lab::new("step");
    let dir = tempfile::tempdir().expect("tempdir");
    let _chronyd = chrony_server(&lab.a, dir.path());
    let relay = Proc::spawn(
        "a relay that shifts the server's timestamps",
        lab.a.command("/usr/bin/python3").args([
            "-c",
            &format!(
                "import socket, struct\n\
                 front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 front.bind(({:?}, 1123))\n\
                 back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 back.settimeout(1)\n\
                 n = 0\n\
                 while True:\n\
                 \x20   data, client = front.recvfrom(512)\n\
                 \x20   back.sendto(data, ('127.0.0.1', 123))\n\
                 \x20   try:\n\
                 \x20       reply = bytearray(back.recv(512))\n\
                 \x20   except socket.timeout:\n\
                 \x20       continue\n\
                 \x20   n += 1\n\
                 \x20   if n >= 10:\n\
                 \x20       for at in (32, 40):\n\
                 \x20           secs, = struct.unpack_from('!I', reply, at)\n\
                 \x20           frac, = struct.unpack_from('!I', reply, at + 4)\n\
                 \x20           frac += 1 << 31\n\
                 \x20           struct.pack_into('!II', reply, at, secs + (frac >> 32), frac & 0xffffffff)\n\
                 \x20   front.sendto(bytes(reply), client)\n",
                Lab::A4
            ),
        ]),
    );
    let (tap, out, full) = recorder(
        &lab,
        dir.path(),
        &[
            "--port",
            "1123",
            "--flight-recorder",
            "1M",
            "--flight-recorder-after",
            "0.5",
        ],
    );
    ntptap_tests::run(lab.b.command("/usr/bin/python3").args([
        "-c",
        &format!(
            "import socket, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.settimeout(1)\n\
             for i in range(25):\n\
             \x20   s.sendto(b'\\x23' + bytes(43) + i.to_bytes(4, 'big'), ({:?}, 1123))\n\
             \x20   try: s.recv(512)\n\
             \x20   except socket.timeout: pass\n\
             \x20   time.sleep(0.1)\n",
            Lab::A4
        ),
    ]));
    std::thread::sleep(Duration::from_millis(1500));
    let (status, _, stderr) = tap.stop(Signal::SIGINT);
    drop(relay);
    assert!(status.success(), "ntptap failed:\n{stderr}");
    let files = dumps(&out);
    assert_eq!(files.len(), 1, "{files:?}\n{stderr}");
    assert!(
        files[0].to_string_lossy().ends_with("-offset-step.pcapng"),
        "{files:?}"
    );
    let full = read_pcap(&full);
    let dump = read_pcap(&files[0]);
    let at = place_in(&full, &dump, &files[0]);
    // Memory held everything before the step (1 MiB): the dump starts at the first frame,
    // holds the 10th reply (the first shifted, frame 20) and the half second after it.
    assert_eq!(at, 0);
    assert_eq!(evicted(&files[0]), 0);
    assert!(dump.len() >= 24, "{} frames", dump.len());
    assert!(
        dump.len() < full.len(),
        "the dump ends half a second after the step"
    );
}
