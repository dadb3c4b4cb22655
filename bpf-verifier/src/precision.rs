//! Precision tracking (kernel `__mark_chain_precision` / `backtrack_insn`).
//!
//! Scalars start imprecise; an imprecise scalar of an old state matches any
//! scalar when states are compared. When a scalar's value decides safety
//! (pointer arithmetic, a helper's size argument, a branch decided by its
//! range, a tail-call index), the verifier walks the instructions of the
//! current path backwards, from the register to the instructions that
//! produced it, through stack spills and fills and across call frames, and
//! marks the registers and spilled slots it passes through as precise in
//! every checkpoint (explored state) on the way. When the walk cannot follow
//! an instruction (legacy packet loads, atomics on tracked values,
//! callbacks) every scalar of the chain becomes precise, as in the kernel.

use bpf_isa::{AluOp, AtomicOp, CallTarget, Insn, InsnIdx, Source};

use crate::reg::RegType;
use crate::state::State;
use crate::verifier::Env;

/// r1-r5, the argument registers.
const ARGS: u16 = 0b11_1110;

/// Most frames a state can have.
pub(crate) const MAX_FRAMES: usize = 8;

/// One processed instruction of a path segment (kernel jump-history entry,
/// kept for every instruction).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hist {
    /// Slot of the instruction.
    pub(crate) idx: u32,
    /// Fixed-offset spill or fill: `frame << 8 | slot`, or [`Hist::NO_STACK`].
    pub(crate) stack: u16,
}

impl Hist {
    pub(crate) const NO_STACK: u16 = u16::MAX;
}

/// Registers and stack slots still being traced, per frame.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bt {
    pub(crate) frame: usize,
    pub(crate) regs: [u16; MAX_FRAMES],
    pub(crate) stack: [u64; MAX_FRAMES],
}

/// The walk cannot follow an instruction.
struct Unsupported;

