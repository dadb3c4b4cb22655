//! The kernel's stack-depth rules over call chains (kernel:
//! `check_max_stack_depth`, `check_max_stack_depth_subprog`,
//! `round_up_stack_depth`).
//!
//! The rules, per root (the entry, and every asynchronous callback, which runs
//! on a stack of its own), over every chain of calls and synchronous callback
//! references from that root:
//!
//! * each frame counts its verifier-computed stack depth rounded up: to 16
//!   bytes when the program is JIT-compiled (`round_up(depth, 16)`, so an
//!   empty frame counts 0), to 32 bytes with a minimum of 32 for the
//!   interpreter (`round_up(max(depth, 1), 32)`);
//! * frames on the private stack count 0 but must each be at most 512 bytes
//!   ("stack size of subprog N is D. Too large");
//! * the frames of one chain add up to at most `MAX_BPF_STACK` = 512 bytes
//!   ("combined stack size of N calls is D. Too large");
//! * at most `MAX_CALL_FRAMES` = 8 frames (the entry is frame 0, a call to
//!   frame 8 fails: "the call stack of 8 frames is too deep"); a global
//!   function restarts the frame count at 0;
//! * a subprogram other than the entry that contains a tail call must be
//!   entered with less than 256 bytes of caller frames ("tail_calls are not
//!   allowed when call stack of previous frames is D bytes. Too large"), so
//!   that 33 chained tail calls stay within 8 KiB of kernel stack.
//!
//! The kernel walks every chain in instruction order and stops at the first
//! violation. We compute, bottom-up over the acyclic call graph, the worst
//! case of every rule below each subprogram, then descend only into subtrees
//! that hold a violation: the same first error in linear time.

use bpf_isa::InsnIdx;
use cranelift_entity::{EntityRef, SecondaryMap};

use crate::error::{Chain, Frame, StackError};
use crate::graph::CallGraph;
use crate::privstack::{
    frame_wants_priv_stack, prog_priv_stack_mode, PrivStackConfig, PrivStackMode,
};
use crate::{SubprogId, MAX_BPF_STACK, MAX_CALL_FRAMES, TAIL_CALL_STACK_LIMIT};

/// Settings of the stack check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct StackConfig {
    /// The program will be JIT-compiled (kernel: `prog->jit_requested`);
    /// selects the rounding of frame sizes.
    pub jit: bool,
    /// Private-stack inputs.
    pub priv_stack: PrivStackConfig,
}

/// Rounds a subprogram's stack depth the way the kernel counts it.
pub const fn round_up_stack_depth(depth: u32, jit: bool) -> u32 {
    if jit {
        depth.div_ceil(16).saturating_mul(16)
    } else {
        let d = if depth == 0 { 1 } else { depth };
        d.div_ceil(32).saturating_mul(32)
    }
}

/// Result of a successful stack check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackReport {
    /// Every subprogram's rounded frame size.
    pub frame_size: SecondaryMap<SubprogId, u32>,
    /// Subprograms whose frame lives on the private stack.
    pub priv_stack: SecondaryMap<SubprogId, bool>,
    /// The program-level private-stack mode (after the tail-call rule).
    pub mode: PrivStackMode,
    /// At least one frame is on the private stack (kernel: `jits_use_priv_stack`).
    pub uses_priv_stack: bool,
    /// Largest combined size (normal stack) of any chain from any root.
    pub max_depth: u32,
    /// Largest frame number reached from any root (0: no calls).
    pub max_frames: u32,
}

/// Bottom-up worst cases below each subprogram.
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    /// Largest sum of counted frame sizes of a chain starting here (this frame included).
    depth: u32,
    /// Largest sum of counted frame sizes before a non-entry tail-calling
    /// subprogram on a chain starting here; `None` if no chain reaches one.
    tail: Option<u32>,
    /// Largest number of frames added below this one (global callees excluded).
    frames: u32,
    /// A violation below that does not depend on the caller's state (a too
    /// large private frame, or too many frames below a global function).
    absolute: bool,
}

struct Walk<'a> {
    cg: &'a CallGraph,
    size: &'a SecondaryMap<SubprogId, u32>,
    on_priv: &'a SecondaryMap<SubprogId, bool>,
    sum: &'a SecondaryMap<SubprogId, Summary>,
}

