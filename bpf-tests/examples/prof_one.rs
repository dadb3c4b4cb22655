//! Compiles one `../shared/bench/` program N times with the x86 JIT and nothing else, for instruction counts under callgrind:
//!
//! `valgrind --tool=callgrind target/release/examples/prof_one parse_hash 1000`, minus the same with 100, divided by 900 = instructions per compile.
//! One reused `bpf_jit_x86::Compiler`; with `PROF_FRESH=1`, a fresh one per compile; with `PROF_EXEC=1`, into executable memory; with `PROF_DECODE=1`, only `Program::decode` of the bytecode; with `PROF_RBPF=1`, rbpf's JIT instead of ours; with `PROF_BASELINE=1`, `bpf_jit_x86::Baseline` from the bytecode (`PROF_DUMP=FILE` also writes its code there). `gen<blocks>` names the bench's generated program.

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
    // `mix<k>` / `cyc<k>`: 1000 slots drawn at random (xorshift) / in
    // turn from the first k of a few simple instruction forms, then
    // `exit`: the dispatch's branch prediction with and without a pattern.
    let mixed = name
        .strip_prefix("mix")
        .map(|k| (k, true))
        .or_else(|| name.strip_prefix("cyc").map(|k| (k, false)));
    let p = if let Some((k, random)) = mixed {
        let forms: [u64; 8] = [
            0x0f21_0000_0000_0000, // r1 += r2
            0xbf31_0000_0000_0000, // r1 = r3
            0x0721_0000_0500_0000, // r1 += 5
            0x7912_0800_0000_0000, // r2 = *(u64 *)(r1 + 8)
            0x7b1a_f8ff_0000_0000, // *(u64 *)(r10 - 8) = r1
            0x6701_0000_0300_0000, // r1 <<= 3
            0xb703_0000_0700_0000, // r3 = 7
            0xaf12_0000_0000_0000, // r2 ^= r1
        ];
        let k: usize = k.parse::<usize>().unwrap().clamp(1, 8);
        let mut x = 0x2545_f491u32;
        let mut bytes = Vec::new();
        for j in 0..1000 {
            let f = if random {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as usize % k
            } else {
                j % k
            };
            bytes.extend_from_slice(&forms[f].to_be_bytes());
        }
        bytes.extend_from_slice(&[0x95, 0, 0, 0, 0, 0, 0, 0]);
        bpf_isa::Program::decode(&bytes).unwrap()
    } else if let Some(hex) = name.strip_prefix("rep") {
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
        // PROF_DUMP=FILE: the baseline's code, for `objdump -D -b binary
        // -mi386:x86-64 FILE`.
        if let Some(path) = std::env::var_os("PROF_DUMP") {
            let prog = b.compile(&bytes, &opts).unwrap();
            std::fs::write(path, prog.memory().code()).unwrap();
        }
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
