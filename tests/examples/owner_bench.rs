//! What process attribution's cgroup hooks cost on socket calls that are not NTP (and, with
//! `--latency`'s stamps, on a send to an NTP port), each against
//! an empty program attached at the same hook in the same run. cgroup socket programs have no
//! BPF_PROG_TEST_RUN, so real calls on loopback drive them, and the kernel's own run-time
//! statistics (`BPF_ENABLE_STATS`) time each program. Run by `cargo xtask bench`; prints one
//! JSON object per hook: `{"hook", "work", "ntptap_ns", "empty_ns", "runs"}` (medians over
//! rounds, of the kernel's average per run). First, the whole cost a process sees: a socket()
//! and close() pair of a UDP and of a TCP socket without ntptap, then with its default hooks
//! (`{"pair", "without_ns", "with_ns"}`, medians of the rounds' averages).

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr};
use ntptap::capture::{
    CaptureConfig, Programs,
    owners::{Hooks, OwnerHooks, Selection, cgroup2_root},
};
use ntptap_common::names;

const ROUNDS: usize = 9;
const CALLS: u32 = 20_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A port nobody listens on, not in the port set.
const DISCARD: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9);

/// `CALLS` of the socket call that runs `hook`, none of them NTP.
fn work(hook: &str) {
    match hook {
        // A send to an NTP port: the owner is known after the first, the stamp is written
        // every time (`--latency`).
        "sendmsg4 NTP" => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let ntp = SocketAddr::new(DISCARD.ip(), 123);
            for _ in 0..CALLS {
                let _ = s.send_to(b"x", ntp);
            }
        }
        "sendmsg4" => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..CALLS {
                let _ = s.send_to(b"x", DISCARD);
            }
        }
        "connect4" => {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            for i in 0..CALLS {
                let _ = s.connect(SocketAddr::new(DISCARD.ip(), 1024 + (i % 60_000) as u16));
            }
        }
        // A datagram delivered to a socket: the read hook, and before it the queue stamp's
        // `cgroup_skb` ingress program.
        "recvmsg4" | "sock_queue" => {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = rx.local_addr().unwrap();
            let mut buf = [0u8; 16];
            for _ in 0..CALLS {
                tx.send_to(b"x", to).unwrap();
                rx.recv_from(&mut buf).unwrap();
            }
        }
        // A TCP socket created, bound and closed: sock_create returns at once.
        "sock_create TCP" => {
            for _ in 0..CALLS {
                drop(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
            }
        }
        // A socket created, bound and closed: sock_create, post_bind, then sock_release.
        _ => {
            for _ in 0..CALLS {
                drop(UdpSocket::bind("127.0.0.1:0").unwrap());
            }
        }
    }
}

/// The kernel's (run time, run count) of a program so far.
fn stats(programs: &Programs, name: &str) -> (Duration, u64) {
    let info = programs.ebpf.program(name).unwrap().info().unwrap();
    (info.run_time(), info.run_count())
}

/// Pairs timed each round.
const PAIRS: u32 = 100_000;

/// ns per socket()+close() pair of `kind` (`SOCK_DGRAM` or `SOCK_STREAM`), on this thread.
fn pair_ns(kind: libc::c_int) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..PAIRS {
        // SAFETY: plain system calls on a descriptor this loop owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, kind, 0);
            assert!(fd >= 0, "socket()");
            libc::close(fd);
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(PAIRS)
}

/// The pairs (UDP, TCP) with ntptap's default attribution hooks and `extra` attached, or
/// (`empty`) with only an empty program at sock_release.
fn with_hooks(extra: &[(&str, &str)], empty: bool) -> [f64; 2] {
    let mut programs = Programs::load(&CaptureConfig {
        attribution: Some(Selection::default()),
        ..CaptureConfig::default()
    })
    .expect("load the programs (run as root)");
    let root = cgroup2_root().expect("cgroup v2");
    let dir = std::fs::File::open(&root.path).unwrap();
    let _hooks = if empty {
        let p: &mut CgroupSock = programs
            .ebpf
            .program_mut("ntptap_nop_sock_release")
            .unwrap()
            .try_into()
            .unwrap();
        p.load().unwrap();
        p.attach(&dir, CgroupAttachMode::Single).unwrap();
        None
    } else {
        let hooks = OwnerHooks::open(
            &mut programs.ebpf,
            &Selection::default(),
            Hooks {
                latency: false,
                every_socket: !extra.is_empty(),
            },
            &[123],
        )
        .expect("attribution hooks");
        Some(hooks)
    };
    [pairs(libc::SOCK_DGRAM), pairs(libc::SOCK_STREAM)]
}

/// Median ns per pair of `kind` over the rounds.
fn pairs(kind: libc::c_int) -> f64 {
    median((0..ROUNDS).map(|_| pair_ns(kind)).collect())
}