impl Bt {
    pub(crate) fn new(frame: usize) -> Bt {
        Bt {
            frame: frame.min(MAX_FRAMES - 1),
            ..Bt::default()
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.regs.iter().all(|&r| r == 0) && self.stack.iter().all(|&s| s == 0)
    }

    fn reg(&self, r: u8) -> bool {
        self.regs[self.frame] & (1 << r) != 0
    }

    pub(crate) fn set_reg(&mut self, fr: usize, r: u8) {
        if let Some(m) = self.regs.get_mut(fr) {
            *m |= 1 << r;
        }
    }

    fn clear_reg(&mut self, r: u8) {
        self.regs[self.frame] &= !(1 << r);
    }

    pub(crate) fn set_slot(&mut self, fr: usize, spi: usize) {
        if let Some(m) = self.stack.get_mut(fr) {
            if spi < 64 {
                *m |= 1 << spi;
            }
        }
    }

    /// One instruction backwards; `subseq` is the instruction executed after it.
    fn step(
        &mut self,
        insn: &Insn,
        idx: u32,
        subseq: Option<u32>,
        h: &Hist,
        calls_cb: &[bool],
    ) -> Result<(), Unsupported> {
        let stack_slot = (h.stack != Hist::NO_STACK)
            .then_some(((h.stack >> 8) as usize, (h.stack & 0xff) as usize));
        match *insn {
            Insn::Alu { op, dst, src, .. } => {
                if !self.reg(dst.num()) {
                    return Ok(());
                }
                match (op, src) {
                    (AluOp::Mov, Source::Reg(s)) => {
                        self.clear_reg(dst.num());
                        self.set_reg(self.frame, s.num());
                    }
                    (AluOp::Mov, Source::Imm(_)) => self.clear_reg(dst.num()),
                    (_, Source::Reg(s)) => self.set_reg(self.frame, s.num()),
                    (_, Source::Imm(_)) => {}
                }
            }
            Insn::MovSx { dst, src, .. } => {
                if self.reg(dst.num()) {
                    self.clear_reg(dst.num());
                    self.set_reg(self.frame, src.num());
                }
            }
            Insn::AddrSpaceCast { dst, .. } => {
                if self.reg(dst.num()) {
                    return Err(Unsupported);
                }
            }
            Insn::Neg { .. } | Insn::Endian { .. } => {}
            Insn::Ldx { dst, .. } | Insn::LdxSx { dst, .. } => {
                if !self.reg(dst.num()) {
                    return Ok(());
                }
                self.clear_reg(dst.num());
                if let Some((fr, spi)) = stack_slot {
                    self.set_slot(fr, spi);
                }
            }
            Insn::St { dst, .. } | Insn::Stx { dst, .. } => {
                if self.reg(dst.num()) {
                    return Err(Unsupported);
                }
                let Some((fr, spi)) = stack_slot else {
                    return Ok(());
                };
                let bit = 1u64 << spi.min(63);
                let Some(m) = self.stack.get_mut(fr) else {
                    return Ok(());
                };
                if *m & bit == 0 {
                    return Ok(());
                }
                *m &= !bit;
                if let Insn::Stx { src, .. } = *insn {
                    self.set_reg(self.frame, src.num());
                }
            }
            Insn::Atomic { op, dst, src, .. } => {
                let touches = self.reg(dst.num())
                    || self.reg(src.num())
                    || (op == AtomicOp::Cmpxchg && self.reg(0))
                    || stack_slot.is_some();
                if touches {
                    return Err(Unsupported);
                }
            }
            Insn::Jmp { dst, src, .. } => {
                if let Source::Reg(s) = src {
                    if self.reg(dst.num()) || self.reg(s.num()) {
                        self.set_reg(self.frame, dst.num());
                        self.set_reg(self.frame, s.num());
                    }
                }
            }
            Insn::Ja { .. } | Insn::JaLong { .. } | Insn::MayGoto { .. } => {}
            Insn::LdImm64 { dst, .. } => {
                if self.reg(dst.num()) {
                    self.clear_reg(dst.num());
                }
            }
            Insn::Call(CallTarget::Helper(_)) => {
                let jumped = subseq.is_some_and(|s| s != idx + 1);
                if jumped && calls_cb.get(idx as usize) != Some(&true) {
                    // A tail call in a subprogram that returned to the
                    // caller (kernel `check_helper_call`: treated as the
                    // subprogram's exit): the caller's r0 is unknown and its
                    // r1-r5 are not set, so nothing traced crosses into the callee.
                    self.clear_reg(0);
                    if self.regs[self.frame] & ARGS != 0 || self.frame + 1 >= MAX_FRAMES {
                        return Err(Unsupported);
                    }
                    self.frame += 1;
                    self.regs[self.frame] = 0;
                    self.stack[self.frame] = 0;
                    return Ok(());
                }
                if jumped {
                    // Entered a callback: its r1-r5 were set by the helper,
                    // not by the caller's instructions.
                    if self.regs[self.frame] & !ARGS != 0 || self.stack[self.frame] != 0 {
                        return Err(Unsupported);
                    }
                    if self.frame == 0 {
                        return Err(Unsupported);
                    }
                    self.regs[self.frame] = 0;
                    self.frame -= 1;
                    return Ok(());
                }
                self.clear_reg(0);
                if self.regs[self.frame] & 0b11_1110 != 0 {
                    return Err(Unsupported);
                }
            }
            Insn::Call(CallTarget::Local(off)) => {
                let target = (idx as i64 + 1 + off as i64) as u32;
                if subseq != Some(target) || self.frame == 0 {
                    return Err(Unsupported);
                }
                // Leaving the callee backwards: its r1-r5 are the caller's arguments.
                let callee = self.regs[self.frame];
                if callee & !0b11_1110 != 0 || self.stack[self.frame] != 0 {
                    return Err(Unsupported);
                }
                self.regs[self.frame] = 0;
                self.frame -= 1;
                self.regs[self.frame] |= callee;
            }
            Insn::Exit => {
                if self.frame + 1 >= MAX_FRAMES {
                    return Err(Unsupported);
                }
                let to_cb_call = subseq.is_some_and(|s| calls_cb.get(s as usize) == Some(&true));
                if to_cb_call {
                    // A callback returning to the helper that calls it: the
                    // caller's r1-r5 there are the helper's arguments again
                    // and r0 is not the callback's.
                    self.regs[self.frame] &= !(ARGS | 1);
                    self.frame += 1;
                    self.regs[self.frame] = 0;
                    self.stack[self.frame] = 0;
                    return Ok(());
                }
                // Entering the callee backwards: r0 is the callee's.
                if self.regs[self.frame] & 0b11_1110 != 0 {
                    return Err(Unsupported);
                }
                let r0 = self.reg(0);
                self.clear_reg(0);
                self.frame += 1;
                self.regs[self.frame] = 0;
                self.stack[self.frame] = 0;
                if r0 {
                    self.set_reg(self.frame, 0);
                }
            }
            Insn::LdAbs { .. }
            | Insn::LdInd { .. }
            | Insn::CallReg { .. }
            | Insn::Call(CallTarget::Kfunc { .. }) => {
                if !self.is_empty() {
                    return Err(Unsupported);
                }
            }
        }
        Ok(())
    }
}

/// Marks the traced registers and slots of `st` precise; drops from `bt`
/// what is already precise or not a scalar there. Returns how many marks
/// were new.
fn mark_state(st: &mut State, bt: &mut Bt) -> u64 {
    let mut new = 0;
    for fr in 0..=bt.frame.min(MAX_FRAMES - 1) {
        let Some(f) = st.frames.get_mut(fr) else {
            bt.regs[fr] = 0;
            bt.stack[fr] = 0;
            continue;
        };
        for i in 0..11 {
            if bt.regs[fr] & (1 << i) == 0 {
                continue;
            }
            let r = &mut f.regs[i];
            if r.ty != RegType::Scalar || r.precise {
                bt.regs[fr] &= !(1 << i);
            } else {
                r.precise = true;
                new += 1;
            }
        }
        for spi in 0..64 {
            if bt.stack[fr] & (1u64 << spi) == 0 {
                continue;
            }
            let slots = f.stack.slots_mut();
            match slots.get_mut(spi) {
                Some(s) if s.is_spill() && s.spilled.ty == RegType::Scalar => {
                    if s.spilled.precise {
                        bt.stack[fr] &= !(1u64 << spi);
                    } else {
                        s.spilled.precise = true;
                        new += 1;
                    }
                }
                _ => bt.stack[fr] &= !(1u64 << spi),
            }
        }
    }
    new
}

/// Marks every scalar of `st` precise; returns how many marks were new.
fn mark_all(st: &mut State) -> u64 {
    let mut new = 0;
    st.for_each_reg(|r| {
        if r.ty == RegType::Scalar && !r.precise {
            r.precise = true;
            new += 1;
        }
    });
    new
}

impl Env<'_> {
    /// Marks register `regno` of the innermost frame of the current state precise.
    pub(crate) fn mark_precise(&mut self, st: &State, regno: u8) {
        if !self.opts.privileged {
            // Every scalar is precise without privileges.
            return;
        }
        let fr = st.frames.len().saturating_sub(1);
        if st.cur().regs.get(regno as usize).map(|r| r.ty) != Some(RegType::Scalar) {
            return;
        }
        let mut bt = Bt::new(fr);
        bt.set_reg(fr, regno);
        self.backtrack(bt);
    }

