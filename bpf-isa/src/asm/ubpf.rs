//! The uBPF-style syntax of the bpf_conformance suite (`mov32 %r0, 0`, …).

use super::{
    parse_uint, strip_comment, to_imm32, to_imm64, AsmError, AsmErrorKind, Builder, Target,
};
use crate::insn::*;
use crate::program::Program;

type R<T> = Result<T, AsmErrorKind>;

/// Splits the operands of a line: separated by commas and/or whitespace, with
/// `[...]` memory operands kept whole (whitespace inside them dropped).
fn split_operands(rest: &str, out: &mut Vec<String>) {
    out.clear();
    let mut cur = String::new();
    let mut depth = 0u32;
    for ch in rest.chars() {
        match ch {
            '[' => {
                depth += 1;
                cur.push(ch);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                cur.push(ch);
            }
            c if c.is_whitespace() || c == ',' => {
                if depth == 0 && !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

fn reg(text: &str) -> R<Reg> {
    let name = text.strip_prefix('%').unwrap_or(text);
    let unknown = || AsmErrorKind::UnknownRegister(text.to_string());
    let digits = name
        .strip_prefix('r')
        .ok_or_else(|| AsmErrorKind::Expected {
            expected: "a register",
            found: text.to_string(),
        })?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(AsmErrorKind::Expected {
            expected: "a register",
            found: text.to_string(),
        });
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(unknown());
    }
    let n: u8 = digits.parse().map_err(|_| unknown())?;
    Reg::from_u8(n).ok_or_else(unknown)
}

fn is_reg(text: &str) -> bool {
    text.starts_with('%') || reg(text).is_ok()
}

/// An optionally signed number.
fn signed(text: &str) -> R<i128> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let v = i128::from(parse_uint(digits)?);
    Ok(if neg { -v } else { v })
}

fn imm32(text: &str) -> R<i32> {
    to_imm32(signed(text)?)
}

/// A 16-bit offset: `i16` values, or `u16` values as the suite's assembler
/// accepts them (`65535` is `-1`).
fn off16(v: i128) -> R<i16> {
    if (i128::from(i16::MIN)..=i128::from(u16::MAX)).contains(&v) {
        Ok(v as u16 as i16)
    } else {
        Err(AsmErrorKind::OutOfRange {
            value: v,
            field: "off",
        })
    }
}

/// `[%r1]`, `[%r1+8]`, `[%r10-0x10]`.
fn mem(text: &str) -> R<(Reg, i16)> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| AsmErrorKind::Expected {
            expected: "a memory operand such as [%r1+8]",
            found: text.to_string(),
        })?;
    match inner.find(['+', '-']) {
        Some(i) => {
            let (r, off) = inner.split_at(i);
            Ok((reg(r)?, off16(signed(off)?)?))
        }
        None => Ok((reg(inner)?, 0)),
    }
}

/// A jump target: `+N`, `-N`, `N` or a label.
fn target(text: &str) -> R<Target> {
    if text.starts_with(['+', '-']) || text.starts_with(|c: char| c.is_ascii_digit()) {
        let v = signed(text)?;
        let rel = i64::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
            value: v,
            field: "imm",
        })?;
        Ok(Target::Rel(rel))
    } else {
        Ok(Target::Label(text.to_string()))
    }
}

fn operands<'o>(ops: &'o [String], n: usize, mnemonic: &str) -> R<&'o [String]> {
    if ops.len() == n {
        Ok(ops)
    } else {
        Err(AsmErrorKind::Expected {
            expected: match n {
                0 => "no operands",
                1 => "one operand",
                2 => "two operands",
                _ => "three operands",
            },
            found: format!("{} operands to {mnemonic}", ops.len()),
        })
    }
}

fn size_suffix(s: &str) -> Option<Size> {
    Some(match s {
        "b" => Size::B,
        "h" => Size::H,
        "w" => Size::W,
        "dw" => Size::DW,
        _ => return None,
    })
}

fn alu_op(name: &str) -> Option<AluOp> {
    Some(match name {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "xor" => AluOp::Xor,
        "mov" => AluOp::Mov,
        "arsh" => AluOp::Arsh,
        _ => return None,
    })
}

fn jmp_cond(name: &str) -> Option<JmpCond> {
    Some(match name {
        "jeq" => JmpCond::Eq,
        "jgt" => JmpCond::Gt,
        "jge" => JmpCond::Ge,
        "jset" => JmpCond::Set,
        "jne" => JmpCond::Ne,
        "jsgt" => JmpCond::Sgt,
        "jsge" => JmpCond::Sge,
        "jlt" => JmpCond::Lt,
        "jle" => JmpCond::Le,
        "jslt" => JmpCond::Slt,
        "jsle" => JmpCond::Sle,
        _ => return None,
    })
}

