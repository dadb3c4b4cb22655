//! Compile time of the x86 JIT on the six `../shared/bench/` programs: the best of 15 batches of N compiles (`compile_code`), ns per compile and per instruction.
//!
//! `cargo run --release -p bpf-tests --example prof_compile [N]` (N = 20000).

use bpf_jit::{HelperTable, JitOptions};
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(20000);
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let mut tot = 0.0;
    for name in ["csum", "fnv1a", "parse_hash", "sort", "calls", "alu"] {
        let p = bpf_tests::benchprogs::load(name).unwrap().mem;
        let mut best = f64::MAX;
        for _ in 0..15 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(
                    bpf_jit_x86::compile_code(std::hint::black_box(&p), &opts).ok(),
                );
            }
            best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
        }
        tot += best;
        print!("{name} {:.0} ({:.1}/insn)  ", best, best / p.len() as f64);
    }
    println!("| total {tot:.0}");
}
