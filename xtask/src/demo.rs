//! `cargo xtask demo`: ntptap on real NTP traffic, in a private lab it builds and removes.
//!
//! Two network namespaces with unique names, joined by a veth pair; chronyd serves time in one,
//! chronyd and ntpsec's ntpdig ask for it from the other; ntptap watches the client side,
//! prints what it sees and writes a capture file. The lab is removed on every exit path:
//! the guards delete it when they drop, and Ctrl-C only ends the traffic early.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use ntptap_tests::{Lab, chrony_client, chrony_server, ntpdig, read_pcap};

pub struct Demo {
    /// Where to write the capture (relative to the directory `cargo xtask` was run from).
    pub output: PathBuf,
    /// An ntptap binary to use instead of building one in release mode.
    pub ntptap: Option<PathBuf>,
}

pub fn run(root: &Path, invoked_from: &Path, demo: Demo) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the demo creates network namespaces and loads BPF programs: run it as root (sudo -E cargo xtask demo)"
        );
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("cannot handle Ctrl-C")?;
    }
    let ntptap = if let Some(path) = demo.ntptap {
        path
    } else {
        crate::setup::demo(root)?;
        crate::run::cargo(&["build", "--release", "--package", "ntptap"])?;
        root.join("target/release/ntptap")
    };
    let output = invoked_from.join(&demo.output);
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;

    let lab = Lab::new("demo");
    say(&format!(
        "a private lab: namespace {} runs chronyd, an NTP server at {} and {}; namespace {} runs the clients. They are joined by a veth pair (va <-> vb) and removed when the demo ends.",
        lab.a.name,
        Lab::A4,
        Lab::A6,
        lab.b.name
    ));
    let _server = chrony_server(&lab.a, dir.path());

    say(&format!(
        "ntptap -i vb -v --print --stats 60 -w {}",
        output.display()
    ));
    let mut capture = lab.b.command(&ntptap);
    capture
        .args([
            "-i",
            "vb",
            "-v",
            "--print",
            "--stats",
            "60",
            "--overwrite",
            "-w",
        ])
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = capture.spawn().context("cannot start ntptap")?;
    let guard = KillOnDrop(child.id());
    let stderr = child.stderr.take().context("ntptap's stderr")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let relay = thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if line.contains("listening on") {
                let _ = ready_tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(15)).is_err() {
        let _ = child.wait();
        bail!("ntptap did not start; its messages are above");
    }

    let steps = [
        (
            "chronyd as a client, four samples over IPv4",
            Client::Chrony,
            Lab::A4,
        ),
        ("ntpsec's ntpdig (SNTP) over IPv4", Client::Ntpdig, Lab::A4),
        ("ntpsec's ntpdig (SNTP) over IPv6", Client::Ntpdig, Lab::A6),
    ];
    for (what, client, server) in steps {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        say(what);
        match client {
            Client::Chrony => drop(chrony_client(&lab.b, dir.path(), server)),
            Client::Ntpdig => drop(ntpdig(&lab.b, server)),
        }
        shown(child.id());
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let status = child.wait().context("waiting for ntptap")?;
    std::mem::forget(guard);
    let _ = relay.join();
    if !status.success() {
        bail!("ntptap failed ({status}); its messages are above");
    }
    let frames = read_pcap(&output).len();
    say(&format!(
        "wrote {} ({frames} packets). Open it with `tshark -r {0} -V` or `wireshark {0}`, or read it again with `ntptap -r {0} -v`. Real use: `ntptap -i eth0` (see README.md).",
        output.display()
    ));
    Ok(())
}

#[derive(Clone, Copy)]
enum Client {
    Chrony,
    Ntpdig,
}

/// Wait until ntptap has shown what the step sent, so the next heading comes after it: the
/// rings are read every 50 ms when printing, and SIGUSR2 makes ntptap flush its output now.
fn shown(ntptap: u32) {
    thread::sleep(Duration::from_millis(200));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(ntptap as i32),
        nix::sys::signal::Signal::SIGUSR2,
    );
    thread::sleep(Duration::from_millis(200));
}

fn say(what: &str) {
    eprintln!("\n== {what}");
}

/// Kills the process by PID if the demo unwinds before stopping it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
