//! Differential test with bpf-to-bpf calls, tail calls and maps: the x86-64
//! JIT (through `bpf_vm::LoadedProgram` with `Engine::X86`) against the
//! interpreter on 10,000 generated program sets, comparing `r0` and the
//! contents of an array map every program adds its results to.
//!
//! Each case is three programs sharing a counter array (fd 2) and a prog
//! array (fd 1, three slots):
//!
//! * **main**: registers from constants, random ALU body, `call` to a
//!   subprogram, fresh `r1`-`r5`, another body, fold of `r0`-`r9` added to
//!   word 0 of the map, exit with the fold.
//! * **sub** (in main): random body, its fold added to word 1, then a tail
//!   call to a random index (0 and 1 filled, 2 empty, 3 out of range), then
//!   `r0` from r6-r9 (which the callee preserved) — the counter-pointer path.
//! * **leaf** (slots 0 and 1): constants, body, fold added to word 2 + slot,
//!   and, when the case says so, a tail call to slot 0 again — the chain ends
//!   at the 33-tail-call limit, so the map shows how many ran.
//!
//! Registers a call or failed tail call clobbers are never read afterwards
//! (the kernel's verifier would reject such a read). A deterministic xorshift
//! generator keeps the run reproducible; `BPF_DIFF_CASES` overrides the count
//! (e.g. for the longer run reported in the note).

use std::sync::Arc;

use bpf_isa::{AluOp, CallTarget, Endian, Insn, LdImm64Src, Program, Reg, Size, Source, Width};
use bpf_vm::{Engine, LoadedProgram, Map, MapDef, MapType};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn reg(&mut self) -> Reg {
        Reg::ALL[self.below(10) as usize]
    }

    fn imm(&mut self) -> i32 {
        const EDGE: [i32; 10] = [0, 1, -1, i32::MIN, i32::MAX, 31, 32, 63, 64, 0x7f];
        if self.below(2) == 0 {
            EDGE[self.below(EDGE.len() as u64) as usize]
        } else {
            self.next() as i32
        }
    }
}

fn mov(dst: Reg, imm: i32) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src: Source::Imm(imm),
    }
}

fn alu(op: AluOp, dst: Reg, src: Source) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op,
        dst,
        src,
    }
}

/// One random ALU-class instruction on r0-r9 (edge values included).
fn alu_insn(rng: &mut Rng) -> Insn {
    let dst = rng.reg();
    match rng.below(12) {
        0 => Insn::Neg {
            width: if rng.below(2) == 0 {
                Width::W32
            } else {
                Width::W64
            },
            dst,
        },
        1 => Insn::Endian {
            kind: [Endian::ToLe, Endian::ToBe, Endian::Swap][rng.below(3) as usize],
            bits: [16, 32, 64][rng.below(3) as usize],
            dst,
        },
        _ => Insn::Alu {
            width: if rng.below(2) == 0 {
                Width::W32
            } else {
                Width::W64
            },
            op: AluOp::ALL[rng.below(AluOp::ALL.len() as u64) as usize],
            dst,
            src: if rng.below(2) == 0 {
                Source::Reg(rng.reg())
            } else {
                Source::Imm(rng.imm())
            },
        },
    }
}

fn body(rng: &mut Rng, out: &mut Vec<Insn>) {
    for _ in 0..rng.below(12) {
        out.push(alu_insn(rng));
    }
}

fn init(rng: &mut Rng, regs: std::ops::RangeInclusive<u8>, out: &mut Vec<Insn>) {
    for n in regs {
        out.push(mov(Reg::ALL[n as usize], rng.imm()));
    }
}

/// r0 = fold of r0-r9.
fn fold(out: &mut Vec<Insn>) {
    for k in 1..=9 {
        out.push(alu(AluOp::Mul, Reg::R0, Source::Imm(31)));
        out.push(alu(AluOp::Xor, Reg::R0, Source::Reg(Reg::ALL[k])));
    }
}

/// Adds r0 to word `w` of the counters' value; r0 survives in r6.
/// Clobbers r1-r5.
fn add_to_map(w: i16, out: &mut Vec<Insn>) {
    out.extend([
        alu(AluOp::Mov, Reg::R6, Source::Reg(Reg::R0)),
        Insn::St {
            size: Size::W,
            dst: Reg::R10,
            off: -4,
            imm: 0,
        },
        Insn::LdImm64 {
            dst: Reg::R1,
            src: LdImm64Src::MapFd(2),
        },
        alu(AluOp::Mov, Reg::R2, Source::Reg(Reg::R10)),
        alu(AluOp::Add, Reg::R2, Source::Imm(-4)),
        Insn::Call(CallTarget::Helper(1)),
        Insn::Jmp {
            width: Width::W64,
            cond: bpf_isa::JmpCond::Eq,
            dst: Reg::R0,
            src: Source::Imm(0),
            off: 3,
        },
        Insn::Ldx {
            size: Size::DW,
            dst: Reg::R1,
            src: Reg::R0,
            off: 8 * w,
        },
        alu(AluOp::Add, Reg::R1, Source::Reg(Reg::R6)),
        Insn::Stx {
            size: Size::DW,
            dst: Reg::R0,
            src: Reg::R1,
            off: 8 * w,
        },
    ]);
}

