//! Differential test: the AArch64 JIT, run under qemu-user, against the
//! reference interpreter (`bpf-vm`) on programs from the shared generator
//! (`bpf_isa::arbitrary::runnable_program`, the same programs the x86-64
//! backend's differential test uses: shaped to verify, terminate and not
//! fault, with every register folded into `r0`). Each case is compiled
//! with LSE atomics or with LL/SC loops (chosen by the case) and runs in
//! one long-lived emulator process. `BPF_DIFF_CASES` overrides the number
//! of cases (default 5,000).

use bpf_isa::arbitrary::runnable_program;
use bpf_isa::Program;
use bpf_jit::HelperTable;
use bpf_jit_arm64::emu::Emulator;
use bpf_jit_arm64::Atomics;
use proptest::prelude::*;
use std::sync::{Mutex, OnceLock};

mod common;

/// The interpreter's `r0` for `prog` run on 8 bytes of zeroed memory.
fn interp_r0(prog: &Program) -> Result<u64, TestCaseError> {
    let vm = bpf_vm::Interpreter::new(prog)
        .map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
    let mut mem = [0u8; 8];
    vm.run_mem(&mut mem)
        .map_err(|e| TestCaseError::fail(format!("interpreter run: {e}")))
}

/// The signature of `common::run_mem` and `common::run_mem_private`.
type Runner = fn(
    &mut Emulator,
    &Program,
    &HelperTable,
    common::Region,
    Atomics,
    &[u8],
) -> Result<(u64, Vec<u8>), String>;

/// Runs `prog` with `runner` (LL/SC atomics with `llsc`, else LSE) on 8
/// zeroed bytes and compares `r0` with the interpreter's.
fn check(prog: &Program, llsc: bool, runner: Runner) -> Result<(), TestCaseError> {
    let mut guard = emu().lock().unwrap_or_else(|e| e.into_inner());
    let Some(emu) = guard.as_mut() else {
        return Ok(());
    };
    let want = interp_r0(prog)?;
    let helpers = HelperTable::new();
    let atomics = if llsc { Atomics::LlSc } else { Atomics::Lse };
    let (got, _) = runner(
        emu,
        prog,
        &helpers,
        common::Region::Near,
        atomics,
        &[0u8; 8],
    )
    .map_err(TestCaseError::fail)?;
    prop_assert_eq!(
        got,
        want,
        "{:?} program:\n{}",
        atomics,
        bpf_isa::fmt_program(prog, &Default::default())
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

/// One emulator for the whole run (`None` when the tools are missing and
/// not required: the skip has then been reported).
fn emu() -> &'static Mutex<Option<Emulator>> {
    static EMU: OnceLock<Mutex<Option<Emulator>>> = OnceLock::new();
    EMU.get_or_init(|| Mutex::new(common::emulator("the differential test")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_local_rejects: 10_000_000, ..ProptestConfig::default() })]

    #[test]
    fn arm64_jit_matches_interpreter(prog in runnable_program(48), llsc in any::<bool>()) {
        prop_assert!(prog.validate().is_ok(), "shaped program invalid");
        check(&prog, llsc, common::run_mem)?;
    }
}

fn private_cases() -> u32 {
    cases().min(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: private_cases(), max_local_rejects: 10_000_000, ..ProptestConfig::default() })]

    /// The same programs with every frame on a private stack (guards
    /// checked after each run by `run_mem_private`).
    #[test]
    fn arm64_jit_on_a_private_stack_matches_interpreter(prog in runnable_program(48), llsc in any::<bool>()) {
        check(&prog, llsc, common::run_mem_private)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases().min(1000), max_local_rejects: 10_000_000, ..ProptestConfig::default() })]

    /// The same programs compiled with constant blinding (a key per case).
    #[test]
    fn blinded_arm64_jit_matches_interpreter(prog in runnable_program(48), seed in any::<u64>()) {
        let mut guard = emu().lock().unwrap_or_else(|e| e.into_inner());
        let Some(emu) = guard.as_mut() else {
            return Ok(());
        };
        let want = interp_r0(&prog)?;
        let helpers = HelperTable::new();
        let base = common::region_base(emu, common::Region::Near, 0);
        let opts = bpf_jit::JitOptions::new(&helpers).with_blinding(seed);
        let code = common::compile_at(&prog, &opts, base, Atomics::Lse).map_err(TestCaseError::fail)?;
        emu.write(base, &code.code).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let data = emu.layout().data;
        emu.write(data, &[0u8; 8]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = emu.call(base, [data, 8, 0, 0, 0]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, want, "seed {:#x} program:\n{}", seed, bpf_isa::fmt_program(&prog, &Default::default()));
    }
}

#[test]
fn emulator_is_present_or_skip_is_reported() {
    // Not a silent skip: with the tools installed (CI installs them) the
    // differential run above must have had an emulator.
    if bpf_jit_arm64::emu::tools_available().is_ok() {
        assert!(emu().lock().unwrap_or_else(|e| e.into_inner()).is_some());
    }
}
