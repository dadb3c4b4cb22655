//! Bytes -> `Program::decode_validated`; a decoded program must re-encode to the
//! same bytes (up to the one documented alternative encoding, see below) and
//! decode to the same program, and the disassembler must not panic on anything
//! `Program::decode` accepts.
#![no_main]

use bpf_isa::disasm::{fmt_program, DisasmOptions};
use bpf_isa::Program;
use libfuzzer_sys::fuzz_target;

/// `callx` (opcode 0x8d) with the register in `imm` (older LLVM) instead of
/// `dst` (LLVM 19, bpf_conformance): bpf-isa accepts both and writes `dst`.
fn is_legacy_callx(input: &[u8], output: &[u8]) -> bool {
    input[0] == 0x8d
        && input[1] == 0
        && input[4] != 0
        && input[5..8] == [0, 0, 0]
        && output[0] == 0x8d
        && output[1] == input[4]
        && output[2..8] == [0; 6]
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Program::decode(data) {
        // Unvalidated programs (jumps out of range) still disassemble.
        let _ = fmt_program(&p, &DisasmOptions { hex: false });
        let _ = fmt_program(&p, &DisasmOptions { hex: true });
    }
    if let Ok(p) = Program::decode_validated(data) {
        let bytes = p.to_bytes();
        assert_eq!(bytes.len(), data.len(), "re-encoding changed the length");
        for (slot, (a, b)) in data.chunks(8).zip(bytes.chunks(8)).enumerate() {
            assert!(
                a == b || is_legacy_callx(a, b),
                "slot {slot}: re-encoding changed {a:02x?} into {b:02x?}"
            );
        }
        let back = Program::decode_validated(&bytes).expect("re-encoded program must decode");
        assert_eq!(back, p, "decode(encode(p)) != p");
    }
});
