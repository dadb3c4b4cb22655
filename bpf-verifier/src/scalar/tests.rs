//! Soundness properties of the scalar domain: every concrete result of an
//! operation on members of abstract operands is a member of the abstract
//! result, and branch refinement never drops a value that takes the branch.

use super::*;
use proptest::prelude::*;

/// A random scalar containing the random concrete value returned with it.
fn scalar_with_member() -> impl Strategy<Value = (Scalar, u64)> {
    (
        prop_oneof![
            any::<u64>(),
            0u64..64,
            (0u64..64).prop_map(|v| v.wrapping_neg()),
            (0u64..64).prop_map(|v| v.wrapping_add(i32::MAX as u64 - 32)),
            (0u64..64).prop_map(|v| v.wrapping_add(u32::MAX as u64 - 32)),
            (0u64..64).prop_map(|v| v.wrapping_add(i64::MAX as u64 - 32)),
        ],
        any::<u64>(),
        any::<[u64; 8]>(),
        any::<u8>(),
    )
        .prop_map(|(x, mask, d, which)| {
            let mut s = Scalar::UNKNOWN;
            let sh = |v: u64, k: usize| v >> (d[k] % 64);
            if which & 1 != 0 {
                s.var_off = Tnum::new(x, mask & (mask >> (d[0] % 64)));
            }
            if which & 2 != 0 {
                s.umin = x.saturating_sub(sh(d[1], 2));
                s.umax = x.saturating_add(sh(d[2], 3));
            }
            if which & 4 != 0 {
                s.smin = (x as i64).saturating_sub(sh(d[3], 4) as i64 & i64::MAX);
                s.smax = (x as i64).saturating_add(sh(d[4], 5) as i64 & i64::MAX);
            }
            if which & 8 != 0 {
                let v = x as u32;
                s.u32_min = v.saturating_sub((d[5] >> (d[6] % 64)) as u32);
                s.u32_max = v.saturating_add((d[6] >> (d[5] % 64)) as u32);
            }
            if which & 16 != 0 {
                let v = x as u32 as i32;
                s.s32_min =
                    v.saturating_sub(((d[7] >> (d[1] % 64)) as u32 & i32::MAX as u32) as i32);
                s.s32_max =
                    v.saturating_add(((d[7] >> (d[2] % 64)) as u32 & i32::MAX as u32) as i32);
            }
            if which & 32 != 0 {
                s = Scalar::constant(x);
            }
            s.sync();
            (s, x)
        })
}

const OPS: [ScalarOp; 13] = [
    ScalarOp::Add,
    ScalarOp::Sub,
    ScalarOp::Mul,
    ScalarOp::Div,
    ScalarOp::SDiv,
    ScalarOp::Mod,
    ScalarOp::SMod,
    ScalarOp::Or,
    ScalarOp::And,
    ScalarOp::Xor,
    ScalarOp::Lsh,
    ScalarOp::Rsh,
    ScalarOp::Arsh,
];

#[test]
fn constants_and_examples() {
    let c = Scalar::constant(5);
    assert!(c.contains(5) && !c.contains(6));
    // Hand-computed: [0, 15] + 16 = [16, 31] with var_off (0x10; 0xf).
    let r = Scalar::urange(0, 15).alu(ScalarOp::Add, &Scalar::constant(16), false);
    assert_eq!((r.umin, r.umax), (16, 31));
    assert_eq!(r.var_off, Tnum::new(0x10, 0xf));
    // x & 0xff on an unknown: [0, 255].
    let r = Scalar::UNKNOWN.alu(ScalarOp::And, &Scalar::constant(0xff), false);
    assert_eq!((r.umin, r.umax, r.smin, r.smax), (0, 255, 0, 255));
    // 32-bit mov of -1 zero-extends to 0xffffffff.
    let r = Scalar::constant(u64::MAX).zext32();
    assert_eq!(r.const_value(), Some(0xffff_ffff));
    // (s8) 0x80 = -128.
    assert_eq!(
        Scalar::constant(0x80).sign_extend(1).const_value(),
        Some((-128i64) as u64)
    );
    // be16 of 0x1234 is 0x3412.
    assert_eq!(
        Scalar::constant(0x1234).endian(16, true).const_value(),
        Some(0x3412)
    );
}

