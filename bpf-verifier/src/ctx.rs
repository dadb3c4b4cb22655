//! Context descriptions per program type, as data: which byte ranges of
//! the context may be read or written with which sizes, and what a read
//! yields (a number or a packet pointer). Facts from the kernel's
//! `*_is_valid_access` functions.

use crate::platform::ProgKind;
use crate::reg::RegType;

/// How a field may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadRule {
    /// Not readable.
    Deny,
    /// Only with the field's full size.
    Exact,
    /// Any size up to the field's, aligned to the access size.
    Narrow,
}

/// One context field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxField {
    /// Field name (for the log and documentation).
    pub name: &'static str,
    /// Byte offset.
    pub off: u32,
    /// Size in bytes.
    pub size: u32,
    /// Read rule.
    pub read: ReadRule,
    /// Whether the field may be written (with its full size, or any aligned
    /// size for `cb`-style scratch fields when `write_narrow`).
    pub write: bool,
    /// Narrow writes allowed.
    pub write_narrow: bool,
    /// What a read yields.
    pub yields: RegType,
}

const fn f(name: &'static str, off: u32, size: u32, read: ReadRule) -> CtxField {
    CtxField {
        name,
        off,
        size,
        read,
        write: false,
        write_narrow: false,
        yields: RegType::Scalar,
    }
}

const fn w(mut x: CtxField) -> CtxField {
    x.write = true;
    x
}

const fn ptr(mut x: CtxField, t: RegType) -> CtxField {
    x.yields = t;
    x
}

use ReadRule::{Deny, Exact, Narrow};

/// `struct __sk_buff` as a socket filter sees it.
pub static SK_BUFF_SOCKET: &[CtxField] = &[
    f("len", 0, 4, Narrow),
    f("pkt_type", 4, 4, Narrow),
    f("mark", 8, 4, Narrow),
    f("queue_mapping", 12, 4, Narrow),
    f("protocol", 16, 4, Narrow),
    f("vlan_present", 20, 4, Narrow),
    f("vlan_tci", 24, 4, Narrow),
    f("vlan_proto", 28, 4, Narrow),
    f("priority", 32, 4, Narrow),
    f("ingress_ifindex", 36, 4, Narrow),
    f("ifindex", 40, 4, Narrow),
    f("tc_index", 44, 4, Narrow),
    CtxField {
        write: true,
        write_narrow: true,
        ..f("cb", 48, 20, Narrow)
    },
    f("hash", 68, 4, Narrow),
    f("tc_classid", 72, 4, Deny),
    f("data", 76, 4, Deny),
    f("data_end", 80, 4, Deny),
    f("napi_id", 84, 4, Narrow),
    f("family..local_port", 88, 52, Deny),
    f("data_meta", 140, 4, Deny),
    f("flow_keys", 144, 8, Deny),
    f("tstamp", 152, 8, Deny),
    f("wire_len", 160, 4, Deny),
    f("gso_segs", 164, 4, Narrow),
    ptr(f("sk", 168, 8, Exact), RegType::SockCommonOrNull),
    f("gso_size", 176, 4, Narrow),
    f("tstamp_type+pad", 180, 4, Deny),
    f("hwtstamp", 184, 8, Deny),
];

/// `struct __sk_buff` as a tc classifier sees it.
pub static SK_BUFF_TC: &[CtxField] = &[
    f("len", 0, 4, Narrow),
    f("pkt_type", 4, 4, Narrow),
    w(f("mark", 8, 4, Narrow)),
    w(f("queue_mapping", 12, 4, Narrow)),
    f("protocol", 16, 4, Narrow),
    f("vlan_present", 20, 4, Narrow),
    f("vlan_tci", 24, 4, Narrow),
    f("vlan_proto", 28, 4, Narrow),
    w(f("priority", 32, 4, Narrow)),
    f("ingress_ifindex", 36, 4, Narrow),
    f("ifindex", 40, 4, Narrow),
    w(f("tc_index", 44, 4, Narrow)),
    CtxField {
        write: true,
        write_narrow: true,
        ..f("cb", 48, 20, Narrow)
    },
    f("hash", 68, 4, Narrow),
    w(f("tc_classid", 72, 4, Narrow)),
    ptr(f("data", 76, 4, Exact), RegType::Packet),
    ptr(f("data_end", 80, 4, Exact), RegType::PacketEnd),
    f("napi_id", 84, 4, Narrow),
    f("family..local_port", 88, 52, Deny),
    ptr(f("data_meta", 140, 4, Exact), RegType::PacketMeta),
    f("flow_keys", 144, 8, Deny),
    w(f("tstamp", 152, 8, Exact)),
    f("wire_len", 160, 4, Narrow),
    f("gso_segs", 164, 4, Narrow),
    ptr(f("sk", 168, 8, Exact), RegType::SockCommonOrNull),
    f("gso_size", 176, 4, Narrow),
    f("tstamp_type+pad", 180, 4, Deny),
    f("hwtstamp", 184, 8, Exact),
];

