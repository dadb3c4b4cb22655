//! Disassembler: instructions as text in the syntax of `llvm-objdump -d`.
//!
//! Every form that LLVM's BPF disassembler can decode is printed exactly as
//! the instruction column of `llvm-objdump -d` shows it (checked against the
//! real tools by `tests/llvm_objdump.rs`), with two number styles:
//!
//! * [`DisasmOptions::default()`]: decimal, as LLVM 14's `llvm-objdump` and
//!   the kernel's verifier log print them (`r0 = 42`, `goto -3`);
//! * [`DisasmOptions { hex: true }`](DisasmOptions): hexadecimal, as LLVM 19's
//!   `llvm-objdump` prints them (`r0 = 0x2a`, `goto -0x3`).
//!
//! Jumps print their relative offset in slots (`goto +3`, `if r1 > r2 goto -1`)
//! without LLVM's `<label>` suffix, since a bare program has no symbols.
//!
//! # The syntax, form by form
//!
//! | form | text (decimal style) |
//! | --- | --- |
//! | ALU, 64 / 32 bit | `r1 += r2`, `r1 s>>= -5`, `w1 = w2`, `w1 %= 7` |
//! | signed div / mod | `r1 s/= r2`, `w1 s%= 7` |
//! | negation | `r1 = -r1`, `w1 = -w1` |
//! | sign-extending move | `r1 = (s8)r2`, `r1 = (s32)r2`, `w1 = (s16)w2` |
//! | arena cast | `r1 = addr_space_cast(r2, 1, 0)` (destination space, then source space) |
//! | byte swaps | `r1 = le16 r1`, `r1 = be64 r1`, `r1 = bswap32 r1` |
//! | jumps | `goto +3`, `gotol -5`, `may_goto +4`, `if r1 s< r2 goto -1`, `if w1 & 7 goto +0` |
//! | helper call | `call 1` |
//! | call through a register | `callx r3` |
//! | exit | `exit` |
//! | 64-bit constant | `r1 = -1 ll`, `r1 = 42 ll` (the value as a signed 64-bit number) |
//! | legacy packet loads | `r0 = *(u16 *)skb[12]`, `r0 = *(u8 *)skb[r3]` |
//! | loads / stores | `r1 = *(u32 *)(r2 - 4)`, `r1 = *(s8 *)(r2 + 0)`, `*(u64 *)(r10 - 8) = r1`, `*(u16 *)(r1 + 2) = -7` |
//! | 64-bit atomics | `lock *(u64 *)(r1 + 0) += r2` (also `\|=`, `&=`, `^=`), `r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)` (also `_or`, `_and`, `_xor`), `r2 = xchg_64(r1 + 0, r2)`, `r0 = cmpxchg_64(r1 + 0, r0, r2)` |
//! | 32-bit atomics | `lock *(u32 *)(r1 + 0) += w2`, `w2 = atomic_fetch_or((u32 *)(r1 + 0), w2)`, `w2 = xchg32_32(r1 + 0, w2)`, `w0 = cmpxchg32_32(r1 + 0, w0, w2)` |
//!
//! 32-bit atomics use the `w` register names that `llvm-objdump --mattr=+alu32`
//! prints and that clang's assembler writes; a plain `llvm-objdump -d` cannot
//! decode most of them.
//!
//! # Forms LLVM does not print usefully, and our text for them
//!
//! LLVM 19 either cannot decode these or prints a text that loses
//! information; we print a text in the style of the kernel's verifier log
//! and bpftool instead (numbers follow [`DisasmOptions::hex`] as everywhere):
//!
//! | form | our text | what LLVM 19 prints |
//! | --- | --- | --- |
//! | bpf-to-bpf call (`src_reg` 1) | `call pc+5`, `call pc-2` (as the kernel log) | `call 5`, same as a helper |
//! | kfunc call (`src_reg` 2) | `call kfunc#1234`, with a module BTF `call kfunc#1234@3` (`@off`) | `call 1234` |
//! | `ld_imm64` map by fd | `r1 = map[fd:5]` | `ld_pseudo r1, 1, 5` |
//! | `ld_imm64` map value by fd | `r1 = map_value[fd:5]+16` | `ld_pseudo r1, 2, 5` (offset lost) |
//! | `ld_imm64` BTF id | `r1 = btf_id[123]` | `ld_pseudo r1, 3, 123` |
//! | `ld_imm64` function | `r1 = subprog[+5]` (slots from the next instruction, as bpftool) | `ld_pseudo r1, 4, 5` |
//! | `ld_imm64` map by `fd_array` index | `r1 = map[idx:0]` | `ld_pseudo r1, 5, 0` |
//! | `ld_imm64` map value by index | `r1 = map_value[idx:0]+16` | `ld_pseudo r1, 6, 0` (offset lost) |
//! | `ld_ind` with a constant part | `r0 = *(u32 *)skb[r3 + 12]`, `skb[r3 - 12]` (kernel log) | `r0 = *(u32 *)skb[r3]` (constant lost) |
//! | load-acquire | `r0 = load_acquire((u64 *)(r1 + 0))` (kernel log) | `<unknown>` (new in LLVM 20) |
//! | store-release | `store_release((u32 *)(r1 - 8), r2)` (kernel log) | `<unknown>` (new in LLVM 20) |
//!
//! `ld_ind` with a zero constant is printed as LLVM prints it.
//!
//! LLVM 14 (decimal style) additionally lacks the cpu v4 forms (`s/=`,
//! `s%=`, `(s8)` moves, `bswap`, `gotol`, sign-extending loads, `may_goto`,
//! `addr_space_cast`), `%=`, `&`-jumps and stores of immediates; we print those
//! exactly as LLVM 19 does, in decimal.

