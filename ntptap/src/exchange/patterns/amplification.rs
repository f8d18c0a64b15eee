//! `amplification`: per client of a server on this host, the bytes and packets in and out over
//! a window; an event when the server sends a client [`PatternLimits::amplification`] times
//! what it received from it, and at least [`LEAST_BYTES`].
//!
//! [`PatternLimits::amplification`]: super::PatternLimits::amplification

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use super::{Observation, Table, WINDOW, busiest};
use crate::exchange::Event;

/// Bytes a client must be sent within a window before its ratio counts: a monitoring host's
/// `ntpq -c rv` (a 60-byte query, a 600-byte answer) every second stays below it, a monlist
/// reflection (100 answers of 482 bytes to one 234-byte query) passes it with its first query.
pub const LEAST_BYTES: u64 = 32 * 1024;

/// One client's window.
#[derive(Debug, Default)]
pub struct Window {
    start: Duration,
    server: Option<IpAddr>,
    bytes_in: u64,
    bytes_out: u64,
    packets_in: u32,
    packets_out: u32,
    /// Requests by mode (1, 3, 6, 7), with the last opcode or request code of 6 and 7.
    modes: [u32; 8],
    codes: [u8; 8],
    said: bool,
}

impl Window {
    /// Start over when the window is past.
    fn at(&mut self, ts: Duration) -> &mut Self {
        if ts.saturating_sub(self.start) >= WINDOW {
            *self = Window {
                start: ts,
                ..Window::default()
            };
        }
        self
    }

    fn weight(&self, now: Duration) -> u64 {
        if now.saturating_sub(self.start) >= WINDOW {
            0
        } else {
            self.bytes_in + self.bytes_out
        }
    }

    fn ratio(&self) -> f64 {
        self.bytes_out as f64 / self.bytes_in.max(1) as f64
    }

    fn requests(&self) -> BTreeMap<String, u64> {
        let mut kinds = BTreeMap::new();
        for mode in [1u8, 3, 6, 7] {
            let n = self.modes[usize::from(mode)];
            if n == 0 {
                continue;
            }
            let code = self.codes[usize::from(mode)];
            let name = match mode {
                6 => format!(
                    "mode 6 {}",
                    crate::ntp::names::control_opcode_name(code)
                        .map_or_else(|| format!("opcode {code}"), str::to_owned)
                ),
                7 => format!(
                    "mode 7 {}",
                    crate::ntp::names::private_request_name(code)
                        .map_or_else(|| format!("request {code}"), str::to_owned)
                ),
                _ => format!("mode {mode}"),
            };
            kinds.insert(name, u64::from(n));
        }
        kinds
    }
}

/// See the module's text.
pub struct Amplification {
    clients: Table<IpAddr, Window>,
}

impl Amplification {
    pub fn new(clients: usize) -> Self {
        Self {
            clients: Table::new(clients),
        }
    }

    pub fn bound(clients: usize) -> usize {
        Table::<IpAddr, Window>::bound(clients)
    }

    fn window(&mut self, client: IpAddr, ts: Duration) -> &mut Window {
        self.clients
            .entry(client, Window::default, |w| w.weight(ts))
            .at(ts)
    }

    /// A request from a client came in.
    pub fn request(&mut self, p: &Observation<'_, '_>, (mode, code): (u8, Option<u8>), ratio: f64) {
        if ratio <= 0.0 {
            return;
        }
        let w = self.window(p.src.ip(), p.ts);
        w.bytes_in += u64::from(p.wire_len);
        w.packets_in += 1;
        w.server = Some(p.dst.ip());
        w.modes[usize::from(mode & 7)] += 1;
        if let Some(code) = code {
            w.codes[usize::from(mode & 7)] = code;
        }
    }

    /// A reply to a client went out.
    pub fn reply(&mut self, p: &Observation<'_, '_>, ratio: f64, events: &mut Vec<Event>) {
        if ratio <= 0.0 {
            return;
        }
        let client = p.dst.ip();
        let w = self.window(client, p.ts);
        w.bytes_out += u64::from(p.wire_len);
        w.packets_out += 1;
        if w.said || w.bytes_out < LEAST_BYTES || w.ratio() < ratio {
            return;
        }
        w.said = true;
        events.push(Event::Amplification {
            client,
            server: w.server.unwrap_or(p.src.ip()),
            ratio: (w.ratio() * 10.0).round() / 10.0,
            bytes_in: w.bytes_in,
            bytes_out: w.bytes_out,
            packets_in: u64::from(w.packets_in),
            packets_out: u64::from(w.packets_out),
            requests: w.requests(),
            seconds: p.ts.saturating_sub(w.start).as_secs_f64(),
        });
    }

    /// Clients past the ratio in their current window.
    pub fn suspects(&self, now: Duration, ratio: f64) -> Vec<(IpAddr, f64, u64)> {
        let v = self
            .clients
            .iter()
            .filter(|(_, w)| {
                ratio > 0.0 && w.weight(now) > 0 && w.bytes_out >= LEAST_BYTES && w.ratio() >= ratio
            })
            .map(|(c, w)| (*c, (w.ratio() * 10.0).round() / 10.0, w.bytes_out))
            .collect();
        busiest(v, |s| s.2)
    }
}
