//! Compiles one `../shared/bench/` program N times with the x86 JIT and nothing else, for instruction counts under callgrind:
//!
//! `valgrind --tool=callgrind target/release/examples/prof_one parse_hash 1000`, minus the same with 100, divided by 900 = instructions per compile.
//! One reused `bpf_jit_x86::Compiler`; with `PROF_FRESH=1`, a fresh one per compile; with `PROF_EXEC=1`, into executable memory; with `PROF_DECODE=1`, only `Program::decode` of the bytecode; with `PROF_RBPF=1`, rbpf's JIT instead of ours; with `PROF_BASELINE=1`, `bpf_jit_x86::Baseline` from the bytecode. `gen<blocks>` names the bench's generated program.

use bpf_jit::{HelperTable, JitOptions};
fn main() {
    let name = std::env::args().nth(1).unwrap_or("parse_hash".into());
    let n: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1000);
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    // `gen<blocks>`: the bench's generated program of that many blocks.
    // `rep<16 hex digits>`: 1000 copies of that one slot, then `exit`.
    let p = if let Some(hex) = name.strip_prefix("rep") {
        let slot = u64::from_str_radix(hex, 16).unwrap().to_be_bytes();
        let mut bytes: Vec<u8> = slot.repeat(1000);
        bytes.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
        bpf_isa::Program::decode(&bytes).unwrap()
    } else {
        match name.strip_prefix("gen").and_then(|b| b.parse().ok()) {
            Some(blocks) => bpf_isa::arbitrary::initialized_bench_program(blocks),
            None => bpf_tests::benchprogs::load(&name).unwrap().mem,
        }
    };
    if std::env::var_os("PROF_PASSES").is_some() {
        let c = bpf_jit_x86::compile_code(&p, &opts).unwrap();
        eprintln!(
            "{name}: {} insns, {} passes, {} bytes",
            p.len(),
            c.passes,
            c.code.len()
        );
    }
    let mut jit = bpf_jit_x86::Compiler::new();
    // PROF_FRESH: a fresh compiler per compile (`bpf_jit_x86::compile_code`).
    let fresh = std::env::var_os("PROF_FRESH").is_some();
    // PROF_DECODE: decoding the bytecode (`Program::decode`) and nothing
    // else, for the decode cost a raw-bytes JIT like rbpf's pays inside
    // its compile.
    if std::env::var_os("PROF_DECODE").is_some() {
        let bytes = p.to_bytes();
        for _ in 0..n {
            let r = bpf_isa::Program::decode(std::hint::black_box(&bytes));
            std::hint::black_box(r.ok());
        }
        return;
    }
    // PROF_RBPF: rbpf's JIT (`jit_compile`, from the bytecode), for its
    // instruction count next to ours.
    if std::env::var_os("PROF_RBPF").is_some() {
        let bytes: &'static [u8] = Box::leak(p.to_bytes().into_boxed_slice());
        let mut vm = rbpf::EbpfVmRaw::new(Some(bytes)).unwrap();
        for _ in 0..n {
            std::hint::black_box(vm.jit_compile().ok());
        }
        return;
    }
    // PROF_BASELINE: the one-pass baseline compiler from the bytecode
    // into executable memory (`bpf_jit_x86::Baseline::compile`).
    if std::env::var_os("PROF_BASELINE").is_some() {
        let bytes = p.to_bytes();
        let mut b = bpf_jit_x86::Baseline::new();
        for _ in 0..n {
            std::hint::black_box(b.compile(std::hint::black_box(&bytes), &opts).ok());
        }
        return;
    }
    // PROF_EXEC: the whole compile into executable memory (`Compiler::compile`).
    if std::env::var_os("PROF_EXEC").is_some() {
        for _ in 0..n {
            let r = jit.compile(std::hint::black_box(&p), &opts);
            std::hint::black_box(r.ok());
        }
        return;
    }
    for _ in 0..n {
        let p = std::hint::black_box(&p);
        let r = if fresh {
            bpf_jit_x86::compile_code(p, &opts)
        } else {
            jit.compile_code(p, &opts)
        };
        std::hint::black_box(r.ok());
    }
}
