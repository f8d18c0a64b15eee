//! How ntptap behaves around the capture: its errors (each must say what to do), running with
//! capabilities only, sharing an interface, being killed, `-c`, pipes and `-Q`.

use std::{process::Command, time::Duration};

use nix::sys::signal::Signal;
use ntptap_tests::{
    Lab, Netns, Proc, chrony_client, chrony_server, exit_counts, ntpdig, ntptap_bin, read_pcap,
};

/// Run ntptap with `args`, which must make it fail at start: its stderr. A capture that starts
/// instead is stopped after 20 s and the test panics, so that its guards (namespaces, mounts)
/// are dropped rather than the test hanging until something kills it.
fn failing(ns: &Netns, args: &[&str]) -> String {
    let (status, _, stderr) =
        Proc::spawn("ntptap", ns.command(ntptap_bin()).args(args)).wait(Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(1),
        "ntptap {args:?} should fail with exit code 1:\n{stderr}"
    );
    stderr
}

/// Whether an XDP program is attached to `dev`: `ip link` shows `prog/xdp` (native) or
/// `prog/xdpgeneric`. (Not a bare "xdp": the peer's namespace name may contain it.)
fn xdp_attached(ns: &Netns, dev: &str) -> bool {
    let out = ns.ip(&["-d", "link", "show", dev]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// The BPF links process `pid` holds, as (link type, link id), from its fdinfo.
fn bpf_links(pid: i32) -> Vec<(String, u32)> {
    let mut links = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).expect("fdinfo") {
        let info = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(kind), Some(id)) = (field("link_type:"), field("link_id:")) {
            links.push((kind, id.parse().unwrap()));
        }
    }
    links
}

