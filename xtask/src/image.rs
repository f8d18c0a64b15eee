//! `cargo xtask image`: the container image. ntptap built for the machine's musl target (a
//! static binary: the image holds nothing else), then `podman build` of
//! dist/container/Containerfile, FROM scratch, tagged ntptap:VERSION. No base image is pulled.

use std::{fs, path::Path, process::Command};

use anyhow::Context as _;

use crate::run::cmd;

/// Build the image; returns its tag.
pub fn run(root: &Path) -> anyhow::Result<String> {
    let built = crate::cross::static_build(root, crate::cross::Arch::host())?;
    let context = root.join("target/image");
    fs::create_dir_all(&context)?;
    let binary = context.join("ntptap");
    fs::copy(&built, &binary).context("cannot copy the static binary into the image context")?;
    let tag = format!("ntptap:{}", env!("CARGO_PKG_VERSION"));
    cmd(Command::new("podman")
        .args(["build", "--pull=never", "--tag", &tag, "--file"])
        .arg(root.join("dist/container/Containerfile"))
        .arg(&context))
    .context("cannot build the image with podman")?;
    eprintln!("xtask: built image {tag}");
    Ok(tag)
}
