//! Who owns a frame's socket: the facts process attribution gives each frame, how they are
//! written (text, pcapng comments) and read back from a capture file.
//!
//! Process names and cgroup paths are untrusted bytes (any process can name itself
//! `\x1b[2J` or `pid=1`): [`escape`] makes them printable, unambiguous and reversible.

use std::fmt::Write as _;

/// What is known of the socket that sent a frame or takes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Socket<'a> {
    /// Attribution is off, or the frame comes from a capture that does not say.
    #[default]
    Unknown,
    /// No local socket: on ingress, nobody listens on the destination (the daemon is down,
    /// or a reply came after its client closed the socket); on egress, a frame the host
    /// forwards or the kernel made.
    None,
    /// A local socket whose owner ntptap did not see: opened before ntptap started and not
    /// used for a connect, send, bind or read with an address since.
    Unowned,
    /// A local socket, and its owner.
    Owned(Process<'a>),
}

impl Socket<'_> {
    /// The JSON `socket` value: `"none"`, `"unowned"` or `"owned"` (`None` when unknown).
    #[must_use]
    pub fn label(&self) -> Option<&'static str> {
        match self {
            Socket::Unknown => None,
            Socket::None => Some("none"),
            Socket::Unowned => Some("unowned"),
            Socket::Owned(_) => Some("owned"),
        }
    }

    /// The owner, if known.
    #[must_use]
    pub fn process(&self) -> Option<&Process<'_>> {
        match self {
            Socket::Owned(p) => Some(p),
            _ => None,
        }
    }
}

/// The process that owns a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process<'a> {
    /// Process id (thread group id), in the host's PID namespace.
    pub pid: u32,
    /// The thread that used the socket.
    pub tid: u32,
    /// Its user id.
    pub uid: u32,
    /// Its `comm`, without NUL padding: untrusted bytes.
    pub comm: &'a [u8],
    /// Its cgroup v2 id.
    pub cgroup_id: u64,
    /// Its cgroup's path under the cgroup v2 root, when known.
    pub cgroup: Option<&'a str>,
    /// The container its cgroup names, when it names one.
    pub container: Option<&'a str>,
    /// What the container's runtime calls it (podman, CRI-O, Docker), and Kubernetes' pod
    /// and namespace, when it says.
    pub names: Option<&'a crate::containers::ContainerNames>,
    /// The inode number of the socket's network namespace (as `ls -L -i /proc/PID/ns/net`
    /// shows it), when known.
    pub netns: Option<u64>,
}

impl Process<'_> {
    /// `comm[pid]`, escaped: the one-line form (`--process`).
    #[must_use]
    pub fn short(&self) -> String {
        format!("{}[{}]", escape(self.comm), self.pid)
    }

    /// The facts as `key=value` pairs, values escaped: the `-v` line and the pcapng comment.
    #[must_use]
    pub fn pairs(&self) -> String {
        let mut s = format!("pid={}", self.pid);
        if self.tid != self.pid {
            let _ = write!(s, " tid={}", self.tid);
        }
        let _ = write!(
            s,
            " comm={} uid={} cgroup_id={}",
            escape(self.comm),
            self.uid,
            self.cgroup_id
        );
        if let Some(cgroup) = self.cgroup {
            let _ = write!(s, " cgroup={}", escape(cgroup.as_bytes()));
        }
        if let Some(container) = self.container {
            let _ = write!(s, " container={}", escape(container.as_bytes()));
        }
        if let Some(names) = self.names {
            let _ = write!(s, " container_name={}", escape(names.name.as_bytes()));
            if let Some((pod, namespace)) = &names.pod {
                let _ = write!(
                    s,
                    " pod={} pod_namespace={}",
                    escape(pod.as_bytes()),
                    escape(namespace.as_bytes())
                );
            }
        }
        if let Some(netns) = self.netns {
            let _ = write!(s, " netns={netns}");
        }
        s
    }

    /// The pcapng comments for this owner: ntptap's `key=value` line, then the facts in the
    /// form ptcpdump writes (`PID:`, `Cmd:`, ...), so readers of either find them.
    #[must_use]
    pub fn comments(&self) -> Vec<String> {
        let comm = escape(self.comm);
        let mut comments = vec![
            format!("{PREFIX}{}", self.pairs()),
            format!("PID: {}\nCmd: {comm}\nArgs: ", self.pid),
        ];
        if self.tid != self.pid {
            comments.push(format!("ThreadId: {}\nThreadName: {comm}", self.tid));
        }
        comments.push(format!("UserId: {}", self.uid));
        if let Some(container) = self.container {
            comments.push(format!("ContainerId: {}", escape(container.as_bytes())));
        }
        if let Some(names) = self.names {
            comments.push(format!("ContainerName: {}", escape(names.name.as_bytes())));
            if let Some((pod, namespace)) = &names.pod {
                comments.push(format!(
                    "PodName: {}\nPodNamespace: {}",
                    escape(pod.as_bytes()),
                    escape(namespace.as_bytes())
                ));
            }
        }
        comments
    }
}

