//! Encoding tests: one row per instruction form the backend emits — the
//! emitter call, the expected bytes and the expected disassembly. The
//! expected bytes come from `llvm-mc-14 -triple=aarch64 -mattr=+lse
//! -show-encoding` run on the expected text (branch targets written
//! relative to the row's start); at test time every row's bytes are put
//! into one ELF object and disassembled by a single `llvm-objdump
//! --triple=aarch64 -d` run, which must print the expected text.
//!
//! `BPFKIT_REQUIRE_TOOLS=1` turns a missing `llvm-objdump` into a failure;
//! otherwise the disassembly half is skipped with a message (the byte half
//! always runs).

use super::*;
use crate::enc::{self, AddSub, Cond, Dp2, LdSt, Logic, Lse, MovWide, Rev, Sf, XReg};
use bpf_jit::{EntryKind, FrameInfo};
use BpfReg::*;

struct Row {
    emit: fn(&mut Arm64Masm),
    bytes: &'static str,
    asm: &'static str,
}

fn r(emit: fn(&mut Arm64Masm), bytes: &'static str, asm: &'static str) -> Row {
    Row { emit, bytes, asm }
}

fn b(m: &mut Arm64Masm) -> &mut CodeBuffer {
    m.buffer_mut()
}

const fn x(n: u8) -> XReg {
    XReg::new(n)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn frame(kind: EntryKind, depth: u32, saved: &[BpfReg], tc: bool) -> FrameInfo {
    FrameInfo {
        kind,
        stack_depth: depth,
        callee_saved: saved.iter().fold(0, |m, r| m | 1 << r.num()),
        tail_call_reachable: tc,
        private_stack: false,
        makes_calls: true,
    }
}

fn lse_masm() -> Arm64Masm {
    Arm64Masm::new()
}

/// Image at 0x4000_0000, second layout pass (short forms allowed).
fn near_masm() -> Arm64Masm {
    let mut m = Arm64Masm::with_options(Arm64Options {
        atomics: Atomics::Lse,
        image_base: Some(0x4000_0000),
    });
    for _ in 0..2 {
        m.buffer_mut().begin_pass(1, false);
        m.buffer_mut().bind(Label::new(0));
    }
    m
}

/// Second layout pass where label 1 sat 16 bytes after label 0.
fn relaxed_masm() -> Arm64Masm {
    let mut m = Arm64Masm::new();
    let b = m.buffer_mut();
    b.begin_pass(2, false);
    b.bind(Label::new(0));
    b.put(&[0; 16]);
    b.bind(Label::new(1));
    b.begin_pass(2, false);
    b.bind(Label::new(0));
    m
}

fn llsc_masm() -> Arm64Masm {
    Arm64Masm::with_options(Arm64Options {
        atomics: Atomics::LlSc,
        image_base: None,
    })
}

fn rows() -> Vec<Row> {
    vec![
        r(
            |m| enc::mov(b(m), Sf::X, x(7), x(0)),
            "e7 03 00 aa",
            "mov x7, x0",
        ),
        r(
            |m| enc::mov(b(m), Sf::W, x(19), x(19)),
            "f3 03 13 2a",
            "mov w19, w19",
        ),
        r(
            |m| enc::mov_sp(b(m), XReg::FP, XReg::SP),
            "fd 03 00 91",
            "mov x29, sp",
        ),
        r(
            |m| enc::mov_sp(b(m), XReg::SP, XReg::FP),
            "bf 03 00 91",
            "mov sp, x29",
        ),
        r(
            |m| enc::mov_sp(b(m), x(25), XReg::SP),
            "f9 03 00 91",
            "mov x25, sp",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::W, MovWide::Z, x(0), 0x1234, 0),
            "80 46 82 52",
            "mov w0, #4660",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::W, MovWide::Z, x(1), 0x8000, 1),
            "01 00 b0 52",
            "mov w1, #-2147483648",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::X, MovWide::Z, x(2), 0xabcd, 3),
            "a2 79 f5 d2",
            "mov x2, #-6067193122998190080",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::W, MovWide::N, x(3), 5, 0),
            "a3 00 80 12",
            "mov w3, #-6",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::X, MovWide::N, x(4), 0, 0),
            "04 00 80 92",
            "mov x4, #-1",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::X, MovWide::N, x(9), 0x1234, 2),
            "89 46 c2 92",
            "mov x9, #-20014547599361",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::W, MovWide::K, x(9), 0xffff, 1),
            "e9 ff bf 72",
            "movk w9, #65535, lsl #16",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::X, MovWide::K, x(9), 0x5678, 1),
            "09 cf aa f2",
            "movk x9, #22136, lsl #16",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::X, MovWide::K, x(9), 0x9abc, 2),
            "89 57 d3 f2",
            "movk x9, #39612, lsl #32",
        ),
        r(
            |m| enc::mov_wide(b(m), Sf::X, MovWide::K, x(9), 0xdef0, 3),
            "09 de fb f2",
            "movk x9, #57072, lsl #48",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::X,
                    Logic::Orr,
                    x(0),
                    XReg::ZR,
                    enc::logical_imm(Sf::X, 0x5555_5555_5555_5555).unwrap(),
                )
            },
            "e0 f3 00 b2",
            "mov x0, #6148914691236517205",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::W,
                    Logic::Orr,
                    x(1),
                    XReg::ZR,
                    enc::logical_imm(Sf::W, 0x00ff_00ff).unwrap(),
                )
            },
            "e1 9f 00 32",
            "mov w1, #16711935",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, false, false, x(0), x(0), 4095, false),
            "00 fc 3f 91",
            "add x0, x0, #4095",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::W, true, false, x(1), x(1), 1, false),
            "21 04 00 51",
            "sub w1, w1, #1",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, true, false, x(2), x(2), 0x123, true),
            "42 8c 44 d1",
            "sub x2, x2, #291, lsl #12",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, true, false, XReg::SP, XReg::SP, 512, false),
            "ff 03 08 d1",
            "sub sp, sp, #512",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, true, false, XReg::SP, XReg::SP, 1, true),
            "ff 07 40 d1",
            "sub sp, sp, #1, lsl #12",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, false, false, x(11), x(25), 8, false),
            "2b 23 00 91",
            "add x11, x25, #8",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, true, true, XReg::ZR, x(12), 33, false),
            "9f 85 00 f1",
            "cmp x12, #33",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::W, true, true, XReg::ZR, x(0), 7, false),
            "1f 1c 00 71",
            "cmp w0, #7",
        ),
        r(
            |m| enc::add_sub_imm(b(m), Sf::X, false, true, XReg::ZR, x(1), 5, false),
            "3f 14 00 b1",
            "cmn x1, #5",
        ),
        r(
            |m| enc::add_sub_reg(b(m), Sf::X, AddSub::Add, x(7), x(7), x(0)),
            "e7 00 00 8b",
            "add x7, x7, x0",
        ),
        r(
            |m| enc::add_sub_reg(b(m), Sf::W, AddSub::Sub, x(19), x(19), x(9)),
            "73 02 09 4b",
            "sub w19, w19, w9",
        ),
        r(
            |m| enc::add_sub_reg(b(m), Sf::X, AddSub::Subs, XReg::ZR, x(2), x(3)),
            "5f 00 03 eb",
            "cmp x2, x3",
        ),
        r(
            |m| enc::add_sub_reg(b(m), Sf::W, AddSub::Subs, XReg::ZR, x(2), x(10)),
            "5f 00 0a 6b",
            "cmp w2, w10",
        ),
        r(
            |m| enc::add_uxtw3(b(m), x(9), x(1), x(2)),
            "29 4c 22 8b",
            "add x9, x1, w2, uxtw #3",
        ),
        r(
            |m| enc::sub_sp_reg(b(m), x(10)),
            "ff 63 2a cb",
            "sub sp, sp, x10",
        ),
        r(
            |m| enc::neg(b(m), Sf::X, x(7), x(7)),
            "e7 03 07 cb",
            "neg x7, x7",
        ),
        r(
            |m| enc::neg(b(m), Sf::W, x(0), x(0)),
            "e0 03 00 4b",
            "neg w0, w0",
        ),
        r(
            |m| enc::logic_reg(b(m), Sf::X, Logic::And, x(0), x(0), x(1)),
            "00 00 01 8a",
            "and x0, x0, x1",
        ),
        r(
            |m| enc::logic_reg(b(m), Sf::W, Logic::Orr, x(0), x(0), x(1)),
            "00 00 01 2a",
            "orr w0, w0, w1",
        ),
        r(
            |m| enc::logic_reg(b(m), Sf::X, Logic::Eor, x(22), x(22), x(9)),
            "d6 02 09 ca",
            "eor x22, x22, x9",
        ),
        r(
            |m| enc::logic_reg(b(m), Sf::X, Logic::Ands, XReg::ZR, x(3), x(4)),
            "7f 00 04 ea",
            "tst x3, x4",
        ),
        r(
            |m| enc::logic_reg(b(m), Sf::W, Logic::Ands, XReg::ZR, x(3), x(4)),
            "7f 00 04 6a",
            "tst w3, w4",
        ),
        r(
            |m| enc::mvn(b(m), Sf::X, x(9), x(1)),
            "e9 03 21 aa",
            "mvn x9, x1",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::X,
                    Logic::And,
                    x(0),
                    x(0),
                    enc::logical_imm(Sf::X, 0xff).unwrap(),
                )
            },
            "00 1c 40 92",
            "and x0, x0, #0xff",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::W,
                    Logic::And,
                    x(0),
                    x(0),
                    enc::logical_imm(Sf::W, 0xfffffff0).unwrap(),
                )
            },
            "00 6c 1c 12",
            "and w0, w0, #0xfffffff0",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::X,
                    Logic::Orr,
                    x(1),
                    x(1),
                    enc::logical_imm(Sf::X, 0xffff_ffff_0000_0000).unwrap(),
                )
            },
            "21 7c 60 b2",
            "orr x1, x1, #0xffffffff00000000",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::W,
                    Logic::Eor,
                    x(2),
                    x(2),
                    enc::logical_imm(Sf::W, 0x8000_0001).unwrap(),
                )
            },
            "42 04 01 52",
            "eor w2, w2, #0x80000001",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::X,
                    Logic::Ands,
                    XReg::ZR,
                    x(7),
                    enc::logical_imm(Sf::X, 1).unwrap(),
                )
            },
            "ff 00 40 f2",
            "tst x7, #0x1",
        ),
        r(
            |m| {
                enc::logic_imm(
                    b(m),
                    Sf::W,
                    Logic::Ands,
                    XReg::ZR,
                    x(7),
                    enc::logical_imm(Sf::W, 0x3c).unwrap(),
                )
            },
            "ff 0c 1e 72",
            "tst w7, #0x3c",
        ),
        r(
            |m| enc::madd(b(m), Sf::X, false, x(7), x(7), x(0), XReg::ZR),
            "e7 7c 00 9b",
            "mul x7, x7, x0",
        ),
        r(
            |m| enc::madd(b(m), Sf::W, false, x(7), x(7), x(9), XReg::ZR),
            "e7 7c 09 1b",
            "mul w7, w7, w9",
        ),
        r(
            |m| enc::madd(b(m), Sf::X, true, x(0), x(10), x(1), x(0)),
            "40 81 01 9b",
            "msub x0, x10, x1, x0",
        ),
        r(
            |m| enc::madd(b(m), Sf::W, true, x(0), x(10), x(1), x(0)),
            "40 81 01 1b",
            "msub w0, w10, w1, w0",
        ),
        r(
            |m| enc::dp2(b(m), Sf::X, Dp2::Udiv, x(7), x(7), x(0)),
            "e7 08 c0 9a",
            "udiv x7, x7, x0",
        ),
        r(
            |m| enc::dp2(b(m), Sf::W, Dp2::Udiv, x(7), x(7), x(0)),
            "e7 08 c0 1a",
            "udiv w7, w7, w0",
        ),
        r(
            |m| enc::dp2(b(m), Sf::X, Dp2::Sdiv, x(10), x(19), x(9)),
            "6a 0e c9 9a",
            "sdiv x10, x19, x9",
        ),
        r(
            |m| enc::dp2(b(m), Sf::W, Dp2::Sdiv, x(10), x(19), x(9)),
            "6a 0e c9 1a",
            "sdiv w10, w19, w9",
        ),
        r(
            |m| enc::dp2(b(m), Sf::X, Dp2::Lslv, x(0), x(0), x(1)),
            "00 20 c1 9a",
            "lsl x0, x0, x1",
        ),
        r(
            |m| enc::dp2(b(m), Sf::W, Dp2::Lsrv, x(0), x(0), x(1)),
            "00 24 c1 1a",
            "lsr w0, w0, w1",
        ),
        r(
            |m| enc::dp2(b(m), Sf::X, Dp2::Asrv, x(0), x(0), x(1)),
            "00 28 c1 9a",
            "asr x0, x0, x1",
        ),
        r(
            |m| enc::dp2(b(m), Sf::W, Dp2::Asrv, x(0), x(0), x(1)),
            "00 28 c1 1a",
            "asr w0, w0, w1",
        ),
        r(
            |m| enc::ror_imm(b(m), Sf::W, x(1), x(1), 28),
            "21 70 81 13",
            "ror w1, w1, #28",
        ),
        r(
            |m| enc::ror_imm(b(m), Sf::X, x(8), x(8), 59),
            "08 ed c8 93",
            "ror x8, x8, #59",
        ),
        r(
            // rotl(w19, 31) = rotr(w19, 1).
            |m| {
                m.rotate_left(OperandSize::S32, x(19), 31);
            },
            "73 06 93 13",
            "ror w19, w19, #1",
        ),
        r(
            |m| enc::lsl_imm(b(m), Sf::X, x(0), x(0), 3),
            "00 f0 7d d3",
            "lsl x0, x0, #3",
        ),
        r(
            |m| enc::lsl_imm(b(m), Sf::W, x(0), x(0), 31),
            "00 00 01 53",
            "lsl w0, w0, #31",
        ),
        r(
            |m| enc::lsr_imm(b(m), Sf::X, x(1), x(1), 63),
            "21 fc 7f d3",
            "lsr x1, x1, #63",
        ),
        r(
            |m| enc::lsr_imm(b(m), Sf::W, x(1), x(1), 1),
            "21 7c 01 53",
            "lsr w1, w1, #1",
        ),
        r(
            |m| enc::asr_imm(b(m), Sf::X, x(2), x(2), 32),
            "42 fc 60 93",
            "asr x2, x2, #32",
        ),
        r(
            |m| enc::asr_imm(b(m), Sf::W, x(2), x(2), 5),
            "42 7c 05 13",
            "asr w2, w2, #5",
        ),
        r(
            |m| enc::sxt(b(m), Sf::W, x(0), x(1), 8),
            "20 1c 00 13",
            "sxtb w0, w1",
        ),
        r(
            |m| enc::sxt(b(m), Sf::W, x(0), x(1), 16),
            "20 3c 00 13",
            "sxth w0, w1",
        ),
        r(
            |m| enc::sxt(b(m), Sf::X, x(0), x(1), 8),
            "20 1c 40 93",
            "sxtb x0, w1",
        ),
        r(
            |m| enc::sxt(b(m), Sf::X, x(0), x(1), 16),
            "20 3c 40 93",
            "sxth x0, w1",
        ),
        r(
            |m| enc::sxt(b(m), Sf::X, x(0), x(1), 32),
            "20 7c 40 93",
            "sxtw x0, w1",
        ),
        r(
            |m| enc::uxth(b(m), x(3), x(3)),
            "63 3c 00 53",
            "uxth w3, w3",
        ),
        r(
            |m| enc::rev(b(m), Rev::Rev16W, x(4), x(4)),
            "84 04 c0 5a",
            "rev16 w4, w4",
        ),
        r(
            |m| enc::rev(b(m), Rev::RevW, x(4), x(4)),
            "84 08 c0 5a",
            "rev w4, w4",
        ),
        r(
            |m| enc::rev(b(m), Rev::RevX, x(4), x(4)),
            "84 0c c0 da",
            "rev x4, x4",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 0, LdSt::Load, x(7), x(0), 5),
            "07 14 40 39",
            "ldrb w7, [x0, #5]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 0, LdSt::Load, x(1), x(25), -256),
            "21 03 50 38",
            "ldurb w1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 0, LdSt::Load, x(2), x(1), x(11)),
            "22 68 6b 38",
            "ldrb w2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 1, LdSt::Load, x(7), x(0), 5),
            "07 14 40 79",
            "ldrh w7, [x0, #10]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 1, LdSt::Load, x(1), x(25), -256),
            "21 03 50 78",
            "ldurh w1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 1, LdSt::Load, x(2), x(1), x(11)),
            "22 68 6b 78",
            "ldrh w2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 2, LdSt::Load, x(7), x(0), 5),
            "07 14 40 b9",
            "ldr w7, [x0, #20]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 2, LdSt::Load, x(1), x(25), -256),
            "21 03 50 b8",
            "ldur w1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 2, LdSt::Load, x(2), x(1), x(11)),
            "22 68 6b b8",
            "ldr w2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 3, LdSt::Load, x(7), x(0), 5),
            "07 14 40 f9",
            "ldr x7, [x0, #40]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 3, LdSt::Load, x(1), x(25), -256),
            "21 03 50 f8",
            "ldur x1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 3, LdSt::Load, x(2), x(1), x(11)),
            "22 68 6b f8",
            "ldr x2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 0, LdSt::LoadSx, x(7), x(0), 5),
            "07 14 80 39",
            "ldrsb x7, [x0, #5]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 0, LdSt::LoadSx, x(1), x(25), -256),
            "21 03 90 38",
            "ldursb x1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 0, LdSt::LoadSx, x(2), x(1), x(11)),
            "22 68 ab 38",
            "ldrsb x2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 1, LdSt::LoadSx, x(7), x(0), 5),
            "07 14 80 79",
            "ldrsh x7, [x0, #10]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 1, LdSt::LoadSx, x(1), x(25), -256),
            "21 03 90 78",
            "ldursh x1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 1, LdSt::LoadSx, x(2), x(1), x(11)),
            "22 68 ab 78",
            "ldrsh x2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 2, LdSt::LoadSx, x(7), x(0), 5),
            "07 14 80 b9",
            "ldrsw x7, [x0, #20]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 2, LdSt::LoadSx, x(1), x(25), -256),
            "21 03 90 b8",
            "ldursw x1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 2, LdSt::LoadSx, x(2), x(1), x(11)),
            "22 68 ab b8",
            "ldrsw x2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 0, LdSt::Store, x(7), x(0), 5),
            "07 14 00 39",
            "strb w7, [x0, #5]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 0, LdSt::Store, x(1), x(25), -256),
            "21 03 10 38",
            "sturb w1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 0, LdSt::Store, x(2), x(1), x(11)),
            "22 68 2b 38",
            "strb w2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 1, LdSt::Store, x(7), x(0), 5),
            "07 14 00 79",
            "strh w7, [x0, #10]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 1, LdSt::Store, x(1), x(25), -256),
            "21 03 10 78",
            "sturh w1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 1, LdSt::Store, x(2), x(1), x(11)),
            "22 68 2b 78",
            "strh w2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 2, LdSt::Store, x(7), x(0), 5),
            "07 14 00 b9",
            "str w7, [x0, #20]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 2, LdSt::Store, x(1), x(25), -256),
            "21 03 10 b8",
            "stur w1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 2, LdSt::Store, x(2), x(1), x(11)),
            "22 68 2b b8",
            "str w2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 3, LdSt::Store, x(7), x(0), 5),
            "07 14 00 f9",
            "str x7, [x0, #40]",
        ),
        r(
            |m| enc::ldst_simm9(b(m), 3, LdSt::Store, x(1), x(25), -256),
            "21 03 10 f8",
            "stur x1, [x25, #-256]",
        ),
        r(
            |m| enc::ldst_reg(b(m), 3, LdSt::Store, x(2), x(1), x(11)),
            "22 68 2b f8",
            "str x2, [x1, x11]",
        ),
        r(
            |m| enc::ldst_uimm(b(m), 3, LdSt::Store, XReg::ZR, x(25), 4095),
            "3f ff 3f f9",
            "str xzr, [x25, #32760]",
        ),
        r(
            |m| enc::ldr_x_lsl3(b(m), x(9), x(10), x(9)),
            "49 79 69 f8",
            "ldr x9, [x10, x9, lsl #3]",
        ),
        r(
            |m| enc::stp_pre16(b(m), XReg::FP, XReg::LR),
            "fd 7b bf a9",
            "stp x29, x30, [sp, #-16]!",
        ),
        r(
            |m| enc::stp_pre16(b(m), x(12), x(12)),
            "ec 33 bf a9",
            "stp x12, x12, [sp, #-16]!",
        ),
        r(
            |m| enc::ldp_post16(b(m), XReg::FP, XReg::LR),
            "fd 7b c1 a8",
            "ldp x29, x30, [sp], #16",
        ),
        r(
            |m| enc::ldp_off(b(m), x(19), x(20), XReg::FP, -32),
            "b3 53 7e a9",
            "ldp x19, x20, [x29, #-32]",
        ),
        r(
            |m| enc::str_pre16(b(m), x(25)),
            "f9 0f 1f f8",
            "str x25, [sp, #-16]!",
        ),
        r(
            |m| enc::ldr_x(b(m), x(12), XReg::FP, -8),
            "ac 83 5f f8",
            "ldur x12, [x29, #-8]",
        ),
        r(
            |m| enc::ldr_x(b(m), x(10), x(11), 0),
            "6a 01 40 f9",
            "ldr x10, [x11]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 0, true, x(7), x(11)),
            "67 fd df 08",
            "ldarb w7, [x11]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 0, false, x(1), x(25)),
            "21 ff 9f 08",
            "stlrb w1, [x25]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 1, true, x(7), x(11)),
            "67 fd df 48",
            "ldarh w7, [x11]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 1, false, x(1), x(25)),
            "21 ff 9f 48",
            "stlrh w1, [x25]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 2, true, x(7), x(11)),
            "67 fd df 88",
            "ldar w7, [x11]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 2, false, x(1), x(25)),
            "21 ff 9f 88",
            "stlr w1, [x25]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 3, true, x(7), x(11)),
            "67 fd df c8",
            "ldar x7, [x11]",
        ),
        r(
            |m| enc::ldar_stlr(b(m), 3, false, x(1), x(25)),
            "21 ff 9f c8",
            "stlr x1, [x25]",
        ),
        r(
            |m| enc::ldaxr(b(m), 2, x(10), x(11)),
            "6a fd 5f 88",
            "ldaxr w10, [x11]",
        ),
        r(
            |m| enc::ldaxr(b(m), 3, x(10), x(0)),
            "0a fc 5f c8",
            "ldaxr x10, [x0]",
        ),
        r(
            |m| enc::stlxr(b(m), 2, x(13), x(9), x(11)),
            "69 fd 0d 88",
            "stlxr w13, w9, [x11]",
        ),
        r(
            |m| enc::stlxr(b(m), 3, x(13), x(1), x(11)),
            "61 fd 0d c8",
            "stlxr w13, x1, [x11]",
        ),
        r(
            |m| enc::lse(b(m), 2, Lse::Add, x(1), x(1), x(11)),
            "61 01 e1 b8",
            "ldaddal w1, w1, [x11]",
        ),
        r(
            |m| enc::lse(b(m), 3, Lse::Add, x(9), x(10), x(25)),
            "2a 03 e9 f8",
            "ldaddal x9, x10, [x25]",
        ),
        r(
            |m| enc::lse(b(m), 2, Lse::Clr, x(1), x(1), x(11)),
            "61 11 e1 b8",
            "ldclral w1, w1, [x11]",
        ),
        r(
            |m| enc::lse(b(m), 3, Lse::Clr, x(9), x(10), x(25)),
            "2a 13 e9 f8",
            "ldclral x9, x10, [x25]",
        ),
        r(
            |m| enc::lse(b(m), 2, Lse::Eor, x(1), x(1), x(11)),
            "61 21 e1 b8",
            "ldeoral w1, w1, [x11]",
        ),
        r(
            |m| enc::lse(b(m), 3, Lse::Eor, x(9), x(10), x(25)),
            "2a 23 e9 f8",
            "ldeoral x9, x10, [x25]",
        ),
        r(
            |m| enc::lse(b(m), 2, Lse::Set, x(1), x(1), x(11)),
            "61 31 e1 b8",
            "ldsetal w1, w1, [x11]",
        ),
        r(
            |m| enc::lse(b(m), 3, Lse::Set, x(9), x(10), x(25)),
            "2a 33 e9 f8",
            "ldsetal x9, x10, [x25]",
        ),
        r(
            |m| enc::lse(b(m), 2, Lse::Swp, x(1), x(1), x(11)),
            "61 81 e1 b8",
            "swpal w1, w1, [x11]",
        ),
        r(
            |m| enc::lse(b(m), 3, Lse::Swp, x(9), x(10), x(25)),
            "2a 83 e9 f8",
            "swpal x9, x10, [x25]",
        ),
        r(
            |m| enc::casal(b(m), 2, x(7), x(1), x(11)),
            "61 fd e7 88",
            "casal w7, w1, [x11]",
        ),
        r(
            |m| enc::casal(b(m), 3, x(7), x(2), x(0)),
            "02 fc e7 c8",
            "casal x7, x2, [x0]",
        ),
        r(|m| enc::nop(b(m)), "1f 20 03 d5", "nop"),
        r(|m| enc::b_rel(b(m), 8), "02 00 00 14", "b 0x8"),
        r(
            |m| enc::b_rel(b(m), -(1 << 27)),
            "00 00 00 16",
            "b -0x8000000",
        ),
        r(
            |m| enc::bl_rel(b(m), 0x7ff_fffc),
            "ff ff ff 95",
            "bl 0x7fffffc",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Eq, 20),
            "a0 00 00 54",
            "b.eq 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Ne, 20),
            "a1 00 00 54",
            "b.ne 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Hs, 20),
            "a2 00 00 54",
            "b.hs 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Lo, 20),
            "a3 00 00 54",
            "b.lo 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Hi, 20),
            "a8 00 00 54",
            "b.hi 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Ls, 20),
            "a9 00 00 54",
            "b.ls 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Ge, 20),
            "aa 00 00 54",
            "b.ge 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Lt, 20),
            "ab 00 00 54",
            "b.lt 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Gt, 20),
            "ac 00 00 54",
            "b.gt 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Le, 20),
            "ad 00 00 54",
            "b.le 0x14",
        ),
        r(
            |m| enc::b_cond(b(m), Cond::Ne, -(1 << 20)),
            "01 00 80 54",
            "b.ne -0x100000",
        ),
        r(
            |m| enc::cbz(b(m), Sf::X, false, x(9), 12),
            "69 00 00 b4",
            "cbz x9, 0xc",
        ),
        r(
            |m| enc::cbz(b(m), Sf::W, true, x(13), -8),
            "cd ff ff 35",
            "cbnz w13, -0x8",
        ),
        r(
            |m| enc::adr(b(m), x(10), 0xfffff),
            "ea ff 7f 70",
            "adr x10, #1048575",
        ),
        r(|m| enc::adr(b(m), x(3), -4), "e3 ff ff 10", "adr x3, #-4"),
        r(|m| enc::br(b(m), x(9)), "20 01 1f d6", "br x9"),
        r(|m| enc::blr(b(m), x(9)), "20 01 3f d6", "blr x9"),
        r(|m| enc::ret(b(m)), "c0 03 5f d6", "ret"),
    ]
}

