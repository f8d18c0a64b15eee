//! `dist/kubernetes/daemonset.yaml`: valid against Kubernetes's schemas (kubernetes-validate,
//! from PyPI, installed by `cargo xtask setup` under `target/tools/venv`), with only the three
//! capabilities, host networking, bpffs and BTF read-only; and its command line captures, run
//! as it would run there: root with only those capabilities, no new privileges.

use std::{path::Path, process::Command, time::Duration};

use ntptap_tests::{Lab, Proc, ntpdig, ntptap_bin, run};

fn daemonset() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/kubernetes/daemonset.yaml")
}

#[test]
fn the_daemonset_is_valid_and_asks_for_three_capabilities() {
    let tools = std::env::var_os("NTPTAP_TOOLS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
        std::path::PathBuf::from,
    );
    let validate = tools.join("venv/bin/kubernetes-validate");
    assert!(
        validate.exists(),
        "{} is missing: run `cargo xtask setup`",
        validate.display()
    );
    let out = Command::new(&validate)
        .arg("--strict")
        .arg(daemonset())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("passed"), "{text}");
    // What the issue asks of it, read with Python's YAML parser.
    let check = r"import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
d = next(x for x in docs if x['kind'] == 'DaemonSet')
p = next(x for x in docs if x['kind'] == 'NetworkPolicy')
assert p['spec']['podSelector']['matchLabels'] == d['spec']['selector']['matchLabels'], p
assert [q['port'] for r in p['spec']['ingress'] for q in r['ports']] == [9123], p
s = d['spec']['template']['spec']
assert s['automountServiceAccountToken'] is False
c = s['containers'][0]
assert d['kind'] == 'DaemonSet', d['kind']
assert s['hostNetwork'] is True
sc = c['securityContext']
assert sc['capabilities'] == {'drop': ['ALL'], 'add': ['BPF', 'NET_ADMIN', 'PERFMON']}, sc
assert sc['privileged'] is False and sc['allowPrivilegeEscalation'] is False
assert sc['seccompProfile'] == {'type': 'Localhost', 'localhostProfile': 'ntptap.json'}, sc
mounts = {m['mountPath']: m.get('readOnly') for m in c['volumeMounts']}
assert mounts == {'/sys/fs/bpf': True, '/sys/kernel/btf': True}, mounts
a = d['spec']['template']['metadata']['annotations']
assert a['prometheus.io/scrape'] == 'true' and a['prometheus.io/port'] == '9123', a
r = c['resources']
assert r['requests']['memory'] and r['limits']['memory'], r
print(' '.join(c['args']))
";
    let out = run(Command::new("/usr/bin/python3")
        .args(["-c", check])
        .arg(daemonset()));
    let args = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        args.contains("-i any") && args.contains("$(NODE_IP):9123"),
        "{args}"
    );
}

#[test]
fn the_daemonsets_command_line_captures_with_its_capabilities() {
    let out = run(Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys, yaml\nd = next(x for x in yaml.safe_load_all(open(sys.argv[1])) if x['kind'] == 'DaemonSet')\nprint('\\n'.join(d['spec']['template']['spec']['containers'][0]['args']))",
        ])
        .arg(daemonset()));
    let lab = Lab::new("daemonset");
    // The node's address is the host side of the lab.
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|a| a.replace("$(NODE_IP)", Lab::B4))
        .collect();
    let caps = "+bpf,+net_admin,+perfmon";
    let mut tap = Proc::spawn(
        "ntptap as the DaemonSet runs it",
        lab.b
            .command("setpriv")
            .args(ntptap_tests::only_caps(caps))
            .arg(ntptap_bin())
            .args(&args),
    );
    tap.wait_for_stderr("listening on any", Duration::from_secs(20));
    let dir = tempfile::tempdir().unwrap();
    let _server = ntptap_tests::chrony_server(&lab.a, dir.path());
    ntpdig(&lab.b, Lab::A4);
    std::thread::sleep(Duration::from_millis(1200));
    let scrape = run(lab.a.command("/usr/bin/python3").args([
        "-c",
        &format!(
            "import urllib.request; print(urllib.request.urlopen('http://{}:9123/metrics').read().decode())",
            Lab::B4
        ),
    ]));
    let metrics = String::from_utf8_lossy(&scrape.stdout).into_owned();
    let (status, _, stderr) = tap.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        ntptap_tests::metric(&metrics, "ntptap_frames_written_total"),
        2,
        "one ntpdig exchange, scraped from the node's address:\n{metrics}"
    );
}
