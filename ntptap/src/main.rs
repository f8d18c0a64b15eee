//! The ntptap command.

use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal as _, Write},
    path::Path,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use ntptap::{
    capture::{self, CaptureConfig, Directions, Hook, Session, StopReason, Summary},
    cli::{Cli, OutputFormat},
    input,
    output::{
        CloseStats, Filter, PortSet, Sink, Tee,
        file::{FileWriter, Guarded},
        health::HealthSink,
        json::JsonSink,
        metrics::{self, MetricsSink},
        pcap::PcapSink,
        pcapng::{PcapNgInterface, PcapNgSink},
        rotate::{OpenSink, RotatePolicy, RotatingSink},
        text::{TextOptions, TextSink, TimeFormat},
    },
};
use ntptap_common::{Counter, MAX_DATA};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NTPTAP_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                // aya warns at length that the kernel rejects the object's BTF: aya-log's
                // `MaybeUninit<u8>` type name is invalid BTF. The programs load without BTF.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aya::bpf=error")),
        )
        .init();
    match run(&cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ntptap: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Exit code when an interface being captured went away (the capture itself ended cleanly).
const EXIT_INTERFACE_GONE: u8 = 3;
/// Exit code when the output could not be written (a full disk, a removed directory): the
/// capture stopped, the file is valid up to its last whole frame, the rest is counted.
const EXIT_OUTPUT_FAILED: u8 = 4;

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Some(shell) = cli.completions {
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "ntptap",
            &mut io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if cli.man {
        clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut io::stdout())
            .context("cannot write the man page")?;
        return Ok(ExitCode::SUCCESS);
    }
    let ports = PortSet::new(cli.port_set());
    if let Some(path) = &cli.read {
        return read_file(cli, path, ports).map(|()| ExitCode::SUCCESS);
    }
    live(cli, ports)
}

/// Capture on the interfaces `cli` names, until stopped.
fn live(cli: &Cli, ports: PortSet) -> anyhow::Result<ExitCode> {
    capture::privilege::check()?;
    let interfaces = match cli.interfaces.as_slice() {
        [] => vec![capture::iface::default_route()?],
        [any] if any == "any" => capture::iface::all()?,
        names => names
            .iter()
            .map(|n| capture::iface::by_name(n))
            .collect::<anyhow::Result<_>>()?,
    };
    let snaplen = if cli.snaplen == 0 {
        MAX_DATA as u32
    } else {
        cli.snaplen.min(MAX_DATA as u32)
    };
    let config = CaptureConfig {
        interfaces,
        hook: cli.hook,
        xdp_mode: cli.xdp_mode,
        directions: cli.direction,
        snaplen,
        ring_bytes: capture::ring_bytes(cli.buffer_kib),
        ports: ports.ports().to_vec(),
        all: cli.all,
        hosts: cli.hosts.clone(),
        pin: cli.pin.clone(),
        debug_ebpf: cli.debug_ebpf,
        // Frames shown as they come are read promptly. Frames only written to a file wait
        // longer (the file is flushed once a second anyway): each timer wakeup costs the
        // reader a context switch, and at 10 ms they cost 11 % of its CPU under a flood.
        drain_interval: if cli.write.as_deref().is_some_and(|p| p != Path::new("-"))
            && !cli.print
            && !cli.packet_buffered
        {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(50)
        },
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    // Signals are caught from before the first attach, so a SIGINT or SIGTERM at any point
    // after it detaches cleanly and prints the summary.
    let stop = {
        let _context = runtime.enter();
        stop_signal(cli.duration.map(Duration::from_secs_f64))?
    };

    // The output is opened before anything is attached, so an unwritable path costs nothing.
    let (sink, created) = open_sink(cli, &config, ports.clone())?;
    let mut sink = with_stats(cli, sink, ports.clone());
    if let Some(addr) = cli.metrics {
        sink = with_metrics(&runtime, addr, sink, ports, config.ring_bytes)?;
    }
    let session = match Session::open(&config) {
        Ok(session) => session,
        Err(err) => {
            if let Some(path) = created {
                let _ = std::fs::remove_file(path);
            }
            return Err(err);
        }
    };
    if let Some(user) = &cli.user {
        capture::privilege::drop_to(user, cli.pin.as_deref())?;
        if cli.verbose > 0 {
            eprintln!("ntptap: now running as {user}, with no capabilities");
        }
    }
    if cli.verbose > 0 {
        for decision in session.decisions() {
            eprintln!("ntptap: {decision}");
        }
    }
    eprintln!(
        "ntptap: listening on {} ({}), link-type EN10MB (Ethernet), snapshot length {snaplen} bytes",
        config
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        hooks_text(&config),
    );
    let start = wall_now();
    let mut summary = runtime.block_on(session.run(&mut sink, cli.count, stop))?;
    let stats = CloseStats {
        start,
        end: wall_now(),
        received: Some(summary.counts.total(Counter::Matched)),
        dropped: Some(summary.counts.dropped()),
    };
    match sink.close(&stats) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) if !matches!(summary.reason, StopReason::OutputFailed(_)) => {
            summary.reason = StopReason::OutputFailed(format!("cannot finish the output: {e}"));
        }
        _ => {}
    }
    // The trailer may not have fitted either: count again.
    summary.unwritten = sink.unwritten();
    drop(sink);
    print_summary(&summary);
    Ok(exit_code(&summary.reason))
}

