//! Classic BPF on a frame in memory, for frames read with `-r`: the same machine the kernel
//! programs run (`ntptap-ebpf/src/expr.rs`), instruction for instruction, so a file is cut
//! as a live capture would have been.

use ntptap_common::{EXPR_MEMORY, ExprInsn};

/// Whether `program` accepts `data`, a frame of `len` bytes on the wire.
#[must_use]
pub fn matches(program: &[ExprInsn], data: &[u8], len: u32) -> bool {
    run(program, data, len).unwrap_or(false)
}

fn load(data: &[u8], off: u32, size: u16) -> Option<u32> {
    let off = usize::try_from(off).ok()?;
    let bytes = data.get(off..off.checked_add(usize::from(size))?)?;
    Some(bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b)))
}

fn run(program: &[ExprInsn], data: &[u8], len: u32) -> Option<bool> {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let mut memory = [0u32; EXPR_MEMORY];
    loop {
        let insn = program.get(pc)?;
        let (code, k) = (insn.code, insn.k);
        pc += 1;
        let size = match code & 0x18 {
            0x00 => 4,
            0x08 => 2,
            _ => 1,
        };
        let operand = if code & 0x08 != 0 { x } else { k };
        let slot = k as usize & (EXPR_MEMORY - 1);
        match code & 0x07 {
            0x00 => {
                a = match code & 0xe0 {
                    0x00 => k,
                    0x20 => load(data, k, size)?,
                    0x40 => load(data, x.wrapping_add(k), size)?,
                    0x60 => memory[slot],
                    0x80 => len,
                    _ => return None,
                };
            }
            0x01 => {
                x = match code & 0xe0 {
                    0x00 => k,
                    0x60 => memory[slot],
                    0x80 => len,
                    0xa0 => (load(data, k, 1)? & 0x0f) << 2,
                    _ => return None,
                };
            }
            0x02 => memory[slot] = a,
            0x03 => memory[slot] = x,
            0x04 => {
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(operand),
                    0x10 => a.wrapping_sub(operand),
                    0x20 => a.wrapping_mul(operand),
                    0x30 => a.checked_div(operand)?,
                    0x40 => a | operand,
                    0x50 => a & operand,
                    0x60 => a.checked_shl(operand).unwrap_or(0),
                    0x70 => a.checked_shr(operand).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a.checked_rem(operand)?,
                    0xa0 => a ^ operand,
                    _ => return None,
                };
            }
            0x05 => {
                let taken = match code & 0xf0 {
                    0x00 => {
                        pc = pc.checked_add(k as usize)?;
                        continue;
                    }
                    0x10 => a == operand,
                    0x20 => a > operand,
                    0x30 => a >= operand,
                    0x40 => a & operand != 0,
                    _ => return None,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            0x06 => {
                return Some(match code & 0x18 {
                    0x00 => k != 0,
                    0x10 => a != 0,
                    _ => x != 0,
                });
            }
            _ => {
                if code & 0xf8 == 0 {
                    x = a;
                } else {
                    a = x;
                }
            }
        }
    }
}
