//! Types that cross the boundary between ntptap's kernel programs and its loader.
//!
//! Everything here is `#[repr(C)]` and `Copy`, uses integer flags instead of `bool`, and
//! shows its padding. A `const` assertion pins the size of every type that crosses the ring,
//! so a change on one side that the other side does not know of fails to compile.
#![no_std]
#![deny(missing_docs)]

use core::mem::size_of;

/// Bytes of frame data carried by a tiny ring record: a plain NTP packet behind Ethernet and
/// IPv4 (90 bytes) or IPv6 (110 bytes). The ring's records are laid end to end, so the common
/// frame costs 232 ring bytes instead of a small record's 360: more frames between wakeups,
/// and half the cache lines for the reader to pull from the producer's CPU.
pub const TINY_DATA: usize = 128;

/// Bytes of frame data carried by a small ring record.
///
/// An NTP packet without extension fields behind Ethernet, two VLAN tags and IPv6 with a few
/// extension headers fits; so do packets with a legacy MAC. Longer frames use a [`LargeRecord`].
pub const SMALL_DATA: usize = 256;

/// Bytes of frame data carried by a large ring record: the most ntptap copies of one frame.
///
/// Covers a full 1500-byte-MTU Ethernet frame with two VLAN tags (1522 bytes), with room for
/// NTS packets with several cookies. A longer frame (jumbo frames, GSO super-packets seen at
/// TC egress) is cut to this length, counted as truncated, and keeps its original length.
pub const MAX_DATA: usize = 2048;

/// Most ring buffers: one per CPU up to this many; past it, CPUs share them (CPU `c` writes to
/// ring `c % rings`). Each ring put in the kernel's ring array costs the loader an RCU grace
/// period (about 10 ms here), so the count is bounded to keep the start quick.
pub const SHARD_SLOTS: u32 = 16;

/// The frame was seen on its way into the host (XDP, or TC ingress).
pub const DIRECTION_INGRESS: u8 = 0;
/// The frame was seen on its way out of the host (TC egress).
pub const DIRECTION_EGRESS: u8 = 1;
/// Number of directions; counters are kept per direction.
pub const DIRECTIONS: u32 = 2;

/// Record flag: the frame is longer than what was copied (`cap_len < orig_len`).
pub const RECORD_TRUNCATED: u8 = 1;
/// Record flag: the kernel had moved the frame's outer VLAN tag into skb metadata (it does so
/// before TC ingress, and VLAN devices leave it there on egress); the tag is in `vlan_tci` and
/// `vlan_proto`, and `orig_len` does not count its 4 bytes. Readers put it back, as libpcap does.
pub const RECORD_VLAN: u8 = 2;

/// Record flag: a drop record. The kernel dropped this frame after ntptap's hook (`kfree_skb`
/// with a reason): the data starts with a [`DropInfo`], then `cap_len` bytes of the frame from
/// its IP header on (no link-layer header: the kernel has left it behind by then).
/// `orig_len` is the IP packet's length.
pub const RECORD_DROP: u8 = 4;

/// What a drop record adds before its frame bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropInfo {
    /// Kernel address of the drop (the caller of `kfree_skb`); the loader names its symbol.
    pub location: u64,
    /// The kernel's `enum skb_drop_reason` value (0 on kernels without reasons, before 5.17).
    pub reason: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
}
const _: () = assert!(size_of::<DropInfo>() == 16);

/// Drop reasons counted apart per direction in [`names::DROP_COUNTS`]; a reason of this value
/// or more (a subsystem's own reasons carry high bits) is counted in the last slot.
pub const DROP_REASON_SLOTS: u32 = 256;
/// Per direction in the drop counters: the reason slots, then [`DropStat`]s.
pub const DROP_COUNT_SLOTS: u32 = DROP_REASON_SLOTS + DROP_STATS;
/// Entries of the per-CPU drop counters map.
pub const DROP_COUNT_ENTRIES: u32 = DIRECTIONS * DROP_COUNT_SLOTS;

