//! The exploration engine: depth-first walk of all paths with a stack of
//! pending branches, state pruning at prune points, loop detection and the
//! kernel's complexity limits. Instruction semantics live in
//! [`crate::transfer`] and memory checks in [`crate::check`].

use std::fmt::Write as _;

use bpf_isa::{CallTarget, Flow, Insn, InsnIdx, Program};
use smallvec::SmallVec;

use crate::error::{ErrorKind, VerifierError};
use crate::liveness::{self, StackLiveness};
use crate::platform::{Options, BPF_COMPLEXITY_LIMIT_JMP_SEQ};
use crate::precision::{Bt, Hist};
use crate::prune::{states_equal, states_equal_defs, Liveness, Mode};
use crate::reg::{fmt_reg, MapNames, RegState, RegType};
use crate::stack::InsnSet;
use crate::state::{Frame, State};
use crate::{InsnAux, VerifiedProgram};

/// The kernel's limit on states per instruction without privileges.
const BPF_COMPLEXITY_LIMIT_STATES: u64 = 64;

/// One explored state kept for pruning (a checkpoint).
pub(crate) struct Explored {
    pub(crate) state: State,
    pub(crate) parent: Option<u32>,
    /// Paths still being explored below this state.
    pub(crate) branches: u32,
    /// Slot of the instruction the state is at.
    pub(crate) pc: u32,
    /// Instructions processed from the parent checkpoint up to this one.
    pub(crate) hist: Vec<Hist>,
    /// Times a state was pruned against this one.
    hit: u32,
    /// Times a comparison failed while new states were being added.
    miss: u32,
    /// Dropped from its instruction's list (still counted in the peak until
    /// its paths are done, as the kernel's free list).
    evicted: bool,
}

/// A path waiting to be explored.
pub(crate) struct Pending {
    pub(crate) state: State,
    pub(crate) pc: usize,
    pub(crate) parent: Option<u32>,
    pub(crate) from: usize,
    pub(crate) hist: Vec<Hist>,
    /// Kernel jump-history entries of the path since `parent` (see [`Env::jmp_hist`]).
    pub(crate) jmp_hist: u32,
    /// Log length when the path was pushed (level 1 cuts the log back to
    /// it when the path is popped, as the kernel's `pop_stack`).
    pub(crate) log_pos: usize,
}

/// Where an instruction sends the current path.
pub(crate) enum Next {
    /// Continue at this slot.
    Goto(usize),
    /// Continue at `pc` here and also explore `other` at `other_pc`.
    Fork {
        pc: usize,
        other: Box<State>,
        other_pc: usize,
    },
    /// The path ended (program exit).
    End,
}

/// Verification context shared by all paths.
pub(crate) struct Env<'a> {
    pub(crate) prog: &'a Program,
    pub(crate) opts: &'a Options,
    pub(crate) id_gen: u32,
    pub(crate) aux: Vec<InsnAux>,
    pub(crate) explored: Vec<Explored>,
    /// Explored states per slot (indices into `explored`).
    pub(crate) at: Vec<SmallVec<[u32; 2]>>,
    pub(crate) prune_point: Vec<bool>,
    /// Helper calls that call a callback (`bpf_loop`): forced checkpoints
    /// where callback iterations are compared (kernel `calls_callback`).
    pub(crate) calls_callback: Vec<bool>,
    pub(crate) stack: Vec<Pending>,
    pub(crate) processed: u64,
    pub(crate) total_states: u64,
    pub(crate) peak_states: u64,
    pub(crate) cur_states: u64,
    pub(crate) log: String,
    /// Deepest stack byte touched per subprogram (by start slot).
    pub(crate) depth: Vec<u32>,
    /// Subprogram starts, ascending.
    pub(crate) subprog_starts: Vec<u32>,
    /// Checkpoint the current path descends from.
    pub(crate) parent: Option<u32>,
    /// Instructions the current path processed since `parent`.
    pub(crate) hist: Vec<Hist>,
    /// How many entries the kernel's jump history (`jmp_history_cnt`) of
    /// the current path holds since `parent`: one per instruction that is
    /// a jump point (a branch target or the return point of a call), spills
    /// or fills a register, or compares a scalar linked to others. Over 40
    /// forces a checkpoint.
    pub(crate) jmp_hist: u32,
    /// The current instruction already has its jump-history entry.
    pub(crate) jmp_hist_pushed: bool,
    /// Jump points (kernel `mark_jmp_point`).
    jmp_point: Vec<bool>,
    /// Slot of the instruction being processed.
    pub(crate) cur_pc: usize,
    /// Spill or fill of the instruction being processed, for `hist`.
    pub(crate) cur_stack: u16,
    /// Registers live before each slot.
    live_regs: Vec<u16>,
    /// The raw instructions (level 2 log only).
    raw: Vec<bpf_isa::RawInsn>,
    /// Stack liveness.
    pub(crate) stack_live: StackLiveness,
    /// Conditional and unconditional jumps, calls and exits processed.
    jmps_processed: u64,
    prev_jmps: u64,
    prev_insns: u64,
    pub(crate) max_states: u64,
    /// Component id per slot (see [`crate::scc`]).
    scc: Vec<u32>,
    /// Visits of components, by call chain.
    visits: Vec<SccVisit>,
    /// Back-edges held by all visits (counted in `peak_states`).
    num_backedges: u64,
    /// Precision marks set so far (to see when back-edge propagation settles).
    pub(crate) precise_marks: u64,
}

/// A component's call chain: the call sites of the frames outside it, and its id.
type SccKey = (SmallVec<[u32; 4]>, u32);

/// One visit of a component for one call chain (kernel `bpf_scc_visit`).
struct SccVisit {
    key: SccKey,
    /// The checkpoint that opened the visit.
    entry: Option<u32>,
    backedges: Vec<Backedge>,
}

