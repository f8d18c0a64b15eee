//! Exchange events in the log, aggregated: the first of a kind about a subject (a server's or
//! client's address) in an interval is logged as it comes; the rest of that interval are
//! counted and said in one line when it ends. A flood of forged packets makes at most two
//! lines per kind and subject per interval, for at most [`SUBJECTS`] subjects; events about
//! others are counted in one more line.

use std::{collections::BTreeMap, time::Duration};

use crate::exchange::Event;

/// How long an interval is.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Kinds and subjects followed in one interval.
pub const SUBJECTS: usize = 256;

/// See the module's text.
#[derive(Default)]
pub struct EventLog {
    /// (kind, subject) -> events after the first, this interval.
    more: BTreeMap<(String, String), u64>,
    /// Events about kinds and subjects past [`SUBJECTS`], this interval.
    unfollowed: u64,
    started: Option<Duration>,
}

impl EventLog {
    /// Log `event` (seen at `now`), or count it.
    pub fn event(&mut self, event: &Event, now: Duration) {
        self.tick(now);
        let value = serde_json::to_value(event).unwrap_or_default();
        let kind = event.name().to_owned();
        let subject = event.subject().to_string();
        let key = (kind, subject);
        if let Some(n) = self.more.get_mut(&key) {
            *n += 1;
        } else if self.more.len() < SUBJECTS {
            self.more.insert(key, 0);
            tracing::warn!(target: "ntptap::event", "{value}");
        } else {
            self.unfollowed += 1;
        }
    }

    /// End the interval if it is over: say what was counted.
    pub fn tick(&mut self, now: Duration) {
        let started = *self.started.get_or_insert(now);
        if now.saturating_sub(started) >= INTERVAL {
            self.flush();
            self.started = Some(now);
        }
    }

    /// Say what was counted and start over.
    pub fn flush(&mut self) {
        for ((kind, subject), n) in std::mem::take(&mut self.more) {
            if n > 0 {
                tracing::warn!(
                    target: "ntptap::event",
                    "{n} more {kind} events about {subject} in the last {} s",
                    INTERVAL.as_secs()
                );
            }
        }
        if self.unfollowed > 0 {
            tracing::warn!(
                target: "ntptap::event",
                "{} more events about other servers and clients in the last {} s (past {SUBJECTS} followed)",
                self.unfollowed,
                INTERVAL.as_secs()
            );
            self.unfollowed = 0;
        }
    }

    /// Lines this interval would still write (for tests).
    #[cfg(test)]
    fn followed(&self) -> usize {
        self.more.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_per_kind_and_subject_per_interval() {
        let mut log = EventLog::default();
        let server: std::net::SocketAddr = "192.0.2.1:123".parse().unwrap();
        for n in 0..195_000u32 {
            let client = std::net::SocketAddr::from((
                [198, 51, 100, (n % 250) as u8],
                1024 + (n % 60000) as u16,
            ));
            log.event(
                &Event::KissOfDeath {
                    server,
                    client,
                    code: "RATE".into(),
                },
                Duration::from_secs(5),
            );
        }
        assert_eq!(log.followed(), 1);
        assert_eq!(
            log.more[&("kiss_of_death".into(), "192.0.2.1".into())],
            194_999
        );
        // Spoofed subjects past the bound are counted together.
        for n in 0..1000u32 {
            let server = std::net::SocketAddr::from((n.to_be_bytes(), 123));
            log.event(
                &Event::UnmatchedResponse {
                    server,
                    client: server,
                },
                Duration::from_secs(6),
            );
        }
        assert_eq!(log.followed(), SUBJECTS);
        assert_eq!(log.unfollowed, 1000 - (SUBJECTS as u64 - 1));
        log.tick(Duration::from_secs(16));
        assert_eq!((log.followed(), log.unfollowed), (0, 0));
    }
}
