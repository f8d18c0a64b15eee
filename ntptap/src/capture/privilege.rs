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

/// Switch to `user` for good and clear every capability set (tcpdump's `-Z`). Call once all
/// programs are attached and the output is open. `pinned` (what this run pinned, and the pin
/// directory if it created it) is handed to the user, so that it can still unpin on exit;
/// nothing else, and never through a symbolic link.
pub fn drop_to(user: &str, pinned: &[std::path::PathBuf]) -> anyhow::Result<()> {
    use nix::unistd::{Gid, Uid, User, setgroups, setresgid, setresuid};
    let account = User::from_name(user)
        .map_err(|e| anyhow::anyhow!("cannot look up user {user}: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!("no such user '{user}' (-Z): name an existing account, such as nobody")
        })?;
    for path in pinned {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path.as_path(),
            Some(account.uid),
            Some(account.gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| anyhow::anyhow!("cannot hand {} to {user}: {e}", path.display()))?;
    }
    setgroups(&[account.gid])
        .map_err(|e| anyhow::anyhow!("cannot set the groups of {user}: {e}"))?;
    setresgid(account.gid, account.gid, account.gid)
        .map_err(|e| anyhow::anyhow!("cannot switch to the group of {user}: {e}"))?;
    setresuid(account.uid, account.uid, account.uid)
        .map_err(|e| anyhow::anyhow!("cannot switch to user {user}: {e}"))?;
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        caps::clear(None, set)
            .map_err(|e| anyhow::anyhow!("cannot clear the {set:?} capabilities: {e}"))?;
    }
    // Make sure it stuck: no way back to root, no capability left.
    if Uid::effective().is_root() || Gid::effective().as_raw() == 0 && account.gid.as_raw() != 0 {
        bail!("still privileged after switching to {user}");
    }
    let left = caps::read(None, CapSet::Effective).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !left.is_empty() {
        bail!("capabilities left after switching to {user}: {left:?}");
    }
    Ok(())
}
