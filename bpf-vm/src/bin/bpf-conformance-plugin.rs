//! Plugin for the bpf_conformance runner.
//!
//! Usage: `bpf-conformance-plugin [MEMORY_HEX] [--program HEX] [--engine interp|x86]`.
//! The program bytecode comes as hex on standard input (one line) unless
//! `--program` gives it; memory, if any, is the first argument. Both accept
//! bytes as hex pairs, optionally separated by whitespace. On success the
//! value of `r0` is printed in hex without a prefix (`%lx`); on failure a
//! message goes to standard error and the exit status is 1.
//!
//! The AArch64 JIT (run under qemu-user) is in `bpf-tests`'
//! `bpf-conformance-plugin-multi`, which takes `--engine arm64` as well.

use std::io::Read;
use std::process::ExitCode;

use bpf_isa::Program;
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
    if matches!(engine.as_str(), "arm64" | "aarch64") {
        return Err("engine arm64 (the AArch64 JIT under qemu-user) is in \
             `bpf-conformance-plugin-multi` of package bpf-tests; this plugin has interp and x86"
            .into());
    }
    let engine: Engine = engine.parse()?;
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
    let vm = LoadedProgram::builder(&prog, engine)
        .helpers(HelperRegistry::conformance())
        .instruction_limit(Some(1 << 32))
        .build()
        .map_err(|e| format!("failed to load program: {e}"))?;
    // SAFETY: the interpreter checks every access; with the JIT the runner's
    // programs are trusted to access only their memory and stack, as with
    // the other JIT plugins of bpf_conformance.
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
