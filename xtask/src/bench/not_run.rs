//! The rows a kernel could not run, each with its reason: reported, and every other row runs.

use std::fmt::Write as _;

/// The rows that did not run on this kernel, each with its reason.
#[derive(Default)]
pub(super) struct NotRun(Vec<(String, String)>);

impl NotRun {
    /// `result`'s rows, or none: the reason is kept for the report.
    pub(super) fn or_empty<T>(&mut self, row: &str, result: anyhow::Result<Vec<T>>) -> Vec<T> {
        result.unwrap_or_else(|e| {
            self.note(row, &e);
            Vec::new()
        })
    }

    pub(super) fn note(&mut self, row: &str, e: &anyhow::Error) {
        // The reason's last line is the one that says it (a panic's message, ntptap's error).
        let reason = format!("{e:#}");
        let reason = reason
            .lines()
            .rev()
            .find(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with("note:") && !l.starts_with("stack backtrace")
            })
            .unwrap_or(&reason)
            .trim()
            .to_owned();
        eprintln!("xtask: bench row not run: {row}: {reason}");
        self.0.push((row.to_owned(), reason));
    }

    /// The report's section, empty when every row ran.
    pub(super) fn section(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let mut md = String::from(
            "\n## Rows not run on this kernel\n\nEach was refused or failed here; the other rows ran.\n\n| row | why |\n|---|---|\n",
        );
        for (row, why) in &self.0 {
            let _ = writeln!(md, "| {row} | {} |", why.replace('|', "\\|"));
        }
        md
    }
}
