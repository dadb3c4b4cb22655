//! Typed errors of decoding and validation.

use thiserror::Error;

/// Why an instruction could not be decoded or validated.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ErrorKind {
    /// The opcode byte names no instruction.
    #[error("unknown opcode {0:#04x}")]
    UnknownOpcode(u8),
    /// A register field names a register above r10.
    #[error("invalid register r{0}")]
    InvalidRegister(u8),
    /// A field the opcode does not use is not zero (or holds a value the opcode does not allow).
    #[error("opcode {code:#04x} uses reserved field {field}")]
    ReservedField {
        /// The opcode byte.
        code: u8,
        /// The field: `dst`, `src`, `off`, `imm`, or a field of the second `ld_imm64` slot.
        field: &'static str,
    },
    /// An `ld_imm64` whose second slot is missing.
    #[error("truncated ld_imm64: second slot missing")]
    TruncatedLdImm64,
    /// A jump or call whose target is outside the program or inside an `ld_imm64`.
    #[error("jump out of range: target slot {target}, program has {len} slots")]
    JumpOutOfRange {
        /// Target slot (may be negative).
        target: i64,
        /// Program length in slots.
        len: usize,
    },
    /// A jump or call whose target is the second slot of an `ld_imm64`.
    #[error("jump into the middle of ld_imm64 at slot {target}")]
    JumpIntoLdImm64 {
        /// Target slot.
        target: i64,
    },
    /// A byte buffer whose length is not a multiple of 8.
    #[error("program length {0} is not a multiple of 8 bytes")]
    BadLength(usize),
    /// An empty program.
    #[error("empty program")]
    Empty,
}

/// An error at one instruction: its slot index and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("insn {index}: {kind}")]
pub struct Error {
    /// Index of the offending instruction, in 8-byte slots.
    pub index: usize,
    /// The reason.
    pub kind: ErrorKind,
}

impl Error {
    /// An error at slot `index`.
    pub const fn new(index: usize, kind: ErrorKind) -> Error {
        Error { index, kind }
    }
}
