//! JIT compile time per eBPF instruction (criterion reports elements/s:
//! ns per instruction = 1e9 / that).
//!
//! Two programs (`bpf_isa::arbitrary::bench_program`): a straight-line-heavy mix (ALU, stack loads/stores,
//! division, forward branches that all fit the short forms) and a
//! branch-heavy one whose branches span more than 127 bytes (so layout needs
//! extra passes and long forms).

use bpf_isa::arbitrary::bench_program;
use bpf_jit::{HelperTable, JitOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let mut g = c.benchmark_group("x86_compile");
    for (name, prog) in [
        ("short_branches_4k", bench_program(256, 4)),
        ("long_branches_4k", bench_program(256, 50)),
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
