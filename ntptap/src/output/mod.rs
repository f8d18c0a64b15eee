//! Outputs: where frames go once captured or read, in rooms: [`files`] (pcap, pcapng, their
//! creation and rotation), [`print`] (text, JSON, the servers' table, the events' log),
//! [`metrics`] (the Prometheus metrics and their HTTP endpoint), [`flight`] (the flight
//! recorder), [`plot`]; [`sink`] is what each of them is, [`decoded`] what each is given.
//!
//! A source hands each frame to one [`Pipeline`], which decodes it at most once
//! ([`Decoded`]), feeds NTP packets to the one exchange tracker, and fans the result out to a
//! list of [`Sink`]s. [`build`] makes the pipeline an [`OutputPlan`](crate::plan::OutputPlan)
//! asks for.
pub mod build;
pub mod decoded;
pub mod files;
pub mod flight;
pub mod metrics;
pub mod pipeline;
#[cfg(feature = "plot")]
pub mod plot;
pub mod print;
pub mod sink;
pub mod stdout;

// The rooms' files by their short names, as the rest of the crate names them.
#[cfg(test)]
pub(crate) use self::sink::SinkExt;
pub use self::{
    decoded::{Decoded, NtpInFrame, PortSet},
    files::{create, file, pcap, pcapng, rotate},
    metrics::{client_metrics, http},
    pipeline::Pipeline,
    print::{event_log, health, json, text},
    sink::{CloseStats, Control, Filter, Sink},
};
