//! One test per rule, accepted and rejected. Expected values are computed by
//! hand from the kernel's rules (see the comments), never copied from output.

mod common;

use bpf_callgraph::*;
use bpf_isa::{AluOp, CallTarget, Insn, LdImm64Src, Program, Reg, Size, Source, Width};
use common::{build, Op, Sub};
use cranelift_entity::EntityRef;

fn mov0() -> Insn {
    Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst: Reg::R0,
        src: Source::Imm(0),
    }
}
fn call(imm: i32) -> Insn {
    Insn::Call(CallTarget::Local(imm))
}
fn id(i: usize) -> SubprogId {
    SubprogId::new(i)
}
fn sub(depth: u32, ops: &[Op]) -> Sub {
    Sub {
        depth,
        ops: ops.to_vec(),
    }
}
fn graph(subs: &[Sub]) -> CallGraph {
    let (p, _) = build(subs, 1);
    CallGraph::build(&p).expect("valid structure")
}
const JIT: StackConfig = StackConfig {
    jit: true,
    priv_stack: PrivStackConfig {
        prog_type: ProgType::SocketFilter,
        tracing_kind: None,
        jit_supports_private_stack: true,
        priv_stack_requested: false,
    },
};
const INTERP: StackConfig = StackConfig {
    jit: false,
    priv_stack: JIT.priv_stack,
};

// ---------------------------------------------------------------- structure

#[test]
fn finds_entry_calls_and_callbacks_sorted() {
    // 0: call +3 -> 4 ; 1: r2 = func +4 -> 1+1+4 = 6 (2 slots) ; 3: exit
    // 4: r0 = 0 ; 5: exit ; 6: r0 = 0 ; 7: exit
    let p = Program::from_insns(vec![
        call(3),
        Insn::LdImm64 {
            dst: Reg::R2,
            src: LdImm64Src::Func(4),
        },
        Insn::Exit,
        mov0(),
        Insn::Exit,
        mov0(),
        Insn::Exit,
    ]);
    let cg = CallGraph::build(&p).unwrap();
    let s: Vec<(usize, usize, bool)> = cg
        .subprogs()
        .values()
        .map(|s| (s.start.index(), s.end.index(), s.is_callback))
        .collect();
    assert_eq!(s, vec![(0, 4, false), (4, 6, false), (6, 8, true)]);
    let sites: Vec<(usize, EdgeKind, usize, usize)> = cg
        .call_sites()
        .iter()
        .map(|c| (c.slot.index(), c.kind, c.caller.index(), c.callee.index()))
        .collect();
    assert_eq!(
        sites,
        vec![(0, EdgeKind::Call, 0, 1), (1, EdgeKind::CallbackRef, 0, 2)]
    );
    assert_eq!(cg.graph().node_count(), 3);
    assert_eq!(cg.graph().edge_count(), 2);
    assert_eq!(cg.subprog_at(5), Some(id(1)));
    assert_eq!(cg.subprog_at(7), Some(id(2)));
    assert_eq!(cg.subprog_at(8), None);
    // Post-order: callees before the entry.
    assert_eq!(cg.post_order().last(), Some(&id(0)));
}

#[test]
fn single_subprogram_program() {
    let cg = CallGraph::build(&Program::from_insns(vec![mov0(), Insn::Exit])).unwrap();
    assert_eq!(cg.len(), 1);
    assert!(cg.call_sites().is_empty());
}

#[test]
fn empty_program_rejected() {
    assert_eq!(
        CallGraph::build(&Program::from_insns(vec![])).unwrap_err(),
        BuildError::Empty
    );
}

#[test]
fn call_to_invalid_destination() {
    // slot 1: call -3 -> 1 + 1 - 3 = -1
    let p = Program::from_insns(vec![mov0(), call(-3), Insn::Exit]);
    let e = CallGraph::build(&p).unwrap_err();
    assert_eq!(e, BuildError::InvalidCallTarget { at: 1, target: -1 });
    assert_eq!(e.index(), 1);
    assert!(e.to_string().contains("call to invalid destination"));
    // slot 0: call +2 -> 3 == length
    let p = Program::from_insns(vec![call(2), mov0(), Insn::Exit]);
    assert_eq!(
        CallGraph::build(&p).unwrap_err(),
        BuildError::InvalidCallTarget { at: 0, target: 3 }
    );
}

