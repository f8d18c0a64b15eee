//! What the tests of this directory share.
pub mod mixed;
