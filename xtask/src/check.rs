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
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stderr = child.stderr.take().expect("piped");
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
    // Cargo stopped before it ran a test (a build failure): start the work now.
    let started = match (started, background) {
        (Some(started), _) => started,
        (None, Some(start)) => start()?,
        (None, None) => unreachable!("started when taken"),
    };
    let tests = if status.success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!("{command:?} failed ({status})"))
    };
    Ok((tests, started))
}
