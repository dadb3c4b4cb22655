//! Hand-written x86-64 encoder: one function per instruction form the
//! backend emits, writing straight into a [`CodeBuffer`].
//!
//! Every form is proven in the emit-test table (`src/tests.rs`): expected
//! bytes from `llvm-mc -triple=x86_64 -x86-asm-syntax=intel -show-encoding`
//! and the disassembly `iced-x86` decodes them back to.

use bpf_jit::CodeBuffer;

/// Where the encoders write: the optimizing backend's [`CodeBuffer`], or
/// the baseline tier's cursor ([`crate::baseline`]). Each call appends
/// the low `len` bytes of `v` (`len <= 8`), little-endian.
pub trait Sink {
    /// Appends the low `len` bytes of `v`.
    fn put_le(&mut self, v: u64, len: u32);
    /// Appends the low `len_a` bytes of `a`, then the low `len_b` bytes of `b`.
    fn put_le2(&mut self, a: u64, len_a: u32, b: u64, len_b: u32);
}

impl Sink for CodeBuffer {
    #[inline(always)]
    fn put_le(&mut self, v: u64, len: u32) {
        CodeBuffer::put_le(self, v, len);
    }

    #[inline(always)]
    fn put_le2(&mut self, a: u64, len_a: u32, b: u64, len_b: u32) {
        CodeBuffer::put_le2(self, a, len_a, b, len_b);
    }
}

/// A general-purpose register, by hardware number (`rax` = 0 … `r15` = 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gpr(u8);

impl Gpr {
    /// `rax`
    pub const RAX: Gpr = Gpr(0);
    /// `rcx`
    pub const RCX: Gpr = Gpr(1);
    /// `rdx`
    pub const RDX: Gpr = Gpr(2);
    /// `rbx`
    pub const RBX: Gpr = Gpr(3);
    /// `rsp`
    pub const RSP: Gpr = Gpr(4);
    /// `rbp`
    pub const RBP: Gpr = Gpr(5);
    /// `rsi`
    pub const RSI: Gpr = Gpr(6);
    /// `rdi`
    pub const RDI: Gpr = Gpr(7);
    /// `r8`
    pub const R8: Gpr = Gpr(8);
    /// `r9`
    pub const R9: Gpr = Gpr(9);
    /// `r10`
    pub const R10: Gpr = Gpr(10);
    /// `r11`
    pub const R11: Gpr = Gpr(11);
    /// `r12`
    pub const R12: Gpr = Gpr(12);
    /// `r13`
    pub const R13: Gpr = Gpr(13);
    /// `r14`
    pub const R14: Gpr = Gpr(14);
    /// `r15`
    pub const R15: Gpr = Gpr(15);

    /// The register with hardware number `n & 15`.
    #[inline]
    pub const fn new(n: u8) -> Gpr {
        Gpr(n & 15)
    }

    /// Hardware number, 0 to 15.
    #[inline]
    pub const fn num(self) -> u8 {
        self.0
    }

    #[inline]
    const fn low(self) -> u8 {
        self.0 & 7
    }

    /// Whether the 8-bit form needs a REX prefix (`spl`, `bpl`, `sil`, `dil`).
    #[inline]
    const fn byte_needs_rex(self) -> bool {
        matches!(self.0, 4..=7)
    }
}

/// A memory operand `[base + disp]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mem {
    /// Base register.
    pub base: Gpr,
    /// Signed displacement.
    pub disp: i32,
}

/// Operand size of an integer instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sz {
    /// 8 bits.
    B,
    /// 16 bits (operand-size prefix `66`).
    H,
    /// 32 bits (writes zero-extend to 64).
    W,
    /// 64 bits (`REX.W`).
    Q,
}

/// Condition codes (the low nibble of `Jcc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cc {
    /// below (unsigned <)
    B = 0x2,
    /// above or equal (unsigned >=)
    Ae = 0x3,
    /// equal
    E = 0x4,
    /// not equal
    Ne = 0x5,
    /// below or equal (unsigned <=)
    Be = 0x6,
    /// above (unsigned >)
    A = 0x7,
    /// less (signed <)
    L = 0xc,
    /// greater or equal (signed >=)
    Ge = 0xd,
    /// less or equal (signed <=)
    Le = 0xe,
    /// greater (signed >)
    G = 0xf,
}

