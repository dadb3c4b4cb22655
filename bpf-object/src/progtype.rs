//! Program types, guessed from section names the way libbpf does.

/// The kind of program a section declares (kernel `enum bpf_prog_type`, plus
/// the uBPF-style [`ProgType::Mem`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgType {
    /// `socket`: `BPF_PROG_TYPE_SOCKET_FILTER` (1).
    SocketFilter,
    /// `kprobe/`, `kretprobe/`, `uprobe/`, `uretprobe/`, `ksyscall/`, `kretsyscall/`, `usdt`: `BPF_PROG_TYPE_KPROBE` (2).
    Kprobe,
    /// `tc`, `classifier`, `tcx/`, `netkit/`: `BPF_PROG_TYPE_SCHED_CLS` (3).
    SchedCls,
    /// `action`: `BPF_PROG_TYPE_SCHED_ACT` (4).
    SchedAct,
    /// `tracepoint/`, `tp/`: `BPF_PROG_TYPE_TRACEPOINT` (5).
    Tracepoint,
    /// `xdp`, `xdp.frags`, `xdp/devmap`, `xdp/cpumap`: `BPF_PROG_TYPE_XDP` (6).
    Xdp,
    /// `perf_event`: `BPF_PROG_TYPE_PERF_EVENT` (7).
    PerfEvent,
    /// `cgroup_skb/`, `cgroup/skb`: `BPF_PROG_TYPE_CGROUP_SKB` (8).
    CgroupSkb,
    /// `cgroup/sock*`, `cgroup/post_bind*`: `BPF_PROG_TYPE_CGROUP_SOCK` (9).
    CgroupSock,
    /// `lwt_in`: `BPF_PROG_TYPE_LWT_IN` (10).
    LwtIn,
    /// `lwt_out`: `BPF_PROG_TYPE_LWT_OUT` (11).
    LwtOut,
    /// `lwt_xmit`: `BPF_PROG_TYPE_LWT_XMIT` (12).
    LwtXmit,
    /// `sockops`: `BPF_PROG_TYPE_SOCK_OPS` (13).
    SockOps,
    /// `sk_skb`: `BPF_PROG_TYPE_SK_SKB` (14).
    SkSkb,
    /// `cgroup/dev`: `BPF_PROG_TYPE_CGROUP_DEVICE` (15).
    CgroupDevice,
    /// `sk_msg`: `BPF_PROG_TYPE_SK_MSG` (16).
    SkMsg,
    /// `raw_tracepoint/`, `raw_tp/`: `BPF_PROG_TYPE_RAW_TRACEPOINT` (17).
    RawTracepoint,
    /// `cgroup/bind*`, `cgroup/connect*`, `cgroup/sendmsg*`, ...: `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` (18).
    CgroupSockAddr,
    /// `lwt_seg6local`: `BPF_PROG_TYPE_LWT_SEG6LOCAL` (19).
    LwtSeg6local,
    /// `lirc_mode2`: `BPF_PROG_TYPE_LIRC_MODE2` (20).
    LircMode2,
    /// `sk_reuseport`: `BPF_PROG_TYPE_SK_REUSEPORT` (21).
    SkReuseport,
    /// `flow_dissector`: `BPF_PROG_TYPE_FLOW_DISSECTOR` (22).
    FlowDissector,
    /// `cgroup/sysctl`: `BPF_PROG_TYPE_CGROUP_SYSCTL` (23).
    CgroupSysctl,
    /// `raw_tracepoint.w/`, `raw_tp.w/`: `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE` (24).
    RawTracepointWritable,
    /// `cgroup/getsockopt`, `cgroup/setsockopt`: `BPF_PROG_TYPE_CGROUP_SOCKOPT` (25).
    CgroupSockopt,
    /// `fentry/`, `fexit/`, `fmod_ret/`, `tp_btf/`, `iter/` (and `.s` variants): `BPF_PROG_TYPE_TRACING` (26).
    Tracing,
    /// `struct_ops`: `BPF_PROG_TYPE_STRUCT_OPS` (27).
    StructOps,
    /// `freplace/`: `BPF_PROG_TYPE_EXT` (28).
    Ext,
    /// `lsm/`, `lsm.s/`: `BPF_PROG_TYPE_LSM` (29).
    Lsm,
    /// `sk_lookup`: `BPF_PROG_TYPE_SK_LOOKUP` (30).
    SkLookup,
    /// `syscall`: `BPF_PROG_TYPE_SYSCALL` (31).
    Syscall,
    /// `netfilter`: `BPF_PROG_TYPE_NETFILTER` (32).
    Netfilter,
    /// `mem`: a uBPF/rbpf-style program over plain memory (r1 = pointer,
    /// r2 = length). Not a kernel program type.
    Mem,
    /// A section name this table does not know.
    Unknown,
}

