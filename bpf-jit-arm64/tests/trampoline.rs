//! AArch64 trampolines under qemu-user: every argument count 0..=8, both
//! modes' return values, several programs on both sides in attach order,
//! detaching, and calls with `bl` (targets in range) and `movz/movk` +
//! `blr` (targets out of range), checked by decoding the image's words.
//!
//! Expected values are computed here in Rust from the arguments (weighted
//! sums, decimal digit strings), never from the JIT's output. The native
//! "original" of `n` arguments is either the harness's C function
//! `WeightedSum8` or a five-instruction function written below with the
//! encoder, whose forms the crate's `llvm-objdump` table checks.

mod common;

use bpf_isa::assemble;
use bpf_jit::{CodeBuffer, HelperTable, JitOptions};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::enc::{self, MovWide, Sf, XReg};
use bpf_jit_arm64::trampoline::{
    emit_code, Arm64Trampoline, Side, TrampolineError, TrampolineMode, ARG_REGS,
};
use bpf_jit_arm64::Atomics;
use common::{compile_at, emulator, region_base, Region};

const BL_MASK: u32 = 0xfc00_0000;
const BL: u32 = 0x9400_0000;
const BLR_X16: u32 = 0xd63f_0200;

/// Where things go in the code regions (offsets from a region's start).
const TRAMP: u64 = 0x10_0000;
const TRAMP_ALT: u64 = 0x18_0000;
const ORIGINAL: u64 = 0x20_0000;
const PROGS: u64 = 0x30_0000;

