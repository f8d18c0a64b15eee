//! A parsed expression to classic BPF for Ethernet frames, with libpcap's meaning for each
//! primitive (gencode.c): which protocols `host` covers (IPv4 with ARP and RARP), that ports
//! are read only in a first IPv4 fragment, that `ip6 proto` looks through a fragment header,
//! that a byte test's protocol check comes before its load, and that a load past the frame's
//! end rejects the frame. Short-circuit code: each test jumps to where its truth leads.

use std::net::IpAddr;

use anyhow::bail;
use ntptap_common::{EXPR_INSNS, EXPR_MEMORY, ExprInsn};

use super::tree::{Arith, ArithOp, Dir, Expr, Prim, Proto, RelOp};

use super::opcodes::{
    ABS, ALU, B, H, IMM, IND, JEQ, JGE, JGT, JMP, JSET, K, LD, LDX, LEN, MEM, MISC, MSH, RET, ST,
    TAX, W, X,
};

/// Ethernet: the network header's offset.
const NET: u32 = 14;
/// What an accepted frame returns (tcpdump's snapshot length).
const ACCEPT: u32 = 262_144;

/// A place in the code.
type Label = usize;

enum Op {
    Stmt(u16, u32),
    Jump {
        code: u16,
        k: u32,
        t: Label,
        f: Label,
    },
    Place(Label),
}

struct Gen {
    ops: Vec<Op>,
    labels: usize,
    /// Scratch words in use by the arithmetic.
    depth: usize,
}

/// Compile `expr` into classic BPF; `optimized` as libpcap's optimizer leaves it (tcpdump's
/// default; `-O` turns it off).
pub fn compile(expr: &Expr, optimized: bool) -> anyhow::Result<Vec<ExprInsn>> {
    let mut g = Gen {
        ops: Vec::new(),
        labels: 0,
        depth: 0,
    };
    let (yes, no) = (g.label(), g.label());
    g.test(expr, yes, no)?;
    g.place(yes);
    g.stmt(RET | K, ACCEPT);
    g.place(no);
    g.stmt(RET | K, 0);
    let program = g.assemble()?;
    Ok(if optimized {
        super::optimize::optimize(&program)
    } else {
        program
    })
}

impl Gen {
    fn label(&mut self) -> Label {
        self.labels += 1;
        self.labels - 1
    }