/// A path pruned inside a loop by range inclusion, kept for the
/// precision propagation when its component's visit ends.
struct Backedge {
    state: State,
    parent: Option<u32>,
    hist: Vec<Hist>,
    pc: usize,
    /// The checkpoint it was found equal to.
    equal: u32,
}

impl MapNames for Options {
    fn map_desc(&self, idx: u32) -> Option<(&str, u32, u32)> {
        self.maps
            .get(idx as usize)
            .map(|m| (m.name.as_str(), m.key_size, m.value_size))
    }
}

impl<'a> Env<'a> {
    pub(crate) fn new(prog: &'a Program, opts: &'a Options, subprog_starts: Vec<u32>) -> Env<'a> {
        let n = prog.slot_len();
        let mut prune_point = vec![false; n];
        let mut jmp_point = vec![false; n];
        let mut calls_callback = vec![false; n];
        for (idx, insn) in prog.iter() {
            let pc = idx.slot();
            let next = pc + insn.slots();
            let mut mark = |t: usize| {
                if let Some(p) = prune_point.get_mut(t) {
                    *p = true;
                }
            };
            let mut jmp = |t: usize| {
                if let Some(p) = jmp_point.get_mut(t) {
                    *p = true;
                }
            };
            // Jump points: targets of branch edges, the return points of
            // calls and callback-calling calls themselves (`visit_insn`).
            match *insn {
                Insn::Jmp { off, .. } | Insn::MayGoto { off } => {
                    jmp((next as i64 + off as i64) as usize);
                }
                Insn::Ja { .. } | Insn::JaLong { .. } => {
                    jmp((next as i64 + insn.branch_offset().unwrap_or(0)) as usize);
                }
                Insn::Call(CallTarget::Local(off)) => {
                    jmp(next);
                    jmp((pc as i64 + 1 + off as i64) as usize);
                }
                Insn::Call(CallTarget::Helper(id))
                    if opts
                        .helpers
                        .get(id)
                        .is_some_and(|p| p.special == crate::helpers::Special::Loop) =>
                {
                    jmp(next);
                    jmp(pc);
                }
                Insn::Call(_) => jmp(next),
                Insn::LdImm64 {
                    src: bpf_isa::LdImm64Src::Func(off),
                    ..
                } => {
                    jmp(next);
                    jmp((pc as i64 + 1 + off as i64) as usize);
                }
                _ => {}
            }
            // Prune points as the kernel's `visit_insn` marks them.
            match *insn {
                Insn::Jmp { off, .. } | Insn::MayGoto { off } => {
                    mark(pc);
                    mark((next as i64 + off as i64) as usize);
                }
                Insn::Ja { .. } | Insn::JaLong { .. } => {
                    let off = insn.branch_offset().unwrap_or(0);
                    mark((next as i64 + off) as usize);
                }
                Insn::Call(CallTarget::Local(off)) => {
                    mark(next);
                    mark(pc);
                    mark((pc as i64 + 1 + off as i64) as usize);
                }
                Insn::Call(CallTarget::Helper(id))
                    if opts
                        .helpers
                        .get(id)
                        .is_some_and(|p| p.special == crate::helpers::Special::Loop) =>
                {
                    mark(next);
                    mark(pc);
                    if let Some(c) = calls_callback.get_mut(pc) {
                        *c = true;
                    }
                }
                Insn::Call(_) => mark(next),
                Insn::LdImm64 {
                    src: bpf_isa::LdImm64Src::Func(off),
                    ..
                } => {
                    let t = (pc as i64 + 1 + off as i64) as usize;
                    mark(next);
                    mark(pc);
                    mark(t);
                }
                _ => {}
            }
        }
        Env {
            prog,
            opts,
            id_gen: 0,
            aux: vec![InsnAux::default(); n],
            explored: Vec::new(),
            at: vec![SmallVec::new(); n],
            prune_point,
            calls_callback,
            stack: Vec::new(),
            processed: 0,
            total_states: 0,
            peak_states: 0,
            cur_states: 0,
            log: String::new(),
            depth: vec![0; subprog_starts.len().max(1)],
            subprog_starts,
            parent: None,
            hist: Vec::new(),
            jmp_hist: 0,
            jmp_hist_pushed: false,
            jmp_point,
            cur_pc: 0,
            cur_stack: Hist::NO_STACK,
            live_regs: liveness::live_regs(prog, &opts.helpers),
            raw: if opts.log_level >= 1 {
                prog.to_raw()
            } else {
                Vec::new()
            },
            stack_live: StackLiveness::new(prog),
            jmps_processed: 0,
            prev_jmps: 0,
            prev_insns: 0,
            max_states: 0,
            scc: crate::scc::compute(prog),
            visits: Vec::new(),
            num_backedges: 0,
            precise_marks: 0,
        }
    }

    pub(crate) fn new_id(&mut self) -> u32 {
        self.id_gen = self.id_gen.wrapping_add(1).max(1);
        self.id_gen
    }

    /// Index of the subprogram starting at `start`.
    pub(crate) fn subprog_index(&self, start: u32) -> usize {
        self.subprog_starts.binary_search(&start).unwrap_or(0)
    }

    pub(crate) fn err(&mut self, pc: usize, kind: ErrorKind, msg: String) -> VerifierError {
        if self.opts.log_level > 0 {
            let _ = writeln!(self.log, "{msg}");
        }
        VerifierError::new(pc, kind, msg)
    }

    fn end_path(&mut self, parent: Option<u32>) {
        let mut p = parent;
        while let Some(i) = p {
            let Some(e) = self.explored.get_mut(i as usize) else {
                break;
            };
            e.branches = e.branches.saturating_sub(1);
            if e.branches > 0 {
                break;
            }
            let (evicted, parent) = (e.evicted, e.parent);
            self.exit_scc(i);
            // `maybe_free_verifier_state`: an evicted state is freed once
            // explored, unless its loop's marks are still incomplete.
            if evicted && !self.incomplete_marks(i) {
                self.cur_states = self.cur_states.saturating_sub(1);
            }
            p = parent;
        }
    }

    fn add_branch(&mut self, parent: Option<u32>) {
        if let Some(e) = parent.and_then(|i| self.explored.get_mut(i as usize)) {
            e.branches += 1;
        }
    }

    /// Liveness of a state at `pc`: registers and stack slots per frame.
    fn state_liveness(&mut self, st: &State, pc: usize, regs: &mut [u16; 8], stack: &mut [u64; 8]) {
        let n = st.frames.len();
        for (i, f) in st.frames.iter().enumerate().take(8) {
            // Outer frames are queried at their call instruction.
            let at = if i + 1 == n {
                pc
            } else {
                st.frames.get(i + 1).map_or(pc, |g| g.callsite as usize)
            };
            let _ = f;
            regs[i] = self.live_regs.get(at).copied().unwrap_or(u16::MAX);
            stack[i] = self.stack_live.live_before(self.prog, at);
        }
    }

    /// Pruning check at a prune point (kernel `is_state_visited`). `Ok(true)`: prune the path.
    fn visit(&mut self, cur: &mut State, pc: usize) -> Result<bool, VerifierError> {
        let is_may_goto = matches!(
            self.prog.get(InsnIdx::from_u32(pc as u32)),
            Some(Insn::MayGoto { .. })
        );
        let calls_cb = self.calls_callback.get(pc).copied().unwrap_or(false);
        // Callback-calling helpers and may_goto are forced checkpoints; a
        // long jump history forces one too (kernel `force_new_state`).
        let force_ckpt = calls_cb || is_may_goto;
        let force = force_ckpt || self.jmp_hist > 40;
        let mut add_new = force
            || (self.jmps_processed - self.prev_jmps >= 2 && self.processed - self.prev_insns >= 8);
        // Newest first, as the kernel's list (new states go to its head):
        // the order decides which state a path is pruned against and whose
        // miss counts grow.
        let list: SmallVec<[u32; 8]> = self
            .at
            .get(pc)
            .map(|v| v.iter().rev().copied().collect())
            .unwrap_or_default();
        let privileged = self.opts.privileged;
        let mut states_cnt = 0u64;
        let mut evict: SmallVec<[u32; 4]> = SmallVec::new();
        let mut regs = [u16::MAX; 8];
        let mut stack = [u64::MAX; 8];
        for &i in &list {
            states_cnt += 1;
            let Some(e) = self.explored.get(i as usize) else {
                continue;
            };
            let branches = e.branches;
            let mut hit = false;
            // A hit by range inclusion inside a loop leaves a back-edge.
            let mut lp = false;
            if branches > 0 {
                // Stack liveness is only known once a state is fully explored.
                self.state_liveness(cur, pc, &mut regs, &mut stack);
                stack = [u64::MAX; 8];
                let Some(e) = self.explored.get(i as usize) else {
                    continue;
                };
                let live = Liveness {
                    regs: &regs,
                    stack: &stack,
                    privileged,
                };
                // Loops whose iterations the kernel bounds otherwise (the
                // hidden may_goto counter, the callback iteration count)
                // converge when an iteration's state lies within an earlier
                // one's ranges.
                let mut mismatch = 0u64;
                if is_may_goto && e.state.may_goto_depth != cur.may_goto_depth || calls_cb {
                    hit = states_equal_defs(
                        &e.state,
                        cur,
                        Mode::RangeWithin,
                        &live,
                        Some(&mut mismatch),
                    );
                    lp = hit && is_may_goto && e.state.may_goto_depth != cur.may_goto_depth;
                }
                if hit {
                    if mismatch != 0 {
                        self.account_defs(pc, cur, mismatch);
                    }
                } else if calls_cb {
                    // Not converged yet: another iteration, not an infinite loop.
                } else if e.state.may_goto_depth == cur.may_goto_depth
                    && e.state.callback_unroll_depth == cur.callback_unroll_depth
                    && states_equal(&e.state, cur, Mode::Exact, &live)
                {
                    let old = (self.opts.log_level > 0).then(|| e.state.clone());
                    let err = self.err(
                        pc,
                        ErrorKind::InfiniteLoop,
                        format!("infinite loop detected at insn {pc}"),
                    );
                    if let Some(old) = old {
                        // Both states follow the message, as in the kernel.
                        self.log.push_str("cur state:");
                        self.log_state(cur);
                        self.log.push_str("old state:");
                        self.log_state(&old);
                    }
                    return Err(err);
                }
                if !hit
                    && !force
                    && self.jmps_processed - self.prev_jmps < 20
                    && self.processed - self.prev_insns < 100
                {
                    add_new = false;
                }
            } else {
                let st_pc = e.pc as usize;
                let old = e.state.clone();
                self.state_liveness(&old, st_pc, &mut regs, &mut stack);
                let live = Liveness {
                    regs: &regs,
                    stack: &stack,
                    privileged,
                };
                let mut mismatch = 0u64;
                // Marks of a loop's checkpoints are incomplete while the
                // loop is being explored: every scalar is compared by range.
                lp = self.incomplete_marks(i);
                let mode = if lp {
                    Mode::RangeWithin
                } else {
                    Mode::NotExact
                };
                hit = states_equal_defs(&old, cur, mode, &live, Some(&mut mismatch));
                if hit && mismatch != 0 {
                    self.account_defs(st_pc, cur, mismatch);
                }
            }
            if hit {
                if let Some(e) = self.explored.get_mut(i as usize) {
                    e.hit += 1;
                }
                self.propagate_precision(i, cur, &regs, &stack);
                if lp {
                    self.add_backedge(i, cur, pc);
                }
                // The kernel counts `max_states_per_insn` on misses only.
                if self.opts.log_level >= 2 {
                    let _ = writeln!(self.log, "{pc}: safe");
                }
                self.evict(pc, &evict);
                return Ok(true);
            }
            if let Some(e) = self.explored.get_mut(i as usize) {
                if add_new {
                    e.miss += 1;
                }
                let n = if force_ckpt && e.branches > 0 { 64 } else { 3 };
                if e.miss > e.hit * n + n {
                    evict.push(i);
                }
            }
        }
        self.evict(pc, &evict);
        self.max_states = self.max_states.max(states_cnt);
        if !privileged && states_cnt > BPF_COMPLEXITY_LIMIT_STATES {
            return Ok(false);
        }
        if !add_new {
            return Ok(false);
        }
        self.prev_jmps = self.jmps_processed;
        self.prev_insns = self.processed;
        if privileged {
            // Forget inherited precision marks.
            cur.for_each_reg(|r| r.precise = false);
        }
        let idx = self.explored.len() as u32;
        // The new checkpoint starts a new jump history.
        self.jmp_hist = 0;
        self.explored.push(Explored {
            state: cur.clone(),
            parent: self.parent,
            branches: 1,
            pc: pc as u32,
            hist: std::mem::take(&mut self.hist),
            hit: 0,
            miss: 0,
            evicted: false,
        });
        if let Some(v) = self.at.get_mut(pc) {
            v.push(idx);
        }
        self.parent = Some(idx);
        self.total_states += 1;
        self.cur_states += 1;
        self.peak_states = self.peak_states.max(self.cur_states + self.num_backedges);
        self.enter_scc(idx);
        Ok(false)
    }

    /// A path was pruned at an old state at `start` although slots `mask` of
    /// its innermost frame hold values some of whose defining instructions
    /// the old state did not have: every later read of those slots that the
    /// old state's continuation performed (found through the recorded stack
    /// reads) is credited with the extra definitions, as a fill (8-byte
    /// loads of a full spill, which also count as escaping, conservatively)
    /// or as an escape.
    fn account_defs(&mut self, start: usize, cur: &State, mask: u64) {
        let n = self.prog.slot_len();
        let mut visited = vec![0u64; n];
        let mut work: Vec<(usize, u64)> = vec![(start, mask)];
        let frame = cur.cur();
        while let Some((pc, m)) = work.pop() {
            let Some(v) = visited.get_mut(pc) else {
                continue;
            };
            let new = m & !*v;
            if new == 0 {
                continue;
            }
            *v |= new;
            let Some(insn) = self.prog.get(InsnIdx::from_u32(pc as u32)).copied() else {
                continue;
            };
            let (may_read, must_write) = self.stack_live.marks_at(pc);
            let readers = may_read & new;
            for x in 0..64usize {
                if readers & (1u64 << x) == 0 {
                    continue;
                }
                let Some(slot) = frame.stack.slot(x) else {
                    continue;
                };
                let defs = slot.defs.clone();
                let full_load = matches!(
                    insn,
                    Insn::Ldx {
                        size: bpf_isa::Size::DW,
                        ..
                    }
                );
                if full_load && slot.is_full_spill() {
                    self.note_fill(pc, &defs);
                }
                self.note_escape(&defs);
            }
            let cont = new & !must_write;
            if cont == 0 {
                continue;
            }
            let (succ, k) = liveness::successors(&insn, pc);
            for &t in succ.iter().take(k) {
                work.push((t, cont));
            }
        }
    }

    fn evict(&mut self, pc: usize, which: &[u32]) {
        if which.is_empty() {
            return;
        }
        if let Some(v) = self.at.get_mut(pc) {
            v.retain(|i| !which.contains(i));
        }
        for &i in which {
            let explored = if let Some(e) = self.explored.get_mut(i as usize) {
                e.evicted = true;
                e.branches == 0
            } else {
                false
            };
            if explored && !self.incomplete_marks(i) {
                self.cur_states = self.cur_states.saturating_sub(1);
            }
        }
    }

    /// The call chain of `st` at `pc` up to the first frame inside a
    /// component (kernel `compute_scc_callchain`); `None` outside loops.
    fn scc_key(&self, st: &State, pc: usize) -> Option<SccKey> {
        let n = st.frames.len();
        let mut sites = SmallVec::new();
        for i in 0..n {
            let at = if i + 1 == n {
                pc
            } else {
                st.frames.get(i + 1)?.callsite as usize
            };
            let id = self.scc.get(at).copied().unwrap_or(0);
            if id != 0 {
                return Some((sites, id));
            }
            if i + 1 == n {
                return None;
            }
            sites.push(at as u32);
        }
        None
    }

    fn explored_key(&self, i: u32) -> Option<SccKey> {
        let e = self.explored.get(i as usize)?;
        self.scc_key(&e.state, e.pc as usize)
    }

    /// Whether checkpoint `i` lies in a loop visit holding back-edges
    /// (kernel `incomplete_read_marks`).
    fn incomplete_marks(&self, i: u32) -> bool {
        let Some(key) = self.explored_key(i) else {
            return false;
        };
        self.visits
            .iter()
            .find(|v| v.key == key)
            .is_some_and(|v| !v.backedges.is_empty())
    }

    /// A new checkpoint inside a loop opens its visit if none is open
    /// (kernel `maybe_enter_scc`).
    fn enter_scc(&mut self, i: u32) {
        let Some(key) = self.explored_key(i) else {
            return;
        };
        match self.visits.iter_mut().find(|v| v.key == key) {
            Some(v) => {
                if v.entry.is_none() {
                    v.entry = Some(i);
                }
            }
            None => self.visits.push(SccVisit {
                key,
                entry: Some(i),
                backedges: Vec::new(),
            }),
        }
    }

    /// Keeps the current path, pruned against checkpoint `equal` by range
    /// inclusion, as a back-edge of `equal`'s loop visit (kernel
    /// `add_scc_backedge`).
    fn add_backedge(&mut self, equal: u32, cur: &State, pc: usize) {
        let Some(key) = self.explored_key(equal) else {
            return;
        };
        let Some(v) = self.visits.iter_mut().find(|v| v.key == key) else {
            return;
        };
        v.backedges.push(Backedge {
            state: cur.clone(),
            parent: self.parent,
            hist: self.hist.clone(),
            pc,
            equal,
        });
        self.num_backedges += 1;
        self.peak_states = self.peak_states.max(self.cur_states + self.num_backedges);
    }

    /// When the checkpoint that opened a loop visit has all its paths
    /// explored, precision marks go once more through the visit's
    /// back-edges until nothing changes (kernel `maybe_exit_scc` and
    /// `propagate_backedges`).
    fn exit_scc(&mut self, i: u32) {
        let Some(key) = self.explored_key(i) else {
            return;
        };
        let Some(v) = self.visits.iter_mut().find(|v| v.key == key) else {
            return;
        };
        if v.entry != Some(i) {
            return;
        }
        v.entry = None;
        let backedges = std::mem::take(&mut v.backedges);
        self.num_backedges = self.num_backedges.saturating_sub(backedges.len() as u64);
        if backedges.is_empty() {
            return;
        }
        // The current path's context, restored afterwards.
        let saved = (self.parent, std::mem::take(&mut self.hist), self.cur_pc);
        const MAX_BACKEDGE_ITERS: usize = 64;
        let mut iters = 0;
        loop {
            let before = self.precise_marks;
            for b in &backedges {
                self.parent = b.parent;
                self.hist.clone_from(&b.hist);
                self.cur_pc = b.pc;
                let mut regs = [u16::MAX; 8];
                let mut stack = [u64::MAX; 8];
                if let Some(e) = self.explored.get(b.equal as usize) {
                    let (old, pc, open) = (e.state.clone(), e.pc as usize, e.branches > 0);
                    self.state_liveness(&old, pc, &mut regs, &mut stack);
                    if open {
                        stack = [u64::MAX; 8];
                    }
                }
                self.propagate_precision(b.equal, &b.state, &regs, &stack);
            }
            iters += 1;
            if self.precise_marks == before {
                break;
            }
            if iters > MAX_BACKEDGE_ITERS {
                for b in &backedges {
                    self.parent = b.parent;
                    self.mark_all_precise();
                }
                break;
            }
        }
        (self.parent, self.hist, self.cur_pc) = saved;
    }

    /// Marks precise in the current chain what is precise and live in the
    /// old state `old` that the current state was pruned against.
    fn propagate_precision(&mut self, old: u32, cur: &State, regs: &[u16; 8], stack: &[u64; 8]) {
        if !self.opts.privileged {
            return;
        }
        let Some(e) = self.explored.get(old as usize) else {
            return;
        };
        let mut bt = Bt::new(cur.frames.len().saturating_sub(1));
        for (fi, f) in e.state.frames.iter().enumerate().take(8) {
            for (i, r) in f.regs.iter().enumerate() {
                if r.ty == RegType::Scalar && r.precise && regs[fi] & (1 << i) != 0 {
                    bt.set_reg(fi, i as u8);
                }
            }
            for (spi, sl) in f.stack.slots().iter().enumerate().take(64) {
                if sl.is_spill()
                    && sl.spilled.ty == RegType::Scalar
                    && sl.spilled.precise
                    && stack[fi] & (1u64 << spi) != 0
                {
                    bt.set_slot(fi, spi);
                }
            }
        }
        self.backtrack(bt);
    }

    /// Widens the imprecise scalars of `cur`, a path starting another loop
    /// iteration at the instruction at `pc`, against the latest checkpoint
    /// at `pc` on the path with the same call chain, other than one made at
    /// this very step (kernel `find_prev_entry` and `widen_imprecise_scalars`).
    pub(crate) fn widen_loop_state(&self, cur: &mut State, pc: usize) {
        let mut node = self.parent;
        let mut first = true;
        while let Some(i) = node {
            let Some(e) = self.explored.get(i as usize) else {
                return;
            };
            if std::mem::take(&mut first) && self.hist.is_empty() && e.pc as usize == pc {
                // The checkpoint of the current step itself.
                node = e.parent;
                continue;
            }
            let same_chain = e.state.frames.len() == cur.frames.len()
                && e.state
                    .frames
                    .iter()
                    .zip(&cur.frames)
                    .all(|(a, b)| a.callsite == b.callsite);
            if e.pc as usize == pc && same_chain {
                crate::prune::widen_imprecise_scalars(&e.state, cur);
                return;
            }
            node = e.parent;
        }
    }

    /// Runs the exploration from `init`.
    pub(crate) fn run(&mut self, init: State) -> Result<(), VerifierError> {
        self.stack.push(Pending {
            state: init,
            pc: 0,
            parent: None,
            from: usize::MAX,
            hist: Vec::new(),
            jmp_hist: 0,
            log_pos: 0,
        });
        while let Some(p) = self.stack.pop() {
            let Pending {
                state: mut cur,
                mut pc,
                parent,
                from,
                hist,
                jmp_hist,
                log_pos,
            } = p;
            self.parent = parent;
            self.hist = hist;
            self.jmp_hist = jmp_hist;
            if self.opts.log_level >= 2 {
                if from == usize::MAX {
                    self.log_prologue();
                    let _ = write!(self.log, "{pc}:");
                    self.log_state(&cur);
                } else {
                    let _ = write!(self.log, "\nfrom {from} to {pc}:");
                    self.log_state(&cur);
                    let _ = write!(self.log, "{pc}:");
                    self.log_state(&cur);
                }
            } else if self.opts.log_level == 1 {
                // Level 1 keeps the trace of the current path only: the
                // log goes back to where this path branched off.
                if from != usize::MAX {
                    self.log.truncate(log_pos.min(self.log.len()));
                }
                let _ = write!(self.log, "{pc}:");
                self.log_state(&cur);
            }
            loop {
                self.processed += 1;
                if self.processed > self.opts.insn_limit {
                    return Err(self.err(
                        pc,
                        ErrorKind::TooComplex,
                        format!(
                            "BPF program is too large. Processed {} insn",
                            self.processed
                        ),
                    ));
                }
                self.cur_pc = pc;
                if self.prune_point.get(pc).copied().unwrap_or(false) && self.visit(&mut cur, pc)? {
                    break;
                }
                self.jmp_hist_pushed = false;
                if self.jmp_point.get(pc).copied().unwrap_or(false) {
                    self.push_jmp_hist();
                }
                let Some(insn) = self.prog.get(InsnIdx::from_u32(pc as u32)).copied() else {
                    return Err(self.err(
                        pc,
                        ErrorKind::ControlFlow,
                        format!("invalid insn idx {pc}"),
                    ));
                };
                let line_start = self.log.len();
                let mut mem_slot = None;
                if self.opts.log_level >= 1 {
                    mem_slot = self.stack_slot_of(pc, &cur);
                    let _ = write!(self.log, "{pc}: ");
                    self.log_insn(pc);
                    self.log.push('\n');
                }
                let insn_end = self.log.len();
                if let Some(a) = self.aux.get_mut(pc) {
                    a.seen = true;
                }
                if insn.is_jmp_class() {
                    self.jmps_processed += 1;
                }
                self.cur_stack = Hist::NO_STACK;
                let depth_before = cur.frames.len();
                let callee_line =
                    if self.opts.log_level >= 1 && depth_before > 1 && matches!(insn, Insn::Exit) {
                        let start = self.log.len();
                        self.log_frame(&cur, depth_before - 1);
                        let line = self.log.split_off(start);
                        Some(line)
                    } else {
                        None
                    };
                let step = crate::transfer::step(self, &mut cur, pc, &insn)?;
                if self.cur_stack != Hist::NO_STACK {
                    self.push_jmp_hist();
                }
                self.stack_live.commit(pc);
                self.hist.push(Hist {
                    idx: pc as u32,
                    stack: self.cur_stack,
                });
                if self.opts.log_level >= 1 && !matches!(step, Next::End) {
                    let n = cur.frames.len();
                    if let (Next::Goto(t), Insn::Call(CallTarget::Local(_)), true) =
                        (&step, insn, n == depth_before + 1)
                    {
                        // The kernel's `check_func_call` prints both frames,
                        // then the callee's state at its first instruction.
                        self.log.push_str("caller:\n");
                        self.log_frame_masked(&cur, n - 2, !0b11_1111);
                        self.log.push_str("callee:\n");
                        self.log_frame(&cur, n - 1);
                        let _ = write!(self.log, "{t}:");
                        self.log_state(&cur);
                    } else if let (Next::Goto(t), Some(line)) = (&step, &callee_line) {
                        // `prepare_func_exit`.
                        self.log.push_str("returning from callee:\n");
                        self.log.push_str(line);
                        let _ = writeln!(self.log, "to caller at {t}:");
                        self.log_state(&cur);
                    } else {
                        self.log_after(pc, line_start, &cur, mem_slot);
                    }
                }
                match step {
                    Next::Goto(t) => pc = t,
                    Next::Fork {
                        pc: t,
                        other,
                        other_pc,
                    } => {
                        if self.stack.len() >= BPF_COMPLEXITY_LIMIT_JMP_SEQ {
                            return Err(self.err(
                                pc,
                                ErrorKind::TooComplex,
                                format!(
                                    "The sequence of {} jumps is too complex.",
                                    self.stack.len()
                                ),
                            ));
                        }
                        self.add_branch(self.parent);
                        self.stack.push(Pending {
                            state: *other,
                            pc: other_pc,
                            parent: self.parent,
                            from: pc,
                            hist: self.hist.clone(),
                            jmp_hist: self.jmp_hist,
                            log_pos: insn_end,
                        });
                        pc = t;
                    }
                    Next::End => break,
                }
            }
            self.end_path(self.parent);
        }
        Ok(())
    }

    /// Records a stack read of `fp+lo .. fp+hi` in frame `fidx` of `st` by the
    /// instruction at `pc` (for stack liveness).
    pub(crate) fn note_stack_read(&mut self, st: &State, pc: usize, fidx: usize, lo: i64, hi: i64) {
        let at = if fidx + 1 >= st.frames.len() {
            pc
        } else {
            st.frames.get(fidx + 1).map_or(pc, |f| f.callsite as usize)
        };
        self.stack_live.read(at, liveness::slot_mask(lo, hi));
    }

    /// Records a fixed-offset stack write of `fp+lo .. fp+hi` in frame `fidx`
    /// of `st`, and whether it spilled a register (for precision backtracking).
    pub(crate) fn note_stack_write(
        &mut self,
        st: &State,
        fidx: usize,
        lo: i64,
        hi: i64,
        spill: bool,
    ) {
        if fidx + 1 == st.frames.len() && lo % 8 == 0 && hi - lo == 8 {
            self.stack_live.write(liveness::slot_mask(lo, hi));
        }
        if spill && lo % 8 == 0 {
            self.note_stack_hist(fidx, lo);
        }
    }

    /// Counts the current instruction's entry in the kernel's jump history
    /// (once per instruction, as `push_jmp_history` merges entries).
    pub(crate) fn push_jmp_hist(&mut self) {
        if !std::mem::replace(&mut self.jmp_hist_pushed, true) {
            self.jmp_hist += 1;
        }
    }

    /// Marks the current instruction as a spill or fill of slot `fp+lo` in frame `fidx`.
    pub(crate) fn note_stack_hist(&mut self, fidx: usize, lo: i64) {
        let spi = ((-lo - 1) / 8).clamp(0, 63) as u16;
        self.cur_stack = ((fidx as u16) << 8) | spi;
    }

    /// Level 2: the subprogram starts and the `Live regs before insn:` block.
    fn log_prologue(&mut self) {
        for (i, s) in self.subprog_starts.iter().enumerate() {
            let _ = writeln!(self.log, "func#{i} @{s}");
        }
        self.log.push_str("Live regs before insn:\n");
        for pc in 0..self.raw.len() {
            if self.raw.get(pc).is_some_and(|r| r.code == 0) && pc > 0 {
                // Second slot of a `ld_imm64`.
                continue;
            }
            let live = self.live_regs.get(pc).copied().unwrap_or(0);
            let _ = write!(self.log, "    {pc:3}: ");
            for r in 0..10u16 {
                let c = if live & (1 << r) != 0 {
                    char::from(b'0' + r as u8)
                } else {
                    '.'
                };
                self.log.push(c);
            }
            self.log.push(' ');
            self.log_insn(pc);
            self.log.push('\n');
        }
    }

    /// Level 2: the 8-byte stack slot of the current frame that the memory
    /// access at `pc` touches (through a constant-offset stack pointer).
    fn stack_slot_of(&self, pc: usize, st: &State) -> Option<usize> {
        let raw = self.raw.get(pc)?;
        let base = match raw.code & 7 {
            1 => raw.src,
            2 | 3 => raw.dst,
            _ => return None,
        };
        let r = st.cur().regs.get(usize::from(base))?;
        if r.ty != RegType::Stack || r.var.const_value() != Some(0) {
            return None;
        }
        let off = i64::from(r.off) + i64::from(raw.off);
        (off < 0).then(|| ((-off - 1) / 8) as usize)
    }

    /// Level 2: the kernel's text of the instruction at `pc`.
    fn log_insn(&mut self, pc: usize) {
        let Some(raw) = self.raw.get(pc) else {
            return;
        };
        let helper = if raw.code == 0x85 && raw.src == 0 {
            self.opts.helpers.get(raw.imm).map_or("unknown", |p| p.name)
        } else {
            ""
        };
        crate::klog::insn_text(&mut self.log, raw, self.raw.get(pc + 1), helper);
    }

    /// Level 2: after the instruction at `pc` whose line starts at byte
    /// `line_start`, the registers and stack slot it touched, aligned as the
    /// kernel aligns them (or on a line of their own after other output).
    fn log_after(&mut self, pc: usize, line_start: usize, st: &State, slot: Option<usize>) {
        let Some(raw) = self.raw.get(pc).copied() else {
            return;
        };
        let mask = crate::klog::scratched(&raw);
        let mut s = String::new();
        let fr = st.cur();
        let fi = st.frames.len().saturating_sub(1);
        for (i, r) in fr.regs.iter().enumerate() {
            if r.ty == RegType::NotInit || mask & (1 << i) == 0 {
                continue;
            }
            let _ = write!(s, " R{i}=");
            self.fmt_reg_in(&mut s, r, fi);
        }
        if let Some(sl) = slot.and_then(|i| fr.stack.slots().get(i).map(|x| (i, x))) {
            let (i, slot) = sl;
            if !slot.is_invalid() {
                let off = -8 * (i as i64 + 1);
                let _ = write!(s, " fp{off}=");
                self.fmt_slot(&mut s, slot, fi);
            }
        }
        if s.is_empty() {
            return;
        }
        if fi > 0 {
            s.insert_str(0, &format!(" frame{fi}:"));
        }
        if fr.callback.is_some() {
            s.push_str(" cb");
        }
        let line_len = self.log.len() - line_start;
        let only_insn_line = line_len > 0
            && self
                .log
                .get(line_start..)
                .is_some_and(|l| l.find('\n') == Some(line_len - 1));
        if only_insn_line {
            self.log.pop();
            let col = crate::klog::state_column(line_len);
            while self.log.len() - line_start < col {
                self.log.push(' ');
            }
            self.log.push(';');
        } else {
            let _ = write!(self.log, "{pc}:");
        }
        self.log.push_str(&s);
        self.log.push('\n');
    }

    /// A register of frame `fi`: a pointer to another frame's stack names
    /// that frame (`fp[0]-8`), as the kernel prints it.
    fn fmt_reg_in(&self, s: &mut String, r: &RegState, fi: usize) {
        let start = s.len();
        let _ = fmt_reg(s, r, self.opts);
        if r.ty == RegType::Stack
            && r.frameno as usize != fi
            && s.get(start..).is_some_and(|t| t.starts_with("fp"))
        {
            s.insert_str(start + 2, &format!("[{}]", r.frameno));
        }
    }

    /// A stack slot's contents: a spilled register, or one character per
    /// byte (highest address first). A narrow spill of a scalar at the
    /// slot's low bytes prints the other bytes' characters and then the
    /// spilled value (`mmmm0`), as Linux 6.18 does.
    fn fmt_slot(&self, s: &mut String, slot: &crate::stack::StackSlot, fi: usize) {
        if slot.is_full_spill() {
            self.fmt_reg_in(s, &slot.spilled, fi);
            return;
        }
        let low_is_spill = slot.kinds.first() == Some(&crate::stack::ByteKind::Spill);
        for k in slot.kinds.iter().rev() {
            if low_is_spill && *k == crate::stack::ByteKind::Spill {
                continue;
            }
            s.push(k.log_char());
        }
        if low_is_spill {
            self.fmt_reg_in(s, &slot.spilled, fi);
        }
    }

    /// The whole current frame of `st` on one line (after what is already
    /// on the line).
    fn log_state(&mut self, st: &State) {
        let fi = st.frames.len().saturating_sub(1);
        self.log_frame(st, fi);
    }

    /// Every register and stack slot of frame `fi` of `st`, as the kernel's
    /// `print_verifier_state` prints them, and a newline.
    fn log_frame(&mut self, st: &State, fi: usize) {
        self.log_frame_masked(st, fi, u16::MAX);
    }

    /// [`Self::log_frame`] with only the registers in `mask`.
    fn log_frame_masked(&mut self, st: &State, fi: usize, mask: u16) {
        let mut s = String::new();
        if let Some(fr) = st.frames.get(fi) {
            if fi > 0 {
                let _ = write!(s, " frame{fi}:");
            }
            for (i, r) in fr.regs.iter().enumerate() {
                if r.ty == RegType::NotInit || mask & (1 << i) == 0 {
                    continue;
                }
                let _ = write!(s, " R{i}=");
                self.fmt_reg_in(&mut s, r, fi);
            }
            for (i, slot) in fr.stack.slots().iter().enumerate() {
                if slot.is_invalid() {
                    continue;
                }
                let off = -8 * (i as i64 + 1);
                let _ = write!(s, " fp{off}=");
                self.fmt_slot(&mut s, slot, fi);
            }
            if fr.callback.is_some() {
                s.push_str(" cb");
            }
        }
        let _ = writeln!(self.log, "{s}");
    }

    /// Records a fill at `pc` reading `defs`.
    pub(crate) fn note_fill(&mut self, pc: usize, defs: &InsnSet) {
        if let Some(a) = self.aux.get_mut(pc) {
            a.fill_defs.union_with(defs);
        }
    }

    /// Records a non-fill read of stack contents defined by `defs`.
    pub(crate) fn note_escape(&mut self, defs: &InsnSet) {
        for &d in defs.as_slice() {
            if let Some(a) = self.aux.get_mut(d as usize) {
                a.spill_escapes = true;
            }
        }
    }

    /// Records stack use of `bytes` below the frame pointer in the subprogram starting at `start`.
    pub(crate) fn note_depth(&mut self, start: u32, bytes: u32) {
        let i = self.subprog_index(start);
        if let Some(d) = self.depth.get_mut(i) {
            *d = (*d).max(bytes);
        }
    }

    /// The result.
    pub(crate) fn finish(self) -> VerifiedProgram {
        let mut log = self.log;
        let max_states = self.max_states;
        if self.opts.log_level == 1 {
            // Level 1 logs nothing but the stats of an accepted program.
            log.clear();
        }
        if self.opts.log_level > 0 {
            let _ = writeln!(
                log,
                "processed {} insns (limit {}) max_states_per_insn {} total_states {} peak_states {} mark_read 0",
                self.processed, self.opts.insn_limit, max_states, self.total_states, self.peak_states
            );
        }
        VerifiedProgram {
            prog: self.prog.clone(),
            aux: self.aux,
            stack_depth: self.depth,
            subprog_starts: self.subprog_starts,
            processed_insns: self.processed,
            total_states: self.total_states,
            peak_states: self.peak_states,
            max_states_per_insn: max_states,
            log,
            prog_kind: self.opts.prog,
        }
    }
}

