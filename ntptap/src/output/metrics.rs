//! `--metrics ADDR:PORT`: Prometheus text format, every metric named `ntptap_*`. Labels are
//! bounded: directions, reasons, NTP versions and modes, kiss codes, interfaces, and servers
//! (at most the exchange tracker's limit); no per-client label.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{Control, Decoded, Sink};
use crate::{counts::Counts, exchange::Tracker, frame::Direction};

type Labels = Vec<(String, String)>;

/// The latest rendering of the metrics, shared with the HTTP server.
pub type Exposition = Arc<Mutex<String>>;

/// Keeps the metrics and renders them once a second.
pub struct MetricsSink {
    registry: Registry,
    kernel: Family<Labels, Counter>,
    written: Family<Labels, Counter>,
    ntp: Family<Labels, Counter>,
    kiss: Family<Labels, Counter>,
    server_gauges: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    server_totals: Family<Labels, Gauge>,
    tracker_state: Family<Labels, Gauge>,
    ring_pending: Gauge,
    written_total: u64,
    last_kernel: Counts,
    exposition: Exposition,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl MetricsSink {
    /// Metrics rendered into `exposition`; `ring_bytes` is the size of the rings.
    pub fn new(exposition: Exposition, ring_bytes: u32) -> Self {
        let mut registry = Registry::with_prefix("ntptap");
        let kernel = Family::<Labels, Counter>::default();
        registry.register(
            "kernel_frames",
            "Frames by interface, direction and what the kernel programs decided: seen, matched, captured, ring_full, copy_failed, truncated, unparsable, later_fragment",
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
            "NTP packets by version, mode and direction",
            ntp.clone(),
        );
        let kiss = Family::<Labels, Counter>::default();
        registry.register(
            "kiss_of_death",
            "Kiss-o'-death packets by code",
            kiss.clone(),
        );
        let server_gauges = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "server",
            "Per NTP server, from the wire: delay_seconds, offset_seconds, best_offset_seconds, processing_seconds, stratum, leap",
            server_gauges.clone(),
        );
        let server_totals = Family::<Labels, Gauge>::default();
        registry.register(
            "server_exchanges",
            "Per NTP server: requests, responses, unanswered",
            server_totals.clone(),
        );
        let tracker_state = Family::<Labels, Gauge>::default();
        registry.register(
            "tracker",
            "Exchange tracker: pending requests, evicted requests and servers",
            tracker_state.clone(),
        );
        let ring = Gauge::<i64>::default();
        ring.set(i64::from(ring_bytes));
        registry.register("ring_buffer_bytes", "Size of the BPF ring buffer", ring);
        let ring_pending = Gauge::<i64>::default();
        registry.register(
            "ring_records_pending",
            "Ring fill: records the kernel put in the ring that ntptap has not read yet",
            ring_pending.clone(),
        );
        Self {
            registry,
            kernel,
            written,
            ntp,
            kiss,
            server_gauges,
            server_totals,
            tracker_state,
            ring_pending,
            written_total: 0,
            last_kernel: Counts::default(),
            exposition,
        }
    }