/// `struct xdp_md` (not a devmap program: `egress_ifindex` is denied).
pub static XDP_MD: &[CtxField] = &[
    ptr(f("data", 0, 4, Exact), RegType::Packet),
    ptr(f("data_end", 4, 4, Exact), RegType::PacketEnd),
    ptr(f("data_meta", 8, 4, Exact), RegType::PacketMeta),
    f("ingress_ifindex", 12, 4, Exact),
    f("rx_queue_index", 16, 4, Exact),
    f("egress_ifindex", 20, 4, Deny),
];

/// A program type's context.
#[derive(Clone, Copy, Debug)]
pub enum CtxDesc {
    /// A structure described field by field.
    Fields {
        /// Total size.
        size: u32,
        /// The fields, in offset order, covering `0..size`.
        fields: &'static [CtxField],
    },
    /// Read-only, any size aligned to itself, within `lo..hi`.
    ReadOnly {
        /// First readable byte.
        lo: u32,
        /// One past the last readable byte.
        hi: u32,
    },
    /// No context (the `mem` type passes memory, not a context).
    None,
}

/// The context of `prog`.
pub fn ctx_desc(prog: ProgKind) -> CtxDesc {
    match prog {
        ProgKind::SocketFilter => CtxDesc::Fields {
            size: 192,
            fields: SK_BUFF_SOCKET,
        },
        ProgKind::SchedCls => CtxDesc::Fields {
            size: 192,
            fields: SK_BUFF_TC,
        },
        ProgKind::Xdp => CtxDesc::Fields {
            size: 24,
            fields: XDP_MD,
        },
        // sizeof(struct pt_regs) on x86-64.
        ProgKind::Kprobe => CtxDesc::ReadOnly { lo: 0, hi: 168 },
        // Past the common header pointer, up to PERF_MAX_TRACE_SIZE.
        ProgKind::Tracepoint => CtxDesc::ReadOnly { lo: 8, hi: 8192 },
        // MAX_BPF_FUNC_ARGS u64 arguments.
        ProgKind::RawTracepoint => CtxDesc::ReadOnly { lo: 0, hi: 96 },
        ProgKind::Mem { .. } => CtxDesc::None,
    }
}

/// Whether an access of `size` bytes at `off` is allowed; on success what a
/// read yields. `write` selects the write rules.
pub fn check_ctx_access(desc: &CtxDesc, off: i64, size: u32, write: bool) -> Option<RegType> {
    if off < 0 || size == 0 || off % size as i64 != 0 {
        return None;
    }
    let off = off as u32;
    match *desc {
        CtxDesc::None => None,
        CtxDesc::ReadOnly { lo, hi } => {
            (!write && off >= lo && off.checked_add(size)? <= hi).then_some(RegType::Scalar)
        }
        CtxDesc::Fields {
            size: total,
            fields,
        } => {
            if off.checked_add(size)? > total {
                return None;
            }
            let fld = fields
                .iter()
                .find(|x| x.off <= off && off < x.off + x.size)?;
            if off + size > fld.off + fld.size {
                return None;
            }
            if write {
                if !fld.write {
                    return None;
                }
                if !fld.write_narrow && (size != fld.size || off != fld.off) {
                    return None;
                }
                return Some(RegType::Scalar);
            }
            match fld.read {
                ReadRule::Deny => None,
                ReadRule::Exact => (size == fld.size && off == fld.off).then_some(fld.yields),
                ReadRule::Narrow => {
                    // Scratch areas (cb) take any aligned size; others up to their size.
                    if fld.write_narrow || size <= fld.size {
                        Some(RegType::Scalar)
                    } else {
                        None
                    }
                }
            }
        }
    }
}

