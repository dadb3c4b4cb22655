//! A small AArch64 encoder: one function per instruction form the backend
//! emits, each appending one little-endian 32-bit word to a
//! [`CodeBuffer`]. Encodings are from the Arm Architecture Reference Manual
//! (A64 base and LSE instructions); every form is checked against
//! `llvm-objdump` by the crate's encoding table test.

use bpf_jit::CodeBuffer;

/// A general-purpose register number `0..=30`, or 31, which means `xzr`
/// or `sp` depending on the instruction (as in the encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XReg(u8);

impl XReg {
    /// Register `n` (taken modulo 32).
    #[inline]
    pub const fn new(n: u8) -> XReg {
        XReg(n & 31)
    }

    /// The register number as encoded.
    #[inline]
    pub const fn num(self) -> u32 {
        self.0 as u32
    }

    /// `x0`.
    pub const X0: XReg = XReg(0);
    /// `x1`.
    pub const X1: XReg = XReg(1);
    /// `x2`.
    pub const X2: XReg = XReg(2);
    /// `x3`.
    pub const X3: XReg = XReg(3);
    /// `x4`.
    pub const X4: XReg = XReg(4);
    /// `x5`.
    pub const X5: XReg = XReg(5);
    /// `x7`.
    pub const X7: XReg = XReg(7);
    /// `x9`.
    pub const X9: XReg = XReg(9);
    /// `x10`.
    pub const X10: XReg = XReg(10);
    /// `x11`.
    pub const X11: XReg = XReg(11);
    /// `x12`.
    pub const X12: XReg = XReg(12);
    /// `x13`.
    pub const X13: XReg = XReg(13);
    /// `x14`.
    pub const X14: XReg = XReg(14);
    /// `x19`.
    pub const X19: XReg = XReg(19);
    /// `x20`.
    pub const X20: XReg = XReg(20);
    /// `x21`.
    pub const X21: XReg = XReg(21);
    /// `x22`.
    pub const X22: XReg = XReg(22);
    /// `x25`.
    pub const X25: XReg = XReg(25);
    /// `x29`, the frame pointer.
    pub const FP: XReg = XReg(29);
    /// `x30`, the link register.
    pub const LR: XReg = XReg(30);
    /// Register 31 where it means the zero register.
    pub const ZR: XReg = XReg(31);
    /// Register 31 where it means the stack pointer.
    pub const SP: XReg = XReg(31);
}

/// Operand width: `w` (32-bit, result zero-extended) or `x` (64-bit) registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sf {
    /// 32-bit (`w` registers).
    W,
    /// 64-bit (`x` registers).
    X,
}

impl Sf {
    #[inline]
    const fn bit(self) -> u32 {
        match self {
            Sf::W => 0,
            Sf::X => 1 << 31,
        }
    }

    #[inline]
    const fn bits(self) -> u32 {
        match self {
            Sf::W => 32,
            Sf::X => 64,
        }
    }
}

/// Condition codes of `b.cond`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    /// Equal.
    Eq = 0,
    /// Not equal.
    Ne = 1,
    /// Unsigned higher or same.
    Hs = 2,
    /// Unsigned lower.
    Lo = 3,
    /// Unsigned higher.
    Hi = 8,
    /// Unsigned lower or same.
    Ls = 9,
    /// Signed greater or equal.
    Ge = 10,
    /// Signed less than.
    Lt = 11,
    /// Signed greater than.
    Gt = 12,
    /// Signed less or equal.
    Le = 13,
}

impl Cond {
    /// The opposite condition.
    pub const fn invert(self) -> Cond {
        match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Hs => Cond::Lo,
            Cond::Lo => Cond::Hs,
            Cond::Hi => Cond::Ls,
            Cond::Ls => Cond::Hi,
            Cond::Ge => Cond::Lt,
            Cond::Lt => Cond::Ge,
            Cond::Gt => Cond::Le,
            Cond::Le => Cond::Gt,
        }
    }
}

/// Appends one instruction word.
#[inline]
pub fn emit(b: &mut CodeBuffer, word: u32) {
    b.put4(word);
}

#[inline]
const fn rd_rn(rd: XReg, rn: XReg) -> u32 {
    rd.num() | rn.num() << 5
}

// ---- moves and immediates ----------------------------------------------------

