//! Command-line interface, in tcpdump's spirit: the same letters where tcpdump has them.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::capture::{DEFAULT_RING_KIB, owners::Select};

const EXIT_CODES: &str = "Exit codes:
  0  success (a closed output pipe included)
  1  an error, with a message that says what to do
  3  an interface being captured went away: the output is complete up to then
  4  the output could not be written (disk full, directory removed): the file ends with its
     last whole frame, and the summary counts the frames not written";

/// Watch NTP traffic from inside the Linux kernel.
///
/// ntptap attaches TC programs to each interface, ingress and egress (with --hook xdp, an XDP
/// program for ingress); they match UDP port 123 (or --port) in the kernel and pass whole
/// frames to ntptap through BPF ring buffers. ntptap prints one line per packet, tcpdump style, or writes a pcap file that
/// tcpdump, tshark and Wireshark read. It needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or
/// root) to capture; reading a file with -r needs no privilege.
#[derive(Debug, Parser)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one bool per tcpdump-style flag"
)]
#[command(
    name = "ntptap",
    version,
    about,
    long_about,
    max_term_width = 100,
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Interface to capture on; repeat for several. `any` means every interface of this
    /// network namespace. Default: the interface of the default route.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interfaces: Vec<String>,

    /// Write frames to FILE as pcap (nanosecond timestamps) instead of printing them; `-`
    /// writes to standard output (`ntptap -w - | tshark -r -`).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Read frames from a pcap or pcapng FILE (`-` for standard input) instead of capturing.
    /// With -w, write its NTP frames (every frame with --all) to a new file, as tcpdump -r -w
    /// cuts a file down: pcap with the input's link type, or pcapng.
    #[arg(short = 'r', long = "read", value_name = "FILE", conflicts_with_all = ["interfaces", "rotate_seconds", "hook", "xdp_mode", "direction", "buffer_kib", "pids", "not_pids", "comms", "not_comms", "cgroups", "not_cgroups", "attribution", "drops", "flight_recorder"])]
    pub read: Option<PathBuf>,

    /// Exit after COUNT frames.
    #[arg(short = 'c', long = "count", value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Copy at most SNAPLEN bytes of each frame; 0 (the default) means whole frames, up to
    /// 2048 bytes, the most the kernel programs copy. Longer frames are cut there, counted as
    /// truncated, and keep their original length in the pcap record.
    #[arg(
        short = 's',
        long = "snapshot-length",
        value_name = "SNAPLEN",
        default_value_t = 0
    )]
    pub snaplen: u32,

    /// Directions to capture: in, out or inout.
    #[arg(short = 'Q', long = "direction", value_enum, default_value = "inout")]
    pub direction: DirectionArg,

    /// Ring buffer space in KiB, like tcpdump's buffer size: rounded up to a power of two,
    /// then shared out as one ring per CPU (each a power of two of at least a page).
    #[arg(short = 'B', long = "buffer-size", value_name = "KIB", default_value_t = DEFAULT_RING_KIB, id = "buffer_kib")]
    pub buffer_kib: u32,

    /// Do not resolve addresses or ports to names (ntptap never does; accepted for tcpdump
    /// habits, as -nn).
    #[arg(short = 'n', action = ArgAction::Count)]
    pub numeric: u8,

    /// UDP port to match, as source or destination; repeat for several. Default: 123.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,

    /// Capture every frame, not only those on the port set (as tcpdump with no filter).
    #[arg(long = "all")]
    pub all: bool,

    /// Only frames from or to ADDR (IPv4 or IPv6); repeat for several. Evaluated in the
    /// kernel, with the port set or with --all.
    #[arg(long = "host", value_name = "ADDR")]
    pub hosts: Vec<std::net::IpAddr>,

    /// Capture only the NTP of process PID (the owner of the socket, host PID namespace);
    /// repeat for several. `!PID` or --not-pid leaves that process's out. In the kernel.
    #[arg(long = "pid", value_name = "[!]PID", value_parser = parse_pid)]
    pub pids: Vec<Select<u32>>,

    /// Leave out the NTP of process PID; repeat for several.
    #[arg(long = "not-pid", value_name = "PID")]
    pub not_pids: Vec<u32>,

    /// Capture only the NTP of processes named NAME (their comm, as `ps -o comm` shows it, at
    /// most 15 bytes); repeat for several. `!NAME` or --not-comm leaves them out.
    #[arg(long = "comm", value_name = "[!]NAME", value_parser = parse_comm)]
    pub comms: Vec<Select<String>>,

    /// Leave out the NTP of processes named NAME; repeat for several.
    #[arg(long = "not-comm", value_name = "NAME")]
    pub not_comms: Vec<String>,

    /// Capture only the NTP of processes in cgroup v2 directory PATH or below it (absolute,
    /// or relative to the cgroup v2 root: /system.slice/chrony.service); repeat for several.
    /// `!PATH` or --not-cgroup leaves them out.
    #[arg(long = "cgroup", value_name = "[!]PATH", value_parser = parse_cgroup)]
    pub cgroups: Vec<Select<PathBuf>>,

    /// Leave out the NTP of processes in cgroup PATH or below it; repeat for several.
    #[arg(long = "not-cgroup", value_name = "PATH")]
    pub not_cgroups: Vec<PathBuf>,

    /// Name the process that owns each frame's socket (JSON `process`, pcapng comments, -v):
    /// on by default, through cgroup hooks on each UDP bind, connect to the port set and close
    /// (once per socket, none per datagram), and /proc for the sockets open before the start.
    /// Given, it also records every UDP socket's creator (a client that sends neither bound
    /// nor connected, as ntpdig does), at a cost to every socket() (BENCHMARKS.md, target 13).
    #[arg(long = "attribution", overrides_with = "no_attribution")]
    pub attribution: bool,

    /// Do not name the processes (no cgroup hooks). Goes with none of --process, --latency,
    /// --pid, --comm, --cgroup.
    #[arg(long = "no-attribution", overrides_with = "attribution", conflicts_with_all = ["process", "latency", "pids", "not_pids", "comms", "not_comms", "cgroups", "not_cgroups"])]
    pub no_attribution: bool,

    /// Also record the NTP frames the kernel drops in this host after ntptap's hook (or on the
    /// way out before it), with the kernel's reason and where (a BTF tracepoint on
    /// kfree_skb): a `DROPPED (REASON)` line, JSON `drop`, pcapng interface `ntptap-drops`
    /// (not in pcap files), metrics and the exit summary by reason. Off by default: its program
    /// runs on every drop in the host, at twice an empty program's cost (BENCHMARKS.md).
    #[arg(long = "drops", overrides_with = "no_drops")]
    pub drops: bool,

    /// Do not record kernel drops (the default; undoes an earlier --drops).
    #[arg(long = "no-drops", overrides_with = "drops")]
    pub no_drops: bool,

    /// Measure how long NTP packets wait inside this host: the process's send to the egress
    /// hook, and on a server the request at the ingress hook to the daemon's read, the read to
    /// its send, and the whole residence beside its own T3 - T2 (JSON `latency`, pcapng
    /// comments, -v, --stats percentiles, metrics histograms). Implies --attribution, whose
    /// socket hooks stamp reads and sends; the queue stage adds a program on every datagram
    /// delivered to a socket (2.4x an empty one, BENCHMARKS.md). Without it, the residence
    /// of each reply of a server on this host (request in, reply out, from the capture
    /// times: no hook) is there all the same, in pcapng comments, -v, --json and metrics;
    /// with -r too.
    #[arg(long = "latency")]
    pub latency: bool,

    /// Show the process that owns each frame's socket on its line, as `comm[pid]`.
    #[arg(long = "process")]
    pub process: bool,

    /// Log each frame's verdict and reason from inside the kernel programs (aya-log), on
    /// stderr. For diagnosis only: it costs per frame; off, it costs nothing.
    #[arg(long = "debug-ebpf")]
    pub debug_ebpf: bool,

    /// Pin the counters, ring buffer and port set maps under DIR (a bpffs directory, e.g.
    /// /sys/fs/bpf/ntptap) while running, for bpftool and other tools; unpinned on exit.
    #[arg(long = "pin", value_name = "DIR")]
    pub pin: Option<PathBuf>,

    /// Ingress hook: tc (TC both ways; the default, chosen from `cargo xtask bench`: it cost
    /// the host least, and it never reconfigures the driver) or xdp (XDP in, TC out).
    #[arg(long = "hook", value_enum, default_value = "tc")]
    pub hook: HookArg,

    /// XDP attach mode: auto (native where the driver has it, generic otherwise), native or
    /// skb (generic).
    #[arg(long = "xdp-mode", value_enum, default_value = "auto")]
    pub xdp_mode: XdpModeArg,

    /// Every SECONDS, print on stderr a table of the NTP servers seen: requests, responses,
    /// unanswered, stratum, reference ID, leap, round-trip delay, offset, processing time,
    /// kiss-o'-death codes (also at the end; with -r, only at the end). Also logs events:
    /// kiss-o'-death, monlist requests, remote mode 6 queries, unmatched responses, leap
    /// announcements, unsynchronized servers.
    #[arg(long = "stats", value_name = "SECONDS")]
    pub stats: Option<u64>,

    /// A request without a response after SECONDS counts as unanswered (in the --stats table,
    /// the metrics, the fates and --trigger-unanswered).
    #[arg(long = "unanswered-after", value_name = "SECONDS", default_value = "8")]
    pub unanswered_after: f64,

    /// Serve Prometheus metrics on [ADDR:]PORT: kernel decisions, frames written, NTP packets
    /// by version/mode/direction, kiss codes, and per-server exchange health. A port alone
    /// binds loopback (127.0.0.1); name another address only if the network may see them.
    #[arg(long = "metrics", value_name = "[ADDR:]PORT", value_parser = parse_metrics_addr)]
    pub metrics: Option<std::net::SocketAddr>,

    /// The token a POST to /flight-recorder from another host must carry (`Authorization:
    /// Bearer TOKEN`), read from FILE (its first line). Without it, only loopback may ask.
    #[arg(long = "metrics-token", value_name = "FILE", requires = "metrics")]
    pub metrics_token: Option<PathBuf>,

    /// Stop after SECONDS.
    #[arg(long = "duration", value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// More NTP detail: -v the header fields, timestamps, extension fields and MAC.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    /// Print one JSON object per frame (NDJSON) instead of text; the fields are listed in
    /// README.md.
    #[arg(long = "json", conflicts_with_all = ["hex", "link_header"])]
    pub json: bool,

    /// Print each frame's bytes in hex and ASCII too, from the network header on (tcpdump's
    /// layout); -XX from the link header on.
    #[arg(short = 'X', action = ArgAction::Count)]
    pub hex: u8,

    /// Print each frame's bytes in hex too, from the network header on; -xx from the link
    /// header on. (-X wins over -x, -x over -A, as in tcpdump.)
    #[arg(short = 'x', action = ArgAction::Count)]
    pub hex_only: u8,

    /// Print each frame's bytes in ASCII too, from the network header on; -AA from the link
    /// header on. Characters that are not printable show as dots.
    #[arg(short = 'A', action = ArgAction::Count)]
    pub ascii: u8,

    /// Quiet: for NTP, the addresses and "UDP, length N" only, no NTP decode (tcpdump's -q).
    #[arg(short = 'q', action = ArgAction::SetTrue)]
    pub quick: bool,

    /// Line-buffer standard output: each printed frame is flushed as a whole line, for
    /// `ntptap -l | tee` or a grep (ntptap's text and JSON are written a line at a time).
    #[arg(short = 'l', action = ArgAction::SetTrue)]
    pub line_buffered: bool,

    /// Do not verify UDP checksums (-v reports a bad one otherwise).
    #[arg(short = 'K', long = "dont-verify-checksums", action = ArgAction::SetTrue)]
    pub no_checksum: bool,

    /// Accepted for tcpdump habits: ntptap never puts an interface into promiscuous mode (it
    /// sees what the host's stack sees).
    #[arg(short = 'p', long = "no-promiscuous-mode", action = ArgAction::SetTrue)]
    pub no_promiscuous: bool,

    /// TCP sequence numbers as they are, not relative to the first of their conversation.
    #[arg(short = 'S', long = "absolute-tcp-sequence-numbers", action = ArgAction::SetTrue)]
    pub absolute_seq: bool,

    /// Accepted for tcpdump habits: ntptap never prints host names.
    #[arg(short = 'N', action = ArgAction::SetTrue)]
    pub no_domain: bool,

    /// Do not optimize the filter expression's program (tcpdump's -O): every load it has runs,
    /// so a frame too short for one is rejected even where the test was already decided.
    #[arg(short = 'O', long = "no-optimize", action = ArgAction::SetTrue)]
    pub no_optimize: bool,

    /// Accepted for tcpdump habits: ntptap hands each frame over as the ring wakes its
    /// reader, never holding it for a buffer to fill.
    #[arg(long = "immediate-mode", action = ArgAction::SetTrue)]
    pub immediate: bool,

    /// Timestamp precision of -w pcap files and of printed times: nano (ntptap's default:
    /// the kernel's nanoseconds) or micro (a microsecond pcap, for readers that take no
    /// other; times printed to the microsecond).
    #[arg(long = "time-stamp-precision", value_enum, value_name = "PRECISION")]
    pub precision: Option<PrecisionArg>,

    /// Time stamp type: host, the only one ntptap has (the kernel's clock when the hook runs;
    /// the NIC's own clock is out of reach of TC and XDP programs).
    #[arg(short = 'j', long = "time-stamp-type", value_name = "TYPE", value_parser = parse_tstamp_type)]
    pub tstamp_type: Option<String>,

    /// List the time stamp types of the interface (-i) and exit.
    #[arg(short = 'J', long = "list-time-stamp-types", action = ArgAction::SetTrue)]
    pub list_tstamp_types: bool,

    /// The link type of the frames ntptap hands over: EN10MB (Ethernet) only, whatever the
    /// interface; accepted as tcpdump's -y EN10MB.
    #[arg(short = 'y', long = "linktype", value_name = "TYPE", value_parser = parse_linktype)]
    pub linktype: Option<String>,

    /// List the data link types of the interface (-i) and exit.
    #[arg(short = 'L', long = "list-data-link-types", action = ArgAction::SetTrue)]
    pub list_linktypes: bool,

    /// List the interfaces ntptap can capture on, numbered as tcpdump numbers them (`-i 2`
    /// takes the number), with their state, and exit.
    #[arg(short = 'D', long = "list-interfaces", action = ArgAction::SetTrue)]
    pub list_interfaces: bool,

    /// Read the filter expression from FILE (tcpdump's -F; `#` starts a comment).
    #[arg(short = 'F', value_name = "FILE")]
    pub filter_file: Option<PathBuf>,

    /// A filter expression in pcap-filter(7) syntax, as tcpdump takes it (words joined by
    /// spaces): it decides which frames are captured, in the kernel before the copy, instead
    /// of the port set; NTP among them is decoded as always. Primitives: [src|dst] host ADDR,
    /// net NET/LEN (or mask), port and portrange (tcp, udp, sctp), ip, ip6, udp, tcp, icmp,
    /// icmp6, arp, rarp, sctp, igmp, esp, ah, [ip|ip6] proto N, ether host/src/dst/proto,
    /// broadcast, multicast, greater, less, len, byte tests (udp[8] & 7 = 4,
    /// tcp[tcpflags] & tcp-syn != 0), and, or, not, parentheses. vlan, mpls, gateway and the
    /// like are refused by name. --port and --host narrow it (joined by `and`); --all adds
    /// nothing. E.g. `ntptap -i eth0 'icmp or udp port 123'`.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,

    /// tcpdump's monitor mode (-I): not available, see the message.
    #[arg(short = 'I', long = "monitor-mode", hide = true, action = ArgAction::SetTrue)]
    pub monitor_mode: bool,

    /// tcpdump's ESP decryption (-E): not available, see the message.
    #[arg(short = 'E', hide = true, value_name = "SECRET")]
    pub esp_secret: Option<String>,

    /// tcpdump's -T TYPE: not available, see the message.
    #[arg(short = 'T', hide = true, value_name = "TYPE")]
    pub force_type: Option<String>,

    /// tcpdump's TCP-MD5 secret (-M): not available, see the message.
    #[arg(short = 'M', hide = true, value_name = "SECRET")]
    pub md5_secret: Option<String>,

    /// Print the link-level header (MAC addresses, VLAN tags, EtherType).
    #[arg(short = 'e', action = ArgAction::SetTrue)]
    pub link_header: bool,

    /// Print the frame number first.
    #[arg(short = '#', long = "number", action = ArgAction::SetTrue)]
    pub number: bool,

    /// Timestamp format: -t none, -tt epoch seconds, -ttt delta from the previous frame,
    /// -tttt date and time, -ttttt delta from the first frame.
    #[arg(short = 't', action = ArgAction::Count)]
    pub time_format: u8,

    /// File format for -w: pcap or pcapng. Default: pcapng when the name ends in .pcapng,
    /// pcap otherwise. pcapng records the interface name, the direction of each frame, the
    /// kernel's drops between frames, the kernel monotonic timestamp, and capture statistics.
    #[arg(long = "format", value_enum, requires = "write")]
    pub format: Option<OutputFormat>,

    /// Print the decoded frames even while writing them to a file with -w (tcpdump's
    /// --print), while the flight recorder keeps them, or with --plot.
    #[arg(long = "print", conflicts_with = "no_print")]
    pub print: bool,

    /// Print no frames: only the --stats tables, the files and the summary.
    #[arg(long = "no-print")]
    pub no_print: bool,

    /// Start a new file when the current one is larger than this many millions of bytes
    /// (tcpdump's -C; fractions allowed). Files are named FILE, FILE1, FILE2...
    #[arg(short = 'C', value_name = "MB", requires = "write")]
    pub rotate_size: Option<f64>,

    /// Start a new file every SECONDS (tcpdump's -G). Put strftime fields in the -w name to
    /// tell the files apart (ntp-%Y%m%d-%H%M%S.pcapng).
    #[arg(short = 'G', value_name = "SECONDS", requires = "write")]
    pub rotate_seconds: Option<u64>,

    /// With -G, cut on wall-clock multiples of the period (on the hour for -G 3600).
    #[arg(long = "rotate-align", requires = "rotate_seconds")]
    pub rotate_align: bool,

    /// Keep at most COUNT files: a ring, the oldest deleted (with -C or -G).
    #[arg(short = 'W', value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub rotate_keep: Option<u32>,

    /// Run COMMAND FILE on each file once it is closed (tcpdump's -z), e.g. -z gzip. The
    /// command is run directly, not through a shell.
    #[arg(short = 'z', value_name = "COMMAND")]
    pub post_rotate: Option<String>,

    /// Create -w files with this mode (octal). Default 600: captures can hold private traffic.
    #[arg(long = "file-mode", value_name = "MODE", default_value = "600", value_parser = parse_mode)]
    pub file_mode: u32,

    /// Replace an existing -w file (by default ntptap refuses to).
    #[arg(long = "overwrite")]
    pub overwrite: bool,

    /// Once everything is attached, switch to USER and give up every capability (tcpdump's
    /// -Z). The capture goes on; the output file stays open.
    #[arg(short = 'Z', long = "relinquish-privileges", value_name = "USER")]
    pub user: Option<String>,

    /// Print shell completions for SHELL and exit.
    #[arg(long = "completions", value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit.
    #[arg(long = "man", exclusive = true)]
    pub man: bool,

    /// Flush the output after every frame (tcpdump's -U), for `-w -` into a live reader.
    #[arg(short = 'U', long = "packet-buffered", action = ArgAction::SetTrue)]
    pub packet_buffered: bool,

    /// Write capture files through the page cache, as tcpdump does. By default ntptap writes
    /// them with O_DIRECT where the file system allows it: 1 MiB at a time straight to the
    /// disk, which costs less CPU and leaves the host's page cache alone. Use this on a file
    /// system where direct writes are slow (some network file systems).
    #[arg(long = "no-direct-io", action = ArgAction::SetTrue)]
    pub no_direct_io: bool,

    /// When the capture or the file ends, draw OUT (.png or .svg): per server, the delay and
    /// offset of each exchange over time, with unanswered requests and kiss-o'-death marked;
    /// for a server on this host, requests and replies per second and distinct clients per
    /// minute. Labels need a TrueType font (fonts-dejavu-core, or NTPTAP_FONT=FILE).
    #[arg(long = "plot", value_name = "OUT")]
    pub plot: Option<PathBuf>,

    /// Keep the most recent frames in memory and write them as a pcapng file when a trigger
    /// fires: SIGUSR1, a POST to /flight-recorder on the --metrics endpoint, or an event past
    /// its --trigger-* threshold. SIZE in bytes, or with K, M or G (powers of 1024): 16M; or
    /// DURATION: 90s, 10m, 1h (within 256 MiB). Nothing goes to disk until a trigger. Works
    /// with or without -w; prints frames only with --print.
    #[arg(
        long = "flight-recorder",
        value_name = "SIZE|DURATION",
        help_heading = "Flight recorder"
    )]
    pub flight_recorder: Option<crate::output::flight::Keep>,

    /// Also write the frames of SECONDS after the trigger into the dump.
    #[arg(
        long = "flight-recorder-after",
        value_name = "SECONDS",
        default_value = "10",
        requires = "flight_recorder",
        help_heading = "Flight recorder"
    )]
    pub flight_after: f64,

    /// Write dumps into DIR, named ntptap-flight-TIME-TRIGGER.pcapng (default: the current
    /// directory), with the -w file rules: --file-mode, never over an existing file or
    /// through a symbolic link.
    #[arg(
        long = "flight-recorder-dir",
        value_name = "DIR",
        requires = "flight_recorder",
        help_heading = "Flight recorder"
    )]
    pub flight_dir: Option<PathBuf>,

    /// Start a dump at most once every SECONDS; triggers in between are counted and ignored.
    #[arg(
        long = "flight-recorder-interval",
        value_name = "SECONDS",
        default_value = "60",
        requires = "flight_recorder",
        help_heading = "Flight recorder"
    )]
    pub flight_interval: u64,

    /// Keep at most N dumps in the dump directory: before a new one, ntptap removes its own
    /// oldest (files named as it names them; nothing else is touched).
    #[arg(
        long = "flight-recorder-max-files",
        value_name = "N",
        default_value_t = crate::output::flight::MAX_FILES,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..),
        requires = "flight_recorder",
        help_heading = "Flight recorder"
    )]
    pub flight_max_files: usize,

    /// Keep at most SIZE bytes of dumps (with K, M or G: 512M), removing ntptap's own oldest
    /// first; the newest stays even when it alone is larger.
    #[arg(
        long = "flight-recorder-max-bytes",
        value_name = "SIZE",
        default_value = "512M",
        requires = "flight_recorder",
        help_heading = "Flight recorder"
    )]
    pub flight_max_bytes: crate::output::flight::Size,

    /// Dump when N kiss-o'-death packets pass within 10 s (0: never).
    #[arg(
        long = "trigger-kod",
        value_name = "N",
        default_value = "10",
        help_heading = "Flight recorder"
    )]
    pub trigger_kod: u32,

    /// Dump when N monlist requests or mode 6 queries from remote addresses pass within 10 s
    /// (0: never).
    #[arg(
        long = "trigger-query",
        value_name = "N",
        default_value = "1",
        help_heading = "Flight recorder"
    )]
    pub trigger_query: u32,

    /// Dump when a server's offset moves by SECONDS or more from one exchange to the next
    /// (the offset_step event; 0: never).
    #[arg(
        long = "trigger-offset",
        value_name = "SECONDS",
        default_value = "0.128",
        help_heading = "Flight recorder"
    )]
    pub trigger_offset: f64,

    /// Dump when N requests in a row to one server go unanswered (the unanswered_run event;
    /// 0: never).
    #[arg(
        long = "trigger-unanswered",
        value_name = "N",
        default_value = "5",
        help_heading = "Flight recorder"
    )]
    pub trigger_unanswered: u64,

    /// Dump when N leap-indicator or stratum-16 changes of servers happen within 10 s (the
    /// status_change event; 0: never).
    #[arg(
        long = "trigger-status",
        value_name = "N",
        default_value = "1",
        help_heading = "Flight recorder"
    )]
    pub trigger_status: u32,

    /// Dump when the kernel drops N NTP frames in this host within 10 s (with --drops; 0:
    /// never).
    #[arg(
        long = "trigger-drops",
        value_name = "N",
        default_value = "10",
        help_heading = "Flight recorder"
    )]
    pub trigger_drops: u32,

    /// The amplification event, and a dump, when a server on this host sends one client RATIO
    /// times the bytes it received from it (and 32 KiB or more) within 10 s (0: never).
    #[arg(
        long = "trigger-amplification",
        value_name = "RATIO",
        default_value = "10",
        help_heading = "Flight recorder"
    )]
    pub trigger_amplification: f64,

    /// The reflection event, and a dump, when N NTP responses this host never asked for reach
    /// one of its addresses within 10 s (0: never).
    #[arg(
        long = "trigger-reflection",
        value_name = "N",
        default_value = "100",
        help_heading = "Flight recorder"
    )]
    pub trigger_reflection: u64,

    /// The hop_limit_change event, and a dump, when N requests of a client arrive with a TTL or
    /// hop limit other than the one it settled on (0: never).
    #[arg(
        long = "trigger-hop-limit",
        value_name = "N",
        default_value = "3",
        help_heading = "Flight recorder"
    )]
    pub trigger_hop_limit: u64,

    /// The falseticker event, and a dump, when this host uses N servers or more (3 at least)
    /// and one disagrees with the majority (0: never).
    #[arg(
        long = "trigger-falseticker",
        value_name = "N",
        default_value = "3",
        help_heading = "Flight recorder"
    )]
    pub trigger_falseticker: usize,

    /// The delay_asymmetry event, and a dump, when a server's delay rises by SECONDS or more
    /// and its offset moves by half of that, three samples in a row (0: never).
    #[arg(
        long = "trigger-asymmetry",
        value_name = "SECONDS",
        default_value = "0.005",
        help_heading = "Flight recorder"
    )]
    pub trigger_asymmetry: f64,

    /// Dump when N nts_downgrade events pass within 10 s (0: never; the events stay on).
    #[arg(
        long = "trigger-nts",
        value_name = "N",
        default_value = "1",
        help_heading = "Flight recorder"
    )]
    pub trigger_nts: u32,
}

fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("{s} is neither PORT nor ADDR:PORT (e.g. 9123, 127.0.0.1:9123, [::1]:9123)")
    })
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s} is not an octal file mode such as 600 or 640"))
}

/// Where ingress frames are captured (`--hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookArg {
    /// XDP for ingress, TC for egress.
    Xdp,
    /// TC for both directions: the default (see BENCHMARKS.md).
    Tc,
}

/// XDP attach mode (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// Native (driver) mode where the driver has it, generic otherwise.
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Skb,
}

/// Which directions to capture (`-Q`, as tcpdump's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectionArg {
    /// Frames coming in.
    In,
    /// Frames going out.
    Out,
    /// Both.
    Inout,
}

/// Timestamp precision (`--time-stamp-precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// Microseconds.
    Micro,
    /// Nanoseconds.
    Nano,
}

/// `-j TYPE`: `host` is what ntptap's timestamps are.
fn parse_tstamp_type(s: &str) -> Result<String, String> {
    if s.eq_ignore_ascii_case("host") {
        Ok("host".to_owned())
    } else {
        Err(format!(
            "ntptap's timestamps are the kernel's clock when its hook runs (host); {s} needs \
             the NIC's clock, which TC and XDP programs cannot read: use -j host, or tcpdump -j {s}"
        ))
    }
}

