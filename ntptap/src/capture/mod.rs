//! Live capture: load and configure the kernel programs, attach them, drain the rings.
//!
//! Knows BPF and rings, nothing of NTP fields or outputs: frames go to a [`Consumer`].

mod attach;
pub mod btf;
pub mod clock;
pub mod drops;
pub mod follow;
pub mod iface;
pub mod owners;
pub mod privilege;
mod refusal;
mod ring;
mod ringbuf;
mod summary;

use std::{future::Future, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{ProgramError, Xdp},
};
use ntptap_common::{
    Config, FILTER_ALL, FILTER_DEBUG, FILTER_HOST, HOST_ENTRIES, IFSLOT_ENTRIES, INTERFACE_SLOTS,
    MAX_DATA, SHARD_SLOTS, names,
};
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

pub use self::{
    clock::WallClock,
    iface::Interface,
    ringbuf::{RingReader, Rings},
    summary::{StopReason, Summary},
};
pub use crate::counts::Counts;
use crate::frame::{CloseStats, Consumer, SourceEvent, wall_now};

/// The kernel programs, built by `build.rs` from `ntptap-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ntptap"));

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
            ring_bytes: ring_bytes(DEFAULT_RING_KIB),
            ports: vec![123],
            all: false,
            hosts: Vec::new(),
            pin: None,
            debug_ebpf: false,
            drain_interval: Duration::from_millis(250),
            follow_interfaces: false,
            attribution: None,
            drops: false,
            latency: false,
        }
    }
}

impl CaptureConfig {
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
        let what = if self.all {
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

/// What differs between the machines ntptap runs on and shapes what it loads, as read from
/// the running kernel (for `-v`): its release and architecture, its page size (the ring
/// buffers' unit), and whether it compiled the loaded programs to machine code (the JIT, which
/// each architecture has its own of, and which a kernel may have off) or interprets them. The
/// JIT is read from a loaded program's size in machine code: `net.core.bpf_jit_enable` exists
/// only in the first network namespace.
fn platform(ebpf: &Ebpf) -> String {
    let (release, machine) = nix::sys::utsname::uname().map_or_else(
        |_| ("?".to_owned(), "?".to_owned()),
        |u| {
            (
                u.release().to_string_lossy().into_owned(),
                u.machine().to_string_lossy().into_owned(),
            )
        },
    );
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or_else(|| "?".to_owned(), |p| (p / 1024).to_string());
    let jit = ebpf
        .programs()
        .find_map(|(_, program)| program.info().ok())
        .map_or("unknown (no program loaded)", |info| {
            if info.size_jitted() > 0 {
                "compiles the programs (JIT)"
            } else {
                "interprets the programs (no JIT)"
            }
        });
    format!(
        "kernel: Linux {release} on {machine}, {page} KiB pages; BPF {jit}; ntptap built for {}",
        std::env::consts::ARCH
    )
}

/// Round a `-B` size in KiB to what the kernel accepts: a power-of-two number of pages.
#[must_use]
pub fn ring_bytes(kib: u32) -> u32 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u32);
    kib.saturating_mul(1024)
        .max(page)
        .checked_next_power_of_two()
        .unwrap_or(1 << 31)
}

/// A loaded and attached capture. Dropping it detaches everything.
pub struct Session {
    /// Programs and their links; `None` once detached.
    ebpf: Option<Ebpf>,
    loaded: attach::Loaded,
    config: CaptureConfig,
    /// Taken by [`Session::run`].
    ring: Option<Rings>,
    counters: PerCpuArray<MapData, u64>,
    /// Held only to keep the maps open.
    _maps: (Array<MapData, u8>, HostMaps),
    /// `--pin`'s maps, unpinned when dropped.
    pins: Pins,
    logger: Option<aya_log::EbpfLogger<StderrLog>>,
    /// Interface index to counter slot.
    ifslots: Array<MapData, u32>,
    /// The interfaces attached now, with their counter slots.
    attached: Vec<(attach::Attached, u32)>,
    /// Counter slots free for interfaces that appear.
    free_slots: Vec<u32>,
    /// The last counts of interfaces that went away; their slots count others now.
    retired: Counts,
    /// Every interface ever attached, gone ones included: the frames they left in the rings
    /// still carry their names.
    known: Vec<Interface>,
    decisions: Vec<String>,
    /// The process attribution hooks' maps, when they run.
    hooks: Option<owners::Hooks>,
    /// The drop program's counters, when it runs.
    drops: Option<drops::Hook>,
}