/// `mov rd, rm` (`orr rd, zr, rm`); the `w` form zero-extends.
pub fn mov(b: &mut CodeBuffer, sf: Sf, rd: XReg, rm: XReg) {
    logic_reg(b, sf, Logic::Orr, rd, XReg::ZR, rm);
}

/// `mov rd, sp` / `mov sp, rn` (`add rd, rn, #0`, where 31 is `sp`).
pub fn mov_sp(b: &mut CodeBuffer, rd: XReg, rn: XReg) {
    add_sub_imm(b, Sf::X, false, false, rd, rn, 0, false);
}

/// Kinds of move-wide instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MovWide {
    /// `movn`: `rd = !(imm16 << shift)`.
    N,
    /// `movz`: `rd = imm16 << shift`.
    Z,
    /// `movk`: replaces the 16 bits at `shift`.
    K,
}

/// `movn/movz/movk rd, #imm16, lsl #(16 * hw)`.
pub fn mov_wide(b: &mut CodeBuffer, sf: Sf, op: MovWide, rd: XReg, imm16: u16, hw: u8) {
    let opc = match op {
        MovWide::N => 0x1280_0000,
        MovWide::Z => 0x5280_0000,
        MovWide::K => 0x7280_0000,
    };
    emit(
        b,
        sf.bit() | opc | u32::from(hw & 3) << 21 | u32::from(imm16) << 5 | rd.num(),
    );
}

/// The `N:immr:imms` field (13 bits) of a logical immediate, if `value`
/// (its low 32 bits for `Sf::W`) is a replicated rotated run of ones.
pub fn logical_imm(sf: Sf, value: u64) -> Option<u32> {
    let v = match sf {
        Sf::X => value,
        Sf::W => {
            let lo = value & 0xffff_ffff;
            lo | lo << 32
        }
    };
    if v == 0 || v == u64::MAX {
        return None;
    }
    // Smallest element size whose replication gives v.
    let mut size = 64u32;
    while size > 2 {
        let half = size / 2;
        let mask = (1u64 << half) - 1;
        if v & mask != (v >> half) & mask {
            break;
        }
        size = half;
    }
    let mask = if size == 64 {
        u64::MAX
    } else {
        (1u64 << size) - 1
    };
    let elem = v & mask;
    let ones = elem.count_ones();
    let run = if ones == 64 {
        u64::MAX
    } else {
        (1u64 << ones) - 1
    };
    // elem = ror(run, immr) within `size` bits: find immr.
    let rotl = |x: u64, r: u32| -> u64 {
        if r == 0 {
            x
        } else {
            ((x << r) | (x >> (size - r))) & mask
        }
    };
    let immr = (0..size).find(|&r| rotl(elem, r) == run)?;
    let n = u32::from(size == 64);
    let imms = ((!(size * 2 - 1)) & 0x3f) | (ones - 1);
    if sf == Sf::W && n == 1 {
        return None;
    }
    Some(n << 12 | immr << 6 | imms)
}

// ---- arithmetic and logic ----------------------------------------------------

/// `add`/`sub`(`s`) `rd, rn, #imm12 {, lsl #12}` (31 is `sp` for `rd`
/// without flags and for `rn`; `cmp`/`cmn` are `subs`/`adds` to `zr`).
#[allow(clippy::too_many_arguments)]
pub fn add_sub_imm(
    b: &mut CodeBuffer,
    sf: Sf,
    sub: bool,
    set_flags: bool,
    rd: XReg,
    rn: XReg,
    imm12: u32,
    lsl12: bool,
) {
    let op = 0x1100_0000 | u32::from(sub) << 30 | u32::from(set_flags) << 29;
    emit(
        b,
        sf.bit() | op | u32::from(lsl12) << 22 | (imm12 & 0xfff) << 10 | rd_rn(rd, rn),
    );
}

/// Shifted-register add/sub operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddSub {
    /// `add`.
    Add,
    /// `sub`.
    Sub,
    /// `subs` (`cmp` with `rd = zr`).
    Subs,
}

/// `add/sub/subs rd, rn, rm` (31 is `zr`).
pub fn add_sub_reg(b: &mut CodeBuffer, sf: Sf, op: AddSub, rd: XReg, rn: XReg, rm: XReg) {
    let opc = match op {
        AddSub::Add => 0x0b00_0000,
        AddSub::Sub => 0x4b00_0000,
        AddSub::Subs => 0x6b00_0000,
    };
    emit(b, sf.bit() | opc | rm.num() << 16 | rd_rn(rd, rn));
}

