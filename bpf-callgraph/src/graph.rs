//! Finding subprograms, checking their structure and building the call graph.

use std::borrow::Cow;

use bpf_isa::{CallTarget, Insn, InsnIdx, LdImm64Src, Program};
use cranelift_entity::{EntityRef, PrimaryMap};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::error::{BuildError, Cycle};
use crate::{SubprogId, BPF_FUNC_TAIL_CALL, BPF_MAX_SUBPROGS};

/// One subprogram: a contiguous range of slots entered only at its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subprog {
    /// First slot.
    pub start: InsnIdx,
    /// One past the last slot.
    pub end: InsnIdx,
    /// Contains a `bpf_tail_call` helper call (helper 12).
    pub has_tail_call: bool,
    /// A tail call can happen while this subprogram is on the call stack: it
    /// tail calls itself or calls (directly, or through a synchronous callback
    /// reference) a subprogram that does.
    pub tail_call_reachable: bool,
    /// Target of at least one `ld_imm64` function reference (a callback).
    pub is_callback: bool,
    /// An asynchronous callback (timer, workqueue…): its frames are not stacked
    /// on the referencing frame, it is a root of its own. Only the verifier
    /// knows this; set it with [`CallGraph::set_async_callback`].
    pub is_async_callback: bool,
    /// A global function (BTF linkage `global`): the kernel restarts the frame
    /// count at it. Set with [`CallGraph::set_global`].
    pub is_global: bool,
    /// Contains a legacy `ld_abs` / `ld_ind` packet load.
    pub has_ld_abs: bool,
    /// Symbol name, if one was given.
    pub name: Option<String>,
}

/// How a subprogram refers to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// A bpf-to-bpf call (`call pc+imm`, `BPF_PSEUDO_CALL`).
    Call,
    /// An `ld_imm64` function reference (`BPF_PSEUDO_FUNC`), i.e. a callback
    /// handed to a helper such as `bpf_loop`.
    CallbackRef,
}

/// One call site or callback reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallSite {
    /// Slot of the call or of the `ld_imm64`'s first half.
    pub slot: InsnIdx,
    /// Call or callback reference.
    pub kind: EdgeKind,
    /// The subprogram containing the site.
    pub caller: SubprogId,
    /// The subprogram called or referenced.
    pub callee: SubprogId,
}

/// Options of [`CallGraph::build_with`].
#[derive(Clone, Debug)]
pub struct BuildOptions<'a> {
    /// Maximum number of subprograms (`Some(256)`, the kernel's
    /// `BPF_MAX_SUBPROGS`, by default; `None` for no limit).
    pub max_subprogs: Option<usize>,
    /// Symbol names by start slot, used in messages and renderings.
    pub symbols: &'a [(usize, &'a str)],
}

impl Default for BuildOptions<'_> {
    fn default() -> Self {
        BuildOptions {
            max_subprogs: Some(BPF_MAX_SUBPROGS),
            symbols: &[],
        }
    }
}

/// Subprograms of one program and the calls between them.
///
/// Built with [`CallGraph::build`]; acyclic by construction (recursion is
/// rejected). Node `i` of [`CallGraph::graph`] is subprogram `i`.
#[derive(Clone, Debug)]
pub struct CallGraph {
    pub(crate) subprogs: PrimaryMap<SubprogId, Subprog>,
    /// All call sites in slot order (so grouped by caller).
    pub(crate) sites: Vec<CallSite>,
    /// `sites[site_start[s]..site_start[s + 1]]` are the sites of subprogram `s`.
    pub(crate) site_start: Vec<u32>,
    /// Subprograms in post-order (callees before callers).
    pub(crate) post_order: Vec<SubprogId>,
    /// The petgraph view, built on first use ([`CallGraph::graph`]): most
    /// users (the JITs) never ask for it.
    pub(crate) graph: std::sync::OnceLock<DiGraph<SubprogId, CallSite>>,
}

/// DFS colours for cycle detection.
const WHITE: u8 = 0;
const GREY: u8 = 1;
const BLACK: u8 = 2;

impl CallGraph {
    /// Builds the call graph with the kernel's rules ([`BuildOptions::default`]).
    pub fn build(prog: &Program) -> Result<CallGraph, BuildError> {
        CallGraph::build_with(prog, &BuildOptions::default())
    }

