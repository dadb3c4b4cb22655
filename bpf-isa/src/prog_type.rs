//! The kernel's program types (`enum bpf_prog_type`), shared by every layer
//! that needs to know what kind of program it is looking at.
//!
//! The numeric ids are those of `include/uapi/linux/bpf.h`. Two variants have
//! no kernel counterpart: [`ProgType::Mem`], this project's userspace type
//! for programs that run over a plain memory buffer (uBPF/rbpf style:
//! `r1` = pointer, `r2` = length), and [`ProgType::Unknown`], for a program
//! whose type could not be determined (for example from an unrecognised ELF
//! section name).
//!
//! ```
//! use bpf_isa::ProgType;
//!
//! assert_eq!(ProgType::Xdp.kernel_id(), Some(6));
//! assert_eq!(ProgType::Mem.kernel_id(), None);
//! ```

/// A program type: the kernel's `enum bpf_prog_type` (see
/// [`ProgType::kernel_id`]), plus the userspace [`ProgType::Mem`] and
/// [`ProgType::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER` (1).
    SocketFilter,
    /// `BPF_PROG_TYPE_KPROBE` (2): kprobes, uprobes, syscall probes, USDT.
    Kprobe,
    /// `BPF_PROG_TYPE_SCHED_CLS` (3): tc classifier.
    SchedCls,
    /// `BPF_PROG_TYPE_SCHED_ACT` (4): tc action.
    SchedAct,
    /// `BPF_PROG_TYPE_TRACEPOINT` (5).
    Tracepoint,
    /// `BPF_PROG_TYPE_XDP` (6).
    Xdp,
    /// `BPF_PROG_TYPE_PERF_EVENT` (7).
    PerfEvent,
    /// `BPF_PROG_TYPE_CGROUP_SKB` (8).
    CgroupSkb,
    /// `BPF_PROG_TYPE_CGROUP_SOCK` (9).
    CgroupSock,
    /// `BPF_PROG_TYPE_LWT_IN` (10).
    LwtIn,
    /// `BPF_PROG_TYPE_LWT_OUT` (11).
    LwtOut,
    /// `BPF_PROG_TYPE_LWT_XMIT` (12).
    LwtXmit,
    /// `BPF_PROG_TYPE_SOCK_OPS` (13).
    SockOps,
    /// `BPF_PROG_TYPE_SK_SKB` (14).
    SkSkb,
    /// `BPF_PROG_TYPE_CGROUP_DEVICE` (15).
    CgroupDevice,
    /// `BPF_PROG_TYPE_SK_MSG` (16).
    SkMsg,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT` (17).
    RawTracepoint,
    /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` (18).
    CgroupSockAddr,
    /// `BPF_PROG_TYPE_LWT_SEG6LOCAL` (19).
    LwtSeg6local,
    /// `BPF_PROG_TYPE_LIRC_MODE2` (20).
    LircMode2,
    /// `BPF_PROG_TYPE_SK_REUSEPORT` (21).
    SkReuseport,
    /// `BPF_PROG_TYPE_FLOW_DISSECTOR` (22).
    FlowDissector,
    /// `BPF_PROG_TYPE_CGROUP_SYSCTL` (23).
    CgroupSysctl,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE` (24).
    RawTracepointWritable,
    /// `BPF_PROG_TYPE_CGROUP_SOCKOPT` (25).
    CgroupSockopt,
    /// `BPF_PROG_TYPE_TRACING` (26): fentry, fexit, fmod_ret, tp_btf and
    /// iterators (the expected attach type tells them apart).
    Tracing,
    /// `BPF_PROG_TYPE_STRUCT_OPS` (27).
    StructOps,
    /// `BPF_PROG_TYPE_EXT` (28): `freplace` programs.
    Ext,
    /// `BPF_PROG_TYPE_LSM` (29).
    Lsm,
    /// `BPF_PROG_TYPE_SK_LOOKUP` (30).
    SkLookup,
    /// `BPF_PROG_TYPE_SYSCALL` (31).
    Syscall,
    /// `BPF_PROG_TYPE_NETFILTER` (32).
    Netfilter,
    /// Not a kernel type: a program run by this project's userspace runtime
    /// over a plain memory buffer (`r1` = pointer, `r2` = length).
    Mem,
    /// Not a kernel type: the type is not known.
    Unknown,
}

impl ProgType {
    /// The kernel's `enum bpf_prog_type` value; `None` for [`ProgType::Mem`]
    /// and [`ProgType::Unknown`].
    pub const fn kernel_id(self) -> Option<u32> {
        use ProgType::*;
        Some(match self {
            SocketFilter => 1,
            Kprobe => 2,
            SchedCls => 3,
            SchedAct => 4,
            Tracepoint => 5,
            Xdp => 6,
            PerfEvent => 7,
            CgroupSkb => 8,
            CgroupSock => 9,
            LwtIn => 10,
            LwtOut => 11,
            LwtXmit => 12,
            SockOps => 13,
            SkSkb => 14,
            CgroupDevice => 15,
            SkMsg => 16,
            RawTracepoint => 17,
            CgroupSockAddr => 18,
            LwtSeg6local => 19,
            LircMode2 => 20,
            SkReuseport => 21,
            FlowDissector => 22,
            CgroupSysctl => 23,
            RawTracepointWritable => 24,
            CgroupSockopt => 25,
            Tracing => 26,
            StructOps => 27,
            Ext => 28,
            Lsm => 29,
            SkLookup => 30,
            Syscall => 31,
            Netfilter => 32,
            Mem | Unknown => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ProgType;

    /// Ids from `enum bpf_prog_type` in include/uapi/linux/bpf.h.
    #[test]
    fn kernel_ids() {
        assert_eq!(ProgType::SocketFilter.kernel_id(), Some(1));
        assert_eq!(ProgType::Xdp.kernel_id(), Some(6));
        assert_eq!(ProgType::RawTracepoint.kernel_id(), Some(17));
        assert_eq!(ProgType::Tracing.kernel_id(), Some(26));
        assert_eq!(ProgType::Lsm.kernel_id(), Some(29));
        assert_eq!(ProgType::Netfilter.kernel_id(), Some(32));
        assert_eq!(ProgType::Mem.kernel_id(), None);
        assert_eq!(ProgType::Unknown.kernel_id(), None);
    }
}
