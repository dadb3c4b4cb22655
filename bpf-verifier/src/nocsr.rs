//! `bpf_fastcall` ("no caller-saved registers") spill/fill removal.
//!
//! Around a call to a [fastcall](crate::fastcall) function a compiler keeps
//! registers alive with a symmetric bracket of 8-byte stack spills and
//! fills:
//!
//! ```text
//! *(u64 *)(r10 - 24) = r2      ; spill 2
//! *(u64 *)(r10 - 16) = r1      ; spill 1
//! call bpf_get_smp_processor_id
//! r1 = *(u64 *)(r10 - 16)      ; fill 1
//! r2 = *(u64 *)(r10 - 24)      ; fill 2
//! ```
//!
//! Since the function really preserves those registers, the pairs can go.
//! The kernel (6.12+) enforces one contract per subprogram (the pattern
//! slots lie below every other stack access) and gives up on the whole
//! subprogram at the first violation. This pass decides per pair, from the
//! verifier's per-slot definition sets ([`VerifiedProgram::defining_spills`],
//! [`VerifiedProgram::spill_escapes`]), over the verified paths only. A pair
//! is removed when:
//!
//! * the fill's only possible definition is its spill, on every path the
//!   verifier explored that reached it;
//! * the spilled value is never read other than by that fill (no other
//!   fill, no partial or variable-offset read, no helper or callee access,
//!   no atomic);
//! * nothing can enter the bracket between the spill and the fill except by
//!   falling through (no jump, call or callback targets there), so that the
//!   register still holds the spilled value when the fill runs.
//!
//! Then the pairs are deleted, jump / call / function-reference offsets are
//! fixed, subprogram starts move, and each subprogram's stack depth is
//! recomputed from the stack reach of the instructions that remain
//! ([`crate::InsnAux::stack_extent`]).
//!
//! ```
//! use bpf_verifier::{fastcall::FastcallTable, nocsr, verify, Options, ProgKind};
//!
//! let prog = bpf_isa::assemble(
//!     "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr0 = r1\nexit",
//! )
//! .unwrap();
//! let vp = verify(&prog, &Options::new(ProgKind::RawTracepoint)).unwrap();
//! let out = nocsr::remove_fastcall_spills(&vp, &FastcallTable::linux()).unwrap();
//! assert_eq!(out.removed_pairs(), 1);
//! assert_eq!(out.prog.len(), 4);
//! assert_eq!((out.stack_depth_before[0], out.stack_depth[0]), (8, 0));
//! ```

use bpf_isa::{CallTarget, Insn, LdImm64Src, Program, Reg, Size};
use thiserror::Error;

use crate::fastcall::FastcallTable;
use crate::VerifiedProgram;

/// One spill/fill pair around a fastcall call (instruction slot indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    /// The spill `*(u64 *)(r10 + off) = reg`.
    pub spill: u32,
    /// The call it brackets.
    pub call: u32,
    /// The fill `reg = *(u64 *)(r10 + off)`.
    pub fill: u32,
    /// The register kept alive.
    pub reg: Reg,
    /// The stack offset (negative, a multiple of 8).
    pub off: i16,
    /// Distance from the call (1 for the innermost pair).
    pub depth: u8,
}

/// Why a pair stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keep {
    /// The verifier never reached the fill.
    NotReached,
    /// The fill may read a value some other instruction wrote (the slot's
    /// definitions at the fill, other than the spill, are listed first).
    OtherDefinition(u32),
    /// The spilled value is read other than by a fill.
    Escapes,
    /// Another fill may restore the spilled value too.
    OtherFill,
    /// A jump, call or callback may enter the bracket at this slot.
    JumpInto(u32),
}

/// The decision for one pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The pair.
    pub pair: Pair,
    /// `None`: removed; `Some`: kept, and why.
    pub keep: Option<Keep>,
}

/// What can go wrong rewriting (only on inconsistent input: a
/// [`VerifiedProgram`] whose instructions do not match its facts).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NocsrError {
    /// A jump or call offset does not fit its field after the rewrite, or points nowhere.
    #[error("insn {index}: cannot retarget branch after removing spills/fills")]
    BadBranch {
        /// Slot of the branch in the original program.
        index: usize,
    },
    /// The rewritten program failed validation.
    #[error("insn {index}: rewritten program is invalid: {msg}")]
    Invalid {
        /// Slot in the rewritten program.
        index: usize,
        /// The validation error.
        msg: String,
    },
}

