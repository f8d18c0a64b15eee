//! The one consumer of a source's frames: decode once, track exchanges once, fan out.

use std::{io, time::Duration};

use super::{decoded::Decoded, decoded::PortSet, sink::Control, sink::Sink};
use crate::{
    exchange::{Observation, Pairing, Tracker, residence::Residence},
    frame::{Consumer, Frame, PcapRecords, SourceEvent},
};

/// A list of sinks fed the same frames, with the exchange tracker they share.
pub struct Pipeline {
    ports: PortSet,
    sinks: Vec<Box<dyn Sink>>,
    tracker: Option<Tracker>,
    /// Where the outputs need a local server's residence and nothing else of pairing.
    residence: Option<Residence>,
    /// No sink shows or writes frames (`--no-print --stats`, `--flight-recorder` alone): `-c`
    /// then counts every frame taken.
    every_frame_counts: bool,
    /// With `-r`, the filter expression frames must match to go anywhere.
    expression: Option<std::sync::Arc<crate::filter::Expression>>,
    /// Some output uses the frames' socket owners.
    owners: bool,
}

impl Pipeline {
    /// No sinks yet; frames are NTP on `ports`. With [`Pairing::Full`], one [`Tracker`]
    /// within those limits pairs requests with responses for every sink (the `--stats` table,
    /// the JSON events, the metrics, the flight recorder's triggers); with
    /// [`Pairing::Residence`], a [`Residence`] pairs them for the replies' in-host latency
    /// alone (a pcapng file's comments).
    #[must_use]
    pub fn new(ports: PortSet, pairing: Pairing) -> Self {
        let (tracker, residence) = match pairing {
            Pairing::None => (None, None),
            Pairing::Residence(limits) => (None, Some(Residence::new(&limits))),
            Pairing::Full(limits) => (Some(Tracker::new(limits)), None),
        };
        Self {
            ports,
            sinks: Vec::new(),
            tracker,
            residence,
            every_frame_counts: false,
            expression: None,
            owners: true,
        }
    }

    /// Whether some output uses the frames' socket owners (by default, yes).
    #[must_use]
    pub fn with_owners(mut self, owners: bool) -> Self {
        self.owners = owners;
        self
    }

    /// Frames the filter `expression` rejects go nowhere (frames read with `-r`).
    #[must_use]
    pub fn with_expression(
        mut self,
        expression: Option<std::sync::Arc<crate::filter::Expression>>,
    ) -> Self {
        self.expression = expression;
        self
    }

    /// No sink shows or writes frames: report every frame as taken, so that `-c` counts them.
    pub fn count_every_frame(&mut self) {
        self.every_frame_counts = true;
    }

    /// Add a sink; sinks see each frame in the order they were added.
    pub fn push(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }
}

/// Tell every sink, even after one failed; the first error is the result.
fn each(sinks: &mut [Box<dyn Sink>], control: &Control<'_>) -> io::Result<()> {
    let mut result = Ok(());
    for sink in sinks {
        let r = sink.control(control);
        if result.is_ok() {
            result = r;
        }
    }
    result
}

impl Consumer for Pipeline {
    fn frame(&mut self, frame: &Frame<'_>) -> io::Result<bool> {
        // A frame read with -r that the expression rejects, as the kernel would have.
        if let Some(expression) = &self.expression {
            if frame.link != crate::frame::LinkType::Ethernet {
                return Err(io::Error::other(format!(
                    "frame {} is of link type {:?}: ntptap compiles filter expressions for \
                     Ethernet frames; read this file without one (--port, --host)",
                    frame.number, frame.link
                )));
            }
            if !expression.matches(frame.data, frame.orig_len) {
                return Ok(false);
            }
        }
        let mut packet = Decoded::new(frame, &self.ports);
        if let Some(tracker) = &mut self.tracker {
            if let Some((src, dst, ntp)) = packet.ntp_packet() {
                if let Some(drop) = frame.drop {
                    tracker.dropped((src, dst), ntp, drop.reason);
                } else {
                    let hop_limit = packet.ntp().and_then(|n| n.hop_limit);
                    let seen = tracker.observe_seen(
                        &Observation::of_frame(frame, (src, dst), ntp).with_hop_limit(hop_limit),
                    );
                    packet.latency = (!seen.latency.is_empty()).then_some(seen.latency);
                    packet.served = seen.served;
                    packet.exchange = seen.exchange;
                }
            }
            packet.events = tracker.take_events();
        } else if let Some(residence) = &mut self.residence
            && frame.drop.is_none()
        {
            // A request waits for its reply as its bytes say it; nothing else asks for its
            // decode here.
            if let Some(request) = packet.request() {
                residence.asked(request, frame.ts, frame.mono_ns, frame.direction);
            } else if let Some((src, dst, ntp)) = packet.ntp_packet() {
                let latency = residence.observe(&Observation::of_frame(frame, (src, dst), ntp));
                packet.latency = (!latency.is_empty()).then_some(latency);
            }
        }
        let mut shown = self.every_frame_counts;
        for sink in &mut self.sinks {
            shown |= sink.frame(&packet)?;
        }
        Ok(shown)
    }