/// What the drop program counts per direction, after the reason slots.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropStat {
    /// Dropped frames on the port set, in ntptap's network namespace, on a watched interface
    /// (or on none yet, on the way out): each also counted under its reason.
    Matched = 0,
    /// Drop records written into the ring.
    Recorded = 1,
    /// Drop records lost because the ring was full.
    RingFull = 2,
    /// Drop records the kernel would not copy (counted so that matched = recorded + ring
    /// full + copy failed holds).
    CopyFailed = 3,
}
/// Number of [`DropStat`]s.
pub const DROP_STATS: u32 = 4;

/// Index of drop counter `slot` (a reason below [`DROP_REASON_SLOTS`], or
/// `DROP_REASON_SLOTS + DropStat`) for `direction`.
#[inline(always)]
#[must_use]
pub const fn drop_index(direction: u8, slot: u32) -> u32 {
    (direction as u32 % DIRECTIONS) * DROP_COUNT_SLOTS + slot % DROP_COUNT_SLOTS
}

/// Bytes of `sk_buff` the drop program reads at once, from [`DropLayout::window`].
pub const DROP_WINDOW: usize = 256;
/// Bytes the drop program reads from a dropped frame's IP header on, to find its UDP ports
/// (an IPv4 header with the most options, 60 bytes, then 8 of UDP).
pub const DROP_HEADERS: usize = 72;
/// Bytes it reads first: enough for the ports behind IPv6 or IPv4 with up to 24 bytes of
/// options; it reads [`DROP_HEADERS`] only behind longer IPv4 headers.
pub const DROP_HEADERS_QUICK: usize = 48;

/// Where the drop program finds what it reads in the running kernel's structures, from the
/// kernel's BTF (the layouts move between kernels and builds). Offsets in `sk_buff` count from
/// `window`; the others from the start of their structure. Written into `.rodata` before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropLayout {
    /// Offset in `sk_buff` of the bytes read at once.
    pub window: u32,
    /// How many (at most [`DROP_WINDOW`]).
    pub window_len: u32,
    /// `sk_buff.dev` (a `net_device *`), from `window`.
    pub dev: u32,
    /// `sk_buff.sk`.
    pub sk: u32,
    /// `sk_buff.len` (u32).
    pub len: u32,
    /// `sk_buff.data_len` (u32).
    pub data_len: u32,
    /// `sk_buff.skb_iif` (int): non-zero for frames that came in through an interface.
    pub skb_iif: u32,
    /// `sk_buff.protocol` (__be16).
    pub protocol: u32,
    /// `sk_buff.network_header` (u16, from `head`).
    pub network_header: u32,
    /// `sk_buff.head` (pointer).
    pub head: u32,
    /// `sk_buff.data` (pointer).
    pub data: u32,
    /// `net_device.ifindex` (int).
    pub dev_ifindex: u32,
    /// `net_device.nd_net` (a `struct net *`).
    pub dev_net: u32,
    /// `sock.__sk_common.skc_net` (a `struct net *`).
    pub sk_net: u32,
    /// `net.ns.inum` (u32): the network namespace's inode number.
    pub net_inum: u32,
    /// Inode number of ntptap's network namespace: drops in others are not its business.
    pub netns: u32,
    /// A reason value that is no drop (`SKB_CONSUMED` where it exists), skipped; else
    /// `u32::MAX`.
    pub consumed: u32,
    /// Offset in `sk_buff` of the first, short read: what every drop costs (`protocol`,
    /// `network_header` and `head`, a few bytes apart in every kernel). The rest is read
    /// only for NTP.
    pub quick: u32,
    /// How many bytes (at most [`DROP_WINDOW`]).
    pub quick_len: u32,
    /// `sk_buff.protocol`, from `quick`.
    pub quick_protocol: u32,
    /// `sk_buff.network_header`, from `quick`.
    pub quick_network_header: u32,
    /// `sk_buff.head`, from `quick`.
    pub quick_head: u32,
    /// Explicit padding; always zero.
    pub pad: [u32; 2],
}
const _: () = assert!(size_of::<DropLayout>() == 96);

