//! The command line, resolved once into what to do (as ripgrep resolves its flags into
//! `HiArgs`): what to capture and how, where frames go, how often the rings are read. Every
//! rule that depends on more than one flag lives here, where it can be tested without root.
//!
//! One way: `cli → plan → capture → frame → output`. Nothing here touches the system but the
//! [`Facts`] it is given.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use ntptap_common::MAX_DATA;

pub use crate::output::{
    build::{FileFormat, FilePlan, FileTarget, JsonOutput, OutputPlan, PrinterPlan},
    create::Creation,
};
use crate::{
    capture::{
        CaptureConfig, Directions, Hook, XdpAttach,
        iface::InterfaceChoice,
        owners::{Select, Selection},
    },
    cli::{Cli, DirectionArg, HookArg, OutputFormat, PrecisionArg, XdpModeArg},
    exchange::{Limits, PatternLimits},
    output::flight::{FlightPlan, Triggers},
    output::{
        PortSet,
        rotate::RotatePolicy,
        text::{Dump, TextOptions, TimeFormat},
    },
};

/// What the plan needs to know of the world it runs in.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts {
    /// Standard output is a terminal (binary pcap must not go there; text goes unbuffered).
    pub stdout_is_terminal: bool,
}

impl Facts {
    /// The facts of this process.
    #[must_use]
    pub fn probe() -> Self {
        use std::io::IsTerminal as _;
        Self {
            stdout_is_terminal: std::io::stdout().is_terminal(),
        }
    }
}

/// What to do.
#[derive(Debug)]
pub enum Plan {
    /// Capture from the kernel.
    Live(Box<LivePlan>),
    /// Read a capture file (`-r`).
    Read(Box<ReadPlan>),
}

/// A live capture.
#[derive(Debug)]
pub struct LivePlan {
    /// Which interfaces.
    pub interfaces: InterfaceChoice,
    /// Everything else about the capture; its `interfaces` are filled in once resolved.
    pub capture: CaptureConfig,
    /// Where frames go.
    pub output: OutputPlan,
    /// Stop after this many frames shown or written (`-c`).
    pub count: Option<u64>,
    /// Stop after this long (`--duration`).
    pub duration: Option<Duration>,
    /// Switch to this user once attached (`-Z`).
    pub user: Option<String>,
    /// Say what was decided (`-v`).
    pub verbose: bool,
}

/// Reading a capture file.
#[derive(Debug)]
pub struct ReadPlan {
    /// The file, or `-` for standard input.
    pub path: PathBuf,
    /// Where frames go (a printer, and the `--stats` table).
    pub output: OutputPlan,
    /// Stop after this many frames shown (`-c`).
    pub count: Option<u64>,
    /// `--all`: a `-w` file keeps every frame, not only the port set's.
    pub all: bool,
}

/// How often the rings are read when frames are only written to a file (which is flushed
/// once a second anyway): each timer wakeup costs the reader a context switch, and at 10 ms
/// they cost 11 % of its CPU under a flood (BENCHMARKS.md).
pub const DRAIN_WRITING: Duration = Duration::from_millis(250);
/// How often the rings are read when frames are shown as they come.
pub const DRAIN_SHOWING: Duration = Duration::from_millis(50);

