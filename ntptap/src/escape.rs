//! Text from outside (the wire, the kernel's interface names) as it may be shown: on a
//! terminal, in a log line, in JSON. One packet must not be able to forge a line (CR, LF),
//! move the cursor or recolour a terminal (ESC and the other C0 and C1 controls, DEL), or
//! reorder what a reader sees (bidirectional overrides and the other invisible format
//! characters, Unicode's category Cf). Each such character becomes `\xNN` (below U+0100) or
//! `\u{XXXX}`; everything else is shown as it is.
//!
//! Bytes that are not text (a process name, a drop location in a `key=value` list) go
//! through [`crate::process::escape`], which escapes every byte that is not printable ASCII.

use std::{borrow::Cow, fmt::Write as _};

/// Invisible format characters (Unicode category Cf) and the line and paragraph separators.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}'
    )
}

fn escape_if(s: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&escaped) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !escaped(c) {
            out.push(c);
        } else if u32::from(c) < 0x100 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// For a terminal or a log line: every control character (C0 but the tab, DEL, C1) and
/// format character escaped. The result is one line.
#[must_use]
pub fn terminal(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| (c.is_control() && c != '\t') || is_format(c))
}

/// For a JSON string: what JSON's own escaping leaves as it is (DEL, C1, format characters)
/// escaped; C0 controls are left to the JSON writer, which escapes them.
#[must_use]
pub fn json(s: &str) -> Cow<'_, str> {
    escape_if(s, |c| {
        c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) || is_format(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_lines_and_bidi_overrides_are_shown_not_obeyed() {
        let forged =
            "version=\"4\"\r\n04:00:00.000000 IP 6.6.6.6.123 > x\u{202e}evil\u{1b}[2J\u{85}";
        let shown = terminal(forged);
        assert!(
            !shown.chars().any(|c| c.is_control() || is_format(c)),
            "{shown}"
        );
        assert_eq!(
            shown,
            "version=\"4\"\\x0d\\x0a04:00:00.000000 IP 6.6.6.6.123 > x\\u{202e}evil\\x1b[2J\\x85"
        );
        let json = json(forged);
        assert!(json.contains("\r\n") && json.contains("\\u{202e}") && json.contains("\\x85"));
        assert!(matches!(
            terminal("plain text\twith a tab"),
            Cow::Borrowed(_)
        ));
    }
}
