//! The scalar domain: a [`Tnum`] plus unsigned and signed ranges in 64 and
//! 32 bits, kept consistent with each other the way the kernel's
//! `reg_bounds_sync` does (tnum → ranges, ranges ↔ ranges, ranges → tnum).
//!
//! A [`Scalar`] stands for every `u64` that its tnum contains and whose
//! unsigned, signed, low-32-bit unsigned and low-32-bit signed views all lie
//! in the respective ranges. An empty range means no value at all
//! ([`Scalar::is_empty`]): a branch that is never taken.

use core::fmt;

use crate::tnum::Tnum;

/// Abstract value of a scalar register (see the [module documentation](self)).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scalar {
    /// Known and unknown bits.
    pub var_off: Tnum,
    /// Smallest value as `u64`.
    pub umin: u64,
    /// Largest value as `u64`.
    pub umax: u64,
    /// Smallest value as `i64`.
    pub smin: i64,
    /// Largest value as `i64`.
    pub smax: i64,
    /// Smallest low half as `u32`.
    pub u32_min: u32,
    /// Largest low half as `u32`.
    pub u32_max: u32,
    /// Smallest low half as `i32`.
    pub s32_min: i32,
    /// Largest low half as `i32`.
    pub s32_max: i32,
}

impl Default for Scalar {
    fn default() -> Self {
        Scalar::UNKNOWN
    }
}

/// An operand or result range pair of one width, used by the arithmetic
/// transfer functions: unsigned `[umin, umax]`, signed `[smin, smax]`.
/// For 32-bit ranges the values are the 32-bit views widened to 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ranges {
    umin: u64,
    umax: u64,
    smin: i64,
    smax: i64,
}

/// 32- or 64-bit arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bits {
    B32,
    B64,
}

impl Bits {
    const fn umax(self) -> u64 {
        match self {
            Bits::B32 => u32::MAX as u64,
            Bits::B64 => u64::MAX,
        }
    }
    const fn smin(self) -> i64 {
        match self {
            Bits::B32 => i32::MIN as i64,
            Bits::B64 => i64::MIN,
        }
    }
    const fn smax(self) -> i64 {
        match self {
            Bits::B32 => i32::MAX as i64,
            Bits::B64 => i64::MAX,
        }
    }
    fn unknown(self) -> Ranges {
        Ranges {
            umin: 0,
            umax: self.umax(),
            smin: self.smin(),
            smax: self.smax(),
        }
    }
    fn fits_u(self, v: u128) -> bool {
        v <= self.umax() as u128
    }
    fn fits_s(self, v: i128) -> bool {
        v >= self.smin() as i128 && v <= self.smax() as i128
    }
}

/// A binary ALU operation on scalars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarOp {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Wrapping multiplication.
    Mul,
    /// Unsigned division (division by zero gives 0).
    Div,
    /// Signed division (division by zero gives 0).
    SDiv,
    /// Unsigned remainder (by zero leaves the dividend).
    Mod,
    /// Signed remainder (by zero leaves the dividend).
    SMod,
    /// Bitwise or.
    Or,
    /// Bitwise and.
    And,
    /// Bitwise exclusive or.
    Xor,
    /// Left shift (the amount must be below the width; checked by the caller).
    Lsh,
    /// Logical right shift.
    Rsh,
    /// Arithmetic right shift.
    Arsh,
}

impl Scalar {
    /// Any 64-bit value.
    pub const UNKNOWN: Scalar = Scalar {
        var_off: Tnum::UNKNOWN,
        umin: 0,
        umax: u64::MAX,
        smin: i64::MIN,
        smax: i64::MAX,
        u32_min: 0,
        u32_max: u32::MAX,
        s32_min: i32::MIN,
        s32_max: i32::MAX,
    };

    /// Exactly `v`.
    pub const fn constant(v: u64) -> Scalar {
        Scalar {
            var_off: Tnum::constant(v),
            umin: v,
            umax: v,
            smin: v as i64,
            smax: v as i64,
            u32_min: v as u32,
            u32_max: v as u32,
            s32_min: v as u32 as i32,
            s32_max: v as u32 as i32,
        }
    }

    /// Every value of the unsigned range `lo..=hi`.
    pub fn urange(lo: u64, hi: u64) -> Scalar {
        let mut s = Scalar::UNKNOWN;
        s.umin = lo;
        s.umax = hi;
        s.sync();
        s
    }

    /// Every value whose low 32 bits are anything and upper 32 bits zero.
    pub fn unknown_u32() -> Scalar {
        let mut s = Scalar::UNKNOWN;
        s.var_off = Tnum::new(0, u32::MAX as u64);
        s.sync();
        s
    }

    /// Whether exactly one value is represented.
    #[inline]
    pub const fn is_const(&self) -> bool {
        self.var_off.is_const()
    }

