//! Decode + validate throughput on a large generated program (~1M slots),
//! reported as instructions per second.

use std::hint::black_box;

use bpf_isa::arbitrary::valid_program;
use bpf_isa::Program;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

/// About one million slots: copies of one generated program of up to 16 000
/// instructions. Jumps are relative and stay inside their copy, so the
/// concatenation is still valid.
fn big_program() -> (Vec<u8>, usize) {
    let mut runner = TestRunner::deterministic();
    let p = valid_program(16_000)
        .new_tree(&mut runner)
        .expect("generate")
        .current();
    let one = p.to_bytes();
    let copies = (1_000_000 * 8) / one.len().max(8) + 1;
    let mut bytes = Vec::with_capacity(one.len() * copies);
    for _ in 0..copies {
        bytes.extend_from_slice(&one);
    }
    (bytes, p.len() * copies)
}

fn bench_decode(c: &mut Criterion) {
    let (bytes, insns) = big_program();
    let p = Program::decode_validated(&bytes).expect("generated program is valid");
    assert_eq!(p.len(), insns);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(insns as u64));
    g.sample_size(10);
    g.bench_function("decode", |b| b.iter(|| Program::decode(black_box(&bytes))));
    g.bench_function("decode_validated", |b| {
        b.iter(|| Program::decode_validated(black_box(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