/// The exit code for how the capture ended, with a last word on stderr when it is not 0.
fn exit_code(reason: &StopReason) -> ExitCode {
    match reason {
        StopReason::InterfaceGone(name) => {
            eprintln!(
                "ntptap: interface {name} went away, so the capture stopped; the output is complete up to then (exit code {EXIT_INTERFACE_GONE})"
            );
            ExitCode::from(EXIT_INTERFACE_GONE)
        }
        StopReason::OutputFailed(what) => {
            eprintln!(
                "ntptap: {what}; the capture stopped. The file ends with the last frame that reached it whole; free space or choose another -w directory and start again (exit code {EXIT_OUTPUT_FAILED})"
            );
            ExitCode::from(EXIT_OUTPUT_FAILED)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The kernel filter as text, for pcapng's `if_filter`.
fn filter_text(config: &CaptureConfig) -> String {
    let what = if config.all {
        "all frames".to_owned()
    } else {
        config
            .ports
            .iter()
            .map(|p| format!("udp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    format!("{what} (ntptap kernel filter, {})", hooks_text(config))
}

fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

fn hooks_text(config: &CaptureConfig) -> &'static str {
    match (config.directions, config.hook) {
        (Directions::In, Hook::Xdp) => "XDP ingress",
        (Directions::In, Hook::Tc) => "TC ingress",
        (Directions::Out, _) => "TC egress",
        (Directions::Inout, Hook::Xdp) => "XDP ingress, TC egress",
        (Directions::Inout, Hook::Tc) => "TC ingress and egress",
    }
}

/// Resolves when the capture must stop: SIGINT, SIGTERM, or `--duration`.
fn stop_signal(duration: Option<Duration>) -> anyhow::Result<impl Future<Output = StopReason>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        let timeout = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int.recv() => StopReason::Signal("SIGINT"),
            _ = term.recv() => StopReason::Signal("SIGTERM"),
            () = timeout => StopReason::Duration,
        }
    })
}

type BoxSink = Box<dyn Sink>;

/// The sink `cli` asks for, and the path of the file it created (to remove if attaching fails).
fn open_sink<'a>(
    cli: &'a Cli,
    config: &CaptureConfig,
    ports: PortSet,
) -> anyhow::Result<(BoxSink, Option<&'a Path>)> {
    let Some(path) = cli.write.as_deref() else {
        return Ok((printer(cli, config, ports), None));
    };
    let pcapng = match cli.format {
        Some(OutputFormat::Pcapng) => true,
        Some(OutputFormat::Pcap) => false,
        None => path.extension().is_some_and(|e| e == "pcapng"),
    };
    let interfaces: Vec<PcapNgInterface> = config
        .interfaces
        .iter()
        .map(|i| PcapNgInterface {
            index: i.index,
            name: i.name.clone(),
        })
        .collect();
    let (snaplen, filter) = (config.snaplen, filter_text(config));
    let open_file = move |out: Box<dyn Write>| -> io::Result<BoxSink> {
        Ok(if pcapng {
            Box::new(PcapNgSink::new(out, &interfaces, snaplen, &filter)?)
        } else {
            Box::new(PcapSink::new(out, snaplen)?)
        })
    };
    let (sink, created): (BoxSink, _) = if cli.rotate_size.is_some() || cli.rotate_seconds.is_some()
    {
        if path == Path::new("-") {
            bail!("-C and -G write a series of files: name them with -w, not -");
        }
        (rotating_sink(cli, path, Box::new(open_file))?, None)
    } else if path == Path::new("-") {
        if io::stdout().is_terminal() {
            bail!(
                "refusing to write binary pcap data to a terminal: redirect -w - to a file or a pipe, or drop -w to print decoded lines"
            );
        }
        let out: Box<dyn Write> = if cli.packet_buffered {
            Box::new(FlushEach(Box::new(io::stdout())))
        } else {
            Box::new(BufWriter::with_capacity(1 << 20, io::stdout()))
        };
        (
            open_file(out).context("cannot write the capture file header")?,
            None,
        )
    } else {
        let (file, ours) = create_output(path, cli.file_mode, cli.overwrite)?;
        let handle = file
            .try_clone()
            .with_context(|| format!("cannot open {}", path.display()))?;
        // -U: every frame straight to the file.
        let mut writer = FileWriter::new(file, if cli.packet_buffered { 0 } else { 1 << 20 });
        if !cli.no_direct_io {
            let direct = handle
                .try_clone()
                .with_context(|| format!("cannot open {}", path.display()))?;
            writer = writer.direct(direct);
        }
        if cli.verbose > 0 {
            eprintln!(
                "ntptap: writing {} {}",
                path.display(),
                if writer.is_direct() {
                    "with O_DIRECT (past the page cache)"
                } else {
                    "through the page cache"
                }
            );
        }
        let journal = writer.journal();
        let sink = open_file(Box::new(writer)).with_context(|| {
            format!("cannot write the capture file header to {}", path.display())
        })?;
        let sink: BoxSink = Box::new(Guarded::new(sink, journal, handle, path.to_path_buf()));
        (sink, ours.then_some(path))
    };
    if cli.print {
        if path == Path::new("-") {
            bail!("--print and -w - would both write to standard output: write the file elsewhere");
        }
        return Ok((Box::new(Tee(sink, printer(cli, config, ports))), created));
    }
    Ok((sink, created))
}