#[test]
fn call_into_ld_imm64_rejected() {
    // slot 0: call +1 -> 2, the second half of the ld_imm64 at 1.
    let p = Program::from_insns(vec![
        call(1),
        Insn::LdImm64 {
            dst: Reg::R0,
            src: LdImm64Src::Imm(7),
        },
        Insn::Exit,
    ]);
    assert_eq!(
        CallGraph::build(&p).unwrap_err(),
        BuildError::CallIntoLdImm64 { at: 0, target: 2 }
    );
}

#[test]
fn too_many_subprograms() {
    // Three subprograms (0, 3, 5); the call at slot 1 adds the third.
    let p = Program::from_insns(vec![
        call(2),
        call(3),
        Insn::Exit,
        mov0(),
        Insn::Exit,
        mov0(),
        Insn::Exit,
    ]);
    let opts = BuildOptions {
        max_subprogs: Some(2),
        ..Default::default()
    };
    assert_eq!(
        CallGraph::build_with(&p, &opts).unwrap_err(),
        BuildError::TooManySubprogs { at: 1, limit: 2 }
    );
    let opts = BuildOptions {
        max_subprogs: Some(3),
        ..Default::default()
    };
    assert_eq!(CallGraph::build_with(&p, &opts).unwrap().len(), 3);
}

#[test]
fn jump_out_of_subprogram() {
    // main: 0 call +3 (-> 4), 1 ja +2 (-> 4, inside f), 2 r0=0, 3 exit ; f: 4,5
    let p = Program::from_insns(vec![
        call(3),
        Insn::Ja { off: 2 },
        mov0(),
        Insn::Exit,
        mov0(),
        Insn::Exit,
    ]);
    let e = CallGraph::build(&p).unwrap_err();
    assert_eq!(e, BuildError::JumpOutOfRange { from: 1, to: 4 });
    assert_eq!(e.to_string(), "jump out of range from insn 1 to 4");
    // A backwards conditional jump from f into main.
    let p = Program::from_insns(vec![
        call(1),
        Insn::Exit,
        Insn::Jmp {
            width: Width::W64,
            cond: JmpCondEq,
            dst: Reg::R1,
            src: Source::Imm(0),
            off: -3,
        },
        Insn::Exit,
    ]);
    assert_eq!(
        CallGraph::build(&p).unwrap_err(),
        BuildError::JumpOutOfRange { from: 2, to: 0 }
    );
    // Jumps inside their subprogram are fine, including gotol.
    let p = Program::from_insns(vec![Insn::JaLong { imm: 1 }, mov0(), Insn::Exit]);
    CallGraph::build(&p).unwrap();
}
#[allow(non_upper_case_globals)]
const JmpCondEq: bpf_isa::JmpCond = bpf_isa::JmpCond::Eq;

#[test]
fn last_insn_must_be_exit_or_jump() {
    // main ends at slot 1 with a call, falling through into f at 2.
    let p = Program::from_insns(vec![mov0(), call(0), mov0(), Insn::Exit]);
    let e = CallGraph::build(&p).unwrap_err();
    assert_eq!(
        e,
        BuildError::LastInsnNotExit {
            at: 1,
            subprog: id(0)
        }
    );
    assert!(e.to_string().contains("last insn is not an exit or jmp"));
    // The very last instruction of the program too.
    let p = Program::from_insns(vec![mov0()]);
    assert_eq!(
        CallGraph::build(&p).unwrap_err(),
        BuildError::LastInsnNotExit {
            at: 0,
            subprog: id(0)
        }
    );
    // Ending in `ja` back is allowed.
    let p = Program::from_insns(vec![call(1), Insn::Exit, mov0(), Insn::Ja { off: -2 }]);
    CallGraph::build(&p).unwrap();
}

