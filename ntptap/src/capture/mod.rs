//! Live capture: load and configure the kernel programs, attach them, drain the rings.
//!
//! Knows BPF and rings, nothing of NTP fields or outputs: frames go to a [`Consumer`].

mod attach;
pub mod btf;
pub mod clock;
pub mod config;
pub mod drops;
pub mod earlier;
pub mod follow;
pub mod iface;
pub mod listing;
mod load;
pub mod owners;
mod pins;
pub mod privilege;
mod refusal;
mod ring;
mod ringbuf;
mod summary;

use std::{future::Future, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
};
use ntptap_common::{IFSLOT_ENTRIES, INTERFACE_SLOTS};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

pub use self::{
    clock::WallClock,
    config::{CaptureConfig, DEFAULT_RING_KIB, Directions, Hook, RingSize, XdpAttach},
    iface::Interface,
    load::{DropsProbe, Programs, xdp_program},
    ringbuf::{RingReader, Rings},
    summary::{StopReason, Summary},
};
use self::{
    load::{HostMaps, StderrLog, open_drops, platform},
    pins::Pins,
};
pub use crate::counts::Counts;
use crate::frame::{CloseStats, Consumer, SourceEvent, wall_now};

/// A loaded and attached capture. Dropping it detaches everything.
pub struct Session {
    /// Programs and their links; `None` once detached.
    ebpf: Option<Ebpf>,
    loaded: attach::Loaded,
    config: CaptureConfig,
    /// Taken by [`Session::run`].
    ring: Option<Rings>,
    counters: PerCpuArray<MapData, ntptap_common::CounterBlock>,
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
    hooks: Option<owners::OwnerHooks>,
    /// The drop program's counters, when it runs.
    drops: Option<drops::DropHook>,
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

/// What `-v` says of attribution and latency: the hooks, where, and what they run on.
fn attribution_decisions(
    hooks: &owners::OwnerHooks,
    selection: &owners::Selection,
    latency: bool,
    every_socket: bool,
) -> Vec<String> {
    let mut decisions = vec![format!(
        "process attribution: cgroup socket hooks ({}post_bind, connect, sock_release: once \
         per socket, none per datagram) on {} record {}, and {} UDP sockets open before the \
         start were found in /proc; egress frames take their skb's socket, ingress frames \
         the socket bpf_sk_lookup_udp finds{}",
        if every_socket { "sock_create, " } else { "" },
        hooks.root.path.display(),
        if every_socket {
            "each UDP socket's creator, and who binds it or connects it to the port set"
        } else {
            "who binds a UDP socket or connects it to the port set (--attribution: every \
             socket's creator too, at a cost to every socket())"
        },
        hooks.earlier,
        if selection.is_empty() {
            String::new()
        } else {
            format!("; capturing only {}", selection.text())
        }
    )];
    if latency {
        decisions.push(
            "in-host latency: sendmsg and recvmsg hooks (on every UDP send to an \
             address and read with one) stamp each NTP socket's sends and reads, \
             cgroup_skb ingress each datagram queued on it (every datagram delivered \
             to a socket); egress frames carry the time since"
                .to_owned(),
        );
    }
    decisions
}

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
                .push("process attribution: off (--no-attribution)".to_owned());
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
            drops,
        } = Programs::load(config)?;
        let mut decisions = vec![format!(
            "ring buffers: {} of {} KiB, one per CPU, each read at a quarter full or every {} ms; filter: {}{}",
            ring.len(),
            ring.ring_bytes() / 1024,
            config.drain_interval.as_millis(),
            if let Some(e) = &config.expression {
                format!(
                    "the expression '{}' ({} classic BPF instructions, run in the kernel)",
                    crate::escape::terminal(&e.text),
                    e.program.len()
                )
            } else if config.all {
                "every frame".to_owned()
            } else {
                format!("UDP ports {:?}", config.ports)
            },
            if config.hosts.is_empty() || config.expression.is_some() {
                String::new()
            } else {
                format!(", hosts {:?}", config.hosts)
            },
        )];
        let hooks = if let Some(selection) = &config.attribution {
            let hooks = owners::OwnerHooks::open(
                &mut ebpf,
                selection,
                owners::Hooks {
                    latency: config.latency,
                    every_socket: config.every_socket,
                },
                &config.ports,
            )
            .map_err(|e| anyhow::Error::new(NoAttribution(e)))?;
            decisions.extend(attribution_decisions(
                &hooks,
                selection,
                config.latency,
                config.every_socket,
            ));
            Some(hooks)
        } else {
            None
        };
        let drops = open_drops(&mut ebpf, drops, &mut decisions);
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
                    let key = ntptap_common::counter_key(slot, direction);
                    let zeros = aya::maps::PerCpuValues::try_from(vec![
                        ntptap_common::CounterBlock::default();
                        cpus
                    ])?;
                    self.counters.set(key, zeros, 0)?;
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

    /// The rings, for a reader of its own instead of [`Session::run`] (the bench's least
    /// possible reader, `tests/examples/least_reader.rs`); `run` then fails.
    pub fn take_rings(&mut self) -> Option<Rings> {
        self.ring.take()
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
            if self.config.verbose {
                eprintln!(
                    "ntptap: {}: went away; released",
                    crate::escape::terminal(&attached.iface.name)
                );
            }
            self.release(attached, slot);
        }
        for iface in present {
            if self.attached.iter().any(|(a, _)| a.iface == iface) {
                continue;
            }
            // An expression is compiled for Ethernet frames: others are left out (at start,
            // `main` said which).
            if self.config.expression.is_some() && !listing::carries_ethernet(&iface.name) {
                info!(iface = %iface.name, "not Ethernet: left out of the expression's capture");
                continue;
            }
            let mut decisions = Vec::new();
            match self.attach(&iface, &mut decisions) {
                Ok(()) => {
                    info!(iface = %iface.name, "interface appeared; attached");
                    if self.config.verbose {
                        eprintln!(
                            "ntptap: {}: appeared; attached: {}",
                            crate::escape::terminal(&iface.name),
                            crate::escape::terminal(&decisions.join("; "))
                        );
                    }
                }
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
        drain.owners = owners::Names::new(self.hooks.as_ref().map(|h| h.root.path.clone()))
            .with_earlier(
                self.hooks
                    .as_ref()
                    .map(|h| h.earlier_table.clone())
                    .unwrap_or_default(),
            );
        drain.reasons = self.drops.as_ref().map(|d| d.reasons.clone());
        drain.latency = self.config.latency && self.config.attribution.is_some();
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
        drain.name_owners = consumer.wants_owners();
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
                // Last: a reader behind a flood stays ready (below), and the branches above
                // (the second's tick, signals) must still have their turn.
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("waiting on the ring buffer")?;
                    if let Some(reason) = drain.drain(guard.get_inner_mut(), consumer) {
                        break reason;
                    }
                    // Records that came while it read may already be past the wake-up mark,
                    // which the kernel will not signal again: read again rather than sleep.
                    if !guard.get_inner().behind() {
                        guard.clear_ready();
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