/// `/digit` of the group-1 ALU instructions (`81 /n`, `83 /n`) and their
/// `op r/m, r` opcode (`8*n + 1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Alu1 {
    /// `add`
    Add = 0,
    /// `or`
    Or = 1,
    /// `and`
    And = 4,
    /// `sub`
    Sub = 5,
    /// `xor`
    Xor = 6,
    /// `cmp`
    Cmp = 7,
}

/// `/digit` of the group-2 shifts (`C1 /n ib`, `D3 /n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Shift {
    /// `rol`
    Rol = 0,
    /// `ror`
    Ror = 1,
    /// `shl`
    Shl = 4,
    /// `shr`
    Shr = 5,
    /// `sar`
    Sar = 7,
}

#[inline]
const fn fits_i8(v: i64) -> bool {
    v >= i8::MIN as i64 && v <= i8::MAX as i64
}

// ---- assembling one instruction ----------------------------------------------
//
// An instruction is built in two registers and written with one
// `CodeBuffer::put_le2`: `Head` holds the prefixes, REX, opcode, ModRM and
// SIB (at most 7 bytes: `F0 66 REX 0F op ModRM SIB`), the tail the
// displacement and immediate (at most 8 bytes). Optional bytes are added
// without branching where the condition is computed anyway.

/// Opcode bytes, little-endian in `v` (first byte lowest), `n` of them.
#[derive(Clone, Copy)]
struct Op {
    v: u16,
    n: u32,
}

/// A one-byte opcode.
#[inline(always)]
const fn op1(a: u8) -> Op {
    Op { v: a as u16, n: 1 }
}

/// A two-byte opcode (`0F xx`).
#[inline(always)]
const fn op2(a: u8, b: u8) -> Op {
    Op {
        v: a as u16 | (b as u16) << 8,
        n: 2,
    }
}

/// The leading bytes of an instruction, little-endian: the first `n` bytes
/// of `v` (bytes above `n` are zero).
#[derive(Clone, Copy)]
struct Head {
    v: u64,
    n: u32,
}

impl Head {
    const EMPTY: Head = Head { v: 0, n: 0 };

    /// Appends `x`.
    #[inline(always)]
    const fn byte(self, x: u8) -> Head {
        Head {
            v: self.v | (x as u64).wrapping_shl(self.n * 8),
            n: self.n + 1,
        }
    }

    /// Appends `x` if `c`.
    #[inline(always)]
    const fn byte_if(self, x: u8, c: bool) -> Head {
        let x = x & 0u8.wrapping_sub(c as u8);
        Head {
            v: self.v | (x as u64).wrapping_shl(self.n * 8),
            n: self.n + c as u32,
        }
    }

    /// Puts `x` in front if `c` (prefixes go in front of a body whose
    /// length is known, so the body's own bytes sit at constant shifts).
    #[inline(always)]
    const fn prepend_if(self, x: u8, c: bool) -> Head {
        // Put `x` in front unconditionally, then shift it back out unless
        // `c` (the head holds at most 7 bytes, so nothing else is lost).
        Head {
            v: (self.v.wrapping_shl(8) | x as u64).wrapping_shr((!c) as u32 * 8),
            n: self.n + c as u32,
        }
    }

    /// Appends the opcode bytes.
    #[inline(always)]
    const fn op(self, op: Op) -> Head {
        Head {
            v: self.v | (op.v as u64).wrapping_shl(self.n * 8),
            n: self.n + op.n,
        }
    }

    /// Writes the head alone.
    #[inline(always)]
    fn emit(self, b: &mut impl Sink) {
        b.put_le(self.v, self.n);
    }

    /// Writes the head followed by the low `len` bytes of `tail`.
    #[inline(always)]
    fn emit_with(self, b: &mut impl Sink, tail: u64, len: u32) {
        b.put_le2(self.v, self.n, tail, len);
    }
}