fn tail_call(idx: i32, out: &mut Vec<Insn>) {
    out.extend([
        Insn::LdImm64 {
            dst: Reg::R2,
            src: LdImm64Src::MapFd(1),
        },
        mov(Reg::R3, idx),
        Insn::Call(CallTarget::Helper(12)),
    ]);
}

/// r0 = fold of r6-r9 (what survives calls), then exit.
fn finish(out: &mut Vec<Insn>) {
    out.push(mov(Reg::R0, 17));
    for k in 6..=9 {
        out.push(alu(AluOp::Mul, Reg::R0, Source::Imm(31)));
        out.push(alu(AluOp::Xor, Reg::R0, Source::Reg(Reg::ALL[k])));
    }
    out.push(Insn::Exit);
}

fn gen_main(rng: &mut Rng) -> Program {
    let mut m = Vec::new();
    init(rng, 0..=9, &mut m);
    body(rng, &mut m);
    let call_at = m.len();
    m.push(Insn::Call(CallTarget::Local(0))); // patched below
    init(rng, 1..=5, &mut m);
    body(rng, &mut m);
    fold(&mut m);
    add_to_map(0, &mut m);
    finish(&mut m);
    // sub
    let sub_start = m.len();
    // A callee starts with only r1-r5 (and r10) readable.
    m.push(mov(Reg::R0, rng.imm()));
    init(rng, 6..=9, &mut m);
    body(rng, &mut m);
    fold(&mut m);
    add_to_map(1, &mut m);
    tail_call(rng.below(4) as i32, &mut m);
    finish(&mut m);
    let p = Program::from_insns(m.clone());
    // Slot distance (ld_imm64 takes two slots).
    let starts = p.starts();
    let off = i64::from(starts[sub_start]) - i64::from(starts[call_at]) - 1;
    m[call_at] = Insn::Call(CallTarget::Local(off as i32));
    Program::from_insns(m)
}

fn gen_leaf(rng: &mut Rng, slot: i16, again: bool) -> Program {
    let mut m = Vec::new();
    init(rng, 0..=9, &mut m);
    body(rng, &mut m);
    fold(&mut m);
    add_to_map(2 + slot, &mut m);
    if again {
        tail_call(0, &mut m);
    }
    finish(&mut m);
    Program::from_insns(m)
}

fn run(progs: &[Program; 3], engine: Engine) -> Result<(u64, Vec<u8>), String> {
    let counters = Map::new(MapDef {
        map_type: MapType::Array,
        key_size: 4,
        value_size: 32,
        max_entries: 1,
    })
    .map_err(|e| e.to_string())?;
    let pa = Map::new(MapDef {
        map_type: MapType::ProgArray,
        key_size: 4,
        value_size: 4,
        max_entries: 3,
    })
    .map_err(|e| e.to_string())?;
    let load = |p: &Program| {
        LoadedProgram::builder(p, engine)
            .map(1, pa.clone())
            .map(2, counters.clone())
            .build()
            .map_err(|e| format!("{engine}: {e}"))
    };
    let main = load(&progs[0])?;
    let leaves = [load(&progs[1])?, load(&progs[2])?];
    let table = pa.as_prog_array().ok_or("not a prog array")?;
    for (i, l) in leaves.iter().enumerate() {
        table
            .set_program(i as u32, Some(l))
            .map_err(|e| e.to_string())?;
    }
    let mut mem = [0u8; 16];
    // SAFETY: the generated programs only touch their stack and the map
    // value bpf_map_lookup_elem returns (after a null check).
    let r0 = unsafe { main.run_mem(&mut mem) }.map_err(|e| format!("{engine}: {e}"))?;
    for i in 0..3 {
        let _ = table.set_program(i, None);
    }
    let _: &Arc<Map> = &counters;
    Ok((
        r0,
        counters
            .lookup(&0u32.to_le_bytes())
            .map_err(|e| e.to_string())?,
    ))
}

#[test]
fn jit_matches_interpreter_with_calls_tail_calls_and_maps() {
    let cases: u64 = std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut chains, mut mismatches) = (0u64, Vec::new());
    let start = std::time::Instant::now();
    for case in 0..cases {
        let main = gen_main(&mut rng);
        let again = rng.below(2) == 0;
        let progs = [
            main,
            gen_leaf(&mut rng, 0, again),
            gen_leaf(&mut rng, 1, false),
        ];
        let want = run(&progs, Engine::Interp);
        let got = run(&progs, Engine::X86);
        if let Ok((_, m)) = &want {
            // Word 2 counts slot 0's runs: 33 tail calls when it chains.
            chains += u64::from(m.get(16..24) != Some(&[0u8; 8][..]) && again);
        }
        if want != got {
            mismatches.push(format!(
                "case {case}: interp {want:?}, x86 {got:?}\nmain:\n{}\nleaf0:\n{}",
                bpf_isa::fmt_program(&progs[0], &Default::default()),
                bpf_isa::fmt_program(&progs[1], &Default::default()),
            ));
            if mismatches.len() >= 3 {
                break;
            }
        }
    }
    eprintln!(
        "differential_calls: {cases} cases, {chains} with a 33-deep tail-call chain, {} mismatches, {:.1} s",
        mismatches.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    assert!(chains > 0, "no case exercised a tail-call chain");
}
