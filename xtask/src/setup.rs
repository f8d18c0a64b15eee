//! Idempotent installation of what ntptap's build and tests need.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::cmd;

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

/// Install `packages` (never removing any), which `what` needs.
pub fn debian_packages_for(packages: &[&str], what: &str) -> anyhow::Result<()> {
    debian_packages(packages, Removal::Never).with_context(|| format!("{what} needs them"))
}

/// What the demo needs, and nothing more: it never removes an installed package.
pub fn demo(root: &Path) -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages(DEMO_PACKAGES, Removal::Never)?;
    ntp_tools(&tools_dir(root))
}

/// Whether an install may remove installed packages to make room.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// apt is asked not to (`--no-remove`): it stops instead, and so do we, saying why.
    Never,
    /// Allowed, after naming what would go.
    AllowedSayingSo,
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

fn missing_debian_packages(packages: &[&str]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .map(ToString::to_string)
        .collect()
}

pub(crate) fn apt_get(args: &[&str], dir: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    cmd(&mut command)
}

fn debian_packages(packages: &[&str], removal: Removal) -> anyhow::Result<()> {
    let missing = missing_debian_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        bail!(
            "Debian packages are missing ({}): run `cargo xtask setup` as root, or install them",
            missing.join(" ")
        );
    }
    apt_get(&["update", "-q"], None)?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().map(String::as_str));
    let removed = would_remove(&args);
    if removed.is_empty() {
        args.insert(1, "--no-remove");
    } else {
        match removal {
            Removal::Never => bail!(
                "installing {} would remove installed packages ({}); nothing was changed. \
                 Install them yourself, or remove those first",
                missing.join(" "),
                removed.join(" ")
            ),
            Removal::AllowedSayingSo => eprintln!(
                "xtask: installing {} for the kernel matrix replaces {} (apt's choice: \
                 Debian's QEMU conflicts with them)",
                missing.join(" "),
                removed.join(" ")
            ),
        }
    }
    // No service a package brings (nftables' loads a ruleset) may start during the install:
    // policy-rc.d says no to every start, and goes once the install is over.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        use std::os::unix::fs::PermissionsExt as _;
        fs::write(policy, "#!/bin/sh\nexit 101\n").context("cannot write policy-rc.d")?;
        fs::set_permissions(policy, fs::Permissions::from_mode(0o755))?;
    }
    let installed = apt_get(&args, None);
    if ours {
        let _ = fs::remove_file(policy);
    }
    installed
}

/// The packages `apt-get ARGS` would remove, from a simulated run.
fn would_remove(args: &[&str]) -> Vec<String> {
    let simulated = output(
        Command::new("apt-get")
            .args(args)
            .arg("--simulate")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .unwrap_or_default();
    // "Remv qemu-utils [1:10.0.2+...]"
    simulated
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn nix_is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
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
