//! The outputs an [`OutputPlan`] asks for, made into one [`Pipeline`]: a capture file (or a
//! series), a printer, the `--stats` table, the metrics, in that order.

use std::{
    io::{self, BufWriter, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{decoded::PortSet, files::rotate::RotatePolicy, print::text::TextOptions};
use pcap_file::DataLink;

use crate::exchange::Pairing;

use super::{
    decoded::Decoded,
    files::create::Creation,
    files::create::{CreatedFile, create_output},
    files::file::{FileWriter, Guarded},
    files::pcap::PcapSink,
    files::pcapng::{PcapNgInterface, PcapNgSink},
    files::rotate::{OpenSink, RotatingSink},
    metrics::MetricsSink,
    pipeline::Pipeline,
    print::health::HealthSink,
    print::json::JsonSink,
    print::text::TextSink,
    sink::Filter,
    sink::{Control, Sink},
    stdout::WatchStdout,
};

/// Where frames go.
#[derive(Clone, Debug)]
pub struct OutputPlan {
    /// With `-r`, the filter expression: frames it rejects go nowhere (live, the kernel
    /// programs ran it).
    pub expression: Option<std::sync::Arc<crate::filter::Expression>>,
    /// UDP ports whose payload is NTP.
    pub ports: PortSet,
    /// A capture file (`-w`).
    pub file: Option<FilePlan>,
    /// Decoded frames on standard output.
    pub printer: Option<PrinterPlan>,
    /// The exchange table on stderr every so often (`--stats`).
    pub stats: Option<Duration>,
    /// Prometheus metrics on this address (`--metrics`).
    pub metrics: Option<SocketAddr>,
    /// The file with the token a remote POST to `/flight-recorder` must carry.
    pub metrics_token: Option<PathBuf>,
    /// In-host latency (`--latency`): every frame goes through the exchange tracker, which
    /// joins each reply with its request.
    pub latency: bool,
    /// The exchange tracker's bounds and event thresholds.
    pub limits: crate::exchange::Limits,
    /// The flight recorder (`--flight-recorder`).
    pub flight: Option<super::flight::FlightPlan>,
    /// A plot drawn at the end (`--plot`).
    pub plot: Option<PathBuf>,
    /// How the plot file is created.
    pub creation: Creation,
}

impl OutputPlan {
    /// How much pairing of requests with responses the outputs need: the whole exchange
    /// tracker, one for all of them, where any shows what it keeps (the table, the JSON
    /// events, the metrics, -v's client analytics, the recorder's triggers, the plot); a
    /// local server's residence alone where only a pcapng file shows what pairing finds (its
    /// comments: the tracker cost 1.2 µs a packet there, BENCHMARKS.md); else none.
    #[must_use]
    pub fn pairing(&self) -> Pairing {
        if self.stats.is_some()
            || self.latency
            || self.flight.is_some()
            || self.plot.is_some()
            || self.metrics.is_some()
            || self
                .printer
                .as_ref()
                .is_some_and(|p| p.json.is_some() || p.text.verbose > 0)
        {
            Pairing::Full(self.limits)
        } else if self
            .file
            .as_ref()
            .is_some_and(|f| f.format == FileFormat::Pcapng)
        {
            Pairing::Residence(self.limits)
        } else {
            Pairing::None
        }
    }

    /// Whether any output pairs requests with responses or shows what pairing finds.
    #[must_use]
    pub fn tracks_exchanges(&self) -> bool {
        !matches!(self.pairing(), Pairing::None)
    }

    /// Whether any output uses the frames' socket owners: the tracker's outputs (the table by
    /// process, JSON, pcapng comments, metrics, the recorder's dumps), or `--process` lines. A
    /// pcap file alone does not, and the reader then names none (BENCHMARKS.md, target 1).
    #[must_use]
    pub fn names_owners(&self) -> bool {
        self.tracks_exchanges() || self.printer.as_ref().is_some_and(|p| p.text.process)
    }

    /// The directories files are created in after the start (`-C`/`-G`'s next files, the
    /// flight recorder's dumps), with the option that puts them there: `-Z`'s user must be
    /// able to write them.
    #[must_use]
    pub fn later_dirs(&self) -> Vec<(PathBuf, &'static str)> {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut dirs = Vec::new();
        if let Some(file) = &self.file
            && file.rotation.is_some()
            && let FileTarget::Path(pattern) = &file.target
        {
            dirs.push((parent(pattern), "-C/-G"));
        }
        if let Some(flight) = &self.flight {
            dirs.push((flight.dir.clone(), "--flight-recorder"));
        }
        dirs
    }
}

/// A capture file, or a series of them.
#[derive(Clone, Debug)]
pub struct FilePlan {
    /// Where.
    pub target: FileTarget,
    /// pcap or pcapng.
    pub format: FileFormat,
    /// Flush after every frame (`-U`).
    pub packet_buffered: bool,
    /// Write with O_DIRECT where the file system allows it.
    pub direct_io: bool,
    /// `-C`/`-G`/`-W`/`-z`: a series of files.
    pub rotation: Option<RotatePolicy>,
    /// pcap with microsecond timestamps (`--time-stamp-precision=micro`).
    pub micro: bool,
    /// How files are created.
    pub creation: Creation,
}

/// Where a capture file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileTarget {
    /// Standard output (`-w -`).
    Stdout,
    /// A path (a pattern, with rotation).
    Path(PathBuf),
}

/// The printer on standard output.
#[derive(Clone, Debug)]
pub struct PrinterPlan {
    /// NDJSON instead of text (`Some`), and whether with the frames or the events only.
    pub json: Option<JsonOutput>,
    /// With `json` and `--stats`: `server` events this often.
    pub server_events: Option<Duration>,
    /// What the text shows.
    pub text: TextOptions,
    /// Every frame, not only the port set (`--all`).
    pub all: bool,

    /// Standard output is a terminal, or `-l` asks for lines as they come: each goes out
    /// whole as it is printed.
    pub terminal: bool,
}

/// What the JSON printer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonOutput {
    /// A line per frame, and the events.
    Frames,
    /// The events only (`--json --no-print`).
    Events,
}

