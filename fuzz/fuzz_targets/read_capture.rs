//! The pcap/pcapng readers (file and stream paths) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ntptap::fuzzing::read_capture(data);
});