#[test]
fn recursion_is_spelled_out() {
    // main -> f1 -> f2 -> f1
    let (p, starts) = build(
        &[
            sub(0, &[Op::Call(1)]),
            sub(0, &[Op::Call(2)]),
            sub(0, &[Op::Call(1)]),
        ],
        1,
    );
    let syms = [(starts[0], "main"), (starts[1], "f1"), (starts[2], "f2")];
    let e = CallGraph::build_with(
        &p,
        &BuildOptions {
            symbols: &syms,
            ..Default::default()
        },
    )
    .unwrap_err();
    match &e {
        BuildError::Recursion { at, cycle } => {
            assert_eq!(cycle.to_string(), "main -> f1 -> f2 -> f1");
            // The closing call is f2's call: f2 starts with r6 = r1, r1 = r6, call.
            assert_eq!(*at, starts[2] + 2);
        }
        other => panic!("expected recursion, got {other:?}"),
    }
    // Without symbols: subprog#N names.
    let e = CallGraph::build(&p).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("recursive call: subprog#0 -> subprog#1 -> subprog#2 -> subprog#1"),
        "{e}"
    );
    // Self-call of the entry: slot 1 call -2 -> 0.
    let p = Program::from_insns(vec![mov0(), call(-2), Insn::Exit]);
    let e = CallGraph::build(&p).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("recursive call: subprog#0 -> subprog#0"),
        "{e}"
    );
    // Recursion through a callback reference: main loops over cb, cb calls main? cb refs itself.
    let e = CallGraph::build(&build(&[sub(0, &[Op::Loop(1)]), sub(0, &[Op::Loop(1)])], 1).0)
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("subprog#0 -> subprog#1 -> subprog#1"),
        "{e}"
    );
}

#[test]
fn unreachable_subprogram() {
    // A region no call targets merges into the previous subprogram, so an
    // unreachable subprogram is one only dead code calls: here 2 and 3 call
    // each other and nobody else calls either.
    let (p, starts) = build(
        &[
            sub(0, &[Op::Call(1)]),
            sub(0, &[]),
            sub(0, &[Op::Call(3)]),
            sub(0, &[Op::Call(2)]),
        ],
        1,
    );
    let e = CallGraph::build(&p).unwrap_err();
    assert_eq!(e.index(), starts[2]);
    assert!(
        matches!(e, BuildError::Unreachable { subprog, .. } if subprog == id(2)),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("unreachable insn {}", starts[2])),
        "{e}"
    );
}

#[test]
fn tail_call_and_ld_abs_flags() {
    let p = Program::from_insns(vec![
        call(2),
        Insn::LdAbs {
            size: Size::W,
            imm: 0,
        },
        Insn::Exit,
        Insn::Call(CallTarget::Helper(12)),
        Insn::Exit,
    ]);
    let cg = CallGraph::build(&p).unwrap();
    let m = &cg.subprogs()[id(0)];
    let f = &cg.subprogs()[id(1)];
    assert!(m.has_ld_abs && !m.has_tail_call && m.tail_call_reachable);
    assert!(!f.has_ld_abs && f.has_tail_call && f.tail_call_reachable);
}

#[test]
fn tail_call_reachability() {
    // main -> a -> b(tc) ; main -> c ; c -> d ; main refs cb, cb -> e(tc)
    let subs = [
        sub(0, &[Op::Call(1), Op::Call(3), Op::Loop(5)]),
        sub(0, &[Op::Call(2)]),
        sub(0, &[Op::TailCall]),
        sub(0, &[Op::Call(4)]),
        sub(0, &[]),
        sub(0, &[Op::Call(6)]),
        sub(0, &[Op::TailCall]),
    ];
    let mut cg = graph(&subs);
    let tcr: Vec<bool> = cg
        .subprogs()
        .values()
        .map(|s| s.tail_call_reachable)
        .collect();
    assert_eq!(tcr, vec![true, true, true, false, false, true, true]);
    // Without the callback path, main is still reachable through a -> b.
    // Make the callback async: its tail call no longer reaches main through it, but a -> b still does.
    cg.set_async_callback(id(5), true);
    let tcr: Vec<bool> = cg
        .subprogs()
        .values()
        .map(|s| s.tail_call_reachable)
        .collect();
    assert_eq!(tcr, vec![true, true, true, false, false, true, true]);
    // Only the async path tail calls: main is not reachable.
    let mut cg = graph(&[sub(0, &[Op::Loop(1)]), sub(0, &[Op::TailCall])]);
    assert!(cg.subprogs()[id(0)].tail_call_reachable);
    cg.set_async_callback(id(1), true);
    assert!(!cg.subprogs()[id(0)].tail_call_reachable);
    assert!(cg.subprogs()[id(1)].tail_call_reachable);
}

// ---------------------------------------------------------------- stack

