//! The driver's local range analysis drops a division's run-time checks
//! only where the divisor is provably neither 0 nor (signed) -1. Each case
//! is run on the JIT (a wrongly dropped check would trap with SIGFPE, or
//! give a wrong result) with expected values computed by hand from the
//! eBPF semantics, and the emitted code is decoded with iced-x86 to see
//! whether the checks (a `test`/`cmp` of the divisor and a `je`) are there.

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};
use iced_x86::{Decoder, DecoderOptions, Mnemonic};

/// Runs `src` with `r1`, `r2` = `a`, `b`; returns r0 and whether the
/// image holds a conditional branch to out-of-line code or over the
/// division (any `je`).
fn run(src: &str, a: u64, b: u64) -> (u64, bool) {
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let code = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
    let mut dec = Decoder::with_ip(64, &code.code, 0, DecoderOptions::NONE);
    let checked = dec.iter().any(|i| i.mnemonic() == Mnemonic::Je);
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("maps");
    // SAFETY: the programs only use registers.
    let r0 = unsafe { jit.call([a, b, 0, 0, 0]) };
    (r0, checked)
}

#[test]
fn or_with_a_nonzero_constant_drops_the_check() {
    let src = "r0 = r1\nr2 |= 1\nr0 /= r2\nexit";
    // b = 0: divisor 0 | 1 = 1.
    assert_eq!(run(src, 100, 0), (100, false));
    assert_eq!(run(src, 100, 6), (14, false)); // 100 / 7
}

#[test]
fn masked_then_incremented_drops_the_check() {
    let src = "r0 = r1\nr2 &= 255\nr2 += 1\nr0 %= r2\nexit";
    // (0x1ff & 255) + 1 = 256; 1000 % 256 = 232.
    assert_eq!(run(src, 1000, 0x1ff), (232, false));
    // b = 0xff00: (0xff00 & 255) + 1 = 1; 1000 % 1 = 0.
    assert_eq!(run(src, 1000, 0xff00), (0, false));
}

#[test]
fn a_possibly_zero_divisor_keeps_the_check() {
    // x | 0 may be 0.
    let src = "r0 = r1\nr2 |= 0\nr0 /= r2\nexit";
    assert_eq!(run(src, 100, 0), (0, true));
    // An unknown value plus 1 may wrap to 0.
    let src = "r0 = r1\nr2 += 1\nr0 /= r2\nexit";
    assert_eq!(run(src, 100, u64::MAX), (0, true));
    // 64-bit remainder by zero keeps the dividend.
    let src = "r0 = r1\nr2 += 1\nr0 %= r2\nexit";
    assert_eq!(run(src, 100, u64::MAX), (100, true));
}

#[test]
fn a_jump_target_forgets_what_was_known() {
    // r2 = 1 on the jump, 0 on the fall-through: the division at the
    // target must keep its check.
    let src = "r0 = r1\nr3 = 1\nif r2 != 0 goto +1\nr3 = 0\nr0 /= r3\nexit";
    assert_eq!(run(src, 100, 0), (0, true));
    assert_eq!(run(src, 100, 5), (100, true));
}

#[test]
fn signed_division_needs_a_positive_divisor() {
    // x | 1 may be -1 (all ones): INT64_MIN / -1 must stay INT64_MIN.
    let src = "r0 = r1\nr2 |= 1\nr0 s/= r2\nexit";
    let min = i64::MIN as u64;
    assert_eq!(run(src, min, u64::MAX), (min, true));
    // (x & 0xffff) + 1 is in 1..=65536: no check needed; -100 / 3 = -33.
    let src = "r0 = r1\nr2 &= 65535\nr2 += 1\nr0 s/= r2\nexit";
    assert_eq!(run(src, (-100i64) as u64, 2), ((-33i64) as u64, false));
}

