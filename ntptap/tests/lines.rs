//! The lines ntptap prints against the installed tcpdump's, over a capture of NTP among other
//! traffic (`common/mixed.rs`): a table of tcpdump command lines (the flags people type,
//! alone and combined, at each verbosity), run with `-r` by both. For every frame both
//! decode, the same lines, byte for byte. Where tcpdump decodes further than ntptap (DNS,
//! DHCP, HTTP, SCTP, ESP, GRE, IGMP, IPv6 extension headers), ntptap's line must be tcpdump's
//! cut where ntptap stops, naming the rest by its header alone (`UDP, length 30`,
//! `ip-proto-132 12`): it says nothing it does not decode.
//!
//! Needs tcpdump (`cargo xtask setup` installs it); without it the test says so and fails.

mod common;

use std::{path::Path, process::Command};

use common::mixed::{tcpdump, write_capture};

/// The flags of the table, each run at every verbosity (none, -v, -vv, -vvv).
const FLAG_SETS: &[&[&str]] = &[
    &[],
    &["-nn"],
    &["-q"],
    &["-S"],
    &["-e"],
    &["-K"],
    &["-x"],
    &["-xx"],
    &["-X"],
    &["-XX"],
    &["-A"],
    &["-AA"],
    &["-#"],
    &["-e", "-S", "-x"],
    &["-q", "-e"],
    &["-S", "-K", "-X"],
];

/// ntptap's words for what it names by its header alone (a UDP payload other than NTP, an IP
/// protocol, an ICMP type, an EtherType): where they start in its line, and the word.
fn header_only(line: &str) -> Option<(usize, &'static str)> {
    let words = [
        "UDP, length ",
        "ip-proto-",
        "ICMP type ",
        "ICMP6, type ",
        "ethertype ",
        "[|ether]",
    ];
    words
        .into_iter()
        .find_map(|word| line.rfind(word).map(|at| (at, word)))
}

/// How ntptap's lines for one frame relate to tcpdump's.
#[derive(Debug, PartialEq)]
enum Relation {
    /// The same lines.
    Same,
    /// tcpdump decodes past where ntptap stops: at the first line that differs, ntptap's
    /// line is tcpdump's up to a point, then either nothing (tcpdump goes on with ": ...",
    /// what TCP carries) or ntptap's header-only words; every later line of ntptap's is
    /// tcpdump's last ones (a hex dump of the same bytes).
    Cut,
}

fn relate(ours: &[&str], theirs: &[&str]) -> Result<Relation, String> {
    if ours == theirs {
        return Ok(Relation::Same);
    }
    let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) else {
        // tcpdump goes on where ntptap's lines end: what the message quotes or carries
        // (an ICMP error's datagram, HTTP's headers).
        return if theirs.len() > ours.len() {
            Ok(Relation::Cut)
        } else {
            Err("ntptap prints lines more".into())
        };
    };
    // tcpdump prints lines more between ntptap's (what an ICMP error quotes), and the rest
    // (a dump of the same bytes) is the same.
    let tail = &ours[i..];
    if i > 0 && theirs.len() > ours.len() && theirs[theirs.len() - tail.len()..] == *tail {
        return Ok(Relation::Cut);
    }
    let (a, b) = (ours[i], theirs[i]);
    // Where tcpdump says the same words, the whole line must be the same.
    // An IP protocol ntptap names by number may have ports tcpdump shows (SCTP, DCCP): there
    // the lines agree up to the source address.
    let cut_here = (b.starts_with(a) && b[a.len()..].starts_with(": "))
        || header_only(a).is_some_and(|(at, word)| {
            let agree = if word == "ip-proto-" {
                a.split_once(" > ").map_or(&a[..at], |(head, _)| head)
            } else {
                &a[..at]
            };
            b.starts_with(agree) && !b[at.min(b.len())..].starts_with(word)
        });
    if !cut_here {
        return Err(format!("line {i} differs:\n  ntptap:  {a}\n  tcpdump: {b}"));
    }
    // ntptap words nothing tcpdump does not, and cuts no frame that tcpdump words as one of
    // those ntptap decodes (TCP's flags are left out: DHCP has flags too).
    for word in ["Flags [", "ICMP", "ICMP6", "ARP, ", "NTPv"] {
        let missing = a.contains(word) && !b.contains(word);
        let cut_short = word != "Flags [" && b.contains(word) && !a.contains(word);
        if missing || cut_short {
            return Err(format!("'{word}' in one line only:\n  {a}\n  {b}"));
        }
    }
    let rest = &ours[i + 1..];
    // Where tcpdump ran out of bytes in what ntptap does not decode ("[|ip]"), it dumps the
    // frame whole, from the link header: the dumps start apart.
    if theirs
        .iter()
        .any(|l| l.trim_end().ends_with(']') && l.contains(" [|"))
    {
        return Ok(Relation::Cut);
    }
    if theirs.len() < i + 1 + rest.len() || theirs[theirs.len() - rest.len()..] != *rest {
        return Err("the lines after the cut are not tcpdump's last ones".into());
    }
    Ok(Relation::Cut)
}

