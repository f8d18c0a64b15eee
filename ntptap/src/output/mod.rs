//! Outputs: where frames go once captured or read.
//!
//! A source hands each frame to one [`Pipeline`], which decodes it at most once
//! ([`Decoded`]), feeds NTP packets to the one exchange tracker, and fans the result out to a
//! list of [`Sink`]s. [`build`] makes the pipeline an [`OutputPlan`](crate::plan::OutputPlan)
//! asks for.
pub mod build;
pub mod client_metrics;
pub mod create;
pub mod decoded;
pub mod event_log;
pub mod file;
pub mod flight;
pub mod health;
pub mod http;
pub mod json;
pub mod metrics;
pub mod pcap;
pub mod pcapng;
pub mod pipeline;
#[cfg(feature = "plot")]
pub mod plot;
pub mod rotate;
pub mod sink;
pub mod text;

#[cfg(test)]
pub(crate) use self::sink::SinkExt;
pub use self::{
    decoded::{Decoded, NtpInFrame, PortSet},
    pipeline::Pipeline,
    sink::{CloseStats, Control, Filter, Sink},
};