    /// The value, if exactly one.
    #[inline]
    pub const fn const_value(&self) -> Option<u64> {
        if self.var_off.is_const() {
            Some(self.var_off.value)
        } else {
            None
        }
    }

    /// Whether the low 32 bits are known.
    #[inline]
    pub const fn is_const32(&self) -> bool {
        self.var_off.subreg_is_const()
    }

    /// Whether every field is unconstrained.
    pub fn is_unknown(&self) -> bool {
        *self == Scalar::UNKNOWN
    }

    /// Whether no value satisfies all constraints (an infeasible path).
    pub fn is_empty(&self) -> bool {
        self.umin > self.umax
            || self.smin > self.smax
            || self.u32_min > self.u32_max
            || self.s32_min > self.s32_max
            || self.var_off.value > self.umax
            || self.var_off.umax() < self.umin
    }

    /// Whether the concrete value `x` is represented (for tests and oracles).
    pub fn contains(&self, x: u64) -> bool {
        self.var_off.contains(x)
            && self.umin <= x
            && x <= self.umax
            && self.smin <= x as i64
            && x as i64 <= self.smax
            && self.u32_min <= x as u32
            && x as u32 <= self.u32_max
            && self.s32_min <= x as u32 as i32
            && x as u32 as i32 <= self.s32_max
    }

    /// Whether every value of `other` is a value of `self`.
    pub fn includes(&self, other: &Scalar) -> bool {
        self.umin <= other.umin
            && other.umax <= self.umax
            && self.smin <= other.smin
            && other.smax <= self.smax
            && self.u32_min <= other.u32_min
            && other.u32_max <= self.u32_max
            && self.s32_min <= other.s32_min
            && other.s32_max <= self.s32_max
            && self.var_off.includes(other.var_off)
    }

    /// Restores consistency among the fields (kernel `reg_bounds_sync`):
    /// ranges from the tnum, ranges from each other, the tnum from ranges,
    /// and ranges once more from the refined tnum.
    pub fn sync(&mut self) {
        self.update_from_tnum();
        self.deduce();
        self.tnum_from_ranges();
        self.update_from_tnum();
        self.deduce();
    }

    /// Tightens the ranges with the tnum (kernel `__update_reg_bounds`).
    fn update_from_tnum(&mut self) {
        let t = self.var_off;
        self.smin = self.smin.max((t.value | (t.mask & (1u64 << 63))) as i64);
        self.smax = self.smax.min((t.value | (t.mask & !(1u64 << 63))) as i64);
        self.umin = self.umin.max(t.value);
        self.umax = self.umax.min(t.value | t.mask);
        let t32 = t.subreg();
        let (v, m) = (t32.value as u32, t32.mask as u32);
        self.s32_min = self.s32_min.max((v | (m & (1u32 << 31))) as i32);
        self.s32_max = self.s32_max.min((v | (m & !(1u32 << 31))) as i32);
        self.u32_min = self.u32_min.max(v);
        self.u32_max = self.u32_max.min(v | m);
    }

    /// Exchanges information between the four ranges (kernel `__reg_deduce_bounds`).
    fn deduce(&mut self) {
        // 32-bit ranges from the 64-bit ones when the upper halves agree.
        if self.umin >> 32 == self.umax >> 32 {
            self.u32_min = self.u32_min.max(self.umin as u32);
            self.u32_max = self.u32_max.min(self.umax as u32);
            if (self.umin as u32 as i32) <= (self.umax as u32 as i32) {
                self.s32_min = self.s32_min.max(self.umin as u32 as i32);
                self.s32_max = self.s32_max.min(self.umax as u32 as i32);
            }
        }
        if (self.smin as u64) >> 32 == (self.smax as u64) >> 32 {
            self.u32_min = self.u32_min.max(self.smin as u32);
            self.u32_max = self.u32_max.min(self.smax as u32);
            if (self.smin as u32 as i32) <= (self.smax as u32 as i32) {
                self.s32_min = self.s32_min.max(self.smin as u32 as i32);
                self.s32_max = self.s32_max.min(self.smax as u32 as i32);
            }
        }
        // 32-bit signed <-> unsigned when the range does not cross the sign boundary.
        if (self.u32_min as i32) <= (self.u32_max as i32) {
            self.s32_min = self.s32_min.max(self.u32_min as i32);
            self.s32_max = self.s32_max.min(self.u32_max as i32);
        }
        if (self.s32_min as u32) <= (self.s32_max as u32) {
            self.u32_min = self.u32_min.max(self.s32_min as u32);
            self.u32_max = self.u32_max.min(self.s32_max as u32);
        }
        // 64-bit signed <-> unsigned.
        if (self.umin as i64) <= (self.umax as i64) {
            self.smin = self.smin.max(self.umin as i64);
            self.smax = self.smax.min(self.umax as i64);
        }
        if (self.smin as u64) <= (self.smax as u64) {
            self.umin = self.umin.max(self.smin as u64);
            self.umax = self.umax.min(self.smax as u64);
        }
        // 64-bit ranges from the 32-bit ones when the upper halves are fixed.
        if self.umin >> 32 == self.umax >> 32 && self.u32_min <= self.u32_max {
            let hi = self.umin & !(u32::MAX as u64);
            self.umin = self.umin.max(hi | self.u32_min as u64);
            self.umax = self.umax.min(hi | self.u32_max as u64);
        }
        if (self.smin as u64) >> 32 == (self.smax as u64) >> 32 && self.u32_min <= self.u32_max {
            let hi = (self.smin as u64) & !(u32::MAX as u64);
            self.smin = self.smin.max((hi | self.u32_min as u64) as i64);
            self.smax = self.smax.min((hi | self.u32_max as u64) as i64);
        }
        // A non-negative 32-bit signed range in a 64-bit signed range that
        // fits in 32 bits fixes the upper half to zero.
        if self.smin >= i32::MIN as i64 && self.smax <= i32::MAX as i64 {
            self.smin = self.smin.max(self.s32_min as i64);
            self.smax = self.smax.min(self.s32_max as i64);
        }
        // Once more signed <-> unsigned after the cross-width steps.
        if (self.umin as i64) <= (self.umax as i64) {
            self.smin = self.smin.max(self.umin as i64);
            self.smax = self.smax.min(self.umax as i64);
        }
        if (self.smin as u64) <= (self.smax as u64) {
            self.umin = self.umin.max(self.smin as u64);
            self.umax = self.umax.min(self.smax as u64);
        }
    }

