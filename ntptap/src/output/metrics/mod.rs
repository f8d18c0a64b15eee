//! `--metrics ADDR:PORT`: OpenMetrics text, every metric named `ntptap_*`, following
//! Prometheus's conventions: one unit per name, `_total` counters for what only grows. Labels
//! are bounded: directions, reasons, NTP versions and modes, kiss codes, events, interfaces,
//! and servers (at most the exchange tracker's limit); no per-client label.
pub mod client_metrics;
pub mod http;
mod series;

use std::{io, sync::Arc, time::Duration};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use self::series::{Series, Short};
use super::{decoded::Decoded, sink::Control, sink::Sink};
use crate::{
    counts::Counts,
    exchange::Tracker,
    frame::Direction,
    process::{Socket, escape},
};

type Labels = Vec<(String, String)>;

/// The latest rendering of the metrics, shared with the HTTP server.
pub use self::http::Exposition;

type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// How long an interface that went away keeps its series (a scrape or two sees its last
/// counts), before they are removed.
pub const RETIRED_AFTER: Duration = Duration::from_mins(5);

/// Keeps the metrics and renders them once a second. One unit per name, counters (`_total`)
/// for what only grows, gauges for the last value seen.
pub struct MetricsSink {
    registry: Registry,
    kernel: Family<Labels, Counter>,
    /// By interface and direction.
    written: Series<(Short, u8), Counter>,
    /// By NTP version, mode, direction and process.
    ntp: Series<(u8, u8, u8, CommKey), Counter>,
    kiss: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    /// Per server, seconds: delay, min delay, offset, best offset, processing, root delay,
    /// root dispersion.
    server_seconds: [(&'static str, Family<Labels, SecondsGauge>); 7],
    /// Per server: stratum, leap indicator, reference ID.
    server_values: [(&'static str, Family<Labels, Gauge>); 3],
    /// Per server: requests, responses, unanswered.
    server_counts: [(&'static str, Family<Labels, Counter>); 3],
    /// What the counters above last reached, per server (the tracker's totals only grow, but a
    /// server evicted and seen again starts over: the counter then grows by the new total).
    server_last: std::collections::HashMap<String, [u64; 3]>,
    pending_requests: Gauge,
    evicted: [(Counter, u64); 2],
    ring_pending: Gauge,
    /// ntptap's own CPU time and resident memory, from /proc/self/stat.
    cpu: Counter<f64, std::sync::atomic::AtomicU64>,
    cpu_last: f64,
    resident: Gauge,
    written_total: u64,
    last_kernel: Counts,
    /// Process names with a `comm` label of their own: the first [`COMM_LABELS`] seen.
    comms: std::collections::HashSet<Vec<u8>>,
    /// What process attribution did, by event; and the owners it holds.
    attribution: Family<Labels, Counter>,
    owners_held: Gauge,
    /// NTP frames the kernel dropped, by direction and reason; and the drop records' fate.
    drops: Family<Labels, Counter>,
    /// In-host latency of NTP packets, by direction and stage.
    latency: Series<(&'static str, &'static str), Histogram, LatencyBuckets>,
    /// Per server: what became of requests without a real answer, by fate (and reason).
    fates: Family<Labels, Counter>,
    fates_last: std::collections::HashMap<(String, String), u64>,
    /// When each interface was last in the kernel's counts: one gone for [`RETIRED_AFTER`]
    /// loses its series (`-i any` sees interfaces come and go).
    interfaces_seen: std::collections::HashMap<String, std::time::Instant>,
    /// Interfaces whose series were removed, until they come back.
    interfaces_retired: std::collections::HashSet<String>,
    drop_records: Family<Labels, Counter>,
    /// A server on this host and its clients.
    clients: client_metrics::ClientMetrics,
    /// The flight recorder's counts, and what the counters last reached.
    flight: Option<(Arc<super::flight::FlightStats>, FlightMetrics)>,
    exposition: Exposition,
}

/// What a frame's `comm` label says, as a key (see [`MetricsSink::comm_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CommKey {
    Named(Short),
    Other,
    NoSocket,
    Unknown,
}

/// Whether `comm` has a label of its own: it has one, or there is room for it.
fn own_label(comms: &std::collections::HashSet<Vec<u8>>, comm: &[u8]) -> bool {
    comms.contains(comm) || comms.len() < COMM_LABELS
}

/// The `comm` label for a frame's socket (see [`COMM_LABELS`]); a name gets its own while
/// there is room, and keeps it.
fn comm_label(comms: &mut std::collections::HashSet<Vec<u8>>, socket: &Socket<'_>) -> String {
    match socket {
        Socket::Owned(p) => {
            if own_label(comms, p.comm) {
                comms.insert(p.comm.to_vec());
                escape(p.comm)
            } else {
                "other".to_owned()
            }
        }
        Socket::None => "(none)".to_owned(),
        Socket::Unowned | Socket::Unknown => "(unknown)".to_owned(),
    }
}

/// The flight recorder's metrics.
struct FlightMetrics {
    dumps: Family<Labels, Counter>,
    evicted: Counter,
    held: Gauge,
    /// What written, ignored, failed and evicted last reached.
    last: [u64; 4],
}

/// Process names that get a `comm` label of their own; later names count as `other`, so a
/// host with many short-lived process names cannot grow the metrics without bound.
pub const COMM_LABELS: usize = 32;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl MetricsSink {
    /// Metrics rendered into `exposition`; `ring_bytes` is the size of the rings as built.
    #[expect(
        clippy::too_many_lines,
        reason = "one registration per metric, with its help text"
    )]
    pub fn new(exposition: Exposition, ring_bytes: u64) -> Self {
        let mut registry = Registry::with_prefix("ntptap");
        let kernel = Family::<Labels, Counter>::default();
        registry.register(
            "kernel_frames",
            "Frames by interface, direction and what the kernel programs decided: seen, matched, captured, ring_full, copy_failed, truncated, unparsable, later_fragment, other_process",
            kernel.clone(),
        );
        let written = Family::<Labels, Counter>::default();
        registry.register(
            "frames_written",
            "Frames ntptap handed to its output, by interface and direction",
            written.clone(),
        );
        let ntp = Family::<Labels, Counter>::default();
        registry.register(
            "ntp_packets",
            "NTP packets by version, mode, direction and the comm of the process that owns the socket (the first 32 names seen, then other; (none) where no socket takes the frame, (unknown) where its owner is not known)",
            ntp.clone(),
        );
        let attribution = Family::<Labels, Counter>::default();
        registry.register(
            "attribution_sockets",
            "Process attribution: sockets whose owner was recorded, changed hands, was closed, or was evicted from the full owner map",
            attribution.clone(),
        );
        let owners_held = Gauge::default();
        registry.register(
            "attribution_owners",
            "Socket owners the kernel holds now",
            owners_held.clone(),
        );
        let drops = Family::<Labels, Counter>::default();
        registry.register(
            "kernel_drops",
            "NTP frames the kernel dropped in this host after ntptap's hook (or on the way out before it), by direction and the kernel's reason (unknown on kernels without reasons)",
            drops.clone(),
        );
        let latency = Family::new_with_constructor(LatencyBuckets);
        registry.register(
            "host_latency_seconds",
            "In-host latency of NTP packets (--latency, or a server on this host), by direction and stage: in_read (request at the ingress hook to the daemon's read), daemon (read to send), out_send (send to the egress hook), residence (request in to reply out)",
            latency.clone(),
        );
        let fates = Family::<Labels, Counter>::default();
        registry.register(
            "server_request_fates",
            "Per server, requests without a real answer by fate: dropped (in this host, with the kernel's reason), ignored (came in, no reply left), no_reply_seen (went out, nothing came back), unknown, kiss_of_death",
            fates.clone(),
        );
        let drop_records = Family::<Labels, Counter>::default();
        registry.register(
            "kernel_drop_records",
            "Drop records by outcome: recorded (written into the ring), ring_full, copy_failed",
            drop_records.clone(),
        );
        let kiss = Family::<Labels, Counter>::default();
        registry.register(
            "kiss_of_death",
            "Kiss-o'-death packets by code",
            kiss.clone(),
        );
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "events",
            "Exchange events: kiss_of_death, monlist_request, remote_control_query, unmatched_response, leap_announced, unsynchronized, anomaly",
            events.clone(),
        );
        let server_seconds = [
            (
                "server_delay_seconds",
                "Last round-trip delay to the server, from capture times on this host (none for a server on this host: its exchanges are served traffic)",
            ),
            (
                "server_min_delay_seconds",
                "Smallest round-trip delay to the server seen",
            ),
            (
                "server_offset_seconds",
                "Last offset of the server's clock from this host's, from capture times",
            ),
            (
                "server_best_offset_seconds",
                "Offset at the smallest delay (the clock filter's pick)",
            ),
            (
                "server_processing_seconds",
                "Last time the server took between receiving and answering (T3 - T2)",
            ),
            (
                "server_root_delay_seconds",
                "Root delay the server last reported",
            ),
            (
                "server_root_dispersion_seconds",
                "Root dispersion the server last reported",
            ),
        ]
        .map(|(name, help)| {
            let family = Family::<Labels, SecondsGauge>::default();
            registry.register(name, help, family.clone());
            (name, family)
        });
        let server_values = [
            ("server_stratum", "Stratum the server last reported"),
            ("server_leap", "Leap indicator the server last reported (0 none, 1 insert, 2 delete, 3 unsynchronized)"),
            ("server_reference_id", "Reference ID the server last reported, its four bytes as one number"),
        ]
        .map(|(name, help)| {
            let family = Family::<Labels, Gauge>::default();
            registry.register(name, help, family.clone());
            (name, family)
        });
        let server_counts = [
            ("server_requests", "Requests seen to the server"),
            (
                "server_responses",
                "Responses from the server paired with a request",
            ),
            (
                "server_unanswered",
                "Requests to the server without a response within 8 s",
            ),
        ]
        .map(|(name, help)| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            (name, family)
        });
        let pending_requests = Gauge::<i64>::default();
        registry.register(
            "tracker_pending_requests",
            "Requests waiting for a response",
            pending_requests.clone(),
        );
        let evicted = [
            (
                "tracker_evicted_requests",
                "Waiting requests dropped to bound memory",
            ),
            ("tracker_evicted_servers", "Servers dropped to bound memory"),
        ]
        .map(|(name, help)| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            (counter, 0)
        });
        let ring = Gauge::<i64>::default();
        ring.set(i64::try_from(ring_bytes).unwrap_or(i64::MAX));
        registry.register("ring_buffer_bytes", "Size of the BPF ring buffers", ring);
        let ring_pending = Gauge::<i64>::default();
        registry.register(
            "ring_records_pending",
            "Ring fill: records the kernel put in the rings that ntptap has not read yet",
            ring_pending.clone(),
        );
        let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "process_cpu_seconds",
            "CPU time ntptap used, user and system, all threads",
            cpu.clone(),
        );
        let resident = Gauge::<i64>::default();
        registry.register(
            "process_resident_memory_bytes",
            "ntptap's resident memory",
            resident.clone(),
        );
        let clients = client_metrics::ClientMetrics::register(&mut registry);
        Self {
            clients,
            flight: None,
            registry,
            cpu,
            cpu_last: 0.0,
            resident,
            kernel,
            written: Series::new(written),
            ntp: Series::new(ntp),
            kiss,
            events,
            server_seconds,
            server_values,
            server_counts,
            server_last: std::collections::HashMap::new(),
            pending_requests,
            evicted,
            ring_pending,
            written_total: 0,
            comms: std::collections::HashSet::new(),
            attribution,
            owners_held,
            drops,
            latency: Series::new(latency),
            fates,
            fates_last: std::collections::HashMap::new(),
            interfaces_seen: std::collections::HashMap::new(),
            interfaces_retired: std::collections::HashSet::new(),
            drop_records,
            last_kernel: Counts::default(),
            exposition,
        }
    }

    /// Also the flight recorder's counts.
    #[must_use]
    pub fn with_flight(mut self, stats: Arc<super::flight::FlightStats>) -> Self {
        let dumps = Family::<Labels, Counter>::default();
        self.registry.register(
            "flight_recorder_dumps",
            "Flight-recorder dumps by outcome: written, ignored (a trigger within --flight-recorder-interval), failed",
            dumps.clone(),
        );
        let evicted = Counter::default();
        self.registry.register(
            "flight_recorder_evicted_frames",
            "Frames that left the flight recorder's memory in no dump",
            evicted.clone(),
        );
        let held = Gauge::default();
        self.registry.register(
            "flight_recorder_held_bytes",
            "Bytes of frames the flight recorder holds",
            held.clone(),
        );
        self.flight = Some((
            stats,
            FlightMetrics {
                dumps,
                evicted,
                held,
                last: [0; 4],
            },
        ));
        self
    }

    fn flight(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some((stats, m)) = &mut self.flight else {
            return;
        };
        let now = [
            stats.written.load(Relaxed),
            stats.ignored.load(Relaxed),
            stats.failed.load(Relaxed),
            stats.evicted.load(Relaxed),
        ];
        for (i, outcome) in ["written", "ignored", "failed"].iter().enumerate() {
            m.dumps
                .get_or_create(&labels(&[("outcome", outcome)]))
                .inc_by(now[i].saturating_sub(m.last[i]));
        }
        m.evicted.inc_by(now[3].saturating_sub(m.last[3]));
        m.held
            .set(i64::try_from(stats.held_bytes.load(Relaxed)).unwrap_or(i64::MAX));
        m.last = now;
    }

    fn render(&mut self, exchanges: Option<&Tracker>, now: Option<Duration>) {
        self.flight();
        if let Some(tracker) = exchanges {
            self.exchanges(tracker);
            self.clients.render(tracker, now);
        }
        if let Some((cpu, resident)) = process_usage() {
            self.cpu.inc_by((cpu - self.cpu_last).max(0.0));
            self.cpu_last = cpu.max(self.cpu_last);
            self.resident
                .set(i64::try_from(resident).unwrap_or(i64::MAX));
        }
        self.encode();
    }

    fn exchanges(&mut self, tracker: &Tracker) {
        for s in tracker.servers() {
            let server = s.server.map(|a| a.to_string()).unwrap_or_default();
            let label = labels(&[("server", &server)]);
            // A server on this host has no delay or offset of a server this host asks.
            let seconds = if s.local {
                [
                    None,
                    None,
                    None,
                    None,
                    None,
                    s.root_delay,
                    s.root_dispersion,
                ]
            } else {
                [
                    s.delay,
                    s.min_delay,
                    s.offset,
                    s.best_offset,
                    s.processing,
                    s.root_delay,
                    s.root_dispersion,
                ]
            };
            for ((_, family), value) in self.server_seconds.iter().zip(seconds) {
                if let Some(v) = value {
                    family.get_or_create(&label).set(v);
                }
            }
            let values = [
                s.stratum.map(i64::from),
                s.leap.map(i64::from),
                s.refid_raw.map(i64::from),
            ];
            for ((_, family), value) in self.server_values.iter().zip(values) {
                if let Some(v) = value {
                    family.get_or_create(&label).set(v);
                }
            }
            for (fate, n) in s.fates.each() {
                let (fate_label, reason) = fate.split_once(':').unwrap_or((fate.as_str(), ""));
                let last = self
                    .fates_last
                    .entry((server.clone(), fate.clone()))
                    .or_default();
                let grown = n.checked_sub(*last).unwrap_or(n);
                *last = n;
                if grown > 0 || n == 0 && fate_label != "dropped" {
                    self.fates
                        .get_or_create(&labels(&[
                            ("server", &server),
                            ("fate", fate_label),
                            ("reason", reason),
                        ]))
                        .inc_by(grown);
                }
            }
            let now = [s.requests, s.responses, s.unanswered];
            let last = self.server_last.entry(server).or_default();
            for (i, (_, family)) in self.server_counts.iter().enumerate() {
                let grown = if now[i] >= last[i] {
                    now[i] - last[i]
                } else {
                    now[i]
                };
                family.get_or_create(&label).inc_by(grown);
            }
            *last = now;
        }
        self.forget_servers(tracker);
        self.pending_requests
            .set(i64::try_from(tracker.pending()).unwrap_or(i64::MAX));
        for ((counter, last), now) in self
            .evicted
            .iter_mut()
            .zip([tracker.evicted_requests, tracker.evicted_servers])
        {
            counter.inc_by(now.saturating_sub(*last));
            *last = now;
        }
    }

    /// Remove the series of servers the tracker no longer holds (it keeps at most its bound,
    /// evicting the least recently seen): the `server` label has as many values as it holds.
    fn forget_servers(&mut self, tracker: &Tracker) {
        let held: std::collections::HashSet<String> = tracker
            .servers()
            .iter()
            .map(|s| s.server.map(|a| a.to_string()).unwrap_or_default())
            .collect();
        let gone: Vec<String> = self
            .server_last
            .keys()
            .filter(|s| !held.contains(*s))
            .cloned()
            .collect();
        for server in gone {
            self.server_last.remove(&server);
            let label = labels(&[("server", &server)]);
            for (_, family) in &self.server_seconds {
                family.remove(&label);
            }
            for (_, family) in &self.server_values {
                family.remove(&label);
            }
            for (_, family) in &self.server_counts {
                family.remove(&label);
            }
            let fates: Vec<String> = self
                .fates_last
                .keys()
                .filter(|(s, _)| *s == server)
                .map(|(_, f)| f.clone())
                .collect();
            for fate in fates {
                self.fates_last.remove(&(server.clone(), fate.clone()));
                let (fate_label, reason) = fate.split_once(':').unwrap_or((fate.as_str(), ""));
                self.fates.remove(&labels(&[
                    ("server", &server),
                    ("fate", fate_label),
                    ("reason", reason),
                ]));
            }
        }
    }

    /// Remove the series of interfaces that have been gone for [`RETIRED_AFTER`].
    fn retire_interfaces(&mut self, counts: &Counts, now: std::time::Instant) {
        for (interface, ..) in counts.each() {
            let live = counts.live.is_empty() || counts.live.iter().any(|l| l == interface);
            if !live {
                if !self.interfaces_retired.contains(interface) {
                    self.interfaces_seen
                        .entry(interface.to_owned())
                        .or_insert(now);
                }
                continue;
            }
            self.interfaces_retired.remove(interface);
            match self.interfaces_seen.get_mut(interface) {
                Some(seen) => *seen = now,
                None => {
                    self.interfaces_seen.insert(interface.to_owned(), now);
                }
            }
        }
        let retired: Vec<String> = self
            .interfaces_seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) >= RETIRED_AFTER)
            .map(|(i, _)| i.clone())
            .collect();
        for interface in retired {
            self.interfaces_seen.remove(&interface);
            self.interfaces_retired.insert(interface.clone());
            for direction in ["in", "out", "unknown"] {
                for counter in ntptap_common::Counter::ALL {
                    self.kernel.remove(&labels(&[
                        ("interface", &crate::escape::terminal(&interface)),
                        ("direction", direction),
                        ("reason", counter.label()),
                    ]));
                }
                self.written.family().remove(&labels(&[
                    ("interface", &crate::escape::terminal(&interface)),
                    ("direction", direction),
                ]));
                self.written.forget();
            }
        }
    }

    fn encode(&self) {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_ok()
            && let Ok(mut shared) = self.exposition.lock()
        {
            *shared = bytes::Bytes::from(text);
        }
    }
}

