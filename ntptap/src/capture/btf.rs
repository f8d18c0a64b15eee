//! Just enough of the kernel's BTF (`/sys/kernel/btf/vmlinux`) to find where a structure's
//! fields are, the names of an enum's values, and a tracepoint's argument count.
//!
//! Why not a crate: aya's parser (aya-obj) keeps its type table private, and btf-rs is
//! LGPL-2.1, which a statically linked MIT/Apache binary cannot take without the relinking
//! terms. The format is small and stable (Documentation/bpf/btf.rst): a header, a table of
//! types, a table of strings.

use std::borrow::Cow;

use anyhow::{Context, bail};

const MAGIC: u16 = 0xeb9f;

// Type kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// The kernel's BTF, parsed into a type index.
pub struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// Offset in `types` of type id `i + 1` (id 0 is `void`).
    index: Vec<usize>,
}

/// One type's common header.
#[derive(Clone, Copy, Debug)]
struct Type {
    name: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// Size, or the type referred to.
    size_or_ref: u32,
    /// Offset of what follows the header in `types`.
    rest: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn kernel() -> anyhow::Result<Self> {
        let path = "/sys/kernel/btf/vmlinux";
        let bytes = std::fs::read(path).with_context(|| {
            format!("cannot read {path}: the kernel has no BTF (it needs CONFIG_DEBUG_INFO_BTF)")
        })?;
        Self::parse(&bytes).with_context(|| format!("cannot parse {path}"))
    }

    /// Parse raw BTF (little-endian, as on every host ntptap runs on).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        let magic = bytes
            .get(..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .context("empty BTF")?;
        if magic != MAGIC {
            bail!("not little-endian BTF (magic {magic:#x})");
        }
        let field = |at| u32_at(bytes, at).context("BTF header cut short");
        let hdr_len = field(4)? as usize;
        let (type_off, type_len) = (field(8)? as usize, field(12)? as usize);
        let (str_off, str_len) = (field(16)? as usize, field(20)? as usize);
        let section = |off: usize, len: usize| {
            bytes
                .get(hdr_len + off..hdr_len + off + len)
                .context("BTF section past the end of the data")
        };
        let types = section(type_off, type_len)?.to_vec();
        let strings = section(str_off, str_len)?.to_vec();
        let mut index = Vec::new();
        let mut at = 0;
        while at < types.len() {
            index.push(at);
            let t = Self::header(&types, at).context("BTF type cut short")?;
            at = t.rest + Self::trailer(t)?;
        }
        Ok(Self {
            types,
            strings,
            index,
        })
    }

    fn header(types: &[u8], at: usize) -> Option<Type> {
        let info = u32_at(types, at + 4)?;
        Some(Type {
            name: u32_at(types, at)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 != 0,
            size_or_ref: u32_at(types, at + 8)?,
            rest: at + 12,
        })
    }

