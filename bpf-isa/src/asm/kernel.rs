//! The kernel/LLVM syntax (`r0 = 42`, `if r1 > r2 goto +3`, …).

use super::{
    parse_uint, strip_comment, to_imm32, to_imm64, to_off16, AsmError, AsmErrorKind, Builder,
    Target,
};
use crate::insn::*;
use crate::program::Program;

/// One token of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    /// A name: register, keyword, label, type (`u32`).
    Ident(&'a str),
    /// An unsigned number literal (signs are separate tokens).
    Num(&'a str),
    /// An operator or punctuation.
    Punct(&'a str),
}

impl Tok<'_> {
    fn text(&self) -> &str {
        match self {
            Tok::Ident(s) | Tok::Num(s) | Tok::Punct(s) => s,
        }
    }
}

const MULTI: [&str; 14] = [
    "<<=", ">>=", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '.'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Splits a line (without comment) into tokens, appending to `out`.
fn tokenize<'a>(line: &'a str, out: &mut Vec<Tok<'a>>) {
    out.clear();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let (tok, len) = if c.is_ascii_digit() {
            let len = rest
                .find(|ch: char| !ch.is_ascii_alphanumeric() && ch != '_')
                .unwrap_or(rest.len());
            (Tok::Num(&rest[..len]), len)
        } else if is_ident_start(c) {
            let len = rest
                .find(|ch: char| !is_ident_char(ch))
                .unwrap_or(rest.len());
            (Tok::Ident(&rest[..len]), len)
        } else if let Some(m) = MULTI.iter().find(|m| rest.starts_with(**m)) {
            (Tok::Punct(m), m.len())
        } else {
            let len = c.len_utf8();
            (Tok::Punct(&rest[..len]), len)
        };
        out.push(tok);
        rest = &rest[len..];
    }
}

/// A register operand and the width its name implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WReg {
    reg: Reg,
    width: Width,
}

