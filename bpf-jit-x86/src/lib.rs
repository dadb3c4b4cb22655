#![doc = include_str!("../README.md")]

pub mod baseline;
pub mod direct;
pub mod enc;
#[cfg(test)]
mod tests;
pub mod trampoline;

use bpf_isa::{Program, Reg as BpfReg, Size};
use bpf_jit::{
    AluKind, CodeBuffer, CompiledCode, DivKind, EntryKind, ExtendKind, FrameInfo, IntCmpKind,
    JitError, JitErrorKind, JitOptions, JitProgram, Label, LabelField, MacroAssembler, OperandSize,
    RegImm, RmwKind, ShiftKind, MAX_TAIL_CALL_CNT, PROG_ARRAY_MAX_ENTRIES_OFFSET,
    PROG_ARRAY_SLOTS_OFFSET,
};

pub use baseline::Baseline;
use enc::{Alu1, Cc, Gpr, Mem, Shift, Sz};

/// Native register of each eBPF register `r0`..`r10` (the kernel's choice:
/// with it the eBPF calling convention *is* the SysV one, so helper calls
/// need no argument shuffling).
pub const REG_MAP: [Gpr; 11] = [
    Gpr::RAX, // r0: return value
    Gpr::RDI, // r1: 1st argument
    Gpr::RSI, // r2: 2nd argument
    Gpr::RDX, // r3: 3rd argument
    Gpr::RCX, // r4: 4th argument
    Gpr::R8,  // r5: 5th argument
    Gpr::RBX, // r6: callee-saved
    Gpr::R13, // r7: callee-saved
    Gpr::R14, // r8: callee-saved
    Gpr::R15, // r9: callee-saved
    Gpr::RBP, // r10: frame pointer
];

/// Incoming-frame register of private-stack code ([`FrameInfo::private_stack`]):
/// the sixth SysV argument register, no eBPF register's home. It holds the
/// address just above the callee's frame in the private region at every
/// private-stack entry (native call, bpf-to-bpf call, tail call).
pub const FIN: Gpr = Gpr::R9;

/// Scratch register for temporaries inside one lowered instruction (the kernel's `AUX_REG`).
pub const AUX: Gpr = Gpr::R11;
/// Second scratch register (saves `rax` around the fetch-op loops). It is
/// also the hidden register `AX` ([`MacroAssembler::ax_reg`], as in the
/// kernel's x86-64 JIT): methods that take register operands must not use
/// it as a temporary.
pub const AUX2: Gpr = Gpr::R10;

/// Bytes from a program's entry to the end of its fixed-size head (`nop5` +
/// `xor eax, eax` or `nop2`): where a tail call enters a program, with the
/// tail-call counter (a value up to 33, or a pointer to it) the caller left
/// in `rax`. Subprogram entries, never entered by a tail call, have the
/// `nop5` only.
pub const TAIL_CALL_ENTRY_OFFSET: u32 = 7;
/// Size of the whole prologue before the callee-saved pushes: the head plus
/// `push rbp` (1), `mov rbp, rsp` (3) and `sub rsp, imm32` (7), of a frame
/// with stack (a frame of size 0 has no `sub`: 7 bytes less).
pub const FRAME_SETUP_FIXED_SIZE: u32 = TAIL_CALL_ENTRY_OFFSET + 11;

/// The x86-64 implementation of [`MacroAssembler`].
#[derive(Debug, Default)]
pub struct X86Masm {
    buf: CodeBuffer,
    /// Helpers called under the `bpf_fastcall` contract: native address and
    /// the eBPF registers (bit `i` for `ri`, `r0`–`r5` only) the call must
    /// leave intact.
    fastcall: Vec<(u64, u16)>,
    /// Out-of-line cold paths of this pass, emitted by
    /// [`MacroAssembler::emit_deferred`] after the last instruction.
    stubs: Vec<Stub>,
}

/// What an out-of-line stub does before jumping back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StubAction {
    /// `dst = 0` (quotient of a division by zero, remainder by -1).
    Zero,
    /// `dst = (u32)dst` (32-bit remainder by zero).
    Zext32,
    /// `dst = -dst` at `size` (signed quotient by -1; `INT_MIN` stays).
    Neg(Sz),
}

/// A cold path reached by a `jcc rel32` from the straight-line code.
#[derive(Clone, Copy, Debug)]
struct Stub {
    /// Offset of the `jcc`'s 4-byte displacement.
    jcc_disp: u32,
    /// Where the stub jumps back to.
    resume: u32,
    dst: Gpr,
    action: StubAction,
}

impl X86Masm {
    /// A backend with an empty buffer.
    pub fn new() -> X86Masm {
        X86Masm::default()
    }

    /// Declares the helper at native address `addr` a `bpf_fastcall`
    /// function that must preserve the eBPF registers in `regs` (bit `i`
    /// for `ri`; bits outside `r0`–`r5` are ignored, the others are
    /// callee-saved anyway). The SysV ABI lets a C function clobber `rdi`,
    /// `rsi`, `rdx`, `rcx` and `r8` (`r1`–`r5`), so calls to it save and
    /// restore those registers around the call; a program whose spills
    /// and fills around such calls were removed then stays correct.
    pub fn preserve_around_helper(&mut self, addr: u64, regs: u16) {
        let regs = regs & 0b11_1111;
        match self.fastcall.iter_mut().find(|e| e.0 == addr) {
            Some(e) => e.1 = regs,
            None => self.fastcall.push((addr, regs)),
        }
    }

    /// Whether any helper was declared with [`X86Masm::preserve_around_helper`].
    pub(crate) fn has_fastcall(&self) -> bool {
        !self.fastcall.is_empty()
    }

    #[inline]
    fn b(&mut self) -> &mut CodeBuffer {
        &mut self.buf
    }

    /// Emits a short forward `jcc` with a placeholder; returns the position
    /// of its displacement byte for [`X86Masm::patch_here`].
    #[inline]
    fn jcc_fwd(&mut self, cc: Cc) -> usize {
        enc::jcc_short(&mut self.buf, cc, 0);
        self.buf.bytes().len() - 1
    }

