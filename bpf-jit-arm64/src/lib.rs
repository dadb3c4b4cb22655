#![doc = include_str!("../README.md")]

pub mod direct;
pub mod emu;
pub mod enc;
#[cfg(test)]
mod tests;
pub mod trampoline;

use bpf_isa::{Program, Reg as BpfReg, Size};
use bpf_jit::{
    AluKind, CodeBuffer, CompiledCode, DivKind, EntryKind, ExtendKind, FrameInfo, IntCmpKind,
    JitError, JitErrorKind, JitOptions, Label, LabelField, MacroAssembler, OperandSize, RegImm,
    RmwKind, ShiftKind, MAX_TAIL_CALL_CNT, PROG_ARRAY_MAX_ENTRIES_OFFSET, PROG_ARRAY_SLOTS_OFFSET,
};

use enc::{AddSub, Cond, Dp2, LdSt, Logic, Lse, MovWide, Rev, Sf, XReg};

/// Native register of each eBPF register `r0`..`r10` (the kernel's
/// choice: `r1`-`r5` are the AAPCS64 argument registers, so helper calls
/// need no argument moves; `r6`-`r9` and `r10` are callee-saved).
pub const REG_MAP: [XReg; 11] = [
    XReg::X7,  // r0: moved to/from x0 around calls and returns
    XReg::X0,  // r1: 1st argument
    XReg::X1,  // r2: 2nd argument
    XReg::X2,  // r3: 3rd argument
    XReg::X3,  // r4: 4th argument
    XReg::X4,  // r5: 5th argument
    XReg::X19, // r6: callee-saved
    XReg::X20, // r7: callee-saved
    XReg::X21, // r8: callee-saved
    XReg::X22, // r9: callee-saved
    XReg::X25, // r10: frame pointer (callee-saved)
];

/// First scratch register: immediates that no instruction encodes, call
/// and tail-call targets (caller-saved, not an eBPF register).
pub const TMP1: XReg = XReg::X9;
/// Second scratch register: quotients, old values of LL/SC loops, the
/// tail-call count.
pub const TMP2: XReg = XReg::X10;
/// Address scratch: `base + offset` when no addressing mode reaches it.
pub const TMP_ADDR: XReg = XReg::X11;
/// Carries the tail-call counter (a value up to 33, or a pointer to it)
/// from a `bl`/`br` to the callee's frame setup (x86-64: `rax`).
pub const TCC: XReg = XReg::X12;
/// Incoming-frame register of private-stack code ([`FrameInfo::private_stack`]):
/// the sixth AAPCS64 argument register, no eBPF register's home. It holds
/// the address just above the callee's frame in the private region at
/// every private-stack entry (native call, bpf-to-bpf call, tail call).
pub const FIN: XReg = XReg::X5;
/// Status register of the LL/SC store-exclusive.
pub const TMP_STATUS: XReg = XReg::X13;
/// The hidden register `AX` ([`MacroAssembler::ax_reg`]: `may_goto`'s
/// budget and blinded constants). Caller-saved and used by nothing else,
/// so no method clobbers it before reading its operands.
pub const AX: XReg = XReg::X14;

/// Bytes from an entry to the end of its fixed-size head (`nop` + `mov
/// x12, #0` or `nop`): where a tail call enters a program, with the
/// counter (value or pointer) in [`TCC`].
pub const TAIL_CALL_ENTRY_OFFSET: u32 = 8;

/// Offset from `x29` of the tail-call counter pointer in a
/// tail-call-reachable frame (the counter slot is at `-16`).
pub const TCC_PTR_OFFSET: i32 = -8;
/// Offset from `x29` of the counter slot: the counter itself in a main
/// program's frame entered with a count, else a copy of the pointer.
pub const TCC_SLOT_OFFSET: i32 = -16;

/// How atomic read-modify-write instructions are lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Atomics {
    /// ARMv8.1 LSE: `ldaddal`, `ldsetal`, `ldclral`, `ldeoral`, `swpal`, `casal`.
    #[default]
    Lse,
    /// ARMv8.0 load-linked/store-conditional loops (`ldaxr`/`stlxr`).
    LlSc,
}

/// Backend options beyond the driver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Arm64Options {
    /// LSE atomics (default) or LL/SC loops.
    pub atomics: Atomics,
    /// The address the image will be mapped at, if known at compile time.
    /// With it, helper calls whose target is within ±128 MiB of the call
    /// site are a single `bl`; the image is then only valid at that
    /// address. Without it (default) every helper call is `movz/movk` +
    /// `blr` and the image is position independent.
    pub image_base: Option<u64>,
}

/// The AArch64 implementation of [`MacroAssembler`].
#[derive(Debug, Default)]
pub struct Arm64Masm {
    buf: CodeBuffer,
    opts: Arm64Options,
}

impl Arm64Masm {
    /// A backend with default options (LSE, position independent).
    pub fn new() -> Arm64Masm {
        Arm64Masm::default()
    }

    /// A backend with `opts`.
    pub fn with_options(opts: Arm64Options) -> Arm64Masm {
        Arm64Masm {
            buf: CodeBuffer::default(),
            opts,
        }
    }

    #[inline]
    fn b(&mut self) -> &mut CodeBuffer {
        &mut self.buf
    }

    /// Emits a forward `b.cond` (or `cbz`/`cbnz` — any imm19 branch word)
    /// with a zero displacement; returns its position for [`Arm64Masm::patch_here`].
    #[inline]
    fn fwd(&mut self, emit: impl FnOnce(&mut CodeBuffer)) -> usize {
        let at = self.buf.bytes().len();
        emit(&mut self.buf);
        at
    }