/// Whether a register number (ModRM.reg field, 0-15) names `spl`, `bpl`,
/// `sil` or `dil` in an 8-bit access (those need a REX prefix).
#[inline(always)]
const fn byte_reg_needs_rex(r: u8) -> bool {
    (r & 15).wrapping_sub(4) < 4
}

/// `[66] [REX] body`: the operand-size prefix for `H`, then the REX prefix
/// for `reg` (ModRM.reg) and `rm` (ModRM.rm or opcode register), present
/// when any of its bits is set or `force` (8-bit access to
/// spl/bpl/sil/dil), in front of `body`.
#[inline(always)]
const fn prefixes(body: Head, sz: Sz, w: bool, reg: u8, rm: u8, force: bool) -> Head {
    let rex = 0x40 | ((w as u8) << 3) | (((reg >> 3) & 1) << 2) | ((rm >> 3) & 1);
    body.prepend_if(rex, rex != 0x40 || force)
        .prepend_if(0x66, matches!(sz, Sz::H))
}

/// `[prefix] [REX] op ModRM(11, reg, rm)`.
#[inline(always)]
const fn head_rr(sz: Sz, op: Op, reg: u8, rm: Gpr) -> Head {
    let force = matches!(sz, Sz::B) && (byte_reg_needs_rex(reg) || rm.byte_needs_rex());
    let body = Head::EMPTY.op(op).byte(0xc0 | ((reg & 7) << 3) | rm.low());
    prefixes(body, sz, matches!(sz, Sz::Q), reg, rm.0, force)
}

/// `[prefix] [REX] op ModRM(11, reg, rm)`, written.
#[inline(always)]
fn rr(b: &mut impl Sink, sz: Sz, op: Op, reg: u8, rm: Gpr) {
    head_rr(sz, op, reg, rm).emit(b);
}

/// `[prefix] [REX] op ModRM(11, reg, rm)` and an `len`-byte immediate.
#[inline(always)]
fn rr_imm(b: &mut impl Sink, sz: Sz, op: Op, reg: u8, rm: Gpr, imm: u32, len: u32) {
    head_rr(sz, op, reg, rm).emit_with(b, u64::from(imm), len);
}

/// `[F0] [prefix] [REX] op ModRM [SIB] [disp]` for a memory operand, with
/// an `ilen`-byte immediate (at most 4) after the displacement.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rm_imm(b: &mut impl Sink, lock: bool, sz: Sz, op: Op, reg: u8, m: Mem, imm: u32, ilen: u32) {
    let (h, dlen, dmask) = head_rm(lock, sz, op, reg, m);
    let tail = (u64::from(m.disp as u32) & dmask) | u64::from(imm).wrapping_shl(dlen * 8);
    h.emit_with(b, tail, dlen + ilen);
}

/// `[F0] [prefix] [REX] op ModRM [SIB]` for the memory operand `m`, with
/// the displacement's length (0, 1 or 4: the shortest form) and mask.
#[inline(always)]
const fn head_rm(lock: bool, sz: Sz, op: Op, reg: u8, m: Mem) -> (Head, u32, u64) {
    let force = matches!(sz, Sz::B) && byte_reg_needs_rex(reg);
    let base = m.base.low();
    // mod 00 with base rbp/r13 means rip-relative/disp32, so those always
    // take a displacement.
    let (md, dlen, dmask) = if m.disp == 0 && base != 5 {
        (0u8, 0u32, 0u64)
    } else if fits_i8(m.disp as i64) {
        (1, 1, 0xff)
    } else {
        (2, 4, 0xffff_ffff)
    };
    let body = Head::EMPTY
        .op(op)
        .byte((md << 6) | ((reg & 7) << 3) | base)
        // SIB: no index, base = rsp/r12.
        .byte_if(0x24, base == 4);
    let h = prefixes(body, sz, matches!(sz, Sz::Q), reg, m.base.0, force).prepend_if(0xf0, lock);
    (h, dlen, dmask)
}

