//! Typed errors of JIT compilation.

use thiserror::Error;

/// Why an instruction (or the program) could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum JitErrorKind {
    /// The instruction is valid eBPF but this JIT does not compile it yet
    /// (tail calls, `ld_abs`/`ld_ind`, kfunc calls, `callx`, `may_goto`,
    /// `addr_space_cast`, …).
    #[error("unsupported instruction: {0}")]
    Unsupported(&'static str),
    /// A helper call whose id the caller's [`HelperTable`](crate::HelperTable) does not know.
    #[error("unknown helper id {0}")]
    UnknownHelper(i32),
    /// An `ld_imm64` with a pseudo source (map fd, map value, BTF id, …)
    /// that the caller's resolver did not resolve.
    #[error("unresolved ld_imm64 pseudo source: {0}")]
    UnresolvedLdImm64(&'static str),
    /// A jump or call whose target is outside the program or inside an `ld_imm64`.
    #[error("branch target slot {0} is not an instruction start")]
    BadTarget(i64),
    /// A jump that leaves its subprogram, or a subprogram whose last
    /// instruction falls through into the next one.
    #[error("control flow leaves the subprogram")]
    CrossesSubprogram,
    /// An operand size the operation does not have on this target
    /// (e.g. a 1-byte atomic add).
    #[error("unsupported operand size {0} bytes for this operation")]
    BadSize(u32),
    /// The bytecode does not decode (from a compile that starts from
    /// bytes, such as `bpf_jit_x86::Baseline::compile`).
    #[error("{0}")]
    Decode(bpf_isa::ErrorKind),
    /// The program is empty.
    #[error("empty program")]
    Empty,
    /// The image outgrew what relative branches can reach.
    #[error("image too large")]
    ImageTooLarge,
    /// Branch relaxation did not reach a fixed point.
    #[error("layout did not converge")]
    NoConvergence,
    /// The program's subprogram structure is rejected by `bpf-callgraph`
    /// (call into nowhere, jump out of a subprogram, fall-through,
    /// recursion, unreachable subprogram, too many subprograms).
    #[error("{0}")]
    CallGraph(bpf_callgraph::BuildError),
    /// `mmap`/`mprotect` failed (the OS error number).
    #[error("executable memory: os error {0}")]
    Memory(i32),
    /// A private stack was requested for a program that cannot have one:
    /// it has a callback subprogram (an `ld_imm64` function reference),
    /// which a helper such as `bpf_loop` calls without the incoming-frame
    /// register, or its frames do not fit the private region's size type.
    #[error("private stack not possible: {0}")]
    PrivateStack(&'static str),
}

/// A JIT error: the instruction's slot index (as the kernel counts slots;
/// `None` for errors about the whole program) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}{kind}", match .index { Some(i) => format!("insn {i}: "), None => String::new() })]
pub struct JitError {
    /// Slot index of the offending instruction, if the error is about one.
    pub index: Option<usize>,
    /// The reason.
    pub kind: JitErrorKind,
}

impl JitError {
    /// An error at slot `index`.
    pub const fn at(index: usize, kind: JitErrorKind) -> JitError {
        JitError {
            index: Some(index),
            kind,
        }
    }

    /// An error about the whole program.
    pub const fn program(kind: JitErrorKind) -> JitError {
        JitError { index: None, kind }
    }
}
