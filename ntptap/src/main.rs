//! The ntptap command: parse, plan, build the outputs, open the capture, run, summarize.

use std::{
    io::{self, IsTerminal as _},
    path::Path,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser as _;
use ntptap::{
    capture::{self, Session, StopReason},
    cli::Cli,
    input,
    output::build::{CaptureInfo, Outputs, build},
    plan::{Facts, LivePlan, Plan, ReadPlan},
};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NTPTAP_LOG")
                // aya warns at length that the kernel rejects the object's BTF: aya-log's
                // `MaybeUninit<u8>` type name is invalid BTF. The programs load without BTF.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aya::bpf=error")),
        )
        .init();
    match numbered_interfaces(&mut cli)
        .and_then(|()| filter_file(&mut cli))
        .and_then(|()| run(&cli))
    {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ntptap: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A filter expression is compiled for Ethernet frames (and loopback's, which look alike):
/// a named interface of another kind (a tunnel, WireGuard) is refused, and `-i any` leaves
/// such interfaces out, saying so, rather than judge their frames at the wrong offsets.
fn ethernet_only(plan: &mut LivePlan) -> anyhow::Result<()> {
    let any = plan.interfaces == capture::iface::InterfaceChoice::Any;
    let mut kept = Vec::new();
    for iface in std::mem::take(&mut plan.capture.interfaces) {
        if capture::listing::carries_ethernet(&iface.name) {
            kept.push(iface);
            continue;
        }
        let kind = capture::listing::hardware_type(&iface.name).unwrap_or_default();
        let name = ntptap::escape::terminal(&iface.name).into_owned();
        if !any {
            anyhow::bail!(
                "{name}'s frames are not Ethernet (ARPHRD {kind}); ntptap compiles filter \
                 expressions for Ethernet: capture it without one (--port, --host)"
            );
        }
        eprintln!(
            "ntptap: {name} left out: its frames are not Ethernet (ARPHRD {kind}), and the \
             expression is compiled for Ethernet"
        );
    }
    plan.capture.interfaces = kept;
    Ok(())
}

/// `-i 2`, as tcpdump takes it: the interface `-D` numbers 2, unless one is named "2".
fn numbered_interfaces(cli: &mut Cli) -> anyhow::Result<()> {
    for name in &mut cli.interfaces {
        if let Some(listed) = capture::listing::numbered(name)? {
            *name = listed;
        }
    }
    Ok(())
}

/// `-F FILE`: the filter expression from FILE, as tcpdump reads it (`#` to the end of a line
/// is a comment).
fn filter_file(cli: &mut Cli) -> anyhow::Result<()> {
    let Some(path) = &cli.filter_file else {
        return Ok(());
    };
    if !cli.expression.is_empty() {
        anyhow::bail!(
            "give the filter expression in -F FILE or after the options, not both (tcpdump \
             would ignore the second)"
        );
    }
    let shown = ntptap::escape::terminal(&path.display().to_string()).into_owned();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the filter expression file {shown}"))?;
    let words: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect();
    if words.is_empty() {
        anyhow::bail!("{shown} holds no filter expression");
    }
    cli.expression = words;
    Ok(())
}

/// Exit code when an interface being captured went away (the capture itself ended cleanly).
const EXIT_INTERFACE_GONE: u8 = 3;
/// Exit code when the output could not be written (a full disk, a removed directory): the
/// capture stopped, the file is valid up to its last whole frame, the rest is counted.
const EXIT_OUTPUT_FAILED: u8 = 4;

/// Write `bytes` to standard output; a reader that has read enough and closed the pipe (a
/// pager, `head`) is a normal end, not an error.
fn to_stdout(bytes: &[u8]) -> io::Result<()> {
    use io::Write as _;
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    if let Some(shell) = cli.completions {
        let mut text = Vec::new();
        clap_complete::generate(
            shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "ntptap",
            &mut text,
        );
        to_stdout(&text).context("cannot write the completions")?;
        return Ok(ExitCode::SUCCESS);
    }
    if cli.man {
        let mut text = Vec::new();
        clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut text)
            .context("cannot render the man page")?;
        to_stdout(&text).context("cannot write the man page")?;
        return Ok(ExitCode::SUCCESS);
    }
    if cli.list_interfaces || cli.list_linktypes || cli.list_tstamp_types {
        use capture::listing;
        let text = if cli.list_interfaces {
            listing::listing()?
        } else if cli.list_linktypes {
            listing::link_types(&cli.interfaces)?
        } else {
            listing::tstamp_types(&cli.interfaces)?
        };
        to_stdout(text.as_bytes()).context("cannot write the listing")?;
        return Ok(ExitCode::SUCCESS);
    }
    for note in ntptap::plan::unseen(cli) {
        eprintln!("ntptap: {note}");
    }
    match Plan::new(cli, Facts::probe())? {
        Plan::Read(plan) => read(&plan).map(|()| ExitCode::SUCCESS),
        Plan::Live(plan) => live(*plan),
    }
}

/// Capture on the interfaces the plan names, until stopped.
fn live(mut plan: LivePlan) -> anyhow::Result<ExitCode> {
    capture::privilege::check()?;
    plan.capture.interfaces = capture::iface::resolve(&plan.interfaces)?;
    if plan.capture.expression.is_some() {
        ethernet_only(&mut plan)?;
    }
    let config = &plan.capture;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    // Signals are caught from before the first attach, so a SIGINT or SIGTERM at any point
    // after it detaches cleanly and prints the summary.
    let stop = {
        let _context = runtime.enter();
        stop_signal(plan.duration)?
    };
    // The outputs are opened before anything is attached, so a bad path costs nothing.
    let mut outputs = build(
        &plan.output,
        Some(&CaptureInfo {
            interfaces: config
                .interfaces
                .iter()
                .map(|i| (i.index, i.name.clone()))
                .collect(),
            snaplen: config.snaplen,
            filter: config.filter_text(),
            ring_bytes: config.ring().total(),
            link: pcap_file::DataLink::ETHERNET,
            keep: None,
        }),
    )?;
    if let Some(endpoint) = outputs.metrics.take() {
        endpoint.serve()?;
    }
    // On an error here, `outputs.created` removes the file this run created.
    let session = Session::open(config)?;
    if let Some(created) = outputs.created.take() {
        created.keep();
    }
    if let Some(user) = &plan.user {
        capture::privilege::drop_to(user, &session.pinned())?;
        // Files made later are made as the user: say now, not at the first rotation.
        for (dir, option) in plan.output.later_dirs() {
            nix::unistd::access(
                &dir,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "{user} (-Z) cannot write {}, where {option} creates files later ({e}): give \
                         {user} the directory, or choose one it can write",
                    dir.display()
                )
            })?;
        }
        if plan.verbose {
            eprintln!("ntptap: now running as {user}, with no capabilities");
        }
    }
    if plan.verbose {
        for line in outputs.notes.iter().chain(session.decisions()) {
            // Interface names are anyone's choice who can make one: shown, not obeyed.
            eprintln!("ntptap: {}", ntptap::escape::terminal(line));
        }
    }
    eprintln!(
        "ntptap: listening on {} ({}), link-type EN10MB (Ethernet), snapshot length {} bytes",
        if config.follow_interfaces {
            "any".to_owned()
        } else {
            config
                .interfaces
                .iter()
                .map(|i| ntptap::escape::terminal(&i.name))
                .collect::<Vec<_>>()
                .join(", ")
        },
        config.hooks_text(),
        config.snaplen,
    );
    let summary = runtime.block_on(session.run(&mut outputs.pipeline, plan.count, stop))?;
    drop(outputs);
    eprint!("{}", summary.render());
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
        StopReason::OutputFailed(err) => {
            eprintln!(
                "ntptap: {err}; the capture stopped. The file ends with the last frame that reached it whole; free space or choose another -w directory and start again (exit code {EXIT_OUTPUT_FAILED})"
            );
            ExitCode::from(EXIT_OUTPUT_FAILED)
        }
        _ => ExitCode::SUCCESS,
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

