//! The floor of `ntptap --json`: ntptap's kernel programs and rings (a [`Session`] opened as
//! `ntptap -i IFACE --json` opens it, attribution included), read by the least loop that still
//! writes ntptap's JSON line for each frame: wait for the rings (as least_reader does), take
//! each record, make it a frame with what the record says (its owner as the kernel wrote it:
//! no /proc, no cgroup names), decode it and write its line with ntptap's own serializer to a
//! buffered standard output. No pipeline, no exchange tracker, no events, no metrics. Run by
//! `cargo xtask bench` as the contender "least json"; it prints what ntptap prints for the
//! bench to read.
//!
//! Usage: `least_json IFACE`; stops on SIGINT or SIGTERM.

#[path = "shared/least.rs"]
mod least;

use std::io::Write as _;

use ntptap::{
    capture::WallClock,
    frame::{Direction, Frame, LinkType},
    output::{
        decoded::{Decoded, PortSet},
        print::{json::FrameJson, object},
    },
    process::{Process, Socket},
};
use ntptap_common::{COMM_LEN, SOCKET_NONE, SOCKET_OWNED, SOCKET_UNOWNED};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name] = args.as_slice() else {
        eprintln!("usage: least_json IFACE");
        std::process::exit(2);
    };
    let (session, mut rings) = least::open(name);
    let ports = PortSet::new(vec![123]);
    let clock = WallClock::new();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut captured = 0u64;
    eprintln!("least_json: listening on {name}");
    let mut line = Vec::new();
    least::each_frame(&mut rings, |h, data| {
        captured += 1;
        let comm_len = h.owner.comm.iter().position(|&b| b == 0);
        let socket = match h.socket {
            SOCKET_NONE => Socket::None,
            SOCKET_UNOWNED => Socket::Unowned,
            SOCKET_OWNED => Socket::Owned(Process {
                pid: h.owner.pid,
                tid: h.owner.tid,
                uid: h.owner.uid,
                comm: &h.owner.comm[..comm_len.unwrap_or(COMM_LEN)],
                cgroup_id: h.owner.cgroup_id,
                cgroup: None,
                container: None,
                names: None,
                netns: None,
            }),
            _ => Socket::Unknown,
        };
        let frame = Frame {
            number: captured,
            ts: clock.wall(h.ts_mono_ns),
            mono_ns: Some(h.ts_mono_ns),
            ifindex: Some(h.ifindex),
            iface: Some(name),
            drops_before: h.drops_before,
            direction: Some(Direction::from_record(h.direction)),
            orig_len: h.orig_len,
            link: LinkType::Ethernet,
            data,
            socket,
            drop: None,
            send_before: None,
            read_before: None,
            queued_before: None,
        };
        line.clear();
        object::write(&mut line, &FrameJson(&Decoded::new(&frame, &ports))).expect("a line");
        line.push(b'\n');
        out.write_all(&line).expect("write a line");
    });
    out.flush().expect("write the lines");
    least::report(&session, captured);
}