/// tcpdump 4.99's words where tcpdump's master, which ntptap follows (the corpus tests hold
/// master's expected output), words otherwise; and a stratum-2 reference ID, which ntptap
/// shows as the address it is (`corpus.rs` says why).
fn as_master_words(line: &str) -> String {
    let mut line = line
        .replace("Originator Timestamp: ", "Origin Timestamp:     ")
        .replace("next-header Options (0)", "next-header HBH (0)");
    if let Some((head, tail)) = line.split_once(") payload length: ") {
        line = format!("{head}), payload length {tail}");
    }
    if let Some((head, hex)) = line.split_once("Reference-ID: 0x")
        && let Ok(v) = u32::from_str_radix(hex.trim(), 16)
    {
        line = format!("{head}Reference-ID: {}", std::net::Ipv4Addr::from(v));
    }
    line
}

/// The output of `tool -r CAP ARGS`, split into one block of lines per frame (each frame's
/// first line starts with its epoch time, `-tt`).
fn frames(tool: &Path, args: &[&str], cap: &Path) -> Vec<Vec<String>> {
    let out = Command::new(tool)
        .args(["-tt", "-r"])
        .arg(cap)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("run the tool");
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // `-#` puts the frame's number first: "    1  1700000000.000001 ...".
        let t = line.trim_start();
        let t = match t.split_once("  ") {
            Some((n, rest)) if n.parse::<u64>().is_ok() => rest,
            _ => t,
        };
        let starts = t.starts_with("1700000") && !line.starts_with('\t');
        if starts || blocks.is_empty() {
            blocks.push(Vec::new());
        }
        blocks
            .last_mut()
            .expect("a block")
            .push(as_master_words(line));
    }
    blocks
}

/// The table: every flag set at every verbosity, ntptap (`--all`: every frame, as tcpdump
/// without an expression) beside tcpdump.
#[test]
fn command_lines_print_tcpdumps_lines() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cap = dir.path().join("mixed.pcap");
    write_capture(&cap);
    let ntptap = Path::new(env!("CARGO_BIN_EXE_ntptap"));
    let (mut same, mut cut, mut lines_run) = (0, 0, 0);
    for flags in FLAG_SETS {
        for verbosity in [None, Some("-v"), Some("-vv"), Some("-vvv")] {
            let args: Vec<&str> = ["-n"]
                .into_iter()
                .chain(flags.iter().copied())
                .chain(verbosity)
                .collect();
            let ours = frames(ntptap, &[&args[..], &["--all"]].concat(), &cap);
            let theirs = frames(&tcpdump(), &args, &cap);
            assert_eq!(ours.len(), theirs.len(), "{args:?}: frames printed");
            for (n, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                let b: Vec<&str> = b.iter().map(String::as_str).collect();
                match relate(&a, &b) {
                    Ok(Relation::Same) => same += 1,
                    Ok(Relation::Cut) => cut += 1,
                    Err(why) => panic!(
                        "ntptap {args:?}, frame {}: {why}\n--- ntptap\n{}\n--- tcpdump\n{}",
                        n + 1,
                        a.join("\n"),
                        b.join("\n")
                    ),
                }
            }
            lines_run += 1;
        }
    }
    eprintln!(
        "{lines_run} command lines: {same} frames print tcpdump's lines, {cut} are cut where \
         ntptap stops decoding"
    );
    assert_eq!(lines_run, FLAG_SETS.len() * 4);
    // What ntptap leaves to tcpdump is a few frames of each run (DNS, mDNS, DHCP, HTTP,
    // SCTP, ESP, GRE, IGMP, the IPv6 hop-by-hop and fragment headers).
    assert!(
        same >= 4 * cut,
        "{same} frames the same, {cut} cut: ntptap decodes too little"
    );
}

#[test]
fn the_comparison_tells_a_cut_from_a_difference() {
    let same = ["1700000000.000000 IP 10.0.0.1.53000 > 10.0.0.2.53: UDP, length 30"];
    assert_eq!(relate(&same, &same), Ok(Relation::Same));
    let dns = ["1700000000.000000 IP 10.0.0.1.53000 > 10.0.0.2.53: 0 [0q] (30)"];
    assert_eq!(relate(&same, &dns), Ok(Relation::Cut));
    let http = ["1 IP 10.0.0.1.50012 > 10.0.0.2.80: Flags [P.], seq 1:29, length 28"];
    let decoded = [
        "1 IP 10.0.0.1.50012 > 10.0.0.2.80: Flags [P.], seq 1:29, length 28: HTTP: GET /",
        "\tHost: b",
    ];
    assert_eq!(relate(&http, &decoded), Ok(Relation::Cut));
    // A word of difference, a line missing, a decode ntptap has and tcpdump words otherwise.
    let other = ["1700000000.000000 IP 10.0.0.1.53000 > 10.0.0.2.53: UDP, length 31"];
    assert!(relate(&same, &other).is_err());
    assert!(relate(&[http[0], "\tmore"], &http).is_err());
    let icmp = ["1 IP 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 10"];
    let ours = ["1 IP 10.0.0.1 > 10.0.0.2: ip-proto-1 10"];
    assert!(relate(&ours, &icmp).is_err());
}