/// What starts ntptap's owner comment in pcapng.
pub const PREFIX: &str = "ntptap: ";
/// The comment ntptap writes on an ingress frame no socket takes.
pub const NO_SOCKET: &str = "ntptap: socket=none";
/// The comment ntptap writes on a frame whose socket's owner is not known.
pub const UNOWNED: &str = "ntptap: socket=unowned";

/// The pcapng comments for a frame's socket.
#[must_use]
pub fn comments(socket: &Socket<'_>) -> Vec<String> {
    match socket {
        Socket::Unknown => Vec::new(),
        Socket::None => vec![NO_SOCKET.to_owned()],
        Socket::Unowned => vec![UNOWNED.to_owned()],
        Socket::Owned(p) => p.comments(),
    }
}

/// A [`Process`] read back from a capture file's comment, owning its strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedProcess {
    pid: u32,
    tid: u32,
    uid: u32,
    comm: Vec<u8>,
    cgroup_id: u64,
    cgroup: Option<String>,
    container: Option<String>,
    names: Option<crate::containers::ContainerNames>,
    netns: Option<u64>,
}

impl From<&Process<'_>> for OwnedProcess {
    fn from(p: &Process<'_>) -> Self {
        Self {
            pid: p.pid,
            tid: p.tid,
            uid: p.uid,
            comm: p.comm.to_vec(),
            cgroup_id: p.cgroup_id,
            cgroup: p.cgroup.map(str::to_owned),
            container: p.container.map(str::to_owned),
            names: p.names.cloned(),
            netns: p.netns,
        }
    }
}

/// The pcapng comments of the owner asked for last, kept: a busy socket's frames come one
/// after another, and writing the same owner's comments again for each (escaping, five
/// `format!`s) was 40 % of the reader's CPU with `-w FILE.pcapng` under the bench's flood.
#[derive(Debug, Default)]
pub struct CommentMemo {
    last: Option<(OwnedProcess, Vec<String>)>,
}

impl CommentMemo {
    /// `p`'s comments ([`Process::comments`]), made again only when the owner differs from
    /// the last one's in any fact.
    pub fn comments(&mut self, p: &Process<'_>) -> &[String] {
        if self.last.as_ref().is_none_or(|(o, _)| o.process() != *p) {
            self.last = Some((OwnedProcess::from(p), p.comments()));
        }
        self.last.as_ref().map_or(&[], |(_, c)| c.as_slice())
    }
}

impl OwnedProcess {
    /// The borrowed form frames carry.
    #[must_use]
    pub fn process(&self) -> Process<'_> {
        Process {
            pid: self.pid,
            tid: self.tid,
            uid: self.uid,
            comm: &self.comm,
            cgroup_id: self.cgroup_id,
            cgroup: self.cgroup.as_deref(),
            container: self.container.as_deref(),
            names: self.names.as_ref(),
            netns: self.netns,
        }
    }
}

/// What a frame's comments say of its socket, if ntptap wrote them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReadSocket {
    /// No ntptap comment.
    #[default]
    Unknown,
    /// `socket=none`.
    None,
    /// `socket=unowned`.
    Unowned,
    /// An owner line.
    Owned(OwnedProcess),
}

