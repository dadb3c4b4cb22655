//! State comparison for pruning (kernel `states_equal` / `regsafe` /
//! `stacksafe`): a new state may stop its path when an old, fully explored
//! state at the same instruction includes it.
//!
//! [`state_includes`] compares every register and stack byte and every
//! scalar by range inclusion. The exploration uses [`states_equal`], which
//! like the kernel ignores registers and stack slots that are dead in the
//! old state (see `liveness`) and lets imprecise old scalars (see
//! `precision`) match any scalar. Ids are compared through a consistent
//! mapping, so that refinements linked by ids in the new state were also
//! linked in the old one.

use smallvec::SmallVec;

use crate::reg::{RegState, RegType};
use crate::stack::{ByteKind, StackSlot};
use crate::state::State;

/// A mapping of old ids to new ids that must stay one-to-one.
#[derive(Default)]
pub(crate) struct IdMap(SmallVec<[(u32, u32); 16]>);

impl IdMap {
    pub(crate) fn check(&mut self, old: u32, cur: u32) -> bool {
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

/// How strictly [`states_equal`] compares (kernel `enum exact_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inclusion; imprecise old scalars match any scalar.
    NotExact,
    /// Inclusion; every scalar compared by range (callback entries).
    RangeWithin,
    /// Equal up to id renaming (loop detection).
    Exact,
}

/// What [`states_equal`] needs besides the states: liveness of the old
/// state, frame by frame (outermost first), and the privilege level.
#[derive(Clone, Copy, Debug)]
pub struct Liveness<'a> {
    /// Registers live per frame (bit `i` = `ri`).
    pub regs: &'a [u16],
    /// Stack slots live per frame (bit `i` = `fp-8*(i+1)`); ignored in [`Mode::Exact`].
    pub stack: &'a [u64],
    /// Privileged semantics: scalars are imprecise unless marked, and
    /// uninitialised stack may be read.
    pub privileged: bool,
}

/// Whether every concrete state `cur` stands for is one `old` stands for
/// (`exact == false`), or whether the two are the same up to id renaming
/// (`exact == true`, loop detection). Every register and stack byte counts
/// and every scalar is compared by range.
pub fn state_includes(old: &State, cur: &State, exact: bool) -> bool {
    let regs = [u16::MAX; 8];
    let stack = [u64::MAX; 8];
    let live = Liveness {
        regs: &regs,
        stack: &stack,
        privileged: false,
    };
    states_equal(
        old,
        cur,
        if exact {
            Mode::Exact
        } else {
            Mode::RangeWithin
        },
        &live,
    )
}

/// The kernel's `states_equal`: whether `cur` may stop its path because
/// `old`, explored, covers it, given `old`'s liveness.
pub fn states_equal(old: &State, cur: &State, mode: Mode, live: &Liveness<'_>) -> bool {
    states_equal_defs(old, cur, mode, live, None)
}

/// [`states_equal`] that, when `defs_mismatch` is given, tolerates stack
/// slots of the innermost frame whose defining instructions in `cur` are not
/// all among those in `old`, and reports them there (bit `i` = slot `i`); the
/// caller then accounts for the extra definitions.
pub(crate) fn states_equal_defs(
    old: &State,
    cur: &State,
    mode: Mode,
    live: &Liveness<'_>,
    mut defs_mismatch: Option<&mut u64>,
) -> bool {
    let exact = mode == Mode::Exact;
    let cfg = Cfg {
        mode,
        privileged: live.privileged,
    };
    if old.frames.len() != cur.frames.len() || old.refs.len() != cur.refs.len() {
        return false;
    }
    let mut ids = IdMap::default();
    for (o, c) in old.refs.iter().zip(&cur.refs) {
        if !ids.check(o.0, c.0) {
            return false;
        }
    }
    for (fi, (fo, fc)) in old.frames.iter().zip(&cur.frames).enumerate() {
        if fo.callsite != fc.callsite
            || fo.subprog != fc.subprog
            || fo.callback.is_some() != fc.callback.is_some()
        {
            return false;
        }
        // A state that entered more callback iterations from this frame's
        // call does not include one that entered fewer (kernel `func_states_equal`).
        if fo.callback_depth > fc.callback_depth {
            return false;
        }
        let lregs = live.regs.get(fi).copied().unwrap_or(u16::MAX);
        for (i, (ro, rc)) in fo.regs.iter().zip(&fc.regs).enumerate() {
            if lregs & (1 << i) == 0 {
                continue;
            }
            if !reg_includes(ro, rc, &cfg, &mut ids) {
                return false;
            }
        }
        let lstack = if exact {
            u64::MAX
        } else {
            live.stack.get(fi).copied().unwrap_or(u64::MAX)
        };
        let n = fo.stack.slots().len().max(fc.stack.slots().len());
        let empty = StackSlot::default();
        for i in 0..n {
            if i < 64 && lstack & (1u64 << i) == 0 {
                continue;
            }
            let so = fo.stack.slot(i).unwrap_or(&empty);
            let sc = fc.stack.slot(i).unwrap_or(&empty);
            let innermost = fi + 1 == old.frames.len();
            let tolerate = innermost && i < 64 && mode != Mode::Exact && defs_mismatch.is_some();
            if tolerate && !sc.defs.is_subset(&so.defs) {
                let same_defs = StackSlot {
                    defs: so.defs.clone(),
                    ..sc.clone()
                };
                if !slot_includes(so, &same_defs, &cfg, &mut ids) {
                    return false;
                }
                if let Some(m) = defs_mismatch.as_deref_mut() {
                    *m |= 1u64 << i;
                }
                continue;
            }
            if !slot_includes(so, sc, &cfg, &mut ids) {
                return false;
            }
        }
    }
    true
}

