//! The exploration engine: depth-first walk of all paths with a stack of
//! pending branches, state pruning at prune points, loop detection and the
//! kernel's complexity limits. Instruction semantics live in
//! [`crate::transfer`] and memory checks in [`crate::check`].

use std::fmt::Write as _;

use bpf_isa::{CallTarget, Flow, Insn, InsnIdx, Program};
use smallvec::SmallVec;

use crate::error::{ErrorKind, VerifierError};
use crate::platform::{Options, BPF_COMPLEXITY_LIMIT_JMP_SEQ};
use crate::prune::state_includes;
use crate::reg::{fmt_reg, MapNames, RegState, RegType};
use crate::stack::InsnSet;
use crate::state::{Frame, State};
use crate::{InsnAux, VerifiedProgram};

/// One explored state kept for pruning.
pub(crate) struct Explored {
    pub(crate) state: State,
    pub(crate) parent: Option<u32>,
    /// Paths still being explored below this state.
    pub(crate) branches: u32,
}

/// A path waiting to be explored.
pub(crate) struct Pending {
    pub(crate) state: State,
    pub(crate) pc: usize,
    pub(crate) parent: Option<u32>,
    pub(crate) from: usize,
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
    pub(crate) callback_entry: Vec<bool>,
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
    jmps_since_add: u32,
    insns_since_add: u32,
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
        let mut callback_entry = vec![false; n];
        for (idx, insn) in prog.iter() {
            let pc = idx.slot();
            let next = pc + insn.slots();
            match *insn {
                Insn::Jmp { off, .. } | Insn::MayGoto { off } => {
                    if let Some(p) = prune_point.get_mut(pc) {
                        *p = true;
                    }
                    let t = (next as i64 + off as i64) as usize;
                    if let Some(p) = prune_point.get_mut(t) {
                        *p = true;
                    }
                    if let Some(p) = prune_point.get_mut(next) {
                        *p = true;
                    }
                }
                Insn::Ja { .. } | Insn::JaLong { .. } => {
                    let off = insn.branch_offset().unwrap_or(0);
                    let t = (next as i64 + off) as usize;
                    if let Some(p) = prune_point.get_mut(t) {
                        *p = true;
                    }
                }
                Insn::Call(_) => {
                    if let Some(p) = prune_point.get_mut(next) {
                        *p = true;
                    }
                }
                Insn::LdImm64 {
                    src: bpf_isa::LdImm64Src::Func(off),
                    ..
                } => {
                    let t = (pc as i64 + 1 + off as i64) as usize;
                    if let Some(p) = callback_entry.get_mut(t) {
                        *p = true;
                    }
                    if let Some(p) = prune_point.get_mut(t) {
                        *p = true;
                    }
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
            callback_entry,
            stack: Vec::new(),
            processed: 0,
            total_states: 0,
            peak_states: 0,
            cur_states: 0,
            log: String::new(),
            depth: vec![0; subprog_starts.len().max(1)],
            subprog_starts,
            jmps_since_add: 0,
            insns_since_add: 0,
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
            p = e.parent;
        }
    }

    fn add_branch(&mut self, parent: Option<u32>) {
        if let Some(e) = parent.and_then(|i| self.explored.get_mut(i as usize)) {
            e.branches += 1;
        }
    }

    /// Pruning check at a prune point. `Ok(true)`: prune the path.
    fn visit(
        &mut self,
        cur: &State,
        pc: usize,
        parent: &mut Option<u32>,
    ) -> Result<bool, VerifierError> {
        let is_cb_entry = self.callback_entry.get(pc).copied().unwrap_or(false);
        let list = self.at.get(pc).cloned().unwrap_or_default();
        for &i in &list {
            let Some(e) = self.explored.get(i as usize) else {
                continue;
            };
            if e.branches > 0 && !is_cb_entry {
                if state_includes(&e.state, cur, true) {
                    return Err(self.err(
                        pc,
                        ErrorKind::InfiniteLoop,
                        format!("infinite loop detected at insn {pc}"),
                    ));
                }
                continue;
            }
            if state_includes(&e.state, cur, false) {
                if self.opts.log_level >= 2 {
                    let _ = writeln!(self.log, "{pc}: safe");
                }
                return Ok(true);
            }
        }
        // Add a checkpoint, not too often in straight-line stretches.
        let force = is_cb_entry || list.is_empty();
        if !force && self.jmps_since_add < 2 && self.insns_since_add < 8 {
            return Ok(false);
        }
        self.jmps_since_add = 0;
        self.insns_since_add = 0;
        let idx = self.explored.len() as u32;
        self.explored.push(Explored {
            state: cur.clone(),
            parent: *parent,
            branches: 1,
        });
        if let Some(v) = self.at.get_mut(pc) {
            v.push(idx);
        }
        *parent = Some(idx);
        self.total_states += 1;
        self.cur_states += 1;
        self.peak_states = self.peak_states.max(self.cur_states);
        Ok(false)
    }

    /// Runs the exploration from `init`.
    pub(crate) fn run(&mut self, init: State) -> Result<(), VerifierError> {
        self.stack.push(Pending {
            state: init,
            pc: 0,
            parent: None,
            from: usize::MAX,
        });
        while let Some(p) = self.stack.pop() {
            let Pending {
                state: mut cur,
                mut pc,
                mut parent,
                from,
            } = p;
            if self.opts.log_level >= 2 && from != usize::MAX {
                let _ = write!(self.log, "from {from} to {pc}:");
                self.log_state(&cur);
            }
            loop {
                self.processed += 1;
                self.insns_since_add += 1;
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
                if self.prune_point.get(pc).copied().unwrap_or(false)
                    && self.visit(&cur, pc, &mut parent)?
                {
                    break;
                }
                let Some(insn) = self.prog.get(InsnIdx::from_u32(pc as u32)).copied() else {
                    return Err(self.err(
                        pc,
                        ErrorKind::ControlFlow,
                        format!("invalid insn idx {pc}"),
                    ));
                };
                if self.opts.log_level >= 2 {
                    let _ = writeln!(
                        self.log,
                        "{pc}: {}",
                        bpf_isa::fmt_insn(&insn, &bpf_isa::DisasmOptions::default())
                    );
                }
                if let Some(a) = self.aux.get_mut(pc) {
                    a.seen = true;
                }
                match crate::transfer::step(self, &mut cur, pc, &insn)? {
                    Next::Goto(t) => pc = t,
                    Next::Fork {
                        pc: t,
                        other,
                        other_pc,
                    } => {
                        self.jmps_since_add += 1;
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
                        self.add_branch(parent);
                        self.stack.push(Pending {
                            state: *other,
                            pc: other_pc,
                            parent,
                            from: pc,
                        });
                        pc = t;
                    }
                    Next::End => break,
                }
            }
            self.end_path(parent);
        }
        Ok(())
    }

    fn log_state(&mut self, st: &State) {
        let mut s = String::new();
        let fr = st.cur();
        for (i, r) in fr.regs.iter().enumerate() {
            if r.ty == RegType::NotInit {
                continue;
            }
            let _ = write!(s, " R{i}=");
            let _ = fmt_reg(&mut s, r, self.opts);
        }
        for (i, slot) in fr.stack.slots().iter().enumerate() {
            if slot.is_invalid() {
                continue;
            }
            let off = -8 * (i as i64 + 1);
            if slot.is_full_spill() {
                let _ = write!(s, " fp{off}=");
                let _ = fmt_reg(&mut s, &slot.spilled, self.opts);
            } else {
                let _ = write!(s, " fp{off}=");
                for k in slot.kinds.iter().rev() {
                    s.push(k.log_char());
                }
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
        let max_states = self.at.iter().map(|v| v.len()).max().unwrap_or(0);
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
            max_states_per_insn: max_states as u64,
            log,
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
