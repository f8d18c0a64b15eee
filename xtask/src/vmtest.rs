//! The kernel matrix: boot Debian's cloud kernels in QEMU and run the kernel tests inside,
//! on amd64 (5.10, 6.1, 6.12, the 6.18 LTS and the newest 7.x) and arm64 (6.1 and the newest
//! 7.x); the versions are named once, in `KERNELS`.
//!
//! Each kernel comes from Debian's archive as a package, through a private apt configuration
//! per architecture (its own sources list, lists and cache under target/vmtest/apt-ARCH) that
//! names the mirror the machine already uses. The guest is an initramfs: busybox, `ip` and
//! `ethtool` with their libraries, chronyd, the kernel's veth and TC modules, ntptap as the
//! Debian package for that architecture ships it, and two static test binaries: the
//! BPF_PROG_TEST_RUN verdict tests and the portable captures (a veth pair in two namespaces,
//! NTP exchanges both ways, the file checked against what was sent, a chronyd client and
//! server, process attribution, drop reasons and in-host time). An amd64 guest takes the
//! machine's own programs; an arm64 guest takes Debian bookworm's arm64 packages, unpacked
//! (never installed) under target/vmtest/userland-arm64, each library found by its ELF
//! `DT_NEEDED` names. QEMU runs with software emulation (TCG): this machine kind's /dev/kvm
//! cannot boot ordinary kernels, an arm64 guest needs emulation anyway, and the verifier's
//! answers do not depend on the accelerator.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cross::Arch, run::cmd};

/// A kernel of the matrix: what it is called here, the Debian suite it comes from, the
/// version (`None`: whatever `linux-image-cloud-ARCH` names there today), and its architecture.
pub struct Kernel {
    pub name: &'static str,
    pub suite: &'static str,
    pub version: Option<&'static str>,
    pub arch: Arch,
}

/// The newest kernels, by version: moving the matrix to the next one is a change of this line
/// (Debian's `linux-image-VERSION-cloud-ARCH` in trixie-backports).
const LTS: &str = "6.18.15+deb13";
const NEWEST: &str = "7.3.4+deb13";

/// The kernels production hosts run, besides the host's own (which runs the whole suite):
/// Debian's cloud kernels from 5.10 to the newest, the 6.18 LTS among them; on arm64 the
/// oldest and the newest.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        suite: "bullseye",
        version: None,
        arch: Arch::Amd64,
    },
    Kernel {
        name: "6.1",
        suite: "bookworm",
        version: None,
        arch: Arch::Amd64,
    },
    Kernel {
        name: "6.12",
        suite: "bookworm-backports",
        version: None,
        arch: Arch::Amd64,
    },
    Kernel {
        name: "6.18",
        suite: "trixie-backports",
        version: Some(LTS),
        arch: Arch::Amd64,
    },
    Kernel {
        name: "7.x",
        suite: "trixie-backports",
        version: Some(NEWEST),
        arch: Arch::Amd64,
    },
    Kernel {
        name: "6.1-arm64",
        suite: "bookworm",
        version: None,
        arch: Arch::Arm64,
    },
    Kernel {
        name: "7.x-arm64",
        suite: "trixie-backports",
        version: Some(NEWEST),
        arch: Arch::Arm64,
    },
];

/// The Debian release whose programs (busybox, ip, ethtool, chronyd and their libraries) a
/// guest of another architecture than the machine's runs: the one the machine's own are from.
const USERLAND_SUITE: &str = "bookworm";

/// The test binaries the guests run, by their target names in the ntptap-tests package.
const GUEST_TESTS: &[&str] = &["verdict", "portable"];
/// Kernel modules the tests need that Debian's cloud kernels build as modules.
const MODULES: &[&str] = &["veth", "sch_ingress", "cls_bpf"];
/// Busybox applets the init script uses.
const APPLETS: &[&str] = &[
    "sh", "mount", "mkdir", "insmod", "poweroff", "cat", "echo", "uname", "sleep",
];
/// Longest a guest may run (boot, tests, power-off) under software emulation.
const GUEST_TIMEOUT: Duration = Duration::from_mins(10);

/// What one guest reported.
struct Outcome {
    kernel: &'static str,
    release: String,
    results: Vec<(String, i32)>,
    notes: BTreeSet<String>,
    seconds: f64,
    log: PathBuf,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.results.len() == GUEST_TESTS.len() && self.results.iter().all(|(_, rc)| *rc == 0)
    }
}

