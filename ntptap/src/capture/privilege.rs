//! The capabilities ntptap needs, checked before anything is loaded.

use anyhow::bail;
use caps::{CapSet, Capability};

/// Fail with a message naming every missing capability and how to grant them.
pub fn check() -> anyhow::Result<()> {
    let effective = caps::read(None, CapSet::Effective)
        .map_err(|e| anyhow::anyhow!("cannot read this process's capabilities: {e}"))?;
    let sys_admin = effective.contains(&Capability::CAP_SYS_ADMIN);
    let missing: Vec<&str> = [
        (Capability::CAP_BPF, "CAP_BPF", sys_admin),
        (Capability::CAP_NET_ADMIN, "CAP_NET_ADMIN", false),
        (Capability::CAP_PERFMON, "CAP_PERFMON", sys_admin),
    ]
    .into_iter()
    .filter(|(cap, _, covered)| !covered && !effective.contains(cap))
    .map(|(_, name, _)| name)
    .collect();
    if !missing.is_empty() {
        bail!(
            "missing capabilities: {}. ntptap loads BPF programs and attaches them to \
             interfaces: run it as root, or grant the capabilities to the binary with \
             `sudo setcap cap_bpf,cap_net_admin,cap_perfmon+ep {}` (reading a file with -r \
             needs none)",
            missing.join(", "),
            std::env::current_exe().map_or_else(|_| "ntptap".into(), |p| p.display().to_string())
        );
    }
    Ok(())
}