    /// Tightens the tnum with the unsigned ranges (kernel `__reg_bound_offset`).
    fn tnum_from_ranges(&mut self) {
        if self.umin > self.umax || self.u32_min > self.u32_max {
            return;
        }
        let t64 = self.var_off.intersect(Tnum::range(self.umin, self.umax));
        let t32 = t64
            .subreg()
            .intersect(Tnum::range(self.u32_min as u64, self.u32_max as u64));
        self.var_off = t64.with_subreg(t32);
    }

    fn ranges(&self, bits: Bits) -> Ranges {
        match bits {
            Bits::B64 => Ranges {
                umin: self.umin,
                umax: self.umax,
                smin: self.smin,
                smax: self.smax,
            },
            Bits::B32 => Ranges {
                umin: self.u32_min as u64,
                umax: self.u32_max as u64,
                smin: self.s32_min as i64,
                smax: self.s32_max as i64,
            },
        }
    }

    /// The low 32 bits as a scalar (zero-extended), as a 32-bit ALU
    /// operation or `w` move sees them.
    pub fn zext32(&self) -> Scalar {
        let mut s = Scalar::UNKNOWN;
        s.var_off = self.var_off.subreg();
        s.u32_min = self.u32_min;
        s.u32_max = self.u32_max;
        s.s32_min = self.s32_min;
        s.s32_max = self.s32_max;
        s.umin = self.u32_min as u64;
        s.umax = self.u32_max as u64;
        s.sync();
        s
    }

    /// Truncation to the low `size` bytes (1, 2, 4 or 8), zero-extended
    /// (kernel `coerce_reg_to_size`).
    pub fn truncate(&self, size: u32) -> Scalar {
        if size >= 8 {
            return *self;
        }
        let mask = (1u64 << (size * 8)) - 1;
        let mut s = Scalar::UNKNOWN;
        s.var_off = self.var_off.cast(size);
        if self.umin & !mask == self.umax & !mask {
            s.umin = self.umin & mask;
            s.umax = self.umax & mask;
        } else {
            s.umin = 0;
            s.umax = mask;
        }
        s.sync();
        s
    }

    /// Sign extension of the low `size` bytes (1, 2 or 4) to 64 bits
    /// (`movsx`, sign-extending loads).
    pub fn sign_extend(&self, size: u32) -> Scalar {
        if size >= 8 {
            return *self;
        }
        let bits = size * 8;
        let tc = self.var_off.cast(size);
        if tc.is_const() {
            return Scalar::constant(((tc.value << (64 - bits)) as i64 >> (64 - bits)) as u64);
        }
        let t = self.truncate(size);
        let half = 1u64 << (bits - 1);
        if t.umax < half {
            // Sign bit known clear: same as zero extension.
            return t;
        }
        let mut s = Scalar::UNKNOWN;
        s.smin = -(half as i64);
        s.smax = half as i64 - 1;
        // The sign bit and everything above it equal the source's sign bit.
        if tc.value & half != 0 {
            s.var_off = Tnum::new(tc.value | !(half | (half - 1)), tc.mask);
        } else if tc.mask & half == 0 {
            s.var_off = tc;
        } else {
            s.var_off = Tnum::new(tc.value, tc.mask | !(half - 1));
        }
        s.sync();
        s
    }

