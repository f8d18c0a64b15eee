//! Process attribution, the loader's side: load the cgroup hooks that record who owns each NTP
//! socket (see `ntptap-ebpf/src/owners.rs`), attach them to the cgroup v2 root, and fill the
//! `--pid`, `--comm` and `--cgroup` selection maps.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr},
};
use ntptap_common::{
    ATTRIBUTE, ATTRIBUTE_CGROUPS, ATTRIBUTE_COMMS, ATTRIBUTE_INCLUDE, ATTRIBUTE_PIDS,
    ATTRIBUTE_SELECT, COMM_LEN, Endpoint, OWNER_STATS, Owner, OwnerStat, SELECT_ENTRIES,
    SELECT_EXCLUDE, SELECT_INCLUDE, names,
};
use tracing::info;

use super::refusal::Refusal;
use crate::counts::OwnerCounts;

/// One `--pid`, `--comm` or `--cgroup`: what it names, and whether it excludes (`--not-...`,
/// or a `!` before the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Select<T> {
    /// The pid, name or cgroup directory.
    pub value: T,
    /// Whether frames of that owner are left out rather than kept.
    pub exclude: bool,
}

/// Which processes' frames to capture (none given: every process's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--pid`.
    pub pids: Vec<Select<u32>>,
    /// `--comm`: the kernel's `comm`, at most 15 bytes.
    pub comms: Vec<Select<Vec<u8>>>,
    /// `--cgroup`: a cgroup v2 directory; a process in it or below it matches.
    pub cgroups: Vec<Select<PathBuf>>,
}

impl Selection {
    /// Whether any selection is given.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.comms.is_empty() && self.cgroups.is_empty()
    }

    /// The `ATTRIBUTE*` flags for the programs' configuration, with attribution on.
    #[must_use]
    pub fn flags(&self) -> u32 {
        let mut flags = ATTRIBUTE;
        if self.is_empty() {
            return flags;
        }
        flags |= ATTRIBUTE_SELECT;
        let include = self.pids.iter().any(|s| !s.exclude)
            || self.comms.iter().any(|s| !s.exclude)
            || self.cgroups.iter().any(|s| !s.exclude);
        for (set, flag) in [
            (!self.pids.is_empty(), ATTRIBUTE_PIDS),
            (!self.comms.is_empty(), ATTRIBUTE_COMMS),
            (!self.cgroups.is_empty(), ATTRIBUTE_CGROUPS),
            (include, ATTRIBUTE_INCLUDE),
        ] {
            if set {
                flags |= flag;
            }
        }
        flags
    }

    /// The selection in words, for `-v`.
    #[must_use]
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        let not = |exclude: bool| if exclude { "not " } else { "" };
        for s in &self.pids {
            parts.push(format!("{}pid {}", not(s.exclude), s.value));
        }
        for s in &self.comms {
            parts.push(format!(
                "{}comm {}",
                not(s.exclude),
                crate::process::escape(&s.value)
            ));
        }
        for s in &self.cgroups {
            parts.push(format!("{}cgroup {}", not(s.exclude), s.value.display()));
        }
        parts.join(", ")
    }
}

/// Which attribution hooks to attach beside the default ones (post_bind, connect,
/// sock_release).
#[derive(Clone, Copy, Debug, Default)]
pub struct Hooks {
    /// `--latency`: sendmsg and recvmsg, which stamp each NTP socket's calls.
    pub latency: bool,
    /// sock_create: every UDP socket's creator.
    pub every_socket: bool,
}

