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
    )?;
    let object = out.join("ntptap");
    let mut bytes = std::fs::read(&object).context("read the eBPF object")?;
    if !bytes.is_empty() {
        sanitize_btf_names(&mut bytes).context("sanitize the eBPF object's BTF")?;
        std::fs::write(&object, bytes).context("write the eBPF object")?;
    }
    Ok(())
}

/// Give every type in the object's BTF a name the kernel takes.
///
/// bpf-linker 0.10 rewrites Rust's generic struct names (`Global<u8>` becomes
/// `Global_3C_u8_3E_`) but not union names: core's `MaybeUninit<u8>` (behind aya-log's
/// `AYA_LOG_LEVEL`) reaches the kernel as it is, and the kernel refuses the object's BTF
/// ("Invalid name"). aya then goes on without BTF, except for programs that need it, such
/// as the drop program at `tp_btf/kfree_skb`. Each byte that is not `[A-Za-z0-9_]` in a
/// struct, union, enum, typedef or member name becomes `_`, in place: no offset moves.
fn sanitize_btf_names(elf: &mut [u8]) -> anyhow::Result<()> {
    let u16_at = |b: &[u8], at: usize| -> anyhow::Result<usize> {
        Ok(usize::from(u16::from_le_bytes(
            b.get(at..at + 2).context("cut short")?.try_into()?,
        )))
    };
    let u32_at = |b: &[u8], at: usize| -> anyhow::Result<usize> {
        Ok(u32::from_le_bytes(b.get(at..at + 4).context("cut short")?.try_into()?) as usize)
    };
    let u64_at = |b: &[u8], at: usize| -> anyhow::Result<usize> {
        Ok(usize::try_from(u64::from_le_bytes(
            b.get(at..at + 8).context("cut short")?.try_into()?,
        ))?)
    };
    // ELF64 little-endian: the section headers, and the section names' table.
    let (shoff, shentsize) = (u64_at(elf, 0x28)?, u16_at(elf, 0x3a)?);
    let (shnum, shstrndx) = (u16_at(elf, 0x3c)?, u16_at(elf, 0x3e)?);
    let section = |i: usize| -> anyhow::Result<(usize, usize, usize)> {
        let h = shoff + i * shentsize;
        Ok((
            u32_at(elf, h)?,
            u64_at(elf, h + 0x18)?,
            u64_at(elf, h + 0x20)?,
        ))
    };
    let (_, names, _) = section(shstrndx)?;
    let mut btf = None;
    for i in 0..shnum {
        let (name, offset, size) = section(i)?;
        if elf.get(names + name..names + name + 5) == Some(b".BTF\0") {
            btf = Some((offset, size));
        }
    }
    let Some((start, size)) = btf else {
        return Ok(());
    };
    let b = elf
        .get_mut(start..start + size)
        .context("the .BTF section is past the end")?;
    let hdr = u32_at(b, 4)?;
    let (types, types_len) = (hdr + u32_at(b, 8)?, u32_at(b, 12)?);
    let strings = hdr + u32_at(b, 16)?;
    let mut names = Vec::new();
    let mut at = types;
    while at < types + types_len {
        let info = u32_at(b, at + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, info & 0xffff);
        let rest = at + 12;
        // Struct, union, enum, forward declaration, typedef, enum64: sanitize the name.
        if matches!(kind, 4..=8 | 19) {
            names.push(u32_at(b, at)?);
        }
        let (members, size) = match kind {
            1 | 14 | 17 => (0, 4),
            3 => (0, 12),
            4 | 5 => (vlen, 12 * vlen),
            15 | 19 => (0, 12 * vlen),
            6 | 13 => (0, 8 * vlen),
            _ => (0, 0),
        };
        for m in 0..members {
            names.push(u32_at(b, rest + 12 * m)?);
        }
        at = rest + size;
    }
    for name in names {
        let mut i = strings + name;
        while let Some(c) = b.get_mut(i) {
            if *c == 0 {
                break;
            }
            if !(c.is_ascii_alphanumeric() || *c == b'_') {
                *c = b'_';
            }
            i += 1;
        }
    }
    Ok(())
}
