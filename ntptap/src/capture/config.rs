//! What a capture is asked to do ([`CaptureConfig`]: interfaces, hook, directions, filters,
//! ring space), and what the kernel programs are told of it (`.rodata`'s `Config`).

use std::time::Duration;

use ntptap_common::{
    Config, FILTER_ALL, FILTER_DEBUG, FILTER_EXPR, FILTER_HOST, MAX_DATA, SHARD_SLOTS,
};

use super::{iface::Interface, owners};

/// Default ring buffer space, KiB (`-B`).
pub const DEFAULT_RING_KIB: u32 = 4096;

/// Where ingress frames are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP for ingress, TC for egress.
    Xdp,
    /// TC for both directions: the default (see BENCHMARKS.md).
    Tc,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// Native (driver) mode where the driver has it, generic otherwise.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// Which directions to capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directions {
    /// Frames coming in.
    In,
    /// Frames going out.
    Out,
    /// Both.
    Inout,
}

/// What to capture and how.
#[derive(Clone, Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches, not a state machine"
)]
pub struct CaptureConfig {
    /// Interfaces to attach to.
    pub interfaces: Vec<Interface>,
    /// Ingress hook.
    pub hook: Hook,
    /// XDP attach mode.
    pub xdp_mode: XdpAttach,
    /// Directions.
    pub directions: Directions,
    /// Bytes to copy of each frame.
    pub snaplen: u32,
    /// Ring buffer size in bytes (a power of two, a multiple of the page size).
    pub ring_bytes: u32,
    /// UDP ports to match.
    pub ports: Vec<u16>,
    /// Capture every frame.
    pub all: bool,
    /// Capture only frames from or to these addresses (none: no host filter).
    pub hosts: Vec<std::net::IpAddr>,
    /// A filter expression, compiled: it alone decides which frames are captured (the
    /// plan folded `--port` and `--host` into it).
    pub expression: Option<crate::filter::Expression>,
    /// Pin the counters, ring and port maps in this bpffs directory while running.
    pub pin: Option<std::path::PathBuf>,
    /// Log each frame's verdict from the kernel programs (aya-log).
    pub debug_ebpf: bool,
    /// How often the rings are read when the kernel has not woken the reader (it does so at a
    /// quarter of a ring): the longest a quiet frame waits.
    pub drain_interval: Duration,
    /// Attach to interfaces that appear during the capture and release those that go
    /// (`-i any`), instead of stopping when one goes.
    pub follow_interfaces: bool,
    /// Attribute each frame to the process that owns its socket, and capture only the frames
    /// of the processes selected (`--pid`, `--comm`, `--cgroup`); `None` (the default): no
    /// attribution.
    pub attribution: Option<owners::Selection>,
    /// Record the NTP frames the kernel drops after ntptap's hooks, with its reason
    /// (`tp_btf/kfree_skb`).
    pub drops: bool,
    /// Stamp NTP reads and sends on sockets, for in-host latency (with attribution's hooks).
    pub latency: bool,
    /// Attribution also records the creator of every UDP socket (`sock_create`): a client that
    /// sends from a socket it neither binds nor connects is named too. `--attribution` (and
    /// what implies it) asks; by default only binds and connects are hooked.
    pub every_socket: bool,
    /// Say on stderr what is decided as it happens (`-v`): interfaces that `-i any` attaches
    /// and releases.
    pub verbose: bool,
}

impl Default for CaptureConfig {
    /// The command line's defaults, with no interface yet: TC both ways, whole frames, UDP
    /// port 123, the default `-B`, no host filter, rings read every 250 ms (as when only
    /// writing a file).
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            hook: Hook::Tc,
            xdp_mode: XdpAttach::Auto,
            directions: Directions::Inout,
            snaplen: MAX_DATA as u32,
            ring_bytes: DEFAULT_RING_KIB * 1024,
            ports: vec![123],
            all: false,
            hosts: Vec::new(),
            expression: None,
            pin: None,
            debug_ebpf: false,
            drain_interval: Duration::from_millis(250),
            follow_interfaces: false,
            attribution: None,
            drops: false,
            latency: false,
            every_socket: false,
            verbose: false,
        }
    }
}

impl CaptureConfig {
    /// The rings this configuration builds.
    #[must_use]
    pub fn ring(&self) -> RingSize {
        ring_size(self.ring_bytes)
    }

