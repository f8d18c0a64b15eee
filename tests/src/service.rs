//! The systemd unit's values and system call filter, and the capabilities a unit or a
//! container leaves.

use std::process::Command;

use crate::proc::run;

/// The values of `key=` lines of a systemd `unit`, split on white space.
#[must_use]
pub fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// Every system call a `SystemCallFilter` entry names, groups expanded as systemd expands them.
fn expand_syscalls(
    entry: &str,
    seen: &mut std::collections::BTreeSet<String>,
    calls: &mut std::collections::BTreeSet<String>,
) {
    if !entry.starts_with('@') {
        calls.insert(entry.to_owned());
        return;
    }
    if !seen.insert(entry.to_owned()) {
        return;
    }
    let out = run(Command::new("systemd-analyze").args(["syscall-filter", "--no-pager", entry]));
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        let word = line.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        expand_syscalls(word, seen, calls);
    }
}

/// A systemd `unit`'s allow list of system calls, groups expanded: every `SystemCallFilter=`
/// line that allows, less those of the lines that deny (`~`), as systemd combines them.
#[must_use]
pub fn unit_syscalls(unit: &str) -> std::collections::BTreeSet<String> {
    let mut calls = std::collections::BTreeSet::new();
    let mut denied = std::collections::BTreeSet::new();
    let (mut seen, mut seen_denied) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for line in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        match line.strip_prefix('~') {
            Some(rest) => rest
                .split_whitespace()
                .for_each(|e| expand_syscalls(e, &mut seen_denied, &mut denied)),
            None => line
                .split_whitespace()
                .for_each(|e| expand_syscalls(e, &mut seen, &mut calls)),
        }
    }
    calls.retain(|c| !denied.contains(c));
    assert!(calls.len() > 100 && calls.contains("bpf"), "{calls:?}");
    calls
}

/// `setpriv` arguments that keep exactly `caps` (e.g. `+bpf,+net_admin,+perfmon`): inheritable,
/// ambient (so they survive exec) and bounding, with no new privileges, as a systemd unit's
/// `AmbientCapabilities` or a container's capability list leave them.
#[must_use]
pub fn only_caps(caps: &str) -> Vec<String> {
    vec![
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set=-all,{caps}"),
        "--no-new-privs".to_owned(),
    ]
}
