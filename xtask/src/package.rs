//! `cargo xtask package`: the Debian package, built by cargo-deb from the static release binary, with
//! the man page and shell completions generated from the CLI definition, the systemd unit
//! (pointing at /usr/bin/ntptap), the Prometheus rules and the Grafana dashboard.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// cargo-deb release that builds with the workspace's toolchain.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Build the package; returns its path.
pub fn run(root: &Path) -> anyhow::Result<PathBuf> {
    cargo_deb()?;
    // The static binary, the one the container image holds: it runs on any glibc or none.
    crate::image::static_build()?;
    let binary = root
        .join("target")
        .join(crate::image::TARGET)
        .join("release/ntptap");
    let out = root.join("target/package");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let generated = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
        let o = Command::new(&binary)
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        if !o.status.success() {
            bail!("ntptap {args:?} failed");
        }
        Ok(o.stdout)
    };
    let man = out.join("ntptap.1");
    fs::write(&man, generated(&["--man"])?)?;
    cmd(Command::new("gzip").args(["-9nf"]).arg(&man))?;
    for (shell, file) in [
        ("bash", "ntptap.bash"),
        ("zsh", "_ntptap"),
        ("fish", "ntptap.fish"),
    ] {
        fs::write(out.join(file), generated(&["--completions", shell])?)?;
    }
    let unit = fs::read_to_string(root.join("dist/ntptap.service"))?
        .replace("/usr/local/bin/ntptap", "/usr/bin/ntptap")
        .replace(
            "# Install: copy target/release/ntptap to /usr/local/bin, this file to /etc/systemd/system,\n# then `systemctl enable --now ntptap`.",
            "# Installed by the ntptap package, not enabled: `systemctl enable --now ntptap`.",
        );
    fs::write(out.join("ntptap.service"), unit)?;
    // cargo-deb names the file ntptap_VERSION-1_ARCH.deb; an older one goes first.
    for old in debs(&out) {
        fs::remove_file(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    cmd(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["deb", "--package", "ntptap", "--no-build", "--target"])
            .arg(crate::image::TARGET)
            .arg("--output")
            .arg(&out),
    )?;
    let [deb] = debs(&out).try_into().map_err(|found: Vec<PathBuf>| {
        anyhow::anyhow!("cargo deb should write one package, found {found:?}")
    })?;
    eprintln!("xtask: wrote {}", deb.display());
    Ok(deb)
}

fn debs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "deb"))
                .collect()
        })
        .unwrap_or_default()
}

fn cargo_deb() -> anyhow::Result<()> {
    crate::setup::cargo_install(
        Command::new("cargo").args(["deb", "--version"]),
        "cargo-deb",
        CARGO_DEB_VERSION,
        "builds the Debian package",
    )
}
