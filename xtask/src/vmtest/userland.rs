//! What a guest runs: ntptap from the Debian package, the static test binaries, and busybox,
//! ip, ethtool and chronyd with their libraries (the machine's own, or Debian's for arm64).

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cross::Arch, run::cmd};

use super::kernels::{Apt, GUEST_TESTS};

/// What a guest of one architecture runs: ntptap from the Debian package, the test binaries
/// (static and optimised, like it), and the programs the tests call.
pub(super) struct Programs {
    pub(super) ntptap: PathBuf,
    pub(super) tests: Vec<(String, PathBuf)>,
    pub(super) userland: Userland,
}

/// The ntptap the Debian package for `arch` ships (from `debs`, or built), unpacked from it:
/// the guests test the package's own binary.
pub(super) fn packaged_binary(
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

pub(super) fn which(program: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// The guest test binaries for `arch`, static and optimised like the ntptap they run (they
/// share its build), found through cargo's JSON messages.
pub(super) fn test_binaries(arch: Arch) -> anyhow::Result<Vec<(String, PathBuf)>> {
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

/// Where a guest's programs and their libraries come from: the machine's own for a guest of
/// its architecture, else Debian's packages for the guest's, unpacked (never installed) under
/// target/vmtest/userland-ARCH.
pub(super) struct Userland {
    /// What `/` is for the libraries.
    pub(super) sysroot: PathBuf,
    /// Multiarch library directory name (`aarch64-linux-gnu`).
    pub(super) multiarch: String,
    pub(super) busybox: PathBuf,
    pub(super) ip: PathBuf,
    pub(super) ethtool: PathBuf,
    pub(super) chronyd: PathBuf,
}

/// The packages a guest of another architecture needs, besides their libraries.
pub(super) const USERLAND_PACKAGES: &[&str] = &["busybox-static", "iproute2", "ethtool", "chrony"];

pub(super) fn userland(root: &Path, dir: &Path, apt: &mut Apt) -> anyhow::Result<Userland> {
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
    pub(super) fn resolve(&self, guest: &Path) -> anyhow::Result<PathBuf> {
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
    pub(super) fn library(&self, soname: &str) -> Option<PathBuf> {
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
    pub(super) fn install(&self, staging: &Path, program: &Path, dest: &str) -> anyhow::Result<()> {
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
pub(super) fn place(staging: &Path, file: &Path, guest: &Path) -> anyhow::Result<()> {
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
pub(super) fn elf_dependencies(elf: &Path) -> anyhow::Result<(Option<String>, Vec<String>)> {
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