/// `add rd, rn, wm, uxtw #3` (a 32-bit index scaled to 8-byte slots).
pub fn add_uxtw3(b: &mut CodeBuffer, rd: XReg, rn: XReg, rm: XReg) {
    emit(b, 0x8b20_4c00 | rm.num() << 16 | rd_rn(rd, rn));
}

/// `sub sp, sp, xm` (extended-register form, `uxtx`).
pub fn sub_sp_reg(b: &mut CodeBuffer, rm: XReg) {
    emit(b, 0xcb20_63ff | rm.num() << 16);
}

/// Logical operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Logic {
    /// `and`.
    And,
    /// `orr`.
    Orr,
    /// `eor`.
    Eor,
    /// `ands` (`tst` with `rd = zr`).
    Ands,
}

impl Logic {
    const fn opc(self) -> u32 {
        match self {
            Logic::And => 0,
            Logic::Orr => 1,
            Logic::Eor => 2,
            Logic::Ands => 3,
        }
    }
}

/// `and/orr/eor/ands rd, rn, rm` (31 is `zr`).
pub fn logic_reg(b: &mut CodeBuffer, sf: Sf, op: Logic, rd: XReg, rn: XReg, rm: XReg) {
    emit(
        b,
        sf.bit() | 0x0a00_0000 | op.opc() << 29 | rm.num() << 16 | rd_rn(rd, rn),
    );
}

/// `mvn rd, rm` (`orn rd, zr, rm`).
pub fn mvn(b: &mut CodeBuffer, sf: Sf, rd: XReg, rm: XReg) {
    emit(b, sf.bit() | 0x2a20_03e0 | rm.num() << 16 | rd.num());
}

/// `and/orr/eor/ands rd, rn, #imm` with an encoded `N:immr:imms` from [`logical_imm`].
pub fn logic_imm(b: &mut CodeBuffer, sf: Sf, op: Logic, rd: XReg, rn: XReg, nimms: u32) {
    emit(
        b,
        sf.bit() | 0x1200_0000 | op.opc() << 29 | (nimms & 0x1fff) << 10 | rd_rn(rd, rn),
    );
}

/// `neg rd, rm` (`sub rd, zr, rm`).
pub fn neg(b: &mut CodeBuffer, sf: Sf, rd: XReg, rm: XReg) {
    add_sub_reg(b, sf, AddSub::Sub, rd, XReg::ZR, rm);
}

/// `madd`/`msub rd, rn, rm, ra` (`mul` is `madd` with `ra = zr`).
pub fn madd(b: &mut CodeBuffer, sf: Sf, sub: bool, rd: XReg, rn: XReg, rm: XReg, ra: XReg) {
    emit(
        b,
        sf.bit()
            | 0x1b00_0000
            | rm.num() << 16
            | u32::from(sub) << 15
            | ra.num() << 10
            | rd_rn(rd, rn),
    );
}

/// Two-source data processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dp2 {
    /// `udiv` (x / 0 = 0).
    Udiv = 0b00_0010,
    /// `sdiv` (x / 0 = 0, MIN / -1 = MIN).
    Sdiv = 0b00_0011,
    /// `lslv` (amount mod width).
    Lslv = 0b00_1000,
    /// `lsrv`.
    Lsrv = 0b00_1001,
    /// `asrv`.
    Asrv = 0b00_1010,
}

/// `udiv/sdiv/lslv/lsrv/asrv rd, rn, rm`.
pub fn dp2(b: &mut CodeBuffer, sf: Sf, op: Dp2, rd: XReg, rn: XReg, rm: XReg) {
    emit(
        b,
        sf.bit() | 0x1ac0_0000 | rm.num() << 16 | (op as u32) << 10 | rd_rn(rd, rn),
    );
}

/// `sbfm` (`signed`) / `ubfm rd, rn, #immr, #imms`.
pub fn bfm(b: &mut CodeBuffer, sf: Sf, signed: bool, rd: XReg, rn: XReg, immr: u32, imms: u32) {
    let opc = if signed { 0x1300_0000 } else { 0x5300_0000 };
    let n = match sf {
        Sf::X => 1 << 22,
        Sf::W => 0,
    };
    emit(
        b,
        sf.bit() | opc | n | (immr & 0x3f) << 16 | (imms & 0x3f) << 10 | rd_rn(rd, rn),
    );
}

