//! Instruction pairs the driver lowers as one native instruction
//! (`lower_pair`): the zero-/sign-extension idiom `<<= 32; >>= 32` and
//! `rX = rY; rX += imm` or `+= rZ` at either width. Results are hand-computed; the emitted code is
//! decoded with iced-x86 to see whether the pair was fused, and a pair
//! whose second instruction is a jump target must not be.

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};
use iced_x86::{Decoder, DecoderOptions, Mnemonic};

/// Runs `src` with r1, r2 = `a`, `b`; returns r0 and the mnemonics of the
/// image.
fn run(src: &str, a: u64, b: u64) -> (u64, Vec<Mnemonic>) {
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let code = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
    let dec = Decoder::with_ip(64, &code.code, 0, DecoderOptions::NONE);
    let ops = dec.into_iter().map(|i| i.mnemonic()).collect();
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("maps");
    // SAFETY: the programs only use registers and their own stack.
    (unsafe { jit.call([a, b, 0, 0, 0]) }, ops)
}

#[test]
fn zero_extension_idiom_is_one_mov() {
    let (r0, ops) = run(
        "r0 = r1\nr0 <<= 32\nr0 >>= 32\nexit",
        0x1234_5678_9abc_def0,
        0,
    );
    assert_eq!(r0, 0x9abc_def0);
    assert!(
        !ops.contains(&Mnemonic::Shl) && !ops.contains(&Mnemonic::Shr),
        "{ops:?}"
    );
}

#[test]
fn sign_extension_idiom_is_one_movsxd() {
    let (r0, ops) = run(
        "r0 = r1\nr0 <<= 32\nr0 s>>= 32\nexit",
        0x1234_5678_9abc_def0,
        0,
    );
    assert_eq!(r0, 0xffff_ffff_9abc_def0);
    assert!(ops.contains(&Mnemonic::Movsxd), "{ops:?}");
    assert!(!ops.contains(&Mnemonic::Sar), "{ops:?}");
}

#[test]
fn move_then_add_register_is_one_lea_at_either_width() {
    let a = 0x1_0000_0005u64;
    let b = 0xffff_fffe_u64;
    // r0 = r1 + r2 (64-bit): no carry lost.
    let (r0, ops) = run("r0 = r1\nr0 += r2\nexit", a, b);
    assert_eq!(r0, a.wrapping_add(b));
    assert!(
        ops.contains(&Mnemonic::Lea) && !ops.contains(&Mnemonic::Add),
        "{ops:?}"
    );
    // w0 = w1 + w2: the low 32 bits, zero-extended (5 + 0xfffffffe = 3).
    let (r0, ops) = run("w0 = w1\nw0 += w2\nexit", a, b);
    assert_eq!(r0, 3);
    assert!(ops.contains(&Mnemonic::Lea), "{ops:?}");
    // r0 = r1; r0 += r0: twice r1; r1 itself unchanged (r0 - r1 = r1).
    let (r0, _) = run("r0 = r1\nr0 += r0\nr0 -= r1\nexit", a, 0);
    assert_eq!(r0, a);
    // w0 = w1; w0 += -6: 5 - 6 wraps at 32 bits.
    let (r0, ops) = run("w0 = w1\nw0 += -6\nexit", a, 0);
    assert_eq!(r0, 0xffff_ffff);
    assert!(ops.contains(&Mnemonic::Lea), "{ops:?}");
    // r10 as the first operand (rbp: swapped into the index).
    let src = "r3 = r10\nr3 += r2\n*(u64 *)(r3 + 0) = r1\nr0 = *(u64 *)(r10 - 8)\nexit";
    assert_eq!(run(src, 77, (-8i64) as u64).0, 77);
}

#[test]
fn move_then_add_is_one_lea() {
    // r0 = r1 + 1000; r1 itself unchanged (r0 - r1 = 1000).
    let (r0, ops) = run("r0 = r1\nr0 += 1000\nr0 -= r1\nexit", 5, 0);
    assert_eq!(r0, 1000);
    assert!(ops.contains(&Mnemonic::Lea), "{ops:?}");
    // A stack address: r3 = r10 - 16, written and read back through it.
    let src = "r3 = r10\nr3 += -16\n*(u64 *)(r3 + 0) = r1\nr0 = *(u64 *)(r10 - 16)\nexit";
    assert_eq!(run(src, 77, 0).0, 77);
}

#[test]
fn a_jump_target_in_the_middle_keeps_the_pair_apart() {
    // On r2 != 0 the jump lands on `r0 >>= 32` alone: r0 = r1 >> 32.
    let src = "r0 = r1\nif r2 != 0 goto +1\nr0 <<= 32\nr0 >>= 32\nexit";
    let x = 0x1234_5678_9abc_def0u64;
    assert_eq!(run(src, x, 0).0, 0x9abc_def0);
    assert_eq!(run(src, x, 1).0, 0x1234_5678);
    // On r2 != 0 the jump lands on `r0 += 7` alone: r0 = 100 + 7.
    let src = "r0 = 100\nif r2 != 0 goto +1\nr0 = r1\nr0 += 7\nexit";
    assert_eq!(run(src, 5, 0).0, 12);
    assert_eq!(run(src, 5, 1).0, 107);
}

