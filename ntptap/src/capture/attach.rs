//! Attaching the kernel programs to interfaces, one interface at a time, so that `-i any` can
//! attach to an interface that appears during the capture and release one that goes.

use anyhow::anyhow;
use aya::{
    Ebpf,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{NlOptions, SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use ntptap_common::names;
use tracing::{debug, info};

use super::{
    config::{CaptureConfig, Directions, Hook, XdpAttach},
    iface::Interface,
    load::{program, verifier_error},
};

/// Every network namespace's loopback device has this index (the kernel's
/// `LOOPBACK_IFINDEX`): it is registered first, in every namespace.
const LOOPBACK_IFINDEX: u32 = 1;

/// One program's link to one interface.
enum Link {
    Xdp(&'static str, XdpLinkId),
    Tc(&'static str, SchedClassifierLinkId),
}

/// The links of one interface.
pub(super) struct Attached {
    pub(super) iface: Interface,
    links: Vec<Link>,
}

/// The programs `config` asks for, loaded (verified) once for every interface: the XDP
/// program's name when ingress is captured at XDP.
pub(super) struct Loaded {
    xdp: Option<&'static str>,
    tc_in: bool,
    tc_out: bool,
}

/// Load the programs `config` needs; what was decided goes to `decisions` (for `-v`).
pub(super) fn load(
    ebpf: &mut Ebpf,
    config: &CaptureConfig,
    decisions: &mut Vec<String>,
) -> anyhow::Result<Loaded> {
    let want_in = config.directions != Directions::Out;
    let want_out = config.directions != Directions::In;
    let xdp = if want_in && config.hook == Hook::Xdp {
        let (name, copy) = super::load::xdp_program(ebpf);
        info!(program = name, copy, "chose the XDP program");
        decisions.push(format!("XDP copies frames with {copy}"));
        let xdp: &mut Xdp = program(ebpf, name)?;
        xdp.load().map_err(|e| verifier_error(name, &e))?;
        Some(name)
    } else {
        None
    };
    let tc_in = want_in && config.hook == Hook::Tc;
    for (wanted, name) in [(tc_in, names::TC_INGRESS), (want_out, names::TC_EGRESS)] {
        if wanted {
            let tc: &mut SchedClassifier = program(ebpf, name)?;
            tc.load().map_err(|e| verifier_error(name, &e))?;
        }
    }
    Ok(Loaded {
        xdp,
        tc_in,
        tc_out: want_out,
    })
}

/// Attach the loaded programs to `iface`. On loopback a packet passes egress and then ingress,
/// so only one of the two is attached (ingress, unless only egress is asked for): each packet
/// is seen once, as libpcap shows it. If one attachment fails, the others are released.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    config: &CaptureConfig,
    loaded: &Loaded,
    iface: &Interface,
    decisions: &mut Vec<String>,
) -> anyhow::Result<Attached> {
    let mut attached = Attached {
        iface: iface.clone(),
        links: Vec::new(),
    };
    let result = attach_each(ebpf, config, loaded, &mut attached, decisions);
    match result {
        Ok(()) => Ok(attached),
        Err(e) => {
            detach(ebpf, attached);
            Err(e)
        }
    }
}

fn attach_each(
    ebpf: &mut Ebpf,
    config: &CaptureConfig,
    loaded: &Loaded,
    attached: &mut Attached,
    decisions: &mut Vec<String>,
) -> anyhow::Result<()> {
    let iface = attached.iface.clone();
    let loopback = iface.index == LOOPBACK_IFINDEX;
    if let Some(name) = loaded.xdp {
        let xdp: &mut Xdp = program(ebpf, name)?;
        let (id, mode) = match config.xdp_mode {
            XdpAttach::Native => attach_xdp(xdp, &iface, XdpMode::Driver, config.xdp_mode)?,
            XdpAttach::Skb => attach_xdp(xdp, &iface, XdpMode::Skb, config.xdp_mode)?,
            // Native where the driver has it, generic otherwise.
            XdpAttach::Auto => match xdp.attach_to_if_index(iface.index, XdpMode::Driver) {
                Ok(id) => (id, "native (driver)"),
                Err(e) if is_busy(&e) => {
                    return Err(xdp_attach_error(&iface, config.xdp_mode, &e));
                }
                Err(e) => {
                    debug!(iface = %iface.name, error = %e, "no native XDP; trying generic");
                    attach_xdp(xdp, &iface, XdpMode::Skb, config.xdp_mode)?
                }
            },
        };
        attached.links.push(Link::Xdp(name, id));
        info!(iface = %iface.name, mode, "attached XDP (ingress)");
        decisions.push(format!(
            "{}: ingress at XDP, {mode} mode, through a BPF link",
            iface.name
        ));
    }
    let ingress = loaded.tc_in || loaded.xdp.is_some();
    let tc_programs = [
        (
            loaded.tc_in,
            names::TC_INGRESS,
            TcAttachType::Ingress,
            "ingress",
        ),
        (
            loaded.tc_out && !(loopback && ingress),
            names::TC_EGRESS,
            TcAttachType::Egress,
            "egress",
        ),
    ];
    if loopback && ingress && loaded.tc_out {
        decisions.push(format!(
            "{}: loopback, so egress is not attached: each packet is captured once, on its way in",
            iface.name
        ));
    }
    for (wanted, name, attach_type, label) in tc_programs {
        if !wanted {
            continue;
        }
        let tc: &mut SchedClassifier = program(ebpf, name)?;
        // TCX (Linux 6.6) if the kernel takes it; otherwise a filter on the clsact qdisc.
        let tcx = TcAttachOptions::TcxOrder(LinkOrder::default());
        let (id, how) = match tc.attach_with_options(&iface.name, attach_type, tcx) {
            Ok(id) => (id, "TCX link"),
            Err(first) => {
                debug!(iface = %iface.name, error = %first, "no TCX; attaching to the clsact qdisc");
                // EEXIST when the qdisc is there already, which is what we want.
                let _ = aya::programs::tc::qdisc_add_clsact(&iface.name);
                let netlink = TcAttachOptions::Netlink(NlOptions::default());
                let id = tc
                    .attach_with_options(&iface.name, attach_type, netlink)
                    .map_err(|e| {
                        anyhow!(
                            "cannot attach the TC {label} program to {}: {e} (TCX: {first})",
                            iface.name
                        )
                    })?;
                (id, "clsact qdisc (netlink)")
            }
        };
        attached.links.push(Link::Tc(name, id));
        info!(iface = %iface.name, direction = label, how, "attached TC");
        decisions.push(format!("{}: {label} at TC, through a {how}", iface.name));
    }
    Ok(())
}

/// Release every link of an interface. One that the kernel already took down with its
/// interface detaches as a no-op.
pub(super) fn detach(ebpf: &mut Ebpf, attached: Attached) {
    for link in attached.links {
        let result = match link {
            Link::Xdp(name, id) => {
                program::<Xdp>(ebpf, name).and_then(|p| p.detach(id).map_err(Into::into))
            }
            Link::Tc(name, id) => program::<SchedClassifier>(ebpf, name)
                .and_then(|p| p.detach(id).map_err(Into::into)),
        };
        if let Err(e) = result {
            debug!(iface = %attached.iface.name, error = %e, "detach");
        }
    }
}

fn attach_xdp(
    xdp: &mut Xdp,
    iface: &Interface,
    mode: XdpMode,
    asked: XdpAttach,
) -> anyhow::Result<(XdpLinkId, &'static str)> {
    let id = xdp
        .attach_to_if_index(iface.index, mode)
        .map_err(|e| xdp_attach_error(iface, asked, &e))?;
    Ok((
        id,
        if mode == XdpMode::Driver {
            "native (driver)"
        } else {
            "generic (skb)"
        },
    ))
}

fn is_busy(err: &ProgramError) -> bool {
    matches!(err, ProgramError::SyscallError(e) if matches!(e.io_error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)))
}

fn xdp_attach_error(iface: &Interface, mode: XdpAttach, err: &ProgramError) -> anyhow::Error {
    let errno = match err {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    };
    match errno {
        Some(libc::EBUSY | libc::EEXIST) => anyhow!(
            "another XDP program is already attached to {0} (see `ip link show {0}`): use \
             --hook tc to capture with TC alone and leave XDP to it",
            iface.name
        ),
        Some(libc::EOPNOTSUPP | libc::EINVAL) if mode == XdpAttach::Native => anyhow!(
            "the driver of {} has no native XDP: use --xdp-mode skb (or auto), or --hook tc",
            iface.name
        ),
        _ => anyhow!(
            "cannot attach XDP to {}: {err}; --hook tc avoids XDP",
            iface.name
        ),
    }
}
