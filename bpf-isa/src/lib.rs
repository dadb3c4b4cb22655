//! # bpf-isa
//!
//! Every eBPF instruction of RFC 9669 and of the Linux kernel's extensions as a
//! typed value ([`Insn`]), with decoding and validation that report the
//! offending instruction index ([`Error`]), encoding, a disassembler in the
//! kernel/LLVM syntax and an assembler for that syntax and for the uBPF-style
//! syntax of the bpf_conformance suite.
//!
//! ```
//! use bpf_isa::{Insn, Program, Reg, Source, AluOp, Width};
//!
//! let prog = Program::from_insns(vec![
//!     Insn::Alu { width: Width::W64, op: AluOp::Mov, dst: Reg::R0, src: Source::Imm(42) },
//!     Insn::Exit,
//! ]);
//! let bytes = prog.to_bytes();
//! let back = Program::decode_validated(&bytes).unwrap();
//! assert_eq!(back, prog);
//! ```

#[cfg(feature = "arbitrary")]
pub mod arbitrary;
pub mod asm;
pub mod decode;
pub mod disasm;
pub mod encode;
pub mod error;
pub mod insn;
pub mod opcode;
pub mod prog_type;
pub mod program;
pub mod raw;

pub use asm::{assemble, assemble_ubpf, AsmError};
pub use decode::{decode_at, decode_slots};
pub use disasm::{fmt_insn, fmt_program, write_insn, DisasmOptions};
pub use encode::{encode, encode_into};
pub use error::{Error, ErrorKind};
pub use insn::*;
pub use prog_type::ProgType;
pub use program::{Flow, InsnIdx, Program};
pub use raw::RawInsn;

/// The examples of `README.md`, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
