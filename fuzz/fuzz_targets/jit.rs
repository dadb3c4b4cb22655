//! Bytes -> validated program -> the x86-64 and AArch64 JITs (compiled,
//! never run). The first byte picks the options (constant blinding, private
//! stack, leaf-call inlining, direct tail calls); every pseudo `ld_imm64`,
//! kfunc and `ld_abs` resolves. The raw bytes also go through the one-pass
//! `bpf_jit_x86::Baseline`, whose programs decode and compile on the
//! optimizing path too. Any input must give code or a typed error,
//! and a reused `bpf_jit_x86::Compiler` must give exactly what a fresh
//! compile gives, error or code.
#![no_main]

use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};
use libfuzzer_sys::fuzz_target;

unsafe extern "C" fn helper(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, code)) = data.split_first() else {
        return;
    };
    let mut helpers = HelperTable::new();
    for id in 1..16 {
        helpers.insert(id, helper);
    }
    helpers.insert_fastcall(16, helper, 0b1110);
    let resolve = |_: usize, _: bpf_isa::LdImm64Src| Some(0x1000u64);
    let kfuncs = |_: i32, _: i16| Some(helper as *const () as usize as u64);
    let mut opts = JitOptions::new(&helpers)
        .with_ld_imm64(&resolve)
        .with_kfuncs(&kfuncs)
        .with_ld_abs(helper)
        .with_private_stack(flags & 2 != 0)
        .with_inline_leaf_calls(flags & 4 == 0)
        .with_direct_tail_calls(flags & 8 != 0);
    if flags & 1 != 0 {
        opts = opts.with_blinding(u64::from(flags) * 0x9e37_79b9);
    }
    // The one-pass baseline on the raw bytes (compiled, never run): what it
    // takes on, decode and the optimizing compiler must accept.
    if let Ok(Some(_)) = bpf_jit_x86::Baseline::new().try_compile(code, &opts) {
        let prog = Program::decode(code).expect("baseline accepted what decode rejects");
        assert!(
            bpf_jit_x86::Compiler::new().compile(&prog, &opts).is_ok(),
            "baseline accepted what the optimizing compiler rejects"
        );
    }
    let Ok(prog) = Program::decode_validated(code) else {
        return;
    };
    let fresh = bpf_jit_x86::compile_code(&prog, &opts);
    let mut jit = bpf_jit_x86::Compiler::new();
    // Twice: the second compile reuses what the first left behind.
    let _ = jit.compile_code(&prog, &opts);
    let reused = jit.compile_code(&prog, &opts);
    assert_eq!(fresh, reused, "reused compiler differs from a fresh one");
    let _ = bpf_jit_arm64::compile_code(&prog, &opts);
});
