//! Fixed scenario programs shared by several crates' tests, each with its
//! expected result computed by hand (or by plain Rust arithmetic written
//! from the program's meaning, never from an engine's output).
//!
//! The programs are assembler text (see [`crate::assemble`]); the engines
//! (the interpreter, the x86-64 and AArch64 JITs) run the same text and
//! compare with the same expectation.
//!
//! ```
//! use bpf_isa::arbitrary::scenarios;
//!
//! let prog = bpf_isa::assemble(scenarios::MAY_GOTO_LOOP).unwrap();
//! assert!(prog.validate().is_ok());
//! assert_eq!(scenarios::MAY_GOTO_LOOP_RESULT, 8_388_608);
//! ```

/// `BPF_MAX_LOOPS` = 8 * 1024 * 1024 (include/linux/bpf.h): the budget a
/// frame's `may_goto` slot starts with.
pub const MAY_GOTO_BUDGET: u64 = 8_388_608;

/// A loop bounded only by `may_goto`: one pass per unit of budget.
pub const MAY_GOTO_LOOP: &str = "r0 = 0
       loop:
         may_goto out
         r0 += 1
         goto loop
       out:
         exit";

/// [`MAY_GOTO_LOOP`]'s result by hand: the slot starts at the budget and
/// each pass decrements it once until it reads 0.
pub const MAY_GOTO_LOOP_RESULT: u64 = MAY_GOTO_BUDGET;

/// Each frame has its own `may_goto` budget: main exhausts its own, then
/// calls a subprogram that counts its fresh budget, twice; main's stack
/// word at `r10 - 8` (declared depth: 8 bytes for main, 0 for `count`)
/// must survive, else r0 = 1.
pub const MAY_GOTO_PER_FRAME: &str = "r6 = 0x77
         *(u64 *)(r10 - 8) = r6
         r7 = 0
       loop:
         may_goto main_out
         r7 += 1
         goto loop
       main_out:
         call pc count
         r7 += r0
         call pc count
         r7 += r0
         r0 = *(u64 *)(r10 - 8)
         if r0 != 0x77 goto bad
         r0 = r7
         exit
       bad:
         r0 = 1
         exit
       count:
         r0 = 0
       l2:
         may_goto done
         r0 += 1
         goto l2
       done:
         exit";

/// The per-subprogram stack depths of [`MAY_GOTO_PER_FRAME`].
pub const MAY_GOTO_PER_FRAME_DEPTHS: [u32; 2] = [8, 0];

/// [`MAY_GOTO_PER_FRAME`]'s result by hand: 3 * 8388608 = 25165824.
pub const MAY_GOTO_PER_FRAME_RESULT: u64 = 3 * MAY_GOTO_BUDGET;

/// The packet of the `ld_abs`/`ld_ind` cases.
pub const LD_ABS_PACKET: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];

/// `ld_abs`/`ld_ind` programs over [`LD_ABS_PACKET`] (context in r1, moved
/// to r6) with their results by hand: loads are big-endian (network
/// order); a failed load (out of range, or a negative offset) ends the
/// program with r0 = 0; r1-r5 are clobbered, r6-r9 and the stack survive.
pub const LD_ABS_CASES: [(&str, u64); 9] = [
    // Bytes 1..3 = 34 56.
    ("r6 = r1\n r0 = *(u16 *)skb[1]\n exit", 0x3456),
    ("r6 = r1\n r0 = *(u8 *)skb[7]\n exit", 0xf0),
    ("r6 = r1\n r0 = *(u32 *)skb[4]\n exit", 0x9abc_def0),
    // 4 bytes at 5 > 8: out of range.
    ("r6 = r1\n r0 = *(u32 *)skb[5]\n r0 = 99\n exit", 0),
    // ld_ind: r7 + 1 = 3, bytes 3..7.
    (
        "r6 = r1\n r7 = 2\n r0 = *(u32 *)skb[r7 + 1]\n exit",
        0x789a_bcde,
    ),
    // ld_ind whose register is r1 itself (clobbered by the call setup).
    ("r6 = r1\n r1 = 6\n r0 = *(u16 *)skb[r1]\n exit", 0xdef0),
    // Negative offsets fail: -1, and r7 + 1 with r7 = -3.
    ("r6 = r1\n r0 = *(u8 *)skb[-1]\n r0 = 5\n exit", 0),
    (
        "r6 = r1\n r7 = -3\n r0 = *(u8 *)skb[r7 + 1]\n r0 = 5\n exit",
        0,
    ),
    // The loaded values feed later code: 0x12 + 0x34 + 100.
    (
        "r6 = r1
         r8 = 100
         *(u64 *)(r10 - 8) = r8
         r0 = *(u8 *)skb[0]
         r7 = r0
         r0 = *(u8 *)skb[1]
         r0 += r7
         r1 = *(u64 *)(r10 - 8)
         r0 += r1
         exit",
        0x12 + 0x34 + 100,
    ),
];

