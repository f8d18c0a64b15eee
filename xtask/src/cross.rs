//! The architectures ntptap is built for, and what building for one needs: the Rust target
//! (`rustup target add`) and, for arm64 on an amd64 machine, Debian's cross linker. The kernel
//! programs need nothing more: aya-build compiles them for `bpfel` with `bpf_target_arch` set
//! to the loader's architecture.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::run::cmd;

/// A CPU architecture, by Debian's name for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Arch {
    /// x86_64.
    Amd64,
    /// aarch64.
    Arm64,
}

impl Arch {
    /// The architecture xtask itself was built for: the machine's.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    /// Debian's name (`dpkg --print-architecture`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The GNU name, as in multiarch library directories (`/lib/aarch64-linux-gnu`).
    pub fn gnu(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The static (musl) target: the binary the package and the container image ship, and the
    /// one the kernel matrix's guests run.
    pub fn static_target(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The architecture of a Rust target triple, if it is one ntptap is built for.
    pub fn of_target(triple: &str) -> Option<Arch> {
        match triple.split('-').next()? {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

/// Targets ntptap is built for: both C libraries on both architectures.
pub const TARGETS: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-gnu",
    "aarch64-unknown-linux-musl",
];

/// Debian's cross toolchain for arm64: gcc as the linker (named for both arm64 targets in
/// `.cargo/config.toml`), and the arm64 C library the glibc target links against (only
/// recommended by gcc, and installs go without recommendations; musl brings its own).
const ARM64_CROSS_PACKAGES: &[&str] = &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// Make sure `triple` can be built here: the Rust standard library for it, and a linker.
pub fn prepare(triple: &str) -> anyhow::Result<()> {
    let (true, Some(arch)) = (TARGETS.contains(&triple), Arch::of_target(triple)) else {
        bail!(
            "ntptap is not built for {triple}; the targets are {}",
            TARGETS.join(", ")
        );
    };
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !installed.lines().any(|l| l == triple) {
        cmd(Command::new("rustup").args(["target", "add", triple]))
            .with_context(|| format!("cannot add the Rust target {triple}"))?;
    }
    if arch != Arch::host() {
        if arch != Arch::Arm64 {
            bail!("cross-building for {triple} is only set up from amd64 machines to arm64");
        }
        crate::apt::debian_packages_for(ARM64_CROSS_PACKAGES, "cross-building for arm64")?;
    }
    Ok(())
}

/// `cargo build --package ntptap --target TRIPLE` (release or debug); returns the binary.
pub fn build(root: &Path, triple: &str, release: bool) -> anyhow::Result<PathBuf> {
    prepare(triple)?;
    let mut args = vec!["build", "--package", "ntptap", "--target", triple];
    if release {
        args.push("--release");
    }
    crate::run::cargo(&args)?;
    Ok(root
        .join("target")
        .join(triple)
        .join(if release { "release" } else { "debug" })
        .join("ntptap"))
}

/// The static release binary for `arch`: what the package and the image ship.
pub fn static_build(root: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    build(root, arch.static_target(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_an_architecture_and_a_static_sibling() {
        for triple in TARGETS {
            let arch = Arch::of_target(triple).expect("an architecture");
            assert!(TARGETS.contains(&arch.static_target()), "{triple}");
            assert!(triple.starts_with(arch.gnu()), "{triple}");
        }
        assert_eq!(Arch::of_target("riscv64gc-unknown-linux-gnu"), None);
        assert_eq!(
            Arch::of_target("aarch64-unknown-linux-gnu"),
            Some(Arch::Arm64)
        );
    }
}
