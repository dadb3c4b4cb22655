//! Register state: the type of what a register holds and, for scalars and
//! for the variable part of pointer offsets, a [`Scalar`].

use core::fmt::{self, Write};

use crate::scalar::Scalar;

/// What a register holds (kernel `enum bpf_reg_type`, restricted to the
/// types this verifier models).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegType {
    /// Never written on this path (reading it is an error).
    NotInit,
    /// A number.
    Scalar,
    /// The program's context.
    Ctx,
    /// A pointer into a stack frame (`fp` plus offset).
    Stack,
    /// A map (from `ld_imm64` of a map).
    MapPtr,
    /// A pointer into a map value.
    MapValue,
    /// A map value pointer or NULL (from `bpf_map_lookup_elem`).
    MapValueOrNull,
    /// `data` of a packet plus an offset.
    Packet,
    /// `data_end` of a packet.
    PacketEnd,
    /// `data_meta` of a packet plus an offset.
    PacketMeta,
    /// Memory of a known size (ring-buffer records, the `mem` program type's input).
    Mem,
    /// [`RegType::Mem`] or NULL (from `bpf_ringbuf_reserve`).
    MemOrNull,
    /// A subprogram (from `ld_imm64` of a function), for callbacks.
    Func,
    /// A `struct bpf_sock` with only the `sock_common` fields readable
    /// (kernel `PTR_TO_SOCK_COMMON`).
    SockCommon,
    /// [`RegType::SockCommon`] or NULL (the `sk` field of `__sk_buff`).
    SockCommonOrNull,
}

impl RegType {
    /// Whether the type is a pointer (anything but not-init and scalar).
    pub const fn is_pointer(self) -> bool {
        !matches!(self, RegType::NotInit | RegType::Scalar)
    }

    /// Whether the pointer may be NULL.
    pub const fn maybe_null(self) -> bool {
        matches!(
            self,
            RegType::MapValueOrNull | RegType::MemOrNull | RegType::SockCommonOrNull
        )
    }

    /// The non-NULL form of a maybe-NULL type.
    pub const fn non_null(self) -> RegType {
        match self {
            RegType::MapValueOrNull => RegType::MapValue,
            RegType::MemOrNull => RegType::Mem,
            RegType::SockCommonOrNull => RegType::SockCommon,
            t => t,
        }
    }

    /// Whether this is a packet pointer (`data` or `data_meta` based).
    pub const fn is_pkt(self) -> bool {
        matches!(self, RegType::Packet | RegType::PacketMeta)
    }

    /// The kernel's name of the type in log messages (`reg_type_str`).
    pub const fn name(self) -> &'static str {
        match self {
            RegType::NotInit => "?",
            RegType::Scalar => "scalar",
            RegType::Ctx => "ctx",
            RegType::Stack => "fp",
            RegType::MapPtr => "map_ptr",
            RegType::MapValue => "map_value",
            RegType::MapValueOrNull => "map_value_or_null",
            RegType::Packet => "pkt",
            RegType::PacketEnd => "pkt_end",
            RegType::PacketMeta => "pkt_meta",
            RegType::Mem => "mem",
            RegType::MemOrNull => "mem_or_null",
            RegType::Func => "func",
            RegType::SockCommon => "sock_common",
            RegType::SockCommonOrNull => "sock_common_or_null",
        }
    }
}

/// One register's abstract value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegState {
    /// The type.
    pub ty: RegType,
    /// Fixed part of a pointer's offset.
    pub off: i32,
    /// A scalar's value, or a pointer's variable offset.
    pub var: Scalar,
    /// Links copies: maybe-NULL pointers checked together, packet pointers
    /// sharing a verified range, scalars refined together. 0 = none.
    pub id: u32,
    /// Reference held (ring-buffer records); 0 = none.
    pub ref_obj_id: u32,
    /// Index of the map ([`RegType::MapPtr`], map values).
    pub map: u32,
    /// Verified bytes past a packet pointer, or the size of [`RegType::Mem`].
    pub range: u32,
    /// Frame a stack pointer points into; the subprogram start slot of a [`RegType::Func`].
    pub frameno: u32,
    /// Whether [`RegType::Mem`] memory is a ring-buffer record.
    pub ringbuf: bool,
    /// For scalars: whether the exact value mattered to the safety of some
    /// path (kernel `precise`). Only explored states carry the mark; state
    /// comparison lets an imprecise old scalar match any scalar.
    pub precise: bool,
}

impl Default for RegState {
    fn default() -> Self {
        RegState::NOT_INIT
    }
}

impl RegState {
    /// A register never written.
    pub const NOT_INIT: RegState = RegState {
        ty: RegType::NotInit,
        off: 0,
        var: Scalar::UNKNOWN,
        id: 0,
        ref_obj_id: 0,
        map: 0,
        range: 0,
        frameno: 0,
        ringbuf: false,
        precise: false,
    };

    /// An unknown scalar.
    pub const fn unknown() -> RegState {
        RegState {
            ty: RegType::Scalar,
            ..RegState::NOT_INIT
        }
    }

    /// A scalar with the given value.
    pub const fn scalar(var: Scalar) -> RegState {
        RegState {
            ty: RegType::Scalar,
            var,
            ..RegState::NOT_INIT
        }
    }

    /// A known constant.
    pub const fn constant(v: u64) -> RegState {
        RegState::scalar(Scalar::constant(v))
    }

