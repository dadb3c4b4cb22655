//! Liveness, as the kernel (6.18) computes it for state pruning.
//!
//! * Registers: a static backward data-flow analysis before exploration
//!   (kernel `compute_live_registers`): a register is live before an
//!   instruction if some continuation reads it before writing it. Calls read
//!   their arguments and clobber r0-r5; `exit` reads r0.
//! * Stack: a path-insensitive analysis fed while exploring (kernel
//!   `liveness.c`): every instruction accumulates the slots it may read
//!   (union over visits) and the slots it surely overwrites (intersection
//!   over visits); liveness before an instruction is then a backward fixed
//!   point over the subprogram's control flow. Reads of a caller's stack by
//!   a callee count as reads by the call instruction. A state whose every
//!   continuation has been explored (no pending branches) can be queried.
//!
//! Dead registers and dead stack slots of an old state are ignored when a
//! new state is compared with it.

use bpf_isa::{AtomicOp, CallTarget, Insn, InsnIdx, Program, Source};

use crate::helpers::{ArgKind, HelperTable};

/// Bit `i` = register `ri`; r10 (bit 10) is always live.
pub(crate) type RegMask = u16;

const R0: RegMask = 1;
const ARGS: RegMask = 0b11_1110;
const CALLER_SAVED: RegMask = 0b11_1111;
/// r10, always live.
pub(crate) const FP: RegMask = 1 << 10;

fn bit(r: bpf_isa::Reg) -> RegMask {
    1 << r.idx()
}

fn src_bit(s: Source) -> RegMask {
    match s {
        Source::Reg(r) => bit(r),
        Source::Imm(_) => 0,
    }
}

/// Successor slots of the instruction at `pc` within its function.
pub(crate) fn successors(insn: &Insn, pc: usize) -> ([usize; 2], usize) {
    let next = pc + insn.slots();
    match *insn {
        Insn::Exit => ([0, 0], 0),
        Insn::Ja { .. } | Insn::JaLong { .. } => {
            let t = (next as i64 + insn.branch_offset().unwrap_or(0)) as usize;
            ([t, 0], 1)
        }
        Insn::Jmp { off, .. } | Insn::MayGoto { off } => {
            ([next, (next as i64 + off as i64) as usize], 2)
        }
        _ => ([next, 0], 1),
    }
}

/// `(use, def)` register masks of one instruction.
fn use_def(insn: &Insn, helpers: &HelperTable) -> (RegMask, RegMask) {
    match *insn {
        Insn::Alu { op, dst, src, .. } => {
            if op == bpf_isa::AluOp::Mov {
                (src_bit(src), bit(dst))
            } else {
                (bit(dst) | src_bit(src), bit(dst))
            }
        }
        Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => (bit(dst), bit(dst)),
        Insn::MovSx { dst, src, .. } => (bit(src), bit(dst)),
        Insn::AddrSpaceCast { dst, src, .. } => (bit(src), bit(dst)),
        Insn::Ja { .. } | Insn::JaLong { .. } | Insn::MayGoto { .. } => (0, 0),
        Insn::Jmp { dst, src, .. } => (bit(dst) | src_bit(src), 0),
        Insn::Call(CallTarget::Helper(id)) => {
            let uses = helpers.get(id).map_or(ARGS, |p| {
                let n = p
                    .args
                    .iter()
                    .take_while(|a| !matches!(a, ArgKind::DontCare))
                    .count();
                ARGS & ((1u16 << (n + 1)) - 1)
            });
            (uses, CALLER_SAVED)
        }
        Insn::Call(_) | Insn::CallReg { .. } => (ARGS, CALLER_SAVED),
        Insn::Exit => (R0, 0),
        Insn::LdImm64 { dst, .. } => (0, bit(dst)),
        Insn::LdAbs { .. } => (1 << 6, CALLER_SAVED),
        Insn::LdInd { src, .. } => ((1 << 6) | bit(src), CALLER_SAVED),
        Insn::Ldx { dst, src, .. } | Insn::LdxSx { dst, src, .. } => (bit(src), bit(dst)),
        Insn::St { dst, .. } => (bit(dst), 0),
        Insn::Stx { dst, src, .. } => (bit(dst) | bit(src), 0),
        Insn::Atomic { op, dst, src, .. } => match op {
            AtomicOp::Cmpxchg => (bit(dst) | bit(src) | R0, R0),
            AtomicOp::LoadAcquire => (bit(src), bit(dst)),
            AtomicOp::StoreRelease => (bit(dst) | bit(src), 0),
            AtomicOp::Xchg
            | AtomicOp::Add { fetch: true }
            | AtomicOp::Or { fetch: true }
            | AtomicOp::And { fetch: true }
            | AtomicOp::Xor { fetch: true } => (bit(dst) | bit(src), bit(src)),
            _ => (bit(dst) | bit(src), 0),
        },
    }
}