    /// Builds the call graph.
    ///
    /// Checks, in the kernel's order: call targets inside the program and the
    /// subprogram limit; jumps staying inside their subprogram and every
    /// subprogram ending in `exit` or an unconditional jump; no recursion
    /// (through calls or callback references); every subprogram reachable
    /// from the entry (the kernel's CFG walk rejects unreachable instructions).
    pub fn build_with(prog: &Program, opts: &BuildOptions<'_>) -> Result<CallGraph, BuildError> {
        if prog.is_empty() {
            return Err(BuildError::Empty);
        }
        let slot_len = prog.slot_len();
        let starts = find_starts(prog, opts)?;

        let mut subprogs: PrimaryMap<SubprogId, Subprog> = PrimaryMap::with_capacity(starts.len());
        for (i, &s) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(slot_len, |&e| e as usize);
            let name = opts
                .symbols
                .iter()
                .find(|(slot, _)| *slot == s as usize)
                .map(|(_, n)| (*n).to_string());
            subprogs.push(Subprog {
                start: InsnIdx::new(s as usize),
                end: InsnIdx::new(end),
                has_tail_call: false,
                tail_call_reachable: false,
                is_callback: false,
                is_async_callback: false,
                is_global: false,
                has_ld_abs: false,
                name,
            });
        }

