//! Plugin for the bpf_conformance runner, for every engine of the workspace.
//!
//! Usage: `bpf-conformance-plugin [MEMORY_HEX] [--program HEX]
//! [--engine interp|x86|x86-baseline|arm64]` (default `interp`). The program bytecode
//! comes as hex on standard input (one line) unless `--program` gives it;
//! memory, if any, is the first argument. Both accept bytes as hex pairs,
//! optionally separated by whitespace. On success the value of `r0` is
//! printed in hex without a prefix (`%lx`); on failure a message goes to
//! standard error and the exit status is 1.
//!
//! `interp`, `x86` and `x86-baseline` (the x86-64 JIT's one-pass tier,
//! falling back to the optimizing compiler) run through
//! `bpf_vm::LoadedProgram` with the conformance helpers. `arm64` compiles with `bpf-jit-arm64` and runs the
//! code in the qemu-user harness (`bpf_jit_arm64::emu`): `r1` = the memory
//! (copied into the harness's data region), `r2` = its length, helper 5 of
//! the conformance suite = the harness helper returning its first argument.
//!
//! This binary lives in `bpf-tests` rather than in `bpf-vm` because
//! `bpf-jit-arm64` dev-depends on `bpf-vm`: a normal dependency the other way
//! would make the runtime depend on a backend it cannot run natively, and the
//! arm64 tests would build two copies of `bpf-jit-arm64`.

use std::io::Read;
use std::process::ExitCode;

use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::{Arm64Options, Atomics};
use bpf_vm::{Engine, HelperRegistry, LoadedProgram};

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|p| {
            let txt = std::str::from_utf8(p).map_err(|e| e.to_string())?;
            u8::from_str_radix(txt, 16).map_err(|e| format!("bad hex byte {txt:?}: {e}"))
        })
        .collect()
}

/// Runs `prog` on AArch64 under qemu: near region (helpers via `bl`), LSE atomics.
fn run_arm64(prog: &Program, memory: &[u8]) -> Result<u64, String> {
    let mut emu = Emulator::spawn().map_err(|e| format!("arm64 emulator: {e}"))?;
    let layout = *emu.layout();
    let mut helpers = HelperTable::new();
    helpers.insert_address(5, layout.helper(HarnessHelper::ReturnArg1));
    let arm = Arm64Options {
        atomics: Atomics::Lse,
        image_base: Some(layout.near_code),
    };
    let code = bpf_jit_arm64::compile_code_with(prog, &JitOptions::new(&helpers), &arm)
        .map_err(|e| format!("failed to load program: {e}"))?;
    if code.code.len() as u64 > layout.region_len || memory.len() as u64 > layout.region_len {
        return Err(format!(
            "program ({} bytes of code) or memory ({} bytes) larger than the harness's {}-byte regions",
            code.code.len(),
            memory.len(),
            layout.region_len
        ));
    }
    let io = |e: bpf_jit_arm64::emu::EmuError| format!("failed to execute program: {e}");
    emu.write(layout.near_code, &code.code).map_err(io)?;
    emu.write(layout.data, memory).map_err(io)?;
    emu.call(
        layout.near_code,
        [layout.data, memory.len() as u64, 0, 0, 0],
    )
    .map_err(io)
}

fn run() -> Result<u64, String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut memory = Vec::new();
    if args.first().is_some_and(|a| !a.starts_with("--")) {
        memory = decode_hex(&args.remove(0))?;
    }
    let mut program_hex = None;
    let mut engine = "interp".to_string();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--program" => program_hex = Some(it.next().ok_or("--program needs a value")?),
            "--engine" => engine = it.next().ok_or("--engine needs a value")?,
            "" => {}
            other => return Err(format!("invalid argument: {other}")),
        }
    }
    // Validate the engine before waiting for stdin.
    let engine = match engine.as_str() {
        "arm64" | "aarch64" => None,
        other => Some(other.parse::<Engine>().map_err(|_| {
            format!("unknown engine {other:?} (available: interp, x86, x86-baseline, arm64)")
        })?),
    };
    let program_hex = match program_hex {
        Some(p) => p,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("reading stdin: {e}"))?;
            s
        }
    };
    let bytes = decode_hex(&program_hex)?;
    let prog = Program::decode(&bytes).map_err(|e| format!("failed to load program: {e}"))?;
    let Some(engine) = engine else {
        return run_arm64(&prog, &memory);
    };
    let vm = LoadedProgram::builder(&prog, engine)
        .helpers(HelperRegistry::conformance())
        .instruction_limit(Some(1 << 32))
        .build()
        .map_err(|e| format!("failed to load program: {e}"))?;
    // SAFETY: the interpreter checks every access; with the x86 JITs the
    // runner's programs are trusted to access only their memory and stack,
    // as with the other JIT plugins of bpf_conformance.
    unsafe { vm.run_mem(&mut memory) }.map_err(|e| format!("failed to execute program: {e}"))
}

fn main() -> ExitCode {
    match run() {
        Ok(r0) => {
            println!("{r0:x}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
