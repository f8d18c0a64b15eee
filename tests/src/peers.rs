//! Real NTP peers (chronyd, ntpd from NTPsec, ntpdig) run in a lab's namespaces with their own
//! configuration, and paced request traffic.

use std::{path::Path, process::Output, thread, time::Duration};

use crate::{
    net::Netns,
    proc::{Proc, run, tools_root},
};

/// A chrony server in `ns`, with its own configuration (local clock, stratum 8, no command
/// port, never touching the system clock, contacting no one).
#[must_use]
pub fn chrony_server(ns: &Netns, dir: &Path) -> Proc {
    chrony_server_with(ns, dir, "")
}

/// [`chrony_server`] with more configuration lines (`ratelimit ...`).
#[must_use]
pub fn chrony_server_with(ns: &Netns, dir: &Path, more: &str) -> Proc {
    let conf = dir.join("chrony-server.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 8\nallow\ncmdport 0\npidfile {0}/chronyd-server.pid\ndriftfile {0}/server.drift\n{more}",
            dir.display()
        ),
    )
    .expect("write chrony.conf");
    let chronyd = tools_root().join("usr/sbin/chronyd");
    let mut proc = Proc::spawn(
        "chronyd (server)",
        ns.command(chronyd)
            .args(["-d", "-x", "-u", "root", "-f"])
            .arg(&conf),
    );
    proc.wait_for_stderr("chronyd version", Duration::from_secs(10));
    // chronyd binds its socket right after printing its banner.
    thread::sleep(Duration::from_millis(300));
    proc
}

/// NTPsec's ntpd as a server in `ns`: no time sources, clock discipline off (it never touches
/// the system clock), rate limiting with kiss-o'-death for every address (`restrict default
/// limited kod`), statistics in `dir`.
#[must_use]
pub fn ntpsec_server(ns: &Netns, dir: &Path) -> Proc {
    let conf = dir.join("ntpsec.conf");
    std::fs::write(
        &conf,
        format!(
            "restrict default limited kod nomodify noquery\nrestrict 127.0.0.1\ndisable ntp\nstatsdir {}/\n",
            dir.display()
        ),
    )
    .expect("write ntp.conf");
    let ntpd = tools_root().join("usr/sbin/ntpd");
    let proc = Proc::spawn(
        "ntpd (NTPsec server)",
        ns.command(ntpd).args(["-n", "-u", "root", "-c"]).arg(&conf),
    );
    // ntpd's stderr is block-buffered into a pipe: ask it the time until it answers.
    let answered = ns.enter(|| {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a timeout");
        let mut request = [0u8; 48];
        request[0] = 0x23;
        (0..50).any(|_| {
            let _ = s.send_to(&request, "127.0.0.1:123");
            s.recv(&mut [0u8; 128]).is_ok()
        })
    });
    assert!(answered, "NTPsec's ntpd did not answer within 10 s");
    proc
}

/// chronyd as a client that never touches the clock: a few samples from `server`, then exit.
pub fn chrony_client(ns: &Netns, dir: &Path, server: &str) -> Output {
    let chronyd = tools_root().join("usr/sbin/chronyd");
    run(ns.command(chronyd).args([
        "-u",
        "root",
        "-Q",
        "-t",
        "20",
        &format!("server {server} iburst maxsamples 4"),
        "cmdport 0",
        &format!("pidfile {}/chronyd-client.pid", dir.display()),
    ]))
}

/// ntpsec's SNTP client, one query to `server`.
pub fn ntpdig(ns: &Netns, server: &str) -> Output {
    let root = tools_root();
    run(ns
        .command("/usr/bin/python3")
        .arg(root.join("usr/bin/ntpdig"))
        .args(["-t", "3", server])
        .env("PYTHONPATH", root.join("usr/lib/python3/dist-packages")))
}

/// A Python script sending NTP client requests numbered from 0 (the last four bytes) to
/// `server` port 123 for `seconds`, `rate` a second (0: as fast as Python sends).
pub fn paced_requests(server: &str, rate: u32, seconds: f64) -> String {
    format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         rate, start = {rate}, time.perf_counter()\n\
         end, sent = start + {seconds}, 0\n\
         while True:\n\
         \x20   now = time.perf_counter()\n\
         \x20   if now >= end: break\n\
         \x20   due = int((now - start) * rate) if rate else sent + 64\n\
         \x20   while sent < due:\n\
         \x20       s.sendto(b'\\x23' + bytes(43) + sent.to_bytes(4, 'big'), ({server:?}, 123)); sent += 1\n\
         \x20   if rate: time.sleep(0.0005)\n"
    )
}

/// `n` NTP client requests numbered from 0 from `ns` to `server` (IPv4), `gap` apart.
pub fn numbered_requests(ns: &Netns, server: &str, n: u32, gap: Duration) {
    let script = format!(
        "import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range({n}):\n    s.sendto(b'\\x23' + bytes(43) + i.to_bytes(4, 'big'), ({server:?}, 123))\n    time.sleep({})\n",
        gap.as_secs_f64()
    );
    run(ns.command("/usr/bin/python3").args(["-c", &script]));
}
