//! Process attribution with real clients: every frame names the process that owns its socket.
//!
//! A chronyd server in one namespace; in the other, a chronyd client, ntpdig, a Python client
//! that sends one request and exits at once (with a hostile name), and a Python client moved
//! into a cgroup v2 directory the test creates. ntptap runs on the clients' side before any
//! of them starts, so every socket is new to it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use nix::sys::signal::Signal;
use ntptap_tests::{
    Lab, Netns, Proc, Record, chrony_server, exit_counts, ntptap_bin, read_pcap, run, tools_root,
};

/// A Python NTP client: one request to `server`, then (unless `exit_at_once`) the reply.
/// `name` becomes its comm (prctl PR_SET_NAME), so hostile names can be tried.
fn python_client(name: &[u8], server: &str, exit_at_once: bool) -> String {
    let name = name.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "\\x{b:02x}");
        s
    });
    format!(
        "import ctypes, socket, sys\n\
         ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n\
         fam = socket.AF_INET6 if ':' in '{server}' else socket.AF_INET\n\
         s = socket.socket(fam, socket.SOCK_DGRAM)\n\
         s.settimeout(3)\n\
         s.sendto(b'\\x23' + b'\\0' * 47, ('{server}', 123))\n\
         {}\n",
        if exit_at_once {
            "s.close(); sys.exit(0)"
        } else {
            "s.recvfrom(512)"
        }
    )
}

/// Run `command` to its end; its pid.
fn run_for_pid(command: &mut Command) -> u32 {
    let mut child = command.spawn().expect("spawn a client");
    let pid = child.id();
    let status = child.wait().expect("wait for a client");
    assert!(status.success(), "client {command:?}: {status}");
    pid
}

/// A cgroup v2 directory of the test's own, removed when dropped (its processes are gone).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str) -> Self {
        let root = ntptap::capture::owners::cgroup2_root().expect("a cgroup v2 hierarchy");
        let dir = root
            .path
            .join(format!("ntptap-test-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Cgroup(dir)
    }

    /// The path as ntptap shows it, relative to the hierarchy's root.
    fn shown(&self) -> String {
        format!("/{}", self.0.file_name().unwrap().to_string_lossy())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// ntptap on `ns`'s `dev` writing pcapng to `file`, with `extra` options.
fn tap(ns: &Netns, dev: &str, hook: &str, file: &Path, extra: &[&str]) -> Proc {
    Proc::listening(
        "ntptap",
        ns.command(ntptap_bin())
            .args(["-v", "--attribution", "-i", dev, "--hook", hook])
            .args(extra)
            .arg("-w")
            .arg(file),
    )
}

fn stop(p: Proc) -> String {
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, stderr) = p.stop(Signal::SIGINT);
    assert!(status.success(), "ntptap failed:\n{stderr}");
    stderr
}

/// The client-side UDP port of a frame captured on the clients' side (Ethernet, IPv4 or IPv6,
/// no options): its source port going out, its destination port coming in.
fn client_port(r: &Record) -> u16 {
    let udp = if r.data[12..14] == [0x86, 0xdd] {
        54
    } else {
        34
    };
    let at = if r.direction == Some(2) { udp } else { udp + 2 };
    u16::from_be_bytes([r.data[at], r.data[at + 1]])
}

/// The clients of the proof, run one after another against `server`; (pid, comm, cgroup)
/// of each, and the pids whose reply nobody takes (they exit at once).
fn run_clients(lab: &Lab, dir: &Path, server: &str, cgroup: &Cgroup) -> Clients {
    let mut clients = Clients::default();
    let chronyd = tools_root().join("usr/sbin/chronyd");
    let pid = run_for_pid(lab.b.command(&chronyd).args([
        "-u",
        "root",
        "-Q",
        "-t",
        "20",
        &format!("server {server} iburst maxsamples 2"),
        "cmdport 0",
        &format!("pidfile {}/chronyd-client.pid", dir.display()),
    ]));
    clients.expect.insert(pid, ("chronyd".to_owned(), None));
    let root = tools_root();
    let pid = run_for_pid(
        lab.b
            .command("/usr/bin/python3")
            .arg(root.join("usr/bin/ntpdig"))
            .args(["-t", "3", server])
            .env("PYTHONPATH", root.join("usr/lib/python3/dist-packages")),
    );
    clients.expect.insert(pid, ("python3".to_owned(), None));
    // Sends and exits: its reply finds no socket. Its name is hostile bytes.
    let hostile = b"x\x1b[31m=y z\\";
    let pid = run_for_pid(
        lab.b
            .command("/usr/bin/python3")
            .args(["-c", &python_client(hostile, server, true)]),
    );
    clients.expect.insert(pid, (escape(hostile), None));
    clients.gone.insert(pid);
    // Moved into the test's cgroup before it starts Python (entering only the network
    // namespace: `ip netns exec` would remount /sys, cgroupfs with it).
    let script = python_client(b"cgclient", server, false);
    let pid = run_for_pid(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.b.name))
            .args(["/bin/sh", "-c"])
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec /usr/bin/python3 -c \"$0\"",
                cgroup.0.display()
            ))
            .arg(&script),
    );
    clients
        .expect
        .insert(pid, ("cgclient".to_owned(), Some(cgroup.shown())));
    clients
}

