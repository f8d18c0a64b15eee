//! Per-frame cost of the kernel programs, measured with BPF_PROG_TEST_RUN against empty XDP
//! and TC programs loaded in the same run, with the floors beside them: one clock read alone,
//! the least filter and the least capture. Run by `cargo xtask bench`; prints one JSON object
//! per measurement: `{"program", "frame", "ns"}` (median, over rounds that run every case in
//! turn, of the kernel's average).

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use ntptap::capture::{CaptureConfig, Programs, owners::Selection};
use ntptap_common::names;

const RUNS: usize = 15;
const REPEAT: u32 = 20_000;
/// The programs measured that are TC classifiers; the rest are XDP programs.
const TC_PROGRAMS: [&str; 6] = [
    names::TC_EGRESS,
    names::TC_INGRESS,
    names::NOP_TC,
    names::COST_FILTER_TC,
    names::COST_CAPTURE_TC,
    names::COST_CAPTURE_LOOKUP_TC,
];

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    [
        vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1],
        ethertype.to_be_bytes().to_vec(),
        l3.to_vec(),
    ]
    .concat()
}

fn ipv4_udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let total = (20 + 8 + payload) as u16;
    let mut b = vec![0x45, 0];
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.push(0x23);
    b.resize(b.len() + payload - 1, 0);
    frame(0x0800, &b)
}

