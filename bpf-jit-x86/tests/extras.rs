//! `may_goto`, `ld_abs`/`ld_ind` and constant blinding on x86-64, run
//! in-process. Expected values are computed by hand (or by plain Rust
//! arithmetic in the test) and, where the interpreter can run the same
//! program, checked against `bpf-vm` too.

use bpf_isa::arbitrary::scenarios;
use bpf_isa::{assemble, Program};
use bpf_jit::{HelperTable, JitOptions, MAY_GOTO_BUDGET};

fn interp(prog: &Program, mem: &mut [u8]) -> u64 {
    let vm = bpf_vm::Interpreter::new(prog).expect("interpreter loads");
    vm.run_mem(mem).expect("interpreter runs")
}

/// `BPF_MAX_LOOPS` = 8 * 1024 * 1024 = 8388608 (include/linux/bpf.h).
#[test]
fn budget_is_bpf_max_loops() {
    assert_eq!(MAY_GOTO_BUDGET, 8_388_608);
}

/// A loop bounded only by `may_goto`: it runs once per unit of budget, so
/// r0 = 8388608 (by hand: the slot starts at 8388608 and each pass
/// decrements it once until it reads 0).
#[test]
fn may_goto_loop_runs_the_budget() {
    let prog = assemble(scenarios::MAY_GOTO_LOOP).expect("assembles");
    let helpers = HelperTable::new();
    let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers)).expect("compiles");
    // SAFETY: no memory accesses besides the frame.
    let got = unsafe { jit.call([0; 5]) };
    assert_eq!(got, scenarios::MAY_GOTO_LOOP_RESULT);
    assert_eq!(
        interp(&prog, &mut [0u8; 8]),
        scenarios::MAY_GOTO_LOOP_RESULT
    );
}

/// Each frame has its own budget (the kernel's slot is per subprogram
/// frame): main exhausts its own, then calls a subprogram that counts its
/// fresh budget, twice. By hand: 3 * 8388608 = 25165824. The program's
/// own stack word (r10 - 8, with a declared depth of 8 bytes) survives.
#[test]
fn may_goto_budget_per_frame_and_stack_intact() {
    let prog = assemble(scenarios::MAY_GOTO_PER_FRAME).expect("assembles");
    let helpers = HelperTable::new();
    let depths = scenarios::MAY_GOTO_PER_FRAME_DEPTHS;
    for opts in [
        JitOptions::new(&helpers),
        JitOptions::new(&helpers).with_stack_depths(&depths),
        JitOptions::new(&helpers).with_blinding(7),
    ] {
        let jit = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
        // SAFETY: only the frames' own stack is accessed.
        assert_eq!(
            unsafe { jit.call([0; 5]) },
            scenarios::MAY_GOTO_PER_FRAME_RESULT,
            "{opts:?}"
        );
    }
    assert_eq!(
        interp(&prog, &mut [0u8; 8]),
        scenarios::MAY_GOTO_PER_FRAME_RESULT
    );
}

/// On a private stack the budget slot lies inside each frame's region:
/// the private-stack size grows by 16 per frame that has a may_goto (by
/// hand: main 16 + 16, `count` 0 + 16 = 48 bytes), the result is the same
/// 3 * 8388608, and guard words around the region survive.
#[test]
fn may_goto_on_a_private_stack() {
    let prog = assemble(scenarios::MAY_GOTO_PER_FRAME).expect("assembles");
    let helpers = HelperTable::new();
    let depths = scenarios::MAY_GOTO_PER_FRAME_DEPTHS;
    let opts = JitOptions::new(&helpers)
        .with_stack_depths(&depths)
        .with_private_stack(true);
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
    assert_eq!(jit.private_stack_bytes(), 48);
    const GUARD: u64 = 0x5ca1_ab1e_dead_beef;
    // 8 guard words, 6 words of region (48 bytes), 8 guard words.
    let mut region = [GUARD; 22];
    let top = region.as_mut_ptr() as u64 + 14 * 8;
    let top = top & !15;
    // SAFETY: the region below `top` holds at least 48 bytes (top was
    // rounded down inside the array) and is used by nothing else.
    let got = unsafe { jit.call_with_stack([0; 5], top) };
    assert_eq!(got, scenarios::MAY_GOTO_PER_FRAME_RESULT);
    let base = region.as_ptr() as u64;
    for (i, w) in region.iter().enumerate() {
        let at = base + 8 * i as u64;
        if at < top - 48 || at >= top {
            assert_eq!(*w, GUARD, "word {i} outside the region changed");
        }
    }
}

/// The test's `ld_abs` context: what r6 points at.
#[repr(C)]
struct Skb {
    data: *const u8,
    len: u64,
}

/// The `ld_abs` function of the tests: the kernel's
/// `bpf_skb_load_helper_{8,16,32}` contract (big-endian bytes to a host
/// number, negative on a failed load) over [`Skb`].
unsafe extern "C" fn skb_load(ctx: u64, off: u64, size: u64, _: u64, _: u64) -> u64 {
    // SAFETY: the tests pass a valid `Skb` in r6.
    let skb = unsafe { &*(ctx as *const Skb) };
    let off = off as u32 as i32;
    let Ok(off) = u64::try_from(off) else {
        return -14i64 as u64;
    };
    if off.saturating_add(size) > skb.len {
        return -14i64 as u64;
    }
    // SAFETY: in bounds of the packet, checked above.
    let bytes = unsafe { std::slice::from_raw_parts(skb.data.add(off as usize), size as usize) };
    bytes.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
}