fn main() {
    // Without ntptap, then with its default hooks (attribution's, once per socket): the
    // pairs a process sees.
    let without = [pairs(libc::SOCK_DGRAM), pairs(libc::SOCK_STREAM)];
    // The floor: an empty program where ntptap's default hooks run on a socket()+close()
    // pair (sock_release; socket() runs none of them by default).
    let floor = with_hooks(&[], true);
    // ntptap's default hooks, then with --attribution (every socket's creator too).
    let with = with_hooks(&[], false);
    let every = with_hooks(&[names::OWNER_CREATE], false);
    for (i, kind) in ["UDP", "TCP"].iter().enumerate() {
        println!(
            "{{\"pair\": \"{kind}\", \"without_ns\": {:.1}, \"with_ns\": {:.1}, \"floor_ns\": {:.1}, \"every_ns\": {:.1}}}",
            without[i], with[i], floor[i], every[i]
        );
    }
    let mut programs = Programs::load(&CaptureConfig {
        attribution: Some(Selection::default()),
        latency: true,
        ..CaptureConfig::default()
    })
    .expect("load the programs (run as root)");
    let hooks = OwnerHooks::open(
        &mut programs.ebpf,
        &Selection::default(),
        Hooks {
            latency: true,
            every_socket: true,
        },
        &[123],
    )
    .expect("attribution hooks");
    let root = cgroup2_root().expect("cgroup v2");
    let dir = std::fs::File::open(&root.path).unwrap();
    for (empty, _, _) in names::NOP_OWNER_PROGRAMS {
        let program = programs.ebpf.program_mut(empty).unwrap();
        if let Ok(p) = <&mut CgroupSockAddr>::try_from(&mut *program) {
            p.load().unwrap();
            p.attach(&dir, CgroupAttachMode::Single).unwrap();
        } else {
            let p = <&mut CgroupSock>::try_from(program).unwrap();
            p.load().unwrap();
            p.attach(&dir, CgroupAttachMode::Single).unwrap();
        }
    }
    let empty: &mut CgroupSkb = programs
        .ebpf
        .program_mut(names::NOP_SOCK_QUEUE)
        .unwrap()
        .try_into()
        .unwrap();
    empty.load().unwrap();
    empty
        .attach(&dir, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
        .unwrap();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF run-time stats");
    // Each hook on calls that are not NTP, and the send hook on sends to an NTP port too.
    let kinds: Vec<(&str, &str, &str)> = names::NOP_OWNER_PROGRAMS
        .iter()
        .copied()
        .chain([
            (
                "ntptap_nop_sock_create",
                "ntptap_sock_create",
                "sock_create TCP",
            ),
            ("ntptap_nop_sendmsg4", "ntptap_sendmsg4", "sendmsg4 NTP"),
            (names::NOP_SOCK_QUEUE, names::SOCK_QUEUE, "sock_queue"),
        ])
        .collect();
    let mut samples = vec![(Vec::new(), Vec::new(), 0u64); kinds.len()];
    for _ in 0..ROUNDS {
        for ((empty, ours, hook), (ours_ns, empty_ns, runs)) in kinds.iter().zip(&mut samples) {
            let before = (stats(&programs, ours), stats(&programs, empty));
            work(hook);
            let after = (stats(&programs, ours), stats(&programs, empty));
            let per_run = |(t0, n0): (Duration, u64), (t1, n1): (Duration, u64)| {
                t1.saturating_sub(t0).as_nanos() as f64 / (n1 - n0).max(1) as f64
            };
            ours_ns.push(per_run(before.0, after.0));
            empty_ns.push(per_run(before.1, after.1));
            *runs += after.0.1 - before.0.1;
        }
    }
    // Every UDP socket is recorded at its creation and forgotten at its close.
    let counts = hooks.counts().unwrap();
    assert!(
        counts.recorded >= u64::from(CALLS) && counts.released + counts.live >= counts.recorded,
        "every UDP socket recorded and released: {counts:?}"
    );
    for ((_, _, hook), (ours, empty, runs)) in kinds.iter().zip(samples) {
        let work = match *hook {
            "sendmsg4 NTP" => "sendto() to an NTP port, owner known, stamped (--latency)",
            "sock_queue" => "a datagram queued on a socket, not NTP (--latency, cgroup_skb)",
            "sendmsg4" => "sendto(), not NTP",
            "connect4" => "connect(), not NTP",
            "recvmsg4" => "recvfrom(), not NTP",
            "post_bind4" => "bind(), not NTP",
            "sock_create" => "socket() of a UDP socket, its owner recorded",
            "sock_create TCP" => "socket() of a TCP socket",
            _ => "close() of a UDP socket",
        };
        println!(
            "{{\"hook\": \"{hook}\", \"work\": \"{work}\", \"ntptap_ns\": {:.1}, \"empty_ns\": {:.1}, \"runs\": {runs}}}",
            median(ours),
            median(empty)
        );
    }
}
