use aya::programs::{Xdp, SchedClassifier};
fn main() {
    let obj = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ntptap"));
    let mut ebpf = aya::EbpfLoader::new().load(obj).unwrap();
    let p: &mut Xdp = ebpf.program_mut("ntptap_xdp").unwrap().try_into().unwrap();
    if let Err(e) = p.load() { println!("xdp: {e:?}"); }
    for n in ["ntptap_tc_in", "ntptap_tc_out"] {
        let p: &mut SchedClassifier = ebpf.program_mut(n).unwrap().try_into().unwrap();
        if let Err(e) = p.load() { println!("{n}: {e:?}"); }
    }
    println!("done");
}
