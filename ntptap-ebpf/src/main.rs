//! ntptap's kernel programs.
//!
//! Each entry point is a thin wrapper around [`tap`]: parse the headers, decide, reserve a ring
//! record of a fixed size class, copy the frame into it, submit, and count every decision.
//! A tap never harms traffic: every path returns `XDP_PASS` / `TC_ACT_UNSPEC`.
//!
//! The product's programs are here; [`bench`] holds the baselines `cargo xtask bench`
//! measures them against, which the loader never attaches. [`parse`] reads the headers.
#![no_std]
#![no_main]

mod bench;
mod drops;
mod expr;
mod owners;
mod parse;
mod shared;

use aya_ebpf::{
    EbpfContext,
    bindings::{TC_ACT_UNSPEC, xdp_action},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_skb_load_bytes, bpf_skb_pull_data, bpf_xdp_load_bytes},
    },
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use ntptap_common::{
    ATTRIBUTE, ATTRIBUTE_LATENCY, ATTRIBUTE_SELECT, COUNTER_ENTRIES, Config, Counter, CounterBlock,
    DIRECTION_EGRESS, DIRECTION_INGRESS, FILTER_ALL, FILTER_DEBUG, FILTER_EXPR, FILTER_HOST,
    IFSLOT_ENTRIES, MAX_DATA, Owner, PENDING_SLOT, RECORD_TRUNCATED, RECORD_VLAN, Record,
    SMALL_DATA, SOCKET_OWNED, SOCKET_UNKNOWN, Stamps, TINY_DATA, counter_key,
};
use parse::{Addresses, Verdict, classify, ipv4_addresses, ipv6_address, quick_classify};
use shared::{
    NTPTAP_HOSTS4, NTPTAP_HOSTS6, NTPTAP_IFSLOTS, config, copy_len, port_watched, port_watched_by,
    this_cpus_ring, wakeup_flags,
};

/// Per-CPU counters of every decision, a block per interface slot and direction (see
/// `Counter`, `counter_key`).
#[map(name = "NTPTAP_COUNTERS")]
static NTPTAP_COUNTERS: PerCpuArray<CounterBlock> =
    PerCpuArray::with_max_entries(COUNTER_ENTRIES, 0);

/// This CPU's counters of the frame's interface slot and direction, looked up once a frame.
type Counts = *mut CounterBlock;

/// This CPU's frame's socket and owner, between the lookup and the record: passing them
/// through memory the verifier cannot see into keeps the paths of the lookup (no socket, no
/// owner, an owner) from multiplying the states it walks through the copy that follows.
#[map(name = "NTPTAP_SCRATCH")]
static NTPTAP_SCRATCH: PerCpuArray<Attribution> = PerCpuArray::with_max_entries(1, 0);

/// A frame's socket (`SOCKET_*`) and its owner.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Attribution {
    socket: u32,
    pad: u32,
    owner: Owner,
    /// `--latency`, egress: when the socket last read from and sent to the frame's
    /// destination.
    stamps: Stamps,
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// Ingress capture at XDP.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_xdp(ctx: XdpContext) -> u32 {
    xdp_tap::<false>(&ctx)
}

/// Ingress capture at XDP on kernels without `bpf_xdp_load_bytes` (before 5.18): the same
/// program, copying the frame with a bounded loop over direct packet access. The loader picks
/// it when [`ntptap_probe_xdp`] does not load.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_xdp_copy(ctx: XdpContext) -> u32 {
    xdp_tap::<true>(&ctx)
}

/// The XDP programs' body; `LOOP` picks the copy (see [`XdpFrame`]).
#[inline(always)]
fn xdp_tap<const LOOP: bool>(ctx: &XdpContext) -> u32 {
    tap(
        &XdpFrame::<LOOP>(ctx),
        ctx.ingress_ifindex() as u32,
        DIRECTION_INGRESS,
    );
    xdp_action::XDP_PASS
}