/// A program with a distinctive immediate in every form constant blinding
/// rewrites (ALU64/ALU32 immediates, a store immediate, conditional jumps
/// against immediates, an `ld_imm64`, multiply and divide).
pub const BLIND_SRC: &str = "
    r0 = 0x1a2b3c4d
    w1 = 0x2b3c4d5e
    r0 += 0x3c4d5e6f
    w1 ^= 0x4d5e6f70
    *(u32 *)(r10 - 8) = 0x5e6f7182
    r2 = *(u32 *)(r10 - 8)
    if r2 != 0x5e6f7182 goto bad
    if w1 > 0x6a7b8c9d goto bad
    r3 = 0x71829304a5b6c7d8 ll
    r0 *= 0x13572468
    r0 += r1
    r0 += r2
    r0 ^= r3
    r0 /= 0x2468ace1
    exit
  bad:
    r0 = 0
    exit";

/// The 32-bit immediates of [`BLIND_SRC`] (the `ld_imm64` as its high and
/// low halves), none of which may appear in a blinded image.
pub const BLIND_IMMS: [u32; 10] = [
    0x1a2b_3c4d,
    0x2b3c_4d5e,
    0x3c4d_5e6f,
    0x4d5e_6f70,
    0x5e6f_7182,
    0x6a7b_8c9d,
    0x7182_9304,
    0xa5b6_c7d8,
    0x1357_2468,
    0x2468_ace1,
];

/// [`BLIND_SRC`]'s result, by plain arithmetic following the program
/// (neither branch to `bad` is taken: the store reads back and
/// `w1 = 0x2b3c4d5e ^ 0x4d5e6f70` is below `0x6a7b8c9d`).
pub fn blind_expected() -> u64 {
    let mut r0: u64 = 0x1a2b_3c4d;
    let r1: u64 = u64::from(0x2b3c_4d5eu32 ^ 0x4d5e_6f70);
    r0 = r0.wrapping_add(0x3c4d_5e6f);
    r0 = r0.wrapping_mul(0x1357_2468);
    r0 = r0.wrapping_add(r1).wrapping_add(0x5e6f_7182);
    r0 ^= 0x7182_9304_a5b6_c7d8;
    r0 / 0x2468_ace1
}

/// bpf-to-bpf calls nested three deep (`main` -> `sum3` -> `sum2` ->
/// `sum1`): arguments in r1, r6 preserved across each call, and each
/// frame's own stack word at `r10 - 8` surviving its callee's store there.
pub const LOCAL_CALLS: &str = "
        r6 = 1000
        *(u64 *)(r10 - 8) = r6
        r1 = 3
        call pc sum3
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        r0 += r6
        exit
      sum3:
        r6 = r1
        *(u64 *)(r10 - 8) = r1
        r1 += -1
        call pc sum2
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        r0 += r6
        exit
      sum2:
        r6 = r1
        *(u64 *)(r10 - 8) = r1
        r1 += -1
        call pc sum1
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        r0 += r6
        exit
      sum1:
        r6 = r1
        *(u64 *)(r10 - 8) = r1
        r0 = r1
        r0 += r6
        exit";