/// `(prefix, type)`: a section matches when it equals the prefix or continues
/// with `/` (prefixes ending in `/` need something after them). Longer
/// prefixes come before shorter ones that they extend.
const TABLE: &[(&str, ProgType)] = &[
    ("socket", ProgType::SocketFilter),
    ("sk_reuseport/migrate", ProgType::SkReuseport),
    ("sk_reuseport", ProgType::SkReuseport),
    ("kprobe.multi/", ProgType::Kprobe),
    ("kretprobe.multi/", ProgType::Kprobe),
    ("uprobe.multi/", ProgType::Kprobe),
    ("uretprobe.multi/", ProgType::Kprobe),
    ("kprobe/", ProgType::Kprobe),
    ("kretprobe/", ProgType::Kprobe),
    ("uprobe/", ProgType::Kprobe),
    ("uretprobe/", ProgType::Kprobe),
    ("uprobe.s/", ProgType::Kprobe),
    ("uretprobe.s/", ProgType::Kprobe),
    ("ksyscall/", ProgType::Kprobe),
    ("kretsyscall/", ProgType::Kprobe),
    ("usdt", ProgType::Kprobe),
    ("tc", ProgType::SchedCls),
    ("tcx/", ProgType::SchedCls),
    ("netkit/", ProgType::SchedCls),
    ("classifier", ProgType::SchedCls),
    ("action", ProgType::SchedAct),
    ("tracepoint/", ProgType::Tracepoint),
    ("tp/", ProgType::Tracepoint),
    ("raw_tracepoint.w/", ProgType::RawTracepointWritable),
    ("raw_tp.w/", ProgType::RawTracepointWritable),
    ("raw_tracepoint/", ProgType::RawTracepoint),
    ("raw_tp/", ProgType::RawTracepoint),
    ("tp_btf/", ProgType::Tracing),
    ("fentry.s/", ProgType::Tracing),
    ("fexit.s/", ProgType::Tracing),
    ("fmod_ret.s/", ProgType::Tracing),
    ("fentry/", ProgType::Tracing),
    ("fexit/", ProgType::Tracing),
    ("fmod_ret/", ProgType::Tracing),
    ("iter.s/", ProgType::Tracing),
    ("iter/", ProgType::Tracing),
    ("freplace/", ProgType::Ext),
    ("lsm.s/", ProgType::Lsm),
    ("lsm_cgroup/", ProgType::Lsm),
    ("lsm/", ProgType::Lsm),
    ("xdp.frags", ProgType::Xdp),
    ("xdp", ProgType::Xdp),
    ("perf_event", ProgType::PerfEvent),
    ("lwt_in", ProgType::LwtIn),
    ("lwt_out", ProgType::LwtOut),
    ("lwt_xmit", ProgType::LwtXmit),
    ("lwt_seg6local", ProgType::LwtSeg6local),
    ("sockops", ProgType::SockOps),
    ("sk_skb", ProgType::SkSkb),
    ("sk_msg", ProgType::SkMsg),
    ("lirc_mode2", ProgType::LircMode2),
    ("flow_dissector", ProgType::FlowDissector),
    ("cgroup_skb/", ProgType::CgroupSkb),
    ("cgroup/skb", ProgType::CgroupSkb),
    ("cgroup/sock_create", ProgType::CgroupSock),
    ("cgroup/sock_release", ProgType::CgroupSock),
    ("cgroup/sock", ProgType::CgroupSock),
    ("cgroup/post_bind4", ProgType::CgroupSock),
    ("cgroup/post_bind6", ProgType::CgroupSock),
    ("cgroup/bind4", ProgType::CgroupSockAddr),
    ("cgroup/bind6", ProgType::CgroupSockAddr),
    ("cgroup/connect4", ProgType::CgroupSockAddr),
    ("cgroup/connect6", ProgType::CgroupSockAddr),
    ("cgroup/connect_unix", ProgType::CgroupSockAddr),
    ("cgroup/sendmsg4", ProgType::CgroupSockAddr),
    ("cgroup/sendmsg6", ProgType::CgroupSockAddr),
    ("cgroup/sendmsg_unix", ProgType::CgroupSockAddr),
    ("cgroup/recvmsg4", ProgType::CgroupSockAddr),
    ("cgroup/recvmsg6", ProgType::CgroupSockAddr),
    ("cgroup/recvmsg_unix", ProgType::CgroupSockAddr),
    ("cgroup/getpeername4", ProgType::CgroupSockAddr),
    ("cgroup/getpeername6", ProgType::CgroupSockAddr),
    ("cgroup/getsockname4", ProgType::CgroupSockAddr),
    ("cgroup/getsockname6", ProgType::CgroupSockAddr),
    ("cgroup/sysctl", ProgType::CgroupSysctl),
    ("cgroup/getsockopt", ProgType::CgroupSockopt),
    ("cgroup/setsockopt", ProgType::CgroupSockopt),
    ("cgroup/dev", ProgType::CgroupDevice),
    ("struct_ops.s", ProgType::StructOps),
    ("struct_ops", ProgType::StructOps),
    ("sk_lookup", ProgType::SkLookup),
    ("syscall", ProgType::Syscall),
    ("netfilter", ProgType::Netfilter),
    ("mem", ProgType::Mem),
];

