//! State comparison for pruning (kernel `states_equal` / `regsafe` /
//! `stacksafe`): a new state may stop its path when an old, fully explored
//! state at the same instruction includes it.
//!
//! Without liveness and precision tracking (later stages), every register
//! and stack byte counts and every scalar is compared by range inclusion,
//! which is sound but prunes less than the kernel. Ids are compared through
//! a consistent mapping, so that refinements linked by ids in the new state
//! were also linked in the old one.

use smallvec::SmallVec;

use crate::reg::{RegState, RegType};
use crate::stack::{ByteKind, StackSlot};
use crate::state::State;

/// A mapping of old ids to new ids that must stay one-to-one.
#[derive(Default)]
struct IdMap(SmallVec<[(u32, u32); 16]>);

impl IdMap {
    fn check(&mut self, old: u32, cur: u32) -> bool {
        if old == 0 && cur == 0 {
            return true;
        }
        if old == 0 || cur == 0 {
            return false;
        }
        for &(o, c) in &self.0 {
            if o == old || c == cur {
                return o == old && c == cur;
            }
        }
        self.0.push((old, cur));
        true
    }
}

/// Whether every concrete state `cur` stands for is one `old` stands for
/// (`exact == false`), or whether the two are the same up to id renaming
/// (`exact == true`, loop detection).
pub fn state_includes(old: &State, cur: &State, exact: bool) -> bool {
    if old.frames.len() != cur.frames.len() || old.refs.len() != cur.refs.len() {
        return false;
    }
    let mut ids = IdMap::default();
    for (o, c) in old.refs.iter().zip(&cur.refs) {
        if !ids.check(o.0, c.0) {
            return false;
        }
    }
    for (fo, fc) in old.frames.iter().zip(&cur.frames) {
        if fo.callsite != fc.callsite
            || fo.subprog != fc.subprog
            || fo.callback.is_some() != fc.callback.is_some()
        {
            return false;
        }
        if let (Some(a), Some(b)) = (&fo.callback, &fc.callback) {
            if !reg_includes(&a.ctx, &b.ctx, exact, &mut ids) {
                return false;
            }
        }
        for (ro, rc) in fo.regs.iter().zip(&fc.regs) {
            if !reg_includes(ro, rc, exact, &mut ids) {
                return false;
            }
        }
        let n = fo.stack.slots().len().max(fc.stack.slots().len());
        let empty = StackSlot::default();
        for i in 0..n {
            let so = fo.stack.slot(i).unwrap_or(&empty);
            let sc = fc.stack.slot(i).unwrap_or(&empty);
            if !slot_includes(so, sc, exact, &mut ids) {
                return false;
            }
        }
    }
    true
}

fn reg_includes(o: &RegState, c: &RegState, exact: bool, ids: &mut IdMap) -> bool {
    if exact {
        return o.ty == c.ty
            && o.off == c.off
            && o.var == c.var
            && o.map == c.map
            && o.range == c.range
            && o.frameno == c.frameno
            && o.ringbuf == c.ringbuf
            && ids.check(o.id, c.id)
            && ids.check(o.ref_obj_id, c.ref_obj_id);
    }
    match o.ty {
        // The old path never read it (or it failed there): anything goes.
        RegType::NotInit => true,
        RegType::Scalar => {
            c.ty == RegType::Scalar
                && o.var.includes(&c.var)
                && (o.id == 0
                    || ids.check(
                        o.id,
                        if c.id == 0 {
                            u32::MAX - ids.0.len() as u32
                        } else {
                            c.id
                        },
                    ))
        }
        _ => {
            o.ty == c.ty
                && o.off == c.off
                && o.map == c.map
                && o.frameno == c.frameno
                && o.ringbuf == c.ringbuf
                && o.var.includes(&c.var)
                && (if o.ty.is_pkt() {
                    c.range >= o.range
                } else {
                    o.range == c.range
                })
                && ids.check(o.id, c.id)
                && ids.check(o.ref_obj_id, c.ref_obj_id)
        }
    }
}

fn slot_includes(o: &StackSlot, c: &StackSlot, exact: bool, ids: &mut IdMap) -> bool {
    if !c.defs.is_subset(&o.defs) {
        return false;
    }
    if exact {
        return o.kinds == c.kinds
            && (!o.is_spill() || reg_includes(&o.spilled, &c.spilled, true, ids));
    }
    if o.is_spill() || c.is_spill() {
        if o.is_spill() && c.is_spill() {
            return o.kinds == c.kinds && reg_includes(&o.spilled, &c.spilled, false, ids);
        }
        if c.is_spill() && c.spilled.ty == RegType::Scalar {
            // A spilled scalar reads as a scalar in any size; old bytes must allow any data.
            return o.kinds.iter().zip(&c.kinds).all(|(ko, kc)| {
                matches!(ko, ByteKind::Misc | ByteKind::Invalid)
                    || (*ko == ByteKind::Zero && *kc == ByteKind::Spill && c.spilled.is_const(0))
            });
        }
        if o.is_spill()
            && o.spilled.ty == RegType::Scalar
            && o.spilled.var.is_unknown()
            && o.is_full_spill()
        {
            return c
                .kinds
                .iter()
                .all(|k| matches!(k, ByteKind::Misc | ByteKind::Zero));
        }
        return false;
    }
    o.kinds.iter().zip(&c.kinds).all(|(ko, kc)| match ko {
        ByteKind::Invalid | ByteKind::Misc => true,
        ByteKind::Zero => *kc == ByteKind::Zero,
        ByteKind::Spill => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalar::Scalar;
    use crate::state::Frame;

    fn st(r1: RegState) -> State {
        let mut s = State {
            frames: SmallVec::new(),
            refs: SmallVec::new(),
        };
        let mut f = Frame::new(0, u32::MAX, 0);
        f.regs[1] = r1;
        s.frames.push(f);
        s
    }

    #[test]
    fn inclusion() {
        let wide = st(RegState::scalar(Scalar::urange(0, 10)));
        let narrow = st(RegState::scalar(Scalar::urange(2, 3)));
        assert!(state_includes(&wide, &narrow, false));
        assert!(!state_includes(&narrow, &wide, false));
        assert!(!state_includes(&wide, &narrow, true));
        assert!(state_includes(&wide, &wide.clone(), true));
        let ctx = st(RegState::pointer(RegType::Ctx));
        assert!(!state_includes(&wide, &ctx, false));
        assert!(state_includes(&st(RegState::NOT_INIT), &ctx, false));
    }
}
