//! `bpfkit callgraph`: trees, DOT output and stack-rule rejections.
//!
//! Expected values are worked out by hand from `examples/callbacks.c` and
//! from the assembly written below; frame sizes are rounded to 16 bytes as
//! the kernel does when the program is JIT-compiled.

mod common;
use common::*;

#[test]
fn callbacks_tree() {
    let o = bpfkit([
        "callgraph".as_ref(),
        examples_dir().join("callbacks.o").as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // looper keeps `acc` at r10-8: an 8-byte frame, 16 once rounded.
    assert!(out.contains("looper @0 stack=16"), "{out}");
    // Two bpf_loop callbacks referenced by ld_imm64 at slots 5 and 11, one call at 17.
    assert!(out.contains("ref@5 step @20 stack=0 [callback]"), "{out}");
    assert!(out.contains("ref@11 step2 @27 stack=0 [callback]"), "{out}");
    assert!(out.contains("call@17 pad @34 stack=0"), "{out}");
}

#[test]
fn dot_marks_tail_calls() {
    let o = bpfkit([
        "callgraph".as_ref(),
        examples_dir().join("tail_calls.o").as_os_str(),
        "--dot".as_ref(),
        "--prog".as_ref(),
        "dispatch".as_ref(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("digraph callgraph {"), "{out}");
    assert!(out.contains("tail_call_reachable"), "{out}");
    assert!(out.contains("fillcolor"), "{out}");
}

#[test]
fn too_deep_chain_is_reported_with_the_chain() {
    // main uses 256 bytes and calls f, which uses 264: 256 + 272 > 512.
    let src = "*(u64 *)(r10 - 256) = r1\n\
               call pc+2\n\
               r0 = 0\n\
               exit\n\
               *(u64 *)(r10 - 264) = r1\n\
               r0 = 0\n\
               exit\n";
    let prog = bpf_isa::assemble(src).expect("assembles");
    let path = scratch("deep.bin");
    std::fs::write(&path, prog.to_bytes()).expect("write");
    let o = bpfkit(["callgraph".as_ref(), path.as_os_str()]);
    assert_fails_with(&o, "stack rules reject 1 program");
    let out = stdout(&o);
    assert!(out.contains("REJECTED"), "{out}");
    assert!(out.contains("is 528. Too large"), "{out}");
    assert!(out.contains("subprog#0(256) -> subprog#1@1(272)"), "{out}");
}

#[test]
fn recursion_is_an_error() {
    let prog = bpf_isa::assemble("call pc-1\nexit\n").expect("assembles");
    let path = scratch("recursive.bin");
    std::fs::write(&path, prog.to_bytes()).expect("write");
    let o = bpfkit(["callgraph".as_ref(), path.as_os_str()]);
    assert_fails_with(&o, "recursive call");
}