struct Cfg {
    mode: Mode,
    privileged: bool,
}

fn reg_includes(o: &RegState, c: &RegState, cfg: &Cfg, ids: &mut IdMap) -> bool {
    if cfg.mode == Mode::Exact {
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
            if cfg.mode == Mode::NotExact && cfg.privileged && !o.precise {
                return c.ty == RegType::Scalar;
            }
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

fn slot_includes(o: &StackSlot, c: &StackSlot, cfg: &Cfg, ids: &mut IdMap) -> bool {
    if !c.defs.is_subset(&o.defs) {
        return false;
    }
    if cfg.mode == Mode::Exact {
        return o.kinds == c.kinds
            && (!o.is_spill() || reg_includes(&o.spilled, &c.spilled, cfg, ids));
    }
    let imprecise = |r: &RegState| {
        cfg.mode == Mode::NotExact && cfg.privileged && r.ty == RegType::Scalar && !r.precise
    };
    if o.is_spill() || c.is_spill() {
        if o.is_spill() && c.is_spill() {
            if o.is_full_spill() && imprecise(&o.spilled) && c.spilled.ty == RegType::Scalar {
                return true;
            }
            return o.kinds == c.kinds && reg_includes(&o.spilled, &c.spilled, cfg, ids);
        }
        if c.is_spill() && cfg.privileged {
            // Old bytes that were unknown data or never written allow anything.
            if o.kinds
                .iter()
                .all(|k| matches!(k, ByteKind::Misc | ByteKind::Invalid))
            {
                return true;
            }
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
            && (o.spilled.var.is_unknown() || imprecise(&o.spilled))
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

/// Whether two registers are the same up to id renaming (kernel `regs_exact`).
fn regs_exact(old: &RegState, cur: &RegState, ids: &mut IdMap) -> bool {
    old.ty == cur.ty
        && old.off == cur.off
        && old.var == cur.var
        && old.map == cur.map
        && old.range == cur.range
        && old.frameno == cur.frameno
        && old.ringbuf == cur.ringbuf
        && ids.check(old.id, cur.id)
        && ids.check(old.ref_obj_id, cur.ref_obj_id)
}

/// Forgets the value of `cur` if it is an imprecise scalar that changed
/// since `old` (kernel `maybe_widen_reg`).
fn maybe_widen(old: &RegState, cur: &mut RegState, ids: &mut IdMap) {
    if old.ty != RegType::Scalar || cur.ty != RegType::Scalar {
        return;
    }
    if old.precise || cur.precise || regs_exact(old, cur, ids) {
        return;
    }
    *cur = RegState::unknown();
}

/// Widening of imprecise scalars between two iterations of a loop (kernel
/// `widen_imprecise_scalars`): every register and spilled scalar of `cur`
/// that neither state has marked precise and that differs from its value in
/// `old`, the state of the previous iteration at the same instruction with
/// the same call chain, becomes an unknown scalar, so that the iterations
/// converge unless the value matters.
pub(crate) fn widen_imprecise_scalars(old: &State, cur: &mut State) {
    let mut ids = IdMap::default();
    for (fo, fc) in old.frames.iter().zip(cur.frames.iter_mut()).rev() {
        for (ro, rc) in fo.regs.iter().zip(fc.regs.iter_mut()) {
            maybe_widen(ro, rc, &mut ids);
        }
        for (so, sc) in fo.stack.slots().iter().zip(fc.stack.slots_mut()) {
            let spilled = |s: &StackSlot| s.kinds.first() == Some(&ByteKind::Spill);
            if spilled(so) && spilled(sc) {
                maybe_widen(&so.spilled, &mut sc.spilled, &mut ids);
            }
        }
    }
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
            callback_unroll_depth: 0,
            may_goto_depth: 0,
        };
        let mut f = Frame::new(0, u32::MAX, 0);
        f.regs[1] = r1;
        s.frames.push(f);
        s
    }

    #[test]
    fn widening_forgets_changed_imprecise_scalars() {
        // r1: imprecise, changed 0 -> 1: forgotten.
        let old = st(RegState::constant(0));
        let mut cur = st(RegState::constant(1));
        widen_imprecise_scalars(&old, &mut cur);
        assert_eq!(cur.frames[0].regs[1], RegState::unknown());
        // Unchanged: kept.
        let mut same = st(RegState::constant(0));
        widen_imprecise_scalars(&old, &mut same);
        assert_eq!(same.frames[0].regs[1].var.const_value(), Some(0));
        // Precise in the old state: kept.
        let mut p = RegState::constant(0);
        p.precise = true;
        let mut cur = st(RegState::constant(1));
        widen_imprecise_scalars(&st(p), &mut cur);
        assert_eq!(cur.frames[0].regs[1].var.const_value(), Some(1));
        // Not a scalar on both sides: kept.
        let mut cur = st(RegState::pointer(RegType::Ctx));
        widen_imprecise_scalars(&old, &mut cur);
        assert_eq!(cur.frames[0].regs[1].ty, RegType::Ctx);
        // Spilled scalars at the start of a slot are widened too.
        let mut old = st(RegState::NOT_INIT);
        let mut cur = st(RegState::NOT_INIT);
        for (s, v) in [(&mut old, 0u64), (&mut cur, 5)] {
            let slot = s.frames[0].stack.slot_mut(0);
            slot.kinds = [ByteKind::Spill; 8];
            slot.spilled = RegState::constant(v);
        }
        widen_imprecise_scalars(&old, &mut cur);
        let sp = cur.frames[0].stack.slot(0).map(|s| s.spilled);
        assert_eq!(sp, Some(RegState::unknown()));
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
