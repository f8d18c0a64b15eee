//! Loading the kernel programs: the object, its maps, the probes of what this kernel offers
//! (the XDP copy helper, the drop tracepoint's form), and the errors a refused program gives.

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray},
    programs::{ProgramError, Xdp},
};
use ntptap_common::{HOST_ENTRIES, IFSLOT_ENTRIES, names};
use tracing::{debug, warn};

use super::{
    config::{CaptureConfig, RingSize, kernel_config},
    drops,
    pins::Pins,
    refusal,
    ringbuf::Rings,
};

/// The kernel programs, built by `build.rs` from `ntptap-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ntptap"));

/// What differs between the machines ntptap runs on and shapes what it loads, as read from
/// the running kernel (for `-v`): its release and architecture, its page size (the ring
/// buffers' unit), and whether it compiled the loaded programs to machine code (the JIT, which
/// each architecture has its own of, and which a kernel may have off) or interprets them. The
/// JIT is read from a loaded program's size in machine code: `net.core.bpf_jit_enable` exists
/// only in the first network namespace.
pub(super) fn platform(ebpf: &Ebpf) -> String {
    let (release, machine) = nix::sys::utsname::uname().map_or_else(
        |_| ("?".to_owned(), "?".to_owned()),
        |u| {
            (
                u.release().to_string_lossy().into_owned(),
                u.machine().to_string_lossy().into_owned(),
            )
        },
    );
    let page = super::config::page_size() / 1024;
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
    pub counters: PerCpuArray<MapData, ntptap_common::CounterBlock>,
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
    /// What this kernel offers the drop program, probed before anything was loaded.
    pub drops: DropsProbe,
}

/// The kernel facts `--drops` needs, found before the programs load (the layout goes into
/// their `.rodata`): one value the session acts on and reports, not a result to unpack later.
pub enum DropsProbe {
    /// `--drops` was not asked for.
    NotAsked,
    /// This kernel has what the drop program needs.
    Ready(drops::DropPlan),
    /// It lacks it: why, for the report.
    Lacking(String),
}

impl std::fmt::Debug for DropsProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAsked => f.write_str("not asked for"),
            Self::Ready(plan) => write!(
                f,
                "ready ({} reason)",
                if plan.with_reason {
                    "with a"
                } else {
                    "without a"
                }
            ),
            Self::Lacking(why) => write!(f, "lacking: {why}"),
        }
    }
}

impl DropsProbe {
    /// Probe the running kernel, if `asked`.
    #[must_use]
    pub fn new(asked: bool) -> Self {
        if !asked {
            return Self::NotAsked;
        }
        match drops::DropPlan::probe() {
            Ok(plan) => Self::Ready(plan),
            Err(e) => Self::Lacking(format!("{e:#}")),
        }
    }
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

        let RingSize {
            count: rings,
            each: ring_bytes,
        } = config.ring();
        let bpf_config = kernel_config(config, rings, ring_bytes);
        let drops = DropsProbe::new(config.drops);
        let drop_layout = match &drops {
            DropsProbe::Ready(plan) => plan.layout,
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
        if let Some(expression) = &config.expression {
            let mut program = ntptap_common::ExprProgram {
                len: expression.program.len() as u32,
                insns: [ntptap_common::ExprInsn::default(); ntptap_common::EXPR_INSNS],
            };
            for (slot, insn) in program.insns.iter_mut().zip(&expression.program) {
                *slot = *insn;
            }
            // Left in the object: the programs reference it when they are loaded.
            let map = ebpf
                .map_mut(names::EXPR)
                .ok_or_else(|| anyhow!("the BPF object has no map {}", names::EXPR))?;
            let mut map: Array<&mut MapData, ntptap_common::ExprProgram> = Array::try_from(map)?;
            map.set(0, program, 0)
                .context("cannot give the kernel programs the filter expression")?;
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
            drops,
        })
    }

    /// Count the frames of interface `ifindex` in counter slot `slot` (0: none of its own).
    pub fn set_slot(&mut self, ifindex: u32, slot: u32) -> anyhow::Result<()> {
        self.ifslots
            .set(ifindex % IFSLOT_ENTRIES, slot, 0)
            .with_context(|| format!("cannot give interface {ifindex} its counter slot"))
    }
}

/// The drop program, where the probe found what it needs and the kernel takes it; what was
/// decided goes into `decisions`, here and nowhere else (a kernel without what it needs is a
/// warning: the capture goes on).
pub(super) fn open_drops(
    ebpf: &mut Ebpf,
    probe: DropsProbe,
    decisions: &mut Vec<String>,
) -> Option<drops::DropHook> {
    let opened = match probe {
        DropsProbe::NotAsked => {
            decisions.push(
                "drop records: off (--drops turns them on: a program on every drop in the \
                 host, NTP's or not; BENCHMARKS.md, targets 9 and 10)"
                    .to_owned(),
            );
            return None;
        }
        DropsProbe::Lacking(why) => Err(anyhow!(why)),
        DropsProbe::Ready(plan) => drops::DropHook::open(ebpf, &plan),
    };
    match opened {
        Ok(hook) => {
            decisions.push(format!(
                "drop records: {} at tp_btf/kfree_skb (it runs on every drop in the host) \
                 records NTP frames the kernel drops in this network namespace, {}",
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
    }
}

pub(super) fn raise_memlock_limit() {
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

pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?;
    Ok(program.try_into()?)
}

pub(super) fn verifier_error(name: &str, err: &ProgramError) -> anyhow::Error {
    anyhow!(
        "the kernel refused to load the BPF program {name} ({}). Run with NTPTAP_LOG=debug to \
         see the verifier's log, and report it with `uname -rv`",
        refusal::Refusal::of(name, err)
    )
}

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};

    /// No program calls `memset` or `memmove`: the BPF target has neither, and aya-ebpf's,
    /// which the linker then calls, move a byte a step (a 48-byte zeroed struct cost an XDP
    /// frame ~30 ns: BENCHMARKS.md). ntptap-ebpf's build script asks LLVM to write them as
    /// loads and stores; this fails if that flag or the linker's default goes.
    #[test]
    fn the_programs_call_no_byte_loop_memset_or_memmove() {
        if super::OBJECT.is_empty() {
            eprintln!("skipped: the eBPF object was not built (AYA_BUILD_SKIP)");
            return;
        }
        let file = object::File::parse(super::OBJECT).expect("the eBPF object parses");
        let mut calls = Vec::new();
        let mut relocations = 0;
        for section in file.sections() {
            for (offset, relocation) in section.relocations() {
                relocations += 1;
                let RelocationTarget::Symbol(index) = relocation.target() else {
                    continue;
                };
                let name = file
                    .symbol_by_index(index)
                    .ok()
                    .and_then(|s| s.name().ok())
                    .unwrap_or("");
                if name == "memset" || name == "memmove" {
                    calls.push(format!(
                        "{name} at {}+{offset}",
                        section.name().unwrap_or("?")
                    ));
                }
            }
        }
        // The object relocates its maps: a parse that saw none would prove nothing.
        assert!(relocations > 100, "{relocations} relocations read");
        assert!(calls.is_empty(), "calls of the byte loops: {calls:?}");
    }
}