fn ipv6_udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0];
    b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    b.extend_from_slice(&[17, 64]);
    b.extend_from_slice(&[0xfd; 16]);
    b.extend_from_slice(&[0xfe; 16]);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.push(0x23);
    b.resize(b.len() + payload - 1, 0);
    frame(0x86dd, &b)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The least filter must tell NTP from the rest, or it would be no floor (the least capture
/// is checked as it runs: a record every time).
fn check_least_filter(programs: &Programs, frames: &[(&str, Vec<u8>)]) {
    let filter: &SchedClassifier = programs
        .ebpf
        .program(names::COST_FILTER_TC)
        .unwrap()
        .try_into()
        .unwrap();
    for (frame, ntp) in [
        (&frames[0].1, false),
        (&frames[1].1, true),
        (&frames[2].1, true),
    ] {
        let run = filter
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .expect("test run");
        assert_eq!(run.return_value == 0, ntp, "the least filter's verdict");
    }
}

/// The capture programs of `config` (XDP, TC both ways), loaded for test runs.
fn capture_programs(config: &CaptureConfig) -> Programs {
    let mut programs = Programs::load(config).expect("load the programs (run as root)");
    let xdp: &mut Xdp = programs
        .ebpf
        .program_mut(names::XDP)
        .unwrap()
        .try_into()
        .unwrap();
    xdp.load().expect("load XDP");
    for name in [names::TC_INGRESS, names::TC_EGRESS] {
        let tc: &mut SchedClassifier = programs.ebpf.program_mut(name).unwrap().try_into().unwrap();
        tc.load().expect("load TC");
    }
    programs
}

/// Filter expressions: one that keeps NTP from a host, one that keeps a non-NTP flood; each
/// on a frame it rejects and one it keeps, in rounds of their own.
fn expressions(config: &CaptureConfig, ntp: &(&str, Vec<u8>), dns: &(&str, Vec<u8>)) {
    let mdns = ("mDNS, IPv4, 48 bytes", ipv4_udp(5353, 5353, 48));
    for (text, frames) in [
        ("udp port 123 and host 10.0.0.1", [dns, ntp]),
        ("udp port 5353", [ntp, &mdns]),
    ] {
        let expression = ntptap::filter::Expression::compile(text).expect("an expression");
        let mut programs = capture_programs(&CaptureConfig {
            expression: Some(expression),
            ..config.clone()
        });
        let cases: Vec<(&str, &str, &[u8])> = [names::XDP, names::TC_INGRESS, names::TC_EGRESS]
            .into_iter()
            .flat_map(|p| frames.map(|(what, bytes)| (p, *what, &bytes[..])))
            .collect();
        let mut samples = vec![Vec::new(); cases.len()];
        for _ in 0..RUNS {
            for ((program, _, bytes), samples) in cases.iter().zip(&mut samples) {
                samples.push(run_once(&mut programs, program, bytes));
            }
        }
        for ((program, what, _), samples) in cases.into_iter().zip(samples) {
            println!(
                "{{\"program\": \"{program} +expression '{text}'\", \"frame\": \"{what}\", \"ns\": {:.1}}}",
                median(samples)
            );
        }
    }
}

fn main() {
    let config = CaptureConfig {
        ring_bytes: 64 << 20,
        ..CaptureConfig::default()
    };
    let mut programs = Programs::load(&config).expect("load the programs (run as root)");
    // The same programs built with process attribution on (`--attribution`).
    let mut attributed = capture_programs(&CaptureConfig {
        attribution: Some(Selection::default()),
        ..config.clone()
    });
    for name in [
        names::XDP,
        names::XDP_COPY,
        names::NOP,
        names::COST_CLOCK,
        names::COST_FILTER,
        names::COST_CAPTURE,
        names::COST_CAPTURE_LOOKUP,
    ] {
        let p: &mut Xdp = programs.ebpf.program_mut(name).unwrap().try_into().unwrap();
        p.load().expect("load XDP");
    }
    for name in TC_PROGRAMS {
        let tc: &mut SchedClassifier = programs.ebpf.program_mut(name).unwrap().try_into().unwrap();
        tc.load().expect("load TC");
    }

    let frames = [
        ("non-NTP UDP (DNS)", ipv4_udp(53000, 53, 40)),
        ("NTP, IPv4, 48 bytes", ipv4_udp(40000, 123, 48)),
        ("NTP, IPv6, 48 bytes", ipv6_udp(40000, 123, 48)),
        ("NTS, IPv4, 400 bytes", ipv4_udp(40000, 123, 400)),
    ];
    let mut cases: Vec<(&str, &str, &[u8])> = vec![
        (names::NOP, "any frame", &frames[0].1),
        (names::NOP_TC, "any frame", &frames[0].1),
        // The timestamp every captured frame pays for.
        (names::COST_CLOCK, "any frame", &frames[0].1),
        // The floors: the least any program does with each kind of frame.
        (names::COST_FILTER, frames[0].0, &frames[0].1),
        (names::COST_FILTER_TC, frames[0].0, &frames[0].1),
        (names::COST_CAPTURE, frames[1].0, &frames[1].1),
        (names::COST_CAPTURE_TC, frames[1].0, &frames[1].1),
        // And with the socket lookup an attributed ingress frame needs.
        (names::COST_CAPTURE_LOOKUP, frames[1].0, &frames[1].1),
        (names::COST_CAPTURE_LOOKUP_TC, frames[1].0, &frames[1].1),
    ];
    for (what, bytes) in &frames {
        cases.push((names::XDP, what, bytes));
        // The copy-loop program kernels before 5.18 get, measured here for comparison.
        cases.push((names::XDP_COPY, what, bytes));
        cases.push((names::TC_EGRESS, what, bytes));
        // Ingress looks the receiving socket up (process attribution); nobody listens here.
        cases.push((names::TC_INGRESS, what, bytes));
    }
    check_least_filter(&programs, &frames);
    // Rounds of every case in turn, so a burst of load on the host hits one run of many
    // cases, not every run of one.
    // With attribution: ingress looks the receiving socket up, egress reads the skb's.
    let with: Vec<(&str, &str, &[u8])> = [names::XDP, names::TC_INGRESS, names::TC_EGRESS]
        .into_iter()
        .flat_map(|p| {
            [
                (p, frames[0].0, &frames[0].1[..]),
                (p, frames[1].0, &frames[1].1[..]),
            ]
        })
        .collect();
    let mut samples = vec![Vec::new(); cases.len()];
    let mut with_samples = vec![Vec::new(); with.len()];
    for _ in 0..RUNS {
        for ((program, _, bytes), samples) in cases.iter().zip(&mut samples) {
            samples.push(run_once(&mut programs, program, bytes));
        }
        for ((program, _, bytes), samples) in with.iter().zip(&mut with_samples) {
            samples.push(run_once(&mut attributed, program, bytes));
        }
    }
    let labelled = cases
        .into_iter()
        .zip(samples)
        .map(|((p, what, _), s)| (p.to_owned(), what, s))
        .chain(
            with.into_iter()
                .zip(with_samples)
                .map(|((p, what, _), s)| (format!("{p} +attribution"), what, s)),
        );
    for (program, what, samples) in labelled {
        println!(
            "{{\"program\": \"{program}\", \"frame\": \"{what}\", \"ns\": {:.1}}}",
            median(samples)
        );
    }
    expressions(&config, &frames[1], &frames[0]);
}

/// One test run of `REPEAT` repetitions of `program` on `bytes`: the kernel's average, ns.
fn run_once(programs: &mut Programs, program: &str, bytes: &[u8]) -> f64 {
    let opts = TestRunOptions {
        data_in: Some(bytes),
        repeat: REPEAT,
        ..Default::default()
    };
    let p = programs.ebpf.program(program).unwrap();
    let result = if TC_PROGRAMS.contains(&program) {
        let p: &SchedClassifier = p.try_into().unwrap();
        p.test_run(opts)
    } else {
        let p: &Xdp = p.try_into().unwrap();
        p.test_run(opts)
    }
    .expect("test run");
    // Empty the ring, so every repetition takes the capture path, not the ring-full one.
    let mut records = 0u32;
    programs.ring.read(|_| {
        records += 1;
        std::ops::ControlFlow::<()>::Continue(())
    });
    if [
        names::COST_CAPTURE,
        names::COST_CAPTURE_TC,
        names::COST_CAPTURE_LOOKUP,
        names::COST_CAPTURE_LOOKUP_TC,
    ]
    .contains(&program)
    {
        assert_eq!(records, REPEAT, "{program} captures every run");
    }
    result.duration.as_nanos() as f64
}