    /// Sign extension of the low `size` bytes (1 or 2) to 32 bits, zero-extended
    /// to 64 (32-bit `movsx`).
    pub fn sign_extend32(&self, size: u32) -> Scalar {
        let full = self.sign_extend(size);
        full.zext32()
    }

    /// The result of `self op other` in 64 bits (`w32 == false`) or in 32
    /// bits, zero-extended (`w32 == true`). Shift amounts must be known and
    /// below the width for the shifts; otherwise the result is unknown.
    pub fn alu(&self, op: ScalarOp, other: &Scalar, w32: bool) -> Scalar {
        if self.is_empty() || other.is_empty() {
            return Scalar::UNKNOWN;
        }
        if w32 {
            let a = self.zext32();
            let b = other.zext32();
            let r32 = alu_ranges(op, a.ranges(Bits::B32), b.ranges(Bits::B32), Bits::B32);
            let t = alu_tnum(op, a.var_off, b.var_off, true);
            let mut s = Scalar::UNKNOWN;
            s.var_off = t.subreg();
            s.u32_min = r32.umin as u32;
            s.u32_max = r32.umax as u32;
            s.s32_min = r32.smin as i32;
            s.s32_max = r32.smax as i32;
            s.umin = 0;
            s.umax = u32::MAX as u64;
            s.sync();
            return s;
        }
        let r64 = alu_ranges(
            op,
            self.ranges(Bits::B64),
            other.ranges(Bits::B64),
            Bits::B64,
        );
        // The low half of add/sub/mul/and/or/xor/lsh depends only on the low halves.
        let r32 = match op {
            ScalarOp::Add
            | ScalarOp::Sub
            | ScalarOp::Mul
            | ScalarOp::Or
            | ScalarOp::And
            | ScalarOp::Xor
            | ScalarOp::Lsh => alu_ranges(
                op,
                self.ranges(Bits::B32),
                other.ranges(Bits::B32),
                Bits::B32,
            ),
            _ => Bits::B32.unknown(),
        };
        let mut s = Scalar {
            var_off: alu_tnum(op, self.var_off, other.var_off, false),
            umin: r64.umin,
            umax: r64.umax,
            smin: r64.smin,
            smax: r64.smax,
            u32_min: r32.umin as u32,
            u32_max: r32.umax as u32,
            s32_min: r32.smin as i32,
            s32_max: r32.smax as i32,
        };
        s.sync();
        s
    }

    /// `-self` in 64 or 32 bits.
    pub fn neg(&self, w32: bool) -> Scalar {
        Scalar::constant(0).alu(ScalarOp::Sub, self, w32)
    }

    /// Byte swap (`bswap`/`be` on little-endian) of the low `bits` bits;
    /// `swap == false` only truncates (`le`).
    pub fn endian(&self, bits: u32, swap: bool) -> Scalar {
        let size = bits / 8;
        if !swap {
            return self.truncate(size);
        }
        if let Some(v) = self.const_value() {
            let r = match bits {
                16 => (v as u16).swap_bytes() as u64,
                32 => (v as u32).swap_bytes() as u64,
                _ => v.swap_bytes(),
            };
            return Scalar::constant(r);
        }
        // Swap the tnum byte by byte: exact for known/unknown bits.
        let swap_t = |x: u64| match bits {
            16 => (x as u16).swap_bytes() as u64,
            32 => (x as u32).swap_bytes() as u64,
            _ => x.swap_bytes(),
        };
        let t = self.var_off.cast(size);
        let mut s = Scalar::UNKNOWN;
        s.var_off = Tnum::new(swap_t(t.value), swap_t(t.mask));
        s.sync();
        s
    }