impl Sink for MetricsSink {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let frame = packet.frame;
        // Drop records are counted from the kernel's own counters (`kernel_drops`), exact
        // even when the ring was full; as frames they would count a packet twice.
        if frame.drop.is_some() {
            return Ok(false);
        }
        let (direction, dir) = match frame.direction {
            Some(Direction::In) => ("in", 0),
            Some(Direction::Out) => ("out", 1),
            None => ("unknown", 2),
        };
        let iface = frame.iface.unwrap_or("?");
        let written = || {
            labels(&[
                ("interface", &crate::escape::terminal(iface)),
                ("direction", direction),
            ])
        };
        match Short::new(iface.as_bytes()) {
            Some(key) => self.written.get((key, dir), written).inc(),
            None => self.written.family().get_or_create(&written()).inc(),
        };
        self.written_total += 1;
        if let Some((_, _, ntp)) = packet.ntp_packet() {
            let (version, mode) = (ntp.version, ntp.mode.to_bits());
            let comm = self.comm_key(&frame.socket);
            let comms = &mut self.comms;
            let socket = &frame.socket;
            let mut ntp_labels = || {
                labels(&[
                    ("version", &version.to_string()),
                    ("mode", &mode.to_string()),
                    ("direction", direction),
                    ("comm", &comm_label(comms, socket)),
                ])
            };
            match comm {
                Some(key) => self.ntp.get((version, mode, dir, key), ntp_labels).inc(),
                None => self.ntp.family().get_or_create(&ntp_labels()).inc(),
            };
            if let Some(code) = ntp.kiss_code() {
                self.kiss
                    .get_or_create(&labels(&[("code", crate::ntp::names::kiss_label(&code))]))
                    .inc();
            }
        }
        if let Some(latency) = &packet.latency {
            for (dir, stage, ns) in latency.stages() {
                // `hidden` may be negative: it is in the JSON and the table, not here.
                if stage != "hidden" {
                    self.latency
                        .get((dir, stage), || {
                            labels(&[("direction", dir), ("stage", stage)])
                        })
                        .observe(ns as f64 / 1e9);
                }
            }
        }
        self.clients.frame(packet);
        for event in &packet.events {
            self.events
                .get_or_create(&labels(&[("event", event.name())]))
                .inc();
        }
        Ok(false)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match *control {
            Control::Kernel(counts) => self.kernel_counts(counts),
            Control::Tick { exchanges, now } => self.render(exchanges, Some(now)),
            Control::Close { exchanges, stats } => self.render(exchanges, Some(stats.end)),
            Control::Flush | Control::Rotate(_) | Control::Trigger(..) => {}
        }
        Ok(())
    }

    fn unwritten(&self) -> u64 {
        0
    }
}

