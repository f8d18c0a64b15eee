//! Baselines for `cargo xtask bench` (`tests/examples/kernel_bench.rs`), never attached by the
//! loader: empty programs at each hook, one clock read, and the least any filter or capture
//! can do. They show what ntptap's programs cost above the floor of their hook.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_NO_WAKEUP, TC_ACT_OK, TC_ACT_UNSPEC, bpf_sock_tuple, xdp_action},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_sk_lookup_udp, bpf_sk_release},
    },
    macros::{btf_tracepoint, cgroup_skb, cgroup_sock, cgroup_sock_addr, classifier, xdp},
    programs::{
        BtfTracePointContext, SkBuffContext, SockAddrContext, SockContext, TcContext, XdpContext,
    },
};
use ntptap_common::{Record, TINY_DATA};

use crate::{
    Frame, TcFrame, XdpFrame,
    parse::{
        self,
        offsets::{
            ETH_HLEN, ETH_P_IP, ETH_P_IPV6, ETH_TYPE, IPPROTO_UDP, IPV4_ADDRESSES, IPV4_MIN_HLEN,
            IPV4_PROTOCOL, IPV6_HLEN, IPV6_NEXT_HEADER,
        },
    },
    shared::{NTPTAP_SHARDS, copy_len},
};

/// Does nothing: the baseline `cargo xtask bench` measures the other programs against, in the
/// same run. The loader never attaches it.
#[xdp]
pub fn ntptap_nop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmark's cost breakdown, never attached: one clock read, which every captured
/// frame pays for its timestamp.
#[xdp]
pub fn ntptap_cost_clock(_ctx: XdpContext) -> u32 {
    // SAFETY: the helper takes no arguments and has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    core::hint::black_box(ts);
    xdp_action::XDP_PASS
}

/// The benchmark's floor for a frame that is not NTP: the least any filter does to pass over
/// it (Ethernet type, IPv4 or IPv6 without options or extension headers, UDP, both ports
/// against 123), with no counters, no configuration and no VLAN tags. Never attached.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_cost_filter(ctx: XdpContext) -> u32 {
    core::hint::black_box(least_filter(ctx.data(), ctx.data_end()));
    xdp_action::XDP_PASS
}

/// [`ntptap_cost_filter`] at TC, whose return code tells the benchmark the verdict (both
/// codes leave the frame alone): `TC_ACT_OK` for NTP, `TC_ACT_UNSPEC` otherwise.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_cost_filter_tc(ctx: TcContext) -> i32 {
    if least_filter(ctx.data(), ctx.data_end()) {
        TC_ACT_OK
    } else {
        TC_ACT_UNSPEC
    }
}

/// The benchmark's floor for an NTP frame: the least any capture does with it (one clock
/// read, a ring record reserved, the frame copied in, the record submitted without a
/// wakeup), with no parsing, no counters and no configuration. Never attached.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_cost_capture(ctx: XdpContext) -> u32 {
    least_capture(&XdpFrame::<false>(&ctx));
    xdp_action::XDP_PASS
}

/// [`ntptap_cost_capture`] at TC.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_cost_capture_tc(ctx: TcContext) -> i32 {
    least_capture(&TcFrame(&ctx));
    TC_ACT_UNSPEC
}

/// The floor of an NTP frame captured with the socket that takes it (ntptap's default,
/// process attribution, at an ingress hook): [`ntptap_cost_capture`] plus one
/// `bpf_sk_lookup_udp` of the frame's IPv4 addresses and ports, and the release of what it
/// finds; no owner looked up, no counters. Never attached.
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_cost_capture_lookup(ctx: XdpContext) -> u32 {
    least_lookup(&ctx, ctx.data(), ctx.data_end());
    least_capture(&XdpFrame::<false>(&ctx));
    xdp_action::XDP_PASS
}

/// [`ntptap_cost_capture_lookup`] at TC.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_cost_capture_lookup_tc(ctx: TcContext) -> i32 {
    least_lookup(&ctx, ctx.data(), ctx.data_end());
    least_capture(&TcFrame(&ctx));
    TC_ACT_UNSPEC
}

/// The socket an untagged IPv4 UDP frame without options goes to: looked up, released.
#[inline(always)]
fn least_lookup<C: EbpfContext>(ctx: &C, start: usize, end: usize) {
    let (Some(addresses), Some(ports)) = (
        parse::at::<8>(start, end, ETH_HLEN + IPV4_ADDRESSES),
        parse::at::<4>(start, end, ETH_HLEN + IPV4_MIN_HLEN),
    ) else {
        return;
    };
    // SAFETY: an all-zero tuple is a valid value of this plain-integer union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // Plain integers into a union field; the bytes stay in network order.
    tuple.__bindgen_anon_1.ipv4.saddr =
        u32::from_ne_bytes([addresses[0], addresses[1], addresses[2], addresses[3]]);
    tuple.__bindgen_anon_1.ipv4.daddr =
        u32::from_ne_bytes([addresses[4], addresses[5], addresses[6], addresses[7]]);
    tuple.__bindgen_anon_1.ipv4.sport = u16::from_ne_bytes([ports[0], ports[1]]);
    tuple.__bindgen_anon_1.ipv4.dport = u16::from_ne_bytes([ports[2], ports[3]]);
    // SAFETY: the context the kernel gave us and a tuple of 12 bytes on the stack.
    let sk = unsafe {
        bpf_sk_lookup_udp(
            ctx.as_ptr(),
            &raw mut tuple,
            12,
            crate::owners::CURRENT_NETNS,
            0,
        )
    };
    if !sk.is_null() {
        // SAFETY: releases the reference the lookup took.
        unsafe { bpf_sk_release(sk.cast()) };
    }
}