/// Splits a `32` / `64` width suffix off a mnemonic (no suffix means 64 bits).
fn width_suffix(m: &str) -> (&str, Width) {
    if let Some(base) = m.strip_suffix("32") {
        (base, Width::W32)
    } else if let Some(base) = m.strip_suffix("64") {
        (base, Width::W64)
    } else {
        (m, Width::W64)
    }
}

/// Assembles the uBPF-style syntax of the bpf_conformance suite's `-- asm`
/// sections, encoding every mnemonic exactly as that suite's assembler does.
///
/// Mnemonics: ALU `add sub mul div sdiv mod smod or and xor lsh rsh arsh mov`
/// (`…32` for 32-bit, optional `…64`), `neg`/`neg32`,
/// `movsx{8,16,32}{32,64}` (e.g. `movsx1632`), `be16/32/64`, `le16/32/64`,
/// `swap16/32/64` (alias `bswap…`); jumps `ja`, `ja32` (`gotol`),
/// `jeq jne jgt jge jlt jle jsgt jsge jslt jsle jset` (`…32` for 32-bit),
/// `call N`, `call helper N`, `call local <label|+N>`, `call runtime N`
/// (kfunc), `call %rN` (callx, register in `dst`), `exit`; memory
/// `lddw`, `ldx{b,h,w,dw}`, `ldxs{b,h,w}` (sign-extending), `st{b,h,w,dw}`,
/// `stx{b,h,w,dw}`; atomics `lock [fetch] {add,or,and,xor}[32]`,
/// `lock xchg[32]`, `lock cmpxchg[32]`. Registers are `%r0`..`%r10` (the `%`
/// is optional), memory operands `[%r1]`, `[%r1+8]`, `[%r10-8]`. As in the
/// suite's assembler, the label `exit` names the first `exit` instruction.
///
/// ```
/// use bpf_isa::{assemble_ubpf, Insn};
///
/// let p = assemble_ubpf("
///     mov32 %r0, 0
///     jne %r1, 7, exit
///     lddw %r0, 0x123456789abcdef0
///     exit
/// ").unwrap();
/// assert_eq!(p.slot_len(), 5);
/// assert!(matches!(p.insns()[1], Insn::Jmp { off: 2, .. }));
/// ```
pub fn assemble_ubpf(src: &str) -> Result<Program, AsmError> {
    let mut b = Builder::default();
    let mut ops = Vec::with_capacity(4);
    let mut seen_exit = false;
    for (n, raw_line) in src.lines().enumerate() {
        let line = n + 1;
        let mut text = strip_comment(raw_line).trim();
        // Labels.
        while let Some(word) = text.split_whitespace().next() {
            let Some(label) = word.strip_suffix(':') else {
                break;
            };
            b.label(label, line)?;
            text = text.get(word.len()..).unwrap_or("").trim_start();
        }
        let Some(mnemonic) = text.split_whitespace().next() else {
            continue;
        };
        split_operands(text.get(mnemonic.len()..).unwrap_or(""), &mut ops);
        if mnemonic == "exit" && !seen_exit {
            seen_exit = true;
            b.set_label("exit");
        }
        let (insn, target) = parse(mnemonic, &ops).map_err(|kind| AsmError { line, kind })?;
        b.push(insn, target, line)?;
    }
    b.finish()
}

