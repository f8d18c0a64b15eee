//! Filter expressions in pcap-filter(7) syntax, as tcpdump takes them: [`parse`] reads one,
//! [`code`] compiles it into classic BPF with libpcap's meaning for Ethernet frames, the kernel
//! programs run that before the copy (`ntptap-ebpf/src/expr.rs`), and [`vm`] runs the same
//! program on frames read with `-r`.
//!
//! ntptap compiles the expression itself, rather than through libpcap's `pcap_compile`, to
//! keep the static binary and the FROM-scratch image free of C libraries (libpcap for musl
//! would have to be built from source for both architectures). Its decisions are checked
//! against tcpdump's, frame for frame, over captures of mixed traffic (TESTING.md).

pub mod code;
pub mod lex;
pub mod names;
pub mod opcodes;
pub mod optimize;
pub mod parse;
pub mod tree;
pub mod vm;

use ntptap_common::ExprInsn;

/// A compiled filter expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expression {
    /// As given (arguments joined by spaces, or the -F file's text).
    pub text: String,
    /// Its classic BPF program.
    pub program: Vec<ExprInsn>,
}

impl Expression {
    /// Parse and compile `text`; an error names what is wrong or not evaluated.
    pub fn compile(text: &str) -> anyhow::Result<Self> {
        Self::compile_with(text, true)
    }

    /// As [`Expression::compile`]; `optimized: false` is tcpdump's `-O`.
    pub fn compile_with(text: &str, optimized: bool) -> anyhow::Result<Self> {
        let tree = parse::parse(text)?;
        let program = code::compile(&tree, optimized)?;
        Ok(Self {
            text: text.to_owned(),
            program,
        })
    }

    /// Whether a frame (Ethernet) of `len` bytes on the wire, `data` captured, matches.
    #[must_use]
    pub fn matches(&self, data: &[u8], len: u32) -> bool {
        vm::matches(&self.program, data, len)
    }

    /// The program as `tcpdump -ddd` prints one (a count, then `code jt jf k` lines).
    #[must_use]
    pub fn dump(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!("{}\n", self.program.len());
        for i in &self.program {
            let _ = writeln!(out, "{} {} {} {}", i.code, i.jt, i.jf, i.k);
        }
        out
    }
}
