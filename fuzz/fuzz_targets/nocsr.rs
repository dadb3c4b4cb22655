//! Bytes -> a program built around `bpf_fastcall` brackets -> bpf-verifier
//! -> `nocsr::remove_fastcall_spills`. The pass must never panic or fail on
//! a verified program; its result must validate and survive an
//! encode/decode round trip; and on bpf-vm's interpreter (and, on x86-64,
//! the JIT engine, which must then really preserve r1-r5 around the call)
//! it must return the same r0 and leave the same memory as the original,
//! for the same inputs.
//!
//! The input is read two bytes at a time, `(op, arg)`, each pair one block
//! of a program over r1-r5 (the registers brackets keep alive), r6 (an
//! accumulator), r7 (scratch), r8 (a loop counter) and r9 (the memory
//! pointer): brackets of spills and fills around `call 8`
//! (`bpf_get_smp_processor_id`, fastcall) or `call 7` (`get_prandom_u32`,
//! not fastcall), stray stack writes and reads (full, narrow, through a
//! copy of the frame pointer, through a spilled stack pointer), forward
//! skips and bounded loops around the next block. Results never include a
//! helper's return value, so they do not depend on the CPU or randomness.
#![no_main]

use bpf_isa::{assemble, Program};
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::remove_fastcall_spills;
use bpf_verifier::{verify, Options, ProgKind};
use bpf_vm::{Engine, LoadedProgram, VmError};
use libfuzzer_sys::fuzz_target;

const MEM: u32 = 64;
/// Stack slots 1..=SLOTS (`r10 - 8 * s`) are used.
const SLOTS: u8 = 8;
const MAX_BLOCKS: usize = 48;

/// One block's lines.
fn block(op: u8, arg: u8, out: &mut Vec<String>) {
    let reg = 1 + arg % 5;
    let slot = 1 + (arg >> 3) % SLOTS;
    let off = 8 * u32::from(slot);
    match op % 10 {
        0 | 1 => {
            // Bracket: registers from the low 5 bits (at least one), slots
            // counted up from `base`, spilled innermost last as clang does.
            let regs = (arg & 0x1f).max(1);
            let base = u32::from((arg >> 5) % 4);
            let pairs: Vec<(u8, u32)> = (1..=5u8)
                .filter(|r| regs & (1 << (r - 1)) != 0)
                .enumerate()
                .map(|(k, r)| (r, 8 * (1 + base + k as u32)))
                .collect();
            for (r, o) in pairs.iter().rev() {
                out.push(format!("*(u64 *)(r10 - {o}) = r{r}"));
            }
            out.push(
                if op % 10 == 0 || op & 0x80 == 0 {
                    "call 8"
                } else {
                    "call 7"
                }
                .into(),
            );
            for (r, o) in &pairs {
                out.push(format!("r{r} = *(u64 *)(r10 - {o})"));
            }
            // The other caller-saved registers are dead after the call.
            for r in 1..=5u8 {
                if !pairs.iter().any(|p| p.0 == r) {
                    out.push(format!("r{r} = {}", u32::from(r) * 7 + u32::from(arg)));
                }
            }
        }
        2 => out.push(format!("r{reg} = {}", i32::from(arg as i8))),
        3 => out.push(format!("r6 += r{reg}")),
        4 => out.push(format!("*(u64 *)(r10 - {off}) = r{reg}")),
        5 => out.push(format!("*(u32 *)(r10 - {off}) = {}", i32::from(arg as i8))),
        6 => {
            let size = ["u8", "u16", "u32", "u64"][usize::from(arg >> 6)];
            out.push(format!("r7 = *({size} *)(r10 - {off})"));
            out.push("r6 += r7".into());
        }
        7 => {
            out.push("r7 = r10".into());
            out.push(format!("r7 += -{off}"));
            out.push("r7 = *(u64 *)(r7 + 0)".into());
            out.push("r6 += r7".into());
        }
        8 => {
            // A stack pointer spilled to another slot, read through later.
            let other = 1 + (slot % SLOTS);
            out.push("r7 = r10".into());
            out.push(format!("r7 += -{off}"));
            out.push(format!("*(u64 *)(r10 - {}) = r7", 8 * u32::from(other)));
            out.push(format!("r7 = *(u64 *)(r10 - {})", 8 * u32::from(other)));
            out.push("r7 = *(u64 *)(r7 + 0)".into());
            out.push("r6 += r7".into());
            // No address may reach r0 or memory (it differs between runs).
            out.push(format!("*(u64 *)(r10 - {}) = r6", 8 * u32::from(other)));
        }
        _ => out.push(format!("r6 ^= {}", arg)),
    }
}