#[test]
fn thirty_two_bit_division_looks_at_the_low_half() {
    // r2 = 1 << 32 is nonzero but its low half is 0: w0 / w2 = 0.
    let src = "r0 = r1\nr2 = 1\nr2 <<= 32\nw0 /= w2\nexit";
    assert_eq!(run(src, 100, 0), (0, true));
    // (x & 0xff) + 1 fits 32 bits: no check; 100 / 10 = 10.
    let src = "r0 = r1\nr2 &= 255\nr2 += 1\nw0 /= w2\nexit";
    assert_eq!(run(src, 100, 9), (10, false));
    // w2 = 0 via a 32-bit op: the 32-bit remainder by zero is (u32)dividend.
    let src = "r0 = r1\nw2 = 0\nw0 %= w2\nexit";
    assert_eq!(run(src, 0x1_0000_0064, 0), (100, true));
}

#[test]
fn loads_are_bounded_by_their_size() {
    // A byte load plus one is in 1..=256: the check goes.
    let src = "*(u64 *)(r10 - 8) = r2\nr3 = *(u8 *)(r10 - 8)\nr3 += 1\nr0 = r1\nr0 /= r3\nexit";
    assert_eq!(run(src, 1000, 0x1_0000_0003), (250, false)); // low byte 3: 1000 / 4
                                                             // A call clobbers r0-r5: here a bpf-to-bpf call returns in r0.
    let src = "r3 = 7\ncall pc f\nr1 = 1000\nr1 /= r3\nr0 = r1\nexit\nf:\nr3 = 0\nr0 = 0\nexit";
    assert_eq!(run(src, 0, 0), (0, true));
}

/// Counts the `je`s in the image (one per checked division).
fn checks(src: &str) -> usize {
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    Decoder::with_ip(64, &code.code, 0, DecoderOptions::NONE)
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Je)
        .count()
}

#[test]
fn facts_carry_from_one_division_to_the_next() {
    // r3 is set once; both divisions use it, the second after the first
    // (whose own facts were gathered first): neither needs a check.
    let src = "r3 = r2\nr3 |= 1\nr0 = r1\nr0 /= r3\nr4 = r1\nr4 %= r3\nr0 += r4\nexit";
    assert_eq!(run(src, 100, 6), (14 + 2, false)); // 100 / 7 + 100 % 7
    assert_eq!(checks(src), 0);
    // A jump target between them: the second keeps its check.
    let src = "r3 = r2\nr3 |= 1\nr0 = r1\nr0 /= r3\nif r2 > 1000 goto +0\nr4 = r1\nr4 %= r3\nr0 += r4\nexit";
    assert_eq!(run(src, 100, 6), (14 + 2, true));
    assert_eq!(checks(src), 1);
}

#[test]
fn a_fact_set_far_back_is_not_looked_for() {
    // The analysis looks at most 48 instructions back: a divisor set 60
    // instructions earlier keeps its check (conservative, still right).
    let mut src = String::from("r3 = r2\nr3 |= 1\n");
    for _ in 0..60 {
        src.push_str("r5 += 1\n");
    }
    src.push_str("r0 = r1\nr0 /= r3\nexit");
    assert_eq!(run(&src, 100, 6), (14, true));
    // Set 20 instructions earlier, it is found.
    let mut src = String::from("r3 = r2\nr3 |= 1\n");
    for _ in 0..20 {
        src.push_str("r5 += 1\n");
    }
    src.push_str("r0 = r1\nr0 /= r3\nexit");
    assert_eq!(run(&src, 100, 6), (14, false));
}

#[test]
fn a_subprogram_start_forgets_what_was_known() {
    // r3 = 1 before the call, but the callee's division starts from
    // nothing known: it keeps its check (twice: in the callee and where
    // the leaf call is inlined). The caller's division by r6 = 7 (r6
    // survives calls) needs none.
    let src = "r6 = 7\nr3 = 1\ncall pc f\nr1 = 1000\nr1 /= r6\nr0 += r1\nexit\nf:\nr0 = 100\nr0 /= r3\nexit";
    // f: r0 = 100 / 1; caller: 100 + 1000 / 7 = 242.
    assert_eq!(run(src, 0, 0), (242, true));
    assert_eq!(checks(src), 2);
}