/// Header of every record in the ring buffer, followed by `cap_len` bytes of frame data.
///
/// The capture programs write only what a frame needs, straight into the reserved record: the
/// fields up to `socket` always, `owner` only with [`SOCKET_OWNED`], the latency fields only
/// with [`ATTRIBUTE_LATENCY`]. The others, and the padding, hold whatever the ring held there
/// (the ring is not cleared): a reader must not look at them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// Kernel `CLOCK_MONOTONIC` time at which the program saw the frame, in nanoseconds.
    pub ts_mono_ns: u64,
    /// Interface index the frame was seen on.
    pub ifindex: u32,
    /// Length of the frame on the wire, in bytes.
    pub orig_len: u32,
    /// Bytes of frame data that follow the header (at most the record's data size).
    pub cap_len: u16,
    /// [`DIRECTION_INGRESS`] or [`DIRECTION_EGRESS`].
    pub direction: u8,
    /// `RECORD_*` flags.
    pub flags: u8,
    /// With [`RECORD_VLAN`]: the tag control information the kernel took out of the frame
    /// into skb metadata (TC hooks only), to be put back after the MAC addresses.
    pub vlan_tci: u16,
    /// With [`RECORD_VLAN`]: the tag's protocol (0x8100 or 0x88a8), host byte order.
    pub vlan_proto: u16,
    /// Matched frames of this interface and direction that this CPU lost to a full ring since
    /// its previous record of them (pcapng's `epb_dropcount`, which counts per interface).
    /// Drops with no later record there show only in the counters.
    pub drops_before: u32,
    /// `SOCKET_*`: what the program knows of the socket that sent or takes the frame.
    pub socket: u8,
    /// Explicit padding; always zero.
    pub pad: [u8; 3],
    /// With [`SOCKET_OWNED`]: the process that owns the socket.
    pub owner: Owner,
    /// In-host latency (`--latency`), egress frames: nanoseconds from the process's send
    /// (`sendmsg` with this destination on this socket) to this hook; 0 if unknown.
    pub send_before: u32,
    /// In-host latency, egress frames: nanoseconds from the last read on this socket of a
    /// datagram from this frame's destination (a server's read of the request it answers)
    /// to this hook; 0 if unknown.
    pub read_before: u32,
    /// In-host latency, egress frames: nanoseconds from the last datagram from this frame's
    /// destination queued on this socket (`cgroup_skb` ingress, at the socket's filter) to
    /// this hook; 0 if unknown.
    pub queued_before: u32,
    /// Explicit padding; always zero.
    pub pad2: u32,
}
const _: () = assert!(size_of::<RecordHeader>() == 96);

/// Key of the in-host latency stamps: a socket (its kernel address) and the remote end of
/// a datagram it read or sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StampKey {
    /// The socket's kernel address.
    pub sk: u64,
    /// The remote address: IPv4 in the first 4 bytes (network order), or IPv6.
    pub addr: [u8; 16],
    /// The remote port, host order.
    pub port: u16,
    /// Explicit padding; always zero.
    pub pad: [u8; 6],
}
const _: () = assert!(size_of::<StampKey>() == 32);

/// When a socket last read a datagram from a remote end, and last sent one to it
/// (`CLOCK_MONOTONIC` ns; 0: never).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamps {
    /// `recvmsg` returned a datagram from the remote end.
    pub read_ns: u64,
    /// `sendmsg` to the remote end began.
    pub send_ns: u64,
    /// A datagram from the remote end was queued on the socket.
    pub queued_ns: u64,
}
const _: () = assert!(size_of::<Stamps>() == 24);

/// Entries of the stamps map (an LRU map: NTP conversations, not packets).
pub const STAMP_ENTRIES: u32 = 4096;

/// Record `socket`: attribution is off, or the program did not look (not UDP over IP).
pub const SOCKET_UNKNOWN: u8 = 0;
/// Record `socket`: no local socket sent the frame (egress: forwarded, or made by the kernel)
/// or takes it (ingress: nobody listens on that address and port in this namespace).
pub const SOCKET_NONE: u8 = 1;
/// Record `socket`: a local socket, whose owner ntptap has not seen (it was opened before
/// ntptap started and has not sent, connected, bound or read since).
pub const SOCKET_UNOWNED: u8 = 2;
/// Record `socket`: a local socket, and `owner` says whose.
pub const SOCKET_OWNED: u8 = 3;

/// Bytes of a task's `comm` (the kernel's `TASK_COMM_LEN`), NUL-padded.
pub const COMM_LEN: usize = 16;

