//! `--stats N`: the exchange tracker's per-server table on stderr every N seconds and at the
//! end, and its events in the log.

use std::{
    fmt::Write as _,
    io::{self, Write},
    time::Duration,
};

use super::super::{decoded::Decoded, sink::Control, sink::Sink};
use crate::exchange::Tracker;

/// Prints what the pipeline's exchange [`Tracker`] knows, and logs its events.
pub struct HealthSink<W: Write> {
    out: W,
    every: Duration,
    last: Option<Duration>,
    events: super::event_log::EventLog,
}

impl<W: Write> HealthSink<W> {
    /// A table on `out` every `every`.
    pub fn new(out: W, every: Duration) -> Self {
        Self {
            out,
            every,
            last: None,
            events: super::event_log::EventLog::default(),
        }
    }

    fn table(&mut self, tracker: &Tracker, now: Option<Duration>) -> io::Result<()> {
        let mut t = String::new();
        servers_table(&mut t, tracker);
        fates_table(&mut t, tracker);
        latency_table(&mut t, tracker);
        clients_table(&mut t, tracker, now);
        suspects_table(&mut t, tracker);
        let processes = tracker.processes();
        if !processes.is_empty() {
            let _ = writeln!(t, "ntptap: NTP clients on this host, by process and server");
            let _ = writeln!(
                t,
                "{:<28} {:<40} {:>6} {:>6} {:>6}",
                "process", "server", "req", "resp", "lost"
            );
            for p in processes {
                let _ = writeln!(
                    t,
                    "{:<28} {:<40} {:>6} {:>6} {:>6}",
                    p.process,
                    p.server.map(|a| a.to_string()).unwrap_or_default(),
                    p.requests,
                    p.responses,
                    p.unanswered
                );
            }
        }
        if tracker.evicted_requests + tracker.evicted_servers > 0 {
            let _ = writeln!(
                t,
                "ntptap: evicted to bound memory: {} requests, {} servers",
                tracker.evicted_requests, tracker.evicted_servers
            );
        }
        self.out.write_all(t.as_bytes())?;
        self.out.flush()
    }
}

impl<W: Write> Sink for HealthSink<W> {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        for event in &packet.events {
            self.events.event(event, packet.frame.ts);
        }
        Ok(false)
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        match *control {
            Control::Tick { now, exchanges } => {
                self.events.tick(now);
                // No table until there is a server to put in it.
                let any = exchanges.is_some_and(|t| !t.servers().is_empty());
                if any
                    && self
                        .last
                        .is_none_or(|l| now.saturating_sub(l) >= self.every)
                {
                    self.last = Some(now);
                    self.table(exchanges.unwrap_or(&Tracker::default()), Some(now))?;
                }
                Ok(())
            }
            Control::Close { exchanges, stats } => {
                self.events.flush();
                // The same `now` as the periodic tables: the end of a live capture (a file's
                // close says 0, and its last packet's time counts).
                self.table(exchanges.unwrap_or(&Tracker::default()), Some(stats.end))
            }
            Control::Flush => self.out.flush(),
            Control::Kernel(_) | Control::Rotate(_) | Control::Trigger(..) => Ok(()),
        }
    }

    fn unwritten(&self) -> u64 {
        0
    }
}

