//! Private-stack eligibility (kernel: `bpf_enable_priv_stack`).
//!
//! Since Linux 6.13 a JIT that supports it (x86-64, later arm64) can run some
//! programs on a per-CPU private stack instead of the kernel stack. The
//! verifier decides per program whether that is allowed at all and then per
//! subprogram whether it is worth it:
//!
//! * the JIT must support private stacks;
//! * no subprogram of the program may contain a tail call;
//! * the program type ([`bpf_isa::ProgType`]) must be one whose recursion is
//!   controlled: kprobe, tracepoint, perf_event and raw_tracepoint (not the
//!   writable raw_tracepoint) always; tracing (fentry, fexit, fmod_ret,
//!   tp_btf; not iterators, see [`TracingKind`]), LSM and struct_ops only
//!   when the attachment asks for it (struct_ops' `priv_stack_requested`) or,
//!   for tracing, when the trampoline's recursion check applies;
//! * a subprogram uses it only if its rounded frame is at least
//!   [`BPF_PRIV_STACK_MIN_SIZE`] (64) bytes and it is not reachable from an
//!   asynchronous callback (those always run on the normal stack).

use bpf_isa::ProgType;

use crate::BPF_PRIV_STACK_MIN_SIZE;

/// Kind of a [`ProgType::Tracing`] program (its expected attach type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracingKind {
    /// `fentry`.
    Fentry,
    /// `fexit`.
    Fexit,
    /// `fmod_ret`.
    FmodRet,
    /// `tp_btf` (BTF-enabled raw tracepoint).
    TpBtf,
    /// `iter` (BPF iterator).
    Iter,
}

/// What the private-stack decision needs to know about the program and the JIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrivStackConfig {
    /// The program type.
    pub prog_type: ProgType,
    /// The attach kind of a [`ProgType::Tracing`] program; ignored for other
    /// types. `None` (not known) is treated like fentry/fexit: only
    /// iterators escape the trampoline's recursion check.
    pub tracing_kind: Option<TracingKind>,
    /// The JIT supports private stacks (kernel: `bpf_jit_supports_private_stack`).
    pub jit_supports_private_stack: bool,
    /// The attachment asked for a private stack (struct_ops' `priv_stack_requested`).
    pub priv_stack_requested: bool,
}

impl Default for PrivStackConfig {
    fn default() -> Self {
        PrivStackConfig {
            prog_type: ProgType::SocketFilter,
            tracing_kind: None,
            jit_supports_private_stack: false,
            priv_stack_requested: false,
        }
    }
}

/// Program-level private-stack mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrivStackMode {
    /// Every frame is on the normal stack.
    None,
    /// Frames of at least 64 bytes go on the private stack (kernel: `PRIV_STACK_ADAPTIVE`).
    Adaptive,
}

/// The program-level mode from the program type and JIT alone (kernel:
/// `bpf_enable_priv_stack`); tail calls, checked by the stack analysis,
/// turn it off as well.
pub fn prog_priv_stack_mode(cfg: &PrivStackConfig) -> PrivStackMode {
    if !cfg.jit_supports_private_stack {
        return PrivStackMode::None;
    }
    let eligible = match cfg.prog_type {
        // Not RawTracepointWritable: the kernel lists only these four.
        ProgType::Kprobe | ProgType::Tracepoint | ProgType::PerfEvent | ProgType::RawTracepoint => {
            true
        }
        // The trampoline's recursion check covers tracing programs except iterators.
        ProgType::Tracing => {
            cfg.priv_stack_requested || cfg.tracing_kind != Some(TracingKind::Iter)
        }
        // No trampoline recursion check for LSM; struct_ops only on request.
        ProgType::Lsm | ProgType::StructOps => cfg.priv_stack_requested,
        _ => false,
    };
    if eligible {
        PrivStackMode::Adaptive
    } else {
        PrivStackMode::None
    }
}

/// Whether a frame of `rounded_size` bytes is large enough for the private stack.
pub const fn frame_wants_priv_stack(rounded_size: u32) -> bool {
    rounded_size >= BPF_PRIV_STACK_MIN_SIZE
}

/// Why a JIT that keeps every frame on a private region (bpf-jit's
/// `JitOptions::private_stack`) cannot compile this program: the first
/// callback subprogram (target of an `ld_imm64` function reference), if any.
///
/// Such a subprogram is entered from a helper (`bpf_loop`, …) with the
/// native C ABI and five arguments, so nobody hands it the address of its
/// frame in the private region. Tail calls and bpf-to-bpf calls are fine
/// there (unlike the kernel's per-CPU private stack, which excludes tail
/// calls): the JIT passes the frame address along both.
pub fn jit_private_stack_blocker(cg: &crate::CallGraph) -> Option<crate::SubprogId> {
    cg.subprogs()
        .iter()
        .find(|(_, s)| s.is_callback)
        .map(|(id, _)| id)
}