/// A feature probe, never attached: it loads only if the kernel offers `bpf_xdp_load_bytes`.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_probe_xdp(ctx: XdpContext) -> u32 {
    let mut byte = 0u8;
    // SAFETY: one byte into a one-byte stack buffer; the helper checks the packet bounds.
    unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, (&raw mut byte).cast(), 1) };
    xdp_action::XDP_PASS
}

/// Ingress capture at TC (`--hook tc`).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_tc_in(ctx: TcContext) -> i32 {
    let frame = TcFrame(&ctx);
    tap(&frame, frame.ifindex(), DIRECTION_INGRESS);
    TC_ACT_UNSPEC
}

/// Egress capture at TC.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_tc_out(ctx: TcContext) -> i32 {
    let frame = TcFrame(&ctx);
    tap(&frame, frame.ifindex(), DIRECTION_EGRESS);
    TC_ACT_UNSPEC
}

/// What the hook-specific contexts have in common.
trait Frame {
    /// The program context, for aya-log.
    type Ctx: EbpfContext;
    fn ctx(&self) -> &Self::Ctx;
    /// Start and end of the bytes that direct packet access can read.
    fn linear(&self) -> (usize, usize);
    /// Length of the whole frame.
    fn len(&self) -> u64;
    /// Copy the first `len` bytes of the frame to `dst`, a `[u8; N]`; `len` is in `1..=N`.
    /// Zero on success.
    fn copy<const N: usize>(&self, dst: *mut u8, len: u32) -> i64;
    /// A VLAN tag the kernel keeps outside the frame's bytes: (protocol, TCI).
    fn offloaded_vlan(&self) -> Option<(u16, u16)>;
    /// Make sure the headers are in the bytes [`Frame::linear`] covers. Packet pointers
    /// taken before must not be used after.
    fn make_linear(&self) {}
    /// The kernel address of the socket that sent an egress frame (0: none, or not known at
    /// this hook).
    fn egress_sk(&self) -> u64 {
        0
    }
    /// How a socket opened before ntptap started is looked up in the kernel (where not, the
    /// reader names it, from the same record of /proc).
    const EARLIER: owners::Earlier = owners::Earlier::LookupAndRecord;
    /// The socket that sent the frame or takes it (`SOCKET_*`); its owner, for
    /// `SOCKET_OWNED`, into `out`.
    #[inline(always)]
    fn socket(&self, direction: u8, udp: &Udp, out: &mut Owner) -> u8 {
        let _ = direction;
        let (start, end) = self.linear();
        owners::receiver(
            self.ctx(),
            start,
            end,
            udp.addresses,
            (udp.sport, udp.dport),
            Self::EARLIER,
            out,
        )
    }
}

/// Where a matched UDP frame's addresses are, and its ports (host byte order).
#[derive(Clone, Copy)]
pub struct Udp {
    addresses: Addresses,
    sport: u16,
    dport: u16,
}

/// An XDP frame. `LOOP` copies with a bounded loop instead of `bpf_xdp_load_bytes`, for
/// kernels before 5.18 (see [`ntptap_xdp_copy`]).
struct XdpFrame<'a, const LOOP: bool>(&'a XdpContext);

impl<const LOOP: bool> Frame for XdpFrame<'_, LOOP> {
    type Ctx = XdpContext;
    // The copy loop's kernels (before 5.18) verify the lookup too slowly beside it: on them,
    // the reader names a socket opened before ntptap started. Elsewhere the lookup, without
    // the insert (its stack took the program past 512 bytes on 6.1).
    const EARLIER: owners::Earlier = if LOOP {
        owners::Earlier::No
    } else {
        owners::Earlier::Lookup
    };
    #[inline(always)]
    fn ctx(&self) -> &XdpContext {
        self.0
    }
    #[inline(always)]
    fn linear(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
    }
    #[inline(always)]
    fn len(&self) -> u64 {
        (self.0.data_end() - self.0.data()) as u64
    }
    #[inline(always)]
    fn copy<const N: usize>(&self, dst: *mut u8, len: u32) -> i64 {
        if LOOP {
            let (start, end) = self.linear();
            return copy_loop::<N>(start, end, dst, len);
        }
        // SAFETY: `dst` points into a ring record with room for `len` bytes; the helper checks
        // the packet bounds itself.
        unsafe { bpf_xdp_load_bytes(self.0.ctx, 0, dst.cast(), len) }
    }
    #[inline(always)]
    fn offloaded_vlan(&self) -> Option<(u16, u16)> {
        // XDP sees the frame as it came off the wire, tags included.
        None
    }
}