/// What a guest of one architecture runs: ntptap from the Debian package, the test binaries
/// (static and optimised, like it), and the programs the tests call.
struct Programs {
    ntptap: PathBuf,
    tests: Vec<(String, PathBuf)>,
    userland: Userland,
}

/// Fetch the kernels (once), build ntptap and the guest tests for each architecture, build an
/// initramfs per kernel, boot them all, and fail unless every test passed on every kernel.
pub fn run(root: &Path, only: &[String]) -> anyhow::Result<()> {
    boot_all(root, prepare(root, only, &[])?)
}

/// The guests, ready to boot: each kernel with its initramfs.
pub struct Prepared(Vec<(&'static Kernel, Unpacked, PathBuf)>);

/// Everything but the boots: kernels and userland fetched, programs built, images made. The
/// guests run ntptap from the Debian packages in `debs` (by architecture), or from packages
/// built here for the architectures `debs` leaves out.
pub fn prepare(root: &Path, only: &[String], debs: &[(Arch, &Path)]) -> anyhow::Result<Prepared> {
    let dir = root.join("target/vmtest");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kernels: Vec<&'static Kernel> = KERNELS
        .iter()
        .filter(|k| only.is_empty() || only.iter().any(|o| o == k.name))
        .collect();
    if kernels.is_empty() {
        let known: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
        bail!("no such kernel in the matrix; it has {}", known.join(", "));
    }
    let mut arches: Vec<Arch> = kernels.iter().map(|k| k.arch).collect();
    arches.dedup();
    for tool in ["busybox", "cpio", "depmod", "modprobe", "xz", "readelf"]
        .into_iter()
        .chain(arches.iter().map(|a| qemu_binary(*a)))
    {
        if which(tool).is_none() {
            bail!("{tool} is missing: run `cargo xtask setup` as root");
        }
    }

    let mut programs = Vec::new();
    for arch in &arches {
        let mut apt = Apt::new(&dir.join(format!("apt-{}", arch.debian())), *arch);
        let userland = userland(root, &dir, &mut apt)?;
        programs.push(Programs {
            ntptap: packaged_binary(root, &dir, *arch, debs)?,
            tests: test_binaries(*arch)?,
            userland,
        });
        for kernel in kernels.iter().filter(|k| k.arch == *arch) {
            fetch_kernel(&mut apt, &dir, kernel)?;
        }
    }
    let mut images = Vec::new();
    for kernel in &kernels {
        let unpacked = unpacked(&dir.join("kernels").join(kernel.name))
            .context("the unpacked kernel moved")?;
        let guest = &programs[arches
            .iter()
            .position(|a| *a == kernel.arch)
            .expect("built")];
        let initramfs = build_initramfs(&dir, kernel, &unpacked, guest)?;
        images.push((*kernel, unpacked, initramfs));
    }
    Ok(Prepared(images))
}

/// Boot every prepared guest and report.
pub fn boot_all(root: &Path, Prepared(images): Prepared) -> anyhow::Result<()> {
    let dir = root.join("target/vmtest");
    // All guests at once: each is one emulated CPU, and they have nothing to share.
    let outcomes: Vec<anyhow::Result<Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = images
            .iter()
            .map(|(kernel, unpacked, initramfs)| {
                let log = dir.join(format!("{}.log", kernel.name));
                scope.spawn(move || boot(kernel, unpacked, initramfs, &log))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a guest thread panicked"))
            .collect()
    });
    report(outcomes, &images)
}

/// Print what each guest reported; fail unless every test passed on every kernel.
fn report(
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

/// The ntptap the Debian package for `arch` ships (from `debs`, or built), unpacked from it:
/// the guests test the package's own binary.
fn packaged_binary(
    root: &Path,
    dir: &Path,
    arch: Arch,
    debs: &[(Arch, &Path)],
) -> anyhow::Result<PathBuf> {
    let deb = match debs.iter().find(|(a, _)| *a == arch) {
        Some((_, deb)) => deb.to_path_buf(),
        None => crate::package::run(root, arch)?,
    };
    let unpacked = dir.join(format!("package-{}", arch.debian()));
    let _ = fs::remove_dir_all(&unpacked);
    cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&unpacked))?;
    Ok(unpacked.join("usr/bin/ntptap"))
}

fn which(program: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// The guest test binaries for `arch`, static and optimised like the ntptap they run (they
/// share its build), found through cargo's JSON messages.
fn test_binaries(arch: Arch) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args([
        "test",
        "--package",
        "ntptap-tests",
        "--release",
        "--target",
        arch.static_target(),
        "--no-run",
        "--message-format=json",
    ]);
    for test in GUEST_TESTS {
        command.args(["--test", test]);
    }
    let out = command
        .stderr(crate::background::stderr()?)
        .output()
        .context("cannot run cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the guest tests for {} failed", arch.debian());
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = message["target"]["name"].as_str().unwrap_or_default();
        if let (Some(exe), true) = (message["executable"].as_str(), GUEST_TESTS.contains(&name)) {
            found.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    if found.len() != GUEST_TESTS.len() {
        bail!("cargo built {found:?}, not every one of {GUEST_TESTS:?}");
    }
    Ok(found)
}

/// A private apt configuration for one architecture: Debian's archive at the mirror the
/// machine uses, for the suites that architecture's guests need, with lists and cache under
/// `dir`. It never touches the machine's own.
struct Apt {
    dir: PathBuf,
    arch: Arch,
    updated: bool,
}

impl Apt {
    fn new(dir: &Path, arch: Arch) -> Self {
        Apt {
            dir: dir.to_path_buf(),
            arch,
            updated: false,
        }
    }

    fn options(&self) -> Vec<String> {
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        vec![
            format!("-oDir::Etc::SourceList={}", d("sources.list")),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            "-oDir::Etc::Preferences=/dev/null".into(),
            "-oDir::Etc::PreferencesParts=/dev/null".into(),
            format!("-oDir::State::Lists={}", d("lists")),
            format!("-oDir::Cache={}", d("cache")),
            // Nothing counts as installed: dependencies are the archive's, not the machine's.
            "-oDir::State::status=/dev/null".into(),
            format!("-oAPT::Architecture={}", self.arch.debian()),
            format!("-oAPT::Architectures::={}", self.arch.debian()),
            // Downloads land in our own directory, which apt's sandbox user may not write.
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    /// Write the sources list and download the package lists, once per run.
    fn update(&mut self) -> anyhow::Result<()> {
        if self.updated {
            return Ok(());
        }
        let mirror = debian_mirror()?;
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(self.dir.join(sub))?;
        }
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        let mut suites: Vec<&str> = KERNELS
            .iter()
            .filter(|k| k.arch == self.arch)
            .map(|k| k.suite)
            .collect();
        if self.arch != Arch::host() {
            suites.push(USERLAND_SUITE);
        }
        suites.sort_unstable();
        suites.dedup();
        let mut sources = String::new();
        for suite in suites {
            let _ = writeln!(sources, "deb [signed-by={keyring}] {mirror} {suite} main");
        }
        fs::write(self.dir.join("sources.list"), sources)?;
        cmd(Command::new("apt-get")
            .args(self.options())
            .args(["update", "-q"]))
        .context("cannot download the package lists for the kernel matrix")?;
        self.updated = true;
        Ok(())
    }

    /// The packages that hold `kernel`'s image and modules: the versioned
    /// `linux-image-VERSION-cloud-ARCH` (for a kernel without a version, the one
    /// `linux-image-cloud-ARCH` names in its suite); from 7.x that is a metapackage, and the
    /// image and modules are in `linux-binary-VERSION-…` and `linux-modules-VERSION-…`.
    fn cloud_kernel_packages(&mut self, kernel: &Kernel) -> anyhow::Result<Vec<String>> {
        self.update()?;
        let arch = self.arch.debian();
        let depends = |package: &str| -> anyhow::Result<Vec<String>> {
            let out = Command::new("apt-cache")
                .args(self.options())
                .args(["depends", package])
                .output()
                .context("cannot run apt-cache")?;
            Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends: "))
                .map(|d| d.split(':').next().unwrap_or(d).to_owned())
                .collect())
        };
        let image = match kernel.version {
            Some(version) => format!("linux-image-{version}-cloud-{arch}/{}", kernel.suite),
            None => depends(&format!("linux-image-cloud-{arch}/{}", kernel.suite))?
                .into_iter()
                .find(|d| d.starts_with("linux-image-"))
                .with_context(|| format!("no {arch} cloud kernel image in {}", kernel.suite))?,
        };
        let parts: Vec<String> = depends(&image)?
            .into_iter()
            .filter(|d| d.starts_with("linux-binary-") || d.starts_with("linux-modules-"))
            .collect();
        let image = image.split('/').next().unwrap_or(&image).to_owned();
        if parts.is_empty() {
            return Ok(vec![image]);
        }
        Ok(parts)
    }

    /// `packages` and every package they depend on, directly or not: their libraries, and
    /// what their maintainer scripts use (unpacked all the same; the guest takes only the
    /// libraries its programs load).
    fn with_dependencies(&mut self, packages: &[&str]) -> anyhow::Result<Vec<String>> {
        self.update()?;
        let mut all: BTreeSet<String> = packages.iter().map(ToString::to_string).collect();
        let mut next: Vec<String> = all.iter().cloned().collect();
        while !next.is_empty() {
            let out = Command::new("apt-cache")
                .args(self.options())
                .args([
                    "depends",
                    "--no-recommends",
                    "--no-suggests",
                    "--no-conflicts",
                ])
                .args(["--no-breaks", "--no-replaces", "--no-enhances"])
                .args(&next)
                .output()
                .context("cannot run apt-cache")?;
            if !out.status.success() {
                bail!(
                    "apt-cache depends {next:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            next.clear();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                // "  Depends: libc6", " |Depends: libfoo", "  PreDepends: libc6",
                // "  Depends: <virtual>" (provided by another, which is listed too).
                let Some((kind, name)) = line.trim().split_once(": ") else {
                    continue;
                };
                let name = name.split(':').next().unwrap_or(name);
                if kind.trim_start_matches('|').ends_with("Depends")
                    && !name.starts_with('<')
                    && all.insert(name.to_owned())
                {
                    next.push(name.to_owned());
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    fn download(&self, packages: &[&str], into: &Path) -> anyhow::Result<Vec<PathBuf>> {
        fs::create_dir_all(into)?;
        cmd(Command::new("apt-get")
            .args(self.options())
            .args(["download", "-q"])
            .args(packages)
            .current_dir(into))?;
        packages
            .iter()
            .map(|package| {
                fs::read_dir(into)?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&format!("{package}_")))
                            && p.extension().is_some_and(|e| e == "deb")
                    })
                    .with_context(|| format!("apt-get download {package} left no .deb"))
            })
            .collect()
    }
}

/// The Debian mirror the machine's own apt configuration uses.
fn debian_mirror() -> anyhow::Result<String> {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let one_line = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    deb822
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|uris| uris.split_whitespace().next())
        .or_else(|| {
            one_line
                .lines()
                .filter(|l| l.starts_with("deb "))
                .find_map(|l| l.split_whitespace().find(|w| w.contains("://")))
        })
        .map(|u| u.trim_end_matches('/').to_owned())
        .context("cannot find the machine's Debian mirror in /etc/apt/sources.list(.d)")
}

/// A kernel unpacked: its image, and a module tree depmod has indexed.
struct Unpacked {
    root: PathBuf,
    release: String,
}

impl Unpacked {
    /// `boot/vmlinuz-RELEASE`, or from 7.x `usr/lib/modules/RELEASE/vmlinuz`.
    fn image(&self) -> PathBuf {
        let modules = self
            .root
            .join(format!("usr/lib/modules/{}/vmlinuz", self.release));
        if modules.is_file() {
            modules
        } else {
            self.root.join(format!("boot/vmlinuz-{}", self.release))
        }
    }
}

/// Download and unpack `kernel` unless an earlier run did.
fn fetch_kernel(apt: &mut Apt, dir: &Path, kernel: &Kernel) -> anyhow::Result<Unpacked> {
    let root = dir.join("kernels").join(kernel.name);
    if let Some(unpacked) = unpacked(&root) {
        return Ok(unpacked);
    }
    let packages = apt.cloud_kernel_packages(kernel)?;
    let names: Vec<&str> = packages.iter().map(String::as_str).collect();
    let debs = apt.download(&names, &dir.join("debs"))?;
    let partial = dir.join("kernels").join(format!("{}.partial", kernel.name));
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    for deb in &debs {
        cmd(Command::new("dpkg").arg("-x").arg(deb).arg(&partial))?;
    }
    // Modules under usr/lib/modules (7.x): depmod and modprobe (Debian 12's kmod) look in
    // lib/modules of the tree they are given.
    if !partial.join("lib").exists() && partial.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", partial.join("lib"))?;
    }
    let found = unpacked(&partial).with_context(|| format!("{packages:?} hold no kernel image"))?;
    cmd(Command::new("depmod")
        .arg("-b")
        .arg(&partial)
        .arg(&found.release))?;
    fs::rename(&partial, &root)?;
    unpacked(&root).context("the unpacked kernel moved")
}

fn unpacked(root: &Path) -> Option<Unpacked> {
    let in_boot = || {
        fs::read_dir(root.join("boot"))
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("vmlinuz-")
                    .map(str::to_owned)
            })
    };
    let in_modules = || {
        fs::read_dir(root.join("usr/lib/modules"))
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().join("vmlinuz").is_file())
            .and_then(|e| e.file_name().to_str().map(str::to_owned))
    };
    let release = in_boot().or_else(in_modules)?;
    Some(Unpacked {
        root: root.to_path_buf(),
        release,
    })
}