/// [`LOCAL_CALLS`]'s result by hand: sum1(1) = 1 + 1 = 2; sum2(2) =
/// 2 + 2 + 2 = 6; sum3(3) = 6 + 3 + 3 = 12; main: 12 + 1000 + 1000.
pub const LOCAL_CALLS_RESULT: u64 = 2012;

/// The BTF id [`KFUNC_WEIGHTED`] calls (its offset field is 0).
pub const KFUNC_WEIGHTED_ID: i32 = 4242;

/// A kfunc call (BTF id [`KFUNC_WEIGHTED_ID`]) with r1-r5 = 1, 2, 3, 4, 5,
/// returning the kfunc's result; the call is instruction 5.
pub const KFUNC_WEIGHTED: &str = "r1 = 1
         r2 = 2
         r3 = 3
         r4 = 4
         r5 = 5
         call kfunc#4242
         exit";

/// [`KFUNC_WEIGHTED`]'s result when the kfunc is the weighted sum
/// `a + 2b + 3c + 4d + 5e`, by hand: 1 + 2*2 + 3*3 + 4*4 + 5*5 = 55.
pub const KFUNC_WEIGHTED_RESULT: u64 = 55;

/// Levels of entry -> subprogram -> tail call -> entry in
/// [`TAIL_RECURSION`].
pub const TAIL_RECURSION_LEVELS: u64 = 5;

/// The recursion-through-tail-call scenario (for private stacks): the
/// entry counts its level in the context's first word, leaves two markers
/// in its frame (at the top and at the bottom of 64 bytes), calls `sub`,
/// and on the way back folds the markers into r0. `sub` leaves its own
/// markers, then tail-calls the entry (prog array fd 1, slot 0) until
/// level [`TAIL_RECURSION_LEVELS`], where it returns its markers' sum.
pub const TAIL_RECURSION: &str = "
    r6 = r1
    r7 = *(u64 *)(r6 + 0)
    r7 += 1
    *(u64 *)(r6 + 0) = r7
    r8 = r7
    r8 *= 1000
    r8 += 11
    *(u64 *)(r10 - 8) = r8
    *(u64 *)(r10 - 64) = r7
    r1 = r6
    call pc sub
    r1 = *(u64 *)(r10 - 8)
    r2 = *(u64 *)(r10 - 64)
    r0 *= 31
    r0 += r1
    r0 += r2
    exit
  sub:
    r6 = r1
    r7 = *(u64 *)(r6 + 0)
    r8 = r7
    r8 *= 1000
    r8 += 22
    *(u64 *)(r10 - 8) = r8
    *(u64 *)(r10 - 32) = r7
    if r7 >= 5 goto done
    r1 = r6
    r2 = map[fd:1]
    r3 = 0
    call 12
  done:
    r0 = *(u64 *)(r10 - 8)
    r1 = *(u64 *)(r10 - 32)
    r0 += r1
    exit";

/// [`TAIL_RECURSION`]'s result by hand (context word starting at 0): the
/// deepest `sub` (level 5) returns 5022 + 5; entry level k (from 5 down to
/// 1) turns r0 into r0 * 31 + (1000k + 11) + k.
pub fn tail_recursion_expected() -> u64 {
    let levels = TAIL_RECURSION_LEVELS;
    let mut r0 = levels * 1000 + 22 + levels;
    for k in (1..=levels).rev() {
        r0 = r0
            .wrapping_mul(31)
            .wrapping_add(k * 1000 + 11)
            .wrapping_add(k);
    }
    r0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_assembles_and_validates() {
        let mut all = vec![
            MAY_GOTO_LOOP,
            MAY_GOTO_PER_FRAME,
            BLIND_SRC,
            TAIL_RECURSION,
            KFUNC_WEIGHTED,
            LOCAL_CALLS,
        ];
        all.extend(LD_ABS_CASES.iter().map(|(src, _)| *src));
        for src in all {
            let prog = crate::assemble(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert!(prog.validate().is_ok(), "{src}");
        }
    }
}