/// Copy the first `len` bytes (`1..=N`) of the packet in `start..end` to `dst`, a `[u8; N]`,
/// with direct packet access; zero on success.
#[inline(always)]
fn copy_loop<const N: usize>(start: usize, end: usize, dst: *mut u8, len: u32) -> i64 {
    let len = len as usize;
    // Eight bytes a step while eight remain, then byte by byte: at most N / 8 + 7 steps.
    // The offset is a constant on every path the verifier walks, so each packet read is
    // covered by the check just before it.
    let mut i = 0;
    for _ in 0..N / 8 {
        if i + 8 > len {
            break;
        }
        if start + i + 8 > end {
            return -1;
        }
        // SAFETY: bytes i..i+8 lie inside the packet (checked above) and inside the
        // record (i + 8 <= len <= N); neither pointer need be aligned.
        unsafe {
            let word = core::ptr::read_unaligned((start + i) as *const u64);
            core::ptr::write_unaligned(dst.add(i).cast::<u64>(), word);
        }
        i += 8;
    }
    // A 1 the compiler cannot see: it would turn `p + 1 > end` into `p >= end`, a form
    // verifiers before 6.x do not take as proof that the byte at p exists.
    // SAFETY: a read of a static.
    let one = unsafe { core::ptr::read_volatile(&raw const ONE) };
    for _ in 0..7 {
        if i >= len || i >= N {
            break;
        }
        if start + i + one > end {
            return -1;
        }
        // SAFETY: the byte at i lies inside the packet (checked above) and the record.
        unsafe { *dst.add(i) = *((start + i) as *const u8) };
        i += 1;
    }
    0
}

/// Bytes of headers the parser may need in the linear part of an skb.
const HEADER_PULL: u32 = 128;

struct TcFrame<'a>(&'a TcContext);

impl TcFrame<'_> {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: reading a field of the context the kernel gave us.
        unsafe { (*self.0.skb.skb).ifindex }
    }
}

