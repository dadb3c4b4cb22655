//! Pointer sums forwarded into their uses (`forward_address` in the
//! driver): `rX = rA; rX += rB` whose only uses up to `rX = *(rX + off)`
//! are addresses becomes `lea rY, [rA + rB + imm]` and `movzx/mov r,
//! [rA + rB + off]`, unless `rX` is live where a jump in between goes.
//! Results are hand-computed; the image is decoded with iced-x86.

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, Register};

/// Runs `src` with r1 = `mem`'s address and r2 = `b`; returns r0 and the
/// decoded image.
fn run(src: &str, mem: &mut [u8], b: u64) -> (u64, Vec<Instruction>) {
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let code = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
    let dec = Decoder::with_ip(64, &code.code, 0, DecoderOptions::NONE);
    let insns = dec.into_iter().collect();
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("maps");
    // SAFETY: the programs only read `mem` within its length.
    (
        unsafe { jit.call([mem.as_mut_ptr() as u64, b, 0, 0, 0]) },
        insns,
    )
}

/// Whether some instruction with mnemonic `m` reads memory through an
/// index register.
fn indexed(insns: &[Instruction], m: Mnemonic) -> bool {
    insns
        .iter()
        .any(|i| i.mnemonic() == m && i.memory_index() != Register::None)
}

/// The csum loop of the benchmarks: sum of the u16 words of `mem`.
const CSUM: &str = "r3 = r1
r3 += r2
r4 = 0
r2 = 0
loop:
r5 = r1
r5 += r4
r0 = r5
r0 += 2
if r0 > r3 goto out
r5 = *(u16 *)(r5 + 0)
r2 += r5
r4 += 2
if r4 != 64 goto loop
out:
r0 = r2
exit";

fn words(mem: &[u8]) -> u64 {
    mem.chunks_exact(2)
        .map(|w| u64::from(u16::from_le_bytes([w[0], w[1]])))
        .sum()
}

#[test]
fn bounds_check_and_load_use_the_sum_in_place() {
    let mut mem: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
    let want = words(&mem);
    let (r0, insns) = run(CSUM, &mut mem, 64);
    assert_eq!(r0, want);
    assert!(indexed(&insns, Mnemonic::Movzx), "{insns:?}");
    // `r3 = r1 + r2` and `r0 = r1 + r4 + 2`; `r5 = r1 + r4` is gone.
    let leas = insns
        .iter()
        .filter(|i| i.mnemonic() == Mnemonic::Lea)
        .count();
    assert_eq!(leas, 2, "{insns:?}");
    // A shorter buffer: the bounds check leaves the loop early.
    let (r0, _) = run(CSUM, &mut mem, 10);
    assert_eq!(r0, words(&mem[..10]));
}

#[test]
fn a_sum_live_where_the_jump_goes_is_computed() {
    // r5 is read at `out`: it must hold r1 + r4 there.
    let src = CSUM.replace("out:\nr0 = r2", "out:\nr0 = r5\nr0 -= r1");
    let mut mem = [7u8; 64];
    let (r0, insns) = run(&src, &mut mem, 10);
    // The bounds check leaves the loop at r4 = 10 (r1 + 12 > r1 + 10).
    assert_eq!(r0, 10);
    assert!(!indexed(&insns, Mnemonic::Movzx), "{insns:?}");
}

#[test]
fn r0_sum_before_an_exit_target_is_computed() {
    // The jump goes to `exit`, which reads r0 = r1 + r2 (the first
    // instruction keeps the sum off position 0, a subprogram start).
    let src = "r3 = 0
r0 = r1
r0 += r2
if r2 > 3 goto out
r0 = *(u8 *)(r0 + 1)
out:
r0 -= r1
exit";
    let mut mem = [0u8, 1, 2, 3, 4, 5, 6, 7];
    let (r0, insns) = run(src, &mut mem, 5);
    assert_eq!(r0, 5);
    assert!(!indexed(&insns, Mnemonic::Movzx), "{insns:?}");
    // Not taken: the byte at 2 + 1, minus the pointer.
    let (r0, _) = run(src, &mut mem, 2);
    assert_eq!(r0, 3u64.wrapping_sub(mem.as_ptr() as u64));
}

#[test]
fn other_loads_and_displacements_in_the_window() {
    // r7 (r13 as the base: needs a displacement even at 0) + r2; an imm32
    // `lea` displacement, a u32 load into r4 at +4, then the u64 load that
    // overwrites r6.
    let src = "r7 = r1
r6 = r7
r6 += r2
r3 = r6
r3 += 100000
r4 = *(u32 *)(r6 + 4)
r6 = *(u64 *)(r6 + 0)
r0 = r6
r0 += r4
r3 -= r7
r0 += r3
exit";
    let mut mem: Vec<u8> = (0..32u8).collect();
    let base = 8usize;
    let (r0, insns) = run(src, &mut mem, base as u64);
    let q = u64::from_le_bytes(mem[base..base + 8].try_into().unwrap());
    let d = u64::from(u32::from_le_bytes(
        mem[base + 4..base + 8].try_into().unwrap(),
    ));
    assert_eq!(r0, q.wrapping_add(d).wrapping_add(100_000 + base as u64));
    assert!(indexed(&insns, Mnemonic::Mov), "{insns:?}");
}
