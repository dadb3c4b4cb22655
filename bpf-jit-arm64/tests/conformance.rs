//! Runs every bpf_conformance test in `../shared/conformance/*.data`
//! through the AArch64 JIT under qemu-user (r1 = the `-- mem` buffer, r2 =
//! its length) and compares r0 with `-- result`, once with LSE atomics
//! from the region within `bl` range of the helpers and once with LL/SC
//! atomics from the far region (helpers through `blr`). Tests whose
//! features the JIT does not support are listed with the JIT's error and
//! fail the test (none today); everything else must match.

mod common;

use std::path::Path;

use bpf_isa::asm::conformance::load_dir;
use bpf_jit::JitErrorKind;
use bpf_jit_arm64::Atomics;
use common::{emulator, harness_helpers, run_mem, Region};

#[test]
fn conformance_suite_on_arm64() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    let Ok(cases) = load_dir(&dir) else {
        panic!("conformance data not found at {}", dir.display());
    };
    let Some(mut emu) = emulator("the conformance suite") else {
        return;
    };
    let helpers = harness_helpers(&emu);
    let (mut passed, mut skipped, mut failed) = (0usize, Vec::new(), Vec::new());
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
        if let Err(e) = bpf_jit_arm64::compile_code(prog, &bpf_jit::JitOptions::new(&helpers)) {
            if matches!(e.kind, JitErrorKind::Unsupported(_)) {
                skipped.push(format!("{name}: {e}"));
            } else {
                failed.push(format!("{name}: compile error {e}"));
            }
            continue;
        }
        for (region, atomics) in [(Region::Near, Atomics::Lse), (Region::Far, Atomics::LlSc)] {
            match run_mem(&mut emu, prog, &helpers, region, atomics, &case.mem) {
                Ok((got, _)) if got == expected => passed += 1,
                Ok((got, _)) => failed.push(format!(
                    "{name} ({region:?}, {atomics:?}): r0 = {got:#x}, expected {expected:#x}"
                )),
                Err(e) => failed.push(format!("{name} ({region:?}, {atomics:?}): {e}")),
            }
        }
    }
    eprintln!(
        "arm64 conformance: {} runs passed ({} programs x 2 configurations), {} skipped, {} failed of {} files",
        passed,
        passed / 2,
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
    assert!(passed > 400, "too few conformance tests ran");
}
