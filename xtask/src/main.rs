//! ntptap's developer tasks: `cargo xtask setup | run | lint | test`.
//!
//! Not the normal build path (that is `cargo build`, which builds the kernel programs through
//! `ntptap/build.rs`): xtask installs what a fresh machine lacks and runs the checks CI runs.

mod apt;
mod background;
mod bench;
mod chart;
mod check;
mod cross;
mod demo;
mod fuzz;
mod image;
mod imports;
mod package;
mod run;
mod setup;
mod target;
mod vmtest;

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::Context as _;

use crate::run::{cargo, cmd};
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
        Task::Lint => check::lint(),
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
        } => check::test_all(&root, &args, fuzz_seconds, skip_vms),
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or(manifest.clone(), Path::to_path_buf)
}
