//! Runs every bpf_conformance `.data` file through the uBPF assembler and
//! each engine: the interpreter and the x86-64 JIT (optimizing and baseline tiers).

use bpf_tests::{conformance_dir, data_files, parse_case};
use bpf_vm::{Engine, HelperRegistry, LoadedProgram};

fn run_case(text: &str, engine: Engine) -> Result<(), String> {
    let case = parse_case(text)?;
    let prog = match bpf_isa::assemble_ubpf(&case.asm) {
        Ok(p) => p,
        Err(e) => {
            return match &case.error {
                Some(_) => Ok(()),
                None => Err(format!("assembly failed: {e}")),
            }
        }
    };
    let vm = LoadedProgram::builder(&prog, engine)
        .helpers(HelperRegistry::conformance())
        .instruction_limit(Some(100_000_000))
        .build();
    let mut mem = case.mem.clone();
    // SAFETY: the conformance programs access only their memory buffer and
    // stack (the interpreter checks this; the JIT relies on it).
    let got = vm.and_then(|vm| unsafe { vm.run_mem(&mut mem) });
    match (&case.error, got) {
        (Some(_), Err(_)) => Ok(()),
        (Some(want), Ok(r0)) => Err(format!("expected error {want:?}, got r0 = {r0:#x}")),
        (None, Err(e)) => Err(format!("error: {e}")),
        (None, Ok(r0)) => match case.result {
            Some(want) if want == r0 => Ok(()),
            Some(want) => Err(format!("r0 = {r0:#x}, expected {want:#x}")),
            None => Err("file has neither -- result nor -- error".into()),
        },
    }
}

#[test]
fn conformance_suite_interp() {
    suite(Engine::Interp);
}

#[test]
fn conformance_suite_x86() {
    assert!(
        Engine::available().contains(&Engine::X86),
        "the x86-64 JIT must be available on this host"
    );
    suite(Engine::X86);
}

#[test]
fn conformance_suite_x86_baseline() {
    assert!(
        Engine::available().contains(&Engine::X86Baseline),
        "the x86-64 JIT's baseline tier must be available on this host"
    );
    suite(Engine::X86Baseline);
}

fn suite(engine: Engine) {
    let dir = conformance_dir();
    let files = data_files(&dir).unwrap_or_else(|e| {
        panic!(
            "conformance data not found at {} ({e}); it is required",
            dir.display()
        )
    });
    assert!(!files.is_empty(), "no .data files in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(f).unwrap_or_default();
        match run_case(&text, engine) {
            Ok(()) => println!("PASS {name} ({engine})"),
            Err(e) => {
                println!("FAIL {name} ({engine}): {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    println!(
        "conformance ({engine}): {} passed, {} failed",
        files.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failing files:\n{}",
        failures.join("\n")
    );
}
