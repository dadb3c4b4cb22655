//! A real run through the pack allocator: compile `r0 = 42; exit` with the
//! x86-64 backend, call it, drop it, compile `r0 = 7; exit` into the same
//! (re-used) chunk and call that: the stale code must be gone. Alone in
//! its binary, so nothing else allocates from the x86 pad byte's packs
//! meanwhile and first fit hands back the same address.

use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};

/// `mov64 r0, imm; exit` encoded by hand from the eBPF ISA
/// (opcode 0xb7 = BPF_ALU64|BPF_MOV|BPF_K, 0x95 = BPF_JMP|BPF_EXIT).
fn ret(imm: u8) -> Program {
    let bytes = [
        0xb7, 0x00, 0x00, 0x00, imm, 0x00, 0x00, 0x00, //
        0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    Program::decode(&bytes).unwrap()
}

#[test]
#[cfg(target_arch = "x86_64")]
fn compiled_program_runs_and_its_chunk_is_reused() {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let a = bpf_jit_x86::compile(&ret(42), &opts).unwrap();
    assert!(a.memory().is_pooled());
    // SAFETY: the program only sets r0.
    assert_eq!(unsafe { a.call([0; 5]) }, 42);
    let p = a.memory().as_ptr();
    drop(a);
    let b = bpf_jit_x86::compile(&ret(7), &opts).unwrap();
    assert_eq!(b.memory().as_ptr(), p, "the freed chunk is reused");
    // SAFETY: as above.
    assert_eq!(unsafe { b.call([0; 5]) }, 7);
    // Many compile/run/drop cycles stay in one place and keep running the new code.
    for i in 0..200u32 {
        let c = bpf_jit_x86::compile(&ret(i as u8), &opts).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { c.call([0; 5]) }, u64::from(i as u8));
    }
}