/// Parses `rN` / `wN`; `None` if the name does not look like a register at all.
fn parse_reg(name: &str) -> Option<Result<WReg, AsmErrorKind>> {
    let (width, digits) = if let Some(d) = name.strip_prefix('r') {
        (Width::W64, d)
    } else if let Some(d) = name.strip_prefix('w') {
        (Width::W32, d)
    } else {
        return None;
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let unknown = || AsmErrorKind::UnknownRegister(name.to_string());
    let n: u8 = match digits.parse() {
        Ok(n) if digits.len() == 1 || !digits.starts_with('0') => n,
        _ => return Some(Err(unknown())),
    };
    Some(
        Reg::from_u8(n)
            .map(|reg| WReg { reg, width })
            .ok_or_else(unknown),
    )
}

type R<T> = Result<T, AsmErrorKind>;

/// A cursor over the tokens of one line.
struct Cursor<'t, 'a> {
    toks: &'t [Tok<'a>],
    pos: usize,
}

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos + 1).copied()
    }

    /// The name at the cursor, without consuming it.
    fn ident(&self) -> Option<&'a str> {
        match self.peek() {
            Some(Tok::Ident(name)) => Some(name),
            _ => None,
        }
    }

    fn found(&self) -> String {
        self.peek()
            .map(|t| t.text().to_string())
            .unwrap_or_default()
    }

    fn expected<T>(&self, expected: &'static str) -> R<T> {
        Err(AsmErrorKind::Expected {
            expected,
            found: self.found(),
        })
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.peek() == Some(Tok::Punct(p)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, name: &str) -> bool {
        if self.peek() == Some(Tok::Ident(name)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn punct(&mut self, p: &'static str) -> R<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.expected(p)
        }
    }

    fn end(&self) -> R<()> {
        if self.pos >= self.toks.len() {
            Ok(())
        } else {
            self.expected("end of line")
        }
    }

    fn reg(&mut self) -> R<WReg> {
        if let Some(Tok::Ident(name)) = self.peek() {
            if let Some(r) = parse_reg(name) {
                self.pos += 1;
                return r;
            }
        }
        self.expected("a register")
    }

    /// A register of the given width.
    fn reg_w(&mut self, width: Width) -> R<Reg> {
        let r = self.reg()?;
        if r.width == width {
            Ok(r.reg)
        } else {
            Err(AsmErrorKind::BadOperands(
                "32-bit (w) and 64-bit (r) registers mixed",
            ))
        }
    }

    /// An optionally signed number.
    fn signed(&mut self) -> R<i128> {
        let neg = if self.eat_punct("-") {
            true
        } else {
            self.eat_punct("+");
            false
        };
        match self.peek() {
            Some(Tok::Num(text)) => {
                self.pos += 1;
                let v = i128::from(parse_uint(text)?);
                Ok(if neg { -v } else { v })
            }
            _ => self.expected("a number"),
        }
    }

    fn imm32(&mut self) -> R<i32> {
        to_imm32(self.signed()?)
    }

    /// A sign followed by a magnitude (`+ 8`, `- 0x4`), as in memory operands.
    fn sign_magnitude(&mut self) -> R<i128> {
        let neg = if self.eat_punct("-") {
            true
        } else if self.eat_punct("+") {
            false
        } else {
            return self.expected("`+` or `-`");
        };
        let v = self.signed()?;
        Ok(if neg { -v } else { v })
    }

    /// `rN + off` / `rN - off` (no parentheses).
    fn addr(&mut self) -> R<(Reg, i16)> {
        let base = self.reg_w(Width::W64)?;
        let off = if matches!(self.peek(), Some(Tok::Punct("+" | "-"))) {
            to_off16(self.sign_magnitude()?)?
        } else {
            0
        };
        Ok((base, off))
    }

    /// `(rN + off)`.
    fn paren_addr(&mut self) -> R<(Reg, i16)> {
        self.punct("(")?;
        let a = self.addr()?;
        self.punct(")")?;
        Ok(a)
    }

    /// `(u32 *)` / `(s16 *)`: the size and whether it is signed.
    fn ptr_type(&mut self) -> R<(Size, bool)> {
        self.punct("(")?;
        let (size, signed) = match self.ident().unwrap_or("") {
            "u8" => (Size::B, false),
            "u16" => (Size::H, false),
            "u32" => (Size::W, false),
            "u64" => (Size::DW, false),
            "s8" => (Size::B, true),
            "s16" => (Size::H, true),
            "s32" => (Size::W, true),
            "s64" => (Size::DW, true),
            _ => return self.expected("a type such as u32"),
        };
        self.pos += 1;
        self.punct("*")?;
        self.punct(")")?;
        Ok((size, signed))
    }

    fn unsigned_type(&mut self) -> R<Size> {
        let (size, signed) = self.ptr_type()?;
        if signed {
            return Err(AsmErrorKind::BadOperands(
                "a signed type is only valid in a load",
            ));
        }
        Ok(size)
    }

    /// A jump target: `+N`, `-N`, `N` or a label; an LLVM `<sym+0x10>` annotation after it is skipped.
    fn target(&mut self) -> R<Target> {
        let t = match self.peek() {
            Some(Tok::Ident(name)) if parse_reg(name).is_none() => {
                self.pos += 1;
                Target::Label(name.to_string())
            }
            Some(Tok::Punct("+" | "-") | Tok::Num(_)) => {
                let v = self.signed()?;
                Target::Rel(i64::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
                    value: v,
                    field: "imm",
                })?)
            }
            _ => return self.expected("a jump target (+N, -N or a label)"),
        };
        if self.peek() == Some(Tok::Punct("<")) {
            self.pos = self.toks.len();
        }
        Ok(t)
    }
}

