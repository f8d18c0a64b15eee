//! `-r` reads every capture flavour the same: pcap in both byte orders, micro- and nanosecond
//! resolution, pcapng with several sections and interfaces, and the link types Ethernet,
//! Linux cooked (SLL, SLL2), raw IP and BSD loopback. The variants are made here from a
//! capture in the shared corpus, and all must print what the original prints.

use std::{borrow::Cow, io::Write as _, path::Path, process::Command, time::Duration};

use pcap_file::{
    DataLink, Endianness,
    pcap::{PcapHeader, PcapPacket, PcapReader, PcapTsResolution, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock, interface_description::InterfaceDescriptionBlock,
            section_header::SectionHeaderBlock,
        },
    },
};

fn corpus_frames() -> Option<Vec<(Duration, u32, Vec<u8>)>> {
    let Some(dir) = std::env::var_os("NTPTAP_CORPUS") else {
        eprintln!("notice: NTPTAP_CORPUS is not set; skipping the reader tests");
        return None;
    };
    let path = Path::new(&dir).join("tcpdump/ntp.pcap");
    let mut reader = PcapReader::new(std::fs::File::open(&path).expect("corpus ntp.pcap")).unwrap();
    let mut frames = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.unwrap();
        frames.push((p.timestamp(), p.orig_len(), p.data().to_vec()));
    }
    Some(frames)
}

fn print(file: &Path, stdin: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ntptap"));
    cmd.args(["-n", "-tttt", "-v"]).env("TZ", "UTC");
    let out = if stdin {
        cmd.args(["-r", "-"])
            .stdin(std::fs::File::open(file).unwrap())
            .output()
            .unwrap()
    } else {
        cmd.arg("-r").arg(file).output().unwrap()
    };
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write_pcap(
    path: &Path,
    link: DataLink,
    endianness: Endianness,
    res: PcapTsResolution,
    frames: &[(Duration, u32, Vec<u8>)],
) {
    let header = PcapHeader {
        datalink: link,
        endianness,
        ts_resolution: res,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(path).unwrap(), header).unwrap();
    for (ts, orig, data) in frames {
        w.write_packet(&PcapPacket::new(*ts, *orig, data.as_slice()).unwrap())
            .unwrap();
    }
}

/// The frames with their Ethernet header replaced by `header(ethertype)`.
fn relink(
    frames: &[(Duration, u32, Vec<u8>)],
    header: impl Fn(u16) -> Vec<u8>,
) -> Vec<(Duration, u32, Vec<u8>)> {
    frames
        .iter()
        .map(|(ts, orig, data)| {
            let ethertype = u16::from_be_bytes([data[12], data[13]]);
            let mut out = header(ethertype);
            let grow = out.len();
            out.extend_from_slice(&data[14..]);
            (*ts, orig - 14 + grow as u32, out)
        })
        .collect()
}

#[test]
fn every_file_flavour_prints_the_same() {
    let Some(frames) = corpus_frames() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.pcap");
    write_pcap(
        &reference,
        DataLink::ETHERNET,
        Endianness::Little,
        PcapTsResolution::MicroSecond,
        &frames,
    );
    let want = print(&reference, false);
    assert_eq!(
        want.lines().filter(|l| l.contains("NTPv4")).count(),
        8,
        "{want}"
    );

    let mut variants = Vec::new();
    for (name, endianness, res) in [
        ("be-us.pcap", Endianness::Big, PcapTsResolution::MicroSecond),
        (
            "le-ns.pcap",
            Endianness::Little,
            PcapTsResolution::NanoSecond,
        ),
        ("be-ns.pcap", Endianness::Big, PcapTsResolution::NanoSecond),
    ] {
        let path = dir.path().join(name);
        write_pcap(&path, DataLink::ETHERNET, endianness, res, &frames);
        variants.push(path);
    }
    // Linux cooked v1: packet type, ARPHRD, address length, 8 address bytes, protocol.
    let sll = relink(&frames, |t| {
        [
            vec![0, 0, 0, 1, 0, 6],
            vec![2, 0, 0, 0, 0, 1, 0, 0],
            t.to_be_bytes().to_vec(),
        ]
        .concat()
    });
    // Linux cooked v2: protocol, reserved, interface index, ARPHRD, packet type, address length, address.
    let sll2 = relink(&frames, |t| {
        [
            t.to_be_bytes().to_vec(),
            vec![0, 0, 0, 0, 0, 3, 0, 1, 0, 6],
            vec![2, 0, 0, 0, 0, 1, 0, 0],
        ]
        .concat()
    });
    let raw = relink(&frames, |_| Vec::new());
    // BSD loopback: the address family in host byte order (AF_INET = 2).
    let null = relink(&frames, |_| 2u32.to_ne_bytes().to_vec());
    for (name, link, frames) in [
        ("sll.pcap", DataLink::LINUX_SLL, &sll),
        ("sll2.pcap", DataLink::LINUX_SLL2, &sll2),
        ("raw.pcap", DataLink::RAW, &raw),
        ("ipv4.pcap", DataLink::IPV4, &raw),
        ("null.pcap", DataLink::NULL, &null),
    ] {
        let path = dir.path().join(name);
        write_pcap(
            &path,
            link,
            Endianness::Little,
            PcapTsResolution::MicroSecond,
            frames,
        );
        variants.push(path);
    }

    let ng = dir.path().join("two-sections.pcapng");
    write_two_section_pcapng(&ng, &frames);
    variants.push(ng);

    for path in &variants {
        assert_eq!(
            print(path, false),
            want,
            "{} prints differently",
            path.display()
        );
    }
    // Standard input: a stream, not a mapped file.
    assert_eq!(print(&variants[0], true), want, "-r - prints differently");
    assert_eq!(
        print(variants.last().unwrap(), true),
        want,
        "-r - (pcapng) prints differently"
    );
}

#[test]
fn a_file_cut_short_prints_its_frames_then_says_so() {
    let Some(frames) = corpus_frames() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pcap");
    write_pcap(
        &path,
        DataLink::ETHERNET,
        Endianness::Little,
        PcapTsResolution::MicroSecond,
        &frames,
    );
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ntptap"))
        .arg("-r")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout.lines().count(),
        7,
        "the seven whole frames: {stdout}"
    );
    assert!(stderr.contains("cut short after frame 7"), "{stderr}");
}