/// The IPv4 and IPv6 host sets (`--host`).
pub type HostMaps = (
    aya::maps::HashMap<MapData, u32, u8>,
    aya::maps::HashMap<MapData, [u8; 16], u8>,
);

/// The kernel programs loaded into the kernel and configured, not yet attached.
pub struct Programs {
    /// The programs (loaded by [`Session::open`] on attach, or by a test).
    pub ebpf: Ebpf,
    /// The ring buffers, one per CPU.
    pub ring: Rings,
    /// The per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// The port set. Kept open: the programs reference it when they are loaded.
    pub ports: Array<MapData, u8>,
    /// The IPv4 and IPv6 host sets, kept open for the same reason.
    pub hosts: HostMaps,
    /// Interface index to counter slot.
    pub ifslots: Array<MapData, u32>,
    /// Pinned maps, unpinned on drop.
    pub pins: Pins,
    /// The kernel programs' log (`--debug-ebpf`).
    pub logger: Option<aya_log::EbpfLogger<StderrLog>>,
    /// What the drop program needs of this kernel, when drops are asked for (or why the
    /// kernel cannot give it).
    pub drop_plan: Option<anyhow::Result<drops::Plan>>,
}

/// Prints the kernel programs' log lines (`--debug-ebpf`) on stderr.
pub struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("ntptap-ebpf: {}", record.args());
    }
    fn flush(&self) {}
}

impl Programs {
    /// Create the maps and configure them for `config`: snap length, filter, ring size, ports.
    pub fn load(config: &CaptureConfig) -> anyhow::Result<Self> {
        if OBJECT.is_empty() {
            bail!(
                "this ntptap binary was built with AYA_BUILD_SKIP=1 and carries no kernel \
                 programs: rebuild it without that variable (cargo xtask run, or cargo build)"
            );
        }
        match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
            Ok(true) => {}
            Ok(false) => bail!(
                "this kernel has no BPF ring buffer (it needs Linux 5.8 or later); ntptap \
                 cannot capture here"
            ),
            Err(e) => debug!(error = %e, "could not probe for BPF ring buffer support"),
        }
        raise_memlock_limit();

        let (rings, ring_bytes) = ring_split(config.ring_bytes);
        let bpf_config = kernel_config(config, rings, ring_bytes);
        let drop_plan = config.drops.then(drops::Plan::probe);
        let drop_layout = match &drop_plan {
            Some(Ok(plan)) => plan.layout,
            _ => ntptap_common::DropLayout::default(),
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(names::CONFIG, &bpf_config, true)
            .override_global(names::DROP_LAYOUT, &drop_layout, true)
            .load(OBJECT)
            .map_err(|e| anyhow!("{e}"))
            .context("cannot load ntptap's BPF maps into the kernel")?;

        let logger = if config.debug_ebpf {
            Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, StderrLog)
                    .map_err(|e| anyhow!("cannot set up --debug-ebpf logging: {e}"))?,
            )
        } else {
            None
        };
        let pins = Pins::new(config.pin.as_deref())?;
        let mut take = |name: &str| -> anyhow::Result<aya::maps::Map> {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| anyhow!("the BPF object has no map {name}"))?;
            pins.pin(&map, name)?;
            Ok(map)
        };
        let mut ports: Array<MapData, u8> = Array::try_from(take(names::PORTS)?)?;
        let ring = Rings::new(take(names::SHARDS)?, rings, ring_bytes)?;
        let counters = PerCpuArray::try_from(take(names::COUNTERS)?)?;
        let ifslots = Array::try_from(take(names::IFSLOTS)?)?;
        for &port in &config.ports {
            ports
                .set(u32::from(port), 1, 0)
                .with_context(|| format!("cannot add port {port} to the port set"))?;
        }
        if config.hosts.len() > HOST_ENTRIES as usize {
            bail!("at most {HOST_ENTRIES} --host addresses");
        }
        let mut hosts4: aya::maps::HashMap<MapData, u32, u8> = aya::maps::HashMap::try_from(
            ebpf.take_map(names::HOSTS4).context("no IPv4 host map")?,
        )?;
        let mut hosts6: aya::maps::HashMap<MapData, [u8; 16], u8> = aya::maps::HashMap::try_from(
            ebpf.take_map(names::HOSTS6).context("no IPv6 host map")?,
        )?;
        for host in &config.hosts {
            match host {
                std::net::IpAddr::V4(v4) => hosts4.insert(u32::from_ne_bytes(v4.octets()), 1, 0),
                std::net::IpAddr::V6(v6) => hosts6.insert(v6.octets(), 1, 0),
            }
            .with_context(|| format!("cannot add {host} to the host set"))?;
        }
        Ok(Self {
            ebpf,
            ring,
            counters,
            ports,
            hosts: (hosts4, hosts6),
            ifslots,
            pins,
            logger,
            drop_plan,
        })
    }

    /// Count the frames of interface `ifindex` in counter slot `slot` (0: none of its own).
    pub fn set_slot(&mut self, ifindex: u32, slot: u32) -> anyhow::Result<()> {
        self.ifslots
            .set(ifindex % IFSLOT_ENTRIES, slot, 0)
            .with_context(|| format!("cannot give interface {ifindex} its counter slot"))
    }
}

