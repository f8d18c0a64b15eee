//! Process attribution: who owns the socket an NTP frame leaves from or goes to.
//!
//! Hooks on the cgroup v2 root run in the context of the process that uses a UDP socket, once
//! per socket: when it binds it (to any port: a client's port says nothing of NTP yet) or
//! connects it to an NTP port, and with `--attribution` when it creates it (every UDP socket:
//! a client that neither binds nor connects is named too). Each records that process under the
//! socket's kernel address in [`NTPTAP_OWNERS`]; closing the socket removes the entry. So the
//! datagram path of other programs pays nothing. With `--latency`, hooks on every UDP send to
//! an address and read with one also stamp those calls (and record a socket's new user).
//! The capture programs then find a frame's socket (egress: the one that sent it; ingress: the
//! one the stack will deliver it to, by `bpf_sk_lookup_udp`) and look its owner up; a socket
//! opened before ntptap started has none there, and is looked up by its local address and
//! port in [`NTPTAP_EARLIER`], which the loader fills from `/proc` at start. Every hook is a
//! cgroup program: they load on every kernel of the matrix and on locked-down hosts without
//! kprobes or fentry.
//!
//! A hook never changes what the socket call does: each returns 1 ("allow").

use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::{
    EbpfContext,
    bindings::{bpf_sock, bpf_sock_tuple},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_netns_cookie,
            bpf_sk_lookup_udp, bpf_sk_release, bpf_skb_load_bytes,
        },
    },
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, map},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use ntptap_common::{
    ATTRIBUTE_CGROUPS, ATTRIBUTE_COMMS, ATTRIBUTE_INCLUDE, ATTRIBUTE_LATENCY, ATTRIBUTE_PIDS,
    CGROUP_LEVELS, COMM_LEN, Config, EARLIER_ENTRIES, Endpoint, OWNER_ENTRIES, OWNER_STATS, Owner,
    OwnerStat, SELECT_ENTRIES, SELECT_EXCLUDE, SELECT_EXCLUDED, SELECT_INCLUDE, SELECT_INCLUDED,
    SOCKET_NONE, SOCKET_OWNED, SOCKET_UNKNOWN, SOCKET_UNOWNED, STAMP_ENTRIES, StampKey, Stamps,
};

use crate::{
    parse::Addresses,
    shared::{config, port_watched_by},
};

/// Socket to owner, keyed by the socket's kernel address (the same `struct sock *` every hook
/// sees). An entry lives from the socket's creation to its close. A plain hash map: an LRU
/// one's insert took 260 ns at every socket() against 140 ns (owner_bench); when it is full,
/// a new socket goes unrecorded (counted as evicted) until others close.
#[map(name = "NTPTAP_OWNERS")]
static NTPTAP_OWNERS: HashMap<u64, Owner> = HashMap::with_max_entries(OWNER_ENTRIES, 0);

/// The owners of the sockets that were open before ntptap started, by local end (exact
/// address, or zero for every address): filled by the loader, read for a frame whose socket
/// has no entry in [`NTPTAP_OWNERS`].
#[map(name = "NTPTAP_EARLIER")]
static NTPTAP_EARLIER: HashMap<Endpoint, Owner> = HashMap::with_max_entries(EARLIER_ENTRIES, 0);

/// When each NTP socket last read from and sent to each remote end (`--latency`): the
/// capture program at TC egress looks up the socket and the frame's destination.
#[map(name = "NTPTAP_STAMPS")]
static NTPTAP_STAMPS: LruHashMap<StampKey, Stamps> = LruHashMap::with_max_entries(STAMP_ENTRIES, 0);

/// Per-CPU counts of what the hooks did (see `OwnerStat`).
#[map(name = "NTPTAP_OWNER_STATS")]
static NTPTAP_OWNER_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(OWNER_STATS, 0);

/// `--pid` (value `SELECT_INCLUDE` or `SELECT_EXCLUDE`).
#[map(name = "NTPTAP_SELECT_PIDS")]
static NTPTAP_SELECT_PIDS: HashMap<u32, u8> = HashMap::with_max_entries(SELECT_ENTRIES, 0);