fn render(data: &[u8]) -> String {
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
    for s in 1..=u32::from(SLOTS) {
        lines.push(format!("*(u64 *)(r10 - {}) = r6", 8 * s));
    }
    let mut pairs = data.chunks_exact(2).take(MAX_BLOCKS).map(|c| (c[0], c[1]));
    while let Some((op, arg)) = pairs.next() {
        match op >> 4 {
            // Forward skip over the next block.
            0xe => {
                let mut next = Vec::new();
                if let Some((o, a)) = pairs.next() {
                    block(o, a, &mut next);
                }
                lines.push(format!(
                    "if r6 > {} goto +{}",
                    u32::from(arg) * 64,
                    next.len()
                ));
                lines.extend(next);
            }
            // A loop of 1..=4 iterations around the next block.
            0xf => {
                let mut body = Vec::new();
                if let Some((o, a)) = pairs.next() {
                    block(o, a, &mut body);
                }
                lines.push("r8 = 0".into());
                let n = body.len();
                lines.extend(body);
                lines.push("r8 += 1".into());
                lines.push(format!("if r8 < {} goto -{}", 1 + arg % 4, n + 2));
            }
            _ => block(op, arg, &mut lines),
        }
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

fn load(p: &Program, engine: Engine) -> LoadedProgram {
    LoadedProgram::builder(p, engine)
        .instruction_limit(Some(1_000_000))
        .build()
        .unwrap_or_else(|e| panic!("does not load on {engine}: {e}"))
}

fn run(lp: &LoadedProgram, mem: &mut [u8]) -> Result<u64, VmError> {
    // SAFETY: the program was verified for a `mem` context of MEM bytes
    // (the original) or is its nocsr rewrite; the interpreter also checks.
    unsafe { lp.run_mem(mem) }
}

fuzz_target!(|data: &[u8]| {
    let text = render(data);
    let prog = assemble(&text).expect("generated text assembles");
    let mut opts = Options::new(ProgKind::Mem { size: MEM });
    opts.insn_limit = 200_000;
    let Ok(vp) = verify(&prog, &opts) else {
        return;
    };
    let out = remove_fastcall_spills(&vp, &FastcallTable::linux())
        .unwrap_or_else(|e| panic!("rewrite failed: {e}\n{text}"));
    out.prog
        .validate()
        .unwrap_or_else(|e| panic!("rewritten program invalid: {e}\n{text}"));
    let back = Program::decode(&out.prog.to_bytes()).expect("rewritten program decodes");
    assert_eq!(back.insns(), out.prog.insns(), "round trip");
    assert_eq!(prog.len() - out.prog.len(), 2 * out.removed_pairs());
    let original = load(&prog, Engine::Interp);
    let rewritten: Vec<(Engine, LoadedProgram)> = Engine::available()
        .into_iter()
        .map(|e| (e, load(&out.prog, e)))
        .collect();
    for fill in [0u8, 0xff, 0x5a] {
        let mut mem = [fill; MEM as usize];
        for (i, b) in mem.iter_mut().enumerate().take(8) {
            *b ^= data.get(i).copied().unwrap_or(0);
        }
        let mut want_mem = mem;
        let Ok(want) = run(&original, &mut want_mem) else {
            // Only the instruction budget may stop a verified program.
            continue;
        };
        for (engine, lp) in &rewritten {
            let mut got_mem = mem;
            let got = run(lp, &mut got_mem)
                .unwrap_or_else(|e| panic!("rewritten program fails on {engine}: {e}\n{text}"));
            assert_eq!(got, want, "r0 differs on {engine}:\n{text}");
            assert_eq!(got_mem, want_mem, "memory differs on {engine}:\n{text}");
        }
    }
});