fn parse(m: &str, ops: &[String]) -> R<(Insn, Option<Target>)> {
    let none = |i| Ok((i, None));
    let unknown = || Err(AsmErrorKind::UnknownMnemonic(m.to_string()));
    match m {
        "exit" => {
            operands(ops, 0, m)?;
            return none(Insn::Exit);
        }
        "lock" => return parse_lock(ops),
        "call" => return parse_call(ops),
        "ja" | "ja32" => {
            let o = operands(ops, 1, m)?;
            let insn = if m == "ja" {
                Insn::Ja { off: 0 }
            } else {
                Insn::JaLong { imm: 0 }
            };
            return Ok((insn, Some(target(&o[0])?)));
        }
        "lddw" => {
            let o = operands(ops, 2, m)?;
            return none(Insn::LdImm64 {
                dst: reg(&o[0])?,
                src: LdImm64Src::Imm(to_imm64(signed(&o[1])?)?),
            });
        }
        _ => {}
    }
    if let Some(sz) = m.strip_prefix("ldxs").and_then(size_suffix) {
        let o = operands(ops, 2, m)?;
        let (src, off) = mem(&o[1])?;
        return none(Insn::LdxSx {
            size: sz,
            dst: reg(&o[0])?,
            src,
            off,
        });
    }
    if let Some(sz) = m.strip_prefix("ldx").and_then(size_suffix) {
        let o = operands(ops, 2, m)?;
        let (src, off) = mem(&o[1])?;
        return none(Insn::Ldx {
            size: sz,
            dst: reg(&o[0])?,
            src,
            off,
        });
    }
    if let Some(sz) = m.strip_prefix("stx").and_then(size_suffix) {
        let o = operands(ops, 2, m)?;
        let (dst, off) = mem(&o[0])?;
        return none(Insn::Stx {
            size: sz,
            dst,
            src: reg(&o[1])?,
            off,
        });
    }
    if let Some(sz) = m.strip_prefix("st").and_then(size_suffix) {
        let o = operands(ops, 2, m)?;
        let (dst, off) = mem(&o[0])?;
        return none(Insn::St {
            size: sz,
            dst,
            off,
            imm: imm32(&o[1])?,
        });
    }
    for (prefix, kind) in [
        ("bswap", Endian::Swap),
        ("swap", Endian::Swap),
        ("be", Endian::ToBe),
        ("le", Endian::ToLe),
    ] {
        if let Some(bits) = m.strip_prefix(prefix) {
            let bits = match bits {
                "16" => 16,
                "32" => 32,
                "64" => 64,
                _ => return unknown(),
            };
            let o = operands(ops, 1, m)?;
            return none(Insn::Endian {
                kind,
                bits,
                dst: reg(&o[0])?,
            });
        }
    }
    let (base, width) = width_suffix(m);
    if let Some(cond) = jmp_cond(base) {
        let o = operands(ops, 3, m)?;
        let dst = reg(&o[0])?;
        let src = if is_reg(&o[1]) {
            Source::Reg(reg(&o[1])?)
        } else {
            Source::Imm(imm32(&o[1])?)
        };
        let insn = Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off: 0,
        };
        return Ok((insn, Some(target(&o[2])?)));
    }
    if base == "neg" {
        let o = operands(ops, 1, m)?;
        return none(Insn::Neg {
            width,
            dst: reg(&o[0])?,
        });
    }
    if let Some(bits) = base.strip_prefix("movsx") {
        let from = match bits {
            "8" => Size::B,
            "16" => Size::H,
            "32" => Size::W,
            _ => return unknown(),
        };
        let o = operands(ops, 2, m)?;
        return none(Insn::MovSx {
            width,
            dst: reg(&o[0])?,
            src: reg(&o[1])?,
            from,
        });
    }
    if let Some(op) = alu_op(base) {
        let o = operands(ops, 2, m)?;
        let dst = reg(&o[0])?;
        let src = if is_reg(&o[1]) {
            Source::Reg(reg(&o[1])?)
        } else {
            Source::Imm(imm32(&o[1])?)
        };
        return none(Insn::Alu {
            width,
            op,
            dst,
            src,
        });
    }
    unknown()
}

/// `call N`, `call helper N`, `call local T`, `call runtime N`, `call %rN`.
fn parse_call(ops: &[String]) -> R<(Insn, Option<Target>)> {
    let (mode, what) = match ops {
        [what] => ("helper", what),
        [mode, what] => (mode.as_str(), what),
        _ => {
            return Err(AsmErrorKind::Expected {
                expected: "call [helper|local|runtime] TARGET",
                found: ops.join(" "),
            })
        }
    };
    match mode {
        "helper" if is_reg(what) => Ok((Insn::CallReg { reg: reg(what)? }, None)),
        "helper" => Ok((Insn::Call(CallTarget::Helper(imm32(what)?)), None)),
        "local" => Ok((Insn::Call(CallTarget::Local(0)), Some(target(what)?))),
        "runtime" => Ok((
            Insn::Call(CallTarget::Kfunc {
                btf_id: imm32(what)?,
                off: 0,
            }),
            None,
        )),
        other => Err(AsmErrorKind::Expected {
            expected: "helper, local or runtime",
            found: other.to_string(),
        }),
    }
}

/// `lock [fetch] OP[32] [%rB+off], %rS`.
fn parse_lock(ops: &[String]) -> R<(Insn, Option<Target>)> {
    let (fetch, rest) = match ops.split_first() {
        Some((f, rest)) if f == "fetch" => (true, rest),
        _ => (false, ops),
    };
    let [op, addr, src] = rest else {
        return Err(AsmErrorKind::Expected {
            expected: "lock [fetch] OP [%rB+off], %rS",
            found: ops.join(" "),
        });
    };
    let (base, width) = width_suffix(op);
    let size = match width {
        Width::W32 => Size::W,
        Width::W64 => Size::DW,
    };
    let op = match base {
        "add" => AtomicOp::Add { fetch },
        "or" => AtomicOp::Or { fetch },
        "and" => AtomicOp::And { fetch },
        "xor" => AtomicOp::Xor { fetch },
        "xchg" => AtomicOp::Xchg,
        "cmpxchg" => AtomicOp::Cmpxchg,
        _ => return Err(AsmErrorKind::UnknownMnemonic(format!("lock {op}"))),
    };
    let (dst, off) = mem(addr)?;
    Ok((
        Insn::Atomic {
            size,
            op,
            dst,
            src: reg(src)?,
            off,
        },
        None,
    ))
}