/// The drop program, if `plan` asks for it and the kernel takes it; what was decided goes
/// into `decisions` (a kernel without what it needs is a warning: the capture goes on).
fn open_drops(
    ebpf: &mut Ebpf,
    plan: Option<anyhow::Result<drops::Plan>>,
    decisions: &mut Vec<String>,
) -> Option<drops::Hook> {
    match plan {
        None => {
            decisions.push("drop records: off (--drops turns them on)".to_owned());
            None
        }
        Some(plan) => match plan.and_then(|plan| drops::Hook::open(ebpf, &plan)) {
            Ok(hook) => {
                decisions.push(format!(
                    "drop records: {} at tp_btf/kfree_skb records NTP frames the kernel \
                     drops in this network namespace, {}",
                    hook.program,
                    if hook.program == names::DROP {
                        "with the kernel's reason"
                    } else {
                        "without a reason (this kernel's tracepoint passes none before 5.17)"
                    }
                ));
                Some(hook)
            }
            Err(e) => {
                let note = format!("drop records: off, the capture goes on without them: {e:#}");
                warn!("{note}");
                decisions.push(note);
                None
            }
        },
    }
}

/// The programs' read-only configuration for `config`, with `rings` rings of `ring_bytes`.
fn kernel_config(config: &CaptureConfig, rings: usize, ring_bytes: u32) -> Config {
    Config {
        // Wake the reader at a quarter of a ring; it also drains on a timer
        // (`drain_interval`). Each wakeup costs it a context switch: with -B split among
        // the CPUs' rings, a quarter of one ring is what an eighth of the single ring was.
        wakeup_bytes: ring_bytes / 4,
        rings: rings as u32,
        port: match config.ports.as_slice() {
            [port] => u32::from(*port),
            _ => 0,
        },
        snaplen: config.snaplen.clamp(1, MAX_DATA as u32),
        filter: if config.all { FILTER_ALL } else { 0 }
            | if config.hosts.is_empty() {
                0
            } else {
                FILTER_HOST
            }
            | if config.debug_ebpf { FILTER_DEBUG } else { 0 },
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

/// How `-B`'s bytes are split: one ring per CPU the kernel may bring up (at most
/// [`SHARD_SLOTS`]), each a power of two of at least a page. Returns the count and the size.
#[must_use]
pub fn ring_split(total: u32) -> (usize, u32) {
    let cpus = aya::util::nr_cpus()
        .unwrap_or(1)
        .clamp(1, SHARD_SLOTS as usize);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or(4096);
    let each = (total / cpus as u32).max(page);
    // The largest power of two not above `each`.
    (cpus, 1 << each.ilog2())
}

/// Maps pinned under `--pin DIR`; unpinned when dropped, on every exit but SIGKILL (after
/// which the next start says what to remove).
pub struct Pins {
    dir: Option<std::path::PathBuf>,
    /// Whether this run created `dir` (and may hand it to `-Z`'s user).
    created_dir: bool,
    pinned: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

impl Pins {
    /// Check (or create, mode 0700) the pin directory. bpffs is often mounted world-writable
    /// (mode 1777), so a directory someone else made, or can write, is refused: a link planted
    /// in it would make ntptap, as root, pin or hand over what it points to.
    fn new(dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
        let mut created_dir = false;
        if let Some(dir) = dir {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {} for --pin", parent.display()))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => created_dir = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create {} for --pin", dir.display()));
                }
            }
            let meta = std::fs::symlink_metadata(dir)
                .with_context(|| format!("cannot stat {}", dir.display()))?;
            let euid = nix::unistd::geteuid().as_raw();
            if !meta.file_type().is_dir() {
                bail!(
                    "{} is not a directory (a symbolic link is refused): --pin needs a directory \
                     of its own",
                    dir.display()
                );
            }
            if meta.uid() != euid {
                bail!(
                    "{} belongs to uid {}, not to the user ntptap runs as ({euid}): whoever owns it \
                     could plant links there; remove it, or let ntptap create its own",
                    dir.display(),
                    meta.uid()
                );
            }
            if meta.mode() & 0o022 != 0 {
                bail!(
                    "{} is writable by its group or others (mode {:o}): anyone could plant links \
                     there; `chmod go-w` it, or let ntptap create its own",
                    dir.display(),
                    meta.mode() & 0o7777
                );
            }
            let fs = nix::sys::statfs::statfs(dir)
                .with_context(|| format!("cannot stat {}", dir.display()))?;
            if fs.filesystem_type() != nix::sys::statfs::BPF_FS_MAGIC {
                bail!(
                    "{} is not on a BPF filesystem: --pin needs a directory under bpffs (usually \
                     /sys/fs/bpf; mount one with `mount -t bpf bpf /sys/fs/bpf`)",
                    dir.display()
                );
            }
        }
        Ok(Self {
            dir: dir.map(std::path::Path::to_path_buf),
            created_dir,
            pinned: std::cell::RefCell::default(),
        })
    }

    /// What this run created: the directory (if it did) and the maps it pinned.
    pub fn created(&self) -> Vec<std::path::PathBuf> {
        self.dir
            .iter()
            .filter(|_| self.created_dir)
            .cloned()
            .chain(self.pinned.borrow().iter().cloned())
            .collect()
    }

    fn pin(&self, map: &aya::maps::Map, name: &str) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(name);
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists: another ntptap pinned its maps there, or one was killed before \
                 it could unpin them; remove the NTPTAP_* files there, or use another --pin directory",
                path.display()
            );
        }
        map.pin(&path)
            .with_context(|| format!("cannot pin {name} at {}", path.display()))?;
        info!(path = %path.display(), "pinned");
        self.pinned.borrow_mut().push(path);
        Ok(())
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for path in self.pinned.borrow().iter() {
            if let Err(e) = std::fs::remove_file(path) {
                warn!(
                    "cannot unpin {}: {e}; remove it by hand (`rm {}`)",
                    path.display(),
                    path.display()
                );
            }
        }
    }
}

