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
        let ntp_lines = stdout.lines().filter(|l| l.contains(": NTPv")).count();
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