/// The initial state of the entry frame.
pub(crate) fn initial_state(opts: &Options) -> State {
    let mut f = Frame::new(0, u32::MAX, 0);
    match opts.prog {
        crate::platform::ProgKind::Mem { size } => {
            let mut r1 = RegState::pointer(RegType::Mem);
            r1.range = size;
            f.regs[1] = r1;
            f.regs[2] = RegState::constant(size as u64);
        }
        _ => f.regs[1] = RegState::pointer(RegType::Ctx),
    }
    let mut frames = SmallVec::new();
    frames.push(f);
    State {
        frames,
        refs: SmallVec::new(),
        callback_unroll_depth: 0,
        may_goto_depth: 0,
    }
}

/// Control-flow checks before exploration (kernel `check_cfg`): every
/// instruction reachable, no jump out of range, no back-edge when unprivileged.
pub(crate) fn check_cfg(prog: &Program, privileged: bool) -> Result<(), VerifierError> {
    let n = prog.slot_len();
    let mut seen = vec![false; n];
    let mut work = vec![0usize];
    let mut order = vec![u32::MAX; n];
    let mut counter = 0u32;
    let target_ok = |t: i64| t >= 0 && (t as usize) < n && prog.insn_at_slot(t as usize).is_some();
    while let Some(pc) = work.pop() {
        if seen.get(pc).copied().unwrap_or(true) {
            continue;
        }
        if let Some(s) = seen.get_mut(pc) {
            *s = true;
        }
        if let Some(o) = order.get_mut(pc) {
            *o = counter;
        }
        counter += 1;
        let Some(k) = prog.insn_at_slot(pc) else {
            continue;
        };
        let insn = prog.insns().get(k).copied();
        let next = pc + insn.map_or(1, |i| i.slots());
        let mut succ: SmallVec<[i64; 3]> = SmallVec::new();
        match prog.flow(k) {
            Flow::Next => succ.push(next as i64),
            Flow::Jump(t) => succ.push(t as i64),
            Flow::Branch(t) => {
                succ.push(next as i64);
                succ.push(t as i64);
            }
            Flow::Exit => {}
        }
        match insn {
            Some(Insn::Call(CallTarget::Local(off))) => succ.push(pc as i64 + 1 + off as i64),
            Some(Insn::LdImm64 {
                src: bpf_isa::LdImm64Src::Func(off),
                ..
            }) => succ.push(pc as i64 + 1 + off as i64),
            Some(Insn::Jmp { off, .. }) | Some(Insn::Ja { off }) => {
                let _ = off;
            }
            _ => {}
        }
        for &t in &succ {
            if !target_ok(t) {
                return Err(VerifierError::new(
                    pc,
                    ErrorKind::ControlFlow,
                    format!("jump out of range from insn {pc} to {t}"),
                ));
            }
            if !privileged
                && (t as usize) <= pc
                && !matches!(insn, Some(Insn::Call(_)) | Some(Insn::LdImm64 { .. }))
            {
                return Err(VerifierError::new(
                    pc,
                    ErrorKind::ControlFlow,
                    format!("back-edge from insn {pc} to {t}"),
                ));
            }
            work.push(t as usize);
        }
    }
    for (idx, _) in prog.iter() {
        if !seen.get(idx.slot()).copied().unwrap_or(false) {
            return Err(VerifierError::new(
                idx.slot(),
                ErrorKind::ControlFlow,
                format!("unreachable insn {}", idx.slot()),
            ));
        }
    }
    Ok(())
}