/// `--comm`, NUL-padded to `COMM_LEN`.
#[map(name = "NTPTAP_SELECT_COMMS")]
static NTPTAP_SELECT_COMMS: HashMap<[u8; COMM_LEN], u8> =
    HashMap::with_max_entries(SELECT_ENTRIES, 0);

/// `--cgroup`, by cgroup id: a process in the directory or below it.
#[map(name = "NTPTAP_SELECT_CGROUPS")]
static NTPTAP_SELECT_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(SELECT_ENTRIES, 0);

const IPPROTO_UDP: u32 = 17;
/// `bpf_sk_lookup_udp`'s netns argument: the namespace of the device the frame is on.
pub(crate) const CURRENT_NETNS: u64 = u64::MAX;

#[inline(always)]
fn stat(which: OwnerStat) {
    if let Some(slot) = NTPTAP_OWNER_STATS.get_ptr_mut(which as u32) {
        // SAFETY: this CPU's own slot; see `count` in main.rs.
        unsafe { *slot += 1 };
    }
}

/// Fold a selection map's verdict on one key into `select`.
#[inline(always)]
fn verdict(select: u32, value: Option<&u8>) -> u32 {
    match value.copied() {
        Some(SELECT_INCLUDE) => select | SELECT_INCLUDED,
        Some(SELECT_EXCLUDE) => select | SELECT_EXCLUDED,
        _ => select,
    }
}

/// How the current task fares against `--pid`, `--comm` and `--cgroup`. Run when an owner
/// is recorded, so the capture programs only test a bit.
#[inline(always)]
fn selection(config: &Config, pid: u32, comm: &[u8; COMM_LEN], cgroup: u64) -> u32 {
    let mut select = 0;
    if config.attribution & ATTRIBUTE_PIDS != 0 {
        // SAFETY: a lookup in a hash map with a key of its declared type.
        select = verdict(select, unsafe { NTPTAP_SELECT_PIDS.get(pid) });
    }
    if config.attribution & ATTRIBUTE_COMMS != 0 {
        // SAFETY: as above.
        select = verdict(select, unsafe { NTPTAP_SELECT_COMMS.get(comm) });
    }
    if config.attribution & ATTRIBUTE_CGROUPS != 0 {
        // SAFETY: as above.
        select = verdict(select, unsafe { NTPTAP_SELECT_CGROUPS.get(cgroup) });
        for level in 0..CGROUP_LEVELS {
            // SAFETY: the helper takes a level and returns 0 past the task's depth.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level) };
            if id == 0 || id == cgroup {
                break;
            }
            // SAFETY: as above.
            select = verdict(select, unsafe { NTPTAP_SELECT_CGROUPS.get(id) });
        }
    }
    select
}

/// Record the current task as the owner of socket `sk` (its kernel address), unless it is
/// already. `ctx` is the hook's context, for the namespace cookie.
#[inline(always)]
fn record<C: EbpfContext>(ctx: &C, sk: u64, new: bool) {
    // SAFETY: the helpers take no arguments.
    let (pid_tgid, uid_gid) = (bpf_get_current_pid_tgid(), bpf_get_current_uid_gid());
    let pid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    // A socket being created has no entry yet: no lookup.
    let known = if new {
        None
    } else {
        // SAFETY: a lookup with a key of the declared type.
        unsafe { NTPTAP_OWNERS.get(sk) }
    };
    if let Some(known) = known
        && known.pid == pid
        && known.tid == tid
    {
        return;
    }
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    // SAFETY: the helper takes no arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let config = config();
    let owner = Owner {
        pid,
        tid,
        uid: uid_gid as u32,
        select: selection(&config, pid, &comm, cgroup_id),
        cgroup_id,
        // SAFETY: the helper takes the hook's own context.
        netns_cookie: unsafe { bpf_get_netns_cookie(ctx.as_ptr()) },
        comm,
    };
    stat(if known.is_some() {
        OwnerStat::Changed
    } else {
        OwnerStat::Recorded
    });
    let _ = NTPTAP_OWNERS.insert(sk, owner, 0);
}

/// In-host latency (`--latency`): stamps each NTP datagram as the stack queues it on its
/// socket (the socket filter's point, just before the receive queue), keyed by the socket and
/// the datagram's source. Runs for every datagram delivered to a local socket; returns 1
/// ("allow") always.
#[cgroup_skb(ingress)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_sock_queue(ctx: SkBuffContext) -> i32 {
    let _ = queued(&ctx);
    1
}