/// The guest's init: mount what the tests need, load the modules, run each test binary and
/// report its exit code on the console, power off.
fn init_script() -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         mount -t tmpfs tmp /tmp\n\
         mount -t tmpfs run /run\n\
         mount -t bpf bpf /sys/fs/bpf\n\
         mkdir -p /run/netns\n\
         for m in $(cat /modules/order); do insmod /modules/$m || echo \"NTPTAP-VM-MODULE-FAILED $m\"; done\n\
         # A distribution-like locked-memory limit: on 5.10, where BPF maps count against it,\n\
         # ntptap must raise it itself.\n\
         ulimit -l 64\n\
         echo \"NTPTAP-VM-KERNEL $(uname -r)\"\n\
         export NTPTAP_BIN=/bin/ntptap NTPTAP_TOOLS=/tools RUST_BACKTRACE=1\n",
    );
    for test in GUEST_TESTS {
        let _ = writeln!(
            s,
            "/bin/ntptap-test-{test} --test-threads=1 --nocapture; echo \"NTPTAP-VM-RESULT {test} $?\""
        );
    }
    s.push_str("poweroff -f\n");
    s
}

/// Where a guest's programs and their libraries come from: the machine's own for a guest of
/// its architecture, else Debian's packages for the guest's, unpacked (never installed) under
/// target/vmtest/userland-ARCH.
struct Userland {
    /// What `/` is for the libraries.
    sysroot: PathBuf,
    /// Multiarch library directory name (`aarch64-linux-gnu`).
    multiarch: String,
    busybox: PathBuf,
    ip: PathBuf,
    ethtool: PathBuf,
    chronyd: PathBuf,
}