impl MetricsSink {
    /// The key of a frame's socket's `comm` label: the socket's kind, or the owner's name
    /// while it has a label of its own (the first [`COMM_LABELS`] names; a name past them is
    /// `other` for good, since the set only grows). `None` for a name longer than a key holds.
    fn comm_key(&self, socket: &Socket<'_>) -> Option<CommKey> {
        Some(match socket {
            Socket::Owned(p) if own_label(&self.comms, p.comm) => {
                CommKey::Named(Short::new(p.comm)?)
            }
            Socket::Owned(_) => CommKey::Other,
            Socket::None => CommKey::NoSocket,
            Socket::Unowned | Socket::Unknown => CommKey::Unknown,
        })
    }

    fn kernel_counts(&mut self, counts: &Counts) {
        use ntptap_common::Counter as C;
        self.retire_interfaces(counts, std::time::Instant::now());
        let previous: std::collections::HashMap<(&str, u8, u32), u64> = self
            .last_kernel
            .each()
            .map(|(i, d, c, v)| ((i, d, c as u32), v))
            .collect();
        for (interface, direction, counter, value) in counts.each() {
            if self.interfaces_retired.contains(interface) {
                continue;
            }
            let reason = counter.label();
            let dir = if direction == ntptap_common::DIRECTION_EGRESS {
                "out"
            } else {
                "in"
            };
            let before = previous
                .get(&(interface, direction, counter as u32))
                .copied()
                .unwrap_or(0);
            self.kernel
                .get_or_create(&labels(&[
                    ("interface", &crate::escape::terminal(interface)),
                    ("direction", dir),
                    ("reason", reason),
                ]))
                .inc_by(value.saturating_sub(before));
        }
        if let Some(now) = &counts.owners {
            let before = self.last_kernel.owners.unwrap_or_default();
            for (event, now, before) in [
                ("recorded", now.recorded, before.recorded),
                ("changed", now.changed, before.changed),
                ("closed", now.released, before.released),
                ("evicted", now.evicted(), before.evicted()),
            ] {
                self.attribution
                    .get_or_create(&labels(&[("event", event)]))
                    .inc_by(now.saturating_sub(before));
            }
            self.owners_held
                .set(i64::try_from(now.live).unwrap_or(i64::MAX));
        }
        if let Some(now) = &counts.drops {
            let before = self.last_kernel.drops.clone().unwrap_or_default();
            for (direction, reason, n) in &now.reasons {
                let was = before
                    .reasons
                    .iter()
                    .find(|(d, r, _)| d == direction && r == reason)
                    .map_or(0, |(_, _, n)| *n);
                self.drops
                    .get_or_create(&labels(&[
                        ("direction", direction_label(*direction)),
                        ("reason", reason),
                    ]))
                    .inc_by(n.saturating_sub(was));
            }
            for direction in 0..ntptap_common::DIRECTIONS as u8 {
                for (outcome, stat) in [
                    ("recorded", ntptap_common::DropStat::Recorded),
                    ("ring_full", ntptap_common::DropStat::RingFull),
                    ("copy_failed", ntptap_common::DropStat::CopyFailed),
                ] {
                    let (d, i) = (usize::from(direction), stat as usize);
                    self.drop_records
                        .get_or_create(&labels(&[
                            ("direction", direction_label(direction)),
                            ("outcome", outcome),
                        ]))
                        .inc_by(now.stats[d][i].saturating_sub(before.stats[d][i]));
                }
            }
        }
        let in_ring = counts.total(C::Captured).saturating_sub(self.written_total);
        self.ring_pending
            .set(i64::try_from(in_ring).unwrap_or(i64::MAX));
        self.last_kernel = counts.clone();
    }
}