#[inline(always)]
fn queued(ctx: &SkBuffContext) -> Option<()> {
    let skb = ctx.skb.skb;
    // SAFETY: reading fields of the context the kernel gave us.
    let (protocol, sk) = unsafe { ((*skb).protocol, (*skb).__bindgen_anon_2.sk) };
    if sk.is_null() {
        return None;
    }
    let mut key = StampKey {
        sk: sk as u64,
        addr: [0; 16],
        port: 0,
        pad: [0; 6],
    };
    // The skb's data starts at the network header here. One read takes the header and the
    // ports behind it (a second one only behind IPv4 options): this runs for every packet
    // delivered to a local socket, TCP included.
    let mut ports = [0u8; 4];
    match u16::from_be(protocol as u16) {
        0x0800 => {
            let mut h = [0u8; 24];
            skb_bytes(ctx, 0, &mut h)?;
            if h[9] != IPPROTO_UDP as u8 {
                return None;
            }
            key.addr[..4].copy_from_slice(&h[12..16]);
            let ihl = u32::from(h[0] & 0x0f) * 4;
            if ihl == 20 {
                ports.copy_from_slice(&h[20..24]);
            } else {
                skb_bytes(ctx, ihl, &mut ports)?;
            }
        }
        0x86dd => {
            let mut h = [0u8; 44];
            skb_bytes(ctx, 0, &mut h)?;
            if h[6] != IPPROTO_UDP as u8 {
                return None;
            }
            key.addr.copy_from_slice(&h[8..24]);
            ports.copy_from_slice(&h[40..44]);
        }
        _ => return None,
    }
    let (sport, dport) = (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    let config = config();
    if !port_watched_by(&config, sport) && !port_watched_by(&config, dport) {
        return None;
    }
    key.port = sport;
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(stamps) = NTPTAP_STAMPS.get_ptr_mut(key) {
        // SAFETY: a value of the map; a racing reader sees the old or the new stamp.
        unsafe { (*stamps).queued_ns = now };
    } else {
        let stamps = Stamps {
            queued_ns: now,
            ..Stamps::default()
        };
        let _ = NTPTAP_STAMPS.insert(key, stamps, 0);
    }
    Some(())
}

/// Copy `N` bytes of the packet from `offset` into `dst` (a constant length, which every
/// verifier takes; aya's `load_bytes` passes one it may bound to zero).
#[inline(always)]
fn skb_bytes<const N: usize>(ctx: &SkBuffContext, offset: u32, dst: &mut [u8; N]) -> Option<()> {
    // SAFETY: the context the kernel gave us, and N bytes of room at `dst`.
    let ret = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            offset,
            dst.as_mut_ptr().cast(),
            N as u32,
        )
    };
    (ret == 0).then_some(())
}

/// What a `sock_addr` hook stamps for in-host latency (`--latency`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// Nothing (connect).
    None,
    /// `recvmsg` returned a datagram from the call's address.
    Read,
    /// `sendmsg` to the call's address began.
    Send,
}

/// Stamp `now` as socket `sk`'s last read from or send to the call's address.
#[inline(always)]
fn stamp(ctx: &SockAddrContext, sk: u64, port: u16, which: Stamp, v6: bool) {
    let addr = ctx.sock_addr;
    let mut key = StampKey {
        sk,
        addr: [0; 16],
        port,
        pad: [0; 6],
    };
    // SAFETY: reading fields of the context the kernel gave us, each with a load of its own
    // at its own offset (the verifier refuses a context pointer moved by a copy loop).
    unsafe {
        // The verifier lets each hook read its own family's field only.
        if v6 {
            let words = [
                core::ptr::read_volatile(&raw const (*addr).user_ip6[0]),
                core::ptr::read_volatile(&raw const (*addr).user_ip6[1]),
                core::ptr::read_volatile(&raw const (*addr).user_ip6[2]),
                core::ptr::read_volatile(&raw const (*addr).user_ip6[3]),
            ];
            key.addr = core::mem::transmute::<[u32; 4], [u8; 16]>(words);
        } else {
            let ip4 = core::ptr::read_volatile(&raw const (*addr).user_ip4);
            key.addr[..4].copy_from_slice(&ip4.to_ne_bytes());
        }
    }
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // In place where the conversation is known: an insert takes the map's locks.
    if let Some(stamps) = NTPTAP_STAMPS.get_ptr_mut(key) {
        // SAFETY: a value of the map; a racing reader sees the old or the new stamp.
        unsafe {
            if which == Stamp::Read {
                (*stamps).read_ns = now;
            } else {
                (*stamps).send_ns = now;
            }
        }
        return;
    }
    let mut stamps = Stamps::default();
    if which == Stamp::Read {
        stamps.read_ns = now;
    } else {
        stamps.send_ns = now;
    }
    let _ = NTPTAP_STAMPS.insert(key, stamps, 0);
}