impl ReadSocket {
    /// Read ntptap's comment among a frame's comments.
    pub fn from_comments<'c>(comments: impl IntoIterator<Item = &'c str>) -> Self {
        for comment in comments {
            if comment == NO_SOCKET {
                return ReadSocket::None;
            }
            if comment == UNOWNED {
                return ReadSocket::Unowned;
            }
            if let Some(pairs) = comment.strip_prefix(PREFIX)
                && let Some(p) = parse_pairs(pairs)
            {
                return ReadSocket::Owned(p);
            }
        }
        ReadSocket::Unknown
    }

    /// The borrowed form frames carry.
    #[must_use]
    pub fn socket(&self) -> Socket<'_> {
        match self {
            ReadSocket::Unknown => Socket::Unknown,
            ReadSocket::None => Socket::None,
            ReadSocket::Unowned => Socket::Unowned,
            ReadSocket::Owned(p) => Socket::Owned(p.process()),
        }
    }
}

/// Parse [`Process::pairs`]' output; `None` unless `pid` and `comm` are there.
fn parse_pairs(pairs: &str) -> Option<OwnedProcess> {
    let mut p = OwnedProcess::default();
    let (mut pid, mut comm) = (None, None);
    let (mut pod, mut namespace) = (None, None);
    for pair in pairs.split(' ') {
        let (key, value) = pair.split_once('=')?;
        match key {
            "pid" => pid = value.parse().ok(),
            "tid" => p.tid = value.parse().ok()?,
            "comm" => comm = Some(unescape(value)?),
            "uid" => p.uid = value.parse().ok()?,
            "cgroup_id" => p.cgroup_id = value.parse().ok()?,
            "cgroup" => p.cgroup = Some(String::from_utf8(unescape(value)?).ok()?),
            "container" => p.container = Some(String::from_utf8(unescape(value)?).ok()?),
            "container_name" => {
                p.names.get_or_insert_default().name = String::from_utf8(unescape(value)?).ok()?;
            }
            "pod" => pod = Some(String::from_utf8(unescape(value)?).ok()?),
            "pod_namespace" => namespace = Some(String::from_utf8(unescape(value)?).ok()?),
            "netns" => p.netns = Some(value.parse().ok()?),
            _ => {}
        }
    }
    if let (Some(pod), Some(namespace)) = (pod, namespace) {
        p.names.get_or_insert_default().pod = Some((pod, namespace));
    }
    p.pid = pid?;
    p.comm = comm?;
    if p.tid == 0 {
        p.tid = p.pid;
    }
    Some(p)
}

/// Printable ASCII stays as it is, except `\`, `=` and space; every other byte becomes
/// `\xNN`. The result has no control characters, no spaces and no `=`, so it is safe on a
/// terminal and in a `key=value` list, and [`unescape`] gives the bytes back.
#[must_use]
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'\\' && b != b'=' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// The bytes [`escape`] was given; `None` for text it cannot have made.
#[must_use]
pub fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = text.get(i + 2..i + 4)?;
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The container a cgroup path names, as the common runtimes and systemd name their scopes:
/// docker (`docker-ID.scope`, `/docker/ID`), containerd (`cri-containerd-ID.scope`), CRI-O
/// (`crio-ID.scope`), podman (`libpod-ID.scope`, or `libpod-ID` under podman's cgroupfs
/// manager); a systemd service's unit name otherwise (`chrony.service`). Ids are cut to 12
/// characters, as `docker ps` shows them.
#[must_use]
pub fn container_of(cgroup: &str) -> Option<String> {
    container_id_of(cgroup)
        .map(|(runtime, id)| format!("{runtime}:{}", &id[..12]))
        .or_else(|| {
            cgroup
                .rsplit('/')
                .find(|p| p.ends_with(".service"))
                .map(|unit| format!("systemd:{unit}"))
        })
}

/// The runtime and the whole id (64 hex digits) of the container a cgroup path names (see
/// [`container_of`]); the innermost one.
#[must_use]
pub fn container_id_of(cgroup: &str) -> Option<(&'static str, &str)> {
    let mut found = None;
    let mut parts = cgroup.split('/').filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        let unit = part.strip_suffix(".scope").unwrap_or(part);
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
            ("libpod-", "podman"),
        ] {
            if let Some(id) = unit.strip_prefix(prefix)
                && is_container_id(id)
            {
                found = Some((runtime, id));
            }
        }
        if part == "docker"
            && let Some(id) = parts.peek()
            && is_container_id(id)
        {
            found = Some(("docker", *id));
        }
    }
    found
}

