//! Interfaces: names to indexes, the default route's interface, and `-i any`.

use std::fs;

use anyhow::{Context as _, bail};

/// An interface to capture on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Name, as `ip link` shows it.
    pub name: String,
    /// Kernel interface index.
    pub index: u32,
}

/// Look up `name`.
pub fn by_name(name: &str) -> anyhow::Result<Interface> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(index) => Ok(Interface {
            name: name.to_owned(),
            index,
        }),
        Err(_) => bail!(
            "no such interface '{name}' in this network namespace: `ip link` lists the \
             interfaces; pick one with -i"
        ),
    }
}

/// Every interface of this network namespace (`-i any`), sorted by name. Asked of the kernel
/// (`if_nameindex`), not of `/sys/class/net`, which shows the namespace sysfs was mounted in.
pub fn all() -> anyhow::Result<Vec<Interface>> {
    let list = nix::net::if_::if_nameindex()
        .context("cannot list this network namespace's interfaces to resolve `-i any`")?;
    let mut all: Vec<Interface> = list
        .iter()
        .map(|i| Interface {
            name: i.name().to_string_lossy().into_owned(),
            index: i.index(),
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Which interfaces to capture on (`-i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceChoice {
    /// The interface of the default route (no `-i`).
    DefaultRoute,
    /// Every interface of the network namespace, as they come and go (`-i any`).
    Any,
    /// These, by name.
    Named(Vec<String>),
}

/// The interfaces `choice` names, looked up now.
pub fn resolve(choice: &InterfaceChoice) -> anyhow::Result<Vec<Interface>> {
    match choice {
        InterfaceChoice::DefaultRoute => Ok(vec![default_route()?]),
        InterfaceChoice::Any => all(),
        InterfaceChoice::Named(names) => names.iter().map(|n| by_name(n)).collect(),
    }
}

/// The interface of the IPv4 (else IPv6) default route, as tcpdump picks its default.
pub fn default_route() -> anyhow::Result<Interface> {
    let v4 = fs::read_to_string("/proc/net/route").unwrap_or_default();
    // Iface Destination Gateway Flags ... Mask: a default route has destination and mask 0.
    let from_v4 = v4.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_owned())
    });
    let v6 = fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let from_v6 = || {
        v6.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo")
                .then(|| f[9].to_owned())
        })
    };
    match from_v4.or_else(from_v6) {
        Some(name) => by_name(&name),
        None => bail!(
            "no default route in this network namespace, so no default interface: name one \
             with -i (see `ip link`), or use -i any"
        ),
    }
}