/// The attribution hooks' maps; the hooks themselves stay in the [`Ebpf`] they were loaded
/// from, attached to the cgroup v2 root until it is dropped (each through a BPF link owned by
/// this process, so even SIGKILL detaches them).
pub struct OwnerHooks {
    /// Socket owners (an LRU hash map), read for the count of live entries.
    owners: HashMap<MapData, u64, Owner>,
    stats: PerCpuArray<MapData, u64>,
    /// Kept open: the programs reference them.
    _selection: SelectionMaps,
    /// Where the hooks are attached.
    pub root: CgroupRoot,
    /// Owners of sockets open before the start, by local end (kept open: the capture
    /// programs read it).
    _earlier_map: HashMap<MapData, Endpoint, Owner>,
    /// How many such sockets were found.
    pub earlier: usize,
    /// The same owners, for the reader (see [`Names::earlier`]).
    pub earlier_table: std::collections::HashMap<Endpoint, Owner>,
}

/// The `--pid`, `--comm` and `--cgroup` maps.
struct SelectionMaps {
    _pids: HashMap<MapData, u32, u8>,
    _comms: HashMap<MapData, [u8; COMM_LEN], u8>,
    _cgroups: HashMap<MapData, u64, u8>,
}

impl OwnerHooks {
    /// Load the hooks in `ebpf` (built with attribution on), fill the selection maps, and
    /// attach the hooks to the cgroup v2 root. The error says what is missing.
    pub fn open(
        ebpf: &mut Ebpf,
        selection: &Selection,
        hooks: Hooks,
        ports: &[u16],
    ) -> anyhow::Result<Self> {
        let Hooks {
            latency,
            every_socket,
        } = hooks;
        let cgroup = cgroup2_root()?;
        let root = cgroup.path.clone();
        let selection_maps = fill_selection(ebpf, selection, &root)?;
        let dir = std::fs::File::open(&root)
            .with_context(|| format!("cannot open the cgroup v2 root {}", root.display()))?;
        // Through BPF links (Linux 5.7), which the kernel always runs beside other programs
        // on the cgroup; it refuses the attach flags there, so the mode must be `Single` (0).
        let mode = CgroupAttachMode::Single;
        // Once per socket; with --latency, also on every UDP send to an address and read
        // with one (they stamp those calls).
        let calls: &[(&str, &str)] = if latency {
            &names::OWNER_CALL_PROGRAMS
        } else {
            &[]
        };
        let create: &[(&str, &str)] = if every_socket {
            &[names::OWNER_CREATE]
        } else {
            &[]
        };
        for &(name, hook) in names::OWNER_PROGRAMS.iter().chain(create).chain(calls) {
            let program = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?;
            if let Ok(p) = <&mut CgroupSockAddr>::try_from(&mut *program) {
                load_and(name, hook, p.load(), || p.attach(&dir, mode).map(drop))?;
            } else {
                let p = <&mut CgroupSock>::try_from(program)?;
                load_and(name, hook, p.load(), || p.attach(&dir, mode).map(drop))?;
            }
        }
        if latency {
            // --latency: the queue stamp, at the socket filter's point of every local socket.
            let name = names::SOCK_QUEUE;
            let p: &mut CgroupSkb = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("the BPF object has no program {name}"))?
                .try_into()?;
            load_and(name, "skb ingress", p.load(), || {
                p.attach(&dir, CgroupSkbAttachType::Ingress, mode).map(drop)
            })?;
        }
        info!(root = %root.display(), "attribution hooks attached");
        // Now that new sockets are recorded: the ones opened before.
        let mut earlier_map: HashMap<MapData, Endpoint, Owner> =
            HashMap::try_from(take(ebpf, names::EARLIER)?)?;
        let earlier_table = fill_earlier(&mut earlier_map, selection, &root, ports);
        let earlier = earlier_table.len();
        Ok(Self {
            owners: HashMap::try_from(take(ebpf, names::OWNERS)?)?,
            stats: PerCpuArray::try_from(take(ebpf, names::OWNER_STATS)?)?,
            _selection: selection_maps,
            root: cgroup,
            _earlier_map: earlier_map,
            earlier,
            earlier_table,
        })
    }

    /// What the hooks counted so far.
    pub fn counts(&self) -> anyhow::Result<OwnerCounts> {
        let mut sums = [0u64; OWNER_STATS as usize];
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum = self
                .stats
                .get(&(i as u32), 0)
                .context("cannot read the attribution counters")?
                .iter()
                .sum();
        }
        Ok(OwnerCounts {
            recorded: sums[OwnerStat::Recorded as usize],
            changed: sums[OwnerStat::Changed as usize],
            released: sums[OwnerStat::Released as usize],
            earlier_sockets: self.earlier as u64,
            earlier_frames: sums[OwnerStat::Earlier as usize],
            live: self.owners.keys().flatten().count() as u64,
        })
    }
}

