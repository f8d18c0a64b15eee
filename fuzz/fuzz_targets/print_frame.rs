//! The dissector and every printer (text at -vvv with -X and -e, JSON) on an arbitrary frame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ntptap::fuzzing::print_frame(data);
});