/// The stamps of socket `sk` with remote end `addr` (IPv4 in the first 4 bytes) and `port`.
#[inline(always)]
pub fn stamps(sk: u64, addr: [u8; 16], port: u16) -> Stamps {
    let key = StampKey {
        sk,
        addr,
        port,
        pad: [0; 6],
    };
    NTPTAP_STAMPS.get_ptr(key).map_or(Stamps::default(), |s| {
        // SAFETY: a value of the map, read at once.
        unsafe { *s }
    })
}

/// A `sock_addr` hook: record the owner of a UDP socket whose peer (`user_port`, the address
/// the call names) or own port is on the port set, and with `--latency`, stamp the call.
#[inline(always)]
fn on_sock_addr(ctx: &SockAddrContext, which: Stamp, v6: bool) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: reading fields of the context the kernel gave us; `sk` is never null here.
    let (protocol, peer, sk) = unsafe {
        (
            (*addr).protocol,
            (*addr).user_port,
            (*addr).__bindgen_anon_1.sk,
        )
    };
    if protocol != IPPROTO_UDP {
        return 1;
    }
    // `user_port` holds the port in network byte order in its low 16 bits.
    let peer = u16::from_be(peer as u16);
    // SAFETY: `sk` is the socket of the call, valid for the hook's duration.
    let own = unsafe { (*sk).src_port } as u16;
    let config = config();
    if port_watched_by(&config, peer) || port_watched_by(&config, own) {
        record(ctx, sk as u64, false);
        if config.attribution & ATTRIBUTE_LATENCY != 0 && which != Stamp::None {
            stamp(ctx, sk as u64, peer, which, v6);
        }
    }
    1
}

/// Records the owner of a UDP socket connected to an NTP port.
#[cgroup_sock_addr(connect4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_connect4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, Stamp::None, false)
}

/// [`ntptap_connect4`] for IPv6 sockets.
#[cgroup_sock_addr(connect6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_connect6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, Stamp::None, true)
}

/// Records the owner of a UDP socket sending to an NTP port, or from one (a server's reply).
#[cgroup_sock_addr(sendmsg4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, Stamp::Send, false)
}

/// [`ntptap_sendmsg4`] for IPv6 sockets.
#[cgroup_sock_addr(sendmsg6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, Stamp::Send, true)
}

/// Records the reader of a UDP socket that receives from an NTP port or on one.
#[cgroup_sock_addr(recvmsg4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_recvmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, Stamp::Read, false)
}

/// [`ntptap_recvmsg4`] for IPv6 sockets.
#[cgroup_sock_addr(recvmsg6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_recvmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(&ctx, Stamp::Read, true)
}

/// Records the creator of every UDP socket as its owner (the port it will use is not known
/// yet). Runs once per socket of every protocol; a socket that is not UDP costs a comparison.
#[cgroup_sock(sock_create)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_sock_create(ctx: SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: reading a field of the context the kernel gave us.
    if unsafe { (*sk).protocol } == IPPROTO_UDP {
        record(&ctx, sk as u64, true);
    }
    1
}

/// A `sock` hook after bind: record the owner of every UDP socket bound, to an NTP port (a
/// server) or to any other (a client that binds before it sends: its port says nothing yet).
#[inline(always)]
fn on_bind(ctx: &SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: reading a field of the context the kernel gave us.
    if unsafe { (*sk).protocol } == IPPROTO_UDP {
        record(ctx, sk as u64, false);
    }
    1
}

/// Records the owner of a UDP socket bound.
#[cgroup_sock(post_bind4)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_post_bind4(ctx: SockContext) -> i32 {
    on_bind(&ctx)
}

