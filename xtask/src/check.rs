//! What CI runs: `cargo xtask lint` (rustfmt, clippy twice) and `cargo xtask test` (set-up,
//! lint, the packages and the image, every test, the kernel matrix, fuzzing).

use std::{env, path::Path, process::Command};

use anyhow::Context as _;

use crate::{
    background, cross, fuzz, image, package,
    run::{cargo, cmd},
    setup, vmtest,
};

/// `cargo xtask test`.
pub fn test_all(
    root: &Path,
    args: &[String],
    fuzz_seconds: u32,
    skip_vms: bool,
) -> anyhow::Result<()> {
    setup::all(root)?;
    lint()?;
    // The package test installs and removes it on this machine.
    let deb = package::run(root, cross::Arch::host())?;
    let image = image::run(root)?;
    // While the kernel tests run: the arm64 package, the matrix's guests (whose arm64
    // ones run that package's binary), the fuzz targets.
    let (work_root, host_deb) = (root.to_path_buf(), deb.clone());
    let log = root.join("target/xtask-background.log");
    let background = move || {
        background::spawn(&log, move || {
            let arm64 = package::run(&work_root, cross::Arch::Arm64)?;
            let guests = if skip_vms {
                None
            } else {
                let debs = [
                    (cross::Arch::host(), host_deb.as_path()),
                    (cross::Arch::Arm64, arm64.as_path()),
                ];
                Some(vmtest::prepare(&work_root, &[], &debs)?)
            };
            if fuzz_seconds > 0 {
                fuzz::build(&work_root)?;
            }
            Ok(guests)
        })
    };
    let (tests, background) = test(root, &deb, &image, args, background)?;
    let prepared = background.join();
    // The matrix runs even when a host test failed, so one run reports both.
    let tests = match prepared {
        Ok(Some(guests)) => tests.and(vmtest::boot_all(root, guests)),
        Ok(None) => tests,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            tests.and(Err(e))
        }
    };
    // Fuzzing runs even when a test failed, so one run reports both.
    let fuzzed = if fuzz_seconds > 0 {
        fuzz::run(root, fuzz_seconds, None)
    } else {
        Ok(())
    };
    tests.and(fuzzed)
}

/// rustfmt, then clippy with `-D warnings` for the workspace and for the eBPF crate.
pub fn lint() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "ntptap-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The kernel programs, on their own target, with the toolchain aya-build uses.
    cmd(Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "clippy",
            "--package",
            "ntptap-ebpf",
            "--bins",
        ])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
        ])
        .args(["--target-dir", "target/ebpf-clippy", "--", "-D", "warnings"])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"",
        )
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER"))
}

/// Build and run every test of the workspace on this machine. `background` starts once the
/// test binaries are built and cargo has let go of the build directory's lock (when it prints
/// its first "Running"), so that builds it starts never wait for cargo, nor cargo for them.
/// Returns how the tests went, and the background work.
fn test<T>(
    root: &Path,
    deb: &Path,
    image: &str,
    extra: &[String],
    background: impl FnOnce() -> anyhow::Result<background::Background<T>>,
) -> anyhow::Result<(anyhow::Result<()>, background::Background<T>)> {
    use std::io::BufRead as _;

    cargo(&["build", "--package", "ntptap"])?;
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args([
            "test",
            "--workspace",
            "--exclude",
            "ntptap-ebpf",
            "--no-fail-fast",
        ])
        .env("NTPTAP_BIN", root.join("target/debug/ntptap"))
        .env("NTPTAP_DEB", deb)
        .env("NTPTAP_IMAGE", image)
        .env("NTPTAP_TOOLS", setup::tools_dir(root));
    if env::var_os("NTPTAP_CORPUS").is_none() {
        let sibling = root.join("../shared/corpus");
        if sibling.is_dir() {
            command.env("NTPTAP_CORPUS", sibling);
        }
    }
    // Kernel tests share two CPUs with the traffic they make; one at a time keeps timing sane.
    command.arg("--").arg("--test-threads=1").args(extra);
    eprintln!("xtask: running {command:?}");
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stderr = child.stderr.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let failures = std::thread::spawn(move || Failures::echo(stdout, std::io::stdout()));
    let mut background = Some(background);
    let mut started = None;
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.context("cannot read cargo test's output")?;
        eprintln!("{line}");
        if line.trim_start().starts_with("Running ")
            && let Some(start) = background.take()
        {
            started = Some(start()?);
        }
    }
    let status = child.wait()?;
    let failures = failures.join().unwrap_or_default();
    // Cargo stopped before it ran a test (a build failure): start the work now.
    let started = match (started, background) {
        (Some(started), _) => started,
        (None, Some(start)) => start()?,
        (None, None) => unreachable!("started when taken"),
    };
    let tests = if status.success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{command:?} failed ({status}){}",
            failures.summary()
        ))
    };
    Ok((tests, started))
}

