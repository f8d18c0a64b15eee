//! Empty on purpose: this library target only lets `ntptap` name `ntptap-ebpf` as a build
//! dependency, so that cargo rebuilds the loader when the kernel programs change. The programs
//! are the binary target, built for the BPF target by aya-build.
#![no_std]
