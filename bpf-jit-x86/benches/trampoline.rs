//! Overhead of a call through a trampoline with one trivial entry program
//! (`r0 = 0; exit`), against a plain native call of the same function.

use std::hint::black_box;
use std::sync::Arc;

use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_x86::trampoline::{Trampoline, TrampolineMode};
use criterion::{criterion_group, criterion_main, Criterion};

type F2 = extern "C" fn(u64, u64) -> u64;

#[inline(never)]
extern "C" fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

fn bench(c: &mut Criterion) {
    let helpers = HelperTable::new();
    let prog = bpf_isa::assemble("r0 = 0\nexit").expect("assembles");
    let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers)).expect("compiles");
    let mut t =
        Trampoline::new(2, Some(add as F2 as usize), TrampolineMode::Observe).expect("trampoline");
    let bare = t.image();
    t.attach_entry(Arc::new(jit)).expect("attaches");
    let image = t.image();
    // SAFETY: both images are functions of two u64 returning u64 (the
    // trampoline's signature); the program touches nothing.
    let (with_prog, without): (F2, F2) = unsafe {
        (
            core::mem::transmute::<*const u8, F2>(image.as_fn_ptr()),
            core::mem::transmute::<*const u8, F2>(bare.as_fn_ptr()),
        )
    };
    let native: F2 = add;

    let mut g = c.benchmark_group("trampoline");
    g.bench_function("native_call", |b| {
        let f = black_box(native);
        b.iter(|| f(black_box(1), black_box(2)))
    });
    g.bench_function("trampoline_no_programs", |b| {
        let f = black_box(without);
        b.iter(|| f(black_box(1), black_box(2)))
    });
    g.bench_function("trampoline_one_entry_program", |b| {
        let f = black_box(with_prog);
        b.iter(|| f(black_box(1), black_box(2)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
