//! Drops: NTP frames the kernel frees as dropped, with its reason and where.
//!
//! Every drop in the host passes through the `kfree_skb` tracepoint (a BTF tracepoint: no
//! kprobe, no trampoline, so it loads on locked-down hosts too), with the drop reason from 5.17
//! on. The program reads the `sk_buff` through offsets the loader took from the running
//! kernel's BTF ([`NTPTAP_DROP_LAYOUT`]): Rust BPF has no CO-RE, and the layout moves between
//! kernels. A drop that is not UDP on the port set costs two kernel reads and a comparison;
//! only NTP drops of ntptap's network namespace, on a watched interface (or on none yet, on
//! the way out), are counted by reason and recorded: the IP packet, behind a `DropInfo`.
//!
//! The program only reads: the tracepoint cannot change what the kernel does.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use ntptap_common::{
    DIRECTION_EGRESS, DIRECTION_INGRESS, DROP_COUNT_ENTRIES, DROP_HEADERS, DROP_HEADERS_QUICK,
    DROP_REASON_SLOTS, DROP_WINDOW, DropInfo, DropLayout, DropStat, FILTER_HOST, MAX_DATA,
    RECORD_DROP, RECORD_TRUNCATED, Record, RecordHeader, SMALL_DATA, TINY_DATA, drop_index,
};

use crate::shared::{
    NTPTAP_HOSTS4, NTPTAP_HOSTS6, NTPTAP_IFSLOTS, config, copy_len, port_watched_by,
    this_cpus_ring, wakeup_flags,
};

/// Read-only: where the fields are in this kernel (see `DropLayout`).
#[unsafe(no_mangle)]
static NTPTAP_DROP_LAYOUT: DropLayout = DropLayout {
    window: 0,
    window_len: 0,
    dev: 0,
    sk: 0,
    len: 0,
    data_len: 0,
    skb_iif: 0,
    protocol: 0,
    network_header: 0,
    head: 0,
    data: 0,
    dev_ifindex: 0,
    dev_net: 0,
    sk_net: 0,
    net_inum: 0,
    netns: 0,
    consumed: u32::MAX,
    quick: 0,
    quick_len: 0,
    quick_protocol: 0,
    quick_network_header: 0,
    quick_head: 0,
    pad: [0; 2],
};

/// Per-CPU drop counters: by reason, and `DropStat`, per direction (see `drop_index`).
#[map(name = "NTPTAP_DROP_COUNTS")]
static NTPTAP_DROP_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_COUNT_ENTRIES, 0);

/// This CPU's copy of the `sk_buff` window and the frame's first header bytes.
#[map(name = "NTPTAP_DROP_SCRATCH")]
static NTPTAP_DROP_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct Scratch {
    window: [u8; DROP_WINDOW],
    headers: [u8; DROP_HEADERS],
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_UDP: u8 = 17;

/// Drops with the kernel's reason (5.17 and later: `kfree_skb(skb, location, reason, ...)`).
#[btf_tracepoint(function = "kfree_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_drop(ctx: BtfTracePointContext) -> i32 {
    let reason: u64 = ctx.arg(2);
    on_drop(&ctx, reason as u32);
    0
}

/// Drops on kernels whose tracepoint has no reason (`kfree_skb(skb, location)`, before 5.17).
#[btf_tracepoint(function = "kfree_skb")]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_drop_noreason(ctx: BtfTracePointContext) -> i32 {
    on_drop(&ctx, 0);
    0
}

#[inline(always)]
fn layout() -> DropLayout {
    // SAFETY: a read of a static the loader rewrote before load; volatile so the compiler does
    // not fold the default in.
    unsafe { core::ptr::read_volatile(&raw const NTPTAP_DROP_LAYOUT) }
}

