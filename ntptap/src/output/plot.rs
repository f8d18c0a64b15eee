//! `--plot OUT.png|OUT.svg`: what people would rather look at than read. Per server, the
//! round-trip delay and offset of each exchange over time, with unanswered requests and
//! kiss-o'-death marked; for a server on this host, the requests and replies per second and
//! the distinct clients per minute. Drawn with plotters when the capture ends.

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use cardinality_estimator::CardinalityEstimator;
use plotters::{
    coord::Shift,
    prelude::*,
    style::{FontStyle, register_font},
};

use super::{
    decoded::Decoded, files::create::Creation, files::create::create_output, sink::Control,
    sink::Sink,
};
use crate::{exchange::Event, exchange::Tracker, exchange::clients::Served};

/// Most exchange points kept, over all servers; later ones are counted, not drawn.
const MAX_POINTS: usize = 1_000_000;
/// Most seconds of server-host traffic kept.
const MAX_SECONDS: usize = 1_000_000;
/// Servers drawn, busiest first.
const MAX_SERVERS: usize = 8;
const WIDTH: u32 = 1400;
const PANEL: u32 = 300;

/// Fonts looked for, in order (Debian's fonts-dejavu-core first); `NTPTAP_FONT` names another.
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// PNG or SVG, by the name's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A PNG image.
    Png,
    /// An SVG drawing.
    Svg,
}

impl Format {
    /// The format `path` names, or an error that says which there are.
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("png") => Ok(Format::Png),
            Some(e) if e.eq_ignore_ascii_case("svg") => Ok(Format::Svg),
            _ => bail!("--plot {}: name a .png or an .svg file", path.display()),
        }
    }
}

#[derive(Default)]
struct Series {
    /// (seconds since the first frame, delay ms, offset ms).
    points: Vec<(f64, f64, f64)>,
    kisses: Vec<f64>,
    losses: Vec<f64>,
}

type Sketch = CardinalityEstimator<IpAddr, std::hash::DefaultHasher, 12, 6>;

/// Collects what the plot shows, and draws it when the capture ends.
pub struct PlotSink {
    font: Option<Vec<u8>>,
    path: PathBuf,
    format: Format,
    creation: Creation,
    first: Option<Duration>,
    servers: HashMap<IpAddr, Series>,
    points: usize,
    left_out: u64,
    /// Requests and replies of a server on this host, by second.
    served: BTreeMap<u64, (u32, u32)>,
    /// Distinct clients by minute.
    minutes: BTreeMap<u64, u64>,
    minute: Option<(u64, Sketch)>,
}

impl PlotSink {
    /// A plot to `path` (created by `creation`'s rules when the capture ends). The font is
    /// found now, so that a capture does not run to its end for nothing.
    pub fn new(path: PathBuf, creation: Creation) -> anyhow::Result<Self> {
        let format = Format::of(&path)?;
        if !creation.overwrite && path.symlink_metadata().is_ok() {
            bail!(
                "{} exists: ntptap does not overwrite files unless told to (--overwrite), or choose another name",
                path.display()
            );
        }
        Ok(Self {
            font: Some(load_font()?),
            path,
            format,
            creation,
            first: None,
            servers: HashMap::new(),
            points: 0,
            left_out: 0,
            served: BTreeMap::new(),
            minutes: BTreeMap::new(),
            minute: None,
        })
    }

    fn since(&self, ts: Duration) -> f64 {
        ts.saturating_sub(self.first.unwrap_or(ts)).as_secs_f64()
    }

    fn close_minute(&mut self) {
        if let Some((m, sketch)) = self.minute.take() {
            self.minutes.insert(m, sketch.estimate() as u64);
        }
    }

