//! The container image (`cargo xtask image`, named in `NTPTAP_IMAGE` by `cargo xtask test`):
//! FROM scratch with the static binary, run by podman in a test namespace's network with only
//! CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, under the seccomp profile shipped beside it
//! (`dist/container/seccomp.json`, the systemd unit's system calls: podman 4.3's default
//! profile refuses bpf(2) to a container without CAP_SYS_ADMIN), bpffs and BTF read-only, as
//! the DaemonSet runs it: it captures an ntpdig exchange.

use std::{process::Command, time::Duration};

use ntptap_tests::{Lab, Proc, chrony_server, ntpdig, read_pcap, run};

#[test]
fn the_image_captures_with_three_capabilities() {
    let Ok(image) = std::env::var("NTPTAP_IMAGE") else {
        eprintln!(
            "NTPTAP_IMAGE is not set (cargo xtask test builds the image and names it): skipped"
        );
        return;
    };
    ntptap_tests::require_root();
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let profile = dist.join("container/seccomp.json");
    let unit = std::fs::read_to_string(dist.join("ntptap.service")).unwrap();
    let check = run(Command::new("/usr/bin/python3")
        .args(["-c", "import json, sys\nfor n in json.load(open(sys.argv[1]))['syscalls'][0]['names']:\n    print(n)"])
        .arg(&profile));
    let listed: std::collections::BTreeSet<String> = String::from_utf8_lossy(&check.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed,
        ntptap_tests::unit_syscalls(&unit),
        "dist/container/seccomp.json and the unit's SystemCallFilter disagree"
    );
    let inspect = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.RootFS.Layers}}", &image])
        .output()
        .unwrap();
    let layers = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(inspect.status.success(), "no image {image}");
    // One layer: the binary, FROM scratch.
    assert_eq!(layers.trim().matches("sha256:").count(), 1, "{layers}");
    let lab = Lab::new("image");
    let dir = tempfile::tempdir().unwrap();
    let _server = chrony_server(&lab.a, dir.path());
    let name = format!("ntptap-test-{}", std::process::id());
    let mut tap = Proc::spawn(
        "ntptap in its image",
        Command::new("podman")
            // runc: crun refuses this machine kind's hybrid cgroup layout. The default limits
            // podman asks for exceed the hard limits a sandboxed host may have.
            .args([
                "--runtime",
                "runc",
                "run",
                "--rm",
                "--name",
                &name,
                "--pull=never",
            ])
            .args(["--ulimit=nofile=1024:2048", "--ulimit=nproc=1024:2048"])
            .arg(format!("--network=ns:/run/netns/{}", lab.b.name))
            .args(["--cap-drop=all", "--cap-add=bpf,net_admin,perfmon"])
            .args(["--read-only", "--security-opt=no-new-privileges"])
            .arg(format!("--security-opt=seccomp={}", profile.display()))
            .args([
                "-v",
                "/sys/fs/bpf:/sys/fs/bpf:ro",
                "-v",
                "/sys/kernel/btf:/sys/kernel/btf:ro",
            ])
            .arg("-v")
            .arg(format!("{}:/out", dir.path().display()))
            .arg(&image)
            .args(["-i", "vb", "-w", "/out/image.pcap"]),
    );
    tap.wait_for_stderr("listening on vb", Duration::from_secs(30));
    ntpdig(&lab.b, Lab::A4);
    std::thread::sleep(Duration::from_millis(500));
    let stop = Command::new("podman")
        .args(["--runtime", "runc", "stop", "--time", "10", &name])
        .output()
        .unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let (status, _, stderr) = tap.wait(Duration::from_secs(20));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("2 packets captured"), "{stderr}");
    assert_eq!(
        read_pcap(&dir.path().join("image.pcap")).len(),
        2,
        "{stderr}"
    );
}
