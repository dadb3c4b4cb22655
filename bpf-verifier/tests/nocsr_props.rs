//! Soundness of `bpf_fastcall` spill/fill removal: generated programs with
//! random brackets, stray stack reads and writes (fixed, narrow, through
//! copied frame pointers, variable offset), and forward branches; the
//! rewritten program must return the same `r0` and leave the same memory
//! in bpf-vm as the original, on random inputs.

use bpf_isa::{assemble, Program};
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::remove_fastcall_spills;
use bpf_verifier::{verify, Options, ProgKind};
use bpf_vm::{Engine, LoadedProgram};
use proptest::prelude::*;

const MEM: u32 = 64;

#[derive(Clone, Debug)]
enum Block {
    /// Spill/fill pairs `(reg 1..=5, slot 1..=6)` around `call 8`.
    Bracket(Vec<(u8, u8)>),
    /// `rX = imm` for r1..r5.
    Set(u8, i32),
    /// `r6 += rX`.
    Mix(u8),
    /// 8-byte store of `rX` to a slot.
    Store(u8, u8),
    /// Narrow store of an immediate.
    StoreNarrow(u8, i32),
    /// 8-byte read of a slot into r6 (`+=`).
    Read(u8),
    /// 4-byte read into r6.
    ReadNarrow(u8),
    /// Read through a copy of the frame pointer.
    ReadVia(u8),
    /// Variable-offset byte read somewhere in slots 1..=2.
    ReadVar,
    /// `if r6 > imm goto` over the next block.
    Skip(u8),
}

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        4 => prop::collection::vec((1u8..=5, 1u8..=6), 1..=3).prop_map(Block::Bracket),
        2 => (1u8..=5, -50i32..50).prop_map(|(r, v)| Block::Set(r, v)),
        1 => (1u8..=5).prop_map(Block::Mix),
        1 => (1u8..=5, 1u8..=6).prop_map(|(r, s)| Block::Store(r, s)),
        1 => (1u8..=6, -9i32..9).prop_map(|(s, v)| Block::StoreNarrow(s, v)),
        1 => (1u8..=6).prop_map(Block::Read),
        1 => (1u8..=6).prop_map(Block::ReadNarrow),
        1 => (1u8..=6).prop_map(Block::ReadVia),
        1 => Just(Block::ReadVar),
        1 => any::<u8>().prop_map(Block::Skip),
    ]
}

/// Appends one block's lines (`Skip` is rendered by the caller, which needs
/// the next block's length).
fn emit(b: &Block, out: &mut Vec<String>) {
    match b {
        Block::Bracket(pairs) => {
            let mut uniq: Vec<(u8, u8)> = Vec::new();
            for &p in pairs {
                if !uniq.iter().any(|q| q.0 == p.0 || q.1 == p.1) {
                    uniq.push(p);
                }
            }
            for &(r, s) in uniq.iter().rev() {
                out.push(format!("*(u64 *)(r10 - {}) = r{r}", 8 * s as u32));
            }
            out.push("call 8".into());
            for &(r, s) in &uniq {
                out.push(format!("r{r} = *(u64 *)(r10 - {})", 8 * s as u32));
            }
            // Registers not kept alive are dead after the call: set them.
            for r in 1..=5u8 {
                if !uniq.iter().any(|p| p.0 == r) {
                    out.push(format!("r{r} = {}", r as u32 * 3));
                }
            }
        }
        Block::Set(r, v) => out.push(format!("r{r} = {v}")),
        Block::Mix(r) => out.push(format!("r6 += r{r}")),
        Block::Store(r, s) => out.push(format!("*(u64 *)(r10 - {}) = r{r}", 8 * *s as u32)),
        Block::StoreNarrow(s, v) => out.push(format!("*(u32 *)(r10 - {}) = {v}", 8 * *s as u32)),
        Block::Read(s) => {
            out.push(format!("r7 = *(u64 *)(r10 - {})", 8 * *s as u32));
            out.push("r6 += r7".into());
        }
        Block::ReadNarrow(s) => {
            out.push(format!("r7 = *(u32 *)(r10 - {})", 8 * *s as u32));
            out.push("r6 += r7".into());
        }
        Block::ReadVia(s) => {
            out.push("r7 = r10".into());
            out.push(format!("r7 += -{}", 8 * *s as u32));
            out.push("r7 = *(u64 *)(r7 + 0)".into());
            out.push("r6 += r7".into());
        }
        Block::ReadVar => {
            out.push("r7 = r6".into());
            out.push("r7 &= 7".into());
            out.push("r7 += 9".into());
            out.push("r8 = 0".into());
            out.push("r8 -= r7".into());
            out.push("r7 = r10".into());
            out.push("r7 += r8".into());
            out.push("r7 = *(u8 *)(r7 + 0)".into());
            out.push("r6 += r7".into());
        }
        Block::Skip(_) => {}
    }
}

