//! What goes to a terminal or a log: a line per frame in tcpdump's format ([`text`]: its link,
//! IP and transport words in `lines`, NTP's in `ntp_text`, the bytes in `dump`), JSON
//! ([`json`]), the servers' table ([`health`]) and the events in the log ([`event_log`]).
mod dump;
pub mod event_log;
pub mod health;
pub mod json;
mod lines;
mod ntp_text;
pub mod object;
pub mod text;