#[test]
fn rounding() {
    // JIT: round_up(d, 16); interpreter: round_up(max(d, 1), 32).
    assert_eq!(round_up_stack_depth(0, true), 0);
    assert_eq!(round_up_stack_depth(1, true), 16);
    assert_eq!(round_up_stack_depth(16, true), 16);
    assert_eq!(round_up_stack_depth(17, true), 32);
    assert_eq!(round_up_stack_depth(0, false), 32);
    assert_eq!(round_up_stack_depth(32, false), 32);
    assert_eq!(round_up_stack_depth(33, false), 64);
    // Overflow saturates instead of wrapping.
    assert_eq!(round_up_stack_depth(u32::MAX, true), u32::MAX);
}

#[test]
fn combined_stack_limit() {
    let cg = graph(&[sub(0, &[Op::Call(1)]), sub(0, &[])]);
    // 256 + 256 = 512: accepted.
    let r = cg.check_stack_slice(&[256, 256], &JIT).unwrap();
    assert_eq!(r.max_depth, 512);
    assert_eq!(r.max_frames, 1);
    // 256 + round16(264) = 256 + 272 = 528.
    let e = cg.check_stack_slice(&[256, 264], &JIT).unwrap_err();
    assert!(
        e.to_string()
            .contains("combined stack size of 2 calls is 528. Too large"),
        "{e}"
    );
    match e {
        StackError::CombinedTooLarge {
            calls,
            depth,
            chain,
            ..
        } => {
            assert_eq!((calls, depth), (2, 528));
            let sizes: Vec<u32> = chain.0.iter().map(|f| f.size).collect();
            assert_eq!(sizes, vec![256, 272]);
            assert_eq!(
                chain.to_string(),
                format!(
                    "subprog#0(256) -> subprog#1@{}(272)",
                    chain.0[1].call_site.unwrap()
                )
            );
        }
        other => panic!("{other:?}"),
    }
    // The entry alone over 512.
    let e = graph(&[sub(0, &[])])
        .check_stack_slice(&[520], &JIT)
        .unwrap_err();
    assert!(matches!(
        e,
        StackError::CombinedTooLarge {
            calls: 1,
            depth: 528,
            ..
        }
    ));
}

#[test]
fn interpreter_rounding_changes_verdict() {
    let cg = graph(&[sub(0, &[Op::Call(1)]), sub(0, &[])]);
    // JIT: 240 + 272 = 512 fits. Interpreter: 256 + 288 = 544 does not.
    cg.check_stack_slice(&[240, 264], &JIT).unwrap();
    let e = cg.check_stack_slice(&[240, 264], &INTERP).unwrap_err();
    assert!(
        matches!(e, StackError::CombinedTooLarge { depth: 544, .. }),
        "{e}"
    );
    // Empty frames count 32 each in the interpreter: 16 frames would be 512, but 8 frames max anyway.
    let r = cg.check_stack_slice(&[0, 0], &INTERP).unwrap();
    assert_eq!(r.max_depth, 64);
}

fn chain_of(n: usize) -> Vec<Sub> {
    (0..n)
        .map(|i| {
            if i + 1 < n {
                sub(0, &[Op::Call(i + 1)])
            } else {
                sub(0, &[])
            }
        })
        .collect()
}

