//! Idempotent installation of what ntptap's build and tests need.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    apt::{Removal, apt_get, debian_packages, output},
    run::cmd,
};

/// kubernetes-validate release (its newest schemas are Kubernetes 1.37's).
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";

/// bpf-linker release that works with the installed nightly's LLVM (newer ones need a system
/// LLVM that Debian 12 lacks).
const BPF_LINKER_VERSION: &str = "0.10.1";

/// Debian packages the demo needs: namespaces and veth pairs, and checksum offload off.
const DEMO_PACKAGES: &[&str] = &["iproute2", "ethtool"];

/// Debian packages the tests and the benchmark use besides the demo's.
const TEST_PACKAGES: &[&str] = &[
    "tcpdump",
    "tshark",
    "bpftool",
    "util-linux",
    "libcap2-bin",
    "nftables",
    // The package test: the man page and the unit's system call filter as a seccomp filter.
    "man-db",
    "python3-seccomp",
    // The DaemonSet test reads the manifest with Python's YAML parser.
    "python3-yaml",
    // The container image (built FROM scratch, nothing pulled) and its test; runc, because
    // crun refuses this machine kind's hybrid cgroup layout.
    "podman",
    "runc",
    // The font the benchmark chart is drawn with.
    "fonts-dejavu-core",
];

/// The kernel matrix (`cargo xtask vmtest`): QEMU, and what the guests' initramfs is made of.
/// Debian's QEMU may conflict with a newer qemu-utils that a machine image brings; the matrix
/// needs it all the same, so this one install may replace it, and says so first.
const VM_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    // qemu-system-aarch64, for the arm64 guests.
    "qemu-system-arm",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
];

/// NTP implementations the tests run as peers. They are unpacked, never installed: installing
/// them starts a service that contacts the public pool. (Prometheus is unpacked the same way.)
const NTP_DEBS: &[&str] = &["chrony", "ntpsec", "ntpsec-ntpdig", "python3-ntp"];

/// Where the unpacked NTP implementations live.
pub fn tools_dir(root: &Path) -> PathBuf {
    root.join("target/tools")
}

/// What building, testing, the kernel matrix and the benchmark need.
pub fn all(root: &Path) -> anyhow::Result<()> {
    demo(root)?;
    debian_packages(TEST_PACKAGES, Removal::Never)?;
    prometheus(&tools_dir(root))?;
    kubernetes_validate(&tools_dir(root))?;
    debian_packages(VM_PACKAGES, Removal::AllowedSayingSo)?;
    // The arm64 rows of the matrix and the arm64 package.
    crate::cross::prepare(crate::cross::Arch::Arm64.static_target())
}

/// What the demo needs, and nothing more: it never removes an installed package.
pub fn demo(root: &Path) -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages(DEMO_PACKAGES, Removal::Never)?;
    ntp_tools(&tools_dir(root))
}

fn rust_src() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
        .context(
            "the kernel programs are built with nightly and -Z build-std, which needs rust-src",
        )
}

fn bpf_linker() -> anyhow::Result<()> {
    cargo_install(
        Command::new("bpf-linker").arg("--version"),
        "bpf-linker",
        BPF_LINKER_VERSION,
        "links the kernel programs",
    )
}

/// `cargo install KRATE@VERSION --locked` unless `version_command` already prints `version`;
/// `what` says what the tool is for, in the error.
pub(crate) fn cargo_install(
    version_command: &mut Command,
    krate: &str,
    version: &str,
    what: &str,
) -> anyhow::Result<()> {
    if output(version_command)
        .unwrap_or_default()
        .contains(version)
    {
        return Ok(());
    }
    cmd(Command::new("cargo").args(["install", &format!("{krate}@{version}"), "--locked"]))
        .with_context(|| format!("cannot install {krate}, which {what}"))
}

fn ntp_tools(dir: &Path) -> anyhow::Result<()> {
    unpacked(
        dir,
        NTP_DEBS,
        &["usr/sbin/chronyd", "usr/sbin/ntpd", "usr/bin/ntpdig"],
    )?;
    // ntpsec's Python module looks for libntpc.so beside itself first.
    let root = dir.join("root");
    let lib = root.join("usr/lib/x86_64-linux-gnu/ntp/libntpc.so.1");
    let module = root.join("usr/lib/python3/dist-packages/ntp/libntpc.so");
    if lib.exists() && !module.exists() {
        fs::copy(&lib, &module).context("cannot place libntpc.so for ntpdig")?;
    }
    Ok(())
}

/// kubernetes-validate (from PyPI, with the schemas of every Kubernetes release inside), which
/// checks the DaemonSet, in a virtual environment of its own under `dir/venv`.
fn kubernetes_validate(dir: &Path) -> anyhow::Result<()> {
    let venv = dir.join("venv");
    let tool = venv.join("bin/kubernetes-validate");
    if tool.exists() {
        return Ok(());
    }
    cmd(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .context("cannot make a Python virtual environment for kubernetes-validate")?;
    cmd(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"),
    ]))
    .context("cannot install kubernetes-validate")
}

/// Prometheus and promtool, which the rules tests run (never as a service).
fn prometheus(dir: &Path) -> anyhow::Result<()> {
    unpacked(
        dir,
        &["prometheus"],
        &["usr/bin/promtool", "usr/bin/prometheus"],
    )
}

/// Download `debs` and unpack them under `dir/root` unless every one of `tools` is there:
/// never installed, so no service starts and no default configuration runs.
fn unpacked(dir: &Path, debs: &[&str], tools: &[&str]) -> anyhow::Result<()> {
    let root = dir.join("root");
    if tools.iter().all(|t| root.join(t).exists()) {
        return Ok(());
    }
    let downloads = dir.join("debs").join(debs[0]);
    fs::create_dir_all(&downloads)
        .with_context(|| format!("cannot create {}", downloads.display()))?;
    let mut args = vec!["download", "-q"];
    args.extend(debs);
    if apt_get(&args, Some(&downloads)).is_err() {
        // A fresh machine may have no package lists yet.
        apt_get(&["update", "-q"], None)?;
        apt_get(&args, Some(&downloads))?;
    }
    for entry in fs::read_dir(&downloads)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            cmd(Command::new("dpkg").arg("-x").arg(&path).arg(&root))?;
        }
    }
    for tool in tools {
        if !root.join(tool).exists() {
            bail!(
                "{tool} is missing from the unpacked packages in {}",
                root.display()
            );
        }
    }
    Ok(())
}