    /// Points the imm19 branch at `at` (emitted with displacement 0) to the current offset.
    fn patch_here(&mut self, at: usize) {
        let disp = (self.buf.bytes().len() - at) as u32 >> 2;
        if let Some(w) = self.buf.bytes_mut().get_mut(at..at + 4) {
            let old = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            // Internal sequences are far shorter than 1 MiB.
            let new = old | (disp & 0x7_ffff) << 5;
            w.copy_from_slice(&new.to_le_bytes());
        }
    }

    /// `base + off` as a single register (LSE, exclusive and acquire/release
    /// accesses have no offset): `base` itself or [`TMP_ADDR`].
    fn base_only(&mut self, m: Mem) -> XReg {
        let off = i64::from(m.off);
        if off == 0 {
            return m.base;
        }
        let b = &mut self.buf;
        let mag = off.unsigned_abs();
        if mag < 4096 {
            enc::add_sub_imm(
                b,
                Sf::X,
                off < 0,
                false,
                TMP_ADDR,
                m.base,
                mag as u32,
                false,
            );
        } else {
            self.mov_imm(TMP_ADDR, off as u64);
            enc::add_sub_reg(
                &mut self.buf,
                Sf::X,
                AddSub::Add,
                TMP_ADDR,
                m.base,
                TMP_ADDR,
            );
        }
        TMP_ADDR
    }

    /// One load or store of `1 << size` bytes: scaled unsigned `imm12`,
    /// else unscaled signed `imm9` (`ldur`/`stur`), else the offset in
    /// [`TMP_ADDR`] (register offset).
    fn ldst(&mut self, size: enc::SizeLog2, op: LdSt, rt: XReg, m: Mem) {
        let off = m.off;
        let scale = 1i32 << size;
        if off >= 0 && off % scale == 0 && off / scale < 4096 {
            enc::ldst_uimm(self.b(), size, op, rt, m.base, (off / scale) as u32);
        } else if (-256..256).contains(&off) {
            enc::ldst_simm9(self.b(), size, op, rt, m.base, off);
        } else {
            self.mov_imm(TMP_ADDR, i64::from(off) as u64);
            enc::ldst_reg(self.b(), size, op, rt, m.base, TMP_ADDR);
        }
    }

    /// The callee-saved registers `frame` saves, in save order.
    fn saved_regs(frame: &FrameInfo) -> ([XReg; 5], usize) {
        let mut regs = [XReg::ZR; 5];
        let mut n = 0;
        for r in SAVED {
            if frame.saves(r) {
                if let Some(slot) = regs.get_mut(n) {
                    *slot = REG_MAP[r.idx()];
                    n += 1;
                }
            }
        }
        (regs, n)
    }

    /// Restores the callee-saved registers (`x29`-relative, so `sp` does
    /// not matter), then `sp` and the frame record.
    fn unwind(&mut self, frame: &FrameInfo) {
        let (regs, n) = Self::saved_regs(frame);
        let mut off = if frame.tail_call_reachable { -16 } else { 0 };
        let b = &mut self.buf;
        for pair in regs[..n].chunks(2) {
            off -= 16;
            match *pair {
                [a, c] => enc::ldp_off(b, a, c, XReg::FP, off),
                [a] => enc::ldr_x(b, a, XReg::FP, off),
                _ => {}
            }
        }
        if frame.tail_call_reachable {
            // Main frame entered with a count: the counter's value; else
            // the pointer. The callee's frame setup tells them apart.
            enc::ldr_x(b, TCC, XReg::FP, TCC_SLOT_OFFSET);
        }
        enc::mov_sp(b, XReg::SP, XReg::FP);
        enc::ldp_post16(b, XReg::FP, XReg::LR);
    }

    /// Before a call out of a private-stack frame: the callee's incoming
    /// frame address, `r10 - stack_depth`, in [`FIN`].
    fn pass_frame(&mut self, frame: &FrameInfo) {
        if !frame.private_stack {
            return;
        }
        let d = frame.stack_depth;
        let r10 = REG_MAP[10];
        if d < 4096 {
            enc::add_sub_imm(self.b(), Sf::X, true, false, FIN, r10, d, false);
        } else if d < 1 << 24 {
            enc::add_sub_imm(self.b(), Sf::X, true, false, FIN, r10, d >> 12, true);
            if d & 0xfff != 0 {
                enc::add_sub_imm(self.b(), Sf::X, true, false, FIN, FIN, d & 0xfff, false);
            }
        } else {
            self.mov_imm(TMP2, u64::from(d));
            enc::add_sub_reg(self.b(), Sf::X, AddSub::Sub, FIN, r10, TMP2);
        }
    }

    /// Before a bpf-to-bpf call from a tail-call-reachable frame: [`TCC`] =
    /// the counter pointer, which the callee's frame setup saves.
    fn load_tcc_ptr(&mut self, frame: &FrameInfo) {
        if frame.tail_call_reachable {
            enc::ldr_x(self.b(), TCC, XReg::FP, TCC_PTR_OFFSET);
        }
    }

