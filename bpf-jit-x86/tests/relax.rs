//! Branch relaxation from the driver's optimistic first pass: programs whose
//! guesses hold are done in one pass (fixed up in place) and come out as
//! the pass loop makes them (two passes), a short guess that fails falls
//! back to the pass loop, and a branch pushed out of short range only
//! because another branch grew still ends up long. The
//! byte counts below are worked out by hand from the x86-64 encodings
//! (`add`/`xor` r64, imm8: 4 bytes; `mov` r32, imm32: 5 bytes; `test` r64,
//! r64: 3 bytes; `je` rel8: 2 bytes, rel32: 6 bytes).

use bpf_isa::assemble;
use bpf_isa::Program;
use bpf_jit::{CompiledCode, HelperTable, JitOptions, MacroAssembler};

/// Compiles with the pass loop only (no one-pass fix-up).
fn pass_loop(prog: &Program) -> CompiledCode {
    let helpers = HelperTable::new();
    let mut masm = bpf_jit_x86::X86Masm::new();
    masm.buffer_mut().set_one_pass(false);
    bpf_jit::compile(&mut masm, prog, &JitOptions::new(&helpers)).expect("compiles")
}

#[test]
fn short_branches_take_one_pass_or_two_in_the_pass_loop() {
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
    assert_eq!(code.passes, 1);
    // `test rdi, rdi` then a short `je` over the 5-byte `mov eax, 2`.
    let at = code.insn_offsets[1] as usize;
    assert_eq!(&code.code[at + 3..at + 5], &[0x74, 0x05]);
    let looped = pass_loop(&prog);
    assert_eq!(looped.passes, 2);
    assert_eq!(looped.code, code.code);
}

/// Forward and backward branches, short and long, a jump left out (to the
/// next instruction), a local call and a function address load: the first
/// pass's guesses all hold (forward: 4 bytes per instruction so far, the
/// 40-instruction body is 160 bytes), so one pass does, with the bytes the
/// pass loop produces. Forms by hand: `test` r64, r64 is 3 bytes and
/// `cmp` r64, imm8 4, then `jcc rel8` (`7x`) or `jcc rel32` (`0f 8x`).
#[test]
fn one_pass_matches_the_pass_loop() {
    let mut body = String::new();
    for _ in 0..20 {
        body.push_str("r3 += 3\nr3 ^= 1\n");
    }
    let src = format!(
        "r3 = 0
         r0 = 0
         if r1 == 0 goto fs
         r3 += 3
        fs:
         if r2 == 0 goto fl
        bl:
         {body}
         if r3 == 5 goto bl
        bs:
         r3 ^= 1
         if r3 > 100 goto bs
        fl:
         goto next
        next:
         call pc f
         r2 = subprog[f]
         exit
        f:
         r0 = 1
         exit"
    );
    let prog = assemble(&src).expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    assert_eq!(code.passes, 1);
    let looped = pass_loop(&prog);
    assert!(looped.passes >= 2, "{} passes", looped.passes);
    assert_eq!(looped.code, code.code);
    assert_eq!(looped.insn_offsets, code.insn_offsets);
    let op = |pos: usize, skip: usize| {
        let at = code.insn_offsets[pos] as usize + skip;
        code.code[at]
    };
    // Positions: 0 r3 = 0, 1 r0 = 0, 2 je fs, 3 add, 4 je fl, 5..45 body,
    // 45 je bl, 46 xor, 47 ja bs, 48 goto next, 49 call, 50 lea, 51 exit.
    assert_eq!(op(2, 3), 0x74, "forward short je");
    assert_eq!((op(4, 3), op(4, 4)), (0x0f, 0x84), "forward long je");
    assert_eq!((op(45, 4), op(45, 5)), (0x0f, 0x84), "backward long je");
    assert_eq!(op(47, 4), 0x77, "backward short ja");
    assert_eq!(
        code.insn_offsets[48], code.insn_offsets[49],
        "goto +0 left out"
    );
    // Every displacement lands on its target.
    let lands = |end: usize, rel: i64, target: usize| {
        assert_eq!(end as i64 + rel, i64::from(code.insn_offsets[target]));
    };
    let at = code.insn_offsets[2] as usize + 5;
    lands(at, i64::from(code.code[at - 1] as i8), 4);
    let rel32 = |end: usize| {
        i64::from(i32::from_le_bytes(
            code.code[end - 4..end].try_into().unwrap(),
        ))
    };
    let at = code.insn_offsets[4] as usize + 9;
    lands(at, rel32(at), 48);
    let at = code.insn_offsets[45] as usize + 10;
    lands(at, rel32(at), 5);
    let at = code.insn_offsets[47] as usize + 6;
    lands(at, i64::from(code.code[at - 1] as i8), 46);
    let jit = bpf_jit::JitProgram::new(&code, 0xcc).expect("maps");
    // SAFETY: no memory accesses; with r1 = r2 = 0 the loops are skipped.
    unsafe {
        assert_eq!(jit.call([0, 0, 0, 0, 0]), 1);
    }
}

/// The first pass guesses the forward branch short (the code before it
/// averages 4 bytes per instruction, 15 instructions ahead: 60 bytes), but
/// the 14 `movabs` between are 10 bytes each (140 > 127): the fix-up check
/// fails and the pass loop takes over, making it long.
#[test]
fn failed_short_guess_falls_back_to_the_pass_loop() {
    let mut small = String::new();
    for _ in 0..30 {
        small.push_str("r3 ^= 1\n");
    }
    let mut body = String::new();
    for _ in 0..14 {
        body.push_str("r3 = 0x1234567890 ll\n");
    }
    let src = format!(
        "{small}
         r0 = 1
         if r1 == 0 goto out
         {body}
        out:
         exit"
    );
    let prog = assemble(&src).expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    assert!(code.passes >= 2, "{} passes", code.passes);
    let at = code.insn_offsets[31] as usize + 3;
    assert_eq!(&code.code[at..at + 2], &[0x0f, 0x84]);
    assert_eq!(code.insn_offsets[46] - code.insn_offsets[32], 140);
    assert_eq!(pass_loop(&prog).code, code.code);
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
