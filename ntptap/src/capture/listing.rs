//! `-D` / `--list-interfaces`: the interfaces of this network namespace numbered as tcpdump
//! numbers them (libpcap 1.10's order and flags), and `-i N` for the Nth.
//!
//! libpcap lists the interfaces in the kernel's order, then sorts them, stably, by a figure
//! of merit (lower first): not running, not up, disconnected, loopback, and the `any`
//! pseudo-device after every real one that is up and connected. ntptap lists only what it can
//! capture on (no `nflog`, `dbus-system` or `bluetooth-monitor`, which libpcap puts after
//! every interface that is up), so its numbers are tcpdump's, but for an interface that is
//! down and whose driver reports no link: libpcap ranks those after its other sources.

use std::{fmt::Write as _, fs, os::fd::AsRawFd as _};

use anyhow::Context as _;

/// One line of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "libpcap's interface flags, one bool each"
)]
pub struct Listed {
    /// Interface name, or `any`.
    pub name: String,
    up: bool,
    running: bool,
    loopback: bool,
    wireless: bool,
    link: Link,
}

/// What the driver says of the link (libpcap's connection status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Connected,
    Disconnected,
    /// The driver does not say (or it is loopback, or `any`).
    NotApplicable,
    /// The interface went away while it was asked.
    Unknown,
}

impl Listed {
    /// libpcap's figure of merit: the lower, the likelier to be the interface wanted.
    fn merit(&self) -> u32 {
        let mut n = 0;
        if !self.running {
            n |= 0x8000_0000;
        }
        if !self.up {
            n |= 0x4000_0000;
        }
        if !self.wireless && self.link == Link::Disconnected {
            n |= 0x2000_0000;
        }
        if self.loopback {
            n |= 0x1000_0000;
        }
        if self.name == "any" {
            n |= 0x0800_0000;
        }
        n
    }

    /// The line tcpdump prints for it, numbered `number`. The name is escaped: an interface
    /// name is any bytes but `/` and white space that a privileged user chose.
    #[must_use]
    pub fn line(&self, number: usize) -> String {
        let mut line = format!("{number}.{}", crate::escape::terminal(&self.name));
        if self.name == "any" {
            line.push_str(" (Pseudo-device that captures on all interfaces)");
        }
        let mut flags: Vec<&str> = [
            (self.up, "Up"),
            (self.running, "Running"),
            (self.loopback, "Loopback"),
            (self.wireless, "Wireless"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if flags.is_empty() {
            flags.push("none");
        }
        let status = match (self.link, self.wireless) {
            (Link::Connected, false) => Some("Connected"),
            (Link::Disconnected, false) => Some("Disconnected"),
            (Link::Unknown, false) => Some("Connection status unknown"),
            (Link::Connected, true) => Some("Associated"),
            (Link::Disconnected, true) => Some("Not associated"),
            (Link::Unknown, true) => Some("Association status unknown"),
            (Link::NotApplicable, _) => None,
        };
        line.push_str(" [");
        line.push_str(&flags.join(", "));
        if let Some(status) = status {
            line.push_str(", ");
            line.push_str(status);
        }
        line.push(']');
        line
    }
}

/// The interfaces of this network namespace and `any`, in tcpdump's order.
pub fn interfaces() -> anyhow::Result<Vec<Listed>> {
    let names =
        nix::net::if_::if_nameindex().context("cannot list this network namespace's interfaces")?;
    let mut by_index: Vec<(u32, String)> = names
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect();
    by_index.sort_unstable();
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot open a socket to ask for the interfaces' flags");
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut all: Vec<Listed> = by_index
        .into_iter()
        .filter_map(|(_, name)| ask(socket.as_raw_fd(), name))
        .collect();
    all.push(Listed {
        name: "any".to_owned(),
        up: true,
        running: true,
        loopback: false,
        wireless: false,
        link: Link::NotApplicable,
    });
    // Stable: equal merits keep the kernel's order, as libpcap's insertion does.
    all.sort_by_key(Listed::merit);
    Ok(all)
}

/// The name `-i NUMBER` stands for: the interface so numbered in the listing, when no
/// interface is named NUMBER (as tcpdump reads it).
pub fn numbered(arg: &str) -> anyhow::Result<Option<String>> {
    let Ok(number) = arg.parse::<usize>() else {
        return Ok(None);
    };
    if nix::net::if_::if_nametoindex(arg).is_ok() {
        return Ok(None);
    }
    let all = interfaces()?;
    match number.checked_sub(1).and_then(|i| all.get(i)) {
        Some(listed) => Ok(Some(listed.name.clone())),
        None => anyhow::bail!(
            "-i {number}: there are {} interfaces here (`ntptap -D` numbers them)",
            all.len()
        ),
    }
}

/// `-D`: tcpdump's listing, a line an interface.
pub fn listing() -> anyhow::Result<String> {
    Ok(interfaces()?
        .iter()
        .enumerate()
        .map(|(i, l)| l.line(i + 1) + "\n")
        .collect())
}

/// `-L` for each of `names` (the default route's interface when none): the link type of
/// the frames ntptap hands over, in tcpdump's words.
pub fn link_types(names: &[String]) -> anyhow::Result<String> {
    per_interface(names, "Data link types", 'y', "EN10MB (Ethernet)")
}

/// `-J` for each of `names`: the time stamp types, in tcpdump's words.
pub fn tstamp_types(names: &[String]) -> anyhow::Result<String> {
    per_interface(names, "Time stamp types", 'j', "host (Host)")
}

/// tcpdump's `WHAT for IFACE (use option -FLAG to set):` and the one `choice`, for each of
/// `names`.
fn per_interface(names: &[String], what: &str, flag: char, choice: &str) -> anyhow::Result<String> {
    Ok(chosen(names)?.iter().fold(String::new(), |mut out, name| {
        let _ = write!(
            out,
            "{what} for {} (use option -{flag} to set):\n  {choice}\n",
            crate::escape::terminal(name)
        );
        out
    }))
}

/// The interfaces `-i` names, each checked; the default route's without `-i`.
fn chosen(names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(vec![super::iface::default_route()?.name]);
    }
    names
        .iter()
        .map(|n| {
            if n == "any" {
                Ok(n.clone())
            } else {
                super::iface::by_name(n).map(|i| i.name)
            }
        })
        .collect()
}

/// The hardware type (`ARPHRD_*`) of interface `name`, asked of the kernel (SIOCGIFHWADDR);
/// `None` when it is gone.
#[must_use]
pub fn hardware_type(name: &str) -> Option<u16> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFHWADDR reads the name and writes the hardware address into our ifreq.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR as _, &raw mut req) } < 0 {
        return None;
    }
    // SAFETY: SIOCGIFHWADDR filled the union's hardware address member.
    Some(unsafe { req.ifr_ifru.ifru_hwaddr.sa_family })
}