    /// The hooks in use, in words.
    #[must_use]
    pub fn hooks_text(&self) -> &'static str {
        match (self.directions, self.hook) {
            (Directions::In, Hook::Xdp) => "XDP ingress",
            (Directions::In, Hook::Tc) => "TC ingress",
            (Directions::Out, _) => "TC egress",
            (Directions::Inout, Hook::Xdp) => "XDP ingress, TC egress",
            (Directions::Inout, Hook::Tc) => "TC ingress and egress",
        }
    }

    /// The kernel filter as text (pcapng's `if_filter`).
    #[must_use]
    pub fn filter_text(&self) -> String {
        let what = if let Some(e) = &self.expression {
            e.text.clone()
        } else if self.all {
            "all frames".to_owned()
        } else {
            self.ports
                .iter()
                .map(|p| format!("udp port {p}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        format!("{what} (ntptap kernel filter, {})", self.hooks_text())
    }
}

/// The page size, read once.
#[must_use]
pub fn page_size() -> u32 {
    static PAGE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(4096)
    })
}

/// The rings as built: how many, and the bytes of each (a power of two of at least a page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize {
    /// One per CPU the kernel may bring up (at most [`SHARD_SLOTS`]).
    pub count: usize,
    /// Bytes of each.
    pub each: u32,
}

impl RingSize {
    /// Bytes of all of them: what `ntptap_ring_buffer_bytes` reports.
    #[must_use]
    pub fn total(self) -> u64 {
        self.count as u64 * u64::from(self.each)
    }
}

/// The programs' read-only configuration for `config`, with `rings` rings of `ring_bytes`.
pub(super) fn kernel_config(config: &CaptureConfig, rings: usize, ring_bytes: u32) -> Config {
    Config {
        // Wake the reader at a quarter of a ring; it also drains on a timer
        // (`drain_interval`). Each wakeup costs it a context switch: with -B split among
        // the CPUs' rings, a quarter of one ring is what an eighth of the single ring was.
        wakeup_bytes: ring_bytes / super::ringbuf::WAKEUP_DIVISOR,
        rings: rings as u32,
        port: match config.ports.as_slice() {
            [port] => u32::from(*port),
            _ => 0,
        },
        snaplen: config.snaplen.clamp(1, MAX_DATA as u32),
        // An expression decides alone: the port set, --all and the host sets say nothing.
        filter: if config.expression.is_some() {
            FILTER_EXPR
        } else {
            let all = if config.all { FILTER_ALL } else { 0 };
            all | if config.hosts.is_empty() {
                0
            } else {
                FILTER_HOST
            }
        } | if config.debug_ebpf { FILTER_DEBUG } else { 0 },
        attribution: config
            .attribution
            .as_ref()
            .map_or(0, owners::Selection::flags)
            | if config.latency && config.attribution.is_some() {
                ntptap_common::ATTRIBUTE_LATENCY
            } else {
                0
            },
    }
}

/// How `-B`'s bytes are shared out, in the one place the ring is sized: one ring per CPU the
/// kernel may bring up (at most [`SHARD_SLOTS`]), each the largest power of two that fits its
/// share, and at least a page.
#[must_use]
pub fn ring_size(asked: u32) -> RingSize {
    let count = aya::util::nr_cpus()
        .unwrap_or(1)
        .clamp(1, SHARD_SLOTS as usize);
    let each = (asked / count as u32).max(page_size());
    RingSize {
        count,
        each: 1 << each.ilog2(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_space_is_shared_out_in_powers_of_two() {
        let cpus = aya::util::nr_cpus()
            .unwrap_or(1)
            .clamp(1, SHARD_SLOTS as usize);
        for kib in [4, 8, 64, 1000, 4096, 65536] {
            let asked = kib * 1024;
            let RingSize { count, each } = ring_size(asked);
            assert_eq!(count, cpus);
            assert!(
                each.is_power_of_two() && each >= page_size(),
                "{kib} KiB: {each}"
            );
            // Never more than -B, unless a page each is already more.
            let total = ring_size(asked).total();
            assert!(total <= u64::from(asked).max(u64::from(page_size()) * count as u64));
            // And not less than half of it: the largest power of two that fits.
            assert!(
                u64::from(each) * 2 > u64::from(asked) / count as u64,
                "{kib} KiB: {each}"
            );
        }
    }
}
