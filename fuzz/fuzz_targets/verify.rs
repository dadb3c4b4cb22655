//! Bytes -> decode -> bpf-verifier. The verifier must never panic; every
//! program it accepts for the `mem` type must run in bpf-vm's checked mode
//! on a small buffer without a memory violation (the oracle of
//! bpf-verifier's tests/soundness.rs), and its translated form (dead code
//! removed) must return the same value and leave the same memory (for
//! unprivileged programs without helper calls, whose results do not depend
//! on addresses or randomness).
//!
//! The first input byte picks the program type (mem, socket filter, XDP,
//! kprobe) and the privilege; the rest is bytecode.
#![no_main]

use bpf_isa::Program;
use bpf_verifier::{verify, MapInfo, Options, ProgKind};
use bpf_vm::{Interpreter, VmError};
use libfuzzer_sys::fuzz_target;

const MEM: u32 = 64;

fn maps() -> Vec<MapInfo> {
    vec![
        MapInfo {
            name: "hash".into(),
            map_type: 1,
            key_size: 4,
            value_size: 8,
            max_entries: 16,
            flags: 0,
            fd: None,
        },
        MapInfo {
            name: "array".into(),
            map_type: 2,
            key_size: 4,
            value_size: 16,
            max_entries: 1,
            flags: 0,
            fd: None,
        },
    ]
}

fn run(p: &Program, mem: &mut [u8]) -> Result<u64, VmError> {
    let vm = Interpreter::builder(p)
        .instruction_limit(Some(2_000_000))
        .build()?;
    vm.run_mem(mem)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, code)) = data.split_first() else {
        return;
    };
    let Ok(prog) = Program::decode(code) else {
        return;
    };
    let kind = match sel & 3 {
        0 => ProgKind::Mem { size: MEM },
        1 => ProgKind::SocketFilter,
        2 => ProgKind::Xdp,
        _ => ProgKind::Kprobe,
    };
    let mut opts = Options::new(kind);
    opts.privileged = sel & 4 == 0;
    opts.log_level = u32::from((sel >> 3) & 3);
    // Keep runs short: the verdict matters, not long explorations.
    opts.insn_limit = 200_000;
    let is_mem = matches!(kind, ProgKind::Mem { .. });
    if !is_mem {
        opts = opts.with_maps(maps());
    }
    let Ok(v) = verify(&prog, &opts) else {
        return;
    };
    let x = v.xlated(kind);
    if !is_mem {
        return;
    }
    let x = x.expect("an accepted program must translate");
    // Helpers such as bpf_get_prandom_u32 and bpf_ktime_get_ns make results
    // differ between runs: compare the translation only without helper calls.
    // Privileged programs may return or store addresses, which differ
    // between runs: compare only unprivileged ones (no pointer leaks).
    let deterministic = !opts.privileged
        && !prog
            .insns()
            .iter()
            .any(|i| matches!(i, bpf_isa::Insn::Call(bpf_isa::CallTarget::Helper(_))));
    for fill in [0u8, 0xff, 0x5a] {
        let mut mem = [fill; MEM as usize];
        let mut mem2 = mem;
        let a = run(&prog, &mut mem);
        if let Err(e @ (VmError::MemoryFault { .. } | VmError::MisalignedAtomic { .. })) = &a {
            panic!("accepted program faults: {e}");
        }
        let b = run(&x.prog, &mut mem2);
        if let (true, Ok(a), Ok(b)) = (deterministic, &a, &b) {
            assert_eq!(a, b, "translated program differs");
            assert_eq!(mem, mem2, "translated program wrote differently");
        }
    }
});