/// Assembles the kernel/LLVM syntax that `llvm-objdump -d` and
/// [`fmt_program`](crate::fmt_program) print.
///
/// Besides the instruction forms listed in [`crate::disasm`], a line may start
/// with `name:` labels and with an `N:` index as [`fmt_program`](crate::fmt_program)
/// prints it (ignored). LLVM's `ld_pseudo rN, src, imm[, imm2]` and the
/// `<sym+0x10>` annotations `llvm-objdump` appends to jump targets are accepted
/// too, as are `w` registers wherever LLVM's alu32 mode prints them (loads,
/// stores and atomics of 32 bits or less).
///
/// ```
/// use bpf_isa::{assemble, fmt_program, DisasmOptions};
///
/// let src = "
///     r0 = 0
/// loop:
///     r0 += 1            # count
///     if r0 < 10 goto loop
///     exit
/// ";
/// let p = assemble(src).unwrap();
/// assert_eq!(p.len(), 4);
/// assert_eq!(
///     fmt_program(&p, &DisasmOptions::default()),
///     "0: r0 = 0\n1: r0 += 1\n2: if r0 < 10 goto -2\n3: exit\n"
/// );
/// assert_eq!(assemble(&fmt_program(&p, &DisasmOptions { hex: true })).unwrap(), p);
/// ```
pub fn assemble(src: &str) -> Result<Program, AsmError> {
    let mut b = Builder::default();
    let mut toks = Vec::with_capacity(16);
    for (n, raw_line) in src.lines().enumerate() {
        let line = n + 1;
        tokenize(strip_comment(raw_line), &mut toks);
        let mut c = Cursor {
            toks: &toks,
            pos: 0,
        };
        // An index prefix `12:` as fmt_program prints it.
        if matches!(c.peek(), Some(Tok::Num(_))) && c.peek2() == Some(Tok::Punct(":")) {
            c.pos += 2;
        }
        // Labels.
        while let (Some(Tok::Ident(name)), Some(Tok::Punct(":"))) = (c.peek(), c.peek2()) {
            b.label(name, line)?;
            c.pos += 2;
        }
        if c.peek().is_none() {
            continue;
        }
        let (insn, target) = parse_insn(&mut c).map_err(|kind| AsmError { line, kind })?;
        b.push(insn, target, line)?;
    }
    b.finish()
}

fn alu_op_for(sym: &str, signed: bool) -> Option<AluOp> {
    Some(match (sym, signed) {
        ("+=", false) => AluOp::Add,
        ("-=", false) => AluOp::Sub,
        ("*=", false) => AluOp::Mul,
        ("/=", false) => AluOp::Div,
        ("/=", true) => AluOp::SDiv,
        ("|=", false) => AluOp::Or,
        ("&=", false) => AluOp::And,
        ("<<=", false) => AluOp::Lsh,
        (">>=", false) => AluOp::Rsh,
        (">>=", true) => AluOp::Arsh,
        ("%=", false) => AluOp::Mod,
        ("%=", true) => AluOp::SMod,
        ("^=", false) => AluOp::Xor,
        _ => return None,
    })
}

fn cond_for(sym: &str, signed: bool) -> Option<JmpCond> {
    Some(match (sym, signed) {
        ("==", false) => JmpCond::Eq,
        ("!=", false) => JmpCond::Ne,
        ("&", false) => JmpCond::Set,
        (">", false) => JmpCond::Gt,
        (">=", false) => JmpCond::Ge,
        ("<", false) => JmpCond::Lt,
        ("<=", false) => JmpCond::Le,
        (">", true) => JmpCond::Sgt,
        (">=", true) => JmpCond::Sge,
        ("<", true) => JmpCond::Slt,
        ("<=", true) => JmpCond::Sle,
        _ => return None,
    })
}

/// An operator, possibly prefixed by `s` (`s>>=`, `s<`): (symbol, signed).
fn operator<'a>(c: &mut Cursor<'_, 'a>) -> Option<(&'a str, bool)> {
    match (c.peek(), c.peek2()) {
        (Some(Tok::Ident("s")), Some(Tok::Punct(p))) => {
            c.pos += 2;
            Some((p, true))
        }
        (Some(Tok::Punct(p)), _) => {
            c.pos += 1;
            Some((p, false))
        }
        _ => None,
    }
}

fn source(c: &mut Cursor<'_, '_>, width: Width) -> R<Source> {
    match c.peek() {
        Some(Tok::Ident(name)) if parse_reg(name).is_some() => Ok(Source::Reg(c.reg_w(width)?)),
        _ => Ok(Source::Imm(c.imm32()?)),
    }
}