    /// `div_rem` with the divisor checks (`checks`) or without them (a
    /// divisor proved neither 0 nor, when signed, -1).
    fn div_rem_inner(
        &mut self,
        kind: DivKind,
        size: OperandSize,
        dst: Gpr,
        lhs: Gpr,
        rhs: RegImm<Gpr>,
        checks: bool,
    ) {
        let s = sz(size);
        let signed = matches!(kind, DivKind::DivS | DivKind::RemS);
        let rem = matches!(kind, DivKind::RemU | DivKind::RemS);
        // The divisor is used in place unless it is dst, rax, rdx or AUX2
        // (all about to change; AUX2 is the hidden AX of blinded divisors);
        // then it goes to AUX first.
        let (runtime_checks, divisor) = match rhs {
            RegImm::Reg(r) if r != dst && r != Gpr::RAX && r != Gpr::RDX && r != AUX2 => {
                (checks, r)
            }
            RegImm::Reg(r) => {
                enc::mov_rr(self.b(), Sz::Q, AUX, r);
                (checks, AUX)
            }
            RegImm::Imm(i) => {
                self.mov(OperandSize::S64, dst, lhs);
                if i == 0 || (signed && i == -1) {
                    // Decided at compile time.
                    let b = self.b();
                    match (i, rem) {
                        (0, false) => enc::alu_rr(b, Sz::W, Alu1::Xor, dst, dst),
                        (0, true) if size == OperandSize::S32 => enc::mov_rr(b, Sz::W, dst, dst),
                        (0, true) => {}
                        (_, false) => enc::neg(b, s, dst),
                        (_, true) => enc::alu_rr(b, Sz::W, Alu1::Xor, dst, dst),
                    }
                    return;
                }
                let v = match size {
                    OperandSize::S32 => u64::from(i as u32),
                    OperandSize::S64 => i as i64 as u64,
                };
                self.mov_imm(AUX, v);
                (false, AUX)
            }
        };
        self.mov(OperandSize::S64, dst, lhs);
        // The checks branch out of line (rarely taken), except a 64-bit
        // remainder by zero, which keeps the dividend: it jumps over the
        // division. The common path takes no branch.
        let zero_keeps = rem && size == OperandSize::S64;
        let (mut to_zero, mut to_minus1, mut skip) = (None, None, None);
        if runtime_checks {
            enc::test_rr(self.b(), s, divisor, divisor);
            if zero_keeps {
                skip = Some(self.jcc_fwd(Cc::E));
            } else {
                to_zero = Some(self.jcc_stub(Cc::E));
            }
            if signed {
                enc::alu_ri(self.b(), s, Alu1::Cmp, divisor, -1);
                to_minus1 = Some(self.jcc_stub(Cc::E));
            }
        }
        let b = &mut self.buf;
        if dst != Gpr::RAX {
            enc::push(b, Gpr::RAX);
        }
        if dst != Gpr::RDX {
            enc::push(b, Gpr::RDX);
        }
        if dst != Gpr::RAX {
            enc::mov_rr(b, Sz::Q, Gpr::RAX, dst);
        }
        if signed {
            enc::sign_extend_ax(b, s);
        } else {
            enc::alu_rr(b, Sz::W, Alu1::Xor, Gpr::RDX, Gpr::RDX);
        }
        enc::div(b, s, signed, divisor);
        let result = if rem { Gpr::RDX } else { Gpr::RAX };
        if dst != result {
            enc::mov_rr(b, Sz::Q, dst, result);
        }
        if dst != Gpr::RDX {
            enc::pop(b, Gpr::RDX);
        }
        if dst != Gpr::RAX {
            enc::pop(b, Gpr::RAX);
        }
        if let Some(at) = skip {
            self.patch_here(at);
        }
        let resume = self.buf.offset();
        // Division by zero: quotient 0, remainder the dividend (only the
        // 32-bit one needs code: its upper half is cleared). Divisor -1:
        // quotient -dividend (`INT_MIN` stays `INT_MIN`), remainder 0.
        if let Some(jcc_disp) = to_zero {
            let action = if rem {
                StubAction::Zext32
            } else {
                StubAction::Zero
            };
            self.stubs.push(Stub {
                jcc_disp,
                resume,
                dst,
                action,
            });
        }
        if let Some(jcc_disp) = to_minus1 {
            let action = if rem {
                StubAction::Zero
            } else {
                StubAction::Neg(s)
            };
            self.stubs.push(Stub {
                jcc_disp,
                resume,
                dst,
                action,
            });
        }
    }

    /// Emits a `jcc rel32` to an out-of-line stub (its displacement is
    /// written when the stub is, in [`MacroAssembler::emit_deferred`]);
    /// returns the displacement's offset.
    #[inline]
    fn jcc_stub(&mut self, cc: Cc) -> u32 {
        enc::jcc_near(&mut self.buf, cc, 0);
        self.buf.offset() - 4
    }

    /// Points the short jump whose displacement byte is at `at` to the current offset.
    #[inline]
    fn patch_here(&mut self, at: usize) {
        let rel = self.buf.bytes().len() as i64 - (at as i64 + 1);
        if let Some(byte) = self.buf.bytes_mut().get_mut(at) {
            // Internal sequences are far shorter than 127 bytes.
            *byte = rel as i8 as u8;
        }
    }
}

/// `jcc target`, short when the estimate allows, recorded for one-pass layout.
#[inline(always)]
fn jcc_to(b: &mut CodeBuffer, c: Cc, target: Label) -> Result<(), JitErrorKind> {
    let e = b.estimate(target, 2);
    match i8::try_from(e.disp) {
        Ok(d) if e.may_shorten => {
            enc::jcc_short(b, c, d);
            b.record(target, LabelField::Rel8);
        }
        _ => {
            enc::jcc_near(b, c, rel32(b.estimate(target, 6).disp)?);
            b.record(target, LabelField::Rel32);
        }
    }
    Ok(())
}

#[inline]
const fn sz(size: OperandSize) -> Sz {
    match size {
        OperandSize::S32 => Sz::W,
        OperandSize::S64 => Sz::Q,
    }
}

#[inline]
const fn msz(size: Size) -> Sz {
    match size {
        Size::B => Sz::B,
        Size::H => Sz::H,
        Size::W => Sz::W,
        Size::DW => Sz::Q,
    }
}