// ---- whole forms, for tables built at compile time ---------------------------
//
// The baseline tier (`crate::baseline`) looks its hot forms up in static
// tables instead of assembling them; these give it the bytes the encoders
// above write, as `(bytes, count)`, in constant evaluation.

/// The bytes of `opc /reg` on the register `rm` (`[66] [REX] opc ModRM`,
/// a one-byte opcode), as [`alu_rr`], [`shift_ri`] and the like write them
/// before any immediate.
pub(crate) const fn form_reg(sz: Sz, opc: u8, reg: u8, rm: Gpr) -> (u64, u32) {
    let h = head_rr(sz, op1(opc), reg, rm);
    (h.v, h.n)
}

/// The bytes of `[REX] op+r` (no ModRM), as [`mov_r32_imm`], [`push`] and
/// [`pop`] write them before any immediate.
pub(crate) const fn form_opreg(w: bool, op: u8, r: Gpr) -> (u64, u32) {
    let h = prefixes(Head::EMPTY.byte(op + r.low()), Sz::W, w, 0, r.0, false);
    (h.v, h.n)
}

/// The bytes of `opc /reg` on `[base + disp8]`, without the displacement
/// (`opc`: one opcode byte, or `0F xx` as `0xxx0F`), as [`load`],
/// [`store`] and the like write them for a displacement in `-128..=127`
/// other than 0. The ModRM byte is the last one.
pub(crate) const fn form_mem_disp8(sz: Sz, opc: u16, reg: u8, base: Gpr) -> (u64, u32) {
    let op = if opc > 0xff {
        op2(opc as u8, (opc >> 8) as u8)
    } else {
        op1(opc as u8)
    };
    let (h, _, _) = head_rm(false, sz, op, reg, Mem { base, disp: 1 });
    (h.v, h.n)
}

/// `[REX] op ModRM SIB [disp]` for the memory operand `[base + index +
/// disp]` (scale 1), at size `W` or `Q`. `rsp` cannot be an index: it
/// goes in the base when it is `index` (the caller never passes it twice).
#[inline(always)]
fn rm_indexed(b: &mut impl Sink, sz: Sz, op: Op, reg: u8, base: Gpr, index: Gpr, disp: i32) {
    let (base, index) = if index == Gpr::RSP {
        (index, base)
    } else {
        (base, index)
    };
    // mod 00 with base rbp/r13 means "no base": those take a displacement.
    let (md, dlen, dmask) = if disp == 0 && base.low() != 5 {
        (0u8, 0u32, 0u64)
    } else if fits_i8(i64::from(disp)) {
        (1, 1, 0xff)
    } else {
        (2, 4, 0xffff_ffff)
    };
    let rex = 0x40
        | (u8::from(sz == Sz::Q) << 3)
        | (((reg >> 3) & 1) << 2)
        | (((index.0 >> 3) & 1) << 1)
        | ((base.0 >> 3) & 1);
    Head::EMPTY
        .op(op)
        .byte((md << 6) | ((reg & 7) << 3) | 0b100)
        .byte((index.low() << 3) | base.low())
        .prepend_if(rex, rex != 0x40)
        .emit_with(b, u64::from(disp as u32) & dmask, dlen);
}

/// `lea dst, [base + index + disp]` (64-bit; flags untouched).
#[inline]
pub fn lea_indexed(b: &mut impl Sink, dst: Gpr, base: Gpr, index: Gpr, disp: i32) {
    rm_indexed(b, Sz::Q, op1(0x8d), dst.0, base, index, disp);
}

/// `dst = *(sz *)(base + index + disp)`, zero-extended: `movzx r32,
/// byte/word [..]` for `B`/`H`, `mov r32/r64, [..]` for `W`/`Q`.
#[inline]
pub fn load_indexed(b: &mut impl Sink, sz: Sz, dst: Gpr, base: Gpr, index: Gpr, disp: i32) {
    let (op, osz) = match sz {
        Sz::B => (op2(0x0f, 0xb6), Sz::W),
        Sz::H => (op2(0x0f, 0xb7), Sz::W),
        Sz::W => (op1(0x8b), Sz::W),
        Sz::Q => (op1(0x8b), Sz::Q),
    };
    rm_indexed(b, osz, op, dst.0, base, index, disp);
}