/// The packages a guest of another architecture needs, besides their libraries.
const USERLAND_PACKAGES: &[&str] = &["busybox-static", "iproute2", "ethtool", "chrony"];

fn userland(root: &Path, dir: &Path, apt: &mut Apt) -> anyhow::Result<Userland> {
    let arch = apt.arch;
    let multiarch = format!("{}-linux-gnu", arch.gnu());
    if arch == Arch::host() {
        let host = |program| which(program).with_context(|| format!("{program} is missing"));
        return Ok(Userland {
            sysroot: PathBuf::from("/"),
            multiarch,
            busybox: host("busybox")?,
            ip: host("ip")?,
            ethtool: host("ethtool")?,
            // chronyd, unpacked by `cargo xtask setup`.
            chronyd: crate::setup::tools_dir(root).join("root/usr/sbin/chronyd"),
        });
    }
    let sysroot = dir.join(format!("userland-{}", arch.debian()));
    // What an earlier run unpacked, if it was for the same list.
    let made_for = sysroot.join(".packages");
    let wanted = USERLAND_PACKAGES.join(" ");
    if fs::read_to_string(&made_for).ok().as_deref() != Some(wanted.as_str()) {
        let _ = fs::remove_dir_all(&sysroot);
        let packages = apt.with_dependencies(USERLAND_PACKAGES)?;
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        let debs = apt.download(&names, &dir.join(format!("debs-{}", arch.debian())))?;
        let partial = sysroot.with_extension("partial");
        let _ = fs::remove_dir_all(&partial);
        for deb in debs {
            cmd(Command::new("dpkg").arg("-x").arg(deb).arg(&partial))?;
        }
        fs::write(partial.join(".packages"), &wanted)?;
        fs::rename(&partial, &sysroot)?;
    }
    Ok(Userland {
        busybox: sysroot.join("bin/busybox"),
        ip: sysroot.join("bin/ip"),
        ethtool: sysroot.join("sbin/ethtool"),
        chronyd: sysroot.join("usr/sbin/chronyd"),
        sysroot,
        multiarch,
    })
}

