//! Golden tests over public captures in `$NTPTAP_CORPUS` (the shared corpus: tcpdump's own
//! NTP tests, Zeek's traces, an NTS capture). They are read from there, never copied here.
//!
//! If `NTPTAP_CORPUS` is set, the corpus must be there (CI sets it). If it is not set, these
//! tests print a notice and pass without checking anything: a user's clone has no corpus.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NTPTAP_CORPUS") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("tcpdump").is_dir(),
            "NTPTAP_CORPUS={} has no tcpdump/ folder",
            dir.display()
        );
        return Some(dir);
    }
    eprintln!("notice: NTPTAP_CORPUS is not set; skipping the corpus tests");
    None
}

fn ntptap(args: &[&str], file: &Path) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_ntptap"))
        .args(args)
        .arg("-r")
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .expect("run ntptap");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

fn has_extension(name: &str, ext: &str) -> bool {
    Path::new(name).extension().is_some_and(|e| e == ext)
}

/// The (pcap, expected output, options) rows of tcpdump's TESTLIST for NTP.
fn testlist(dir: &Path) -> Vec<(String, String, String)> {
    let list = std::fs::read_to_string(dir.join("TESTLIST.ntp-lines")).expect("TESTLIST.ntp-lines");
    list.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && has_extension(f[1], "pcap") && has_extension(f[2], "out"))
                .then(|| (f[1].to_owned(), f[2].to_owned(), f[3..].join(" ")))
        })
        .collect()
}

/// Without -v, every line is the same as tcpdump master's expected output, to the character.
/// tcpdump's test harness runs with `-# -n -tttt` in UTC.
#[test]
fn one_line_output_equals_tcpdumps() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("tcpdump");
    let rows: Vec<_> = testlist(&dir)
        .into_iter()
        .filter(|(_, _, args)| args.is_empty())
        .collect();
    assert!(rows.len() >= 5, "TESTLIST rows: {rows:?}");
    for (pcap, expected, _) in rows {
        let (stdout, stderr, ok) = ntptap(&["-#", "-n", "-tttt"], &dir.join(&pcap));
        assert!(ok, "{pcap}: {stderr}");
        let expected = std::fs::read_to_string(dir.join(&expected)).unwrap();
        assert_eq!(
            stdout, expected,
            "{pcap}: one-line output differs from tcpdump's"
        );
    }
}

/// DHCPv6 carrying an NTP-server option is not NTP: nothing matches the port filter.
#[test]
fn dhcpv6_ntp_option_is_not_ntp() {
    let Some(corpus) = corpus() else { return };
    let (stdout, stderr, ok) = ntptap(&[], &corpus.join("tcpdump/dhcpv6-ntp-server.pcap"));
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "");
    let (stdout, _, _) = ntptap(&["--all"], &corpus.join("tcpdump/dhcpv6-ntp-server.pcap"));
    assert_eq!(stdout.lines().count(), 1, "--all shows the frame: {stdout}");
}

