//! JIT compile time per eBPF instruction (criterion reports elements/s:
//! ns per instruction = 1e9 / that).
//!
//! Two programs: a straight-line-heavy mix (ALU, stack loads/stores,
//! division, forward branches that all fit the short forms) and a
//! branch-heavy one whose branches span more than 127 bytes (so layout needs
//! extra passes and long forms).

use bpf_isa::{AluOp, Insn, JmpCond, Program, Reg, Size, Source, Width};
use bpf_jit::{HelperTable, JitOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn alu(width: Width, op: AluOp, dst: Reg, src: Source) -> Insn {
    Insn::Alu {
        width,
        op,
        dst,
        src,
    }
}

/// `blocks` copies of a 15-instruction (16-slot) block; each block's branch
/// skips `skip` slots (clamped to the final `exit`).
fn program(blocks: usize, skip: i16) -> Program {
    let mut v = Vec::with_capacity(blocks * 16 + 1);
    for b in 0..blocks {
        let k = (b % 7) as i32;
        v.push(alu(Width::W64, AluOp::Mov, Reg::R0, Source::Imm(k)));
        v.push(alu(Width::W64, AluOp::Add, Reg::R0, Source::Reg(Reg::R1)));
        v.push(alu(Width::W32, AluOp::Xor, Reg::R3, Source::Imm(0x1234)));
        v.push(alu(Width::W64, AluOp::Lsh, Reg::R3, Source::Imm(3)));
        v.push(alu(Width::W64, AluOp::Rsh, Reg::R2, Source::Reg(Reg::R4)));
        v.push(Insn::Stx {
            size: Size::DW,
            dst: Reg::R10,
            src: Reg::R0,
            off: -8,
        });
        v.push(Insn::Ldx {
            size: Size::W,
            dst: Reg::R6,
            src: Reg::R10,
            off: -8,
        });
        v.push(alu(Width::W64, AluOp::Mul, Reg::R6, Source::Imm(31)));
        v.push(alu(Width::W64, AluOp::Div, Reg::R6, Source::Reg(Reg::R7)));
        v.push(Insn::Jmp {
            width: Width::W64,
            cond: JmpCond::Sgt,
            dst: Reg::R6,
            src: Source::Imm(100),
            off: skip.min(((blocks - b) * 16 - 10) as i16).max(0),
        });
        v.push(alu(Width::W64, AluOp::Sub, Reg::R7, Source::Reg(Reg::R6)));
        v.push(alu(Width::W32, AluOp::And, Reg::R8, Source::Imm(-1)));
        v.push(Insn::LdImm64 {
            dst: Reg::R9,
            src: bpf_isa::LdImm64Src::Imm(0x1122_3344_5566_7788),
        });
        v.push(Insn::Endian {
            kind: bpf_isa::Endian::ToBe,
            bits: 32,
            dst: Reg::R9,
        });
        v.push(Insn::Neg {
            width: Width::W64,
            dst: Reg::R8,
        });
    }
    v.push(Insn::Exit);
    Program::from_insns(v)
}

fn bench(c: &mut Criterion) {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let mut g = c.benchmark_group("x86_compile");
    for (name, prog) in [
        ("short_branches_4k", program(256, 4)),
        ("long_branches_4k", program(256, 50)),
    ] {
        let code = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
        eprintln!(
            "{name}: {} insns, {} bytes, {} passes",
            prog.len(),
            code.code.len(),
            code.passes
        );
        g.throughput(Throughput::Elements(prog.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| bpf_jit_x86::compile_code(std::hint::black_box(&prog), &opts))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
