//! Rebuild the eBPF object when `bpf-linker` changes: cargo cannot see that dependency.
use which::which;

fn main() {
    // bpf-linker asks LLVM to expand memcpy in order and nothing else: every memset and
    // memmove (a zeroed struct, a struct moved) then became a call to aya-ebpf's byte loop.
    // Without the flag LLVM writes them, memcpy too, as loads and stores (up to 128 of
    // them). Measured with `kernel_bench`: see BENCHMARKS.md.
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!(
            "cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup` to install it"
        ),
    }
}