use core::fmt::{self, Write};

use crate::insn::*;
use crate::program::Program;

/// How to print numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisasmOptions {
    /// `true`: immediates and offsets in hexadecimal (`0x2a`, `-0x4`), as
    /// LLVM 19's `llvm-objdump` prints them; `false` (the default): decimal,
    /// as LLVM 14's `llvm-objdump` and the kernel's verifier log print them.
    pub hex: bool,
}

/// A signed number: `42` / `-4`, or `0x2a` / `-0x4`.
struct Num(i64, bool);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Num(v, hex) = *self;
        if hex {
            if v < 0 {
                write!(f, "-{:#x}", v.unsigned_abs())
            } else {
                write!(f, "{v:#x}")
            }
        } else {
            write!(f, "{v}")
        }
    }
}

/// A signed number that always carries its sign: `+3` / `-3`, `+0x3` / `-0x3`.
struct Rel(i64, bool);

impl fmt::Display for Rel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Rel(v, hex) = *self;
        if v >= 0 {
            f.write_char('+')?;
        }
        Num(v, hex).fmt(f)
    }
}

/// A memory operand `rN + off` / `rN - off` (without parentheses).
struct Addr(Reg, i16, bool);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Addr(base, off, hex) = *self;
        let sign = if off < 0 { '-' } else { '+' };
        write!(
            f,
            "{base} {sign} {}",
            Num(i64::from(off.unsigned_abs()), hex)
        )
    }
}

/// A register named for a width: `rN` or `wN`.
struct R(Reg, Width);

impl fmt::Display for R {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.1 {
            Width::W64 => 'r',
            Width::W32 => 'w',
        };
        write!(f, "{c}{}", self.0.num())
    }
}

const fn u_ty(s: Size) -> &'static str {
    match s {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

const fn s_ty(s: Size) -> &'static str {
    match s {
        Size::B => "s8",
        Size::H => "s16",
        Size::W => "s32",
        Size::DW => "s64",
    }
}