/// Process attribution could not be set up: the capture can go on without it.
#[derive(Debug)]
struct NoAttribution(anyhow::Error);

impl std::fmt::Display for NoAttribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for NoAttribution {}

impl Session {
    /// Load the programs with `config`, and attach them. Every error says what to do. Where
    /// the kernel lacks what process attribution needs, the capture goes on without it and
    /// says why (on stderr, and in [`Session::decisions`]), unless `--pid`, `--comm` or
    /// `--cgroup` asked for it.
    pub fn open(config: &CaptureConfig) -> anyhow::Result<Self> {
        let Some(selection) = &config.attribution else {
            let mut session = Self::open_as(config)?;
            session
                .decisions
                .push("process attribution: off (--attribution turns it on)".to_owned());
            return Ok(session);
        };
        let err = match Self::open_as(config) {
            Ok(session) => return Ok(session),
            Err(err) => err,
        };
        let Some(why) = err.downcast_ref::<NoAttribution>() else {
            return Err(err);
        };
        let why = format!("{why}");
        if !selection.is_empty() {
            bail!(
                "--pid, --comm and --cgroup need process attribution, which this host cannot do: {why}"
            );
        }
        let plain = CaptureConfig {
            attribution: None,
            ..config.clone()
        };
        let mut session = Self::open_as(&plain)?;
        let what = if config.latency {
            "process attribution and in-host latency stages"
        } else {
            "process attribution"
        };
        let note = format!("{what}: off, the capture goes on without them: {why}");
        warn!("{note}");
        session.decisions.push(note);
        Ok(session)
    }

