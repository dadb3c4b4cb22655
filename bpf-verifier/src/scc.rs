//! Strongly connected components of the instruction graph (the kernel's
//! `compute_scc`), for the bookkeeping of loop back-edges during pruning.
//!
//! The graph is intraprocedural: a call continues at the next instruction,
//! `exit` has no successor. A component gets an id (from 1) when it has two
//! or more instructions or one instruction that jumps to itself; every
//! other instruction has id 0.
//!
//! While exploring, a checkpoint inside a component opens a *visit* of that
//! component for its call chain (the call sites of the outer frames up to
//! the first frame whose instruction lies in a component). A path pruned by
//! a range-inclusion comparison inside a loop leaves a *back-edge*: a copy
//! of its state kept until the checkpoint that opened the visit has all its
//! paths explored, when precision marks are propagated once more through
//! every back-edge (`propagate_backedges`). Until then the marks of the
//! visit's checkpoints are incomplete, and comparisons against them use
//! range inclusion for every scalar.

use bpf_isa::{Insn, Program};
use smallvec::SmallVec;

/// Component id per instruction slot (0: in no component).
pub(crate) fn compute(prog: &Program) -> Vec<u32> {
    let n = prog.slot_len();
    // Successors per slot (at most two).
    let mut succ: Vec<SmallVec<[u32; 2]>> = vec![SmallVec::new(); n];
    let mut is_insn = vec![false; n];
    for (idx, insn) in prog.iter() {
        let pc = idx.slot();
        let next = pc + insn.slots();
        let Some(s) = succ.get_mut(pc) else { continue };
        if let Some(f) = is_insn.get_mut(pc) {
            *f = true;
        }
        let mut push = |t: i64| {
            if t >= 0 && (t as usize) < n {
                s.push(t as u32);
            }
        };
        match *insn {
            Insn::Exit => {}
            Insn::Jmp { off, .. } | Insn::MayGoto { off } => {
                push(next as i64 + off as i64);
                push(next as i64);
            }
            Insn::Ja { .. } | Insn::JaLong { .. } => {
                push(next as i64 + insn.branch_offset().unwrap_or(0));
            }
            _ => push(next as i64),
        }
    }
    // Tarjan's algorithm with an explicit stack.
    let mut pre = vec![0u32; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut scc = vec![0u32; n];
    let mut next_pre = 1u32;
    let mut next_scc = 1u32;
    // (node, index of the next successor to visit)
    let mut dfs: Vec<(u32, usize)> = Vec::new();
    for root in 0..n {
        if !is_insn[root] || pre[root] != 0 {
            continue;
        }
        dfs.push((root as u32, 0));
        pre[root] = next_pre;
        low[root] = next_pre;
        next_pre += 1;
        stack.push(root as u32);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = dfs.last_mut() {
            let vu = v as usize;
            if let Some(&w) = succ[vu].get(*i) {
                *i += 1;
                let wu = w as usize;
                if pre[wu] == 0 {
                    pre[wu] = next_pre;
                    low[wu] = next_pre;
                    next_pre += 1;
                    stack.push(w);
                    on_stack[wu] = true;
                    dfs.push((w, 0));
                } else if on_stack[wu] {
                    low[vu] = low[vu].min(pre[wu]);
                }
                continue;
            }
            dfs.pop();
            if let Some(&(p, _)) = dfs.last() {
                low[p as usize] = low[p as usize].min(low[vu]);
            }
            if low[vu] != pre[vu] {
                continue;
            }
            let single = stack.last() == Some(&v);
            let assign = !single || succ[vu].contains(&v);
            while let Some(t) = stack.pop() {
                on_stack[t as usize] = false;
                if assign {
                    scc[t as usize] = next_scc;
                }
                if t == v {
                    break;
                }
            }
            if assign {
                next_scc += 1;
            }
        }
    }
    scc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_and_straight_code() {
        // 0: r0 = 0; 1: r0 += 1; 2: if r0 < 10 goto -2 (to 1); 3: exit
        let p = bpf_isa::assemble("r0 = 0\nr0 += 1\nif r0 < 10 goto -2\nexit").unwrap();
        let s = compute(&p);
        assert_eq!(s[0], 0);
        assert_ne!(s[1], 0);
        assert_eq!(s[1], s[2]);
        assert_eq!(s[3], 0);
        // A self loop is a component; straight code is not.
        let p = bpf_isa::assemble("r0 = 0\nif r0 == 0 goto -1\nexit").unwrap();
        let s = compute(&p);
        assert_eq!((s[0] == 0, s[1] != 0, s[2] == 0), (true, true, true));
    }
}
