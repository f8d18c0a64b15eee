//! A guest's initramfs: its init script, modules and programs, packed with cpio.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    kernels::{GUEST_TESTS, Kernel, Unpacked},
    userland::{Programs, place},
};

/// Kernel modules the tests need that Debian's cloud kernels build as modules.
pub(super) const MODULES: &[&str] = &["veth", "sch_ingress", "cls_bpf"];

/// Busybox applets the init script uses.
pub(super) const APPLETS: &[&str] = &[
    "sh", "mount", "mkdir", "insmod", "poweroff", "cat", "echo", "uname", "sleep",
];

/// The guest's init: mount what the tests need, load the modules, run each test binary and
/// report its exit code on the console, power off.
pub(super) fn init_script() -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         export PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         mount -t tmpfs tmp /tmp\n\
         mount -t tmpfs run /run\n\
         mount -t bpf bpf /sys/fs/bpf\n\
         mkdir -p /run/netns\n\
         for m in $(cat /modules/order); do insmod /modules/$m || echo \"NTPTAP-VM-MODULE-FAILED $m\"; done\n\
         # A distribution-like locked-memory limit: on 5.10, where BPF maps count against it,\n\
         # ntptap must raise it itself.\n\
         ulimit -l 64\n\
         echo \"NTPTAP-VM-KERNEL $(uname -r)\"\n\
         export NTPTAP_BIN=/bin/ntptap NTPTAP_TOOLS=/tools RUST_BACKTRACE=1\n",
    );
    for test in GUEST_TESTS {
        let _ = writeln!(
            s,
            "/bin/ntptap-test-{test} --test-threads=1 --nocapture; echo \"NTPTAP-VM-RESULT {test} $?\""
        );
    }
    s.push_str("poweroff -f\n");
    s
}

pub(super) fn build_initramfs(
    dir: &Path,
    kernel: &Kernel,
    unpacked: &Unpacked,
    programs: &Programs,
) -> anyhow::Result<PathBuf> {
    let staging = dir.join(format!("{}.root", kernel.name));
    let _ = fs::remove_dir_all(&staging);
    for sub in ["bin", "sbin", "proc", "sys", "dev", "tmp", "run", "modules"] {
        fs::create_dir_all(staging.join(sub))?;
    }
    let userland = &programs.userland;
    fs::copy(&userland.busybox, staging.join("bin/busybox"))
        .with_context(|| format!("cannot copy {}", userland.busybox.display()))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", staging.join("bin").join(applet))?;
    }
    userland.install(&staging, &userland.ip, "/bin/ip")?;
    userland.install(&staging, &userland.ethtool, "/bin/ethtool")?;
    // chronyd, for the test with real NTP daemons; it runs as root (-u root), which needs a
    // passwd entry.
    userland.install(&staging, &userland.chronyd, "/tools/root/usr/sbin/chronyd")?;
    fs::create_dir_all(staging.join("etc"))?;
    fs::write(staging.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs::write(staging.join("etc/group"), "root:x:0:\n")?;
    // Static binaries: they need no library.
    place(&staging, &programs.ntptap, Path::new("/bin/ntptap"))?;
    for (name, exe) in &programs.tests {
        place(
            &staging,
            exe,
            Path::new(&format!("/bin/ntptap-test-{name}")),
        )?;
    }

    let mut order = Vec::new();
    for module in MODULES {
        let out = Command::new("modprobe")
            .arg("-d")
            .arg(&unpacked.root)
            .args(["-S", &unpacked.release, "--show-depends", module])
            .output()
            .context("cannot run modprobe")?;
        if !out.status.success() {
            bail!(
                "{} has no module {module}: {}",
                unpacked.release,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "insmod /path/to/name.ko[.xz]" ("builtin name" needs nothing).
            let Some(path) = line
                .strip_prefix("insmod ")
                .and_then(|r| r.split_whitespace().next())
            else {
                continue;
            };
            let path = Path::new(path);
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let name = file.trim_end_matches(".xz").to_owned();
            if order.contains(&name) {
                continue;
            }
            let into = staging.join("modules").join(&name);
            if path.extension().is_some_and(|e| e == "xz") {
                let out = Command::new("xz").arg("-dc").arg(path).output()?;
                if !out.status.success() {
                    bail!("cannot decompress {}", path.display());
                }
                fs::write(&into, out.stdout)?;
            } else {
                fs::copy(path, &into)?;
            }
            order.push(name);
        }
    }
    fs::write(staging.join("modules/order"), order.join("\n") + "\n")?;
    let init = staging.join("init");
    fs::write(&init, init_script())?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    let image = dir.join(format!("{}.cpio", kernel.name));
    let file = fs::File::create(&image)?;
    let status = Command::new("sh")
        .args(["-c", "find . -print0 | cpio --null -o -H newc --quiet"])
        .current_dir(&staging)
        .stdout(file)
        .status()
        .context("cannot run cpio")?;
    if !status.success() {
        bail!("cpio failed building {}", image.display());
    }
    Ok(image)
}
