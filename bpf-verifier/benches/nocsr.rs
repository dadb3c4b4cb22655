//! The gain of `bpf_fastcall` spill/fill removal at run time: a program
//! that calls `bpf_get_smp_processor_id` (helper 8, fastcall) 1000 times
//! in a bounded loop, with the bracket clang emits around each call
//! (spills and fills of the live registers r1-r5), against the same
//! program after [`remove_fastcall_spills`]. ns per run on bpf-vm's
//! interpreter and on the x86-64 JIT engine (which preserves r1-r5 around
//! the call itself, so the rewritten program pays for five push/pop pairs
//! instead of five stores and five loads).
//!
//! Run: `cargo bench -p bpf-verifier --bench nocsr`.

use bpf_isa::{assemble, Program};
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::remove_fastcall_spills;
use bpf_verifier::{verify, Options, ProgKind};
use bpf_vm::{Engine, LoadedProgram};
use criterion::{criterion_group, criterion_main, Criterion};

const ITERATIONS: u32 = 1000;

/// `live` registers (r1..=r_live) kept across each call.
fn looped(live: u8) -> String {
    let mut s = String::new();
    for r in 1..=5 {
        s += &format!("r{r} = {r}\n");
    }
    s += "r6 = 0\nr7 = 0\ntop:\n";
    for r in (1..=live).rev() {
        s += &format!("*(u64 *)(r10 - {}) = r{r}\n", 8 * u32::from(r));
    }
    s += "call 8\n";
    for r in 1..=live {
        s += &format!("r{r} = *(u64 *)(r10 - {})\n", 8 * u32::from(r));
    }
    for r in 1..=live {
        s += &format!("r6 += r{r}\n");
    }
    s += &format!("r1 += 1\nr7 += 1\nif r7 < {ITERATIONS} goto top\nr0 = r6\nexit");
    s
}

fn programs(live: u8) -> (Program, Program, usize) {
    let prog = assemble(&looped(live)).expect("assembles");
    let vp = verify(&prog, &Options::new(ProgKind::Mem { size: 8 })).expect("verifies");
    let out = remove_fastcall_spills(&vp, &FastcallTable::linux()).expect("rewrites");
    let removed = out.removed_pairs();
    (prog, out.prog, removed)
}

fn bench(c: &mut Criterion) {
    for live in [1u8, 5] {
        let (orig, rewritten, removed) = programs(live);
        assert_eq!(removed, usize::from(live), "every pair goes");
        let mut g = c.benchmark_group(format!("nocsr/{ITERATIONS}x_call8_live{live}"));
        for engine in Engine::available() {
            for (name, p) in [("original", &orig), ("rewritten", &rewritten)] {
                let lp = LoadedProgram::builder(p, engine).build().expect("loads");
                let mut mem = [0u8; 8];
                // SAFETY (both runs): verified programs that touch only their stack.
                let want = unsafe { lp.run_mem(&mut mem) }.expect("runs");
                g.bench_function(format!("{engine}/{name}"), |b| {
                    b.iter(|| {
                        // SAFETY: as above.
                        let r = unsafe { lp.run_mem(&mut mem) };
                        assert_eq!(r.ok(), Some(want));
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