    /// Compare `lhs` with `rhs` (`cmp`/`cmn` with `imm12`, else through [`TMP1`]).
    fn cmp(&mut self, sf: Sf, lhs: XReg, rhs: RegImm<XReg>) {
        match rhs {
            RegImm::Reg(r) => enc::add_sub_reg(self.b(), sf, AddSub::Subs, XReg::ZR, lhs, r),
            RegImm::Imm(i) => {
                let n = i64::from(i);
                let mag = n.unsigned_abs();
                if mag < 4096 {
                    enc::add_sub_imm(self.b(), sf, n >= 0, true, XReg::ZR, lhs, mag as u32, false);
                } else {
                    self.mov_imm(TMP1, imm_value(sf, i));
                    enc::add_sub_reg(self.b(), sf, AddSub::Subs, XReg::ZR, lhs, TMP1);
                }
            }
        }
    }
}

/// A memory operand `base + off`, resolved by each access into the
/// shortest addressing mode (see `Arm64Masm::ldst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mem {
    /// Base register.
    pub base: XReg,
    /// Byte offset.
    pub off: i32,
}

/// eBPF's immediate as the operand value: sign-extended for 64-bit
/// operations, its 32 bits for 32-bit ones.
#[inline]
const fn imm_value(sf: Sf, i: i32) -> u64 {
    match sf {
        Sf::X => i as i64 as u64,
        Sf::W => i as u32 as u64,
    }
}

#[inline]
const fn sf(size: OperandSize) -> Sf {
    match size {
        OperandSize::S32 => Sf::W,
        OperandSize::S64 => Sf::X,
    }
}

#[inline]
const fn log2(size: Size) -> enc::SizeLog2 {
    match size {
        Size::B => 0,
        Size::H => 1,
        Size::W => 2,
        Size::DW => 3,
    }
}

const fn rmw_size(size: Size) -> Result<(enc::SizeLog2, Sf), JitErrorKind> {
    match size {
        Size::W => Ok((2, Sf::W)),
        Size::DW => Ok((3, Sf::X)),
        s => Err(JitErrorKind::BadSize(s.bytes())),
    }
}

const fn cond(c: IntCmpKind) -> Cond {
    match c {
        IntCmpKind::Eq => Cond::Eq,
        IntCmpKind::Ne | IntCmpKind::TestNonZero => Cond::Ne,
        IntCmpKind::GtU => Cond::Hi,
        IntCmpKind::GeU => Cond::Hs,
        IntCmpKind::LtU => Cond::Lo,
        IntCmpKind::LeU => Cond::Ls,
        IntCmpKind::GtS => Cond::Gt,
        IntCmpKind::GeS => Cond::Ge,
        IntCmpKind::LtS => Cond::Lt,
        IntCmpKind::LeS => Cond::Le,
    }
}

/// Callee-saved eBPF registers in save order (`r10` last: `x25` is
/// saved only when the frame names `r10`).
const SAVED: [BpfReg; 5] = [BpfReg::R6, BpfReg::R7, BpfReg::R8, BpfReg::R9, BpfReg::R10];

impl MacroAssembler for Arm64Masm {
    type Reg = XReg;
    type Address = Mem;
    /// `udf #0` is the all-zero word.
    const PAD_BYTE: u8 = 0x00;
    const RECORDS_LABEL_FIELDS: bool = true;

    fn buffer(&self) -> &CodeBuffer {
        &self.buf
    }

    fn buffer_mut(&mut self) -> &mut CodeBuffer {
        &mut self.buf
    }

    #[inline]
    fn reg(&self, r: BpfReg) -> XReg {
        REG_MAP[r.idx()]
    }

    #[inline]
    fn address(&mut self, base: XReg, off: i32) -> Mem {
        Mem { base, off }
    }

    #[inline]
    fn ax_reg(&self) -> Option<XReg> {
        Some(AX)
    }

    // ---- frame ----------------------------------------------------------------

    fn entry_padding(&mut self, frame: &FrameInfo) {
        enc::nop(self.b());
        if frame.kind == EntryKind::Main && frame.tail_call_reachable {
            // The invocation's tail-call counter starts at 0.
            enc::mov_wide(self.b(), Sf::X, MovWide::Z, TCC, 0, 0);
        } else {
            enc::nop(self.b());
        }
    }

    fn frame_setup(&mut self, frame: &FrameInfo) {
        let b = &mut self.buf;
        enc::stp_pre16(b, XReg::FP, XReg::LR);
        enc::mov_sp(b, XReg::FP, XReg::SP);
        if frame.tail_call_reachable {
            if frame.kind == EntryKind::Main {
                // x12 <= MAX_TAIL_CALL_CNT: a counter value (0 from the
                // head, or from a tail call out of a main program's frame):
                // it gets the slot at x29 - 16 and x12 becomes its address.
                // Otherwise x12 already is the pointer (a tail call out of
                // a subprogram): kept in both slots.
                enc::add_sub_imm(
                    b,
                    Sf::X,
                    true,
                    true,
                    XReg::ZR,
                    TCC,
                    MAX_TAIL_CALL_CNT,
                    false,
                );
                enc::b_cond(b, Cond::Hi, 20);
                enc::str_pre16(b, TCC);
                enc::mov_sp(b, TCC, XReg::SP);
                enc::ldst_uimm(b, 3, LdSt::Store, TCC, XReg::SP, 1);
                enc::b_rel(b, 8);
            }
            // [x29 - 16] = counter or pointer, [x29 - 8] = pointer.
            enc::stp_pre16(b, TCC, TCC);
        }
        let (regs, n) = Self::saved_regs(frame);
        for pair in regs[..n].chunks(2) {
            match *pair {
                [a, c] => enc::stp_pre16(b, a, c),
                [a] => enc::str_pre16(b, a),
                _ => {}
            }
        }
        if frame.private_stack {
            // r10 = the incoming frame address (the top of this frame in
            // the private region); the driver always marks r10 saved here.
            enc::mov(b, Sf::X, REG_MAP[10], FIN);
        } else if frame.saves(BpfReg::R10) {
            // r10 = the top of the eBPF stack.
            enc::mov_sp(b, REG_MAP[10], XReg::SP);
            let d = frame.stack_depth;
            if d < 4096 {
                if d > 0 {
                    enc::add_sub_imm(b, Sf::X, true, false, XReg::SP, XReg::SP, d, false);
                }
            } else if d < 1 << 24 {
                enc::add_sub_imm(b, Sf::X, true, false, XReg::SP, XReg::SP, d >> 12, true);
                if d & 0xfff != 0 {
                    enc::add_sub_imm(b, Sf::X, true, false, XReg::SP, XReg::SP, d & 0xfff, false);
                }
            } else {
                self.mov_imm(TMP2, u64::from(d));
                enc::sub_sp_reg(&mut self.buf, TMP2);
            }
        }
    }