/// Load one hook, then attach it; the errors say which hook and what the kernel lacks.
fn load_and(
    name: &str,
    hook: &str,
    loaded: Result<(), aya::programs::ProgramError>,
    attach: impl FnOnce() -> Result<(), aya::programs::ProgramError>,
) -> anyhow::Result<()> {
    if let Err(e) = loaded {
        bail!(
            "the kernel refused the cgroup/{hook} hook ({}); NTPTAP_LOG=debug shows the verifier's \
             log",
            Refusal::of(name, &e)
        );
    }
    attach().map_err(|e| {
        let errno = match &e {
            aya::programs::ProgramError::SyscallError(s) => format!(": {}", s.io_error),
            _ => String::new(),
        };
        anyhow!("cannot attach the cgroup/{hook} hook: {e}{errno}")
    })
}

/// Record the owners of the UDP sockets of this network namespace that were open before the
/// start (see [`super::earlier`]); those recorded. A socket that cannot be placed (its holder
/// gone, the map full) is left to the hooks: its frames show `unowned` until its owner binds
/// or connects it again.
fn fill_earlier(
    map: &mut HashMap<MapData, Endpoint, Owner>,
    selection: &Selection,
    root: &Path,
    ports: &[u16],
) -> std::collections::HashMap<Endpoint, Owner> {
    use super::earlier;
    let proc = Path::new("/proc");
    let mut rows = Vec::new();
    for (file, family) in [("/proc/self/net/udp", 4), ("/proc/self/net/udp6", 6)] {
        if let Ok(text) = std::fs::read_to_string(file) {
            rows.extend(earlier::parse(&text, family));
        }
    }
    // Every UDP socket: a client's unconnected socket on a port of its own says nothing of
    // NTP until it sends. The port set's first, should the map fill.
    rows.sort_by_key(|r| !earlier::on_ports(r, ports));
    rows.truncate(ntptap_common::EARLIER_ENTRIES as usize);
    let inodes: std::collections::HashSet<u64> = rows.iter().map(|r| r.inode).collect();
    let holders = earlier::holders(proc, &inodes);
    let netns_cookie = own_netns_cookie().unwrap_or(0);
    let mut recorded = std::collections::HashMap::new();
    for row in rows {
        let Some(&pid) = holders.get(&row.inode) else {
            continue;
        };
        let comm = earlier::comm(proc, pid);
        let cgroup = earlier::cgroup_path(proc, pid);
        let cgroup_ids = cgroup
            .as_deref()
            .map_or_else(Vec::new, |p| cgroup_ids(root, p));
        let owner = Owner {
            pid,
            tid: pid,
            uid: row.uid,
            select: select_bits(selection, root, pid, &comm, &cgroup_ids),
            cgroup_id: cgroup_ids.first().copied().unwrap_or(0),
            netns_cookie,
            comm,
        };
        match map.insert(row.local, owner, 0) {
            Ok(()) => {
                recorded.insert(row.local, owner);
            }
            Err(e) => {
                tracing::warn!(
                    "a socket open before the start ({}:{}, pid {pid}) is not recorded: {e}",
                    earlier::address(&row.local),
                    row.local.port
                );
                break;
            }
        }
    }
    recorded
}

