//! `cargo xtask imports`: the import circles between the files of each crate, from the paths
//! the code names (`use crate::…`, `super::…`, `self::…`, and such paths written inline), each
//! resolved to the file of the longest module it names. A circle is a set of files each of
//! which reaches the others through such paths (a strongly connected component of more than
//! one file): a child importing back from its parent's `mod.rs` counts, as it ties the two
//! together. Prints the circles and the largest files; exits non-zero with `--deny` if any.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::Path,
};

use anyhow::{Context as _, bail};

/// The crates looked at: (source folder, name).
const CRATES: &[(&str, &str)] = &[
    ("ntptap/src", "ntptap"),
    ("ntptap-ebpf/src", "ntptap-ebpf"),
    ("ntptap-common/src", "ntptap-common"),
    ("xtask/src", "xtask"),
    ("tests/src", "ntptap-tests"),
];

/// Module path (`output::pcapng`, `crate` for the root) to the paths it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Print each crate's circles and the five largest files; with `deny`, fail if any circle.
pub fn run(root: &Path, deny: bool) -> anyhow::Result<()> {
    let mut report = String::new();
    let mut circles_found = 0;
    let mut sizes = Vec::new();
    for (dir, name) in CRATES {
        let src = root.join(dir);
        let files = modules(&src)?;
        for path in files.values() {
            let lines = fs::read_to_string(path)?.lines().count();
            sizes.push((lines, format!("{dir}/{}", rel(path, &src))));
        }
        let graph = graph(&files)?;
        let circles = circles(&graph);
        let _ = writeln!(
            report,
            "{name}: {} files, {} import circle{}",
            files.len(),
            circles.len(),
            if circles.len() == 1 { "" } else { "s" }
        );
        for circle in &circles {
            let _ = writeln!(report, "  {}", circle.join(" <-> "));
        }
        circles_found += circles.len();
    }
    sizes.sort_by(|a, b| b.cmp(a));
    let _ = writeln!(report, "largest files:");
    for (lines, path) in sizes.iter().take(5) {
        let _ = writeln!(report, "  {lines:>5} {path}");
    }
    print!("{report}");
    if deny && circles_found > 0 {
        bail!("{circles_found} import circles");
    }
    Ok(())
}

fn rel(path: &Path, src: &Path) -> String {
    path.strip_prefix(src).unwrap_or(path).display().to_string()
}

/// Every `.rs` file under `src` with its module path.
fn modules(src: &Path) -> anyhow::Result<BTreeMap<String, std::path::PathBuf>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap_or(&path);
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let module = if parts.is_empty() {
                "crate".to_owned()
            } else {
                parts.join("::")
            };
            out.insert(module, path);
        }
    }
    Ok(out)
}

/// Who names whom, by module.
fn graph(files: &BTreeMap<String, std::path::PathBuf>) -> anyhow::Result<Graph> {
    let known: BTreeSet<&str> = files.keys().map(String::as_str).collect();
    let mut graph = Graph::new();
    for (module, path) in files {
        let text = fs::read_to_string(path)?;
        // A file's unit tests are not part of its design (and quote paths in their strings).
        let text = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        // Paths that start with a child module this file declares (`mod ring;` then
        // `ring::Drain`) name it as `self::ring` would.
        let children: Vec<String> = code
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
            })
            .collect();
        let edges = graph.entry(module.clone()).or_default();
        for named in paths(&code, &children) {
            if let Some(target) = resolve(module, &named, &known)
                && target != *module
            {
                edges.insert(target);
            }
        }
    }
    Ok(graph)
}

/// The module a path from `module` names: the longest known prefix.
fn resolve(module: &str, path: &[String], known: &BTreeSet<&str>) -> Option<String> {
    let here: Vec<&str> = if module == "crate" {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut base: Vec<&str> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => {
            let mut b = here.clone();
            b.pop();
            b
        }
        Some("self") => here.clone(),
        _ => return None,
    };
    for segment in &path[1..] {
        if segment == "super" {
            base.pop();
        } else {
            base.push(segment);
        }
    }
    // The longest prefix that is a file's module.
    while !base.is_empty() {
        let candidate = base.join("::");
        if known.contains(candidate.as_str()) {
            return Some(candidate);
        }
        base.pop();
    }
    Some("crate".to_owned())
}

/// Every path that starts with `crate`, `super`, `self` or one of `children` in `code`
/// (a child's as `self::child::…`), groups (`{a, b::c}`) expanded.
fn paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let starts: Vec<(String, Vec<String>)> = ["crate", "super", "self"]
        .iter()
        .map(|h| (format!("{h}::"), vec![(*h).to_owned()]))
        .chain(
            children
                .iter()
                .map(|c| (format!("{c}::"), vec!["self".to_owned(), c.clone()])),
        )
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        let found = starts
            .iter()
            .find(|(p, _)| boundary && bytes[i..].starts_with(p.as_bytes()));
        if let Some((p, head)) = found {
            let (found, end) = tree(code, i + p.len(), head.clone());
            out.extend(found);
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The paths of a use tree starting at `at` below `prefix`; where it ends.
fn tree(code: &str, mut at: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let bytes = code.as_bytes();
    let mut path = prefix;
    loop {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'{' {
            let mut out = Vec::new();
            at += 1;
            loop {
                while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
                    at += 1;
                }
                if at >= bytes.len() || bytes[at] == b'}' {
                    return (out, at + 1);
                }
                let (found, end) = tree(code, at, path.clone());
                out.extend(found);
                if end <= at {
                    return (out, at + 1);
                }
                at = end;
            }
        }
        let start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
            at += 1;
        }
        if at > start {
            path.push(code[start..at].to_owned());
        }
        if bytes[at..].starts_with(b"::") {
            at += 2;
            continue;
        }
        // `name as other`: the rename is no path.
        let mut after = at;
        while after < bytes.len() && bytes[after].is_ascii_whitespace() {
            after += 1;
        }
        if bytes[after..].starts_with(b"as ") {
            at = after + 3;
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
                at += 1;
            }
        }
        return (vec![path], at);
    }
}

/// The strongly connected components of more than one module (Tarjan's algorithm), each sorted.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges {
                let w = w.as_str();
                if !s.graph.contains_key(w) {
                    continue;
                }
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_super_resolve_to_files() {
        let found = paths(
            "use super::{build::Creation, pcapng::{self, Sink as S}};\nlet x = crate::frame::Frame::new();\nring::Drain::new()",
            &["ring".to_owned()],
        );
        assert_eq!(
            found,
            vec![
                vec!["super".to_owned(), "build".into(), "Creation".into()],
                vec!["super".to_owned(), "pcapng".into(), "self".into()],
                vec!["super".to_owned(), "pcapng".into(), "Sink".into()],
                vec![
                    "crate".to_owned(),
                    "frame".into(),
                    "Frame".into(),
                    "new".into()
                ],
                vec![
                    "self".to_owned(),
                    "ring".into(),
                    "Drain".into(),
                    "new".into()
                ],
            ]
        );
        let known: BTreeSet<&str> = ["crate", "output", "output::build", "frame"].into();
        let path: Vec<String> = vec!["super".into(), "build".into(), "Creation".into()];
        assert_eq!(
            resolve("output::pcap", &path, &known).as_deref(),
            Some("output::build")
        );
    }

    #[test]
    fn a_circle_is_found_and_a_chain_is_not() {
        let mut g = Graph::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        g.entry("c".into()).or_default().insert("a".into());
        g.entry("d".into()).or_default().insert("a".into());
        assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    }
}