    /// Writes the bounds the way the kernel's log does, e.g.
    /// `smin=smin32=0,smax=umax=smax32=umax32=7,var_off=(0x0; 0x7)`, leaving
    /// out full-range bounds and naming equal bounds together.
    pub fn fmt_bounds(&self, f: &mut dyn fmt::Write) -> fmt::Result {
        // The kernel's layout: the eight bounds in this order, each left out
        // when it holds its type's full-range value; a bound names after it
        // the later bounds of the same kind (min or max) that hold the same
        // value (signed ones only when of the same sign), which are then not
        // printed again. Signed values print as decimal within i16, unsigned
        // ones within u16, hexadecimal otherwise.
        let b: [(&str, u64, bool); 8] = [
            ("smin", self.smin as u64, self.smin == i64::MIN),
            ("smax", self.smax as u64, self.smax == i64::MAX),
            ("umin", self.umin, self.umin == 0),
            ("umax", self.umax, self.umax == u64::MAX),
            (
                "smin32",
                self.s32_min as i64 as u64,
                self.s32_min == i32::MIN,
            ),
            (
                "smax32",
                self.s32_max as i64 as u64,
                self.s32_max == i32::MAX,
            ),
            ("umin32", u64::from(self.u32_min), self.u32_min == 0),
            ("umax32", u64::from(self.u32_max), self.u32_max == u32::MAX),
        ];
        let neg = |i: usize, v: u64| b[i].0.starts_with('s') && (v as i64) < 0;
        let mut done = [false; 8];
        let mut sep = "";
        for i in 0..b.len() {
            let (name, v, omit) = b[i];
            if omit || done[i] {
                continue;
            }
            write!(f, "{sep}{name}=")?;
            sep = ",";
            for j in (i + 2..b.len()).step_by(2) {
                let (n2, v2, omit2) = b[j];
                if !omit2 && !done[j] && v2 == v && neg(i, v) == neg(j, v2) {
                    write!(f, "{n2}=")?;
                    done[j] = true;
                }
            }
            if name.starts_with('s') {
                if (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&(v as i64)) {
                    write!(f, "{}", v as i64)?;
                } else {
                    write!(f, "{v:#x}")?;
                }
            } else if v <= u64::from(u16::MAX) {
                write!(f, "{v}")?;
            } else {
                write!(f, "{v:#x}")?;
            }
        }
        if !self.var_off.is_unknown() {
            write!(f, "{sep}var_off={}", self.var_off)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Scalar{{u=[{},{}] s=[{},{}] u32=[{},{}] s32=[{},{}] t={}}}",
            self.umin,
            self.umax,
            self.smin,
            self.smax,
            self.u32_min,
            self.u32_max,
            self.s32_min,
            self.s32_max,
            self.var_off
        )
    }
}

fn alu_tnum(op: ScalarOp, a: Tnum, b: Tnum, w32: bool) -> Tnum {
    let (a, b) = if w32 {
        (a.subreg(), b.subreg())
    } else {
        (a, b)
    };
    let width = if w32 { 32 } else { 64 };
    let shift = b.is_const().then_some(b.value).filter(|&s| s < width);
    match op {
        ScalarOp::Add => a.add(b),
        ScalarOp::Sub => a.sub(b),
        ScalarOp::Mul => a.mul(b),
        ScalarOp::And => a.and(b),
        ScalarOp::Or => a.or(b),
        ScalarOp::Xor => a.xor(b),
        ScalarOp::Lsh => shift.map_or(Tnum::UNKNOWN, |s| a.lshift(s as u32)),
        ScalarOp::Rsh => shift.map_or(Tnum::UNKNOWN, |s| a.rshift(s as u32)),
        ScalarOp::Arsh => shift.map_or(Tnum::UNKNOWN, |s| a.arshift(s as u32, width as u32)),
        ScalarOp::Div | ScalarOp::SDiv | ScalarOp::Mod | ScalarOp::SMod => {
            match (a.is_const(), b.is_const()) {
                (true, true) => Tnum::constant(concrete(op, a.value, b.value, w32)),
                _ => Tnum::UNKNOWN,
            }
        }
    }
}

/// [`concrete`] at one width: operands `$x`, `$y` of unsigned type `$u`
/// (signed counterpart `$i`), shift amount `$sh`.
macro_rules! concrete_at {
    ($op:expr, $x:expr, $y:expr, $sh:expr, $u:ty, $i:ty) => {{
        let (x, y): ($u, $u) = ($x, $y);
        match $op {
            ScalarOp::Add => x.wrapping_add(y),
            ScalarOp::Sub => x.wrapping_sub(y),
            ScalarOp::Mul => x.wrapping_mul(y),
            ScalarOp::Div => x.checked_div(y).unwrap_or(0),
            ScalarOp::SDiv => {
                if y == 0 {
                    0
                } else {
                    (x as $i).wrapping_div(y as $i) as $u
                }
            }
            ScalarOp::Mod => {
                if y == 0 {
                    x
                } else {
                    x % y
                }
            }
            ScalarOp::SMod => {
                if y == 0 {
                    x
                } else {
                    (x as $i).wrapping_rem(y as $i) as $u
                }
            }
            ScalarOp::Or => x | y,
            ScalarOp::And => x & y,
            ScalarOp::Xor => x ^ y,
            ScalarOp::Lsh => x.wrapping_shl($sh),
            ScalarOp::Rsh => x.wrapping_shr($sh),
            ScalarOp::Arsh => (x as $i).wrapping_shr($sh) as $u,
        }
    }};
}

/// The concrete semantics of `op` (64 bits, or 32 bits zero-extended), as
/// the runtime executes it (division by zero gives 0, remainder by zero
/// leaves the dividend, `MIN / -1` wraps).
pub fn concrete(op: ScalarOp, a: u64, b: u64, w32: bool) -> u64 {
    // Shift amounts are masked to the width by `wrapping_sh*`.
    let sh = b as u32;
    if w32 {
        u64::from(concrete_at!(op, a as u32, b as u32, sh, u32, i32))
    } else {
        concrete_at!(op, a, b, sh, u64, i64)
    }
}