const fn alu_sym(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::SDiv => "s/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod => "%=",
        AluOp::SMod => "s%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

const fn cond_sym(c: JmpCond) -> &'static str {
    match c {
        JmpCond::Eq => "==",
        JmpCond::Gt => ">",
        JmpCond::Ge => ">=",
        JmpCond::Set => "&",
        JmpCond::Ne => "!=",
        JmpCond::Sgt => "s>",
        JmpCond::Sge => "s>=",
        JmpCond::Lt => "<",
        JmpCond::Le => "<=",
        JmpCond::Slt => "s<",
        JmpCond::Sle => "s<=",
    }
}

/// Writes the text of one instruction (no index, no newline) to `w`.
///
/// Allocation-free: everything is formatted straight into `w`.
///
/// ```
/// use bpf_isa::{write_insn, DisasmOptions, Insn, Reg, Size};
///
/// let insn = Insn::Stx { size: Size::W, dst: Reg::R10, src: Reg::R1, off: -4 };
/// let mut s = String::new();
/// write_insn(&mut s, &insn, &DisasmOptions::default()).unwrap();
/// assert_eq!(s, "*(u32 *)(r10 - 4) = r1");
/// ```
pub fn write_insn<W: Write>(w: &mut W, insn: &Insn, opts: &DisasmOptions) -> fmt::Result {
    let hex = opts.hex;
    let num = |v: i64| Num(v, hex);
    let rel = |v: i64| Rel(v, hex);
    let addr = |base: Reg, off: i16| Addr(base, off, hex);
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let sym = alu_sym(op);
            match src {
                Source::Reg(s) => write!(w, "{} {sym} {}", R(dst, width), R(s, width)),
                Source::Imm(i) => write!(w, "{} {sym} {}", R(dst, width), num(i.into())),
            }
        }
        Insn::Neg { width, dst } => write!(w, "{} = -{}", R(dst, width), R(dst, width)),
        Insn::MovSx {
            width,
            dst,
            src,
            from,
        } => write!(w, "{} = ({}){}", R(dst, width), s_ty(from), R(src, width)),
        Insn::AddrSpaceCast {
            dst,
            src,
            dst_as,
            src_as,
        } => write!(
            w,
            "{dst} = addr_space_cast({src}, {}, {})",
            num(dst_as.into()),
            num(src_as.into())
        ),
        Insn::Endian { kind, bits, dst } => {
            let name = match kind {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            write!(w, "{dst} = {name}{bits} {dst}")
        }
        Insn::Ja { off } => write!(w, "goto {}", rel(off.into())),
        Insn::JaLong { imm } => write!(w, "gotol {}", rel(imm.into())),
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => {
            let sym = cond_sym(cond);
            match src {
                Source::Reg(s) => write!(
                    w,
                    "if {} {sym} {} goto {}",
                    R(dst, width),
                    R(s, width),
                    rel(off.into())
                ),
                Source::Imm(i) => write!(
                    w,
                    "if {} {sym} {} goto {}",
                    R(dst, width),
                    num(i.into()),
                    rel(off.into())
                ),
            }
        }
        Insn::MayGoto { off } => write!(w, "may_goto {}", rel(off.into())),
        Insn::Call(CallTarget::Helper(id)) => write!(w, "call {}", num(id.into())),
        Insn::Call(CallTarget::Local(off)) => write!(w, "call pc{}", rel(off.into())),
        Insn::Call(CallTarget::Kfunc { btf_id, off }) => {
            write!(w, "call kfunc#{}", num(btf_id.into()))?;
            if off != 0 {
                write!(w, "@{}", num(off.into()))?;
            }
            Ok(())
        }
        Insn::CallReg { reg } => write!(w, "callx {reg}"),
        Insn::Exit => w.write_str("exit"),
        Insn::LdImm64 { dst, src } => match src {
            LdImm64Src::Imm(v) => write!(w, "{dst} = {} ll", num(v as i64)),
            LdImm64Src::MapFd(fd) => write!(w, "{dst} = map[fd:{}]", num(fd.into())),
            LdImm64Src::MapValue { fd, off } => write!(
                w,
                "{dst} = map_value[fd:{}]+{}",
                num(fd.into()),
                num(off.into())
            ),
            LdImm64Src::BtfId(id) => write!(w, "{dst} = btf_id[{}]", num(id.into())),
            LdImm64Src::Func(off) => write!(w, "{dst} = subprog[{}]", rel(off.into())),
            LdImm64Src::MapIdx(i) => write!(w, "{dst} = map[idx:{}]", num(i.into())),
            LdImm64Src::MapIdxValue { idx, off } => write!(
                w,
                "{dst} = map_value[idx:{}]+{}",
                num(idx.into()),
                num(off.into())
            ),
        },
        Insn::LdAbs { size, imm } => {
            write!(w, "r0 = *({} *)skb[{}]", u_ty(size), num(imm.into()))
        }
        Insn::LdInd { size, src, imm } => {
            write!(w, "r0 = *({} *)skb[{src}", u_ty(size))?;
            if imm != 0 {
                let sign = if imm < 0 { '-' } else { '+' };
                write!(w, " {sign} {}", num(i64::from(imm.unsigned_abs())))?;
            }
            w.write_char(']')
        }
        Insn::Ldx {
            size,
            dst,
            src,
            off,
        } => write!(w, "{dst} = *({} *)({})", u_ty(size), addr(src, off)),
        Insn::LdxSx {
            size,
            dst,
            src,
            off,
        } => write!(w, "{dst} = *({} *)({})", s_ty(size), addr(src, off)),
        Insn::St {
            size,
            dst,
            off,
            imm,
        } => write!(
            w,
            "*({} *)({}) = {}",
            u_ty(size),
            addr(dst, off),
            num(imm.into())
        ),
        Insn::Stx {
            size,
            dst,
            src,
            off,
        } => write!(w, "*({} *)({}) = {src}", u_ty(size), addr(dst, off)),
        Insn::Atomic {
            size,
            op,
            dst,
            src,
            off,
        } => write_atomic(w, size, op, dst, src, off, hex),
    }
}