#[test]
fn other_registers_or_sizes_are_not_fused() {
    // Different destinations: r0 = r1 << 32, then r2 >>= 32 (r2 = 0 here).
    let (r0, ops) = run("r0 = r1\nr0 <<= 32\nr2 >>= 32\nr0 += r2\nexit", 3, 0);
    assert_eq!(r0, 3 << 32);
    assert!(ops.contains(&Mnemonic::Shl), "{ops:?}");
    // A 32-bit add after a 64-bit move: w0 = (u32)(r1 + 1).
    let (r0, _) = run("r0 = r1\nw0 += 1\nexit", 0xffff_ffff_ffff_ffff, 0);
    assert_eq!(r0, 0);
}

#[test]
fn rotate_idioms_become_one_rol() {
    // 32-bit, first form: w1 = rotl32(w1, 4); w2 keeps w1 >> 28.
    // 0x9abcdef1 rotl 4 = 0xabcdef19; 0x9abcdef1 >> 28 = 9.
    let src = "w2 = w1\nw2 >>= 28\nw1 <<= 4\nw1 |= w2\nr0 = r1\nr0 <<= 8\nr0 += r2\nexit";
    let (r0, ops) = run(src, 0xffff_ffff_9abc_def1, 0);
    assert_eq!(r0, (0xabcd_ef19u64 << 8) + 9);
    assert!(ops.contains(&Mnemonic::Rol), "{ops:?}");
    // 32-bit, second form: w4 = rotl32(w9, 6), w1 = w9 >> 26 (r9 from r1).
    // 0x12345678 rotl 6 = 0x8d159e04; 0x12345678 >> 26 = 4.
    let src = "r9 = r1\nw1 = w9\nw1 >>= 26\nw4 = w9\nw4 <<= 6\nw4 |= w1\nr0 = r4\nr0 <<= 8\nr0 += r1\nexit";
    let (r0, ops) = run(src, 0x1234_5678, 0);
    assert_eq!(r0, (0x8d15_9e04u64 << 8) + 4);
    assert!(ops.contains(&Mnemonic::Rol), "{ops:?}");
    // 64-bit: r8 = rotl64(r8, 5) (r8 from r1).
    let x = 0xf123_4567_89ab_cdefu64;
    let src = "r8 = r1\nr1 = r8\nr1 >>= 59\nr8 <<= 5\nr8 |= r1\nr0 = r8\nexit";
    let (r0, ops) = run(src, x, 0);
    assert_eq!(r0, x.rotate_left(5));
    assert!(ops.contains(&Mnemonic::Rol), "{ops:?}");
}

#[test]
fn rotate_of_a_copy_shifted_in_place_is_one_rol() {
    // Third form (clang's for `(acc << 7) | (acc >> 57)` in a function
    // whose argument dies): r0 = r1; r1 >>= 57; r0 <<= 7; r0 |= r1. The
    // shifted r1 stays: r0 = rotl64(x, 7) + (x >> 57).
    let x = 0xf123_4567_89ab_cdefu64;
    let src = "r0 = r1\nr1 >>= 57\nr0 <<= 7\nr0 |= r1\nr0 += r1\nexit";
    let (r0, ops) = run(src, x, 0);
    assert_eq!(r0, x.rotate_left(7).wrapping_add(x >> 57));
    assert!(ops.contains(&Mnemonic::Rol), "{ops:?}");
    assert!(!ops.contains(&Mnemonic::Shl), "{ops:?}");
    // 32-bit: 0x9abcdef1 rotl 4 = 0xabcdef19 (upper half of r1 dropped).
    let src = "w0 = w1\nw1 >>= 28\nw0 <<= 4\nw0 |= w1\nexit";
    let (r0, ops) = run(src, 0xffff_ffff_9abc_def1, 0);
    assert_eq!(r0, 0xabcd_ef19);
    assert!(ops.contains(&Mnemonic::Rol), "{ops:?}");
    // A jump to the `>>=` skips the copy: r0 = 3, r1 = x >> 57, then
    // r0 = (3 << 7) | (x >> 57) = 0x180 | 0x78 = 0x1f8 (x >> 57 = 0x78);
    // falling through (r2 == 0) it is the rotate.
    let src = "r0 = 3\nif r2 != 0 goto +1\nr0 = r1\nr1 >>= 57\nr0 <<= 7\nr0 |= r1\nexit";
    let (r0, ops) = run(src, x, 1);
    assert_eq!(r0, 0x1f8);
    assert!(!ops.contains(&Mnemonic::Rol), "{ops:?}");
    assert_eq!(run(src, x, 0).0, x.rotate_left(7));
}

