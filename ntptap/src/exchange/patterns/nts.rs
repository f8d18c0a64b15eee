//! `nts_downgrade`: NTS (RFC 8915) given up between a client and a server. A client that sent a
//! server NTS-protected requests (an NTS authenticator, or a unique identifier with a cookie)
//! and then asks it without them; a server that answers an NTS request without its
//! authenticator (and not with a kiss-o'-death); an `NTSN` kiss (the server could not use the
//! client's cookie). One event per kind and (client, server) pair: a pair is remembered from
//! its first NTS request or NAK, the oldest let go when the table is full.

use std::{net::IpAddr, time::Duration};

use super::{Observation, Role, Table, busiest};
use crate::exchange::Event;

const UNIQUE_IDENTIFIER: u16 = 0x0104;
const COOKIE: u16 = 0x0204;
const AUTHENTICATOR: u16 = 0x0404;

/// What a pair has shown.
#[derive(Debug, Default)]
pub struct Pair {
    last_seen: Duration,
    /// The last request was NTS-protected.
    protected: bool,
    /// Events told: request without NTS, reply without authenticator, NAK.
    said: [bool; 3],
}

/// See the module's text.
pub struct Nts {
    pairs: Table<(IpAddr, IpAddr), Pair>,
}

impl Nts {
    pub fn new(pairs: usize) -> Self {
        Self {
            pairs: Table::new(pairs),
        }
    }

    pub fn bound(pairs: usize) -> usize {
        Table::<(IpAddr, IpAddr), Pair>::bound(pairs)
    }

    fn pair(&mut self, key: (IpAddr, IpAddr), ts: Duration) -> &mut Pair {
        let p = self
            .pairs
            .entry(key, Pair::default, |p| u64::MAX - p.last_seen.as_secs());
        p.last_seen = p.last_seen.max(ts);
        p
    }

    pub fn packet(&mut self, p: &Observation<'_, '_>, role: Role, events: &mut Vec<Event>) {
        let Some(h) = p.ntp.time() else {
            return;
        };
        let has = |t: u16| h.extensions.iter().any(|e| e.field_type == t);
        let (client, server, what) = match role {
            Role::Request(3, _) => {
                let (client, server) = (p.src.ip(), p.dst.ip());
                if has(AUTHENTICATOR) || (has(UNIQUE_IDENTIFIER) && has(COOKIE)) {
                    self.pair((client, server), p.ts).protected = true;
                    return;
                }
                // No NTS seen yet (most hosts): nothing to look up.
                if self.pairs.is_empty() {
                    return;
                }
                let Some(pair) = self.pairs.get_mut(&(client, server)) else {
                    return;
                };
                pair.protected = false;
                (client, server, 0)
            }
            Role::Response => {
                let (client, server) = (p.dst.ip(), p.src.ip());
                if p.ntp.kiss_code() == Some(*b"NTSN") {
                    self.pair((client, server), p.ts);
                    (client, server, 2)
                } else if !self.pairs.is_empty()
                    && p.ntp.kiss_code().is_none()
                    && !has(AUTHENTICATOR)
                    && self
                        .pairs
                        .get(&(client, server))
                        .is_some_and(|pair| pair.protected)
                {
                    (client, server, 1)
                } else {
                    return;
                }
            }
            Role::Request(..) => return,
        };
        let pair = self.pair((client, server), p.ts);
        if std::mem::replace(&mut pair.said[what], true) {
            return;
        }
        events.push(Event::NtsDowngrade {
            client,
            server,
            what: [
                "request_without_nts",
                "reply_without_authenticator",
                "nts_nak",
            ][what],
        });
    }

    /// Pairs that were told about.
    pub fn suspects(&self) -> Vec<(IpAddr, IpAddr)> {
        let v = self
            .pairs
            .iter()
            .filter(|(_, p)| p.said.iter().any(|s| *s))
            .map(|(k, p)| (*k, p.last_seen))
            .collect();
        busiest(v, |s| s.1).into_iter().map(|(k, _)| k).collect()
    }
}
