//! UTF-8 text -> both assemblers; they return errors, never panic, and what they
//! assemble encodes to bytecode that decodes back to the same program.
#![no_main]

use bpf_isa::asm::{assemble, assemble_ubpf};
use bpf_isa::Program;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for p in [assemble(text), assemble_ubpf(text)].into_iter().flatten() {
        let bytes = p.to_bytes();
        let back = Program::decode(&bytes).expect("assembler output must decode");
        assert_eq!(back, p, "assembled program does not survive encode/decode");
    }
});