/// Buckets of the in-host latency histograms: 1 µs to about 1 s, by fours.
#[derive(Clone, Copy)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(1e-6, 4.0, 11))
    }
}

/// `in` or `out`, for a record's direction byte.
fn direction_label(direction: u8) -> &'static str {
    if direction == ntptap_common::DIRECTION_EGRESS {
        "out"
    } else {
        "in"
    }
}

/// CPU seconds (user + system) and resident bytes of this process, from `/proc/self/stat`
/// (proc(5): fields 14, 15 and 24, counted after the command name's closing parenthesis).
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    let cpu = (field(14)? + field(15)?) as f64 / ticks as f64;
    Some((cpu, field(24)? * page as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `interface` values of the rendered page.
    fn interfaces(sink: &MetricsSink) -> std::collections::BTreeSet<String> {
        sink.encode();
        let page = String::from_utf8(sink.exposition.lock().unwrap().to_vec()).unwrap();
        page.lines()
            .filter_map(|l| {
                Some(
                    l.split("interface=\"")
                        .nth(1)?
                        .split('"')
                        .next()?
                        .to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn interfaces_gone_past_the_grace_period_lose_their_series() {
        let mut sink = MetricsSink::new(Exposition::default(), 4096);
        let mut counts = Counts::default();
        let names: Vec<String> = (0..200).map(|i| format!("veth{i}")).collect();
        for name in &names {
            counts.add(name, &crate::counts::Block::default());
        }
        counts.live.clone_from(&names);
        sink.kernel_counts(&counts);
        assert_eq!(interfaces(&sink).len(), 200);
        // All but one go away; their last counts stay in the source's totals.
        counts.live = vec!["veth0".into()];
        let t0 = std::time::Instant::now();
        sink.retire_interfaces(&counts, t0);
        sink.kernel_counts(&counts);
        assert_eq!(
            interfaces(&sink).len(),
            200,
            "kept through the grace period"
        );
        sink.retire_interfaces(&counts, t0 + RETIRED_AFTER + Duration::from_secs(1));
        sink.kernel_counts(&counts);
        assert_eq!(
            interfaces(&sink),
            std::collections::BTreeSet::from(["veth0".to_owned()])
        );
        // One that comes back under its name counts again.
        counts.live.push("veth7".into());
        sink.kernel_counts(&counts);
        assert!(interfaces(&sink).contains("veth7"));
    }

    /// The sum of each `key` label's values on `metric`'s lines of the rendered page.
    fn by_label(
        sink: &MetricsSink,
        metric: &str,
        key: &str,
    ) -> std::collections::BTreeMap<String, u64> {
        sink.encode();
        let page = String::from_utf8(sink.exposition.lock().unwrap().to_vec()).unwrap();
        let mut out = std::collections::BTreeMap::new();
        for line in page.lines().filter(|l| l.starts_with(metric)) {
            let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let label = line.split(&format!("{key}=\"")).nth(1).unwrap();
            let label = label.split('"').next().unwrap().to_owned();
            *out.entry(label).or_default() += value;
        }
        out
    }

    /// Frames counted through the kept handles land in the series their labels name: each of
    /// the first 32 process names its own `comm`, the rest `other` (for good, whatever comes
    /// after), each interface its own; a retired interface's series, gone, counts anew.
    #[test]
    fn frames_count_into_the_series_their_labels_name() {
        use std::collections::BTreeMap;
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(40_000, 123)
            .write(&mut frame, &{
                let mut ntp = [0u8; 48];
                ntp[0] = 0x23;
                ntp
            })
            .unwrap();
        let ports = super::super::decoded::PortSet::new(vec![123]);
        let mut sink = MetricsSink::new(Exposition::default(), 4096);
        let names: Vec<String> = (0..40).map(|i| format!("proc{i}")).collect();
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for round in 0..3 {
            for (i, name) in names.iter().enumerate() {
                let process = crate::process::Process {
                    pid: i as u32,
                    tid: i as u32,
                    uid: 0,
                    comm: name.as_bytes(),
                    cgroup_id: 1,
                    cgroup: None,
                    container: None,
                    names: None,
                    netns: None,
                };
                let iface = if i % 2 == 0 { "eth0" } else { "eth1" };
                let f = crate::frame::Frame {
                    iface: Some(iface),
                    direction: Some(Direction::Out),
                    socket: Socket::Owned(process),
                    ..crate::frame::Frame::test(1, Duration::ZERO, &frame)
                };
                sink.frame(&Decoded::new(&f, &ports)).unwrap();
                let label = if i < COMM_LABELS {
                    name.as_str()
                } else {
                    "other"
                };
                *expected.entry(label.to_owned()).or_default() += 1;
                if round == 0 && i == 0 {
                    let none = crate::frame::Frame {
                        socket: Socket::None,
                        ..f
                    };
                    sink.frame(&Decoded::new(&none, &ports)).unwrap();
                    *expected.entry("(none)".to_owned()).or_default() += 1;
                }
            }
        }
        assert_eq!(
            by_label(&sink, "ntptap_ntp_packets_total", "comm"),
            expected
        );
        assert_eq!(
            by_label(&sink, "ntptap_frames_written_total", "interface"),
            BTreeMap::from([("eth0".to_owned(), 61), ("eth1".to_owned(), 60)])
        );
        // eth1 goes away for good: its series too; back, it counts from nothing.
        let mut counts = Counts::default();
        counts.add("eth1", &crate::counts::Block::default());
        counts.live = vec!["eth0".into()];
        let t0 = std::time::Instant::now();
        sink.retire_interfaces(&counts, t0);
        sink.retire_interfaces(&counts, t0 + RETIRED_AFTER + Duration::from_secs(1));
        let f = crate::frame::Frame {
            iface: Some("eth1"),
            direction: Some(Direction::Out),
            ..crate::frame::Frame::test(1, Duration::ZERO, &frame)
        };
        sink.frame(&Decoded::new(&f, &ports)).unwrap();
        assert_eq!(
            by_label(&sink, "ntptap_frames_written_total", "interface"),
            BTreeMap::from([("eth0".to_owned(), 61), ("eth1".to_owned(), 1)])
        );
    }

    #[test]
    fn own_usage_is_read_and_grows() {
        let (cpu, resident) = process_usage().expect("/proc/self/stat");
        assert!(resident > 1 << 20, "{resident} bytes resident");
        let mut spin = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(150) {
            spin = spin.wrapping_add(std::hint::black_box(1));
        }
        let (later, _) = process_usage().expect("/proc/self/stat");
        assert!(later > cpu, "{cpu} -> {later} ({spin})");
    }
}
