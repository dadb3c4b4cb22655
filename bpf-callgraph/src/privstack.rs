//! Program types and private-stack eligibility (kernel: `bpf_enable_priv_stack`).
//!
//! Since Linux 6.13 a JIT that supports it (x86-64, later arm64) can run some
//! programs on a per-CPU private stack instead of the kernel stack. The
//! verifier decides per program whether that is allowed at all and then per
//! subprogram whether it is worth it:
//!
//! * the JIT must support private stacks;
//! * no subprogram of the program may contain a tail call;
//! * the program type must be one whose recursion is controlled: kprobe,
//!   tracepoint, perf_event and raw_tracepoint always; tracing (fentry, fexit,
//!   fmod_ret, tp_btf; not iterators), LSM and struct_ops only when the
//!   attachment asks for it (struct_ops' `priv_stack_requested`) or, for
//!   tracing, when the trampoline's recursion check applies;
//! * a subprogram uses it only if its rounded frame is at least
//!   [`BPF_PRIV_STACK_MIN_SIZE`] (64) bytes and it is not reachable from an
//!   asynchronous callback (those always run on the normal stack).

use crate::BPF_PRIV_STACK_MIN_SIZE;

/// Kind of a `BPF_PROG_TYPE_TRACING` program (its expected attach type).
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

/// The program types this crate distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`.
    SocketFilter,
    /// `BPF_PROG_TYPE_KPROBE`.
    Kprobe,
    /// `BPF_PROG_TYPE_SCHED_CLS` (tc classifier).
    SchedCls,
    /// `BPF_PROG_TYPE_SCHED_ACT` (tc action).
    SchedAct,
    /// `BPF_PROG_TYPE_TRACEPOINT`.
    Tracepoint,
    /// `BPF_PROG_TYPE_XDP`.
    Xdp,
    /// `BPF_PROG_TYPE_PERF_EVENT`.
    PerfEvent,
    /// `BPF_PROG_TYPE_CGROUP_SKB`.
    CgroupSkb,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
    RawTracepoint,
    /// `BPF_PROG_TYPE_TRACING` with its attach kind.
    Tracing(TracingKind),
    /// `BPF_PROG_TYPE_LSM`.
    Lsm,
    /// `BPF_PROG_TYPE_STRUCT_OPS`.
    StructOps,
    /// `BPF_PROG_TYPE_SYSCALL`.
    Syscall,
    /// A program run by our own userspace runtime on a memory buffer (no kernel counterpart).
    Userspace,
}

impl ProgType {
    /// The kernel's `enum bpf_prog_type` value, if the type has one.
    pub const fn kernel_id(self) -> Option<u32> {
        Some(match self {
            ProgType::SocketFilter => 1,
            ProgType::Kprobe => 2,
            ProgType::SchedCls => 3,
            ProgType::SchedAct => 4,
            ProgType::Tracepoint => 5,
            ProgType::Xdp => 6,
            ProgType::PerfEvent => 7,
            ProgType::CgroupSkb => 8,
            ProgType::RawTracepoint => 17,
            ProgType::Tracing(_) => 26,
            ProgType::StructOps => 27,
            ProgType::Lsm => 29,
            ProgType::Syscall => 31,
            ProgType::Userspace => return None,
        })
    }
}

/// What the private-stack decision needs to know about the program and the JIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrivStackConfig {
    /// The program type.
    pub prog_type: ProgType,
    /// The JIT supports private stacks (kernel: `bpf_jit_supports_private_stack`).
    pub jit_supports_private_stack: bool,
    /// The attachment asked for a private stack (struct_ops' `priv_stack_requested`).
    pub priv_stack_requested: bool,
}

impl Default for PrivStackConfig {
    fn default() -> Self {
        PrivStackConfig {
            prog_type: ProgType::SocketFilter,
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
        ProgType::Kprobe | ProgType::Tracepoint | ProgType::PerfEvent | ProgType::RawTracepoint => {
            true
        }
        // The trampoline's recursion check covers tracing programs except iterators.
        ProgType::Tracing(kind) => cfg.priv_stack_requested || kind != TracingKind::Iter,
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
