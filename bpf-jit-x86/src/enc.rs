//! Hand-written x86-64 encoder: one function per instruction form the
//! backend emits, writing straight into a [`CodeBuffer`].
//!
//! Every form is proven in the emit-test table (`src/tests.rs`): expected
//! bytes from `llvm-mc -triple=x86_64 -x86-asm-syntax=intel -show-encoding`
//! and the disassembly `iced-x86` decodes them back to.

use bpf_jit::CodeBuffer;

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

// ---- prefixes, ModRM ---------------------------------------------------------

#[inline]
fn prefix(b: &mut CodeBuffer, sz: Sz) {
    if sz == Sz::H {
        b.put1(0x66);
    }
}

/// REX prefix for `reg` (ModRM.reg) and `rm` (ModRM.rm or opcode register),
/// emitted when any bit is set or `force` (8-bit access to spl/bpl/sil/dil).
#[inline]
fn rex(b: &mut CodeBuffer, w: bool, reg: u8, rm: u8, force: bool) {
    let v = 0x40 | (u8::from(w) << 3) | ((reg >> 3) << 2) | (rm >> 3);
    if v != 0x40 || force {
        b.put1(v);
    }
}

/// `[prefix] [REX] op ModRM(11, reg, rm)`.
#[inline]
fn rr(b: &mut CodeBuffer, sz: Sz, op: &[u8], reg: u8, rm: Gpr) {
    prefix(b, sz);
    let force = sz == Sz::B && (matches!(reg & 15, 4..=7) || rm.byte_needs_rex());
    rex(b, sz == Sz::Q, reg, rm.0, force);
    b.put(op);
    b.put1(0xc0 | ((reg & 7) << 3) | rm.low());
}

/// `[prefix] [REX] op ModRM/SIB/disp` for a memory operand.
#[inline]
fn rm(b: &mut CodeBuffer, sz: Sz, op: &[u8], reg: u8, m: Mem) {
    prefix(b, sz);
    let force = sz == Sz::B && matches!(reg & 15, 4..=7);
    rex(b, sz == Sz::Q, reg, m.base.0, force);
    b.put(op);
    modrm_mem(b, reg, m);
}

#[inline]
fn modrm_mem(b: &mut CodeBuffer, reg: u8, m: Mem) {
    let base = m.base.low();
    // mod 00 with base rbp/r13 means rip-relative/disp32, so those always take a displacement.
    let md = if m.disp == 0 && base != 5 {
        0
    } else if fits_i8(i64::from(m.disp)) {
        1
    } else {
        2
    };
    b.put1((md << 6) | ((reg & 7) << 3) | base);
    if base == 4 {
        b.put1(0x24); // SIB: no index, base = rsp/r12
    }
    match md {
        1 => b.put1(m.disp as u8),
        2 => b.put4(m.disp as u32),
        _ => {}
    }
}

// ---- moves -------------------------------------------------------------------

/// `mov dst, src` (32-bit form zero-extends).
#[inline]
pub fn mov_rr(b: &mut CodeBuffer, sz: Sz, dst: Gpr, src: Gpr) {
    rr(b, sz, &[0x89], src.0, dst);
}

/// `mov r32, imm32` (`B8+r`; zero-extends).
#[inline]
pub fn mov_r32_imm(b: &mut CodeBuffer, dst: Gpr, imm: u32) {
    rex(b, false, 0, dst.0, false);
    b.put1(0xb8 + dst.low());
    b.put4(imm);
}

/// `mov r64, simm32` (`REX.W C7 /0`; sign-extends).
#[inline]
pub fn mov_r64_simm(b: &mut CodeBuffer, dst: Gpr, imm: i32) {
    rr(b, Sz::Q, &[0xc7], 0, dst);
    b.put4(imm as u32);
}

/// `movabs r64, imm64` (`REX.W B8+r`).
#[inline]
pub fn movabs(b: &mut CodeBuffer, dst: Gpr, imm: u64) {
    rex(b, true, 0, dst.0, false);
    b.put1(0xb8 + dst.low());
    b.put8(imm);
}

