//! Booting the guests in QEMU (software emulation), reading what each reported, and the
//! report.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::cross::Arch;

use super::kernels::{GUEST_TESTS, Kernel, Unpacked};

/// Longest a guest may run (boot, tests, power-off) under software emulation.
pub(super) const GUEST_TIMEOUT: Duration = Duration::from_mins(10);

/// What one guest reported.
pub(super) struct Outcome {
    pub(super) kernel: &'static str,
    pub(super) release: String,
    pub(super) results: Vec<(String, i32)>,
    pub(super) notes: BTreeSet<String>,
    pub(super) seconds: f64,
    pub(super) log: PathBuf,
}

impl Outcome {
    pub(super) fn passed(&self) -> bool {
        self.results.len() == GUEST_TESTS.len() && self.results.iter().all(|(_, rc)| *rc == 0)
    }
}

/// Print what each guest reported; fail unless every test passed on every kernel.
pub(super) fn report(
    outcomes: Vec<anyhow::Result<Outcome>>,
    images: &[(&'static Kernel, Unpacked, PathBuf)],
) -> anyhow::Result<()> {
    let mut report = String::from("kernel matrix (QEMU, software emulation):\n");
    let mut failed = Vec::new();
    for (outcome, (kernel, ..)) in outcomes.into_iter().zip(images) {
        match outcome {
            Ok(o) => {
                let results: Vec<String> = o
                    .results
                    .iter()
                    .map(|(t, rc)| format!("{t} {}", if *rc == 0 { "ok" } else { "FAILED" }))
                    .collect();
                let _ = writeln!(
                    report,
                    "  {:<10} {:<28} {:>5.1} s  {}",
                    o.kernel,
                    o.release,
                    o.seconds,
                    if results.is_empty() {
                        "no result".to_owned()
                    } else {
                        results.join(", ")
                    }
                );
                for note in &o.notes {
                    let _ = writeln!(report, "             {note}");
                }
                if !o.passed() {
                    failed.push(format!("{} (see {})", o.kernel, o.log.display()));
                }
            }
            Err(e) => {
                let _ = writeln!(report, "  {:<10} {e:#}", kernel.name);
                failed.push(kernel.name.to_owned());
            }
        }
    }
    eprint!("{report}");
    if !failed.is_empty() {
        bail!("the kernel tests failed on {}", failed.join(", "));
    }
    Ok(())
}

/// Boots tried when a guest fails before its tests start. Before the guests ran without
/// CMPXCHG16B (see `run_guest`), 6.12 faulted in six of its ten boots here, some before the
/// tests began; none of the boots since has. The retry stays as a safety net for the emulator,
/// and never covers a failure once the tests have begun.
pub(super) const BOOT_ATTEMPTS: u32 = 3;

/// Longest from start to the init script's first line.
pub(super) const BOOT_TIMEOUT: Duration = Duration::from_mins(2);

/// What the init script prints first.
pub(super) const STARTED: &str = "NTPTAP-VM-KERNEL ";

pub(super) enum Guest {
    /// It powered off (the log tells how the tests went).
    Finished,
    /// It never reached the tests: why.
    NoBoot(String),
}

/// The QEMU program for `arch`'s guests.
pub(super) fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-system-x86_64",
        Arch::Arm64 => "qemu-system-aarch64",
    }
}