/// `lsl rd, rn, #n` (`0 < n < width`).
pub fn lsl_imm(b: &mut CodeBuffer, sf: Sf, rd: XReg, rn: XReg, n: u32) {
    let w = sf.bits();
    bfm(b, sf, false, rd, rn, (w - n) % w, w - 1 - n);
}

/// `ror rd, rn, #n` (`extr rd, rn, rn, #n`; `0 <= n < width`).
pub fn ror_imm(b: &mut CodeBuffer, sf: Sf, rd: XReg, rn: XReg, n: u32) {
    let base = match sf {
        Sf::X => 0x93c0_0000,
        Sf::W => 0x1380_0000,
    };
    emit(b, base | rn.num() << 16 | (n & 0x3f) << 10 | rd_rn(rd, rn));
}

/// `lsr rd, rn, #n`.
pub fn lsr_imm(b: &mut CodeBuffer, sf: Sf, rd: XReg, rn: XReg, n: u32) {
    bfm(b, sf, false, rd, rn, n, sf.bits() - 1);
}

/// `asr rd, rn, #n`.
pub fn asr_imm(b: &mut CodeBuffer, sf: Sf, rd: XReg, rn: XReg, n: u32) {
    bfm(b, sf, true, rd, rn, n, sf.bits() - 1);
}

/// `sxtb`/`sxth`/`sxtw rd, rn` (`from_bits` 8, 16, 32; `sxtw` is `Sf::X` only).
pub fn sxt(b: &mut CodeBuffer, sf: Sf, rd: XReg, rn: XReg, from_bits: u32) {
    bfm(b, sf, true, rd, rn, 0, from_bits - 1);
}

/// `uxth wd, wn`.
pub fn uxth(b: &mut CodeBuffer, rd: XReg, rn: XReg) {
    bfm(b, Sf::W, false, rd, rn, 0, 15);
}

/// Byte reversals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rev {
    /// `rev16 wd, wn`: bytes swapped within each halfword.
    Rev16W,
    /// `rev wd, wn`.
    RevW,
    /// `rev xd, xn`.
    RevX,
}

/// `rev16 w` / `rev w` / `rev x`.
pub fn rev(b: &mut CodeBuffer, op: Rev, rd: XReg, rn: XReg) {
    let w = match op {
        Rev::Rev16W => 0x5ac0_0400,
        Rev::RevW => 0x5ac0_0800,
        Rev::RevX => 0xdac0_0c00,
    };
    emit(b, w | rd_rn(rd, rn));
}

// ---- loads and stores --------------------------------------------------------

/// What a single-register load/store does (the `opc` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LdSt {
    /// Store.
    Store = 0,
    /// Load, zero-extended.
    Load = 1,
    /// Load, sign-extended to 64 bits (`ldrsb/ldrsh/ldrsw x`).
    LoadSx = 2,
}

/// Access size as the `size` field: 0 = byte, 1 = half, 2 = word, 3 = double.
pub type SizeLog2 = u32;

/// `ldr*/str* rt, [rn, #uimm]` with `uimm = imm12 << size`.
pub fn ldst_uimm(b: &mut CodeBuffer, size: SizeLog2, op: LdSt, rt: XReg, rn: XReg, imm12: u32) {
    emit(
        b,
        0x3900_0000 | size << 30 | (op as u32) << 22 | (imm12 & 0xfff) << 10 | rd_rn(rt, rn),
    );
}

/// `ldur*/stur* rt, [rn, #simm9]`.
pub fn ldst_simm9(b: &mut CodeBuffer, size: SizeLog2, op: LdSt, rt: XReg, rn: XReg, simm9: i32) {
    emit(
        b,
        0x3800_0000 | size << 30 | (op as u32) << 22 | (simm9 as u32 & 0x1ff) << 12 | rd_rn(rt, rn),
    );
}

/// `ldr*/str* rt, [rn, xm]`.
pub fn ldst_reg(b: &mut CodeBuffer, size: SizeLog2, op: LdSt, rt: XReg, rn: XReg, rm: XReg) {
    emit(
        b,
        0x3820_6800 | size << 30 | (op as u32) << 22 | rm.num() << 16 | rd_rn(rt, rn),
    );
}