    /// [`Session::open`] with attribution as `config` says; a failure of attribution alone is
    /// a [`NoAttribution`].
    fn open_as(config: &CaptureConfig) -> anyhow::Result<Self> {
        let Programs {
            mut ebpf,
            ring,
            counters,
            ports,
            hosts,
            ifslots,
            pins,
            logger,
            drop_plan,
        } = Programs::load(config)?;
        let mut decisions = vec![format!(
            "ring buffers: {} of {} KiB, one per CPU, each read at a quarter full or every {} ms; filter: {}{}",
            ring.len(),
            ring.ring_bytes() / 1024,
            config.drain_interval.as_millis(),
            if config.all {
                "every frame".to_owned()
            } else {
                format!("UDP ports {:?}", config.ports)
            },
            if config.hosts.is_empty() {
                String::new()
            } else {
                format!(", hosts {:?}", config.hosts)
            },
        )];
        let hooks = if let Some(selection) = &config.attribution {
            let hooks = owners::Hooks::open(&mut ebpf, selection, config.latency)
                .map_err(|e| anyhow::Error::new(NoAttribution(e)))?;
            decisions.push(format!(
                "process attribution: cgroup socket hooks (connect, sendmsg, recvmsg, post_bind, \
                 sock_release) on {} record each NTP socket's owner; egress frames take their \
                 skb's socket, ingress frames the socket bpf_sk_lookup_udp finds{}",
                hooks.root.path.display(),
                if selection.is_empty() {
                    String::new()
                } else {
                    format!("; capturing only {}", selection.text())
                }
            ));
            if config.latency {
                decisions.push(
                    "in-host latency: the sendmsg and recvmsg hooks stamp each NTP socket's \
                     sends and reads, cgroup_skb ingress each datagram queued on it; egress \
                     frames carry the time since"
                        .to_owned(),
                );
            }
            Some(hooks)
        } else {
            None
        };
        let drops = open_drops(&mut ebpf, drop_plan, &mut decisions);
        let loaded = match attach::load(&mut ebpf, config, &mut decisions) {
            Ok(loaded) => loaded,
            // The capture programs carry the owner lookups: without them they may load.
            Err(e) if config.attribution.is_some() => {
                return Err(anyhow::Error::new(NoAttribution(e.context(
                    "the capture programs did not load with the socket owner lookups",
                ))));
            }
            Err(e) => return Err(e),
        };
        decisions.insert(0, platform(&ebpf));
        if config.follow_interfaces {
            decisions.push(
                "-i any: following link events; interfaces that appear are attached as they come"
                    .to_owned(),
            );
        }
        let mut session = Self {
            ebpf: Some(ebpf),
            loaded,
            config: config.clone(),
            ring: Some(ring),
            counters,
            _maps: (ports, hosts),
            pins,
            logger,
            ifslots,
            attached: Vec::new(),
            free_slots: (1..INTERFACE_SLOTS).rev().collect(),
            retired: Counts::default(),
            known: Vec::new(),
            decisions,
            hooks,
            drops,
        };
        for iface in &config.interfaces {
            // On an error, the session drops, and with it every link made so far.
            let mut decisions = Vec::new();
            session.attach(iface, &mut decisions)?;
            session.decisions.extend(decisions);
        }
        Ok(session)
    }

