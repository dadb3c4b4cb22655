//! Private stacks on the x86-64 JIT (`LoadBuilder::private_stack`): the
//! recursion-through-tail-call scenario, nested runs from a helper, and the
//! guard words. Expected values are computed by hand (the formula in
//! `scenarios::tail_recursion_expected`) and cross-checked with the interpreter.

use std::cell::RefCell;
use std::sync::Arc;

use bpf_isa::assemble;
use bpf_vm::{Engine, HelperRegistry, LoadedProgram, Map, MapDef, MapType, VmError};

use bpf_isa::arbitrary::scenarios::{
    tail_recursion_expected, TAIL_RECURSION as SCENARIO, TAIL_RECURSION_LEVELS as LEVELS,
};

fn prog_array() -> Arc<Map> {
    Map::new(MapDef {
        map_type: MapType::ProgArray,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
    })
    .expect("prog array")
}

/// Loads the scenario on `engine` (private stack or not), installs it in
/// its own prog array and runs it: (r0, level counter).
fn run_scenario(engine: Engine, private: bool) -> Result<(u64, u64), VmError> {
    let prog = assemble(SCENARIO).expect("assembles");
    let pa = prog_array();
    let p = LoadedProgram::builder(&prog, engine)
        .map(1, pa.clone())
        .stack_depths(vec![64, 32])
        .private_stack(private)
        .build()?;
    let arr = pa.as_prog_array().expect("prog array");
    arr.set_program(0, Some(&p)).expect("set");
    let mut mem = [0u8; 8];
    // SAFETY: the program touches its stack and the 8-byte context only.
    let r = unsafe { p.run_mem(&mut mem) };
    arr.set_program(0, None).expect("clear");
    Ok((r?, u64::from_le_bytes(mem)))
}

#[test]
fn recursion_through_tail_calls_keeps_every_frame() {
    let want = tail_recursion_expected();
    let interp = run_scenario(Engine::Interp, false).expect("interp");
    assert_eq!(interp, (want, LEVELS), "interpreter");
    let native = run_scenario(Engine::X86, false).expect("x86 native stack");
    assert_eq!(native, (want, LEVELS), "x86, native stack");
    // Guards are checked by the run: an overflow would be an Err.
    let private = run_scenario(Engine::X86, true).expect("x86 private stack");
    assert_eq!(private, (want, LEVELS), "x86, private stack");
}

#[test]
fn private_stack_program_reports_its_chain() {
    let prog = assemble(SCENARIO).expect("assembles");
    let pa = prog_array();
    let p = LoadedProgram::builder(&prog, Engine::X86)
        .map(1, pa)
        .stack_depths(vec![64, 20])
        .private_stack(true)
        .build()
        .expect("builds");
    let code = p.jit().expect("compiled").code();
    assert!(code.private_stack());
    // Entry 64 + sub 20 rounded up to 32.
    assert_eq!(code.private_stack_bytes(), 96);
    // The tail call's r2/r3 are constant: the scenario runs through a
    // patchable direct site on the private stack too.
    assert_eq!(code.direct_tail_calls().len(), 1);
}

