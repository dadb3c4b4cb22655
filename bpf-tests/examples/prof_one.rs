//! Compiles one `../shared/bench/` program N times with the x86 JIT and nothing else, for instruction counts under callgrind:
//!
//! `valgrind --tool=callgrind target/release/examples/prof_one parse_hash 1000`, minus the same with 100, divided by 900 = instructions per compile.

use bpf_jit::{HelperTable, JitOptions};
fn main() {
    let name = std::env::args().nth(1).unwrap_or("parse_hash".into());
    let n: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(1000);
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let p = bpf_tests::benchprogs::load(&name).unwrap().mem;
    let mut jit = bpf_jit_x86::Compiler::new();
    for _ in 0..n {
        std::hint::black_box(jit.compile_code(std::hint::black_box(&p), &opts).ok());
    }
}