impl ProgType {
    /// Guesses the program type from a section name, returning the type and
    /// the attach target after the prefix (`kprobe/do_sys_open` →
    /// `(Kprobe, Some("do_sys_open"))`). Unknown names give [`ProgType::Unknown`].
    pub fn from_section(section: &str) -> (ProgType, Option<&str>) {
        for &(prefix, ty) in TABLE {
            if let Some(stem) = prefix.strip_suffix('/') {
                if let Some(rest) = section.strip_prefix(stem).and_then(|r| r.strip_prefix('/')) {
                    if !rest.is_empty() {
                        return (ty, Some(rest));
                    }
                }
            } else if section == prefix {
                return (ty, None);
            } else if let Some(rest) = section
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('/'))
            {
                return (ty, (!rest.is_empty()).then_some(rest));
            }
        }
        (ProgType::Unknown, None)
    }

    /// The kernel's `enum bpf_prog_type` value; `None` for [`ProgType::Mem`]
    /// and [`ProgType::Unknown`].
    pub fn kernel_id(self) -> Option<u32> {
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
    use super::*;

    #[test]
    fn guesses() {
        let cases: &[(&str, ProgType, Option<&str>)] = &[
            ("xdp", ProgType::Xdp, None),
            ("xdp.frags", ProgType::Xdp, None),
            ("xdp/devmap", ProgType::Xdp, Some("devmap")),
            ("socket", ProgType::SocketFilter, None),
            ("socket/1", ProgType::SocketFilter, Some("1")),
            ("tc", ProgType::SchedCls, None),
            ("classifier", ProgType::SchedCls, None),
            ("kprobe/do_sys_open", ProgType::Kprobe, Some("do_sys_open")),
            ("kretprobe/x", ProgType::Kprobe, Some("x")),
            (
                "tracepoint/syscalls/sys_enter_close",
                ProgType::Tracepoint,
                Some("syscalls/sys_enter_close"),
            ),
            (
                "raw_tracepoint/sched_switch",
                ProgType::RawTracepoint,
                Some("sched_switch"),
            ),
            ("raw_tp.w/x", ProgType::RawTracepointWritable, Some("x")),
            ("fentry/tcp_connect", ProgType::Tracing, Some("tcp_connect")),
            ("fexit.s/f", ProgType::Tracing, Some("f")),
            ("lsm/file_open", ProgType::Lsm, Some("file_open")),
            ("cgroup/connect4", ProgType::CgroupSockAddr, None),
            ("cgroup/sock_create", ProgType::CgroupSock, None),
            ("mem", ProgType::Mem, None),
            // needs a target after the slash
            ("kprobe/", ProgType::Unknown, None),
            ("kprobe", ProgType::Unknown, None),
            // prefix must end at a slash
            ("xdpfoo", ProgType::Unknown, None),
            ("tcx", ProgType::Unknown, None),
            (".text", ProgType::Unknown, None),
        ];
        for &(s, t, a) in cases {
            assert_eq!(ProgType::from_section(s), (t, a), "{s}");
        }
        assert_eq!(ProgType::Xdp.kernel_id(), Some(6));
        assert_eq!(ProgType::Tracing.kernel_id(), Some(26));
        assert_eq!(ProgType::Mem.kernel_id(), None);
    }
}