/// `movzx r32, r/m8` (register source).
#[inline]
pub fn movzx_r32_r8(b: &mut CodeBuffer, dst: Gpr, src: Gpr) {
    // The source is an 8-bit register: REX needed for sil/dil/bpl/spl.
    rex(b, false, dst.0, src.0, src.byte_needs_rex());
    b.put(&[0x0f, 0xb6]);
    b.put1(0xc0 | (dst.low() << 3) | src.low());
}

/// `movzx r32, r/m16` (register source).
#[inline]
pub fn movzx_r32_r16(b: &mut CodeBuffer, dst: Gpr, src: Gpr) {
    rr(b, Sz::W, &[0x0f, 0xb7], dst.0, src);
}

/// `movsx dst, src8` with `dst` 32 (`W`) or 64 (`Q`) bits.
#[inline]
pub fn movsx_r8(b: &mut CodeBuffer, sz: Sz, dst: Gpr, src: Gpr) {
    rex(b, sz == Sz::Q, dst.0, src.0, src.byte_needs_rex());
    b.put(&[0x0f, 0xbe]);
    b.put1(0xc0 | (dst.low() << 3) | src.low());
}

/// `movsx dst, src16` with `dst` 32 (`W`) or 64 (`Q`) bits.
#[inline]
pub fn movsx_r16(b: &mut CodeBuffer, sz: Sz, dst: Gpr, src: Gpr) {
    rr(b, sz, &[0x0f, 0xbf], dst.0, src);
}

/// `movsxd r64, r32`.
#[inline]
pub fn movsxd_rr(b: &mut CodeBuffer, dst: Gpr, src: Gpr) {
    rr(b, Sz::Q, &[0x63], dst.0, src);
}

/// `lea r64, [rip + disp]`.
#[inline]
pub fn lea_rip(b: &mut CodeBuffer, dst: Gpr, disp: i32) {
    rex(b, true, dst.0, 0, false);
    b.put1(0x8d);
    b.put1((dst.low() << 3) | 0b101);
    b.put4(disp as u32);
}

// ---- ALU ---------------------------------------------------------------------

/// `lea dst, [m.base + m.disp]` (64-bit; flags untouched).
#[inline]
pub fn lea(b: &mut CodeBuffer, dst: Gpr, m: Mem) {
    rm(b, Sz::Q, &[0x8d], dst.0, m);
}

/// `op dst, src` for the group-1 operations (`01 09 21 29 31 39`).
#[inline]
pub fn alu_rr(b: &mut CodeBuffer, sz: Sz, op: Alu1, dst: Gpr, src: Gpr) {
    rr(b, sz, &[(op as u8) * 8 + 1], src.0, dst);
}

/// `op dst, imm` (`83 /n ib` when the immediate fits 8 bits, else `81 /n id`).
#[inline]
pub fn alu_ri(b: &mut CodeBuffer, sz: Sz, op: Alu1, dst: Gpr, imm: i32) {
    if fits_i8(i64::from(imm)) {
        rr(b, sz, &[0x83], op as u8, dst);
        b.put1(imm as u8);
    } else {
        rr(b, sz, &[0x81], op as u8, dst);
        b.put4(imm as u32);
    }
}

/// `test a, b_`.
#[inline]
pub fn test_rr(b: &mut CodeBuffer, sz: Sz, a: Gpr, b_: Gpr) {
    rr(b, sz, &[0x85], b_.0, a);
}

/// `test r, imm32` (`F7 /0 id`).
#[inline]
pub fn test_ri(b: &mut CodeBuffer, sz: Sz, a: Gpr, imm: i32) {
    rr(b, sz, &[0xf7], 0, a);
    b.put4(imm as u32);
}

/// `imul dst, src`.
#[inline]
pub fn imul_rr(b: &mut CodeBuffer, sz: Sz, dst: Gpr, src: Gpr) {
    rr(b, sz, &[0x0f, 0xaf], dst.0, src);
}

/// `imul dst, src, imm` (`6B /r ib` or `69 /r id`).
#[inline]
pub fn imul_rri(b: &mut CodeBuffer, sz: Sz, dst: Gpr, src: Gpr, imm: i32) {
    if fits_i8(i64::from(imm)) {
        rr(b, sz, &[0x6b], dst.0, src);
        b.put1(imm as u8);
    } else {
        rr(b, sz, &[0x69], dst.0, src);
        b.put4(imm as u32);
    }
}

