//! Tristate numbers: 64 bits each known 0, known 1 or unknown.
//!
//! A [`Tnum`] `{ value, mask }` stands for every `x` with
//! `x & !mask == value`: bits set in `mask` are unknown, the others equal the
//! corresponding bit of `value` (`value & mask == 0` always holds). The
//! operations follow the semantics of the Linux kernel's `kernel/bpf/tnum.c`:
//! each result contains the concrete result of every pair of concrete
//! operands the inputs contain.

use core::fmt;

/// A tristate number (see the [module documentation](self)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tnum {
    /// Known bits (only where `mask` is 0).
    pub value: u64,
    /// Unknown bits.
    pub mask: u64,
}

impl fmt::Debug for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#x}; {:#x})", self.value, self.mask)
    }
}

impl fmt::Display for Tnum {
    /// The kernel's `tnum_strn` spelling: `(0x0; 0xff)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#x}; {:#x})", self.value, self.mask)
    }
}

impl Tnum {
    /// Every 64-bit value.
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    /// Builds `{value, mask}`, clearing the `value` bits under `mask`.
    #[inline]
    pub const fn new(value: u64, mask: u64) -> Tnum {
        Tnum {
            value: value & !mask,
            mask,
        }
    }

    /// Exactly `v`.
    #[inline]
    pub const fn constant(v: u64) -> Tnum {
        Tnum { value: v, mask: 0 }
    }