/// The ids of cgroup `path` (relative to the hierarchy's `root`) and of each directory above
/// it, nearest first.
fn cgroup_ids(root: &Path, path: &str) -> Vec<u64> {
    let mut dir = root.join(path.trim_start_matches('/'));
    let mut ids = Vec::new();
    while dir.starts_with(root) {
        if let Ok(meta) = std::fs::metadata(&dir) {
            ids.push(meta.ino());
        }
        if dir == root || !dir.pop() {
            break;
        }
    }
    ids
}

/// What the kernel hooks compute for a recorded owner (`SELECT_*`), in user space.
fn select_bits(
    selection: &Selection,
    root: &Path,
    pid: u32,
    comm: &[u8; COMM_LEN],
    cgroups: &[u64],
) -> u32 {
    let mut select = 0;
    let mut fold = |matches: bool, exclude: bool| {
        if matches {
            select |= if exclude {
                ntptap_common::SELECT_EXCLUDED
            } else {
                ntptap_common::SELECT_INCLUDED
            };
        }
    };
    for s in &selection.pids {
        fold(s.value == pid, s.exclude);
    }
    for s in &selection.comms {
        fold(comm_key(&s.value).is_ok_and(|k| &k == comm), s.exclude);
    }
    for s in &selection.cgroups {
        let id = cgroup_id(root, &s.value).ok();
        fold(id.is_some_and(|id| cgroups.contains(&id)), s.exclude);
    }
    select
}

fn take(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("the BPF object has no map {name}"))
}

/// The selection maps, filled.
fn fill_selection(
    ebpf: &mut Ebpf,
    selection: &Selection,
    root: &Path,
) -> anyhow::Result<SelectionMaps> {
    let value = |exclude: bool| {
        if exclude {
            SELECT_EXCLUDE
        } else {
            SELECT_INCLUDE
        }
    };
    let limit = SELECT_ENTRIES as usize;
    if selection.pids.len() > limit
        || selection.comms.len() > limit
        || selection.cgroups.len() > limit
    {
        bail!("at most {limit} each of --pid, --comm and --cgroup");
    }
    let mut pids: HashMap<MapData, u32, u8> = HashMap::try_from(take(ebpf, names::SELECT_PIDS)?)?;
    for s in &selection.pids {
        pids.insert(s.value, value(s.exclude), 0)
            .with_context(|| format!("cannot add --pid {}", s.value))?;
    }
    let mut comms: HashMap<MapData, [u8; COMM_LEN], u8> =
        HashMap::try_from(take(ebpf, names::SELECT_COMMS)?)?;
    for s in &selection.comms {
        comms
            .insert(comm_key(&s.value)?, value(s.exclude), 0)
            .context("cannot add a --comm")?;
    }
    let mut cgroups: HashMap<MapData, u64, u8> =
        HashMap::try_from(take(ebpf, names::SELECT_CGROUPS)?)?;
    for s in &selection.cgroups {
        cgroups
            .insert(cgroup_id(root, &s.value)?, value(s.exclude), 0)
            .context("cannot add a --cgroup")?;
    }
    Ok(SelectionMaps {
        _pids: pids,
        _comms: comms,
        _cgroups: cgroups,
    })
}

/// A `--comm` as the kernel keeps it: at most 15 bytes, NUL-padded to 16.
pub fn comm_key(name: &[u8]) -> anyhow::Result<[u8; COMM_LEN]> {
    if name.is_empty() || name.len() >= COMM_LEN || name.contains(&0) {
        bail!(
            "--comm {:?}: a process name (comm) has 1 to 15 bytes and no NUL; the kernel cuts \
             longer names to their first 15 bytes, so give those",
            String::from_utf8_lossy(name)
        );
    }
    let mut key = [0; COMM_LEN];
    key[..name.len()].copy_from_slice(name);
    Ok(key)
}