impl Userland {
    /// `guest` (an absolute path in the guest's tree) in the sysroot, symbolic links followed
    /// inside the sysroot (an absolute link names a path in the guest's tree, not ours).
    fn resolve(&self, guest: &Path) -> anyhow::Result<PathBuf> {
        let mut path = guest.to_path_buf();
        for _ in 0..16 {
            let here = self.sysroot.join(path.strip_prefix("/").unwrap_or(&path));
            let meta = fs::symlink_metadata(&here).with_context(|| {
                format!("{} is not in {}", path.display(), self.sysroot.display())
            })?;
            if !meta.file_type().is_symlink() {
                return Ok(here);
            }
            let target = fs::read_link(&here)?;
            path = if target.is_absolute() {
                target
            } else {
                path.parent().unwrap_or(Path::new("/")).join(target)
            };
        }
        bail!("too many symbolic links from {}", guest.display())
    }

    /// Where the guest's dynamic loader finds `soname`: the first library directory of the
    /// sysroot that has it, as a path in the guest's tree.
    fn library(&self, soname: &str) -> Option<PathBuf> {
        let m = &self.multiarch;
        [
            format!("/lib/{m}"),
            format!("/usr/lib/{m}"),
            "/lib".into(),
            "/usr/lib".into(),
        ]
        .into_iter()
        .map(|d| Path::new(&d).join(soname))
        .find(|p| self.resolve(p).is_ok())
    }

