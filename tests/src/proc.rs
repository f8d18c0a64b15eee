//! Processes the tests start: killed by PID and reaped when their guard drops, their stderr
//! read as it comes; ntptap's binary and the tools' root.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// Panic unless running as root: the kernel tests create namespaces and load BPF programs.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the kernel tests need root (network namespaces, BPF): run `sudo cargo xtask test`"
    );
}

/// Run `command`, panic with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How long a capture may take to attach and say `listening on` (a debug build on a loaded
/// two-core machine, the first load of the programs included; in the matrix, the verifier of
/// an emulated 5.10 guest beside six others took over 20 s on the XDP copy loop with the
/// owner lookups, which attribution now brings by default).
pub const LISTENING: Duration = Duration::from_mins(1);

/// A child process, killed (by its PID) and reaped when the guard drops.
pub struct Proc {
    pub child: Option<Child>,
    pub what: String,
    stderr_lines: Option<mpsc::Receiver<String>>,
    pub stderr_seen: Vec<String>,
}

impl Proc {
    /// Spawn `command` with stderr piped and read line by line in the background.
    #[must_use]
    pub fn spawn(what: &str, command: &mut Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stderr: ChildStderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            what: what.to_owned(),
            stderr_lines: Some(rx),
            stderr_seen: Vec::new(),
        }
    }

    /// Spawn `command` (an ntptap capture) and wait until it prints `listening on`: its
    /// programs are attached and it reads. Panics, with its stderr, after [`LISTENING`].
    #[must_use]
    pub fn listening(what: &str, command: &mut Command) -> Self {
        let mut proc = Self::spawn(what, command);
        proc.wait_for_stderr("listening on", LISTENING);
        proc
    }

    #[must_use]
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Wait until a stderr line contains `needle`; panic after `timeout` with what was seen.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let rx = self.stderr_lines.as_ref().expect("stderr reader");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr_seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{} did not print {needle:?} within {timeout:?}; its stderr:\n{}",
                        self.what,
                        self.stderr_seen.join("\n")
                    )
                }
            }
        }
    }

    /// Send `signal`, wait for the exit, and return (exit status, stdout, all of stderr).
    pub fn stop(
        mut self,
        signal: nix::sys::signal::Signal,
    ) -> (std::process::ExitStatus, String, String) {
        let mut child = self.child.take().expect("running");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        self.finish(&mut child)
    }

    /// Wait for the process to exit by itself (panics after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit within {timeout:?}", self.what);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.finish(&mut child)
    }

    fn finish(&mut self, child: &mut Child) -> (std::process::ExitStatus, String, String) {
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let status = child.wait().expect("wait");
        if let Some(rx) = self.stderr_lines.take() {
            // The reader thread ends at EOF, once the process is gone.
            self.stderr_seen.extend(rx.iter());
        }
        (status, stdout, self.stderr_seen.join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The ntptap binary under test (`NTPTAP_BIN`, else next to the test binary's deps folder).
#[must_use]
pub fn ntptap_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NTPTAP_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("ntptap");
    assert!(
        bin.exists(),
        "{} not found: build it (cargo build -p ntptap) or set NTPTAP_BIN",
        bin.display()
    );
    bin
}

/// The unpacked NTP implementations (`cargo xtask setup` puts them in target/tools/root).
#[must_use]
pub fn tools_root() -> PathBuf {
    let dir = std::env::var_os("NTPTAP_TOOLS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
        PathBuf::from,
    );
    let root = dir.join("root");
    assert!(
        root.join("usr/sbin/chronyd").exists(),
        "chronyd is not unpacked under {}: run `cargo xtask setup`",
        root.display()
    );
    root
}