/// Range transfer function of one width. Operands are assumed non-empty.
fn alu_ranges(op: ScalarOp, a: Ranges, b: Ranges, bits: Bits) -> Ranges {
    let unknown = bits.unknown();
    let mut r = unknown;
    let width: u64 = if bits == Bits::B32 { 32 } else { 64 };
    let b_const = (b.umin == b.umax).then_some(b.umin);
    match op {
        ScalarOp::Add => {
            let lo = a.umin as u128 + b.umin as u128;
            let hi = a.umax as u128 + b.umax as u128;
            if bits.fits_u(hi) {
                r.umin = lo as u64;
                r.umax = hi as u64;
            }
            let lo = a.smin as i128 + b.smin as i128;
            let hi = a.smax as i128 + b.smax as i128;
            if bits.fits_s(lo) && bits.fits_s(hi) {
                r.smin = lo as i64;
                r.smax = hi as i64;
            }
        }
        ScalarOp::Sub => {
            if a.umin >= b.umax {
                r.umin = a.umin - b.umax;
                r.umax = a.umax - b.umin;
            }
            let lo = a.smin as i128 - b.smax as i128;
            let hi = a.smax as i128 - b.smin as i128;
            if bits.fits_s(lo) && bits.fits_s(hi) {
                r.smin = lo as i64;
                r.smax = hi as i64;
            }
        }
        ScalarOp::Mul => {
            let hi = a.umax as u128 * b.umax as u128;
            if bits.fits_u(hi) {
                r.umin = (a.umin as u128 * b.umin as u128) as u64;
                r.umax = hi as u64;
            }
            let c = [
                a.smin as i128 * b.smin as i128,
                a.smin as i128 * b.smax as i128,
                a.smax as i128 * b.smin as i128,
                a.smax as i128 * b.smax as i128,
            ];
            let lo = c.iter().copied().min().unwrap_or(i128::MIN);
            let hi = c.iter().copied().max().unwrap_or(i128::MAX);
            if bits.fits_s(lo) && bits.fits_s(hi) {
                r.smin = lo as i64;
                r.smax = hi as i64;
            }
        }
        ScalarOp::And => {
            r.umax = a.umax.min(b.umax);
            if a.smin >= 0 || b.smin >= 0 {
                // The result is non-negative and at most the non-negative operand.
                r.smin = 0;
                r.smax = if a.smin >= 0 && b.smin >= 0 {
                    a.smax.min(b.smax)
                } else if a.smin >= 0 {
                    a.smax
                } else {
                    b.smax
                };
            }
        }
        ScalarOp::Or => {
            r.umin = a.umin.max(b.umin);
        }
        ScalarOp::Xor => {}
        ScalarOp::Lsh => {
            if let Some(s) = b_const.filter(|&s| s < width) {
                if a.umax == 0 || (a.umax.leading_zeros() as u64) >= s + (64 - width) {
                    r.umin = a.umin << s;
                    r.umax = a.umax << s;
                }
            }
        }
        ScalarOp::Rsh => {
            if let Some(s) = b_const.filter(|&s| s < width) {
                r.umin = a.umin >> s;
                r.umax = a.umax >> s;
            }
        }
        ScalarOp::Arsh => {
            if let Some(s) = b_const.filter(|&s| s < width) {
                r.smin = a.smin >> s;
                r.smax = a.smax >> s;
            }
        }
        ScalarOp::Div => {
            if let Some(c) = b_const {
                r.umin = a.umin.checked_div(c).unwrap_or(0);
                r.umax = a.umax.checked_div(c).unwrap_or(0);
            }
        }
        ScalarOp::Mod => {
            if let Some(c) = b_const {
                if c == 0 {
                    return a;
                }
                if a.umax < c {
                    return a;
                }
                r.umin = 0;
                r.umax = c - 1;
            }
        }
        ScalarOp::SDiv | ScalarOp::SMod => {
            if let (true, Some(c)) = (a.umin == a.umax, b_const) {
                let v = concrete(op, a.umin, c, bits == Bits::B32);
                let v = if bits == Bits::B32 {
                    v as u32 as u64
                } else {
                    v
                };
                let sv = if bits == Bits::B32 {
                    v as u32 as i32 as i64
                } else {
                    v as i64
                };
                return Ranges {
                    umin: v,
                    umax: v,
                    smin: sv,
                    smax: sv,
                };
            }
        }
    }
    r
}

/// A comparison for branch refinement.
pub use bpf_isa::JmpCond;