const fn rmw_size(size: Size) -> Result<Sz, JitErrorKind> {
    match size {
        Size::W => Ok(Sz::W),
        Size::DW => Ok(Sz::Q),
        s => Err(JitErrorKind::BadSize(s.bytes())),
    }
}

const fn cc(cond: IntCmpKind) -> Cc {
    match cond {
        IntCmpKind::Eq => Cc::E,
        IntCmpKind::Ne | IntCmpKind::TestNonZero => Cc::Ne,
        IntCmpKind::GtU => Cc::A,
        IntCmpKind::GeU => Cc::Ae,
        IntCmpKind::LtU => Cc::B,
        IntCmpKind::LeU => Cc::Be,
        IntCmpKind::GtS => Cc::G,
        IntCmpKind::GeS => Cc::Ge,
        IntCmpKind::LtS => Cc::L,
        IntCmpKind::LeS => Cc::Le,
    }
}

/// Callee-saved eBPF registers in push order.
const SAVED: [BpfReg; 4] = [BpfReg::R6, BpfReg::R7, BpfReg::R8, BpfReg::R9];

impl MacroAssembler for X86Masm {
    type Reg = Gpr;
    type Address = Mem;
    const PAD_BYTE: u8 = 0xcc;
    const RECORDS_LABEL_FIELDS: bool = true;

    fn buffer(&self) -> &CodeBuffer {
        &self.buf
    }

    fn buffer_mut(&mut self) -> &mut CodeBuffer {
        &mut self.buf
    }

    #[inline]
    fn reg(&self, r: BpfReg) -> Gpr {
        REG_MAP[r.idx()]
    }

    #[inline]
    fn address(&mut self, base: Gpr, off: i32) -> Mem {
        Mem { base, disp: off }
    }

    #[inline]
    fn ax_reg(&self) -> Option<Gpr> {
        Some(AUX2)
    }

    // ---- frame ----------------------------------------------------------------

    /// `nop5` (the patchable entry), then on a main program the 2-byte
    /// slot that puts [`TAIL_CALL_ENTRY_OFFSET`] at the same place in every
    /// program: `xor eax, eax` (the counter starts at 0) when a tail call
    /// can happen, else `nop2`. A subprogram is never a tail call's target
    /// (tail calls enter programs, at their main entry): it has no slot.
    fn entry_padding(&mut self, frame: &FrameInfo) {
        enc::nop5(self.b());
        if frame.kind == EntryKind::Main {
            if frame.tail_call_reachable {
                enc::alu_rr(self.b(), Sz::W, Alu1::Xor, Gpr::RAX, Gpr::RAX);
            } else {
                enc::nop2(self.b());
            }
        }
    }

    fn frame_setup(&mut self, frame: &FrameInfo) {
        let b = self.b();
        if saves_rbp(frame) {
            enc::push(b, Gpr::RBP);
        }
        if !pad_below(frame) {
            enc::mov_rr(b, Sz::Q, Gpr::RBP, Gpr::RSP);
            let size = frame.stack_depth.saturating_add(frame_pad(frame));
            if size != 0 {
                // A frame without stack (a leaf subprogram, say) needs no `sub`.
                enc::sub_rsp_imm32(b, size);
            }
        }
        if frame.tail_call_reachable {
            if frame.kind == EntryKind::Main {
                // rax <= MAX_TAIL_CALL_CNT: a counter value (0 from the head,
                // or passed by a tail call from a main program's frame): it
                // gets a slot here and rax becomes its address. Otherwise rax
                // already is the pointer (tail call from a subprogram).
                enc::alu_ri(b, Sz::Q, Alu1::Cmp, Gpr::RAX, MAX_TAIL_CALL_CNT as i32);
                enc::jcc_short(b, Cc::A, 6);
                enc::push(b, Gpr::RAX);
                enc::mov_rr(b, Sz::Q, Gpr::RAX, Gpr::RSP);
                enc::jmp_short(b, 1);
                enc::push(b, Gpr::RAX);
            } else {
                // Keep the frame shape of a main program: two words.
                enc::push(b, Gpr::RAX);
            }
            // The counter pointer, at [rbp - tcc_ptr_disp].
            enc::push(b, Gpr::RAX);
        }
        for r in SAVED {
            if frame.saves(r) {
                enc::push(b, REG_MAP[r.idx()]);
            }
        }
        if pad_below(frame) && frame_pad(frame) != 0 {
            // The alignment pad goes below the pushes.
            enc::alu_ri(b, Sz::Q, Alu1::Sub, Gpr::RSP, 8);
        }
        if frame.private_stack {
            // r10 = the incoming frame address (the top of this frame in
            // the private region).
            enc::mov_rr(b, Sz::Q, Gpr::RBP, FIN);
        }
    }

    fn frame_restore_and_return(&mut self, frame: &FrameInfo) {
        self.unwind_frame(frame, false);
        enc::ret(self.b());
    }

    fn emit_deferred(&mut self) {
        let stubs = std::mem::take(&mut self.stubs);
        for st in &stubs {
            let start = self.buf.offset();
            let b = &mut self.buf;
            match st.action {
                StubAction::Zero => enc::alu_rr(b, Sz::W, Alu1::Xor, st.dst, st.dst),
                StubAction::Zext32 => enc::mov_rr(b, Sz::W, st.dst, st.dst),
                StubAction::Neg(s) => enc::neg(b, s, st.dst),
            }
            // Back to the code after the division.
            let back = i64::from(st.resume) - (i64::from(b.offset()) + 2);
            match i8::try_from(back) {
                Ok(d) => enc::jmp_short(b, d),
                Err(_) => {
                    let d = i64::from(st.resume) - (i64::from(b.offset()) + 5);
                    enc::jmp_near(b, d as i32);
                }
            }
            // The jcc's displacement counts from its end.
            let rel = i64::from(start) - (i64::from(st.jcc_disp) + 4);
            let at = st.jcc_disp as usize;
            if let Some(field) = self.buf.bytes_mut().get_mut(at..at + 4) {
                field.copy_from_slice(&(rel as i32).to_le_bytes());
            }
        }
        // Keep the allocation for the next pass.
        self.stubs = stubs;
        self.stubs.clear();
    }

