//! What the drop program (`tp_btf/kfree_skb`) costs per drop, against an empty program
//! attached to the same tracepoint in the same run. Tracing programs have no
//! BPF_PROG_TEST_RUN for tracepoints, so real drops drive them: UDP datagrams on loopback to
//! a port nobody listens on, which the kernel drops with `NO_SOCKET`; the kernel's own run-time
//! statistics (`BPF_ENABLE_STATS`) time each program. Run by `cargo xtask bench`; prints one
//! JSON object per kind of drop: `{"hook", "work", "ntptap_ns", "empty_ns", "runs"}`
//! (medians over rounds, of the kernel's average per run).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    ops::ControlFlow,
    time::Duration,
};

use aya::programs::BtfTracePoint;
use ntptap::capture::{CaptureConfig, DropsProbe, Programs, drops::DropHook};
use ntptap_common::names;

const ROUNDS: usize = 9;
const CALLS: u32 = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The kernel's (run time, run count) of a program so far.
fn stats(programs: &Programs, name: &str) -> (Duration, u64) {
    let info = programs.ebpf.program(name).unwrap().info().unwrap();
    (info.run_time(), info.run_count())
}

/// `CALLS` datagrams to `port` on loopback, where nobody listens: each one a drop.
fn work(port: u16, payload: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    for _ in 0..CALLS {
        let _ = s.send_to(payload, to);
    }
}

fn main() {
    let mut programs = Programs::load(&CaptureConfig {
        drops: true,
        // Room for a round's NTP drop records on one CPU (emptied between rounds).
        ring_bytes: 64 << 20,
        ..CaptureConfig::default()
    })
    .expect("load the programs (run as root)");
    let plan = match std::mem::replace(&mut programs.drops, DropsProbe::NotAsked) {
        DropsProbe::Ready(plan) => plan,
        other => panic!("the drop program cannot run here: {other:?}"),
    };
    let hook = DropHook::open(&mut programs.ebpf, &plan).expect("the drop program");
    // Drops on loopback are ntptap's business only where it watches loopback.
    programs.set_slot(1, 1).expect("a counter slot for lo");
    let btf = aya::Btf::from_sys_fs().expect("BTF");
    let empty: &mut BtfTracePoint = programs
        .ebpf
        .program_mut(names::NOP_DROP)
        .unwrap()
        .try_into()
        .unwrap();
    empty
        .load("kfree_skb", &btf)
        .expect("load the empty program");
    empty.attach().expect("attach the empty program");
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF run-time stats");
    let ntp = [&[0x23u8][..], &[0; 47]].concat();
    let kinds: [(&str, u16, &[u8]); 2] = [
        ("UDP to a closed port, not NTP", 9, b"x"),
        ("NTP to a closed port, recorded", 123, &ntp),
    ];
    let mut samples = vec![(Vec::new(), Vec::new(), 0u64); kinds.len()];
    for _ in 0..ROUNDS {
        for ((_, port, payload), (ours_ns, empty_ns, runs)) in kinds.iter().zip(&mut samples) {
            let before = (
                stats(&programs, hook.program),
                stats(&programs, names::NOP_DROP),
            );
            work(*port, payload);
            let after = (
                stats(&programs, hook.program),
                stats(&programs, names::NOP_DROP),
            );
            let per_run = |(t0, n0): (Duration, u64), (t1, n1): (Duration, u64)| {
                t1.saturating_sub(t0).as_nanos() as f64 / (n1 - n0).max(1) as f64
            };
            ours_ns.push(per_run(before.0, after.0));
            empty_ns.push(per_run(before.1, after.1));
            *runs += after.0.1 - before.0.1;
            // Empty the rings, so every NTP drop of the next round is recorded.
            let _ = programs.ring.read(|_| ControlFlow::<()>::Continue(()));
        }
    }
    let counts = hook.counts().unwrap();
    assert_eq!(
        counts.total(ntptap_common::DropStat::RingFull),
        0,
        "every NTP drop recorded: {counts:?}"
    );
    assert!(
        counts.total(ntptap_common::DropStat::Recorded) >= u64::from(CALLS) * ROUNDS as u64,
        "the NTP drops were recorded: {counts:?}"
    );
    for ((work, _, _), (ours, empty, runs)) in kinds.iter().zip(samples) {
        println!(
            "{{\"hook\": \"tp_btf/kfree_skb\", \"work\": \"{work}\", \"ntptap_ns\": {:.1}, \"empty_ns\": {:.1}, \"runs\": {runs}}}",
            median(ours),
            median(empty)
        );
    }
}
