//! Capture files: how a file is created ([`create`]), written ([`file`]: the journal, direct
//! I/O, the guard that keeps a failed write's file whole), cut into a series ([`rotate`]), in
//! pcap ([`pcap`]) or pcapng ([`pcapng`], its packet blocks encoded by [`epb`]).
pub mod create;
pub mod epb;
pub mod file;
pub mod pcap;
pub mod pcapng;
pub mod rotate;