    /// Marks stack slot `spi` of frame `frame` of `st` precise along the current path.
    pub(crate) fn mark_slot_precise(&mut self, st: &State, frame: usize, spi: usize) {
        if !self.opts.privileged {
            return;
        }
        let mut bt = Bt::new(st.frames.len().saturating_sub(1));
        bt.set_slot(frame, spi);
        self.backtrack(bt);
    }

    /// Walks the current path backwards from its last instruction, marking
    /// what `bt` traces precise in the checkpoints on the way.
    pub(crate) fn backtrack(&mut self, mut bt: Bt) {
        if bt.is_empty() {
            return;
        }
        // The current segment first, then each checkpoint's.
        let mut subseq: Option<u32> = Some(self.cur_pc as u32);
        let mut node = self.parent;
        let mut seg_owner: Option<u32> = None; // None = current segment
        loop {
            let hist: &[Hist] = match seg_owner {
                None => &self.hist,
                Some(i) => self
                    .explored
                    .get(i as usize)
                    .map_or(&[][..], |e| e.hist.as_slice()),
            };
            let mut failed = false;
            for h in hist.iter().rev() {
                let Some(insn) = self.prog.get(InsnIdx::from_u32(h.idx)) else {
                    failed = true;
                    break;
                };
                if bt
                    .step(insn, h.idx, subseq, h, &self.calls_callback)
                    .is_err()
                {
                    failed = true;
                    break;
                }
                subseq = Some(h.idx);
                if bt.is_empty() {
                    return;
                }
            }
            if failed {
                self.mark_all_precise();
                return;
            }
            let Some(n) = node else {
                // Reached the program start with something still traced.
                self.mark_all_precise();
                return;
            };
            let Some(e) = self.explored.get_mut(n as usize) else {
                return;
            };
            self.precise_marks += mark_state(&mut e.state, &mut bt);
            if bt.is_empty() {
                return;
            }
            subseq = Some(e.pc);
            seg_owner = Some(n);
            node = e.parent;
        }
    }

    /// Every scalar of every checkpoint on the current chain becomes precise.
    pub(crate) fn mark_all_precise(&mut self) {
        let mut node = self.parent;
        while let Some(n) = node {
            let Some(e) = self.explored.get_mut(n as usize) else {
                break;
            };
            self.precise_marks += mark_all(&mut e.state);
            node = e.parent;
        }
    }
}