    /// Give `iface` a counter slot and attach the programs to it.
    fn attach(&mut self, iface: &Interface, decisions: &mut Vec<String>) -> anyhow::Result<()> {
        let ebpf = self
            .ebpf
            .as_mut()
            .context("the programs are already detached")?;
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            warn!(
                iface = %iface.name,
                "more than {} interfaces at once: this one is counted with the others that have no slot of their own",
                INTERFACE_SLOTS - 1
            );
            0
        });
        let set = self
            .ifslots
            .set(iface.index % IFSLOT_ENTRIES, slot, 0)
            .with_context(|| format!("cannot give {} its counter slot", iface.name));
        let attached =
            set.and_then(|()| attach::attach(ebpf, &self.config, &self.loaded, iface, decisions));
        match attached {
            Ok(attached) => {
                self.attached.push((attached, slot));
                self.known.retain(|k| k.index != iface.index);
                self.known.push(iface.clone());
                Ok(())
            }
            Err(e) => {
                let _ = self.ifslots.set(iface.index % IFSLOT_ENTRIES, 0, 0);
                if slot != 0 {
                    self.free_slots.push(slot);
                }
                Err(e)
            }
        }
    }

    /// Release an interface that went away: its links, and its counter slot once its counts
    /// are read one last time (its frames stopped with it) and set back to zero.
    fn release(&mut self, attached: attach::Attached, slot: u32) {
        let name = attached.iface.name.clone();
        let index = attached.iface.index;
        if let Some(ebpf) = self.ebpf.as_mut() {
            attach::detach(ebpf, attached);
        }
        let _ = self.ifslots.set(index % IFSLOT_ENTRIES, 0, 0);
        if slot == 0 {
            return;
        }
        match crate::counts::read_block(&self.counters, slot) {
            Ok(block) => self.retired.add(&name, &block),
            Err(e) => {
                warn!(iface = %name, "cannot read the counters of an interface that went away: {e}");
            }
        }
        let cleared = aya::util::nr_cpus()
            .map_err(|(_, e)| anyhow!("{e}"))
            .and_then(|cpus| {
                for direction in 0..ntptap_common::DIRECTIONS as u8 {
                    for counter in ntptap_common::Counter::ALL {
                        let key = ntptap_common::counter_index(slot, direction, counter);
                        let zeros = aya::maps::PerCpuValues::try_from(vec![0u64; cpus])?;
                        self.counters.set(key, zeros, 0)?;
                    }
                }
                Ok(())
            });
        match cleared {
            // The slot is clean: another interface may count in it.
            Ok(()) => self.free_slots.push(slot),
            Err(e) => warn!(iface = %name, "cannot clear a counter slot; it stays unused: {e}"),
        }
    }

    /// What was decided while attaching (XDP mode, TCX or clsact, ring size), for `-v`.
    #[must_use]
    pub fn decisions(&self) -> &[String] {
        &self.decisions
    }

    /// The pin directory and pinned maps this run created (`--pin`), for `-Z` to hand over.
    pub fn pinned(&self) -> Vec<std::path::PathBuf> {
        self.pins.created()
    }

    /// The counters now: the attached interfaces', and the last of those that went away.
    pub fn counts(&self) -> anyhow::Result<Counts> {
        let mut counts = Counts::read(
            &self.counters,
            self.attached
                .iter()
                .map(|(a, slot)| (*slot, a.iface.name.as_str())),
        )?;
        counts.merge(&self.retired);
        counts.live = self
            .attached
            .iter()
            .map(|(a, _)| a.iface.name.clone())
            .collect();
        if let Some(hooks) = &self.hooks {
            counts.owners = Some(hooks.counts()?);
        }
        if let Some(drops) = &self.drops {
            counts.drops = Some(drops.counts()?);
        }
        // Frames of interfaces without a slot of their own (more than 255 at once).
        let other = crate::counts::read_block(&self.counters, 0)?;
        if other.iter().flatten().any(|v| *v > 0) {
            counts.add("(other)", &other);
        }
        Ok(counts)
    }

    /// `-i any`: attach to interfaces that appeared, release those that went.
    fn follow(&mut self, drain: &mut ring::Drain) {
        if self.ebpf.is_none() {
            return;
        }
        let present = match iface::all() {
            Ok(present) => present,
            Err(e) => {
                warn!("{e:#}");
                return;
            }
        };
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.attached)
            .into_iter()
            .partition(|(a, _)| present.contains(&a.iface));
        self.attached = kept;
        for (attached, slot) in gone {
            info!(iface = %attached.iface.name, "interface went away; released");
            self.release(attached, slot);
        }
        for iface in present {
            if self.attached.iter().any(|(a, _)| a.iface == iface) {
                continue;
            }
            let mut decisions = Vec::new();
            match self.attach(&iface, &mut decisions) {
                Ok(()) => info!(iface = %iface.name, "interface appeared; attached"),
                Err(e) => warn!(
                    iface = %iface.name,
                    "cannot attach to an interface that appeared: {e:#}"
                ),
            }
        }
        drain.set_names(self.known.iter().map(|i| (i.index, i.name.clone())));
    }

    /// Once a second: counters to the consumer, a check that every interface named with -i
    /// is still there, the consumer's timers, and a flush. `Some` when the capture must stop.
    fn each_second<C: Consumer>(&self, consumer: &mut C) -> Option<StopReason> {
        if let Ok(counts) = self.counts()
            && let Err(e) = consumer.event(SourceEvent::Kernel(&counts))
        {
            return Some(StopReason::from_output(e));
        }
        // An interface that goes away takes its links with it: stop, and say so.
        if !self.config.follow_interfaces
            && let Some((gone, _)) = self.attached.iter().find(|(a, _)| {
                // Only "no such device" means gone: out of file descriptors (EMFILE: the
                // lookup opens a socket) or memory says nothing of the interface.
                match nix::net::if_::if_nametoindex(a.iface.name.as_str()) {
                    Ok(index) => index != a.iface.index,
                    Err(nix::errno::Errno::ENODEV) => true,
                    Err(e) => {
                        warn!(iface = %a.iface.name, "cannot check that the interface is still there: {e}");
                        false
                    }
                }
            })
        {
            return Some(StopReason::InterfaceGone(gone.iface.name.clone()));
        }
        consumer
            .event(SourceEvent::Tick(wall_now()))
            .and_then(|()| consumer.event(SourceEvent::Flush))
            .err()
            .map(StopReason::from_output)
    }

    /// `-i any`: a subscription to link events, and the interfaces that changed between the
    /// first listing and the subscription attached or released.
    fn watch_links(
        &mut self,
        drain: &mut ring::Drain,
    ) -> anyhow::Result<Option<AsyncFd<follow::LinkEvents>>> {
        if !self.config.follow_interfaces {
            return Ok(None);
        }
        let events = follow::LinkEvents::open()
            .context("cannot subscribe to link events to follow -i any")?;
        // SAFETY: `LinkEvents` owns its socket and closes it only when dropped, which the
        // AsyncFd does after deregistering it.
        let events =
            unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
                .context("cannot watch link events")?;
        self.follow(drain);
        Ok(Some(events))
    }

    /// The reader of the rings, with the names it needs.
    fn drain(&self, limit: Option<u64>) -> ring::Drain {
        let mut drain = ring::Drain::new(limit);
        drain.owners = owners::Names::new(self.hooks.as_ref().map(|h| h.root.path.clone()));
        drain.reasons = self.drops.as_ref().map(|d| d.reasons.clone());
        drain.set_names(self.known.iter().map(|i| (i.index, i.name.clone())));
        drain
    }

    /// SIGUSR1: the counts so far on stderr, as tcpdump prints them, and a flight-recorder
    /// dump; `Some` when the output failed.
    fn report_so_far<C: Consumer>(
        &self,
        drain: &ring::Drain,
        consumer: &mut C,
    ) -> Option<StopReason> {
        if let Ok(counts) = self.counts() {
            let so_far = Summary {
                captured: drain.captured,
                drop_records: drain.drop_records,
                bad_records: drain.bad_records,
                unwritten: consumer.unwritten(),
                reason: StopReason::Signal("SIGUSR1"),
                counts,
            };
            eprint!("{}", so_far.render());
        }
        consumer
            .event(SourceEvent::Trigger("SIGUSR1", wall_now()))
            .err()
            .map(StopReason::from_output)
    }

    /// Drain the rings into `consumer` until `stop` resolves, `limit` frames are taken, or the
    /// output ends; then detach, take what is left, read the counters and close the output.
    /// Signals: SIGHUP starts a new output file, SIGUSR1 prints the counts so far on stderr
    /// (as tcpdump does), SIGUSR2 flushes the output.
    pub async fn run<C: Consumer>(
        mut self,
        consumer: &mut C,
        limit: Option<u64>,
        stop: impl Future<Output = StopReason>,
    ) -> anyhow::Result<Summary> {
        use tokio::signal::unix::{SignalKind, signal};
        let start = wall_now();
        let mut drain = self.drain(limit);
        let rings = self.ring.take().context("the capture already ran")?;
        // SAFETY: the ring buffer owns its file descriptor and nothing replaces or closes it
        // while the AsyncFd holds it; `into_inner` gives it back below.
        let mut ring =
            unsafe { AsyncFd::register_with_interest(rings, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow!("cannot register the ring buffer with the event loop: {e}"))?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // The kernel wakes us only past a fill watermark; this reads a quiet ring.
        let mut poll = tokio::time::interval(self.config.drain_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let mut usr1 = signal(SignalKind::user_defined1()).context("cannot handle SIGUSR1")?;
        let mut usr2 = signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?;
        let mut logger = match self.logger.take() {
            // SAFETY: the logger owns its ring buffer's descriptor for as long as the AsyncFd.
            Some(l) => Some(
                unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }
                    .map_err(|e| anyhow!("cannot watch the kernel log: {e}"))?,
            ),
            None => None,
        };
        let links = self.watch_links(&mut drain)?;
        tokio::pin!(stop);
        let reason = loop {
            tokio::select! {
                biased;
                reason = &mut stop => break reason,
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    if let Some(reason) = drain.drain(guard.get_inner_mut(), consumer) {
                        break reason;
                    }
                    guard.clear_ready();
                }
                guard = async { logger.as_mut().expect("checked").readable_mut().await }, if logger.is_some() => {
                    let mut guard = guard.context("waiting on the kernel log")?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                guard = async { links.as_ref().expect("checked").readable().await }, if links.is_some() => {
                    let mut guard = guard.context("waiting on link events")?;
                    if guard.get_inner().take() {
                        self.follow(&mut drain);
                    }
                    guard.clear_ready();
                }
                _ = poll.tick() => {
                    if let Some(reason) = drain.drain(ring.get_mut(), consumer) {
                        break reason;
                    }
                }
                _ = hangup.recv() => {
                    // SIGHUP: a new output file now, where there are files.
                    if let Err(e) = consumer.event(SourceEvent::Rotate(wall_now())) {
                        break StopReason::from_output(e);
                    }
                }
                // SIGUSR1: the counts so far, a flight-recorder dump; the capture goes on.
                _ = usr1.recv() => if let Some(reason) = self.report_so_far(&drain, consumer) {
                    break reason;
                },
                // SIGUSR2: the output flushed now.
                _ = usr2.recv() => if let Err(e) = consumer.event(SourceEvent::Flush) {
                    break StopReason::from_output(e);
                },
                _ = tick.tick() => {
                    drain.clock.resync();
                    if let Some(reason) = self.each_second(consumer) {
                        break reason;
                    }
                }
            }
        };
        // Detach first (the programs own their links), so nothing more arrives; then take what
        // is already in the rings. `attached` keeps each interface's counter slot for the
        // final counts.
        self.ebpf = None;
        if let Some(logger) = logger.as_mut() {
            logger.get_mut().flush();
        }
        let mut ring = ring.into_inner();
        let reason = if reason.takes_the_rest() {
            drain.drain(&mut ring, consumer).unwrap_or(reason)
        } else {
            reason
        };
        let counts = self.counts()?;
        let stats = CloseStats {
            start,
            end: wall_now(),
            received: Some(counts.total(ntptap_common::Counter::Matched)),
            dropped: Some(counts.dropped()),
        };
        let reason = reason.after_output(consumer.event(SourceEvent::Close(&stats)));
        Ok(Summary {
            captured: drain.captured,
            drop_records: drain.drop_records,
            bad_records: drain.bad_records,
            unwritten: consumer.unwritten(),
            reason,
            counts,
        })
    }
}

