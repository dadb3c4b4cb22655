//! The abstract machine state: call frames (registers and stack each) and
//! acquired references.

use smallvec::SmallVec;

use crate::reg::RegState;
use crate::stack::Stack;

/// A bpf_loop callback frame's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallbackFrame {
    /// The callback context argument (the helper's argument 3), passed as r2 again on re-entry.
    pub ctx: RegState,
}

/// One call frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// r0..r10.
    pub regs: [RegState; 11],
    /// The frame's stack.
    pub stack: Stack,
    /// Slot of the call instruction that created the frame (`u32::MAX` for the entry frame).
    pub callsite: u32,
    /// Start slot of the subprogram running in this frame.
    pub subprog: u32,
    /// Set for bpf_loop callback frames.
    pub callback: Option<CallbackFrame>,
    /// Callback iterations entered from the `bpf_loop` call this frame is
    /// at (kernel `callback_depth`; bounded by the iteration count).
    pub callback_depth: u32,
}

impl Frame {
    /// A frame for frame number `frameno` with only r10 set.
    pub fn new(frameno: u32, callsite: u32, subprog: u32) -> Frame {
        let mut regs = [RegState::NOT_INIT; 11];
        regs[10] = RegState::frame_pointer(frameno);
        Frame {
            regs,
            stack: Stack::default(),
            callsite,
            subprog,
            callback: None,
            callback_depth: 0,
        }
    }
}

/// The whole state at one instruction on one path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Frames, outermost first.
    pub frames: SmallVec<[Frame; 1]>,
    /// Acquired references: (id, slot of the acquiring instruction).
    pub refs: SmallVec<[(u32, u32); 2]>,
    /// Callback iterations entered on this path (kernel
    /// `callback_unroll_depth`; states that differ in it are not an infinite loop).
    pub callback_unroll_depth: u32,
    /// `may_goto` iterations taken on this path (kernel `may_goto_depth`).
    pub may_goto_depth: u32,
}

impl State {
    /// The innermost frame.
    pub fn cur(&self) -> &Frame {
        // A state always has at least one frame.
        let n = self.frames.len().saturating_sub(1);
        &self.frames[n]
    }

    /// The innermost frame, mutably.
    pub fn cur_mut(&mut self) -> &mut Frame {
        let n = self.frames.len().saturating_sub(1);
        &mut self.frames[n]
    }

    /// Every register of every frame and every spilled register, mutably.
    pub fn for_each_reg(&mut self, mut f: impl FnMut(&mut RegState)) {
        for fr in &mut self.frames {
            for r in &mut fr.regs {
                f(r);
            }
            for s in fr.stack.slots_mut() {
                if s.is_spill() {
                    f(&mut s.spilled);
                }
            }
        }
    }

    /// Marks every copy of the maybe-NULL pointer `id` as NULL (a scalar 0) or non-NULL.
    pub fn mark_null(&mut self, id: u32, is_null: bool) {
        if id == 0 {
            return;
        }
        let mut released = 0;
        self.for_each_reg(|r| {
            if r.id == id && r.ty.maybe_null() {
                if is_null {
                    if r.ref_obj_id != 0 {
                        released = r.ref_obj_id;
                    }
                    *r = RegState::constant(0);
                } else {
                    r.ty = r.ty.non_null();
                    // `mark_ptr_or_null_reg`: the id is no longer needed (only
                    // spin-lock map values, not modelled, keep it); a
                    // reference stays in `ref_obj_id`.
                    r.id = 0;
                }
            }
        });
        if released != 0 {
            self.refs.retain(|(i, _)| *i != released);
        }
    }
}