/// `-y TYPE`: ntptap hands over Ethernet frames.
fn parse_linktype(s: &str) -> Result<String, String> {
    if s.eq_ignore_ascii_case("EN10MB") {
        Ok("EN10MB".to_owned())
    } else {
        Err(format!(
            "ntptap hands over Ethernet frames (EN10MB) only; {s} is not available: use -y \
             EN10MB, or tcpdump -y {s}"
        ))
    }
}

/// Capture file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// pcapng.
    Pcapng,
}

impl Cli {
    /// The port set, with the default.
    #[must_use]
    pub fn port_set(&self) -> Vec<u16> {
        if self.ports.is_empty() {
            vec![123]
        } else {
            self.ports.clone()
        }
    }
}

/// A value of `--pid`, `--comm` or `--cgroup`: `!` before it excludes.
fn negated(arg: &str) -> (&str, bool) {
    match arg.strip_prefix('!') {
        Some(rest) => (rest, true),
        None => (arg, false),
    }
}

fn parse_pid(arg: &str) -> Result<Select<u32>, String> {
    let (value, exclude) = negated(arg);
    let value = value
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{value:?} is not a process id (a positive number)"))?;
    Ok(Select { value, exclude })
}

fn parse_comm(arg: &str) -> Result<Select<String>, String> {
    let (value, exclude) = negated(arg);
    crate::capture::owners::comm_key(value.as_bytes()).map_err(|e| format!("{e:#}"))?;
    Ok(Select {
        value: value.to_owned(),
        exclude,
    })
}