/// The result of [`remove_fastcall_spills`].
#[derive(Clone, Debug)]
pub struct NocsrOutcome {
    /// The rewritten program.
    pub prog: Program,
    /// Every pair found, with its decision, in program order of the calls.
    pub decisions: Vec<Decision>,
    /// Old slot → new slot; a deleted instruction maps to the slot of the next
    /// instruction that stays (where a jump to it now lands). One extra
    /// entry maps the end of the program.
    pub slot_map: Vec<u32>,
    /// Subprogram start slots in the rewritten program.
    pub subprog_starts: Vec<u32>,
    /// Stack depth per subprogram after the rewrite (bytes).
    pub stack_depth: Vec<u32>,
    /// Stack depth per subprogram before (the verifier's).
    pub stack_depth_before: Vec<u32>,
}

impl NocsrOutcome {
    /// Number of pairs removed.
    pub fn removed_pairs(&self) -> usize {
        self.decisions.iter().filter(|d| d.keep.is_none()).count()
    }

    /// Stack bytes saved, summed over subprograms.
    pub fn stack_saved(&self) -> u32 {
        self.stack_depth_before
            .iter()
            .zip(&self.stack_depth)
            .map(|(b, a)| b.saturating_sub(*a))
            .sum()
    }

    /// Moves line-info style records (`(insn_off, payload)`, ascending) to
    /// the rewritten program: a record on a deleted instruction moves to
    /// the next instruction that stays, unless that one has its own record.
    pub fn remap_line_info<T: Clone>(&self, records: &[(u32, T)]) -> Vec<(u32, T)> {
        let end = self.slot_map.last().copied().unwrap_or(0);
        let mut out: Vec<(u32, T)> = Vec::with_capacity(records.len());
        for (off, payload) in records {
            let new = self.slot_map.get(*off as usize).copied().unwrap_or(end);
            if new >= end {
                continue;
            }
            match out.last_mut() {
                // A later record for the same new slot: it belongs to an
                // instruction that stays (or is later), so it wins.
                Some(last) if last.0 == new => *last = (new, payload.clone()),
                _ => out.push((new, payload.clone())),
            }
        }
        out
    }
}

fn is_spill(insn: &Insn) -> Option<(Reg, i16)> {
    match *insn {
        Insn::Stx {
            size: Size::DW,
            dst: Reg::R10,
            src,
            off,
        } if off < 0 && off % 8 == 0 => Some((src, off)),
        _ => None,
    }
}

fn is_fill(insn: &Insn) -> Option<(Reg, i16)> {
    match *insn {
        Insn::Ldx {
            size: Size::DW,
            dst,
            src: Reg::R10,
            off,
        } if off < 0 && off % 8 == 0 => Some((dst, off)),
        _ => None,
    }
}

/// Finds the spill/fill brackets around calls to fastcall functions: for a
/// call at position `c`, pairs `(c - i, c + i)` for `i = 1, 2, …` while
/// position `c - i` spills and `c + i` fills the same register at the same
/// 8-byte-aligned offset, and the register is preserved by the call and
/// not already used by an inner pair (the kernel's shape, without its
/// constraint on the offsets). Every table entry counts, whatever its
/// [`FastcallScope`](crate::fastcall::FastcallScope); [`find_pairs_for`]
/// applies the scopes.
pub fn find_pairs(prog: &Program, table: &FastcallTable) -> Vec<Pair> {
    pairs_with(prog, |t| table.lookup(t))
}

/// [`find_pairs`] for a program of type `kind`: only calls to functions
/// that are fastcall for that type ([`FastcallTable::lookup_for`]).
pub fn find_pairs_for(prog: &Program, table: &FastcallTable, kind: crate::ProgKind) -> Vec<Pair> {
    pairs_with(prog, |t| table.lookup_for(t, kind))
}

fn pairs_with<'t>(
    prog: &Program,
    lookup: impl Fn(&CallTarget) -> Option<&'t crate::fastcall::FastcallFn>,
) -> Vec<Pair> {
    let insns = prog.insns();
    let starts = prog.starts();
    let mut out = Vec::new();
    for (c, insn) in insns.iter().enumerate() {
        let Insn::Call(target) = insn else { continue };
        let Some(f) = lookup(target) else {
            continue;
        };
        let mut allowed = f.preserves();
        for i in 1..=5usize {
            let (Some(lo), Some(hi)) = (c.checked_sub(i), c.checked_add(i)) else {
                break;
            };
            let (Some(stx), Some(ldx)) = (insns.get(lo), insns.get(hi)) else {
                break;
            };
            let (Some((rs, os)), Some((rf, of))) = (is_spill(stx), is_fill(ldx)) else {
                break;
            };
            if rs != rf || os != of || !allowed.contains(rs) {
                break;
            }
            allowed = allowed.without(crate::fastcall::RegMask(1 << rs.num()));
            let slot = |k: usize| starts.get(k).copied().unwrap_or(0);
            out.push(Pair {
                spill: slot(lo),
                call: slot(c),
                fill: slot(hi),
                reg: rs,
                off: os,
                depth: i as u8,
            });
        }
    }
    out
}

