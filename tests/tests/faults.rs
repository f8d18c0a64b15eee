//! The output failing under a running capture: a full disk, the directory removed during
//! rotation. ntptap stops (exit code 4), says what failed, leaves every file valid up to its
//! last whole frame, and counts every frame: captured + dropped + left unread + not written
//! = received by filter.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ntptap_tests::{Lab, Proc, exit_counts, ntptap_bin, numbered_requests, read_pcap, run};

/// Between numbered requests: slow enough that the ring is never the limit.
const GAP: Duration = Duration::from_micros(200);

/// A small tmpfs, unmounted when dropped (even when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "ntptap-test"])
            .arg(dir.path()));
        Self { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn accounted(stderr: &str) -> (u64, u64) {
    let c = exit_counts(stderr);
    assert_eq!(
        c.captured + c.dropped + c.unread + c.unwritten,
        c.received,
        "captured + dropped + unread + not written = received:\n{stderr}"
    );
    (c.captured, c.unwritten)
}

fn spawn(lab: &Lab, args: &[&str], file: &Path) -> Proc {
    Proc::listening(
        "ntptap",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "-Q", "out"])
            .args(args)
            .arg("-w")
            .arg(file),
    )
}

/// A disk that fills during the capture: exit code 4 with the system's words, a file valid up
/// to its last whole frame holding exactly the captured frames, and the rest counted.
#[test]
fn a_full_disk_stops_cleanly_and_counts_what_did_not_fit() {
    for name in ["full.pcap", "full.pcapng"] {
        let lab = Lab::new("diskfull");
        let disk = Tmpfs::new("64k");
        let file: PathBuf = disk.path().join(name);
        let ntptap = spawn(&lab, &[], &file);
        // 2000 frames of 106 bytes in the file would need 212 kB.
        numbered_requests(&lab.b, Lab::A4, 2000, GAP);
        let (status, _, stderr) = ntptap.wait(Duration::from_secs(10));
        assert_eq!(status.code(), Some(4), "{name}: {stderr}");
        assert!(
            stderr.contains("No space left on device"),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(&file.display().to_string()),
            "the file is named: {stderr}"
        );
        let (captured, unwritten) = accounted(&stderr);
        assert!(captured > 100 && unwritten > 0, "{name}: {stderr}");
        let frames = read_pcap(&file);
        assert_eq!(
            frames.len() as u64,
            captured,
            "{name}: the file holds the captured frames"
        );
        // The requests are numbered: the file holds the first ones, in order, none twice.
        for (i, frame) in frames.iter().enumerate() {
            let number = u32::from_be_bytes(frame.data[frame.data.len() - 4..].try_into().unwrap());
            assert_eq!(number as usize, i, "{name}: frame {i}");
        }
        // Wireshark's reader agrees.
        let out = run(Command::new("tshark").arg("-r").arg(&file).args([
            "-T",
            "fields",
            "-e",
            "frame.number",
        ]));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count() as u64,
            captured
        );
    }
}

/// The output directory removed while -C rotates: the next file cannot be made, so ntptap
/// stops (exit code 4) and says so; the frame that had nowhere to go is counted.
#[test]
fn the_output_directory_removed_during_rotation_stops_cleanly() {
    let lab = Lab::new("rmdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let file = out.join("r.pcap");
    // -C 0.002: a new file every 2000 bytes, about 18 frames.
    let ntptap = spawn(&lab, &["-C", "0.002", "-U"], &file);
    numbered_requests(&lab.b, Lab::A4, 100, GAP);
    std::thread::sleep(Duration::from_millis(300));
    let files = std::fs::read_dir(&out).expect("read_dir").count();
    assert!(files >= 5, "{files} files before the removal");
    std::fs::remove_dir_all(&out).expect("rm -r");
    numbered_requests(&lab.b, Lab::A4, 100, GAP);
    let (status, _, stderr) = ntptap.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    assert!(stderr.contains("r.pcap"), "the file is named: {stderr}");
    let (captured, unwritten) = accounted(&stderr);
    assert!(captured >= 100, "{stderr}");
    assert!(
        unwritten >= 1,
        "the frame with no file to go to is counted: {stderr}"
    );
}

/// Two ntptaps on one interface: XDP has room for one program, so a second `--hook xdp` is
/// told to use `--hook tc`; with it (the default), both capture every frame, and neither
/// disturbs the other's counts.
#[test]
fn two_ntptaps_on_one_interface() {
    let lab = Lab::new("twotaps");
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (
        dir.path().join("first.pcap"),
        dir.path().join("second.pcap"),
    );
    let tap = |args: &[&str], file: &Path| {
        Proc::listening(
            "ntptap",
            lab.a
                .command(ntptap_bin())
                .args(["-i", "va", "-Q", "in"])
                .args(args)
                .arg("-w")
                .arg(file),
        )
    };
    let one = tap(&["--hook", "xdp"], &first);
    let refused = run_status(
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va", "-Q", "in", "--hook", "xdp", "-w"])
            .arg(dir.path().join("refused.pcap")),
    );
    assert_eq!(refused.0, Some(1), "{}", refused.1);
    assert!(refused.1.contains("--hook tc"), "{}", refused.1);
    let two = tap(&[], &second);
    numbered_requests(&lab.b, Lab::A4, 50, GAP);
    std::thread::sleep(Duration::from_millis(300));
    for (tap, file) in [(one, &first), (two, &second)] {
        let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
        assert!(status.success(), "{stderr}");
        let counts = exit_counts(&stderr);
        assert_eq!((counts.received, counts.captured), (50, 50), "{stderr}");
        assert_eq!(read_pcap(file).len(), 50);
    }
}

/// Run to completion: the exit code and stderr.
fn run_status(command: &mut Command) -> (Option<i32>, String) {
    let out = command.output().expect("spawn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