/// Capture file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// pcapng.
    Pcapng,
}

/// What the outputs need to know of where the frames come from: a live capture, or a file
/// read with `-r` (see [`CaptureInfo::file`]).
#[derive(Clone, Debug)]
pub struct CaptureInfo {
    /// The interfaces attached at the start, (index, name): pcapng describes each.
    pub interfaces: Vec<(u32, String)>,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// The kernel filter, in words (pcapng's `if_filter`).
    pub filter: String,
    /// Size of the rings (a metric).
    pub ring_bytes: u64,
    /// The link type a pcap file is written with: Ethernet live, the input's with `-r`.
    pub link: DataLink,
    /// With `-r`, the frames a capture file keeps (the kernel chose them live): the port set,
    /// or every frame with `--all`.
    pub keep: Option<Filter>,
}

impl CaptureInfo {
    /// Frames read from a file whose header says `link` and `snaplen`: a capture file keeps
    /// those `keep` shows, with the input's link type and snapshot length.
    #[must_use]
    pub fn file(link: DataLink, snaplen: u32, keep: Filter) -> Self {
        Self {
            interfaces: Vec::new(),
            snaplen,
            filter: String::new(),
            ring_bytes: 0,
            link,
            keep: Some(keep),
        }
    }
}

/// The outputs, ready for frames.
pub struct Outputs {
    /// Every sink, behind the one decoder and exchange tracker.
    pub pipeline: Pipeline,
    /// The capture file this run created, removed unless the capture starts.
    pub created: Option<CreatedFile>,
    /// The metrics endpoint, bound, to be served once the event loop runs.
    pub metrics: Option<super::metrics::http::Endpoint>,
    /// What was decided (direct I/O or the page cache), for `-v`.
    pub notes: Vec<String>,
}