/// Slots where control may arrive other than by falling through: jump
/// targets, local call targets, callback (`ld_imm64` function) targets and
/// subprogram starts.
fn entry_points(prog: &Program, subprog_starts: &[u32]) -> Vec<bool> {
    let n = prog.slot_len();
    let mut t = vec![false; n + 1];
    let mut mark = |s: i64| {
        if let Some(x) = usize::try_from(s).ok().and_then(|s| t.get_mut(s)) {
            *x = true;
        }
    };
    for &s in subprog_starts {
        mark(s as i64);
    }
    for (idx, insn) in prog.iter() {
        let pc = idx.slot() as i64;
        let next = pc + insn.slots() as i64;
        if let Some(off) = insn.branch_offset() {
            mark(next + off);
        }
        match *insn {
            Insn::Call(CallTarget::Local(off)) => mark(pc + 1 + off as i64),
            Insn::LdImm64 {
                src: LdImm64Src::Func(off),
                ..
            } => mark(pc + 1 + off as i64),
            _ => {}
        }
    }
    t
}

/// Decides each pair of [`find_pairs_for`] (the verified program's type
/// selects the table entries that hold) from the verifier's facts.
pub fn decide(vp: &VerifiedProgram, table: &FastcallTable) -> Vec<Decision> {
    let entries = entry_points(&vp.prog, &vp.subprog_starts);
    // Spills restored by more than one fill: another fill would read a
    // stale value once the spill is gone.
    let mut fills_of = vec![0u32; vp.aux.len()];
    for a in &vp.aux {
        for &d in a.fill_defs.as_slice() {
            if let Some(c) = fills_of.get_mut(d as usize) {
                *c = c.saturating_add(1);
            }
        }
    }
    find_pairs_for(&vp.prog, table, vp.prog_kind)
        .into_iter()
        .map(|pair| {
            let keep = decide_pair(vp, &entries, &fills_of, &pair);
            Decision { pair, keep }
        })
        .collect()
}

fn decide_pair(vp: &VerifiedProgram, entries: &[bool], fills_of: &[u32], p: &Pair) -> Option<Keep> {
    // Nothing may enter strictly after the spill up to the fill.
    for s in p.spill + 1..=p.fill {
        if entries.get(s as usize).copied().unwrap_or(false) {
            return Some(Keep::JumpInto(s));
        }
    }
    let defs = vp.defining_spills(p.fill as usize);
    if defs.is_empty() {
        return Some(Keep::NotReached);
    }
    if let Some(&other) = defs.iter().find(|&&d| d != p.spill) {
        return Some(Keep::OtherDefinition(other));
    }
    if vp.spill_escapes(p.spill as usize) {
        return Some(Keep::Escapes);
    }
    if fills_of.get(p.spill as usize).copied().unwrap_or(0) > 1 {
        return Some(Keep::OtherFill);
    }
    None
}

/// Verifies `prog`, removes the removable fastcall spill/fill pairs, and
/// only then checks the combined stack depth of call chains against the
/// 512-byte limit with the reduced depths, in the kernel's order
/// (`bpf_check` runs `remove_fastcall_spills_fills` before
/// `check_max_stack_depth`): a program over the limit only because of
/// brackets the rewrite removes is accepted here, while [`crate::verify`]
/// (no rewrite) rejects it.
pub fn verify_and_remove_fastcall_spills(
    prog: &Program,
    opts: &crate::Options,
    table: &FastcallTable,
) -> Result<(VerifiedProgram, NocsrOutcome), crate::VerifierError> {
    let (vp, cg) = crate::explore(prog, opts).map_err(|(e, _)| e)?;
    let out = remove_fastcall_spills(&vp, table).map_err(|e| {
        let index = match e {
            NocsrError::BadBranch { index } | NocsrError::Invalid { index, .. } => index,
        };
        crate::VerifierError::new(index, crate::ErrorKind::ControlFlow, e.to_string())
    })?;
    crate::check_call_chains(&cg, &out.stack_depth, opts, &vp.log).map_err(|(e, _)| e)?;
    Ok((vp, out))
}

