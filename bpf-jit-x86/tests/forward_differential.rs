//! Differential test for pointer sums forwarded into their address uses
//! (`forward_address` in the driver): programs built around
//! `rX = rA; rX += rB` followed by address uses of `rX`, conditional
//! jumps to blocks that read `rX`, overwrite it or exit, and a final
//! `rX = *(rX + off)`, run on the x86-64 JIT and on the reference
//! interpreter (`bpf-vm`, bounds-checked) over the same 512-byte buffer.
//! Every register is folded into `r0` at every exit, so a sum left
//! uncomputed where it is still read changes the result.

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};
use proptest::prelude::*;

/// Registers the generator picks from (never r1, the buffer, or r10).
const REGS: [u8; 7] = [0, 2, 3, 4, 5, 8, 9];

/// One instruction (or pair) between the sum and the final load.
#[derive(Clone, Debug)]
enum Step {
    /// `rY = rX; rY += imm`.
    Lea(u8, i32),
    /// `rZ = *(size *)(rX + off)`.
    Load(u8, &'static str, i16),
    /// `if rC > imm goto tail_k`.
    Jump(u8, i32, usize),
    /// `rW = imm`.
    Set(u8, i32),
    /// `r7 = imm`: rewrites the index the sum was made of (a forwarded
    /// address would then read elsewhere in the buffer).
    SetIndex(i32),
    /// `r7 = *(u8 *)(rX + off)`: the same through a load.
    LoadIndex(i16),
}

/// What a jump's target block does first.
#[derive(Clone, Copy, Debug)]
enum Tail {
    /// Reads `rX` (`r0 += rX`): the sum is live there.
    Read,
    /// Overwrites `rX` first: the sum is dead there.
    Write,
    /// Exits at once (dead unless `rX` is `r0`).
    Exit,
}

fn reg() -> impl Strategy<Value = u8> {
    prop::sample::select(&REGS[..])
}

fn size() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["u8", "u16", "u32", "u64"][..])
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (reg(), 0..16i32).prop_map(|(y, k)| Step::Lea(y, k)),
        (reg(), size(), 0..16i16).prop_map(|(z, s, o)| Step::Load(z, s, o)),
        (reg(), 0..40i32, 0..3usize).prop_map(|(c, k, t)| Step::Jump(c, k, t)),
        (reg(), 0..8i32).prop_map(|(w, k)| Step::Set(w, k)),
        (0..16i32).prop_map(Step::SetIndex),
        (0..16i16).prop_map(Step::LoadIndex),
    ]
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![Just(Tail::Read), Just(Tail::Write), Just(Tail::Exit)]
}

/// `r0` = the sum of every register but r1 and r10 (r0 included).
fn fold(out: &mut String) {
    for r in REGS.iter().filter(|&&r| r != 0) {
        out.push_str(&format!("r0 += r{r}\n"));
    }
    out.push_str("r0 += r6\nr0 += r7\nexit\n");
}

/// The program: registers set from the buffer and constants, the sum of
/// `rA` and `rB` (r6 = buffer, r7 = index 0..16, either order) into `rX`,
/// the steps, the final load, then three tail blocks.
fn program(x: u8, swap: bool, idx: i32, steps: &[Step], off: i16, tails: [Tail; 3]) -> String {
    let (a, b) = if swap { (7, 6) } else { (6, 7) };
    let mut s = String::from("r6 = r1\n");
    s.push_str(&format!("r7 = {idx}\n"));
    for (i, r) in REGS.iter().enumerate() {
        s.push_str(&format!("r{r} = *(u8 *)(r1 + {})\n", 32 + i));
    }
    s.push_str(&format!("r{x} = r{a}\nr{x} += r{b}\n"));
    // Steps that would overwrite `rX` (and so make a later load through
    // it fault, in both engines) are left out.
    for st in steps {
        match *st {
            Step::Lea(y, k) if y != x => s.push_str(&format!("r{y} = r{x}\nr{y} += {k}\n")),
            Step::Load(z, sz, o) if z != x => {
                s.push_str(&format!("r{z} = *({sz} *)(r{x} + {o})\n"))
            }
            Step::Jump(c, k, t) => s.push_str(&format!("if r{c} > {k} goto tail{t}\n")),
            Step::Set(w, k) if w != x => s.push_str(&format!("r{w} = {k}\n")),
            Step::SetIndex(k) => s.push_str(&format!("r7 = {k}\n")),
            Step::LoadIndex(o) => s.push_str(&format!("r7 = *(u8 *)(r{x} + {o})\n")),
            _ => {}
        }
    }
    s.push_str(&format!("r{x} = *(u64 *)(r{x} + {off})\n"));
    fold(&mut s);
    for (t, kind) in tails.iter().enumerate() {
        s.push_str(&format!("tail{t}:\n"));
        match kind {
            Tail::Read => s.push_str(&format!("r0 += r{x}\n")),
            Tail::Write => s.push_str(&format!("r{x} = 3\n")),
            Tail::Exit => {
                s.push_str("exit\n");
                continue;
            }
        }
        fold(&mut s);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn forwarded_sums_match_the_interpreter(
        x in reg(),
        swap in any::<bool>(),
        idx in 0..16i32,
        steps in prop::collection::vec(step(), 0..6),
        off in 0..24i16,
        tails in [tail(), tail(), tail()],
        fill in prop::collection::vec(any::<u8>(), 512),
    ) {
        let src = program(x, swap, idx, &steps, off, tails);
        let prog = assemble(&src).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let vm = bpf_vm::Interpreter::new(&prog)
            .map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
        // One buffer for both runs (nothing stores to it): pointers folded
        // into r0 are then the same in both.
        let mut mem = fill.clone();
        let want = vm.run_mem(&mut mem).map_err(|e| TestCaseError::fail(format!("interpreter run: {e}\n{src}")))?;
        let helpers = HelperTable::new();
        let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers))
            .map_err(|e| TestCaseError::fail(format!("jit: {e}")))?;
        // SAFETY: the interpreter ran the program on this buffer with its
        // bounds checks, so every load lies inside it; a JIT that wrongly
        // read through `r6 + r7` after r7 changed would still stay below
        // 255 + 23 + 8 < 512.
        let got = unsafe { jit.call_mem(&mut mem) };
        prop_assert_eq!(got, want, "program:\n{}", src);
    }
}
