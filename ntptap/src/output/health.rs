//! `--stats N`: the exchange tracker's per-server table on stderr every N seconds and at the
//! end, and its events in the log.

use std::{
    fmt::Write as _,
    io::{self, Write},
    time::Duration,
};

use super::{CloseStats, PortSet, Sink};
use crate::{
    exchange::{Limits, Tracker},
    frame::Frame,
};

/// Feeds NTP packets to a [`Tracker`] and prints what it knows.
pub struct HealthSink<W: Write> {
    out: W,
    tracker: Tracker,
    ports: PortSet,
    every: Duration,
    last: Option<Duration>,
}

impl<W: Write> HealthSink<W> {
    /// A table on `out` every `every`.
    pub fn new(out: W, ports: PortSet, every: Duration) -> Self {
        Self {
            out,
            tracker: Tracker::new(Limits::default()),
            ports,
            every,
            last: None,
        }
    }

    fn table(&mut self) -> io::Result<()> {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "ntptap: NTP servers seen ({} requests waiting; delay and offset from capture times on this host)",
            self.tracker.pending()
        );
        let _ = writeln!(
            t,
            "{:<40} {:>6} {:>6} {:>6} {:>7} {:<16} {:>4} {:>10} {:>10} {:>11} {:>8}  kiss codes",
            "server",
            "req",
            "resp",
            "lost",
            "stratum",
            "refid",
            "leap",
            "delay ms",
            "offset ms",
            "best off ms",
            "proc µs"
        );
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.3}", v * 1e3));
        for s in self.tracker.servers() {
            let kod: Vec<String> = s
                .kiss_codes
                .iter()
                .map(|(k, n)| format!("{k}×{n}"))
                .collect();
            let _ = writeln!(
                t,
                "{:<40} {:>6} {:>6} {:>6} {:>7} {:<16} {:>4} {:>10} {:>10} {:>11} {:>8}  {}",
                s.server.map(|a| a.to_string()).unwrap_or_default(),
                s.requests,
                s.responses,
                s.unanswered,
                s.stratum.map_or_else(|| "-".into(), |v| v.to_string()),
                s.refid.as_deref().unwrap_or("-"),
                s.leap.map_or_else(|| "-".into(), |v| v.to_string()),
                ms(s.delay),
                ms(s.offset),
                ms(s.best_offset),
                s.processing
                    .map_or_else(|| "-".into(), |v| format!("{:.0}", v * 1e6)),
                if kod.is_empty() {
                    "-".to_owned()
                } else {
                    kod.join(" ")
                },
            );
        }
        if self.tracker.evicted_requests + self.tracker.evicted_servers > 0 {
            let _ = writeln!(
                t,
                "ntptap: evicted to bound memory: {} requests, {} servers",
                self.tracker.evicted_requests, self.tracker.evicted_servers
            );
        }
        self.out.write_all(t.as_bytes())?;
        self.out.flush()
    }
}

/// Feed one frame to `tracker` if it is NTP on `ports`.
pub fn observe(tracker: &mut Tracker, ports: &PortSet, frame: &Frame<'_>) {
    if let Some((src, dst, ntp)) = super::ntp_in(frame, ports) {
        tracker.observe(frame.ts, src, dst, &ntp);
    }
}

impl<W: Write> Sink for HealthSink<W> {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<bool> {
        observe(&mut self.tracker, &self.ports, frame);
        for event in self.tracker.take_events() {
            tracing::warn!(target: "ntptap::event", "{}", serde_json::to_string(&event).unwrap_or_default());
        }
        Ok(false)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn tick(&mut self, now: Duration) -> io::Result<()> {
        self.tracker.expire(now);
        if self
            .last
            .is_none_or(|l| now.saturating_sub(l) >= self.every)
        {
            self.last = Some(now);
            self.table()?;
        }
        Ok(())
    }

    fn close(&mut self, stats: &CloseStats) -> io::Result<()> {
        if stats.end > Duration::ZERO {
            self.tracker.expire(stats.end);
        }
        self.table()
    }
}