/// `[F0] [prefix] [REX] op ModRM [SIB] [disp]` for a memory operand.
#[inline(always)]
fn rm(b: &mut impl Sink, lock: bool, sz: Sz, op: Op, reg: u8, m: Mem) {
    rm_imm(b, lock, sz, op, reg, m, 0, 0);
}

/// `[REX] op+r` with the register in the opcode's low bits, and an
/// `len`-byte immediate.
#[inline(always)]
fn opreg_imm(b: &mut impl Sink, w: bool, op: u8, r: Gpr, imm: u64, len: u32) {
    let body = Head::EMPTY.byte(op + r.low());
    prefixes(body, Sz::W, w, 0, r.0, false).emit_with(b, imm, len);
}

// ---- moves -------------------------------------------------------------------

/// `mov dst, src` (32-bit form zero-extends).
#[inline]
pub fn mov_rr(b: &mut impl Sink, sz: Sz, dst: Gpr, src: Gpr) {
    rr(b, sz, op1(0x89), src.0, dst);
}

/// `mov r32, imm32` (`B8+r`; zero-extends).
#[inline]
pub fn mov_r32_imm(b: &mut impl Sink, dst: Gpr, imm: u32) {
    opreg_imm(b, false, 0xb8, dst, u64::from(imm), 4);
}

/// `mov r64, simm32` (`REX.W C7 /0`; sign-extends).
#[inline]
pub fn mov_r64_simm(b: &mut impl Sink, dst: Gpr, imm: i32) {
    rr_imm(b, Sz::Q, op1(0xc7), 0, dst, imm as u32, 4);
}

/// `movabs r64, imm64` (`REX.W B8+r`).
#[inline]
pub fn movabs(b: &mut impl Sink, dst: Gpr, imm: u64) {
    opreg_imm(b, true, 0xb8, dst, imm, 8);
}

/// `movzx r32, r/m8` (register source).
#[inline]
pub fn movzx_r32_r8(b: &mut impl Sink, dst: Gpr, src: Gpr) {
    // The source is an 8-bit register: REX needed for sil/dil/bpl/spl.
    let body = Head::EMPTY
        .op(op2(0x0f, 0xb6))
        .byte(0xc0 | (dst.low() << 3) | src.low());
    prefixes(body, Sz::W, false, dst.0, src.0, src.byte_needs_rex()).emit(b);
}

/// `movzx r32, r/m16` (register source).
#[inline]
pub fn movzx_r32_r16(b: &mut impl Sink, dst: Gpr, src: Gpr) {
    rr(b, Sz::W, op2(0x0f, 0xb7), dst.0, src);
}

/// `movsx dst, src8` with `dst` 32 (`W`) or 64 (`Q`) bits.
#[inline]
pub fn movsx_r8(b: &mut impl Sink, sz: Sz, dst: Gpr, src: Gpr) {
    let body = Head::EMPTY
        .op(op2(0x0f, 0xbe))
        .byte(0xc0 | (dst.low() << 3) | src.low());
    prefixes(body, Sz::W, sz == Sz::Q, dst.0, src.0, src.byte_needs_rex()).emit(b);
}

/// `movsx dst, src16` with `dst` 32 (`W`) or 64 (`Q`) bits.
#[inline]
pub fn movsx_r16(b: &mut impl Sink, sz: Sz, dst: Gpr, src: Gpr) {
    rr(b, sz, op2(0x0f, 0xbf), dst.0, src);
}

/// `movsxd r64, r32`.
#[inline]
pub fn movsxd_rr(b: &mut impl Sink, dst: Gpr, src: Gpr) {
    rr(b, Sz::Q, op1(0x63), dst.0, src);
}

