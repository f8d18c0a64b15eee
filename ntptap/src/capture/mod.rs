//! Live capture: load and configure the kernel programs, attach them, drain the ring.
//!
//! Knows BPF and rings, nothing of NTP fields: frames go to a [`Sink`].

pub mod clock;
pub mod counters;
pub mod iface;
pub mod privilege;
mod ring;

use std::{collections::HashMap, future::Future, io, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use ntptap_common::{Config, FILTER_ALL, MAX_DATA, names};
use tokio::io::unix::AsyncFd;
use tracing::{debug, info};

pub use self::{clock::WallClock, counters::Counts, iface::Interface};
use crate::output::Sink;

/// The kernel programs, built by `build.rs` from `ntptap-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ntptap"));

/// Where ingress frames are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Hook {
    /// XDP for ingress, TC for egress.
    Xdp,
    /// TC for both directions (for hosts where another program owns XDP).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A signal (its name).
    Signal(&'static str),
    /// `-c` frames were written.
    Count,
    /// The reader of the output went away (a broken pipe).
    OutputClosed,
    /// `--duration` elapsed.
    Duration,
}

/// The outcome of a capture.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Frames handed to the sink.
    pub captured: u64,
    /// Ring records that could not be read (malformed; should never happen).
    pub bad_records: u64,
    /// Why it stopped.
    pub reason: StopReason,
    /// The kernel's counters after the programs were detached.
    pub counts: Counts,
}

/// A loaded and attached capture. Dropping it detaches everything.
pub struct Session {
    /// Programs and their links; `None` once detached.
    ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    _ports: Array<MapData, u8>,
    names: HashMap<u32, String>,
}

/// The kernel programs loaded into the kernel and configured, not yet attached.
pub struct Programs {
    /// The programs (loaded by [`Session::open`] on attach, or by a test).
    pub ebpf: Ebpf,
    /// The ring buffer.
    pub ring: RingBuf<MapData>,
    /// The per-CPU counters.
    pub counters: PerCpuArray<MapData, u64>,
    /// The port set. Kept open: the programs reference it when they are loaded.
    pub ports: Array<MapData, u8>,
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

        let bpf_config = Config {
            snaplen: config.snaplen.clamp(1, MAX_DATA as u32),
            filter: if config.all { FILTER_ALL } else { 0 },
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(names::CONFIG, &bpf_config, true)
            .map_max_entries(names::RING, config.ring_bytes)
            .load(OBJECT)
            .map_err(|e| anyhow!("{e}"))
            .context("cannot load ntptap's BPF maps into the kernel")?;

        let mut ports: Array<MapData, u8> = Array::try_from(
            ebpf.take_map(names::PORTS)
                .context("the BPF object has no port map")?,
        )?;
        for &port in &config.ports {
            ports
                .set(u32::from(port), 1, 0)
                .with_context(|| format!("cannot add port {port} to the port set"))?;
        }
        let ring = RingBuf::try_from(ebpf.take_map(names::RING).context("no ring buffer map")?)?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map(names::COUNTERS).context("no counters map")?)?;
        Ok(Self {
            ebpf,
            ring,
            counters,
            ports,
        })
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
        } = Programs::load(config)?;
        attach(&mut ebpf, config)?;
        let names = config
            .interfaces
            .iter()
            .map(|i| (i.index, i.name.clone()))
            .collect();
        Ok(Self {
            ebpf: Some(ebpf),
            ring,
            counters,
            _ports: ports,
            names,
        })
    }

    /// The counters now.
    pub fn counts(&self) -> anyhow::Result<Counts> {
        Counts::read(&self.counters)
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
                        Err(e) => return Err(e).context("cannot write the captured frames"),
                    }
                }
                _ = tick.tick() => {
                    drain.clock.resync();
                    if let Err(e) = sink.flush() {
                        if e.kind() == io::ErrorKind::BrokenPipe { break StopReason::OutputClosed; }
                        return Err(e).context("cannot write the captured frames");
                    }
                }
            }
        };
        // Detach first, so nothing more arrives; then take what is already in the ring.
        self.ebpf = None;
        let mut ring = ring.into_inner();
        let mut reason = reason;
        if reason != StopReason::Count && reason != StopReason::OutputClosed {
            match drain.drain(&mut ring, sink) {
                Ok(Some(r)) => reason = r,
                Ok(None) => {}
                Err(e) => return Err(e).context("cannot write the captured frames"),
            }
        }
        match sink.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => reason = StopReason::OutputClosed,
            other => other.context("cannot write the captured frames")?,
        }
        Ok(Summary {
            captured: drain.captured,
            bad_records: drain.bad_records,
            reason,
            counts: Counts::read(&self.counters)?,
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

fn attach(ebpf: &mut Ebpf, config: &CaptureConfig) -> anyhow::Result<()> {
    let want_in = config.directions != Directions::Out;
    let want_out = config.directions != Directions::In;
    let mode = match config.xdp_mode {
        XdpModeArg::Auto => XdpMode::Default,
        XdpModeArg::Native => XdpMode::Driver,
        XdpModeArg::Skb => XdpMode::Skb,
    };
    if want_in && config.hook == Hook::Xdp {
        let xdp: &mut Xdp = program(ebpf, names::XDP)?;
        xdp.load().map_err(|e| verifier_error(names::XDP, &e))?;
        for iface in &config.interfaces {
            xdp.attach_to_if_index(iface.index, mode)
                .map_err(|e| xdp_attach_error(iface, config.xdp_mode, &e))?;
            info!(iface = %iface.name, mode = ?config.xdp_mode, "attached XDP (ingress)");
        }
    }
    let tc_programs = [
        (
            want_in && config.hook == Hook::Tc,
            names::TC_INGRESS,
            TcAttachType::Ingress,
        ),
        (want_out, names::TC_EGRESS, TcAttachType::Egress),
    ];
    for (wanted, name, attach_type) in tc_programs {
        if !wanted {
            continue;
        }
        let tc: &mut SchedClassifier = program(ebpf, name)?;
        tc.load().map_err(|e| verifier_error(name, &e))?;
        for iface in &config.interfaces {
            if let Err(first) = tc.attach(&iface.name, attach_type) {
                // Kernels without TCX (before 6.6) need the clsact qdisc for netlink attach.
                debug!(iface = %iface.name, error = %first, "TC attach failed; adding clsact and retrying");
                let _ = aya::programs::tc::qdisc_add_clsact(&iface.name);
                tc.attach(&iface.name, attach_type).map_err(|e| {
                    anyhow!(
                        "cannot attach the TC {attach_type:?} program to {}: {e}",
                        iface.name
                    )
                })?;
            }
            info!(iface = %iface.name, direction = ?attach_type, "attached TC");
        }
    }
    Ok(())
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
