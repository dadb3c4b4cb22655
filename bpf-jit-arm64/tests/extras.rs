//! `may_goto`, `ld_abs`/`ld_ind` and constant blinding on AArch64, run
//! under qemu-user. Expected values are computed by hand (or by plain Rust
//! arithmetic) and checked against the `bpf-vm` interpreter where it can
//! run the same program.

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
    let prog = assemble(
        "r0 = 0
       loop:
         may_goto out
         r0 += 1
         goto loop
       out:
         exit",
    )
    .expect("assembles");
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    assert_eq!(run(&mut emu, &prog, &opts, [0; 5]), 8_388_608);
    assert_eq!(interp(&prog), 8_388_608);
    // Per frame: main's budget, then two fresh ones in a subprogram
    // (3 * 8388608), with the program's stack word intact.
    let prog = assemble(
        "r6 = 0x77
         *(u64 *)(r10 - 8) = r6
         r7 = 0
       loop:
         may_goto main_out
         r7 += 1
         goto loop
       main_out:
         call pc count
         r7 += r0
         call pc count
         r7 += r0
         r0 = *(u64 *)(r10 - 8)
         if r0 != 0x77 goto bad
         r0 = r7
         exit
       bad:
         r0 = 1
         exit
       count:
         r0 = 0
       l2:
         may_goto done
         r0 += 1
         goto l2
       done:
         exit",
    )
    .expect("assembles");
    let depths = [8u32, 0];
    for opts in [
        JitOptions::new(&helpers),
        JitOptions::new(&helpers).with_stack_depths(&depths),
        JitOptions::new(&helpers).with_blinding(5),
    ] {
        assert_eq!(run(&mut emu, &prog, &opts, [0; 5]), 25_165_824, "{opts:?}");
    }
    assert_eq!(interp(&prog), 25_165_824);
}

const PKT: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];

#[test]
fn ld_abs_and_ld_ind() {
    let Some(mut emu) = common::emulator("ld_abs") else {
        return;
    };
    let data = emu.layout().data;
    // The context {data, len} at `data`, the packet at `data + 64`.
    let mut ctx = Vec::new();
    ctx.extend_from_slice(&(data + 64).to_le_bytes());
    ctx.extend_from_slice(&(PKT.len() as u64).to_le_bytes());
    emu.write(data, &ctx).expect("writes");
    emu.write(data + 64, &PKT).expect("writes");
    let f = emu.layout().helper(HarnessHelper::SkbLoad);
    let helpers = HelperTable::new();
    let cases: [(&str, u64); 8] = [
        ("r6 = r1\n r0 = *(u16 *)skb[1]\n exit", 0x3456),
        ("r6 = r1\n r0 = *(u8 *)skb[7]\n exit", 0xf0),
        ("r6 = r1\n r0 = *(u32 *)skb[4]\n exit", 0x9abc_def0),
        ("r6 = r1\n r0 = *(u32 *)skb[5]\n r0 = 99\n exit", 0),
        (
            "r6 = r1\n r7 = 2\n r0 = *(u32 *)skb[r7 + 1]\n exit",
            0x789a_bcde,
        ),
        ("r6 = r1\n r1 = 6\n r0 = *(u16 *)skb[r1]\n exit", 0xdef0),
        ("r6 = r1\n r0 = *(u8 *)skb[-1]\n r0 = 5\n exit", 0),
        (
            "r6 = r1
             r8 = 100
             *(u64 *)(r10 - 8) = r8
             r0 = *(u8 *)skb[0]
             r7 = r0
             r0 = *(u8 *)skb[1]
             r0 += r7
             r1 = *(u64 *)(r10 - 8)
             r0 += r1
             exit",
            0x12 + 0x34 + 100,
        ),
    ];
    for (src, want) in cases {
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

/// Distinctive immediates, one per blindable form.
const BLIND_SRC: &str = "
    r0 = 0x1a2b3c4d
    w1 = 0x2b3c4d5e
    r0 += 0x3c4d5e6f
    w1 ^= 0x4d5e6f70
    *(u32 *)(r10 - 8) = 0x5e6f7182
    r2 = *(u32 *)(r10 - 8)
    if r2 != 0x5e6f7182 goto bad
    if w1 > 0x6a7b8c9d goto bad
    r3 = 0x71829304a5b6c7d8 ll
    r0 *= 0x13572468
    r0 += r1
    r0 += r2
    r0 ^= r3
    r0 /= 0x2468ace1
    exit
  bad:
    r0 = 0
    exit";

/// `BLIND_SRC`'s result, by plain arithmetic.
fn blind_expected() -> u64 {
    let mut r0: u64 = 0x1a2b_3c4d;
    let r1: u64 = u64::from(0x2b3c_4d5eu32 ^ 0x4d5e_6f70);
    r0 = r0.wrapping_add(0x3c4d_5e6f);
    assert!(r1 as u32 <= 0x6a7b_8c9d);
    r0 = r0.wrapping_mul(0x1357_2468);
    r0 = r0.wrapping_add(r1).wrapping_add(0x5e6f_7182);
    r0 ^= 0x7182_9304_a5b6_c7d8;
    r0 / 0x2468_ace1
}

/// The 16-bit halves of `BLIND_SRC`'s immediates (AArch64 builds
/// constants 16 bits at a time with `movz`/`movk`/`movn`).
const BLIND_HALVES: [u16; 20] = [
    0x1a2b, 0x3c4d, 0x2b3c, 0x4d5e, 0x3c4d, 0x5e6f, 0x4d5e, 0x6f70, 0x5e6f, 0x7182, 0x6a7b, 0x8c9d,
    0x7182, 0x9304, 0xa5b6, 0xc7d8, 0x1357, 0x2468, 0x2468, 0xace1,
];

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
    let prog = assemble(BLIND_SRC).expect("assembles");
    let helpers = HelperTable::new();
    let plain = bpf_jit_arm64::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    let halves = move_wide_halves(&plain.code);
    for h in BLIND_HALVES {
        assert!(halves.contains(&h), "unblinded image lacks {h:#x}");
    }
    for seed in [1u64, 0xdead_beef] {
        let opts = JitOptions::new(&helpers).with_blinding(seed);
        let code = bpf_jit_arm64::compile_code(&prog, &opts).expect("compiles");
        let halves = move_wide_halves(&code.code);
        for h in BLIND_HALVES {
            assert!(
                !halves.contains(&h),
                "seed {seed}: blinded image holds {h:#x}"
            );
        }
    }
    let want = blind_expected();
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
    let prog = assemble(
        "r1 = 1
         r2 = 2
         r3 = 3
         r4 = 4
         r5 = 5
         call kfunc#4242
         exit",
    )
    .expect("assembles");
    let f = emu.layout().helper(HarnessHelper::WeightedSum);
    let helpers = HelperTable::new();
    let resolve = |id: i32, off: i16| (id == 4242 && off == 0).then_some(f);
    let opts = JitOptions::new(&helpers).with_kfuncs(&resolve);
    assert_eq!(run(&mut emu, &prog, &opts, [0; 5]), 55);
}
