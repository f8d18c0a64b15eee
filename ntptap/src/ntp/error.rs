//! What is wrong with a packet decoded only in part: data, as the views and the decoded
//! packet both report it (etherparse's way: what was needed, what was there, where).

use serde::Serialize;

/// What is wrong with a packet that was decoded only in part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NtpError {
    /// The packet ends before a field it must have.
    #[error("truncated: {what} needs {needed} bytes at offset {offset}, {available} captured")]
    Truncated {
        /// The field or header that was cut.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Offset of the field.
        offset: usize,
        /// Bytes that were there from that offset.
        available: usize,
    },
    /// Bytes after the header that are neither extension fields nor a MAC.
    #[error("{length} bytes after the header are neither extension fields nor a MAC")]
    Trailing {
        /// Offset of the first such byte.
        offset: usize,
        /// How many there are.
        length: usize,
    },
}
