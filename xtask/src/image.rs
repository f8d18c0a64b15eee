//! `cargo xtask image`: the container image. ntptap built for x86_64-unknown-linux-musl (a
//! static binary: the image holds nothing else), then `podman build` of
//! dist/container/Containerfile, FROM scratch, tagged ntptap:VERSION. No base image is pulled.

use std::{fs, path::Path, process::Command};

use anyhow::Context as _;

use crate::cmd;

/// The static target.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Build ntptap for the static target; the binary is target/TARGET/release/ntptap. The
/// package ships the same binary.
pub fn static_build() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !installed.lines().any(|l| l == TARGET) {
        cmd(Command::new("rustup").args(["target", "add", TARGET]))
            .context("cannot add the musl target for a static binary")?;
    }
    crate::cargo(&[
        "build",
        "--release",
        "--package",
        "ntptap",
        "--target",
        TARGET,
    ])
}

/// Build the image; returns its tag.
pub fn run(root: &Path) -> anyhow::Result<String> {
    static_build()?;
    let context = root.join("target/image");
    fs::create_dir_all(&context)?;
    let binary = context.join("ntptap");
    fs::copy(
        root.join("target").join(TARGET).join("release/ntptap"),
        &binary,
    )
    .context("cannot copy the static binary into the image context")?;
    let tag = format!("ntptap:{}", env!("CARGO_PKG_VERSION"));
    cmd(Command::new("podman")
        .args(["build", "--pull=never", "--tag", &tag, "--file"])
        .arg(root.join("dist/container/Containerfile"))
        .arg(&context))
    .context("cannot build the image with podman")?;
    eprintln!("xtask: built image {tag}");
    Ok(tag)
}