    // ---- moves ----------------------------------------------------------------

    #[inline(always)]
    fn mov(&mut self, size: OperandSize, dst: Gpr, src: Gpr) {
        if size == OperandSize::S64 && dst == src {
            return;
        }
        enc::mov_rr(self.b(), sz(size), dst, src);
    }

    #[inline]
    fn mov_imm(&mut self, dst: Gpr, value: u64) {
        let b = self.b();
        if value == 0 {
            enc::alu_rr(b, Sz::W, Alu1::Xor, dst, dst);
        } else if let Ok(v) = u32::try_from(value) {
            enc::mov_r32_imm(b, dst, v);
        } else if let Ok(v) = i32::try_from(value as i64) {
            enc::mov_r64_simm(b, dst, v);
        } else {
            enc::movabs(b, dst, value);
        }
    }

    fn extend(&mut self, kind: ExtendKind, dst: Gpr, src: Gpr) {
        let b = self.b();
        match kind {
            ExtendKind::I8To32 => enc::movsx_r8(b, Sz::W, dst, src),
            ExtendKind::I16To32 => enc::movsx_r16(b, Sz::W, dst, src),
            ExtendKind::I8To64 => enc::movsx_r8(b, Sz::Q, dst, src),
            ExtendKind::I16To64 => enc::movsx_r16(b, Sz::Q, dst, src),
            ExtendKind::I32To64 => enc::movsxd_rr(b, dst, src),
        }
    }

    fn zero_extend(&mut self, bits: u8, dst: Gpr, src: Gpr) {
        match bits {
            16 => enc::movzx_r32_r16(self.b(), dst, src),
            32 => enc::mov_rr(self.b(), Sz::W, dst, src),
            _ => self.mov(OperandSize::S64, dst, src),
        }
    }

    fn byte_swap(&mut self, bits: u8, dst: Gpr, src: Gpr) {
        self.mov(OperandSize::S64, dst, src);
        let b = self.b();
        match bits {
            16 => {
                enc::shift_ri(b, Sz::H, Shift::Ror, dst, 8);
                enc::movzx_r32_r16(b, dst, dst);
            }
            32 => enc::bswap(b, Sz::W, dst),
            _ => enc::bswap(b, Sz::Q, dst),
        }
    }

    // ---- arithmetic -----------------------------------------------------------

    #[inline(always)]
    fn alu(&mut self, kind: AluKind, size: OperandSize, dst: Gpr, lhs: Gpr, rhs: RegImm<Gpr>) {
        // The common two-operand form stays small; the rest is out of line.
        let (Some(op), true) = (alu1(kind), dst == lhs) else {
            return self.alu_general(kind, size, dst, lhs, rhs);
        };
        match rhs {
            RegImm::Reg(r) => enc::alu_rr(&mut self.buf, sz(size), op, dst, r),
            RegImm::Imm(i) => enc::alu_ri(&mut self.buf, sz(size), op, dst, i),
        }
    }

    #[inline(always)]
    fn shift(&mut self, kind: ShiftKind, size: OperandSize, dst: Gpr, lhs: Gpr, rhs: RegImm<Gpr>) {
        // The common in-place shift by a non-zero constant stays small; the
        // rest is out of line.
        if let (true, RegImm::Imm(i)) = (dst == lhs, rhs) {
            let n = (i as u32 & (size.bits() - 1)) as u8;
            if n != 0 {
                let op = shift_op(kind);
                enc::shift_ri(&mut self.buf, sz(size), op, dst, n);
                return;
            }
        }
        self.shift_general(kind, size, dst, lhs, rhs);
    }

    #[inline]
    fn rotate_left(&mut self, size: OperandSize, dst: Gpr, amount: u8) -> bool {
        enc::shift_ri(self.b(), sz(size), Shift::Rol, dst, amount);
        true
    }

    const INDEXED_ADDRESSING: bool = true;

    #[inline]
    fn add3(&mut self, dst: Gpr, a: Gpr, b: Gpr, imm: i32) {
        enc::lea_indexed(self.b(), dst, a, b, imm);
    }

    #[inline]
    fn load_indexed(
        &mut self,
        size: Size,
        dst: Gpr,
        a: Gpr,
        b: Gpr,
        off: i32,
    ) -> Result<(), JitErrorKind> {
        enc::load_indexed(self.b(), msz(size), dst, a, b, off);
        Ok(())
    }

    fn div_rem(&mut self, kind: DivKind, size: OperandSize, dst: Gpr, lhs: Gpr, rhs: RegImm<Gpr>) {
        self.div_rem_inner(kind, size, dst, lhs, rhs, true);
    }

    fn div_rem_nonzero(&mut self, kind: DivKind, size: OperandSize, dst: Gpr, lhs: Gpr, rhs: Gpr) {
        self.div_rem_inner(kind, size, dst, lhs, RegImm::Reg(rhs), false);
    }

    fn neg(&mut self, size: OperandSize, dst: Gpr, src: Gpr) {
        self.mov(OperandSize::S64, dst, src);
        enc::neg(self.b(), sz(size), dst);
    }

    // ---- memory ---------------------------------------------------------------

    #[inline(always)]
    fn load(&mut self, size: Size, signed: bool, dst: Gpr, addr: Mem) -> Result<(), JitErrorKind> {
        let b = self.b();
        match (size, signed) {
            (Size::B | Size::H, false) => enc::load_zx(b, msz(size), dst, addr),
            (Size::W | Size::DW, false) => enc::load(b, msz(size), dst, addr),
            (Size::B | Size::H | Size::W, true) => enc::load_sx(b, msz(size), dst, addr),
            (Size::DW, true) => return Err(JitErrorKind::BadSize(8)),
        }
        Ok(())
    }

    #[inline(always)]
    fn store(&mut self, size: Size, addr: Mem, src: RegImm<Gpr>) -> Result<(), JitErrorKind> {
        match src {
            RegImm::Reg(r) => enc::store(self.b(), msz(size), addr, r),
            RegImm::Imm(i) => enc::store_imm(self.b(), msz(size), addr, i),
        }
        Ok(())
    }

