//! `Engine::X86Baseline`: programs loaded for the x86-64 JIT's one-pass
//! baseline tier give the hand-computed results the interpreter and
//! `Engine::X86` give, whether the baseline compiles them itself (map
//! references too, through the engine's resolver) or hands them to the
//! optimizing compiler (tail calls), and its programs tail-call and are
//! tail-called like any compiled program.

#![cfg(target_arch = "x86_64")]

use std::sync::Arc;

use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};
use bpf_vm::{Engine, HelperRegistry, LoadedProgram, Map};

mod common;
use common::{asm, counters, prog_array, COUNTER};

const ENGINES: [Engine; 3] = [Engine::Interp, Engine::X86, Engine::X86Baseline];

/// What the one-pass tier alone makes of `prog` (no helpers, default
/// options): its code bytes, or `None` when it leaves it to the optimizing
/// compiler.
fn one_pass_code(prog: &Program) -> Option<Vec<u8>> {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    bpf_jit_x86::Baseline::new()
        .try_compile(&prog.to_bytes(), &opts)
        .expect("executable memory")
        .map(|p| p.memory().code().to_vec())
}

fn run(p: &LoadedProgram, mem: &mut [u8]) -> u64 {
    // SAFETY: the test programs touch only `mem`, their stack and map values.
    unsafe { p.run_mem(mem) }.expect("runs")
}

/// Sums the bytes of the memory in a loop, passes the sum to a subprogram
/// (`3 * x + 1`), and adds a 64-bit division by zero (0) and a 32-bit
/// remainder by zero (the dividend, `0xffff_ffff`, zero-extended).
const SUM: &str = "
    r6 = 0
    r3 = 0
loop:
    if r3 >= r2 goto done
    r4 = r1
    r4 += r3
    r5 = *(u8 *)(r4 + 0)
    r6 += r5
    r3 += 1
    goto loop
done:
    r7 = 100
    r8 = 0
    r7 /= r8
    w9 = -1
    w9 %= w8
    r1 = r6
    call pc f
    r0 += r7
    r0 += r9
    exit
f:
    r0 = r1
    r0 *= 3
    r0 += 1
    exit";

#[test]
fn the_one_pass_tier_runs_what_it_compiles() {
    let prog = asm(SUM);
    let want_code = one_pass_code(&prog).expect("the baseline compiles SUM itself");
    // 1 + ... + 10 = 55; 3 * 55 + 1 = 166; + 0 + 0xffff_ffff.
    let want = 166 + 0xffff_ffff;
    for engine in ENGINES {
        let p = LoadedProgram::builder(&prog, engine)
            .build()
            .expect("loads");
        assert_eq!(p.engine(), engine);
        let mut mem: Vec<u8> = (1..=10).collect();
        assert_eq!(run(&p, &mut mem), want, "{engine}");
        if engine == Engine::X86Baseline {
            let code = p.jit().expect("a JIT program").code().memory().code();
            assert_eq!(code, &want_code[..], "loaded through the one-pass tier");
        }
    }
}

#[test]
fn helpers_are_called_from_one_pass_code() {
    // Helper 200 returns 10 * r1 + r2: 10 * 4 + 2 = 42, + 1.
    let prog = asm("r1 = 4\nr2 = 2\ncall 200\nr0 += 1\nexit");
    for engine in ENGINES {
        let mut helpers = HelperRegistry::kernel();
        helpers.register(200, |_, a| Ok(10 * a[0] + a[1]));
        let p = LoadedProgram::builder(&prog, engine)
            .helpers(helpers)
            .build()
            .expect("loads");
        assert_eq!(run(&p, &mut []), 43, "{engine}");
    }
}

