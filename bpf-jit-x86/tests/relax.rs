//! Branch relaxation from the driver's optimistic first pass: programs whose
//! short guesses hold converge in two passes, and a branch pushed out of
//! short range only because another branch grew still ends up long. The
//! byte counts below are worked out by hand from the x86-64 encodings
//! (`add`/`xor` r64, imm8: 4 bytes; `mov` r32, imm32: 5 bytes; `test` r64,
//! r64: 3 bytes; `je` rel8: 2 bytes, rel32: 6 bytes).

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};

#[test]
fn short_branches_converge_in_two_passes() {
    let prog = assemble(
        "r0 = 1
         if r1 == 0 goto out
         r0 = 2
        out:
         exit",
    )
    .expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    assert_eq!(code.passes, 2);
    // `test rdi, rdi` then a short `je` over the 5-byte `mov eax, 2`.
    let at = code.insn_offsets[1] as usize;
    assert_eq!(&code.code[at + 3..at + 5], &[0x74, 0x05]);
}

/// The outer branch spans the inner one plus 121 bytes: 126 bytes with a
/// short inner branch (fits rel8), 130 with a long one. The inner branch
/// spans more than 127 bytes, so both must end up long.
#[test]
fn growth_pushes_a_neighbour_out_of_short_range() {
    let mut body1 = String::new();
    for _ in 0..14 {
        body1.push_str("r3 += 3\nr3 ^= 1\n");
    }
    let mut body2 = String::new();
    for _ in 0..20 {
        body2.push_str("r3 += 3\nr3 ^= 1\n");
    }
    let src = format!(
        "r0 = 0
         if r1 == 0 goto a
         if r2 == 0 goto b
         {body1}
         r3 += 3
         r0 = 7
        a:
         r0 += 1
         {body2}
        b:
         exit"
    );
    let prog = assemble(&src).expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    assert!(code.passes <= 4, "{} passes", code.passes);
    for pos in [1, 2] {
        let at = code.insn_offsets[pos] as usize;
        assert_eq!(&code.code[at + 3..at + 5], &[0x0f, 0x84], "insn {pos}");
    }
    // The outer `je` (6 bytes after a 3-byte test) lands on `a`.
    let outer = code.insn_offsets[1] as usize + 9;
    let a = code.insn_offsets[2 + 1 + 28 + 2] as usize;
    let rel = i32::from_le_bytes(code.code[outer - 4..outer].try_into().unwrap());
    assert_eq!(outer as i64 + i64::from(rel), a as i64);
    assert_eq!(a - outer, 130);
    let jit = bpf_jit::JitProgram::new(&code, 0xcc).expect("maps");
    // SAFETY: no memory accesses.
    unsafe {
        assert_eq!(jit.call([0, 0, 0, 0, 0]), 1);
        assert_eq!(jit.call([1, 0, 0, 0, 0]), 0);
        assert_eq!(jit.call([1, 1, 0, 0, 0]), 8);
    }
}

/// `ja -1` jumps to itself: an infinite loop (the verifier rejects it, but the
/// JIT also compiles unverified programs). It has displacement 0 from its own
/// label, like a jump to the next instruction, and must still be emitted as
/// `jmp $` (`eb fe`), never left out.
#[test]
fn jump_to_itself_is_emitted() {
    let prog = assemble("r0 = 0\ngoto -1\nexit").expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    let at = code.insn_offsets[1] as usize;
    assert_eq!(&code.code[at..at + 2], &[0xeb, 0xfe]);
    // A loop back over an instruction that emitted nothing (`goto +0`).
    let prog = assemble("r0 = 0\ngoto +0\ngoto -2\nexit").expect("assembles");
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    assert_eq!(
        code.insn_offsets[1], code.insn_offsets[2],
        "goto +0 emits nothing"
    );
    let at = code.insn_offsets[2] as usize;
    assert_eq!(&code.code[at..at + 2], &[0xeb, 0xfe]);
}