/// Sequences: whole lowered instructions (masm level).
fn sequences() -> Vec<(fn() -> Arm64Masm, Row)> {
    vec![
        (lse_masm, r(|m| { m.prologue(&frame(EntryKind::Main, 512, &[R6, R7, R10], false)); }, "1f 20 03 d5 1f 20 03 d5 fd 7b bf a9 fd 03 00 91 f3 53 bf a9 f9 0f 1f f8 f9 03 00 91 ff 03 08 d1", "nop; nop; stp x29, x30, [sp, #-16]!; mov x29, sp; stp x19, x20, [sp, #-16]!; str x25, [sp, #-16]!; mov x25, sp; sub sp, sp, #512")),
        (lse_masm, r(|m| { m.prologue(&frame(EntryKind::Main, 512, &[R6, R10], true)); }, "1f 20 03 d5 0c 00 80 d2 fd 7b bf a9 fd 03 00 91 9f 85 00 f1 a8 00 00 54 ec 0f 1f f8 ec 03 00 91 ec 07 00 f9 02 00 00 14 ec 33 bf a9 f3 67 bf a9 f9 03 00 91 ff 03 08 d1", "nop; mov x12, #0; stp x29, x30, [sp, #-16]!; mov x29, sp; cmp x12, #33; b.hi 0x28; str x12, [sp, #-16]!; mov x12, sp; str x12, [sp, #8]; b 0x2c; stp x12, x12, [sp, #-16]!; stp x19, x25, [sp, #-16]!; mov x25, sp; sub sp, sp, #512")),
        (lse_masm, r(|m| { m.prologue(&frame(EntryKind::Subprog, 32, &[R9], true)); }, "1f 20 03 d5 1f 20 03 d5 fd 7b bf a9 fd 03 00 91 ec 33 bf a9 f6 0f 1f f8", "nop; nop; stp x29, x30, [sp, #-16]!; mov x29, sp; stp x12, x12, [sp, #-16]!; str x22, [sp, #-16]!")),
        (lse_masm, r(|m| { m.frame_setup(&frame(EntryKind::Subprog, 5000, &[R10], false)); }, "fd 7b bf a9 fd 03 00 91 f9 0f 1f f8 f9 03 00 91 ff 07 40 d1 ff 23 0e d1", "stp x29, x30, [sp, #-16]!; mov x29, sp; str x25, [sp, #-16]!; mov x25, sp; sub sp, sp, #1, lsl #12; sub sp, sp, #904")),
        (lse_masm, r(|m| { m.frame_setup(&frame(EntryKind::Subprog, 1 << 24, &[R10], false)); }, "fd 7b bf a9 fd 03 00 91 f9 0f 1f f8 f9 03 00 91 0a 20 a0 52 ff 63 2a cb", "stp x29, x30, [sp, #-16]!; mov x29, sp; str x25, [sp, #-16]!; mov x25, sp; mov w10, #16777216; sub sp, sp, x10")),
        (lse_masm, r(|m| { m.epilogue(&frame(EntryKind::Main, 512, &[R6, R10], true)); }, "e0 03 07 aa b3 67 7e a9 bf 03 00 91 fd 7b c1 a8 c0 03 5f d6", "mov x0, x7; ldp x19, x25, [x29, #-32]; mov sp, x29; ldp x29, x30, [sp], #16; ret")),
        (lse_masm, r(|m| { m.epilogue(&frame(EntryKind::Subprog, 64, &[R6, R7, R8], false)); }, "e0 03 07 aa b3 53 7f a9 b5 03 5e f8 bf 03 00 91 fd 7b c1 a8 c0 03 5f d6", "mov x0, x7; ldp x19, x20, [x29, #-16]; ldur x21, [x29, #-32]; mov sp, x29; ldp x29, x30, [sp], #16; ret")),
        (lse_masm, r(|m| { m.tail_call(&frame(EntryKind::Main, 512, &[R6, R10], true)).unwrap(); }, "2a 00 40 b9 5f 00 0a 6b 02 02 00 54 ab 83 5f f8 6a 01 40 f9 5f 85 00 f1 82 01 00 54 29 4c 22 8b 29 05 40 f9 29 01 00 b4 4a 05 00 91 6a 01 00 f9 b3 67 7e a9 ac 03 5f f8 bf 03 00 91 fd 7b c1 a8 29 21 00 91 20 01 1f d6", "ldr w10, [x1]; cmp w2, w10; b.hs 0x48; ldur x11, [x29, #-8]; ldr x10, [x11]; cmp x10, #33; b.hs 0x48; add x9, x1, w2, uxtw #3; ldr x9, [x9, #8]; cbz x9, 0x48; add x10, x10, #1; str x10, [x11]; ldp x19, x25, [x29, #-32]; ldur x12, [x29, #-16]; mov sp, x29; ldp x29, x30, [sp], #16; add x9, x9, #8; br x9")),
        (lse_masm, r(|m| { m.div_rem(DivKind::RemU, OperandSize::S64, x(7), x(7), RegImm::Reg(x(0))); }, "ea 08 c0 9a 47 9d 00 9b", "udiv x10, x7, x0; msub x7, x10, x0, x7")),
        (lse_masm, r(|m| { m.div_rem(DivKind::RemS, OperandSize::S32, x(19), x(19), RegImm::Imm(-1)); }, "09 00 80 12 6a 0e c9 1a 53 cd 09 1b", "mov w9, #-1; sdiv w10, w19, w9; msub w19, w10, w9, w19")),
        (lse_masm, r(|m| { m.div_rem(DivKind::DivS, OperandSize::S64, x(19), x(19), RegImm::Imm(7)); }, "e9 00 80 52 73 0e c9 9a", "mov w9, #7; sdiv x19, x19, x9")),
        (lse_masm, r(|m| { m.div_rem(DivKind::DivU, OperandSize::S32, x(1), x(1), RegImm::Reg(x(2))); }, "21 08 c2 1a", "udiv w1, w1, w2")),
        (lse_masm, r(|m| { m.mov_imm(x(9), 0x1234_5678_9abc_def0); }, "09 de 9b d2 89 57 b3 f2 09 cf ca f2 89 46 e2 f2", "mov x9, #57072; movk x9, #39612, lsl #16; movk x9, #22136, lsl #32; movk x9, #4660, lsl #48")),
        (lse_masm, r(|m| { m.mov_imm(x(0), 0xffff_ffff_ffff_1234); }, "60 b9 9d 92", "mov x0, #-60876")),
        (lse_masm, r(|m| { m.mov_imm(x(0), 0xffff_1234_ffff_5678); }, "e0 30 95 92 80 46 c2 f2", "mov x0, #-43400; movk x0, #4660, lsl #32")),
        (lse_masm, r(|m| { m.mov_imm(x(0), u64::MAX); }, "00 00 80 92", "mov x0, #-1")),
        (lse_masm, r(|m| { m.mov_imm(x(0), 0xffff_fffe); }, "20 00 80 12", "mov w0, #-2")),
        (lse_masm, r(|m| { m.mov_imm(x(0), 0); }, "00 00 80 52", "mov w0, #0")),
        (lse_masm, r(|m| { m.mov_imm(x(3), 0x0000_ffff_0000_0000); }, "e3 ff df d2", "mov x3, #281470681743360")),
        (lse_masm, r(|m| { m.mov_imm(x(3), 0x1_0000_0001); }, "e3 03 00 b2", "mov x3, #4294967297")),
        (lse_masm, r(|m| { m.alu(AluKind::Add, OperandSize::S64, x(7), x(7), RegImm::Imm(-5)); }, "e7 14 00 d1", "sub x7, x7, #5")),
        (lse_masm, r(|m| { m.alu(AluKind::Sub, OperandSize::S32, x(0), x(0), RegImm::Imm(0x10000)); }, "00 40 40 51", "sub w0, w0, #16, lsl #12")),
        (lse_masm, r(|m| { m.alu(AluKind::Add, OperandSize::S64, x(7), x(7), RegImm::Imm(0x12345)); }, "a9 68 84 52 29 00 a0 72 e7 00 09 8b", "mov w9, #9029; movk w9, #1, lsl #16; add x7, x7, x9")),
        (lse_masm, r(|m| { m.alu(AluKind::And, OperandSize::S64, x(7), x(7), RegImm::Imm(-256)); }, "e7 dc 78 92", "and x7, x7, #0xffffffffffffff00")),
        (lse_masm, r(|m| { m.alu(AluKind::Or, OperandSize::S32, x(0), x(0), RegImm::Imm(0x12345)); }, "a9 68 84 52 29 00 a0 72 00 00 09 2a", "mov w9, #9029; movk w9, #1, lsl #16; orr w0, w0, w9")),
        (lse_masm, r(|m| { m.alu(AluKind::Mul, OperandSize::S64, x(7), x(7), RegImm::Imm(3)); }, "69 00 80 52 e7 7c 09 9b", "mov w9, #3; mul x7, x7, x9")),
        (lse_masm, r(|m| { m.alu(AluKind::Xor, OperandSize::S64, x(7), x(7), RegImm::Imm(-1)); }, "09 00 80 92 e7 00 09 ca", "mov x9, #-1; eor x7, x7, x9")),
        (lse_masm, r(|m| { m.shift(ShiftKind::Shl, OperandSize::S32, x(0), x(0), RegImm::Imm(32)); }, "e0 03 00 2a", "mov w0, w0")),
        (lse_masm, r(|m| { m.shift(ShiftKind::Shl, OperandSize::S64, x(0), x(0), RegImm::Imm(64)); }, "", "")),
        (lse_masm, r(|m| { m.shift(ShiftKind::ShrS, OperandSize::S64, x(7), x(7), RegImm::Reg(x(0))); }, "e7 28 c0 9a", "asr x7, x7, x0")),
        (lse_masm, r(|m| { m.shift(ShiftKind::ShrU, OperandSize::S32, x(7), x(7), RegImm::Imm(35)); }, "e7 7c 03 53", "lsr w7, w7, #3")),
        (lse_masm, r(|m| { m.byte_swap(16, x(1), x(1)); }, "21 04 c0 5a 21 3c 00 53", "rev16 w1, w1; uxth w1, w1")),
        (lse_masm, r(|m| { m.extend(ExtendKind::I32To64, x(7), x(1)); }, "27 7c 40 93", "sxtw x7, w1")),
        (lse_masm, r(|m| { m.zero_extend(32, x(1), x(1)); }, "e1 03 01 2a", "mov w1, w1")),
        (lse_masm, r(|m| { m.zero_extend(16, x(1), x(1)); }, "21 3c 00 53", "uxth w1, w1")),
        (lse_masm, r(|m| { { let a = m.address(x(0), 40000); m.load(Size::DW, false, x(7), a).unwrap() }; }, "0b 88 93 52 07 68 6b f8", "mov w11, #40000; ldr x7, [x0, x11]")),
        (lse_masm, r(|m| { { let a = m.address(x(25), -1000); m.load(Size::W, true, x(7), a).unwrap() }; }, "eb 7c 80 92 27 6b ab b8", "mov x11, #-1000; ldrsw x7, [x25, x11]")),
        (lse_masm, r(|m| { { let a = m.address(x(25), -8); m.store(Size::DW, a, RegImm::Imm(-1)).unwrap() }; }, "09 00 80 92 29 83 1f f8", "mov x9, #-1; stur x9, [x25, #-8]")),
        (lse_masm, r(|m| { { let a = m.address(x(1), 4); m.store(Size::W, a, RegImm::Imm(0)).unwrap() }; }, "3f 04 00 b9", "str wzr, [x1, #4]")),
        (lse_masm, r(|m| { { let a = m.address(x(1), 3); m.store(Size::H, a, RegImm::Reg(x(2))).unwrap() }; }, "22 30 00 78", "sturh w2, [x1, #3]")),
        (lse_masm, r(|m| { { let a = m.address(x(25), -8); m.atomic_rmw(RmwKind::And, Size::DW, a, x(1), true).unwrap() }; }, "2b 23 00 d1 e9 03 21 aa 61 11 e9 f8", "sub x11, x25, #8; mvn x9, x1; ldclral x9, x1, [x11]")),
        (lse_masm, r(|m| { { let a = m.address(x(0), 0); m.atomic_rmw(RmwKind::Add, Size::W, a, x(2), false).unwrap() }; }, "0a 00 e2 b8", "ldaddal w2, w10, [x0]")),
        (lse_masm, r(|m| { { let a = m.address(x(0), 0); m.atomic_rmw(RmwKind::Or, Size::DW, a, x(2), true).unwrap() }; }, "02 30 e2 f8", "ldsetal x2, x2, [x0]")),
        (llsc_masm, r(|m| { { let a = m.address(x(0), 4); m.atomic_rmw(RmwKind::Xor, Size::W, a, x(1), true).unwrap() }; }, "0b 10 00 91 6a fd 5f 88 49 01 01 4a 69 fd 0d 88 ad ff ff 35 e1 03 0a 2a", "add x11, x0, #4; ldaxr w10, [x11]; eor w9, w10, w1; stlxr w13, w9, [x11]; cbnz w13, 0x4; mov w1, w10")),
        (llsc_masm, r(|m| { { let a = m.address(x(0), 0); m.atomic_rmw(RmwKind::Xchg, Size::DW, a, x(3), false).unwrap() }; }, "0a fc 5f c8 03 fc 0d c8 cd ff ff 35 e3 03 0a aa", "ldaxr x10, [x0]; stlxr w13, x3, [x0]; cbnz w13, 0x0; mov x3, x10")),
        (llsc_masm, r(|m| { { let a = m.address(x(0), 0); m.atomic_rmw(RmwKind::Add, Size::DW, a, x(3), false).unwrap() }; }, "0a fc 5f c8 49 01 03 8b 09 fc 0d c8 ad ff ff 35", "ldaxr x10, [x0]; add x9, x10, x3; stlxr w13, x9, [x0]; cbnz w13, 0x0")),
        (lse_masm, r(|m| { { let a = m.address(x(0), 0); m.atomic_cmpxchg(Size::W, a, x(7), x(1)).unwrap() }; }, "01 fc e7 88", "casal w7, w1, [x0]")),
        (llsc_masm, r(|m| { { let a = m.address(x(25), -16); m.atomic_cmpxchg(Size::DW, a, x(7), x(1)).unwrap() }; }, "2b 43 00 d1 6a fd 5f c8 5f 01 07 eb 61 00 00 54 61 fd 0d c8 8d ff ff 35 e7 03 0a aa", "sub x11, x25, #16; ldaxr x10, [x11]; cmp x10, x7; b.ne 0x18; stlxr w13, x1, [x11]; cbnz w13, 0x4; mov x7, x10")),
        (lse_masm, r(|m| { { let a = m.address(x(1), 2); m.load_acquire(Size::H, x(7), a).unwrap() }; }, "2b 08 00 91 67 fd df 48", "add x11, x1, #2; ldarh w7, [x11]")),
        (lse_masm, r(|m| { { let a = m.address(x(25), -8); m.store_release(Size::DW, a, x(7)).unwrap() }; }, "2b 23 00 d1 67 fd 9f c8", "sub x11, x25, #8; stlr x7, [x11]")),
        (lse_masm, r(|m| { m.call_helper(0x1122_3344_5566_7788).unwrap(); }, "09 f1 8e d2 c9 ac aa f2 89 68 c6 f2 49 24 e2 f2 20 01 3f d6 e7 03 00 aa", "mov x9, #30600; movk x9, #21862, lsl #16; movk x9, #13124, lsl #32; movk x9, #4386, lsl #48; blr x9; mov x7, x0")),
        (near_masm, r(|m| { m.call_helper(0x4100_0000).unwrap(); }, "00 00 40 94 e7 03 00 aa", "bl 0x1000000; mov x7, x0")),
        // bpf_fastcall: r1-r5 (x0-x4) pushed in pairs around the call, popped in reverse.
        (lse_masm, r(|m| { m.call_helper_preserving(0x1122_3344_5566_7788, 0b11_1110).unwrap(); }, "e0 07 bf a9 e2 0f bf a9 e4 0f 1f f8 09 f1 8e d2 c9 ac aa f2 89 68 c6 f2 49 24 e2 f2 20 01 3f d6 e7 03 00 aa e4 07 41 f8 e2 0f c1 a8 e0 07 c1 a8", "stp x0, x1, [sp, #-16]!; stp x2, x3, [sp, #-16]!; str x4, [sp, #-16]!; mov x9, #30600; movk x9, #21862, lsl #16; movk x9, #13124, lsl #32; movk x9, #4386, lsl #48; blr x9; mov x7, x0; ldr x4, [sp], #16; ldp x2, x3, [sp], #16; ldp x0, x1, [sp], #16")),
        // A void helper keeps r0 (x7): restored after the result move.
        (near_masm, r(|m| { m.call_helper_preserving(0x4100_0000, 0b1).unwrap(); }, "e7 0f 1f f8 ff ff 3f 94 e7 03 00 aa e7 07 41 f8", "str x7, [sp, #-16]!; bl 0x1000000; mov x7, x0; ldr x7, [sp], #16")),
        // An empty mask is a plain call.
        (near_masm, r(|m| { m.call_helper_preserving(0x4100_0000, 0).unwrap(); }, "00 00 40 94 e7 03 00 aa", "bl 0x1000000; mov x7, x0")),
        (lse_masm, r(|m| { m.call_local(Label::new(0), &frame(EntryKind::Main, 512, &[], true)).unwrap(); }, "ac 83 5f f8 01 00 00 94 e7 03 00 aa", "ldur x12, [x29, #-8]; bl 0x8; mov x7, x0")),
        (lse_masm, r(|m| { m.jmp(Label::new(0)).unwrap(); }, "01 00 00 14", "b 0x4")),
        (lse_masm, r(|m| { m.branch(IntCmpKind::GtU, OperandSize::S64, x(1), RegImm::Reg(x(2)), Label::new(0)).unwrap(); }, "3f 00 02 eb 49 00 00 54 01 00 00 14", "cmp x1, x2; b.ls 0xc; b 0xc")),
        (relaxed_masm, r(|m| { m.branch(IntCmpKind::LeS, OperandSize::S32, x(1), RegImm::Imm(-5), Label::new(1)).unwrap(); }, "3f 14 00 31 6d 00 00 54", "cmn w1, #5; b.le 0x10")),
        (lse_masm, r(|m| { m.branch(IntCmpKind::TestNonZero, OperandSize::S64, x(1), RegImm::Imm(0x12345), Label::new(0)).unwrap(); }, "a9 68 84 52 29 00 a0 72 3f 00 09 ea 40 00 00 54 01 00 00 14", "mov w9, #9029; movk w9, #1, lsl #16; tst x1, x9; b.eq 0x14; b 0x14")),
        (lse_masm, r(|m| { m.branch(IntCmpKind::TestNonZero, OperandSize::S32, x(1), RegImm::Imm(8), Label::new(0)).unwrap(); }, "3f 00 1d 72 40 00 00 54 01 00 00 14", "tst w1, #0x8; b.eq 0xc; b 0xc")),
        (lse_masm, r(|m| { m.branch(IntCmpKind::Eq, OperandSize::S64, x(1), RegImm::Imm(5000), Label::new(0)).unwrap(); }, "09 71 82 52 3f 00 09 eb 41 00 00 54 01 00 00 14", "mov w9, #5000; cmp x1, x9; b.ne 0x10; b 0x10")),
        (lse_masm, r(|m| { m.branch(IntCmpKind::LtS, OperandSize::S64, x(1), RegImm::Imm(7), Label::new(0)).unwrap(); }, "3f 1c 00 f1 4a 00 00 54 01 00 00 14", "cmp x1, #7; b.ge 0xc; b 0xc")),
        (lse_masm, r(|m| { m.load_label_address(x(1), Label::new(0)).unwrap(); }, "21 00 00 10", "adr x1, #4")),
        (lse_masm, r(|m| { m.call_indirect(x(1), Label::new(0), 5, &frame(EntryKind::Main, 512, &[], true)).unwrap(); }, "e9 03 01 aa 3f 15 00 f1 62 00 00 54 2a 00 00 10 49 79 69 f8 ac 83 5f f8 20 01 3f d6 e7 03 00 aa", "mov x9, x1; cmp x9, #5; b.hs 0x14; adr x10, #4; ldr x9, [x10, x9, lsl #3]; ldur x12, [x29, #-8]; blr x9; mov x7, x0")),
        // Trampolines (crate::trampoline): 2 arguments, Replace, a far entry program and a near original (image at 0x4000_0000); 8 arguments, Observe, position independent.
        (lse_masm, r(|m| { let mut t = crate::trampoline::Arm64Trampoline::new(2, Some(0x4100_0000), crate::trampoline::TrampolineMode::Replace).unwrap(); t.attach_entry(0x12_3456_789a_bcd0); t.emit_into(b(m), Some(0x4000_0000)).unwrap(); }, "fd 7b bf a9 fd 03 00 91 ff 83 00 d1 e0 03 00 f9 e1 07 00 f9 ff 0b 00 f9 e0 03 00 91 10 9a 97 d2 50 13 af f2 d0 8a c6 f2 50 02 e0 f2 00 02 3f d6 e0 0b 00 f9 e0 03 40 f9 e1 07 40 f9 f1 ff 3f 94 e0 0b 00 f9 e0 0b 40 f9 bf 03 00 91 fd 7b c1 a8 c0 03 5f d6", "stp x29, x30, [sp, #-16]!; mov x29, sp; sub sp, sp, #32; str x0, [sp]; str x1, [sp, #8]; str xzr, [sp, #16]; mov x0, sp; mov x16, #48336; movk x16, #30874, lsl #16; movk x16, #13398, lsl #32; movk x16, #18, lsl #48; blr x16; str x0, [sp, #16]; ldr x0, [sp]; ldr x1, [sp, #8]; bl 0x1000000; str x0, [sp, #16]; ldr x0, [sp, #16]; mov sp, x29; ldp x29, x30, [sp], #16; ret")),
        (lse_masm, r(|m| { let mut t = crate::trampoline::Arm64Trampoline::new(8, Some(0x40_0000), crate::trampoline::TrampolineMode::Observe).unwrap(); t.attach_exit(0x1_0000); t.emit_into(b(m), None).unwrap(); }, "fd 7b bf a9 fd 03 00 91 ff 43 01 d1 e0 03 00 f9 e1 07 00 f9 e2 0b 00 f9 e3 0f 00 f9 e4 13 00 f9 e5 17 00 f9 e6 1b 00 f9 e7 1f 00 f9 ff 23 00 f9 e0 03 40 f9 e1 07 40 f9 e2 0b 40 f9 e3 0f 40 f9 e4 13 40 f9 e5 17 40 f9 e6 1b 40 f9 e7 1f 40 f9 10 08 a0 d2 00 02 3f d6 e0 23 00 f9 e0 03 00 91 30 00 a0 d2 00 02 3f d6 e0 23 40 f9 bf 03 00 91 fd 7b c1 a8 c0 03 5f d6", "stp x29, x30, [sp, #-16]!; mov x29, sp; sub sp, sp, #80; str x0, [sp]; str x1, [sp, #8]; str x2, [sp, #16]; str x3, [sp, #24]; str x4, [sp, #32]; str x5, [sp, #40]; str x6, [sp, #48]; str x7, [sp, #56]; str xzr, [sp, #64]; ldr x0, [sp]; ldr x1, [sp, #8]; ldr x2, [sp, #16]; ldr x3, [sp, #24]; ldr x4, [sp, #32]; ldr x5, [sp, #40]; ldr x6, [sp, #48]; ldr x7, [sp, #56]; mov x16, #4194304; blr x16; str x0, [sp, #64]; mov x0, sp; mov x16, #65536; blr x16; ldr x0, [sp, #64]; mov sp, x29; ldp x29, x30, [sp], #16; ret")),
    ]
}