/// `lea r64, [rip + disp]`.
#[inline]
pub fn lea_rip(b: &mut impl Sink, dst: Gpr, disp: i32) {
    let body = Head::EMPTY.byte(0x8d).byte((dst.low() << 3) | 0b101);
    prefixes(body, Sz::W, true, dst.0, 0, false).emit_with(b, u64::from(disp as u32), 4);
}

// ---- ALU ---------------------------------------------------------------------

/// `lea dst, [m.base + m.disp]` (64-bit; flags untouched).
#[inline]
pub fn lea(b: &mut impl Sink, dst: Gpr, m: Mem) {
    lea_sized(b, Sz::Q, dst, m);
}

/// `lea dst, [m.base + m.disp]` at size `W` (the sum's low 32 bits,
/// zero-extended) or `Q`; flags untouched.
#[inline]
pub fn lea_sized(b: &mut impl Sink, sz: Sz, dst: Gpr, m: Mem) {
    rm(b, false, sz, op1(0x8d), dst.0, m);
}

/// `lea dst, [x + y]` at size `W` (the sum's low 32 bits, zero-extended)
/// or `Q`; flags untouched. `rbp`/`r13` go in the SIB index when the
/// other register can be the base (as a base they need a zero `disp8`);
/// `rsp` is never an index.
#[inline]
pub fn lea_rr(b: &mut impl Sink, sz: Sz, dst: Gpr, x: Gpr, y: Gpr) {
    let (base, index) = if (x.low() == 5 && y.low() != 5) || y == Gpr::RSP {
        (y, x)
    } else {
        (x, y)
    };
    let disp8 = base.low() == 5;
    let rex = 0x40
        | (u8::from(sz == Sz::Q) << 3)
        | (((dst.0 >> 3) & 1) << 2)
        | (((index.0 >> 3) & 1) << 1)
        | ((base.0 >> 3) & 1);
    let modrm = (u8::from(disp8) << 6) | (dst.low() << 3) | 0b100;
    let sib = (index.low() << 3) | base.low();
    Head::EMPTY
        .byte(0x8d)
        .byte(modrm)
        .byte(sib)
        .byte_if(0, disp8)
        .prepend_if(rex, rex != 0x40)
        .emit(b);
}

/// `op dst, src` for the group-1 operations (`01 09 21 29 31 39`).
#[inline]
pub fn alu_rr(b: &mut impl Sink, sz: Sz, op: Alu1, dst: Gpr, src: Gpr) {
    rr(b, sz, op1((op as u8) * 8 + 1), src.0, dst);
}

/// `op dst, imm` (`83 /n ib` when the immediate fits 8 bits, else `81 /n id`).
#[inline]
pub fn alu_ri(b: &mut impl Sink, sz: Sz, op: Alu1, dst: Gpr, imm: i32) {
    let short = fits_i8(i64::from(imm));
    // 83 for an 8-bit immediate, 81 for a 32-bit one.
    let opc = 0x81 | (u8::from(short) << 1);
    let len = if short { 1 } else { 4 };
    rr_imm(b, sz, op1(opc), op as u8, dst, imm as u32, len);
}

/// `test a, b_`.
#[inline]
pub fn test_rr(b: &mut impl Sink, sz: Sz, a: Gpr, b_: Gpr) {
    rr(b, sz, op1(0x85), b_.0, a);
}

/// `test r, imm32` (`F7 /0 id`).
#[inline]
pub fn test_ri(b: &mut impl Sink, sz: Sz, a: Gpr, imm: i32) {
    rr_imm(b, sz, op1(0xf7), 0, a, imm as u32, 4);
}

/// `imul dst, src`.
#[inline]
pub fn imul_rr(b: &mut impl Sink, sz: Sz, dst: Gpr, src: Gpr) {
    rr(b, sz, op2(0x0f, 0xaf), dst.0, src);
}

/// `imul dst, src, imm` (`6B /r ib` or `69 /r id`).
#[inline]
pub fn imul_rri(b: &mut impl Sink, sz: Sz, dst: Gpr, src: Gpr, imm: i32) {
    let short = fits_i8(i64::from(imm));
    // 6B for an 8-bit immediate, 69 for a 32-bit one.
    let opc = 0x69 | (u8::from(short) << 1);
    let len = if short { 1 } else { 4 };
    rr_imm(b, sz, op1(opc), dst.0, src, imm as u32, len);
}

