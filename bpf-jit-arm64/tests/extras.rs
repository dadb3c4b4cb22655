//! `may_goto`, `ld_abs`/`ld_ind` and constant blinding on AArch64, run
//! under qemu-user. Expected values are computed by hand (or by plain Rust
//! arithmetic) and checked against the `bpf-vm` interpreter where it can
//! run the same program.

use bpf_isa::arbitrary::scenarios;
use bpf_isa::{assemble, Program};
use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::Atomics;

mod common;

fn interp(prog: &Program) -> u64 {
    let vm = bpf_vm::Interpreter::new(prog).expect("interpreter loads");
    vm.run_mem(&mut [0u8; 8]).expect("interpreter runs")
}

/// Compiles with `opts` for the near code region and runs with `args`.
fn run(emu: &mut Emulator, prog: &Program, opts: &JitOptions<'_>, args: [u64; 5]) -> u64 {
    for atomics in [Atomics::Lse, Atomics::LlSc] {
        let base = common::region_base(emu, common::Region::Near, 0);
        let code = common::compile_at(prog, opts, base, atomics).expect("compiles");
        emu.write(base, &code.code).expect("writes");
        let r = emu.call(base, args).expect("runs");
        if atomics == Atomics::LlSc {
            return r;
        }
    }
    unreachable!()
}

#[test]
fn may_goto_loop_runs_the_budget() {
    let Some(mut emu) = common::emulator("may_goto") else {
        return;
    };
    // By hand: one pass per unit of the 8388608 (BPF_MAX_LOOPS) budget.
    let prog = assemble(scenarios::MAY_GOTO_LOOP).expect("assembles");
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    assert_eq!(
        run(&mut emu, &prog, &opts, [0; 5]),
        scenarios::MAY_GOTO_LOOP_RESULT
    );
    assert_eq!(interp(&prog), scenarios::MAY_GOTO_LOOP_RESULT);
    // Per frame: main's budget, then two fresh ones in a subprogram
    // (3 * 8388608), with the program's stack word intact.
    let prog = assemble(scenarios::MAY_GOTO_PER_FRAME).expect("assembles");
    let depths = scenarios::MAY_GOTO_PER_FRAME_DEPTHS;
    for opts in [
        JitOptions::new(&helpers),
        JitOptions::new(&helpers).with_stack_depths(&depths),
        JitOptions::new(&helpers).with_blinding(5),
    ] {
        assert_eq!(
            run(&mut emu, &prog, &opts, [0; 5]),
            scenarios::MAY_GOTO_PER_FRAME_RESULT,
            "{opts:?}"
        );
    }
    assert_eq!(interp(&prog), scenarios::MAY_GOTO_PER_FRAME_RESULT);
}

#[test]
fn ld_abs_and_ld_ind() {
    let Some(mut emu) = common::emulator("ld_abs") else {
        return;
    };
    let data = emu.layout().data;
    // The context {data, len} at `data`, the packet at `data + 64`.
    let mut ctx = Vec::new();
    ctx.extend_from_slice(&(data + 64).to_le_bytes());
    ctx.extend_from_slice(&(scenarios::LD_ABS_PACKET.len() as u64).to_le_bytes());
    emu.write(data, &ctx).expect("writes");
    emu.write(data + 64, &scenarios::LD_ABS_PACKET)
        .expect("writes");
    let f = emu.layout().helper(HarnessHelper::SkbLoad);
    let helpers = HelperTable::new();
    for (src, want) in scenarios::LD_ABS_CASES {
        let prog = assemble(src).expect("assembles");
        for blind in [None, Some(9)] {
            let mut opts = JitOptions::new(&helpers).with_ld_abs_address(f);
            opts.blind_constants = blind;
            assert_eq!(
                run(&mut emu, &prog, &opts, [data, 0, 0, 0, 0]),
                want,
                "{src} {blind:?}"
            );
        }
    }
}

/// The 16-bit halves of `scenarios::BLIND_SRC`'s immediates (AArch64 builds
/// constants 16 bits at a time with `movz`/`movk`/`movn`).
fn blind_halves() -> impl Iterator<Item = u16> {
    scenarios::BLIND_IMMS
        .into_iter()
        .flat_map(|imm| [(imm >> 16) as u16, imm as u16])
}

/// The 16-bit payloads of the image's move-wide instructions (ARM ARM
/// C6.2: `movz` opc=10, `movk` opc=11, `movn` opc=00 with bits 28-23 =
/// 100101; `movn` loads the inverted payload, so both are listed).
fn move_wide_halves(code: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    for w in code.chunks_exact(4) {
        let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if (w >> 23) & 0x3f != 0b10_0101 {
            continue;
        }
        let imm = (w >> 5) as u16;
        match (w >> 29) & 3 {
            0b10 | 0b11 => out.push(imm),
            0b00 => out.extend([imm, !imm]),
            _ => {}
        }
    }
    out
}

#[test]
fn blinding_hides_every_immediate() {
    let Some(mut emu) = common::emulator("constant blinding") else {
        return;
    };
    let prog = assemble(scenarios::BLIND_SRC).expect("assembles");
    let helpers = HelperTable::new();
    let plain = bpf_jit_arm64::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    let halves = move_wide_halves(&plain.code);
    for h in blind_halves() {
        assert!(halves.contains(&h), "unblinded image lacks {h:#x}");
    }
    for seed in [1u64, 0xdead_beef] {
        let opts = JitOptions::new(&helpers).with_blinding(seed);
        let code = bpf_jit_arm64::compile_code(&prog, &opts).expect("compiles");
        let halves = move_wide_halves(&code.code);
        for h in blind_halves() {
            assert!(
                !halves.contains(&h),
                "seed {seed}: blinded image holds {h:#x}"
            );
        }
    }
    let want = scenarios::blind_expected();
    for opts in [
        JitOptions::new(&helpers),
        JitOptions::new(&helpers).with_blinding(1),
        JitOptions::new(&helpers).with_blinding(bpf_jit::random_blinding_seed()),
    ] {
        assert_eq!(run(&mut emu, &prog, &opts, [0; 5]), want, "{opts:?}");
    }
    assert_eq!(interp(&prog), want);
    let a = bpf_jit_arm64::compile_code(&prog, &JitOptions::new(&helpers).with_blinding(1))
        .expect("compiles");
    let b = bpf_jit_arm64::compile_code(&prog, &JitOptions::new(&helpers).with_blinding(2))
        .expect("compiles");
    assert_ne!(a.code, b.code, "different keys, different images");
}

/// kfunc calls through the resolver: the harness's weighted sum of r1-r5,
/// 1 + 2*2 + 3*3 + 4*4 + 5*5 = 55 by hand.
#[test]
fn kfunc_calls_through_the_resolver() {
    let Some(mut emu) = common::emulator("kfunc calls") else {
        return;
    };
    let prog = assemble(scenarios::KFUNC_WEIGHTED).expect("assembles");
    let f = emu.layout().helper(HarnessHelper::WeightedSum);
    let helpers = HelperTable::new();
    let resolve = |id: i32, off: i16| (id == scenarios::KFUNC_WEIGHTED_ID && off == 0).then_some(f);
    let opts = JitOptions::new(&helpers).with_kfuncs(&resolve);
    assert_eq!(
        run(&mut emu, &prog, &opts, [0; 5]),
        scenarios::KFUNC_WEIGHTED_RESULT
    );
}