/// Every Zeek trace and the NTS pcapng read to the end, and every NTP frame decodes.
#[test]
fn zeek_and_nts_captures_decode() {
    let Some(corpus) = corpus() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("zeek"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    files.push(corpus.join("nts/go_embeded.pcapng"));
    assert!(files.len() >= 9, "{files:?}");
    for file in files {
        let (stdout, stderr, ok) = ntptap(&["-v"], &file);
        assert!(ok, "{}: {stderr}", file.display());
        let ntp_lines = stdout.lines().filter(|l| l.contains(" NTPv")).count();
        assert!(
            ntp_lines > 0,
            "{}: no NTP decoded:\n{stdout}",
            file.display()
        );
        assert!(
            !stdout.contains("[|ntp]") || file.to_string_lossy().contains("misordered"),
            "{}: truncated decode:\n{stdout}",
            file.display()
        );
    }
}

/// The NTS exchange's extension fields are named.
#[test]
fn nts_extension_fields_are_named() {
    let Some(corpus) = corpus() else { return };
    let (stdout, stderr, ok) = ntptap(&["-v"], &corpus.join("nts/go_embeded.pcapng"));
    assert!(ok, "{stderr}");
    for name in [
        "Unique Identifier",
        "NTS Cookie",
        "NTS Authenticator and Encrypted Extension Fields",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
}

/// A file that is not a capture gets a clear error, not a panic.
#[test]
fn not_a_capture_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pcap");
    std::fs::write(&bogus, b"this is not a pcap file").unwrap();
    let (_, stderr, ok) = ntptap(&[], &bogus);
    assert!(!ok);
    assert!(stderr.contains("neither pcap nor pcapng"), "{stderr}");
    let truncated = dir.path().join("truncated.pcap");
    std::fs::write(&truncated, [0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).unwrap();
    let (_, stderr, ok) = ntptap(&[], &truncated);
    assert!(!ok && stderr.contains("not a valid pcap file"), "{stderr}");
}

/// `ntptap -r FILE --json`, one value per frame.
fn json_frames(file: &Path) -> Vec<serde_json::Value> {
    let (stdout, stderr, ok) = ntptap(&["--json"], file);
    assert!(ok, "{}: {stderr}", file.display());
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// The rows of a Zeek log, as field name -> value maps.
fn zeek_log(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fields: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .expect("#fields line")
        .split('\t')
        .map(str::to_owned)
        .collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            fields
                .iter()
                .cloned()
                .zip(l.split('\t').map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Zeek's rendering of an NTP timestamp: Unix seconds, era 0, as `%.6f`.
fn zeek_time(ts: &serde_json::Value) -> f64 {
    let raw = ts["raw"].as_u64().unwrap();
    if raw == 0 {
        return 0.0;
    }
    (raw >> 32) as f64 + (raw & 0xffff_ffff) as f64 / 4_294_967_296.0 - 2_208_988_800.0
}

/// Zeek writes non-printable bytes of a string as `\xNN`.
fn zeek_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1.5e-6 * a.abs().max(1.0)
}

fn num(row: &std::collections::HashMap<String, String>, key: &str) -> f64 {
    row[key]
        .parse()
        .unwrap_or_else(|_| panic!("{key}={} is not a number", row[key]))
}

/// Same endpoints, whichever way the packet went (Zeek's id is the connection's originator).
fn same_endpoints(
    frame: &serde_json::Value,
    row: &std::collections::HashMap<String, String>,
) -> bool {
    let ends = |h: &str, p: &str| (row[h].clone(), row[p].parse::<u64>().unwrap());
    let src = (
        frame["src"].as_str().unwrap_or_default().to_owned(),
        frame["sport"].as_u64().unwrap_or_default(),
    );
    let dst = (
        frame["dst"].as_str().unwrap_or_default().to_owned(),
        frame["dport"].as_u64().unwrap_or_default(),
    );
    let (o, r) = (
        ends("id.orig_h", "id.orig_p"),
        ends("id.resp_h", "id.resp_p"),
    );
    (src == o && dst == r) || (src == r && dst == o)
}

/// Every header field of every packet equals Zeek's decode in its ntp.log, ntp_control.log and
/// ntp_private.log baselines.
#[test]
fn header_fields_equal_zeeks() {
    let Some(corpus) = corpus() else { return };
    let zeek = corpus.join("zeek");
    let base = zeek.join("baseline");
    let cases = [
        ("ntp_ntp.pcap", "scripts.base.protocols.ntp.ntp"),
        ("ntp_ntp2.pcap", "scripts.base.protocols.ntp.ntp2"),
        ("ntp_NTP_sync.pcap", "scripts.base.protocols.ntp.ntp3"),
        (
            "ntp_NTP-digest.pcap",
            "scripts.base.protocols.ntp.ntp-digest",
        ),
        (
            "ntp_misordered-ntp.pcap",
            "scripts.base.protocols.ntp.misordered-ntp",
        ),
        ("ntp_ntpmode67.pcap", "scripts.base.protocols.ntp.ntpmode67"),
    ];
    let mut compared = 0;
    for (pcap, prefix) in cases {
        let frames = json_frames(&zeek.join(pcap));
        for (log, modes) in [
            ("ntp.log", 0..=5),
            ("ntp_control.log", 6..=6),
            ("ntp_private.log", 7..=7),
        ] {
            let path = base.join(format!("{prefix}__{log}"));
            if !path.exists() {
                continue;
            }
            let ours: Vec<&serde_json::Value> = frames
                .iter()
                .filter(|f| {
                    f["ntp"]["mode"]
                        .as_u64()
                        .is_some_and(|m| modes.contains(&m))
                })
                .collect();
            let rows = zeek_log(&path);
            assert_eq!(ours.len(), rows.len(), "{pcap} vs {log}: packet counts");
            for (i, (f, row)) in ours.iter().zip(&rows).enumerate() {
                let what = format!("{pcap} {log} row {}", i + 1);
                let n = &f["ntp"];
                assert!(same_endpoints(f, row), "{what}: endpoints {f}");
                assert_eq!(
                    n["version"].as_u64().unwrap().to_string(),
                    row["version"],
                    "{what}: version"
                );
                assert_eq!(
                    n["mode"].as_u64().unwrap().to_string(),
                    row["mode"],
                    "{what}: mode"
                );
                match log {
                    "ntp.log" => compare_time_row(&what, n, row),
                    "ntp_control.log" => compare_control_row(&what, &n["control"], row),
                    _ => compare_private_row(&what, &n["private"], row),
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 147, "packets compared against Zeek");
}

fn compare_control_row(
    what: &str,
    c: &serde_json::Value,
    row: &std::collections::HashMap<String, String>,
) {
    assert_eq!(
        c["opcode"].as_u64().unwrap().to_string(),
        row["op_code"],
        "{what}: opcode"
    );
    assert_eq!(
        c["sequence"].as_u64().unwrap().to_string(),
        row["sequence"],
        "{what}: sequence"
    );
    assert_eq!(
        c["status"].as_u64().unwrap().to_string(),
        row["status"],
        "{what}: status"
    );
    assert_eq!(
        c["association_id"].as_u64().unwrap().to_string(),
        row["association_id"],
        "{what}: association"
    );
    for (ours, theirs) in [
        ("response", "resp_bit"),
        ("error", "err_bit"),
        ("more", "more_bit"),
    ] {
        let flag = if c[ours].as_bool().unwrap() { "T" } else { "F" };
        assert_eq!(flag, row[theirs], "{what}: {ours}");
    }
}

fn compare_private_row(
    what: &str,
    p: &serde_json::Value,
    row: &std::collections::HashMap<String, String>,
) {
    assert_eq!(
        p["request_code"].as_u64().unwrap().to_string(),
        row["req_code"],
        "{what}: request code"
    );
    assert_eq!(
        p["sequence"].as_u64().unwrap().to_string(),
        row["sequence"],
        "{what}: sequence"
    );
    assert_eq!(
        p["implementation"].as_u64().unwrap().to_string(),
        row["implementation"],
        "{what}: implementation"
    );
    let auth = if p["auth"].as_bool().unwrap() {
        "T"
    } else {
        "F"
    };
    assert_eq!(auth, row["auth_bit"], "{what}: auth bit");
    assert_eq!(
        p["error_code"].as_u64().unwrap().to_string(),
        row["err"],
        "{what}: error code"
    );
}

fn compare_time_row(
    what: &str,
    n: &serde_json::Value,
    row: &std::collections::HashMap<String, String>,
) {
    assert_eq!(
        n["stratum"].as_u64().unwrap().to_string(),
        row["stratum"],
        "{what}: stratum"
    );
    for (ours, theirs) in [
        ("poll_s", "poll"),
        ("precision_s", "precision"),
        ("root_delay", "root_delay"),
        ("root_dispersion", "root_disp"),
    ] {
        let (a, b) = (n[ours].as_f64().unwrap(), num(row, theirs));
        // Zeek prints intervals with 6 decimals.
        assert!(
            (a - b).abs() <= 5e-7 + 1e-9 * b.abs(),
            "{what}: {ours} {a} vs {theirs} {b}"
        );
    }
    for (ours, theirs) in [
        ("reference_ts", "ref_time"),
        ("origin_ts", "org_time"),
        ("receive_ts", "rec_time"),
        ("transmit_ts", "xmt_time"),
    ] {
        let (a, b) = (zeek_time(&n[ours]), num(row, theirs));
        assert!(close(a, b), "{what}: {ours} {a} vs {theirs} {b}");
    }
    let refid = hex_bytes(n["refid_hex"].as_str().unwrap());
    let stratum: u8 = row["stratum"].parse().unwrap();
    let theirs = if stratum >= 2 {
        row["ref_id"]
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.octets().to_vec())
            .unwrap_or_default()
    } else {
        zeek_bytes(&row["ref_id"])
    };
    // Zeek shows an ASCII identifier up to its first NUL.
    let ours = if stratum >= 2 || theirs.len() == 4 {
        refid
    } else {
        refid.into_iter().take_while(|b| *b != 0).collect()
    };
    assert_eq!(ours, theirs, "{what}: reference ID ({})", row["ref_id"]);
    assert_eq!(
        n["extensions"].as_array().unwrap().len().to_string(),
        row["num_exts"],
        "{what}: extension fields"
    );
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Split tcpdump-style output into one block of lines per packet (`-#` numbers start them).
fn packet_blocks(text: &str) -> Vec<Vec<String>> {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in text.lines() {
        let starts = line
            .trim_start()
            .split_once("  ")
            .is_some_and(|(n, _)| n.parse::<u64>().is_ok())
            && line.starts_with("    ");
        if starts || blocks.is_empty() {
            blocks.push(Vec::new());
        }
        blocks.last_mut().unwrap().push(line.to_owned());
    }
    blocks
}

/// tcpdump prints a stratum-2+ reference ID as hex (`0x84c707c9`) with -n; ntptap as the
/// IPv4 address it names (`132.199.7.201`). Map tcpdump's form to ntptap's.
/// tcpdump's `[bad udp cksum 0xS -> 0xC!]` as ntptap says it when ntptap's own line names the
/// checksum offloaded (the only other wording of that bracket it has).
fn offloaded_as_ntptap_says(line: &str, ours: &[String]) -> String {
    let Some((head, rest)) = line.split_once("[bad udp cksum 0x") else {
        return line.to_owned();
    };
    let Some((_, tail)) = rest.split_once("!] ") else {
        return line.to_owned();
    };
    let offloaded = format!("{head}[udp sum offloaded] {tail}");
    if ours.contains(&offloaded) {
        offloaded
    } else {
        line.to_owned()
    }
}

fn refid_as_address(line: &str) -> String {
    let Some((head, hex)) = line.split_once("Reference-ID: 0x") else {
        return line.to_owned();
    };
    match u32::from_str_radix(hex.trim(), 16) {
        Ok(v) => format!("{head}Reference-ID: {}", std::net::Ipv4Addr::from(v)),
        Err(_) => line.to_owned(),
    }
}

/// With -v and -vvv, every line tcpdump master prints for a packet is in ntptap's output for
/// that packet, in the same order; ntptap may print more (status words, mode 6 data, kiss-code
/// meanings, NTS lengths). The deliberate differences:
/// 1. Reference IDs of stratum 2 and up: tcpdump shows hex, ntptap the IPv4 address (the
///    hex is in `--json` as `refid_hex`).
/// 2. tcpdump's "TO-BE-DONE: data not interpreted" under mode 6 responses: ntptap interprets
///    the data (checked: it prints `Data:` or `Associations:` there).
/// 3. tcpdump's "Leap indicator" line for mode 7: in mode 7 those bits are the R and M flags,
///    which ntptap prints with the rest of the mode 7 header (checked).
/// 4. `[bad udp cksum 0xS -> 0xC!]` where 0xS is the pseudo-header's sum alone (a checksum the
///    device was to fill in, on a capture of the sending host): ntptap says `[udp sum
///    offloaded]`, which it prints only where the stored value equals that sum (unit tests in
///    net/mod.rs); the rest of the line must match.
#[test]
fn verbose_output_carries_all_of_tcpdumps() {
    let Some(corpus) = corpus() else { return };
    let dir = corpus.join("tcpdump");
    let mut rows: Vec<_> = testlist(&dir)
        .into_iter()
        .filter(|(pcap, _, args)| args.starts_with("-v") && !pcap.starts_with("dhcpv6"))
        .collect();
    // ntp-v is listed in the TESTLIST's Perl-style block, which `testlist` does not read.
    rows.push(("ntp.pcap".into(), "ntp-v.out".into(), "-v".into()));
    assert!(rows.len() >= 5, "TESTLIST -v rows: {rows:?}");
    let mut lines_checked = 0;
    for (pcap, expected, args) in rows {
        let (stdout, stderr, ok) = ntptap(&["-#", "-n", "-tttt", &args], &dir.join(&pcap));
        assert!(ok, "{pcap}: {stderr}");
        let expected = std::fs::read_to_string(dir.join(&expected)).unwrap();
        let (ours, theirs) = (packet_blocks(&stdout), packet_blocks(&expected));
        assert_eq!(ours.len(), theirs.len(), "{pcap} {args}: packet count");
        for (n, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
            let mut at = 0;
            for line in theirs {
                if line.trim() == "TO-BE-DONE: data not interpreted" {
                    assert!(
                        ours.iter()
                            .any(|l| l.contains("\tData:") || l.contains("\tAssociations:")),
                        "{pcap} packet {}: mode 6 data not interpreted:\n{}",
                        n + 1,
                        ours.join("\n")
                    );
                    continue;
                }
                if line.trim_start().starts_with("Leap indicator:")
                    && theirs.iter().any(|l| l.contains(", Reserved, length"))
                {
                    assert!(
                        ours.iter().any(|l| l.contains("Implementation=")),
                        "{pcap} packet {}: mode 7 header",
                        n + 1
                    );
                    continue;
                }
                let want = offloaded_as_ntptap_says(&refid_as_address(line), ours);
                match ours[at..].iter().position(|l| *l == want) {
                    Some(i) => at += i + 1,
                    None => panic!(
                        "{pcap} {args} packet {}: tcpdump's line\n{want}\nis not in ntptap's output (in order):\n{}",
                        n + 1,
                        ours.join("\n")
                    ),
                }
                lines_checked += 1;
            }
        }
    }
    // Every line of the six expected outputs but the 21 deliberate differences above.
    assert_eq!(lines_checked, 192 + 91, "lines checked");
}

/// `--json --stats`: at the end, a `server` event per server with its exchange health.
#[test]
fn json_server_events_from_a_real_trace() {
    let Some(corpus) = corpus() else { return };
    let (stdout, stderr, ok) = ntptap(
        &["--json", "--stats", "1"],
        &corpus.join("zeek/ntp_ntp2.pcap"),
    );
    assert!(ok, "{stderr}");
    let servers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "server")
        .collect();
    assert_eq!(servers.len(), 17, "one per server in the trace");
    for s in &servers {
        assert!(
            s["responses"].as_u64() == Some(1)
                && s["delay"].as_f64().is_some_and(|d| d > 0.0 && d < 1.0),
            "{s}"
        );
    }
    assert!(
        stderr.contains("NTP servers seen"),
        "the table is on stderr: {stderr}"
    );
}

/// tcpdump on this machine, which the corpus comparisons need (`cargo xtask setup` installs it).
fn tcpdump() -> PathBuf {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("tcpdump"))
        .find(|p| p.is_file());
    found.expect(
        "NTPTAP_CORPUS is set but tcpdump is not installed: `cargo xtask setup` installs it",
    )
}

/// `tcpdump -r FILE ARGS`, in UTC.
fn tcpdump_r(args: &[&str], file: &Path) -> String {
    let out = Command::new(tcpdump())
        .args(args)
        .arg("-r")
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .expect("run tcpdump");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags tcpdump users type, on every capture of the corpus that holds NTP only (with
/// no expression tcpdump shows every frame, ntptap the NTP ones): ntptap's output is the
/// installed tcpdump's, byte for byte. Hex and ASCII layouts (-x -xx -X -XX -A -AA, the
/// doubled letter from the link header on), -q, -e (Ethernet files), and the timestamp
/// formats in both precisions.
#[test]
fn tcpdump_flags_print_as_tcpdump_does() {
    let Some(corpus) = corpus() else { return };
    let mut files: Vec<PathBuf> = ["tcpdump", "zeek", "nts"]
        .iter()
        .filter_map(|d| std::fs::read_dir(corpus.join(d)).ok())
        .flatten()
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| {
            let name = p.to_string_lossy();
            has_extension(&name, "pcap") || has_extension(&name, "pcapng")
        })
        .collect();
    files.sort();
    let flag_sets: &[&[&str]] = &[
        &["-x"],
        &["-xx"],
        &["-X"],
        &["-XX"],
        &["-A"],
        &["-AA"],
        &["-q"],
        &["-q", "-X"],
        &["-nn", "-x", "-#"],
        &["-tt"],
        &["-ttt"],
        &["-ttttt"],
        &["-tt", "--time-stamp-precision=nano"],
        &["-ttt", "--time-stamp-precision=nano"],
        &["-tttt", "--time-stamp-precision=nano"],
        &["-ttttt", "--time-stamp-precision=nano"],
    ];
    let mut compared = 0;
    for file in &files {
        let (ours, _, ok) = ntptap(&["-n"], file);
        assert!(ok, "{}", file.display());
        if ours != tcpdump_r(&["-n"], file) {
            // Other traffic beside the NTP, or a line ntptap says otherwise (the golden
            // tests above cover those): not a file for this comparison.
            continue;
        }
        let ethernet = tcpdump_r(&["-n", "-e", "-c", "1"], file).contains("ethertype");
        let extra: &[&[&str]] = if ethernet {
            &[&["-e"], &["-e", "-x"]]
        } else {
            &[]
        };
        for flags in flag_sets.iter().chain(extra) {
            let args: Vec<&str> = ["-n"].iter().chain(flags.iter()).copied().collect();
            let (ours, stderr, ok) = ntptap(&args, file);
            assert!(ok, "{} {args:?}: {stderr}", file.display());
            let theirs = tcpdump_r(&args, file);
            assert!(
                ours == theirs,
                "{} {args:?}: ntptap's output is not tcpdump's\n--- ntptap\n{ours}\n--- tcpdump\n{theirs}",
                file.display()
            );
            compared += 1;
        }
    }
    eprintln!("{compared} (file, flags) pairs print as tcpdump prints them");
    assert!(compared >= 100, "only {compared} pairs compared");
}

/// `ntptap -r IN -w OUT`, tcpdump's way to cut a file down, over every capture of the corpus:
/// the file written is the installed tcpdump's, byte for byte: with --all beside
/// `tcpdump -r IN -w REF`, without it beside `tcpdump ... 'udp port 123'` (ntptap's default),
/// in nanoseconds and microseconds, and through pcapng and back.
#[test]
fn read_and_write_cuts_a_file_as_tcpdump_does() {
    let Some(corpus) = corpus() else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut files = Vec::new();
    for sub in ["tcpdump", "zeek", "nts"] {
        for entry in std::fs::read_dir(corpus.join(sub)).into_iter().flatten() {
            let path = entry.expect("corpus entry").path();
            let name = path.to_string_lossy().into_owned();
            if has_extension(&name, "pcap") || has_extension(&name, "pcapng") {
                files.push(path);
            }
        }
    }
    let write = |args: &[&str], input: &Path, out: &Path| {
        let (_, stderr, ok) = ntptap(&[args, &["-w", &out.to_string_lossy()]].concat(), input);
        assert!(ok, "ntptap {args:?} -r {} -w: {stderr}", input.display());
        std::fs::read(out).expect("the file ntptap wrote")
    };
    let reference = |args: &[&str], input: &Path, out: &Path| {
        let status = Command::new(tcpdump())
            .arg("-r")
            .arg(input)
            .arg("-w")
            .arg(out)
            .args(args)
            .status()
            .expect("run tcpdump");
        assert!(status.success(), "tcpdump {args:?} -r {}", input.display());
        std::fs::read(out).expect("the file tcpdump wrote")
    };
    let nano = ["--time-stamp-precision=nano"];
    for (i, input) in files.iter().enumerate() {
        let out = |what: &str| dir.path().join(format!("{i}-{what}"));
        let all = reference(&nano, input, &out("ref-all.pcap"));
        let ntp = reference(
            &[&nano[..], &["udp port 123"]].concat(),
            input,
            &out("ref-ntp.pcap"),
        );
        let micro = reference(&[], input, &out("ref-micro.pcap"));
        let named = input.display();
        assert!(
            write(&["--all"], input, &out("all.pcap")) == all,
            "{named} --all"
        );
        assert!(
            write(&[], input, &out("ntp.pcap")) == ntp,
            "{named}: its NTP"
        );
        let args = ["--all", "--time-stamp-precision=micro"];
        assert!(
            write(&args, input, &out("micro.pcap")) == micro,
            "{named} micro"
        );
        write(&["--all"], input, &out("all.pcapng"));
        let back = reference(&nano, &out("all.pcapng"), &out("back.pcap"));
        assert!(back == all, "{named} through pcapng");
    }
    assert!(files.len() >= 10, "{} captures", files.len());
}