    fn draw(&mut self, tracker: Option<&Tracker>) -> anyhow::Result<()> {
        self.close_minute();
        let first = self.first.unwrap_or_default();
        if let Some(t) = tracker {
            for (server, seen) in t.losses() {
                // Unanswered requests are marked on their server's panel, not counted as points.
                let at = seen.saturating_sub(first).as_secs_f64();
                self.servers.entry(*server).or_default().losses.push(at);
            }
        }
        let font = match self.font.take() {
            Some(font) => font,
            None => load_font()?,
        };
        register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(font.into_boxed_slice()),
        )
        .map_err(|_| {
            anyhow!("the font is not one plotters can use: set NTPTAP_FONT to a TrueType font")
        })?;
        let server_host = !self.served.is_empty();
        let panels = (2 * u32::from(!self.servers.is_empty()) + 2 * u32::from(server_host)).max(1);
        let size = (WIDTH, PANEL * panels + 60);
        let (file, _) = create_output(&self.path, self.creation)?;
        let mut file = std::io::BufWriter::new(file);
        match self.format {
            Format::Svg => {
                let mut svg = String::new();
                {
                    let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                    self.panels(&root, first, server_host)?;
                    root.present().map_err(|e| anyhow!("drawing: {e}"))?;
                }
                file.write_all(svg.as_bytes())?;
            }
            Format::Png => {
                let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
                {
                    let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
                    self.panels(&root, first, server_host)?;
                    root.present().map_err(|e| anyhow!("drawing: {e}"))?;
                }
                let mut encoder = png::Encoder::new(&mut file, size.0, size.1);
                encoder.set_color(png::ColorType::Rgb);
                encoder.set_depth(png::BitDepth::Eight);
                encoder
                    .write_header()
                    .and_then(|mut w| w.write_image_data(&pixels))
                    .map_err(|e| anyhow!("encoding the PNG: {e}"))?;
            }
        }
        file.flush()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        eprintln!(
            "ntptap: plot written to {} ({} servers, {} exchanges{})",
            self.path.display(),
            self.servers.len().min(MAX_SERVERS),
            self.points,
            if self.left_out > 0 {
                format!("; {} more left out past {MAX_POINTS}", self.left_out)
            } else {
                String::new()
            }
        );
        Ok(())
    }

    fn panels<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        first: Duration,
        server_host: bool,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        let failed = |e: &dyn std::fmt::Display| anyhow!("drawing the plot: {e}");
        root.fill(&WHITE).map_err(|e| failed(&e))?;
        let start = chrono::DateTime::from_timestamp(first.as_secs() as i64, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let root = root
            .titled(
                &format!("ntptap: NTP seen from this host, from {start}"),
                ("sans-serif", 22),
            )
            .map_err(|e| failed(&e))?;
        let mut servers: Vec<(&IpAddr, &Series)> = self.servers.iter().collect();
        servers.sort_by_key(|(ip, s)| (std::cmp::Reverse(s.points.len()), **ip));
        servers.truncate(MAX_SERVERS);
        let n = 2 * usize::from(!servers.is_empty()) + 2 * usize::from(server_host);
        if n == 0 {
            root.draw_text(
                "no NTP exchange and no request to a server on this host in this capture",
                &("sans-serif", 20).into_text_style(&root),
                (40, 40),
            )
            .map_err(|e| failed(&e))?;
            return Ok(());
        }
        let areas = root.split_evenly((n, 1));
        let mut areas = areas.iter();
        let end = self.end();
        let x_desc = format!("seconds since {start}");
        if !servers.is_empty() {
            for what in [Quantity::Delay, Quantity::Offset] {
                let area = areas.next().expect("a panel per quantity");
                server_panel(area, &servers, end, &x_desc, what).map_err(|e| failed(&e))?;
            }
        }
        if server_host {
            let area = areas.next().expect("the rate panel");
            self.rate_panel(area, end, &x_desc)
                .map_err(|e| failed(&e))?;
            let area = areas.next().expect("the clients panel");
            self.clients_panel(area, end, &x_desc)
                .map_err(|e| failed(&e))?;
        }
        Ok(())
    }

    /// The last time anything was seen, seconds since the first frame (at least 1).
    fn end(&self) -> f64 {
        let servers = self
            .servers
            .values()
            .flat_map(|s| {
                s.points
                    .iter()
                    .map(|p| p.0)
                    .chain(s.kisses.iter().chain(&s.losses).copied())
            })
            .fold(0.0, f64::max);
        let base = self.first.map_or(0, |f| f.as_secs());
        let served = self
            .served
            .keys()
            .next_back()
            .map_or(0.0, |s| (s + 1).saturating_sub(base) as f64);
        servers.max(served).max(1.0)
    }

    fn rate_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        end: f64,
        x_desc: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let base = self.first.map_or(0, |f| f.as_secs());
        // About 600 buckets across, each a whole number of seconds; empty ones count as 0.
        let width = ((end / 600.0).ceil() as u64).max(1);
        let buckets = ((end / width as f64).ceil() as usize).max(1);
        let mut rates = vec![(0.0, 0.0); buckets];
        for (s, (q, r)) in &self.served {
            let i = (s.saturating_sub(base) / width) as usize;
            if let Some(b) = rates.get_mut(i) {
                b.0 += f64::from(*q);
                b.1 += f64::from(*r);
            }
        }
        // Per second of each bucket's span (the last is cut short by the end).
        for (i, b) in rates.iter_mut().enumerate() {
            let span = (end - (i as u64 * width) as f64).clamp(1.0, width as f64);
            b.0 /= span;
            b.1 /= span;
        }
        let top = rates.iter().map(|b| b.0.max(b.1)).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "requests and replies per second (a server on this host; {width} s buckets)"
                ),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end, 0.0..top * 1.1)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("packets/s")
            .draw()?;
        let at = |i: usize| (i as u64 * width) as f64;
        // Requests (the first of each bucket's pair), then replies.
        for (label, color, replies) in [("requests/s", BLUE, false), ("replies/s", GREEN, true)] {
            chart
                .draw_series(LineSeries::new(
                    rates
                        .iter()
                        .enumerate()
                        .map(|(i, b)| (at(i), if replies { b.1 } else { b.0 })),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
    }

    fn clients_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        end: f64,
        x_desc: &str,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let base = self.first.map_or(0, |f| f.as_secs());
        let top = self.minutes.values().copied().max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(
                "distinct clients per minute (estimated; a server on this host)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..end, 0.0..top as f64 * 1.1)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("clients")
            .draw()?;
        let at = |m: u64| (m * 60).saturating_sub(base) as f64;
        chart.draw_series(self.minutes.iter().map(|(m, n)| {
            let (x0, x1) = (at(*m), at(*m + 1).min(end));
            Rectangle::new([(x0, 0.0), (x1, *n as f64)], BLUE.mix(0.5).filled())
        }))?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Quantity {
    Delay,
    Offset,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// Delay or offset of each server's exchanges, with its kiss-o'-death (triangles) and
/// unanswered requests (red crosses) along the bottom.
fn server_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    servers: &[(&IpAddr, &Series)],
    end: f64,
    x_desc: &str,
    what: Quantity,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let value = |p: &(f64, f64, f64)| match what {
        Quantity::Delay => p.1,
        Quantity::Offset => p.2,
    };
    let (mut lo, mut hi) = servers
        .iter()
        .flat_map(|(_, s)| s.points.iter().map(value))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(0.001);
    let (lo, hi) = (
        if matches!(what, Quantity::Delay) {
            lo.min(0.0)
        } else {
            lo - pad
        },
        hi + pad,
    );
    let (caption, unit) = match what {
        Quantity::Delay => (
            "round-trip delay of each exchange, per server (× unanswered request, ▲ kiss-o'-death)",
            "delay, ms",
        ),
        Quantity::Offset => (
            "offset of each server's clock from this host's",
            "offset, ms",
        ),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, lo..hi)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(unit).draw()?;
    for (i, (ip, s)) in servers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = decimate(s.points.iter().map(|p| (p.0, value(p))), end);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.mix(0.4).stroke_width(1),
            ))?
            .label(ip.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 2, color.filled())))?;
        // Unanswered requests (red crosses) at the bottom, kiss-o'-death (triangles) above.
        let (low, higher) = (lo + (hi - lo) * 0.03, lo + (hi - lo) * 0.09);
        chart.draw_series(
            columns(&s.losses, end).map(|t| Cross::new((t, low), 5, RED.stroke_width(2))),
        )?;
        chart.draw_series(
            columns(&s.kisses, end)
                .map(|t| TriangleMarker::new((t, higher), 6, RGBColor(230, 120, 0).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// Columns across a panel: a series of any length is drawn as at most two points (its least
/// and its greatest) per column, so a day of exchanges draws as fast, and an SVG stays small,
/// with every spike still there.
const COLUMNS: f64 = 1200.0;

fn column(x: f64, end: f64) -> u32 {
    (x / end * COLUMNS).clamp(0.0, COLUMNS) as u32
}

type Point = (f64, f64);

/// `points` (in time order) reduced to the least and the greatest of each column, in order.
fn decimate(points: impl Iterator<Item = Point>, end: f64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    // The column being gathered, its least point and its greatest.
    let mut current: Option<(u32, Point, Point)> = None;
    let flush = |out: &mut Vec<Point>, (_, a, b): (u32, Point, Point)| {
        let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        out.push(first);
        if second != first {
            out.push(second);
        }
    };
    for p in points {
        let c = column(p.0, end);
        match &mut current {
            Some((col, min, max)) if *col == c => {
                if p.1 < min.1 {
                    *min = p;
                }
                if p.1 > max.1 {
                    *max = p;
                }
            }
            _ => {
                if let Some(done) = current.take() {
                    flush(&mut out, done);
                }
                current = Some((c, p, p));
            }
        }
    }
    if let Some(done) = current {
        flush(&mut out, done);
    }
    out
}

/// The columns in which `times` fall, each once: where a marker goes.
fn columns(times: &[f64], end: f64) -> impl Iterator<Item = f64> {
    let mut seen = std::collections::BTreeSet::new();
    for t in times {
        seen.insert(column(*t, end));
    }
    seen.into_iter()
        .map(move |c| (f64::from(c) + 0.5) / COLUMNS * end)
}

fn load_font() -> anyhow::Result<Vec<u8>> {
    if let Some(path) = std::env::var_os("NTPTAP_FONT") {
        return std::fs::read(&path).with_context(|| {
            format!(
                "cannot read the font NTPTAP_FONT names ({})",
                Path::new(&path).display()
            )
        });
    }
    FONTS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| {
            anyhow!(
                "--plot needs a TrueType font to write its labels: install fonts-dejavu-core, or set NTPTAP_FONT to a .ttf file"
            )
        })
}

impl Sink for PlotSink {
    fn frame(&mut self, packet: &Decoded<'_>) -> std::io::Result<bool> {
        let ts = packet.frame.ts;
        self.first.get_or_insert(ts);
        if let Some(x) = packet.exchange {
            if self.points < MAX_POINTS {
                let at = self.since(ts);
                self.servers.entry(x.server).or_default().points.push((
                    at,
                    x.delay * 1e3,
                    x.offset * 1e3,
                ));
                self.points += 1;
            } else {
                self.left_out += 1;
            }
        }
        for event in &packet.events {
            if let Event::KissOfDeath { server, .. } = event {
                let at = self.since(ts);
                self.servers.entry(server.ip()).or_default().kisses.push(at);
            }
        }
        if let Some(served) = &packet.served
            && (self.served.len() < MAX_SECONDS || self.served.contains_key(&ts.as_secs()))
        {
            let second = self.served.entry(ts.as_secs()).or_default();
            match served {
                Served::Request { .. } => {
                    second.0 += 1;
                    if let Some((src, _, _)) = packet.ntp_packet() {
                        let m = ts.as_secs() / 60;
                        if self.minute.as_ref().is_some_and(|(cur, _)| *cur != m) {
                            self.close_minute();
                        }
                        self.minute
                            .get_or_insert_with(|| (m, Sketch::new()))
                            .1
                            .insert(&src.ip());
                    }
                }
                Served::Reply { .. } => second.1 += 1,
            }
        }
        Ok(false)
    }

    fn control(&mut self, control: &Control<'_>) -> std::io::Result<()> {
        if let Control::Close { exchanges, .. } = control {
            self.draw(*exchanges)
                .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        }
        Ok(())
    }

    fn unwritten(&self) -> u64 {
        0
    }
}