    fn render(&mut self, exchanges: Option<&Tracker>) {
        let Some(tracker) = exchanges else {
            return self.encode();
        };
        for s in tracker.servers() {
            let server = s.server.map(|a| a.to_string()).unwrap_or_default();
            for (what, value) in [
                ("delay_seconds", s.delay),
                ("offset_seconds", s.offset),
                ("best_offset_seconds", s.best_offset),
                ("processing_seconds", s.processing),
                ("stratum", s.stratum.map(f64::from)),
                ("leap", s.leap.map(f64::from)),
            ] {
                if let Some(v) = value {
                    self.server_gauges
                        .get_or_create(&labels(&[("server", &server), ("value", what)]))
                        .set(v);
                }
            }
            for (what, value) in [
                ("requests", s.requests),
                ("responses", s.responses),
                ("unanswered", s.unanswered),
            ] {
                self.server_totals
                    .get_or_create(&labels(&[("server", &server), ("kind", what)]))
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
        for (what, value) in [
            ("pending_requests", tracker.pending() as u64),
            ("evicted_requests", tracker.evicted_requests),
            ("evicted_servers", tracker.evicted_servers),
        ] {
            self.tracker_state
                .get_or_create(&labels(&[("value", what)]))
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        self.encode();
    }

    fn encode(&self) {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_ok()
            && let Ok(mut shared) = self.exposition.lock()
        {
            *shared = text;
        }
    }
}

impl Sink for MetricsSink {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        let frame = packet.frame;
        let direction = match frame.direction {
            Some(Direction::In) => "in",
            Some(Direction::Out) => "out",
            None => "unknown",
        };
        self.written
            .get_or_create(&labels(&[
                ("interface", frame.iface.unwrap_or("?")),
                ("direction", direction),
            ]))
            .inc();
        self.written_total += 1;
        if let Some((_, _, ntp)) = packet.ntp_packet() {
            let (version, mode) = (ntp.version.to_string(), ntp.mode.to_bits().to_string());
            self.ntp
                .get_or_create(&labels(&[
                    ("version", &version),
                    ("mode", &mode),
                    ("direction", direction),
                ]))
                .inc();
            if let Some(code) = ntp.kiss_code() {
                self.kiss
                    .get_or_create(&labels(&[("code", &String::from_utf8_lossy(&code))]))
                    .inc();
            }
        }
        Ok(false)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match *control {
            Control::Kernel(counts) => self.kernel_counts(counts),
            Control::Tick { exchanges, .. } | Control::Close { exchanges, .. } => {
                self.render(exchanges);
            }
            Control::Flush | Control::Rotate(_) => {}
        }
        Ok(())
    }

    fn unwritten(&self) -> u64 {
        0
    }
}

impl MetricsSink {
    fn kernel_counts(&mut self, counts: &Counts) {
        use ntptap_common::Counter as C;
        let previous: std::collections::HashMap<(&str, u8, u32), u64> = self
            .last_kernel
            .each()
            .map(|(i, d, c, v)| ((i, d, c as u32), v))
            .collect();
        for (interface, direction, counter, value) in counts.each() {
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
                    ("interface", interface),
                    ("direction", dir),
                    ("reason", reason),
                ]))
                .inc_by(value.saturating_sub(before));
        }
        let in_ring = counts.total(C::Captured).saturating_sub(self.written_total);
        self.ring_pending
            .set(i64::try_from(in_ring).unwrap_or(i64::MAX));
        self.last_kernel = counts.clone();
    }
}

/// The metrics' HTTP endpoint: bound when the outputs are built (so a port in use fails
/// before anything is attached), served once the event loop runs.
pub struct Endpoint {
    listener: std::net::TcpListener,
    exposition: Exposition,
}

impl Endpoint {
    /// Listen on `addr`.
    pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "cannot serve metrics on {addr}: is the port in use? choose another with --metrics"
            )
        })?;
        listener
            .set_nonblocking(true)
            .context("cannot make the metrics listener non-blocking")?;
        Ok(Self {
            listener,
            exposition: Exposition::default(),
        })
    }

    /// What the server serves; the metrics sink renders into it.
    #[must_use]
    pub fn exposition(&self) -> Exposition {
        Arc::clone(&self.exposition)
    }

    /// Serve from `runtime` until it stops.
    pub fn serve(self, runtime: &tokio::runtime::Handle) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let _context = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .context("cannot serve metrics from the event loop")?;
        runtime.spawn(serve(listener, self.exposition));
        Ok(())
    }
}

/// Serve `exposition` over HTTP on `listener` until the runtime stops: any GET gets the text.
async fn serve(listener: tokio::net::TcpListener, exposition: Exposition) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let exposition = Arc::clone(&exposition);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut request)).await;
            let body = exposition.lock().map(|s| s.clone()).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