/// Open `path` for the capture: a new regular file with `mode`, never through a symbolic link,
/// never over an existing file unless `overwrite`; devices and FIFOs (`/dev/null`, a named
/// pipe) are written as they are. Returns the file and whether this run created it (only such
/// a file is removed if attaching fails).
fn create_output(path: &Path, mode: u32, overwrite: bool) -> anyhow::Result<(File, bool)> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let existing = path.symlink_metadata().ok();
    if existing
        .as_ref()
        .is_some_and(|m| m.file_type().is_symlink())
    {
        bail!(
            "{} is a symbolic link: ntptap does not write through links; name the target itself",
            path.display()
        );
    }
    let special = existing.as_ref().is_some_and(|m| {
        let t = m.file_type();
        t.is_char_device() || t.is_fifo() || t.is_socket() || t.is_block_device()
    });
    if existing.is_some() && !special && !overwrite {
        bail!(
            "{} exists: ntptap does not overwrite files unless told to (--overwrite), or choose another name",
            path.display()
        );
    }
    let mut options = std::fs::OpenOptions::new();
    options
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode);
    if !special {
        options.create(true).truncate(true);
    }
    let file = options.open(path).with_context(|| {
        format!(
            "cannot write {}: choose a path in a directory you can write to (-w)",
            path.display()
        )
    })?;
    Ok((file, existing.is_none()))
}

/// The sink for `-C`/`-G`: a series of files named after `path`.
fn rotating_sink(cli: &Cli, path: &Path, open_file: OpenSink) -> anyhow::Result<BoxSink> {
    let policy = RotatePolicy {
        max_bytes: cli.rotate_size.map(|mb| (mb * 1e6) as u64),
        period: cli.rotate_seconds.map(Duration::from_secs),
        align: cli.rotate_align,
        keep: cli.rotate_keep,
        command: cli.post_rotate.clone(),
        direct_io: !cli.no_direct_io,
    };
    let (mode, overwrite) = (cli.file_mode, cli.overwrite);
    let create = Box::new(move |p: &Path| {
        create_output(p, mode, overwrite)
            .map(|(f, _)| f)
            .map_err(|e| io::Error::other(format!("{e:#}")))
    });
    let sink = RotatingSink::new(path.to_path_buf(), policy, open_file, create, wall_now())
        .context("cannot open the first output file")?;
    Ok(Box::new(sink))
}

/// A writer that flushes after each write (`-U`).
struct FlushEach(Box<dyn Write>);