    /// Copy `program` to `dest` (inside `staging`) with its dynamic loader and every library
    /// it loads, directly or not, each at the path the guest's loader looks for it.
    fn install(&self, staging: &Path, program: &Path, dest: &str) -> anyhow::Result<()> {
        place(staging, program, Path::new(dest))?;
        let mut seen = BTreeSet::new();
        let mut queue = vec![program.to_path_buf()];
        while let Some(elf) = queue.pop() {
            let (interpreter, needed) = elf_dependencies(&elf)?;
            for (guest, soname) in interpreter
                .map(|i| (Some(PathBuf::from(&i)), i))
                .into_iter()
                .chain(needed.into_iter().map(|n| (self.library(&n), n)))
            {
                if !seen.insert(soname.clone()) {
                    continue;
                }
                let guest = guest.with_context(|| {
                    format!(
                        "{} needs {soname}, which no library directory of {} has",
                        elf.display(),
                        self.sysroot.display()
                    )
                })?;
                let file = self.resolve(&guest)?;
                place(staging, &file, &guest)?;
                queue.push(file);
            }
        }
        Ok(())
    }
}

/// Copy `file` to `guest` (an absolute path) inside `staging`, unless it is there.
fn place(staging: &Path, file: &Path, guest: &Path) -> anyhow::Result<()> {
    let into = staging.join(guest.strip_prefix("/").unwrap_or(guest));
    if into.exists() {
        return Ok(());
    }
    fs::create_dir_all(into.parent().expect("a path in the staging tree"))?;
    fs::copy(file, &into)
        .with_context(|| format!("cannot copy {} into the guest", file.display()))?;
    Ok(())
}

/// An ELF file's program interpreter and the libraries it names (`DT_NEEDED`), read by
/// binutils' readelf, which reads every architecture's ELF.
fn elf_dependencies(elf: &Path) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let out = Command::new("readelf")
        .args(["-W", "-l", "-d"])
        .arg(elf)
        .output()
        .context("cannot run readelf")?;
    if !out.status.success() {
        bail!(
            "readelf cannot read {}: {}",
            elf.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let bracketed = |line: &str, after: &str| {
        let rest = &line[line.find(after)? + after.len()..];
        Some(rest[..rest.find(']')?].to_owned())
    };
    let interpreter = text
        .lines()
        .find_map(|l| bracketed(l, "[Requesting program interpreter: "));
    let needed = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| bracketed(l, "Shared library: ["))
        .collect();
    Ok((interpreter, needed))
}