/// The process that owns a socket, as the attribution hooks saw it in the owner's own
/// context (on `connect`, `sendmsg`, `recvmsg` or `bind`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Process (thread group) id, as the host's root PID namespace numbers it.
    pub pid: u32,
    /// Thread id of the thread that used the socket (equal to `pid` on the main thread).
    pub tid: u32,
    /// The thread's real user id (`bpf_get_current_uid_gid`), in the host's user namespace.
    pub uid: u32,
    /// `SELECT_*`: how the owner fares against `--pid`, `--comm` and `--cgroup`.
    pub select: u32,
    /// Id of the owner's cgroup v2 (the inode number of its directory in cgroupfs).
    pub cgroup_id: u64,
    /// Cookie of the socket's network namespace (`SO_NETNS_COOKIE`).
    pub netns_cookie: u64,
    /// The thread's `comm`: untrusted bytes, NUL-padded, not always NUL-terminated.
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(size_of::<Owner>() == 48);

/// Owner `select`: the owner matches an including `--pid`, `--comm` or `--cgroup`.
pub const SELECT_INCLUDED: u32 = 1;
/// Owner `select`: the owner matches an excluding one (`--not-pid`, `!NAME`, ...).
pub const SELECT_EXCLUDED: u32 = 2;
/// Value in the selection maps: the entry includes.
pub const SELECT_INCLUDE: u8 = 1;
/// Value in the selection maps: the entry excludes.
pub const SELECT_EXCLUDE: u8 = 2;
/// Entries of each selection map (`--pid`, `--comm`, `--cgroup`).
pub const SELECT_ENTRIES: u32 = 256;
/// Cgroup levels above a process that `--cgroup` looks at (a directory selects its subtree).
pub const CGROUP_LEVELS: i32 = 16;
/// Sockets whose owners the kernel keeps at once (an LRU map: the least recently used owner
/// goes first when it is full; the loader counts such evictions). Every UDP socket is there
/// from its creation to its close, NTP's or not: 16,384 entries of 48 bytes.
pub const OWNER_ENTRIES: u32 = 16_384;

/// A socket's local end, as the loader finds the sockets that were open before it started
/// (`/proc/net/udp`): the capture programs look a frame's local address and port up here when
/// its socket has no recorded owner, first with the address, then with the wildcard (zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The address as on the wire (IPv4 in the first 4 bytes, the rest zero); zero for a
    /// socket bound to every address.
    pub addr: [u8; 16],
    /// The port, host byte order.
    pub port: u16,
    /// 4 or 6.
    pub family: u8,
    /// Zero.
    pub pad: u8,
}
const _: () = assert!(size_of::<Endpoint>() == 20);

/// Sockets open before ntptap started that the loader records (by [`Endpoint`]).
pub const EARLIER_ENTRIES: u32 = 4096;

/// Attribution flag in [`Config::attribution`]: look up the owner of each captured frame's
/// socket.
pub const ATTRIBUTE: u32 = 1;
/// Attribution flag: some `--pid`, `--comm` or `--cgroup` selects frames.
pub const ATTRIBUTE_SELECT: u32 = 2;
/// Attribution flag: some of them include, so a frame with no known owner is not captured.
pub const ATTRIBUTE_INCLUDE: u32 = 4;
/// Attribution flag: `--pid` entries exist.
pub const ATTRIBUTE_PIDS: u32 = 8;
/// Attribution flag: `--comm` entries exist.
pub const ATTRIBUTE_COMMS: u32 = 16;
/// Attribution flag: `--cgroup` entries exist.
pub const ATTRIBUTE_CGROUPS: u32 = 32;
/// Attribution flag: stamp NTP reads and sends on sockets, and give egress frames the time
/// since (`--latency`).
pub const ATTRIBUTE_LATENCY: u32 = 64;

/// What the attribution hooks count (per CPU, in `NTPTAP_OWNER_STATS`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerStat {
    /// Sockets whose owner was recorded for the first time.
    Recorded = 0,
    /// Owners replaced by another process or thread using the same socket.
    Changed = 1,
    /// Recorded sockets closed (their entry removed).
    Released = 2,
    /// Sockets open before ntptap started, named by the loader's record at their first frame
    /// (and recorded under the socket from then on).
    Earlier = 3,
}
/// Entries of the owner statistics map.
pub const OWNER_STATS: u32 = 4;

