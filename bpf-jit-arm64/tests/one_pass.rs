//! One-pass layout on AArch64: a program whose first-pass choices all hold
//! is done in one pass (fields fixed up in place) with the bytes the pass
//! loop produces, and runs. Field layouts by hand from the Arm ARM:
//! `b.cond` is `0101_0100` in bits 24-31 with a 19-bit word offset in bits
//! 5-23; `b` is `000101` in bits 26-31 with a 26-bit word offset; `bl` is
//! `100101`; `adr` has bit 31 clear and `10000` in bits 24-28, the byte
//! offset's low two bits in 29-30 and the rest in 5-23.

mod common;

use bpf_isa::{assemble, Program};
use bpf_jit::{CompiledCode, HelperTable, JitOptions, MacroAssembler};
use common::emulator;

fn compile(prog: &Program, one_pass: bool) -> CompiledCode {
    let helpers = HelperTable::new();
    let mut masm = bpf_jit_arm64::Arm64Masm::new();
    masm.buffer_mut().set_one_pass(one_pass);
    bpf_jit::compile(
        &mut masm,
        prog,
        &JitOptions::new(&helpers).with_inline_leaf_calls(false),
    )
    .expect("compiles")
}

fn word(code: &CompiledCode, at: u32) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(code.code[at..at + 4].try_into().unwrap())
}

/// Sign-extends the `bits`-bit field of `w` starting at bit `lo`.
fn field(w: u32, lo: u32, bits: u32) -> i64 {
    let v = (w >> lo) & ((1 << bits) - 1);
    i64::from(((v << (32 - bits)) as i32) >> (32 - bits))
}

#[test]
fn one_pass_matches_the_pass_loop_and_runs() {
    let src = "
         r0 = 0
         r3 = 5
        top:
         if r3 == 0 goto done
         r0 += r3
         r3 += -1
         goto top
        done:
         goto next
        next:
         call pc f
         r2 = subprog[f]
         exit
        f:
         r0 += 100
         exit";
    let prog = assemble(src).expect("assembles");
    let code = compile(&prog, true);
    assert_eq!(code.passes, 1);
    let looped = compile(&prog, false);
    assert!(looped.passes >= 2, "{} passes", looped.passes);
    assert_eq!(looped.code, code.code);
    assert_eq!(looped.insn_offsets, code.insn_offsets);
    let off = &code.insn_offsets;
    // Positions: 0 r0 = 0, 1 r3 = 5, 2 if, 3 add, 4 add, 5 goto top,
    // 6 goto next (left out), 7 call, 8 ld_imm64 (two slots), 9 exit,
    // 10 f.
    // Forward b.cond: the `cmp` then `b.eq` to `done`.
    let bcond_at = off[3] - 4;
    let w = word(&code, bcond_at);
    assert_eq!(w >> 24, 0x54, "{w:#010x}");
    assert_eq!(i64::from(bcond_at) + 4 * field(w, 5, 19), i64::from(off[6]));
    // Backward b: the last word of `goto top`.
    let b_at = off[6] - 4;
    let w = word(&code, b_at);
    assert_eq!(w >> 26, 0b000101, "{w:#010x}");
    assert_eq!(i64::from(b_at) + 4 * field(w, 0, 26), i64::from(off[2]));
    assert_eq!(off[6], off[7], "goto +0 left out");
    // The bl of the call (before the result move) lands on f's entry.
    let bl_at = off[8] - 8;
    let w = word(&code, bl_at);
    assert_eq!(w >> 26, 0b100101, "{w:#010x}");
    assert_eq!(
        i64::from(bl_at) + 4 * field(w, 0, 26),
        i64::from(code.entries[1])
    );
    // adr of f's entry.
    let adr_at = off[8];
    let w = word(&code, adr_at);
    assert_eq!((w >> 31, (w >> 24) & 0x1f), (0, 0b10000), "{w:#010x}");
    let disp = (field(w, 5, 19) << 2) | i64::from((w >> 29) & 3);
    assert_eq!(i64::from(adr_at) + disp, i64::from(code.entries[1]));

    let Some(mut emu) = emulator("one-pass code") else {
        return;
    };
    let base = common::region_base(&emu, common::Region::Near, 0);
    emu.write(base, &code.code).expect("write");
    // 5 + 4 + 3 + 2 + 1 = 15, plus 100 in f.
    assert_eq!(emu.call(base, [0; 5]).expect("runs"), 115);
}
