//! Helpers for ntptap's kernel tests: network namespaces and veth pairs that delete
//! themselves, processes that are killed by PID when their guard drops, the NTP peers, and
//! pcap reading.
//!
//! Test traffic stays inside namespaces these helpers create; nothing here touches the root
//! namespace's interfaces.
#![allow(missing_docs, reason = "test helpers")]
#![expect(
    clippy::missing_panics_doc,
    reason = "test helpers panic by design, with a message"
)]
#![expect(
    clippy::must_use_candidate,
    reason = "helpers that run a command return its output for the callers that want it"
)]

pub mod load;
pub mod net;
pub mod peers;
pub mod proc;
pub mod readback;
pub mod service;
pub mod spoof;

pub use self::{
    net::{Lab, Netns, NftCounter, PacketTap, http},
    peers::{
        chrony_client, chrony_server, chrony_server_with, ntpdig, ntpsec_server, numbered_requests,
        paced_requests,
    },
    proc::{LISTENING, Proc, ntptap_bin, require_root, run, tools_root},
    readback::{ExitCounts, Record, exit_counts, metric, read_drops, read_pcap},
    service::{only_caps, unit_syscalls, unit_values},
};
