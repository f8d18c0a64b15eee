//! Live capture: load and configure the kernel programs, attach them, drain the ring.
//!
//! Knows BPF and rings, nothing of NTP fields: frames go to a [`Sink`].

pub mod clock;
pub mod counters;
pub mod iface;
pub mod privilege;
mod ring;
mod ringbuf;

use std::{collections::HashMap, future::Future, io, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{NlOptions, TcAttachOptions},
    },
};
use ntptap_common::{
    Config, FILTER_ALL, FILTER_DEBUG, FILTER_HOST, HOST_ENTRIES, MAX_DATA, SHARD_SLOTS, names,
};
use tokio::io::unix::AsyncFd;
use tracing::{debug, info};

pub use self::{
    clock::WallClock,
    counters::Counts,
    iface::Interface,
    ringbuf::{RingReader, Rings},
};
use crate::output::Sink;

/// The kernel programs, built by `build.rs` from `ntptap-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ntptap"));

/// Where ingress frames are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    /// XDP for ingress, TC for egress.
    Xdp,
    /// TC for both directions: the default (see BENCHMARKS.md).
    Tc,
}

/// XDP attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode where the driver has it, generic otherwise.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// Which directions to capture (tcpdump's `-Q`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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
pub struct CaptureConfig {
    /// Interfaces to attach to.
    pub interfaces: Vec<Interface>,
    /// Ingress hook.
    pub hook: Hook,
    /// XDP attach mode.
    pub xdp_mode: XdpModeArg,
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
}

impl Default for CaptureConfig {
    /// The command line's defaults, with no interface yet: TC both ways, whole frames, UDP
    /// port 123, the default `-B`, no host filter, rings read every 250 ms (as when only
    /// writing a file).
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            hook: Hook::Tc,
            xdp_mode: XdpModeArg::Auto,
            directions: Directions::Inout,
            snaplen: MAX_DATA as u32,
            ring_bytes: ring_bytes(crate::cli::DEFAULT_RING_KIB),
            ports: vec![123],
            all: false,
            hosts: Vec::new(),
            pin: None,
            debug_ebpf: false,
            drain_interval: Duration::from_millis(250),
        }
    }
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

/// Why a capture ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A signal (its name).
    Signal(&'static str),
    /// `-c` frames were written.
    Count,
    /// The reader of the output went away (a broken pipe).
    OutputClosed,
    /// `--duration` elapsed.
    Duration,
    /// An interface being captured went away (its name).
    InterfaceGone(String),
    /// The output could not be written (a full disk, a removed directory): what failed.
    OutputFailed(String),
}

/// The outcome of a capture.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Frames handed to the sink.
    pub captured: u64,
    /// Ring records that could not be read (malformed; should never happen).
    pub bad_records: u64,
    /// Frames handed to the sink that did not reach the output because it failed.
    pub unwritten: u64,
    /// Why it stopped.
    pub reason: StopReason,
    /// The kernel's counters after the programs were detached.
    pub counts: Counts,
}

/// A loaded and attached capture. Dropping it detaches everything.
pub struct Session {
    /// Programs and their links; `None` once detached.
    ebpf: Option<Ebpf>,
    ring: Rings,
    counters: PerCpuArray<MapData, u64>,
    /// Held only to keep the maps open.
    _maps: (Array<MapData, u8>, HostMaps),
    _pins: Pins,
    logger: Option<aya_log::EbpfLogger<StderrLog>>,
    names: HashMap<u32, String>,
    decisions: Vec<String>,
    drain_interval: Duration,
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
    /// Pinned maps, unpinned on drop.
    pub pins: Pins,
    /// The kernel programs' log (`--debug-ebpf`).
    pub logger: Option<aya_log::EbpfLogger<StderrLog>>,
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
        let bpf_config = Config {
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
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(names::CONFIG, &bpf_config, true)
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
            pins,
            logger,
        })
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
    pinned: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