fn parse_insn(c: &mut Cursor<'_, '_>) -> R<(Insn, Option<Target>)> {
    let first = c.peek();
    let insn = match first {
        Some(Tok::Ident("exit")) => {
            c.pos += 1;
            Insn::Exit
        }
        Some(Tok::Ident(kw @ ("goto" | "gotol" | "may_goto"))) => {
            c.pos += 1;
            let t = c.target()?;
            c.end()?;
            let insn = match kw {
                "goto" => Insn::Ja { off: 0 },
                "gotol" => Insn::JaLong { imm: 0 },
                _ => Insn::MayGoto { off: 0 },
            };
            return Ok((insn, Some(t)));
        }
        Some(Tok::Ident("call")) => {
            c.pos += 1;
            return parse_call(c);
        }
        Some(Tok::Ident("callx")) => {
            c.pos += 1;
            Insn::CallReg {
                reg: c.reg_w(Width::W64)?,
            }
        }
        Some(Tok::Ident("if")) => {
            c.pos += 1;
            let dst = c.reg()?;
            let Some((sym, signed)) = operator(c) else {
                return c.expected("a comparison");
            };
            let Some(cond) = cond_for(sym, signed) else {
                return Err(AsmErrorKind::Expected {
                    expected: "a comparison",
                    found: sym.to_string(),
                });
            };
            let src = source(c, dst.width)?;
            if !c.eat_ident("goto") {
                return c.expected("goto");
            }
            let t = c.target()?;
            c.end()?;
            return Ok((
                Insn::Jmp {
                    width: dst.width,
                    cond,
                    dst: dst.reg,
                    src,
                    off: 0,
                },
                Some(t),
            ));
        }
        Some(Tok::Ident("lock")) => {
            c.pos += 1;
            c.punct("*")?;
            let size = c.unsigned_type()?;
            let (dst, off) = c.paren_addr()?;
            let op = match c.peek() {
                Some(Tok::Punct("+=")) => AtomicOp::Add { fetch: false },
                Some(Tok::Punct("|=")) => AtomicOp::Or { fetch: false },
                Some(Tok::Punct("&=")) => AtomicOp::And { fetch: false },
                Some(Tok::Punct("^=")) => AtomicOp::Xor { fetch: false },
                _ => return c.expected("+=, |=, &= or ^="),
            };
            c.pos += 1;
            let src = c.reg()?.reg;
            Insn::Atomic {
                size,
                op,
                dst,
                src,
                off,
            }
        }
        Some(Tok::Punct("*")) => {
            c.pos += 1;
            let size = c.unsigned_type()?;
            let (dst, off) = c.paren_addr()?;
            c.punct("=")?;
            match c.peek() {
                Some(Tok::Ident(name)) if parse_reg(name).is_some() => Insn::Stx {
                    size,
                    dst,
                    src: c.reg()?.reg,
                    off,
                },
                _ => Insn::St {
                    size,
                    dst,
                    off,
                    imm: c.imm32()?,
                },
            }
        }
        Some(Tok::Ident("store_release")) => {
            c.pos += 1;
            c.punct("(")?;
            let size = c.unsigned_type()?;
            let (dst, off) = c.paren_addr()?;
            c.punct(",")?;
            let src = c.reg()?.reg;
            c.punct(")")?;
            Insn::Atomic {
                size,
                op: AtomicOp::StoreRelease,
                dst,
                src,
                off,
            }
        }
        Some(Tok::Ident("ld_pseudo")) => {
            c.pos += 1;
            parse_ld_pseudo(c)?
        }
        Some(Tok::Ident(name)) if parse_reg(name).is_some() => {
            let dst = c.reg()?;
            return parse_assign(c, dst);
        }
        Some(t) => return Err(AsmErrorKind::UnknownMnemonic(t.text().to_string())),
        None => return c.expected("an instruction"),
    };
    c.end()?;
    Ok((insn, None))
}

