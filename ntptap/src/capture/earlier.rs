//! The sockets that were open before ntptap started, and who holds them, as `ss -p` finds
//! them: `/proc/net/udp` and `udp6` list this network namespace's UDP sockets with their
//! inodes, `/proc/PID/fd` links name the processes that hold each inode. The kernel hooks
//! record a socket's owner when it is created, bound or connected; a daemon started before
//! ntptap did all that already, so without this its frames would have no owner until it
//! opens a new socket. Done once at start, for every UDP socket (a client's unconnected one
//! says nothing of NTP until it sends), those on the port set first; never on the packet
//! path. Every name read from `/proc` is a process's own bytes: kept as bytes,
//! escaped where shown.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::Path,
};

use ntptap_common::{COMM_LEN, Endpoint};

/// One line of `/proc/net/udp` or `udp6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The local end, as the kernel programs look it up.
    pub local: Endpoint,
    /// The remote port (0 for an unconnected socket).
    pub remote_port: u16,
    /// The socket's owner's user id.
    pub uid: u32,
    /// The socket's inode (`socket:[N]` in `/proc/PID/fd`).
    pub inode: u64,
}

/// The rows of a `/proc/net/udp` (`family` 4) or `/proc/net/udp6` (6) text; malformed lines
/// are skipped.
#[must_use]
pub fn parse(text: &str, family: u8) -> Vec<Row> {
    text.lines()
        .skip(1)
        .filter_map(|l| row(l, family))
        .collect()
}

fn row(line: &str, family: u8) -> Option<Row> {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, remote) = (fields.get(1)?, fields.get(2)?);
    let (addr, port) = endpoint(local, family)?;
    let (_, remote_port) = endpoint(remote, family)?;
    Some(Row {
        local: Endpoint {
            addr,
            port,
            family,
            pad: 0,
        },
        remote_port,
        uid: fields.get(7)?.parse().ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// `0100007F:007B`: the address as the kernel prints it (each 32-bit word of it as a native
/// integer, in hex), then the port in hex. The address comes back as on the wire.
fn endpoint(text: &str, family: u8) -> Option<([u8; 16], u16)> {
    let (addr, port) = text.split_once(':')?;
    let words = match family {
        4 => 1,
        6 => 4,
        _ => return None,
    };
    if addr.len() != 8 * words {
        return None;
    }
    let mut out = [0u8; 16];
    for i in 0..words {
        let word = u32::from_str_radix(addr.get(8 * i..8 * i + 8)?, 16).ok()?;
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some((out, u16::from_str_radix(port, 16).ok()?))
}

/// For each of `inodes`, the lowest pid among the processes that hold it (a socket inherited
/// over fork is held by several), from `/proc/PID/fd` under `proc`. Processes that go away
/// or whose fds cannot be read are passed over.
#[must_use]
pub fn holders<S: std::hash::BuildHasher>(
    proc: &Path,
    inodes: &HashSet<u64, S>,
) -> HashMap<u64, u32> {
    let mut found: HashMap<u64, u32> = HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    let Ok(entries) = std::fs::read_dir(proc) else {
        return found;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(proc.join(pid.to_string()).join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if inodes.contains(&inode) {
                found.entry(inode).or_insert(pid);
            }
        }
        if found.len() == inodes.len() {
            break;
        }
    }
    found
}

/// Process `pid`'s `comm` under `proc`, as the kernel keeps it (at most 15 bytes, NUL-padded).
#[must_use]
pub fn comm(proc: &Path, pid: u32) -> [u8; COMM_LEN] {
    let mut out = [0u8; COMM_LEN];
    if let Ok(bytes) = std::fs::read(proc.join(pid.to_string()).join("comm")) {
        let name = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let n = name.len().min(COMM_LEN - 1);
        out[..n].copy_from_slice(&name[..n]);
    }
    out
}

/// Process `pid`'s cgroup v2 path (`0::/system.slice/chrony.service`), relative to the
/// hierarchy's root.
#[must_use]
pub fn cgroup_path(proc: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Whether a socket with this row is NTP's: bound to a port of `ports`, or connected to one.
#[must_use]
pub fn on_ports(row: &Row, ports: &[u16]) -> bool {
    ports.contains(&row.local.port) || (row.remote_port != 0 && ports.contains(&row.remote_port))
}

/// The address of an endpoint, for messages.
#[must_use]
pub fn address(e: &Endpoint) -> IpAddr {
    if e.family == 4 {
        IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]])
    } else {
        IpAddr::from(e.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  415: 0100007F:007B 00000000:0000 07 00000000:00000000 00:00000000 00000000   123        0 48213 2 0000000000000000 0
  900: 0200CB0A:A1B2 0100CB0A:007B 01 00000000:00000000 00:00000000 00000000     0        0 48999 2 0000000000000000 0
  901: garbage
";

    #[test]
    fn proc_net_udp_lines_give_the_wire_address_and_host_port() {
        let rows = parse(UDP, 4);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            address(&rows[0].local),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!((rows[0].local.port, rows[0].remote_port), (123, 0));
        assert_eq!((rows[0].uid, rows[0].inode), (123, 48213));
        assert_eq!(
            address(&rows[1].local),
            "10.203.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!((rows[1].local.port, rows[1].remote_port), (41394, 123));
        assert!(on_ports(&rows[0], &[123]) && on_ports(&rows[1], &[123]));
        assert!(!on_ports(&rows[1], &[4460]));
    }

    #[test]
    fn proc_net_udp6_words_are_native_integers() {
        // ::1 on little-endian hosts: the last word's bytes 00 00 00 01 read as 0x01000000.
        let word = u32::from_ne_bytes([0, 0, 0, 1]);
        let text = format!(
            "head\n 1: 00000000000000000000000000000000:007B 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 7 2\n 2: 000000000000000000000000{word:08X}:0050 00000000000000000000000000000000:0000 07 0:0 0:0 0 0 0 8 2\n"
        );
        let rows = parse(&text, 6);
        assert_eq!(address(&rows[0].local), "::".parse::<IpAddr>().unwrap());
        assert_eq!(address(&rows[1].local), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(rows[1].inode, 8);
    }

    #[test]
    fn the_holder_of_a_socket_is_found_by_its_fd_link() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, links) in [
            (40u32, &["socket:[7]", "pipe:[3]"][..]),
            (12, &["socket:[7]"]),
        ] {
            let fd = dir.path().join(pid.to_string()).join("fd");
            std::fs::create_dir_all(&fd).unwrap();
            for (i, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, fd.join(i.to_string())).unwrap();
            }
            std::fs::write(dir.path().join(pid.to_string()).join("comm"), b"chronyd\n").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        let found = holders(dir.path(), &HashSet::from([7, 9]));
        assert_eq!(found, HashMap::from([(7, 12)]), "the lowest pid holding it");
        assert_eq!(&comm(dir.path(), 12)[..8], b"chronyd\0");
    }
}
