//! What goes to a terminal or a log: a line per frame in tcpdump's format ([`text`]), JSON
//! ([`json`]), the servers' table ([`health`]) and the events in the log ([`event_log`]).
pub mod event_log;
pub mod health;
pub mod json;
pub mod text;
