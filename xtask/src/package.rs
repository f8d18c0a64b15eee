//! `cargo xtask package [--arch amd64|arm64]`: the Debian package, built by cargo-deb from the
//! static release binary of that architecture (cross-built for arm64 on an amd64 machine), with
//! the man page and shell completions generated from the CLI definition, the systemd unit
//! (pointing at /usr/bin/ntptap), the Prometheus rules and the Grafana dashboard.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cross::Arch, run::cmd};

/// cargo-deb release that builds with the workspace's toolchain.
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Build the package for `arch`; returns its path.
pub fn run(root: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    cargo_deb()?;
    // The static binary, the one the container image holds: it runs on any glibc or none.
    crate::cross::static_build(root, arch)?;
    // The man page and the completions come from the CLI definition, which is the same on
    // every architecture: the machine's own build writes them.
    let binary = crate::cross::static_build(root, Arch::host())?;
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
    for old in debs(&out, arch) {
        fs::remove_file(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    cmd(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["deb", "--package", "ntptap", "--no-build", "--target"])
            .arg(arch.static_target())
            .arg("--output")
            .arg(&out),
    )?;
    let [deb] = debs(&out, arch).try_into().map_err(|found: Vec<PathBuf>| {
        anyhow::anyhow!("cargo deb should write one package, found {found:?}")
    })?;
    check_architecture(&deb, arch)?;
    eprintln!("xtask: wrote {}", deb.display());
    Ok(deb)
}

/// The package says it is for `arch`, and its binary is a static executable for it (cargo-deb
/// takes the architecture from the target; a wrong binary would install and then not run).
fn check_architecture(deb: &Path, arch: Arch) -> anyhow::Result<()> {
    let field = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg("Architecture")
        .output()
        .context("cannot run dpkg-deb")?;
    let declared = String::from_utf8_lossy(&field.stdout).trim().to_owned();
    if declared != arch.debian() {
        bail!(
            "{} declares Architecture: {declared}, not {}",
            deb.display(),
            arch.debian()
        );
    }
    let tar = Command::new("sh")
        .arg("-c")
        .arg("dpkg-deb --fsys-tarfile \"$0\" | tar -xOf - ./usr/bin/ntptap | head -c 64")
        .arg(deb)
        .output()
        .context("cannot read the package's binary")?;
    let elf = tar.stdout;
    // ELF magic, 64-bit, little-endian, e_machine 62 (x86-64) or 183 (AArch64).
    let machine = match arch {
        Arch::Amd64 => 62,
        Arch::Arm64 => 183,
    };
    if elf.len() < 20
        || &elf[..4] != b"\x7fELF"
        || elf[4] != 2
        || elf[5] != 1
        || u16::from_le_bytes([elf[18], elf[19]]) != machine
    {
        bail!(
            "{}: usr/bin/ntptap is not a 64-bit little-endian {} executable",
            deb.display(),
            arch.gnu()
        );
    }
    Ok(())
}

/// The packages for `arch` in `dir`.
fn debs(dir: &Path, arch: Arch) -> Vec<PathBuf> {
    let suffix = format!("_{}.deb", arch.debian());
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(&suffix))
                })
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