/// Read a capture file (`-r`) into the outputs.
fn read(plan: &ReadPlan) -> anyhow::Result<()> {
    // tcpdump's first line, which scripts grep for: the file, its link type and snapshot
    // length; and, for -w, what the file written keeps of them.
    let outputs = |head: &[u8]| -> anyhow::Result<Outputs> {
        let header = input::header(head);
        if let Some((link, snaplen)) = input::describe(head) {
            eprintln!(
                "reading from file {}, link-type {link}, snapshot length {snaplen}",
                ntptap::escape::terminal(&plan.path.display().to_string())
            );
        }
        let source = match (&plan.output.file, header) {
            (None, _) => None,
            (Some(_), Some((link, snaplen))) => Some(CaptureInfo::file(
                link,
                snaplen,
                ntptap::output::sink::Filter {
                    ports: plan.output.ports.clone(),
                    all: plan.all,
                },
            )),
            (Some(_), None) => anyhow::bail!(
                "{} is not a pcap or pcapng file, so there is nothing to write: tcpdump, \
                 tshark and ntptap -w write those",
                ntptap::escape::terminal(&plan.path.display().to_string())
            ),
        };
        let mut outputs = build(&plan.output, source.as_ref())?;
        // The input is a capture file: what is written of it stays, as far as it reads.
        if let Some(created) = outputs.created.take() {
            created.keep();
        }
        Ok(outputs)
    };
    if plan.path == Path::new("-") {
        use io::BufRead as _;
        let mut stdin = io::BufReader::with_capacity(1 << 16, io::stdin().lock());
        let head = stdin.fill_buf().map(<[u8]>::to_vec).unwrap_or_default();
        let mut outputs = outputs(&head)?;
        input::read_stream(stdin, &mut outputs.pipeline, plan.count)
    } else {
        let mut head = Vec::with_capacity(1 << 16);
        if let Ok(file) = std::fs::File::open(&plan.path) {
            use io::Read as _;
            let _ = file.take(1 << 16).read_to_end(&mut head);
        }
        let mut outputs = outputs(&head)?;
        input::read_file(&plan.path, &mut outputs.pipeline, plan.count)
    }
    .with_context(|| format!("while reading {}", plan.path.display()))
    .map(drop)
}
