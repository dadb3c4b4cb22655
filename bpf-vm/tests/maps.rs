//! Maps (kernel flag and errno semantics), map helpers, tail calls, bpf_loop,
//! ring buffers, and atomics on shared map values across threads.

use std::sync::Arc;

mod common;
use bpf_vm::maps::{set_current_cpu, BPF_ANY, BPF_EXIST, BPF_NOEXIST};
use bpf_vm::{Interpreter, Map, MapError, MapType};
use common::{
    asm, def, self_call, BPF_LOOP_SUM, BPF_LOOP_SUM_RESULT, COUNTER, HASH_ERRNO, HASH_ERRNO_RESULT,
};

#[test]
fn hash_map_flags_and_errno() {
    let m = Map::new(def(MapType::Hash, 4, 8, 2)).expect("map");
    let k = |n: u32| n.to_le_bytes();
    assert_eq!(m.update(&k(1), &[1; 8], BPF_EXIST), Err(MapError::NoEntry));
    assert_eq!(m.update(&k(1), &[1; 8], BPF_NOEXIST), Ok(()));
    assert_eq!(m.update(&k(1), &[2; 8], BPF_NOEXIST), Err(MapError::Exists));
    assert_eq!(m.update(&k(1), &[3; 8], BPF_EXIST), Ok(()));
    assert_eq!(m.lookup(&k(1)), Ok(vec![3; 8]));
    assert_eq!(m.update(&k(2), &[4; 8], BPF_ANY), Ok(()));
    assert_eq!(m.update(&k(3), &[5; 8], BPF_ANY), Err(MapError::TooBig));
    assert_eq!(m.update(&k(3), &[5; 8], 4), Err(MapError::Invalid));
    assert_eq!(m.delete(&k(1)), Ok(()));
    assert_eq!(m.delete(&k(1)), Err(MapError::NoEntry));
    assert_eq!(m.lookup(&k(1)), Err(MapError::NoEntry));
    assert_eq!(MapError::Exists.to_errno(), -17);
    assert_eq!(MapError::NoEntry.to_errno(), -2);
    assert_eq!(MapError::TooBig.to_errno(), -7);
}

#[test]
fn array_map_semantics() {
    let m = Map::new(def(MapType::Array, 4, 4, 3)).expect("map");
    assert_eq!(m.lookup(&2u32.to_le_bytes()), Ok(vec![0; 4]));
    assert_eq!(
        m.update(&3u32.to_le_bytes(), &[1; 4], BPF_ANY),
        Err(MapError::TooBig)
    );
    assert_eq!(
        m.update(&0u32.to_le_bytes(), &[1; 4], BPF_NOEXIST),
        Err(MapError::Exists)
    );
    assert_eq!(m.delete(&0u32.to_le_bytes()), Err(MapError::Invalid));
}

#[test]
fn lru_evicts_least_recently_used() {
    let m = Map::new(def(MapType::LruHash, 4, 4, 2)).expect("map");
    let k = |n: u32| n.to_le_bytes();
    m.update(&k(1), &[1; 4], BPF_ANY).expect("1");
    m.update(&k(2), &[2; 4], BPF_ANY).expect("2");
    m.lookup(&k(1)).expect("touch 1");
    m.update(&k(3), &[3; 4], BPF_ANY).expect("3 evicts 2");
    assert_eq!(m.lookup(&k(2)), Err(MapError::NoEntry));
    assert_eq!(m.lookup(&k(1)), Ok(vec![1; 4]));
    assert_eq!(m.lookup(&k(3)), Ok(vec![3; 4]));
}

#[test]
fn program_lookup_and_atomic_add_across_threads() {
    let m = Map::new(def(MapType::Array, 4, 8, 1)).expect("map");
    let vm = Arc::new(
        Interpreter::builder(&asm(COUNTER))
            .map(1, m.clone())
            .build()
            .expect("build"),
    );
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let vm = vm.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    assert!(vm.run_mem(&mut []).expect("run") >= 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(
        m.lookup(&0u32.to_le_bytes()),
        Ok(2000u64.to_le_bytes().to_vec())
    );
}

/// The shared hash-map scenario (`common::HASH_ERRNO`): helpers return
/// negative errnos, and the map holds what the program stored.
#[test]
fn program_update_returns_negative_errno() {
    let m = Map::new(def(MapType::Hash, 4, 8, 4)).expect("map");
    let vm = Interpreter::builder(&asm(HASH_ERRNO))
        .map(1, m.clone())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(HASH_ERRNO_RESULT));
    assert_eq!(
        m.lookup(&7u32.to_le_bytes()),
        Ok(9u64.to_le_bytes().to_vec())
    );
}

