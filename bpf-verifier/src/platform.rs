//! What the verifier is told about the program's environment: the program
//! type (which decides the context and the helpers), the maps, privilege,
//! and limits.

use crate::helpers::HelperTable;

/// Program types with a context description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgKind {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`: r1 = `struct __sk_buff *`, no direct packet access.
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (tc): `__sk_buff` with direct packet access.
    SchedCls,
    /// `BPF_PROG_TYPE_XDP`: r1 = `struct xdp_md *`.
    Xdp,
    /// `BPF_PROG_TYPE_KPROBE`: r1 = `struct pt_regs *` (x86-64, 168 bytes).
    Kprobe,
    /// `BPF_PROG_TYPE_TRACEPOINT`: r1 = the tracepoint record.
    Tracepoint,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`: r1 = up to 12 `u64` arguments.
    RawTracepoint,
    /// The userspace `mem` type: r1 = memory of `size` bytes, r2 = `size`.
    Mem {
        /// Size of the memory in bytes.
        size: u32,
    },
}

impl ProgKind {
    /// The kernel's `enum bpf_prog_type` value, `None` for [`ProgKind::Mem`].
    pub const fn kernel_id(self) -> Option<u32> {
        match self {
            ProgKind::SocketFilter => Some(1),
            ProgKind::Kprobe => Some(2),
            ProgKind::SchedCls => Some(3),
            ProgKind::Tracepoint => Some(5),
            ProgKind::Xdp => Some(6),
            ProgKind::RawTracepoint => Some(17),
            ProgKind::Mem { .. } => None,
        }
    }

    /// The kernel program type, `None` for [`ProgKind::Mem`].
    pub const fn prog_type(self) -> Option<bpf_isa::ProgType> {
        use bpf_isa::ProgType as T;
        match self {
            ProgKind::SocketFilter => Some(T::SocketFilter),
            ProgKind::Kprobe => Some(T::Kprobe),
            ProgKind::SchedCls => Some(T::SchedCls),
            ProgKind::Tracepoint => Some(T::Tracepoint),
            ProgKind::Xdp => Some(T::Xdp),
            ProgKind::RawTracepoint => Some(T::RawTracepoint),
            ProgKind::Mem { .. } => None,
        }
    }

    /// Whether Linux (6.18) gives this program type a prototype of helper
    /// `id` that carries `allow_fastcall`, making calls to it `bpf_fastcall`.
    /// Only `bpf_get_smp_processor_id` (8) has such a prototype,
    /// `bpf_get_smp_processor_id_proto`, which the tracing types
    /// (`bpf_tracing_func_proto`: kprobe, tracepoint, raw tracepoint) and
    /// tc, XDP and LWT (`net/core/filter.c`) hand out. Socket filters fall
    /// back to `bpf_base_func_proto`, whose `bpf_get_raw_smp_processor_id_proto`
    /// has no `allow_fastcall`. `false` for [`ProgKind::Mem`] (no kernel).
    pub const fn kernel_fastcall_helper(self, id: i32) -> bool {
        id == 8
            && matches!(
                self,
                ProgKind::Kprobe
                    | ProgKind::Tracepoint
                    | ProgKind::RawTracepoint
                    | ProgKind::SchedCls
                    | ProgKind::Xdp
            )
    }

    /// Whether packet pointers can be dereferenced (`may_access_direct_pkt_data`, read).
    pub const fn direct_packet_read(self) -> bool {
        matches!(self, ProgKind::SchedCls | ProgKind::Xdp)
    }

    /// Whether packet data may be written.
    pub const fn direct_packet_write(self) -> bool {
        matches!(self, ProgKind::SchedCls | ProgKind::Xdp)
    }

    /// Whether the legacy `ld_abs`/`ld_ind` loads are allowed.
    pub const fn ld_abs_allowed(self) -> bool {
        matches!(self, ProgKind::SocketFilter | ProgKind::SchedCls)
    }
}

/// A map the program may reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapInfo {
    /// Name (for the log).
    pub name: String,
    /// `enum bpf_map_type` value.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum entries.
    pub max_entries: u32,
    /// Map flags (`BPF_F_RDONLY_PROG` = `1 << 7` makes values read-only for programs).
    pub flags: u32,
    /// The descriptor `ld_imm64` with `BPF_PSEUDO_MAP_FD` uses for this map, if any.
    pub fd: Option<i32>,
}

/// Map types the verifier knows by number.
pub mod map_type {
    /// `BPF_MAP_TYPE_HASH`.
    pub const HASH: u32 = 1;
    /// `BPF_MAP_TYPE_ARRAY`.
    pub const ARRAY: u32 = 2;
    /// `BPF_MAP_TYPE_PROG_ARRAY`.
    pub const PROG_ARRAY: u32 = 3;
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    pub const PERF_EVENT_ARRAY: u32 = 4;
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    pub const PERCPU_HASH: u32 = 5;
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    pub const PERCPU_ARRAY: u32 = 6;
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
    pub const ARRAY_OF_MAPS: u32 = 12;
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`.
    pub const HASH_OF_MAPS: u32 = 13;
    /// `BPF_MAP_TYPE_RINGBUF`.
    pub const RINGBUF: u32 = 27;
}