/// pcapng: two sections (big then little endian), each with an Ethernet and a raw-IP
/// interface; frames alternate between the interfaces.
fn write_two_section_pcapng(path: &Path, frames: &[(Duration, u32, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapNgWriter::with_section_header(
        file,
        SectionHeaderBlock {
            endianness: Endianness::Big,
            ..Default::default()
        },
    )
    .unwrap();
    let halves = frames.split_at(frames.len() / 2);
    for (section, half) in [halves.0, halves.1].into_iter().enumerate() {
        if section == 1 {
            let next = SectionHeaderBlock {
                endianness: Endianness::Little,
                ..Default::default()
            };
            w.write_pcapng_block(next).unwrap();
        }
        for link in [DataLink::ETHERNET, DataLink::RAW] {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: link,
                snaplen: 0,
                options: vec![],
            })
            .unwrap();
        }
        for (i, (ts, orig, data)) in half.iter().enumerate() {
            let (interface_id, data, orig) = if i % 2 == 0 {
                (0, data.clone(), *orig)
            } else {
                (1, data[14..].to_vec(), orig - 14)
            };
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id,
                timestamp: *ts,
                original_len: orig,
                data: Cow::Owned(data),
                options: vec![],
            })
            .unwrap();
        }
    }
    w.into_inner().flush().unwrap();
}

/// Counts frames; the readers' own entry points are what is tested.
struct Count(u64);

impl ntptap::frame::Consumer for Count {
    fn frame(&mut self, _: &ntptap::frame::Frame<'_>) -> std::io::Result<bool> {
        self.0 += 1;
        Ok(true)
    }
    fn event(&mut self, _: ntptap::frame::SourceEvent<'_>) -> std::io::Result<()> {
        Ok(())
    }
    fn unwritten(&self) -> u64 {
        0
    }
}

/// Cut at every byte, a capture reads as a prefix of whole frames and then a clear error, or
/// reads whole; never a panic; and a cut never yields more frames than the whole file has.
#[test]
fn a_capture_cut_at_every_byte_reads_a_prefix_or_fails_clearly() {
    let Some(dir) = std::env::var_os("NTPTAP_CORPUS") else {
        eprintln!("notice: NTPTAP_CORPUS is not set; skipping");
        return;
    };
    for file in ["tcpdump/ntp.pcap", "nts/go_embeded.pcapng"] {
        let bytes = std::fs::read(Path::new(&dir).join(file)).unwrap();
        let mut whole = Count(0);
        ntptap::input::read_slice(&bytes, &mut whole, None).expect("the whole file reads");
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            for streamed in [false, true] {
                let mut n = Count(0);
                let result = if streamed {
                    ntptap::input::read_stream(cut, &mut n, None)
                } else {
                    ntptap::input::read_slice(cut, &mut n, None)
                };
                assert!(n.0 <= whole.0, "{file} cut at {len}: {} frames", n.0);
                if let Err(e) = result {
                    let msg = format!("{e:#}");
                    assert!(
                        msg.contains("corrupt or cut short")
                            || msg.contains("not a capture file")
                            || msg.contains("not a valid"),
                        "{file} cut at {len}: unclear error {msg}"
                    );
                }
            }
        }
    }
}

/// Absurd record lengths, zero-length records, a huge snap length: a clear error or what
/// decodes, in bounded memory.
#[test]
fn hostile_headers_fail_clearly_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let header = |snaplen: u32| {
        let mut h = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        h.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h
    };
    let record = |incl: u32, orig: u32| {
        [
            1u32.to_le_bytes(),
            0u32.to_le_bytes(),
            incl.to_le_bytes(),
            orig.to_le_bytes(),
        ]
        .concat()
    };
    let cases = [
        (
            "absurd.pcap",
            [
                header(65535),
                record(0xF000_0000, 0xF000_0000),
                vec![0; 100],
            ]
            .concat(),
            false,
        ),
        ("zero.pcap", [header(65535), record(0, 60)].concat(), true),
        ("hugesnap.pcap", header(u32::MAX), true),
    ];
    for (name, bytes, ok) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        for stdin in [false, true] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ntptap"));
            cmd.arg("--all");
            if stdin {
                cmd.args(["-r", "-"])
                    .stdin(std::fs::File::open(&path).unwrap());
            } else {
                cmd.arg("-r").arg(&path);
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.success(), ok, "{name} (stdin {stdin}): {stderr}");
            if !ok {
                assert!(stderr.contains("corrupt or cut short"), "{name}: {stderr}");
            }
        }
    }
    // SAFETY: getrusage fills the struct we pass.
    let usage = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut u);
        u
    };
    assert!(
        usage.ru_maxrss < 64 * 1024,
        "a child used {} KiB",
        usage.ru_maxrss
    );
}
