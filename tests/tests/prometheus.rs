//! The Prometheus side: the alert and recording rules in `dist/prometheus/` pass
//! `promtool check rules` and their unit tests (`promtool test rules`: every alert fires on
//! the series that should fire it and stays quiet on the others), and the metrics ntptap
//! serves during a real chrony exchange pass promtool's metric lints.
//! promtool comes from Debian's `prometheus` package, unpacked by `cargo xtask setup`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use ntptap_tests::{Lab, Proc, chrony_client, chrony_server, ntptap_bin, tools_root};

fn promtool() -> PathBuf {
    let path = tools_root().join("usr/bin/promtool");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask setup`",
        path.display()
    );
    path
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/prometheus")
}

#[test]
fn the_rules_check_and_their_unit_tests_pass() {
    for (what, args) in [
        ("check rules", ["check", "rules", "ntptap.rules.yml"]),
        ("test rules", ["test", "rules", "ntptap.rules.test.yml"]),
    ] {
        let out = Command::new(promtool())
            .args(args)
            .current_dir(rules_dir())
            .output()
            .expect("promtool runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {what}:\n{text}");
        assert!(text.contains("SUCCESS"), "promtool {what}:\n{text}");
    }
}

/// `promtool check metrics` reads the Prometheus text format, not OpenMetrics: for an
/// OpenMetrics counter family (`# TYPE x counter`, samples `x_total`) it finds no help text for
/// `x_total`, and may take the family for a counter whose name lacks `_total`. Those readings
/// are left out, and only for families whose help is there; every other lint it has (help
/// text, naming, units in names, duplicate and malformed samples) must pass.
#[test]
fn the_metrics_pass_promtools_lints() {
    let lab = Lab::new("promlint");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let mut tap = Proc::spawn(
        "ntptap --metrics",
        lab.b.command(ntptap_bin()).args([
            "-i",
            "vb",
            "--metrics",
            "127.0.0.1:9123",
            "-w",
            "/dev/null",
        ]),
    );
    tap.wait_for_stderr("listening on", Duration::from_secs(20));
    chrony_client(&lab.b, dir.path(), Lab::A4);
    std::thread::sleep(Duration::from_millis(2200));
    let scrape = ntptap_tests::run(lab.b.command("/usr/bin/python3").args([
        "-c",
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9123/metrics').read().decode(), end='')",
    ]));
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGINT);
    assert!(status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&scrape.stdout).into_owned();
    for family in [
        "ntptap_server_offset_seconds{",
        "ntptap_server_requests_total{",
        "ntptap_server_stratum{",
        "ntptap_server_root_dispersion_seconds{",
        "ntptap_kernel_frames_total{",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    // No metric name mixes units: gauges in seconds say so, counters end in _total.
    assert!(!text.contains("ntptap_server{"), "{text}");
    assert!(!text.contains("ntptap_server_exchanges"), "{text}");
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        use std::io::Write as _;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    let out = check.wait_with_output().expect("promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty())
        // OpenMetrics counter families, read as the text format (see above): the family
        // `x` has its help, which promtool then misses for the samples `x_total`.
        .filter(|l| {
            !l.strip_suffix(" no help text")
                .and_then(|name| name.strip_suffix("_total"))
                .is_some_and(|family| text.contains(&format!("# HELP {family} ")))
        })
        .filter(|l| !l.contains("counter metrics should have \"_total\" suffix"))
        .filter(|l| !l.contains("# EOF"))
        .collect();
    assert!(
        problems.is_empty(),
        "promtool check metrics:\n{report}\n{text}"
    );
}