    fn frame_restore_and_return(&mut self, frame: &FrameInfo) {
        enc::mov(self.b(), Sf::X, XReg::X0, REG_MAP[0]);
        let (regs, n) = Self::saved_regs(frame);
        let mut off = if frame.tail_call_reachable { -16 } else { 0 };
        let b = &mut self.buf;
        for pair in regs[..n].chunks(2) {
            off -= 16;
            match *pair {
                [a, c] => enc::ldp_off(b, a, c, XReg::FP, off),
                [a] => enc::ldr_x(b, a, XReg::FP, off),
                _ => {}
            }
        }
        enc::mov_sp(b, XReg::SP, XReg::FP);
        enc::ldp_post16(b, XReg::FP, XReg::LR);
        enc::ret(b);
    }

    // ---- moves ----------------------------------------------------------------

    #[inline]
    fn mov(&mut self, size: OperandSize, dst: XReg, src: XReg) {
        if size == OperandSize::S64 && dst == src {
            return;
        }
        enc::mov(self.b(), sf(size), dst, src);
    }

    fn mov_imm(&mut self, dst: XReg, value: u64) {
        let b = &mut self.buf;
        let hw = |k: u32| (value >> (16 * k)) as u16;
        if value >> 32 == 0 {
            // w forms zero-extend.
            let (lo, hi) = (hw(0), hw(1));
            if hi == 0 {
                enc::mov_wide(b, Sf::W, MovWide::Z, dst, lo, 0);
            } else if lo == 0 {
                enc::mov_wide(b, Sf::W, MovWide::Z, dst, hi, 1);
            } else if hi == 0xffff {
                enc::mov_wide(b, Sf::W, MovWide::N, dst, !lo, 0);
            } else if lo == 0xffff {
                enc::mov_wide(b, Sf::W, MovWide::N, dst, !hi, 1);
            } else if let Some(imm) = enc::logical_imm(Sf::W, value) {
                enc::logic_imm(b, Sf::W, Logic::Orr, dst, XReg::ZR, imm);
            } else {
                enc::mov_wide(b, Sf::W, MovWide::Z, dst, lo, 0);
                enc::mov_wide(b, Sf::W, MovWide::K, dst, hi, 1);
            }
            return;
        }
        let zeros = (0..4).filter(|&k| hw(k) == 0).count();
        let ones = (0..4).filter(|&k| hw(k) == 0xffff).count();
        if ones == 4 {
            enc::mov_wide(b, Sf::X, MovWide::N, dst, 0, 0);
            return;
        }
        if zeros < 3 && ones < 3 {
            if let Some(imm) = enc::logical_imm(Sf::X, value) {
                enc::logic_imm(b, Sf::X, Logic::Orr, dst, XReg::ZR, imm);
                return;
            }
        }
        // movn when more halfwords are all-ones than all-zeros, then movk
        // for every halfword the first instruction got wrong.
        let inverted = ones > zeros;
        let skip = if inverted { 0xffff } else { 0 };
        let mut first = true;
        for k in 0..4u32 {
            let h = hw(k);
            if h == skip {
                continue;
            }
            if first {
                let (op, v) = if inverted {
                    (MovWide::N, !h)
                } else {
                    (MovWide::Z, h)
                };
                enc::mov_wide(b, Sf::X, op, dst, v, k as u8);
                first = false;
            } else {
                enc::mov_wide(b, Sf::X, MovWide::K, dst, h, k as u8);
            }
        }
    }

    fn extend(&mut self, kind: ExtendKind, dst: XReg, src: XReg) {
        let (s, bits) = match kind {
            ExtendKind::I8To32 => (Sf::W, 8),
            ExtendKind::I16To32 => (Sf::W, 16),
            ExtendKind::I8To64 => (Sf::X, 8),
            ExtendKind::I16To64 => (Sf::X, 16),
            ExtendKind::I32To64 => (Sf::X, 32),
        };
        enc::sxt(self.b(), s, dst, src, bits);
    }

    fn zero_extend(&mut self, bits: u8, dst: XReg, src: XReg) {
        match bits {
            16 => enc::uxth(self.b(), dst, src),
            32 => enc::mov(self.b(), Sf::W, dst, src),
            _ => self.mov(OperandSize::S64, dst, src),
        }
    }

