//! Program contexts: what `r1` points to for XDP and socket-filter / tc
//! programs, as the program sees it (the uapi `struct xdp_md` /
//! `struct __sk_buff` offsets) backed by the runtime's own representation.
//!
//! Context loads and stores are intercepted by the interpreter and converted,
//! the way the kernel's verifier rewrites context accesses: a 4-byte load of
//! `xdp_md.data` yields the full 64-bit packet pointer.

/// The XDP metadata a program can read besides the packet pointers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMd {
    /// `ingress_ifindex` (offset 12).
    pub ingress_ifindex: u32,
    /// `rx_queue_index` (offset 16).
    pub rx_queue_index: u32,
    /// `egress_ifindex` (offset 20).
    pub egress_ifindex: u32,
}

/// The subset of `struct __sk_buff` this runtime provides to socket-filter and
/// tc programs. `len` and the packet pointers come from the packet; the
/// writable fields (`mark`, `priority`, `tc_index`, `cb`, `tc_classid`) are
/// written back after the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbMd {
    /// `pkt_type` (offset 4).
    pub pkt_type: u32,
    /// `mark` (offset 8, writable).
    pub mark: u32,
    /// `queue_mapping` (offset 12).
    pub queue_mapping: u32,
    /// `protocol` (offset 16, network byte order as in the kernel).
    pub protocol: u32,
    /// `vlan_present` (offset 20).
    pub vlan_present: u32,
    /// `vlan_tci` (offset 24).
    pub vlan_tci: u32,
    /// `vlan_proto` (offset 28).
    pub vlan_proto: u32,
    /// `priority` (offset 32, writable).
    pub priority: u32,
    /// `ingress_ifindex` (offset 36).
    pub ingress_ifindex: u32,
    /// `ifindex` (offset 40).
    pub ifindex: u32,
    /// `tc_index` (offset 44, writable).
    pub tc_index: u32,
    /// `cb[5]` (offsets 48..68, writable).
    pub cb: [u32; 5],
    /// `hash` (offset 68).
    pub hash: u32,
    /// `tc_classid` (offset 72, writable).
    pub tc_classid: u32,
}

/// Size of `struct xdp_md`.
pub const XDP_MD_SIZE: u64 = 24;
/// Size of `struct __sk_buff` (through `hwtstamp`).
pub const SKB_SIZE: u64 = 192;

const SKB_DATA: u64 = 76;
const SKB_DATA_END: u64 = 80;
const SKB_DATA_META: u64 = 140;

/// The context of one run.
pub(crate) enum CtxView {
    None,
    Xdp {
        data: u64,
        data_end: u64,
        md: XdpMd,
    },
    Skb {
        data: u64,
        data_end: u64,
        shadow: [u32; 48],
    },
}

impl SkbMd {
    pub(crate) fn to_shadow(self, len: u32) -> [u32; 48] {
        let mut s = [0u32; 48];
        s[0] = len;
        s[1] = self.pkt_type;
        s[2] = self.mark;
        s[3] = self.queue_mapping;
        s[4] = self.protocol;
        s[5] = self.vlan_present;
        s[6] = self.vlan_tci;
        s[7] = self.vlan_proto;
        s[8] = self.priority;
        s[9] = self.ingress_ifindex;
        s[10] = self.ifindex;
        s[11] = self.tc_index;
        s[12..17].copy_from_slice(&self.cb);
        s[17] = self.hash;
        s[18] = self.tc_classid;
        s
    }

    /// The whole `struct __sk_buff` (192 bytes as 32-bit words, index =
    /// offset / 4) as compiled code reads it: the shadow fields, plus
    /// `data`, `data_end` and `data_meta` holding 32-bit packet pointers
    /// (the JIT engines place the packet below 4 GiB). Fields this runtime
    /// does not model are zero.
    pub(crate) fn to_struct(self, data: u32, len: u32) -> [u32; 48] {
        let mut s = self.to_shadow(len);
        let end = data.wrapping_add(len);
        for (off, v) in [(SKB_DATA, data), (SKB_DATA_END, end), (SKB_DATA_META, data)] {
            if let Some(w) = s.get_mut((off / 4) as usize) {
                *w = v;
            }
        }
        s
    }

    pub(crate) fn write_back(&mut self, s: &[u32; 48]) {
        self.mark = s[2];
        self.priority = s[8];
        self.tc_index = s[11];
        self.cb.copy_from_slice(&s[12..17]);
        self.tc_classid = s[18];
    }
}

impl CtxView {
    /// A context load of `size` bytes at `off`; `None` if the access is not allowed.
    pub(crate) fn load(&self, off: u64, size: u64) -> Option<u64> {
        match self {
            CtxView::None => None,
            CtxView::Xdp { data, data_end, md } => {
                if size != 4 {
                    return None;
                }
                Some(match off {
                    0 | 8 => *data,
                    4 => *data_end,
                    12 => md.ingress_ifindex as u64,
                    16 => md.rx_queue_index as u64,
                    20 => md.egress_ifindex as u64,
                    _ => return None,
                })
            }
            CtxView::Skb {
                data,
                data_end,
                shadow,
            } => match off {
                SKB_DATA | SKB_DATA_META if size == 4 => Some(*data),
                SKB_DATA_END if size == 4 => Some(*data_end),
                _ => {
                    if !off.is_multiple_of(size) || off + size > 92 || size > 4 {
                        return None;
                    }
                    let w = *shadow.get((off / 4) as usize)?;
                    let shift = (off % 4) * 8;
                    let mask = if size == 4 {
                        u32::MAX
                    } else {
                        (1u32 << (size * 8)) - 1
                    };
                    Some(((w >> shift) & mask) as u64)
                }
            },
        }
    }

    /// A context store; `false` if the field is read-only or the access invalid.
    pub(crate) fn store(&mut self, off: u64, size: u64, val: u64) -> bool {
        let CtxView::Skb { shadow, .. } = self else {
            return false;
        };
        let writable = matches!(off, 8..=11 | 32..=35 | 44..=75) && !(68..72).contains(&off);
        if !writable || size > 4 || !off.is_multiple_of(size) {
            return false;
        }
        let Some(w) = shadow.get_mut((off / 4) as usize) else {
            return false;
        };
        let shift = (off % 4) * 8;
        let mask: u32 = if size == 4 {
            u32::MAX
        } else {
            ((1u32 << (size * 8)) - 1) << shift
        };
        *w = (*w & !mask) | (((val as u32) << shift) & mask);
        true
    }
}