fn render(blocks: &[Block]) -> String {
    let mut lines = vec![
        "r9 = r1".to_string(),
        "r6 = *(u64 *)(r9 + 0)".into(),
        "r1 = 1".into(),
        "r2 = 2".into(),
        "r3 = 3".into(),
        "r4 = 4".into(),
        "r5 = 5".into(),
    ];
    // Every slot starts initialised, so any read is valid.
    for s in 1..=6u32 {
        lines.push(format!("*(u64 *)(r10 - {}) = r6", 8 * s));
    }
    let mut i = 0;
    while i < blocks.len() {
        if let Block::Skip(k) = &blocks[i] {
            let mut next = Vec::new();
            if let Some(b) = blocks.get(i + 1) {
                emit(b, &mut next);
            }
            lines.push(format!("if r6 > {} goto +{}", *k as u32 * 64, next.len()));
            lines.extend(next);
            i += 2;
            continue;
        }
        emit(&blocks[i], &mut lines);
        i += 1;
    }
    for (k, r) in (1..=6).enumerate() {
        lines.push(format!("*(u64 *)(r9 + {}) = r{r}", 8 + 8 * k));
    }
    lines.push("r0 = r6".into());
    for r in 1..=5 {
        lines.push(format!("r0 += r{r}"));
    }
    lines.push("exit".into());
    lines.join("\n")
}

fn run(p: &Program, input: &[u8]) -> (u64, Vec<u8>) {
    let lp = LoadedProgram::builder(p, Engine::Interp)
        .build()
        .expect("vm load");
    let mut mem = input.to_vec();
    // SAFETY: the interpreter checks every access.
    let r0 = unsafe { lp.run_mem(&mut mem) }.expect("vm run");
    (r0, mem)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn rewrite_preserves_results(
        blocks in prop::collection::vec(block(), 1..14),
        inputs in prop::collection::vec(prop::collection::vec(any::<u8>(), MEM as usize), 4),
    ) {
        let text = render(&blocks);
        let prog = assemble(&text).expect("generated text assembles");
        let opts = Options::new(ProgKind::Mem { size: MEM });
        let vp = verify(&prog, &opts);
        prop_assume!(vp.is_ok(), "rejected by the verifier");
        let Ok(vp) = vp else { return Ok(()) };
        let out = remove_fastcall_spills(&vp, &FastcallTable::linux()).expect("rewrite");
        for input in &inputs {
            prop_assert_eq!(run(&prog, input), run(&out.prog, input), "program:\n{}", text);
        }
    }
}

/// The generator does produce removable and non-removable brackets.
#[test]
fn generator_reaches_both_decisions() {
    let keep = "r9 = r1\nr1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr7 = *(u32 *)(r10 - 8)\nr0 = r7\nexit";
    let drop =
        "r9 = r1\nr1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr0 = r1\nexit";
    let opts = Options::new(ProgKind::Mem { size: MEM });
    for (text, removed) in [(keep, 0), (drop, 1)] {
        let prog = assemble(text).expect("assembles");
        let vp = verify(&prog, &opts).expect("verifies");
        let out = remove_fastcall_spills(&vp, &FastcallTable::linux()).expect("rewrite");
        assert_eq!(out.removed_pairs(), removed, "{text}");
    }
}

/// Over a fixed sample of generated programs, most verify, and both removed
/// and kept pairs occur (so the property above exercises the rewrite).
#[test]
fn generated_programs_exercise_the_pass() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strat = prop::collection::vec(block(), 1..14);
    let (mut accepted, mut removed, mut kept) = (0, 0, 0);
    for _ in 0..200 {
        let blocks = strat.new_tree(&mut runner).expect("tree").current();
        let prog = assemble(&render(&blocks)).expect("assembles");
        let vp = match verify(&prog, &Options::new(ProgKind::Mem { size: MEM })) {
            Ok(vp) => vp,
            Err(e) => {
                if std::env::var_os("NOCSR_DEBUG").is_some() {
                    eprintln!("rejected: {}", e.message);
                }
                continue;
            }
        };
        accepted += 1;
        let out = remove_fastcall_spills(&vp, &FastcallTable::linux()).expect("rewrite");
        removed += out.removed_pairs();
        kept += out.decisions.len() - out.removed_pairs();
    }
    eprintln!("nocsr props: {accepted}/200 verified, {removed} pairs removed, {kept} kept");
    assert!(accepted >= 150, "{accepted}");
    assert!(removed > 50 && kept > 50, "removed {removed} kept {kept}");
}