    fn byte_swap(&mut self, bits: u8, dst: XReg, src: XReg) {
        let b = self.b();
        match bits {
            16 => {
                enc::rev(b, Rev::Rev16W, dst, src);
                enc::uxth(b, dst, dst);
            }
            32 => enc::rev(b, Rev::RevW, dst, src),
            _ => enc::rev(b, Rev::RevX, dst, src),
        }
    }

    // ---- arithmetic -----------------------------------------------------------

    fn alu(&mut self, kind: AluKind, size: OperandSize, dst: XReg, lhs: XReg, rhs: RegImm<XReg>) {
        let s = sf(size);
        let rhs = match rhs {
            RegImm::Reg(r) => r,
            RegImm::Imm(i) => {
                let v = imm_value(s, i);
                match kind {
                    AluKind::Add | AluKind::Sub => {
                        let n = i64::from(i);
                        let d = if kind == AluKind::Add { n } else { -n };
                        let mag = d.unsigned_abs();
                        if mag < 4096 {
                            enc::add_sub_imm(
                                self.b(),
                                s,
                                d < 0,
                                false,
                                dst,
                                lhs,
                                mag as u32,
                                false,
                            );
                            return;
                        }
                        if mag & 0xfff == 0 && mag < 1 << 24 {
                            let m = (mag >> 12) as u32;
                            enc::add_sub_imm(self.b(), s, d < 0, false, dst, lhs, m, true);
                            return;
                        }
                    }
                    AluKind::And | AluKind::Or | AluKind::Xor => {
                        if let Some(imm) = enc::logical_imm(s, v) {
                            let op = match kind {
                                AluKind::And => Logic::And,
                                AluKind::Or => Logic::Orr,
                                _ => Logic::Eor,
                            };
                            enc::logic_imm(self.b(), s, op, dst, lhs, imm);
                            return;
                        }
                    }
                    AluKind::Mul => {}
                }
                self.mov_imm(TMP1, v);
                TMP1
            }
        };
        let b = self.b();
        match kind {
            AluKind::Add => enc::add_sub_reg(b, s, AddSub::Add, dst, lhs, rhs),
            AluKind::Sub => enc::add_sub_reg(b, s, AddSub::Sub, dst, lhs, rhs),
            AluKind::Mul => enc::madd(b, s, false, dst, lhs, rhs, XReg::ZR),
            AluKind::And => enc::logic_reg(b, s, Logic::And, dst, lhs, rhs),
            AluKind::Or => enc::logic_reg(b, s, Logic::Orr, dst, lhs, rhs),
            AluKind::Xor => enc::logic_reg(b, s, Logic::Eor, dst, lhs, rhs),
        }
    }

    fn rotate_left(&mut self, size: OperandSize, dst: XReg, amount: u8) -> bool {
        // rotl(x, m) = rotr(x, bits - m); a W-register result is zero-extended.
        let bits = size.bits();
        let m = u32::from(amount);
        if m == 0 || m >= bits {
            return false;
        }
        enc::ror_imm(self.b(), sf(size), dst, dst, bits - m);
        true
    }

    fn shift(
        &mut self,
        kind: ShiftKind,
        size: OperandSize,
        dst: XReg,
        lhs: XReg,
        rhs: RegImm<XReg>,
    ) {
        let s = sf(size);
        let b = self.b();
        match rhs {
            RegImm::Imm(i) => {
                let n = i as u32 & (size.bits() - 1);
                if n == 0 {
                    // Nothing to shift; a 32-bit result is still zero-extended.
                    if size == OperandSize::S32 || dst != lhs {
                        enc::mov(b, s, dst, lhs);
                    }
                    return;
                }
                match kind {
                    ShiftKind::Shl => enc::lsl_imm(b, s, dst, lhs, n),
                    ShiftKind::ShrU => enc::lsr_imm(b, s, dst, lhs, n),
                    ShiftKind::ShrS => enc::asr_imm(b, s, dst, lhs, n),
                }
            }
            RegImm::Reg(r) => {
                // The variable shifts take the amount modulo the width, as eBPF.
                let op = match kind {
                    ShiftKind::Shl => Dp2::Lslv,
                    ShiftKind::ShrU => Dp2::Lsrv,
                    ShiftKind::ShrS => Dp2::Asrv,
                };
                enc::dp2(b, s, op, dst, lhs, r);
            }
        }
    }

    fn div_rem(
        &mut self,
        kind: DivKind,
        size: OperandSize,
        dst: XReg,
        lhs: XReg,
        rhs: RegImm<XReg>,
    ) {
        let s = sf(size);
        let rhs = match rhs {
            RegImm::Reg(r) => r,
            RegImm::Imm(i) => {
                self.mov_imm(TMP1, imm_value(s, i));
                TMP1
            }
        };
        // udiv/sdiv never trap: x / 0 = 0 and MIN / -1 = MIN natively, as
        // eBPF wants; the remainder lhs - (lhs / rhs) * rhs is then lhs for
        // a zero divisor and 0 for MIN % -1.
        let b = self.b();
        match kind {
            DivKind::DivU => enc::dp2(b, s, Dp2::Udiv, dst, lhs, rhs),
            DivKind::DivS => enc::dp2(b, s, Dp2::Sdiv, dst, lhs, rhs),
            DivKind::RemU | DivKind::RemS => {
                let op = if kind == DivKind::RemU {
                    Dp2::Udiv
                } else {
                    Dp2::Sdiv
                };
                enc::dp2(b, s, op, TMP2, lhs, rhs);
                enc::madd(b, s, true, dst, TMP2, rhs, lhs);
            }
        }
    }