/// What ntptap's escaping makes of a name (see ntptap's `process::escape`).
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() && b != b'\\' && b != b'=' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

#[derive(Default)]
struct Clients {
    /// pid → (comm as shown, cgroup path as shown if the test chose it).
    expect: BTreeMap<u32, (String, Option<String>)>,
    /// Clients that exit before their reply arrives.
    gone: BTreeSet<u32>,
}

/// Every captured packet is attributed to the pid and comm the test started: requests on
/// egress, replies on ingress to the client's socket; the reply to a client that exited finds
/// no socket, unless it beat the exit (a race the test cannot steer; the test with nobody
/// listening shows `no socket` for certain). Over IPv4 and IPv6, with the hook given.
fn real_clients_are_attributed(hook: &str) {
    let lab = Lab::new(&format!("own-{hook}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cgroup = Cgroup::new(hook);
    let cgroup_dir = &cgroup;
    let file = dir.path().join("clients.pcapng");
    let ntptap = tap(&lab.b, "vb", hook, &file, &[]);
    let _server = chrony_server(&lab.a, dir.path());
    let mut clients = run_clients(&lab, dir.path(), Lab::A4, &cgroup);
    let v6 = run_clients(&lab, dir.path(), Lab::A6, &cgroup);
    clients.expect.extend(v6.expect);
    clients.gone.extend(v6.gone);
    let stderr = stop(ntptap);

    let records = read_pcap(&file);
    let counts = exit_counts(&stderr);
    assert_eq!(counts.captured, records.len() as u64, "{stderr}");
    // Frames by client port: the requests out, the replies in.
    let mut by_port: BTreeMap<u16, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        by_port.entry(client_port(r)).or_default().push(r);
    }
    let mut seen = BTreeSet::new();
    for (port, frames) in &by_port {
        let out = frames
            .iter()
            .find(|r| r.direction == Some(2))
            .expect("a request");
        let pid: u32 = out
            .owner_fact("pid")
            .unwrap_or_else(|| panic!("port {port}: request without owner: {:?}", out.comments))
            .parse()
            .unwrap();
        let (comm, cgroup) = clients
            .expect
            .get(&pid)
            .unwrap_or_else(|| panic!("port {port}: pid {pid} is none of the clients"));
        seen.insert(pid);
        for r in frames {
            // A reply that raced its client's exit may still have found the socket.
            if r.direction == Some(1)
                && clients.gone.contains(&pid)
                && r.comments.iter().any(|c| c == "ntptap: socket=none")
            {
                continue;
            }
            assert_eq!(
                r.owner_fact("pid"),
                Some(pid.to_string()),
                "{:?}",
                r.comments
            );
            assert_eq!(
                r.owner_fact("comm").as_ref(),
                Some(comm),
                "{:?}",
                r.comments
            );
            if let Some(cgroup) = cgroup {
                assert_eq!(
                    r.owner_fact("cgroup").as_ref(),
                    Some(cgroup),
                    "{:?}",
                    r.comments
                );
                let id = std::fs::metadata(&cgroup_dir.0).map(|m| m.ino());
                assert_eq!(
                    r.owner_fact("cgroup_id"),
                    id.ok().map(|i| i.to_string()),
                    "the cgroup's id is its directory's inode"
                );
            }
        }
    }
    assert_eq!(
        seen,
        clients.expect.keys().copied().collect(),
        "every client's frames were captured and attributed"
    );
    read_back_shows_owners(&file, &records, &clients);
}

/// tshark shows the owner comments, `ntptap -r` gives them back, and a hostile name never
/// reaches a terminal as control bytes.
fn read_back_shows_owners(file: &Path, records: &[Record], clients: &Clients) {
    // tshark shows the comments, and ntptap -r gives them back.
    let tshark = run(Command::new("tshark").arg("-r").arg(file).args([
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]));
    let shown = String::from_utf8_lossy(&tshark.stdout);
    for pid in clients.expect.keys().filter(|p| !clients.gone.contains(p)) {
        assert!(shown.contains(&format!("pid={pid} ")), "tshark: {shown}");
        assert!(
            shown.contains(&format!("PID: {pid}")),
            "ptcpdump's form: {shown}"
        );
    }
    let back = run(Command::new(ntptap_bin()).arg("-r").arg(file).arg("--json"));
    let back = String::from_utf8_lossy(&back.stdout);
    for (line, record) in back.lines().zip(records) {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(
            v["process"]["pid"].as_u64().map(|p| p.to_string()),
            record.owner_fact("pid"),
            "{line}"
        );
    }
    // A hostile name never reaches a terminal as control bytes.
    let text = run(Command::new(ntptap_bin())
        .arg("-r")
        .arg(file)
        .args(["-v", "--process"]));
    assert!(!text.stdout.contains(&0x1b), "no escape byte in the text");
    assert!(String::from_utf8_lossy(&text.stdout).contains("x\\x1b[31m\\x3dy\\x20z\\x5c["));
}

#[test]
fn real_clients_are_attributed_tc_hook() {
    real_clients_are_attributed("tc");
}

#[test]
fn real_clients_are_attributed_xdp_hook() {
    real_clients_are_attributed("xdp");
}

/// A request to a port nobody listens on is marked `no socket`, in JSON as in text.
#[test]
fn a_request_nobody_takes_says_no_socket() {
    let lab = Lab::new("nosock");
    let ntptap = Proc::listening(
        "ntptap --json",
        lab.a
            .command(ntptap_bin())
            .args(["-i", "va", "--attribution", "--json", "-c", "1"]),
    );
    run(lab
        .b
        .command("/usr/bin/python3")
        .args(["-c", &python_client(b"lonely", Lab::A4, true)]));
    let (status, stdout, stderr) = ntptap.wait(Duration::from_secs(10));
    assert!(status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["socket"], "none", "{stdout}");
    assert_eq!(v["process"], serde_json::Value::Null, "{stdout}");
}

/// `--comm chronyd` captures exactly chronyd's frames, counted against a full capture made at
/// the same time; `--not-comm chronyd` exactly the rest; `--cgroup` the cgroup's client. The
/// selecting tap runs with -Z: attribution keeps working with no capability left.
#[test]
fn comm_and_cgroup_select_exactly_in_the_kernel() {
    let lab = Lab::new("sel");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let cgroup = Cgroup::new("sel");
    let file = |n: &str| dir.path().join(format!("{n}.pcapng"));
    let full = tap(&lab.b, "vb", "tc", &file("full"), &[]);
    let only = tap(
        &lab.b,
        "vb",
        "tc",
        &file("only"),
        &["--comm", "chronyd", "-Z", "nobody"],
    );
    let rest = tap(
        &lab.b,
        "vb",
        "tc",
        &file("rest"),
        &["--not-comm", "chronyd"],
    );
    let cg = cgroup.0.to_string_lossy().into_owned();
    let in_cgroup = tap(&lab.b, "vb", "tc", &file("cgroup"), &["--cgroup", &cg]);
    let _server = chrony_server(&lab.a, dir.path());
    run_clients(&lab, dir.path(), Lab::A4, &cgroup);
    let stderrs: Vec<String> = [full, only, rest, in_cgroup]
        .into_iter()
        .map(stop)
        .collect();

    let all = read_pcap(&file("full"));
    let data = |records: &[Record]| records.iter().map(|r| r.data.clone()).collect::<Vec<_>>();
    let of = |pred: &dyn Fn(&Record) -> bool| {
        all.iter()
            .filter(|r| pred(r))
            .map(|r| r.data.clone())
            .collect::<Vec<_>>()
    };
    let chronyd = |r: &Record| r.owner_fact("comm").as_deref() == Some("chronyd");
    assert!(
        all.iter().any(chronyd) && !all.iter().all(chronyd),
        "a mix to select from"
    );
    assert_eq!(
        data(&read_pcap(&file("only"))),
        of(&chronyd),
        "{}",
        stderrs[1]
    );
    assert_eq!(
        data(&read_pcap(&file("rest"))),
        of(&|r: &Record| !chronyd(r)),
        "{}",
        stderrs[2]
    );
    let shown = cgroup.shown();
    let cgroup_frames = of(&|r: &Record| r.owner_fact("cgroup").as_deref() == Some(&shown[..]));
    assert_eq!(cgroup_frames.len(), 2, "the cgroup client's exchange");
    assert_eq!(
        data(&read_pcap(&file("cgroup"))),
        cgroup_frames,
        "{}",
        stderrs[3]
    );
    // The selecting taps count what they passed over.
    let counts = exit_counts(&stderrs[1]);
    assert_eq!(counts.captured, of(&chronyd).len() as u64, "{}", stderrs[1]);
    assert!(stderrs[1].contains("other_process"), "{}", stderrs[1]);
}

/// A daemon started before ntptap, as every production one is, and ntptap with no flag (the
/// command a unit runs): every frame names its process from the first one on, on both sides
/// of the exchange. chronyd serves from a socket it bound before ntptap started; a Python
/// client ("early-client") opens and binds its socket before ntptap starts, then asks when
/// told. ntptap finds both sockets in /proc at start; the server side's replies carry their
/// residence too.
#[test]
fn daemons_started_before_ntptap_are_named_without_asking() {
    let lab = Lab::new("early");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = chrony_server(&lab.a, dir.path());
    let go = dir.path().join("go");
    let script = format!(
        "import ctypes, os, socket, sys, time\n\
         ctypes.CDLL(None).prctl(15, b'early-client', 0, 0, 0)\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', 0))\n\
         s.settimeout(3)\n\
         print('bound', file=sys.stderr, flush=True)\n\
         while not os.path.exists({go:?}):\n\
         \x20   time.sleep(0.05)\n\
         for i in range(10):\n\
         \x20   s.sendto(b'\\x23' + bytes(43) + i.to_bytes(4, 'big'), ('{server}', 123))\n\
         \x20   s.recvfrom(512)\n\
         print('done', file=sys.stderr, flush=True)\n",
        go = go.display().to_string(),
        server = Lab::A4
    );
    let mut client = Proc::spawn(
        "early client",
        lab.b.command("/usr/bin/python3").args(["-c", &script]),
    );
    client.wait_for_stderr("bound", Duration::from_secs(10));
    let file = |side: &str| dir.path().join(format!("{side}.pcapng"));
    let plain = |ns: &Netns, dev: &str, side: &str| {
        Proc::listening(
            "ntptap",
            ns.command(ntptap_bin())
                .args(["-i", dev, "-w"])
                .arg(file(side)),
        )
    };
    let (server_side, client_side) = (plain(&lab.a, "va", "server"), plain(&lab.b, "vb", "client"));
    std::fs::write(&go, b"").expect("tell the client");
    client.wait_for_stderr("done", Duration::from_secs(20));
    let (client_pid, server_pid) = (client.pid().to_string(), server.pid().to_string());
    let stderrs = [stop(server_side), stop(client_side)];
    drop(client);
    drop(server);
    for (side, pid, comm, stderr) in [
        ("server", &server_pid, "chronyd", &stderrs[0]),
        ("client", &client_pid, "early-client", &stderrs[1]),
    ] {
        let records = read_pcap(&file(side));
        assert_eq!(records.len(), 20, "{side}: 10 exchanges\n{stderr}");
        for r in &records {
            assert_eq!(
                (
                    r.owner_fact("pid").as_deref(),
                    r.owner_fact("comm").as_deref()
                ),
                (Some(pid.as_str()), Some(comm)),
                "{side}: a frame of a socket opened before ntptap: {:?}\n{stderr}",
                r.comments
            );
        }
        assert!(
            stderr
                .contains("UDP sockets open before the start found in /proc, named 1 times since"),
            "{side}: {stderr}"
        );
    }
    // The server's replies, out of this host: their residence, from the capture times.
    let replies: Vec<Record> = read_pcap(&file("server"))
        .into_iter()
        .filter(|r| r.direction == Some(2))
        .collect();
    assert_eq!(replies.len(), 10);
    assert!(
        replies
            .iter()
            .all(|r| r.comments.iter().any(|c| c.contains(" residence="))),
        "{:?}",
        replies[0].comments
    );
}

/// An image built here, removed when dropped.
struct Image(String);

impl Image {
    /// A FROM-scratch image of one static binary, `/ntp_probe` (`tests/probe/ntp_probe.rs`,
    /// built here for the musl target by rustc alone): no registry, no base image.
    fn probe(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("probe/ntp_probe.rs");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        run(Command::new(rustc)
            .args([
                "--edition",
                "2024",
                "-O",
                "--target",
                "x86_64-unknown-linux-musl",
                "-o",
            ])
            .arg(root.join("ntp_probe"))
            .arg(&source));
        let tar = dir.path().join("probe.tar");
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let image = format!("localhost/{name}:test");
        run(Command::new("podman").arg("import").arg(&tar).arg(&image));
        Self(image)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

/// An NTP client in a podman container named by the test, on the test's network namespace:
/// ntptap (no flag) names its frames by the container's name, in JSON and in pcapng comments
/// (ntptap's and ptcpdump's `ContainerName:`), beside the container id its cgroup gives.
#[test]
fn a_podman_container_is_named() {
    let lab = Lab::new("pod");
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = chrony_server(&lab.a, dir.path());
    let name = format!("ntp-probe-{}", lab.b.name);
    let image = Image::probe(&name);
    let file = dir.path().join("pod.pcapng");
    let tap = Proc::listening(
        "ntptap",
        lab.b
            .command(ntptap_bin())
            .args(["-i", "vb", "--json", "--print", "-w"])
            .arg(&file),
    );
    let out = Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "run",
            "--rm",
            "--pull=never",
            "--name",
            &name,
        ])
        .args(["--ulimit=nofile=1024:2048", "--ulimit=nproc=1024:2048"])
        .arg(format!("--network=ns:/run/netns/{}", lab.b.name))
        .arg(&image.0)
        // A pause after each exchange: ntptap names a cgroup when it reads the frame, and
        // a container that is gone by then (its cgroup removed) keeps its id only.
        .args(["/ntp_probe", Lab::A4, "3", "300"])
        .output()
        .expect("podman run");
    assert!(
        out.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, stdout, stderr) = tap.stop(Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let frames: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"frame\"") || l.contains("\"process\""))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|f: &serde_json::Value| f["ntp"].is_object())
        .collect();
    let requests: Vec<&serde_json::Value> =
        frames.iter().filter(|f| f["direction"] == "out").collect();
    assert_eq!(requests.len(), 3, "{stdout}\n{stderr}");
    for f in &requests {
        assert_eq!(f["process"]["container_name"], name.as_str(), "{f}");
        assert!(
            f["process"]["container"]
                .as_str()
                .is_some_and(|c| c.starts_with("podman:")),
            "{f}"
        );
    }
    let written: Vec<Record> = read_pcap(&file)
        .into_iter()
        .filter(|r| r.direction == Some(2))
        .collect();
    assert_eq!(written.len(), 3);
    for r in &written {
        assert_eq!(
            r.owner_fact("container_name").as_deref(),
            Some(name.as_str())
        );
        assert!(
            r.comments.contains(&format!("ContainerName: {name}")),
            "{:?}",
            r.comments
        );
    }
}