/// A ring buffer record with room for `N` bytes of frame data.
///
/// The kernel reserves a record of a fixed size (the verifier accepts only constant
/// reservation sizes), so records come in three size classes: [`TinyRecord`], [`SmallRecord`] and [`LargeRecord`].
/// The reader needs only the header: `cap_len` says how many data bytes are valid.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Record<const N: usize> {
    /// What the frame is and where it was seen.
    pub header: RecordHeader,
    /// The first `header.cap_len` bytes of the frame.
    pub data: [u8; N],
}

/// Record for frames of at most [`TINY_DATA`] captured bytes.
pub type TinyRecord = Record<TINY_DATA>;
/// Record for frames of at most [`SMALL_DATA`] captured bytes.
pub type SmallRecord = Record<SMALL_DATA>;
/// Record for frames of more than [`SMALL_DATA`] captured bytes.
pub type LargeRecord = Record<MAX_DATA>;
const _: () = assert!(size_of::<TinyRecord>() == 96 + TINY_DATA);
const _: () = assert!(size_of::<SmallRecord>() == 96 + SMALL_DATA);
const _: () = assert!(size_of::<LargeRecord>() == 96 + MAX_DATA);

/// Per-CPU counters kept by the kernel programs, one block of [`COUNTER_SLOTS`] per interface
/// slot and direction.
///
/// Index into a [`CounterBlock`] of the `NTPTAP_COUNTERS` map, whose key is [`counter_key`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Frames the program ran on.
    Seen = 0,
    /// Frames that matched the filter (the port set, or every frame with `--all`).
    Matched = 1,
    /// Matched frames written into the ring buffer.
    Captured = 2,
    /// Matched frames lost because the ring buffer was full.
    RingFull = 3,
    /// Captured frames cut short (snap length or [`MAX_DATA`]).
    Truncated = 4,
    /// Frames whose headers could not be parsed (too short for what they claim, a bad IPv4
    /// header length, an IPv6 extension header chain too long to follow). Not captured.
    Unparsable = 5,
    /// Non-first IP fragments: they carry no UDP header, so no port to match. Not captured
    /// unless `--all`.
    LaterFragment = 6,
    /// Matched frames the kernel would not copy into a reserved record (should never happen;
    /// counted so that matched = captured + ring full + copy failed holds exactly).
    CopyFailed = 7,
    /// Frames on the port set that `--pid`, `--comm` or `--cgroup` passed over (not counted
    /// as matched).
    OtherProcess = 8,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 9] = [
        Counter::Seen,
        Counter::Matched,
        Counter::Captured,
        Counter::RingFull,
        Counter::Truncated,
        Counter::Unparsable,
        Counter::LaterFragment,
        Counter::CopyFailed,
        Counter::OtherProcess,
    ];

    /// The counter's one name, in the exit summary, the metrics' `reason` label and the README.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Counter::Seen => "seen",
            Counter::Matched => "matched",
            Counter::Captured => "captured",
            Counter::RingFull => "ring_full",
            Counter::Truncated => "truncated",
            Counter::Unparsable => "unparsable",
            Counter::LaterFragment => "later_fragment",
            Counter::CopyFailed => "copy_failed",
            Counter::OtherProcess => "other_process",
        }
    }
}

/// Slots per direction in the counters map: one per [`Counter`].
pub const COUNTER_SLOTS: u32 = 9;
/// Interfaces counted apart at once: the loader gives each attached interface its own slot,
/// 1 to `INTERFACE_SLOTS - 1`, in [`names::IFSLOTS`]; slot 0 counts frames of interfaces that
/// have none (there should be none). A slot is reused only after its interface went away
/// and its counts were read one last time.
pub const INTERFACE_SLOTS: u32 = 256;
/// Entries of the interface-to-slot map, indexed by `ifindex % IFSLOT_ENTRIES`: interface
/// indexes only grow, and two live interfaces 65,536 indexes apart are not a host's life. A
/// lookup in an array map is an address computation (the verifier inlines it).
pub const IFSLOT_ENTRIES: u32 = 65536;
/// Entries of the per-CPU counters map: one [`CounterBlock`] per interface slot and direction.
pub const COUNTER_ENTRIES: u32 = INTERFACE_SLOTS * DIRECTIONS;

/// One entry of the counters map: the counters of one interface slot and direction, indexed
/// by [`Counter`], and [`PENDING_SLOT`]. A frame's program looks its block up once and counts
/// into it: one lookup a frame instead of one per counter (a captured frame counts three).
pub type CounterBlock = [u64; COUNTER_SLOTS as usize + 1];

