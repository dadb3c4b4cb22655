//! A static estimate of each subprogram's stack depth, for use before (or
//! without) verification.
//!
//! The verifier knows the exact depth (the deepest stack byte any path
//! touches). Tools that only need the call graph — `bpfkit callgraph`, a JIT
//! planning frames for unverified test programs — can use this estimate: it
//! follows copies of `r10` plus constant adjustments (`rX = r10; rX += -16`)
//! in straight-line code, records every memory access and every pointer handed
//! to a helper or subprogram through them, and forgets the copies at jump
//! targets and calls. Code that moves frame pointers through the stack or
//! through branches can make it an underestimate; the verifier's number is
//! the authoritative one.

use bpf_isa::{AluOp, Insn, Program, Reg, Source, Width};
use cranelift_entity::{EntityRef, SecondaryMap};

use crate::{CallGraph, SubprogId};

/// Estimated stack depth in bytes (deepest byte below `r10` touched) of every subprogram.
pub fn estimate_stack_depths(prog: &Program, cg: &CallGraph) -> SecondaryMap<SubprogId, u32> {
    let mut depths: SecondaryMap<SubprogId, u32> = SecondaryMap::with_capacity(cg.len());
    // Jump targets, by slot, so copies of r10 are forgotten where paths merge.
    let mut is_target = vec![false; prog.slot_len() + 1];
    for (n, insn) in prog.insns().iter().enumerate() {
        if let Some(off) = insn.branch_offset() {
            let next = prog.starts()[n] as i64 + insn.slots() as i64;
            if let Ok(t) = usize::try_from(next + off) {
                if let Some(b) = is_target.get_mut(t) {
                    *b = true;
                }
            }
        }
    }
    for (id, sp) in cg.subprogs().iter() {
        let first = prog.insn_at_slot(sp.start.index()).unwrap_or(prog.len());
        let mut fp: [Option<i64>; 11] = [None; 11];
        fp[Reg::R10.idx()] = Some(0);
        let mut deepest: i64 = 0;
        let mut touch = |addr: i64| {
            if addr < deepest {
                deepest = addr;
            }
        };
        for n in first..prog.len() {
            let slot = prog.starts()[n] as usize;
            if slot >= sp.end.index() {
                break;
            }
            if is_target.get(slot).copied().unwrap_or(false) && slot != sp.start.index() {
                fp = [None; 11];
                fp[Reg::R10.idx()] = Some(0);
            }
            let insn = prog.insns()[n];
            match insn {
                Insn::Alu {
                    width: Width::W64,
                    op,
                    dst,
                    src,
                } => {
                    fp[dst.idx()] = match (op, src, fp[dst.idx()]) {
                        (AluOp::Mov, Source::Reg(s), _) => fp[s.idx()],
                        (AluOp::Add, Source::Imm(i), Some(o)) => Some(o + i as i64),
                        (AluOp::Sub, Source::Imm(i), Some(o)) => Some(o - i as i64),
                        _ => None,
                    };
                }
                Insn::Ldx {
                    size,
                    dst,
                    src,
                    off,
                }
                | Insn::LdxSx {
                    size,
                    dst,
                    src,
                    off,
                } => {
                    if let Some(o) = fp[src.idx()] {
                        touch(o + off as i64);
                        let _ = size;
                    }
                    fp[dst.idx()] = None;
                }
                Insn::St { dst, off, .. } | Insn::Stx { dst, off, .. } => {
                    if let Some(o) = fp[dst.idx()] {
                        touch(o + off as i64);
                    }
                }
                Insn::Atomic {
                    dst, src, off, op, ..
                } => {
                    // Load-acquire reads through `src` into `dst`; the rest address `dst`.
                    let base = if op == bpf_isa::AtomicOp::LoadAcquire {
                        src
                    } else {
                        dst
                    };
                    if let Some(o) = fp[base.idx()] {
                        touch(o + off as i64);
                    }
                    if op.writes_register() {
                        let written = match op {
                            bpf_isa::AtomicOp::Cmpxchg => Reg::R0,
                            bpf_isa::AtomicOp::LoadAcquire => dst,
                            _ => src,
                        };
                        fp[written.idx()] = None;
                    }
                }
                Insn::Call(_) | Insn::CallReg { .. } => {
                    // A pointer argument into this frame: the callee may use it.
                    for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
                        if let Some(o) = fp[r.idx()] {
                            touch(o);
                        }
                        fp[r.idx()] = None;
                    }
                    fp[Reg::R0.idx()] = None;
                }
                Insn::Alu { dst, .. }
                | Insn::Neg { dst, .. }
                | Insn::MovSx { dst, .. }
                | Insn::AddrSpaceCast { dst, .. }
                | Insn::Endian { dst, .. }
                | Insn::LdImm64 { dst, .. } => fp[dst.idx()] = None,
                Insn::LdAbs { .. } | Insn::LdInd { .. } => {
                    for r in [Reg::R0, Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
                        fp[r.idx()] = None;
                    }
                }
                Insn::Ja { .. }
                | Insn::JaLong { .. }
                | Insn::Jmp { .. }
                | Insn::MayGoto { .. }
                | Insn::Exit => {}
            }
        }
        depths[id] = u32::try_from(-deepest).unwrap_or(u32::MAX);
    }
    depths
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf_isa::assemble;

    fn depths(src: &str) -> Vec<u32> {
        let p = assemble(src).expect("assembles");
        let cg = CallGraph::build(&p).expect("builds");
        let d = estimate_stack_depths(&p, &cg);
        cg.subprogs().keys().map(|id| d[id]).collect()
    }

    #[test]
    fn direct_r10_accesses() {
        // Deepest byte: r10 - 24 (an 8-byte store at -24 touches -24..-17).
        let d = depths(
            "*(u64 *)(r10 - 8) = r1\n\
             *(u32 *)(r10 - 24) = 0\n\
             r0 = *(u8 *)(r10 - 3)\n\
             exit",
        );
        assert_eq!(d, vec![24]);
    }

    #[test]
    fn copies_of_r10_and_helper_arguments() {
        // r2 = r10 - 40 passed to a helper: the helper may use 40 bytes.
        let d = depths(
            "r2 = r10\n\
             r2 += -40\n\
             call 1\n\
             r0 = 0\n\
             exit",
        );
        assert_eq!(d, vec![40]);
    }

    #[test]
    fn per_subprogram_and_forgotten_at_merges() {
        // main uses 8 bytes; the callee 64; in main, r3 = r10 - 128 is forgotten
        // at the jump target before its use, so it does not count.
        let d = depths(
            "*(u64 *)(r10 - 8) = r1\n\
             r3 = r10\n\
             r3 += -128\n\
             if r1 == 0 goto l1\n\
             l1:\n\
             *(u64 *)(r3 + 0) = r1\n\
             call pc+1\n\
             exit\n\
             f:\n\
             *(u64 *)(r10 - 64) = r1\n\
             r0 = 0\n\
             exit",
        );
        assert_eq!(d, vec![8, 64]);
    }
}