fn link_exists(id: u32) -> bool {
    Command::new("bpftool")
        .args(["link", "show", "id", &id.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn unknown_interface_is_named() {
    let ns = Netns::new("err-iface");
    let err = failing(&ns, &["-i", "nosuch0"]);
    assert!(
        err.contains("no such interface 'nosuch0'") && err.contains("ip link"),
        "{err}"
    );
}

#[test]
fn unwritable_output_fails_before_attaching() {
    let lab = Lab::new("err-write");
    let err = failing(&lab.b, &["-i", "vb", "-w", "/nonexistent-dir/ntp.pcap"]);
    assert!(
        err.contains("cannot write /nonexistent-dir/ntp.pcap")
            && err.contains("directory you can write"),
        "{err}"
    );
    assert!(!xdp_attached(&lab.b, "vb"));
}

#[test]
fn no_default_route_asks_for_an_interface() {
    let ns = Netns::new("err-route");
    let err = failing(&ns, &[]);
    assert!(
        err.contains("no default route") && err.contains("-i"),
        "{err}"
    );
}

/// `setpriv` arguments that run as nobody with exactly `caps` (ambient, so they survive exec).
fn as_nobody(caps: &str) -> Vec<String> {
    let mut args = vec![
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
    ];
    if caps.is_empty() {
        args.push("--inh-caps=-all".into());
    } else {
        args.push(format!("--inh-caps=-all,{caps}"));
        args.push(format!("--ambient-caps={caps}"));
    }
    args
}

#[test]
fn missing_capabilities_are_named() {
    let ns = Netns::new("err-caps");
    let out = ns
        .command("setpriv")
        .args(as_nobody(""))
        .arg(ntptap_bin())
        .args(["-i", "lo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
        assert!(err.contains(cap), "{cap} not named: {err}");
    }
    assert!(err.contains("setcap"), "{err}");

    let out = ns
        .command("setpriv")
        .args(as_nobody("+net_admin"))
        .arg(ntptap_bin())
        .args(["-i", "lo"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && !err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}

#[test]
fn runs_as_an_unprivileged_user_with_three_capabilities() {
    let lab = Lab::new("caps");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let file = dir.path().join("nobody.pcap");
    let ntptap = Proc::listening(
        "ntptap as nobody",
        lab.b
            .command("setpriv")
            .args(as_nobody("+bpf,+net_admin,+perfmon"))
            .arg(ntptap_bin())
            .args(["-i", "vb", "-w"])
            .arg(&file),
    );
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", ntptap.pid())).unwrap_or_default();
    // setpriv execs ntptap in place, so the PID is ntptap's; it must hold no more than asked.
    let cap_eff = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap_or_default()
        .to_owned();
    ntpdig(&lab.b, Lab::A4);
    std::thread::sleep(Duration::from_millis(200));
    let (status, _, stderr) = ntptap.stop(Signal::SIGTERM);
    assert!(status.success(), "{stderr}");
    let frames = read_pcap(&file);
    assert_eq!(frames.len(), 2, "one ntpdig exchange: {stderr}");
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39).
    let want = (1u64 << 12) | (1 << 38) | (1 << 39);
    let got =
        u64::from_str_radix(cap_eff.trim_start_matches("CapEff:").trim(), 16).unwrap_or(u64::MAX);
    assert_eq!(got, want, "effective capabilities: {cap_eff}");
}

#[test]
fn another_xdp_program_suggests_hook_tc_which_works() {
    let lab = Lab::new("xdp-busy");
    let first = Proc::listening(
        "first ntptap",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "--hook", "xdp", "-w", "/dev/null"]),
    );
    let err = failing(&lab.b, &["-i", "vb", "--hook", "xdp"]);
    assert!(
        err.contains("another XDP program is already attached to vb") && err.contains("--hook tc"),
        "{err}"
    );
    let second = Proc::listening(
        "ntptap --hook tc",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "--hook", "tc", "-w", "/dev/null"]),
    );
    let (status, _, stderr) = second.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let (status, _, stderr) = first.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
}

fn sigkill_leaves_nothing_attached_and_a_new_run_attaches(hook: &str) {
    let lab = Lab::new(&format!("kill-{hook}"));
    let spawn = || {
        Proc::listening(
            "ntptap",
            lab.b
                .command(ntptap_bin())
                .args(["-i", "vb", "--hook", hook, "-w", "/dev/null"]),
        )
    };
    let ntptap = spawn();
    let xdp = hook == "xdp";
    assert_eq!(
        xdp_attached(&lab.b, "vb"),
        xdp,
        "XDP attached while running"
    );
    // The capture's two (ingress, egress), and attribution's five on the cgroup v2 root
    // (post_bind4/6, connect4/6, sock_release): every one must go with the process.
    let links = bpf_links(ntptap.pid());
    let capture = links.iter().filter(|(kind, _)| kind != "cgroup").count();
    assert_eq!(capture, 2, "two capture links (ingress, egress): {links:?}");
    assert_eq!(links.len(), 2 + 5, "and attribution's five: {links:?}");
    assert!(links.iter().all(|(_, id)| link_exists(*id)));
    let _ = ntptap.stop(Signal::SIGKILL);
    // The kernel releases links when the process's file descriptors go.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while links.iter().any(|(_, id)| link_exists(*id)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (kind, id) in &links {
        assert!(
            !link_exists(*id),
            "{kind} link {id} still exists after SIGKILL"
        );
    }
    assert!(
        !xdp_attached(&lab.b, "vb"),
        "XDP still attached after SIGKILL"
    );
    let again = spawn();
    let (status, _, stderr) = again.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
}

#[test]
fn sigkill_leaves_nothing_attached_tc_hook() {
    sigkill_leaves_nothing_attached_and_a_new_run_attaches("tc");
}

#[test]
fn sigkill_leaves_nothing_attached_xdp_hook() {
    sigkill_leaves_nothing_attached_and_a_new_run_attaches("xdp");
}

#[test]
fn count_stops_and_pipes_into_tshark() {
    let lab = Lab::new("pipe");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let script = format!(
        "{} -i vb -c 4 -w - 2>{}/ntptap.err | tshark -r - -T fields -e ntp.flags.mode",
        ntptap_bin().display(),
        dir.path().display()
    );
    let pipeline = Proc::spawn("ntptap | tshark", lab.b.command("sh").args(["-c", &script]));
    std::thread::sleep(Duration::from_millis(500));
    chrony_client(&lab.b, dir.path(), Lab::A4);
    let (status, stdout, stderr) = pipeline.wait(Duration::from_secs(20));
    let ntptap_err = std::fs::read_to_string(dir.path().join("ntptap.err")).unwrap();
    assert!(status.success(), "{stderr}\n{ntptap_err}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["3", "4", "3", "4"],
        "tshark read:\n{stdout}\n{ntptap_err}"
    );
    let counts = exit_counts(&ntptap_err);
    assert_eq!(counts.captured, 4, "{ntptap_err}");
    assert!(
        ntptap_err.contains("-c reached") || counts.received == 4,
        "{ntptap_err}"
    );
}