impl Walk<'_> {
    fn counted(&self, id: SubprogId) -> u32 {
        if self.on_priv[id] {
            0
        } else {
            self.size[id]
        }
    }

    fn global(&self, id: SubprogId) -> bool {
        self.cg.subprog(id).is_some_and(|s| s.is_global)
    }

    fn start(&self, id: SubprogId) -> usize {
        self.cg.subprog(id).map_or(0, |s| s.start.index())
    }

    /// Whether the subtree of `id`, entered with `depth` bytes of caller frames
    /// as frame number `frame`, breaks a rule.
    fn bad(&self, id: SubprogId, depth: u32, frame: u32) -> bool {
        let s = self.sum[id];
        s.absolute
            || depth.saturating_add(s.depth) > MAX_BPF_STACK
            || s.tail
                .is_some_and(|t| depth.saturating_add(t) >= TAIL_CALL_STACK_LIMIT)
            || frame.saturating_add(s.frames) >= MAX_CALL_FRAMES
    }

    fn chain(&self, path: &[(SubprogId, Option<InsnIdx>)]) -> Chain {
        Chain(
            path.iter()
                .map(|&(id, site)| Frame {
                    subprog: id,
                    name: self.cg.name(id).into_owned(),
                    call_site: site.map(|s| s.index()),
                    size: self.counted(id),
                })
                .collect(),
        )
    }

    /// Descends from a root into the first violating subtree, in the kernel's
    /// order, and returns the first violation.
    fn find(&self, root: SubprogId) -> Option<StackError> {
        let mut path: Vec<(SubprogId, Option<InsnIdx>)> = vec![(root, None)];
        let mut id = root;
        let mut depth = 0u32;
        let mut frame = 0u32;
        loop {
            // Checks on entering `id`, in the kernel's order.
            let sp = self.cg.subprog(id)?;
            if id.index() != 0 && sp.has_tail_call && depth >= TAIL_CALL_STACK_LIMIT {
                return Some(StackError::TailCallStackTooLarge {
                    at: self.start(id),
                    depth,
                    chain: self.chain(&path),
                });
            }
            if self.on_priv[id] {
                if self.size[id] > MAX_BPF_STACK {
                    return Some(StackError::FrameTooLarge {
                        at: self.start(id),
                        subprog: id.index() as u32,
                        size: self.size[id],
                    });
                }
            } else if depth.saturating_add(self.size[id]) > MAX_BPF_STACK {
                return Some(StackError::CombinedTooLarge {
                    at: self.start(id),
                    calls: path.len(),
                    depth: depth.saturating_add(self.size[id]),
                    chain: self.chain(&path),
                });
            }
            let below = depth.saturating_add(self.counted(id));
            let mut next = None;
            for site in self.cg.sites_of(id) {
                if !self.cg.stacks(site) {
                    continue;
                }
                let c = site.callee;
                let f = if self.global(c) { 0 } else { frame + 1 };
                if f >= MAX_CALL_FRAMES {
                    path.push((c, Some(site.slot)));
                    return Some(StackError::TooDeep {
                        at: site.slot.index(),
                        frames: f,
                        chain: self.chain(&path),
                    });
                }
                if self.bad(c, below, f) {
                    next = Some((c, site.slot, f));
                    break;
                }
            }
            // The summaries said this subtree is bad; a missing culprit would
            // be an internal inconsistency, reported as "no error found".
            let (c, slot, f) = next?;
            path.push((c, Some(slot)));
            id = c;
            depth = below;
            frame = f;
        }
    }
}

