//! Why the kernel refused a program, in one line a user can act on.
//!
//! A refusal is either the verifier's (the program is wrong for this kernel's verifier: a bug
//! to report, with the verifier's own error line) or a missing piece (a helper or a context
//! field this kernel lacks: a kernel too old for the feature). The two are told apart here,
//! once, for every program ntptap loads; a verifier dump never reaches the user's terminal
//! (`NTPTAP_LOG=debug` logs it whole).

use aya::programs::ProgramError;
use tracing::debug;

/// What a refused load or attach means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The kernel lacks something the program uses (a helper, a context field).
    Missing(String),
    /// The verifier refused the program: its error line.
    Verifier(String),
    /// Anything else (a system call's error, an attach point that is not there).
    Other(String),
}

impl Refusal {
    /// Classify `err` for the program `name`; the whole verifier log goes to the debug log.
    pub fn of(name: &str, err: &ProgramError) -> Self {
        let ProgramError::LoadError { verifier_log, .. } = err else {
            return Self::Other(err.to_string());
        };
        let log = verifier_log.to_string();
        debug!(program = name, "verifier log:\n{log}");
        Self::from_log(&log).unwrap_or_else(|| Self::Other(err.to_string()))
    }

    /// Classify a verifier log; `None` for an empty one.
    pub fn from_log(log: &str) -> Option<Self> {
        if let Some(helper) = log.lines().find_map(|l| {
            l.split_once("unknown func ")
                .map(|(_, h)| h.trim().to_owned())
        }) {
            return Some(Self::Missing(format!(
                "this kernel lacks the helper {helper}"
            )));
        }
        if log.contains("invalid bpf_context access") {
            return Some(Self::Missing(
                "this kernel lacks a context field the program reads".to_owned(),
            ));
        }
        error_line(log).map(Self::Verifier)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(what) | Self::Other(what) => f.write_str(what),
            Self::Verifier(line) => write!(f, "the verifier refused it: {line}"),
        }
    }
}

/// Lines a verifier prints after its error, or around it, that are not the error: statistics
/// (every kernel), and the explained format's annotations (7.x: source lines, register
/// updates, suggestions, per-subprogram statistics).
fn is_commentary(line: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "processed ",
        "verification time",
        "stack depth",
        "max_states_per_insn",
        "subprog ",
        "Suggestion",
        "suggestion",
        "update:",
        "Update:",
        "hint:",
        "Hint:",
        "note:",
        "Note:",
        ";",
        "from ",
        "func#",
        "Func#",
        "last_idx",
        "mark_precise",
        "regs=",
        "parent ",
        "caller:",
        "callee:",
        "Validating ",
        "Global function ",
    ];
    let t = line.trim();
    t.is_empty()
        || PREFIXES.iter().any(|p| t.starts_with(p))
        // An instruction ("12: (85) call ...") or a state ("12: R1=ctx() R10=fp0").
        || t.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        // A register state on a line of its own ("R1=ctx() R2_w=...").
        || (t.starts_with('R')
            && t[1..].split_once(['=', '_']).is_some_and(|(n, _)| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            }))
}

/// Words that mark a line as a verifier's error (`verbose(env, ...)` before `return -E...`).
const ERROR_MARKS: &[&str] = &[
    "expected=",
    "invalid ",
    "unknown func",
    "not allowed",
    "!read_ok",
    "out of bounds",
    "math between",
    "unbounded",
    "too many",
    "too large",
    "too complex",
    "leaks addr",
    "misaligned",
    "back-edge",
    "infinite loop",
    "unreachable insn",
    "cannot ",
    "must be",
    "doesn't",
    "isn't",
    "is not",
    "unsupported",
    "unsafe",
    "prohibited",
    "unreleased reference",
    "not supported",
    "value is outside",
    "pointer arithmetic",
    "min value is negative",
    "max value is outside",
    "R0 !",
    "type=",
];