/// [`ntptap_post_bind4`] for IPv6 sockets.
#[cgroup_sock(post_bind6)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_post_bind6(ctx: SockContext) -> i32 {
    on_bind(&ctx)
}

/// Forgets the owner of a UDP socket being closed, so its address can serve another socket.
#[cgroup_sock(sock_release)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's entry-point macros hand the context over by value"
)]
pub fn ntptap_sock_release(ctx: SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: reading a field of the context the kernel gave us.
    if unsafe { (*sk).protocol } != IPPROTO_UDP {
        return 1;
    }
    // A lookup first: it takes no lock, where a delete locks its bucket even for a key that
    // is not there, and by default most sockets closed were never bound (measured:
    // `cargo xtask bench`).
    // SAFETY: a lookup with a key of the declared type.
    if unsafe { NTPTAP_OWNERS.get(sk as u64) }.is_some() && NTPTAP_OWNERS.remove(sk as u64).is_ok()
    {
        stat(OwnerStat::Released);
    }
    1
}

/// The record's `SOCKET_*` for socket `sk` (a kernel address); for `SOCKET_OWNED`, its
/// owner copied into `out`, which is left alone otherwise.
///
/// The owner goes from map to map, never through the stack: an `Owner` returned by value is
/// a 48-byte move, and a zeroed one for the other sockets a 48-byte memset; with both, older
/// verifiers (6.1) saw a copy of stack bytes no path had written.
#[inline(always)]
fn owner_of(sk: u64, out: &mut Owner) -> u8 {
    // SAFETY: a lookup with a key of the declared type.
    match unsafe { NTPTAP_OWNERS.get(sk) } {
        Some(owner) => {
            *out = *owner;
            SOCKET_OWNED
        }
        None => SOCKET_UNOWNED,
    }
}

/// The owner of a socket opened before ntptap started, by its local `addr` (as on the wire,
/// IPv4 in the first 4 bytes) and `port`: with the address, then bound to every address.
#[inline(always)]
fn earlier(addr: [u8; 16], port: u16, family: u8) -> Option<&'static Owner> {
    let mut key = Endpoint {
        addr,
        port,
        family,
        pad: 0,
    };
    // SAFETY: lookups with a key of the declared type.
    if let Some(owner) = unsafe { NTPTAP_EARLIER.get(key) } {
        return Some(owner);
    }
    key.addr = [0; 16];
    // SAFETY: as above.
    unsafe { NTPTAP_EARLIER.get(key) }
}

/// The local end of an egress frame: its source address, and the family.
#[inline(always)]
fn source_end(start: usize, end: usize, addresses: Addresses) -> Option<([u8; 16], u8)> {
    let mut addr = [0u8; 16];
    match addresses.family {
        Addresses::V4 => {
            let (src, _) = crate::parse::ipv4_addresses(start, end, addresses.header)?;
            addr[..4].copy_from_slice(&src.to_ne_bytes());
            Some((addr, 4))
        }
        Addresses::V6 => Some((
            crate::parse::ipv6_address(start, end, addresses.header + 8)?,
            6,
        )),
        _ => None,
    }
}

/// Whether, and how, a frame's socket opened before ntptap started is looked up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// Not (the reader does it: XDP's copy loop, before 5.18).
    No,
    /// Looked up by the frame's local end.
    Lookup,
    /// Looked up, and recorded under the socket at its first frame (TC; at XDP the insert's
    /// stack took the programs past 512 bytes on 6.1).
    LookupAndRecord,
}

/// `owner_of(sk, out)`, or where the socket has no entry, the owner the loader found for the
/// frame's local end when it started.
#[inline(always)]
fn owner_or_earlier(
    sk: u64,
    how: Earlier,
    local: impl FnOnce() -> Option<([u8; 16], u8, u16)>,
    out: &mut Owner,
) -> u8 {
    let found = owner_of(sk, out);
    if found == SOCKET_OWNED || how == Earlier::No {
        return found;
    }
    match local().and_then(|(addr, family, port)| earlier(addr, port, family)) {
        Some(owner) => {
            stat(OwnerStat::Earlier);
            if how == Earlier::LookupAndRecord {
                stat(OwnerStat::Recorded);
                // Recorded under the socket from now on: its next frames take one lookup,
                // and its close removes the entry.
                let _ = NTPTAP_OWNERS.insert(sk, owner, 0);
            }
            *out = *owner;
            SOCKET_OWNED
        }
        None => found,
    }
}