    fn neg(&mut self, size: OperandSize, dst: XReg, src: XReg) {
        enc::neg(self.b(), sf(size), dst, src);
    }

    // ---- memory ---------------------------------------------------------------

    fn load(&mut self, size: Size, signed: bool, dst: XReg, addr: Mem) -> Result<(), JitErrorKind> {
        let op = match (size, signed) {
            (Size::DW, true) => return Err(JitErrorKind::BadSize(8)),
            (_, true) => LdSt::LoadSx,
            (_, false) => LdSt::Load,
        };
        self.ldst(log2(size), op, dst, addr);
        Ok(())
    }

    fn store(&mut self, size: Size, addr: Mem, src: RegImm<XReg>) -> Result<(), JitErrorKind> {
        let r = match src {
            RegImm::Reg(r) => r,
            RegImm::Imm(0) => XReg::ZR,
            RegImm::Imm(i) => {
                // Only the low `size` bytes are stored.
                self.mov_imm(TMP1, imm_value(Sf::X, i));
                TMP1
            }
        };
        self.ldst(log2(size), LdSt::Store, r, addr);
        Ok(())
    }

    fn atomic_rmw(
        &mut self,
        kind: RmwKind,
        size: Size,
        addr: Mem,
        src: XReg,
        fetch: bool,
    ) -> Result<(), JitErrorKind> {
        let (sz, s) = rmw_size(size)?;
        let base = self.base_only(addr);
        let fetch = fetch || kind == RmwKind::Xchg;
        match self.opts.atomics {
            Atomics::Lse => {
                let (op, operand) = match kind {
                    RmwKind::Add => (Lse::Add, src),
                    RmwKind::Or => (Lse::Set, src),
                    RmwKind::Xor => (Lse::Eor, src),
                    RmwKind::Xchg => (Lse::Swp, src),
                    RmwKind::And => {
                        // ldclr clears the bits set in its operand.
                        enc::mvn(self.b(), Sf::X, TMP1, src);
                        (Lse::Clr, TMP1)
                    }
                };
                // The old value goes to src when fetching, else to a scratch
                // register (not zr: with zr the instruction is `st<op>`, which
                // drops the acquire half).
                let rt = if fetch { src } else { TMP2 };
                enc::lse(self.b(), sz, op, operand, rt, base);
            }
            Atomics::LlSc => {
                let b = &mut self.buf;
                let top = b.bytes().len();
                enc::ldaxr(b, sz, TMP2, base);
                let new = match kind {
                    RmwKind::Add => {
                        enc::add_sub_reg(b, s, AddSub::Add, TMP1, TMP2, src);
                        TMP1
                    }
                    RmwKind::Or => {
                        enc::logic_reg(b, s, Logic::Orr, TMP1, TMP2, src);
                        TMP1
                    }
                    RmwKind::And => {
                        enc::logic_reg(b, s, Logic::And, TMP1, TMP2, src);
                        TMP1
                    }
                    RmwKind::Xor => {
                        enc::logic_reg(b, s, Logic::Eor, TMP1, TMP2, src);
                        TMP1
                    }
                    RmwKind::Xchg => src,
                };
                enc::stlxr(b, sz, TMP_STATUS, new, base);
                let back = top as i64 - b.bytes().len() as i64;
                enc::cbz(b, Sf::W, true, TMP_STATUS, back);
                if fetch {
                    // The old value, zero-extended for W.
                    enc::mov(b, s, src, TMP2);
                }
            }
        }
        Ok(())
    }

    fn atomic_cmpxchg(
        &mut self,
        size: Size,
        addr: Mem,
        expected: XReg,
        new: XReg,
    ) -> Result<(), JitErrorKind> {
        let (sz, s) = rmw_size(size)?;
        let base = self.base_only(addr);
        match self.opts.atomics {
            // casal writes the old value to `expected` (a w write for W: zero-extended).
            Atomics::Lse => enc::casal(self.b(), sz, expected, new, base),
            Atomics::LlSc => {
                let b = &mut self.buf;
                let top = b.bytes().len();
                enc::ldaxr(b, sz, TMP2, base);
                enc::add_sub_reg(b, s, AddSub::Subs, XReg::ZR, TMP2, expected);
                enc::b_cond(b, Cond::Ne, 12);
                enc::stlxr(b, sz, TMP_STATUS, new, base);
                let back = top as i64 - b.bytes().len() as i64;
                enc::cbz(b, Sf::W, true, TMP_STATUS, back);
                enc::mov(b, s, expected, TMP2);
            }
        }
        Ok(())
    }

    fn load_acquire(&mut self, size: Size, dst: XReg, addr: Mem) -> Result<(), JitErrorKind> {
        let base = self.base_only(addr);
        enc::ldar_stlr(self.b(), log2(size), true, dst, base);
        Ok(())
    }

    fn store_release(&mut self, size: Size, addr: Mem, src: XReg) -> Result<(), JitErrorKind> {
        let base = self.base_only(addr);
        enc::ldar_stlr(self.b(), log2(size), false, src, base);
        Ok(())
    }

    // ---- control flow ---------------------------------------------------------

    fn jmp(&mut self, target: Label) -> Result<(), JitErrorKind> {
        let b = &mut self.buf;
        let e0 = b.estimate(target, 0);
        if e0.may_shorten && e0.disp == 0 && b.is_forward(target) {
            // The target is the next instruction.
            b.record(target, LabelField::Omitted);
            return Ok(());
        }
        // AArch64 displacements count from the branch itself.
        let d = b.estimate(target, 4).disp + 4;
        if !enc::fits_imm26(d) {
            return Err(JitErrorKind::ImageTooLarge);
        }
        enc::b_rel(b, d);
        b.record(target, LabelField::A64Imm26);
        Ok(())
    }

