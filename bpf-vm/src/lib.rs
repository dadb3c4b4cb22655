#![doc = include_str!("../README.md")]
//!
//! The eBPF runtime: a reference interpreter with the Linux kernel's
//! semantics, checked execution (every memory access validated against the
//! regions the program may touch), maps, helpers and program contexts.
//!
//! ```
//! use bpf_isa::{AluOp, Insn, Program, Reg, Source, Width};
//! use bpf_vm::Interpreter;
//!
//! let prog = Program::from_insns(vec![
//!     Insn::Alu { width: Width::W64, op: AluOp::Mov, dst: Reg::R0, src: Source::Imm(7) },
//!     Insn::Alu { width: Width::W64, op: AluOp::Mul, dst: Reg::R0, src: Source::Reg(Reg::R2) },
//!     Insn::Exit,
//! ]);
//! let vm = Interpreter::new(&prog)?;
//! assert_eq!(vm.run_mem(&mut [0u8; 6])?, 42);
//! # Ok::<(), bpf_vm::VmError>(())
//! ```
//!
//! Semantics follow `kernel/bpf/core.c` and the verifier's rewrites: division
//! by zero yields 0 and modulo by zero leaves the destination (32-bit forms
//! zero-extend), `INT_MIN / -1` wraps, shift amounts are masked to the width,
//! 32-bit ALU results are zero-extended, `may_goto` has a per-frame budget of
//! [`BPF_MAX_LOOPS`], bpf-to-bpf calls get a [`STACK_SIZE`]-byte frame each
//! (at most [`MAX_CALL_FRAMES`] frames in one program's own call chain) with
//! r6–r9 restored on return, and a run makes at most [`MAX_TAIL_CALL_CNT`]
//! tail calls; a tail call replaces the program of the frame it is made from,
//! whose caller the target returns to.

pub mod context;
pub mod engine;
pub mod error;
pub mod helpers;
pub mod interp;
pub mod maps;
mod mem;
pub mod shared;

pub use context::{SkbMd, XdpMd};
pub use engine::{Engine, LoadBuilder, LoadedProgram};
pub use error::{HelperError, VmError};
pub use helpers::{HelperCtx, HelperFn, HelperRegistry, TraceSink};
pub use interp::{Interpreter, InterpreterBuilder, Tracer};
pub use maps::{Map, MapDef, MapError, MapType};

/// Bytes of stack per frame (`MAX_BPF_STACK`).
pub const STACK_SIZE: usize = 512;
/// Most frames one program's call chain may stack, its main frame included
/// (`MAX_CALL_FRAMES`; a tail call's target starts a chain of its own in the
/// frame it replaces).
pub const MAX_CALL_FRAMES: usize = 8;
/// Most tail calls per run (`MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALL_CNT: u32 = 33;
/// Per-frame `may_goto` budget and `bpf_loop` iteration limit (`BPF_MAX_LOOPS`).
pub const BPF_MAX_LOOPS: u64 = 8 * 1024 * 1024;