    fn atomic_rmw(
        &mut self,
        kind: RmwKind,
        size: Size,
        addr: Mem,
        src: Gpr,
        fetch: bool,
    ) -> Result<(), JitErrorKind> {
        let s = rmw_size(size)?;
        let op = match kind {
            RmwKind::Xchg => {
                enc::xchg(self.b(), s, addr, src);
                return Ok(());
            }
            RmwKind::Add if fetch => {
                enc::lock_xadd(self.b(), s, addr, src);
                return Ok(());
            }
            RmwKind::Add => Alu1::Add,
            RmwKind::Or => Alu1::Or,
            RmwKind::And => Alu1::And,
            RmwKind::Xor => Alu1::Xor,
        };
        if !fetch {
            enc::lock_alu(self.b(), s, op, addr, src);
            return Ok(());
        }
        // Fetch-or/and/xor: a cmpxchg loop, which needs rax. Keep r0 in AUX2
        // and read it from there wherever rax was an operand.
        let b = &mut self.buf;
        let m = Mem {
            base: if addr.base == Gpr::RAX {
                AUX2
            } else {
                addr.base
            },
            disp: addr.disp,
        };
        let val = if src == Gpr::RAX { AUX2 } else { src };
        enc::mov_rr(b, Sz::Q, AUX2, Gpr::RAX);
        enc::load(b, s, Gpr::RAX, m);
        let top = b.bytes().len();
        enc::mov_rr(b, Sz::Q, AUX, Gpr::RAX);
        enc::alu_rr(b, s, op, AUX, val);
        enc::lock_cmpxchg(b, s, m, AUX);
        let back = top as i64 - (b.bytes().len() as i64 + 2);
        enc::jcc_short(b, Cc::Ne, back as i8);
        if src != Gpr::RAX {
            // The old value (already zero-extended for W) goes to src; r0 comes back.
            enc::mov_rr(b, s, src, Gpr::RAX);
            enc::mov_rr(b, Sz::Q, Gpr::RAX, AUX2);
        }
        Ok(())
    }

    fn atomic_cmpxchg(
        &mut self,
        size: Size,
        addr: Mem,
        expected: Gpr,
        new: Gpr,
    ) -> Result<(), JitErrorKind> {
        let s = rmw_size(size)?;
        if expected != Gpr::RAX {
            return Err(JitErrorKind::Unsupported(
                "cmpxchg expected value outside rax",
            ));
        }
        enc::lock_cmpxchg(self.b(), s, addr, new);
        if s == Sz::W {
            // On success a 32-bit cmpxchg leaves rax's upper half alone; eBPF wants it zero.
            enc::mov_rr(self.b(), Sz::W, Gpr::RAX, Gpr::RAX);
        }
        Ok(())
    }

    fn load_acquire(&mut self, size: Size, dst: Gpr, addr: Mem) -> Result<(), JitErrorKind> {
        // x86-64 loads already have acquire ordering.
        self.load(size, false, dst, addr)
    }

    fn store_release(&mut self, size: Size, addr: Mem, src: Gpr) -> Result<(), JitErrorKind> {
        // x86-64 stores already have release ordering.
        self.store(size, addr, RegImm::Reg(src))
    }

    // ---- control flow ---------------------------------------------------------

