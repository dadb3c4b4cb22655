//! Differential test with bpf-to-bpf calls, tail calls and maps: the x86-64
//! JIT (through `bpf_vm::LoadedProgram` with `Engine::X86`) against the
//! interpreter on 10,000 generated program sets, comparing `r0` and the
//! contents of an array map every program adds its results to.
//!
//! The cases come from the shared generator `bpf_isa::arbitrary::calls`
//! (also used by the AArch64 backend's `differential_calls` test): per
//! case three programs sharing a counter array and a prog array (three
//! slots; 0 and 1 filled here, 2 left empty) — main with a subprogram that
//! tail-calls a random index, two leaves, leaf 0 possibly tail-calling
//! itself up to the 33-tail-call limit. The run is reproducible;
//! `BPF_DIFF_CASES` overrides the count (e.g. for the longer run reported
//! in the note).

use std::sync::Arc;

use bpf_isa::arbitrary::calls::{
    CallCases, COUNTERS_FD, COUNTERS_VALUE_SIZE, DEFAULT_SEED, PROG_ARRAY_ENTRIES, PROG_ARRAY_FD,
};
use bpf_isa::Program;
use bpf_vm::{Engine, LoadedProgram, Map, MapDef, MapType};

fn run(progs: &[Program; 3], engine: Engine) -> Result<(u64, Vec<u8>), String> {
    run_with(progs, engine, false)
}

/// As [`run`]; with `private`, every program's frames live on a private
/// stack (`LoadBuilder::private_stack`; the run checks the guard words).
fn run_with(progs: &[Program; 3], engine: Engine, private: bool) -> Result<(u64, Vec<u8>), String> {
    let counters = Map::new(MapDef {
        map_type: MapType::Array,
        key_size: 4,
        value_size: COUNTERS_VALUE_SIZE,
        max_entries: 1,
    })
    .map_err(|e| e.to_string())?;
    let pa = Map::new(MapDef {
        map_type: MapType::ProgArray,
        key_size: 4,
        value_size: 4,
        max_entries: PROG_ARRAY_ENTRIES,
    })
    .map_err(|e| e.to_string())?;
    let load = |p: &Program| {
        LoadedProgram::builder(p, engine)
            .map(PROG_ARRAY_FD, pa.clone())
            .map(COUNTERS_FD, counters.clone())
            .private_stack(private)
            .build()
            .map_err(|e| format!("{engine}: {e}"))
    };
    let main = load(&progs[0])?;
    let leaves = [load(&progs[1])?, load(&progs[2])?];
    let table = pa.as_prog_array().ok_or("not a prog array")?;
    for (i, l) in leaves.iter().enumerate() {
        table
            .set_program(i as u32, Some(l))
            .map_err(|e| e.to_string())?;
    }
    let mut mem = [0u8; 16];
    // SAFETY: the generated programs only touch their stack and the map
    // value bpf_map_lookup_elem returns (after a null check).
    let r0 = unsafe { main.run_mem(&mut mem) }.map_err(|e| format!("{engine}: {e}"))?;
    for i in 0..3 {
        let _ = table.set_program(i, None);
    }
    let _: &Arc<Map> = &counters;
    Ok((
        r0,
        counters
            .lookup(&0u32.to_le_bytes())
            .map_err(|e| e.to_string())?,
    ))
}

#[test]
fn jit_matches_interpreter_with_calls_tail_calls_and_maps() {
    let cases: u64 = std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut gen = CallCases::new(DEFAULT_SEED);
    let (mut chains, mut mismatches) = (0u64, Vec::new());
    let start = std::time::Instant::now();
    for case in 0..cases {
        let case_progs = gen.next_case();
        let again = case_progs.chains;
        let [leaf0, leaf1] = case_progs.leaves;
        let progs = [case_progs.main, leaf0, leaf1];
        let want = run(&progs, Engine::Interp);
        let got = run(&progs, Engine::X86);
        if let Ok((_, m)) = &want {
            // Word 2 counts slot 0's runs: 33 tail calls when it chains.
            chains += u64::from(m.get(16..24) != Some(&[0u8; 8][..]) && again);
        }
        if want != got {
            mismatches.push(format!(
                "case {case}: interp {want:?}, x86 {got:?}\nmain:\n{}\nleaf0:\n{}",
                bpf_isa::fmt_program(&progs[0], &Default::default()),
                bpf_isa::fmt_program(&progs[1], &Default::default()),
            ));
            if mismatches.len() >= 3 {
                break;
            }
        }
    }
    eprintln!(
        "differential_calls: {cases} cases, {chains} with a 33-deep tail-call chain, {} mismatches, {:.1} s",
        mismatches.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    assert!(chains > 0, "no case exercised a tail-call chain");
}

/// The same generated cases with private stacks forced on for the JIT
/// (2,000 by default; `BPF_DIFF_CASES` overrides): same `r0` and map
/// contents as the interpreter, and no guard word overwritten.
#[test]
fn jit_on_private_stacks_matches_interpreter() {
    let cases: u64 = std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let mut gen = CallCases::new(DEFAULT_SEED);
    let (mut chains, mut mismatches) = (0u64, Vec::new());
    for case in 0..cases {
        let case_progs = gen.next_case();
        let again = case_progs.chains;
        let [leaf0, leaf1] = case_progs.leaves;
        let progs = [case_progs.main, leaf0, leaf1];
        let want = run(&progs, Engine::Interp);
        let got = run_with(&progs, Engine::X86, true);
        if let Ok((_, m)) = &want {
            chains += u64::from(m.get(16..24) != Some(&[0u8; 8][..]) && again);
        }
        if want != got {
            mismatches.push(format!(
                "case {case}: interp {want:?}, x86 private stack {got:?}\nmain:\n{}",
                bpf_isa::fmt_program(&progs[0], &Default::default()),
            ));
            if mismatches.len() >= 3 {
                break;
            }
        }
    }
    eprintln!(
        "differential_calls (private stack): {cases} cases, {chains} with a 33-deep tail-call chain, {} mismatches",
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    assert!(chains > 0, "no case exercised a tail-call chain");
}