impl CallGraph {
    /// Checks the stack rules for per-subprogram stack depths `depths` (bytes,
    /// as the verifier computes them; missing entries count 0) and decides
    /// private-stack use.
    pub fn check_stack(
        &self,
        depths: &SecondaryMap<SubprogId, u32>,
        cfg: &StackConfig,
    ) -> Result<StackReport, StackError> {
        let n = self.len();
        let mut size: SecondaryMap<SubprogId, u32> = SecondaryMap::with_capacity(n);
        for id in self.subprogs.keys() {
            size[id] = round_up_stack_depth(depths[id], cfg.jit);
        }

        // Program-level mode: any tail call disables the private stack.
        let any_tail_call = self.subprogs.values().any(|s| s.has_tail_call);
        let mode = if any_tail_call {
            PrivStackMode::None
        } else {
            prog_priv_stack_mode(&cfg.priv_stack)
        };

        // Roots: async callbacks (in reverse order, as the kernel walks them), then the entry.
        let mut roots: Vec<SubprogId> = self
            .subprogs
            .iter()
            .rev()
            .filter(|(id, s)| id.index() != 0 && s.is_async_callback)
            .map(|(id, _)| id)
            .collect();
        roots.push(SubprogId::new(0));

        // Subprograms an async root reaches always use the normal stack.
        let mut in_async: SecondaryMap<SubprogId, bool> = SecondaryMap::with_capacity(n);
        if mode == PrivStackMode::Adaptive {
            let mut work: Vec<SubprogId> = Vec::new();
            for &r in roots.iter().filter(|r| r.index() != 0) {
                if !in_async[r] {
                    in_async[r] = true;
                    work.push(r);
                }
                while let Some(x) = work.pop() {
                    for site in self.sites_of(x) {
                        if self.stacks(site) && !in_async[site.callee] {
                            in_async[site.callee] = true;
                            work.push(site.callee);
                        }
                    }
                }
            }
        }
        let mut on_priv: SecondaryMap<SubprogId, bool> = SecondaryMap::with_capacity(n);
        if mode == PrivStackMode::Adaptive {
            for id in self.subprogs.keys() {
                on_priv[id] = !in_async[id] && frame_wants_priv_stack(size[id]);
            }
        }

        // Bottom-up summaries.
        let mut sum: SecondaryMap<SubprogId, Summary> = SecondaryMap::with_capacity(n);
        for &id in &self.post_order {
            let own = if on_priv[id] { 0 } else { size[id] };
            let mut s = Summary {
                absolute: on_priv[id] && size[id] > MAX_BPF_STACK,
                ..Summary::default()
            };
            let is_tail = id.index() != 0 && self.subprog(id).is_some_and(|p| p.has_tail_call);
            let mut best_depth = 0u32;
            let mut best_tail: Option<u32> = is_tail.then_some(0);
            for site in self.sites_of(id) {
                if !self.stacks(site) {
                    continue;
                }
                let c = sum[site.callee];
                best_depth = best_depth.max(c.depth);
                if let Some(t) = c.tail {
                    let t = own.saturating_add(t);
                    best_tail = Some(best_tail.map_or(t, |b: u32| b.max(t)));
                }
                if self.subprog(site.callee).is_some_and(|p| p.is_global) {
                    s.absolute |= c.frames >= MAX_CALL_FRAMES;
                } else {
                    s.frames = s.frames.max(c.frames.saturating_add(1));
                }
                s.absolute |= c.absolute;
            }
            s.depth = own.saturating_add(best_depth);
            s.tail = best_tail;
            sum[id] = s;
        }

        let walk = Walk {
            cg: self,
            size: &size,
            on_priv: &on_priv,
            sum: &sum,
        };
        for &r in &roots {
            if walk.bad(r, 0, 0) {
                if let Some(e) = walk.find(r) {
                    return Err(e);
                }
            }
        }

        let max_depth = roots.iter().map(|&r| sum[r].depth).max().unwrap_or(0);
        let max_frames = roots.iter().map(|&r| sum[r].frames).max().unwrap_or(0);
        let mut priv_stack: SecondaryMap<SubprogId, bool> = SecondaryMap::with_capacity(n);
        let mut uses = false;
        for id in self.subprogs.keys() {
            let on = on_priv[id];
            priv_stack[id] = on;
            uses |= on;
        }
        Ok(StackReport {
            frame_size: size,
            priv_stack,
            mode,
            uses_priv_stack: uses,
            max_depth,
            max_frames,
        })
    }

    /// [`CallGraph::check_stack`] with depths given as a slice indexed by subprogram.
    pub fn check_stack_slice(
        &self,
        depths: &[u32],
        cfg: &StackConfig,
    ) -> Result<StackReport, StackError> {
        let mut m: SecondaryMap<SubprogId, u32> = SecondaryMap::with_capacity(depths.len());
        for (i, &d) in depths.iter().enumerate() {
            m[SubprogId::new(i)] = d;
        }
        self.check_stack(&m, cfg)
    }
}
