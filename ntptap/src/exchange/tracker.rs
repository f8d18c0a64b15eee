//! The pairing engine: each request held until its response comes (or it is given up), each
//! pair turned into delay and offset, each server's health kept within bounds.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use super::{
    Table,
    clients::{Clients, Served, is_local},
    latency::{Latency, Sighting, ntp_ns, of_reply},
    patterns::{PatternLimits, Patterns, Sample, Suspects},
    pending::{Key, Seen, Waiting},
};
use crate::{
    frame::Direction,
    ntp::{Body, Mode, Ntp, NtpTimestamp, RefId},
    process::Process,
};

use super::{
    event::Event,
    health::{ProcessExchanges, ServerHealth},
};

/// Memory bounds of a [`Tracker`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most requests waiting for a response.
    pub pending: usize,
    /// Most servers tracked.
    pub servers: usize,
    /// A request without a response after this long counts as unanswered.
    pub timeout: Duration,
    /// Most (process, server) pairs counted.
    pub processes: usize,
    /// An `offset_step` event when a server's offset moves by this many seconds or more from
    /// one exchange to the next (`None`: never).
    pub step: Option<f64>,
    /// An `unanswered_run` event when this many requests in a row to one server go
    /// unanswered (0: never).
    pub unanswered_run: u64,
    /// Keep the time of this many unanswered requests (for `--plot`; 0: none).
    pub losses: usize,
    /// The thresholds and capacities of the pattern detectors.
    pub patterns: PatternLimits,
}

impl Limits {
    /// An upper bound of the bytes the waiting and answered requests take, whatever the
    /// traffic: each hash table at twice its entries (its slack) and once more while it grows
    /// (the old table beside the new); the arrival queue at three times (compacted past one
    /// and a half, and doubled as it grows).
    #[must_use]
    pub fn bound(&self) -> usize {
        self.pending
            * (3 * (size_of::<(Key, Pending)>() + 1)
                + 3 * size_of::<(Duration, Key)>()
                + 3 * (size_of::<(Key, Duration)>() + 1))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pending: 65_536,
            servers: 1024,
            timeout: Duration::from_secs(8),
            processes: 1024,
            step: Some(0.128),
            unanswered_run: 5,
            losses: 0,
            patterns: PatternLimits::default(),
        }
    }
}

/// One NTP packet as the tracker takes it: when, between whom, which way, whose socket, and
/// the times the kernel took of it; filled from a frame ([`Observation::of_frame`]).
#[derive(Clone, Copy)]
pub struct Observation<'n, 'p> {
    /// Capture time.
    pub ts: Duration,
    /// Source.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// The packet.
    pub ntp: &'n Ntp,
    /// Which way it went, where the capture knows.
    pub direction: Option<Direction>,
    /// The owner of its socket on this host, where known.
    pub process: Option<&'p Process<'p>>,
    /// The kernel's times of it.
    pub sighting: Sighting,
    /// Bytes of its frame on the wire (0: unknown).
    pub wire_len: u32,
    /// The TTL or hop limit it arrived with.
    pub hop_limit: Option<u8>,
}

impl<'n, 'p> Observation<'n, 'p> {
    /// `ntp`, from `src` to `dst`, as `frame` carried it: its time, direction, owner and the
    /// in-host stamps of its record.
    #[must_use]
    pub fn of_frame(
        frame: &'p crate::frame::Frame<'p>,
        (src, dst): (SocketAddr, SocketAddr),
        ntp: &'n Ntp,
    ) -> Self {
        Self {
            ts: frame.ts,
            src,
            dst,
            ntp,
            direction: frame.direction,
            process: frame.socket.process(),
            sighting: Sighting {
                // Interface 1 is a network namespace's loopback.
                loopback: frame.ifindex == Some(1),
                mono_ns: frame.mono_ns,
                send_before: frame.send_before,
                read_before: frame.read_before,
                queued_before: frame.queued_before,
            },
            wire_len: frame.orig_len,
            hop_limit: None,
        }
    }

    /// With the TTL or hop limit of its IP header.
    #[must_use]
    pub fn with_hop_limit(mut self, hop_limit: Option<u8>) -> Self {
        self.hop_limit = hop_limit;
        self
    }
}

/// What the tracker made of one packet.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Its in-host latency, as far as it is known.
    pub latency: Latency,
    /// What it was to a server on this host (client analytics).
    pub served: Option<Served>,
    /// The exchange it completed: a response paired with its request.
    pub exchange: Option<Exchange>,
}

/// One exchange with a server, as the capture saw it (RFC 5905 §8, capture times as T1 and
/// T4).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exchange {
    /// The server.
    pub server: IpAddr,
    /// Round-trip delay, seconds.
    pub delay: f64,
    /// Offset of the server's clock from the capturing host's, seconds.
    pub offset: f64,
    /// The server's root delay / 2 + root dispersion, seconds.
    pub root: f64,
}

/// A request waiting for its response.
#[derive(Clone, Debug, Default)]
struct Pending {
    /// When it was seen.
    seen: Duration,
    /// Its (process, server) pair's index in `processes`.
    process: Option<u32>,
    /// Which way it went, when known.
    direction: Option<Direction>,
    /// The kernel dropped it, or its reply, in this host: the reason.
    dropped: Option<Box<str>>,
    /// Kernel monotonic time of its capture, ns.
    mono: Option<u64>,
}

impl Seen for Pending {
    fn seen(&self) -> Duration {
        self.seen
    }
}

