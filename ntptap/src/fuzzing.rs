//! Entry points shared by the `cargo fuzz` targets (fuzz/) and the regression test that replays
//! their saved crashes (tests/fuzz_regressions.rs), so both run exactly the same code.

use std::{io, time::Duration};

use crate::process::{Process, Socket};

use crate::{
    frame::{Consumer as _, Frame, LinkType},
    input,
    ntp::Ntp,
    output::{
        Filter, Pipeline, PortSet,
        json::JsonSink,
        text::{TextOptions, TextSink, TimeFormat},
    },
};

/// Decode `data` as NTP; a packet that decodes without error must re-encode to `data`.
pub fn ntp_decode(data: &[u8]) {
    if let Ok(ntp) = Ntp::decode(data) {
        let _ = crate::output::json::ntp_json(&ntp);
        if ntp.error.is_none() {
            assert_eq!(ntp.encode(), data, "a whole packet re-encodes to its bytes");
        }
    }
}

/// Two pipelines, one with the text printer and one with the JSON printer (each with the
/// exchange tracker), writing nowhere.
fn printers() -> (Pipeline, Pipeline) {
    let filter = Filter {
        ports: PortSet::new(vec![123]),
        all: true,
    };
    let options = TextOptions {
        verbose: 3,
        dump: Some(crate::output::text::Dump {
            hex: true,
            ascii: true,
            link: false,
        }),
        link_header: true,
        number: true,
        time: TimeFormat::DateTime,
        show_iface: true,
        process: true,
        ..TextOptions::default()
    };
    let mut text = Pipeline::new(
        filter.ports.clone(),
        crate::exchange::Pairing::Full(crate::exchange::Limits::default()),
    );
    text.push(Box::new(TextSink::new(io::sink(), options, filter.clone())));
    let mut json = Pipeline::new(
        filter.ports.clone(),
        crate::exchange::Pairing::Full(crate::exchange::Limits::default()),
    );
    json.push(Box::new(JsonSink::new(io::sink(), filter)));
    (text, json)
}

/// Print `data` as a frame of every link type, with every printer.
pub fn print_frame(data: &[u8]) {
    let (mut text, mut json) = printers();
    let names = std::str::from_utf8(data)
        .ok()
        .map(|s| crate::containers::ContainerNames {
            name: s.to_owned(),
            pod: Some((s.to_owned(), s.to_owned())),
        });
    for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::Null,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
    ] {
        let frame = Frame {
            number: 1,
            ts: Duration::new(1_700_000_000, 123_456_789),
            mono_ns: Some(1),
            ifindex: Some(1),
            drops_before: 0,
            iface: Some("eth0"),
            direction: None,
            orig_len: data.len() as u32,
            link,
            data,
            // The first bytes stand for a hostile process name.
            socket: Socket::Owned(Process {
                pid: 1,
                tid: 2,
                uid: 0,
                comm: &data[..data.len().min(15)],
                cgroup_id: 1,
                cgroup: std::str::from_utf8(data).ok(),
                container: None,
                // A hostile container and pod name too.
                names: names.as_ref(),
                netns: None,
            }),
            drop: (link == LinkType::RawIp).then_some(crate::frame::KernelDrop {
                reason: "NO_SOCKET",
                location: "__udp4_lib_rcv",
            }),
            send_before: None,
            read_before: None,
            queued_before: None,
        };
        let _ = text.frame(&frame);
        let _ = json.frame(&frame);
    }
}

/// Read `data` as a capture file, mapped and streamed, into the printers.
pub fn read_capture(data: &[u8]) {
    let (mut text, mut json) = printers();
    let _ = input::read_slice(data, &mut text, Some(10_000));
    let _ = input::read_stream(data, &mut json, Some(10_000));
}