/// See [`ntptap_cost_filter`].
#[inline(always)]
fn least_filter(start: usize, end: usize) -> bool {
    let Some(ethertype) = parse::at::<2>(start, end, ETH_TYPE) else {
        return false;
    };
    let (proto, l4) = match parse::be16(*ethertype) {
        ETH_P_IP => (ETH_HLEN + IPV4_PROTOCOL, ETH_HLEN + IPV4_MIN_HLEN),
        ETH_P_IPV6 => (ETH_HLEN + IPV6_NEXT_HEADER, ETH_HLEN + IPV6_HLEN),
        _ => return false,
    };
    let (Some(proto), Some(ports)) = (
        parse::at::<1>(start, end, proto),
        parse::at::<4>(start, end, l4),
    ) else {
        return false;
    };
    proto[0] == IPPROTO_UDP
        && (parse::be16([ports[0], ports[1]]) == 123 || parse::be16([ports[2], ports[3]]) == 123)
}

/// See [`ntptap_cost_capture`].
#[inline(always)]
fn least_capture<F: Frame>(frame: &F) {
    // SAFETY: the helper takes no arguments and has no preconditions.
    let ts = unsafe { bpf_ktime_get_ns() };
    let Some(mut entry) = NTPTAP_SHARDS
        .get(0)
        .and_then(|r| r.reserve_untyped::<Record<TINY_DATA>>(0))
    else {
        return;
    };
    let len = copy_len::<TINY_DATA>(frame.len());
    let record = entry.as_mut_ptr();
    // SAFETY: a reserved record of `size_of::<Record<TINY_DATA>>()` bytes, `len <= TINY_DATA`.
    let copied = unsafe {
        (*record).header.ts_mono_ns = ts;
        (*record).header.cap_len = len as u16;
        frame.copy::<TINY_DATA>((&raw mut (*record).data).cast(), len as u32)
    };
    if copied == 0 {
        entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    } else {
        entry.discard(0);
    }
}

/// Does nothing at TC: the baseline for the TC programs (an skb test run costs more than an
/// XDP one before any program runs). The loader never attaches it.
#[classifier]
pub fn ntptap_nop_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Empty programs at the attribution hooks (`cargo xtask bench` runs them beside ntptap's on
/// the same socket calls, and compares the kernel's run-time statistics). Never attached by
/// the loader. Each allows the call, as ntptap's do.
#[cgroup_sock_addr(sendmsg4)]
pub fn ntptap_nop_sendmsg4(_ctx: SockAddrContext) -> i32 {
    1
}

/// See [`ntptap_nop_sendmsg4`].
#[cgroup_sock_addr(connect4)]
pub fn ntptap_nop_connect4(_ctx: SockAddrContext) -> i32 {
    1
}

/// See [`ntptap_nop_sendmsg4`].
#[cgroup_sock_addr(recvmsg4)]
pub fn ntptap_nop_recvmsg4(_ctx: SockAddrContext) -> i32 {
    1
}

/// See [`ntptap_nop_sendmsg4`].
#[cgroup_sock(post_bind4)]
pub fn ntptap_nop_post_bind4(_ctx: SockContext) -> i32 {
    1
}

/// See [`ntptap_nop_sendmsg4`].
#[cgroup_sock(sock_create)]
pub fn ntptap_nop_sock_create(_ctx: SockContext) -> i32 {
    1
}

/// See [`ntptap_nop_sendmsg4`].
#[cgroup_sock(sock_release)]
pub fn ntptap_nop_sock_release(_ctx: SockContext) -> i32 {
    1
}

/// An empty program at `tp_btf/kfree_skb`, where ntptap's drop program runs: the floor the
/// bench measures `ntptap_drop` against, on the same drops. Never attached by the loader.
#[btf_tracepoint(function = "kfree_skb")]
pub fn ntptap_nop_kfree_skb(_ctx: BtfTracePointContext) -> i32 {
    0
}

/// An empty program at `cgroup_skb` ingress, where `--latency`'s queue stamp runs: its floor
/// in the bench. Never attached by the loader; it allows every packet, as ntptap's does.
#[cgroup_skb(ingress)]
pub fn ntptap_nop_sock_queue(_ctx: SkBuffContext) -> i32 {
    1
}
