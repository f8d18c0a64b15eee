//! Builds the kernel programs (ntptap-ebpf) for the BPF target with aya-build, so that
//! `include_bytes_aligned!` in the loader finds the object in `OUT_DIR`.
//!
//! Set `AYA_BUILD_SKIP=1` to skip this step (for clippy or docs without the BPF toolchain); the
//! loader then embeds an empty object and says so when run.
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "ntptap-ebpf")
        .ok_or_else(|| anyhow!("ntptap-ebpf package not found"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip && !out.join("ntptap").exists() {
        std::fs::write(out.join("ntptap"), b"").context("write placeholder eBPF object")?;
    }
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