#[test]
fn a_closed_pipe_is_a_clean_exit() {
    let lab = Lab::new("epipe");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let script = format!(
        "{} -i vb -w - 2>{}/ntptap.err | head -c 100 >/dev/null; echo ntptap exit ${{PIPESTATUS[0]}}",
        ntptap_bin().display(),
        dir.path().display()
    );
    let pipeline = Proc::spawn("ntptap | head", lab.b.command("bash").args(["-c", &script]));
    std::thread::sleep(Duration::from_millis(500));
    chrony_client(&lab.b, dir.path(), Lab::A4);
    let (_, stdout, _) = pipeline.wait(Duration::from_secs(20));
    let err = std::fs::read_to_string(dir.path().join("ntptap.err")).unwrap();
    assert!(stdout.contains("ntptap exit 0"), "{stdout}\n{err}");
    assert!(err.contains("the output was closed"), "{err}");
}

#[test]
fn direction_in_captures_only_what_arrives() {
    let lab = Lab::new("dir");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let file = dir.path().join("in.pcap");
    let ntptap = Proc::listening(
        "ntptap -Q in",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "-Q", "in", "-w"])
            .arg(&file),
    );
    ntpdig(&lab.b, Lab::A4);
    std::thread::sleep(Duration::from_millis(200));
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let frames = read_pcap(&file);
    assert_eq!(
        frames.len(),
        1,
        "only the server's reply arrives at vb: {stderr}"
    );
    // UDP source port 123: the reply.
    assert_eq!(&frames[0].data[34..36], &123u16.to_be_bytes());
}

/// A bpffs mounted on a temporary directory, unmounted on drop. (`ip netns exec` gives its
/// command a fresh /sys, without the host's /sys/fs/bpf; other mounts stay visible.)
struct BpfFs(tempfile::TempDir);

impl BpfFs {
    fn new() -> Self {
        Self::with_mode("0700")
    }

    /// A bpffs mounted with `mode` (`1777`: as a shared host may mount it).
    fn with_mode(mode: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        ntptap_tests::run(
            Command::new("mount")
                .args(["-t", "bpf", "-o", &format!("mode={mode}"), "bpf"])
                .arg(dir.path()),
        );
        BpfFs(dir)
    }
}

/// `--pin` with `-Z` on a world-writable bpffs: a directory another user made (with a link
/// to a root-only file planted in it) or one anyone can write is refused, and the file keeps
/// its owner; a directory ntptap creates itself, and the maps it pins there, go to `-Z`'s
/// user, and nothing else does.
#[test]
fn pin_with_z_hands_over_only_what_it_created() {
    use std::os::unix::fs::MetadataExt as _;
    let ns = Netns::new("pin-z");
    let bpffs = BpfFs::with_mode("1777");
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("root-only");
    std::fs::write(&secret, b"root's").unwrap();
    let as_nobody = |args: &[&str]| {
        ntptap_tests::run(
            Command::new("setpriv")
                .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .args(args),
        );
    };
    let planted = bpffs.0.path().join("planted");
    as_nobody(&["mkdir", planted.to_str().unwrap()]);
    as_nobody(&[
        "ln",
        "-s",
        secret.to_str().unwrap(),
        planted.join("x").to_str().unwrap(),
    ]);
    let err = failing(
        &ns,
        &[
            "-i",
            "lo",
            "-w",
            "/dev/null",
            "-Z",
            "nobody",
            "--pin",
            planted.to_str().unwrap(),
        ],
    );
    assert!(err.contains("belongs to uid 65534"), "{err}");
    let owner = std::fs::metadata(&secret).unwrap();
    assert_eq!(
        (owner.uid(), owner.gid()),
        (0, 0),
        "the planted link's target was handed over"
    );

    let open = bpffs.0.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let err = failing(
        &ns,
        &[
            "-i",
            "lo",
            "-w",
            "/dev/null",
            "--pin",
            open.to_str().unwrap(),
        ],
    );
    assert!(err.contains("writable by its group or others"), "{err}");

    let own = bpffs.0.path().join("own");
    let ntptap = Proc::listening(
        "ntptap --pin -Z",
        ns.command(ntptap_bin())
            .args(["-i", "lo", "-w", "/dev/null", "-Z", "nobody", "--pin"])
            .arg(&own),
    );
    let dir = std::fs::symlink_metadata(&own).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o777), (65534, 0o700));
    let counters = std::fs::symlink_metadata(own.join("NTPTAP_COUNTERS")).unwrap();
    assert_eq!(counters.uid(), 65534, "a pinned map goes to -Z's user");
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    assert!(
        !own.join("NTPTAP_COUNTERS").exists(),
        "-Z's user could unpin: {stderr}"
    );
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn pin_exposes_the_maps_while_running_and_unpins_on_exit() {
    let lab = Lab::new("pin");
    let bpffs = BpfFs::new();
    let dir = bpffs.0.path().join("ntptap").to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, tmp.path());
    let ntptap = Proc::listening(
        "ntptap --pin",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "-w", "/dev/null", "--pin", &dir]),
    );
    ntpdig(&lab.b, Lab::A4);
    let dump = Command::new("bpftool")
        .args([
            "-j",
            "map",
            "dump",
            "pinned",
            &format!("{dir}/NTPTAP_COUNTERS"),
        ])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    for name in ["NTPTAP_COUNTERS", "NTPTAP_SHARDS", "NTPTAP_PORTS"] {
        assert!(
            std::path::Path::new(&dir).join(name).exists(),
            "{name} not pinned"
        );
    }
    // A second ntptap must not take over the same pins.
    let err = failing(&lab.b, &["-i", "vb", "--hook", "tc", "--pin", &dir]);
    assert!(
        err.contains("already exists") && err.contains("another --pin directory"),
        "{err}"
    );
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    assert!(
        dump.contains("\"values\""),
        "bpftool read the pinned counters: {dump}"
    );
    for name in ["NTPTAP_COUNTERS", "NTPTAP_SHARDS", "NTPTAP_PORTS"] {
        assert!(
            !std::path::Path::new(&dir).join(name).exists(),
            "{name} still pinned after exit"
        );
    }
}

