//! ntptap: watch NTP traffic from inside the Linux kernel.
//!
//! One way through: [`cli`] (the flags) → [`plan`] (what to do) → [`capture`] (kernel
//! programs from `ntptap-ebpf`, ring records from `ntptap-common`, drained) → [`frame::Frame`]
//! → [`output`] (one pipeline: decode once, track exchanges once, fan out to the sinks).
//! Offline, [`input`] reads pcap/pcapng into the same frames. [`ntp`] decodes NTP and knows
//! nothing of BPF; [`net`] dissects the link, network and transport layers; [`exchange`] pairs
//! requests with responses; [`counts`] holds the kernel's counters.
#![deny(missing_docs)]

pub mod capture;
pub mod cli;
pub mod containers;
pub mod counts;
pub mod escape;
pub mod exchange;
pub mod filter;
pub mod frame;
pub mod fuzzing;
pub mod input;
pub mod net;
pub mod ntp;
pub mod output;
pub mod plan;
pub mod process;