/// `shift dst, imm8` (`C1 /n ib`).
#[inline]
pub fn shift_ri(b: &mut CodeBuffer, sz: Sz, op: Shift, dst: Gpr, imm: u8) {
    rr(b, sz, &[0xc1], op as u8, dst);
    b.put1(imm);
}

/// `shift dst, cl` (`D3 /n`).
#[inline]
pub fn shift_rcl(b: &mut CodeBuffer, sz: Sz, op: Shift, dst: Gpr) {
    rr(b, sz, &[0xd3], op as u8, dst);
}

/// `neg dst` (`F7 /3`).
#[inline]
pub fn neg(b: &mut CodeBuffer, sz: Sz, dst: Gpr) {
    rr(b, sz, &[0xf7], 3, dst);
}

/// `div src` (unsigned, `F7 /6`) or `idiv src` (signed, `F7 /7`) of `rdx:rax`.
#[inline]
pub fn div(b: &mut CodeBuffer, sz: Sz, signed: bool, src: Gpr) {
    rr(b, sz, &[0xf7], if signed { 7 } else { 6 }, src);
}

/// `cdq` (`W`) or `cqo` (`Q`): sign-extend `eax`/`rax` into `edx`/`rdx`.
#[inline]
pub fn sign_extend_ax(b: &mut CodeBuffer, sz: Sz) {
    if sz == Sz::Q {
        b.put1(0x48);
    }
    b.put1(0x99);
}

/// `bswap r32` / `bswap r64`.
#[inline]
pub fn bswap(b: &mut CodeBuffer, sz: Sz, r: Gpr) {
    rex(b, sz == Sz::Q, 0, r.0, false);
    b.put1(0x0f);
    b.put1(0xc8 + r.low());
}

// ---- memory ------------------------------------------------------------------

/// `mov r, [m]` (sizes `W`, `Q`).
#[inline]
pub fn load(b: &mut CodeBuffer, sz: Sz, dst: Gpr, m: Mem) {
    rm(b, sz, &[0x8b], dst.0, m);
}

/// `movzx r32, byte/word [m]` (`sz` is the memory size, `B` or `H`).
#[inline]
pub fn load_zx(b: &mut CodeBuffer, sz: Sz, dst: Gpr, m: Mem) {
    let op = if sz == Sz::B { 0xb6 } else { 0xb7 };
    rm(b, Sz::W, &[0x0f, op], dst.0, m);
}

/// `movsx r64, byte/word [m]` or `movsxd r64, dword [m]` (`sz` is the memory size).
#[inline]
pub fn load_sx(b: &mut CodeBuffer, sz: Sz, dst: Gpr, m: Mem) {
    match sz {
        Sz::B => rm(b, Sz::Q, &[0x0f, 0xbe], dst.0, m),
        Sz::H => rm(b, Sz::Q, &[0x0f, 0xbf], dst.0, m),
        _ => rm(b, Sz::Q, &[0x63], dst.0, m),
    }
}

/// `mov [m], src` (any size).
#[inline]
pub fn store(b: &mut CodeBuffer, sz: Sz, m: Mem, src: Gpr) {
    let op = if sz == Sz::B { 0x88 } else { 0x89 };
    rm(b, sz, &[op], src.0, m);
}

/// `mov [m], imm` (`C6 /0 ib`, `66 C7 /0 iw`, `C7 /0 id`, `REX.W C7 /0 id`).
#[inline]
pub fn store_imm(b: &mut CodeBuffer, sz: Sz, m: Mem, imm: i32) {
    match sz {
        Sz::B => {
            rm(b, sz, &[0xc6], 0, m);
            b.put1(imm as u8);
        }
        Sz::H => {
            rm(b, sz, &[0xc7], 0, m);
            b.put2(imm as u16);
        }
        _ => {
            rm(b, sz, &[0xc7], 0, m);
            b.put4(imm as u32);
        }
    }
}