    fn branch(
        &mut self,
        c: IntCmpKind,
        size: OperandSize,
        lhs: XReg,
        rhs: RegImm<XReg>,
        target: Label,
    ) -> Result<(), JitErrorKind> {
        let s = sf(size);
        if c == IntCmpKind::TestNonZero {
            let r = match rhs {
                RegImm::Reg(r) => r,
                RegImm::Imm(i) => {
                    let v = imm_value(s, i);
                    if let Some(imm) = enc::logical_imm(s, v) {
                        enc::logic_imm(self.b(), s, Logic::Ands, XReg::ZR, lhs, imm);
                        return self.bcond(cond(c), target);
                    }
                    self.mov_imm(TMP1, v);
                    TMP1
                }
            };
            enc::logic_reg(self.b(), s, Logic::Ands, XReg::ZR, lhs, r);
        } else {
            self.cmp(s, lhs, rhs);
        }
        self.bcond(cond(c), target)
    }

    fn call_helper(&mut self, addr: u64) -> Result<(), JitErrorKind> {
        // Arguments are already in x0-x4. `bl` when the image's address is
        // known and the helper is within ±128 MiB (decided in the current
        // pass's layout, which is exact in the final pass; never in a pass
        // where the driver forces long forms), else an absolute call.
        let here = self.buf.offset();
        let may_shorten = self.buf.estimate(Label::new(0), 0).may_shorten;
        let near = self
            .opts
            .image_base
            .filter(|_| may_shorten)
            .map(|base| addr.wrapping_sub(base.wrapping_add(u64::from(here))) as i64)
            .filter(|&d| enc::fits_imm26(d));
        match near {
            Some(d) => enc::bl_rel(self.b(), d),
            None => {
                self.mov_imm(TMP1, addr);
                enc::blr(self.b(), TMP1);
            }
        }
        enc::mov(self.b(), Sf::X, REG_MAP[0], XReg::X0);
        Ok(())
    }

    fn call_helper_preserving(&mut self, addr: u64, preserve: u16) -> Result<(), JitErrorKind> {
        // bpf_fastcall: AAPCS64 lets the helper clobber x0-x18, which hold
        // r0 (x7) and r1-r5 (x0-x4). Push the ones to keep in pairs (SP
        // stays 16-byte aligned), call, take the result, pop in reverse.
        let mut saved = [XReg::X0; 6];
        let mut n = 0;
        for (i, r) in REG_MAP.iter().take(6).enumerate() {
            if preserve & (1 << i) != 0 {
                if let Some(slot) = saved.get_mut(n) {
                    *slot = *r;
                    n += 1;
                }
            }
        }
        let saved = saved.get(..n).unwrap_or(&[]);
        for pair in saved.chunks(2) {
            match *pair {
                [a, c] => enc::stp_pre16(self.b(), a, c),
                [a] => enc::str_pre16(self.b(), a),
                _ => {}
            }
        }
        self.call_helper(addr)?;
        // `call_helper` ended with `mov x7, x0`: restoring x7 afterwards
        // keeps r0 for a helper that returns nothing.
        for pair in saved.chunks(2).rev() {
            match *pair {
                [a, c] => enc::ldp_post16(self.b(), a, c),
                [a] => enc::ldr_post16(self.b(), a),
                _ => {}
            }
        }
        Ok(())
    }

    fn call_local(&mut self, target: Label, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        self.pass_frame(frame);
        self.load_tcc_ptr(frame);
        let d = self.buf.estimate(target, 4).disp + 4;
        if !enc::fits_imm26(d) {
            return Err(JitErrorKind::ImageTooLarge);
        }
        enc::bl_rel(self.b(), d);
        self.buf.record(target, LabelField::A64Imm26);
        enc::mov(self.b(), Sf::X, REG_MAP[0], XReg::X0);
        Ok(())
    }

    fn load_label_address(&mut self, dst: XReg, target: Label) -> Result<(), JitErrorKind> {
        let d = self.buf.estimate(target, 4).disp + 4;
        if !enc::fits_adr(d) {
            return Err(JitErrorKind::ImageTooLarge);
        }
        enc::adr(self.b(), dst, d);
        self.buf.record(target, LabelField::A64Adr);
        Ok(())
    }