/// The socket that sent an egress frame (the skb's own socket), its owner into `out`.
#[inline(always)]
pub fn sender(
    sk: *mut bpf_sock,
    start: usize,
    end: usize,
    addresses: Addresses,
    sport: u16,
    out: &mut Owner,
) -> u8 {
    if sk.is_null() {
        return SOCKET_NONE;
    }
    owner_or_earlier(
        sk as u64,
        Earlier::LookupAndRecord,
        || source_end(start, end, addresses).map(|(a, f)| (a, f, sport)),
        out,
    )
}

/// The owner of the socket the stack will deliver an ingress UDP frame to: a lookup of the
/// frame's addresses and ports in the namespace of the device it arrived on; for a socket with
/// no recorded owner, the one the loader found at start, as `earlier` says. The owner goes
/// into `out`.
#[inline(always)]
pub fn receiver<C: EbpfContext>(
    ctx: &C,
    start: usize,
    end: usize,
    addresses: Addresses,
    (sport, dport): (u16, u16),
    earlier: Earlier,
    out: &mut Owner,
) -> u8 {
    // SAFETY: an all-zero tuple is a valid value of this plain-integer union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // The frame's local end (its destination), for a socket opened before ntptap started:
    // taken from the tuple's addresses, not read from the packet again (older verifiers
    // walk every such read once more).
    let mut local = [0u8; 16];
    let (size, family) = match addresses.family {
        Addresses::V4 => {
            let Some((src, dst)) = crate::parse::ipv4_addresses(start, end, addresses.header)
            else {
                return SOCKET_UNKNOWN;
            };
            local[..4].copy_from_slice(&dst.to_ne_bytes());
            tuple.__bindgen_anon_1.ipv4.saddr = src;
            tuple.__bindgen_anon_1.ipv4.daddr = dst;
            tuple.__bindgen_anon_1.ipv4.sport = sport.to_be();
            tuple.__bindgen_anon_1.ipv4.dport = dport.to_be();
            (12, 4)
        }
        Addresses::V6 => {
            let (Some(src), Some(dst)) = (
                crate::parse::ipv6_address(start, end, addresses.header + 8),
                crate::parse::ipv6_address(start, end, addresses.header + 24),
            ) else {
                return SOCKET_UNKNOWN;
            };
            local = dst;
            // SAFETY: writing plain integers into a union field.
            unsafe {
                tuple.__bindgen_anon_1.ipv6.saddr = core::mem::transmute::<[u8; 16], [u32; 4]>(src);
                tuple.__bindgen_anon_1.ipv6.daddr = core::mem::transmute::<[u8; 16], [u32; 4]>(dst);
                tuple.__bindgen_anon_1.ipv6.sport = sport.to_be();
                tuple.__bindgen_anon_1.ipv6.dport = dport.to_be();
            }
            (36, 6)
        }
        _ => return SOCKET_UNKNOWN,
    };
    // SAFETY: the context the kernel gave us and a tuple of `size` bytes on the stack.
    let sk = unsafe { bpf_sk_lookup_udp(ctx.as_ptr(), &raw mut tuple, size, CURRENT_NETNS, 0) };
    if sk.is_null() {
        return SOCKET_NONE;
    }
    let found = owner_or_earlier(sk as u64, earlier, || Some((local, family, dport)), out);
    // SAFETY: releases the reference the lookup took.
    unsafe { bpf_sk_release(sk.cast()) };
    found
}

/// Whether a frame whose socket is `socket` with owner `owner` (read only for
/// `SOCKET_OWNED`) is selected by `--pid`, `--comm` and `--cgroup` (only asked when one of
/// them is given).
#[inline(always)]
pub fn selected(config: &Config, socket: u8, owner: &Owner) -> bool {
    let include = config.attribution & ATTRIBUTE_INCLUDE != 0;
    if socket != SOCKET_OWNED {
        return !include;
    }
    owner.select & SELECT_EXCLUDED == 0 && (!include || owner.select & SELECT_INCLUDED != 0)
}