#[test]
fn callbacks_are_refused_on_a_private_stack() {
    let prog = assemble(
        "r1 = 3
         r2 = subprog[cb]
         r3 = 0
         r4 = 0
         call 181
         exit
       cb:
         r0 = 0
         exit",
    )
    .expect("assembles");
    let e = LoadedProgram::builder(&prog, Engine::X86)
        .private_stack(true)
        .build()
        .expect_err("refused");
    match e {
        VmError::Jit(j) => {
            // The callback starts at slot 7 (the ld_imm64 takes two).
            assert_eq!(j.index, Some(7), "{j}");
            assert!(
                matches!(j.kind, bpf_jit::JitErrorKind::PrivateStack(_)),
                "{j}"
            );
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn guard_above_the_region_catches_a_write_past_the_top() {
    // r10 + 0 is the first byte above the frame: the upper guard.
    let prog = assemble("*(u64 *)(r10 + 0) = 1\nr0 = 0\nexit").expect("assembles");
    let p = LoadedProgram::builder(&prog, Engine::X86)
        .stack_depths(vec![16])
        .private_stack(true)
        .build()
        .expect("builds");
    // SAFETY: the write lands in the run's private region's guard words.
    let e = unsafe { p.run_mem(&mut []) }.expect_err("overflow detected");
    assert!(
        matches!(e, VmError::PrivateStackOverflow { side: "above" }),
        "{e}"
    );
    // The next run re-arms the guards and is fine without the stray write.
    let ok = assemble("*(u64 *)(r10 - 8) = 1\nr0 = *(u64 *)(r10 - 8)\nexit").expect("asm");
    let p = LoadedProgram::builder(&ok, Engine::X86)
        .stack_depths(vec![16])
        .private_stack(true)
        .build()
        .expect("builds");
    // SAFETY: stack accesses only.
    assert_eq!(unsafe { p.run_mem(&mut []) }.expect("runs"), 1);
}

#[test]
fn native_and_private_programs_do_not_share_a_prog_array() {
    let prog = assemble(
        "r2 = map[fd:1]
         r3 = 0
         call 12
         r0 = 1
         exit",
    )
    .expect("assembles");
    let pa = prog_array();
    let native = LoadedProgram::builder(&prog, Engine::X86)
        .map(1, pa.clone())
        .build()
        .expect("native builds");
    let e = LoadedProgram::builder(&prog, Engine::X86)
        .map(1, pa.clone())
        .private_stack(true)
        .build()
        .expect_err("mixed kinds refused");
    assert!(matches!(e, VmError::Unsupported { .. }), "{e}");
    let arr = pa.as_prog_array().expect("prog array");
    arr.set_program(0, Some(&native)).expect("same kind");
    arr.set_program(0, None).expect("clear");
}

thread_local! {
    static INNER: RefCell<Option<LoadedProgram>> = const { RefCell::new(None) };
}

/// Helper 200: runs the thread's inner program on an 8-byte buffer holding
/// `r1` and returns its r0 (a helper that runs another loaded program).
fn nesting_helpers() -> HelperRegistry {
    let mut h = HelperRegistry::kernel();
    h.register(200, |_, a| {
        let inner = INNER.with(|i| i.borrow().clone());
        let Some(inner) = inner else {
            return Ok(u64::MAX);
        };
        let mut mem = a[0].to_le_bytes();
        // SAFETY: the inner program touches its stack and the buffer only.
        unsafe { inner.run_mem(&mut mem) }.map_err(|e| bpf_vm::HelperError::Other(e.to_string()))
    });
    h
}

#[test]
fn nested_runs_from_a_helper_get_their_own_regions() {
    // Inner: leaves a marker at the top and bottom of its 64-byte frame,
    // returns its r10 + the input; its frame address goes in the result's
    // low bits only through r10, so distinct regions mean distinct results.
    let inner_src = "
        r2 = *(u64 *)(r1 + 0)
        *(u64 *)(r10 - 8) = r2
        *(u64 *)(r10 - 64) = r2
        r0 = r10
        exit";
    // Outer: markers in its frame, calls helper 200 with 7, re-reads the
    // markers after it, and stores (helper result, its own r10, markers sum).
    let outer_src = "
        r6 = r1
        r7 = 1111
        *(u64 *)(r10 - 8) = r7
        *(u64 *)(r10 - 64) = r7
        r1 = 7
        call 200
        *(u64 *)(r6 + 0) = r0
        *(u64 *)(r6 + 8) = r10
        r1 = *(u64 *)(r10 - 8)
        r2 = *(u64 *)(r10 - 64)
        r1 += r2
        *(u64 *)(r6 + 16) = r1
        r0 = 0
        exit";
    let inner = LoadedProgram::builder(&assemble(inner_src).expect("asm"), Engine::X86)
        .stack_depths(vec![64])
        .private_stack(true)
        .build()
        .expect("inner");
    INNER.with(|i| *i.borrow_mut() = Some(inner));
    let outer = LoadedProgram::builder(&assemble(outer_src).expect("asm"), Engine::X86)
        .helpers(nesting_helpers())
        .stack_depths(vec![64])
        .private_stack(true)
        .build()
        .expect("outer");
    let mut runs = Vec::new();
    for _ in 0..3 {
        // Regions grow (and move) when another test's load raises the
        // process-wide chain size between runs: recorded with each run.
        let size = bpf_vm::engine::private_stack_region_bytes();
        let mut mem = [0u8; 24];
        // SAFETY: the outer program writes its 24-byte buffer and its stack.
        let r0 = unsafe { outer.run_mem(&mut mem) }.expect("runs, guards intact");
        assert_eq!(r0, 0);
        let w = |i: usize| u64::from_le_bytes(mem[8 * i..8 * i + 8].try_into().unwrap());
        let (inner_r10, outer_r10, markers) = (w(0), w(1), w(2));
        assert_eq!(markers, 2222, "outer frame intact after the nested run");
        assert_ne!(inner_r10, outer_r10, "nested run in its own region");
        assert_eq!(inner_r10 % 16, 0);
        assert_eq!(outer_r10 % 16, 0);
        // The frames do not overlap: 64 bytes each below their r10.
        assert!(inner_r10.abs_diff(outer_r10) >= 64);
        runs.push((size, inner_r10, outer_r10));
    }
    // Steady state: the same two regions every run while the region size
    // stays the same (no allocation per run).
    for w in runs.windows(2) {
        if w[0].0 == w[1].0 {
            assert_eq!(w[0], w[1], "{runs:x?}");
        } else {
            eprintln!(
                "region size changed between runs (another test loaded a larger chain): {runs:x?}"
            );
        }
    }
    let same_size = runs.windows(2).filter(|w| w[0].0 == w[1].0).count();
    assert!(
        same_size >= 1,
        "the region size changed before every run: {runs:x?}"
    );
    INNER.with(|i| *i.borrow_mut() = None);
}