fn raise_memlock_limit() {
    // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones to the cgroup.
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and has no other effect on memory.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) };
    if ret != 0 {
        debug!("could not raise RLIMIT_MEMLOCK; fine on Linux 5.11 and later");
    }
}

/// The XDP program this kernel can run, and how it copies frames: the one that calls
/// `bpf_xdp_load_bytes` (Linux 5.18) if a probe program calling it loads, else the one with a
/// bounded copy loop.
pub fn xdp_program(ebpf: &mut Ebpf) -> (&'static str, &'static str) {
    let probe: Result<&mut Xdp, _> = program(ebpf, names::PROBE_XDP_LOAD_BYTES);
    match probe.map(Xdp::load) {
        Ok(Ok(())) => (names::XDP, "bpf_xdp_load_bytes"),
        Ok(Err(e)) => {
            debug!(error = %e, "no bpf_xdp_load_bytes (Linux 5.18); XDP copies with a loop");
            (
                names::XDP_COPY,
                "a bounded copy loop (no bpf_xdp_load_bytes before Linux 5.18)",
            )
        }
        Err(e) => {
            debug!(error = %e, "probe program missing; XDP copies with a loop");
            (names::XDP_COPY, "a bounded copy loop")
        }
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?;
    Ok(program.try_into()?)
}

fn verifier_error(name: &str, err: &ProgramError) -> anyhow::Error {
    anyhow!(
        "the kernel refused to load the BPF program {name} ({}). Run with NTPTAP_LOG=debug to \
         see the verifier's log, and report it with `uname -rv`",
        refusal::Refusal::of(name, err)
    )
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
            let total = ring_bytes(kib);
            let (count, each) = ring_split(total);
            assert_eq!(count, cpus);
            assert!(each.is_power_of_two() && each >= 4096, "{kib} KiB: {each}");
            // Never more than -B, unless a page each is already more.
            assert!(count as u64 * u64::from(each) <= u64::from(total).max(4096 * count as u64));
            // And not less than half of it: the largest power of two that fits.
            assert!(
                u64::from(each) * 2 > u64::from(total) / count as u64,
                "{kib} KiB: {each}"
            );
        }
    }
}