/// Whether `a cond b` holds for every pair of values (`Some(true)`), for none
/// (`Some(false)`), or is undecided (`None`); in 32 bits when `w32` (kernel
/// `is_scalar_branch_taken`).
pub fn branch_taken(a: &Scalar, b: &Scalar, cond: JmpCond, w32: bool) -> Option<bool> {
    let (ra, rb, ta, tb) = if w32 {
        (
            a.ranges(Bits::B32),
            b.ranges(Bits::B32),
            a.var_off.subreg(),
            b.var_off.subreg(),
        )
    } else {
        (
            a.ranges(Bits::B64),
            b.ranges(Bits::B64),
            a.var_off,
            b.var_off,
        )
    };
    // For 32 bits the signed range values are the 32-bit views widened.
    match cond {
        JmpCond::Eq => {
            if ta.is_const() && tb.is_const() {
                return Some(ta.value == tb.value);
            }
            if ra.umin > rb.umax || rb.umin > ra.umax || ra.smin > rb.smax || rb.smin > ra.smax {
                return Some(false);
            }
            if ta.disjoint(tb) {
                return Some(false);
            }
            None
        }
        JmpCond::Ne => branch_taken(a, b, JmpCond::Eq, w32).map(|t| !t),
        JmpCond::Set => {
            if ta.value & tb.value != 0 {
                return Some(true);
            }
            if ta.umax() & tb.umax() == 0 {
                return Some(false);
            }
            None
        }
        JmpCond::Gt => interval_cmp(ra.umin, ra.umax, rb.umin, rb.umax, true),
        JmpCond::Ge => interval_cmp(ra.umin, ra.umax, rb.umin, rb.umax, false),
        JmpCond::Lt => branch_taken(b, a, JmpCond::Gt, w32),
        JmpCond::Le => branch_taken(b, a, JmpCond::Ge, w32),
        JmpCond::Sgt => interval_cmp(ra.smin, ra.smax, rb.smin, rb.smax, true),
        JmpCond::Sge => interval_cmp(ra.smin, ra.smax, rb.smin, rb.smax, false),
        JmpCond::Slt => branch_taken(b, a, JmpCond::Sgt, w32),
        JmpCond::Sle => branch_taken(b, a, JmpCond::Sge, w32),
    }
}

/// Whether `a > b` (`strict`) or `a >= b` holds for every pair of values
/// of the intervals `[amin, amax]` and `[bmin, bmax]` (`Some(true)`), for
/// none (`Some(false)`), or is undecided (`None`).
fn interval_cmp<T: PartialOrd>(amin: T, amax: T, bmin: T, bmax: T, strict: bool) -> Option<bool> {
    let always = if strict { amin > bmax } else { amin >= bmax };
    let never = if strict { amax <= bmin } else { amax < bmin };
    if always {
        Some(true)
    } else if never {
        Some(false)
    } else {
        None
    }
}

