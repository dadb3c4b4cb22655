//! `bpf_fastcall` end to end: a program whose spill/fill brackets around
//! `call 8` (`bpf_get_smp_processor_id`) were removed by
//! [`remove_fastcall_spills`] returns what the original returns, on the
//! interpreter and on the x86-64 JIT engine — whose helper trampolines are
//! ordinary Rust functions, free to clobber the native registers of
//! `r1`-`r5`, so the JIT must really preserve them around the call.
//!
//! Expected values are computed by hand from the program text.

use bpf_isa::{assemble, Program};
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::{remove_fastcall_spills, NocsrOutcome};
use bpf_verifier::{verify, Options, ProgKind};
use bpf_vm::{Engine, LoadedProgram};

/// Loops `n` times around a full five-register bracket (the order clang
/// emits: spills innermost-first towards the call, fills mirrored), mixing
/// r1..r5 into r6 after every call; r0 = r6 + r1 + ... + r5 (never the
/// processor id itself, which may differ between runs).
fn looped(n: u32) -> String {
    format!(
        "r1 = 1
         r2 = 2
         r3 = 3
         r4 = 4
         r5 = 5
         r6 = 0
         r7 = 0
       top:
         *(u64 *)(r10 - 40) = r5
         *(u64 *)(r10 - 32) = r4
         *(u64 *)(r10 - 24) = r3
         *(u64 *)(r10 - 16) = r2
         *(u64 *)(r10 - 8) = r1
         call 8
         r1 = *(u64 *)(r10 - 8)
         r2 = *(u64 *)(r10 - 16)
         r3 = *(u64 *)(r10 - 24)
         r4 = *(u64 *)(r10 - 32)
         r5 = *(u64 *)(r10 - 40)
         r6 += r1
         r6 += r2
         r6 += r3
         r6 += r4
         r6 += r5
         r1 += 5
         r7 += 1
         if r7 < {n} goto top
         r0 = r6
         r0 += r1
         r0 += r2
         r0 += r3
         r0 += r4
         r0 += r5
         exit"
    )
}

/// The hand-computed result of [`looped`]: iteration `k` (from 0) adds
/// `(1 + 5k) + 2 + 3 + 4 + 5` to r6; at the end r1 = 1 + 5n.
fn looped_expected(n: u64) -> u64 {
    let r6: u64 = (0..n).map(|k| 1 + 5 * k + 14).sum();
    r6 + (1 + 5 * n) + 14
}

fn rewrite(text: &str) -> (Program, NocsrOutcome) {
    let prog = assemble(text).expect("assembles");
    let vp = verify(&prog, &Options::new(ProgKind::Mem { size: 8 })).expect("verifies");
    let out = remove_fastcall_spills(&vp, &FastcallTable::linux()).expect("rewrites");
    (prog, out)
}

fn run(p: &Program, engine: Engine, preserve8: Option<u16>) -> u64 {
    let mut b = LoadedProgram::builder(p, engine);
    if let Some(m) = preserve8 {
        b = b.fastcall(8, m);
    }
    let lp = b.build().expect("loads");
    // SAFETY: the programs only touch their own stack; the interpreter
    // checks every access, and the JIT runs verified programs.
    unsafe { lp.run_mem(&mut [0u8; 8]) }.expect("runs")
}

#[test]
fn rewritten_loop_agrees_on_interp_and_x86() {
    let (prog, out) = rewrite(&looped(50));
    assert_eq!(out.removed_pairs(), 5, "all five pairs go");
    assert_eq!(prog.len() - out.prog.len(), 10);
    assert_eq!((out.stack_depth_before[0], out.stack_depth[0]), (40, 0));
    let want = looped_expected(50);
    for engine in Engine::available() {
        assert_eq!(run(&prog, engine, None), want, "original on {engine}");
        assert_eq!(run(&out.prog, engine, None), want, "rewritten on {engine}");
    }
}

/// The control: without the preserve mask, the JIT engine's trampoline
/// (Rust code dispatching to the registered closure) does clobber the
/// native registers of r1-r5, so the rewritten program goes wrong — the
/// mask is what keeps it right. (The original, which fills the registers
/// back from the stack, is right either way.)
#[test]
fn without_preservation_the_jit_clobbers() {
    if !Engine::available().contains(&Engine::X86) {
        eprintln!("SKIPPED: the x86-64 JIT engine needs an x86-64 host");
        return;
    }
    let (prog, out) = rewrite(&looped(3));
    let want = looped_expected(3);
    assert_eq!(run(&prog, Engine::X86, Some(0)), want);
    assert_ne!(run(&out.prog, Engine::X86, Some(0)), want);
    assert_eq!(run(&out.prog, Engine::X86, Some(0b11_1110)), want);
}

/// Partial brackets: only some registers live across the call, at
/// non-adjacent slots, in two separate calls.
#[test]
fn partial_brackets_agree() {
    let text = "r1 = 100
         r3 = 300
         r5 = 500
         *(u64 *)(r10 - 24) = r5
         *(u64 *)(r10 - 8) = r1
         call 8
         r1 = *(u64 *)(r10 - 8)
         r5 = *(u64 *)(r10 - 24)
         r6 = r1
         r6 += r5
         r4 = 40
         *(u64 *)(r10 - 16) = r4
         call 8
         r4 = *(u64 *)(r10 - 16)
         r0 = r6
         r0 += r4
         exit";
    let (prog, out) = rewrite(text);
    assert_eq!(out.removed_pairs(), 3);
    // 100 + 500 + 40
    for engine in Engine::available() {
        assert_eq!(run(&prog, engine, None), 640, "original on {engine}");
        assert_eq!(run(&out.prog, engine, None), 640, "rewritten on {engine}");
    }
}

/// bpf-vm's default list of fastcall helpers is the verifier's Linux table,
/// with the same preserve masks (each function's caller-saved registers
/// that are neither parameters nor its result).
#[test]
fn vm_defaults_match_the_linux_table() {
    let table = FastcallTable::linux();
    let ours: Vec<(i32, u16)> = table
        .helpers()
        .map(|(id, f)| (id, f.preserves().0))
        .collect();
    assert_eq!(ours, bpf_vm::helpers::FASTCALL_HELPERS.to_vec());
    // bpf_get_smp_processor_id takes nothing and returns a value: r1-r5.
    assert_eq!(ours, vec![(8, 0b11_1110)]);
}
