//! Frames whose code never names `r10` get no frame pointer and no eBPF
//! stack (`push rbp` only, any alignment pad below the callee-saved
//! pushes); when they make no native call either (leaves) not even
//! that, and no pad. What must still hold: `rsp` is 16-byte aligned at
//! every helper call (the SysV ABI: at a function's first instruction
//! `rsp + 8` is a multiple of 16), the caller's `rbp` (its `r10`)
//! survives, and the callee-saved registers come back. Expected values
//! are by hand.

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};
use iced_x86::{Decoder, DecoderOptions, Mnemonic, Register};

// Returns `rsp mod 16` at its first instruction: 8 when the caller kept
// the ABI's alignment. In assembly, so that no compiler prologue moves rsp.
core::arch::global_asm!(
    ".globl bpfkit_test_rsp_mod16",
    "bpfkit_test_rsp_mod16:",
    "mov rax, rsp",
    "and eax, 15",
    "ret",
);

extern "C" {
    #[link_name = "bpfkit_test_rsp_mod16"]
    fn rsp_mod16(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64;
}

/// Compiles and runs `src` with helper 1 = `rsp_mod16`; returns r0 and
/// the image's mnemonics.
fn run(src: &str) -> (u64, Vec<Mnemonic>) {
    let prog = assemble(src).expect("assembles");
    let mut helpers = HelperTable::new();
    helpers.insert(1, rsp_mod16);
    let opts = JitOptions::new(&helpers);
    let code = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
    let ops = Decoder::with_ip(64, &code.code, 0, DecoderOptions::NONE)
        .into_iter()
        .map(|i| i.mnemonic())
        .collect();
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("maps");
    // SAFETY: the programs use registers, their own stack and the helper.
    (unsafe { jit.call([0; 5]) }, ops)
}

#[test]
fn frameless_subprograms_keep_the_call_alignment() {
    // The main program names r10 (a stack slot); the subprograms do not:
    // f with no callee-saved register, g with r6 (an odd push: a pad),
    // h with r6 and r7. Each returns 100 * (rsp mod 16 at the helper) + its
    // own sum. Main adds them and the slot it stored before the calls.
    let src = "*(u64 *)(r10 - 8) = 1000
        r6 = 20000
        call pc f
        r6 += r0
        call pc g
        r6 += r0
        call pc h
        r6 += r0
        r0 = *(u64 *)(r10 - 8)
        r0 += r6
        exit
        f:
        call 1
        r0 *= 100
        exit
        g:
        r6 = 3
        call 1
        r0 *= 100
        r0 += r6
        exit
        h:
        r6 = 4
        r7 = 5
        call 1
        r0 *= 100
        r0 += r6
        r0 += r7
        exit";
    let (r0, ops) = run(src);
    // 1000 + 20000 + 800 + (800 + 3) + (800 + 4 + 5): main's r6 and its
    // stack slot survive three frameless callees.
    assert_eq!(r0, 23_412);
    // One frame pointer set up (main's); three subprograms with none.
    let leaves = ops.iter().filter(|m| **m == Mnemonic::Leave).count();
    assert_eq!(leaves, 1, "{ops:?}");
}

#[test]
fn a_main_program_without_r10_runs_frameless() {
    // No r10 anywhere; an odd number of callee-saved pushes (r6).
    let (r0, ops) = run("r6 = 7\ncall 1\nr0 *= 10\nr0 += r6\nexit");
    assert_eq!(r0, 87);
    assert!(!ops.contains(&Mnemonic::Leave), "{ops:?}");
    // r7 too: two pushes, no pad.
    let (r0, _) = run("r6 = 7\nr7 = 1\ncall 1\nr0 *= 10\nr0 += r6\nr0 += r7\nexit");
    assert_eq!(r0, 88);
}

/// How many `push rbp` the image of `src` has.
fn push_rbp_count(src: &str) -> usize {
    let prog = assemble(src).expect("assembles");
    let mut helpers = HelperTable::new();
    helpers.insert(1, rsp_mod16);
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    Decoder::with_ip(64, &code.code, 0, DecoderOptions::NONE)
        .into_iter()
        .filter(|i| i.mnemonic() == Mnemonic::Push && i.op0_register() == Register::RBP)
        .count()
}

#[test]
fn leaf_subprograms_push_nothing_they_do_not_use() {
    // Main names r10 and calls three leaves (no calls, no r10): f with
    // no callee-saved register, g with r6 and r7, h with r8 alone (an
    // odd push, no pad in a leaf). Then a helper call from main: its
    // alignment after the leaves returned.
    let src = "*(u64 *)(r10 - 8) = 1000
        r6 = 20000
        r1 = 3
        call pc f
        r6 += r0
        r1 = 5
        call pc g
        r6 += r0
        r1 = 4
        call pc h
        r6 += r0
        call 1
        r0 *= 100
        r0 += r6
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        exit
        f:
        r0 = r1
        r0 *= 7
        exit
        g:
        r6 = r1
        r7 = 11
        r0 = r6
        r0 += r7
        exit
        h:
        r8 = r1
        r0 = r8
        r0 <<= 1
        exit";
    let (r0, _) = run(src);
    // r6 = 20000 + 21 + 16 + 8; 100 * 8 (aligned at the helper) + r6 +
    // the slot's 1000: main's r6, r10 and stack survive the leaves.
    assert_eq!(r0, 21_845);
    // Main's frame pointer only.
    assert_eq!(push_rbp_count(src), 1);
}

#[test]
fn a_leaf_main_program_pushes_no_rbp() {
    let src = "r6 = 7\nr0 = r6\nr0 += 1\nexit";
    let (r0, ops) = run(src);
    assert_eq!(r0, 8);
    assert_eq!(push_rbp_count(src), 0);
    // Its r6 (rbx) is still saved and restored.
    assert!(
        ops.contains(&Mnemonic::Push) && ops.contains(&Mnemonic::Pop),
        "{ops:?}"
    );
}
