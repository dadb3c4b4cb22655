//! Runs every bpf_conformance test in `../shared/conformance/*.data`
//! in-process (r1 = the `-- mem` buffer, r2 = its length) and compares r0
//! with `-- result`: through the optimizing x86-64 JIT, and through the
//! one-pass baseline tier (`Baseline::compile`, with its fallback). Tests
//! whose features a JIT does not support are listed with its error and
//! fail the test (none today); everything else must match.

use std::path::Path;

use bpf_isa::asm::conformance::{load_dir, DirCase};

use bpf_jit::{HelperTable, JitErrorKind, JitOptions, JitProgram};
use bpf_jit_x86::Baseline;

/// Helper 5 of the conformance suite's setting: returns its first argument.
unsafe extern "C" fn helper5(a: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    a
}

/// What a JIT made of one case.
enum Compiled {
    Code(JitProgram),
    /// A feature the JIT reports unsupported (listed, and fails the test).
    Skip(String),
    Fail(String),
}

/// Tally of one pass over the suite.
struct Tally {
    cases: usize,
    passed: usize,
    skipped: Vec<String>,
    failed: Vec<String>,
}

/// Loads the suite (the test fails when the folder is absent), compiles
/// each case with a result through `compile` and runs it on its memory.
fn run_suite(mut compile: impl FnMut(&DirCase, &JitOptions<'_>) -> Compiled) -> Tally {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    let Ok(cases) = load_dir(&dir) else {
        panic!("conformance data not found at {}", dir.display());
    };
    let mut helpers = HelperTable::new();
    helpers.insert(5, helper5);
    let opts = JitOptions::new(&helpers);
    let mut t = Tally {
        cases: cases.len(),
        passed: 0,
        skipped: Vec::new(),
        failed: Vec::new(),
    };
    for case in &cases {
        let case = match case {
            Ok(c) => c,
            Err(e) => {
                t.failed.push(e.clone());
                continue;
            }
        };
        let name = &case.name;
        let Some(expected) = case.result else {
            t.skipped.push(format!("{name}: no -- result"));
            continue;
        };
        let jit = match compile(case, &opts) {
            Compiled::Code(j) => j,
            Compiled::Skip(why) => {
                t.skipped.push(format!("{name}: {why}"));
                continue;
            }
            Compiled::Fail(why) => {
                t.failed.push(format!("{name}: {why}"));
                continue;
            }
        };
        let mut mem = case.mem.clone();
        // SAFETY: the conformance programs only touch their memory buffer and stack.
        let got = unsafe { jit.call_mem(&mut mem) };
        if got == expected {
            t.passed += 1;
        } else {
            t.failed
                .push(format!("{name}: r0 = {got:#x}, expected {expected:#x}"));
        }
    }
    t
}

impl Tally {
    /// Prints the tally and asserts: no failure, nothing skipped (a file
    /// that stops running must fail here, not scroll by), and most of the
    /// suite ran.
    fn check(&self, what: &str) {
        eprintln!(
            "conformance through {what}: {} passed, {} skipped, {} failed of {}",
            self.passed,
            self.skipped.len(),
            self.failed.len(),
            self.cases
        );
        for s in &self.skipped {
            eprintln!("  skipped {s}");
        }
        assert!(
            self.failed.is_empty(),
            "failures:\n{}",
            self.failed.join("\n")
        );
        // Every file of the suite runs on this backend today.
        assert!(
            self.skipped.is_empty(),
            "files no longer run on this backend:\n{}",
            self.skipped.join("\n")
        );
        assert!(self.passed > 200, "too few conformance tests ran");
    }
}

#[test]
fn conformance_suite() {
    run_suite(|case, opts| match bpf_jit_x86::compile(&case.prog, opts) {
        Ok(j) => Compiled::Code(j),
        Err(e) if matches!(e.kind, JitErrorKind::Unsupported(_)) => Compiled::Skip(e.to_string()),
        Err(e) => Compiled::Fail(format!("compile error {e}")),
    })
    .check("the optimizing JIT");
}

/// The same suite through `Baseline::compile` (its one-pass path, or its
/// fallback to the optimizing compiler); most files take the one-pass path.
#[test]
fn conformance_suite_through_baseline() {
    let mut jit = Baseline::new();
    let mut one_pass = 0usize;
    let tally = run_suite(|case, opts| {
        let code = case.prog.to_bytes();
        match jit.try_compile(&code, opts) {
            Ok(Some(_)) => one_pass += 1,
            Ok(None) => {}
            Err(e) => return Compiled::Fail(format!("try_compile error {e}")),
        }
        match jit.compile(&code, opts) {
            Ok(j) => Compiled::Code(j),
            Err(e) => Compiled::Fail(format!("compile error {e}")),
        }
    });
    tally.check("the baseline tier");
    eprintln!("{one_pass} compiled by the one-pass path");
    assert!(one_pass > 100, "the one-pass path compiled only {one_pass}");
}