/// Open everything `plan` asks for, for frames from `capture` (a live capture, or a file that
/// `-r` reads when `-w` cuts it down). Nothing is attached yet, so a bad path or a busy port
/// costs nothing.
pub fn build(plan: &OutputPlan, capture: Option<&CaptureInfo>) -> anyhow::Result<Outputs> {
    let mut outputs = Outputs {
        pipeline: Pipeline::new(plan.ports.clone(), plan.pairing())
            .with_expression(plan.expression.clone())
            .with_owners(plan.names_owners()),
        created: None,
        metrics: None,
        notes: Vec::new(),
    };
    if let Some(file) = &plan.file {
        let Some(capture) = capture else {
            bail!("a capture file needs to know the frames' source");
        };
        let mut sink = file_sink(file, capture, &mut outputs)?;
        if let Some(keep) = &capture.keep {
            sink = Box::new(Kept {
                inner: sink,
                keep: keep.clone(),
            });
        }
        outputs.pipeline.push(sink);
    }
    if let Some(printer) = &plan.printer {
        outputs.pipeline.push(printer_sink(printer, plan));
    }
    // Nothing shows or writes frames (events, tables, metrics, the recorder): `-c` counts
    // every frame, as tcpdump's counts what it captured.
    if plan.file.is_none()
        && plan
            .printer
            .as_ref()
            .is_none_or(|p| p.json == Some(JsonOutput::Events))
    {
        outputs.pipeline.count_every_frame();
    }
    if let Some(every) = plan.stats {
        outputs
            .pipeline
            .push(Box::new(HealthSink::new(io::stderr(), every)));
    }
    if let Some(path) = &plan.plot {
        #[cfg(feature = "plot")]
        outputs.pipeline.push(Box::new(super::plot::PlotSink::new(
            path.clone(),
            plan.creation,
        )?));
        #[cfg(not(feature = "plot"))]
        bail!(
            "cannot draw {}: this ntptap was built without plots",
            path.display()
        );
    }
    let requests = super::flight::Requests::default();
    let mut flight_stats = None;
    if let Some(flight) = &plan.flight {
        let Some(capture) = capture else {
            bail!("the flight recorder keeps frames of a live capture");
        };
        let dir = &flight.dir;
        let usable = dir.is_dir()
            && nix::unistd::access(
                dir,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .is_ok();
        if !usable {
            bail!(
                "cannot write flight-recorder dumps into {}: it is not a directory this user may write to; create it or choose another with --flight-recorder-dir",
                dir.display()
            );
        }
        let sink = super::flight::FlightSink::new(
            flight.clone(),
            pcapng_interfaces(capture),
            capture.snaplen,
            capture.filter.clone(),
            requests.clone(),
        );
        flight_stats = Some(sink.stats());
        outputs.pipeline.push(Box::new(sink));
    }
    if let Some(addr) = plan.metrics {
        let mut endpoint = super::metrics::http::Endpoint::bind(addr)?;
        if let Some(path) = &plan.metrics_token {
            endpoint.token = Some(read_token(path)?);
        }
        if plan.flight.is_some() {
            endpoint.flight = Some(requests);
        }
        let mut sink = MetricsSink::new(endpoint.exposition(), capture.map_or(0, |c| c.ring_bytes));
        if let Some(stats) = flight_stats {
            sink = sink.with_flight(stats);
        }
        outputs.pipeline.push(Box::new(sink));
        outputs.metrics = Some(endpoint);
    }
    Ok(outputs)
}

/// The printer on standard output: text (unbuffered on a terminal) or NDJSON.
fn printer_sink(printer: &PrinterPlan, plan: &OutputPlan) -> Box<dyn Sink> {
    Box::new(WatchStdout(printer_on_stdout(printer, plan)))
}

fn printer_on_stdout(printer: &PrinterPlan, plan: &OutputPlan) -> Box<dyn Sink> {
    let filter = Filter {
        ports: plan.ports.clone(),
        all: printer.all,
    };
    let stdout = io::stdout();
    if let Some(json) = printer.json {
        // A line at a time on a terminal or with -l (standard output is line-buffered).
        let capacity = if printer.terminal { 0 } else { 1 << 16 };
        let mut sink = JsonSink::new(BufWriter::with_capacity(capacity, stdout), filter);
        if json == JsonOutput::Events {
            sink = sink.events_only();
        }
        return match printer.server_events {
            Some(every) => Box::new(sink.with_server_stats(every)),
            None => Box::new(sink),
        };
    }
    if printer.terminal {
        Box::new(TextSink::new(stdout, printer.text.clone(), filter))
    } else {
        Box::new(TextSink::new(
            BufWriter::with_capacity(1 << 16, stdout),
            printer.text.clone(),
            filter,
        ))
    }
}

fn file_sink(
    file: &FilePlan,
    capture: &CaptureInfo,
    outputs: &mut Outputs,
) -> anyhow::Result<Box<dyn Sink>> {
    let interfaces = pcapng_interfaces(capture);
    let (pcapng, snaplen, filter, micro, link) = (
        file.format == FileFormat::Pcapng,
        capture.snaplen,
        capture.filter.clone(),
        file.micro,
        capture.link,
    );
    let open_file = move |out: Box<dyn Write>| -> io::Result<Box<dyn Sink>> {
        Ok(if pcapng {
            Box::new(PcapNgSink::new(out, &interfaces, snaplen, &filter)?)
        } else {
            Box::new(PcapSink::with_link(out, snaplen, micro, link)?)
        })
    };
    let path = match &file.target {
        FileTarget::Stdout => {
            let out: Box<dyn Write> = if file.packet_buffered {
                Box::new(FlushEach(Box::new(io::stdout())))
            } else {
                Box::new(BufWriter::with_capacity(1 << 20, io::stdout()))
            };
            return open_file(out)
                .map(|sink| Box::new(WatchStdout(sink)) as Box<dyn Sink>)
                .context("cannot write the capture file header");
        }
        FileTarget::Path(path) => path,
    };
    if let Some(policy) = &file.rotation {
        let rules = file.creation;
        let create = Box::new(move |p: &Path| {
            create_output(p, rules)
                .map(|(f, _)| f)
                .map_err(|e| io::Error::other(format!("{e:#}")))
        });
        let open: OpenSink = Box::new(open_file);
        let sink = RotatingSink::new(
            path.clone(),
            policy.clone(),
            open,
            create,
            crate::frame::wall_now(),
        )
        .context("cannot open the first output file")?;
        return Ok(Box::new(sink));
    }
    let (handle, created) = create_output(path, file.creation)?;
    // From here on, an error removes the file this run created.
    outputs.created = created.then(|| CreatedFile::new(path));
    let cannot_open = || format!("cannot open {}", path.display());
    let guard_handle = handle.try_clone().with_context(cannot_open)?;
    // -U: every frame straight to the file.
    let mut writer = FileWriter::new(handle, if file.packet_buffered { 0 } else { 1 << 20 });
    if file.direct_io {
        writer = writer.direct(guard_handle.try_clone().with_context(cannot_open)?);
    }
    outputs.notes.push(format!(
        "writing {} {}",
        path.display(),
        if writer.is_direct() {
            "with O_DIRECT (past the page cache)"
        } else {
            "through the page cache"
        }
    ));
    let journal = writer.journal();
    let sink = open_file(Box::new(writer))
        .with_context(|| format!("cannot write the capture file header to {}", path.display()))?;
    Ok(Box::new(Guarded::new(
        sink,
        journal,
        guard_handle,
        path.clone(),
    )))
}

/// The capture's interfaces, as pcapng describes them.
fn pcapng_interfaces(capture: &CaptureInfo) -> Vec<PcapNgInterface> {
    capture
        .interfaces
        .iter()
        .map(|(index, name)| PcapNgInterface {
            index: *index,
            name: name.clone(),
        })
        .collect()
}

/// A capture file written from a file read with `-r`: the frames the filter keeps, as the
/// kernel keeps them live.
struct Kept {
    inner: Box<dyn Sink>,
    keep: Filter,
}

impl Sink for Kept {
    fn frame(&mut self, packet: &Decoded<'_>) -> io::Result<bool> {
        if self.keep.shows(packet.transport().as_ref()) {
            self.inner.frame(packet)
        } else {
            Ok(false)
        }
    }

    fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
        self.inner.control(control)
    }

    fn unwritten(&self) -> u64 {
        self.inner.unwritten()
    }
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

/// `--metrics-token FILE`: the file's first line, which must not be empty.
fn read_token(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the metrics token from {} (--metrics-token): name a readable file \
             whose first line is the token",
            path.display()
        )
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    if token.is_empty() || token.len() > 4096 {
        anyhow::bail!(
            "{} (--metrics-token) holds no token on its first line (or one over 4096 bytes)",
            path.display()
        );
    }
    Ok(token)
}