/// The tests that failed and the first lines of why, read off libtest's output as it is
/// echoed, so that the run's last lines (after the matrix and the fuzzers) still name them.
#[derive(Default)]
struct Failures {
    /// Each failed test with the first lines its failure printed.
    tests: Vec<(String, Vec<String>)>,
}

impl Failures {
    /// Lines kept of each failure's output, and the failures named in full.
    const LINES: usize = 8;
    const TESTS: usize = 20;

    /// Copy libtest's `stdout` to `to`, line by line, noting the failures.
    fn echo(stdout: impl std::io::Read, mut to: impl std::io::Write) -> Self {
        use std::io::BufRead as _;
        let mut failures = Self::default();
        let mut open: Option<(String, Vec<String>)> = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(to, "{line}");
            if let Some(name) = line
                .strip_prefix("---- ")
                .and_then(|rest| rest.strip_suffix(" stdout ----"))
            {
                failures.tests.extend(open.take());
                open = Some((name.to_owned(), Vec::new()));
            } else if line == "failures:" || line.starts_with("test result:") {
                failures.tests.extend(open.take());
            } else if let Some((_, lines)) = open.as_mut()
                && lines.len() < Self::LINES
                && !line.trim().is_empty()
                && !line.starts_with("note: run with `RUST_BACKTRACE")
            {
                lines.push(line.chars().take(300).collect());
            }
        }
        failures.tests.extend(open);
        failures
    }

    /// Appended to the error: one paragraph a failed test.
    fn summary(&self) -> String {
        use std::fmt::Write as _;
        if self.tests.is_empty() {
            return String::new();
        }
        let mut out = format!("; {} test(s) failed:", self.tests.len());
        for (name, lines) in self.tests.iter().take(Self::TESTS) {
            let _ = write!(out, "\n  {name}");
            for line in lines {
                let _ = write!(out, "\n      {line}");
            }
        }
        if self.tests.len() > Self::TESTS {
            let _ = write!(out, "\n  and {} more", self.tests.len() - Self::TESTS);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Failures;

    #[test]
    fn failures_are_named_with_their_first_lines() {
        let out = "running 2 tests\n\
            test a::ok ... ok\n\
            test a::bad ... FAILED\n\
            \n\
            failures:\n\
            \n\
            ---- a::bad stdout ----\n\
            \n\
            thread 'a::bad' panicked at tests/tests/a.rs:3:5:\n\
            no answer from the server\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
            \n\
            \n\
            failures:\n\
            \x20   a::bad\n\
            \n\
            test result: FAILED. 1 passed; 1 failed\n";
        let mut echoed = Vec::new();
        let failures = Failures::echo(out.as_bytes(), &mut echoed);
        assert_eq!(echoed, out.as_bytes());
        assert_eq!(failures.tests.len(), 1);
        let summary = failures.summary();
        assert!(
            summary.starts_with("; 1 test(s) failed:\n  a::bad\n"),
            "{summary}"
        );
        assert!(
            summary.contains("panicked at tests/tests/a.rs:3:5:"),
            "{summary}"
        );
        assert!(summary.contains("no answer from the server"), "{summary}");
        assert!(!summary.contains("RUST_BACKTRACE"), "{summary}");
        assert_eq!(Failures::default().summary(), "");
    }
}
