//! AArch64 JIT compile time per eBPF instruction (host side; criterion
//! reports elements/s: ns per instruction = 1e9 / that), on the same two
//! synthetic programs as the x86-64 bench, and on every
//! `../shared/bench/build/*.v3.o` program (section `mem`), whose code size
//! is printed. The side-by-side size table of both backends and the kernel
//! is `cargo run -p bpf-tests --example jit_sizes` (this crate does not
//! depend on the x86-64 backend).

use bpf_isa::arbitrary::bench_program;
use bpf_isa::LdImm64Src;
use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

unsafe extern "C" fn dummy(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0
}

/// The shared bench objects' `mem` programs, by file stem.
fn shared_programs() -> Vec<(String, Program)> {
    let dir = format!("{}/../../shared/bench/build", env!("CARGO_MANIFEST_DIR"));
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED the shared bench programs: {dir} not found");
        return Vec::new();
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".v3.o"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let Ok(obj) = bpf_object::Object::parse(&bytes) else {
            eprintln!("{}: does not parse", f.display());
            continue;
        };
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".v3.o").to_string())
            .unwrap_or_default();
        let first = obj
            .programs_in_section("mem")
            .next()
            .map(|p| p.insns.clone());
        if let Some(p) = first {
            out.push((name, p));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut helpers = HelperTable::new();
    for id in 0..256 {
        helpers.insert(id, dummy);
    }
    let resolve = |slot: usize, _: LdImm64Src| Some(0x7f00_0000_0000 + 8 * slot as u64);
    let opts = JitOptions::new(&helpers).with_ld_imm64(&resolve);
    let mut g = c.benchmark_group("arm64_compile");
    for (name, prog) in [
        ("short_branches_4k", bench_program(256, 4)),
        ("long_branches_4k", bench_program(256, 50)),
    ] {
        let code = bpf_jit_arm64::compile_code(&prog, &opts).expect("compiles");
        eprintln!(
            "{name}: {} insns, {} bytes, {} passes",
            prog.len(),
            code.code.len(),
            code.passes
        );
        g.throughput(Throughput::Elements(prog.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| bpf_jit_arm64::compile_code(std::hint::black_box(&prog), &opts))
        });
    }
    eprintln!("shared bench programs (section mem): insns, arm64 bytes");
    for (name, prog) in shared_programs() {
        let a = bpf_jit_arm64::compile_code(&prog, &opts);
        match &a {
            Ok(a) => eprintln!(
                "  {name:12} {:5} insns  arm64 {:6} B",
                prog.len(),
                a.code.len()
            ),
            Err(e) => eprintln!("  {name:12} arm64 error: {e}"),
        }
        if a.is_ok() {
            g.throughput(Throughput::Elements(prog.len() as u64));
            g.bench_function(format!("bench_{name}"), |b| {
                b.iter(|| bpf_jit_arm64::compile_code(std::hint::black_box(&prog), &opts))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
