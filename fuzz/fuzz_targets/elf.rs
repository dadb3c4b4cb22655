//! Bytes -> `bpf_object::Object::parse`: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bpf_object::Object::parse(data);
});