    /// The smallest tnum containing every value of `min..=max`.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum::new(min & !delta, delta)
    }

    /// Whether exactly one value is represented.
    #[inline]
    pub const fn is_const(self) -> bool {
        self.mask == 0
    }

    /// Whether every value is represented.
    #[inline]
    pub const fn is_unknown(self) -> bool {
        self.mask == u64::MAX
    }

    /// Whether `x` is one of the represented values.
    #[inline]
    pub const fn contains(self, x: u64) -> bool {
        x & !self.mask == self.value
    }

    /// Whether every value of `b` is a value of `self` (kernel `tnum_in(self, b)`).
    #[inline]
    pub const fn includes(self, b: Tnum) -> bool {
        if b.mask & !self.mask != 0 {
            return false;
        }
        b.value & !self.mask == self.value
    }

    /// Smallest represented value (as unsigned).
    #[inline]
    pub const fn umin(self) -> u64 {
        self.value
    }

    /// Largest represented value (as unsigned).
    #[inline]
    pub const fn umax(self) -> u64 {
        self.value | self.mask
    }

    /// Left shift by a known amount (`shift < 64`).
    #[inline]
    pub const fn lshift(self, shift: u32) -> Tnum {
        let s = shift & 63;
        Tnum::new(self.value << s, self.mask << s)
    }

    /// Logical right shift by a known amount (`shift < 64`).
    #[inline]
    pub const fn rshift(self, shift: u32) -> Tnum {
        let s = shift & 63;
        Tnum::new(self.value >> s, self.mask >> s)
    }

    /// Arithmetic right shift by a known amount, in `bits` (32 or 64) bits.
    /// For 32 bits the input's upper half is ignored and the result is the
    /// zero-extended 32-bit result.
    pub const fn arshift(self, shift: u32, bits: u32) -> Tnum {
        if bits == 32 {
            let s = shift & 31;
            let v = ((self.value as u32 as i32) >> s) as u32 as u64;
            let m = ((self.mask as u32 as i32) >> s) as u32 as u64;
            Tnum::new(v, m)
        } else {
            let s = shift & 63;
            Tnum::new(
                ((self.value as i64) >> s) as u64,
                ((self.mask as i64) >> s) as u64,
            )
        }
    }

    /// Sum (wrapping).
    pub const fn add(self, b: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(b.mask);
        let sv = self.value.wrapping_add(b.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | b.mask;
        Tnum::new(sv, mu)
    }

    /// Difference (wrapping).
    pub const fn sub(self, b: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(b.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(b.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | b.mask;
        Tnum::new(dv, mu)
    }

    /// Two's complement negation.
    pub const fn neg(self) -> Tnum {
        Tnum::constant(0).sub(self)
    }

    /// Bitwise and.
    pub const fn and(self, b: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = b.value | b.mask;
        let v = self.value & b.value;
        Tnum::new(v, alpha & beta & !v)
    }

    /// Bitwise or.
    pub const fn or(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask | b.mask;
        Tnum::new(v, mu & !v)
    }

    /// Bitwise exclusive or.
    pub const fn xor(self, b: Tnum) -> Tnum {
        let v = self.value ^ b.value;
        let mu = self.mask | b.mask;
        Tnum::new(v & !mu, mu)
    }

    /// Product (wrapping): shift-and-add over the bits of `self`, adding
    /// `b`'s possible bits as uncertainty wherever a bit of `self` is unknown.
    pub const fn mul(self, b: Tnum) -> Tnum {
        let known = self.value.wrapping_mul(b.value);
        let mut acc = Tnum::constant(0);
        let mut a = self;
        let mut bb = b;
        let mut i = 0;
        while i < 64 && (a.value != 0 || a.mask != 0) {
            if a.value & 1 != 0 {
                acc = acc.add(Tnum::new(0, bb.mask));
            } else if a.mask & 1 != 0 {
                acc = acc.add(Tnum::new(0, bb.value | bb.mask));
            }
            a = a.rshift(1);
            bb = bb.lshift(1);
            i += 1;
        }
        Tnum::constant(known).add(acc)
    }

    /// The values both represent (meaningful only when they overlap).
    pub const fn intersect(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask & b.mask;
        Tnum::new(v, mu)
    }

    /// The smallest tnum containing both (join).
    pub const fn union(self, b: Tnum) -> Tnum {
        let mu = self.mask | b.mask | (self.value ^ b.value);
        Tnum::new(self.value, mu)
    }

    /// Whether the two tnums have no value in common.
    #[inline]
    pub const fn disjoint(self, b: Tnum) -> bool {
        (self.value ^ b.value) & !(self.mask | b.mask) != 0
    }

    /// Truncation to the low `size` bytes (1, 2, 4 or 8), zero-extended.
    pub const fn cast(self, size: u32) -> Tnum {
        if size >= 8 {
            return self;
        }
        let keep = (1u64 << (size * 8)) - 1;
        Tnum::new(self.value & keep, self.mask & keep)
    }

    /// Whether every represented value is a multiple of `size` (a power of two).
    pub const fn is_aligned(self, size: u64) -> bool {
        if size == 0 {
            return true;
        }
        (self.value | self.mask) & (size - 1) == 0
    }

    /// The low 32 bits, zero-extended.
    #[inline]
    pub const fn subreg(self) -> Tnum {
        self.cast(4)
    }

    /// The high 32 bits kept, the low 32 bits known zero.
    #[inline]
    pub const fn clear_subreg(self) -> Tnum {
        self.rshift(32).lshift(32)
    }

    /// The high 32 bits of `self` with the low 32 bits of `sub`.
    #[inline]
    pub const fn with_subreg(self, sub: Tnum) -> Tnum {
        self.clear_subreg().or(sub.subreg())
    }

    /// The high 32 bits of `self` with the low 32 bits equal to `v`.
    #[inline]
    pub const fn const_subreg(self, v: u32) -> Tnum {
        self.with_subreg(Tnum::constant(v as u64))
    }

    /// Whether the low 32 bits are known.
    #[inline]
    pub const fn subreg_is_const(self) -> bool {
        self.mask as u32 == 0
    }

    /// The `bits`-bit value as a bit pattern of `0`, `1` and `x`, most
    /// significant bit first (kernel `tnum_sbin` style, for logs and tests).
    pub fn to_bin(self, bits: u32) -> String {
        let mut s = String::with_capacity(bits as usize);
        for i in (0..bits.min(64)).rev() {
            let bit = 1u64 << i;
            s.push(if self.mask & bit != 0 {
                'x'
            } else if self.value & bit != 0 {
                '1'
            } else {
                '0'
            });
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A random tnum and a random member of it.
    fn tnum_and_member() -> impl Strategy<Value = (Tnum, u64)> {
        (any::<u64>(), any::<u64>(), any::<u64>(), 0u32..4).prop_map(|(v, m, pick, density)| {
            // Vary how many bits are unknown: none, few, many, all-ish.
            let m = match density {
                0 => 0,
                1 => m & (m >> 7) & (m >> 13),
                2 => m,
                _ => m | (m << 1),
            };
            let t = Tnum::new(v, m);
            (t, t.value | (pick & t.mask))
        })
    }

    #[test]
    fn range_examples() {
        // Hand-computed: [4, 7] -> value 4, mask 3.
        assert_eq!(Tnum::range(4, 7), Tnum::new(4, 3));
        assert_eq!(Tnum::range(0, 0), Tnum::constant(0));
        assert_eq!(Tnum::range(0, u64::MAX), Tnum::UNKNOWN);
        // [1, 2] -> 0b0x / 0bx: value 0 mask 3.
        assert_eq!(Tnum::range(1, 2), Tnum::new(0, 3));
    }

    #[test]
    fn display_like_kernel() {
        assert_eq!(Tnum::new(0, 0xff).to_string(), "(0x0; 0xff)");
        assert_eq!(Tnum::new(0b100, 0b010).to_bin(4), "01x0");
    }

    proptest! {
        #[test]
        fn binary_ops_sound((a, x) in tnum_and_member(), (b, y) in tnum_and_member()) {
            prop_assert!(a.add(b).contains(x.wrapping_add(y)));
            prop_assert!(a.sub(b).contains(x.wrapping_sub(y)));
            prop_assert!(a.mul(b).contains(x.wrapping_mul(y)));
            prop_assert!(a.and(b).contains(x & y));
            prop_assert!(a.or(b).contains(x | y));
            prop_assert!(a.xor(b).contains(x ^ y));
            prop_assert!(a.union(b).contains(x) && a.union(b).contains(y));
            if a.contains(y) {
                prop_assert!(a.intersect(b).contains(y));
            }
            if a.disjoint(b) {
                prop_assert!(x != y);
            }
        }

        #[test]
        fn unary_ops_sound((a, x) in tnum_and_member(), s in 0u32..64) {
            prop_assert!(a.lshift(s).contains(x << s));
            prop_assert!(a.rshift(s).contains(x >> s));
            prop_assert!(a.arshift(s, 64).contains(((x as i64) >> s) as u64));
            let s32 = s % 32;
            prop_assert!(a.arshift(s32, 32).contains(((x as u32 as i32) >> s32) as u32 as u64));
            prop_assert!(a.neg().contains(x.wrapping_neg()));
            for size in [1u32, 2, 4, 8] {
                let keep = if size == 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 };
                prop_assert!(a.cast(size).contains(x & keep));
            }
            prop_assert!(a.umin() <= x && x <= a.umax());
            prop_assert!(a.includes(Tnum::constant(x)));
        }

        #[test]
        fn range_sound(lo in any::<u64>(), len in any::<u64>(), pick in any::<u64>()) {
            let hi = lo.saturating_add(len >> (len % 64));
            let t = Tnum::range(lo, hi);
            let x = lo + pick % (hi - lo).saturating_add(1).max(1);
            prop_assert!(x > hi || t.contains(x));
            prop_assert!(t.contains(lo) && t.contains(hi));
        }
    }
}
