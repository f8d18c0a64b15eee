//! libpcap's optimizer, as far as it changes which frames match: tests the path already
//! decided are resolved, and loads whose value nothing uses are removed (with them, the
//! rejection a load past a short frame's end would cause).

use ntptap_common::ExprInsn;

use super::opcodes::{ABS, ALU, IND, JEQ, JGE, JGT, JMP, JSET, LD, LDX, LEN, MISC, RET, ST, X};

/// An instruction with absolute jump targets, for the optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Node {
    code: u16,
    k: u32,
    /// Targets of a conditional jump, or of `ja` (`t`); unused otherwise.
    t: usize,
    f: usize,
}

fn is_cond(code: u16) -> bool {
    code & 0x07 == JMP && code & 0xf0 != 0
}

fn is_ja(code: u16) -> bool {
    code & 0x07 == JMP && code & 0xf0 == 0
}

fn successors(nodes: &[Node], i: usize) -> Vec<usize> {
    let n = nodes[i];
    match n.code & 0x07 {
        RET => Vec::new(),
        JMP if is_ja(n.code) => vec![n.t],
        JMP => vec![n.t, n.f],
        _ => vec![i + 1],
    }
}

/// What a packet load reads: (opcode, offset), for loads at constant offsets.
type Source = (u16, u32);

/// libpcap's optimizer, as far as it changes which frames match: a test whose outcome the
/// path to it already decided is resolved (`arp or not arp` tests once), a load whose value
/// nothing uses is removed, and with it the rejection a load past a short frame's end would
/// cause. The program's decisions on frames long enough for its loads do not change.
#[must_use]
pub fn optimize(program: &[ExprInsn]) -> Vec<ExprInsn> {
    let mut nodes: Vec<Node> = program
        .iter()
        .enumerate()
        .map(|(i, insn)| {
            let next = i + 1;
            if is_ja(insn.code) && insn.code & 0x07 == JMP {
                Node {
                    code: insn.code,
                    k: 0,
                    t: next + insn.k as usize,
                    f: next + insn.k as usize,
                }
            } else {
                Node {
                    code: insn.code,
                    k: insn.k,
                    t: next + usize::from(insn.jt),
                    f: next + usize::from(insn.jf),
                }
            }
        })
        .collect();
    for _ in 0..16 {
        let before = nodes.clone();
        resolve_known_tests(&mut nodes);
        thread_jumps(&mut nodes);
        remove_dead_loads(&mut nodes);
        thread_jumps(&mut nodes);
        if nodes == before {
            break;
        }
    }
    linearize(&nodes)
}

/// Facts along paths: exact values and test outcomes of constant-offset loads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Facts {
    /// (source, jump opcode, constant) → outcome.
    tests: Vec<((Source, u16, u32), bool)>,
    /// The source A holds, if known.
    a: Option<Source>,
}

impl Facts {
    fn meet(&self, other: &Facts) -> Facts {
        Facts {
            tests: self
                .tests
                .iter()
                .filter(|t| other.tests.contains(t))
                .copied()
                .collect(),
            a: if self.a == other.a { self.a } else { None },
        }
    }

    /// The outcome of `op k` on `src`, if the path decided it: from a value a `jeq` on the
    /// path established, or from the same test.
    fn outcome(&self, src: Source, op: u16, k: u32) -> Option<bool> {
        if let Some(value) = v_value(&self.tests, src) {
            return match op {
                JEQ => Some(value == k),
                JGT => Some(value > k),
                JGE => Some(value >= k),
                JSET => Some(value & k != 0),
                _ => None,
            };
        }
        self.tests
            .iter()
            .find(|((s, c, kk), _)| *s == src && *c == op && *kk == k)
            .map(|(_, v)| *v)
    }
}

/// The value of `src` where a `jeq` on it was taken.
fn v_value(tests: &[((Source, u16, u32), bool)], src: Source) -> Option<u32> {
    tests
        .iter()
        .find(|((s, c, _), v)| *s == src && *c == JEQ && *v)
        .map(|((_, _, k), _)| *k)
}

fn resolve_known_tests(nodes: &mut [Node]) {
    let n = nodes.len();
    let mut incoming: Vec<Option<Facts>> = vec![None; n];
    incoming[0] = Some(Facts::default());
    for i in 0..n {
        let Some(mut facts) = incoming[i].take() else {
            continue;
        };
        let node = nodes[i];
        let mut out_t = None;
        match node.code & 0x07 {
            LD => {
                facts.a = match node.code & 0xe0 {
                    ABS => Some((node.code, node.k)),
                    LEN => Some((node.code, 0)),
                    _ => None,
                };
            }
            ALU | MISC => facts.a = None,
            JMP if is_cond(node.code) && node.code & X == 0 => {
                if let Some(src) = facts.a {
                    let op = node.code & 0xf0;
                    if let Some(known) = facts.outcome(src, op, node.k) {
                        let to = if known { node.t } else { node.f };
                        nodes[i] = Node {
                            code: JMP,
                            k: 0,
                            t: to,
                            f: to,
                        };
                        merge(&mut incoming, to, facts.clone());
                        continue;
                    }
                    let mut yes = facts.clone();
                    yes.tests.push(((src, op, node.k), true));
                    let mut no = facts.clone();
                    no.tests.push(((src, op, node.k), false));
                    merge(&mut incoming, node.t, yes);
                    out_t = Some(no);
                }
            }
            _ => {}
        }
        let node = nodes[i];
        match node.code & 0x07 {
            RET => {}
            JMP if is_ja(node.code) => merge(&mut incoming, node.t, facts),
            JMP => {
                if let Some(no) = out_t {
                    merge(&mut incoming, node.f, no);
                } else {
                    merge(&mut incoming, node.t, facts.clone());
                    merge(&mut incoming, node.f, facts);
                }
            }
            _ => merge(&mut incoming, i + 1, facts),
        }
    }
}