impl Frame for TcFrame<'_> {
    type Ctx = TcContext;
    #[inline(always)]
    fn ctx(&self) -> &TcContext {
        self.0
    }
    #[inline(always)]
    fn linear(&self) -> (usize, usize) {
        (self.0.data(), self.0.data_end())
    }
    #[inline(always)]
    fn len(&self) -> u64 {
        u64::from(self.0.len())
    }
    #[inline(always)]
    fn copy<const N: usize>(&self, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: as for XDP: `dst` has room for `len` bytes, the helper checks the skb bounds.
        unsafe { bpf_skb_load_bytes(self.0.skb.skb.cast(), 0, dst.cast(), len) }
    }
    #[inline(always)]
    fn offloaded_vlan(&self) -> Option<(u16, u16)> {
        let skb = self.0.skb.skb;
        // SAFETY: reading fields of the context the kernel gave us.
        let (present, proto, tci) =
            unsafe { ((*skb).vlan_present, (*skb).vlan_proto, (*skb).vlan_tci) };
        // vlan_proto holds the protocol in network byte order.
        (present != 0).then(|| (u16::from_be(proto as u16), tci as u16))
    }
    /// Pull the first [`HEADER_PULL`] bytes (or the whole frame) into the linear part of the
    /// skb. Locally generated packets have their headers linear already, and the quick parse
    /// needs no pull; a pull happens only for the rare skb whose headers are paged, and
    /// changes nothing the stack can observe.
    #[inline(always)]
    fn make_linear(&self) {
        let ctx = self.0;
        let len = ctx.len();
        let want = if len < HEADER_PULL { len } else { HEADER_PULL };
        if ((ctx.data_end() - ctx.data()) as u32) < want {
            // SAFETY: the helper takes the context pointer the kernel gave us.
            unsafe { bpf_skb_pull_data(ctx.skb.skb.cast(), want) };
        }
    }
    #[inline(always)]
    fn egress_sk(&self) -> u64 {
        // SAFETY: reading a field of the context the kernel gave us.
        unsafe { (*self.0.skb.skb).__bindgen_anon_2.sk as u64 }
    }
    #[inline(always)]
    fn socket(&self, direction: u8, udp: &Udp, out: &mut Owner) -> u8 {
        if direction == DIRECTION_EGRESS {
            // SAFETY: reading a field of the context the kernel gave us.
            let sk = unsafe { (*self.0.skb.skb).__bindgen_anon_2.sk };
            let (start, end) = self.linear();
            return owners::sender(sk, start, end, udp.addresses, udp.sport, out);
        }
        let (start, end) = self.linear();
        owners::receiver(
            self.0,
            start,
            end,
            udp.addresses,
            (udp.sport, udp.dport),
            owners::Earlier::LookupAndRecord,
            out,
        )
    }
}

/// See [`copy_loop`].
static ONE: usize = 1;

#[inline(always)]
/// Count one `counter` in this CPU's block `counts`.
fn count(counts: Counts, counter: Counter) {
    // SAFETY: the block is this CPU's own (see `tap`); BPF programs do not migrate or nest on
    // one CPU for the same hook, so a plain increment is not torn. The index is a constant
    // below the block's length.
    unsafe { (*counts)[counter as usize] += 1 };
}

/// Whether the frame's source or destination is in the host sets.
#[inline(always)]
fn host_watched(start: usize, end: usize, addresses: Addresses) -> bool {
    match addresses.family {
        Addresses::V4 => ipv4_addresses(start, end, addresses.header).is_some_and(|(src, dst)| {
            // SAFETY: lookups in a hash map with keys of the declared type.
            unsafe { NTPTAP_HOSTS4.get(src).is_some() || NTPTAP_HOSTS4.get(dst).is_some() }
        }),
        Addresses::V6 => {
            let watched = |off: usize| {
                ipv6_address(start, end, off).is_some_and(|key| {
                    // SAFETY: a lookup in a hash map with keys of the declared type.
                    unsafe { NTPTAP_HOSTS6.get(key).is_some() }
                })
            };
            watched(addresses.header + 8) || watched(addresses.header + 24)
        }
        _ => false,
    }
}

/// Decide on one frame and capture it if it matches.
#[inline(always)]
fn tap<F: Frame>(frame: &F, ifindex: u32, direction: u8) {
    let slot = NTPTAP_IFSLOTS
        .get(ifindex % IFSLOT_ENTRIES)
        .copied()
        .unwrap_or(0);
    // The key is within the map (`counter_key`), so the lookup finds the block. Checked
    // once here, the pointer is known valid in every later count: a null test at each count
    // split the verifier's states at each (it then took minutes on 5.10's copy loop).
    let Some(counts) = NTPTAP_COUNTERS.get_ptr_mut(counter_key(slot, direction)) else {
        return;
    };
    count(counts, Counter::Seen);
    let config = config();
    // The default filter (the port set alone, no logging) on an untagged frame with plain
    // headers, the frames most links carry: decided without the general parser. The
    // verifier keeps only the branch the loaded configuration takes.
    if config.filter == 0 {
        let (start, end) = frame.linear();
        match quick_classify(start, end) {
            Some((Verdict::Udp { sport, dport }, addresses)) => {
                if port_watched_by(&config, sport) || port_watched_by(&config, dport) {
                    let udp = Udp {
                        addresses,
                        sport,
                        dport,
                    };
                    let _ = attribute_and_capture(frame, &config, ifindex, direction, counts, &udp);
                }
                return;
            }
            Some(_) => return,
            None => {}
        }
    }
    let outcome = match select(frame, &config, counts) {
        Ok(udp) => attribute_and_capture(frame, &config, ifindex, direction, counts, &udp),
        Err(reason) => Err(reason),
    };
    // A read-only flag: with --debug-ebpf off, the verifier removes this branch.
    if config.filter & FILTER_DEBUG != 0 {
        match outcome {
            Ok(bytes) => debug!(
                frame.ctx(),
                "ifindex {} dir {}: captured {} bytes", ifindex, direction, bytes
            ),
            Err(reason) => debug!(
                frame.ctx(),
                "ifindex {} dir {}: {}", ifindex, direction, reason
            ),
        }
    }
}