    fn tail_call(&mut self, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        if !frame.tail_call_reachable {
            // The driver marks every frame with a tail call reachable.
            return Err(JitErrorKind::Unsupported(
                "tail call in a frame without counter",
            ));
        }
        // r1 = x0 (ctx), r2 = x1 (JitProgArray *), r3 = x2 (index).
        let (arr, idx) = (REG_MAP[2], REG_MAP[3]);
        let b = &mut self.buf;
        // if ((u32)index >= array->max_entries) goto out;
        enc::ldst_uimm(
            b,
            2,
            LdSt::Load,
            TMP2,
            arr,
            (PROG_ARRAY_MAX_ENTRIES_OFFSET / 4) as u32,
        );
        enc::add_sub_reg(b, Sf::W, AddSub::Subs, XReg::ZR, idx, TMP2);
        let out1 = self.fwd(|b| enc::b_cond(b, Cond::Hs, 0));
        let b = &mut self.buf;
        // if (*tcc_ptr >= MAX_TAIL_CALL_CNT) goto out;
        enc::ldr_x(b, TMP_ADDR, XReg::FP, TCC_PTR_OFFSET);
        enc::ldr_x(b, TMP2, TMP_ADDR, 0);
        enc::add_sub_imm(
            b,
            Sf::X,
            true,
            true,
            XReg::ZR,
            TMP2,
            MAX_TAIL_CALL_CNT,
            false,
        );
        let out2 = self.fwd(|b| enc::b_cond(b, Cond::Hs, 0));
        let b = &mut self.buf;
        // x9 = array->slots[(u32)index]; if (x9 == 0) goto out;
        enc::add_uxtw3(b, TMP1, arr, idx);
        enc::ldr_x(b, TMP1, TMP1, PROG_ARRAY_SLOTS_OFFSET);
        let out3 = self.fwd(|b| enc::cbz(b, Sf::X, false, TMP1, 0));
        let b = &mut self.buf;
        // (*tcc_ptr)++
        enc::add_sub_imm(b, Sf::X, false, false, TMP2, TMP2, 1, false);
        enc::ldst_uimm(b, 3, LdSt::Store, TMP2, TMP_ADDR, 0);
        if frame.private_stack {
            // The target's frame takes this one's place: its incoming
            // frame address is this frame's r10.
            enc::mov(self.b(), Sf::X, FIN, REG_MAP[10]);
        }
        // Tear the frame down, x12 = the counter slot, enter past the head.
        self.unwind(frame);
        let b = &mut self.buf;
        enc::add_sub_imm(
            b,
            Sf::X,
            false,
            false,
            TMP1,
            TMP1,
            TAIL_CALL_ENTRY_OFFSET,
            false,
        );
        enc::br(b, TMP1);
        self.patch_here(out1);
        self.patch_here(out2);
        self.patch_here(out3);
        Ok(())
    }

    fn tail_call_direct(
        &mut self,
        frame: &FrameInfo,
    ) -> Result<Option<bpf_jit::SiteLayout>, JitErrorKind> {
        self.emit_tail_call_direct(frame)
    }

    fn call_indirect(
        &mut self,
        reg: XReg,
        table: Label,
        table_len: u32,
        frame: &FrameInfo,
    ) -> Result<(), JitErrorKind> {
        enc::mov(self.b(), Sf::X, TMP1, reg);
        if table_len > 0 {
            // A helper id: x9 = table[x9].
            if table_len < 4096 {
                enc::add_sub_imm(
                    self.b(),
                    Sf::X,
                    true,
                    true,
                    XReg::ZR,
                    TMP1,
                    table_len,
                    false,
                );
            } else {
                self.mov_imm(TMP2, u64::from(table_len));
                enc::add_sub_reg(self.b(), Sf::X, AddSub::Subs, XReg::ZR, TMP1, TMP2);
            }
            let direct = self.fwd(|b| enc::b_cond(b, Cond::Hs, 0));
            let d = self.buf.estimate(table, 4).disp + 4;
            if !enc::fits_adr(d) {
                return Err(JitErrorKind::ImageTooLarge);
            }
            enc::adr(self.b(), TMP2, d);
            self.buf.record(table, LabelField::A64Adr);
            enc::ldr_x_lsl3(self.b(), TMP1, TMP2, TMP1);
            self.patch_here(direct);
        }
        self.pass_frame(frame);
        self.load_tcc_ptr(frame);
        enc::blr(self.b(), TMP1);
        enc::mov(self.b(), Sf::X, REG_MAP[0], XReg::X0);
        Ok(())
    }
}

impl Arm64Masm {
    /// `b.cond target`: one `b.cond` within ±1 MiB, else the inverted
    /// condition over a `b`.
    fn bcond(&mut self, c: Cond, target: Label) -> Result<(), JitErrorKind> {
        let b = &mut self.buf;
        let e = b.estimate(target, 4);
        let d = e.disp + 4;
        if e.may_shorten && enc::fits_imm19(d) {
            enc::b_cond(b, c, d);
            b.record(target, LabelField::A64Imm19);
            return Ok(());
        }
        enc::b_cond(b, c.invert(), 8);
        let d = b.estimate(target, 4).disp + 4;
        if !enc::fits_imm26(d) {
            return Err(JitErrorKind::ImageTooLarge);
        }
        enc::b_rel(b, d);
        b.record(target, LabelField::A64Imm26);
        Ok(())
    }
}

/// Compiles `prog` to AArch64 machine code with default backend options
/// (LSE atomics, position independent).
pub fn compile_code(prog: &Program, opts: &JitOptions<'_>) -> Result<CompiledCode, JitError> {
    compile_code_with(prog, opts, &Arm64Options::default())
}

/// Compiles `prog` to AArch64 machine code with backend options `arm`.
pub fn compile_code_with(
    prog: &Program,
    opts: &JitOptions<'_>,
    arm: &Arm64Options,
) -> Result<CompiledCode, JitError> {
    let mut masm = Arm64Masm::with_options(*arm);
    bpf_jit::compile(&mut masm, prog, opts)
}

/// Compiles `prog` and maps it executable (on an AArch64 host).
#[cfg(target_arch = "aarch64")]
pub fn compile(prog: &Program, opts: &JitOptions<'_>) -> Result<bpf_jit::JitProgram, JitError> {
    bpf_jit::compile_executable(
        &mut Arm64Masm::new(),
        &mut bpf_jit::Scratch::new(),
        prog,
        opts,
        Arm64Masm::PAD_BYTE,
        &direct::ARM64_SITE_CODEC,
    )
}