/// Whether interface `name` carries Ethernet frames (or loopback's, which look alike), as
/// filter expressions are compiled for; an interface gone is let through (nothing to attach).
#[must_use]
pub fn carries_ethernet(name: &str) -> bool {
    hardware_type(name).is_none_or(|t| t == 1 || t == 772)
}

/// An interface's flags, type and link, as libpcap asks for them; `None` when it is gone.
fn ask(socket: i32, name: String) -> Option<Listed> {
    let mut req = ifreq(&name)?;
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags into our ifreq.
    if unsafe { libc::ioctl(socket, libc::SIOCGIFFLAGS as _, &raw mut req) } < 0 {
        return None;
    }
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
    let loopback = flags & libc::IFF_LOOPBACK != 0;
    let sys = format!("/sys/class/net/{name}");
    let arphrd = fs::read_to_string(format!("{sys}/type"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    // libpcap: a `wireless` or `phy80211` entry in sysfs, or a wireless ARPHRD type.
    let wireless = !loopback
        && (fs::metadata(format!("{sys}/wireless")).is_ok()
            || fs::metadata(format!("{sys}/phy80211")).is_ok()
            || arphrd.is_some_and(|t| matches!(t, 783 | 801..=805 | 825)));
    let link = if loopback || arphrd == Some(772) {
        Link::NotApplicable
    } else {
        glink(socket, &name)
    };
    Some(Listed {
        name,
        up: flags & libc::IFF_UP != 0,
        running: flags & libc::IFF_RUNNING != 0,
        loopback,
        wireless,
        link,
    })
}

/// ETHTOOL_GLINK: whether the driver sees a link; drivers without it are "not applicable".
fn glink(socket: i32, name: &str) -> Link {
    const ETHTOOL_GLINK: u32 = 0x0000_000a;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let Some(mut req) = ifreq(name) else {
        return Link::Unknown;
    };
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GLINK,
        data: 0,
    };
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GLINK writes one u32 into `value`, which outlives it.
    if unsafe { libc::ioctl(socket, libc::SIOCETHTOOL as _, &raw mut req) } < 0 {
        return match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::EINVAL) => Link::NotApplicable,
            _ => Link::Unknown,
        };
    }
    if value.data == 0 {
        Link::Disconnected
    } else {
        Link::Connected
    }
}

/// An `ifreq` naming `name`; `None` for a name that does not fit.
fn ifreq(name: &str) -> Option<libc::ifreq> {
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return None;
    }
    for (to, from) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    Some(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, up: bool, running: bool, loopback: bool, link: Link) -> Listed {
        Listed {
            name: name.to_owned(),
            up,
            running,
            loopback,
            wireless: false,
            link,
        }
    }

    #[test]
    fn order_and_lines_are_tcpdumps() {
        // In the kernel's order, as on the machine this was written on, whose `tcpdump -D`
        // (libpcap 1.10.3) printed the four lines below.
        let mut all = [
            listed("lo", true, true, true, Link::NotApplicable),
            listed("ifb0", false, false, false, Link::NotApplicable),
            listed("eth0", true, true, false, Link::Connected),
            listed("any", true, true, false, Link::NotApplicable),
        ];
        all.sort_by_key(Listed::merit);
        let lines: Vec<String> = all.iter().enumerate().map(|(i, l)| l.line(i + 1)).collect();
        assert_eq!(
            lines,
            [
                "1.eth0 [Up, Running, Connected]",
                "2.any (Pseudo-device that captures on all interfaces) [Up, Running]",
                "3.lo [Up, Running, Loopback]",
                "4.ifb0 [none]",
            ]
        );
        // A disconnected interface goes after loopback; one that is up but not running
        // after both.
        let mut all = [
            listed("veth1", true, false, false, Link::Disconnected),
            listed("lo", true, true, true, Link::NotApplicable),
            listed("veth0", true, true, false, Link::Disconnected),
        ];
        all.sort_by_key(Listed::merit);
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo", "veth0", "veth1"]);
        assert_eq!(all[2].line(3), "3.veth1 [Up, Disconnected]");
    }
}