fn run_ldabs(src: &str, pkt: &[u8], blind: Option<u64>) -> u64 {
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let mut opts = JitOptions::new(&helpers).with_ld_abs(skb_load);
    opts.blind_constants = blind;
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
    let skb = Skb {
        data: pkt.as_ptr(),
        len: pkt.len() as u64,
    };
    // SAFETY: the programs only read the packet through the ld_abs function.
    unsafe { jit.call([&skb as *const Skb as u64, 0, 0, 0, 0]) }
}

/// The shared cases of `scenarios::LD_ABS_CASES`, without and with
/// blinding.
#[test]
fn ld_abs_and_ld_ind() {
    for blind in [None, Some(3)] {
        for (src, want) in scenarios::LD_ABS_CASES {
            let got = run_ldabs(src, &scenarios::LD_ABS_PACKET, blind);
            assert_eq!(got, want, "{src} {blind:?}");
        }
    }
}

#[test]
fn ld_abs_needs_the_function_and_the_main_subprogram() {
    let helpers = HelperTable::new();
    let prog = assemble("r6 = r1\n r0 = *(u8 *)skb[0]\n exit").expect("assembles");
    let e = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).unwrap_err();
    assert_eq!(e.index, Some(1));
    let prog = assemble(
        "call pc f
         exit
       f:
         r6 = r1
         r0 = *(u8 *)skb[0]
         exit",
    )
    .expect("assembles");
    let opts = JitOptions::new(&helpers).with_ld_abs(skb_load);
    let e = bpf_jit_x86::compile_code(&prog, &opts).unwrap_err();
    assert_eq!(e.index, Some(3));
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn blinding_hides_every_immediate() {
    let prog = assemble(scenarios::BLIND_SRC).expect("assembles");
    let helpers = HelperTable::new();
    let plain = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    for imm in scenarios::BLIND_IMMS {
        assert!(
            contains(&plain.code, &imm.to_le_bytes()),
            "unblinded image lacks {imm:#x}"
        );
    }
    for seed in [1u64, 0xdead_beef] {
        let opts = JitOptions::new(&helpers).with_blinding(seed);
        let blinded = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
        for imm in scenarios::BLIND_IMMS {
            assert!(
                !contains(&blinded.code, &imm.to_le_bytes()),
                "seed {seed}: blinded image holds {imm:#x}"
            );
        }
    }
    let want = scenarios::blind_expected();
    for opts in [
        JitOptions::new(&helpers),
        JitOptions::new(&helpers).with_blinding(1),
        JitOptions::new(&helpers).with_blinding(bpf_jit::random_blinding_seed()),
    ] {
        let jit = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
        // SAFETY: only the frame's stack is accessed.
        assert_eq!(unsafe { jit.call([0; 5]) }, want, "{opts:?}");
    }
    assert_eq!(interp(&prog, &mut [0u8; 8]), want);
}

#[test]
fn different_keys_give_different_images() {
    let prog = assemble(scenarios::BLIND_SRC).expect("assembles");
    let helpers = HelperTable::new();
    let a = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers).with_blinding(1))
        .expect("compiles");
    let b = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers).with_blinding(2))
        .expect("compiles");
    let a2 = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers).with_blinding(1))
        .expect("compiles");
    assert_ne!(a.code, b.code);
    assert_eq!(a.code, a2.code, "same seed, same image");
    assert_ne!(
        bpf_jit::random_blinding_seed(),
        bpf_jit::random_blinding_seed()
    );
}

unsafe extern "C" fn weighted(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    a + 2 * b + 3 * c + 4 * d + 5 * e
}

/// kfunc calls go through the resolver to a C-ABI function with r1-r5 as
/// arguments: 1 + 2*2 + 3*3 + 4*4 + 5*5 = 55 by hand; an unresolved BTF
/// id is an error naming the call.
#[test]
fn kfunc_calls_through_the_resolver() {
    let prog = assemble(scenarios::KFUNC_WEIGHTED).expect("assembles");
    let helpers = HelperTable::new();
    let resolve = |id: i32, off: i16| {
        (id == scenarios::KFUNC_WEIGHTED_ID && off == 0)
            .then_some(weighted as bpf_jit::HelperFn as usize as u64)
    };
    let opts = JitOptions::new(&helpers).with_kfuncs(&resolve);
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
    // SAFETY: the kfunc only adds its arguments.
    assert_eq!(
        unsafe { jit.call([0; 5]) },
        scenarios::KFUNC_WEIGHTED_RESULT
    );
    let none = |_: i32, _: i16| None;
    let e = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers).with_kfuncs(&none))
        .unwrap_err();
    assert_eq!(e.index, Some(5));
    let e = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).unwrap_err();
    assert_eq!(e.index, Some(5));
}
