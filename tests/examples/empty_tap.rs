//! The floor of the live benchmark: ntptap's empty program (`ntptap_nop_tc`, or `ntptap_nop` at
//! XDP) attached where ntptap would attach its capture program, and nothing else: no ring, no
//! reader. What a flood loses with it attached is what the hook itself costs, before any
//! program does any work. Run by `cargo xtask bench` as the contender "empty tc" / "empty
//! xdp-generic"; "empty kfree_skb" attaches `ntptap_nop_kfree_skb` where the drop program
//! runs, the floor of what a storm of drops loses to it (IFACE is not used then).
//!
//! Usage: `empty_tap IFACE tc|xdp|xdp-generic|kfree_skb`; prints "listening on IFACE" once
//! attached and detaches on SIGINT or SIGTERM.

use aya::{
    Btf,
    programs::{
        BtfTracePoint, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode, tc::TcAttachOptions,
    },
};
use ntptap::capture::{CaptureConfig, Programs};
use ntptap_common::names;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, hook] = args.as_slice() else {
        eprintln!("usage: empty_tap IFACE tc|xdp|xdp-generic|kfree_skb");
        std::process::exit(2);
    };
    let config = CaptureConfig {
        ring_bytes: 1 << 20,
        ..CaptureConfig::default()
    };
    let mut programs = Programs::load(&config).expect("load the programs (run as root)");
    match hook.as_str() {
        "tc" => {
            let p: &mut SchedClassifier = programs
                .ebpf
                .program_mut(names::NOP_TC)
                .expect("empty TC program")
                .try_into()
                .expect("a classifier");
            p.load().expect("load the empty TC program");
            p.attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .expect("attach with TCX");
        }
        "xdp" | "xdp-generic" => {
            let p: &mut Xdp = programs
                .ebpf
                .program_mut(names::NOP)
                .expect("empty XDP program")
                .try_into()
                .expect("an XDP program");
            p.load().expect("load the empty XDP program");
            let mode = if hook == "xdp" {
                XdpMode::Driver
            } else {
                XdpMode::Skb
            };
            p.attach(iface, mode).expect("attach XDP");
        }
        "kfree_skb" => {
            let btf = Btf::from_sys_fs().expect("the kernel's BTF");
            let p: &mut BtfTracePoint = programs
                .ebpf
                .program_mut(names::NOP_DROP)
                .expect("empty kfree_skb program")
                .try_into()
                .expect("a BTF tracepoint");
            p.load("kfree_skb", &btf)
                .expect("load the empty kfree_skb program");
            p.attach().expect("attach at kfree_skb");
        }
        other => {
            eprintln!("empty_tap: unknown hook {other}");
            std::process::exit(2);
        }
    }
    eprintln!("listening on {iface}");
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.thread_block().expect("block signals");
    signals.wait().expect("wait for a signal");
    // Dropping the programs closes the links, which detaches them.
}