    /// Bytes after the common header, by kind.
    fn trailer(t: Type) -> anyhow::Result<usize> {
        Ok(match t.kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * t.vlen,
            KIND_ENUM | KIND_FUNC_PROTO => 8 * t.vlen,
            0..=19 => 0,
            kind => bail!("unknown BTF kind {kind}"),
        })
    }

    fn ty(&self, id: u32) -> Option<Type> {
        let at = *self.index.get((id as usize).checked_sub(1)?)?;
        Self::header(&self.types, at)
    }

    fn name(&self, off: u32) -> Cow<'_, str> {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end])
    }

    /// Type ids named `name` of `kind`.
    fn find<'a>(&'a self, name: &'a str, kind: u32) -> impl Iterator<Item = (u32, Type)> + 'a {
        (1..=self.index.len() as u32).filter_map(move |id| {
            let t = self.ty(id)?;
            (t.kind == kind && self.name(t.name) == name).then_some((id, t))
        })
    }

    /// Skip typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_ref;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset and type of member `name` of a struct or union, looking into anonymous
    /// members (the kernel nests many fields in them).
    fn member(&self, t: Type, name: &str) -> Option<(u32, u32)> {
        for i in 0..t.vlen {
            let at = t.rest + 12 * i;
            let m_name = u32_at(&self.types, at)?;
            let m_type = u32_at(&self.types, at + 4)?;
            let m_off = u32_at(&self.types, at + 8)?;
            let bits = if t.kind_flag {
                m_off & 0x00ff_ffff
            } else {
                m_off
            };
            if m_name == 0 {
                let inner = self.resolve(m_type)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some((off, ty)) = self.member(inner, name)
                {
                    return Some((bits / 8 + off, ty));
                }
            } else if self.name(m_name) == name {
                if bits % 8 != 0 {
                    return None;
                }
                return Some((bits / 8, m_type));
            }
        }
        None
    }

    /// Byte offset and size of `path` (`field` or `field.inner...`) in `struct name`.
    pub fn offset(&self, name: &str, path: &str) -> anyhow::Result<(u32, u32)> {
        let (_, mut t) = self
            .find(name, KIND_STRUCT)
            .find(|(_, t)| t.vlen > 0)
            .with_context(|| format!("the kernel's BTF has no struct {name}"))?;
        let mut off = 0;
        let mut size = 0;
        for part in path.split('.') {
            let (o, ty) = self
                .member(t, part)
                .with_context(|| format!("struct {name} has no field {path} in this kernel"))?;
            off += o;
            t = self
                .resolve(ty)
                .with_context(|| format!("cannot resolve the type of {name}.{path}"))?;
            size = match t.kind {
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => t.size_or_ref,
                2 => 8,
                _ => 0,
            };
        }
        Ok((off, size))
    }

    /// The values of `enum name`, by value.
    #[must_use]
    pub fn enum_values(&self, name: &str) -> Option<Vec<(i64, String)>> {
        let (_, t) = self
            .find(name, KIND_ENUM)
            .chain(self.find(name, KIND_ENUM64))
            .next()?;
        let step = if t.kind == KIND_ENUM { 8 } else { 12 };
        (0..t.vlen)
            .map(|i| {
                let at = t.rest + step * i;
                let value = if t.kind == KIND_ENUM {
                    i64::from(u32_at(&self.types, at + 4)? as i32)
                } else {
                    let lo = u64::from(u32_at(&self.types, at + 4)?);
                    let hi = u64::from(u32_at(&self.types, at + 8)?);
                    (hi << 32 | lo) as i64
                };
                Some((value, self.name(u32_at(&self.types, at)?).into_owned()))
            })
            .collect()
    }

    /// Arguments of the tracepoint `name` (from its `btf_trace_NAME` typedef), without the
    /// leading context pointer; `None` if the kernel has no such tracepoint.
    #[must_use]
    pub fn tracepoint_args(&self, name: &str) -> Option<usize> {
        let (_, t) = self
            .find(&format!("btf_trace_{name}"), KIND_TYPEDEF)
            .next()?;
        let ptr = self.ty(t.size_or_ref)?;
        let proto = self.ty(ptr.size_or_ref)?;
        (proto.kind == KIND_FUNC_PROTO).then(|| proto.vlen.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: int, struct inner { int a; int b; }, struct outer { int x; union {
    /// struct inner in; } ; }, enum e { E_ONE = 1 }.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0in\0e\0E_ONE\0".to_vec();
        let s = |name: &str| {
            let pat = format!("\0{name}\0");
            strings
                .windows(pat.len())
                .position(|w| w == pat.as_bytes())
                .map(|p| p as u32 + 1)
                .unwrap()
        };
        let mut types = Vec::new();
        let mut put = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int (4 bytes, 32 bits)
        put(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { a: int @0, b: int @32 }
        put(&[
            s("inner"),
            KIND_STRUCT << 24 | 2,
            8,
            s("a"),
            1,
            0,
            s("b"),
            1,
            32,
        ]);
        // 3: anonymous union { in: inner @0 }
        put(&[0, KIND_UNION << 24 | 1, 8, s("in"), 2, 0]);
        // 4: struct outer { x: int @0, (anon) @64 }
        put(&[
            s("outer"),
            KIND_STRUCT << 24 | 2,
            16,
            s("x"),
            1,
            0,
            0,
            3,
            64,
        ]);
        // 5: enum e { E_ONE = 1 }
        put(&[s("e"), KIND_ENUM << 24 | 1, 4, s("E_ONE"), 1]);
        let mut out = Vec::new();
        for w in [0x0001_eb9f_u32, 24, 0, types.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        for w in [types.len() as u32, strings.len() as u32] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn fields_inside_anonymous_members_are_found() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset("outer", "x").unwrap(), (0, 4));
        assert_eq!(btf.offset("outer", "in").unwrap(), (8, 8));
        assert_eq!(btf.offset("outer", "in.b").unwrap(), (12, 4));
        assert!(btf.offset("outer", "y").is_err());
        assert!(btf.offset("nothing", "x").is_err());
        assert_eq!(btf.enum_values("e").unwrap(), vec![(1, "E_ONE".to_owned())]);
        assert!(btf.enum_values("f").is_none());
    }

    #[test]
    fn a_cut_blob_is_an_error_not_a_panic() {
        let blob = blob();
        for len in 0..blob.len() - 1 {
            let _ = Btf::parse(&blob[..len]);
        }
        assert!(Btf::parse(&blob[..30]).is_err());
    }

    #[test]
    fn the_running_kernels_sk_buff_is_found() {
        let Ok(btf) = Btf::kernel() else {
            eprintln!("notice: this kernel has no BTF; skipped");
            return;
        };
        let (len, size) = btf.offset("sk_buff", "len").unwrap();
        assert_eq!(size, 4);
        assert!(len > 0);
        assert_eq!(btf.offset("sk_buff", "dev").unwrap().1, 8);
        assert!(btf.tracepoint_args("kfree_skb").unwrap() >= 2);
    }
}