/// Decides every pair and deletes the removable ones (see the module docs).
pub fn remove_fastcall_spills(
    vp: &VerifiedProgram,
    table: &FastcallTable,
) -> Result<NocsrOutcome, NocsrError> {
    let decisions = decide(vp, table);
    let prog = &vp.prog;
    let n = prog.slot_len();
    let mut removed = vec![false; n];
    for d in decisions.iter().filter(|d| d.keep.is_none()) {
        for s in [d.pair.spill, d.pair.fill] {
            if let Some(r) = removed.get_mut(s as usize) {
                *r = true;
            }
        }
    }
    // Old slot -> new slot; deleted slots map to the next kept one.
    let mut slot_map = vec![0u32; n + 1];
    let mut new = 0u32;
    for (idx, insn) in prog.iter() {
        let s = idx.slot();
        let gone = removed.get(s).copied().unwrap_or(false);
        for k in 0..insn.slots() {
            if let Some(m) = slot_map.get_mut(s + k) {
                *m = new + k as u32;
            }
        }
        if !gone {
            new += insn.slots() as u32;
        }
    }
    if let Some(m) = slot_map.get_mut(n) {
        *m = new;
    }
    let map = |old: i64, at: usize| -> Result<i64, NocsrError> {
        usize::try_from(old)
            .ok()
            .and_then(|o| slot_map.get(o))
            .map(|&v| v as i64)
            .ok_or(NocsrError::BadBranch { index: at })
    };
    let mut out = Vec::with_capacity(prog.len());
    for (idx, insn) in prog.iter() {
        let s = idx.slot();
        if removed.get(s).copied().unwrap_or(false) {
            continue;
        }
        let old_next = (s + insn.slots()) as i64;
        let new_pc = map(s as i64, s)?;
        let new_next = new_pc + insn.slots() as i64;
        let off16 = |old_off: i64| -> Result<i16, NocsrError> {
            let t = map(old_next + old_off, s)?;
            i16::try_from(t - new_next).map_err(|_| NocsrError::BadBranch { index: s })
        };
        let off32 = |old_off: i64, base_old: i64, base_new: i64| -> Result<i32, NocsrError> {
            let t = map(base_old + old_off, s)?;
            i32::try_from(t - base_new).map_err(|_| NocsrError::BadBranch { index: s })
        };
        let rewritten = match *insn {
            Insn::Ja { off } => Insn::Ja {
                off: off16(off as i64)?,
            },
            Insn::JaLong { imm } => Insn::JaLong {
                imm: off32(imm as i64, old_next, new_next)?,
            },
            Insn::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => Insn::Jmp {
                width,
                cond,
                dst,
                src,
                off: off16(off as i64)?,
            },
            Insn::MayGoto { off } => Insn::MayGoto {
                off: off16(off as i64)?,
            },
            Insn::Call(CallTarget::Local(off)) => Insn::Call(CallTarget::Local(off32(
                off as i64,
                s as i64 + 1,
                new_pc + 1,
            )?)),
            Insn::LdImm64 {
                dst,
                src: LdImm64Src::Func(off),
            } => Insn::LdImm64 {
                dst,
                src: LdImm64Src::Func(off32(off as i64, s as i64 + 1, new_pc + 1)?),
            },
            other => other,
        };
        out.push(rewritten);
    }
    let new_prog = Program::from_insns(out);
    new_prog.validate().map_err(|e| NocsrError::Invalid {
        index: e.index,
        msg: e.kind.to_string(),
    })?;
    let subprog_starts: Vec<u32> = vp
        .subprog_starts
        .iter()
        .map(|&s| slot_map.get(s as usize).copied().unwrap_or(new))
        .collect();
    // Stack depth: the deepest reach of the instructions that stay.
    let mut stack_depth = vec![0u32; vp.subprog_starts.len().max(1)];
    for (idx, _) in prog.iter() {
        let s = idx.slot();
        if removed.get(s).copied().unwrap_or(false) {
            continue;
        }
        let Some(a) = vp.aux.get(s) else { continue };
        for &(start, bytes) in &a.stack_extent {
            let i = vp.subprog_starts.binary_search(&start).unwrap_or(0);
            if let Some(d) = stack_depth.get_mut(i) {
                *d = (*d).max(bytes);
            }
        }
    }
    let mut stack_depth_before = vp.stack_depth.clone();
    stack_depth_before.resize(stack_depth.len(), 0);
    // Never report more than the verifier did.
    for (a, b) in stack_depth.iter_mut().zip(&stack_depth_before) {
        *a = (*a).min(*b);
    }
    Ok(NocsrOutcome {
        prog: new_prog,
        decisions,
        slot_map,
        subprog_starts,
        stack_depth,
        stack_depth_before,
    })
}