/// `call N`, `call pc+N`, `call pc label`, `call kfunc#ID[@OFF]`.
fn parse_call(c: &mut Cursor<'_, '_>) -> R<(Insn, Option<Target>)> {
    let r = match c.peek() {
        Some(Tok::Ident("pc")) => {
            c.pos += 1;
            let t = c.target()?;
            (Insn::Call(CallTarget::Local(0)), Some(t))
        }
        Some(Tok::Ident("kfunc")) => {
            c.pos += 1;
            c.punct("#")?;
            let btf_id = c.imm32()?;
            let off = if c.eat_punct("@") {
                to_off16(c.signed()?)?
            } else {
                0
            };
            (Insn::Call(CallTarget::Kfunc { btf_id, off }), None)
        }
        _ => (Insn::Call(CallTarget::Helper(c.imm32()?)), None),
    };
    c.end()?;
    Ok(r)
}

/// LLVM's `ld_pseudo rN, SRC, IMM` with an optional second-slot immediate.
fn parse_ld_pseudo(c: &mut Cursor<'_, '_>) -> R<Insn> {
    let dst = c.reg_w(Width::W64)?;
    c.punct(",")?;
    let kind = c.signed()?;
    c.punct(",")?;
    let imm = c.imm32()?;
    let hi = if c.eat_punct(",") { c.imm32()? } else { 0 };
    let src = match kind {
        1 => LdImm64Src::MapFd(imm),
        2 => LdImm64Src::MapValue {
            fd: imm,
            off: hi as u32,
        },
        3 => LdImm64Src::BtfId(imm),
        4 => LdImm64Src::Func(imm),
        5 => LdImm64Src::MapIdx(imm),
        6 => LdImm64Src::MapIdxValue {
            idx: imm,
            off: hi as u32,
        },
        _ => return Err(AsmErrorKind::BadOperands("ld_pseudo source must be 1 to 6")),
    };
    if hi != 0 && !matches!(kind, 2 | 6) {
        return Err(AsmErrorKind::BadOperands(
            "only map value sources take a second immediate",
        ));
    }
    Ok(Insn::LdImm64 { dst, src })
}

/// Everything that starts with a destination register.
fn parse_assign(c: &mut Cursor<'_, '_>, dst: WReg) -> R<(Insn, Option<Target>)> {
    let width = dst.width;
    let Some((sym, signed)) = operator(c) else {
        return c.expected("an assignment operator");
    };
    if sym != "=" || signed {
        let Some(op) = alu_op_for(sym, signed) else {
            return Err(AsmErrorKind::Expected {
                expected: "an assignment operator",
                found: sym.to_string(),
            });
        };
        let src = source(c, width)?;
        c.end()?;
        return Ok((
            Insn::Alu {
                width,
                op,
                dst: dst.reg,
                src,
            },
            None,
        ));
    }
    let same = |r: WReg| -> R<()> {
        if r == dst {
            Ok(())
        } else {
            Err(AsmErrorKind::BadOperands(
                "source and destination must be the same register",
            ))
        }
    };
    let insn = match c.peek() {
        // r1 = -r1 / r1 = -5
        Some(Tok::Punct("-")) if matches!(c.peek2(), Some(Tok::Ident(_))) => {
            c.pos += 1;
            same(c.reg()?)?;
            Insn::Neg {
                width,
                dst: dst.reg,
            }
        }
        Some(Tok::Punct("+" | "-") | Tok::Num(_)) => {
            let v = c.signed()?;
            if c.eat_ident("ll") {
                if width != Width::W64 {
                    return Err(AsmErrorKind::BadOperands(
                        "a 64-bit load needs an r register",
                    ));
                }
                Insn::LdImm64 {
                    dst: dst.reg,
                    src: LdImm64Src::Imm(to_imm64(v)?),
                }
            } else {
                Insn::Alu {
                    width,
                    op: AluOp::Mov,
                    dst: dst.reg,
                    src: Source::Imm(to_imm32(v)?),
                }
            }
        }
        // Loads: r0 = *(u32 *)(r1 + 8), r0 = *(u8 *)skb[12]
        Some(Tok::Punct("*")) => {
            c.pos += 1;
            let (size, sx) = c.ptr_type()?;
            if c.eat_ident("skb") {
                parse_skb(c, dst, size, sx)?
            } else {
                let (src, off) = c.paren_addr()?;
                if sx {
                    Insn::LdxSx {
                        size,
                        dst: dst.reg,
                        src,
                        off,
                    }
                } else {
                    Insn::Ldx {
                        size,
                        dst: dst.reg,
                        src,
                        off,
                    }
                }
            }
        }
        // r1 = (s8)r2
        Some(Tok::Punct("(")) => {
            c.pos += 1;
            let from = match c.ident() {
                Some("s8") => Size::B,
                Some("s16") => Size::H,
                Some("s32") => Size::W,
                _ => return c.expected("s8, s16 or s32"),
            };
            c.pos += 1;
            c.punct(")")?;
            Insn::MovSx {
                width,
                dst: dst.reg,
                src: c.reg_w(width)?,
                from,
            }
        }
        Some(Tok::Ident(name)) if parse_reg(name).is_some() => Insn::Alu {
            width,
            op: AluOp::Mov,
            dst: dst.reg,
            src: Source::Reg(c.reg_w(width)?),
        },
        Some(Tok::Ident(name)) => {
            c.pos += 1;
            return parse_named(c, dst, name);
        }
        _ => return c.expected("a value"),
    };
    c.end()?;
    Ok((insn, None))
}

