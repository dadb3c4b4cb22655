//! Why a program was rejected.

use thiserror::Error;

/// The family of a rejection, for callers that triage (e.g. differential
/// tests separating memory-safety rejections from others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Reading a register that holds nothing (`R%d !read_ok`).
    UninitRegister,
    /// Writing `r10`.
    FramePointerWrite,
    /// Forbidden arithmetic on a pointer.
    PointerArithmetic,
    /// An out-of-bounds, misaligned or wrongly typed memory access.
    MemoryAccess,
    /// A pointer where a number is required, or a pointer leaked (unprivileged).
    PointerLeak,
    /// A helper call with bad arguments, an unknown helper, or a map/helper mismatch.
    HelperCall,
    /// A bad bpf-to-bpf call or return.
    Call,
    /// Division by zero constant, shift out of range, reserved fields.
    InvalidInsn,
    /// Unreachable code, jumps out of range, back-edges (unprivileged).
    ControlFlow,
    /// An infinite loop.
    InfiniteLoop,
    /// The processed-instruction or jump-sequence limit.
    TooComplex,
    /// A reference (ring-buffer record) not released, or released twice.
    Reference,
    /// The return value is not what the program type needs.
    ReturnValue,
    /// Something this verifier does not model (kfuncs, BTF ids, arenas…).
    Unsupported,
}

impl ErrorKind {
    /// Whether accepting a program rejected for this reason could break memory safety.
    pub const fn is_memory_safety(self) -> bool {
        matches!(
            self,
            ErrorKind::UninitRegister
                | ErrorKind::FramePointerWrite
                | ErrorKind::PointerArithmetic
                | ErrorKind::MemoryAccess
                | ErrorKind::HelperCall
                | ErrorKind::Call
                | ErrorKind::Reference
        )
    }
}

/// A rejection: the instruction (slot index) and the kernel-style message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{message} (insn {insn})")]
pub struct VerifierError {
    /// Slot index of the offending instruction.
    pub insn: usize,
    /// The family of the reason.
    pub kind: ErrorKind,
    /// The message as the kernel's log would print it (`R1 !read_ok`).
    pub message: String,
}

impl VerifierError {
    /// A new error.
    pub fn new(insn: usize, kind: ErrorKind, message: impl Into<String>) -> VerifierError {
        VerifierError {
            insn,
            kind,
            message: message.into(),
        }
    }
}
