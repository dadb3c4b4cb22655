//! Which `bpf_tail_call` sites have a constant target: the prog-array
//! reference in `r2` and the index in `r3` are the same on every path.
//!
//! A forward must-dataflow over each subprogram's control-flow graph tracks
//! two facts per instruction: the `ld_imm64` reference `r2` holds (keyed by
//! a caller-chosen identity, e.g. the resolved value) and the constant `r3`
//! holds (from `r3 = imm`, 32 or 64 bit; the tail call uses its low 32
//! bits). Every other write to `r2`/`r3` ([`Insn::written_regs`]: any ALU
//! op, load, register move, atomic fetch or load-acquire, every call, which
//! clobbers `r1`-`r5`) makes the fact unknown, and at a join point two
//! different facts merge to unknown. A
//! subprogram's entry knows nothing. So a site is reported only when every
//! path from the entry to it loads the same reference and the same index:
//! sound by construction, whatever happens elsewhere in the program.
//!
//! ```
//! use bpf_isa::{assemble, LdImm64Src};
//! use bpf_jit::tailsite::const_tail_call_sites;
//!
//! let prog = assemble(
//!     "r2 = map[fd:7]\nr3 = 1\nif r1 == 0 goto +1\nr3 = 1\ncall 12\nr0 = 0\nexit",
//! )?;
//! let sites = const_tail_call_sites(&prog)?;
//! assert_eq!(sites.len(), 1);
//! assert_eq!((sites[0].key, sites[0].index), (LdImm64Src::MapFd(7), 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use bpf_isa::{CallTarget, Insn, LdImm64Src, Program, Reg, Source, Width};

use crate::driver::{subprogram_starts, TAIL_CALL_HELPER};
use crate::error::JitError;

/// A tail-call site whose array reference and index are constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConstTailCall<K> {
    /// Position of the `call 12` in [`Program::insns`].
    pub pos: usize,
    /// Identity of the `ld_imm64` reference in `r2`.
    pub key: K,
    /// The index in `r3` (its low 32 bits, as the tail call reads it).
    pub index: u32,
}

/// A fact about one register at one point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fact<T> {
    /// No path reaches the point yet.
    Unreached,
    /// The same value on every path seen.
    Const(T),
    /// Unknown, or different values on different paths.
    Varies,
}