/// `skb[12]`, `skb[r3]`, `skb[r3 + 4]` after the pointer type.
fn parse_skb(c: &mut Cursor<'_, '_>, dst: WReg, size: Size, sx: bool) -> R<Insn> {
    if sx || dst.reg != Reg::R0 {
        return Err(AsmErrorKind::BadOperands(
            "packet loads load unsigned values into r0",
        ));
    }
    c.punct("[")?;
    let insn = match c.peek() {
        Some(Tok::Ident(name)) if parse_reg(name).is_some() => {
            let src = c.reg_w(Width::W64)?;
            let imm = if matches!(c.peek(), Some(Tok::Punct("+" | "-"))) {
                to_imm32(c.sign_magnitude()?)?
            } else {
                0
            };
            Insn::LdInd { size, src, imm }
        }
        _ => Insn::LdAbs {
            size,
            imm: c.imm32()?,
        },
    };
    c.punct("]")?;
    Ok(insn)
}

/// Right-hand sides that start with a name: byte swaps, atomics, arena casts,
/// and the kernel-style `ld_imm64` pseudo sources.
fn parse_named(c: &mut Cursor<'_, '_>, dst: WReg, name: &str) -> R<(Insn, Option<Target>)> {
    let same_reg = |r: Reg| -> R<()> {
        if r == dst.reg {
            Ok(())
        } else {
            Err(AsmErrorKind::BadOperands(
                "source and destination must be the same register",
            ))
        }
    };
    let need64 = || -> R<()> {
        if dst.width == Width::W64 {
            Ok(())
        } else {
            Err(AsmErrorKind::BadOperands("this form needs an r register"))
        }
    };
    let mut target = None;
    let insn = match name {
        "be16" | "be32" | "be64" | "le16" | "le32" | "le64" | "bswap16" | "bswap32" | "bswap64" => {
            let (kind, bits) = name.split_at(name.len() - 2);
            let kind = match kind {
                "be" => Endian::ToBe,
                "le" => Endian::ToLe,
                _ => Endian::Swap,
            };
            let bits = match bits {
                "16" => 16,
                "32" => 32,
                _ => 64,
            };
            same_reg(c.reg()?.reg)?;
            Insn::Endian {
                kind,
                bits,
                dst: dst.reg,
            }
        }
        "atomic_fetch_add" | "atomic_fetch_or" | "atomic_fetch_and" | "atomic_fetch_xor" => {
            let op = match name {
                "atomic_fetch_add" => AtomicOp::Add { fetch: true },
                "atomic_fetch_or" => AtomicOp::Or { fetch: true },
                "atomic_fetch_and" => AtomicOp::And { fetch: true },
                _ => AtomicOp::Xor { fetch: true },
            };
            c.punct("(")?;
            let size = c.unsigned_type()?;
            let (base, off) = c.paren_addr()?;
            c.punct(",")?;
            let src = c.reg()?.reg;
            c.punct(")")?;
            same_reg(src)?;
            Insn::Atomic {
                size,
                op,
                dst: base,
                src,
                off,
            }
        }
        "xchg_64" | "xchg32_32" => {
            c.punct("(")?;
            let (base, off) = c.addr()?;
            c.punct(",")?;
            let src = c.reg()?.reg;
            c.punct(")")?;
            same_reg(src)?;
            Insn::Atomic {
                size: if name == "xchg_64" { Size::DW } else { Size::W },
                op: AtomicOp::Xchg,
                dst: base,
                src,
                off,
            }
        }
        "cmpxchg_64" | "cmpxchg32_32" => {
            c.punct("(")?;
            let (base, off) = c.addr()?;
            c.punct(",")?;
            let old = c.reg()?.reg;
            c.punct(",")?;
            let src = c.reg()?.reg;
            c.punct(")")?;
            if dst.reg != Reg::R0 || old != Reg::R0 {
                return Err(AsmErrorKind::BadOperands("cmpxchg compares and returns r0"));
            }
            Insn::Atomic {
                size: if name == "cmpxchg_64" {
                    Size::DW
                } else {
                    Size::W
                },
                op: AtomicOp::Cmpxchg,
                dst: base,
                src,
                off,
            }
        }
        "load_acquire" => {
            c.punct("(")?;
            let size = c.unsigned_type()?;
            let (base, off) = c.paren_addr()?;
            c.punct(")")?;
            Insn::Atomic {
                size,
                op: AtomicOp::LoadAcquire,
                dst: dst.reg,
                src: base,
                off,
            }
        }
        "addr_space_cast" => {
            need64()?;
            c.punct("(")?;
            let src = c.reg_w(Width::W64)?;
            c.punct(",")?;
            let dst_as = u16_of(c.signed()?)?;
            c.punct(",")?;
            let src_as = u16_of(c.signed()?)?;
            c.punct(")")?;
            Insn::AddrSpaceCast {
                dst: dst.reg,
                src,
                dst_as,
                src_as,
            }
        }
        "map" | "map_value" => {
            need64()?;
            c.punct("[")?;
            let by_idx = match c.ident() {
                Some("fd") => false,
                Some("idx") => true,
                _ => return c.expected("fd or idx"),
            };
            c.pos += 1;
            c.punct(":")?;
            let n = c.imm32()?;
            c.punct("]")?;
            let src = if name == "map" {
                if by_idx {
                    LdImm64Src::MapIdx(n)
                } else {
                    LdImm64Src::MapFd(n)
                }
            } else {
                let off = if matches!(c.peek(), Some(Tok::Punct("+" | "-"))) {
                    to_imm32(c.sign_magnitude()?)? as u32
                } else {
                    0
                };
                if by_idx {
                    LdImm64Src::MapIdxValue { idx: n, off }
                } else {
                    LdImm64Src::MapValue { fd: n, off }
                }
            };
            Insn::LdImm64 { dst: dst.reg, src }
        }
        "btf_id" => {
            need64()?;
            c.punct("[")?;
            let id = c.imm32()?;
            c.punct("]")?;
            Insn::LdImm64 {
                dst: dst.reg,
                src: LdImm64Src::BtfId(id),
            }
        }
        "subprog" => {
            need64()?;
            c.punct("[")?;
            let t = c.target()?;
            c.punct("]")?;
            target = Some(t);
            Insn::LdImm64 {
                dst: dst.reg,
                src: LdImm64Src::Func(0),
            }
        }
        _ => return Err(AsmErrorKind::UnknownMnemonic(name.to_string())),
    };
    c.end()?;
    Ok((insn, target))
}

fn u16_of(v: i128) -> R<u16> {
    u16::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
        value: v,
        field: "an address space (16 bits)",
    })
}