fn write_atomic<W: Write>(
    w: &mut W,
    size: Size,
    op: AtomicOp,
    dst: Reg,
    src: Reg,
    off: i16,
    hex: bool,
) -> fmt::Result {
    let at = Addr(dst, off, hex);
    // Read-modify-write operands are w registers for 32-bit (and smaller) accesses.
    let width = if size == Size::DW {
        Width::W64
    } else {
        Width::W32
    };
    let ty = u_ty(size);
    let s = R(src, width);
    let rmw = |w: &mut W, sym: &str, name: &str, fetch: bool| {
        if fetch {
            write!(w, "{s} = atomic_fetch_{name}(({ty} *)({at}), {s})")
        } else {
            write!(w, "lock *({ty} *)({at}) {sym} {s}")
        }
    };
    match op {
        AtomicOp::Add { fetch } => rmw(w, "+=", "add", fetch),
        AtomicOp::Or { fetch } => rmw(w, "|=", "or", fetch),
        AtomicOp::And { fetch } => rmw(w, "&=", "and", fetch),
        AtomicOp::Xor { fetch } => rmw(w, "^=", "xor", fetch),
        AtomicOp::Xchg => match width {
            Width::W64 => write!(w, "{s} = xchg_64({at}, {s})"),
            Width::W32 => write!(w, "{s} = xchg32_32({at}, {s})"),
        },
        AtomicOp::Cmpxchg => {
            let r0 = R(Reg::R0, width);
            match width {
                Width::W64 => write!(w, "{r0} = cmpxchg_64({at}, {r0}, {s})"),
                Width::W32 => write!(w, "{r0} = cmpxchg32_32({at}, {r0}, {s})"),
            }
        }
        // For load-acquire the instruction's dst is the loaded-into register
        // and src the base address register.
        AtomicOp::LoadAcquire => {
            write!(w, "{dst} = load_acquire(({ty} *)({}))", Addr(src, off, hex))
        }
        AtomicOp::StoreRelease => write!(w, "store_release(({ty} *)({at}), {src})"),
    }
}