/// `sizeof(struct bpf_sock)`.
pub const BPF_SOCK_SIZE: i64 = 80;

/// Whether a read of `size` bytes at `off` of a [`RegType::SockCommon`]
/// pointer is allowed: the kernel's `bpf_sock_common_is_valid_access`
/// (`type` through `priority` are not part of `sock_common`) on top of
/// `bpf_sock_is_valid_access` (`struct bpf_sock` of the UAPI).
pub fn sock_common_read_ok(off: i64, size: u32) -> bool {
    if !(0..BPF_SOCK_SIZE).contains(&off) || size == 0 || off % size as i64 != 0 {
        return false;
    }
    // `bpf_ctx_narrow_access_ok`: a power of two no wider than the field.
    let narrow = |field: u32| size <= field && size.is_power_of_two();
    match off {
        // type, protocol, mark, priority: struct sock only.
        8..=23 => false,
        // family, src_port, state, rx_queue_mapping: narrow at the field start.
        4 | 44 | 72 | 76 => narrow(4),
        // src_ip4, src_ip6[4], dst_ip4, dst_ip6[4]: narrow anywhere inside.
        24..=43 | 52..=71 => narrow(4),
        // dst_port: the 16-bit field, or 4 bytes with its padding.
        48 | 49 => size == 4 || narrow(2),
        // The padding after dst_port alone.
        50 | 51 => false,
        // bound_dev_if and anything else: the whole 4 bytes only.
        _ => size == 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_rules() {
        let d = ctx_desc(ProgKind::Xdp);
        assert_eq!(check_ctx_access(&d, 0, 4, false), Some(RegType::Packet));
        assert_eq!(check_ctx_access(&d, 4, 4, false), Some(RegType::PacketEnd));
        assert_eq!(check_ctx_access(&d, 0, 8, false), None);
        assert_eq!(check_ctx_access(&d, 12, 2, false), None);
        assert_eq!(check_ctx_access(&d, 12, 4, true), None);
        assert_eq!(check_ctx_access(&d, 20, 4, false), None);
    }

    #[test]
    fn skb_rules() {
        let s = ctx_desc(ProgKind::SocketFilter);
        assert_eq!(check_ctx_access(&s, 0, 4, false), Some(RegType::Scalar));
        assert_eq!(check_ctx_access(&s, 2, 2, false), Some(RegType::Scalar));
        assert_eq!(check_ctx_access(&s, 76, 4, false), None);
        assert_eq!(check_ctx_access(&s, 48, 8, true), Some(RegType::Scalar));
        assert_eq!(check_ctx_access(&s, 8, 4, true), None);
        let t = ctx_desc(ProgKind::SchedCls);
        assert_eq!(check_ctx_access(&t, 76, 4, false), Some(RegType::Packet));
        assert_eq!(check_ctx_access(&t, 8, 4, true), Some(RegType::Scalar));
    }

    #[test]
    fn sock_common_rules() {
        // Rules of bpf_sock_is_valid_access / bpf_sock_common_is_valid_access
        // in net/core/filter.c, offsets from struct bpf_sock in the UAPI.
        assert!(sock_common_read_ok(4, 4)); // family
        assert!(sock_common_read_ok(4, 2));
        assert!(!sock_common_read_ok(6, 2)); // inside family, not its start
        assert!(!sock_common_read_ok(8, 4)); // type
        assert!(!sock_common_read_ok(16, 4)); // mark
        assert!(sock_common_read_ok(0, 4)); // bound_dev_if
        assert!(!sock_common_read_ok(0, 2));
        assert!(sock_common_read_ok(26, 2)); // src_ip4 upper half
        assert!(sock_common_read_ok(48, 2)); // dst_port
        assert!(sock_common_read_ok(48, 4));
        assert!(!sock_common_read_ok(50, 2)); // padding
        assert!(sock_common_read_ok(76, 4)); // rx_queue_mapping
        assert!(!sock_common_read_ok(76, 8));
        assert!(!sock_common_read_ok(80, 4));
        assert!(!sock_common_read_ok(-4, 4));
    }
}