/// `shift dst, imm8` (`C1 /n ib`).
#[inline]
pub fn shift_ri(b: &mut impl Sink, sz: Sz, op: Shift, dst: Gpr, imm: u8) {
    rr_imm(b, sz, op1(0xc1), op as u8, dst, u32::from(imm), 1);
}

/// `shift dst, cl` (`D3 /n`).
#[inline]
pub fn shift_rcl(b: &mut impl Sink, sz: Sz, op: Shift, dst: Gpr) {
    rr(b, sz, op1(0xd3), op as u8, dst);
}

/// `neg dst` (`F7 /3`).
#[inline]
pub fn neg(b: &mut impl Sink, sz: Sz, dst: Gpr) {
    rr(b, sz, op1(0xf7), 3, dst);
}

/// `div src` (unsigned, `F7 /6`) or `idiv src` (signed, `F7 /7`) of `rdx:rax`.
#[inline]
pub fn div(b: &mut impl Sink, sz: Sz, signed: bool, src: Gpr) {
    rr(b, sz, op1(0xf7), 6 | u8::from(signed), src);
}

/// `cdq` (`W`) or `cqo` (`Q`): sign-extend `eax`/`rax` into `edx`/`rdx`.
#[inline]
pub fn sign_extend_ax(b: &mut impl Sink, sz: Sz) {
    Head::EMPTY.byte(0x99).prepend_if(0x48, sz == Sz::Q).emit(b);
}

/// `bswap r32` / `bswap r64`.
#[inline]
pub fn bswap(b: &mut impl Sink, sz: Sz, r: Gpr) {
    let body = Head::EMPTY.byte(0x0f).byte(0xc8 + r.low());
    prefixes(body, Sz::W, sz == Sz::Q, 0, r.0, false).emit(b);
}

// ---- memory ------------------------------------------------------------------

/// `mov r, [m]` (sizes `W`, `Q`).
#[inline]
pub fn load(b: &mut impl Sink, sz: Sz, dst: Gpr, m: Mem) {
    rm(b, false, sz, op1(0x8b), dst.0, m);
}

/// `movzx r32, byte/word [m]` (`sz` is the memory size, `B` or `H`).
#[inline]
pub fn load_zx(b: &mut impl Sink, sz: Sz, dst: Gpr, m: Mem) {
    let op = if sz == Sz::B { 0xb6 } else { 0xb7 };
    rm(b, false, Sz::W, op2(0x0f, op), dst.0, m);
}

/// `movsx r64, byte/word [m]` or `movsxd r64, dword [m]` (`sz` is the memory size).
#[inline]
pub fn load_sx(b: &mut impl Sink, sz: Sz, dst: Gpr, m: Mem) {
    let op = match sz {
        Sz::B => op2(0x0f, 0xbe),
        Sz::H => op2(0x0f, 0xbf),
        _ => op1(0x63),
    };
    rm(b, false, Sz::Q, op, dst.0, m);
}

/// `mov [m], src` (any size).
#[inline]
pub fn store(b: &mut impl Sink, sz: Sz, m: Mem, src: Gpr) {
    // 88 for a byte, 89 otherwise.
    let op = 0x88 | u8::from(sz != Sz::B);
    rm(b, false, sz, op1(op), src.0, m);
}

/// `mov [m], imm` (`C6 /0 ib`, `66 C7 /0 iw`, `C7 /0 id`, `REX.W C7 /0 id`).
#[inline]
pub fn store_imm(b: &mut impl Sink, sz: Sz, m: Mem, imm: i32) {
    let (op, len) = match sz {
        Sz::B => (0xc6, 1),
        Sz::H => (0xc7, 2),
        _ => (0xc7, 4),
    };
    rm_imm(b, false, sz, op1(op), 0, m, imm as u32, len);
}