#[test]
fn frame_limit() {
    // Entry + 7 callees = frames 0..7: accepted.
    let cg = graph(&chain_of(8));
    let r = cg.check_stack_slice(&[0; 8], &JIT).unwrap();
    assert_eq!(r.max_frames, 7);
    // One more call opens frame 8.
    let (p, starts) = build(&chain_of(9), 1);
    let cg = CallGraph::build(&p).unwrap();
    let e = cg.check_stack_slice(&[0; 9], &JIT).unwrap_err();
    match &e {
        StackError::TooDeep { at, frames, chain } => {
            assert_eq!(*frames, 8);
            // The call in subprogram 7: r6 = r1, r1 = r6, call.
            assert_eq!(*at, starts[7] + 2);
            assert_eq!(chain.0.len(), 9);
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .contains("the call stack of 8 frames is too deep"));
}

#[test]
fn global_functions_restart_frame_count() {
    let mut cg = graph(&chain_of(12));
    assert!(cg.check_stack_slice(&[0; 12], &JIT).is_err());
    // Subprogram 5 global: frames 0..4, then 0..6 from it.
    cg.set_global(id(5), true);
    cg.check_stack_slice(&[0; 12], &JIT).unwrap();
    // Subprogram 4 global instead: 0..3, then 4 -> 11 is 8 frames: 0..7, fine;
    // with 13 subprograms it would be frame 8.
    let mut cg = graph(&chain_of(13));
    cg.set_global(id(4), true);
    let e = cg.check_stack_slice(&[0; 13], &JIT).unwrap_err();
    assert!(matches!(e, StackError::TooDeep { frames: 8, .. }), "{e}");
    // Depth is not reset by a global function.
    let mut cg = graph(&chain_of(3));
    cg.set_global(id(1), true);
    assert!(cg.check_stack_slice(&[256, 128, 144], &JIT).is_err());
}

#[test]
fn tail_call_caller_frames_limit() {
    // main(256) -> f(tail call): caller frames 256 >= 256.
    let cg = graph(&[sub(0, &[Op::Call(1)]), sub(0, &[Op::TailCall])]);
    let e = cg.check_stack_slice(&[256, 0], &JIT).unwrap_err();
    assert!(
        e.to_string().contains(
            "tail_calls are not allowed when call stack of previous frames is 256 bytes. Too large"
        ),
        "{e}"
    );
    // 240 is fine (and the callee's own frame does not count).
    cg.check_stack_slice(&[240, 256], &JIT).unwrap();
    // Interpreter rounding: 225 -> 256.
    assert!(cg.check_stack_slice(&[225, 0], &INTERP).is_err());
    // The entry may tail call with any frame.
    let cg = graph(&[sub(0, &[Op::TailCall])]);
    cg.check_stack_slice(&[512], &JIT).unwrap();
    // Two caller frames: main(128) -> a(128) -> b(tail call).
    let cg = graph(&[
        sub(0, &[Op::Call(1)]),
        sub(0, &[Op::Call(2)]),
        sub(0, &[Op::TailCall]),
    ]);
    match cg.check_stack_slice(&[128, 128, 0], &JIT).unwrap_err() {
        StackError::TailCallStackTooLarge { depth, chain, .. } => {
            assert_eq!(depth, 256);
            let ids: Vec<usize> = chain.0.iter().map(|f| f.subprog.index()).collect();
            assert_eq!(ids, vec![0, 1, 2]);
        }
        other => panic!("{other:?}"),
    }
    // 128 + round16(112) = 240.
    cg.check_stack_slice(&[128, 112, 0], &JIT).unwrap();
}

#[test]
fn sync_callbacks_stack_on_the_referencing_frame() {
    // main(400) loops over cb(200): 400 + 208 = 608.
    let mut cg = graph(&[sub(0, &[Op::Loop(1)]), sub(0, &[])]);
    let e = cg.check_stack_slice(&[400, 200], &JIT).unwrap_err();
    assert!(
        matches!(
            e,
            StackError::CombinedTooLarge {
                calls: 2,
                depth: 608,
                ..
            }
        ),
        "{e}"
    );
    // As an async callback it is a root of its own: 400 and 208 separately.
    cg.set_async_callback(id(1), true);
    let r = cg.check_stack_slice(&[400, 200], &JIT).unwrap();
    assert_eq!(r.max_depth, 400);
}

#[test]
fn async_callback_roots_are_checked() {
    // main refs cb (async); cb(300) -> g(300): 304 + 304 = 608 on the async root.
    let mut cg = graph(&[sub(0, &[Op::Loop(1)]), sub(0, &[Op::Call(2)]), sub(0, &[])]);
    cg.set_async_callback(id(1), true);
    match cg.check_stack_slice(&[0, 300, 300], &JIT).unwrap_err() {
        StackError::CombinedTooLarge { depth, chain, .. } => {
            // round16(300) = 304, twice.
            assert_eq!(depth, 608);
            assert_eq!(chain.0[0].subprog, id(1));
            assert_eq!(chain.0[0].call_site, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn first_error_in_kernel_order() {
    // main calls a (too deep for tail call) then b (combined too large).
    // a comes first in slot order, so its error is reported.
    let cg = graph(&[
        sub(0, &[Op::Call(1), Op::Call(2)]),
        sub(0, &[Op::TailCall]),
        sub(0, &[]),
    ]);
    let e = cg.check_stack_slice(&[256, 0, 300], &JIT).unwrap_err();
    assert!(matches!(e, StackError::TailCallStackTooLarge { .. }), "{e}");
    // Swap the call order: b first.
    let cg = graph(&[
        sub(0, &[Op::Call(2), Op::Call(1)]),
        sub(0, &[Op::TailCall]),
        sub(0, &[]),
    ]);
    let e = cg.check_stack_slice(&[256, 0, 300], &JIT).unwrap_err();
    assert!(matches!(e, StackError::CombinedTooLarge { .. }), "{e}");
}

// ---------------------------------------------------------------- private stack

fn cfg(prog_type: ProgType, requested: bool) -> StackConfig {
    cfg_with(prog_type, None, requested)
}

fn cfg_with(
    prog_type: ProgType,
    tracing_kind: Option<TracingKind>,
    requested: bool,
) -> StackConfig {
    StackConfig {
        jit: true,
        priv_stack: PrivStackConfig {
            prog_type,
            tracing_kind,
            jit_supports_private_stack: true,
            priv_stack_requested: requested,
        },
    }
}

#[test]
fn private_stack_program_types() {
    use PrivStackMode::*;
    let m = |t, req| prog_priv_stack_mode(&cfg(t, req).priv_stack);
    let tr = |k, req| prog_priv_stack_mode(&cfg_with(ProgType::Tracing, Some(k), req).priv_stack);
    for t in [
        ProgType::Kprobe,
        ProgType::Tracepoint,
        ProgType::PerfEvent,
        ProgType::RawTracepoint,
    ] {
        assert_eq!(m(t, false), Adaptive, "{t:?}");
    }
    for k in [
        TracingKind::Fentry,
        TracingKind::Fexit,
        TracingKind::FmodRet,
        TracingKind::TpBtf,
    ] {
        assert_eq!(tr(k, false), Adaptive);
    }
    assert_eq!(tr(TracingKind::Iter, false), None);
    assert_eq!(tr(TracingKind::Iter, true), Adaptive);
    // Attach kind not known: only iterators escape the recursion check, so
    // an unknown kind is treated like fentry.
    assert_eq!(m(ProgType::Tracing, false), Adaptive);
    assert_eq!(m(ProgType::StructOps, false), None);
    assert_eq!(m(ProgType::StructOps, true), Adaptive);
    assert_eq!(m(ProgType::Lsm, false), None);
    for t in [
        ProgType::SocketFilter,
        ProgType::Xdp,
        ProgType::SchedCls,
        ProgType::Syscall,
        ProgType::Mem,
        // bpf_enable_priv_stack lists RAW_TRACEPOINT but not its writable variant.
        ProgType::RawTracepointWritable,
        ProgType::Unknown,
    ] {
        assert_eq!(m(t, true), None, "{t:?}");
    }
    let mut c = cfg(ProgType::Kprobe, false).priv_stack;
    c.jit_supports_private_stack = false;
    assert_eq!(prog_priv_stack_mode(&c), None);
}

#[test]
fn private_stack_per_subprogram() {
    // main(300) -> f(300) -> g(32): too large on the normal stack (304+304+32),
    // fine with main and f (>= 64) on the private stack; g (32) stays normal.
    let cg = graph(&[sub(0, &[Op::Call(1)]), sub(0, &[Op::Call(2)]), sub(0, &[])]);
    assert!(cg
        .check_stack_slice(&[300, 300, 32], &cfg(ProgType::SocketFilter, false))
        .is_err());
    let r = cg
        .check_stack_slice(&[300, 300, 32], &cfg(ProgType::Kprobe, false))
        .unwrap();
    assert_eq!(r.mode, PrivStackMode::Adaptive);
    assert!(r.uses_priv_stack);
    assert_eq!(
        (
            r.priv_stack[id(0)],
            r.priv_stack[id(1)],
            r.priv_stack[id(2)]
        ),
        (true, true, false)
    );
    assert_eq!(r.max_depth, 32);
    // 48 rounds to 48 < 64: not on the private stack.
    let r = cg
        .check_stack_slice(&[48, 64, 0], &cfg(ProgType::Kprobe, false))
        .unwrap();
    assert_eq!((r.priv_stack[id(0)], r.priv_stack[id(1)]), (false, true));
    // A private frame over 512 bytes.
    let e = cg
        .check_stack_slice(&[0, 520, 0], &cfg(ProgType::Kprobe, false))
        .unwrap_err();
    assert_eq!(
        e,
        StackError::FrameTooLarge {
            at: cg.subprogs()[id(1)].start.index(),
            subprog: 1,
            size: 528
        }
    );
    // Any tail call disables it.
    let cg = graph(&[sub(0, &[Op::Call(1), Op::TailCall]), sub(0, &[])]);
    let r = cg
        .check_stack_slice(&[128, 128], &cfg(ProgType::Kprobe, false))
        .unwrap();
    assert_eq!(r.mode, PrivStackMode::None);
    assert!(!r.uses_priv_stack);
    assert_eq!(r.max_depth, 256);
}

#[test]
fn async_reachable_frames_use_normal_stack() {
    // main(128) -> h(128); main refs async cb(128) -> h.
    let mut cg = graph(&[
        sub(0, &[Op::Call(2), Op::Loop(1)]),
        sub(0, &[Op::Call(2)]),
        sub(0, &[]),
    ]);
    cg.set_async_callback(id(1), true);
    let r = cg
        .check_stack_slice(&[128, 128, 128], &cfg(ProgType::Kprobe, false))
        .unwrap();
    assert_eq!(
        (
            r.priv_stack[id(0)],
            r.priv_stack[id(1)],
            r.priv_stack[id(2)]
        ),
        (true, false, false)
    );
    // Normal stack of main's chain: 0 + 128 (h); of the async root: 128 + 128.
    assert_eq!(r.max_depth, 256);
}

// ---------------------------------------------------------------- rendering

#[test]
fn tree_rendering() {
    let (p, starts) = build(
        &[
            sub(16, &[Op::Call(1), Op::Loop(2)]),
            sub(32, &[Op::TailCall]),
            sub(0, &[]),
        ],
        1,
    );
    let syms = [(starts[0], "main"), (starts[1], "f1"), (starts[2], "cb")];
    let cg = CallGraph::build_with(
        &p,
        &BuildOptions {
            symbols: &syms,
            ..Default::default()
        },
    )
    .unwrap();
    let r = cg.check_stack_slice(&[16, 32, 0], &JIT).unwrap();
    // Call sites: main: r6=r1 (0), st (1), r1=r6 (2), call (3), r1=1 (4), ld_imm64 func (5).
    let expected = format!(
        "main @0 stack=16 [tail_call_reachable]\n\
         ├─ call@3 f1 @{} stack=32 [tail_call, tail_call_reachable]\n\
         └─ ref@5 cb @{} stack=0 [callback]\n",
        starts[1], starts[2]
    );
    assert_eq!(render_tree(&cg, Some(&r)), expected);
    let plain = render_tree(&cg, None);
    assert!(
        plain.starts_with("main @0 [tail_call_reachable]\n"),
        "{plain}"
    );
}

#[test]
fn tree_prints_shared_subtrees_once() {
    // main -> a -> c ; main -> b -> c ; c -> d
    let cg = graph(&[
        sub(0, &[Op::Call(1), Op::Call(2)]),
        sub(0, &[Op::Call(3)]),
        sub(0, &[Op::Call(3)]),
        sub(0, &[Op::Call(4)]),
        sub(0, &[]),
    ]);
    let t = render_tree(&cg, None);
    assert_eq!(t.matches("subprog#3").count(), 2, "{t}");
    assert_eq!(t.matches("subprog#4").count(), 1, "{t}");
    assert_eq!(t.matches("(see above)").count(), 1, "{t}");
}

#[test]
fn dot_rendering() {
    let cg = graph(&[
        sub(0, &[Op::Call(1), Op::Loop(2)]),
        sub(0, &[Op::TailCall]),
        sub(0, &[]),
    ]);
    let r = cg.check_stack_slice(&[0, 0, 0], &JIT).unwrap();
    let d = to_dot(&cg, Some(&r));
    assert!(d.starts_with("digraph callgraph {"));
    assert!(d.trim_end().ends_with('}'));
    assert_eq!(d.matches(" -> ").count(), 2);
    // main (no stack store): r6 = r1 (0), r1 = r6 (1), call (2), r1 = 1 (3), ld_imm64 func (4).
    assert!(d.contains("n0 -> n1 [label=\"2\", style=solid]"), "{d}");
    assert!(d.contains("n0 -> n2 [label=\"4\", style=dashed]"), "{d}");
    // f1 tail calls (red), main reaches it (light), cb is an ellipse.
    let line = |n: &str| {
        d.lines()
            .find(|l| l.trim_start().starts_with(&format!("{n} [")))
            .unwrap()
            .to_string()
    };
    assert!(line("n1").contains("#f4a582"));
    assert!(line("n0").contains("#fddbc7"));
    assert!(line("n2").contains("shape=ellipse") && !line("n2").contains("fillcolor"));
}
