//! All analyses (subprograms, structural checks, petgraph graph, tail-call
//! reachability, stack rules with private-stack decisions) over a generated
//! 1,000,000-instruction program with 1,000 subprograms.

use std::hint::black_box;

use bpf_callgraph::{BuildOptions, CallGraph, PrivStackConfig, ProgType, StackConfig};
use bpf_isa::{AluOp, CallTarget, Insn, JmpCond, LdImm64Src, Program, Reg, Source, Width};
use criterion::{criterion_group, criterion_main, Criterion};

const SUBPROGS: usize = 1000;
const INSNS: usize = 1_000_000;

/// Subprogram `i` calls its children `4i + 1 ..= 4i + 4` (a 4-ary tree, 6
/// levels, so the frame limit holds), referencing some as callbacks instead,
/// tail calls in a few, and fills the rest with ALU work and short forward
/// branches.
fn generate() -> (Program, Vec<u32>) {
    let per = INSNS / SUBPROGS;
    let mut insns: Vec<Insn> = Vec::with_capacity(INSNS);
    // Each subprogram is exactly `per` slots so targets are known up front.
    for i in 0..SUBPROGS {
        let start = i * per;
        let mut body: Vec<Insn> = Vec::with_capacity(per);
        let mut calls: Vec<(usize, bool)> = Vec::new();
        for t in 4 * i + 1..=4 * i + 4 {
            if t < SUBPROGS {
                calls.push((t, t % 50 == 7));
            }
        }
        for (t, is_ref) in calls {
            let at = start + body.iter().map(|x| x.slots()).sum::<usize>();
            let off = (t * per) as i64 - at as i64 - 1;
            if is_ref {
                body.push(Insn::LdImm64 {
                    dst: Reg::R2,
                    src: LdImm64Src::Func(off as i32),
                });
            } else {
                body.push(Insn::Call(CallTarget::Local(off as i32)));
            }
        }
        if i % 97 == 3 {
            body.push(Insn::Call(CallTarget::Helper(12)));
        }
        let mut slots: usize = body.iter().map(|x| x.slots()).sum();
        while slots < per - 1 {
            if slots.is_multiple_of(10) && slots + 4 < per - 1 {
                body.push(Insn::Jmp {
                    width: Width::W64,
                    cond: JmpCond::Gt,
                    dst: Reg::R1,
                    src: Source::Imm(3),
                    off: 2,
                });
            } else {
                body.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Add,
                    dst: Reg::R0,
                    src: Source::Imm(1),
                });
            }
            slots += 1;
        }
        body.push(Insn::Exit);
        insns.extend(body);
    }
    let depths = (0..SUBPROGS).map(|i| ((i * 7) % 6) as u32 * 8).collect();
    (Program::from_insns(insns), depths)
}

fn bench(c: &mut Criterion) {
    let (prog, depths) = generate();
    assert_eq!(prog.slot_len(), INSNS);
    let opts = BuildOptions {
        max_subprogs: None,
        ..Default::default()
    };
    let cfg = StackConfig {
        jit: true,
        priv_stack: PrivStackConfig {
            prog_type: ProgType::Kprobe,
            tracing_kind: None,
            jit_supports_private_stack: true,
            priv_stack_requested: false,
        },
    };
    // Sanity: the generated program passes every check.
    let cg = CallGraph::build_with(&prog, &opts).expect("generated program is valid");
    assert_eq!(cg.len(), SUBPROGS);
    cg.check_stack_slice(&depths, &cfg)
        .expect("generated depths fit");

    c.bench_function("callgraph_1M_insns_1000_subprogs_all", |b| {
        b.iter(|| {
            let cg = CallGraph::build_with(black_box(&prog), &opts).expect("valid");
            let r = cg
                .check_stack_slice(black_box(&depths), &cfg)
                .expect("fits");
            black_box((cg.len(), r.max_depth))
        })
    });
    c.bench_function("callgraph_1M_insns_1000_subprogs_stack_only", |b| {
        b.iter(|| {
            black_box(
                cg.check_stack_slice(black_box(&depths), &cfg)
                    .expect("fits")
                    .max_depth,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