        let (sites, site_start) = scan(prog, &starts, &mut subprogs)?;
        let n = subprogs.len();
        let mut cg = CallGraph {
            subprogs,
            sites,
            site_start,
            post_order: Vec::with_capacity(n),
            graph: std::sync::OnceLock::new(),
        };
        cg.order_and_check_cycles()?;
        cg.mark_tail_call_reachable();
        Ok(cg)
    }

    /// The subprograms, sorted by start slot; subprogram 0 is the entry.
    pub fn subprogs(&self) -> &PrimaryMap<SubprogId, Subprog> {
        &self.subprogs
    }

    /// One subprogram, if `id` is in range.
    pub fn subprog(&self, id: SubprogId) -> Option<&Subprog> {
        self.subprogs.get(id)
    }

    /// Number of subprograms.
    pub fn len(&self) -> usize {
        self.subprogs.len()
    }

    /// Whether there are no subprograms (never true for a built graph).
    pub fn is_empty(&self) -> bool {
        self.subprogs.is_empty()
    }

    /// Every call site and callback reference, in slot order.
    pub fn call_sites(&self) -> &[CallSite] {
        &self.sites
    }

    /// The call sites and callback references inside subprogram `id`, in slot order.
    pub fn sites_of(&self, id: SubprogId) -> &[CallSite] {
        let i = id.index();
        match (self.site_start.get(i), self.site_start.get(i + 1)) {
            (Some(&a), Some(&b)) => self.sites.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The call graph as a petgraph graph: node weight = subprogram, edge weight = call site.
    /// Node index `i` is subprogram `i`. Built on the first call.
    pub fn graph(&self) -> &DiGraph<SubprogId, CallSite> {
        self.graph.get_or_init(|| self.make_graph())
    }

    /// Subprograms in post-order from the entry (every callee before its callers).
    pub fn post_order(&self) -> &[SubprogId] {
        &self.post_order
    }

    /// The subprogram containing `slot`, if any.
    pub fn subprog_at(&self, slot: usize) -> Option<SubprogId> {
        let pos = self
            .subprogs
            .values()
            .as_slice()
            .partition_point(|s| s.start.index() <= slot);
        let id = SubprogId::new(pos.checked_sub(1)?);
        let sp = self.subprogs.get(id)?;
        (slot < sp.end.index()).then_some(id)
    }

    /// Display name: the symbol if one was given, else `subprog#N`.
    pub fn name(&self, id: SubprogId) -> Cow<'_, str> {
        match self.subprogs.get(id).and_then(|s| s.name.as_deref()) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(format!("subprog#{}", id.index())),
        }
    }

    /// Sets a subprogram's symbol name. Returns `false` if `id` is out of range.
    pub fn set_name(&mut self, id: SubprogId, name: &str) -> bool {
        match self.subprogs.get_mut(id) {
            Some(s) => {
                s.name = Some(name.to_string());
                true
            }
            None => false,
        }
    }

    /// Marks a callback subprogram as asynchronous (or not) and recomputes
    /// tail-call reachability (async callbacks do not stack on the referencing
    /// frame). Returns `false` if `id` is out of range.
    pub fn set_async_callback(&mut self, id: SubprogId, is_async: bool) -> bool {
        match self.subprogs.get_mut(id) {
            Some(s) => {
                s.is_async_callback = is_async;
                self.mark_tail_call_reachable();
                true
            }
            None => false,
        }
    }

    /// Marks a subprogram as a global function (or not). Returns `false` if `id` is out of range.
    pub fn set_global(&mut self, id: SubprogId, is_global: bool) -> bool {
        match self.subprogs.get_mut(id) {
            Some(s) => {
                s.is_global = is_global;
                true
            }
            None => false,
        }
    }

    /// Whether the site is followed by the frame walk: calls always, callback
    /// references unless the callee is an async callback.
    pub(crate) fn stacks(&self, site: &CallSite) -> bool {
        site.kind == EdgeKind::Call
            || !self
                .subprogs
                .get(site.callee)
                .is_some_and(|s| s.is_async_callback)
    }

    fn mark_tail_call_reachable(&mut self) {
        // Post-order visits callees first, so one pass settles every flag.
        for k in 0..self.post_order.len() {
            let Some(&id) = self.post_order.get(k) else {
                continue;
            };
            let mut tcr = self.subprogs.get(id).is_some_and(|s| s.has_tail_call);
            if !tcr {
                tcr = self.sites_of(id).iter().any(|site| {
                    self.stacks(site)
                        && self
                            .subprogs
                            .get(site.callee)
                            .is_some_and(|c| c.tail_call_reachable)
                });
            }
            if let Some(s) = self.subprogs.get_mut(id) {
                s.tail_call_reachable = tcr;
            }
        }
    }

    fn make_graph(&self) -> DiGraph<SubprogId, CallSite> {
        let mut g = DiGraph::with_capacity(self.subprogs.len(), self.sites.len());
        for id in self.subprogs.keys() {
            g.add_node(id);
        }
        for site in &self.sites {
            g.add_edge(
                NodeIndex::new(site.caller.index()),
                NodeIndex::new(site.callee.index()),
                *site,
            );
        }
        g
    }

    /// Iterative DFS in slot order from the entry: post-order, recursion,
    /// reachability. A subprogram is a call target, so one no call from the
    /// entry reaches is called only from other unreachable ones: unreachable
    /// subprograms always sit on a cycle of their own, and are reported as
    /// unreachable (the kernel's verdict) rather than as recursion.
    fn order_and_check_cycles(&mut self) -> Result<(), BuildError> {
        let n = self.subprogs.len();
        let mut color = vec![WHITE; n];
        let mut stack: Vec<(usize, usize)> = Vec::new();
        self.dfs_from(0, &mut color, &mut stack)?;
        if let Some(i) = color.iter().position(|&c| c != BLACK) {
            let id = SubprogId::new(i);
            return Err(BuildError::Unreachable {
                at: self.subprogs.get(id).map_or(0, |s| s.start.index()),
                subprog: id,
                name: self.name(id).into_owned(),
            });
        }
        Ok(())
    }

    fn dfs_from(
        &mut self,
        root: usize,
        color: &mut [u8],
        stack: &mut Vec<(usize, usize)>,
    ) -> Result<(), BuildError> {
        stack.clear();
        stack.push((root, 0));
        if let Some(c) = color.get_mut(root) {
            *c = GREY;
        }
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let sites = self.sites_of(SubprogId::new(node));
            if let Some(site) = sites.get(*next).copied() {
                *next += 1;
                let callee = site.callee.index();
                match color.get(callee).copied() {
                    Some(WHITE) => {
                        if let Some(c) = color.get_mut(callee) {
                            *c = GREY;
                        }
                        stack.push((callee, 0));
                    }
                    Some(GREY) => {
                        // The whole chain from the entry, closed by the repeated callee.
                        let mut subprogs: Vec<SubprogId> =
                            stack.iter().map(|&(s, _)| SubprogId::new(s)).collect();
                        subprogs.push(site.callee);
                        let names = subprogs
                            .iter()
                            .map(|&s| self.name(s).into_owned())
                            .collect();
                        return Err(BuildError::Recursion {
                            at: site.slot.index(),
                            cycle: Cycle { subprogs, names },
                        });
                    }
                    _ => {}
                }
            } else {
                if let Some(c) = color.get_mut(node) {
                    *c = BLACK;
                }
                self.post_order.push(SubprogId::new(node));
                stack.pop();
            }
        }
        Ok(())
    }
}

/// The pc-relative target of a pseudo call or function reference at `slot`.
fn local_target(insn: &Insn, slot: usize) -> Option<(EdgeKind, i64)> {
    match *insn {
        Insn::Call(CallTarget::Local(imm)) => Some((EdgeKind::Call, slot as i64 + 1 + imm as i64)),
        Insn::LdImm64 {
            src: LdImm64Src::Func(imm),
            ..
        } => Some((EdgeKind::CallbackRef, slot as i64 + 1 + imm as i64)),
        _ => None,
    }
}