impl Write for FlushEach {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.0.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The live printer: text or JSON on stdout, interfaces shown when there are several.
fn printer(cli: &Cli, config: &CaptureConfig, ports: PortSet) -> BoxSink {
    let several = config.interfaces.len() > 1;
    text_sink(
        text_options(cli, several),
        Filter {
            ports,
            all: cli.all,
        },
        cli.json,
        cli.stats,
    )
}

fn text_options(cli: &Cli, show_iface: bool) -> TextOptions {
    TextOptions {
        verbose: cli.verbose,
        hex: cli.hex,
        link_header: cli.link_header,
        number: cli.number,
        time: TimeFormat::from_count(cli.time_format),
        show_iface,
    }
}

/// Text, or with `json` NDJSON (with server events every `stats` seconds, if given).
fn text_sink(options: TextOptions, filter: Filter, json: bool, stats: Option<u64>) -> BoxSink {
    let stdout = io::stdout();
    if json {
        let sink = JsonSink::new(BufWriter::with_capacity(1 << 16, stdout), filter);
        return match stats {
            Some(every) => Box::new(sink.with_server_stats(Duration::from_secs(every.max(1)))),
            None => Box::new(sink),
        };
    }
    if stdout.is_terminal() {
        Box::new(TextSink::new(stdout, options, filter))
    } else {
        Box::new(TextSink::new(
            BufWriter::with_capacity(1 << 16, stdout),
            options,
            filter,
        ))
    }
}

fn read_file(cli: &Cli, path: &Path, ports: PortSet) -> anyhow::Result<()> {
    let filter = Filter {
        ports,
        all: cli.all,
    };
    let sink = text_sink(
        text_options(cli, false),
        filter.clone(),
        cli.json,
        cli.stats,
    );
    let mut sink = with_stats(cli, sink, filter.ports);
    if path == Path::new("-") {
        input::read_stream(io::stdin().lock(), &mut sink, cli.count)
    } else {
        input::read_file(path, &mut sink, cli.count)
    }
    .with_context(|| format!("while reading {}", path.display()))?;
    match sink.close(&CloseStats::default()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write the output"),
    }
}

/// `--metrics`: listen on `addr` now (so a bad address fails before anything is attached),
/// serve from the runtime, and add the metrics sink beside `sink`.
fn with_metrics(
    runtime: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    sink: BoxSink,
    ports: PortSet,
    ring_bytes: u32,
) -> anyhow::Result<BoxSink> {
    let exposition = metrics::Exposition::default();
    let listener = {
        let _context = runtime.enter();
        let std_listener = std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "cannot serve metrics on {addr}: is the port in use? choose another with --metrics"
            )
        })?;
        std_listener
            .set_nonblocking(true)
            .context("metrics listener")?;
        tokio::net::TcpListener::from_std(std_listener).context("metrics listener")?
    };
    runtime.spawn(metrics::serve(listener, Arc::clone(&exposition)));
    Ok(Box::new(Tee(
        sink,
        MetricsSink::new(ports, exposition, ring_bytes),
    )))
}

/// With `--stats N`, add the exchange health table (on stderr) beside `sink`.
fn with_stats(cli: &Cli, sink: BoxSink, ports: PortSet) -> BoxSink {
    match cli.stats {
        Some(every) => Box::new(Tee(
            sink,
            HealthSink::new(io::stderr(), ports, Duration::from_secs(every.max(1))),
        )),
        None => sink,
    }
}

fn print_summary(summary: &Summary) {
    let c = &summary.counts;
    let received = c.total(Counter::Matched);
    let dropped = c.dropped();
    let unread = received.saturating_sub(summary.captured + dropped);
    let mut err = io::stderr().lock();
    // Captured: in the output. Frames the output refused are counted apart.
    let _ = writeln!(
        err,
        "{} packets captured",
        summary.captured.saturating_sub(summary.unwritten)
    );
    let _ = writeln!(err, "{received} packets received by filter");
    let _ = writeln!(err, "{dropped} packets dropped by kernel");
    let _ = writeln!(
        err,
        "ntptap: dropped: {} ring buffer full, {} copy failed; not captured: {} unparsable, {} later IP fragments; {} truncated to the snapshot length; {} left unread{}{}{}",
        c.total(Counter::RingFull),
        c.total(Counter::CopyFailed),
        c.total(Counter::Unparsable),
        c.total(Counter::Fragment),
        c.total(Counter::Truncated),
        unread,
        match summary.reason {
            StopReason::Count => " (-c reached)",
            StopReason::OutputClosed => " (the output was closed)",
            _ => "",
        },
        if summary.bad_records > 0 {
            format!("; {} malformed ring records", summary.bad_records)
        } else {
            String::new()
        },
        if let StopReason::OutputFailed(_) = summary.reason {
            format!("; {} not written (the output failed)", summary.unwritten)
        } else {
            String::new()
        },
    );
}