    fn event(&mut self, event: SourceEvent<'_>) -> io::Result<()> {
        match event {
            SourceEvent::Tick(now) => {
                if let Some(tracker) = &mut self.tracker {
                    tracker.expire(now);
                }
                if let Some(residence) = &mut self.residence {
                    residence.expire(now);
                }
                each(
                    &mut self.sinks,
                    &Control::Tick {
                        now,
                        exchanges: self.tracker.as_ref(),
                    },
                )
            }
            SourceEvent::Kernel(counts) => each(&mut self.sinks, &Control::Kernel(counts)),
            SourceEvent::Rotate(now) => each(&mut self.sinks, &Control::Rotate(now)),
            SourceEvent::Flush => each(&mut self.sinks, &Control::Flush),
            SourceEvent::Trigger(who, at) => each(&mut self.sinks, &Control::Trigger(who, at)),
            SourceEvent::Close(stats) => {
                if let Some(tracker) = &mut self.tracker {
                    tracker.settle();
                    if stats.end > Duration::ZERO {
                        tracker.expire(stats.end);
                    }
                }
                each(
                    &mut self.sinks,
                    &Control::Close {
                        stats,
                        exchanges: self.tracker.as_ref(),
                    },
                )
            }
        }
    }

    fn wants_owners(&self) -> bool {
        self.owners
    }

    /// Only when the one sink is a pcap file and nothing is decoded or tracked for anyone.
    fn pcap_records(&mut self) -> Option<&mut dyn PcapRecords> {
        match self.sinks.as_mut_slice() {
            [only]
                if self.tracker.is_none()
                    && self.residence.is_none()
                    && self.expression.is_none() =>
            {
                only.pcap_records()
            }
            _ => None,
        }
    }

    fn unwritten(&self) -> u64 {
        self.sinks.iter().map(|s| Sink::unwritten(&**s)).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, io::Write, rc::Rc, sync::Arc};

    use super::*;
    use crate::{
        counts::Counts,
        exchange::Limits,
        frame::CloseStats,
        output::{
            Filter,
            health::HealthSink,
            json::JsonSink,
            metrics::MetricsSink,
            pcap::PcapSink,
            rotate::{RotatePolicy, RotatingSink},
            text::{TextOptions, TextSink},
        },
    };

