//! ns/run of the bench programs (`/work/shared/bench/build/*.v3.o`, section
//! `mem`, fed `packet.bin`) on our interpreter (checked and unchecked) and on
//! the `rbpf` crate's interpreter, side by side. Every result is first checked
//! against the expected values of the bench README.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};

use bpf_vm::Interpreter;

/// Expected 64-bit results from `/work/shared/bench/README.md`.
const EXPECTED: &[(&str, u64)] = &[
    ("csum", 0x0000_0000_0000_c00d),
    ("fnv1a", 0xa11f_2fd8_0a45_0ec1),
    ("parse_hash", 0x637a_7454_1687_ee41),
    ("sort", 0xe23b_005b_de40_3c4f),
    ("calls", 0x5698_e0d8_50c9_e376),
    ("alu", 0x2eee_90ea_fc40_6f69),
];

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench")
}

fn bench(c: &mut Criterion) {
    let dir = bench_dir();
    let packet = match std::fs::read(dir.join("packet.bin")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "bench data missing at {} ({e}): nothing to measure",
                dir.display()
            );
            return;
        }
    };
    let mut group = c.benchmark_group("interp");
    for &(name, want) in EXPECTED {
        let path = dir.join(format!("build/{name}.v3.o"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let obj = bpf_object::Object::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let prog = obj
            .programs_in_section("mem")
            .next()
            .unwrap_or_else(|| panic!("{name}: no program in section mem"));
        let vm = Interpreter::new(&prog.insns).unwrap_or_else(|e| panic!("{name}: {e}"));

        let mut mem = packet.clone();
        let got = vm
            .run_mem(&mut mem)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}: checked interpreter result");
        // SAFETY: the same program just ran to completion in checked mode on
        // this same input without a fault; it is deterministic.
        let got_u =
            unsafe { vm.run_mem_unchecked(&mut mem) }.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got_u, want, "{name}: unchecked interpreter result");

        group.bench_function(format!("{name}/bpf-vm-checked"), |b| {
            b.iter(|| vm.run_mem(black_box(&mut mem)))
        });
        group.bench_function(format!("{name}/bpf-vm-unchecked"), |b| {
            // SAFETY: see above.
            b.iter(|| unsafe { vm.run_mem_unchecked(black_box(&mut mem)) })
        });

        // rbpf: its raw VM sets r1 = mem only, so prepend `r2 = len`.
        let mut code = vec![0xb7, 0x02, 0, 0];
        code.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        code.extend_from_slice(&prog.insns.to_bytes());
        // Leaked: rbpf's VM borrows its bytecode for as long as the VM lives.
        let code: &'static [u8] = Box::leak(code.into_boxed_slice());
        match rbpf::EbpfVmRaw::new(Some(code)) {
            Ok(rvm) => match rvm.execute_program(&mut mem) {
                Ok(r) if r == want => {
                    group.bench_function(format!("{name}/rbpf"), |b| {
                        b.iter(|| rvm.execute_program(black_box(&mut mem)))
                    });
                }
                Ok(r) => {
                    eprintln!("{name}: rbpf returned {r:#x}, expected {want:#x}; not benchmarked")
                }
                Err(e) => eprintln!("{name}: rbpf failed to run: {e}; not benchmarked"),
            },
            Err(e) => eprintln!("{name}: rbpf rejected the program: {e}; not benchmarked"),
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
