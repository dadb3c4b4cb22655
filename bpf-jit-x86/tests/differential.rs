//! Differential test: the x86-64 JIT against the reference interpreter
//! (`bpf-vm`) on programs from the shared generator
//! (`bpf_isa::arbitrary::runnable_program`: generated programs shaped to
//! verify, terminate and not fault, with every register folded into `r0`,
//! so every register's final value is compared).

use bpf_isa::arbitrary::runnable_program;
use bpf_jit::{HelperTable, JitOptions};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn jit_matches_interpreter(prog in runnable_program(48)) {
        prop_assert!(prog.validate().is_ok(), "shaped program invalid");
        let vm = bpf_vm::Interpreter::new(&prog).map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
        let mut mem = [0u8; 8];
        let want = vm.run_mem(&mut mem).map_err(|e| TestCaseError::fail(format!("interpreter run: {e}")))?;
        let helpers = HelperTable::new();
        let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers))
            .map_err(|e| TestCaseError::fail(format!("jit: {e}")))?;
        let mut mem2 = [0u8; 8];
        if let Ok(path) = std::env::var("BPF_JIT_DUMP") {
            let _ = std::fs::write(&path, bpf_isa::fmt_program(&prog, &Default::default()));
            let _ = std::fs::write(format!("{path}.bin"), jit.memory().code());
        }
        // SAFETY: the shaped program only accesses the first 64 bytes of its stack.
        let got = unsafe { jit.call_mem(&mut mem2) };
        prop_assert_eq!(got, want, "program:\n{}", bpf_isa::fmt_program(&prog, &Default::default()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The same programs compiled with constant blinding (a key per case).
    #[test]
    fn blinded_jit_matches_interpreter(prog in runnable_program(48), seed in any::<u64>()) {
        let vm = bpf_vm::Interpreter::new(&prog).map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
        let mut mem = [0u8; 8];
        let want = vm.run_mem(&mut mem).map_err(|e| TestCaseError::fail(format!("interpreter run: {e}")))?;
        let helpers = HelperTable::new();
        let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers).with_blinding(seed))
            .map_err(|e| TestCaseError::fail(format!("jit: {e}")))?;
        let mut mem2 = [0u8; 8];
        // SAFETY: the shaped program only accesses the first 64 bytes of its stack.
        let got = unsafe { jit.call_mem(&mut mem2) };
        prop_assert_eq!(got, want, "seed {:#x} program:\n{}", seed, bpf_isa::fmt_program(&prog, &Default::default()));
    }
}
