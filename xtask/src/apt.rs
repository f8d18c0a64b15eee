//! Debian packages, installed when missing (never a service started, never a package removed
//! without saying which).

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::run::cmd;

/// Whether an install may remove installed packages to make room.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// apt is asked not to (`--no-remove`): it stops instead, and so do we, saying why.
    Never,
    /// Allowed, after naming what would go.
    AllowedSayingSo,
}

/// What `command` printed, if it succeeded.
pub fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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

/// `apt-get ARGS` (in `dir`), without questions.
pub fn apt_get(args: &[&str], dir: Option<&Path>) -> anyhow::Result<()> {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    cmd(&mut command)
}

/// Install the `packages` that are missing.
pub fn debian_packages(packages: &[&str], removal: Removal) -> anyhow::Result<()> {
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

/// Install `packages` (never removing any), which `what` needs.
pub fn debian_packages_for(packages: &[&str], what: &str) -> anyhow::Result<()> {
    debian_packages(packages, Removal::Never).with_context(|| format!("{what} needs them"))
}
