//! Runs every bpf_conformance test in `../shared/conformance/*.data` through
//! the x86-64 JIT in-process (r1 = the `-- mem` buffer, r2 = its length) and
//! compares r0 with `-- result`. Tests whose features the JIT does not
//! support are listed with the JIT's error and fail the test (none today);
//! everything else must match.

use std::path::Path;

use bpf_isa::asm::conformance::load_dir;

use bpf_jit::{HelperTable, JitErrorKind, JitOptions};

/// Helper 5 of the conformance suite's setting: returns its first argument.
unsafe extern "C" fn helper5(a: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    a
}

#[test]
fn conformance_suite() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    let Ok(cases) = load_dir(&dir) else {
        panic!("conformance data not found at {}", dir.display());
    };
    let mut helpers = HelperTable::new();
    helpers.insert(5, helper5);
    let opts = JitOptions::new(&helpers);
    let (mut passed, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for case in &cases {
        let case = match case {
            Ok(c) => c,
            Err(e) => {
                failed.push(e.clone());
                continue;
            }
        };
        let (name, prog) = (case.name.clone(), &case.prog);
        let Some(expected) = case.result else {
            skipped.push(format!("{name}: no -- result"));
            continue;
        };
        let jit = match bpf_jit_x86::compile(prog, &opts) {
            Ok(j) => j,
            Err(e) if matches!(e.kind, JitErrorKind::Unsupported(_)) => {
                skipped.push(format!("{name}: {e}"));
                continue;
            }
            Err(e) => {
                failed.push(format!("{name}: compile error {e}"));
                continue;
            }
        };
        let mut mem = case.mem.clone();
        // SAFETY: the conformance programs only touch their memory buffer and stack.
        let got = unsafe { jit.call_mem(&mut mem) };
        if got == expected {
            passed.push(name);
        } else {
            failed.push(format!("{name}: r0 = {got:#x}, expected {expected:#x}"));
        }
    }
    eprintln!(
        "conformance: {} passed, {} skipped, {} failed of {}",
        passed.len(),
        skipped.len(),
        failed.len(),
        cases.len()
    );
    for s in &skipped {
        eprintln!("  skipped {s}");
    }
    assert!(failed.is_empty(), "failures:\n{}", failed.join("\n"));
    // Every file of the suite runs on this backend today; a file that stops
    // running (a feature reported unsupported) must fail here, not scroll by.
    assert!(
        skipped.is_empty(),
        "files no longer run on this backend:\n{}",
        skipped.join("\n")
    );
    assert!(passed.len() > 200, "too few conformance tests ran");
}
