//! Direct tail calls through bpf-vm's program arrays (x86-64 JIT): sites
//! are registered on load, patched by `ProgArray::set_program`, and
//! programs dropped by their owner while runs are in flight are only freed
//! through the retire list, so concurrent runs never jump into freed code.

#![cfg(target_arch = "x86_64")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bpf_isa::assemble;
use bpf_vm::{Engine, LoadedProgram, Map};

mod common;
use common::prog_array;

fn load(src: &str, pa: &Arc<Map>) -> LoadedProgram {
    LoadedProgram::builder(&assemble(src).expect("assembles"), Engine::X86)
        .map(1, pa.clone())
        .build()
        .expect("loads")
}

fn run(p: &LoadedProgram) -> u64 {
    // SAFETY: the programs touch no memory.
    unsafe { p.run_mem(&mut []) }.expect("runs")
}

const CALLER: &str = "r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 1\nexit";

#[test]
fn set_program_patches_registered_sites() {
    let pa = prog_array(2);
    let caller = load(CALLER, &pa);
    let jit = caller.jit().expect("compiled");
    assert_eq!(jit.code().direct_tail_calls().len(), 1);
    let arr = pa.as_prog_array().expect("prog array");
    assert_eq!(arr.jit_table().registered_sites(), 1);
    assert_eq!(run(&caller), 1, "empty slot");
    let t42 = load("r0 = 42\nexit", &pa);
    arr.set_program(0, Some(&t42)).unwrap();
    assert_eq!(run(&caller), 42);
    let t43 = load("r0 = 43\nexit", &pa);
    arr.set_program(0, Some(&t43)).unwrap();
    assert_eq!(run(&caller), 43);
    arr.set_program(0, None).unwrap();
    assert_eq!(run(&caller), 1);
    drop(caller);
    assert_eq!(arr.jit_table().registered_sites(), 0);
}

#[test]
fn owner_dropped_targets_under_concurrent_runs() {
    const RUNNERS: usize = 2;
    const ROUNDS: u64 = 300;
    let pa = prog_array(1);
    let caller = Arc::new(load(CALLER, &pa));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let runners: Vec<_> = (0..RUNNERS)
        .map(|_| {
            let (caller, stop, done) = (caller.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = [0u64; 2];
                while !stop.load(Ordering::Relaxed) {
                    match run(&caller) {
                        1 => seen[0] += 1,
                        5..=7 => seen[1] += 1,
                        other => panic!("result {other}"),
                    }
                    if done.fetch_add(1, Ordering::Relaxed) % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
                seen
            })
        })
        .collect();
    let arr = pa.as_prog_array().expect("prog array");
    let wait_runs = || {
        let before = done.load(Ordering::Relaxed);
        while done.load(Ordering::Relaxed) < before + RUNNERS as u64 + 1 {
            std::thread::yield_now();
        }
    };
    for k in 0..ROUNDS {
        // A fresh program each round, owned only by the slot once set:
        // replacing or clearing it retires it.
        let t = load(&format!("r0 = {}\nexit", 5 + k % 3), &pa);
        arr.set_program(0, Some(&t)).unwrap();
        drop(t);
        wait_runs();
        if k % 2 == 1 {
            arr.set_program(0, None).unwrap();
            wait_runs();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = [0u64; 2];
    for r in runners {
        let s = r.join().expect("runner did not crash");
        total[0] += s[0];
        total[1] += s[1];
    }
    assert!(total[0] > 0 && total[1] > 0, "{total:?}");
    arr.set_program(0, None).unwrap();
    eprintln!(
        "bpf-vm direct tail calls: {ROUNDS} rounds; fall-through x{}, taken x{}",
        total[0], total[1]
    );
}