fn merge(incoming: &mut [Option<Facts>], at: usize, facts: Facts) {
    if let Some(slot) = incoming.get_mut(at) {
        *slot = Some(match slot.take() {
            Some(old) => old.meet(&facts),
            None => facts,
        });
    }
}

/// A conditional jump with one target becomes `ja`; a jump to a `ja` goes where it goes.
fn thread_jumps(nodes: &mut [Node]) {
    let final_target = |nodes: &[Node], mut at: usize| {
        while at < nodes.len() && is_ja(nodes[at].code) && nodes[at].code & 0x07 == JMP {
            at = nodes[at].t;
        }
        at
    };
    for i in 0..nodes.len() {
        let node = nodes[i];
        if node.code & 0x07 != JMP {
            continue;
        }
        let (t, f) = (final_target(nodes, node.t), final_target(nodes, node.f));
        nodes[i] = if is_cond(node.code) && t == f {
            Node {
                code: JMP,
                k: 0,
                t,
                f: t,
            }
        } else {
            Node { t, f, ..node }
        };
    }
}

/// Replace loads into A or X whose value no path uses with `ja` to the next instruction.
fn remove_dead_loads(nodes: &mut [Node]) {
    // Liveness of A (bit 0) and X (bit 1), backwards over the DAG.
    let n = nodes.len();
    let mut live_in = vec![0u8; n + 1];
    for i in (0..n).rev() {
        let node = nodes[i];
        let out = successors(nodes, i)
            .iter()
            .fold(0u8, |acc, s| acc | live_in.get(*s).copied().unwrap_or(0));
        let (uses, defs) = effect(node);
        live_in[i] = uses | (out & !defs);
        let loads = matches!(node.code & 0x07, LD | LDX);
        if loads && out & defs == 0 {
            nodes[i] = Node {
                code: JMP,
                k: 0,
                t: i + 1,
                f: i + 1,
            };
            live_in[i] = out;
        }
    }
}

/// (registers used, registers defined): A is bit 0, X bit 1.
fn effect(node: Node) -> (u8, u8) {
    let (a, x) = (1u8, 2u8);
    let src_x = if node.code & X != 0 { x } else { 0 };
    match node.code & 0x07 {
        LD => (if node.code & 0xe0 == IND { x } else { 0 }, a),
        LDX => (0, x),
        ST => (a, 0),
        0x03 => (x, 0),
        ALU => (a | src_x, a),
        JMP if is_cond(node.code) => (a | src_x, 0),
        JMP => (0, 0),
        RET => (
            if node.code & 0x18 == 0x10 {
                a
            } else if node.code & 0x18 == 0x08 {
                x
            } else {
                0
            },
            0,
        ),
        _ => {
            if node.code & 0xf8 == 0 {
                (a, x)
            } else {
                (x, a)
            }
        }
    }
}

/// Drop unreachable instructions and `ja` to the next one; offsets relative again.
fn linearize(nodes: &[Node]) -> Vec<ExprInsn> {
    let n = nodes.len();
    let mut reachable = vec![false; n];
    if n > 0 {
        reachable[0] = true;
    }
    for i in 0..n {
        if reachable[i] {
            for s in successors(nodes, i) {
                if s < n {
                    reachable[s] = true;
                }
            }
        }
    }
    // A `ja` to the very next kept instruction is dropped: it moves nothing.
    let next_kept = |from: usize| (from..n).find(|j| reachable[*j]).unwrap_or(n);
    let keep: Vec<bool> = (0..n)
        .map(|i| {
            reachable[i]
                && !(is_ja(nodes[i].code)
                    && nodes[i].code & 0x07 == JMP
                    && next_kept(i + 1) == next_kept(nodes[i].t))
        })
        .collect();
    let mut at = vec![0usize; n + 1];
    let mut pc = 0;
    for i in 0..n {
        at[i] = pc;
        if keep[i] {
            pc += 1;
        }
    }
    at[n] = pc;
    // A target that was dropped stands for the next kept instruction.
    let place = |to: usize| at[next_kept_keep(&keep, to)];
    let mut out = Vec::with_capacity(pc);
    for i in 0..n {
        if !keep[i] {
            continue;
        }
        let node = nodes[i];
        let here = out.len() + 1;
        out.push(if node.code & 0x07 != JMP {
            ExprInsn {
                code: node.code,
                jt: 0,
                jf: 0,
                k: node.k,
            }
        } else if is_ja(node.code) {
            ExprInsn {
                code: node.code,
                jt: 0,
                jf: 0,
                k: (place(node.t) - here) as u32,
            }
        } else {
            ExprInsn {
                code: node.code,
                jt: u8::try_from(place(node.t) - here).unwrap_or(u8::MAX),
                jf: u8::try_from(place(node.f) - here).unwrap_or(u8::MAX),
                k: node.k,
            }
        });
    }
    out
}

fn next_kept_keep(keep: &[bool], from: usize) -> usize {
    (from..keep.len()).find(|j| keep[*j]).unwrap_or(keep.len())
}