/// Registers live before each slot (kernel `live_regs_before`), r10 included.
pub(crate) fn live_regs(prog: &Program, helpers: &HelperTable) -> Vec<RegMask> {
    let n = prog.slot_len();
    let mut ud = vec![(0u16, 0u16); n];
    let mut order: Vec<usize> = Vec::with_capacity(prog.len());
    for (idx, insn) in prog.iter() {
        if let Some(x) = ud.get_mut(idx.slot()) {
            *x = use_def(insn, helpers);
        }
        order.push(idx.slot());
    }
    let mut live = vec![FP; n];
    let mut changed = true;
    while changed {
        changed = false;
        for &pc in order.iter().rev() {
            let Some(insn) = prog.get(InsnIdx::from_u32(pc as u32)) else {
                continue;
            };
            let (succ, k) = successors(insn, pc);
            let mut after = 0;
            for &s in succ.iter().take(k) {
                after |= live.get(s).copied().unwrap_or(0);
            }
            let (u, d) = ud.get(pc).copied().unwrap_or((0, 0));
            let before = u | (after & !d) | FP;
            if let Some(l) = live.get_mut(pc) {
                if *l != before {
                    *l = before;
                    changed = true;
                }
            }
        }
    }
    live
}

/// Per-instruction stack marks of the path-insensitive stack liveness, for
/// the frame the instruction runs in (slot `i` = bit `i`, `fp-8*(i+1)`).
#[derive(Clone, Copy, Default)]
struct Marks {
    may_read: u64,
    must_write: u64,
    written_seen: bool,
    live_before: u64,
}

/// Stack liveness over all instructions of the program.
pub(crate) struct StackLiveness {
    marks: Vec<Marks>,
    /// Slots in program order, for the fixed point.
    order: Vec<usize>,
    dirty: bool,
    /// Write marks of the instruction being executed (own frame only).
    pending_write: u64,
}

impl StackLiveness {
    pub(crate) fn new(prog: &Program) -> StackLiveness {
        StackLiveness {
            marks: vec![Marks::default(); prog.slot_len()],
            order: prog.iter().map(|(i, _)| i.slot()).collect(),
            dirty: false,
            pending_write: 0,
        }
    }

    /// Records that the instruction at `pc` may read `mask`.
    pub(crate) fn read(&mut self, pc: usize, mask: u64) {
        if let Some(m) = self.marks.get_mut(pc) {
            if m.may_read | mask != m.may_read {
                m.may_read |= mask;
                if m.live_before | mask != m.live_before {
                    self.dirty = true;
                }
            }
        }
    }

    /// Records that the instruction being executed overwrites `mask` of its own frame.
    pub(crate) fn write(&mut self, mask: u64) {
        self.pending_write |= mask;
    }

    /// Ends the instruction at `pc`: its writes of this visit join the
    /// intersection over visits.
    pub(crate) fn commit(&mut self, pc: usize) {
        let w = std::mem::take(&mut self.pending_write);
        if let Some(m) = self.marks.get_mut(pc) {
            let new = if m.written_seen { m.must_write & w } else { w };
            if new != m.must_write || !m.written_seen {
                if m.must_write & !new != 0 {
                    self.dirty = true;
                }
                m.must_write = new;
                m.written_seen = true;
            }
        }
    }

    fn update(&mut self, prog: &Program) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let mut changed = true;
        while changed {
            changed = false;
            for &pc in self.order.iter().rev() {
                let Some(insn) = prog.get(InsnIdx::from_u32(pc as u32)) else {
                    continue;
                };
                let (succ, k) = successors(insn, pc);
                let mut after = 0;
                for &s in succ.iter().take(k) {
                    after |= self.marks.get(s).map_or(0, |m| m.live_before);
                }
                let Some(m) = self.marks.get_mut(pc) else {
                    continue;
                };
                let before = m.may_read | (after & !m.must_write);
                if before != m.live_before {
                    m.live_before = before;
                    changed = true;
                }
            }
        }
    }

    /// `(may_read, must_write)` recorded for `pc` so far.
    pub(crate) fn marks_at(&self, pc: usize) -> (u64, u64) {
        self.marks
            .get(pc)
            .map_or((u64::MAX, 0), |m| (m.may_read, m.must_write))
    }

    /// Stack slots live before `pc` (in the frame running at `pc`).
    pub(crate) fn live_before(&mut self, prog: &Program, pc: usize) -> u64 {
        self.update(prog);
        self.marks.get(pc).map_or(u64::MAX, |m| m.live_before)
    }
}

/// Bits of the 8-byte slots overlapping `fp+lo .. fp+hi` (`lo < hi <= 0`).
pub(crate) fn slot_mask(lo: i64, hi: i64) -> u64 {
    if hi <= lo {
        return 0;
    }
    let first = ((-hi) / 8).clamp(0, 63) as u32; // slot holding byte hi-1
    let last = ((-lo - 1) / 8).clamp(0, 63) as u32;
    let mut m = 0u64;
    for s in first..=last {
        m |= 1u64 << s;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_masks() {
        assert_eq!(slot_mask(-8, 0), 1);
        assert_eq!(slot_mask(-16, -8), 2);
        assert_eq!(slot_mask(-12, -4), 3);
        assert_eq!(slot_mask(-1, 0), 1);
    }

    #[test]
    fn registers_hand_computed() {
        // 0: r2 = 0; 1: r0 = r1; 2: if r2 > 3 goto +1; 3: r0 = 1; 4: exit
        let p = bpf_isa::assemble("r2 = 0\nr0 = r1\nif r2 > 3 goto +1\nr0 = 1\nexit").unwrap();
        let l = live_regs(&p, &HelperTable::default());
        assert_eq!(l[0], FP | 0b10); // r1
        assert_eq!(l[1], FP | 0b110); // r1, r2
        assert_eq!(l[2], FP | 0b101); // r0, r2
        assert_eq!(l[3], FP);
        assert_eq!(l[4], FP | 1);
    }
}