/// `lock op [m], src` for `add`, `or`, `and`, `xor` (sizes `W`, `Q`).
#[inline]
pub fn lock_alu(b: &mut impl Sink, sz: Sz, op: Alu1, m: Mem, src: Gpr) {
    rm(b, true, sz, op1((op as u8) * 8 + 1), src.0, m);
}

/// `lock xadd [m], src`.
#[inline]
pub fn lock_xadd(b: &mut impl Sink, sz: Sz, m: Mem, src: Gpr) {
    rm(b, true, sz, op2(0x0f, 0xc1), src.0, m);
}

/// `xchg [m], src` (implicitly locked).
#[inline]
pub fn xchg(b: &mut impl Sink, sz: Sz, m: Mem, src: Gpr) {
    rm(b, false, sz, op1(0x87), src.0, m);
}

/// `lock cmpxchg [m], src` (compares with `eax`/`rax`).
#[inline]
pub fn lock_cmpxchg(b: &mut impl Sink, sz: Sz, m: Mem, src: Gpr) {
    rm(b, true, sz, op2(0x0f, 0xb1), src.0, m);
}

// ---- control flow ------------------------------------------------------------

/// `jcc rel8`.
#[inline]
pub fn jcc_short(b: &mut impl Sink, cc: Cc, rel: i8) {
    b.put_le(u64::from(0x70 | cc as u8) | u64::from(rel as u8) << 8, 2);
}

/// `jcc rel32`.
#[inline]
pub fn jcc_near(b: &mut impl Sink, cc: Cc, rel: i32) {
    b.put_le2(
        0x0f | u64::from(0x80 | cc as u8) << 8,
        2,
        u64::from(rel as u32),
        4,
    );
}

/// `jmp rel8`.
#[inline]
pub fn jmp_short(b: &mut impl Sink, rel: i8) {
    b.put_le(0xeb | u64::from(rel as u8) << 8, 2);
}

/// `jmp rel32`.
#[inline]
pub fn jmp_near(b: &mut impl Sink, rel: i32) {
    b.put_le2(0xe9, 1, u64::from(rel as u32), 4);
}

/// `call rel32`.
#[inline]
pub fn call_rel(b: &mut impl Sink, rel: i32) {
    b.put_le2(0xe8, 1, u64::from(rel as u32), 4);
}

/// `call r64`.
#[inline]
pub fn call_r(b: &mut impl Sink, r: Gpr) {
    rr(b, Sz::W, op1(0xff), 2, r);
}

/// `jmp r64` (indirect, absolute).
#[inline]
pub fn jmp_r(b: &mut impl Sink, r: Gpr) {
    rr(b, Sz::W, op1(0xff), 4, r);
}

/// `push r64`.
#[inline]
pub fn push(b: &mut impl Sink, r: Gpr) {
    opreg_imm(b, false, 0x50, r, 0, 0);
}

/// `pop r64`.
#[inline]
pub fn pop(b: &mut impl Sink, r: Gpr) {
    opreg_imm(b, false, 0x58, r, 0, 0);
}

/// `sub rsp, imm32` (always the 4-byte immediate form, so the prologue has a fixed size).
#[inline]
pub fn sub_rsp_imm32(b: &mut impl Sink, imm: u32) {
    b.put_le2(0x00ec_8148, 3, u64::from(imm), 4);
}

/// `leave`
#[inline]
pub fn leave(b: &mut impl Sink) {
    b.put_le(0xc9, 1);
}

/// `ret`
#[inline]
pub fn ret(b: &mut impl Sink) {
    b.put_le(0xc3, 1);
}

/// The 5-byte nop `nopl 0(rax,rax,1)` (`0F 1F 44 00 00`), the patch site
/// for attaching trampolines.
#[inline]
pub fn nop5(b: &mut impl Sink) {
    b.put_le(0x00_0044_1f0f, 5);
}

/// The 2-byte nop `xchg ax, ax` (`66 90`).
#[inline]
pub fn nop2(b: &mut impl Sink) {
    b.put_le(0x9066, 2);
}