/// Run QEMU once with its console in `log`.
pub(super) fn run_guest(
    arch: Arch,
    unpacked: &Unpacked,
    initramfs: &Path,
    log: &Path,
) -> anyhow::Result<Guest> {
    let started = Instant::now();
    let console = fs::File::create(log)?;
    let mut qemu = Command::new(qemu_binary(arch));
    qemu.args(["-accel", "tcg", "-m", "1024", "-smp", "1"]);
    let tty = match arch {
        // QEMU 7.2's software CMPXCHG16B leaves wrong flags now and then; 6.12's SLUB relies
        // on them (double faults, segfaulting programs). Without the feature the kernel uses
        // its locked fallback.
        Arch::Amd64 => {
            qemu.args(["-cpu", "qemu64,cx16=off"]);
            "ttyS0"
        }
        // The generic board, with the core of Graviton2 and Ampere Altra (Armv8.2, LSE
        // atomics, which the arm64 BPF JIT uses).
        Arch::Arm64 => {
            qemu.args(["-machine", "virt", "-cpu", "neoverse-n1"]);
            "ttyAMA0"
        }
    };
    let mut child = qemu
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(unpacked.image())
        .arg("-initrd")
        .arg(initramfs)
        // An oops panics and a panic powers off (-no-reboot): a broken guest ends at once.
        .args([
            "-append",
            &format!("console={tty} panic=-1 oops=panic mitigations=off quiet"),
        ])
        .stdin(Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console)
        .spawn()
        .with_context(|| format!("cannot start {}", qemu_binary(arch)))?;
    let began =
        |log: &Path| fs::read(log).is_ok_and(|b| String::from_utf8_lossy(&b).contains(STARTED));
    let mut began_tests = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        began_tests = began_tests || began(log);
        let timeout = if began_tests {
            GUEST_TIMEOUT
        } else {
            BOOT_TIMEOUT
        };
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            if !began_tests {
                return Ok(Guest::NoBoot(format!(
                    "did not reach its tests within {BOOT_TIMEOUT:?}"
                )));
            }
            bail!(
                "the guest did not finish within {GUEST_TIMEOUT:?}; its console is in {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if began(log) {
        Ok(Guest::Finished)
    } else {
        Ok(Guest::NoBoot("stopped before its tests began".into()))
    }
}

/// Boot one guest, wait for it to power off, and read what it reported.
pub(super) fn boot(
    kernel: &'static Kernel,
    unpacked: &Unpacked,
    initramfs: &Path,
    log: &Path,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut retries = Vec::new();
    for attempt in 1..=BOOT_ATTEMPTS {
        match run_guest(kernel.arch, unpacked, initramfs, log)? {
            Guest::Finished => break,
            Guest::NoBoot(why) if attempt < BOOT_ATTEMPTS => {
                // An emulator fault before the tests began says nothing about ntptap: keep
                // the console and boot again.
                let kept = log.with_extension(format!("boot{attempt}.log"));
                let _ = fs::rename(log, &kept);
                eprintln!(
                    "xtask: {} guest {why}; console kept in {}; booting again",
                    kernel.name,
                    kept.display()
                );
                retries.push(format!(
                    "boot {attempt}: {why} (console in {}); booted again",
                    kept.display()
                ));
            }
            Guest::NoBoot(why) => bail!(
                "the guest {why} {BOOT_ATTEMPTS} times; its console is in {}",
                log.display()
            ),
        }
    }
    let text = String::from_utf8_lossy(&fs::read(log)?).into_owned();
    let mut outcome = Outcome {
        kernel: kernel.name,
        release: String::new(),
        results: Vec::new(),
        notes: retries.into_iter().collect(),
        seconds: started.elapsed().as_secs_f64(),
        log: log.to_path_buf(),
    };
    for line in text.lines() {
        let line = line.trim_start_matches(|c: char| c.is_control() || c == '[' || c == '?');
        if let Some(release) = line.strip_prefix(STARTED) {
            release.trim().clone_into(&mut outcome.release);
        } else if let Some(result) = line.strip_prefix("NTPTAP-VM-RESULT ") {
            let mut words = result.split_whitespace();
            if let (Some(test), Some(rc)) = (words.next(), words.next()) {
                outcome
                    .results
                    .push((test.to_owned(), rc.parse().unwrap_or(-1)));
            }
        } else if let Some(module) = line.strip_prefix("NTPTAP-VM-MODULE-FAILED ") {
            outcome
                .notes
                .insert(format!("module {module} did not load"));
        } else if let Some(decision) = line.find("ntptap: ").map(|at| &line[at + 8..]) {
            // -v's attach decisions, from the portable tests.
            if decision.starts_with("kernel: ")
                || decision.contains("copies frames")
                || decision.contains(" at ")
                || decision.starts_with("process attribution")
                || decision.starts_with("in-host latency")
            {
                outcome
                    .notes
                    .insert(decision.replace("va: ", "").trim().to_owned());
            }
        }
    }
    if outcome.release.is_empty() {
        bail!(
            "the guest did not start its tests; its console is in {}",
            log.display()
        );
    }
    Ok(outcome)
}
