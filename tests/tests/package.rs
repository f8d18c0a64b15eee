//! The Debian package and the systemd unit it ships.
//!
//! - `cargo xtask package` builds the package; `cargo xtask test` names it in `NTPTAP_DEB`, and
//!   the test installs it on this machine with `dpkg -i`, checks the binary, the man page, the
//!   unit (systemd-analyze verify, and its exposure score), the rules and dashboard, and
//!   purges it.
//! - The unit's hardening is checked by running ntptap the way it would run there: under the
//!   unit's `SystemCallFilter` (expanded by systemd-analyze into a seccomp allow list, loaded
//!   with libseccomp's Python binding) and with only its `AmbientCapabilities`, as nobody,
//!   with no new privileges. systemd itself is not PID 1 on this machine kind, so the other
//!   sandboxing (read-only file system, private /tmp and /dev) is not exercised here.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use ntptap_tests::{Lab, Proc, chrony_server, ntpdig, ntptap_bin, read_pcap, run};

fn unit() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/ntptap.service"))
        .expect("dist/ntptap.service")
}

/// The values of `key=` lines of the unit, split on white space.
fn unit_values(key: &str) -> Vec<String> {
    ntptap_tests::unit_values(&unit(), key)
}

/// The unit's allow list of system calls.
fn unit_syscalls() -> BTreeSet<String> {
    ntptap_tests::unit_syscalls(&unit())
}

/// Loads a seccomp filter that fails every system call but those listed in argv[1] with EPERM
/// (as `SystemCallErrorNumber=EPERM`), then execs argv[2:].
const SECCOMP_EXEC: &str = r"import errno, os, sys, seccomp
f = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
for name in open(sys.argv[1]).read().split():
    try:
        f.add_rule(seccomp.ALLOW, name)
    except Exception:
        pass
f.load()
os.execv(sys.argv[2], sys.argv[2:])
";

#[test]
fn ntptap_captures_under_the_units_syscall_filter_and_capabilities() {
    let caps: Vec<String> = unit_values("AmbientCapabilities")
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert_eq!(caps, ["+bpf", "+net_admin", "+perfmon"]);
    let caps = caps.join(",");
    let lab = Lab::new("unitfilter");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let syscalls = dir.path().join("syscalls");
    std::fs::write(
        &syscalls,
        unit_syscalls().into_iter().collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let launcher = dir.path().join("seccomp_exec.py");
    std::fs::write(&launcher, SECCOMP_EXEC).unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let file = dir.path().join("filtered.pcapng");
    let tap = Proc::listening(
        "ntptap under the unit's filter",
        lab.b
            .command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(ntptap_tests::only_caps(&caps))
            .arg("/usr/bin/python3")
            .arg(&launcher)
            .arg(&syscalls)
            .arg(ntptap_bin())
            .args([
                "-i",
                "vb",
                "--stats",
                "300",
                "--metrics",
                "127.0.0.1:9123",
                "-w",
            ])
            .arg(&file),
    );
    let seccomp = std::fs::read_to_string(format!("/proc/{}/status", tap.pid()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Seccomp:"))
        .unwrap_or_default()
        .to_owned();
    ntpdig(&lab.b, Lab::A4);
    std::thread::sleep(Duration::from_millis(1200));
    let scrape = run(lab.b.command("/usr/bin/python3").args([
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9123/metrics').read().decode())",
    ]));
    let metrics = String::from_utf8_lossy(&scrape.stdout).into_owned();
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert!(
        seccomp.ends_with('2'),
        "a seccomp filter in force: {seccomp:?}"
    );
    assert_eq!(read_pcap(&file).len(), 2, "one ntpdig exchange: {stderr}");
    assert_eq!(
        ntptap_tests::metric(&metrics, "ntptap_frames_written_total"),
        2,
        "{metrics}"
    );
    assert!(
        stderr.contains("NTP servers seen"),
        "the table at the end: {stderr}"
    );
}

/// Purges the package when dropped, so a failed check leaves the machine as it was.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "ntptap"]).output();
    }
}

fn succeeds(command: &mut Command) -> String {
    let out = command.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?}:\n{text}");
    text
}

#[test]
fn the_package_installs_works_and_removes_cleanly() {
    let Some(deb) = std::env::var_os("NTPTAP_DEB").map(PathBuf::from) else {
        eprintln!(
            "NTPTAP_DEB is not set (cargo xtask test builds the package and names it): skipped"
        );
        return;
    };
    assert!(deb.exists(), "{} is missing", deb.display());
    ntptap_tests::require_root();
    let before = Command::new("dpkg")
        .args(["-s", "ntptap"])
        .output()
        .unwrap();
    assert!(
        !before.status.success() && !Path::new("/usr/bin/ntptap").exists(),
        "ntptap is already installed on this machine; the test installs and purges its own"
    );
    let installed = Installed;
    succeeds(Command::new("dpkg").arg("-i").arg(&deb));
    let version = succeeds(Command::new("/usr/bin/ntptap").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let page = succeeds(Command::new("man").args(["-w", "ntptap"]));
    assert_eq!(page.trim(), "/usr/share/man/man1/ntptap.1.gz");
    let man = succeeds(
        Command::new("man")
            .args(["-P", "cat", "ntptap"])
            .env("MANWIDTH", "80"),
    );
    assert!(
        man.contains("--interface") && man.contains("ntptap"),
        "{man}"
    );
    let unit = "/usr/lib/systemd/system/ntptap.service";
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/ntptap "), "{text}");
    succeeds(Command::new("systemd-analyze").args(["verify", unit]));
    let security = succeeds(Command::new("systemd-analyze").args([
        "security",
        "--offline=yes",
        "--no-pager",
        unit,
    ]));
    let score: f64 = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for ntptap.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{security}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 3.0, "exposure {score}:\n{security}");
    for path in [
        "/usr/share/ntptap/prometheus/ntptap.rules.yml",
        "/usr/share/ntptap/prometheus/ntptap.rules.test.yml",
        "/usr/share/ntptap/grafana/ntptap.json",
        "/usr/share/bash-completion/completions/ntptap",
        "/usr/share/zsh/vendor-completions/_ntptap",
        "/usr/share/fish/vendor_completions.d/ntptap.fish",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    // Installed, not started: a capture tool waits to be enabled.
    succeeds(Command::new("dpkg").args(["-r", "ntptap"]));
    assert!(!Path::new("/usr/bin/ntptap").exists());
    succeeds(Command::new("dpkg").args(["--purge", "ntptap"]));
    drop(installed);
    let after = Command::new("dpkg")
        .args(["-s", "ntptap"])
        .output()
        .unwrap();
    assert!(!after.status.success(), "still known to dpkg after purge");
    assert!(!Path::new("/usr/share/ntptap").exists() && !Path::new(unit).exists());
}