/// A minimal ELF64 relocatable object for AArch64 with one `.text` section.
fn elf_with_text(text: &[u8]) -> Vec<u8> {
    let shstrtab = b"\0.text\0.shstrtab\0";
    let text_off = 64u64;
    let str_off = text_off + text.len() as u64;
    let sh_off = (str_off + shstrtab.len() as u64).next_multiple_of(8);
    let mut f = Vec::new();
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    f.extend_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&0u64.to_le_bytes()); // entry
    f.extend_from_slice(&0u64.to_le_bytes()); // phoff
    f.extend_from_slice(&sh_off.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    f.extend_from_slice(&0u16.to_le_bytes());
    f.extend_from_slice(&0u16.to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    f.extend_from_slice(&3u16.to_le_bytes()); // shnum
    f.extend_from_slice(&2u16.to_le_bytes()); // shstrndx
    f.extend_from_slice(text);
    f.extend_from_slice(shstrtab);
    f.resize(sh_off as usize, 0);
    let sh = |f: &mut Vec<u8>, name: u32, ty: u32, flags: u64, off: u64, size: u64, align: u64| {
        f.extend_from_slice(&name.to_le_bytes());
        f.extend_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(&flags.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
        f.extend_from_slice(&off.to_le_bytes());
        f.extend_from_slice(&size.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
    };
    sh(&mut f, 0, 0, 0, 0, 0, 0);
    sh(&mut f, 1, 1, 6, text_off, text.len() as u64, 4); // .text: PROGBITS, AX
    sh(&mut f, 7, 3, 0, str_off, shstrtab.len() as u64, 1);
    f
}

fn objdump() -> Option<&'static str> {
    ["llvm-objdump", "llvm-objdump-14", "llvm-objdump-19"]
        .into_iter()
        .find(|t| {
            std::process::Command::new(t)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Disassembles `text` with llvm-objdump: (offset, normalised text) per instruction.
fn disassemble(tool: &str, text: &[u8]) -> Vec<(u64, String)> {
    let dir = std::env::temp_dir().join(format!("bpf-jit-arm64-enc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let obj = dir.join("rows.o");
    std::fs::write(&obj, elf_with_text(text)).expect("write object");
    let out = std::process::Command::new(tool)
        .args([
            "--triple=aarch64",
            "--mattr=+lse",
            "-d",
            "--no-show-raw-insn",
        ])
        .arg(&obj)
        .output()
        .expect("run llvm-objdump");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "llvm-objdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((addr, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr.trim(), 16) else {
            continue;
        };
        // Drop symbolised targets (`<...>`) and comments (`// =4096`).
        let rest = rest.split('<').next().unwrap_or("");
        let rest = rest.split("//").next().unwrap_or("").trim();
        v.push((addr, rest.split_whitespace().collect::<Vec<_>>().join(" ")));
    }
    v
}

/// Rewrites a branch's absolute target `0x..` as relative to `base`.
fn rebase(insn: &str, base: u64) -> String {
    let mnemonic = insn.split(' ').next().unwrap_or("");
    let branch = mnemonic == "b"
        || mnemonic == "bl"
        || mnemonic.starts_with("b.")
        || mnemonic.starts_with("cb");
    if !branch {
        return insn.to_string();
    }
    match insn.rsplit_once(' ') {
        Some((head, t)) if t.starts_with("0x") => {
            let abs = u64::from_str_radix(&t[2..], 16).unwrap_or(0);
            let rel = abs.wrapping_sub(base) as i64;
            if rel < 0 {
                format!("{head} -{:#x}", rel.unsigned_abs())
            } else {
                format!("{head} {rel:#x}")
            }
        }
        _ => insn.to_string(),
    }
}

fn check(rows: &[(Arm64Masm, &Row)]) {
    let mut failures = Vec::new();
    let mut text = Vec::new();
    let mut spans = Vec::new();
    for (m, row) in rows {
        let got = m.buffer().bytes();
        if hex(got) != row.bytes {
            failures.push(format!(
                "{}\n  expected bytes {}\n       got bytes {}",
                row.asm,
                row.bytes,
                hex(got)
            ));
        }
        spans.push((text.len() as u64, got.len() as u64));
        text.extend_from_slice(got);
    }
    match objdump() {
        None => {
            assert!(
                std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "llvm-objdump is required (BPFKIT_REQUIRE_TOOLS=1) but not installed"
            );
            eprintln!(
                "SKIPPED the disassembly check: llvm-objdump not installed (bytes were checked)"
            );
        }
        Some(tool) => {
            let dis = disassemble(tool, &text);
            for ((_, row), (start, len)) in rows.iter().zip(&spans) {
                let got: Vec<String> = dis
                    .iter()
                    .filter(|(a, _)| *a >= *start && *a < start + len)
                    .map(|(_, t)| rebase(t, *start))
                    .collect();
                let got = got.join("; ");
                if got != row.asm {
                    failures.push(format!(
                        "bytes {}\n  expected text {}\n  llvm-objdump  {}",
                        row.bytes, row.asm, got
                    ));
                }
            }
            eprintln!("{} rows disassembled by {tool}", rows.len());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn encoding_table() {
    let rows = rows();
    let seqs = sequences();
    let mut all = Vec::new();
    for row in &rows {
        let mut m = Arm64Masm::new();
        (row.emit)(&mut m);
        all.push((m, row));
    }
    for (mk, row) in &seqs {
        let mut m = mk();
        (row.emit)(&mut m);
        all.push((m, row));
    }
    check(&all);
}
