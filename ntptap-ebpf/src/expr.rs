//! Filter expressions in the kernel: ntptap compiles a pcap-filter expression into classic
//! BPF (`ntptap/src/filter/`), the loader writes it into [`NTPTAP_EXPR`], and this
//! interpreter runs it on the frame's linear bytes before anything is copied. Classic BPF
//! jumps only forward, so a program runs each instruction at most once: the loop's bound is
//! the program's size. A load past the frame's end fails the frame, as in classic BPF.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use ntptap_common::{EXPR_INSNS, EXPR_MAX_OFFSET, EXPR_MEMORY, ExprProgram};

/// The expression's program (one entry).
#[map(name = "NTPTAP_EXPR")]
pub static NTPTAP_EXPR: Array<ExprProgram> = Array::with_max_entries(1, 0);

/// The machine's registers and scratch memory, `M[]`: this CPU's own. Kept in a map, not
/// in registers, between instructions: the verifier then sees every instruction start from
/// the same unknown state, and checks the loop's body once per iteration instead of once per
/// path through the program (which passed its million-instruction limit).
#[map(name = "NTPTAP_EXPR_MACHINE")]
static NTPTAP_EXPR_MACHINE: PerCpuArray<Machine> = PerCpuArray::with_max_entries(1, 0);

/// Classic BPF's A and X, the program counter, and `M[]`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Machine {
    a: u32,
    x: u32,
    pc: u32,
    memory: [u32; EXPR_MEMORY],
}

/// 1 and the farthest offset, from `.rodata`: the verifier knows them, the compiler does
/// not, so the checks stay as written. `p + 1 > end` written plainly becomes `p >= end`, from
/// which the verifier learns no range (a right-open bound at offset 0 proves nothing to it);
/// and a bound on the offset the compiler could prove redundant would be dropped, leaving
/// the verifier an offset it cannot bound.
#[unsafe(no_mangle)]
static NTPTAP_EXPR_BOUNDS: [usize; 2] = [1, EXPR_MAX_OFFSET as usize];

/// Byte `off` of the frame in `[start, end)`, if there is one.
#[inline(always)]
fn byte(start: usize, end: usize, off: u32) -> Option<u32> {
    // SAFETY: reads of a static.
    let (one, max) = unsafe {
        (
            core::ptr::read_volatile(&raw const NTPTAP_EXPR_BOUNDS[0]),
            core::ptr::read_volatile(&raw const NTPTAP_EXPR_BOUNDS[1]),
        )
    };
    let off = off as usize;
    if off > max {
        return None;
    }
    let p = start + off;
    if p + one > end {
        return None;
    }
    // SAFETY: p is inside the frame's linear bytes, checked just above.
    Some(u32::from(unsafe { *(p as *const u8) }))
}

/// `size` bytes (1, 2 or 4) at `off`, big-endian, as classic BPF loads them.
#[inline(always)]
fn load(start: usize, end: usize, off: u32, size: u16) -> Option<u32> {
    let mut value = byte(start, end, off)?;
    if size >= 2 {
        value = (value << 8) | byte(start, end, off.wrapping_add(1))?;
    }
    if size == 4 {
        value = (value << 8) | byte(start, end, off.wrapping_add(2))?;
        value = (value << 8) | byte(start, end, off.wrapping_add(3))?;
    }
    Some(value)
}

/// Whether the expression matches the frame whose linear bytes are `[start, end)` and whose
/// length on the wire is `len`.
#[inline(never)]
pub fn matches(start: usize, end: usize, len: u32) -> bool {
    run(start, end, len).unwrap_or(false)
}

#[inline(always)]
fn run(start: usize, end: usize, len: u32) -> Option<bool> {
    let program = NTPTAP_EXPR.get(0)?;
    let m = NTPTAP_EXPR_MACHINE.get_ptr_mut(0)?;
    // SAFETY: this CPU's own machine; programs at one hook do not nest on a CPU.
    let m = unsafe { &mut *m };
    m.a = 0;
    m.x = 0;
    m.pc = 0;
    for _ in 0..EXPR_INSNS {
        if step(program, m, start, end, len)? {
            return Some(m.a != 0);
        }
    }
    None
}

/// Run the instruction at `m.pc`; `Some(true)` when it returned (its value in `m.a`).
#[inline(always)]
fn step(
    program: &ExprProgram,
    m: &mut Machine,
    start: usize,
    end: usize,
    len: u32,
) -> Option<bool> {
    // Volatile: the compiler must not carry them in registers from one step to the next.
    // SAFETY: reads of this CPU's machine.
    let (pc, mut a, mut x) = unsafe {
        (
            core::ptr::read_volatile(&raw const m.pc) as usize,
            core::ptr::read_volatile(&raw const m.a),
            core::ptr::read_volatile(&raw const m.x),
        )
    };
    let insn = program.insns.get(pc & (EXPR_INSNS - 1))?;
    let (code, k) = (insn.code, insn.k);
    let slot = k as usize & (EXPR_MEMORY - 1);
    let size = match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        _ => 1,
    };
    let operand = if code & 0x08 != 0 { x } else { k };
    let mut next = pc + 1;
    let mut done = false;
    match code & 0x07 {
        // BPF_LD
        0x00 => {
            a = match code & 0xe0 {
                0x00 => k,
                0x20 => load(start, end, k, size)?,
                0x40 => load(start, end, x.wrapping_add(k), size)?,
                0x60 => m.memory[slot],
                0x80 => len,
                _ => return None,
            };
        }
        // BPF_LDX
        0x01 => {
            x = match code & 0xe0 {
                0x00 => k,
                0x60 => m.memory[slot],
                0x80 => len,
                0xa0 => (byte(start, end, k)? & 0x0f) << 2,
                _ => return None,
            };
        }
        // BPF_ST, BPF_STX
        0x02 => m.memory[slot] = a,
        0x03 => m.memory[slot] = x,
        // BPF_ALU
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
        // BPF_JMP
        0x05 => {
            let op = code & 0xf0;
            let taken = match op {
                0x00 => true,
                0x10 => a == operand,
                0x20 => a > operand,
                0x30 => a >= operand,
                0x40 => a & operand != 0,
                _ => return None,
            };
            next += if op == 0 {
                k as usize
            } else {
                usize::from(if taken { insn.jt } else { insn.jf })
            };
        }
        // BPF_RET
        0x06 => {
            a = match code & 0x18 {
                0x00 => k,
                0x10 => a,
                _ => x,
            };
            done = true;
        }
        // BPF_MISC: TAX, TXA
        _ => {
            if code & 0xf8 == 0 {
                x = a;
            } else {
                a = x;
            }
        }
    }
    // SAFETY: writes of this CPU's machine.
    unsafe {
        core::ptr::write_volatile(&raw mut m.a, a);
        core::ptr::write_volatile(&raw mut m.x, x);
        core::ptr::write_volatile(&raw mut m.pc, next as u32);
    }
    Some(done)
}