/// Subprogram start slots, sorted and deduplicated (kernel: `add_subprog_and_kfunc`).
fn find_starts(prog: &Program, opts: &BuildOptions<'_>) -> Result<Vec<u32>, BuildError> {
    let slot_len = prog.slot_len();
    let mut starts: Vec<u32> = vec![0];
    for (idx, insn) in prog.iter() {
        let at = idx.index();
        if let Some((_, target)) = local_target(insn, at) {
            if target < 0 || target >= slot_len as i64 {
                return Err(BuildError::InvalidCallTarget { at, target });
            }
            let t = target as usize;
            if prog.insn_at_slot(t).is_none() {
                return Err(BuildError::CallIntoLdImm64 { at, target: t });
            }
            starts.push(t as u32);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    if let Some(limit) = opts.max_subprogs {
        if starts.len() > limit {
            return Err(BuildError::TooManySubprogs {
                at: first_over_limit(prog, limit),
                limit,
            });
        }
    }
    Ok(starts)
}

/// Slot of the call or reference that adds the `limit + 1`-th distinct subprogram.
fn first_over_limit(prog: &Program, limit: usize) -> usize {
    let mut seen = vec![false; prog.slot_len()];
    if let Some(s) = seen.first_mut() {
        *s = true;
    }
    let mut count = 1usize;
    for (idx, insn) in prog.iter() {
        let at = idx.index();
        if let Some((_, t)) = local_target(insn, at) {
            if let Some(s) = seen.get_mut(t as usize) {
                if !*s {
                    *s = true;
                    count += 1;
                    if count > limit {
                        return at;
                    }
                }
            }
        }
    }
    0
}

type Sites = (Vec<CallSite>, Vec<u32>);

/// One pass over the instructions (kernel: `check_subprogs`): flags, jump
/// ranges, last instructions, call sites.
fn scan(
    prog: &Program,
    starts: &[u32],
    subprogs: &mut PrimaryMap<SubprogId, Subprog>,
) -> Result<Sites, BuildError> {
    let slot_len = prog.slot_len();
    let mut sites: Vec<CallSite> = Vec::new();
    let mut site_start: Vec<u32> = Vec::with_capacity(starts.len() + 1);
    site_start.push(0);
    let mut cur = 0usize;
    let mut cur_start = 0usize;
    let mut cur_end = starts.get(1).map_or(slot_len, |&e| e as usize);

    for (idx, insn) in prog.iter() {
        let at = idx.index();
        while at >= cur_end {
            cur += 1;
            site_start.push(sites.len() as u32);
            cur_start = cur_end;
            cur_end = starts.get(cur + 1).map_or(slot_len, |&e| e as usize);
        }
        let cur_id = SubprogId::new(cur);
        match *insn {
            Insn::Call(CallTarget::Helper(BPF_FUNC_TAIL_CALL)) => {
                if let Some(s) = subprogs.get_mut(cur_id) {
                    s.has_tail_call = true;
                }
            }
            Insn::LdAbs { .. } | Insn::LdInd { .. } => {
                if let Some(s) = subprogs.get_mut(cur_id) {
                    s.has_ld_abs = true;
                }
            }
            _ => {}
        }
        if let Some(off) = insn.branch_offset() {
            let to = at as i64 + 1 + off;
            if to < cur_start as i64 || to >= cur_end as i64 {
                return Err(BuildError::JumpOutOfRange { from: at, to });
            }
        }
        if let Some((kind, target)) = local_target(insn, at) {
            // find_starts validated the target; it is a subprogram start.
            let callee = starts.partition_point(|&s| (s as i64) <= target);
            sites.push(CallSite {
                slot: idx,
                kind,
                caller: cur_id,
                callee: SubprogId::new(callee.saturating_sub(1)),
            });
            if kind == EdgeKind::CallbackRef {
                if let Some(s) = subprogs.get_mut(SubprogId::new(callee.saturating_sub(1))) {
                    s.is_callback = true;
                }
            }
        }
        if at + insn.slots() >= cur_end && !insn.is_terminator() {
            return Err(BuildError::LastInsnNotExit {
                at,
                subprog: cur_id,
            });
        }
    }
    while site_start.len() < starts.len() + 1 {
        site_start.push(sites.len() as u32);
    }
    Ok((sites, site_start))
}
