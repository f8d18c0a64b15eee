//! Running commands: each shown before it runs (or its output sent to the background log
//! when a background thread runs it), each failure an error that names it.

use std::{env, process::Command};

use anyhow::{Context as _, bail};

/// Run `cargo ARGS` with the toolchain that runs us.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cmd(Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args))
}

pub fn cmd(command: &mut Command) -> anyhow::Result<()> {
    if !crate::background::redirect(command)? {
        eprintln!("xtask: running {command:?}");
    }
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