/// Find the frame's socket and owner if attribution is on, apply `--pid`, `--comm` and
/// `--cgroup`, and capture the frame if they pass it (counted as matched only then).
#[inline(always)]
fn attribute_and_capture<F: Frame>(
    frame: &F,
    config: &Config,
    ifindex: u32,
    direction: u8,
    counts: Counts,
    udp: &Udp,
) -> Result<u32, &'static str> {
    // A read-only flag: without attribution the verifier removes the branch, and the frame
    // pays nothing for it.
    if config.attribution & ATTRIBUTE != 0 {
        attribute(frame, config, ifindex, direction, counts, udp)?;
    }
    count(counts, Counter::Matched);
    capture(frame, config, ifindex, direction, counts)
}

/// Process attribution: the frame's socket and owner, for the record (through
/// [`NTPTAP_SCRATCH`], the owner written there by the lookup itself); an error if `--pid`,
/// `--comm` or `--cgroup` leave the frame out.
#[inline(always)]
fn attribute<F: Frame>(
    frame: &F,
    config: &Config,
    ifindex: u32,
    direction: u8,
    counts: Counts,
    udp: &Udp,
) -> Result<(), &'static str> {
    let Some(scratch) = NTPTAP_SCRATCH.get_ptr_mut(0) else {
        // Never: the map has its one entry on every CPU. The record says "unknown".
        return Ok(());
    };
    // SAFETY: this CPU's own slot, read back (by `emit`) before the program returns.
    let scratch = unsafe { &mut *scratch };
    let socket = if udp.addresses.family != 0 {
        frame.socket(direction, udp, &mut scratch.owner)
    } else {
        SOCKET_UNKNOWN
    };
    // The owner is read only under SOCKET_OWNED (here and by the reader).
    scratch.socket = u32::from(socket);
    if config.attribution & ATTRIBUTE_SELECT != 0
        && !owners::selected(config, socket, &scratch.owner)
    {
        count(counts, Counter::OtherProcess);
        return Err("another process's socket");
    }
    if config.filter & FILTER_DEBUG != 0 {
        let pid = if socket == SOCKET_OWNED {
            scratch.owner.pid
        } else {
            0
        };
        debug!(
            frame.ctx(),
            "ifindex {} dir {}: socket {} owner pid {}", ifindex, direction, socket, pid
        );
    }
    // The stamps only with --latency.
    if config.attribution & ATTRIBUTE_LATENCY != 0 {
        scratch.stamps = if direction == DIRECTION_EGRESS {
            egress_stamps(frame, udp)
        } else {
            Stamps::default()
        };
    }
    Ok(())
}

