//! Run time of one `../shared/bench/` program on the x86 JIT through bpf-vm (the best of 30 batches of 2000 runs, wall clock): a quick check beside the criterion bench.
//!
//! `cargo run --release -p bpf-tests --example prof_run sort`

use bpf_vm::{Engine, LoadedProgram};
fn main() {
    let name = std::env::args().nth(1).unwrap_or("alu".into());
    let packet = bpf_tests::benchprogs::packet().unwrap();
    let p = bpf_tests::benchprogs::load(&name).unwrap();
    let kind = bpf_verifier::ProgKind::Mem {
        size: packet.len() as u32,
    };
    let vp = bpf_verifier::verify(&p.mem, &bpf_verifier::Options::new(kind)).unwrap();
    let prog = LoadedProgram::builder(&p.mem, Engine::X86)
        .stack_depths(vp.stack_depth)
        .build()
        .unwrap();
    let mut mem = packet.to_vec();
    let mut best = f64::MAX;
    for _ in 0..30 {
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(unsafe { prog.run_mem(std::hint::black_box(&mut mem)) }.unwrap());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("{name} {best:.1}");
}