#[test]
fn percpu_array_uses_this_threads_slot() {
    let m = Map::with_ncpus(def(MapType::PercpuArray, 4, 8, 1), 2).expect("map");
    let vm = Interpreter::builder(&asm(COUNTER))
        .map(1, m.clone())
        .build()
        .expect("build");
    set_current_cpu(1);
    assert_eq!(vm.run_mem(&mut []), Ok(1));
    assert_eq!(vm.run_mem(&mut []), Ok(2));
    set_current_cpu(0);
    assert_eq!(vm.run_mem(&mut []), Ok(1));
    let all = m.lookup(&0u32.to_le_bytes()).expect("lookup");
    let mut want = 1u64.to_le_bytes().to_vec();
    want.extend_from_slice(&2u64.to_le_bytes());
    assert_eq!(all, want);
}

#[test]
fn tail_calls_and_their_limit() {
    let pa = Map::new(def(MapType::ProgArray, 4, 4, 2)).expect("prog array");
    let counter = Map::new(def(MapType::Array, 4, 8, 1)).expect("counter");
    let target = Interpreter::new(&asm("r0 = 42\nexit")).expect("target");
    pa.as_prog_array()
        .expect("prog array")
        .set(0, Some(Arc::new(target)))
        .expect("set");
    let caller = asm("r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 1\nexit");
    let vm = Interpreter::builder(&caller)
        .map(1, pa.clone())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(42));
    // An empty slot falls through.
    let vm = Interpreter::builder(&asm("r2 = map[fd:1]\nr3 = 1\ncall 12\nr0 = 1\nexit"))
        .map(1, pa.clone())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(1));
    // A program that counts its executions and tail-calls itself (slot 1):
    // 1 run + 33 tail calls.
    let selfcall = self_call(1);
    let me = Arc::new(
        Interpreter::builder(&asm(&selfcall))
            .map(1, pa.clone())
            .map(2, counter.clone())
            .build()
            .expect("build"),
    );
    pa.as_prog_array()
        .expect("prog array")
        .set(1, Some(me.clone()))
        .expect("set");
    assert_eq!(me.run_mem(&mut []), Ok(7));
    assert_eq!(
        counter.lookup(&0u32.to_le_bytes()),
        Ok(34u64.to_le_bytes().to_vec())
    );
    // Break the cycle so the test does not leak.
    pa.as_prog_array().expect("pa").set(1, None).expect("clear");
}

#[test]
fn bpf_loop_runs_callback() {
    let vm = Interpreter::new(&asm(BPF_LOOP_SUM)).expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(BPF_LOOP_SUM_RESULT));
    // A callback returning 1 stops after the first iteration: bpf_loop returns 1.
    let src = "r1 = 10\nr2 = subprog[cb]\nr3 = 0\nr4 = 0\ncall 181\nexit\ncb: r0 = 1\nexit";
    let vm = Interpreter::new(&asm(src)).expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(1));
    // Flags must be zero: -EINVAL.
    let src = "r1 = 10\nr2 = subprog[cb]\nr3 = 0\nr4 = 1\ncall 181\nexit\ncb: r0 = 1\nexit";
    let vm = Interpreter::new(&asm(src)).expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(-22i64 as u64));
}

#[test]
fn ring_buffer_reserve_submit_discard_output() {
    let rb = Map::new(def(MapType::RingBuf, 0, 0, 4096)).expect("ringbuf");
    let src = "
        r1 = map[fd:1]
        r2 = 8
        r3 = 0
        call 131
        if r0 == 0 goto fail
        r1 = 0x1122
        *(u64 *)(r0 + 0) = r1
        r1 = r0
        r2 = 0
        call 132
        r1 = map[fd:1]
        r2 = 4
        r3 = 0
        call 131
        if r0 == 0 goto fail
        r1 = r0
        r2 = 0
        call 133
        *(u32 *)(r10 - 4) = 0x33
        r1 = map[fd:1]
        r2 = r10
        r2 += -4
        r3 = 4
        r4 = 0
        call 130
        exit
    fail:
        r0 = 99
        exit";
    let vm = Interpreter::builder(&asm(src))
        .map(1, rb.clone())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(0));
    let recs = rb.as_ringbuf().expect("ringbuf").drain();
    assert_eq!(
        recs,
        vec![
            0x1122u64.to_le_bytes().to_vec(),
            0x33u32.to_le_bytes().to_vec()
        ]
    );
    // Reserving more than fits fails with NULL.
    let big = "r1 = map[fd:1]\nr2 = 8192\nr3 = 0\ncall 131\nexit";
    let vm = Interpreter::builder(&asm(big))
        .map(1, rb.clone())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(0));
}

