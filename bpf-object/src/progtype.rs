//! Program types, guessed from section names the way libbpf does.
//!
//! The type itself is [`bpf_isa::ProgType`] (re-exported here and at the
//! crate root); this module adds the section-name table and
//! [`prog_type_from_section`].

pub use bpf_isa::ProgType;

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

/// Guesses the program type from a section name, returning the type and
/// the attach target after the prefix (`kprobe/do_sys_open` →
/// `(Kprobe, Some("do_sys_open"))`). Unknown names give [`ProgType::Unknown`].
pub fn prog_type_from_section(section: &str) -> (ProgType, Option<&str>) {
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
            assert_eq!(prog_type_from_section(s), (t, a), "{s}");
        }
        assert_eq!(ProgType::Xdp.kernel_id(), Some(6));
        assert_eq!(ProgType::Tracing.kernel_id(), Some(26));
        assert_eq!(ProgType::Mem.kernel_id(), None);
    }
}