fn words(code: &[u8]) -> Vec<u32> {
    code.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn count_bl(code: &[u8]) -> usize {
    words(code).iter().filter(|&&w| w & BL_MASK == BL).count()
}

fn count_blr(code: &[u8]) -> usize {
    words(code).iter().filter(|&&w| w == BLR_X16).count()
}

/// Distinct argument values with bits in both halves.
fn args() -> [u64; 8] {
    core::array::from_fn(|i| ((i as u64 + 1) << 40) | (0x100 + 17 * i as u64))
}

/// The call's eight registers: the first `n` arguments, then junk the
/// trampoline must not pass on.
fn regs(n: usize) -> [u64; 8] {
    let a = args();
    core::array::from_fn(|i| if i < n { a[i] } else { 0xdead_0000 + i as u64 })
}

/// `a[0] + 2 a[1] + ... + n a[n-1]` (wrapping), computed here.
fn weighted(a: &[u64]) -> u64 {
    a.iter().enumerate().fold(0u64, |s, (i, &v)| {
        s.wrapping_add(v.wrapping_mul(i as u64 + 1))
    })
}

/// A native AAPCS64 function of `n` integer arguments returning their
/// weighted sum: `mov x9, #0`; per argument `mov x10, #(i + 1)` +
/// `madd x9, x<i>, x10, x9`; `mov x0, x9`; `ret`.
fn native_weighted(n: usize) -> Vec<u8> {
    let mut b = CodeBuffer::default();
    let (acc, k) = (XReg::X9, XReg::X10);
    enc::mov_wide(&mut b, Sf::X, MovWide::Z, acc, 0, 0);
    for (i, &r) in ARG_REGS.iter().take(n).enumerate() {
        enc::mov_wide(&mut b, Sf::X, MovWide::Z, k, i as u16 + 1, 0);
        enc::madd(&mut b, Sf::X, false, acc, r, k, acc);
    }
    enc::mov(&mut b, Sf::X, XReg::X0, acc);
    enc::ret(&mut b);
    b.take_bytes()
}

/// Compiles `src` for `addr` and writes it there; returns `addr`.
fn load_prog(emu: &mut Emulator, src: &str, addr: u64) -> u64 {
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let code = compile_at(&prog, &JitOptions::new(&helpers), addr, Atomics::Lse).expect("compiles");
    emu.write(addr, &code.code).expect("write program");
    addr
}

/// Writes the trampoline's image for `base` there and calls it with `regs`.
fn run(emu: &mut Emulator, t: &Arm64Trampoline, base: u64, regs: [u64; 8]) -> (u64, Vec<u8>) {
    let code = t.emit_code(Some(base)).expect("emits");
    emu.write(base, &code).expect("write trampoline");
    let r = emu.call8(base, regs).expect("trampoline runs");
    (r, code)
}

/// An entry program that clobbers every eBPF argument register (x0-x4)
/// and r0 (x7), returning 77.
const CLOBBER: &str = "
    r1 = 0x5151
    r2 = 0x5252
    r3 = 0x5353
    r4 = 0x5454
    r5 = 0x5555
    r0 = 77
    exit";

#[test]
fn every_argument_count_reaches_the_original() {
    let Some(mut emu) = emulator("trampoline argument counts") else {
        return;
    };
    let near = region_base(&emu, Region::Near, 0);
    let clobber = load_prog(&mut emu, CLOBBER, near + PROGS);
    let ws8 = emu.layout().helper(HarnessHelper::WeightedSum8);
    for n in 0..=8 {
        let orig = near + ORIGINAL + 0x1000 * n as u64;
        emu.write(orig, &native_weighted(n))
            .expect("write original");
        let expected = weighted(&args()[..n]);
        for mode in [TrampolineMode::Observe, TrampolineMode::Replace] {
            let mut t = Arm64Trampoline::new(n, Some(orig), mode).expect("new");
            let (r, _) = run(&mut emu, &t, near + TRAMP, regs(n));
            assert_eq!(r, expected, "{n} args, {mode:?}, no programs");
            // Entry programs clobber x0-x7: the arguments come from ctx.
            t.attach_entry(clobber);
            t.attach_entry(clobber);
            let (r, _) = run(&mut emu, &t, near + TRAMP, regs(n));
            assert_eq!(r, expected, "{n} args, {mode:?}, entry programs");
        }
    }
    // The harness's C function of eight arguments as the original.
    let mut t = Arm64Trampoline::new(8, Some(ws8), TrampolineMode::Observe).expect("new");
    t.attach_entry(clobber);
    let (r, _) = run(&mut emu, &t, near + TRAMP, args());
    assert_eq!(r, weighted(&args()));
}

/// `r0 = sum (i + 1) * ctx[i] + ctx[n]`, as eBPF text.
fn ctx_reader(n: usize) -> String {
    let mut s = String::from("r0 = 0\n");
    for i in 0..n {
        s += &format!("r2 = *(u64 *)(r1 + {})\nr2 *= {}\nr0 += r2\n", 8 * i, i + 1);
    }
    s += &format!("r2 = *(u64 *)(r1 + {})\nr0 += r2\nexit\n", 8 * n);
    s
}

#[test]
fn programs_see_the_arguments_in_the_context_array() {
    let Some(mut emu) = emulator("trampoline context array") else {
        return;
    };
    let near = region_base(&emu, Region::Near, 0);
    for n in 0..=8 {
        let p = load_prog(&mut emu, &ctx_reader(n), near + PROGS + 0x1000 * n as u64);
        // Replace without an original: the entry program's r0 is returned.
        // ctx[n] starts at 0, so the result is the weighted sum alone.
        let mut t = Arm64Trampoline::new(n, None, TrampolineMode::Replace).expect("new");
        t.attach_entry(p);
        let (r, _) = run(&mut emu, &t, near + TRAMP, regs(n));
        assert_eq!(r, weighted(&args()[..n]), "{n} args, Replace");
        // Observe: the program's r0 is ignored, no original: 0.
        let mut t = Arm64Trampoline::new(n, None, TrampolineMode::Observe).expect("new");
        t.attach_entry(p);
        t.attach_exit(p);
        let (r, _) = run(&mut emu, &t, near + TRAMP, regs(n));
        assert_eq!(r, 0, "{n} args, Observe");
    }
}

#[test]
fn return_values_in_both_modes() {
    let Some(mut emu) = emulator("trampoline modes") else {
        return;
    };
    let near = region_base(&emu, Region::Near, 0);
    let orig = near + ORIGINAL;
    emu.write(orig, &native_weighted(2))
        .expect("write original");
    let times10 = load_prog(
        &mut emu,
        "r0 = *(u64 *)(r1 + 16)\nr0 *= 10\nexit",
        near + PROGS,
    );
    let five = load_prog(&mut emu, "r0 = 5\nexit", near + PROGS + 0x1000);
    let seven = load_prog(&mut emu, "r0 = 7\nexit", near + PROGS + 0x2000);
    let call = |emu: &mut Emulator, mode, original, entry: &[u64], exit: &[u64]| {
        let mut t = Arm64Trampoline::new(2, original, mode).expect("new");
        for &p in entry {
            t.attach_entry(p);
        }
        for &p in exit {
            t.attach_exit(p);
        }
        run(emu, &t, near + TRAMP, [3, 4, 0, 0, 0, 0, 0, 0]).0
    };
    use TrampolineMode::{Observe, Replace};
    // The original: 3 + 2 * 4 = 11.
    assert_eq!(call(&mut emu, Observe, Some(orig), &[], &[times10]), 11);
    assert_eq!(call(&mut emu, Replace, Some(orig), &[], &[times10]), 110);
    // Exit programs chain through ctx[2]: 11 * 10 * 10.
    assert_eq!(
        call(&mut emu, Replace, Some(orig), &[], &[times10, times10]),
        1100
    );
    // The original's result replaces the entry programs' r0.
    assert_eq!(call(&mut emu, Replace, Some(orig), &[five, seven], &[]), 11);
    // No original: the last program's r0; an exit program sees it.
    assert_eq!(call(&mut emu, Replace, None, &[five, seven], &[]), 7);
    assert_eq!(call(&mut emu, Replace, None, &[seven], &[times10]), 70);
    assert_eq!(call(&mut emu, Observe, None, &[five, seven], &[seven]), 0);
    assert_eq!(call(&mut emu, Replace, None, &[], &[]), 0);
    assert_eq!(call(&mut emu, Observe, Some(orig), &[five], &[seven]), 11);
}

/// A program appending digit `k` to the decimal counter at `data`
/// (`*data = *data * 10 + k`); with `save_ret`, it also copies
/// `ctx[nargs]` (the running return value) to `data + 8 * k`.
fn recorder(data: u64, k: u64, save_ret: Option<usize>) -> String {
    let mut s = format!(
        "r2 = {data:#x} ll\nr3 = *(u64 *)(r2 + 0)\nr3 *= 10\nr3 += {k}\n*(u64 *)(r2 + 0) = r3\n"
    );
    if let Some(nargs) = save_ret {
        s += &format!(
            "r4 = *(u64 *)(r1 + {})\n*(u64 *)(r2 + {}) = r4\n",
            8 * nargs,
            8 * k
        );
    }
    s += "r0 = 0\nexit\n";
    s
}

fn read_u64s(emu: &mut Emulator, addr: u64, n: usize) -> Vec<u64> {
    let b = emu.read(addr, 8 * n).expect("read data");
    b.chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

#[test]
fn attach_order_and_detach() {
    let Some(mut emu) = emulator("trampoline attach order") else {
        return;
    };
    let near = region_base(&emu, Region::Near, 0);
    let data = emu.layout().data;
    let ws8 = emu.layout().helper(HarnessHelper::WeightedSum8);
    let p: Vec<u64> = (1..=5)
        .map(|k| {
            // Exit programs (3 and 5) record the return value they see.
            let save = (k % 2 == 1 && k > 1).then_some(8);
            let src = recorder(data, k, save);
            load_prog(&mut emu, &src, near + PROGS + 0x1000 * k)
        })
        .collect();
    let expected_ret = weighted(&args());
    let mut t = Arm64Trampoline::new(8, Some(ws8), TrampolineMode::Observe).expect("new");
    // Interleaved attaches: each side keeps its own order.
    let e1 = t.attach_entry(p[0]);
    let x3 = t.attach_exit(p[2]);
    let e2 = t.attach_entry(p[1]);
    let e4 = t.attach_entry(p[3]);
    let x5 = t.attach_exit(p[4]);
    assert_eq!(t.attached(Side::Entry), vec![e1, e2, e4]);
    assert_eq!(t.attached(Side::Exit), vec![x3, x5]);

    let call = |emu: &mut Emulator, t: &Arm64Trampoline, base: u64| {
        emu.write(data, &[0; 48]).expect("clear data");
        let (r, _) = run(emu, t, base, args());
        (r, read_u64s(emu, data, 6))
    };
    let (r, d) = call(&mut emu, &t, near + TRAMP);
    assert_eq!(r, expected_ret);
    assert_eq!(d[0], 12435, "entry 1, 2, 4, then exit 3, 5");
    // The exit programs ran after the original: they saw its result.
    assert_eq!((d[3], d[5]), (expected_ret, expected_ret));

    // Detach entry 2 and exit 5; the new image goes over the old one.
    t.detach(e2).expect("attached");
    t.detach(x5).expect("attached");
    assert!(matches!(t.detach(e2), Err(TrampolineError::NotAttached(n)) if n == e2.get()));
    let (r, d) = call(&mut emu, &t, near + TRAMP);
    assert_eq!((r, d[0], d[5]), (expected_ret, 143, 0));
    // ... or at another address: the same behaviour.
    let (r, d) = call(&mut emu, &t, near + TRAMP_ALT);
    assert_eq!((r, d[0]), (expected_ret, 143));

    // Attach again after detaching: runs last on its side.
    t.attach_entry(p[1]);
    let (_, d) = call(&mut emu, &t, near + TRAMP);
    assert_eq!(d[0], 1423);
}

#[test]
fn near_targets_are_called_with_bl_far_ones_with_blr() {
    let Some(mut emu) = emulator("trampoline bl/blr calls") else {
        return;
    };
    let near = region_base(&emu, Region::Near, 0);
    let far = region_base(&emu, Region::Far, 0);
    let data = emu.layout().data;
    // The original in the harness's text: within bl range of the near
    // region only.
    let ws8 = emu.layout().helper(HarnessHelper::WeightedSum8);
    let near_prog = load_prog(&mut emu, &recorder(data, 1, None), near + PROGS);
    let far_prog = load_prog(&mut emu, &recorder(data, 2, Some(8)), far + PROGS);
    let expected = weighted(&args());

    let mut t = Arm64Trampoline::new(8, Some(ws8), TrampolineMode::Observe).expect("new");
    t.attach_entry(near_prog);
    t.attach_exit(far_prog);
    // (base, bl count, blr count): from the near region, the near
    // program and the original are in range, the far program is not;
    // from the far region only the far program is; with no base, every
    // call is absolute.
    let cases = [
        (near + TRAMP, Some(near + TRAMP), 2, 1),
        (far + TRAMP, Some(far + TRAMP), 1, 2),
        (far + TRAMP_ALT, None, 0, 3),
    ];
    for (at, base, bl, blr) in cases {
        let code = t.emit_code(base).expect("emits");
        assert_eq!(
            (count_bl(&code), count_blr(&code)),
            (bl, blr),
            "image at {at:#x}"
        );
        emu.write(at, &code).expect("write trampoline");
        emu.write(data, &[0; 24]).expect("clear data");
        let r = emu.call8(at, args()).expect("runs");
        let d = read_u64s(&mut emu, data, 3);
        assert_eq!(
            (r, d[0], d[2]),
            (expected, 12, expected),
            "image at {at:#x}"
        );
    }

    // Only near programs and a near trampoline: only bl.
    let code = emit_code(
        8,
        Some(ws8),
        TrampolineMode::Replace,
        &[near_prog],
        &[near_prog],
        Some(near + TRAMP),
    )
    .expect("emits");
    assert_eq!((count_bl(&code), count_blr(&code)), (3, 0));
    emu.write(near + TRAMP, &code).expect("write trampoline");
    emu.write(data, &[0; 8]).expect("clear data");
    // Replace: the last exit program returns 0.
    assert_eq!(emu.call8(near + TRAMP, args()).expect("runs"), 0);
    assert_eq!(read_u64s(&mut emu, data, 1), vec![11]);
}

/// A native function returning `sp & 15` at its entry: `mov x0, sp`;
/// `and x0, x0, #0xf`; `ret`.
fn native_sp_low_bits() -> Vec<u8> {
    let mut b = CodeBuffer::default();
    enc::mov_sp(&mut b, XReg::X0, XReg::SP);
    let imm = enc::logical_imm(Sf::X, 15).expect("0xf is a bitmask immediate");
    enc::logic_imm(&mut b, Sf::X, enc::Logic::And, XReg::X0, XReg::X0, imm);
    enc::ret(&mut b);
    b.take_bytes()
}

#[test]
fn calls_are_made_with_sp_16_byte_aligned() {
    let Some(mut emu) = emulator("trampoline stack alignment") else {
        return;
    };
    let near = region_base(&emu, Region::Near, 0);
    let probe = near + ORIGINAL;
    emu.write(probe, &native_sp_low_bits())
        .expect("write probe");
    // The probe's own sp is what the harness (a C caller) gives it.
    assert_eq!(emu.call8(probe, [0; 8]).expect("runs"), 0);
    for n in 0..=8 {
        // As the original (Observe returns its result) and as a program
        // (Replace without an original returns the last program's r0).
        let mut t = Arm64Trampoline::new(n, Some(probe), TrampolineMode::Observe).expect("new");
        assert_eq!(
            run(&mut emu, &t, near + TRAMP, regs(n)).0,
            0,
            "{n}: original"
        );
        t = Arm64Trampoline::new(n, None, TrampolineMode::Replace).expect("new");
        t.attach_exit(probe);
        assert_eq!(
            run(&mut emu, &t, near + TRAMP, regs(n)).0,
            0,
            "{n}: program"
        );
    }
}

#[test]
fn bench_op_times_a_loop_and_reports_faults() {
    let Some(mut emu) = emulator("harness BENCH op") else {
        return;
    };
    let ws8 = emu.layout().helper(HarnessHelper::WeightedSum8);
    let ns = emu.bench8(ws8, 10_000, args()).expect("runs");
    assert!(ns > 0, "10,000 calls take some time");
    // A zero word is `udf #0`: SIGILL (4), and the harness carries on.
    let udf = region_base(&emu, Region::Far, 0x3f_0000);
    emu.write(udf, &[0; 4]).expect("write udf");
    assert!(matches!(
        emu.bench8(udf, 10, args()),
        Err(bpf_jit_arm64::emu::EmuError::Fault(4))
    ));
    assert_eq!(
        emu.call8(ws8, args()).expect("still usable"),
        weighted(&args())
    );
}