#[test]
fn map_references_compile_in_one_pass_and_run_the_same() {
    let prog = asm(COUNTER);
    // With a resolver for the map reference, the one pass takes it; with
    // none, it is left to the optimizing compiler (which refuses it).
    // (Compiled, never run: the helper's address only has to exist.)
    let mut helpers = HelperTable::new();
    helpers.insert_address(1, 0x2000);
    let resolve = |_: usize, _: bpf_isa::LdImm64Src| Some(0x1000u64);
    let opts = JitOptions::new(&helpers).with_ld_imm64(&resolve);
    let resolved = bpf_jit_x86::Baseline::new()
        .try_compile(&prog.to_bytes(), &opts)
        .expect("executable memory");
    assert!(
        resolved.is_some(),
        "a resolved map reference compiles in one pass"
    );
    assert!(
        one_pass_code(&prog).is_none(),
        "an unresolved map reference is left to the optimizing compiler"
    );
    for engine in ENGINES {
        let m = counters();
        let p = LoadedProgram::builder(&prog, engine)
            .map(1, m.clone())
            .build()
            .expect("loads");
        assert_eq!(p.engine(), engine);
        // The counter starts at 0; every run increments and returns it.
        for want in 1..=3 {
            assert_eq!(run(&p, &mut []), want, "{engine}");
        }
        assert_eq!(
            m.lookup(&0u32.to_le_bytes()).expect("key 0"),
            3u64.to_le_bytes().to_vec(),
            "{engine}"
        );
    }
}

/// Tail-calls slot 0 of the array at fd 1 (a constant index: a direct
/// site); 1 when the slot is empty.
const DIRECT_CALLER: &str = "r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 1\nexit";
/// Tail-calls the slot named by the memory's second byte (through the
/// table); 1 when the slot is empty.
const INDIRECT_CALLER: &str = "
    r6 = r1
    r3 = *(u8 *)(r1 + 1)
    r2 = map[fd:1]
    r1 = r6
    call 12
    r0 = 1
    exit";
/// The memory's first byte + 40 (it reads the context the caller passed).
const TARGET: &str = "r0 = *(u8 *)(r1 + 0)\nr0 += 40\nexit";

fn load(src: &str, engine: Engine, pa: &Arc<Map>) -> LoadedProgram {
    LoadedProgram::builder(&asm(src), engine)
        .map(1, pa.clone())
        .build()
        .expect("loads")
}

#[test]
fn tail_calls_between_baseline_and_optimized_programs() {
    let target_code = one_pass_code(&asm(TARGET)).expect("the baseline compiles TARGET itself");
    let pairs = [
        (Engine::Interp, Engine::Interp),
        (Engine::X86Baseline, Engine::X86Baseline),
        (Engine::X86Baseline, Engine::X86),
        (Engine::X86, Engine::X86Baseline),
        (Engine::X86, Engine::X86),
    ];
    for (caller_engine, target_engine) in pairs {
        for caller_src in [DIRECT_CALLER, INDIRECT_CALLER] {
            let label = format!("{caller_engine} -> {target_engine}");
            let pa = prog_array(2);
            let caller = load(caller_src, caller_engine, &pa);
            assert_eq!(caller.engine(), caller_engine);
            // Memory: [2, 0]: the target returns 2 + 40; the indirect
            // caller takes slot 0.
            assert_eq!(run(&caller, &mut [2, 0]), 1, "{label}: empty slot");
            let target = load(TARGET, target_engine, &pa);
            if target_engine == Engine::X86Baseline {
                let code = target.jit().expect("a JIT program").code().memory().code();
                assert_eq!(code, &target_code[..], "{label}: one-pass target");
            }
            let arr = pa.as_prog_array().expect("prog array");
            arr.set_program(0, Some(&target)).expect("installs");
            assert_eq!(run(&caller, &mut [2, 0]), 42, "{label}");
            arr.set_program(0, None).expect("clears");
            assert_eq!(run(&caller, &mut [2, 0]), 1, "{label}: cleared slot");
        }
    }
}

#[test]
fn engine_names_parse() {
    for (name, engine) in [
        ("x86-baseline", Engine::X86Baseline),
        ("baseline", Engine::X86Baseline),
        ("x86", Engine::X86),
    ] {
        assert_eq!(name.parse::<Engine>(), Ok(engine));
    }
    assert_eq!(Engine::X86Baseline.to_string(), "x86-baseline");
    assert!(Engine::available().contains(&Engine::X86Baseline));
    let err = "mips".parse::<Engine>().expect_err("unknown");
    assert!(err.contains("x86-baseline"), "{err}");
}