/// A failure after the output was opened removes a file this run created, and nothing else:
/// not a device such as /dev/null, not a file that was already there.
#[test]
fn pin_outside_bpffs_is_a_clear_error_and_cleans_up_only_its_own_file() {
    use std::os::unix::fs::FileTypeExt as _;
    let ns = Netns::new("pin-err");
    let dir = tempfile::tempdir().unwrap();
    let not_bpffs = dir.path().to_str().unwrap();
    let new_file = dir.path().join("new.pcap");
    let err = failing(
        &ns,
        &[
            "-i",
            "lo",
            "--pin",
            not_bpffs,
            "-w",
            new_file.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("not on a BPF filesystem") && err.contains("mount -t bpf"),
        "{err}"
    );
    assert!(!new_file.exists(), "the file this run created is removed");
    let old_file = dir.path().join("old.pcap");
    std::fs::write(&old_file, b"keep me").unwrap();
    let _ = failing(
        &ns,
        &[
            "-i",
            "lo",
            "--pin",
            not_bpffs,
            "-w",
            old_file.to_str().unwrap(),
        ],
    );
    assert!(old_file.exists(), "a file that was there before stays");
    let _ = failing(&ns, &["-i", "lo", "--pin", not_bpffs, "-w", "/dev/null"]);
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(
        null.file_type().is_char_device(),
        "/dev/null must stay a device"
    );
}

#[test]
fn verbose_reports_the_attach_decisions() {
    let lab = Lab::new("decide");
    let decisions = |hook: &[&str]| {
        let ntptap = Proc::listening(
            "ntptap -v",
            lab.b
                .command(ntptap_bin())
                .args(["-i", "vb", "-v", "-w", "/dev/null"])
                .args(hook),
        );
        ntptap.stop(Signal::SIGINT).2
    };
    // The default: TC both ways.
    let stderr = decisions(&[]);
    // -B's default 4096 KiB, one ring per CPU.
    let (rings, kib) = stderr
        .split_once("ring buffers: ")
        .and_then(|(_, rest)| rest.split_once(" KiB, one per CPU"))
        .and_then(|(counts, _)| counts.split_once(" of "))
        .and_then(|(n, kib)| Some((n.parse::<u32>().ok()?, kib.parse::<u32>().ok()?)))
        .unwrap_or_else(|| panic!("no ring buffer line: {stderr}"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    assert!(
        rings >= cpus.min(16) && kib.is_power_of_two() && rings * kib <= 4096,
        "{stderr}"
    );
    for direction in ["ingress", "egress"] {
        assert!(
            stderr.contains(&format!("vb: {direction} at TC, through a TCX link")),
            "{stderr}"
        );
    }
    let stderr = decisions(&["--hook", "xdp"]);
    assert!(
        stderr.contains("XDP copies frames with bpf_xdp_load_bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains("vb: ingress at XDP, native (driver) mode, through a BPF link"),
        "{stderr}"
    );
    assert!(
        stderr.contains("vb: egress at TC, through a TCX link"),
        "{stderr}"
    );
}

#[test]
fn relinquish_privileges_leaves_no_capability_and_keeps_capturing() {
    use std::os::unix::fs::PermissionsExt as _;
    let lab = Lab::new("dropz");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let file = dir.path().join("z.pcap");
    let ntptap = Proc::listening(
        "ntptap -Z nobody",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "-Z", "nobody", "-w"])
            .arg(&file),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", ntptap.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
    for caps in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(field(caps), ["0000000000000000"], "{caps} {status}");
    }
    ntpdig(&lab.b, Lab::A4);
    std::thread::sleep(Duration::from_millis(200));
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    assert_eq!(read_pcap(&file).len(), 2, "{stderr}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn output_files_are_never_overwritten_or_followed_unless_asked() {
    let ns = Netns::new("files");
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.pcap");
    std::fs::write(&existing, b"precious").unwrap();
    let err = failing(&ns, &["-i", "lo", "-w", existing.to_str().unwrap()]);
    assert!(
        err.contains("exists") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
    let link = dir.path().join("link.pcap");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    let err = failing(
        &ns,
        &["-i", "lo", "--overwrite", "-w", link.to_str().unwrap()],
    );
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");
    let out = ns
        .command(ntptap_bin())
        .args(["-i", "lo", "--overwrite", "--duration", "0.2", "-w"])
        .arg(&existing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_pcap(&existing).len(),
        0,
        "replaced by an empty capture"
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let run = |args: &[&str]| {
        String::from_utf8(
            Command::new(ntptap_bin())
                .args(args)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let bash = run(&["--completions", "bash"]);
    assert!(
        bash.contains("--relinquish-privileges") && bash.contains("ntptap"),
        "{bash}"
    );
    let man = run(&["--man"]);
    assert!(
        man.contains(".TH ntptap") && man.contains("xdp\\-mode"),
        "{}",
        &man[..man.len().min(400)]
    );
}

/// `--metrics`: scraped during a real chrony exchange, the counts equal what the file holds,
/// and with `--attribution` each packet's `comm` label names its process.
#[test]
fn metrics_agree_with_the_capture() {
    let lab = Lab::new("metrics");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let file = dir.path().join("m.pcap");
    let ntptap = Proc::listening(
        "ntptap --metrics",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "-i", "lo", "--attribution"])
            .args(["--metrics", "127.0.0.1:9123", "-w"])
            .arg(&file),
    );
    chrony_client(&lab.b, dir.path(), Lab::A4);
    // The metrics are rendered once a second.
    std::thread::sleep(Duration::from_millis(2200));
    let scrape = ntptap_tests::run(lab.b.command("/usr/bin/python3").args([
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9123/metrics').read().decode())",
    ]));
    let text = String::from_utf8_lossy(&scrape.stdout).into_owned();
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let frames = read_pcap(&file);
    // Whole numbers, summed over the matching lines.
    let value = |prefix: &str| ntptap_tests::metric(&text, prefix);
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("ntptap_")),
        "{text}"
    );
    assert_eq!(
        value("ntptap_frames_written_total") as usize,
        frames.len(),
        "{text}"
    );
    let requests =
        value("ntptap_ntp_packets_total{version=\"4\",mode=\"3\",direction=\"out\",comm=");
    let responses =
        value("ntptap_ntp_packets_total{version=\"4\",mode=\"4\",direction=\"in\",comm=");
    assert_eq!((requests + responses) as usize, frames.len(), "{text}");
    assert!(requests >= 2 && requests == responses, "{text}");
    // Each packet's comm label names the chronyd client that owns its socket.
    assert_eq!(
        value(
            "ntptap_ntp_packets_total{version=\"4\",mode=\"3\",direction=\"out\",comm=\"chronyd\"}"
        ),
        requests,
        "{text}"
    );
    assert_eq!(
        value("ntptap_kernel_frames_total{interface=\"vb\",direction=\"out\",reason=\"captured\"}"),
        requests,
        "{text}"
    );
    assert_eq!(
        value("ntptap_server_responses_total{server=\"10.203.0.1\"}"),
        responses,
        "{text}"
    );
    assert_eq!(
        value("ntptap_server_stratum{server=\"10.203.0.1\"}"),
        8,
        "{text}"
    );
    // Counted per interface: lo saw none of this traffic, and is listed.
    assert_eq!(
        value("ntptap_kernel_frames_total{interface=\"lo\",direction=\"out\",reason=\"matched\"}"),
        0,
        "{text}"
    );
    assert!(
        text.contains(
            "ntptap_kernel_frames_total{interface=\"lo\",direction=\"in\",reason=\"seen\"}"
        ),
        "{text}"
    );
}

/// `-Z` with rotation into a directory the user cannot write: refused at start, not at the
/// first rotation.
#[test]
fn z_with_rotation_into_a_directory_the_user_cannot_write_fails_at_start() {
    let ns = Netns::new("z-rot");
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("ntp-%H%M%S.pcap");
    let err = failing(
        &ns,
        &[
            "-i",
            "lo",
            "-G",
            "1",
            "-Z",
            "nobody",
            "-w",
            pattern.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("nobody (-Z) cannot write") && err.contains("-C/-G"),
        "{err}"
    );
}

/// The rings are sized in one place: `-B 100` on this machine builds what `-v` says (a power of
/// two per CPU, at least a page), and `ntptap_ring_buffer_bytes` reports that, not what was
/// asked nor a rounding of it.
#[test]
fn the_ring_metric_reports_the_rings_built() {
    let ns = Netns::new("ringsize");
    let ntptap = Proc::listening(
        "ntptap -B 100",
        ns.command(ntptap_bin())
            .args(["-v", "-i", "lo", "-B", "100", "-w", "/dev/null"])
            .args(["--metrics", "9127"]),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let page = ntptap_tests::http(&ns, 9127, "GET /metrics");
    let (status, _, stderr) = ntptap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ntptap: ring buffers: "))
        .unwrap_or_else(|| panic!("no ring line:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let (count, kib): (u64, u64) = (words[3].parse().unwrap(), words[5].parse().unwrap());
    assert!(kib.is_power_of_two(), "{line}");
    let built = ntptap_tests::metric(&page, "ntptap_ring_buffer_bytes");
    assert_eq!(built as u64, count * kib * 1024, "{line}");
    assert!(
        built <= 100 * 1024 || kib == 4,
        "{line}: more than -B asked"
    );
}

/// `ntptap --man | head` and `--completions bash | head`: a reader that has read enough is a
/// normal end. The pipe's reading end is closed before ntptap writes, so every write fails
/// with EPIPE.
#[test]
fn a_closed_pipe_ends_the_man_page_and_completions_quietly() {
    for args in [&["--man"][..], &["--completions", "bash"][..]] {
        let (read, write) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = Command::new(ntptap_bin())
            .args(args)
            .stdout(std::process::Stdio::from(write))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// `-r` says what it reads as tcpdump does, on stderr: the file, its link type and snapshot
/// length (from a pcap header, or a pcapng file's first interface), from a file or from `-`.
#[test]
fn reading_a_file_says_its_link_type_as_tcpdump_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.pcap");
    let mut header = Vec::new();
    for word in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        header.extend_from_slice(&word.to_le_bytes());
    }
    // Version 2.4: the second word is two u16s, major then minor.
    header[4..8].copy_from_slice(&[2, 0, 4, 0]);
    std::fs::write(&file, &header).unwrap();
    let out = Command::new(ntptap_bin())
        .arg("-r")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some(
            format!(
                "reading from file {}, link-type EN10MB (Ethernet), snapshot length 262144",
                file.display()
            )
            .as_str()
        ),
        "{stderr}"
    );
    let out = Command::new(ntptap_bin())
        .args(["-r", "-"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "reading from file -, link-type EN10MB (Ethernet), snapshot length 262144"
        ),
        "{stderr}"
    );
}

/// `ntptap -w - | head -c 30` with no further traffic: the reader's departure is noticed at the
/// next second's tick, not at the next frame's write (which may never come), and the capture
/// ends cleanly, its hooks released.
#[test]
fn the_reader_of_standard_output_leaving_ends_the_capture_within_seconds() {
    let ns = Netns::new("stdout-gone");
    // Close-on-exec: ntptap must not inherit the reading end, or it would be its own reader.
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut child = ns
        .command(ntptap_bin())
        .args(["-i", "lo", "-w", "-"])
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The pcap header arrives once the capture runs; then the reader goes, as head does.
    let mut reader = std::fs::File::from(read);
    let mut header = [0u8; 24];
    std::io::Read::read_exact(&mut reader, &mut header).unwrap();
    drop(reader);
    let gone = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if gone.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("ntptap still running 5 s after its reader left");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    eprintln!("ended {:?} after the reader left", gone.elapsed());
}