#[test]
fn near_rotates_stay_shifts() {
    // Amounts that do not add up to the width: (x << 4) | (x >> 27).
    let x = 0x8000_0001u64;
    let src = "w2 = w1\nw2 >>= 27\nw1 <<= 4\nw1 |= w2\nr0 = r1\nexit";
    let (r0, ops) = run(src, x, 0);
    assert_eq!(r0, ((x << 4) as u32 | (x as u32 >> 27)) as u64);
    assert!(!ops.contains(&Mnemonic::Rol), "{ops:?}");
    // A jump lands on `w1 <<= 4` (r2 == 0: w3 = 9, a rotate's value);
    // falling through (r2 != 0) sets w3 = 0 and w1 = w1 << 4.
    let src = "w3 = w1\nw3 >>= 28\nif r2 == 0 goto +1\nw3 = 0\nw1 <<= 4\nw1 |= w3\nr0 = r1\nexit";
    assert_eq!(run(src, 0x9abc_def1, 0).0, 0xabcd_ef19);
    assert_eq!(run(src, 0x9abc_def1, 1).0, 0xabcd_ef10);
    // The jump target is the `>>=`; falling through (r2 != 0) makes
    // w3 = 5 >> 28 = 0: not a rotate.
    let src = "w3 = w1\nif r2 == 0 goto +1\nw3 = 5\nw3 >>= 28\nw1 <<= 4\nw1 |= w3\nr0 = r1\nexit";
    let (r0, ops) = run(src, 0x9abc_def1, 1);
    assert_eq!(r0, 0xabcd_ef10);
    assert!(!ops.contains(&Mnemonic::Rol), "{ops:?}");
}

/// `x op= y; if x ==/!= 0` branches on the flags the ALU operation left
/// (`MacroAssembler::branch_on_last_alu`): no `test`/`cmp` in between, at
/// either width; the 32-bit forms test the 32-bit result. Counts are
/// hand-computed loop trip counts.
#[test]
fn branch_on_zero_right_after_an_alu_op_uses_its_flags() {
    // A count-down loop: r0 counts iterations of `w1 += -1; if w1 != 0`.
    let (r0, ops) = run(
        "r0 = 0\nw1 = 5\ntop:\nr0 += 1\nw1 += -1\nif w1 != 0 goto top\nexit",
        0,
        0,
    );
    assert_eq!(r0, 5);
    assert!(
        !ops.contains(&Mnemonic::Test) && !ops.contains(&Mnemonic::Cmp),
        "{ops:?}"
    );
    // 64-bit `and` then `==`: 0x1_0000_0000 & 0x1_0000_0000 is non-zero
    // (only the upper half is set: the 64-bit result decides), and
    // 0x1_0000_0000 & 0xffff_ffff is zero.
    let src = "r0 = 1\nr1 &= r2\nif r1 == 0 goto z\nexit\nz:\nr0 = 2\nexit";
    assert_eq!(run(src, 0x1_0000_0000, 0x1_0000_0000).0, 1);
    assert_eq!(run(src, 0x1_0000_0000, 0xffff_ffff).0, 2);
    // The 32-bit result decides for a 32-bit op and branch: the low
    // halves xor to 0 even though the 64-bit values differ.
    let src = "r0 = 1\nw1 ^= w2\nif w1 == 0 goto z\nexit\nz:\nr0 = 2\nexit";
    assert_eq!(run(src, 0x1_0000_0007, 0x2_0000_0007).0, 2);
    assert_eq!(run(src, 7, 8).0, 1);
    // A 64-bit branch after a 32-bit op compares again (widths differ).
    let (r0, ops) = run(
        "r0 = 1\nw1 -= w2\nif r1 == 0 goto z\nexit\nz:\nr0 = 2\nexit",
        5,
        5,
    );
    assert_eq!(r0, 2);
    assert!(ops.contains(&Mnemonic::Test), "{ops:?}");
}

/// When a jump lands on the branch, the flags may come from elsewhere:
/// the branch compares again.
#[test]
fn branch_that_is_a_jump_target_compares_again() {
    // With r2 != 0 the jump reaches `chk` with the flags of its own
    // compare (r2 non-zero), not r1's; falling in, `r1 += 0` sets them
    // from r1.
    let src = "r0 = 1\nr3 = 2\nr3 -= 1\nif r2 != 0 goto chk\nr1 += 0\nchk:\nif r1 == 0 goto z\nexit\nz:\nr0 = 2\nexit";
    let (r0, ops) = run(src, 0, 1);
    assert_eq!(r0, 2);
    let tests = ops.iter().filter(|&&m| m == Mnemonic::Test).count();
    // `if r2 != 0` and `if r1 == 0` both compare.
    assert_eq!(tests, 2, "{ops:?}");
    assert_eq!(run(src, 0, 0).0, 2);
    assert_eq!(run(src, 4, 1).0, 1);
}