/// `ldr x_t, [x_n, x_m, lsl #3]`.
pub fn ldr_x_lsl3(b: &mut CodeBuffer, rt: XReg, rn: XReg, rm: XReg) {
    emit(b, 0xf860_7800 | rm.num() << 16 | rd_rn(rt, rn));
}

/// `stp xt1, xt2, [sp, #-16]!`.
pub fn stp_pre16(b: &mut CodeBuffer, t1: XReg, t2: XReg) {
    emit(b, 0xa9bf_03e0 | t2.num() << 10 | t1.num());
}

/// `ldp xt1, xt2, [sp], #16`.
pub fn ldp_post16(b: &mut CodeBuffer, t1: XReg, t2: XReg) {
    emit(b, 0xa8c1_03e0 | t2.num() << 10 | t1.num());
}

/// `ldp xt1, xt2, [rn, #off]` (`off` a multiple of 8 in `-512..=504`).
pub fn ldp_off(b: &mut CodeBuffer, t1: XReg, t2: XReg, rn: XReg, off: i32) {
    let imm7 = ((off / 8) as u32) & 0x7f;
    emit(
        b,
        0xa940_0000 | imm7 << 15 | t2.num() << 10 | rn.num() << 5 | t1.num(),
    );
}

/// `str xt, [sp, #-16]!`.
pub fn str_pre16(b: &mut CodeBuffer, t: XReg) {
    emit(b, 0xf81f_0fe0 | t.num());
}

/// `ldr xt, [sp], #16`.
pub fn ldr_post16(b: &mut CodeBuffer, t: XReg) {
    emit(b, 0xf841_07e0 | t.num());
}

/// `ldr xt, [rn, #off]` for small signed `off` (picks `ldr` or `ldur`).
pub fn ldr_x(b: &mut CodeBuffer, rt: XReg, rn: XReg, off: i32) {
    if off >= 0 && off % 8 == 0 && off < 8 * 4096 {
        ldst_uimm(b, 3, LdSt::Load, rt, rn, (off / 8) as u32);
    } else {
        ldst_simm9(b, 3, LdSt::Load, rt, rn, off);
    }
}

/// `ldar*` (acquire) / `stlr*` (release) `rt, [rn]`.
pub fn ldar_stlr(b: &mut CodeBuffer, size: SizeLog2, load: bool, rt: XReg, rn: XReg) {
    let w = if load { 0x08df_fc00 } else { 0x089f_fc00 };
    emit(b, w | size << 30 | rd_rn(rt, rn));
}

/// `ldaxr rt, [rn]` (size 2 or 3).
pub fn ldaxr(b: &mut CodeBuffer, size: SizeLog2, rt: XReg, rn: XReg) {
    emit(b, 0x085f_fc00 | size << 30 | rd_rn(rt, rn));
}

/// `stlxr ws, rt, [rn]` (size 2 or 3).
pub fn stlxr(b: &mut CodeBuffer, size: SizeLog2, rs: XReg, rt: XReg, rn: XReg) {
    emit(b, 0x0800_fc00 | size << 30 | rs.num() << 16 | rd_rn(rt, rn));
}

/// LSE atomic memory operations (all with acquire + release: the `al` forms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lse {
    /// `ldaddal`.
    Add,
    /// `ldclral` (`*m &= !rs`).
    Clr,
    /// `ldeoral`.
    Eor,
    /// `ldsetal`.
    Set,
    /// `swpal`.
    Swp,
}

/// `ld<op>al/swpal rs, rt, [rn]`: `rt` = old value, `*rn = op(old, rs)`.
pub fn lse(b: &mut CodeBuffer, size: SizeLog2, op: Lse, rs: XReg, rt: XReg, rn: XReg) {
    let (o3, opc) = match op {
        Lse::Add => (0, 0),
        Lse::Clr => (0, 1),
        Lse::Eor => (0, 2),
        Lse::Set => (0, 3),
        Lse::Swp => (1, 0),
    };
    emit(
        b,
        0x38e0_0000 | size << 30 | rs.num() << 16 | o3 << 15 | opc << 12 | rd_rn(rt, rn),
    );
}

