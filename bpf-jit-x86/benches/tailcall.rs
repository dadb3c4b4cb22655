//! ns per tail call, direct (patched jump) vs indirect (table load and
//! `jmp reg`): a program in slot 0 that tail-calls itself through slot 0,
//! so one invocation makes the kernel's maximum of 33 tail calls and then
//! returns; criterion reports 33 elements per iteration, so its
//! throughput line reads as tail calls per second. The `no tail call`
//! row (same program, empty slot) is the invocation overhead to subtract.

use bpf_isa::{assemble, LdImm64Src};
use bpf_jit::{HelperTable, JitOptions, JitProgArray, JitProgram, MAX_TAIL_CALL_CNT};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SELF_TAIL_CALL: &str = "r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 0\nexit";

fn jit(pa: &JitProgArray, direct: bool) -> JitProgram {
    let helpers = HelperTable::new();
    let table = pa.as_ptr();
    let r = move |_: usize, s: LdImm64Src| (s == LdImm64Src::MapFd(1)).then_some(table);
    let opts = JitOptions::new(&helpers)
        .with_ld_imm64(&r)
        .with_direct_tail_calls(direct);
    let prog = assemble(SELF_TAIL_CALL).expect("assembles");
    let p = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
    assert_eq!(p.direct_tail_calls().len(), usize::from(direct));
    p.attach(pa).expect("attaches");
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tail_call_x86");
    g.throughput(Throughput::Elements(u64::from(MAX_TAIL_CALL_CNT)));
    for (name, direct) in [("direct", true), ("indirect", false)] {
        let pa = JitProgArray::new(1);
        let p = jit(&pa, direct);
        pa.set(0, p.memory().as_ptr() as u64).expect("slot 0");
        g.bench_function(name, |b| {
            // SAFETY: the program touches no memory.
            b.iter(|| unsafe { p.call(std::hint::black_box([0; 5])) })
        });
        pa.set(0, 0).expect("slot 0");
    }
    let pa = JitProgArray::new(1);
    let p = jit(&pa, true);
    g.throughput(Throughput::Elements(1));
    g.bench_function("no tail call", |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { p.call(std::hint::black_box([0; 5])) })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