/// `BPF_F_RDONLY_PROG`.
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// The kernel's limit on processed instructions (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub const BPF_COMPLEXITY_LIMIT_INSNS: u64 = 1_000_000;
/// The kernel's limit on pending branches (`BPF_COMPLEXITY_LIMIT_JMP_SEQ`).
pub const BPF_COMPLEXITY_LIMIT_JMP_SEQ: usize = 8192;
/// Most stack bytes per frame (`MAX_BPF_STACK`).
pub const MAX_BPF_STACK: i64 = 512;
/// Largest variable offset a pointer may carry (`BPF_MAX_VAR_OFF`).
pub const BPF_MAX_VAR_OFF: i64 = 1 << 29;
/// Largest size a helper memory argument may have (`BPF_MAX_VAR_SIZ`).
pub const BPF_MAX_VAR_SIZ: u64 = 1 << 29;
/// Largest packet offset (`MAX_PACKET_OFF`).
pub const MAX_PACKET_OFF: u64 = 0xffff;
/// Most frames on a call chain (`MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;

/// Everything [`crate::verify`] needs besides the instructions.
#[derive(Clone, Debug)]
pub struct Options {
    /// The program type.
    pub prog: ProgKind,
    /// The maps; `ld_imm64` map references index this (`BPF_PSEUDO_MAP_IDX`)
    /// or name a [`MapInfo::fd`] (`BPF_PSEUDO_MAP_FD`).
    pub maps: Vec<MapInfo>,
    /// Root's semantics (pointer leaks, uninitialised stack reads and
    /// bounded loops allowed). `false`: the unprivileged rules.
    pub privileged: bool,
    /// Log level: 0 none; 1 the statistics, and for a rejected program the
    /// trace of the failing path and the reason (as the kernel keeps it);
    /// 2 every processed instruction of every path.
    pub log_level: u32,
    /// The helpers and their prototypes.
    pub helpers: HelperTable,
    /// Processed-instruction limit.
    pub insn_limit: u64,
    /// The JIT that will run the program supports the kernel's per-CPU
    /// private stacks (kernel: `bpf_jit_supports_private_stack`, true for
    /// x86-64 and arm64 in 6.18). Then, for the program types of
    /// [`bpf_callgraph::prog_priv_stack_mode`] without tail calls, frames
    /// of at least 64 bytes do not count towards the 512-byte combined
    /// stack limit of a call chain (see [`bpf_callgraph::stack`]).
    pub jit_private_stack: bool,
}

impl Options {
    /// Privileged verification of a program of type `prog` without maps,
    /// with the default helper table and the kernel's limits.
    pub fn new(prog: ProgKind) -> Options {
        Options {
            prog,
            maps: Vec::new(),
            privileged: true,
            log_level: 0,
            helpers: HelperTable::kernel(),
            insn_limit: BPF_COMPLEXITY_LIMIT_INSNS,
            jit_private_stack: true,
        }
    }

    /// Adds maps (builder style).
    pub fn with_maps(mut self, maps: Vec<MapInfo>) -> Options {
        self.maps = maps;
        self
    }

    /// Sets the log level (builder style).
    pub fn with_log_level(mut self, level: u32) -> Options {
        self.log_level = level;
        self
    }
}
