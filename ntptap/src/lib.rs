//! ntptap: watch NTP traffic from inside the Linux kernel.
//!
//! The data path, one way: kernel programs (`ntptap-ebpf`) → ring records (`ntptap-common`)
//! → [`capture`] (drain) → [`frame::Frame`] → [`output`] sinks. Offline, [`input`] reads
//! pcap/pcapng into the same frames. [`ntp`] decodes NTP and knows nothing of BPF; [`net`]
//! dissects the link, network and transport layers.
#![deny(missing_docs)]

pub mod capture;
pub mod cli;
pub mod exchange;
pub mod frame;
pub mod fuzzing;
pub mod input;
pub mod net;
pub mod ntp;
pub mod output;
