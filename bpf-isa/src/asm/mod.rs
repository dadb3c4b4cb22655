//! Assemblers: text to [`Program`].
//!
//! Two syntaxes are understood:
//!
//! * [`assemble`]: the kernel/LLVM syntax that `llvm-objdump -d` prints and
//!   that [`crate::disasm`] writes (`r0 = 42`, `if w1 s< -5 goto -2`,
//!   `*(u32 *)(r10 - 4) = r1`, `r1 = map[fd:3]`, …). Whatever
//!   [`fmt_program`](crate::fmt_program) prints assembles back to the same
//!   program, in decimal and in hexadecimal style.
//! * [`assemble_ubpf`]: the uBPF-style mnemonics of the bpf_conformance suite
//!   (`mov32 %r0, 0`, `ldxdw %r0, [%r10-8]`, `jne %r0, %r1, exit`), encoded
//!   byte for byte as the suite's own assembler encodes them. The suite's
//!   `.data` files themselves are read by [`conformance::parse_case`].
//!
//! Both accept labels (`name:`, alone on a line or before an instruction),
//! jump and local-call targets given as labels or as `+N` / `-N` slot offsets,
//! comments (`#` at the start of a line or after whitespace, `//`, `;`), and
//! decimal or `0x` hexadecimal numbers. Neither checks that jump targets are
//! inside the program (use [`Program::validate`]); both reject every
//! instruction the decoder would reject, so the result always encodes to
//! bytes that [`Program::decode`] accepts.
//!
//! Errors carry the 1-based line number:
//!
//! ```
//! use bpf_isa::asm::{assemble, AsmErrorKind};
//!
//! let err = assemble("r0 = 0\nexit\nr11 = 1\n").unwrap_err();
//! assert_eq!(err.line, 3);
//! assert_eq!(err.kind, AsmErrorKind::UnknownRegister("r11".into()));
//! assert_eq!(err.to_string(), "line 3: unknown register r11");
//! ```

pub mod conformance;
mod kernel;
mod ubpf;

use std::collections::HashMap;

use thiserror::Error;

use crate::decode::decode_slots;
use crate::encode::encode;
use crate::error::ErrorKind;
use crate::insn::{CallTarget, Insn, LdImm64Src};
use crate::program::Program;

pub use kernel::assemble;
pub use ubpf::assemble_ubpf;

/// Why a line could not be assembled.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AsmErrorKind {
    /// A register name that is not `r0`..`r10` (`w0`..`w10`, `%r0`..`%r10`).
    #[error("unknown register {0}")]
    UnknownRegister(String),
    /// The line does not start with any known instruction.
    #[error("unknown instruction `{0}`")]
    UnknownMnemonic(String),
    /// The text does not follow the instruction's syntax.
    #[error("expected {expected}, found `{found}`")]
    Expected {
        /// What the syntax requires at this point.
        expected: &'static str,
        /// What was there instead (empty at the end of the line).
        found: String,
    },
    /// A malformed number.
    #[error("invalid number `{0}`")]
    BadNumber(String),
    /// A number that does not fit in the field it is encoded into.
    #[error("number {value} does not fit in {field}")]
    OutOfRange {
        /// The number, as parsed.
        value: i128,
        /// The field: `imm`, `off`, `a 64-bit immediate`, ….
        field: &'static str,
    },
    /// A jump or call to a label that is never defined.
    #[error("undefined label `{0}`")]
    UndefinedLabel(String),
    /// A label defined twice.
    #[error("duplicate label `{0}`")]
    DuplicateLabel(String),
    /// A label too far away for the instruction's offset field.
    #[error("label `{label}` is {distance} slots away, out of range of the {field} field")]
    LabelOutOfRange {
        /// The label.
        label: String,
        /// Distance in slots from the next instruction.
        distance: i64,
        /// `off` (16 bits) or `imm` (32 bits).
        field: &'static str,
    },
    /// Operands that the instruction cannot take together, e.g. `w1 += r2`
    /// or `r1 = be16 r2`.
    #[error("{0}")]
    BadOperands(&'static str),
    /// The instruction is well-formed text but not a valid encoding (the
    /// decoder's reason is given), e.g. a one-byte atomic add.
    #[error("invalid instruction: {0}")]
    Invalid(ErrorKind),
}

/// An assembly error: the 1-based line and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct AsmError {
    /// 1-based line number in the source text.
    pub line: usize,
    /// The reason.
    pub kind: AsmErrorKind,
}

/// A jump or call target as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// An explicit offset in slots from the next instruction.
    Rel(i64),
    /// A label, resolved after the whole text is read.
    Label(String),
}

struct Fixup {
    insn: usize,
    slot: usize,
    line: usize,
    label: String,
}

/// Collects instructions and labels, then resolves label references.
#[derive(Default)]
pub(crate) struct Builder {
    insns: Vec<Insn>,
    slot: usize,
    labels: HashMap<String, usize>,
    fixups: Vec<Fixup>,
}

impl Builder {
    /// Defines `name` at the current slot.
    pub(crate) fn label(&mut self, name: &str, line: usize) -> Result<(), AsmError> {
        if self.labels.contains_key(name) {
            return Err(AsmError {
                line,
                kind: AsmErrorKind::DuplicateLabel(name.to_string()),
            });
        }
        self.labels.insert(name.to_string(), self.slot);
        Ok(())
    }