/// A reply seen before its request: the kernel programs write to the ring of the CPU they run
/// on, and a request's record, stamped first, can be committed after its reply's was read
/// from another CPU's ring. Held until the request comes, or [`ORPHAN_WAIT`] passes.
#[derive(Debug)]
struct Orphan {
    ts: Duration,
    server: SocketAddr,
    client: SocketAddr,
    ntp: Ntp,
    direction: Option<Direction>,
    sighting: Sighting,
}

/// How long a reply waits for a request taken after it (capture time).
const ORPHAN_WAIT: Duration = Duration::from_secs(1);
/// Most replies waiting at once; past them, a reply without its request is unmatched at once.
const ORPHANS: usize = 256;

/// Pairs requests with responses and keeps per-server health, within [`Limits`].
#[derive(Debug, Default)]
pub struct Tracker {
    /// Replies that came before their requests, oldest first.
    orphans: std::collections::VecDeque<Orphan>,
    limits: Limits,
    /// Requests waiting, in the order they came.
    pending: Waiting<Pending>,
    /// Requests answered within the timeout, by when: a reply the kernel drops after ntptap
    /// saw it is an answer that never arrived.
    answered: Table<Key, Duration>,
    servers: Table<IpAddr, ServerHealth>,
    /// Per (process, server) pair, in the order they came (never removed: at most
    /// `limits.processes`), and their indices by the process's `comm[pid]` and the server.
    processes: Vec<ProcessExchanges>,
    process_ids: Table<(String, IpAddr), u32>,
    /// The pair the last request came from: its pid, comm and server, and its index. A busy
    /// socket's requests come one after another; they find their pair without making its
    /// name again (a `format!` and two allocations a request).
    last_process: Option<(u32, Vec<u8>, IpAddr, Option<u32>)>,
    events: Vec<Event>,
    /// Client analytics of a server on this host.
    clients: Clients,
    /// The exchange the last response completed.
    completed: Option<Exchange>,
    /// When unanswered requests were sent, by server (up to `limits.losses`).
    losses: Vec<(IpAddr, Duration)>,
    /// Patterns across packets: amplification, reflection, hop limits, selection, NTS.
    patterns: Patterns,
    /// The capture time of the latest packet.
    latest: Duration,
    /// Pending requests dropped to stay within the limit.
    pub evicted_requests: u64,
    /// Servers dropped to stay within the limit.
    pub evicted_servers: u64,
}

fn secs(ns: i128) -> f64 {
    ns as f64 / 1e9
}