impl Plan {
    /// Resolve `cli`. Errors say which flags do not go together and what to do.
    pub fn new(cli: &Cli, facts: Facts) -> anyhow::Result<Self> {
        let ports = PortSet::new(cli.port_set());
        let expression = expression(cli)?;
        // With an expression, what it keeps is shown and written, NTP or not.
        let all = cli.all || expression.is_some();
        let stats = cli.stats.map(|s| Duration::from_secs(s.max(1)));
        let limits = limits(cli)?;
        if let Some(path) = &cli.plot {
            check_plot(path)?;
        }
        refuse_what_cannot_take_effect(cli)?;
        // An explicit --json always writes JSON on standard output: the frames when they are
        // printed, the events (and with --stats the server and clients ones) when they are not.
        let printing = printing(cli) || cli.json;
        let file = cli
            .write
            .as_ref()
            .map(|path| file_plan(cli, path, facts))
            .transpose()?;
        if printing
            && file
                .as_ref()
                .is_some_and(|f| f.target == FileTarget::Stdout)
        {
            bail!(
                "--print (or --json) and -w - would both write to standard output: write the file elsewhere"
            );
        }
        if let Some(path) = &cli.read {
            return Ok(Plan::Read(Box::new(ReadPlan {
                path: path.clone(),
                all,
                output: OutputPlan {
                    expression: expression.clone().map(std::sync::Arc::new),
                    ports,
                    file,
                    printer: printing.then(|| printer(cli, facts, stats, false)),
                    stats,
                    metrics: None,
                    metrics_token: None,
                    latency: cli.latency,
                    limits,
                    flight: None,
                    plot: cli.plot.clone(),
                    creation: Creation {
                        mode: cli.file_mode,
                        overwrite: cli.overwrite,
                    },
                },
                count: cli.count,
            })));
        }
        let interfaces = interface_choice(&cli.interfaces)?;
        let several = match &interfaces {
            InterfaceChoice::DefaultRoute => false,
            InterfaceChoice::Any => true,
            InterfaceChoice::Named(n) => n.len() > 1,
        };
        let flight = flight(cli)?;
        let printer = printing.then(|| printer(cli, facts, stats, several));
        // Frames shown as they come are read promptly; frames only written to a file wait.
        let drain_interval = match &file {
            Some(f)
                if f.target != FileTarget::Stdout && printer.is_none() && !f.packet_buffered =>
            {
                DRAIN_WRITING
            }
            _ => DRAIN_SHOWING,
        };
        let mut capture = capture_config(
            cli,
            &ports,
            drain_interval,
            interfaces == InterfaceChoice::Any,
        );
        capture.expression = expression;
        Ok(Plan::Live(Box::new(LivePlan {
            interfaces,
            capture,
            output: OutputPlan {
                // The kernel programs ran it.
                expression: None,
                ports,
                file,
                printer,
                stats,
                metrics: cli.metrics,
                metrics_token: cli.metrics_token.clone(),
                latency: cli.latency,
                limits,
                flight,
                plot: cli.plot.clone(),
                creation: Creation {
                    mode: cli.file_mode,
                    overwrite: cli.overwrite,
                },
            },
            count: cli.count,
            duration: cli.duration.map(Duration::from_secs_f64),
            user: cli.user.clone(),
            verbose: cli.verbose > 0,
        })))
    }
}