/// The verifier's error line. In the explained format (7.x) the line it marks `^-- error:`,
/// with the classic line it printed before "Verification failed:" after it in brackets; in
/// the classic format, the last line that reads as an error (an explicit "error:" prefix
/// removed), or else the last line that is not commentary.
fn error_line(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().collect();
    let classic_before_summary = lines
        .iter()
        .position(|l| l.trim_start().starts_with("Verification failed"))
        .and_then(|at| {
            lines[..at]
                .iter()
                .rev()
                .map(|l| l.trim())
                .find(|l| !l.is_empty())
        })
        .filter(|l| !is_commentary(l));
    if let Some(marked) = lines.iter().find_map(|l| {
        l.split_once("^-- error:")
            .map(|(_, e)| e.trim())
            .filter(|e| !e.is_empty())
    }) {
        return Some(match classic_before_summary {
            Some(classic) if classic != marked => format!("{marked} ({classic})"),
            _ => marked.to_owned(),
        });
    }
    if let Some(classic) = classic_before_summary {
        return Some(classic.to_owned());
    }
    let strip = |l: &str| {
        let t = l.trim();
        ["error: ", "Error: ", "ERROR: "]
            .iter()
            .find_map(|p| t.strip_prefix(p))
            .unwrap_or(t)
            .to_owned()
    };
    lines
        .iter()
        .rev()
        .find(|l| {
            let t = l.trim();
            t.starts_with("error:") || t.starts_with("Error:") || t.starts_with("ERROR:")
        })
        .or_else(|| {
            lines
                .iter()
                .rev()
                .find(|l| !is_commentary(l) && ERROR_MARKS.iter().any(|m| l.contains(m)))
        })
        .or_else(|| lines.iter().rev().find(|l| !is_commentary(l)))
        .map(|l| strip(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of 6.18's log for the drop program before its fix (fc-v1147 and fc-v1252).
    const CLASSIC: &str = "\
1001: (bf) r1 = r6                    ; R1_w=fp-64 R6=fp-64
1002: (bf) r3 = r7                    ; R3_w=rdonly_untrusted_mem(sz=0) R7=rdonly_untrusted_mem(sz=0)
1003: (85) call bpf_probe_read_kernel#113
R2 type=rdonly_untrusted_mem expected=scalar
processed 1012 insns (limit 1000000) max_states_per_insn 2 total_states 61 peak_states 61 mark_read 9
";

    /// Debian's 7.3.4 cloud kernel on the drop program before its fix (an excerpt of the log
    /// `NTPTAP_LOG=debug` printed in the kernel matrix's guest): the explained format, its
    /// causal path of register updates, then statistics.
    const EXPLAINED: &str = "\
1002: (79) r3 = *(u64 *)(r10 -184)    ; R3=rdonly_untrusted_mem(sz=0) R10=fp0 fp-184=rdonly_untrusted_mem(sz=0) refs=73
1003: (85) call bpf_probe_read_kernel#113
R2 type=rdonly_untrusted_mem expected=scalar

Verification failed: Call Type Safety: Invalid call argument

Reason:
  The second argument (R2) to bpf_probe_read_kernel does not satisfy the verifier contract: it has
  type rdonly_untrusted_mem, but this argument accepts scalar.

At:
  ntptap_drop @ helpers.rs:1178:5
  Source context:
      1176 | ...
      1177 | ...
  >>> 1178 |     fun(dst, size, unsafe_ptr)
           |     ^-- error: invalid second argument (R2) for bpf_probe_read_kernel
      1179 | ...
  Instruction context:
  >>> 1003 | (85) call bpf_probe_read_kernel#113

Causal path:
  ntptap_drop @ mod.rs:551:14
  >>> 551 |     unsafe { crate::intrinsics::copy_nonoverlapping(src, dst, count) }
          |     ^-- update: R5 changed from map value from NTPTAP_DROP_SCR at offset 192 to integer
          |         scalar with signed range [0, 255], unsigned range [0, 255]
verification time 92008 usec
stack depth max 0
subprog 0 (ntptap_drop) main insns_self 1102 insns_total 3784 stack 192
subprog 1 (memset) static insns_self 2682 insns_total 2682 stack 0
processed 3784 insns (limit 1000000) max_states_per_insn 4 total_states 121 peak_states 105 mark_read 0
";

    #[test]
    fn the_error_line_is_found_in_both_formats() {
        assert_eq!(
            Refusal::from_log(CLASSIC),
            Some(Refusal::Verifier(
                "R2 type=rdonly_untrusted_mem expected=scalar".into()
            ))
        );
        assert_eq!(
            Refusal::from_log(EXPLAINED),
            Some(Refusal::Verifier(
                "invalid second argument (R2) for bpf_probe_read_kernel (R2 \
                 type=rdonly_untrusted_mem expected=scalar)"
                    .into()
            ))
        );
    }

    #[test]
    fn an_explicit_error_prefix_wins() {
        let log = "12: (85) call foo#1\nerror: R1 invalid mem access 'scalar'\nprocessed 3 insns\n";
        assert_eq!(
            Refusal::from_log(log),
            Some(Refusal::Verifier("R1 invalid mem access 'scalar'".into()))
        );
    }

    #[test]
    fn missing_helpers_and_fields_are_not_the_verifiers_fault() {
        let log = "0: (85) call bpf_xdp_load_bytes#189\nunknown func bpf_xdp_load_bytes#189\n";
        assert_eq!(
            Refusal::from_log(log),
            Some(Refusal::Missing(
                "this kernel lacks the helper bpf_xdp_load_bytes#189".into()
            ))
        );
        let log = "0: (61) r2 = *(u32 *)(r1 +164)\ninvalid bpf_context access off=164 size=4\n";
        assert!(matches!(Refusal::from_log(log), Some(Refusal::Missing(_))));
        assert_eq!(
            Refusal::Verifier("R2 type=x".into()).to_string(),
            "the verifier refused it: R2 type=x"
        );
    }

    #[test]
    fn an_empty_log_says_nothing() {
        assert_eq!(Refusal::from_log(""), None);
        assert_eq!(Refusal::from_log("processed 3 insns\n"), None);
    }
}
