//! ntptap's developer tasks: `cargo xtask setup | run | lint | test`.
//!
//! Not the normal build path (that is `cargo build`, which builds the kernel programs through
//! `ntptap/build.rs`): xtask installs what a fresh machine lacks and runs the checks CI runs.

mod background;
mod bench;
mod chart;
mod cross;
mod demo;
mod fuzz;
mod image;
mod imports;
mod package;
mod setup;
mod vmtest;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ntptap's developer tasks")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need, when missing: rust-src for nightly,
    /// bpf-linker 0.10.1, Debian packages (tcpdump, tshark, QEMU, ...), the arm64 Rust target
    /// and cross linker, and chrony/ntpsec unpacked under target/tools (never installed as
    /// services).
    Setup,
    /// Show ntptap on real NTP traffic in a private lab it creates and removes: chronyd and
    /// ntpdig in two network namespaces, ntptap printing the exchange and writing a capture.
    Demo {
        /// Capture file to write (in the current directory by default).
        #[arg(long, default_value = "ntp-demo.pcapng")]
        output: PathBuf,
        /// Use this ntptap binary instead of building one in release mode (the demo's test).
        #[arg(long)]
        ntptap: Option<PathBuf>,
    },
    /// Build ntptap (loader and kernel programs) for a target, cross-building where it is not
    /// the machine's: `--target aarch64-unknown-linux-gnu` on an amd64 machine adds the Rust
    /// target and Debian's cross linker when missing.
    Build {
        /// Rust target triple: x86_64- or aarch64-unknown-linux-gnu or -musl (musl is static).
        #[arg(long)]
        target: Option<String>,
        /// Optimised build (target/TRIPLE/release/ntptap).
        #[arg(long)]
        release: bool,
    },
    /// Set up, build in release mode, and run ntptap with ARGS.
    Run {
        /// Arguments for ntptap.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Measure ntptap against tcpdump and tshark in the same run (offline decode, kernel
    /// programs, live floods, each beside the least possible); print the ratios and write
    /// BENCHMARKS.md, target/bench/results.json and target/bench/targets.png.
    Bench {
        /// Packets in the generated capture.
        #[arg(long, default_value_t = 1_000_000)]
        packets: u64,
        /// Interleaved runs of each contender; the median is reported. Single floods move by
        /// ±10 % on a shared host, and the non-NTP flood's ratios compare losses of a few %:
        /// fewer rounds can turn a verdict either way.
        #[arg(long, default_value_t = 9)]
        runs: usize,
    },
    /// Run each cargo-fuzz target (NTP decoder, frame printers, capture readers) for a
    /// bounded time; crashes are kept as regression tests.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Boot Debian's cloud kernels in QEMU (amd64 5.10, 6.1, 6.12, 6.18 LTS and the newest 7.x;
    /// arm64 6.1 and the newest 7.x) and
    /// run the kernel tests in each (BPF_PROG_TEST_RUN verdicts; captures on a veth pair
    /// inside the guest).
    Vmtest {
        /// Only these kernels (5.10, 6.1, 6.12, 6.18, 7.x, 6.1-arm64, 7.x-arm64); all by default.
        kernels: Vec<String>,
    },
    /// The soak: an NTP flood at a lossless rate with rotation on, sampling ntptap's memory
    /// and descriptors (as root); the curve goes to target/soak.txt.
    Soak {
        /// How long.
        #[arg(long, default_value_t = 600)]
        seconds: u32,
    },
    /// rustfmt check, then clippy with -D warnings for the workspace and for the eBPF crate
    /// on its own target.
    Lint,
    /// The import circles between each crate's files, and the largest files.
    Imports {
        /// Fail if there is any circle.
        #[arg(long)]
        deny: bool,
        /// The tree to look at (another checkout, for a before and after); this one by
        /// default.
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Build the Debian package (cargo-deb) into target/package: the binary, the man page,
    /// shell completions, the systemd unit (installed, not enabled), the Prometheus rules and
    /// the Grafana dashboard under /usr/share/ntptap.
    Package {
        /// Debian architecture of the package (arm64 is cross-built on an amd64 machine).
        #[arg(long, value_enum, default_value_t = cross::Arch::host())]
        arch: cross::Arch,
    },
    /// Build the container image (FROM scratch, the static musl binary) with podman, tagged
    /// ntptap:VERSION; no base image is pulled.
    Image,
    /// Set up, lint, run every test (kernel tests included: run as root), run the kernel
    /// tests on the kernel matrix (`vmtest`), then fuzz each target for a bounded time.
    Test {
        /// Seconds each fuzz target runs after the tests (0: no fuzzing).
        #[arg(long, default_value_t = 15)]
        fuzz_seconds: u32,
        /// Skip the kernel matrix (the host kernel still runs every test).
        #[arg(long)]
        skip_vms: bool,
        /// Extra arguments for `cargo test` (after `--`, for the test binaries).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let invoked_from = env::current_dir().context("cannot read the current directory")?;
    let root = workspace_root();
    env::set_current_dir(&root).context("cannot enter the workspace root")?;
    match args.task {
        Task::Setup => setup::all(&root),
        Task::Demo { output, ntptap } => {
            demo::run(&root, &invoked_from, demo::Demo { output, ntptap })
        }
        Task::Run { args } => {
            setup::all(&root)?;
            cargo(&["build", "--release", "--package", "ntptap"])?;
            let status = Command::new(root.join("target/release/ntptap"))
                .args(&args)
                .status()
                .context("cannot run target/release/ntptap")?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Task::Lint => lint(),
        Task::Imports { deny, root: tree } => imports::run(tree.as_deref().unwrap_or(&root), deny),
        Task::Build { target, release } => {
            setup::demo(&root)?;
            let built = match target {
                Some(triple) => cross::build(&root, &triple, release)?,
                None if release => {
                    cargo(&["build", "--package", "ntptap", "--release"])?;
                    root.join("target/release/ntptap")
                }
                None => {
                    cargo(&["build", "--package", "ntptap"])?;
                    root.join("target/debug/ntptap")
                }
            };
            eprintln!("xtask: built {}", built.display());
            Ok(())
        }
        Task::Package { arch } => {
            setup::all(&root)?;
            package::run(&root, arch).map(drop)
        }
        Task::Image => {
            setup::all(&root)?;
            image::run(&root).map(drop)
        }
        Task::Soak { seconds } => {
            setup::all(&root)?;
            // The build production runs.
            cargo(&["build", "--release", "--package", "ntptap"])?;
            cmd(
                Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                    .args(["test", "--package", "ntptap-tests", "--test", "soak", "--"])
                    .args(["--ignored", "--nocapture"])
                    .env("NTPTAP_BIN", root.join("target/release/ntptap"))
                    .env("NTPTAP_SOAK_SECONDS", seconds.to_string())
                    .env("NTPTAP_SOAK_REPORT", root.join("target/soak.txt")),
            )
        }
        Task::Bench { packets, runs } => bench::run(&root, &bench::Options { packets, runs }),
        Task::Fuzz { seconds, target } => fuzz::run(&root, seconds, target.as_deref()),
        Task::Vmtest { kernels } => {
            setup::all(&root)?;
            vmtest::run(&root, &kernels)
        }
        Task::Test {
            args,
            fuzz_seconds,
            skip_vms,
        } => test_all(&root, &args, fuzz_seconds, skip_vms),
    }
}

/// `cargo xtask test`.
fn test_all(root: &Path, args: &[String], fuzz_seconds: u32, skip_vms: bool) -> anyhow::Result<()> {
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

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or(manifest.clone(), Path::to_path_buf)
}

/// Run `cargo ARGS` with the toolchain that runs us.
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cmd(Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

fn cmd(command: &mut Command) -> anyhow::Result<()> {
    if !background::redirect(command)? {
        eprintln!("xtask: running {command:?}");
    }
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn lint() -> anyhow::Result<()> {
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