    /// A pointer of `ty` with offset 0 and no variable part.
    pub const fn pointer(ty: RegType) -> RegState {
        RegState {
            ty,
            var: Scalar::constant(0),
            ..RegState::NOT_INIT
        }
    }

    /// The frame pointer of frame `frameno`.
    pub const fn frame_pointer(frameno: u32) -> RegState {
        RegState {
            ty: RegType::Stack,
            var: Scalar::constant(0),
            frameno,
            ..RegState::NOT_INIT
        }
    }

    /// Whether the register is a scalar known to be exactly `v`.
    pub fn is_const(&self, v: u64) -> bool {
        self.ty == RegType::Scalar && self.var.const_value() == Some(v)
    }

    /// Whether this is a pointer (see [`RegType::is_pointer`]).
    pub fn is_pointer(&self) -> bool {
        self.ty.is_pointer()
    }
}

/// Names of the maps, for register printing.
pub trait MapNames {
    /// `(name, key_size, value_size)` of map `idx`.
    fn map_desc(&self, idx: u32) -> Option<(&str, u32, u32)>;
}

impl MapNames for () {
    fn map_desc(&self, _: u32) -> Option<(&str, u32, u32)> {
        None
    }
}

/// A constant as the kernel's log prints it: decimal within the signed
/// 16-bit range, hexadecimal (of the 64-bit pattern) outside it.
fn write_snum(out: &mut dyn Write, v: u64) -> fmt::Result {
    if (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&(v as i64)) {
        write!(out, "{}", v as i64)
    } else {
        write!(out, "{v:#x}")
    }
}

/// Formats a register the way the kernel's log does: `0`, `scalar()`,
/// `scalar(umax=255,var_off=(0x0; 0xff))`, `ctx()`, `fp-8`,
/// `map_value(map=m,ks=4,vs=8)`, `pkt(off=14,r=14)`.
pub fn fmt_reg(out: &mut dyn Write, r: &RegState, maps: &dyn MapNames) -> fmt::Result {
    match r.ty {
        RegType::NotInit => out.write_str("?"),
        RegType::Scalar => {
            if r.precise {
                out.write_char('P')?;
            }
            if let Some(v) = r.var.const_value() {
                if r.id == 0 {
                    return write_snum(out, v);
                }
            }
            out.write_str("scalar(")?;
            let mut first = true;
            if r.id != 0 {
                write!(out, "id={}", r.id)?;
                first = false;
            }
            if let Some(v) = r.var.const_value() {
                if !first {
                    out.write_char(',')?;
                }
                out.write_str("imm=")?;
                write_snum(out, v)?;
            } else {
                let mut s = String::new();
                r.var.fmt_bounds(&mut s)?;
                if !s.is_empty() {
                    if !first {
                        out.write_char(',')?;
                    }
                    out.write_str(&s)?;
                }
            }
            out.write_char(')')
        }
        RegType::Stack if r.var.const_value() == Some(0) && r.id == 0 => {
            write!(out, "fp{}", r.off)
        }
        t => {
            out.write_str(t.name())?;
            out.write_char('(')?;
            let mut sep = "";
            let mut put = |out: &mut dyn Write, s: fmt::Arguments<'_>| -> fmt::Result {
                out.write_str(sep)?;
                sep = ",";
                out.write_fmt(s)
            };
            if r.id != 0 {
                put(out, format_args!("id={}", r.id))?;
            }
            if r.ref_obj_id != 0 {
                put(out, format_args!("ref_obj_id={}", r.ref_obj_id))?;
            }
            if matches!(
                t,
                RegType::MapPtr | RegType::MapValue | RegType::MapValueOrNull
            ) {
                if let Some((name, ks, vs)) = maps.map_desc(r.map) {
                    put(out, format_args!("map={name},ks={ks},vs={vs}"))?;
                }
            }
            if r.off != 0 {
                put(out, format_args!("off={}", r.off))?;
            }
            if t.is_pkt() {
                put(out, format_args!("r={}", r.range))?;
            }
            if matches!(t, RegType::Mem | RegType::MemOrNull) {
                put(out, format_args!("sz={}", r.range))?;
            }
            if r.var.const_value() != Some(0) && t != RegType::Func {
                let mut s = String::new();
                r.var.fmt_bounds(&mut s)?;
                if !s.is_empty() {
                    put(out, format_args!("{s}"))?;
                }
            }
            out.write_char(')')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(r: &RegState) -> String {
        let mut s = String::new();
        fmt_reg(&mut s, r, &()).unwrap_or_default();
        s
    }

    #[test]
    fn kernel_spellings() {
        // Spellings as they appear in kernel verifier logs.
        assert_eq!(show(&RegState::pointer(RegType::Ctx)), "ctx()");
        assert_eq!(show(&RegState::frame_pointer(0)), "fp0");
        let mut fp = RegState::frame_pointer(0);
        fp.off = -8;
        assert_eq!(show(&fp), "fp-8");
        assert_eq!(show(&RegState::constant(u64::MAX)), "-1");
        assert_eq!(show(&RegState::unknown()), "scalar()");
        let mut p = RegState::pointer(RegType::Packet);
        p.off = 14;
        p.range = 14;
        assert_eq!(show(&p), "pkt(off=14,r=14)");
    }
}