#[test]
fn map_value_out_of_bounds_is_a_fault() {
    let m = Map::new(def(MapType::Array, 4, 8, 1)).expect("map");
    let src = "
        *(u32 *)(r10 - 4) = 0
        r1 = map[fd:1]
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r0 = *(u64 *)(r0 + 8)
    out:
        exit";
    let vm = Interpreter::builder(&asm(src))
        .map(1, m)
        .build()
        .expect("build");
    let err = vm.run_mem(&mut []);
    assert!(
        matches!(
            err,
            Err(bpf_vm::VmError::MemoryFault {
                insn: 7,
                size: 8,
                write: false,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn tail_call_from_subprogram_returns_to_its_caller() {
    // The kernel's semantics: the target replaces the subprogram's frame,
    // so its exit returns to main (after `call pc sub`), r6 is restored from
    // main's saved copy, and the subprogram's `r0 = 1` never runs.
    let pa = Map::new(def(MapType::ProgArray, 4, 4, 1)).expect("prog array");
    let target = Interpreter::new(&asm("r6 = 99\nr0 = 32\nexit")).expect("target");
    pa.as_prog_array()
        .expect("prog array")
        .set(0, Some(Arc::new(target)))
        .expect("set");
    let main = asm("
        r6 = 10
        call pc sub
        r0 += r6
        exit
    sub:
        r2 = map[fd:1]
        r3 = 0
        call 12
        r0 = 1
        exit");
    let vm = Interpreter::builder(&main)
        .map(1, pa.clone())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(42));
    pa.as_prog_array().expect("pa").set(0, None).expect("clear");
}

#[test]
fn tail_calls_from_subprograms_stack_frames_past_eight() {
    // P counts its runs, stores 5 in its frame and calls f with a pointer
    // to it; f reads the caller's slot through the pointer (a checked access
    // into the caller's frame), keeps it in its own frame and tail-calls P.
    // Each of the 33 successful tail calls puts a new P in f's frame, one
    // deeper: 34 Ps and 35 frames at the deepest point, past the 8 frames
    // one program may stack. The last f's tail call fails: it returns
    // 5 + 1, and each P adds 1 on the way out: 6 + 34 = 40.
    let pa = Map::new(def(MapType::ProgArray, 4, 4, 1)).expect("prog array");
    let counter = Map::new(def(MapType::Array, 4, 8, 1)).expect("counter");
    let p = asm("
        *(u32 *)(r10 - 4) = 0
        r1 = map[fd:2]
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        *(u64 *)(r10 - 16) = 5
        r1 = r10
        r1 += -16
        call pc f
        r0 += 1
    out:
        exit
    f:
        r0 = *(u64 *)(r1 + 0)
        *(u64 *)(r10 - 8) = r0
        r2 = map[fd:1]
        r3 = 0
        call 12
        r0 = *(u64 *)(r10 - 8)
        r0 += 1
        exit");
    let me = Arc::new(
        Interpreter::builder(&p)
            .map(1, pa.clone())
            .map(2, counter.clone())
            .build()
            .expect("build"),
    );
    pa.as_prog_array()
        .expect("prog array")
        .set(0, Some(me.clone()))
        .expect("set");
    assert_eq!(me.run_mem(&mut []), Ok(40));
    assert_eq!(
        counter.lookup(&0u32.to_le_bytes()),
        Ok(34u64.to_le_bytes().to_vec())
    );
    pa.as_prog_array().expect("pa").set(0, None).expect("clear");
}

#[test]
fn tail_call_target_gets_its_own_eight_frames() {
    // A tail call from a subprogram (depth 1) into a program that nests
    // seven calls (eight frames of its own, nine in all) runs; one more
    // nested call exceeds the limit of the target's own chain.
    let nest = |extra: bool| {
        format!(
            "call pc f1\nexit\nf1: call pc f2\nexit\nf2: call pc f3\nexit\n\
             f3: call pc f4\nexit\nf4: call pc f5\nexit\nf5: call pc f6\nexit\n\
             f6: call pc f7\nexit\nf7: {}r0 = 77\nexit\n{}",
            if extra { "call pc f8\n" } else { "" },
            if extra { "f8: r0 = 1\nexit\n" } else { "" }
        )
    };
    let main = asm("
        call pc sub
        exit
    sub:
        r2 = map[fd:1]
        r3 = 0
        call 12
        r0 = 1
        exit");
    for (extra, want) in [
        (false, Ok(77)),
        // `call pc f8` is slot 14 of the target.
        (
            true,
            Err(bpf_vm::VmError::CallDepthExceeded { insn: 14, max: 8 }),
        ),
    ] {
        let pa = Map::new(def(MapType::ProgArray, 4, 4, 1)).expect("prog array");
        let target = Interpreter::new(&asm(&nest(extra))).expect("target");
        pa.as_prog_array()
            .expect("prog array")
            .set(0, Some(Arc::new(target)))
            .expect("set");
        let vm = Interpreter::builder(&main)
            .map(1, pa.clone())
            .build()
            .expect("build");
        assert_eq!(vm.run_mem(&mut []), want, "extra call: {extra}");
    }
}