fn build_initramfs(
    dir: &Path,
    kernel: &Kernel,
    unpacked: &Unpacked,
    programs: &Programs,
) -> anyhow::Result<PathBuf> {
    let staging = dir.join(format!("{}.root", kernel.name));
    let _ = fs::remove_dir_all(&staging);
    for sub in ["bin", "sbin", "proc", "sys", "dev", "tmp", "run", "modules"] {
        fs::create_dir_all(staging.join(sub))?;
    }
    let userland = &programs.userland;
    fs::copy(&userland.busybox, staging.join("bin/busybox"))
        .with_context(|| format!("cannot copy {}", userland.busybox.display()))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", staging.join("bin").join(applet))?;
    }
    userland.install(&staging, &userland.ip, "/bin/ip")?;
    userland.install(&staging, &userland.ethtool, "/bin/ethtool")?;
    // chronyd, for the test with real NTP daemons; it runs as root (-u root), which needs a
    // passwd entry.
    userland.install(&staging, &userland.chronyd, "/tools/root/usr/sbin/chronyd")?;
    fs::create_dir_all(staging.join("etc"))?;
    fs::write(staging.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs::write(staging.join("etc/group"), "root:x:0:\n")?;
    // Static binaries: they need no library.
    place(&staging, &programs.ntptap, Path::new("/bin/ntptap"))?;
    for (name, exe) in &programs.tests {
        place(
            &staging,
            exe,
            Path::new(&format!("/bin/ntptap-test-{name}")),
        )?;
    }

    let mut order = Vec::new();
    for module in MODULES {
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(&unpacked.root)
            .args(["-S", &unpacked.release, "--show-depends", module])
            .output()
            .context("cannot run modprobe")?;
        if !out.status.success() {
            bail!(
                "{} has no module {module}: {}",
                unpacked.release,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "insmod /path/to/name.ko[.xz]" ("builtin name" needs nothing).
            let Some(path) = line
                .strip_prefix("insmod ")
                .and_then(|r| r.split_whitespace().next())
            else {
                continue;
            };
            let path = Path::new(path);
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let name = file.trim_end_matches(".xz").to_owned();
            if order.contains(&name) {
                continue;
            }
            let into = staging.join("modules").join(&name);
            if path.extension().is_some_and(|e| e == "xz") {
                let out = Command::new("xz").arg("-dc").arg(path).output()?;
                if !out.status.success() {
                    bail!("cannot decompress {}", path.display());
                }
                fs::write(&into, out.stdout)?;
            } else {
                fs::copy(path, &into)?;
            }
            order.push(name);
        }
    }
    fs::write(staging.join("modules/order"), order.join("\n") + "\n")?;
    let init = staging.join("init");
    fs::write(&init, init_script())?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    let image = dir.join(format!("{}.cpio", kernel.name));
    let file = fs::File::create(&image)?;
    let status = Command::new("sh")
        .args(["-c", "find . -print0 | cpio --null -o -H newc --quiet"])
        .current_dir(&staging)
        .stdout(file)
        .status()
        .context("cannot run cpio")?;
    if !status.success() {
        bail!("cpio failed building {}", image.display());
    }
    Ok(image)
}

/// Boots tried when a guest fails before its tests start. Before the guests ran without
/// CMPXCHG16B (see `run_guest`), 6.12 faulted in six of its ten boots here, some before the
/// tests began; none of the boots since has. The retry stays as a safety net for the emulator,
/// and never covers a failure once the tests have begun.
const BOOT_ATTEMPTS: u32 = 3;
/// Longest from start to the init script's first line.
const BOOT_TIMEOUT: Duration = Duration::from_mins(2);
/// What the init script prints first.
const STARTED: &str = "NTPTAP-VM-KERNEL ";

enum Guest {
    /// It powered off (the log tells how the tests went).
    Finished,
    /// It never reached the tests: why.
    NoBoot(String),
}

/// The QEMU program for `arch`'s guests.
fn qemu_binary(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "qemu-system-x86_64",
        Arch::Arm64 => "qemu-system-aarch64",
    }
}

/// Run QEMU once with its console in `log`.
fn run_guest(
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
fn boot(
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