/// The id of cgroup directory `path`: absolute (under where this host mounts cgroup v2, even
/// if this mount namespace does not), or relative to the cgroup v2 root `root`.
fn cgroup_id(root: &Path, path: &Path) -> anyhow::Result<u64> {
    let mounts: Vec<PathBuf> = ["/proc/self/mountinfo", "/proc/1/mountinfo"]
        .iter()
        .filter_map(|f| cgroup2_root_in(&std::fs::read_to_string(f).unwrap_or_default()))
        .collect();
    let relative = mounts
        .iter()
        .find_map(|m| path.strip_prefix(m).ok())
        .unwrap_or_else(|| path.strip_prefix("/").unwrap_or(path));
    let dir = if path.starts_with(root) {
        path.to_path_buf()
    } else {
        root.join(relative)
    };
    let meta = std::fs::metadata(&dir).with_context(|| {
        format!(
            "--cgroup {}: no such cgroup v2 directory (looked for {}); give a directory under {}, \
             or its path relative to it such as /system.slice/chrony.service",
            path.display(),
            dir.display(),
            root.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "--cgroup {}: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    Ok(meta.ino())
}

/// The cgroup v2 hierarchy's root directory, as this process's cgroup namespace sees it.
pub struct CgroupRoot {
    /// Its path: `/sys/fs/cgroup` on most hosts, `/sys/fs/cgroup/unified` on hybrid ones, or
    /// `/proc/self/fd/N` for a private mount (see [`cgroup2_root`]).
    pub path: PathBuf,
    /// The private mount's directory, held open.
    _dir: Option<std::fs::File>,
}

/// Find the cgroup v2 hierarchy: where this mount namespace has it, or else (`ip netns exec`
/// remounts /sys without it) a private mount of it, detached at once and reached through a
/// directory descriptor, so nothing stays mounted.
pub fn cgroup2_root() -> anyhow::Result<CgroupRoot> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo to find the cgroup v2 hierarchy")?;
    if let Some(path) = cgroup2_root_in(&mountinfo) {
        return Ok(CgroupRoot { path, _dir: None });
    }
    private_cgroup2().context(
        "no cgroup v2 hierarchy is mounted, and mounting one failed: process attribution \
         attaches its hooks to it (mount it with `mount -t cgroup2 none /sys/fs/cgroup`)",
    )
}

/// Mount cgroup2 on a temporary directory, open it, and detach the mount.
fn private_cgroup2() -> anyhow::Result<CgroupRoot> {
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    let tmp = tempfile::tempdir().context("cannot make a directory to mount cgroup2 on")?;
    mount(
        Some("cgroup2"),
        tmp.path(),
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mount -t cgroup2")?;
    let dir = std::fs::File::open(tmp.path());
    let _ = umount2(tmp.path(), MntFlags::MNT_DETACH);
    let dir = dir.context("cannot open the cgroup2 mount")?;
    let path = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ));
    Ok(CgroupRoot {
        path,
        _dir: Some(dir),
    })
}

/// The cgroup2 mount whose root is the hierarchy's root, from mountinfo's text.
fn cgroup2_root_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        let mut rest = rest.split(' ');
        if rest.next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = fields.split(' ').collect();
        let mount = fields.get(4)?;
        (fields.get(3) == Some(&"/")).then(|| PathBuf::from(unescape_mount(mount)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Names for the ids the kernel gives: a cgroup id's path (and the container it names), a
/// network namespace cookie's inode number. Read from cgroupfs and `/proc` on a first sight,
/// then cached; never per packet, and bounded whatever the host does.
pub struct Names {
    root: Option<PathBuf>,
    cgroups: std::collections::HashMap<u64, std::sync::Arc<CgroupFacts>>,
    /// The cgroup and the namespace last asked for: a flood's frames ask for the same ones,
    /// and hashing the ids took a third of the reader's time under an NTP flood (perf).
    last_cgroup: Option<(u64, std::sync::Arc<CgroupFacts>)>,
    last_netns: Option<(u64, u64)>,
    /// When cgroupfs was last walked for an id not in `cgroups`.
    scanned: Option<std::time::Instant>,
    netns: std::collections::HashMap<u64, u64>,
    /// Processes whose namespace could not be read (gone): not tried again.
    tried: std::collections::HashSet<u32>,
    /// The owners of the sockets open at the start, by local end (as `NTPTAP_EARLIER`).
    earlier: std::collections::HashMap<Endpoint, Owner>,
}

/// What a cgroup says of its processes: its path, the container it names, and what the
/// container's runtime calls it.
#[derive(Clone, Debug, Default)]
pub struct CgroupFacts {
    /// The path under the cgroup v2 root.
    pub path: String,
    /// `podman:1e21be5f30fd`, `systemd:chrony.service`, ...
    pub container: Option<String>,
    /// The runtime's names for the container.
    pub names: Option<crate::containers::ContainerNames>,
}

/// Most cgroups and namespaces kept by name; past it the cache starts over.
const NAMES_KEPT: usize = 65536;
/// Most often cgroupfs is walked for an unknown cgroup id.
const RESCAN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Names {
    /// Names under the cgroup v2 hierarchy at `root` (none: cgroup ids stay bare).
    #[must_use]
    pub fn new(root: Option<PathBuf>) -> Self {
        let mut netns = std::collections::HashMap::new();
        // ntptap's own namespace, known even when its sockets' owners are gone.
        if let (Some(cookie), Ok(meta)) =
            (own_netns_cookie(), std::fs::metadata("/proc/self/ns/net"))
        {
            netns.insert(cookie, meta.ino());
        }
        Self {
            root,
            cgroups: std::collections::HashMap::new(),
            last_cgroup: None,
            last_netns: None,
            scanned: None,
            netns,
            tried: std::collections::HashSet::new(),
            earlier: std::collections::HashMap::new(),
        }
    }

    /// These names, knowing the owners of the sockets open at the start.
    #[must_use]
    pub fn with_earlier(mut self, earlier: std::collections::HashMap<Endpoint, Owner>) -> Self {
        self.earlier = earlier;
        self
    }

    /// The owner of a frame's socket that was open at the start, by the frame's local end
    /// (its source going out, its destination coming in): with the address, then bound to
    /// every address.
    #[must_use]
    pub fn earlier(&self, direction: u8, frame: &[u8]) -> Option<Owner> {
        use crate::net::{Net, Transport};
        if self.earlier.is_empty() {
            return None;
        }
        let d = crate::net::dissect(crate::frame::LinkType::Ethernet, frame);
        let (Some(Net::Ip { src, dst, .. }), Some(Transport::Udp { sport, dport, .. })) =
            (d.net, d.transport)
        else {
            return None;
        };
        let (addr, port) = if direction == ntptap_common::DIRECTION_EGRESS {
            (src, sport)
        } else {
            (dst, dport)
        };
        let mut key = Endpoint {
            port,
            ..Endpoint::default()
        };
        match addr {
            std::net::IpAddr::V4(v4) => {
                key.family = 4;
                key.addr[..4].copy_from_slice(&v4.octets());
            }
            std::net::IpAddr::V6(v6) => {
                key.family = 6;
                key.addr = v6.octets();
            }
        }
        if let Some(owner) = self.earlier.get(&key) {
            return Some(*owner);
        }
        key.addr = [0; 16];
        self.earlier.get(&key).copied()
    }

    /// What cgroup `id` says: its path under the root, the container it names and the
    /// container's names.
    pub fn cgroup(&mut self, id: u64) -> Option<&CgroupFacts> {
        if self
            .last_cgroup
            .as_ref()
            .is_none_or(|(last, _)| *last != id)
        {
            if !self.cgroups.contains_key(&id) {
                self.scan();
            }
            let facts = self.cgroups.get(&id)?;
            self.last_cgroup = Some((id, std::sync::Arc::clone(facts)));
        }
        self.last_cgroup.as_ref().map(|(_, facts)| &**facts)
    }

    /// Walk cgroupfs, at most once per [`RESCAN_AFTER`].
    fn scan(&mut self) {
        let Some(root) = &self.root else { return };
        if self.scanned.is_some_and(|t| t.elapsed() < RESCAN_AFTER) {
            return;
        }
        self.scanned = Some(std::time::Instant::now());
        if self.cgroups.len() > NAMES_KEPT {
            self.cgroups.clear();
        }
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let path = match dir.strip_prefix(root) {
                Ok(rel) => format!("/{}", rel.display()),
                Err(_) => continue,
            };
            // Known already: its names were looked up when it was first seen.
            if let std::collections::hash_map::Entry::Vacant(slot) = self.cgroups.entry(meta.ino())
            {
                let container = crate::process::container_of(&path);
                let names = crate::process::container_id_of(&path)
                    .and_then(|(runtime, id)| crate::containers::names(runtime, id));
                slot.insert(std::sync::Arc::new(CgroupFacts {
                    path,
                    container,
                    names,
                }));
            }
            if self.cgroups.len() > NAMES_KEPT {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }

    /// The inode number of the network namespace whose cookie is `cookie`, learnt from the
    /// namespace of process `pid` the first time one of its sockets is seen.
    pub fn netns(&mut self, cookie: u64, pid: u32) -> Option<u64> {
        if let Some((last, inode)) = self.last_netns
            && last == cookie
        {
            return Some(inode);
        }
        if let Some(&inode) = self.netns.get(&cookie) {
            self.last_netns = Some((cookie, inode));
            return Some(inode);
        }
        if self.tried.contains(&pid) {
            return None;
        }
        if self.tried.len() > NAMES_KEPT {
            self.tried.clear();
        }
        self.tried.insert(pid);
        let inode = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?.ino();
        if self.netns.len() > NAMES_KEPT {
            self.netns.clear();
        }
        self.netns.insert(cookie, inode);
        Some(inode)
    }
}

/// The cookie of this process's network namespace (`SO_NETNS_COOKIE`, Linux 5.14).
fn own_netns_cookie() -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`, a u64 we own.
    let ret = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    (ret == 0).then_some(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_root_on_hybrid_and_unified_hosts() {
        let hybrid = "25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(
            cgroup2_root_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 20 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw";
        assert_eq!(
            cgroup2_root_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A container's bind mount of a subtree is not the root.
        let sub = "40 20 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        assert_eq!(cgroup2_root_in(sub), None);
        assert_eq!(cgroup2_root_in("1 0 8:1 / / rw - ext4 /dev/sda1 rw"), None);
    }

    #[test]
    fn selection_flags_follow_what_was_given() {
        let none = Selection::default();
        assert_eq!(none.flags(), ATTRIBUTE);
        let only_not = Selection {
            comms: vec![Select {
                value: b"chronyd".to_vec(),
                exclude: true,
            }],
            ..Selection::default()
        };
        assert_eq!(
            only_not.flags(),
            ATTRIBUTE | ATTRIBUTE_SELECT | ATTRIBUTE_COMMS
        );
        let pid = Selection {
            pids: vec![Select {
                value: 7,
                exclude: false,
            }],
            ..Selection::default()
        };
        assert_eq!(
            pid.flags(),
            ATTRIBUTE | ATTRIBUTE_SELECT | ATTRIBUTE_PIDS | ATTRIBUTE_INCLUDE
        );
    }

    #[test]
    fn comm_keys_are_bounded_like_the_kernels() {
        assert_eq!(&comm_key(b"chronyd").unwrap()[..8], b"chronyd\0");
        assert!(comm_key(b"").is_err());
        assert!(comm_key(b"sixteen-bytes-xx").is_err());
        assert!(comm_key(b"a\0b").is_err());
        assert!(comm_key(b"fifteen-bytes-x").is_ok());
    }
}
