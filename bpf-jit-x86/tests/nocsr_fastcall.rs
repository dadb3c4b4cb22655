//! `bpf_fastcall` helpers in the x86-64 JIT: a helper that (like any SysV
//! C function may) overwrites `rdi`, `rsi`, `rdx`, `rcx` and `r8` — eBPF
//! `r1`–`r5` — leaves them intact for the program once the backend is told
//! the helper is fastcall. Expected values are computed by hand.

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions, JitProgram, MacroAssembler};
use bpf_jit_x86::X86Masm;

// Returns 7 after setting r1..r5's native registers to 1..5. Written in
// assembly: a Rust function that declares those registers clobbered may
// still reuse them (and so restore other values) before it returns once
// optimised, which would hide the clobbering this test needs.
core::arch::global_asm!(
    ".globl bpfkit_test_clobbering_helper",
    "bpfkit_test_clobbering_helper:",
    "mov edi, 1",
    "mov esi, 2",
    "mov edx, 3",
    "mov ecx, 4",
    "mov r8d, 5",
    "mov eax, 7",
    "ret",
);

extern "C" {
    #[link_name = "bpfkit_test_clobbering_helper"]
    fn clobbering_helper(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64;
}

const PROG: &str = "r1 = 11\nr2 = 22\nr3 = 33\nr4 = 44\nr5 = 55\ncall 1\n\
                    r0 += r1\nr0 += r2\nr0 += r3\nr0 += r4\nr0 += r5\nexit";

fn run(preserve: Option<u16>) -> u64 {
    let prog = assemble(PROG).expect("assembles");
    let mut helpers = HelperTable::new();
    helpers.insert(1, clobbering_helper);
    let mut masm = X86Masm::new();
    if let Some(mask) = preserve {
        masm.preserve_around_helper(
            (clobbering_helper as unsafe extern "C" fn(u64, u64, u64, u64, u64) -> u64) as usize
                as u64,
            mask,
        );
    }
    let code = bpf_jit::compile(&mut masm, &prog, &JitOptions::new(&helpers)).expect("compiles");
    let jit = JitProgram::new(&code, X86Masm::PAD_BYTE).expect("maps");
    // SAFETY: the program only calls the helper above.
    unsafe { jit.call([0; 5]) }
}

#[test]
fn fastcall_helper_preserves_r1_to_r5() {
    // 7 + 11 + 22 + 33 + 44 + 55
    assert_eq!(run(Some(0b11_1110)), 172);
    // r1 alone (odd number of pushes: the stack is realigned): 7 + 11 + 2 + 3 + 4 + 5.
    assert_eq!(run(Some(0b10)), 32);
}

#[test]
fn ordinary_helper_clobbers_r1_to_r5() {
    // Without the declaration the helper's writes show: 7 + 1 + 2 + 3 + 4 + 5.
    assert_eq!(run(None), 22);
}

/// The same through the shared plumbing: the preserve mask registered with
/// the helper ([`HelperTable::insert_fastcall`]) reaches the backend via the
/// driver, without declaring anything on the backend itself.
#[test]
fn helper_table_mask_reaches_the_backend() {
    let prog = assemble(PROG).expect("assembles");
    for (mask, want) in [
        (0b11_1110u16, 172u64),
        (0b1000, 7 + 1 + 2 + 33 + 4 + 5),
        (0, 22),
    ] {
        let mut helpers = HelperTable::new();
        helpers.insert_fastcall(1, clobbering_helper, mask);
        let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers)).expect("compiles");
        // SAFETY: the program only calls the helper above.
        assert_eq!(unsafe { jit.call([0; 5]) }, want, "mask {mask:#b}");
    }
}