/// Refines `a` and `b` with the knowledge that `a cond b` holds (`taken`) or
/// does not hold (`!taken`), in 32 or 64 bits (kernel `regs_refine_cond_op`
/// followed by `reg_bounds_sync`). Afterwards either may be
/// [`Scalar::is_empty`]: the outcome is impossible.
pub fn refine(a: &mut Scalar, b: &mut Scalar, cond: JmpCond, w32: bool, taken: bool) {
    let cond = if taken {
        cond
    } else {
        match cond.negated() {
            Some(c) => c,
            None => {
                // !(a & b): with b known, a's bits under b are zero.
                if let (Some(v), false) = (b.var_off.is_const().then_some(b.var_off.value), w32) {
                    a.var_off = a.var_off.and(Tnum::constant(!v));
                } else if w32 && b.var_off.subreg_is_const() {
                    let v = b.var_off.value as u32 as u64;
                    a.var_off = a.var_off.and(Tnum::constant(!v));
                }
                a.sync();
                b.sync();
                return;
            }
        }
    };
    match cond {
        JmpCond::Set => {
            // a & b != 0: with b a known power of two, that bit of a is one.
            let v = if w32 {
                b.var_off
                    .subreg_is_const()
                    .then_some(b.var_off.value as u32 as u64)
            } else {
                b.var_off.is_const().then_some(b.var_off.value)
            };
            if let Some(v) = v.filter(|v| v.is_power_of_two()) {
                a.var_off = a.var_off.or(Tnum::constant(v));
            }
        }
        JmpCond::Eq => {
            if w32 {
                let lo = a.u32_min.max(b.u32_min);
                let hi = a.u32_max.min(b.u32_max);
                let slo = a.s32_min.max(b.s32_min);
                let shi = a.s32_max.min(b.s32_max);
                let t = a.var_off.subreg().intersect(b.var_off.subreg());
                for r in [&mut *a, &mut *b] {
                    r.u32_min = lo;
                    r.u32_max = hi;
                    r.s32_min = slo;
                    r.s32_max = shi;
                    r.var_off = r.var_off.with_subreg(t);
                }
                if a.var_off.subreg().disjoint(b.var_off.subreg()) {
                    a.u32_min = 1;
                    a.u32_max = 0;
                }
            } else {
                let disjoint = a.var_off.disjoint(b.var_off);
                let m = Scalar {
                    var_off: a.var_off.intersect(b.var_off),
                    umin: a.umin.max(b.umin),
                    umax: a.umax.min(b.umax),
                    smin: a.smin.max(b.smin),
                    smax: a.smax.min(b.smax),
                    u32_min: a.u32_min.max(b.u32_min),
                    u32_max: a.u32_max.min(b.u32_max),
                    s32_min: a.s32_min.max(b.s32_min),
                    s32_max: a.s32_max.min(b.s32_max),
                };
                *a = m;
                *b = m;
                if disjoint {
                    a.umin = 1;
                    a.umax = 0;
                }
            }
        }
        JmpCond::Ne => {
            let bc = *b;
            let ac = *a;
            ne_const(a, &bc, w32);
            ne_const(b, &ac, w32);
        }
        JmpCond::Le | JmpCond::Lt | JmpCond::Ge | JmpCond::Gt => {
            // Normalise to x <= y or x < y.
            let (x, y, strict) = match cond {
                JmpCond::Le => (&mut *a, &mut *b, false),
                JmpCond::Lt => (&mut *a, &mut *b, true),
                JmpCond::Ge => (&mut *b, &mut *a, false),
                _ => (&mut *b, &mut *a, true),
            };
            let d = strict as u64;
            if w32 {
                let ymax = (y.u32_max as u64).checked_sub(d);
                let xmin = x.u32_min as u64 + d;
                match ymax {
                    Some(m) => x.u32_max = x.u32_max.min(m as u32),
                    None => {
                        x.u32_min = 1;
                        x.u32_max = 0;
                    }
                }
                if xmin > u32::MAX as u64 {
                    y.u32_min = 1;
                    y.u32_max = 0;
                } else {
                    y.u32_min = y.u32_min.max(xmin as u32);
                }
            } else {
                match y.umax.checked_sub(d) {
                    Some(m) => x.umax = x.umax.min(m),
                    None => {
                        x.umin = 1;
                        x.umax = 0;
                    }
                }
                match x.umin.checked_add(d) {
                    Some(m) => y.umin = y.umin.max(m),
                    None => {
                        y.umin = 1;
                        y.umax = 0;
                    }
                }
            }
        }
        JmpCond::Sle | JmpCond::Slt | JmpCond::Sge | JmpCond::Sgt => {
            let (x, y, strict) = match cond {
                JmpCond::Sle => (&mut *a, &mut *b, false),
                JmpCond::Slt => (&mut *a, &mut *b, true),
                JmpCond::Sge => (&mut *b, &mut *a, false),
                _ => (&mut *b, &mut *a, true),
            };
            let d = strict as i64;
            if w32 {
                let ymax = y.s32_max as i64 - d;
                let xmin = x.s32_min as i64 + d;
                if ymax < i32::MIN as i64 {
                    x.s32_min = 1;
                    x.s32_max = 0;
                } else {
                    x.s32_max = x.s32_max.min(ymax as i32);
                }
                if xmin > i32::MAX as i64 {
                    y.s32_min = 1;
                    y.s32_max = 0;
                } else {
                    y.s32_min = y.s32_min.max(xmin as i32);
                }
            } else {
                match y.smax.checked_sub(d) {
                    Some(m) => x.smax = x.smax.min(m),
                    None => {
                        x.smin = 1;
                        x.smax = 0;
                    }
                }
                match x.smin.checked_add(d) {
                    Some(m) => y.smin = y.smin.max(m),
                    None => {
                        y.smin = 1;
                        y.smax = 0;
                    }
                }
            }
        }
    }
    if !a.is_empty() {
        a.sync();
    }
    if !b.is_empty() {
        b.sync();
    }
}

/// `x != c` with `c` known: shave `c` off the ends of `x`'s ranges.
fn ne_const(x: &mut Scalar, other: &Scalar, w32: bool) {
    if w32 {
        if !other.var_off.subreg_is_const() {
            return;
        }
        let c = other.var_off.value as u32;
        if x.u32_min == c && x.u32_max == c {
            x.u32_min = 1;
            x.u32_max = 0;
            return;
        }
        if x.u32_min == c {
            x.u32_min += 1;
        } else if x.u32_max == c {
            x.u32_max -= 1;
        }
        let sc = c as i32;
        if x.s32_min == sc && x.s32_min < x.s32_max {
            x.s32_min += 1;
        } else if x.s32_max == sc && x.s32_min < x.s32_max {
            x.s32_max -= 1;
        }
    } else {
        let Some(c) = other.const_value() else {
            return;
        };
        if x.umin == c && x.umax == c {
            x.umin = 1;
            x.umax = 0;
            return;
        }
        if x.umin == c {
            x.umin += 1;
        } else if x.umax == c {
            x.umax -= 1;
        }
        let sc = c as i64;
        if x.smin == sc && x.smin < x.smax {
            x.smin += 1;
        } else if x.smax == sc && x.smin < x.smax {
            x.smax -= 1;
        }
    }
}

#[cfg(test)]
mod tests;