    fn place(&mut self, l: Label) {
        self.ops.push(Op::Place(l));
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Stmt(code, k));
    }

    fn jump(&mut self, code: u16, k: u32, t: Label, f: Label) {
        self.ops.push(Op::Jump { code, k, t, f });
    }

    /// `load; if A <op> k goto t else f`.
    fn cmp(&mut self, load: (u16, u32), code: u16, k: u32, t: Label, f: Label) {
        self.stmt(load.0, load.1);
        self.jump(JMP | code | K, k, t, f);
    }

    /// Jump to `t` when the frame's bytes at `off` (after masking) equal `value`.
    fn bytes_eq(&mut self, off: u32, value: &[u8], t: Label, f: Label) {
        let mut chunks = value.chunks(4).peekable();
        let mut at = off;
        while let Some(chunk) = chunks.next() {
            let next = if chunks.peek().is_some() {
                self.label()
            } else {
                t
            };
            let (size, v) = match chunk.len() {
                4 => (
                    W,
                    u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                ),
                2 => (H, u32::from(u16::from_be_bytes([chunk[0], chunk[1]]))),
                1 => (B, u32::from(chunk[0])),
                _ => unreachable!("addresses are 4, 6 or 16 bytes"),
            };
            // A 6-byte MAC: a word, then a half-word.
            self.cmp((LD | size | ABS, at), JEQ, v, next, f);
            if next != t {
                self.place(next);
            }
            at += chunk.len() as u32;
        }
    }

    fn ethertype(&mut self, ty: u16, t: Label, f: Label) {
        self.cmp((LD | H | ABS, 12), JEQ, u32::from(ty), t, f);
    }

    /// `ip proto N` (IPv4).
    fn ip_proto(&mut self, number: u8, t: Label, f: Label) {
        let next = self.label();
        self.ethertype(0x0800, next, f);
        self.place(next);
        self.cmp((LD | B | ABS, NET + 9), JEQ, u32::from(number), t, f);
    }

    /// `ip6 proto N`: the next header, or the one after a fragment header.
    fn ip6_proto(&mut self, number: u8, t: Label, f: Label) {
        let (v6, frag, after) = (self.label(), self.label(), self.label());
        self.ethertype(0x86dd, v6, f);
        self.place(v6);
        self.cmp((LD | B | ABS, NET + 6), JEQ, u32::from(number), t, frag);
        self.place(frag);
        self.cmp((LD | B | ABS, NET + 6), JEQ, 44, after, f);
        self.place(after);
        self.cmp((LD | B | ABS, NET + 40), JEQ, u32::from(number), t, f);
    }

    fn either(&mut self, v4: bool, v6: bool, number: u8, t: Label, f: Label) {
        match (v4, v6) {
            (true, true) => {
                let other = self.label();
                self.ip_proto(number, t, other);
                self.place(other);
                self.ip6_proto(number, t, f);
            }
            (true, false) => self.ip_proto(number, t, f),
            (false, true) => self.ip6_proto(number, t, f),
            (false, false) => self.jump(JMP, 0, f, f),
        }
    }

    /// `(a or b)` over a list of alternatives, each `emit(g, t, f)`.
    fn any<T: Copy>(
        &mut self,
        items: &[T],
        t: Label,
        f: Label,
        mut emit: impl FnMut(&mut Self, T, Label, Label) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        for (i, item) in items.iter().enumerate() {
            if i + 1 == items.len() {
                emit(self, *item, t, f)?;
            } else {
                let next = self.label();
                emit(self, *item, t, next)?;
                self.place(next);
            }
        }
        if items.is_empty() {
            self.jump(JMP, 0, f, f);
        }
        Ok(())
    }

    /// A direction: `src` at `src_off`, `dst` at `dst_off`, each tested by `one`.
    fn directed(
        &mut self,
        dir: Dir,
        t: Label,
        f: Label,
        mut one: impl FnMut(&mut Self, bool, Label, Label),
    ) {
        match dir {
            Dir::Src => one(self, true, t, f),
            Dir::Dst => one(self, false, t, f),
            Dir::SrcOrDst => {
                let next = self.label();
                one(self, true, t, next);
                self.place(next);
                one(self, false, t, f);
            }
            Dir::SrcAndDst => {
                let next = self.label();
                one(self, true, next, f);
                self.place(next);
                one(self, false, t, f);
            }
        }
    }

    fn test(&mut self, expr: &Expr, t: Label, f: Label) -> anyhow::Result<()> {
        match expr {
            Expr::And(a, b) => {
                let mid = self.label();
                self.test(a, mid, f)?;
                self.place(mid);
                self.test(b, t, f)
            }
            Expr::Or(a, b) => {
                let mid = self.label();
                self.test(a, t, mid)?;
                self.place(mid);
                self.test(b, t, f)
            }
            Expr::Not(a) => self.test(a, f, t),
            Expr::Prim(p) => self.prim(p, t, f),
            Expr::Rel(a, op, b) => self.relation(a, *op, b, t, f),
        }
    }

    fn prim(&mut self, prim: &Prim, t: Label, f: Label) -> anyhow::Result<()> {
        match *prim {
            Prim::Proto(p) => self.proto(p, t, f),
            Prim::IpProto { v4, v6, number } => {
                self.either(v4, v6, number, t, f);
                Ok(())
            }
            Prim::EtherProto(ty) => {
                self.ethertype(ty, t, f);
                Ok(())
            }
            Prim::Broadcast => {
                self.bytes_eq(0, &[0xff; 6], t, f);
                Ok(())
            }
            Prim::Multicast => {
                self.cmp((LD | B | ABS, 0), JSET, 1, t, f);
                Ok(())
            }
            Prim::IpMulticast => {
                let next = self.label();
                self.ethertype(0x0800, next, f);
                self.place(next);
                self.cmp((LD | B | ABS, NET + 16), JGE, 224, t, f);
                Ok(())
            }
            Prim::Ip6Multicast => {
                let next = self.label();
                self.ethertype(0x86dd, next, f);
                self.place(next);
                self.cmp((LD | B | ABS, NET + 24), JEQ, 0xff, t, f);
                Ok(())
            }
            Prim::EtherHost { dir, mac } => {
                self.directed(dir, t, f, |g, src, t, f| {
                    g.bytes_eq(if src { 6 } else { 0 }, &mac, t, f);
                });
                Ok(())
            }
            Prim::Host { proto, dir, addr } => {
                let full = if addr.is_ipv4() { 32 } else { 128 };
                self.host(proto, dir, addr, full, t, f)
            }
            Prim::Net {
                proto,
                dir,
                addr,
                prefix,
            } => self.host(proto, dir, addr, prefix, t, f),
            Prim::Port { proto, dir, lo, hi } => self.port(proto, dir, lo, hi, t, f),
        }
    }

    fn proto(&mut self, p: Proto, t: Label, f: Label) -> anyhow::Result<()> {
        match p {
            Proto::Ether | Proto::Default => self.jump(JMP, 0, t, t),
            Proto::Ip => self.ethertype(0x0800, t, f),
            Proto::Ip6 => self.ethertype(0x86dd, t, f),
            Proto::Arp => self.ethertype(0x0806, t, f),
            Proto::Rarp => self.ethertype(0x8035, t, f),
            other => {
                let Some((number, v4, v6)) = other.ip_protocol() else {
                    bail!("{other:?} is not a protocol ntptap's expressions test");
                };
                self.either(v4, v6, number, t, f);
            }
        }
        Ok(())
    }

    /// `host` (the whole address) or `net` (its first `bits`): IPv4 over IP, ARP and RARP
    /// unless a protocol narrows it (libpcap's gen_host); IPv6 over IPv6.
    fn host(
        &mut self,
        proto: Proto,
        dir: Dir,
        addr: IpAddr,
        bits: u8,
        t: Label,
        f: Label,
    ) -> anyhow::Result<()> {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
                let value = u32::from(a) & mask;
                let kinds: &[(u16, u32, u32)] = match proto {
                    // (EtherType, source offset, destination offset)
                    Proto::Ip => &[(0x0800, NET + 12, NET + 16)],
                    Proto::Arp => &[(0x0806, NET + 14, NET + 24)],
                    Proto::Rarp => &[(0x8035, NET + 14, NET + 24)],
                    _ => &[
                        (0x0800, NET + 12, NET + 16),
                        (0x0806, NET + 14, NET + 24),
                        (0x8035, NET + 14, NET + 24),
                    ],
                };
                self.any(kinds, t, f, |g, (ty, src_off, dst_off), t, f| {
                    let next = g.label();
                    g.ethertype(ty, next, f);
                    g.place(next);
                    g.directed(dir, t, f, |g, src, t, f| {
                        g.stmt(LD | W | ABS, if src { src_off } else { dst_off });
                        if mask != u32::MAX {
                            g.stmt(ALU | 0x50 | K, mask);
                        }
                        g.jump(JMP | JEQ | K, value, t, f);
                    });
                    Ok(())
                })
            }
            IpAddr::V6(a) => {
                let value = u128::from(a);
                let next = self.label();
                self.ethertype(0x86dd, next, f);
                self.place(next);
                self.directed(dir, t, f, |g, src, t, f| {
                    let base = NET + if src { 8 } else { 24 };
                    // Word by word, as far as the prefix reaches.
                    let words = usize::from(bits.div_ceil(32));
                    for w in 0..words {
                        let left = u32::from(bits) - 32 * w as u32;
                        let mask = if left >= 32 {
                            u32::MAX
                        } else {
                            u32::MAX << (32 - left)
                        };
                        let v = (value >> (96 - 32 * w)) as u32 & mask;
                        let done = if w + 1 == words { t } else { g.label() };
                        g.stmt(LD | W | ABS, base + 4 * w as u32);
                        if mask != u32::MAX {
                            g.stmt(ALU | 0x50 | K, mask);
                        }
                        g.jump(JMP | JEQ | K, v, done, f);
                        if done != t {
                            g.place(done);
                        }
                    }
                    if words == 0 {
                        g.jump(JMP, 0, t, t);
                    }
                });
                Ok(())
            }
        }
    }

    /// `port` and `portrange` (libpcap's gen_port and gen_port6): over IPv4, TCP, UDP or
    /// SCTP in a first fragment; over IPv6, when the next header is the protocol.
    fn port(
        &mut self,
        proto: Proto,
        dir: Dir,
        lo: u16,
        hi: u16,
        t: Label,
        f: Label,
    ) -> anyhow::Result<()> {
        let protocols: &[u8] = match proto {
            Proto::Tcp => &[6],
            Proto::Udp => &[17],
            Proto::Sctp => &[132],
            _ => &[6, 17, 132],
        };
        let (v4, v6) = match proto {
            Proto::Ip => (true, false),
            Proto::Ip6 => (false, true),
            _ => (true, true),
        };
        let families: Vec<bool> = [(v4, true), (v6, false)]
            .into_iter()
            .filter_map(|(on, is_v4)| on.then_some(is_v4))
            .collect();
        let range = |g: &mut Self, load: (u16, u32), t: Label, f: Label| {
            if lo == hi {
                g.cmp(load, JEQ, u32::from(lo), t, f);
            } else {
                let above = g.label();
                g.cmp(load, JGE, u32::from(lo), above, f);
                g.place(above);
                g.jump(JMP | JGT | K, u32::from(hi), f, t);
            }
        };
        self.any(&families, t, f, |g, is_v4, t, f| {
            let (ty, next_header) = if is_v4 {
                (0x0800, NET + 9)
            } else {
                (0x86dd, NET + 6)
            };
            let l = g.label();
            g.ethertype(ty, l, f);
            g.place(l);
            let l = g.label();
            g.any(protocols, l, f, |g, p, t, f| {
                g.cmp((LD | B | ABS, next_header), JEQ, u32::from(p), t, f);
                Ok(())
            })?;
            g.place(l);
            if is_v4 {
                // Ports are in the first fragment only.
                let l = g.label();
                g.cmp((LD | H | ABS, NET + 6), JSET, 0x1fff, f, l);
                g.place(l);
                g.directed(dir, t, f, |g, src, t, f| {
                    g.stmt(LDX | B | MSH, NET);
                    range(g, (LD | H | IND, NET + if src { 0 } else { 2 }), t, f);
                });
            } else {
                g.directed(dir, t, f, |g, src, t, f| {
                    range(g, (LD | H | ABS, NET + 40 + if src { 0 } else { 2 }), t, f);
                });
            }
            Ok(())
        })
    }

    /// A relation: the protocol checks of its loads first, then the comparison.
    fn relation(
        &mut self,
        a: &Arith,
        op: RelOp,
        b: &Arith,
        t: Label,
        f: Label,
    ) -> anyhow::Result<()> {
        let mut guards = Vec::new();
        guards_of(a, &mut guards);
        guards_of(b, &mut guards);
        for g in guards {
            let next = self.label();
            self.guard(g, next, f)?;
            self.place(next);
        }
        let (code, swap) = match op {
            RelOp::Eq => (JEQ, false),
            RelOp::Ne => (JEQ, true),
            RelOp::Gt => (JGT, false),
            RelOp::Ge => (JGE, false),
            RelOp::Lt => (JGE, true),
            RelOp::Le => (JGT, true),
        };
        let (t, f) = if swap { (f, t) } else { (t, f) };
        if let Arith::Num(k) = b {
            self.arith(a)?;
            self.jump(JMP | code | K, *k, t, f);
        } else {
            self.arith(b)?;
            let slot = self.push()?;
            self.arith(a)?;
            self.stmt(LDX | W | MEM, slot);
            self.pop();
            self.jump(JMP | code | X, 0, t, f);
        }
        Ok(())
    }

    /// The protocol check before a load of `proto[...]` (libpcap's gen_load).
    fn guard(&mut self, proto: Proto, t: Label, f: Label) -> anyhow::Result<()> {
        match proto {
            Proto::Ether | Proto::Default => self.jump(JMP, 0, t, t),
            Proto::Ip | Proto::Ip6 | Proto::Arp | Proto::Rarp => self.proto(proto, t, f)?,
            Proto::Icmp6 => {
                let next = self.label();
                self.ethertype(0x86dd, next, f);
                self.place(next);
                self.cmp((LD | B | ABS, NET + 6), JEQ, 58, t, f);
            }
            transport => {
                // The protocol, and a first (or only) IPv4 fragment.
                let next = self.label();
                self.proto(transport, next, f)?;
                self.place(next);
                self.cmp((LD | H | ABS, NET + 6), JSET, 0x1fff, f, t);
            }
        }
        Ok(())
    }

    /// The value of `a` into A.
    fn arith(&mut self, a: &Arith) -> anyhow::Result<()> {
        match a {
            Arith::Num(n) => self.stmt(LD | IMM, *n),
            Arith::Len => self.stmt(LD | W | LEN, 0),
            Arith::Neg(inner) => {
                self.arith(inner)?;
                self.stmt(ALU | 0x80, 0);
            }
            Arith::Binary(l, op, r) => {
                let code = match op {
                    ArithOp::Add => 0x00,
                    ArithOp::Sub => 0x10,
                    ArithOp::Mul => 0x20,
                    ArithOp::Div => 0x30,
                    ArithOp::Or => 0x40,
                    ArithOp::And => 0x50,
                    ArithOp::Shl => 0x60,
                    ArithOp::Shr => 0x70,
                    ArithOp::Mod => 0x90,
                    ArithOp::Xor => 0xa0,
                };
                if let Arith::Num(k) = **r {
                    if matches!(op, ArithOp::Div | ArithOp::Mod) && k == 0 {
                        bail!("division by zero in the expression");
                    }
                    self.arith(l)?;
                    self.stmt(ALU | code | K, k);
                } else {
                    self.arith(r)?;
                    let slot = self.push()?;
                    self.arith(l)?;
                    self.stmt(LDX | W | MEM, slot);
                    self.pop();
                    self.stmt(ALU | code | X, 0);
                }
            }
            Arith::Load {
                proto,
                offset,
                size,
            } => {
                let size = match size {
                    1 => B,
                    2 => H,
                    _ => W,
                };
                // From the link header, the network header, or (ICMPv6) past the fixed IPv6
                // header; the transport protocols add the IPv4 header's length in X.
                let base = match proto {
                    Proto::Ether | Proto::Default => 0,
                    Proto::Icmp6 => NET + 40,
                    _ => NET,
                };
                let transport = proto.ip_protocol().is_some() && *proto != Proto::Icmp6;
                match (&**offset, transport) {
                    (Arith::Num(k), false) => self.stmt(LD | size | ABS, base + k),
                    (Arith::Num(k), true) => {
                        self.stmt(LDX | B | MSH, NET);
                        self.stmt(LD | size | IND, base + k);
                    }
                    (offset, transport) => {
                        self.arith(offset)?;
                        if transport {
                            let slot = self.push()?;
                            self.stmt(LDX | B | MSH, NET);
                            self.stmt(LD | W | MEM, slot);
                            self.pop();
                            self.stmt(ALU | X, 0);
                        }
                        self.stmt(MISC | TAX, 0);
                        self.stmt(LD | size | IND, base);
                    }
                }
            }
        }
        Ok(())
    }

    /// Keep A in a scratch word; its index.
    fn push(&mut self) -> anyhow::Result<u32> {
        if self.depth >= EXPR_MEMORY {
            bail!("the expression's arithmetic is nested too deep");
        }
        let slot = self.depth as u32;
        self.stmt(ST, slot);
        self.depth += 1;
        Ok(slot)
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }

    /// Labels to offsets; the program, or why it does not fit.
    fn assemble(&self) -> anyhow::Result<Vec<ExprInsn>> {
        let mut at = vec![0usize; self.labels];
        let mut pc = 0;
        for op in &self.ops {
            match op {
                Op::Place(l) => at[*l] = pc,
                _ => pc += 1,
            }
        }
        if pc > EXPR_INSNS {
            bail!(
                "the expression compiles to {pc} classic BPF instructions; ntptap's kernel \
                 programs run at most {EXPR_INSNS}: split it, or capture more and cut with -r -w"
            );
        }
        let mut out = Vec::with_capacity(pc);
        for op in &self.ops {
            match *op {
                Op::Place(_) => {}
                Op::Stmt(code, k) => out.push(ExprInsn {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                }),
                Op::Jump { code, k, t, f } => {
                    let here = out.len() + 1;
                    let offset = |to: usize| u8::try_from(to - here).expect("within 256");
                    if code == JMP {
                        // An unconditional jump (to `t`).
                        out.push(ExprInsn {
                            code,
                            jt: 0,
                            jf: 0,
                            k: (at[t] - here) as u32,
                        });
                    } else {
                        out.push(ExprInsn {
                            code,
                            jt: offset(at[t]),
                            jf: offset(at[f]),
                            k,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The protocols whose headers a side of a relation loads from, in order, each once.
fn guards_of(a: &Arith, out: &mut Vec<Proto>) {
    match a {
        Arith::Num(_) | Arith::Len => {}
        Arith::Neg(inner) => guards_of(inner, out),
        Arith::Binary(l, _, r) => {
            guards_of(l, out);
            guards_of(r, out);
        }
        Arith::Load { proto, offset, .. } => {
            guards_of(offset, out);
            if !out.contains(proto) {
                out.push(*proto);
            }
        }
    }
}