    #[inline(always)]
    fn jmp(&mut self, target: Label) -> Result<(), JitErrorKind> {
        let b = &mut self.buf;
        let e0 = b.estimate(target, 0);
        if e0.may_shorten && e0.disp == 0 && b.is_forward(target) {
            // The target is the next instruction.
            b.record(target, LabelField::Omitted);
            return Ok(());
        }
        let e = b.estimate(target, 2);
        match i8::try_from(e.disp) {
            Ok(d) if e.may_shorten => {
                enc::jmp_short(b, d);
                b.record(target, LabelField::Rel8);
            }
            _ => {
                enc::jmp_near(b, rel32(b.estimate(target, 5).disp)?);
                b.record(target, LabelField::Rel32);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn branch(
        &mut self,
        cond: IntCmpKind,
        size: OperandSize,
        lhs: Gpr,
        rhs: RegImm<Gpr>,
        target: Label,
    ) -> Result<(), JitErrorKind> {
        let s = sz(size);
        let b = &mut self.buf;
        match (cond, rhs) {
            (IntCmpKind::TestNonZero, RegImm::Reg(r)) => enc::test_rr(b, s, lhs, r),
            (IntCmpKind::TestNonZero, RegImm::Imm(i)) => enc::test_ri(b, s, lhs, i),
            // `test x, x` sets ZF, SF and clears CF, OF exactly as `cmp x, 0`.
            (_, RegImm::Imm(0)) => enc::test_rr(b, s, lhs, lhs),
            (_, RegImm::Imm(i)) => enc::alu_ri(b, s, Alu1::Cmp, lhs, i),
            (_, RegImm::Reg(r)) => enc::alu_rr(b, s, Alu1::Cmp, lhs, r),
        }
        jcc_to(b, cc(cond), target)
    }

    fn branch_on_last_alu(
        &mut self,
        cond: IntCmpKind,
        target: Label,
    ) -> Result<bool, JitErrorKind> {
        // `alu`'s in-place add/sub/and/or/xor is one `add`/`sub`/`and`/
        // `or`/`xor`, which sets ZF from its result (32-bit forms from the
        // 32-bit result).
        match cond {
            IntCmpKind::Eq | IntCmpKind::Ne => {
                jcc_to(&mut self.buf, cc(cond), target)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn call_helper(&mut self, addr: u64) -> Result<(), JitErrorKind> {
        self.call_helper_preserving(addr, 0)
    }

    fn call_helper_preserving(&mut self, addr: u64, preserve: u16) -> Result<(), JitErrorKind> {
        // The driver's mask (from the helper table) and any declared with
        // `preserve_around_helper`.
        let keep = preserve
            | self
                .fastcall
                .iter()
                .find(|e| e.0 == addr)
                .map_or(0, |e| e.1);
        // bpf_fastcall: save what the helper may clobber but must preserve,
        // keeping rsp 16-byte aligned at the call.
        let mut saved = [Gpr::RAX; 6];
        let mut n = 0;
        for (i, r) in REG_MAP.iter().take(6).enumerate() {
            if keep & (1 << i) != 0 {
                if let Some(slot) = saved.get_mut(n) {
                    *slot = *r;
                    n += 1;
                }
            }
        }
        let saved = saved.get(..n).unwrap_or(&[]);
        for r in saved {
            enc::push(self.b(), *r);
        }
        if n % 2 == 1 {
            enc::alu_ri(self.b(), Sz::Q, Alu1::Sub, Gpr::RSP, 8);
        }
        // The image may be anywhere relative to the helper: absolute call
        // through the scratch register. Arguments are already in place.
        enc::movabs(self.b(), AUX, addr);
        enc::call_r(self.b(), AUX);
        if n % 2 == 1 {
            enc::alu_ri(self.b(), Sz::Q, Alu1::Add, Gpr::RSP, 8);
        }
        for r in saved.iter().rev() {
            enc::pop(self.b(), *r);
        }
        Ok(())
    }

    fn call_local(&mut self, target: Label, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        self.pass_frame(frame)?;
        self.load_tcc_ptr(frame)?;
        let d = rel32(self.buf.estimate(target, 5).disp)?;
        enc::call_rel(self.b(), d);
        self.buf.record(target, LabelField::Rel32);
        Ok(())
    }

    fn tail_call(&mut self, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        if !frame.tail_call_reachable {
            // The driver marks every frame with a tail call reachable.
            return Err(JitErrorKind::Unsupported(
                "tail call in a frame without counter",
            ));
        }
        let tcc = tcc_ptr_mem(frame)?;
        // r1 = rdi (ctx), r2 = rsi (JitProgArray *), r3 = rdx (index).
        let b = &mut self.buf;
        // if ((u32)index >= array->max_entries) goto out;
        enc::load(
            b,
            Sz::W,
            AUX,
            Mem {
                base: Gpr::RSI,
                disp: PROG_ARRAY_MAX_ENTRIES_OFFSET,
            },
        );
        enc::alu_rr(b, Sz::W, Alu1::Cmp, Gpr::RDX, AUX);
        let out1 = self.jcc_fwd(Cc::Ae);
        let b = &mut self.buf;
        // if (*tcc_ptr >= MAX_TAIL_CALL_CNT) goto out;
        enc::load(b, Sz::Q, Gpr::RAX, tcc);
        enc::load(
            b,
            Sz::Q,
            AUX,
            Mem {
                base: Gpr::RAX,
                disp: 0,
            },
        );
        enc::alu_ri(b, Sz::Q, Alu1::Cmp, AUX, MAX_TAIL_CALL_CNT as i32);
        let out2 = self.jcc_fwd(Cc::Ae);
        let b = &mut self.buf;
        // rcx = array->slots[(u32)index]; if (rcx == 0) goto out;
        enc::mov_rr(b, Sz::W, Gpr::RCX, Gpr::RDX);
        enc::shift_ri(b, Sz::Q, Shift::Shl, Gpr::RCX, 3);
        enc::alu_rr(b, Sz::Q, Alu1::Add, Gpr::RCX, Gpr::RSI);
        enc::load(
            b,
            Sz::Q,
            Gpr::RCX,
            Mem {
                base: Gpr::RCX,
                disp: PROG_ARRAY_SLOTS_OFFSET,
            },
        );
        enc::test_rr(b, Sz::Q, Gpr::RCX, Gpr::RCX);
        let out3 = self.jcc_fwd(Cc::E);
        let b = &mut self.buf;
        // (*tcc_ptr)++
        enc::alu_ri(b, Sz::Q, Alu1::Add, AUX, 1);
        enc::store(
            b,
            Sz::Q,
            Mem {
                base: Gpr::RAX,
                disp: 0,
            },
            AUX,
        );
        if frame.private_stack {
            // The target's frame takes this one's place: its incoming
            // frame address is this frame's r10.
            enc::mov_rr(b, Sz::Q, FIN, Gpr::RBP);
        }
        // Unwind: callee-saved registers, the pointer slot, then the counter
        // slot into rax (a main frame's counter value, a subprogram's copy of
        // the pointer), the frame.
        self.unwind_frame(frame, true);
        let b = &mut self.buf;
        enc::alu_ri(b, Sz::Q, Alu1::Add, Gpr::RCX, TAIL_CALL_ENTRY_OFFSET as i32);
        enc::jmp_r(b, Gpr::RCX);
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
        reg: Gpr,
        table: Label,
        table_len: u32,
        frame: &FrameInfo,
    ) -> Result<(), JitErrorKind> {
        enc::mov_rr(self.b(), Sz::Q, AUX, reg);
        if let Ok(len) = i32::try_from(table_len) {
            if len > 0 {
                // A helper id: r11 = table[r11].
                enc::alu_ri(self.b(), Sz::Q, Alu1::Cmp, AUX, len);
                let direct = self.jcc_fwd(Cc::Ae);
                let d = rel32(self.buf.estimate(table, 7).disp)?;
                let b = &mut self.buf;
                enc::lea_rip(b, AUX2, d);
                b.record(table, LabelField::Rel32);
                enc::shift_ri(b, Sz::Q, Shift::Shl, AUX, 3);
                enc::alu_rr(b, Sz::Q, Alu1::Add, AUX, AUX2);
                enc::load(b, Sz::Q, AUX, Mem { base: AUX, disp: 0 });
                self.patch_here(direct);
            }
        }
        self.pass_frame(frame)?;
        self.load_tcc_ptr(frame)?;
        enc::call_r(self.b(), AUX);
        Ok(())
    }

    fn load_label_address(&mut self, dst: Gpr, target: Label) -> Result<(), JitErrorKind> {
        let d = rel32(self.buf.estimate(target, 7).disp)?;
        enc::lea_rip(self.b(), dst, d);
        self.buf.record(target, LabelField::Rel32);
        Ok(())
    }
}

impl X86Masm {
    /// Restores what the frame setup saved, leaving `rsp` at the return
    /// address and `rbp` the caller's. For a tail call (`tail`), the
    /// counter slot of a tail-call-reachable frame ends up in `rax` (a main
    /// frame's counter value, a subprogram's copy of the pointer); for a
    /// return, `rax` (eBPF `r0`) is left alone.
    fn unwind_frame(&mut self, frame: &FrameInfo, tail: bool) {
        let b = self.b();
        if pad_below(frame) && frame_pad(frame) != 0 {
            enc::alu_ri(b, Sz::Q, Alu1::Add, Gpr::RSP, 8);
        }
        for r in SAVED.iter().rev() {
            if frame.saves(*r) {
                enc::pop(b, REG_MAP[r.idx()]);
            }
        }
        if tail && frame.tail_call_reachable {
            enc::pop(b, Gpr::RAX);
            enc::pop(b, Gpr::RAX);
        } else if frame.private_stack && frame.tail_call_reachable {
            // The two counter words, above the pushes (`leave` skips them
            // on the native stack).
            enc::alu_ri(b, Sz::Q, Alu1::Add, Gpr::RSP, 16);
        }
        if !pad_below(frame) {
            enc::leave(b);
        } else if saves_rbp(frame) {
            enc::pop(b, Gpr::RBP);
        }
    }

    /// Before a call out of a private-stack frame: the callee's incoming
    /// frame address, `r10 - stack_depth`, in [`FIN`].
    fn pass_frame(&mut self, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        if frame.private_stack {
            let d = i32::try_from(frame.stack_depth).map_err(|_| JitErrorKind::ImageTooLarge)?;
            enc::mov_rr(self.b(), Sz::Q, FIN, Gpr::RBP);
            if d != 0 {
                enc::alu_ri(self.b(), Sz::Q, Alu1::Sub, FIN, d);
            }
        }
        Ok(())
    }

    /// Before a bpf-to-bpf call from a tail-call-reachable frame: `rax` =
    /// the counter pointer, which the callee's prologue saves.
    fn load_tcc_ptr(&mut self, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        if frame.tail_call_reachable {
            let m = tcc_ptr_mem(frame)?;
            enc::load(self.b(), Sz::Q, Gpr::RAX, m);
        }
        Ok(())
    }
}

/// The x86 group-1 operation of `kind` (`None` for multiplication).
fn alu1(kind: AluKind) -> Option<Alu1> {
    Some(match kind {
        AluKind::Add => Alu1::Add,
        AluKind::Sub => Alu1::Sub,
        AluKind::And => Alu1::And,
        AluKind::Or => Alu1::Or,
        AluKind::Xor => Alu1::Xor,
        AluKind::Mul => return None,
    })
}

/// The x86 shift of `kind`.
fn shift_op(kind: ShiftKind) -> Shift {
    match kind {
        ShiftKind::Shl => Shift::Shl,
        ShiftKind::ShrU => Shift::Shr,
        ShiftKind::ShrS => Shift::Sar,
    }
}

/// Whether the frame needs no frame pointer: its code never names `r10`
/// (so no eBPF stack slot can be reached, whatever `stack_depth` says), it
/// keeps no tail-call counter (addressed from `rbp`) and it is not on a
/// private stack. Such a frame (a leaf subprogram, typically) has no `mov
/// rbp, rsp` and no eBPF stack; `push rbp` stays if the frame makes calls,
/// for the alignment of `rsp` at them (see [`saves_rbp`]). The kernel's
/// JIT gives every frame a frame pointer.
fn frameless(frame: &FrameInfo) -> bool {
    !frame.private_stack && !frame.tail_call_reachable && !frame.saves(BpfReg::R10)
}

/// Whether the frame setup pushes `rbp`: every frame but a frameless one
/// that makes no native call ([`FrameInfo::makes_calls`]), which leaves
/// `rbp` alone and has no callee that could need `rsp` aligned: its code
/// is the body, the callee-saved pushes it needs, and `ret`.
fn saves_rbp(frame: &FrameInfo) -> bool {
    !frameless(frame) || frame.makes_calls
}

/// Whether the alignment pad goes below the callee-saved pushes (a frame
/// whose `rbp` is not `rsp` after `push rbp`: private stack or frameless),
/// rather than into the `sub rsp` that carves out the eBPF stack.
fn pad_below(frame: &FrameInfo) -> bool {
    frame.private_stack || frameless(frame)
}

/// Padding below the eBPF stack keeping `rsp` 16-byte aligned after the
/// pushes (the two tail-call words never change the parity); none in a
/// frame that makes no native call, where nothing needs the alignment.
fn frame_pad(frame: &FrameInfo) -> u32 {
    if !frame.makes_calls {
        return 0;
    }
    let pushes = SAVED.iter().filter(|r| frame.saves(**r)).count() as u32;
    // Entry rsp = 8 (mod 16); after `push rbp` 0; keep it 0 after the pushes.
    if pushes % 2 == 1 {
        8
    } else {
        0
    }
}

/// The slot holding the tail-call counter pointer: `[rbp - (depth + pad +
/// 16)]`, or on a private stack (where `rbp` points into the private
/// region) `[rsp + pad + 8 * pushes]`, right above the callee-saved pushes
/// (`rsp` is at the bottom of the frame wherever this is read).
pub fn tcc_ptr_mem(frame: &FrameInfo) -> Result<Mem, JitErrorKind> {
    if frame.private_stack {
        let pushes = SAVED.iter().filter(|r| frame.saves(**r)).count() as i32;
        return Ok(Mem {
            base: Gpr::RSP,
            disp: frame_pad(frame) as i32 + 8 * pushes,
        });
    }
    let off = frame
        .stack_depth
        .checked_add(frame_pad(frame) + 16)
        .and_then(|o| i32::try_from(o).ok())
        .ok_or(JitErrorKind::ImageTooLarge)?;
    Ok(Mem {
        base: Gpr::RBP,
        disp: -off,
    })
}

#[inline]
fn rel32(disp: i64) -> Result<i32, JitErrorKind> {
    i32::try_from(disp).map_err(|_| JitErrorKind::ImageTooLarge)
}

impl X86Masm {
    /// [`MacroAssembler::shift`] by a register, by 0, or to another register.
    #[inline(never)]
    fn shift_general(
        &mut self,
        kind: ShiftKind,
        size: OperandSize,
        dst: Gpr,
        lhs: Gpr,
        rhs: RegImm<Gpr>,
    ) {
        let s = sz(size);
        let op = shift_op(kind);
        // Work register: dst, unless dst is the count register of a three-operand form.
        let t = if dst != lhs && rhs == RegImm::Reg(dst) {
            AUX
        } else {
            dst
        };
        self.mov(OperandSize::S64, t, lhs);
        match rhs {
            RegImm::Imm(i) => {
                let n = (i as u32 & (size.bits() - 1)) as u8;
                if n == 0 {
                    // Nothing to shift; a 32-bit result is still zero-extended.
                    if size == OperandSize::S32 {
                        enc::mov_rr(self.b(), Sz::W, t, t);
                    }
                } else {
                    enc::shift_ri(self.b(), s, op, t, n);
                }
            }
            RegImm::Reg(c) if c == Gpr::RCX => enc::shift_rcl(self.b(), s, op, t),
            RegImm::Reg(c) => {
                let b = &mut self.buf;
                if t == Gpr::RCX {
                    // The value lives in rcx, which must hold the count.
                    enc::mov_rr(b, Sz::Q, AUX, Gpr::RCX);
                    enc::mov_rr(b, Sz::Q, Gpr::RCX, c);
                    enc::shift_rcl(b, s, op, AUX);
                    enc::mov_rr(b, Sz::Q, Gpr::RCX, AUX);
                } else {
                    enc::mov_rr(b, Sz::Q, AUX, Gpr::RCX);
                    enc::mov_rr(b, Sz::Q, Gpr::RCX, c);
                    enc::shift_rcl(b, s, op, t);
                    enc::mov_rr(b, Sz::Q, Gpr::RCX, AUX);
                }
            }
        }
        if t != dst {
            enc::mov_rr(self.b(), Sz::Q, dst, t);
        }
    }

    /// [`MacroAssembler::alu`] for multiplication and three operands.
    #[inline(never)]
    fn alu_general(
        &mut self,
        kind: AluKind,
        size: OperandSize,
        dst: Gpr,
        lhs: Gpr,
        rhs: RegImm<Gpr>,
    ) {
        let s = sz(size);
        let mut rhs = rhs;
        if let (AluKind::Add, true) = (kind, dst != lhs) {
            // Three operands in one instruction (a 32-bit `lea` keeps the
            // sum's low half, zero-extended).
            match rhs {
                RegImm::Imm(i) => enc::lea_sized(self.b(), s, dst, Mem { base: lhs, disp: i }),
                RegImm::Reg(r) => enc::lea_rr(self.b(), s, dst, lhs, r),
            }
            return;
        }
        if dst != lhs {
            if rhs == RegImm::Reg(dst) {
                if kind == AluKind::Sub {
                    // dst = lhs - dst: negate-and-add keeps it in two registers.
                    enc::neg(self.b(), s, dst);
                    enc::alu_rr(self.b(), s, Alu1::Add, dst, lhs);
                    return;
                }
                // Commutative: dst = dst op lhs.
                rhs = RegImm::Reg(lhs);
            } else {
                self.mov(OperandSize::S64, dst, lhs);
            }
        }
        let b = self.b();
        let Some(op) = alu1(kind) else {
            // Multiplication.
            match rhs {
                RegImm::Reg(r) => enc::imul_rr(b, s, dst, r),
                RegImm::Imm(i) => enc::imul_rri(b, s, dst, dst, i),
            }
            return;
        };
        match rhs {
            RegImm::Reg(r) => enc::alu_rr(b, s, op, dst, r),
            RegImm::Imm(i) => enc::alu_ri(b, s, op, dst, i),
        }
    }
}

/// Compiles `prog` to x86-64 machine code (not yet executable).
pub fn compile_code(prog: &Program, opts: &JitOptions<'_>) -> Result<CompiledCode, JitError> {
    bpf_jit::compile(&mut X86Masm::new(), prog, opts)
}

/// Compiles `prog` and maps it executable.
pub fn compile(prog: &Program, opts: &JitOptions<'_>) -> Result<JitProgram, JitError> {
    Compiler::new().compile(prog, opts)
}

/// A reusable x86-64 compiler: the backend's code buffer and the driver's
/// tables ([`bpf_jit::Scratch`]) are kept from one compile to the next,
/// so compiling many programs with one `Compiler` allocates only what the
/// results own. [`compile_code`] and [`compile`] use a fresh one.
///
/// ```
/// use bpf_isa::Program;
/// use bpf_jit::{HelperTable, JitOptions};
///
/// let helpers = HelperTable::new();
/// let opts = JitOptions::new(&helpers);
/// let mut jit = bpf_jit_x86::Compiler::new();
/// for imm in 1..4 {
///     // r0 = imm; exit
///     let p = Program::decode(&[
///         0xb7, 0x00, 0x00, 0x00, imm, 0x00, 0x00, 0x00,
///         0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
///     ])
///     .unwrap();
///     let code = jit.compile_code(&p, &opts).unwrap();
///     assert!(!code.code.is_empty());
/// }
/// ```
#[derive(Debug, Default)]
pub struct Compiler {
    masm: X86Masm,
    scratch: bpf_jit::Scratch,
}

impl Compiler {
    /// A compiler with nothing allocated yet.
    pub fn new() -> Compiler {
        Compiler::default()
    }

    /// Compiles `prog` to position-independent code ([`compile_code`]).
    pub fn compile_code(
        &mut self,
        prog: &Program,
        opts: &JitOptions<'_>,
    ) -> Result<CompiledCode, JitError> {
        bpf_jit::compile_reusing(&mut self.masm, &mut self.scratch, prog, opts)
    }

    /// Compiles `prog` and maps it executable ([`compile`]).
    pub fn compile(
        &mut self,
        prog: &Program,
        opts: &JitOptions<'_>,
    ) -> Result<JitProgram, JitError> {
        // Straight from the code buffer into executable memory; direct
        // tail-call sites (if any) stay patchable through a writable alias.
        bpf_jit::compile_executable(
            &mut self.masm,
            &mut self.scratch,
            prog,
            opts,
            X86Masm::PAD_BYTE,
            &direct::X86_SITE_CODEC,
        )
    }
}