/// The slot of a [`CounterBlock`] after the counters: this CPU's ring-full drops of the
/// block's interface and direction not yet reported in a record (the next record of them
/// carries it as [`RecordHeader::drops_before`], and it starts again from zero). Not a
/// counter: the reader does not read it.
pub const PENDING_SLOT: usize = COUNTER_SLOTS as usize;

/// Key of the counters of interface slot `slot` and `direction` in the counters map.
#[inline(always)]
#[must_use]
pub const fn counter_key(slot: u32, direction: u8) -> u32 {
    (slot % INTERFACE_SLOTS) * DIRECTIONS + direction as u32
}

/// Filter flag: capture every frame, whatever its ports (`--all`).
pub const FILTER_ALL: u32 = 1;
/// Filter flag: capture only frames from or to an address in the host sets (`--host`).
pub const FILTER_HOST: u32 = 2;
/// Filter flag: log each frame's verdict and reason through aya-log (`--debug-ebpf`). Off,
/// the verifier prunes the logging away.
pub const FILTER_DEBUG: u32 = 4;
/// Filter flag: a filter expression decides, its classic BPF program in the expression map
/// (the port set, `--all` and the host sets then say nothing).
pub const FILTER_EXPR: u32 = 8;
/// Entries of each host set map.
pub const HOST_ENTRIES: u32 = 1024;

/// Most classic BPF instructions of a filter expression the kernel programs run.
pub const EXPR_INSNS: usize = 256;
/// Scratch memory words of a classic BPF program (its `M[]`).
pub const EXPR_MEMORY: usize = 16;
/// Farthest byte offset into a frame an expression may load from (beyond it, the load fails
/// and the frame is not matched, as a load past the end of a packet does in classic BPF).
pub const EXPR_MAX_OFFSET: u32 = 0x3fff;

/// One classic BPF instruction, as `struct sock_filter` lays it out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExprInsn {
    /// Opcode (`BPF_LD | BPF_H | BPF_ABS`, ...).
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// A filter expression's program, as the kernel programs read it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExprProgram {
    /// Instructions in use.
    pub len: u32,
    /// The instructions; those past `len` are never reached (a program ends in a return).
    pub insns: [ExprInsn; EXPR_INSNS],
}

/// Read-only configuration, written into the programs' `.rodata` before they are loaded.
///
/// The verifier sees these as constants and prunes the branches they switch off, so an option
/// that is off costs nothing per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most bytes to copy of each frame, 1..=[`MAX_DATA`].
    pub snaplen: u32,
    /// `FILTER_*` flags.
    pub filter: u32,
    /// Wake the reader only once the ring holds this many bytes (it also drains on a timer);
    /// 0 wakes it for every record.
    pub wakeup_bytes: u32,
    /// Ring buffers in use: CPU `c` writes to slot `c % rings` of the ring array (0 counts
    /// as 1).
    pub rings: u32,
    /// The watched UDP port when the port set holds just one (the usual 123): the programs
    /// compare with it instead of looking both ports up in the port set. 0: use the set.
    pub port: u32,
    /// `ATTRIBUTE*` flags: process attribution and selection.
    pub attribution: u32,
}
const _: () = assert!(size_of::<Config>() == 24);

impl Config {
    /// The configuration the programs are built with: whole frames, the port filter.
    pub const DEFAULT: Config = Config {
        snaplen: MAX_DATA as u32,
        filter: 0,
        wakeup_bytes: 0,
        rings: 1,
        port: 0,
        attribution: 0,
    };
}

/// Entries of the port set map: one byte per UDP port, non-zero when the port is watched.
pub const PORT_ENTRIES: u32 = 65536;