fn parse_cgroup(arg: &str) -> Result<Select<PathBuf>, String> {
    let (value, exclude) = negated(arg);
    if value.is_empty() {
        return Err("a cgroup directory is needed".to_owned());
    }
    Ok(Select {
        value: PathBuf::from(value),
        exclude,
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tcpdump_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "ntptap", "-i", "eth0", "-i", "eth1", "-c", "20", "-w", "-", "-s", "0", "-Q", "in",
            "-nvvX",
        ])
        .unwrap();
        assert_eq!(cli.interfaces, ["eth0", "eth1"]);
        assert_eq!(cli.count, Some(20));
        assert_eq!(cli.verbose, 2);
        assert_eq!((cli.hex, cli.numeric), (1, 1));
        assert_eq!(cli.direction, DirectionArg::In);
        assert_eq!(cli.port_set(), [123]);
        assert!(Cli::try_parse_from(["ntptap", "-c", "0"]).is_err());
        assert!(Cli::try_parse_from(["ntptap", "-r", "x.pcap", "-i", "eth0"]).is_err());
        let metrics = Cli::try_parse_from(["ntptap", "--metrics", "9123"])
            .unwrap()
            .metrics;
        assert_eq!(
            metrics,
            Some("127.0.0.1:9123".parse().unwrap()),
            "a port alone is loopback"
        );
    }
}
