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
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::cross::Arch;

mod boot;
mod initramfs;
mod kernels;
mod userland;

pub use self::kernels::{KERNELS, Kernel};
use self::{
    boot::{Outcome, boot, qemu_binary, report},
    initramfs::build_initramfs,
    kernels::{Apt, Unpacked, fetch_kernel, unpacked},
    userland::{Programs, packaged_binary, test_binaries, userland, which},
};

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