/// The servers this host asked, when there are some. A server on this host is not one of
/// them: its exchanges are served traffic, in the clients table (and its in-host latency and
/// the fates of its requests in theirs).
fn servers_table(t: &mut String, tracker: &Tracker) {
    let remote: Vec<_> = tracker.servers().into_iter().filter(|s| !s.local).collect();
    if remote.is_empty() {
        return;
    }
    let _ = writeln!(
        t,
        "ntptap: NTP servers seen ({} requests waiting; delay and offset from capture times on this host)",
        tracker.pending()
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
    for s in remote {
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
}

/// What became of each server's requests without a real answer, where there are some.
fn fates_table(t: &mut String, tracker: &Tracker) {
    let fated: Vec<_> = tracker
        .servers()
        .into_iter()
        .filter(|s| s.unanswered + s.fates.kiss_of_death > 0)
        .collect();
    if !fated.is_empty() {
        let _ = writeln!(
            t,
            "ntptap: what became of the requests without a real answer (dropped in this \
             host: the kernel's reason; ignored: came in, reached the host, no reply left; \
             no reply seen: went out, nothing came back)"
        );
        let _ = writeln!(
            t,
            "{:<40} {:>8} {:>8} {:>8} {:>8}  dropped in this host",
            "server", "ignored", "no reply", "kiss", "unknown"
        );
        for s in fated {
            let dropped: Vec<String> = s
                .fates
                .dropped
                .iter()
                .map(|(r, n)| format!("{r}×{n}"))
                .collect();
            let _ = writeln!(
                t,
                "{:<40} {:>8} {:>8} {:>8} {:>8}  {}",
                s.server.map(|a| a.to_string()).unwrap_or_default(),
                s.fates.ignored,
                s.fates.no_reply_seen,
                s.fates.kiss_of_death,
                s.fates.unknown,
                if dropped.is_empty() {
                    "-".to_owned()
                } else {
                    dropped.join(" ")
                }
            );
        }
    }
}

/// The pattern detectors' current suspects, one line each (at most ten of a kind).
fn suspects_table(t: &mut String, tracker: &Tracker) {
    let s = tracker.suspects();
    if s.is_empty() {
        return;
    }
    let _ = writeln!(
        t,
        "ntptap: suspects now (the events amplification, reflection, hop_limit_change, \
         falseticker, delay_asymmetry, nts_downgrade)"
    );
    for (client, ratio, bytes) in &s.amplification {
        let _ = writeln!(
            t,
            "{:<16} {client:<40} sent {ratio}x what it sent us, {bytes} bytes in 10 s",
            "amplification"
        );
    }
    for (victim, packets, reflectors) in &s.reflection {
        let _ = writeln!(
            t,
            "{:<16} {victim:<40} {packets} responses never asked for, from {reflectors} servers",
            "reflection"
        );
    }
    for (client, from, to, n) in &s.hop_limits {
        let _ = writeln!(
            t,
            "{:<16} {client:<40} settled on {from}, {n} requests with {to}",
            "hop limit"
        );
    }
    for server in &s.falsetickers {
        let _ = writeln!(t, "{:<16} {server:<40} outside the majority", "falseticker");
    }
    for server in &s.asymmetric {
        let _ = writeln!(t, "{:<16} {server:<40} one way delayed", "asymmetry");
    }
    for (client, server) in &s.nts_downgrades {
        let _ = writeln!(t, "{:<16} {client:<40} with {server}", "nts downgrade");
    }
}

/// Each server's in-host latency by stage, where there is some (`--latency`, or a server on
/// this host).
fn latency_table(t: &mut String, tracker: &Tracker) {
    let rows: Vec<_> = tracker
        .servers()
        .into_iter()
        .flat_map(|s| {
            s.latency
                .percentiles()
                .into_iter()
                .map(move |p| (s.server, p))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        t,
        "ntptap: in-host latency, ms (p50 and p99 of the last 1024 packets; in_read: request at \
         the ingress hook to the daemon's read; daemon: read to send; out_send: send to the \
         egress hook; residence: request in to reply out; hidden: residence - (T3 - T2))"
    );
    let _ = writeln!(
        t,
        "{:<40} {:<10} {:<4} {:>10} {:>10} {:>8}",
        "server", "stage", "dir", "p50", "p99", "packets"
    );
    for (server, (dir, stage, p50, p99, n)) in rows {
        let _ = writeln!(
            t,
            "{:<40} {stage:<10} {dir:<4} {:>10.3} {:>10.3} {n:>8}",
            server.map(|a| a.to_string()).unwrap_or_default(),
            p50 as f64 / 1e6,
            p99 as f64 / 1e6,
        );
    }
}

/// The clients of a server on this host (client analytics), when it served any.
fn clients_table(t: &mut String, tracker: &Tracker, now: Option<Duration>) {
    let clients = tracker.clients();
    if clients.requests() == 0 {
        return;
    }
    let r = clients.report(now);
    let share = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{:.1} %", v * 1e2));
    let _ = writeln!(
        t,
        "ntptap: clients of this host's NTP server: {} distinct (estimated), {} in the last {} s; {} requests, {} replies; {:.1} requests/s, {:.1} replies/s, answered {} (over the window); NTS {}",
        r.distinct,
        r.window_distinct,
        r.window_seconds,
        r.requests,
        r.replies,
        r.requests_per_second,
        r.replies_per_second,
        share(r.answered_ratio),
        share(r.nts_share),
    );
    let mix = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let polls: Vec<String> = r
        .poll
        .iter()
        .map(|b| format!("{}s×{}", b.seconds, b.intervals))
        .collect();
    let kod: Vec<String> = r
        .kiss_of_death
        .iter()
        .map(|(code, k)| format!("{code}×{} to {} clients", k.sent, k.clients))
        .collect();
    let q = &r.queries;
    let _ = writeln!(
        t,
        "  versions {}; modes {}; poll intervals {}; kiss-o'-death sent {}; mode 6 queries {} local, {} remote; mode 7 {} local, {} remote",
        mix(&r.versions),
        mix(&r.modes),
        if polls.is_empty() {
            "-".to_owned()
        } else {
            polls.join(" ")
        },
        if kod.is_empty() {
            "-".to_owned()
        } else {
            kod.join(", ")
        },
        q.mode6_local,
        q.mode6_remote,
        q.mode7_local,
        q.mode7_remote,
    );
    let _ = writeln!(
        t,
        "  {:<40} {:>10} {:>8}",
        "busiest clients", "requests", "± error"
    );
    for c in &r.top {
        let _ = writeln!(t, "  {:<40} {:>10} {:>8}", c.client, c.requests, c.error);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::{exchange::Limits, frame::Direction, ntp::Ntp, output::CloseStats};

    /// The rates of every clients table `text` holds.
    fn rates(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(" requests/s").next().filter(|h| h.len() < l.len()))
            .filter_map(|head| head.rsplit(' ').next().map(str::to_owned))
            .collect()
    }

    /// Ten requests over two seconds, a table at 5 s and the final one at the same time: one
    /// definition of a rate (requests in the window over the time it covers, up to the
    /// report's time), so one figure. The final table used the last packet's time instead.
    #[test]
    fn periodic_and_final_tables_give_one_rate() {
        let mut tracker = Tracker::new(Limits::default());
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.2:123".parse().unwrap();
        let t0 = Duration::from_secs(1_700_000_000);
        for n in 0..10u64 {
            let mut bytes = [0u8; 48];
            bytes[0] = 0x23;
            bytes[40..48].copy_from_slice(&(n + 1).to_be_bytes());
            let ntp = Ntp::decode(&bytes).unwrap();
            let ts = t0 + Duration::from_millis(222 * n);
            tracker.observe(ts, (client, server), &ntp, Some(Direction::In), None);
        }
        let now = t0 + Duration::from_secs(5);
        let mut sink = HealthSink::new(Vec::new(), Duration::from_secs(1));
        sink.control(&Control::Tick {
            now,
            exchanges: Some(&tracker),
        })
        .unwrap();
        let stats = CloseStats {
            start: t0,
            end: now,
            received: None,
            dropped: None,
        };
        sink.control(&Control::Close {
            stats: &stats,
            exchanges: Some(&tracker),
        })
        .unwrap();
        let text = String::from_utf8(sink.out).unwrap();
        let rates = rates(&text);
        assert_eq!(rates.len(), 2, "{text}");
        assert_eq!(rates[0], rates[1], "{text}");
        assert_eq!(rates[0], "2.0", "{text}");
    }
}