    /// A writer whose bytes the test reads after the sink that owns it is boxed away.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.borrow()).into_owned()
        }
    }

    /// An NTP packet: mode 3 (a request, transmit `t`) or 4 (a response to `t`; stratum 0
    /// with a RATE kiss code when `kiss`).
    fn ntp(mode: u8, t: u64, kiss: bool) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = (4 << 3) | mode;
        if mode == 4 {
            p[1] = if kiss { 0 } else { 2 };
            p[12..16].copy_from_slice(if kiss { b"RATE" } else { b"GPS\0" });
            p[24..32].copy_from_slice(&t.to_be_bytes());
            p[32..40].copy_from_slice(&(t + (1 << 32)).to_be_bytes());
            p[40..48].copy_from_slice(&(t + (1 << 32) + 1000).to_be_bytes());
        } else {
            p[40..48].copy_from_slice(&t.to_be_bytes());
        }
        p
    }

    fn udp(client_to_server: bool, payload: &[u8]) -> Vec<u8> {
        let (a, b) = ([192, 0, 2, 1], [192, 0, 2, 123]);
        let builder = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]);
        let builder = if client_to_server {
            builder.ipv4(a, b, 64).udp(40000, 123)
        } else {
            builder.ipv4(b, a, 64).udp(123, 40000)
        };
        let mut out = Vec::new();
        builder.write(&mut out, payload).expect("a frame");
        out
    }

    fn frame(number: u64, data: &[u8]) -> Frame<'_> {
        let ts = Duration::new(1_700_000_000, 0) + Duration::from_millis(number);
        Frame {
            mono_ns: Some(number),
            ifindex: Some(2),
            iface: Some("eth0"),
            ..Frame::test(number, ts, data)
        }
    }

    #[test]
    fn a_frame_is_decoded_once_for_every_output_and_one_tracker_serves_them() {
        let ports = PortSet::new(vec![123]);
        let filter = Filter {
            ports: ports.clone(),
            all: false,
        };
        let (json, text, table) = (Shared::default(), Shared::default(), Shared::default());
        let exposition = crate::output::metrics::Exposition::default();
        let mut pipeline = Pipeline::new(ports, Pairing::Full(Limits::default()));
        pipeline.push(Box::new(
            JsonSink::new(json.clone(), filter.clone()).with_server_stats(Duration::from_secs(1)),
        ));
        let verbose = TextOptions {
            verbose: 2,
            ..TextOptions::default()
        };
        pipeline.push(Box::new(TextSink::new(text.clone(), verbose, filter)));
        pipeline.push(Box::new(HealthSink::new(
            table.clone(),
            Duration::from_secs(1),
        )));
        pipeline.push(Box::new(MetricsSink::new(Arc::clone(&exposition), 4096)));

        let t = 0xe8a1_2345_0000_0000;
        let frames = [
            udp(true, &ntp(3, t, false)),
            udp(false, &ntp(4, t, false)),
            udp(true, &ntp(3, t + 7, false)),
            udp(false, &ntp(4, t + 7, true)),
        ];
        crate::ntp::packet::DECODES.with(|d| d.set(0));
        for (n, data) in frames.iter().enumerate() {
            assert!(pipeline.frame(&frame(n as u64 + 1, data)).unwrap());
        }
        let decodes = crate::ntp::packet::DECODES.with(std::cell::Cell::get);
        assert_eq!(decodes, 4, "four NTP frames, four outputs: one decode each");

        pipeline
            .event(SourceEvent::Tick(Duration::new(1_700_000_001, 0)))
            .unwrap();
        pipeline
            .event(SourceEvent::Close(&CloseStats::default()))
            .unwrap();
        let json = json.text();
        assert_eq!(
            json.matches("\"event\":\"kiss_of_death\"").count(),
            1,
            "{json}"
        );
        // The server event counts what the one tracker paired: two requests, two responses.
        let server = json
            .lines()
            .find(|l| l.contains("\"event\":\"server\""))
            .expect("a server event");
        assert!(
            server.contains("\"requests\":2") && server.contains("\"responses\":2"),
            "{server}"
        );
        assert_eq!(
            text.text().lines().filter(|l| l.contains("NTPv4")).count(),
            4
        );
        let table = table.text();
        assert!(table.contains("192.0.2.123"), "{table}");
        let metrics = String::from_utf8(exposition.lock().unwrap().to_vec()).unwrap();
        assert!(
            metrics.contains("ntptap_server_responses_total{server=\"192.0.2.123\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("ntptap_events_total{event=\"kiss_of_death\"} 1"),
            "{metrics}"
        );
    }

    #[test]
    fn with_nothing_that_shows_frames_every_frame_counts_for_c() {
        let data = udp(true, &ntp(3, 1, false));
        let exposition = crate::output::metrics::Exposition::default();
        let mut pipeline = Pipeline::new(PortSet::new(vec![123]), Pairing::Full(Limits::default()));
        pipeline.push(Box::new(MetricsSink::new(exposition, 4096)));
        assert!(
            !pipeline.frame(&frame(1, &data)).unwrap(),
            "metrics show nothing"
        );
        pipeline.count_every_frame();
        assert!(pipeline.frame(&frame(2, &data)).unwrap());
    }

    /// What a sink was told, in order.
    #[derive(Clone, Default)]
    struct Heard(Rc<RefCell<Vec<&'static str>>>);

    impl Sink for Heard {
        fn frame(&mut self, _: &Decoded<'_>) -> io::Result<bool> {
            self.0.borrow_mut().push("frame");
            Ok(true)
        }
        fn control(&mut self, control: &Control<'_>) -> io::Result<()> {
            self.0.borrow_mut().push(match control {
                Control::Tick { .. } => "tick",
                Control::Kernel(_) => "kernel",
                Control::Rotate(_) => "rotate",
                Control::Flush => "flush",
                Control::Trigger(..) => "trigger",
                Control::Close { .. } => "close",
            });
            Ok(())
        }
        fn unwritten(&self) -> u64 {
            0
        }
    }

    fn tell_everything(pipeline: &mut Pipeline) {
        let data = udp(true, &ntp(3, 1, false));
        pipeline.frame(&frame(1, &data)).unwrap();
        let now = Duration::new(1_700_000_000, 0);
        pipeline.event(SourceEvent::Tick(now)).unwrap();
        pipeline
            .event(SourceEvent::Kernel(&Counts::default()))
            .unwrap();
        pipeline.event(SourceEvent::Rotate(now)).unwrap();
        pipeline.event(SourceEvent::Flush).unwrap();
        pipeline
            .event(SourceEvent::Close(&CloseStats::default()))
            .unwrap();
    }

    /// A pcap file behind the failure guard, as `-w FILE.pcap` builds it, in a pipeline.
    fn pcap_file(pairing: Pairing) -> (Pipeline, tempfile::NamedTempFile) {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let writer = crate::output::file::FileWriter::new(tmp.reopen().unwrap(), 1 << 20);
        let journal = writer.journal();
        let sink = PcapSink::new(Box::new(writer) as Box<dyn Write>, 2048).unwrap();
        let mut pipeline = Pipeline::new(PortSet::new(vec![123]), pairing);
        pipeline.push(Box::new(crate::output::file::Guarded::new(
            Box::new(sink),
            journal,
            tmp.reopen().unwrap(),
            tmp.path().into(),
        )));
        (pipeline, tmp)
    }

    /// `-w FILE.pcap` alone takes frames' bytes without a decode, and writes the very bytes
    /// the frame path writes; anything else on the pipeline (here the tracker a pcapng file
    /// or `--stats` brings) takes the frame path.
    #[test]
    fn a_lone_pcap_file_takes_records_and_writes_what_frames_write() {
        let data = udp(true, &ntp(3, 1, false));
        let frames: Vec<Frame<'_>> = (1..=3).map(|n| frame(n, &data)).collect();
        let (mut by_frame, frame_file) = pcap_file(Pairing::None);
        for f in &frames {
            assert!(by_frame.frame(f).unwrap());
        }
        by_frame
            .event(SourceEvent::Close(&CloseStats::default()))
            .unwrap();
        let (mut by_record, record_file) = pcap_file(Pairing::None);
        let records = by_record
            .pcap_records()
            .expect("a lone pcap file takes records");
        for f in &frames {
            records.record(f.ts, f.data, f.orig_len).unwrap();
        }
        by_record
            .event(SourceEvent::Close(&CloseStats::default()))
            .unwrap();
        let written = std::fs::read(record_file.path()).unwrap();
        assert_eq!(written, std::fs::read(frame_file.path()).unwrap());
        assert_eq!(written.len(), 24 + 3 * (16 + data.len()));
        assert_eq!(by_record.unwritten(), 0);
        for pairing in [
            Pairing::Full(Limits::default()),
            Pairing::Residence(Limits::default()),
        ] {
            let (mut paired, _file) = pcap_file(pairing);
            assert!(paired.pcap_records().is_none(), "pairing needs frames");
        }
    }

    #[test]
    fn every_sink_hears_everything_through_every_wrapper() {
        // Plain, boxed twice, and as the file behind the failure guard.
        let plain = Heard::default();
        let boxed = Heard::default();
        let guarded = Heard::default();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut pipeline = Pipeline::new(PortSet::new(vec![123]), Pairing::Full(Limits::default()));
        pipeline.push(Box::new(plain.clone()));
        pipeline.push(Box::new(Box::new(boxed.clone())));
        let writer = crate::output::file::FileWriter::new(tmp.reopen().unwrap(), 0);
        pipeline.push(Box::new(crate::output::file::Guarded::new(
            Box::new(guarded.clone()),
            writer.journal(),
            tmp.reopen().unwrap(),
            tmp.path().into(),
        )));
        tell_everything(&mut pipeline);
        let all = ["frame", "tick", "kernel", "rotate", "flush", "close"];
        for heard in [plain, boxed, guarded] {
            assert_eq!(*heard.0.borrow(), all);
        }

        // Each file of a rotating series: the series starts a new file on the rotation and
        // tells the new one, and the old one is closed.
        let dir = tempfile::tempdir().unwrap();
        let files = Heard::default();
        let opened = files.clone();
        let open = Box::new(move |out: Box<dyn Write>| -> io::Result<Box<dyn Sink>> {
            // A real pcap header, so the guard has a header to keep; then the recorder.
            let _ = PcapSink::new(out, 100)?;
            Ok(Box::new(opened.clone()))
        });
        let create = Box::new(|p: &std::path::Path| std::fs::File::create(p));
        let series = RotatingSink::new(
            dir.path().join("x.pcap"),
            RotatePolicy::default(),
            open,
            create,
            Duration::new(1_700_000_000, 0),
        )
        .unwrap();
        let mut pipeline = Pipeline::new(PortSet::new(vec![123]), Pairing::None);
        pipeline.push(Box::new(series));
        tell_everything(&mut pipeline);
        assert_eq!(
            *files.0.borrow(),
            [
                "frame", "tick", "kernel", "close", "rotate", "flush", "close"
            ],
            "the first file closes on the rotation, the second hears the rest"
        );
    }
}
