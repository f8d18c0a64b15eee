//! The matrix's kernels: which (named once, `LTS` and `NEWEST`), and how each is fetched from
//! Debian's archive through a private apt configuration and unpacked.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
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
pub(super) const LTS: &str = "6.18.15+deb13";

pub(super) const NEWEST: &str = "7.3.4+deb13";

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
pub(super) const USERLAND_SUITE: &str = "bookworm";

/// The test binaries the guests run, by their target names in the ntptap-tests package.
pub(super) const GUEST_TESTS: &[&str] = &["verdict", "portable"];

/// A private apt configuration for one architecture: Debian's archive at the mirror the
/// machine uses, for the suites that architecture's guests need, with lists and cache under
/// `dir`. It never touches the machine's own.
pub(super) struct Apt {
    pub(super) dir: PathBuf,
    pub(super) arch: Arch,
    pub(super) updated: bool,
}

impl Apt {
    pub(super) fn new(dir: &Path, arch: Arch) -> Self {
        Apt {
            dir: dir.to_path_buf(),
            arch,
            updated: false,
        }
    }

    pub(super) fn options(&self) -> Vec<String> {
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
    pub(super) fn update(&mut self) -> anyhow::Result<()> {
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
    pub(super) fn cloud_kernel_packages(&mut self, kernel: &Kernel) -> anyhow::Result<Vec<String>> {
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
    pub(super) fn with_dependencies(&mut self, packages: &[&str]) -> anyhow::Result<Vec<String>> {
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

    pub(super) fn download(&self, packages: &[&str], into: &Path) -> anyhow::Result<Vec<PathBuf>> {
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
pub(super) fn debian_mirror() -> anyhow::Result<String> {
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
pub(super) struct Unpacked {
    pub(super) root: PathBuf,
    pub(super) release: String,
}

impl Unpacked {
    /// `boot/vmlinuz-RELEASE`, or from 7.x `usr/lib/modules/RELEASE/vmlinuz`.
    pub(super) fn image(&self) -> PathBuf {
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
pub(super) fn fetch_kernel(apt: &mut Apt, dir: &Path, kernel: &Kernel) -> anyhow::Result<Unpacked> {
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

pub(super) fn unpacked(root: &Path) -> Option<Unpacked> {
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
