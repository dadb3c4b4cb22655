//! Typed execution and load errors.

use thiserror::Error;

/// Why a program could not be prepared or why its execution stopped.
///
/// Every variant raised while running names `insn`, the slot index (kernel
/// numbering, `ld_imm64` counts twice) of the instruction that failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum VmError {
    /// The program failed decoding or control-flow validation.
    #[error("invalid program: {0}")]
    Invalid(#[from] bpf_isa::Error),
    /// An `ld_imm64` names a map fd (or index) that was not supplied.
    #[error("insn {insn}: unknown map fd {fd}")]
    UnknownMap {
        /// Slot index.
        insn: usize,
        /// The fd / index in the instruction.
        fd: i32,
    },
    /// An `ld_imm64` map-value reference on a map that has no direct value address.
    #[error("insn {insn}: map fd {fd} has no direct value address (offset {off})")]
    BadMapValue {
        /// Slot index.
        insn: usize,
        /// Map fd.
        fd: i32,
        /// Offset requested.
        off: u32,
    },
    /// A call to a helper id that is not registered.
    #[error("insn {insn}: unknown helper {id}")]
    UnknownHelper {
        /// Slot index.
        insn: usize,
        /// Helper id (or the register value for `callx`).
        id: i64,
    },
    /// A `callx` whose register holds neither a helper id nor a function reference.
    #[error("insn {insn}: callx to invalid target {value:#x}")]
    BadCallTarget {
        /// Slot index.
        insn: usize,
        /// Register value.
        value: u64,
    },
    /// A bpf-to-bpf call (or `bpf_loop` callback) would exceed the kernel's frame limit.
    #[error("insn {insn}: call depth exceeds {max} frames")]
    CallDepthExceeded {
        /// Slot index.
        insn: usize,
        /// The limit ([`crate::MAX_CALL_FRAMES`]).
        max: usize,
    },
    /// The optional instruction budget ran out.
    #[error("insn {insn}: instruction budget of {limit} exceeded")]
    BudgetExceeded {
        /// Slot index.
        insn: usize,
        /// The configured limit.
        limit: u64,
    },
    /// A memory access outside every region the program may touch (checked mode),
    /// or a context access the context does not allow (all modes).
    #[error("insn {insn}: memory fault: {size}-byte {} at {addr:#x}", if *.write { "write" } else { "read" })]
    MemoryFault {
        /// Slot index.
        insn: usize,
        /// Address accessed.
        addr: u64,
        /// Access size in bytes.
        size: u32,
        /// Whether the access was a write.
        write: bool,
    },
    /// An atomic access to an address not aligned to its size (checked mode).
    #[error("insn {insn}: misaligned {size}-byte atomic access at {addr:#x}")]
    MisalignedAtomic {
        /// Slot index.
        insn: usize,
        /// Address accessed.
        addr: u64,
        /// Access size in bytes.
        size: u32,
    },
    /// Control reached the end of the program without `exit`.
    #[error("insn {insn}: execution fell off the end of the program")]
    FellOffEnd {
        /// Slot index of the end (the program's slot count).
        insn: usize,
    },
    /// An instruction the interpreter does not execute (kfunc calls, arena casts).
    #[error("insn {insn}: unsupported instruction: {what}")]
    Unsupported {
        /// Slot index.
        insn: usize,
        /// What is unsupported.
        what: &'static str,
    },
    /// The JIT could not compile the program.
    #[error("jit: {0}")]
    Jit(bpf_jit::JitError),
    /// The AArch64 engine's emulator failed (missing tools, a fault in
    /// the emulated code, a broken pipe, no shared arena).
    #[error("arm64 engine: {0}")]
    Emulator(String),
    /// A private-stack run wrote past its region: the guard words `side`
    /// (`"below"` or `"above"`) the region were overwritten.
    #[error("private stack overflow: guard {side} the region overwritten")]
    PrivateStackOverflow {
        /// Which guard.
        side: &'static str,
    },
    /// A helper reported an error that stops the program.
    #[error("insn {insn}: helper {id} failed: {message}")]
    Helper {
        /// Slot index.
        insn: usize,
        /// Helper id.
        id: i32,
        /// What went wrong.
        message: String,
    },
}

impl VmError {
    /// The slot index of the failing instruction, when there is one.
    pub fn insn(&self) -> Option<usize> {
        match self {
            VmError::Invalid(e) => Some(e.index),
            VmError::Jit(e) => e.index,
            VmError::PrivateStackOverflow { .. } | VmError::Emulator(_) => None,
            VmError::UnknownMap { insn, .. }
            | VmError::BadMapValue { insn, .. }
            | VmError::UnknownHelper { insn, .. }
            | VmError::BadCallTarget { insn, .. }
            | VmError::CallDepthExceeded { insn, .. }
            | VmError::BudgetExceeded { insn, .. }
            | VmError::MemoryFault { insn, .. }
            | VmError::MisalignedAtomic { insn, .. }
            | VmError::FellOffEnd { insn }
            | VmError::Unsupported { insn, .. }
            | VmError::Helper { insn, .. } => Some(*insn),
        }
    }
}

/// Errors a helper returns to stop the program; the interpreter adds the instruction index.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HelperError {
    /// The helper was handed a pointer to memory the program may not touch.
    #[error("memory fault: {size}-byte {} at {addr:#x}", if *.write { "write" } else { "read" })]
    MemoryFault {
        /// Address.
        addr: u64,
        /// Size in bytes.
        size: u64,
        /// Whether the helper wanted to write.
        write: bool,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}
