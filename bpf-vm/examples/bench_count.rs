//! Runs one bench program (`/work/shared/bench/build/NAME.v3.o`, section
//! `mem`, on `packet.bin`) `N` times on one engine, for instruction counting
//! with `valgrind --tool=callgrind` (compare the counts for two values of `N`).
//!
//! `cargo run --release -p bpf-vm --example bench_count -- NAME checked|unchecked|rbpf N`

use std::path::PathBuf;

use bpf_vm::Interpreter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(engine), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: bench_count NAME checked|unchecked|rbpf N".into());
    };
    let n: u32 = n.parse()?;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench");
    let mut packet = std::fs::read(dir.join("packet.bin"))?;
    let bytes = std::fs::read(dir.join(format!("build/{name}.v3.o")))?;
    let obj = bpf_object::Object::parse(&bytes)?;
    let prog = obj
        .programs_in_section("mem")
        .next()
        .ok_or("no program in section mem")?;
    let mut last = 0;
    match engine.as_str() {
        "rbpf" => {
            let mut code = vec![0xb7, 0x02, 0, 0];
            code.extend_from_slice(&(packet.len() as u32).to_le_bytes());
            code.extend_from_slice(&prog.insns.to_bytes());
            let vm = rbpf::EbpfVmRaw::new(Some(&code))?;
            for _ in 0..n {
                last = vm.execute_program(std::hint::black_box(&mut packet))?;
            }
        }
        "checked" | "unchecked" => {
            let vm = Interpreter::new(&prog.insns)?;
            last = vm.run_mem(&mut packet)?;
            for _ in 0..n {
                last = if engine == "checked" {
                    vm.run_mem(std::hint::black_box(&mut packet))?
                } else {
                    // SAFETY: the program just ran to completion in checked mode on this input.
                    unsafe { vm.run_mem_unchecked(std::hint::black_box(&mut packet))? }
                };
            }
        }
        "count" => {
            // Executed instructions per run: the smallest budget that suffices.
            let (mut lo, mut hi) = (0u64, 1u64 << 32);
            while lo < hi {
                let mid = (lo + hi) / 2;
                let vm = Interpreter::builder(&prog.insns)
                    .instruction_limit(Some(mid))
                    .build()?;
                if vm.run_mem(&mut packet).is_ok() {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            last = lo;
        }
        e => return Err(format!("unknown engine {e}").into()),
    }
    println!("{name} {engine} x{n}: r0 = {last:#x}");
    Ok(())
}