#[test]
fn refine_examples() {
    // x in [0, 100]; x < 10 taken => [0, 9]; not taken => [10, 100].
    let mut a = Scalar::urange(0, 100);
    let mut b = Scalar::constant(10);
    refine(&mut a, &mut b, JmpCond::Lt, false, true);
    assert_eq!((a.umin, a.umax), (0, 9));
    let mut a = Scalar::urange(0, 100);
    let mut b = Scalar::constant(10);
    refine(&mut a, &mut b, JmpCond::Lt, false, false);
    assert_eq!((a.umin, a.umax), (10, 100));
    // x s> -1 on unknown gives [0, i64::MAX].
    let mut a = Scalar::UNKNOWN;
    let mut b = Scalar::constant(u64::MAX);
    refine(&mut a, &mut b, JmpCond::Sgt, false, true);
    assert_eq!((a.smin, a.smax, a.umax), (0, i64::MAX, i64::MAX as u64));
    assert_eq!(
        branch_taken(
            &Scalar::urange(5, 9),
            &Scalar::constant(4),
            JmpCond::Gt,
            false
        ),
        Some(true)
    );
    assert_eq!(
        branch_taken(
            &Scalar::urange(5, 9),
            &Scalar::constant(9),
            JmpCond::Gt,
            false
        ),
        Some(false)
    );
    assert_eq!(
        branch_taken(
            &Scalar::urange(5, 9),
            &Scalar::constant(7),
            JmpCond::Gt,
            false
        ),
        None
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn sync_keeps_members((s, x) in scalar_with_member()) {
        prop_assert!(s.contains(x), "{s:?} lost {x:#x}");
        prop_assert!(!s.is_empty());
    }

    #[test]
    fn alu_sound((a, x) in scalar_with_member(), (b, y) in scalar_with_member(), op in 0usize..13, w32: bool) {
        let op = OPS[op];
        let r = a.alu(op, &b, w32);
        let c = concrete(op, x, y, w32);
        prop_assert!(r.contains(c), "{op:?} w32={w32}: {a:?} {x:#x} op {b:?} {y:#x} = {c:#x} not in {r:?}");
    }

    #[test]
    fn unary_sound((a, x) in scalar_with_member(), w32: bool, size in 0u32..4) {
        let n = a.neg(w32);
        let c = if w32 { (x as u32).wrapping_neg() as u64 } else { x.wrapping_neg() };
        prop_assert!(n.contains(c));
        let bytes = 1u32 << size;
        let t = a.truncate(bytes);
        let keep = if bytes == 8 { u64::MAX } else { (1u64 << (bytes * 8)) - 1 };
        prop_assert!(t.contains(x & keep));
        if bytes < 8 {
            let sx = ((x << (64 - bytes * 8)) as i64 >> (64 - bytes * 8)) as u64;
            prop_assert!(a.sign_extend(bytes).contains(sx), "sext{bytes} {a:?} {x:#x}");
            prop_assert!(a.sign_extend32(bytes).contains(sx as u32 as u64));
        }
        prop_assert!(a.zext32().contains(x as u32 as u64));
        for bits in [16u32, 32, 64] {
            let sw = match bits { 16 => (x as u16).swap_bytes() as u64, 32 => (x as u32).swap_bytes() as u64, _ => x.swap_bytes() };
            prop_assert!(a.endian(bits, true).contains(sw));
            let tr = if bits == 64 { x } else { x & ((1u64 << bits) - 1) };
            prop_assert!(a.endian(bits, false).contains(tr));
        }
    }

    #[test]
    fn branch_sound((a, x) in scalar_with_member(), (b, y) in scalar_with_member(), c in 0usize..11, w32: bool) {
        let cond = JmpCond::ALL[c];
        let (xv, yv) = if w32 { (x as u32 as u64, y as u32 as u64) } else { (x, y) };
        let (xs, ys) = if w32 { (x as u32 as i32 as i64, y as u32 as i32 as i64) } else { (x as i64, y as i64) };
        let t = match cond {
            JmpCond::Eq => xv == yv,
            JmpCond::Ne => xv != yv,
            JmpCond::Set => xv & yv != 0,
            JmpCond::Gt => xv > yv,
            JmpCond::Ge => xv >= yv,
            JmpCond::Lt => xv < yv,
            JmpCond::Le => xv <= yv,
            JmpCond::Sgt => xs > ys,
            JmpCond::Sge => xs >= ys,
            JmpCond::Slt => xs < ys,
            JmpCond::Sle => xs <= ys,
        };
        if let Some(d) = branch_taken(&a, &b, cond, w32) {
            prop_assert_eq!(d, t, "branch_taken {:?} {:?} {:?}", cond, a, b);
        }
        let (mut a2, mut b2) = (a, b);
        refine(&mut a2, &mut b2, cond, w32, t);
        prop_assert!(!a2.is_empty() && !b2.is_empty(), "{cond:?} {t} emptied {a:?} {b:?}");
        prop_assert!(a2.contains(x), "{cond:?} w32={w32} taken={t}: {a:?} -> {a2:?} lost {x:#x} (other {y:#x})");
        prop_assert!(b2.contains(y), "{cond:?} w32={w32} taken={t}: {b:?} -> {b2:?} lost {y:#x}");
    }
}