/// A container id: 64 hex digits.
fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chronyd() -> Process<'static> {
        Process {
            pid: 812,
            tid: 815,
            uid: 104,
            comm: b"chronyd",
            cgroup_id: 4242,
            cgroup: Some("/system.slice/chrony.service"),
            container: Some("systemd:chrony.service"),
            names: None,
            netns: Some(4_026_531_840),
        }
    }

    /// The memo's comments are the owner's own, made again for an owner that differs in
    /// any fact (a new thread, a renamed process, another cgroup or namespace).
    #[test]
    fn the_memo_gives_each_owner_its_own_comments() {
        let names = crate::containers::ContainerNames {
            name: "web".into(),
            pod: Some(("web-0".into(), "prod".into())),
        };
        let base = chronyd();
        let owners = [
            base,
            base,
            Process { tid: 812, ..base },
            Process {
                comm: b"\x1b[2J",
                ..base
            },
            Process { uid: 0, ..base },
            Process {
                cgroup_id: 1,
                ..base
            },
            Process {
                cgroup: None,
                ..base
            },
            Process {
                container: None,
                ..base
            },
            Process {
                names: Some(&names),
                ..base
            },
            Process {
                netns: None,
                ..base
            },
            Process { pid: 1, ..base },
            base,
        ];
        let mut memo = CommentMemo::default();
        for p in &owners {
            assert_eq!(memo.comments(p), p.comments().as_slice(), "{p:?}");
        }
    }

    #[test]
    fn hostile_names_are_escaped_and_come_back() {
        for name in [
            &b"\x1b[2Jpid=1 uid=0"[..],
            b"a\\x41",
            b"\xff\xfe",
            b"",
            b"chronyd",
        ] {
            let text = escape(name);
            assert!(
                text.bytes().all(|b| b.is_ascii_graphic() && b != b'='),
                "{text}"
            );
            assert_eq!(unescape(&text).as_deref(), Some(name), "{text}");
        }
        assert_eq!(unescape("\\x4"), None);
        assert_eq!(unescape("\\y41"), None);
    }

    #[test]
    fn an_owner_comment_reads_back_as_written() {
        let p = chronyd();
        let comments = p.comments();
        assert_eq!(
            comments[0],
            "ntptap: pid=812 tid=815 comm=chronyd uid=104 cgroup_id=4242 \
             cgroup=/system.slice/chrony.service container=systemd:chrony.service netns=4026531840"
        );
        assert_eq!(comments[1], "PID: 812\nCmd: chronyd\nArgs: ");
        let read = ReadSocket::from_comments(comments.iter().map(String::as_str));
        assert_eq!(read.socket(), Socket::Owned(p));
        let hostile = Process {
            comm: b"x pid=9\ncomm=y",
            tid: 812,
            cgroup: None,
            container: None,
            names: None,
            netns: None,
            ..p
        };
        let read = ReadSocket::from_comments(hostile.comments().iter().map(String::as_str));
        assert_eq!(read.socket(), Socket::Owned(hostile));
        assert_eq!(
            ReadSocket::from_comments([NO_SOCKET]).socket(),
            Socket::None
        );
        assert_eq!(
            ReadSocket::from_comments(["ntptap: pid=x comm=a", "hello"]).socket(),
            Socket::Unknown
        );
    }

    #[test]
    fn containers_are_named_from_cgroup_paths() {
        let id = "4f1c2b3a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";
        assert_eq!(
            container_of(&format!("/system.slice/docker-{id}.scope")).as_deref(),
            Some("docker:4f1c2b3a9d8e")
        );
        assert_eq!(
            container_of(&format!(
                "/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"
            ))
            .as_deref(),
            Some("containerd:4f1c2b3a9d8e")
        );
        assert_eq!(
            container_of(&format!("/docker/{id}")).as_deref(),
            Some("docker:4f1c2b3a9d8e")
        );
        assert_eq!(
            container_of(&format!("/machine.slice/libpod-{id}.scope/container")).as_deref(),
            Some("podman:4f1c2b3a9d8e")
        );
        assert_eq!(
            container_of("/system.slice/chrony.service").as_deref(),
            Some("systemd:chrony.service")
        );
        assert_eq!(
            container_of("/user.slice/user-0.slice/session-3.scope"),
            None
        );
        assert_eq!(container_of("/"), None);
        assert_eq!(container_of("/system.slice/docker-xyz.scope"), None);
    }
}