/// `lock op [m], src` for `add`, `or`, `and`, `xor` (sizes `W`, `Q`).
#[inline]
pub fn lock_alu(b: &mut CodeBuffer, sz: Sz, op: Alu1, m: Mem, src: Gpr) {
    b.put1(0xf0);
    rm(b, sz, &[(op as u8) * 8 + 1], src.0, m);
}

/// `lock xadd [m], src`.
#[inline]
pub fn lock_xadd(b: &mut CodeBuffer, sz: Sz, m: Mem, src: Gpr) {
    b.put1(0xf0);
    rm(b, sz, &[0x0f, 0xc1], src.0, m);
}

/// `xchg [m], src` (implicitly locked).
#[inline]
pub fn xchg(b: &mut CodeBuffer, sz: Sz, m: Mem, src: Gpr) {
    rm(b, sz, &[0x87], src.0, m);
}

/// `lock cmpxchg [m], src` (compares with `eax`/`rax`).
#[inline]
pub fn lock_cmpxchg(b: &mut CodeBuffer, sz: Sz, m: Mem, src: Gpr) {
    b.put1(0xf0);
    rm(b, sz, &[0x0f, 0xb1], src.0, m);
}

// ---- control flow ------------------------------------------------------------

/// `jcc rel8`.
#[inline]
pub fn jcc_short(b: &mut CodeBuffer, cc: Cc, rel: i8) {
    b.put1(0x70 | cc as u8);
    b.put1(rel as u8);
}

/// `jcc rel32`.
#[inline]
pub fn jcc_near(b: &mut CodeBuffer, cc: Cc, rel: i32) {
    b.put1(0x0f);
    b.put1(0x80 | cc as u8);
    b.put4(rel as u32);
}

/// `jmp rel8`.
#[inline]
pub fn jmp_short(b: &mut CodeBuffer, rel: i8) {
    b.put1(0xeb);
    b.put1(rel as u8);
}

/// `jmp rel32`.
#[inline]
pub fn jmp_near(b: &mut CodeBuffer, rel: i32) {
    b.put1(0xe9);
    b.put4(rel as u32);
}

/// `call rel32`.
#[inline]
pub fn call_rel(b: &mut CodeBuffer, rel: i32) {
    b.put1(0xe8);
    b.put4(rel as u32);
}

/// `call r64`.
#[inline]
pub fn call_r(b: &mut CodeBuffer, r: Gpr) {
    rr(b, Sz::W, &[0xff], 2, r);
}

/// `jmp r64` (indirect, absolute).
#[inline]
pub fn jmp_r(b: &mut CodeBuffer, r: Gpr) {
    rr(b, Sz::W, &[0xff], 4, r);
}

/// `push r64`.
#[inline]
pub fn push(b: &mut CodeBuffer, r: Gpr) {
    rex(b, false, 0, r.0, false);
    b.put1(0x50 + r.low());
}

/// `pop r64`.
#[inline]
pub fn pop(b: &mut CodeBuffer, r: Gpr) {
    rex(b, false, 0, r.0, false);
    b.put1(0x58 + r.low());
}

/// `sub rsp, imm32` (always the 4-byte immediate form, so the prologue has a fixed size).
#[inline]
pub fn sub_rsp_imm32(b: &mut CodeBuffer, imm: u32) {
    b.put(&[0x48, 0x81, 0xec]);
    b.put4(imm);
}

/// `leave`
#[inline]
pub fn leave(b: &mut CodeBuffer) {
    b.put1(0xc9);
}

/// `ret`
#[inline]
pub fn ret(b: &mut CodeBuffer) {
    b.put1(0xc3);
}

/// The 5-byte nop `nopl 0(rax,rax,1)` (`0F 1F 44 00 00`), the patch site
/// for attaching trampolines.
#[inline]
pub fn nop5(b: &mut CodeBuffer) {
    b.put(&[0x0f, 0x1f, 0x44, 0x00, 0x00]);
}

/// The 2-byte nop `xchg ax, ax` (`66 90`).
#[inline]
pub fn nop2(b: &mut CodeBuffer) {
    b.put(&[0x66, 0x90]);
}
