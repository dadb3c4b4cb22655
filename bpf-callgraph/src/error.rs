//! Typed errors of the structural checks and of the stack-depth check.

use core::fmt;

use thiserror::Error;

use crate::SubprogId;

/// Why a program's subprogram structure is rejected.
///
/// Every variant names the offending instruction by slot index
/// ([`BuildError::index`]); the messages follow the Linux verifier's wording
/// where the kernel has one.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The program has no instructions.
    #[error("insn 0: empty program")]
    Empty,
    /// A pseudo call or `ld_imm64` function reference points outside the program
    /// (kernel: "call to invalid destination").
    #[error("insn {at}: call to invalid destination {target}")]
    InvalidCallTarget {
        /// Slot of the call or `ld_imm64`.
        at: usize,
        /// The computed target slot (may be negative).
        target: i64,
    },
    /// A pseudo call or function reference lands on the second slot of an `ld_imm64`.
    #[error("insn {at}: call into the middle of ld_imm64 at insn {target}")]
    CallIntoLdImm64 {
        /// Slot of the call or `ld_imm64`.
        at: usize,
        /// The target slot.
        target: usize,
    },
    /// More distinct subprograms than the configured limit (kernel: `BPF_MAX_SUBPROGS`, 256).
    #[error("insn {at}: too many subprograms (limit {limit})")]
    TooManySubprogs {
        /// Slot of the call or reference that adds the first subprogram over the limit.
        at: usize,
        /// The limit.
        limit: usize,
    },
    /// A jump leaves the subprogram it is in.
    #[error("jump out of range from insn {from} to {to}")]
    JumpOutOfRange {
        /// Slot of the jump.
        from: usize,
        /// Its target slot.
        to: i64,
    },
    /// The last instruction of a subprogram can fall through into the next one.
    #[error("insn {at}: last insn is not an exit or jmp (subprogram {subprog})")]
    LastInsnNotExit {
        /// Slot of the offending last instruction.
        at: usize,
        /// The subprogram it ends.
        subprog: SubprogId,
    },
    /// A cycle of calls (or callback references).
    #[error("insn {at}: recursive call: {cycle}")]
    Recursion {
        /// Slot of the call (or `ld_imm64`) that closes the cycle.
        at: usize,
        /// The cycle, first and last entry the same subprogram.
        cycle: Cycle,
    },
    /// A subprogram no call or reference from the entry reaches
    /// (the kernel rejects its first instruction as "unreachable insn").
    #[error("unreachable insn {at}: subprogram {name} is never called")]
    Unreachable {
        /// First slot of the subprogram.
        at: usize,
        /// The subprogram.
        subprog: SubprogId,
        /// Its display name.
        name: String,
    },
}

impl BuildError {
    /// Slot index of the offending instruction.
    pub fn index(&self) -> usize {
        match *self {
            BuildError::Empty => 0,
            BuildError::InvalidCallTarget { at, .. }
            | BuildError::CallIntoLdImm64 { at, .. }
            | BuildError::TooManySubprogs { at, .. }
            | BuildError::LastInsnNotExit { at, .. }
            | BuildError::Recursion { at, .. }
            | BuildError::Unreachable { at, .. } => at,
            BuildError::JumpOutOfRange { from, .. } => from,
        }
    }
}

/// A recursive call chain from the entry, spelled `main -> a -> b -> a`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// The subprograms in call order; the last one is also an earlier one.
    pub subprogs: Vec<SubprogId>,
    /// Their display names, parallel to `subprogs`.
    pub names: Vec<String>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.names.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

/// One frame of a call chain in a stack error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The subprogram.
    pub subprog: SubprogId,
    /// Its display name.
    pub name: String,
    /// Slot of the call (or callback reference) that entered this frame; `None` for a root.
    pub call_site: Option<usize>,
    /// The frame's size as the rule counts it (rounded; 0 for a frame on the private stack).
    pub size: u32,
}

/// A call chain from a root (the entry or an async callback) to the offending frame.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Chain(pub Vec<Frame>);

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, fr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            match fr.call_site {
                Some(at) => write!(f, "{}@{}({})", fr.name, at, fr.size)?,
                None => write!(f, "{}({})", fr.name, fr.size)?,
            }
        }
        Ok(())
    }
}

/// Why the stack-depth rules reject a program.
///
/// The first sentence of each message is the kernel's; the chain (root first,
/// `name@call_slot(frame_size)`) follows.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StackError {
    /// More than `MAX_CALL_FRAMES` (8) frames.
    #[error("insn {at}: the call stack of {frames} frames is too deep; chain: {chain}")]
    TooDeep {
        /// Slot of the call that opens the frame over the limit.
        at: usize,
        /// The frame number reached (8 or more).
        frames: u32,
        /// The chain including the frame over the limit.
        chain: Chain,
    },
    /// The frames of one chain add up to more than `MAX_BPF_STACK` (512) bytes.
    #[error(
        "insn {at}: combined stack size of {calls} calls is {depth}. Too large; chain: {chain}"
    )]
    CombinedTooLarge {
        /// First slot of the frame that crosses the limit.
        at: usize,
        /// Number of frames on the chain.
        calls: usize,
        /// Their combined size.
        depth: u32,
        /// The chain.
        chain: Chain,
    },
    /// A single frame on the private stack is larger than 512 bytes.
    #[error("insn {at}: stack size of subprog {subprog} is {size}. Too large")]
    FrameTooLarge {
        /// First slot of the subprogram.
        at: usize,
        /// Its index.
        subprog: u32,
        /// Its rounded size.
        size: u32,
    },
    /// A subprogram that tail calls is entered with 256 or more bytes of caller frames.
    #[error(
        "insn {at}: tail_calls are not allowed when call stack of previous frames is {depth} bytes. Too large; chain: {chain}"
    )]
    TailCallStackTooLarge {
        /// First slot of the tail-calling subprogram.
        at: usize,
        /// Combined size of the caller frames.
        depth: u32,
        /// The chain, the tail-calling subprogram last.
        chain: Chain,
    },
}

impl StackError {
    /// Slot index of the offending instruction.
    pub fn index(&self) -> usize {
        match *self {
            StackError::TooDeep { at, .. }
            | StackError::CombinedTooLarge { at, .. }
            | StackError::FrameTooLarge { at, .. }
            | StackError::TailCallStackTooLarge { at, .. } => at,
        }
    }
}