impl Pins {
    fn new(dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {} for --pin", dir.display()))?;
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
            pinned: std::cell::RefCell::default(),
        })
    }

    fn pin(&self, map: &aya::maps::Map, name: &str) -> anyhow::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let path = dir.join(name);
        if path.exists() {
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
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Session {
    /// Load the programs with `config`, and attach them. Every error says what to do.
    pub fn open(config: &CaptureConfig) -> anyhow::Result<Self> {
        let Programs {
            mut ebpf,
            ring,
            counters,
            ports,
            hosts,
            pins,
            logger,
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
        decisions.extend(attach(&mut ebpf, config)?);
        let names = config
            .interfaces
            .iter()
            .map(|i| (i.index, i.name.clone()))
            .collect();
        Ok(Self {
            ebpf: Some(ebpf),
            ring,
            counters,
            _maps: (ports, hosts),
            _pins: pins,
            logger,
            names,
            decisions,
            drain_interval: config.drain_interval,
        })
    }

    /// What was decided while attaching (XDP mode, TCX or clsact, ring size), for `-v`.
    #[must_use]
    pub fn decisions(&self) -> &[String] {
        &self.decisions
    }

    /// The counters now.
    pub fn counts(&self) -> anyhow::Result<Counts> {
        Counts::read(
            &self.counters,
            self.names.iter().map(|(i, n)| (*i, n.as_str())),
        )
    }

    /// Once a second: counters to the sink, a check that every interface is still there,
    /// the sink's own timers, and a flush. `Some` when the capture must stop.
    fn each_second<S: Sink>(
        counters: &PerCpuArray<MapData, u64>,
        names: &HashMap<u32, String>,
        sink: &mut S,
    ) -> Option<StopReason> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if let Ok(counts) = Counts::read(counters, names.iter().map(|(i, n)| (*i, n.as_str()))) {
            sink.kernel_counts(&counts);
        }
        // An interface that goes away takes its links with it: stop, and say so.
        if let Some((_, gone)) = names.iter().find(|(index, name)| {
            nix::net::if_::if_nametoindex(name.as_str()).ok() != Some(**index)
        }) {
            return Some(StopReason::InterfaceGone(gone.clone()));
        }
        match sink.tick(now).and_then(|()| sink.flush()) {
            Ok(()) => None,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Some(StopReason::OutputClosed),
            Err(e) => Some(StopReason::OutputFailed(e.to_string())),
        }
    }

    /// Drain the ring into `sink` until `stop` resolves, `limit` frames are written, or the
    /// sink's reader goes away; then detach, drain what is left, and read the counters.
    pub async fn run<S: Sink>(
        mut self,
        sink: &mut S,
        limit: Option<u64>,
        stop: impl Future<Output = StopReason>,
    ) -> anyhow::Result<Summary> {
        let mut drain = ring::Drain::new(&self.names, limit);
        // SAFETY: the ring buffer owns its file descriptor and nothing replaces or closes it
        // while the AsyncFd holds it; `into_inner` gives it back below.
        let mut ring =
            unsafe { AsyncFd::register_with_interest(self.ring, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow!("cannot register the ring buffer with the event loop: {e}"))?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // The kernel wakes us only past a fill watermark; this reads a quiet ring.
        let mut poll = tokio::time::interval(self.drain_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot handle SIGHUP")?;
        let mut logger = match self.logger.take() {
            // SAFETY: the logger owns its ring buffer's descriptor for as long as the AsyncFd.
            Some(l) => Some(
                unsafe { AsyncFd::register_with_interest(l, tokio::io::Interest::READABLE) }
                    .map_err(|e| anyhow!("cannot watch the kernel log: {e}"))?,
            ),
            None => None,
        };
        tokio::pin!(stop);
        let reason = loop {
            tokio::select! {
                biased;
                reason = &mut stop => break reason,
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    match drain.drain(guard.get_inner_mut(), sink) {
                        Ok(Some(reason)) => break reason,
                        Ok(None) => guard.clear_ready(),
                        Err(e) => break StopReason::OutputFailed(e.to_string()),
                    }
                }
                guard = async { logger.as_mut().expect("checked").readable_mut().await }, if logger.is_some() => {
                    let mut guard = guard.context("waiting on the kernel log")?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
                _ = poll.tick() => {
                    match drain.drain(ring.get_mut(), sink) {
                        Ok(Some(reason)) => break reason,
                        Ok(None) => {}
                        Err(e) => break StopReason::OutputFailed(e.to_string()),
                    }
                }
                _ = hangup.recv() => {
                    // SIGHUP: a new output file now, where there are files.
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    if let Err(e) = sink.rotate(now) {
                        break StopReason::OutputFailed(e.to_string());
                    }
                }
                _ = tick.tick() => {
                    drain.clock.resync();
                    if let Some(reason) = Self::each_second(&self.counters, &self.names, sink) {
                        break reason;
                    }
                }
            }
        };
        // Detach first, so nothing more arrives; then take what is already in the ring.
        self.ebpf = None;
        if let Some(logger) = logger.as_mut() {
            logger.get_mut().flush();
        }
        let mut ring = ring.into_inner();
        let mut reason = reason;
        // After an output failure the frames still in the ring stay there: counted as
        // received, not captured (left unread).
        if !matches!(
            reason,
            StopReason::Count | StopReason::OutputClosed | StopReason::OutputFailed(_)
        ) {
            match drain.drain(&mut ring, sink) {
                Ok(Some(r)) => reason = r,
                Ok(None) => {}
                Err(e) => reason = StopReason::OutputFailed(e.to_string()),
            }
        }
        match sink.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => reason = StopReason::OutputClosed,
            Err(e) if !matches!(reason, StopReason::OutputFailed(_)) => {
                reason = StopReason::OutputFailed(e.to_string());
            }
            _ => {}
        }
        Ok(Summary {
            captured: drain.captured,
            bad_records: drain.bad_records,
            unwritten: sink.unwritten(),
            reason,
            counts: Counts::read(
                &self.counters,
                self.names.iter().map(|(i, n)| (*i, n.as_str())),
            )?,
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

/// Attach the programs `config` asks for; returns what was decided, for `-v`.
fn attach(ebpf: &mut Ebpf, config: &CaptureConfig) -> anyhow::Result<Vec<String>> {
    let mut decisions = Vec::new();
    let want_in = config.directions != Directions::Out;
    let want_out = config.directions != Directions::In;
    if want_in && config.hook == Hook::Xdp {
        let (name, copy) = xdp_program(ebpf);
        info!(program = name, copy, "chose the XDP program");
        decisions.push(format!("XDP copies frames with {copy}"));
        let xdp: &mut Xdp = program(ebpf, name)?;
        xdp.load().map_err(|e| verifier_error(name, &e))?;
        for iface in &config.interfaces {
            let mode = match config.xdp_mode {
                XdpModeArg::Native => attach_xdp(xdp, iface, XdpMode::Driver, config.xdp_mode)?,
                XdpModeArg::Skb => attach_xdp(xdp, iface, XdpMode::Skb, config.xdp_mode)?,
                // Native where the driver has it, generic otherwise.
                XdpModeArg::Auto => match xdp.attach_to_if_index(iface.index, XdpMode::Driver) {
                    Ok(_) => "native (driver)",
                    Err(e) if is_busy(&e) => {
                        return Err(xdp_attach_error(iface, config.xdp_mode, &e));
                    }
                    Err(e) => {
                        debug!(iface = %iface.name, error = %e, "no native XDP; trying generic");
                        attach_xdp(xdp, iface, XdpMode::Skb, config.xdp_mode)?
                    }
                },
            };
            info!(iface = %iface.name, mode, "attached XDP (ingress)");
            decisions.push(format!(
                "{}: ingress at XDP, {mode} mode, through a BPF link",
                iface.name
            ));
        }
    }
    let tc_programs = [
        (
            want_in && config.hook == Hook::Tc,
            names::TC_INGRESS,
            TcAttachType::Ingress,
            "ingress",
        ),
        (want_out, names::TC_EGRESS, TcAttachType::Egress, "egress"),
    ];
    for (wanted, name, attach_type, label) in tc_programs {
        if !wanted {
            continue;
        }
        let tc: &mut SchedClassifier = program(ebpf, name)?;
        tc.load().map_err(|e| verifier_error(name, &e))?;
        for iface in &config.interfaces {
            // TCX (Linux 6.6) if the kernel takes it; otherwise a filter on the clsact qdisc.
            let tcx = TcAttachOptions::TcxOrder(LinkOrder::default());
            let how = match tc.attach_with_options(&iface.name, attach_type, tcx) {
                Ok(_) => "TCX link",
                Err(first) => {
                    debug!(iface = %iface.name, error = %first, "no TCX; attaching to the clsact qdisc");
                    // EEXIST when the qdisc is there already, which is what we want.
                    let _ = aya::programs::tc::qdisc_add_clsact(&iface.name);
                    let netlink = TcAttachOptions::Netlink(NlOptions::default());
                    tc.attach_with_options(&iface.name, attach_type, netlink)
                        .map_err(|e| {
                            anyhow!(
                                "cannot attach the TC {label} program to {}: {e} (TCX: {first})",
                                iface.name
                            )
                        })?;
                    "clsact qdisc (netlink)"
                }
            };
            info!(iface = %iface.name, direction = label, how, "attached TC");
            decisions.push(format!("{}: {label} at TC, through a {how}", iface.name));
        }
    }
    Ok(decisions)
}

fn attach_xdp(
    xdp: &mut Xdp,
    iface: &Interface,
    mode: XdpMode,
    asked: XdpModeArg,
) -> anyhow::Result<&'static str> {
    xdp.attach_to_if_index(iface.index, mode)
        .map_err(|e| xdp_attach_error(iface, asked, &e))?;
    Ok(if mode == XdpMode::Driver {
        "native (driver)"
    } else {
        "generic (skb)"
    })
}

fn is_busy(err: &ProgramError) -> bool {
    matches!(err, ProgramError::SyscallError(e) if matches!(e.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)))
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
    if let ProgramError::LoadError { verifier_log, .. } = err {
        debug!(program = name, "verifier log:\n{verifier_log}");
    }
    anyhow!(
        "the kernel refused to load the BPF program {name}: {err}. Run with RUST_LOG=debug to \
         see the verifier's log, and report it with `uname -r`"
    )
}

fn xdp_attach_error(iface: &Interface, mode: XdpModeArg, err: &ProgramError) -> anyhow::Error {
    let errno = match err {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EBUSY | libc::EEXIST) => anyhow!(
            "another XDP program is already attached to {0} (see `ip link show {0}`): use \
             --hook tc to capture with TC alone and leave XDP to it",
            iface.name
        ),
        Some(libc::EOPNOTSUPP | libc::EINVAL) if mode == XdpModeArg::Native => anyhow!(
            "the driver of {} has no native XDP: use --xdp-mode skb (or auto), or --hook tc",
            iface.name
        ),
        _ => anyhow!(
            "cannot attach XDP to {}: {err}; --hook tc avoids XDP",
            iface.name
        ),
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
