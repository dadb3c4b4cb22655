//! The combined stack limit with the kernel's private stacks
//! (`bpf_enable_priv_stack`, `check_max_stack_depth`), hand-computed:
//! frames of at least 64 bytes of kprobe / tracepoint / raw tracepoint
//! programs without tail calls do not count towards the 512 bytes of a
//! chain when the JIT supports private stacks. The live kernel's verdicts
//! on the same shapes are in the corpus (`privstack_*`, verifier_kernel.rs).

use bpf_isa::assemble;
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::verify_and_remove_fastcall_spills;
use bpf_verifier::{verify, Options, ProgKind};

/// main: 256 bytes, callee: 320 bytes; 576 > 512 when both count.
const CHAIN: &str = "r1 = 0\n*(u64 *)(r10 - 256) = r1\ncall pc+2\nr0 = 0\nexit\nr1 = 0\n*(u64 *)(r10 - 320) = r1\nr0 = 0\nexit";

#[test]
fn tracing_types_use_private_stacks() {
    let p = assemble(CHAIN).expect("assembles");
    for k in [
        ProgKind::Kprobe,
        ProgKind::Tracepoint,
        ProgKind::RawTracepoint,
    ] {
        let vp = verify(&p, &Options::new(k)).unwrap_or_else(|e| panic!("{k:?}: {e}"));
        assert_eq!(vp.stack_depth, vec![256, 320]);
        // Through the nocsr entry point too (its own stack check).
        verify_and_remove_fastcall_spills(&p, &Options::new(k), &FastcallTable::linux())
            .unwrap_or_else(|e| panic!("{k:?} nocsr: {e}"));
    }
}

#[test]
fn other_types_and_no_jit_support_count_every_frame() {
    let p = assemble(CHAIN).expect("assembles");
    let mut no_jit = Options::new(ProgKind::RawTracepoint);
    no_jit.jit_private_stack = false;
    for o in [
        Options::new(ProgKind::SocketFilter),
        Options::new(ProgKind::SchedCls),
        Options::new(ProgKind::Xdp),
        Options::new(ProgKind::Mem { size: 8 }),
        no_jit,
    ] {
        let e = verify(&p, &o).expect_err("576 bytes");
        assert!(
            e.message.contains("combined stack size of 2 calls is 576"),
            "{:?}: {}",
            o.prog,
            e.message
        );
    }
}

#[test]
fn a_tail_call_disables_private_stacks() {
    // The same chain with a tail call in main: every frame counts again.
    let src = "r6 = r1\nr1 = 0\n*(u64 *)(r10 - 256) = r1\ncall pc+7\nr1 = r6\nr2 = map[idx:0]\nr3 = 0\ncall 12\nr0 = 0\nexit\nr1 = 0\n*(u64 *)(r10 - 320) = r1\nr0 = 0\nexit";
    let p = assemble(src).expect("assembles");
    let maps = vec![bpf_verifier::MapInfo {
        name: "progs".into(),
        map_type: bpf_verifier::platform::map_type::PROG_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 4,
        flags: 0,
        fd: None,
    }];
    let o = Options::new(ProgKind::RawTracepoint).with_maps(maps);
    let e = verify(&p, &o).expect_err("576 bytes");
    assert!(
        e.message.contains("combined stack size of 2 calls is 576"),
        "{}",
        e.message
    );
}

#[test]
fn small_frames_still_count() {
    // main 48 (normal stack) + callee 480 (private): accepted for raw_tp;
    // three frames 256 (private) + 48 (normal) + 464 (private) as well.
    let small = "r1 = 0\n*(u64 *)(r10 - 48) = r1\ncall pc+2\nr0 = 0\nexit\nr1 = 0\n*(u64 *)(r10 - 480) = r1\nr0 = 0\nexit";
    let p = assemble(small).expect("assembles");
    verify(&p, &Options::new(ProgKind::RawTracepoint)).expect("48 + private 480");
    let e = verify(&p, &Options::new(ProgKind::SocketFilter)).expect_err("528");
    assert!(
        e.message.contains("combined stack size of 2 calls is 528"),
        "{}",
        e.message
    );
}
