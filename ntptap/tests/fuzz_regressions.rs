//! Every input the fuzzers ever broke ntptap with (fuzz/regressions/TARGET/*), replayed
//! through the same entry points the fuzz targets use.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        run(&bytes);
        n += 1;
    }
    n
}

#[test]
fn ntp_decode_regressions() {
    replay("ntp_decode", ntptap::fuzzing::ntp_decode);
}

#[test]
fn print_frame_regressions() {
    replay("print_frame", ntptap::fuzzing::print_frame);
}

#[test]
fn read_capture_regressions() {
    replay("read_capture", ntptap::fuzzing::read_capture);
}
