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

thread_local! {
    /// One compiler kept across the cases below (proptest runs them on one thread).
    static REUSED: std::cell::RefCell<bpf_jit_x86::Compiler> =
        std::cell::RefCell::new(bpf_jit_x86::Compiler::new());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A `Compiler` reused across programs of every shape (including ones
    /// the JIT rejects, which leave its tables mid-compile) gives exactly
    /// what a fresh compile gives: the same code, offsets and error.
    #[test]
    fn reused_compiler_matches_fresh(
        prog in prop_oneof![runnable_program(48), bpf_isa::arbitrary::valid_program(64)],
        blind in any::<Option<u64>>(),
    ) {
        let helpers = HelperTable::new();
        let mut opts = JitOptions::new(&helpers);
        if let Some(seed) = blind {
            opts = opts.with_blinding(seed);
        }
        let fresh = bpf_jit_x86::compile_code(&prog, &opts);
        let reused = REUSED.with(|j| j.borrow_mut().compile_code(&prog, &opts));
        match (fresh, reused) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a.code, &b.code);
                prop_assert_eq!(&a.insn_offsets, &b.insn_offsets);
                prop_assert_eq!(&a.entries, &b.entries);
                prop_assert_eq!(&a.subprog_starts, &b.subprog_starts);
                prop_assert_eq!(a.passes, b.passes);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "fresh {:?} but reused {:?}", a.map(|c| c.code.len()), b.map(|c| c.code.len())),
        }
    }
}