/// `--latency`: when the socket that sent an egress frame last read from and sent to the
/// frame's destination.
#[inline(always)]
fn egress_stamps<F: Frame>(frame: &F, udp: &Udp) -> Stamps {
    let sk = frame.egress_sk();
    if sk == 0 {
        return Stamps::default();
    }
    let (start, end) = frame.linear();
    let mut addr = [0u8; 16];
    match udp.addresses.family {
        Addresses::V4 => match ipv4_addresses(start, end, udp.addresses.header) {
            Some((_, dst)) => addr[..4].copy_from_slice(&dst.to_ne_bytes()),
            None => return Stamps::default(),
        },
        Addresses::V6 => match ipv6_address(start, end, udp.addresses.header + 24) {
            Some(dst) => addr = dst,
            None => return Stamps::default(),
        },
        _ => return Stamps::default(),
    }
    owners::stamps(sk, addr, udp.dport)
}

/// Whether the frame matches the filter; if so, its UDP header's facts (no family for a
/// frame `--all` takes that is not UDP); if not, why.
#[inline(always)]
fn select<F: Frame>(frame: &F, config: &Config, counts: Counts) -> Result<Udp, &'static str> {
    let all = config.filter & FILTER_ALL != 0;
    let hosts = config.filter & FILTER_HOST != 0;
    let mut udp = Udp {
        addresses: Addresses {
            family: Addresses::NONE,
            header: 0,
        },
        sport: 0,
        dport: 0,
    };
    if all && !hosts && config.attribution & ATTRIBUTE == 0 {
        return Ok(udp);
    }
    frame.make_linear();
    let (start, end) = frame.linear();
    // A filter expression decides alone (the loader folded --port and --host into it).
    let expression = config.filter & FILTER_EXPR != 0;
    if expression && !expr::matches(start, end, frame.len() as u32) {
        return Err("not matched by the expression");
    }
    let (verdict, addresses) = classify(start, end);
    if expression {
        if let Verdict::Udp { sport, dport } = verdict {
            udp = Udp {
                addresses,
                sport,
                dport,
            };
        }
        return Ok(udp);
    }
    if let Verdict::Udp { sport, dport } = verdict {
        udp = Udp {
            addresses,
            sport,
            dport,
        };
    }
    if !all {
        match verdict {
            Verdict::Udp { sport, dport } => {
                if !port_watched(sport) && !port_watched(dport) {
                    return Err("UDP, not on the port set");
                }
            }
            Verdict::Other => return Err("not UDP over IP"),
            Verdict::LaterFragment => {
                count(counts, Counter::LaterFragment);
                return Err("later IP fragment");
            }
            Verdict::Unparsable => {
                count(counts, Counter::Unparsable);
                return Err("unparsable headers");
            }
        }
    }
    if hosts && !host_watched(start, end, addresses) {
        return Err("no listed host");
    }
    Ok(udp)
}

/// Copy a matched frame into the ring; the bytes captured, or why not.
#[inline(always)]
fn capture<F: Frame>(
    frame: &F,
    config: &Config,
    ifindex: u32,
    direction: u8,
    counts: Counts,
) -> Result<u32, &'static str> {
    let len = frame.len();
    let mut snap = u64::from(config.snaplen);
    if snap > MAX_DATA as u64 {
        snap = MAX_DATA as u64;
    }
    let cap = if len < snap { len } else { snap };
    if cap == 0 {
        // Only a zero-length frame gets here; there is nothing to copy.
        count(counts, Counter::CopyFailed);
        return Err("empty frame");
    }
    let vlan = frame.offloaded_vlan();
    let mut flags = if cap < len { RECORD_TRUNCATED } else { 0 };
    if vlan.is_some() {
        flags |= RECORD_VLAN;
    }
    let (vlan_proto, vlan_tci) = vlan.unwrap_or((0, 0));
    let head = Head {
        // SAFETY: the helper takes no arguments and has no preconditions.
        ts_mono_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        orig_len: len as u32,
        direction,
        flags,
        vlan_tci,
        vlan_proto,
    };
    if cap <= TINY_DATA as u64 {
        emit::<TINY_DATA, F>(frame, config, &head, cap, counts)
    } else if cap <= SMALL_DATA as u64 {
        emit::<SMALL_DATA, F>(frame, config, &head, cap, counts)
    } else {
        emit::<MAX_DATA, F>(frame, config, &head, cap, counts)
    }
}

