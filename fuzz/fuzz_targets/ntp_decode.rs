//! The NTP decoder on arbitrary bytes: never a panic; what decodes whole re-encodes to the
//! same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ntptap::fuzzing::ntp_decode(data);
});