    /// Defines or redefines `name` at the current slot.
    pub(crate) fn set_label(&mut self, name: &str) {
        self.labels.insert(name.to_string(), self.slot);
    }

    /// Appends `insn` after checking that it encodes validly; `target`, when
    /// given, is stored into the instruction's branch field.
    pub(crate) fn push(
        &mut self,
        mut insn: Insn,
        target: Option<Target>,
        line: usize,
    ) -> Result<(), AsmError> {
        let err = |kind| AsmError { line, kind };
        match target {
            Some(Target::Rel(rel)) => set_target(&mut insn, rel).map_err(err)?,
            Some(Target::Label(label)) => self.fixups.push(Fixup {
                insn: self.insns.len(),
                slot: self.slot,
                line,
                label,
            }),
            None => {}
        }
        check_encodes(&insn).map_err(err)?;
        self.slot += insn.slots();
        self.insns.push(insn);
        Ok(())
    }

    /// Resolves the label references and returns the program.
    pub(crate) fn finish(mut self) -> Result<Program, AsmError> {
        for f in &self.fixups {
            let err = |kind| AsmError { line: f.line, kind };
            let Some(&at) = self.labels.get(&f.label) else {
                return Err(err(AsmErrorKind::UndefinedLabel(f.label.clone())));
            };
            let Some(insn) = self.insns.get_mut(f.insn) else {
                continue;
            };
            let distance = at as i64 - (f.slot as i64 + 1);
            set_target(insn, distance).map_err(|kind| match kind {
                AsmErrorKind::OutOfRange { field, .. } => err(AsmErrorKind::LabelOutOfRange {
                    label: f.label.clone(),
                    distance,
                    field,
                }),
                other => err(other),
            })?;
        }
        Ok(Program::from_insns(self.insns))
    }
}

/// Stores a relative target into the branch field of `insn`.
fn set_target(insn: &mut Insn, rel: i64) -> Result<(), AsmErrorKind> {
    let off16 = || {
        i16::try_from(rel).map_err(|_| AsmErrorKind::OutOfRange {
            value: rel.into(),
            field: "off",
        })
    };
    let imm32 = || {
        i32::try_from(rel).map_err(|_| AsmErrorKind::OutOfRange {
            value: rel.into(),
            field: "imm",
        })
    };
    match insn {
        Insn::Ja { off } | Insn::Jmp { off, .. } | Insn::MayGoto { off } => *off = off16()?,
        Insn::JaLong { imm } => *imm = imm32()?,
        Insn::Call(CallTarget::Local(imm)) => *imm = imm32()?,
        Insn::LdImm64 {
            src: LdImm64Src::Func(imm),
            ..
        } => *imm = imm32()?,
        _ => {
            return Err(AsmErrorKind::BadOperands(
                "this instruction takes no target",
            ))
        }
    }
    Ok(())
}

/// Checks that `insn` encodes to slots the decoder accepts as the same instruction.
fn check_encodes(insn: &Insn) -> Result<(), AsmErrorKind> {
    let (a, b) = encode(insn);
    let slots = [a, b.unwrap_or_default()];
    let n = if b.is_some() { 2 } else { 1 };
    let back = decode_slots(slots.get(..n).unwrap_or(&slots)).map_err(AsmErrorKind::Invalid)?;
    if back == *insn {
        Ok(())
    } else {
        Err(AsmErrorKind::BadOperands(
            "the operands cannot be encoded by this instruction",
        ))
    }
}

/// Parses an unsigned decimal or `0x` hexadecimal literal.
pub(crate) fn parse_uint(text: &str) -> Result<u64, AsmErrorKind> {
    let bad = || AsmErrorKind::BadNumber(text.to_string());
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (text, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}

/// Narrows a number to a 32-bit immediate: any value in `i32::MIN..=u32::MAX`
/// (values above `i32::MAX` wrap, so `0xffffffff` is `-1`).
pub(crate) fn to_imm32(v: i128) -> Result<i32, AsmErrorKind> {
    if (i128::from(i32::MIN)..=i128::from(u32::MAX)).contains(&v) {
        Ok(v as u32 as i32)
    } else {
        Err(AsmErrorKind::OutOfRange {
            value: v,
            field: "imm",
        })
    }
}

/// Narrows a number to a 16-bit offset: any value in `i16::MIN..=i16::MAX`.
pub(crate) fn to_off16(v: i128) -> Result<i16, AsmErrorKind> {
    i16::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
        value: v,
        field: "off",
    })
}

/// Narrows a number to 64 bits: any value in `i64::MIN..=u64::MAX`.
pub(crate) fn to_imm64(v: i128) -> Result<u64, AsmErrorKind> {
    if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&v) {
        Ok(v as u64)
    } else {
        Err(AsmErrorKind::OutOfRange {
            value: v,
            field: "a 64-bit immediate",
        })
    }
}

/// Cuts a comment off a line: `//`, `;`, or `#` at the start or after whitespace.
pub(crate) fn strip_comment(line: &str) -> &str {
    let mut end = line.len();
    if let Some(i) = line.find("//") {
        end = end.min(i);
    }
    if let Some(i) = line.find(';') {
        end = end.min(i);
    }
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if i >= end {
            break;
        }
        if c == '#' && prev_space {
            end = i;
            break;
        }
        prev_space = c.is_whitespace();
    }
    line.get(..end).unwrap_or(line)
}
