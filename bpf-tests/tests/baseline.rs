//! The one-pass baseline compiler (`bpf_jit_x86::Baseline`) on the
//! `../shared/bench/` programs: it must handle each of them itself (no
//! fallback) and return the README's results.

use bpf_jit::{HelperTable, JitOptions};
use bpf_tests::benchprogs::{self, EXPECTED};

#[test]
fn bench_programs_compile_in_one_pass_and_give_the_expected_results() {
    let packet = match benchprogs::packet() {
        Ok(p) => p,
        Err(e) => panic!("bench data missing ({e}): ../shared/bench is required"),
    };
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let mut jit = bpf_jit_x86::Baseline::new();
    for e in EXPECTED {
        let p = benchprogs::load(e.name).unwrap();
        let bytes = p.mem.to_bytes();
        let prog = jit.try_compile(&bytes, &opts).unwrap().unwrap_or_else(|| {
            panic!(
                "{}: the baseline left it to the optimizing compiler",
                e.name
            )
        });
        let mut mem = packet.clone();
        // SAFETY: the bench programs read only the packet they are given.
        let got = unsafe { prog.call_mem(&mut mem) };
        assert_eq!(got, e.mem, "{}", e.name);
    }
}