/// The text of one instruction, as [`write_insn`] writes it.
///
/// ```
/// use bpf_isa::{fmt_insn, AluOp, DisasmOptions, Insn, Reg, Source, Width};
///
/// let insn = Insn::Alu { width: Width::W64, op: AluOp::Mov, dst: Reg::R0, src: Source::Imm(42) };
/// assert_eq!(fmt_insn(&insn, &DisasmOptions::default()), "r0 = 42");
/// assert_eq!(fmt_insn(&insn, &DisasmOptions { hex: true }), "r0 = 0x2a");
/// ```
pub fn fmt_insn(insn: &Insn, opts: &DisasmOptions) -> String {
    let mut s = String::with_capacity(32);
    // Writing into a String cannot fail.
    let _ = write_insn(&mut s, insn, opts);
    s
}

/// The whole program, one line per instruction: `"<slot index>: <text>\n"`.
///
/// The index counts 8-byte slots, so the instruction after an `ld_imm64`
/// is numbered two more than it.
///
/// ```
/// use bpf_isa::{fmt_program, DisasmOptions, Insn, LdImm64Src, Program, Reg};
///
/// let p = Program::from_insns(vec![
///     Insn::LdImm64 { dst: Reg::R1, src: LdImm64Src::Imm(7) },
///     Insn::Exit,
/// ]);
/// assert_eq!(fmt_program(&p, &DisasmOptions::default()), "0: r1 = 7 ll\n2: exit\n");
/// ```
pub fn fmt_program(p: &Program, opts: &DisasmOptions) -> String {
    let mut s = String::with_capacity(p.len() * 28);
    for (idx, insn) in p.iter() {
        let _ = write!(s, "{}: ", idx.slot());
        let _ = write_insn(&mut s, insn, opts);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    //! Expected texts copied by hand from `llvm-objdump -d` (LLVM 14 for
    //! decimal, LLVM 19 for hex) run on the encodings noted in each row.
    use super::*;

    const DEC: DisasmOptions = DisasmOptions { hex: false };
    const HEX: DisasmOptions = DisasmOptions { hex: true };

    #[test]
    fn alu_forms() {
        // 07 01 00 00 fb ff ff ff
        let i = Insn::alu(Width::W64, AluOp::Add, Reg::R1, Source::Imm(-5));
        assert_eq!(fmt_insn(&i, &DEC), "r1 += -5");
        assert_eq!(fmt_insn(&i, &HEX), "r1 += -0x5");
        // cc 21 00 00 00 00 00 00
        let i = Insn::alu(Width::W32, AluOp::Arsh, Reg::R1, Source::Reg(Reg::R2));
        assert_eq!(fmt_insn(&i, &HEX), "w1 s>>= w2");
        // 3f 21 01 00 00 00 00 00 (LLVM 19)
        let i = Insn::alu(Width::W64, AluOp::SDiv, Reg::R1, Source::Reg(Reg::R2));
        assert_eq!(fmt_insn(&i, &HEX), "r1 s/= r2");
        // 84 01 00 00 00 00 00 00
        let i = Insn::Neg {
            width: Width::W32,
            dst: Reg::R1,
        };
        assert_eq!(fmt_insn(&i, &DEC), "w1 = -w1");
        // bc 21 08 00 00 00 00 00
        let i = Insn::MovSx {
            width: Width::W32,
            dst: Reg::R1,
            src: Reg::R2,
            from: Size::B,
        };
        assert_eq!(fmt_insn(&i, &HEX), "w1 = (s8)w2");
        // bf 21 01 00 02 00 03 00
        let i = Insn::AddrSpaceCast {
            dst: Reg::R1,
            src: Reg::R2,
            dst_as: 3,
            src_as: 2,
        };
        assert_eq!(fmt_insn(&i, &HEX), "r1 = addr_space_cast(r2, 0x3, 0x2)");
        // d7 01 00 00 10 00 00 00 / dc 01 00 00 40 00 00 00
        let i = Insn::Endian {
            kind: Endian::Swap,
            bits: 16,
            dst: Reg::R1,
        };
        assert_eq!(fmt_insn(&i, &HEX), "r1 = bswap16 r1");
        let i = Insn::Endian {
            kind: Endian::ToBe,
            bits: 64,
            dst: Reg::R1,
        };
        assert_eq!(fmt_insn(&i, &DEC), "r1 = be64 r1");
    }

    #[test]
    fn jump_forms() {
        // 05 00 00 80 00 00 00 00
        let i = Insn::Ja { off: i16::MIN };
        assert_eq!(fmt_insn(&i, &DEC), "goto -32768");
        assert_eq!(fmt_insn(&i, &HEX), "goto -0x8000");
        // 05 00 00 00 00 00 00 00
        assert_eq!(fmt_insn(&Insn::Ja { off: 0 }, &DEC), "goto +0");
        // 06 00 00 00 00 00 00 80
        let i = Insn::JaLong { imm: i32::MIN };
        assert_eq!(fmt_insn(&i, &HEX), "gotol -0x80000000");
        // 15 01 03 00 fb ff ff ff
        let i = Insn::Jmp {
            width: Width::W64,
            cond: JmpCond::Eq,
            dst: Reg::R1,
            src: Source::Imm(-5),
            off: 3,
        };
        assert_eq!(fmt_insn(&i, &DEC), "if r1 == -5 goto +3");
        assert_eq!(fmt_insn(&i, &HEX), "if r1 == -0x5 goto +0x3");
        // 4e 21 fd ff 00 00 00 00
        let i = Insn::Jmp {
            width: Width::W32,
            cond: JmpCond::Set,
            dst: Reg::R1,
            src: Source::Reg(Reg::R2),
            off: -3,
        };
        assert_eq!(fmt_insn(&i, &HEX), "if w1 & w2 goto -0x3");
        // e5 00 fc ff 00 00 00 00
        assert_eq!(fmt_insn(&Insn::MayGoto { off: -4 }, &HEX), "may_goto -0x4");
        // 85 00 00 00 ff ff ff ff
        let i = Insn::Call(CallTarget::Helper(-1));
        assert_eq!(fmt_insn(&i, &DEC), "call -1");
        assert_eq!(fmt_insn(&Insn::Exit, &HEX), "exit");
    }

    #[test]
    fn memory_forms() {
        // 61 21 fc ff 00 00 00 00
        let i = Insn::Ldx {
            size: Size::W,
            dst: Reg::R1,
            src: Reg::R2,
            off: -4,
        };
        assert_eq!(fmt_insn(&i, &DEC), "r1 = *(u32 *)(r2 - 4)");
        assert_eq!(fmt_insn(&i, &HEX), "r1 = *(u32 *)(r2 - 0x4)");
        // 91 21 08 00 00 00 00 00
        let i = Insn::LdxSx {
            size: Size::B,
            dst: Reg::R1,
            src: Reg::R2,
            off: 8,
        };
        assert_eq!(fmt_insn(&i, &HEX), "r1 = *(s8 *)(r2 + 0x8)");
        // 7a 01 08 00 f9 ff ff ff
        let i = Insn::St {
            size: Size::DW,
            dst: Reg::R1,
            off: 8,
            imm: -7,
        };
        assert_eq!(fmt_insn(&i, &HEX), "*(u64 *)(r1 + 0x8) = -0x7");
        // 28 00 00 00 0c 00 00 00 / 50 30 00 00 00 00 00 00
        let i = Insn::LdAbs {
            size: Size::H,
            imm: 12,
        };
        assert_eq!(fmt_insn(&i, &DEC), "r0 = *(u16 *)skb[12]");
        let i = Insn::LdInd {
            size: Size::B,
            src: Reg::R3,
            imm: 0,
        };
        assert_eq!(fmt_insn(&i, &DEC), "r0 = *(u8 *)skb[r3]");
        // 18 01 00 00 78 56 34 12 00 00 00 00 f0 de bc 9a
        let i = Insn::LdImm64 {
            dst: Reg::R1,
            src: LdImm64Src::Imm(0x9abc_def0_1234_5678),
        };
        assert_eq!(fmt_insn(&i, &DEC), "r1 = -7296712173568108936 ll");
        assert_eq!(fmt_insn(&i, &HEX), "r1 = -0x6543210fedcba988 ll");
    }

    #[test]
    fn atomic_forms() {
        // db 21 f8 ff 01 00 00 00
        let a = |size, op| Insn::Atomic {
            size,
            op,
            dst: Reg::R1,
            src: Reg::R2,
            off: -8,
        };
        let i = a(Size::DW, AtomicOp::Add { fetch: true });
        assert_eq!(
            fmt_insn(&i, &DEC),
            "r2 = atomic_fetch_add((u64 *)(r1 - 8), r2)"
        );
        // db 21 f8 ff f1 00 00 00
        let i = a(Size::DW, AtomicOp::Cmpxchg);
        assert_eq!(fmt_insn(&i, &HEX), "r0 = cmpxchg_64(r1 - 0x8, r0, r2)");
        // c3 21 f8 ff e1 00 00 00 (--mattr=+alu32)
        let i = a(Size::W, AtomicOp::Xchg);
        assert_eq!(fmt_insn(&i, &DEC), "w2 = xchg32_32(r1 - 8, w2)");
        // c3 21 f8 ff 50 00 00 00 (--mattr=+alu32)
        let i = a(Size::W, AtomicOp::And { fetch: false });
        assert_eq!(fmt_insn(&i, &HEX), "lock *(u32 *)(r1 - 0x8) &= w2");
    }

    #[test]
    fn kernel_style_forms() {
        // Our own choices (see the module docs), not LLVM's.
        let cases: [(Insn, &str); 9] = [
            (Insn::Call(CallTarget::Local(-2)), "call pc-2"),
            (
                Insn::Call(CallTarget::Kfunc {
                    btf_id: 1234,
                    off: 3,
                }),
                "call kfunc#1234@3",
            ),
            (
                Insn::LdImm64 {
                    dst: Reg::R1,
                    src: LdImm64Src::MapValue { fd: 5, off: 16 },
                },
                "r1 = map_value[fd:5]+16",
            ),
            (
                Insn::LdImm64 {
                    dst: Reg::R2,
                    src: LdImm64Src::Func(5),
                },
                "r2 = subprog[+5]",
            ),
            (
                Insn::LdImm64 {
                    dst: Reg::R1,
                    src: LdImm64Src::MapIdx(0),
                },
                "r1 = map[idx:0]",
            ),
            (
                Insn::LdInd {
                    size: Size::W,
                    src: Reg::R3,
                    imm: -12,
                },
                "r0 = *(u32 *)skb[r3 - 12]",
            ),
            (
                Insn::Atomic {
                    size: Size::DW,
                    op: AtomicOp::LoadAcquire,
                    dst: Reg::R0,
                    src: Reg::R1,
                    off: 0,
                },
                "r0 = load_acquire((u64 *)(r1 + 0))",
            ),
            (
                Insn::Atomic {
                    size: Size::W,
                    op: AtomicOp::StoreRelease,
                    dst: Reg::R1,
                    src: Reg::R2,
                    off: -8,
                },
                "store_release((u32 *)(r1 - 8), r2)",
            ),
            (Insn::CallReg { reg: Reg::R3 }, "callx r3"),
        ];
        for (insn, want) in cases {
            assert_eq!(fmt_insn(&insn, &DEC), want, "{insn:?}");
        }
    }

    #[test]
    fn program_listing_counts_slots() {
        let p = Program::from_insns(vec![
            Insn::LdImm64 {
                dst: Reg::R0,
                src: LdImm64Src::Imm(u64::MAX),
            },
            Insn::Ja { off: -3 },
            Insn::Exit,
        ]);
        assert_eq!(
            fmt_program(&p, &HEX),
            "0: r0 = -0x1 ll\n2: goto -0x3\n3: exit\n"
        );
    }
}