/// `casal rs, rt, [rn]`: if `*rn == rs` then `*rn = rt`; `rs` = old value.
pub fn casal(b: &mut CodeBuffer, size: SizeLog2, rs: XReg, rt: XReg, rn: XReg) {
    emit(b, 0x08e0_fc00 | size << 30 | rs.num() << 16 | rd_rn(rt, rn));
}

// ---- control flow ------------------------------------------------------------

/// `nop`.
pub fn nop(b: &mut CodeBuffer) {
    emit(b, 0xd503_201f);
}

/// `b` with a byte displacement from this instruction (multiple of 4, ±128 MiB).
pub fn b_rel(b: &mut CodeBuffer, disp: i64) {
    emit(b, 0x1400_0000 | ((disp >> 2) as u32 & 0x03ff_ffff));
}

/// `bl` with a byte displacement from this instruction.
pub fn bl_rel(b: &mut CodeBuffer, disp: i64) {
    emit(b, 0x9400_0000 | ((disp >> 2) as u32 & 0x03ff_ffff));
}

/// `b.cond` with a byte displacement from this instruction (±1 MiB).
pub fn b_cond(b: &mut CodeBuffer, cond: Cond, disp: i64) {
    emit(
        b,
        0x5400_0000 | ((disp >> 2) as u32 & 0x7_ffff) << 5 | cond as u32,
    );
}

/// `cbz`/`cbnz rt, disp` (±1 MiB).
pub fn cbz(b: &mut CodeBuffer, sf: Sf, nonzero: bool, rt: XReg, disp: i64) {
    emit(
        b,
        sf.bit()
            | 0x3400_0000
            | u32::from(nonzero) << 24
            | ((disp >> 2) as u32 & 0x7_ffff) << 5
            | rt.num(),
    );
}

/// `adr rd, disp` (±1 MiB, byte granular).
pub fn adr(b: &mut CodeBuffer, rd: XReg, disp: i64) {
    let d = disp as u32;
    emit(
        b,
        0x1000_0000 | (d & 3) << 29 | ((d >> 2) & 0x7_ffff) << 5 | rd.num(),
    );
}

/// `br rn`.
pub fn br(b: &mut CodeBuffer, rn: XReg) {
    emit(b, 0xd61f_0000 | rn.num() << 5);
}

/// `blr rn`.
pub fn blr(b: &mut CodeBuffer, rn: XReg) {
    emit(b, 0xd63f_0000 | rn.num() << 5);
}

/// `ret`.
pub fn ret(b: &mut CodeBuffer) {
    emit(b, 0xd65f_03c0);
}

/// Whether `disp` (bytes) fits `b`/`bl` (26-bit word displacement).
#[inline]
pub const fn fits_imm26(disp: i64) -> bool {
    disp % 4 == 0 && disp >= -(1 << 27) && disp < (1 << 27)
}

/// Whether `disp` (bytes) fits `b.cond`/`cbz` (19-bit word displacement).
#[inline]
pub const fn fits_imm19(disp: i64) -> bool {
    disp % 4 == 0 && disp >= -(1 << 20) && disp < (1 << 20)
}

/// Whether `disp` (bytes) fits `adr`.
#[inline]
pub const fn fits_adr(disp: i64) -> bool {
    disp >= -(1 << 20) && disp < (1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_immediates_by_hand() {
        // Values and fields worked out from the ARM ARM's DecodeBitMasks.
        assert_eq!(logical_imm(Sf::X, 0xff), Some(1 << 12 | 7));
        assert_eq!(logical_imm(Sf::W, 0xff), Some(7));
        assert_eq!(logical_imm(Sf::X, 0x5555_5555_5555_5555), Some(0b11_1100));
        assert_eq!(
            logical_imm(Sf::X, 0xffff_ffff_0000_0000),
            Some(1 << 12 | 32 << 6 | 31)
        );
        assert_eq!(logical_imm(Sf::X, 0), None);
        assert_eq!(logical_imm(Sf::X, u64::MAX), None);
        assert_eq!(logical_imm(Sf::W, 0xffff_ffff), None);
        assert_eq!(logical_imm(Sf::X, 0x1234), None);
        assert_eq!(logical_imm(Sf::X, 0xffff_ffff), Some(1 << 12 | 31));
        assert_eq!(logical_imm(Sf::W, 0x8000_0001), Some(1 << 6 | 1));
    }
}