#[inline(always)]
fn count(direction: u8, slot: u32) {
    if let Some(c) = NTPTAP_DROP_COUNTS.get_ptr_mut(drop_index(direction, slot)) {
        // SAFETY: this CPU's own slot; see `count` in main.rs.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn stat(direction: u8, stat: DropStat) {
    count(direction, DROP_REASON_SLOTS + stat as u32);
}

/// Read a `T` at kernel address `src`; `None` if the kernel would not.
#[inline(always)]
fn read<T: Copy + Default>(src: u64) -> Option<T> {
    let mut v = T::default();
    // SAFETY: the helper writes at most size_of::<T>() bytes into `v` and checks `src`.
    let ret = unsafe {
        bpf_probe_read_kernel(
            (&raw mut v).cast(),
            size_of::<T>() as u32,
            src as *const core::ffi::c_void,
        )
    };
    (ret == 0).then_some(v)
}

/// The `T` at `off` in the `sk_buff` at `skb`: a direct load, which the verifier allows in a
/// BTF tracepoint when `off` (a constant from `.rodata`) and the size match a field in the
/// kernel's BTF, and makes safe (a fault reads zero).
#[inline(always)]
fn btf_load<T: Copy>(skb: u64, off: u32) -> T {
    // SAFETY: see above; the kernel's exception table covers the load.
    unsafe { core::ptr::read_volatile((skb + u64::from(off)) as *const T) }
}

/// Read `len` bytes (at most `N`) at kernel address `src` into `dst`.
#[inline(always)]
fn read_into<const N: usize>(dst: &mut [u8; N], len: u32, src: u64) -> Option<()> {
    let len = len.min(N as u32);
    // SAFETY: at most N bytes into a buffer of N; the helper checks `src`.
    let ret = unsafe {
        bpf_probe_read_kernel(
            dst.as_mut_ptr().cast(),
            len,
            src as *const core::ffi::c_void,
        )
    };
    (ret == 0).then_some(())
}

/// A `T` at `off` (a loader-given offset, bounded here) of `bytes`.
#[inline(always)]
fn field<T: Copy, const N: usize>(bytes: &[u8; N], off: u32) -> T {
    let off = (off as usize).min(N - size_of::<T>());
    // SAFETY: `off + size_of::<T>() <= N`; any bit pattern is a valid integer.
    unsafe { core::ptr::read_unaligned(bytes.as_ptr().add(off).cast()) }
}

#[inline(always)]
fn on_drop(ctx: &BtfTracePointContext, reason: u32) {
    let skb: u64 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let _ = try_drop(skb, location, reason);
}

#[inline(always)]
fn try_drop(skb: u64, location: u64, reason: u32) -> Option<()> {
    let layout = layout();
    if reason == layout.consumed {
        return None;
    }
    let scratch = NTPTAP_DROP_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's own scratch slot, used only until the program returns.
    let scratch = unsafe { &mut *scratch };
    // What every drop costs: three fields of the skb, read directly (the verifier checks each
    // load against the kernel's BTF, where the loader found the offsets; no helper call), and
    // the first bytes of its IP packet.
    let protocol = u16::from_be(btf_load::<u16>(skb, layout.protocol + layout.window));
    if protocol != ETH_P_IP && protocol != ETH_P_IPV6 {
        return None;
    }
    // Newer verifiers type `head` as untrusted memory, not a scalar, and anything computed from
    // it stays a pointer: it is only ever a helper's source argument. Sizes and offsets come
    // from scalar fields (the network header's offset, the window's copies), never from it.
    let head: u64 = btf_load(skb, layout.head + layout.window);
    let network_offset: u16 = btf_load(skb, layout.network_header + layout.window);
    let network = head + u64::from(network_offset);
    read_into(&mut scratch.headers, DROP_HEADERS_QUICK as u32, network)?;
    // Behind an IPv4 header with more options, the ports are further on.
    if protocol == ETH_P_IP && usize::from(scratch.headers[0] & 0x0f) * 4 + 4 > DROP_HEADERS_QUICK {
        read_into(&mut scratch.headers, DROP_HEADERS as u32, network)?;
    }
    let h = &scratch.headers;
    let (udp, ip_len) = match (protocol, h[0] >> 4) {
        (ETH_P_IP, 4) => {
            let ihl = usize::from(h[0] & 0x0f) * 4;
            // A later fragment has no UDP header.
            let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
            if h[9] != IPPROTO_UDP || ihl < 20 || fragment != 0 {
                return None;
            }
            (ihl, u32::from(u16::from_be_bytes([h[2], h[3]])))
        }
        (ETH_P_IPV6, 6) => {
            if h[6] != IPPROTO_UDP {
                return None;
            }
            (40, 40 + u32::from(u16::from_be_bytes([h[4], h[5]])))
        }
        _ => return None,
    };
    // The volatile read keeps the compiler from folding the bound the verifier needs.
    // SAFETY: a read of a local.
    let udp = unsafe { core::ptr::read_volatile(&raw const udp) };
    if udp > DROP_HEADERS - 8 {
        return None;
    }
    let sport = u16::from_be_bytes([h[udp], h[udp + 1]]);
    let dport = u16::from_be_bytes([h[udp + 2], h[udp + 3]]);
    let config = config();
    if !port_watched_by(&config, sport) && !port_watched_by(&config, dport) {
        return None;
    }
    // An NTP frame: whose is it?
    if config.filter & FILTER_HOST != 0 && !host_listed(h, protocol) {
        return None;
    }
    read_into(
        &mut scratch.window,
        layout.window_len,
        skb + u64::from(layout.window),
    )?;
    let w = &scratch.window;
    let (direction, ifindex) = whose(&layout, w)?;
    stat(direction, DropStat::Matched);
    let slot = if reason < DROP_REASON_SLOTS {
        reason
    } else {
        DROP_REASON_SLOTS - 1
    };
    count(direction, slot);

    record(
        &layout,
        w,
        (network, network_offset),
        ip_len,
        (direction, ifindex),
        location,
        reason,
    )
}

/// Write a drop record: the header, `DropInfo`, and the IP packet from `network` on (the
/// address, and its offset from `skb->head`).
#[inline(always)]
fn record(
    layout: &DropLayout,
    w: &[u8; DROP_WINDOW],
    (network, network_offset): (u64, u16),
    ip_len: u32,
    (direction, ifindex): (u8, u32),
    location: u64,
    reason: u32,
) -> Option<()> {
    // Scalars only: `head` and `data` as the window's copy holds them (a helper's output is a
    // scalar on every verifier), never `network`, which a newer verifier calls a pointer.
    let head: u64 = field(w, layout.head);
    let config = config();
    // The IP packet's bytes in the skb's linear part, from the network header on.
    let len: u32 = field(w, layout.len);
    let data_len: u32 = field(w, layout.data_len);
    let data: u64 = field(w, layout.data);
    let linear_end = data.wrapping_sub(head) + u64::from(len.saturating_sub(data_len));
    let available = linear_end.saturating_sub(u64::from(network_offset));
    let mut cap = u64::from(ip_len).min(available);
    let snap = u64::from(config.snaplen).min(MAX_DATA as u64);
    cap = cap.min(snap);
    if cap == 0 {
        stat(direction, DropStat::CopyFailed);
        return None;
    }
    let header = RecordHeader {
        // SAFETY: the helper takes no arguments and has no preconditions.
        ts_mono_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        orig_len: ip_len,
        cap_len: 0,
        direction,
        flags: RECORD_DROP
            | if cap < u64::from(ip_len) {
                RECORD_TRUNCATED
            } else {
                0
            },
        // No VLAN tag, socket, owner or latency stamps: a drop record says why, in its `DropInfo`.
        ..RecordHeader::default()
    };
    let info = DropInfo {
        location,
        reason,
        pad: 0,
    };
    let info_len = size_of::<DropInfo>() as u64;
    if cap + info_len <= TINY_DATA as u64 {
        emit::<TINY_DATA, { TINY_DATA - 16 }>(header, info, network, cap)
    } else if cap + info_len <= SMALL_DATA as u64 {
        emit::<SMALL_DATA, { SMALL_DATA - 16 }>(header, info, network, cap)
    } else {
        emit::<MAX_DATA, { MAX_DATA - 16 }>(header, info, network, cap)
    }
}

/// Which way a dropped NTP frame was going and on which interface; `None` if it is not
/// ntptap's business (another network namespace, an interface it does not watch).
#[inline(always)]
fn whose(layout: &DropLayout, w: &[u8; DROP_WINDOW]) -> Option<(u8, u32)> {
    let dev: u64 = field(w, layout.dev);
    let sk: u64 = field(w, layout.sk);
    let iif: u32 = field(w, layout.skb_iif);
    let direction = if iif != 0 {
        DIRECTION_INGRESS
    } else {
        DIRECTION_EGRESS
    };
    let (ifindex, net) = if dev != 0 {
        let ifindex: u32 = read(dev + u64::from(layout.dev_ifindex))?;
        (ifindex, read::<u64>(dev + u64::from(layout.dev_net))?)
    } else if sk != 0 {
        (0, read::<u64>(sk + u64::from(layout.sk_net))?)
    } else {
        (0, 0)
    };
    if layout.netns != 0 {
        if net == 0 {
            return None;
        }
        let inum: u32 = read(net + u64::from(layout.net_inum))?;
        if inum != layout.netns {
            return None;
        }
    }
    // A frame on an interface ntptap does not watch is not its business either.
    if ifindex != 0
        && NTPTAP_IFSLOTS
            .get(ifindex % ntptap_common::IFSLOT_ENTRIES)
            .is_none_or(|slot| *slot == 0)
    {
        return None;
    }
    Some((direction, ifindex))
}

/// Whether the dropped frame's source or destination is in `--host`'s sets.
#[inline(always)]
fn host_listed(h: &[u8; DROP_HEADERS], protocol: u16) -> bool {
    if protocol == ETH_P_IP {
        let src: u32 = field(h, 12);
        let dst: u32 = field(h, 16);
        // SAFETY: lookups in a hash map with keys of the declared type.
        unsafe { NTPTAP_HOSTS4.get(src).is_some() || NTPTAP_HOSTS4.get(dst).is_some() }
    } else {
        let src: [u8; 16] = field(h, 8);
        let dst: [u8; 16] = field(h, 24);
        // SAFETY: as above.
        unsafe { NTPTAP_HOSTS6.get(src).is_some() || NTPTAP_HOSTS6.get(dst).is_some() }
    }
}

/// Reserve a record of `N` data bytes, write `info` and `cap` bytes from `network` into it,
/// and submit it.
#[inline(always)]
fn emit<const N: usize, const M: usize>(
    mut header: RecordHeader,
    info: DropInfo,
    network: u64,
    cap: u64,
) -> Option<()> {
    let direction = header.direction;
    let config = config();
    let ring = this_cpus_ring(&config);
    let Some(mut entry) = ring.and_then(|r| r.reserve_untyped::<Record<N>>(0)) else {
        stat(direction, DropStat::RingFull);
        return None;
    };
    // M is N less the info's 16 bytes (no generic const arithmetic on stable).
    let len = copy_len::<M>(cap);
    header.cap_len = len as u16;
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reserved, writable record of size_of::<Record<N>>() bytes: the
    // info takes its first 16 data bytes, the frame at most N - 16 after them.
    let copied = unsafe {
        (*record).header = header;
        let data = (&raw mut (*record).data).cast::<u8>();
        core::ptr::write_unaligned(data.cast::<DropInfo>(), info);
        bpf_probe_read_kernel(
            data.add(size_of::<DropInfo>()).cast(),
            len as u32,
            network as *const core::ffi::c_void,
        )
    };
    if copied != 0 {
        entry.discard(0);
        stat(direction, DropStat::CopyFailed);
        return None;
    }
    let flags = ring.map_or(0, |r| {
        wakeup_flags(&config, r, size_of::<Record<N>>() as u64 + 8)
    });
    entry.submit(flags);
    stat(direction, DropStat::Recorded);
    Some(())
}