impl Tracker {
    /// A tracker with these bounds.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            patterns: Patterns::new(limits.patterns),
            limits,
            ..Self::default()
        }
    }

    fn server(&mut self, addr: IpAddr) -> &mut ServerHealth {
        if !self.servers.contains_key(&addr) && self.servers.len() >= self.limits.servers {
            // Drop the quietest server to make room.
            if let Some(quiet) = self
                .servers
                .iter()
                .min_by_key(|(_, s)| s.requests + s.responses)
                .map(|(a, _)| *a)
            {
                self.servers.remove(&quiet);
                self.evicted_servers += 1;
            }
        }
        self.servers.entry(addr).or_insert_with(|| ServerHealth {
            server: Some(addr),
            ..ServerHealth::default()
        })
    }

    /// Take one NTP packet from `src` to `dst`, captured at `ts` going `direction`; `process`
    /// is the owner of its socket on this host (`comm[pid]`), when known: requests from it are
    /// counted for it. (The tests' shorthand for [`Tracker::observe_seen`] without stamps.)
    pub fn observe(
        &mut self,
        ts: Duration,
        (src, dst): (SocketAddr, SocketAddr),
        ntp: &Ntp,
        direction: Option<Direction>,
        process: Option<&Process<'_>>,
    ) {
        self.observe_seen(&Observation {
            ts,
            src,
            dst,
            ntp,
            direction,
            process,
            sighting: Sighting::default(),
            wire_len: 0,
            hop_limit: None,
        });
    }

    /// Take one observed NTP packet; returns its in-host latency, as far as it is known, and
    /// what it was to a server on this host.
    pub fn observe_seen(&mut self, o: &Observation<'_, '_>) -> Observed {
        // Requests older than the timeout at this packet's time are unanswered: a capture
        // file has no clock ticks but its own. (O(1) unless some expire.)
        self.expire_before(o.ts);
        // On loopback a server here and its client both are this host: every request and
        // reply is served traffic, whatever the direction says.
        let served = self.clients.observe(
            o.ts,
            (o.src, o.dst),
            o.ntp,
            o.direction.filter(|_| !o.sighting.loopback),
        );
        let latency = self.exchange(o);
        self.latest = self.latest.max(o.ts);
        self.patterns.packet(o, &mut self.events);
        if let Some(e) = &self.completed {
            self.patterns.sample(
                &Sample {
                    ts: o.ts,
                    server: e.server,
                    delay: e.delay,
                    offset: e.offset,
                    root: e.root,
                },
                &mut self.events,
            );
        }
        Observed {
            latency,
            served,
            exchange: self.completed.take(),
        }
    }

    /// What the pattern detectors suspect as of the latest packet.
    #[must_use]
    pub fn suspects(&self) -> Suspects {
        self.patterns.suspects(self.latest)
    }

    /// The client analytics of a server on this host.
    #[must_use]
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    fn exchange(&mut self, o: &Observation<'_, '_>) -> Latency {
        let &Observation {
            ts,
            src,
            dst,
            ntp,
            direction,
            process,
            sighting,
            ..
        } = o;
        let mut latency = Latency::default();
        match &ntp.body {
            Body::Private(p) if !p.response && (p.request_code == 20 || p.request_code == 42) => {
                self.events.push(Event::MonlistRequest {
                    from: src,
                    to: dst,
                    request_code: p.request_code,
                });
            }
            Body::Control(c) if !c.response && !is_local(src.ip()) => {
                self.events.push(Event::RemoteControlQuery {
                    from: src,
                    to: dst,
                    opcode: c.opcode,
                });
            }
            Body::Time(h) => {
                if !(1..=4).contains(&ntp.version) || ntp.mode == Mode::Reserved {
                    self.events.push(Event::Anomaly {
                        from: src,
                        to: dst,
                        what: format!("NTP version {} mode {}", ntp.version, ntp.mode.to_bits()),
                    });
                }
                match ntp.mode {
                    Mode::Client | Mode::SymmetricActive => {
                        let pending = Pending {
                            seen: ts,
                            process: None,
                            direction,
                            dropped: None,
                            mono: sighting.mono_ns,
                        };
                        self.request(src, dst, h.transmit, pending, process);
                        if direction == Some(Direction::In) && !sighting.loopback {
                            self.server(dst.ip()).local = true;
                        }
                        if direction == Some(Direction::Out)
                            && let Some(send) = sighting.send_before
                        {
                            latency.out_send = Some(u64::from(send));
                            self.server(dst.ip()).latency.add(&latency);
                        }
                    }
                    Mode::Server | Mode::SymmetricPassive => {
                        latency = self.response(ts, (src, dst), ntp, direction, sighting);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        latency
    }

    /// The kernel dropped this NTP packet in this host, for `reason`: a request or a reply
    /// that never reached the other side.
    pub fn dropped(&mut self, (src, dst): (SocketAddr, SocketAddr), ntp: &Ntp, reason: &str) {
        let Some(h) = ntp.time() else { return };
        // The exchange's key, its server, and whether the dropped packet is the request.
        let (key, server, request) = match ntp.mode {
            Mode::Client | Mode::SymmetricActive => {
                (Key::new(src, dst, h.transmit.0), dst.ip(), true)
            }
            Mode::Server | Mode::SymmetricPassive => {
                (Key::new(dst, src, h.origin.0), src.ip(), false)
            }
            _ => return,
        };
        if let Some(p) = self.pending.get_mut(&key) {
            p.dropped = Some(reason.into());
        } else if request {
            // Dropped before ntptap's hook saw it (on the way out): a request all the same,
            // and it will never be answered.
            self.server(server).requests += 1;
            self.fate(server, None, Some(reason), (None, None));
        } else if self.answered.remove(&key).is_some() {
            // Paired as it passed ntptap's hook, then dropped: no answer after all.
            let s = self.server(server);
            s.responses = s.responses.saturating_sub(1);
            self.fate(server, None, Some(reason), (None, None));
        } else {
            *self
                .server(server)
                .fates
                .dropped
                .entry(reason.to_owned())
                .or_default() += 1;
        }
    }

    fn request(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        transmit: NtpTimestamp,
        mut pending: Pending,
        process: Option<&Process<'_>>,
    ) {
        self.server(server.ip()).requests += 1;
        let process = process.and_then(|p| self.process(p, server.ip()));
        if let Some(p) = process.and_then(|i| self.processes.get_mut(i as usize)) {
            p.requests += 1;
        }
        // `observe_seen` has expired what is older than the timeout at `ts`: if the table is
        // still full, the oldest request makes room.
        if self.pending.len() >= self.limits.pending
            && let Some((oldest, p)) = self.pending.pop_oldest()
        {
            self.evicted_requests += 1;
            self.fate(
                oldest.server.0,
                p.process,
                p.dropped.as_deref(),
                (p.direction, Some(p.seen)),
            );
        }
        pending.process = process;
        self.pending
            .insert(Key::new(client, server, transmit.0), pending);
        // Its reply, if it came first: answered now.
        if let Some(at) = self.orphans.iter().position(|o| {
            (o.client, o.server) == (client, server)
                && o.ntp.time().is_some_and(|h| h.origin.0 == transmit.0)
        }) && let Some(o) = self.orphans.remove(at)
        {
            self.replay(&o);
        }
    }

    /// Expire the requests, oldest first, that are older than the timeout at `now`.
    fn expire_before(&mut self, now: Duration) {
        // Replies whose requests did not come in time are unmatched after all.
        while self
            .orphans
            .front()
            .is_some_and(|o| now.saturating_sub(o.ts) > ORPHAN_WAIT)
        {
            if let Some(o) = self.orphans.pop_front() {
                self.replay(&o);
            }
        }
        while let Some((key, p)) = self.pending.pop_expired(now, self.limits.timeout) {
            self.fate(
                key.server.0,
                p.process,
                p.dropped.as_deref(),
                (p.direction, Some(p.seen)),
            );
        }
    }

    /// The index of `process`'s counts with `server`, made if there is room (else `None`:
    /// the server's own counts still hold the exchange).
    fn process(&mut self, process: &Process<'_>, server: IpAddr) -> Option<u32> {
        if let Some((pid, comm, to, index)) = &self.last_process
            && (*pid, comm.as_slice(), *to) == (process.pid, process.comm, server)
        {
            return *index;
        }
        let key = (process.short(), server);
        let index = match self.process_ids.get(&key) {
            Some(&i) => Some(i),
            None if self.processes.len() >= self.limits.processes => None,
            None => {
                let i = self.processes.len() as u32;
                self.processes.push(ProcessExchanges {
                    process: key.0.clone(),
                    server: Some(server),
                    ..ProcessExchanges::default()
                });
                self.process_ids.insert(key, i);
                Some(i)
            }
        };
        self.last_process = Some((process.pid, process.comm.to_vec(), server, index));
        index
    }

    /// A request to `server` went unanswered: dropped in this host for `dropped`, or else
    /// what its `direction` says.
    fn fate(
        &mut self,
        server: IpAddr,
        process: Option<u32>,
        dropped: Option<&str>,
        (direction, seen): (Option<Direction>, Option<Duration>),
    ) {
        if let Some(seen) = seen
            && self.losses.len() < self.limits.losses
        {
            self.losses.push((server, seen));
        }
        let run = self.limits.unanswered_run;
        let s = self.server(server);
        s.unanswered += 1;
        s.unanswered_run += 1;
        let in_a_row = s.unanswered_run;
        match (dropped, direction) {
            (Some(reason), _) => *s.fates.dropped.entry(reason.to_owned()).or_default() += 1,
            (None, Some(Direction::In)) => s.fates.ignored += 1,
            (None, Some(Direction::Out)) => s.fates.no_reply_seen += 1,
            (None, None) => s.fates.unknown += 1,
        }
        if run > 0 && in_a_row == run {
            self.events.push(Event::UnansweredRun {
                server,
                unanswered: run,
            });
        }
        if let Some(p) = process.and_then(|i| self.processes.get_mut(i as usize)) {
            p.unanswered += 1;
        }
    }

    fn response(
        &mut self,
        ts: Duration,
        (server, client): (SocketAddr, SocketAddr),
        ntp: &Ntp,
        direction: Option<Direction>,
        sighting: Sighting,
    ) -> Latency {
        self.reply(ts, (server, client), ntp, direction, sighting, true)
    }

    /// Settle the replies still waiting for their requests: unmatched (the end of a capture).
    pub fn settle(&mut self) {
        while let Some(o) = self.orphans.pop_front() {
            self.replay(&o);
        }
    }

    /// A held reply, back to be paired (its request came) or found unmatched.
    fn replay(&mut self, o: &Orphan) {
        self.reply(
            o.ts,
            (o.server, o.client),
            &o.ntp,
            o.direction,
            o.sighting,
            false,
        );
    }

    /// A reply. At `first_sight`, what it says of its server is taken, and one whose request
    /// has not come is held (see [`Orphan`]); held replies come back here to be paired, or
    /// found unmatched.
    fn reply(
        &mut self,
        ts: Duration,
        (server, client): (SocketAddr, SocketAddr),
        ntp: &Ntp,
        direction: Option<Direction>,
        sighting: Sighting,
        first_sight: bool,
    ) -> Latency {
        let Some(h) = ntp.time() else {
            return Latency::default();
        };
        let key = Key::new(client, server, h.origin.0);
        if first_sight {
            self.reply_said((server, client), ntp, h);
        }
        if first_sight
            && !self.pending.contains_key(&key)
            && !self.answered.contains_key(&key)
            && self.orphans.len() < ORPHANS
        {
            self.orphans.push_back(Orphan {
                ts,
                server,
                client,
                ntp: ntp.clone(),
                direction,
                sighting,
            });
            return Latency::default();
        }
        let request = self.pending.remove(&key);
        if request.is_some() && self.answered.len() < self.limits.pending {
            self.answered.insert(key, ts);
        }
        let Some(Pending {
            seen: sent,
            process,
            direction: asked,
            mono,
            ..
        }) = request
        else {
            self.events
                .push(Event::UnmatchedResponse { server, client });
            return Latency::default();
        };
        if let Some(p) = process.and_then(|i| self.processes.get_mut(i as usize)) {
            p.responses += 1;
        }
        // A server on this host: the request came in, its reply goes out.
        let through = asked == Some(Direction::In) && direction == Some(Direction::Out);
        let latency = of_reply(h, (sent, mono, asked), ts, direction, sighting);
        let step = self.limits.step;
        let s = self.server(server.ip());
        if !latency.is_empty() {
            s.latency.add(&latency);
        }
        s.responses += 1;
        if ntp.kiss_code().is_some() {
            s.fates.kiss_of_death += 1;
        } else {
            s.unanswered_run = 0;
        }
        s.local |= through;
        if ntp.kiss_code().is_some() || h.receive.is_unset() || h.transmit.is_unset() {
            return latency;
        }
        // RFC 5905 §8, with the capture times as T1 (request) and T4 (response).
        let (t1, t4) = (sent.as_nanos() as i128, ts.as_nanos() as i128);
        let (t2, t3) = (ntp_ns(h.receive), ntp_ns(h.transmit));
        let delay = secs((t4 - t1) - (t3 - t2));
        let offset = secs(i128::midpoint(t2 - t1, t3 - t4));
        let before = s.offset;
        s.offset = Some(offset);
        // Seen from a server on this host, (T4 - T1) - (T3 - T2) is noise around zero: no
        // delay, and no exchange for the servers' table or plot. Its offset is its timestamps
        // against this host's clock, kept for `offset_step`.
        if !s.local {
            s.delay = Some(delay);
            s.processing = Some(secs(t3 - t2));
            if s.min_delay.is_none_or(|m| delay <= m) {
                s.min_delay = Some(delay);
                s.best_offset = Some(offset);
            }
            self.completed = Some(Exchange {
                server: server.ip(),
                delay,
                offset,
                root: h.root_delay.seconds() / 2.0 + h.root_dispersion.seconds(),
            });
        }
        if let (Some(from), Some(step)) = (before, step)
            && (offset - from).abs() >= step
        {
            self.events.push(Event::OffsetStep {
                server,
                from,
                to: offset,
            });
        }
        latency
    }

    /// A reply's kiss code, leap indicator and stratum: counted, as events, and (but for a
    /// kiss-o'-death) kept as what the server says of its clock.
    fn reply_said(
        &mut self,
        (server, client): (SocketAddr, SocketAddr),
        ntp: &Ntp,
        h: &crate::ntp::packet::TimeHeader,
    ) {
        let leap = ntp.leap.to_bits();
        if let Some(code) = ntp.kiss_code() {
            *self
                .server(server.ip())
                .kiss_codes
                .entry(crate::ntp::names::kiss_label(&code).to_owned())
                .or_default() += 1;
            let code = String::from_utf8_lossy(&code).into_owned();
            self.events.push(Event::KissOfDeath {
                server,
                client,
                code,
            });
        }
        if leap == 1 || leap == 2 {
            self.events.push(Event::LeapAnnounced { server, leap });
        }
        if (h.stratum == 16 || leap == 3) && ntp.kiss_code().is_none() {
            self.events.push(Event::Unsynchronized {
                server,
                stratum: h.stratum,
                leap,
            });
        }
        // A kiss-o'-death says nothing of the server's clock (stratum 0, the code where the
        // reference ID goes): the last real values stay.
        if ntp.kiss_code().is_none() {
            self.server_said(server, h, leap);
        }
    }

    /// What a server's reply says of its clock: kept, with a `status_change` event when its
    /// leap indicator changed or its stratum went to or from 16.
    fn server_said(&mut self, server: SocketAddr, h: &crate::ntp::packet::TimeHeader, leap: u8) {
        let refid = match h.refid() {
            RefId::Unspecified => None,
            RefId::KissCode(s) | RefId::Clock(s) => Some(s),
            RefId::Address(a) => Some(a.to_string()),
        };
        let s = self.server(server.ip());
        let mut changes = Vec::new();
        if let Some(before) = s.leap
            && before != leap
        {
            changes.push(format!("leap {before} -> {leap}"));
        }
        if let Some(before) = s.stratum
            && (before == 16) != (h.stratum == 16)
        {
            changes.push(format!("stratum {before} -> {}", h.stratum));
        }
        s.stratum = Some(h.stratum);
        s.refid = refid;
        s.refid_raw = Some(u32::from_be_bytes(h.refid));
        s.root_delay = Some(h.root_delay.seconds());
        s.root_dispersion = Some(h.root_dispersion.seconds());
        s.leap = Some(leap);
        for what in changes {
            self.events.push(Event::StatusChange { server, what });
        }
    }

    /// Count requests older than the timeout at `now` as unanswered, and forget them.
    pub fn expire(&mut self, now: Duration) {
        self.expire_before(now);
        let timeout = self.limits.timeout;
        self.answered
            .retain(|_, t| now.saturating_sub(*t) <= timeout);
    }

    /// Every (process, server) pair, busiest first.
    #[must_use]
    pub fn processes(&self) -> Vec<&ProcessExchanges> {
        let mut all: Vec<_> = self.processes.iter().collect();
        all.sort_by(|a, b| {
            (b.requests, &a.process, a.server).cmp(&(a.requests, &b.process, b.server))
        });
        all
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Every server, busiest first.
    #[must_use]
    pub fn servers(&self) -> Vec<&ServerHealth> {
        let mut all: Vec<_> = self.servers.values().collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.requests + s.responses));
        all
    }

    /// When unanswered requests were sent, by server (with `limits.losses`).
    #[must_use]
    pub fn losses(&self) -> &[(IpAddr, Duration)] {
        &self.losses
    }

    /// Requests waiting for a response.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::{Leap, NtpShort, packet::TimeHeader};

    const NTP_UNIX: u64 = 2_208_988_800;

    fn ts_at(unix_ns: u64) -> NtpTimestamp {
        let secs = unix_ns / 1_000_000_000 + NTP_UNIX;
        let frac = ((unix_ns % 1_000_000_000) << 32) / 1_000_000_000;
        NtpTimestamp((secs << 32) | frac)
    }

    fn packet(
        mode: Mode,
        stratum: u8,
        origin: NtpTimestamp,
        receive: NtpTimestamp,
        transmit: NtpTimestamp,
    ) -> Ntp {
        Ntp {
            length: 48,
            leap: Leap::NoWarning,
            version: 4,
            mode,
            body: Body::Time(Box::new(TimeHeader {
                stratum,
                poll: 6,
                precision: -20,
                root_delay: NtpShort(0),
                root_dispersion: NtpShort(0),
                refid: [192, 0, 2, 1],
                reference: NtpTimestamp(0),
                origin,
                receive,
                transmit,
                extensions: Vec::new(),
                mac: None,
            })),
            error: None,
        }
    }

    #[test]
    fn delay_and_offset_from_capture_times() {
        let client: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
        let mut t = Tracker::new(Limits::default());
        let base = 1_700_000_000_000_000_000u64;
        // The client's transmit timestamp is random (chrony); the pairing key only.
        let xmt = NtpTimestamp(0x1234_5678_9abc_def0);
        t.observe(
            Duration::from_nanos(base),
            (client, server),
            &packet(Mode::Client, 0, NtpTimestamp(0), NtpTimestamp(0), xmt),
            None,
            None,
        );
        // The server's clock is 5 ms ahead; the path is 10 ms each way; it takes 1 ms.
        let t2 = ts_at(base + 10_000_000 + 5_000_000);
        let t3 = ts_at(base + 11_000_000 + 5_000_000);
        let reply = packet(Mode::Server, 2, xmt, t2, t3);
        t.observe(
            Duration::from_nanos(base + 21_000_000),
            (server, client),
            &reply,
            None,
            None,
        );
        let s = t.servers()[0];
        assert_eq!((s.requests, s.responses, s.unanswered), (1, 1, 0));
        assert!((s.delay.unwrap() - 0.020).abs() < 1e-6, "{s:?}");
        assert!((s.offset.unwrap() - 0.005).abs() < 1e-6, "{s:?}");
        assert!((s.processing.unwrap() - 0.001).abs() < 1e-6, "{s:?}");
        assert_eq!(s.stratum, Some(2));
        assert!(t.take_events().is_empty());
    }

    #[test]
    fn unanswered_after_timeout_and_bounded_memory() {
        let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
        let mut t = Tracker::new(Limits {
            pending: 4,
            servers: 2,
            timeout: Duration::from_secs(8),
            processes: 8,
            ..Limits::default()
        });
        for i in 0..10u64 {
            let client = SocketAddr::new("10.0.0.2".parse().unwrap(), 40000 + i as u16);
            t.observe(
                Duration::from_secs(i),
                (client, server),
                &packet(
                    Mode::Client,
                    0,
                    NtpTimestamp(0),
                    NtpTimestamp(0),
                    NtpTimestamp(i + 1),
                ),
                None,
                None,
            );
        }
        assert!(t.pending() <= 4);
        assert_eq!(t.servers()[0].unanswered + t.pending() as u64, 10);
        t.expire(Duration::from_secs(100));
        assert_eq!(t.servers()[0].unanswered, 10);
        for n in 0..5u8 {
            let other = SocketAddr::new(IpAddr::from([10, 1, 0, n]), 123);
            t.observe(
                Duration::from_secs(200),
                ("10.0.0.2:1".parse().unwrap(), other),
                &packet(
                    Mode::Client,
                    0,
                    NtpTimestamp(0),
                    NtpTimestamp(0),
                    NtpTimestamp(9),
                ),
                None,
                None,
            );
        }
        assert!(t.servers().len() <= 2 && t.evicted_servers >= 4);
    }

    #[test]
    fn each_process_counts_its_own_exchanges_with_each_server() {
        let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
        let owner = |pid, comm: &'static [u8]| Process {
            pid,
            tid: pid,
            uid: 0,
            comm,
            cgroup_id: 1,
            cgroup: None,
            container: None,
            names: None,
            netns: None,
        };
        let (chronyd, probe) = (owner(10, b"chronyd"), owner(20, b"probe"));
        let mut t = Tracker::new(Limits::default());
        let request = |n| {
            packet(
                Mode::Client,
                0,
                NtpTimestamp(0),
                NtpTimestamp(0),
                NtpTimestamp(n),
            )
        };
        let reply = |n| packet(Mode::Server, 2, NtpTimestamp(n), ts_at(1), ts_at(2));
        for n in 1..=3 {
            let client = SocketAddr::new("10.0.0.2".parse().unwrap(), 40000 + n as u16);
            let who = if n == 3 { &probe } else { &chronyd };
            t.observe(
                Duration::from_secs(n),
                (client, server),
                &request(n),
                None,
                Some(who),
            );
            if n != 3 {
                // The reply's own owner (the same socket) does not count twice.
                t.observe(
                    Duration::from_secs(n),
                    (server, client),
                    &reply(n),
                    None,
                    Some(who),
                );
            }
        }
        t.expire(Duration::from_secs(100));
        let rows: Vec<_> = t
            .processes()
            .iter()
            .map(|p| (p.process.clone(), p.requests, p.responses, p.unanswered))
            .collect();
        assert_eq!(
            rows,
            [
                ("chronyd[10]".to_owned(), 2, 2, 0),
                ("probe[20]".to_owned(), 1, 0, 1)
            ]
        );
    }

    #[test]
    fn events() {
        let client: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
        let mut t = Tracker::new(Limits::default());
        let mut kod = packet(
            Mode::Server,
            0,
            NtpTimestamp(7),
            NtpTimestamp(0),
            NtpTimestamp(0),
        );
        if let Body::Time(h) = &mut kod.body {
            h.refid = *b"RATE";
        }
        t.observe(Duration::ZERO, (server, client), &kod, None, None);
        let events = t.take_events();
        assert!(
            events.contains(&Event::KissOfDeath {
                server,
                client,
                code: "RATE".into()
            }),
            "{events:?}"
        );
        // Unmatched once its request could no longer come (a reply can be read first).
        t.settle();
        let events = t.take_events();
        assert!(
            events.contains(&Event::UnmatchedResponse { server, client }),
            "{events:?}"
        );
        assert_eq!(t.servers()[0].kiss_codes["RATE"], 1);
    }

    #[test]
    fn a_kiss_of_death_leaves_the_servers_clock_values_alone() {
        let client: SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:123".parse().unwrap();
        let mut t = Tracker::new(Limits::default());
        let reply = packet(Mode::Server, 2, NtpTimestamp(1), ts_at(1), ts_at(2));
        t.observe(Duration::from_secs(1), (server, client), &reply, None, None);
        let mut kiss = packet(Mode::Server, 0, NtpTimestamp(2), ts_at(3), ts_at(4));
        if let Body::Time(h) = &mut kiss.body {
            h.refid = *b"RATE";
        }
        t.observe(Duration::from_secs(2), (server, client), &kiss, None, None);
        let s = t.servers()[0];
        assert_eq!(s.stratum, Some(2));
        assert_eq!(s.refid.as_deref(), Some("192.0.2.1"));
        assert_eq!(s.kiss_codes.get("RATE"), Some(&1));
    }

    #[test]
    fn on_loopback_a_reply_seen_coming_in_is_served_traffic() {
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "127.0.0.1:123".parse().unwrap();
        let (t, now) = (
            ts_at(1_700_000_000_000_000_000),
            Duration::from_secs(1_700_000_000),
        );
        for loopback in [false, true] {
            let mut tracker = Tracker::new(Limits::default());
            let seen = |loopback| Sighting {
                loopback,
                ..Sighting::default()
            };
            let request = packet(Mode::Client, 0, NtpTimestamp(0), NtpTimestamp(0), t);
            let reply = packet(Mode::Server, 2, t, t, t);
            // Only ingress is attached on loopback: both show as coming in.
            for (src, dst, ntp) in [(client, server, &request), (server, client, &reply)] {
                tracker.observe_seen(&Observation {
                    ts: now,
                    src,
                    dst,
                    ntp,
                    direction: Some(Direction::In),
                    process: None,
                    sighting: seen(loopback),
                    wire_len: 90,
                    hop_limit: Some(64),
                });
            }
            let r = tracker.clients().report(None);
            assert_eq!(
                (r.requests, r.replies),
                (1, u64::from(loopback)),
                "loopback {loopback}"
            );
        }
    }

    /// Two CPUs' rings can hand a reply over before its request: it is paired all the same;
    /// a reply whose request never comes is unmatched once the wait is over.
    #[test]
    fn a_reply_read_before_its_request_is_paired() {
        let (client, server): (SocketAddr, SocketAddr) = (
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:123".parse().unwrap(),
        );
        let base = 1_700_000_000_000_000_000u64;
        let at = |ns: u64| Duration::from_nanos(base + ns);
        let mut t = Tracker::new(Limits::default());
        let t1 = ts_at(base);
        let reply = packet(
            Mode::Server,
            2,
            t1,
            ts_at(base + 5_000_000),
            ts_at(base + 5_000_100),
        );
        t.observe(
            at(10_000_000),
            (server, client),
            &reply,
            Some(Direction::In),
            None,
        );
        t.observe(
            at(0),
            (client, server),
            &packet(Mode::Client, 0, NtpTimestamp(0), NtpTimestamp(0), t1),
            Some(Direction::Out),
            None,
        );
        let s = t.servers()[0];
        assert_eq!((s.requests, s.responses, s.unanswered), (1, 1, 0));
        assert!(
            s.delay.is_some_and(|d| (d - 0.009_999_9).abs() < 1e-6),
            "{s:?}"
        );
        let unmatched = |events: &[Event]| {
            events
                .iter()
                .filter(|e| matches!(e, Event::UnmatchedResponse { .. }))
                .count()
        };
        assert_eq!(unmatched(&t.take_events()), 0);
        // No request at all: held, then unmatched when the wait is over (or at the end).
        let stray = packet(Mode::Server, 2, ts_at(base + 7), t1, t1);
        t.observe(
            at(20_000_000),
            (server, client),
            &stray,
            Some(Direction::In),
            None,
        );
        assert_eq!(unmatched(&t.take_events()), 0);
        t.expire(at(2_000_000_000));
        assert_eq!(unmatched(&t.take_events()), 1);
        t.observe(
            at(3_000_000_000),
            (server, client),
            &stray,
            Some(Direction::In),
            None,
        );
        t.settle();
        assert_eq!(unmatched(&t.take_events()), 1);
    }

    #[test]
    fn a_server_on_this_host_has_no_delay_the_one_it_asks_has() {
        let (client, server): (SocketAddr, SocketAddr) = (
            "10.0.0.1:40000".parse().unwrap(),
            "10.0.0.2:123".parse().unwrap(),
        );
        let base = 1_700_000_000_000_000_000u64;
        // Seen on the server: the request comes in at T2's moment, the reply leaves at T3's
        // (1 µs later); T1 is the client's, 1 µs before. (T4 - T1) - (T3 - T2) would be
        // about +1 µs or, with the clocks' skew, negative: nonsense either way.
        // Seen on the client: out at T1, in at T4, 10 ms later; a real delay.
        for (asked, answered, local) in [
            (Direction::In, Direction::Out, true),
            (Direction::Out, Direction::In, false),
        ] {
            let mut t = Tracker::new(Limits::default());
            let t1 = ts_at(base);
            t.observe(
                Duration::from_nanos(base + 1_000),
                (client, server),
                &packet(Mode::Client, 0, NtpTimestamp(0), NtpTimestamp(0), t1),
                Some(asked),
                None,
            );
            let reply = packet(
                Mode::Server,
                2,
                t1,
                ts_at(base + 1_000),
                ts_at(base + 2_000),
            );
            let reply_at = if local { 1_500 } else { 10_000_000 };
            t.observe(
                Duration::from_nanos(base + reply_at),
                (server, client),
                &reply,
                Some(answered),
                None,
            );
            let s = t.servers()[0];
            assert_eq!((s.local, s.requests, s.responses), (local, 1, 1));
            assert_eq!(s.stratum, Some(2), "what it says of its clock is kept");
            if local {
                assert_eq!((s.delay, s.min_delay, s.best_offset), (None, None, None));
                assert!(
                    s.offset.is_some(),
                    "its timestamps against this host's clock"
                );
                assert_eq!(t.clients().report(None).replies, 1, "served traffic");
            } else {
                assert!(
                    s.delay.is_some_and(|d| (d - 0.009_999).abs() < 1e-6),
                    "{s:?}"
                );
                assert_eq!(t.clients().report(None).requests, 0);
            }
        }
    }

    #[test]
    fn each_unanswered_request_has_its_fate() {
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.2:123".parse().unwrap();
        let request = |n: u64| packet(Mode::Client, 0, NtpTimestamp(0), NtpTimestamp(0), ts_at(n));
        let reply = |n: u64| packet(Mode::Server, 2, ts_at(n), ts_at(n + 1), ts_at(n + 2));
        let at = Duration::from_secs;
        let mut t = Tracker::new(Limits::default());
        // 1: came in, never answered. 2: came in, dropped by a firewall. 3: went out, no reply.
        t.observe(
            at(1),
            (client, server),
            &request(1),
            Some(Direction::In),
            None,
        );
        t.observe(
            at(1),
            (client, server),
            &request(2),
            Some(Direction::In),
            None,
        );
        t.dropped((client, server), &request(2), "NETFILTER_DROP");
        t.observe(
            at(1),
            (client, server),
            &request(3),
            Some(Direction::Out),
            None,
        );
        // 4: answered as ntptap saw it, then the reply was dropped on its way.
        t.observe(
            at(1),
            (client, server),
            &request(4),
            Some(Direction::In),
            None,
        );
        t.observe(
            at(1),
            (server, client),
            &reply(4),
            Some(Direction::Out),
            None,
        );
        t.dropped((server, client), &reply(4), "QDISC_DROP");
        // 5: dropped on its way out before ntptap's hook saw it.
        t.dropped((client, server), &request(5), "NETFILTER_DROP");
        // 6: answered with a kiss-o'-death.
        t.observe(
            at(1),
            (client, server),
            &request(6),
            Some(Direction::In),
            None,
        );
        let mut kiss = reply(6);
        if let Body::Time(h) = &mut kiss.body {
            h.stratum = 0;
            h.refid = *b"RATE";
        }
        t.observe(at(1), (server, client), &kiss, Some(Direction::Out), None);
        t.expire(at(100));
        let s = t.servers()[0];
        assert_eq!((s.requests, s.responses, s.unanswered), (6, 1, 5));
        assert_eq!(s.fates.ignored, 1);
        assert_eq!(s.fates.no_reply_seen, 1);
        assert_eq!(s.fates.kiss_of_death, 1);
        assert_eq!(s.fates.unknown, 0);
        assert_eq!(s.fates.dropped.get("NETFILTER_DROP"), Some(&2));
        assert_eq!(s.fates.dropped.get("QDISC_DROP"), Some(&1));
        assert_eq!(
            s.unanswered,
            s.fates.dropped_total() + s.fates.ignored + s.fates.no_reply_seen + s.fates.unknown
        );
    }

    /// What a pcapng file alone pairs ([`super::super::residence::Residence`]) gives each
    /// packet the latency the whole tracker gives it: requests in and out, local and remote
    /// servers, replies late (past the timeout), twice, to requests seen again or evicted, and
    /// replies to no request, in a long pseudo-random run within small bounds.
    #[test]
    fn residence_alone_gives_every_packet_the_latency_the_tracker_gives() {
        use super::super::residence::Residence;
        let limits = Limits {
            pending: 6,
            timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let mut tracker = Tracker::new(limits);
        let mut residence = Residence::new(&limits);
        let local: SocketAddr = "10.0.0.2:123".parse().unwrap();
        let remote: SocketAddr = "192.0.2.9:123".parse().unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let base = 1_700_000_000_000_000_000u64;
        let mut now = base;
        // Requests sent: (client, server, transmit, direction).
        let mut sent: Vec<(SocketAddr, SocketAddr, NtpTimestamp, Direction)> = Vec::new();
        let (mut with_latency, mut replies) = (0, 0);
        let mut last_asked = false;
        for i in 0..20_000u64 {
            now += next(250_000_000);
            let ts = Duration::from_nanos(now);
            let (src, dst, ntp, direction) = if sent.is_empty() || next(3) == 0 {
                let client: SocketAddr = format!("10.0.0.{}:{}", 10 + next(3), 40_000 + next(2))
                    .parse()
                    .unwrap();
                let (server, direction) = if next(2) == 0 {
                    (local, Direction::In)
                } else {
                    (remote, Direction::Out)
                };
                // Now and then the same request seen again at once (its key waits anew). A
                // request seen again after a reply to it was read is where the two differ
                // (see residence.rs): not made here.
                let xmt = match sent.last() {
                    Some(&(c, s, x, _)) if last_asked && (c, s) == (client, server) => x,
                    _ => NtpTimestamp(1 + i),
                };
                last_asked = true;
                sent.push((client, server, xmt, direction));
                let request = packet(Mode::Client, 0, NtpTimestamp(0), NtpTimestamp(0), xmt);
                (client, server, request, direction)
            } else {
                // Mostly one of the last few requests; now and then one long gone.
                let back = if next(8) == 0 {
                    sent.len()
                } else {
                    sent.len().min(6)
                };
                let (client, server, xmt, asked) =
                    sent[sent.len() - 1 - next(back as u64) as usize];
                // Now and then a reply to no request (an origin no request had).
                let origin = if next(10) == 0 {
                    NtpTimestamp(1000 + i)
                } else {
                    xmt
                };
                let t2 = ts_at(now - 1_000_000);
                let t3 = ts_at(now - next(900_000));
                let reply = packet(Mode::Server, 2, origin, t2, t3);
                let direction = if asked == Direction::In {
                    Direction::Out
                } else {
                    Direction::In
                };
                replies += 1;
                last_asked = false;
                (server, client, reply, direction)
            };
            let o = Observation {
                ts,
                src,
                dst,
                ntp: &ntp,
                direction: Some(direction),
                process: None,
                sighting: Sighting {
                    mono_ns: (next(4) != 0).then_some(now - base),
                    ..Sighting::default()
                },
                wire_len: 90,
                hop_limit: Some(64),
            };
            let whole = tracker.observe_seen(&o).latency;
            let alone = residence.observe(&o);
            assert_eq!(alone, whole, "packet {i}");
            with_latency += u32::from(!whole.is_empty());
            if i % 100 == 0 {
                tracker.expire(ts);
                residence.expire(ts);
            }
        }
        // The run reaches every case: replies with a residence and replies without.
        assert!(
            with_latency > 1_000 && replies - with_latency > 1_000,
            "{with_latency} of {replies}"
        );
        assert!(residence.pending() <= limits.pending);
    }
}