impl<T: Copy + Eq> Fact<T> {
    /// Merge of two facts at a join point; returns whether `self` changed.
    fn join(&mut self, other: Fact<T>) -> bool {
        let new = match (*self, other) {
            (Fact::Unreached, o) => o,
            (s, Fact::Unreached) => s,
            (Fact::Const(a), Fact::Const(b)) if a == b => Fact::Const(a),
            _ => Fact::Varies,
        };
        let changed = new != *self;
        *self = new;
        changed
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State<K> {
    r2: Fact<K>,
    r3: Fact<u32>,
}

impl<K: Copy + Eq> State<K> {
    const UNREACHED: State<K> = State {
        r2: Fact::Unreached,
        r3: Fact::Unreached,
    };

    fn join(&mut self, o: State<K>) -> bool {
        let a = self.r2.join(o.r2);
        let b = self.r3.join(o.r3);
        a | b
    }
}

/// The state after `insn` given the state before it.
fn transfer<K: Copy + Eq>(
    insn: &Insn,
    pos: usize,
    mut s: State<K>,
    key: &dyn Fn(usize, LdImm64Src) -> Option<K>,
) -> State<K> {
    let w = insn.written_regs();
    if w & (1 << 2) != 0 {
        s.r2 = match *insn {
            Insn::LdImm64 { dst: Reg::R2, src } if !matches!(src, LdImm64Src::Func(_)) => {
                key(pos, src).map_or(Fact::Varies, Fact::Const)
            }
            _ => Fact::Varies,
        };
    }
    if w & (1 << 3) != 0 {
        s.r3 = match *insn {
            Insn::Alu {
                op: bpf_isa::AluOp::Mov,
                dst: Reg::R3,
                src: Source::Imm(i),
                width: Width::W32 | Width::W64,
            } => Fact::Const(i as u32),
            _ => Fact::Varies,
        };
    }
    s
}

/// Positions of the successors of the instruction at `pos` (at most two):
/// fall-through first, then the branch target. Targets that are not
/// instruction starts are dropped (the driver rejects such programs).
fn successors(prog: &Program, pos: usize, insn: &Insn) -> [Option<usize>; 2] {
    let next = (pos + 1 < prog.len()).then_some(pos + 1);
    let target = || {
        let slot = i64::from(*prog.starts().get(pos)?);
        let t = slot + insn.slots() as i64 + insn.branch_offset()?;
        prog.insn_at_slot(usize::try_from(t).ok()?)
    };
    match insn {
        Insn::Exit => [None, None],
        Insn::Ja { .. } | Insn::JaLong { .. } => [target(), None],
        Insn::Jmp { .. } | Insn::MayGoto { .. } => [next, target()],
        _ => [next, None],
    }
}

/// Tail-call sites with a constant reference and index, given the
/// subprogram starts (positions, ascending, from
/// [`subprogram_starts`]) and `key`, which names the identity of an
/// `ld_imm64` at a position (`None`: not a prog-array reference).
///
/// Runs in time linear in the program size times a small constant (each
/// fact can change at most twice).
pub fn const_tail_calls<K: Copy + Eq>(
    prog: &Program,
    starts: &[usize],
    key: &dyn Fn(usize, LdImm64Src) -> Option<K>,
) -> Vec<ConstTailCall<K>> {
    let insns = prog.insns();
    let n = insns.len();
    if !insns
        .iter()
        .any(|i| matches!(i, Insn::Call(CallTarget::Helper(TAIL_CALL_HELPER))))
    {
        return Vec::new();
    }
    let mut before: Vec<State<K>> = vec![State::UNREACHED; n];
    let mut work: Vec<usize> = Vec::new();
    let mut queued = vec![false; n];
    for &s in starts {
        if let Some(st) = before.get_mut(s) {
            st.join(State {
                r2: Fact::Varies,
                r3: Fact::Varies,
            });
            work.push(s);
            if let Some(q) = queued.get_mut(s) {
                *q = true;
            }
        }
    }
    while let Some(pos) = work.pop() {
        if let Some(q) = queued.get_mut(pos) {
            *q = false;
        }
        let (Some(insn), Some(&st)) = (insns.get(pos), before.get(pos)) else {
            continue;
        };
        let after = transfer(insn, pos, st, key);
        for succ in successors(prog, pos, insn).into_iter().flatten() {
            // A successor that starts a subprogram is a jump out of this
            // one (rejected elsewhere); its entry state stays unknown.
            if starts.binary_search(&succ).is_ok() {
                continue;
            }
            let changed = before.get_mut(succ).is_some_and(|s| s.join(after));
            if changed && queued.get(succ) == Some(&false) {
                if let Some(q) = queued.get_mut(succ) {
                    *q = true;
                }
                work.push(succ);
            }
        }
    }
    insns
        .iter()
        .zip(&before)
        .enumerate()
        .filter_map(|(pos, (insn, st))| match (insn, st.r2, st.r3) {
            (
                Insn::Call(CallTarget::Helper(TAIL_CALL_HELPER)),
                Fact::Const(key),
                Fact::Const(index),
            ) => Some(ConstTailCall { pos, key, index }),
            _ => None,
        })
        .collect()
}

/// [`const_tail_calls`] keyed by the `ld_imm64` pseudo source itself (map
/// fd, map index, …; plain immediates included), with the subprograms from
/// [`subprogram_starts`].
pub fn const_tail_call_sites(prog: &Program) -> Result<Vec<ConstTailCall<LdImm64Src>>, JitError> {
    let starts = subprogram_starts(prog)?;
    Ok(const_tail_calls(prog, &starts, &|_, src| Some(src)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf_isa::assemble;

    fn sites(src: &str) -> Vec<(usize, LdImm64Src, u32)> {
        let p = assemble(src).expect("assembles");
        const_tail_call_sites(&p)
            .expect("structure ok")
            .into_iter()
            .map(|s| (s.pos, s.key, s.index))
            .collect()
    }

    #[test]
    fn straight_line_site_is_constant() {
        // pos: 0 ld_imm64, 1 r3 = 2, 2 call 12, 3 r0 = 0, 4 exit
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 2\ncall 12\nr0 = 0\nexit"),
            vec![(2, LdImm64Src::MapFd(3), 2)]
        );
    }

    #[test]
    fn different_index_on_two_paths_is_not_constant() {
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 2\nif r1 == 0 goto +1\nr3 = 1\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        // Same index on both paths merges to a constant.
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 2\nif r1 == 0 goto +1\nr3 = 2\ncall 12\nr0 = 0\nexit"),
            vec![(4, LdImm64Src::MapFd(3), 2)]
        );
    }

    #[test]
    fn different_arrays_on_two_paths_are_not_constant() {
        assert_eq!(
            sites(
                "r3 = 0\nif r1 == 0 goto +3\nr2 = map[fd:3]\ngoto +2\nr2 = map[fd:4]\ncall 12\nr0 = 0\nexit"
            ),
            vec![]
        );
    }

    #[test]
    fn clobbers_make_facts_unknown() {
        // A helper call clobbers r1-r5.
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 0\ncall 5\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        // A load into r3, an ALU op on r2, a register move into r3.
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = *(u32 *)(r1 + 0)\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        assert_eq!(
            sites("r2 = map[fd:3]\nr2 += 0\nr3 = 0\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = r1\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        // Atomics that write a register: a load-acquire writes its `dst`,
        // a fetching add its `src`, cmpxchg r0 (which leaves r3 known).
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 0\nr3 = load_acquire((u64 *)(r10 - 8))\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 0\nr3 = atomic_fetch_add((u64 *)(r10 - 8), r3)\ncall 12\nr0 = 0\nexit"),
            vec![]
        );
        // The first tail call clobbers r2/r3 for the second one.
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 0\ncall 12\ncall 12\nr0 = 0\nexit"),
            vec![(2, LdImm64Src::MapFd(3), 0)]
        );
    }

    #[test]
    fn loop_back_edge_with_a_changed_index_is_not_constant() {
        // 0 ld_imm64, 1 r3 = 0, 2 call 12 <- loop head, 3 r3 = 1 ...; the
        // back edge brings r3 = 1, the entry edge r3 = 0.
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 0\ncall 12\nr2 = map[fd:3]\nr3 = 1\nif r1 != 0 goto -5\nr0 = 0\nexit"),
            vec![]
        );
    }

    #[test]
    fn subprogram_entry_knows_nothing() {
        // main sets r2/r3 and calls the subprogram, which tail calls.
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = 0\ncall pc+2\nr0 = 0\nexit\ncall 12\nexit"),
            vec![]
        );
        // ... but one that sets them itself is constant.
        assert_eq!(
            sites("call pc+1\nexit\nr2 = map[fd:3]\nr3 = 5\ncall 12\nexit"),
            vec![(4, LdImm64Src::MapFd(3), 5)]
        );
    }

    #[test]
    fn sixty_four_bit_index_keeps_its_low_half() {
        assert_eq!(
            sites("r2 = map[fd:3]\nr3 = -1\ncall 12\nr0 = 0\nexit"),
            vec![(2, LdImm64Src::MapFd(3), u32::MAX)]
        );
    }
}
