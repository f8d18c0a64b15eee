//! What every program shares: the configuration the loader writes, the rings, the interface
//! slots, the host and port sets, and how a record's length and wakeup are decided. Imports
//! nothing of the programs themselves, so each program's file (capture, owners, drops) imports
//! it and none imports another back.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::{ArrayOfMaps, RingBuf},
    helpers::{bpf_get_smp_processor_id, generated::bpf_ringbuf_query},
    macros::{btf_map, map},
    maps::{Array, HashMap},
};
use ntptap_common::{Config, HOST_ENTRIES, IFSLOT_ENTRIES, PORT_ENTRIES, SHARD_SLOTS};

/// Read-only configuration; the loader overwrites it before loading (see `Config`).
#[unsafe(no_mangle)]
pub static NTPTAP_CONFIG: Config = Config::DEFAULT;

/// Captured frames, on their way to the loader: one ring buffer per CPU, so CPUs capturing at
/// once do not queue on one ring's lock. The loader creates the rings (their size from `-B`)
/// and fills the first `Config::rings` slots; CPU `c` writes to slot `c % rings`. The ring type
/// here is only the template the kernel checks them against.
#[btf_map]
pub static NTPTAP_SHARDS: ArrayOfMaps<RingBuf<u8, 4096>, { SHARD_SLOTS as usize }> =
    ArrayOfMaps::new();

/// The counter slot of each attached interface, at `ifindex % IFSLOT_ENTRIES`; written by the
/// loader as it attaches and releases interfaces.
#[map(name = "NTPTAP_IFSLOTS")]
pub static NTPTAP_IFSLOTS: Array<u32> = Array::with_max_entries(IFSLOT_ENTRIES, 0);

/// IPv4 hosts of `--host`, in network byte order.
#[map(name = "NTPTAP_HOSTS4")]
pub static NTPTAP_HOSTS4: HashMap<u32, u8> = HashMap::with_max_entries(HOST_ENTRIES, 0);

/// IPv6 hosts of `--host`.
#[map(name = "NTPTAP_HOSTS6")]
pub static NTPTAP_HOSTS6: HashMap<[u8; 16], u8> = HashMap::with_max_entries(HOST_ENTRIES, 0);

/// The UDP port set: a non-zero byte at index `port` means the port is watched.
#[map(name = "NTPTAP_PORTS")]
pub static NTPTAP_PORTS: Array<u8> = Array::with_max_entries(PORT_ENTRIES, 0);

#[inline(always)]
pub fn config() -> Config {
    // SAFETY: a read of a static the loader may have rewritten before load; volatile so the
    // compiler does not fold the default value in.
    unsafe { core::ptr::read_volatile(&raw const NTPTAP_CONFIG) }
}

#[inline(always)]
pub fn port_watched(port: u16) -> bool {
    NTPTAP_PORTS.get(u32::from(port)).is_some_and(|v| *v != 0)
}

/// Whether `port` is watched: a comparison when the set holds one port, else a lookup.
#[inline(always)]
pub fn port_watched_by(config: &Config, port: u16) -> bool {
    if config.port != 0 {
        u32::from(port) == config.port
    } else {
        port_watched(port)
    }
}

/// Wake the reader once, when this record (of `size` bytes) takes the ring past the watermark:
/// a wakeup per record costs the reader a syscall and a context switch per packet, and a
/// forced wakeup per record above the watermark would cost most exactly when the reader is
/// behind. The reader also drains on a short timer, so a quiet ring is read too.
#[inline(always)]
pub fn wakeup_flags(config: &Config, ring: &Ring, size: u64) -> u64 {
    let watermark = u64::from(config.wakeup_bytes);
    if watermark == 0 {
        return 0;
    }
    // Bytes between the consumer and the producer, this record included.
    // SAFETY: `ring` is a ring buffer map the kernel handed us.
    let pending = unsafe {
        bpf_ringbuf_query(
            core::ptr::from_ref(ring).cast_mut().cast(),
            u64::from(BPF_RB_AVAIL_DATA),
        )
    };
    if pending >= watermark && pending.saturating_sub(size) < watermark {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// A ring buffer of [`NTPTAP_SHARDS`].
pub type Ring = RingBuf<u8, 4096>;

/// This CPU's ring buffer.
#[inline(always)]
pub fn this_cpus_ring(config: &Config) -> Option<&'static Ring> {
    // SAFETY: the helper takes no arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let rings = config.rings;
    // A division only where CPUs outnumber rings.
    let slot = if cpu < rings {
        cpu
    } else if rings > 1 {
        cpu % rings
    } else {
        0
    };
    NTPTAP_SHARDS.get(slot)
}

/// The length to copy into a record of `N` data bytes: `cap` (at least 1) bounded to `1..=N`
/// in a form every verifier takes.
///
/// The verifier needs the very register passed to the copy helper bounded to 1..=N. A zero
/// test on a copy of it does not carry over, so derive the length as clamp(cap - 1) + 1: the
/// bounds then follow from arithmetic on that register. The volatile read hides `cap >= 1`
/// from the compiler, which would otherwise fold the clamp into min(cap, N) and leave older
/// verifiers (6.1) a length whose minimum is 0.
#[inline(always)]
pub fn copy_len<const N: usize>(cap: u64) -> u64 {
    // SAFETY: a read of a local.
    let cap = unsafe { core::ptr::read_volatile(&raw const cap) };
    let mut last = cap.wrapping_sub(1);
    if last > (N - 1) as u64 {
        last = (N - 1) as u64;
    }
    last + 1
}