/// What every record's header says of its frame; [`emit`] writes these fields, and those of
/// the features that are on, straight into the reserved record (the others are left as the
/// ring had them: the reader reads an owner only under `SOCKET_OWNED` and the latency fields
/// only with `--latency`).
struct Head {
    ts_mono_ns: u64,
    ifindex: u32,
    orig_len: u32,
    direction: u8,
    flags: u8,
    vlan_tci: u16,
    vlan_proto: u16,
}

/// Reserve a record of `N` data bytes, copy `cap` bytes of the frame into it, and submit it.
#[inline(always)]
fn emit<const N: usize, F: Frame>(
    frame: &F,
    config: &Config,
    head: &Head,
    cap: u64,
    counts: Counts,
) -> Result<u32, &'static str> {
    let ring = this_cpus_ring(config);
    let Some(mut entry) = ring.and_then(|r| r.reserve_untyped::<Record<N>>(0)) else {
        count(counts, Counter::RingFull);
        // SAFETY: this CPU's own block; see `count`.
        unsafe { (*counts)[PENDING_SLOT] += 1 };
        return Err("dropped: ring buffer full");
    };
    // The drops this record reports, taken from the block the frame counts in (a map of
    // their own cost a lookup a frame).
    // SAFETY: this CPU's own block; see `count`.
    let pending = unsafe { core::mem::replace(&mut (*counts)[PENDING_SLOT], 0) };
    let drops_before = if pending > u64::from(u32::MAX) {
        u32::MAX
    } else {
        pending as u32
    };
    // `tap` never calls us with cap == 0.
    let len = copy_len::<N>(cap);
    let record = entry.as_mut_ptr();
    // SAFETY: `record` points at a reserved, writable ring record of `size_of::<Record<N>>()`
    // bytes; `data` has room for `len <= N` bytes.
    let copied = unsafe {
        let h = &raw mut (*record).header;
        (*h).ts_mono_ns = head.ts_mono_ns;
        (*h).ifindex = head.ifindex;
        (*h).orig_len = head.orig_len;
        (*h).cap_len = len as u16;
        (*h).direction = head.direction;
        (*h).flags = head.flags;
        (*h).vlan_tci = head.vlan_tci;
        (*h).vlan_proto = head.vlan_proto;
        (*h).drops_before = drops_before;
        (*h).socket = SOCKET_UNKNOWN;
        if config.attribution & ATTRIBUTE != 0
            && let Some(scratch) = NTPTAP_SCRATCH.get_ptr(0)
        {
            (*h).socket = (*scratch).socket as u8;
            if (*h).socket == SOCKET_OWNED {
                (*h).owner = (*scratch).owner;
            }
            if config.attribution & ATTRIBUTE_LATENCY != 0 {
                let before = |at: u64| {
                    let d = head.ts_mono_ns.saturating_sub(at);
                    if at == 0 || d > u64::from(u32::MAX) {
                        0
                    } else {
                        d as u32
                    }
                };
                (*h).send_before = before((*scratch).stamps.send_ns);
                (*h).read_before = before((*scratch).stamps.read_ns);
                (*h).queued_before = before((*scratch).stamps.queued_ns);
            }
        }
        frame.copy::<N>((&raw mut (*record).data).cast(), len as u32)
    };
    if copied != 0 {
        entry.discard(0);
        count(counts, Counter::CopyFailed);
        return Err("dropped: copy failed");
    }
    // The ring adds an 8-byte header to each record.
    let flags = ring.map_or(0, |r| {
        wakeup_flags(config, r, size_of::<Record<N>>() as u64 + 8)
    });
    entry.submit(flags);
    count(counts, Counter::Captured);
    if head.flags & RECORD_TRUNCATED != 0 {
        count(counts, Counter::Truncated);
    }
    Ok(len as u32)
}