/// Names of the maps and programs, shared so the loader cannot drift from the object file.
pub mod names {
    /// The per-CPU ring buffers (see [`SHARD_SLOTS`]).
    pub const SHARDS: &str = "NTPTAP_SHARDS";
    /// The per-CPU counters map.
    pub const COUNTERS: &str = "NTPTAP_COUNTERS";
    /// Interface index to counter slot (see [`INTERFACE_SLOTS`](super::INTERFACE_SLOTS)).
    pub const IFSLOTS: &str = "NTPTAP_IFSLOTS";
    /// The port set map.
    pub const PORTS: &str = "NTPTAP_PORTS";
    /// IPv4 host set (`--host`).
    pub const HOSTS4: &str = "NTPTAP_HOSTS4";
    /// IPv6 host set (`--host`).
    pub const HOSTS6: &str = "NTPTAP_HOSTS6";
    /// The filter expression's classic BPF program (see [`ExprProgram`](super::ExprProgram)).
    pub const EXPR: &str = "NTPTAP_EXPR";
    /// Socket to owner (LRU, keyed by the socket's kernel address).
    pub const OWNERS: &str = "NTPTAP_OWNERS";
    /// Per-CPU attribution statistics (see [`OwnerStat`](super::OwnerStat)).
    pub const OWNER_STATS: &str = "NTPTAP_OWNER_STATS";
    /// Owners of the sockets open before ntptap started, by local end (see
    /// [`Endpoint`](super::Endpoint)).
    pub const EARLIER: &str = "NTPTAP_EARLIER";
    /// In-host latency stamps (see [`Stamps`](super::Stamps)).
    pub const STAMPS: &str = "NTPTAP_STAMPS";
    /// `--pid` selection.
    pub const SELECT_PIDS: &str = "NTPTAP_SELECT_PIDS";
    /// `--comm` selection.
    pub const SELECT_COMMS: &str = "NTPTAP_SELECT_COMMS";
    /// `--cgroup` selection, by cgroup id.
    pub const SELECT_CGROUPS: &str = "NTPTAP_SELECT_CGROUPS";
    /// The attribution programs that run by default, once per socket (its bind, connect and
    /// close): name, then the cgroup attach point, as `cgroup/ATTACH`.
    pub const OWNER_PROGRAMS: [(&str, &str); 5] = [
        ("ntptap_connect4", "connect4"),
        ("ntptap_connect6", "connect6"),
        ("ntptap_post_bind4", "post_bind4"),
        ("ntptap_post_bind6", "post_bind6"),
        ("ntptap_sock_release", "sock_release"),
    ];
    /// The attribution program that records every UDP socket's creator (`--attribution`).
    pub const OWNER_CREATE: (&str, &str) = ("ntptap_sock_create", "sock_create");
    /// The attribution programs that run on every UDP send to an address and read with one
    /// (`--latency`: they stamp those calls, and record a socket's new user).
    pub const OWNER_CALL_PROGRAMS: [(&str, &str); 4] = [
        ("ntptap_sendmsg4", "sendmsg4"),
        ("ntptap_sendmsg6", "sendmsg6"),
        ("ntptap_recvmsg4", "recvmsg4"),
        ("ntptap_recvmsg6", "recvmsg6"),
    ];
    /// In-host latency: stamps each NTP datagram queued on a socket (`cgroup_skb` ingress).
    pub const SOCK_QUEUE: &str = "ntptap_sock_queue";
    /// An empty `cgroup_skb` ingress program, [`SOCK_QUEUE`]'s baseline in the bench.
    pub const NOP_SOCK_QUEUE: &str = "ntptap_nop_sock_queue";
    /// The read-only configuration global.
    pub const CONFIG: &str = "NTPTAP_CONFIG";
    /// The drop program's read-only structure layout (see [`DropLayout`](super::DropLayout)).
    pub const DROP_LAYOUT: &str = "NTPTAP_DROP_LAYOUT";
    /// Per-CPU drop counters (see [`drop_index`](super::drop_index)).
    pub const DROP_COUNTS: &str = "NTPTAP_DROP_COUNTS";
    /// The drop program (`tp_btf/kfree_skb`), for kernels whose tracepoint passes a reason
    /// (5.17 and later).
    pub const DROP: &str = "ntptap_drop";
    /// The drop program for kernels whose `kfree_skb` tracepoint has no reason (before 5.17).
    pub const DROP_NO_REASON: &str = "ntptap_drop_noreason";
    /// An empty program at `tp_btf/kfree_skb`, the drop program's baseline in the bench.
    pub const NOP_DROP: &str = "ntptap_nop_kfree_skb";
    /// XDP program (ingress).
    pub const XDP: &str = "ntptap_xdp";
    /// XDP program (ingress) for kernels without `bpf_xdp_load_bytes` (before 5.18).
    pub const XDP_COPY: &str = "ntptap_xdp_copy";
    /// XDP program that loads only where `bpf_xdp_load_bytes` exists; never attached.
    pub const PROBE_XDP_LOAD_BYTES: &str = "ntptap_probe_xdp";
    /// TC program for ingress (`--hook tc`).
    pub const TC_INGRESS: &str = "ntptap_tc_in";
    /// TC program for egress.
    pub const TC_EGRESS: &str = "ntptap_tc_out";
    /// XDP program that does nothing, the benchmarks' baseline.
    pub const NOP: &str = "ntptap_nop";
    /// Benchmark-only XDP program: one clock read.
    pub const COST_CLOCK: &str = "ntptap_cost_clock";
    /// Benchmark-only XDP program: the least filter that passes over a non-NTP frame.
    pub const COST_FILTER: &str = "ntptap_cost_filter";
    /// [`COST_FILTER`] at TC.
    pub const COST_FILTER_TC: &str = "ntptap_cost_filter_tc";
    /// Benchmark-only XDP program: the least capture of a frame (clock, reserve, copy, submit).
    pub const COST_CAPTURE: &str = "ntptap_cost_capture";
    /// [`COST_CAPTURE`] at TC.
    pub const COST_CAPTURE_TC: &str = "ntptap_cost_capture_tc";
    /// Benchmark-only XDP program: the least capture plus one socket lookup (the floor of an
    /// attributed ingress frame).
    pub const COST_CAPTURE_LOOKUP: &str = "ntptap_cost_capture_lookup";
    /// [`COST_CAPTURE_LOOKUP`] at TC.
    pub const COST_CAPTURE_LOOKUP_TC: &str = "ntptap_cost_capture_lookup_tc";
    /// TC program that does nothing, the baseline for the TC programs.
    pub const NOP_TC: &str = "ntptap_nop_tc";
    /// Empty programs at the attribution hooks, each beside ntptap's program there: (empty,
    /// ntptap's, the hook).
    pub const NOP_OWNER_PROGRAMS: [(&str, &str, &str); 6] = [
        (
            "ntptap_nop_sock_create",
            "ntptap_sock_create",
            "sock_create",
        ),
        ("ntptap_nop_sendmsg4", "ntptap_sendmsg4", "sendmsg4"),
        ("ntptap_nop_connect4", "ntptap_connect4", "connect4"),
        ("ntptap_nop_recvmsg4", "ntptap_recvmsg4", "recvmsg4"),
        ("ntptap_nop_post_bind4", "ntptap_post_bind4", "post_bind4"),
        (
            "ntptap_nop_sock_release",
            "ntptap_sock_release",
            "sock_release",
        ),
    ];
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: `Config` is `#[repr(C)]`, `Copy`, made of integers only, with no padding
    // (size asserted above), so every bit pattern is valid and it can be copied as bytes.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as for `Config`: `#[repr(C)]`, integers only, padding explicit and asserted.
    unsafe impl aya::Pod for super::RecordHeader {}
    // SAFETY: as for `Config`: `#[repr(C)]`, integers only, padding explicit and asserted.
    unsafe impl aya::Pod for super::Owner {}
    // SAFETY: as for `Config`: `#[repr(C)]`, integers only, padding explicit and asserted.
    unsafe impl aya::Pod for super::Endpoint {}
    // SAFETY: as for `Config`: `#[repr(C)]`, integers only, padding explicit and asserted.
    unsafe impl aya::Pod for super::DropLayout {}
    // SAFETY: as for `Config`: `#[repr(C)]`, integers only, padding explicit and asserted.
    unsafe impl aya::Pod for super::DropInfo {}
    // SAFETY: `#[repr(C)]`, integers only (u16, u8, u8, u32: no padding), asserted below.
    unsafe impl aya::Pod for super::ExprInsn {}
    // SAFETY: `#[repr(C)]`, a u32 then an array of `ExprInsn` (alignment 4): no padding.
    unsafe impl aya::Pod for super::ExprProgram {}
    const _: () = assert!(size_of::<super::ExprInsn>() == 8);
    const _: () = assert!(size_of::<super::ExprProgram>() == 4 + 8 * super::EXPR_INSNS);
}