/// `-i` as given: none (the default route's), `any`, or names, each once (a repeat is folded:
/// attached twice, every frame would be written twice). `any` with a name is refused: it
/// already takes every interface.
fn interface_choice(names: &[String]) -> anyhow::Result<InterfaceChoice> {
    if names.iter().any(|n| n == "any") {
        if names.iter().any(|n| n != "any") {
            bail!(
                "-i any already captures every interface, {} included: give -i any alone, or name \
                 the interfaces",
                names
                    .iter()
                    .filter(|n| *n != "any")
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Ok(InterfaceChoice::Any);
    }
    let mut once: Vec<String> = Vec::new();
    for name in names {
        if once.contains(name) {
            tracing::warn!("-i {name} is given more than once; it is captured once");
        } else {
            once.push(name.clone());
        }
    }
    Ok(if once.is_empty() {
        InterfaceChoice::DefaultRoute
    } else {
        InterfaceChoice::Named(once)
    })
}

/// What a run asks for but its printed lines will not show, said at start: `--attribution`
/// and `--latency` add to `-v`'s lines, `--process`'s and the JSON, not to the default line.
#[must_use]
pub fn unseen(cli: &Cli) -> Vec<String> {
    let lines = printing(cli) && !cli.json && cli.verbose == 0;
    let mut notes = Vec::new();
    if lines && cli.latency {
        notes.push(
            "--latency: each reply's time in this host shows with -v or --json, in --stats and \
             the metrics, and in pcapng comments; not on the default line"
                .to_owned(),
        );
    }
    if lines && cli.attribution && !cli.process {
        notes.push(
            "--attribution: each frame's process shows with --process, -v or --json, and in \
             pcapng comments; not on the default line"
                .to_owned(),
        );
    }
    notes
}

/// Options that would be taken and do nothing, refused with what to do instead.
fn refuse_what_cannot_take_effect(cli: &Cli) -> anyhow::Result<()> {
    refuse_tcpdump_flags(cli)?;
    if cli.print && cli.write.is_none() && cli.flight_recorder.is_none() && cli.plot.is_none() {
        bail!(
            "--print goes with -w, --flight-recorder or --plot (without them, frames are printed anyway)"
        );
    }
    if cli.hook == HookArg::Xdp && cli.direction == DirectionArg::Out {
        bail!(
            "--hook xdp captures ingress at XDP; -Q out would capture only at TC egress, where \
             --hook makes no difference: drop --hook xdp, or capture -Q in or inout"
        );
    }
    if cli.rotate_keep.is_some() && cli.rotate_size.is_none() && cli.rotate_seconds.is_none() {
        bail!("-W keeps a ring of the files -C or -G start: give -C MB or -G SECONDS with it");
    }
    if cli.read.is_some() && cli.duration.is_some() {
        bail!(
            "--duration stops a live capture; a file is read to its end: drop --duration, or use -c \
             COUNT to stop after that many packets"
        );
    }
    Ok(())
}

/// tcpdump's flags that ntptap cannot honour, each with why and what to use instead; and
/// filter expressions, not evaluated yet (never evaluated differently from libpcap).
fn refuse_tcpdump_flags(cli: &Cli) -> anyhow::Result<()> {
    if cli.monitor_mode {
        bail!(
            "-I: ntptap's programs run in the kernel's network stack, which sees no 802.11 \
             monitor-mode frames; use tcpdump -I on the wireless interface"
        );
    }
    if cli.esp_secret.is_some() {
        bail!(
            "-E: ntptap does not decrypt ESP; use tshark with the SA's keys (esp.enable_encryption_decode)"
        );
    }
    if let Some(kind) = &cli.force_type {
        bail!(
            "-T {}: ntptap decodes NTP on its port set only; give the ports with --port \
             (tshark -d udp.port==N,ntp decodes others)",
            crate::escape::terminal(kind)
        );
    }
    if cli.md5_secret.is_some() {
        bail!("-M: ntptap does not check TCP-MD5 signatures (NTP is UDP); use tcpdump -M");
    }
    Ok(())
}

/// The filter expression (the arguments after the options, joined by spaces, or -F's
/// file, which `main` read into them), with `--port` and `--host` folded in by `and`.
fn expression(cli: &Cli) -> anyhow::Result<Option<crate::filter::Expression>> {
    if cli.expression.is_empty() {
        return Ok(None);
    }
    let text = cli.expression.join(" ");
    let mut parts = vec![format!("({text})")];
    if !cli.ports.is_empty() {
        let each: Vec<String> = cli.ports.iter().map(|p| format!("udp port {p}")).collect();
        parts.push(format!("({})", each.join(" or ")));
    }
    if !cli.hosts.is_empty() {
        let each: Vec<String> = cli.hosts.iter().map(|h| format!("host {h}")).collect();
        parts.push(format!("({})", each.join(" or ")));
    }
    let combined = if parts.len() == 1 {
        text.clone()
    } else {
        parts.join(" and ")
    };
    let compiled = crate::filter::Expression::compile_with(&combined, !cli.no_optimize)
        .with_context(|| {
            format!(
                "in the filter expression '{}'",
                crate::escape::terminal(&text)
            )
        })?;
    Ok(Some(compiled))
}

/// Whether kernel drops are recorded unless `--drops` or `--no-drops` says otherwise: not, as
/// `cargo xtask bench` decided (the drop program costs a drop that is not NTP about twice
/// what an empty program at `kfree_skb` does, past the 1.2× allowed).
pub const DROPS_BY_DEFAULT: bool = false;

/// What the kernel side captures, and how.
fn capture_config(
    cli: &Cli,
    ports: &PortSet,
    drain_interval: Duration,
    follow: bool,
) -> CaptureConfig {
    let snaplen = if cli.snaplen == 0 {
        MAX_DATA as u32
    } else {
        cli.snaplen.min(MAX_DATA as u32)
    };
    CaptureConfig {
        interfaces: Vec::new(),
        hook: match cli.hook {
            HookArg::Xdp => Hook::Xdp,
            HookArg::Tc => Hook::Tc,
        },
        xdp_mode: match cli.xdp_mode {
            XdpModeArg::Auto => XdpAttach::Auto,
            XdpModeArg::Native => XdpAttach::Native,
            XdpModeArg::Skb => XdpAttach::Skb,
        },
        directions: match cli.direction {
            DirectionArg::In => Directions::In,
            DirectionArg::Out => Directions::Out,
            DirectionArg::Inout => Directions::Inout,
        },
        snaplen,
        verbose: cli.verbose > 0,
        ring_bytes: cli.buffer_kib.saturating_mul(1024),
        ports: ports.ports().to_vec(),
        all: cli.all,
        hosts: cli.hosts.clone(),
        expression: None,
        pin: cli.pin.clone(),
        debug_ebpf: cli.debug_ebpf,
        drain_interval,
        follow_interfaces: follow,
        attribution: attribution(cli).then(|| selection(cli)),
        latency: cli.latency,
        every_socket: every_socket(cli),
        drops: !cli.no_drops && (cli.drops || DROPS_BY_DEFAULT),
    }
}

/// Whether `--plot` names a file this build can draw.
#[cfg(feature = "plot")]
fn check_plot(path: &std::path::Path) -> anyhow::Result<()> {
    crate::output::plot::Format::of(path).map(drop)
}

#[cfg(not(feature = "plot"))]
fn check_plot(_: &std::path::Path) -> anyhow::Result<()> {
    bail!("this ntptap was built without plots: build it with the `plot` feature (the default)")
}

/// The exchange tracker's bounds, with the event thresholds the flags set.
fn limits(cli: &Cli) -> anyhow::Result<Limits> {
    if !(cli.trigger_offset.is_finite() && cli.trigger_offset >= 0.0) {
        bail!(
            "--trigger-offset {} is not a number of seconds (0 turns it off)",
            cli.trigger_offset
        );
    }
    if !(cli.unanswered_after.is_finite() && cli.unanswered_after > 0.0) {
        bail!(
            "--unanswered-after {} is not a number of seconds above 0",
            cli.unanswered_after
        );
    }
    for (flag, value) in [
        ("--trigger-amplification", cli.trigger_amplification),
        ("--trigger-asymmetry", cli.trigger_asymmetry),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            bail!("{flag} {value} is not a number of 0 or more (0 turns it off)");
        }
    }
    Ok(Limits {
        patterns: PatternLimits {
            amplification: cli.trigger_amplification,
            reflection: cli.trigger_reflection,
            hop_limit: cli.trigger_hop_limit,
            falseticker: cli.trigger_falseticker,
            asymmetry: cli.trigger_asymmetry,
            ..PatternLimits::default()
        },
        timeout: Duration::from_secs_f64(cli.unanswered_after),
        step: (cli.trigger_offset > 0.0).then_some(cli.trigger_offset),
        unanswered_run: cli.trigger_unanswered,
        // --plot marks each unanswered request.
        losses: if cli.plot.is_some() { 1_000_000 } else { 0 },
        ..Limits::default()
    })
}

/// `--flight-recorder` and its options (the outputs check the directory when they open).
fn flight(cli: &Cli) -> anyhow::Result<Option<FlightPlan>> {
    let Some(keep) = cli.flight_recorder else {
        return Ok(None);
    };
    if !(cli.flight_after.is_finite() && cli.flight_after >= 0.0) {
        bail!(
            "--flight-recorder-after {} is not a number of seconds",
            cli.flight_after
        );
    }
    let dir = cli.flight_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    Ok(Some(FlightPlan {
        keep,
        after: Duration::from_secs_f64(cli.flight_after),
        dir,
        interval: Duration::from_secs(cli.flight_interval),
        triggers: Triggers {
            kiss_of_death: cli.trigger_kod,
            queries: cli.trigger_query,
            status: cli.trigger_status,
            drops: cli.trigger_drops,
            offset_step: cli.trigger_offset > 0.0,
            unanswered: cli.trigger_unanswered > 0,
            patterns: cli.trigger_amplification > 0.0
                || cli.trigger_reflection > 0
                || cli.trigger_hop_limit > 0
                || cli.trigger_falseticker > 0
                || cli.trigger_asymmetry > 0.0,
            nts: cli.trigger_nts,
        },
        creation: Creation {
            mode: cli.file_mode,
            overwrite: false,
        },
        max_files: cli.flight_max_files,
        max_bytes: cli.flight_max_bytes.0,
    }))
}

/// Whether process attribution runs unless `--no-attribution` says otherwise: it does, as
/// `cargo xtask bench` decided (its hooks run once per socket, none per datagram: targets 8
/// and 9 in BENCHMARKS.md).
pub const ATTRIBUTION_BY_DEFAULT: bool = true;

/// Whether process attribution runs: by default, `--attribution`, or what needs it; not with
/// `--no-attribution` (which nothing that needs it goes with).
fn attribution(cli: &Cli) -> bool {
    if cli.no_attribution {
        return false;
    }
    ATTRIBUTION_BY_DEFAULT || every_socket(cli)
}

/// Whether attribution records every UDP socket's creator: asked for (`--attribution`), or
/// by what needs each frame named (`--process`, `--latency`, a selection). Not by default:
/// its `sock_create` hook costs every socket() (BENCHMARKS.md, target 13).
fn every_socket(cli: &Cli) -> bool {
    !cli.no_attribution
        && (cli.attribution
            || cli.latency
            || cli.process
            || !cli.pids.is_empty()
            || !cli.not_pids.is_empty()
            || !cli.comms.is_empty()
            || !cli.not_comms.is_empty()
            || !cli.cgroups.is_empty()
            || !cli.not_cgroups.is_empty())
}

/// `--pid`, `--comm`, `--cgroup` and their `--not-` forms.
fn selection(cli: &Cli) -> Selection {
    fn exclude<T>(value: T) -> Select<T> {
        Select {
            value,
            exclude: true,
        }
    }
    Selection {
        pids: cli
            .pids
            .iter()
            .cloned()
            .chain(cli.not_pids.iter().copied().map(exclude))
            .collect(),
        comms: cli
            .comms
            .iter()
            .map(|s| Select {
                value: s.value.as_bytes().to_vec(),
                exclude: s.exclude,
            })
            .chain(cli.not_comms.iter().map(|c| exclude(c.as_bytes().to_vec())))
            .collect(),
        cgroups: cli
            .cgroups
            .iter()
            .cloned()
            .chain(cli.not_cgroups.iter().cloned().map(exclude))
            .collect(),
    }
}

fn printer(cli: &Cli, facts: Facts, stats: Option<Duration>, several: bool) -> PrinterPlan {
    PrinterPlan {
        json: cli.json.then(|| {
            if printing(cli) {
                JsonOutput::Frames
            } else {
                JsonOutput::Events
            }
        }),
        server_events: stats.filter(|_| cli.json),
        text: TextOptions {
            verbose: cli.verbose,
            dump: Dump::from_counts(cli.hex, cli.hex_only, cli.ascii),
            quick: cli.quick,
            no_checksum: cli.no_checksum,
            nano: cli.precision == Some(PrecisionArg::Nano),
            link_header: cli.link_header,
            number: cli.number,
            time: TimeFormat::from_count(cli.time_format),
            show_iface: several,
            process: cli.process,
            absolute_seq: cli.absolute_seq,
        },
        all: cli.all || !cli.expression.is_empty(),
        terminal: facts.stdout_is_terminal || cli.line_buffered,
    }
}

/// Whether frames are printed: unless they go elsewhere (a file, the recorder, a plot) or
/// `--no-print` says not to; `--print` brings them back.
fn printing(cli: &Cli) -> bool {
    cli.print
        || !(cli.no_print
            || cli.write.is_some()
            || cli.flight_recorder.is_some()
            || cli.plot.is_some())
}

fn file_plan(cli: &Cli, path: &std::path::Path, facts: Facts) -> anyhow::Result<FilePlan> {
    let stdout = path == std::path::Path::new("-");
    let rotation = if cli.rotate_size.is_some() || cli.rotate_seconds.is_some() {
        if stdout {
            bail!("-C and -G write a series of files: name them with -w, not -");
        }
        crate::output::rotate::check_pattern(&path.to_string_lossy())
            .map_err(|e| anyhow::anyhow!("-w {e}"))?;
        Some(RotatePolicy {
            max_bytes: cli.rotate_size.map(|mb| (mb * 1e6) as u64),
            period: cli.rotate_seconds.map(Duration::from_secs),
            align: cli.rotate_align,
            keep: cli.rotate_keep,
            command: cli.post_rotate.clone(),
            direct_io: !cli.no_direct_io,
        })
    } else {
        None
    };
    if stdout && facts.stdout_is_terminal {
        bail!(
            "refusing to write binary pcap data to a terminal: redirect -w - to a file or a pipe, or drop -w to print decoded lines"
        );
    }
    Ok(FilePlan {
        target: if stdout {
            FileTarget::Stdout
        } else {
            FileTarget::Path(path.to_path_buf())
        },
        format: match cli.format {
            Some(OutputFormat::Pcapng) => FileFormat::Pcapng,
            None if path.extension().is_some_and(|e| e == "pcapng") => FileFormat::Pcapng,
            Some(OutputFormat::Pcap) | None => FileFormat::Pcap,
        },
        packet_buffered: cli.packet_buffered,
        direct_io: !cli.no_direct_io,
        rotation,
        micro: cli.precision == Some(PrecisionArg::Micro),
        creation: Creation {
            mode: cli.file_mode,
            overwrite: cli.overwrite,
        },
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn plan(args: &[&str], facts: Facts) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("ntptap").chain(args.iter().copied()))
            .expect("the arguments parse");
        Plan::new(&cli, facts)
    }

    fn live(args: &[&str]) -> LivePlan {
        match plan(args, Facts::default()).expect("a plan") {
            Plan::Live(l) => *l,
            Plan::Read(_) => panic!("{args:?} planned a read"),
        }
    }

    #[test]
    fn a_pcap_file_alone_names_no_owners() {
        let names = |args: &[&str]| live(args).output.names_owners();
        assert!(!names(&["-i", "lo", "-w", "x.pcap"]));
        assert!(!names(&["-i", "lo"]));
        for args in [
            &["-i", "lo", "-w", "x.pcapng"][..],
            &["-i", "lo", "-w", "x.pcap", "--print", "--process"],
            &["-i", "lo", "-v"],
            &["-i", "lo", "--json"],
            &["-i", "lo", "-w", "x.pcap", "--stats", "60"],
            &["-i", "lo", "-w", "x.pcap", "--metrics", "9123"],
            &["-i", "lo", "-w", "x.pcap", "--flight-recorder", "1M"],
        ] {
            assert!(names(args), "{args:?}");
        }
    }

    #[test]
    fn printing_is_the_default_and_reads_the_ring_promptly() {
        let p = live(&["-i", "eth0"]);
        assert_eq!(p.interfaces, InterfaceChoice::Named(vec!["eth0".into()]));
        assert!(p.output.file.is_none());
        assert!(!p.output.tracks_exchanges());
        let printer = p.output.printer.expect("a printer");
        assert!(printer.json.is_none() && !printer.text.show_iface);
        assert_eq!(p.capture.drain_interval, DRAIN_SHOWING);
        assert_eq!(p.capture.hook, Hook::Tc);
        assert_eq!(p.capture.directions, Directions::Inout);
        assert_eq!(p.capture.ports, [123]);
        assert_eq!(p.capture.snaplen, MAX_DATA as u32);
    }

    #[test]
    fn a_file_alone_is_read_lazily_and_its_format_follows_the_name() {
        let p = live(&["-w", "x.pcapng"]);
        assert_eq!(p.interfaces, InterfaceChoice::DefaultRoute);
        assert!(p.output.printer.is_none());
        let file = p.output.file.expect("a file");
        assert_eq!(file.format, FileFormat::Pcapng);
        assert_eq!(file.target, FileTarget::Path("x.pcapng".into()));
        assert_eq!(
            file.creation,
            Creation {
                mode: 0o600,
                overwrite: false
            }
        );
        assert!(file.direct_io && file.rotation.is_none());
        assert_eq!(p.capture.drain_interval, DRAIN_WRITING);
        let p = live(&["-w", "x.cap"]);
        assert_eq!(p.output.file.expect("a file").format, FileFormat::Pcap);
        let p = live(&["-w", "x.cap", "--format", "pcapng"]);
        assert_eq!(p.output.file.expect("a file").format, FileFormat::Pcapng);
    }

    #[test]
    fn anything_shown_as_it_comes_reads_the_ring_promptly() {
        for args in [
            &["-w", "x.pcap", "--print"][..],
            &["-w", "x.pcap", "-U"],
            &["-w", "-"],
        ] {
            assert_eq!(live(args).capture.drain_interval, DRAIN_SHOWING, "{args:?}");
        }
        let p = live(&["-w", "x.pcap", "--print"]);
        assert!(p.output.file.is_some() && p.output.printer.is_some());
    }

    #[test]
    fn conflicting_outputs_are_refused_with_what_to_do() {
        let terminal = Facts {
            stdout_is_terminal: true,
        };
        let err = plan(&["-w", "-"], terminal).unwrap_err().to_string();
        assert!(err.contains("terminal"), "{err}");
        assert!(plan(&["-w", "-"], Facts::default()).is_ok());
        let err = plan(&["-w", "-", "--print"], Facts::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("standard output"), "{err}");
        let err = plan(&["-w", "-", "-G", "60"], Facts::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("series of files"), "{err}");
        // An invalid strftime field is refused at start (it used to panic at the first file).
        let err = plan(&["-w", "cap-%Q.pcap", "-G", "60"], Facts::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a strftime pattern"), "{err}");
    }

    #[test]
    fn combinations_that_cannot_take_effect_are_refused() {
        for (args, says) in [
            (
                &["--hook", "xdp", "-Q", "out"][..],
                "--hook xdp captures ingress",
            ),
            (&["-W", "3", "-w", "x.pcap"][..], "-W keeps a ring"),
            (
                &["-i", "any", "-i", "eth0"][..],
                "-i any already captures every interface",
            ),
            (&["-i", "eth0", "-i", "any"][..], "eth0 included"),
        ] {
            let err = plan(args, Facts::default()).unwrap_err().to_string();
            assert!(err.contains(says), "{args:?}: {err}");
        }
        let err = plan(&["-r", "x.pcap", "--duration", "5"], Facts::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--duration stops a live capture"), "{err}");
        // What they pair with is fine.
        assert!(plan(&["--hook", "xdp", "-Q", "in"], Facts::default()).is_ok());
        assert!(
            plan(
                &["-W", "3", "-G", "60", "-w", "x-%H.pcap"],
                Facts::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn options_the_default_line_does_not_show_are_said() {
        let notes = |args: &[&str]| {
            let cli =
                Cli::try_parse_from(std::iter::once("ntptap").chain(args.iter().copied())).unwrap();
            unseen(&cli)
        };
        assert_eq!(notes(&["--attribution"]).len(), 1);
        assert_eq!(notes(&["--latency"]).len(), 1);
        for shown in [
            &["--attribution", "--process"][..],
            &["--attribution", "-v"][..],
            &["--latency", "--json"][..],
            &["--attribution", "-w", "x.pcapng"][..],
        ] {
            assert!(notes(shown).is_empty(), "{shown:?}");
        }
    }

    #[test]
    fn an_interface_named_twice_is_captured_once() {
        let p = live(&["-i", "uxb", "-i", "uxb", "-i", "va"]);
        assert_eq!(
            p.interfaces,
            InterfaceChoice::Named(vec!["uxb".into(), "va".into()])
        );
        assert_eq!(live(&["-i", "any"]).interfaces, InterfaceChoice::Any);
    }

    #[test]
    fn rotation_flags_become_one_policy() {
        let p = live(&[
            "-w",
            "ntp-%H.pcapng",
            "-G",
            "3600",
            "--rotate-align",
            "-W",
            "48",
            "-C",
            "1.5",
            "-z",
            "gzip",
            "--no-direct-io",
        ]);
        let file = p.output.file.expect("a file");
        let r = file.rotation.expect("rotation");
        assert_eq!(r.period, Some(Duration::from_hours(1)));
        assert!(r.align && !r.direct_io && !file.direct_io);
        assert_eq!(r.keep, Some(48));
        assert_eq!(r.max_bytes, Some(1_500_000));
        assert_eq!(r.command.as_deref(), Some("gzip"));
    }

    #[test]
    fn any_follows_interfaces_and_shows_them() {
        let p = live(&["-i", "any"]);
        assert_eq!(p.interfaces, InterfaceChoice::Any);
        assert!(p.capture.follow_interfaces);
        assert!(p.output.printer.expect("a printer").text.show_iface);
        let p = live(&["-i", "a", "-i", "b"]);
        assert!(!p.capture.follow_interfaces);
        assert!(p.output.printer.expect("a printer").text.show_iface);
    }

    #[test]
    fn json_stats_and_metrics_share_one_tracker() {
        let p = live(&["--json", "--stats", "0", "--metrics", "9123"]);
        assert!(p.output.tracks_exchanges());
        assert_eq!(
            p.output.stats,
            Some(Duration::from_secs(1)),
            "at least a second"
        );
        let printer = p.output.printer.expect("a printer");
        assert_eq!(printer.json, Some(JsonOutput::Frames));
        assert_eq!(printer.server_events, Some(Duration::from_secs(1)));
        assert!(live(&["--json"]).output.tracks_exchanges());
        assert!(live(&["--stats", "5"]).output.tracks_exchanges());
        // A local server's residence, from capture times, in pcapng comments and with -v.
        assert!(live(&["-w", "x.pcapng"]).output.tracks_exchanges());
        assert!(live(&["-v"]).output.tracks_exchanges());
        assert!(!live(&["-w", "x.pcap"]).output.tracks_exchanges());
    }

    /// An explicit --json always writes JSON on standard output: the frames where frames are
    /// printed, the events where another output takes them. One row per combination.
    #[test]
    fn an_explicit_json_always_writes_json() {
        let json = |args: &[&str]| live(args).output.printer.and_then(|p| p.json);
        let rows: &[(&[&str], Option<JsonOutput>)] = &[
            (&["--json"], Some(JsonOutput::Frames)),
            (&["--json", "--no-print"], Some(JsonOutput::Events)),
            (&["--json", "-w", "x.pcap"], Some(JsonOutput::Events)),
            (
                &["--json", "-w", "x.pcap", "--print"],
                Some(JsonOutput::Frames),
            ),
            (
                &["--json", "--flight-recorder", "16M"],
                Some(JsonOutput::Events),
            ),
            (
                &["--json", "--stats", "1", "--flight-recorder", "16M"],
                Some(JsonOutput::Events),
            ),
            (
                &["--json", "--flight-recorder", "16M", "--print"],
                Some(JsonOutput::Frames),
            ),
            (&["--json", "--plot", "x.png"], Some(JsonOutput::Events)),
            (
                &["--json", "--plot", "x.png", "--print"],
                Some(JsonOutput::Frames),
            ),
            (&["-w", "x.pcap"], None),
            (&["--flight-recorder", "16M"], None),
        ];
        for (args, want) in rows {
            assert_eq!(json(args), *want, "{args:?}");
        }
        let Err(err) = plan(&["--json", "-w", "-"], Facts::default()) else {
            panic!("JSON and a capture file both on standard output");
        };
        assert!(err.to_string().contains("standard output"), "{err}");
    }

    #[test]
    fn tcpdump_flags_take_effect_or_are_refused_with_a_reason() {
        let text = |args: &[&str]| live(args).output.printer.expect("a printer").text;
        assert_eq!(text(&["-nn", "-l"]).dump, None);
        let dump = |args: &[&str]| text(args).dump.map(|d| (d.hex, d.ascii, d.link));
        assert_eq!(dump(&["-x"]), Some((true, false, false)));
        assert_eq!(dump(&["-xx"]), Some((true, false, true)));
        assert_eq!(dump(&["-X"]), Some((true, true, false)));
        assert_eq!(dump(&["-XX", "-x"]), Some((true, true, true)), "-X wins");
        assert_eq!(dump(&["-A", "-x"]), Some((true, false, false)), "-x wins");
        assert_eq!(dump(&["-AA"]), Some((false, true, true)));
        assert!(text(&["-q"]).quick && text(&["-K"]).no_checksum);
        assert!(text(&["--time-stamp-precision=nano"]).nano);
        assert!(!text(&["--time-stamp-precision=micro"]).nano);
        assert!(live(&["-l"]).output.printer.expect("a printer").terminal);
        let micro = live(&["-w", "x.pcap", "--time-stamp-precision", "micro"]);
        assert!(micro.output.file.expect("a file").micro);
        assert!(!live(&["-w", "x.pcap"]).output.file.expect("a file").micro);
        // Accepted, changing nothing ntptap does.
        for flag in ["-p", "-S", "-N", "-O", "--immediate-mode", "-j", "-y"] {
            let args: &[&str] = match flag {
                "-j" => &["-j", "host"],
                "-y" => &["-y", "EN10MB"],
                _ => &[flag],
            };
            assert!(plan(args, Facts::default()).is_ok(), "{flag}");
        }
        // Refused, each with why.
        for (args, says) in [
            (&["-I"][..], "monitor-mode"),
            (&["-E", "spi@addr"][..], "ESP"),
            (&["-T", "rtp"][..], "--port"),
            (&["-M", "secret"][..], "TCP-MD5"),
            (&["udp", "port", "99999"][..], "65535"),
            (&["vlan", "100"][..], "'vlan'"),
        ] {
            let Err(err) = plan(args, Facts::default()) else {
                panic!("{args:?} accepted");
            };
            assert!(format!("{err:#}").contains(says), "{args:?}: {err:#}");
        }
        // The seed's command: the expression (after the options, or before -w) decides, with
        // --port folded in by `and`.
        let seed = live(&["-s0", "-i", "eth0", "-X", "port", "123", "-w", "test.cap"]);
        let expression = seed.capture.expression.expect("an expression");
        assert_eq!(expression.text, "port 123");
        let narrowed = live(&["--port", "4123", "udp"]).capture.expression;
        assert_eq!(
            narrowed.expect("an expression").text,
            "(udp) and (udp port 4123)"
        );
        let Ok(Plan::Read(read)) = plan(&["-r", "x.pcap", "icmp"], Facts::default()) else {
            panic!("a read");
        };
        assert_eq!(read.output.expression.expect("kept for -r").text, "icmp");
        assert!(read.all, "a -w file keeps every frame the expression keeps");
        for args in [&["-j", "adapter"][..], &["-y", "LINUX_SLL2"][..]] {
            let mut argv = vec!["ntptap"];
            argv.extend(args);
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }

    #[test]
    fn frames_go_to_one_output_unless_asked_and_no_print_keeps_json_events() {
        let events = live(&["--json", "--no-print", "--stats", "60"]);
        let printer = events.output.printer.expect("the JSON printer");
        assert_eq!(printer.json, Some(JsonOutput::Events));
        assert!(
            live(&["--no-print", "--stats", "60"])
                .output
                .printer
                .is_none()
        );
        // The recorder and the plot take the frames, as -w does; --print brings them back.
        assert!(live(&["--flight-recorder", "16M"]).output.printer.is_none());
        assert!(live(&["--plot", "x.png"]).output.printer.is_none());
        assert!(
            live(&["--plot", "x.png", "--print"])
                .output
                .printer
                .is_some()
        );
        let Err(err) = plan(&["-w", "-", "--json", "--no-print"], Facts::default()) else {
            panic!("two writers to standard output");
        };
        assert!(err.to_string().contains("standard output"), "{err}");
        let Err(err) = plan(&["--print"], Facts::default()) else {
            panic!("--print alone");
        };
        assert!(err.to_string().contains("--flight-recorder"), "{err}");
        let Err(err) = plan(&["--plot", "x.jpg"], Facts::default()) else {
            panic!("not an image name");
        };
        assert!(err.to_string().contains(".png"), "{err}");
    }

    #[test]
    fn snap_length_and_kernel_options_map_through() {
        let p = live(&[
            "-s",
            "100",
            "--hook",
            "xdp",
            "--xdp-mode",
            "skb",
            "-Q",
            "in",
            "--port",
            "4123",
            "--port",
            "123",
            "--all",
            "-B",
            "1",
        ]);
        assert_eq!(p.capture.snaplen, 100);
        assert_eq!(p.capture.hook, Hook::Xdp);
        assert_eq!(p.capture.xdp_mode, XdpAttach::Skb);
        assert_eq!(p.capture.directions, Directions::In);
        assert_eq!(live(&["-Q", "out"]).capture.directions, Directions::Out);
        assert_eq!(p.capture.ports, [123, 4123]);
        assert!(p.capture.all);
        // What -B asked, as it asked it: the capture sizes the rings (capture::ring_size).
        assert_eq!(p.capture.ring_bytes, 1024);
        assert_eq!(live(&["-s", "65535"]).capture.snaplen, MAX_DATA as u32);
    }

    #[test]
    fn reading_a_file_prints_it() {
        let Plan::Read(r) = plan(
            &["-r", "x.pcap", "-c", "3", "--stats", "9"],
            Facts::default(),
        )
        .expect("a plan") else {
            panic!("not a read");
        };
        assert_eq!(r.path, PathBuf::from("x.pcap"));
        assert_eq!(r.count, Some(3));
        assert!(r.output.file.is_none() && r.output.printer.is_some());
        assert!(r.output.tracks_exchanges());
    }
}
