//! Zero-extension analysis: which 32-bit definitions a JIT must follow
//! with an explicit zero extension of the upper 32 bits.
//!
//! The kernel marks a "sub-register definition" (an instruction whose
//! result is defined by its low 32 bits only, per its `is_reg64` with
//! `DST_OP`) as needing zero extension (`zext_dst`) when some later read of
//! the register on a verified path uses all 64 bits (`is_reg64` with
//! `SRC_OP`). This module computes a sound over-approximation of that
//! without following paths: a backward data-flow analysis over the control
//! flow of the instructions the verifier reached, with, per instruction,
//! the registers whose 64-bit value some continuation may read before
//! overwriting them.
//!
//! Classification (the kernel's `is_reg64`):
//! * 32-bit definitions: every `BPF_ALU` result (including `le16/32`,
//!   `be16/32`), `bswap16/32`, `BPF_LDX` loads of 1, 2 or 4 bytes (not the
//!   sign-extending ones), `r0` of `LD_ABS`/`LD_IND`, the fetched value of
//!   a 4-byte atomic, `r0` of a 4-byte `cmpxchg`, a load-acquire of 1, 2
//!   or 4 bytes.
//! * 64-bit reads: `BPF_ALU64` and `BPF_JMP` operands (`bswap16/32`
//!   excepted), `le64`/`be64`, the base register of every memory access,
//!   the value of an 8-byte store or atomic, the arguments of a helper,
//!   `r0` at `exit`, `r6` and the index register of `LD_ABS`/`LD_IND`.
//! * Calls to subprograms: `r1`-`r5` flow into the callee's entry (the
//!   kernel follows them into the callee), `r6`-`r9` past the call; a
//!   callback's arguments come from the helper, not from its caller's code.
//!
//! A path the analysis follows but the verifier did not (a branch it
//! proved never taken) only adds zero extensions, never removes one.

use bpf_isa::{AtomicOp, CallTarget, Insn, InsnIdx, Program, Size, Source, Width};

use crate::helpers::{ArgKind, HelperTable};
use crate::liveness::successors;
use crate::InsnAux;

type Mask = u16;

const ARGS: Mask = 0b11_1110;
const CALLER_SAVED: Mask = 0b11_1111;
const CALLEE_SAVED: Mask = 0b11_1100_0000;

fn bit(r: bpf_isa::Reg) -> Mask {
    1 << r.idx()
}

fn src_bit(s: Source) -> Mask {
    match s {
        Source::Reg(r) => bit(r),
        Source::Imm(_) => 0,
    }
}

/// Per instruction: registers read as 64 bits, registers written (any
/// width) and the register it defines by its low 32 bits only (if any).
#[derive(Clone, Copy, Default)]
struct Effect {
    read64: Mask,
    kill: Mask,
    def32: Option<u8>,
}

fn effect(insn: &Insn, helpers: &HelperTable) -> Effect {
    let e = |read64: Mask, kill: Mask, def32: Option<u8>| Effect {
        read64,
        kill,
        def32,
    };
    let w64 = |w: Width| w == Width::W64;
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let reads = if op == bpf_isa::AluOp::Mov {
                src_bit(src)
            } else {
                bit(dst) | src_bit(src)
            };
            if w64(width) {
                e(reads, bit(dst), None)
            } else {
                e(0, bit(dst), Some(dst.idx() as u8))
            }
        }
        Insn::Neg { width, dst } => {
            if w64(width) {
                e(bit(dst), bit(dst), None)
            } else {
                e(0, bit(dst), Some(dst.idx() as u8))
            }
        }
        Insn::MovSx {
            width, dst, src, ..
        } => {
            if w64(width) {
                e(bit(src), bit(dst), None)
            } else {
                e(0, bit(dst), Some(dst.idx() as u8))
            }
        }
        Insn::AddrSpaceCast { dst, src, .. } => e(bit(src), bit(dst), None),
        Insn::Endian { bits, dst, .. } => {
            if bits == 64 {
                e(bit(dst), bit(dst), None)
            } else {
                e(0, bit(dst), Some(dst.idx() as u8))
            }
        }
        Insn::Ja { .. } | Insn::JaLong { .. } | Insn::MayGoto { .. } => e(0, 0, None),
        Insn::Jmp {
            width, dst, src, ..
        } => {
            if w64(width) {
                e(bit(dst) | src_bit(src), 0, None)
            } else {
                e(0, 0, None)
            }
        }
        Insn::Call(CallTarget::Helper(id)) => {
            let mut reads = 0;
            if let Some(p) = helpers.get(id) {
                for (i, a) in p.args.iter().enumerate() {
                    if *a != ArgKind::DontCare {
                        reads |= 1 << (i + 1);
                    }
                }
            } else {
                reads = ARGS;
            }
            e(reads, CALLER_SAVED, None)
        }
        // Handled by the caller (arguments flow into the callee).
        Insn::Call(CallTarget::Local(_)) => e(0, CALLER_SAVED, None),
        Insn::Call(CallTarget::Kfunc { .. }) | Insn::CallReg { .. } => e(ARGS, CALLER_SAVED, None),
        Insn::Exit => e(1, 0, None),
        Insn::LdImm64 { dst, .. } => e(0, bit(dst), None),
        Insn::LdAbs { .. } => e(1 << 6, CALLER_SAVED, Some(0)),
        Insn::LdInd { src, .. } => e((1 << 6) | bit(src), CALLER_SAVED, Some(0)),
        Insn::Ldx { size, dst, src, .. } => e(
            bit(src),
            bit(dst),
            (size != Size::DW).then_some(dst.idx() as u8),
        ),
        Insn::LdxSx { dst, src, .. } => e(bit(src), bit(dst), None),
        Insn::St { dst, .. } => e(bit(dst), 0, None),
        Insn::Stx { size, dst, src, .. } => {
            let v = if size == Size::DW { bit(src) } else { 0 };
            e(bit(dst) | v, 0, None)
        }
        Insn::Atomic {
            size, op, dst, src, ..
        } => {
            let dw = size == Size::DW;
            let v = if dw { bit(src) } else { 0 };
            match op {
                AtomicOp::LoadAcquire => e(bit(src), bit(dst), (!dw).then_some(dst.idx() as u8)),
                AtomicOp::StoreRelease => e(bit(dst) | v, 0, None),
                AtomicOp::Cmpxchg => {
                    let r0 = if dw { 1 } else { 0 };
                    e(bit(dst) | v | r0, 1, (!dw).then_some(0))
                }
                AtomicOp::Xchg
                | AtomicOp::Add { fetch: true }
                | AtomicOp::Or { fetch: true }
                | AtomicOp::And { fetch: true }
                | AtomicOp::Xor { fetch: true } => {
                    e(bit(dst) | v, bit(src), (!dw).then_some(src.idx() as u8))
                }
                _ => e(bit(dst) | v, 0, None),
            }
        }
    }
}

/// Sets [`InsnAux::zext_needed`] for every reached 32-bit definition whose
/// value may be read as 64 bits (see the module docs).
pub(crate) fn analyse(prog: &Program, helpers: &HelperTable, aux: &mut [InsnAux]) {
    let n = prog.slot_len();
    let mut effects = vec![Effect::default(); n];
    let mut order: Vec<usize> = Vec::with_capacity(prog.len());
    for (idx, insn) in prog.iter() {
        let s = idx.slot();
        if aux.get(s).is_some_and(|a| a.seen) {
            if let Some(x) = effects.get_mut(s) {
                *x = effect(insn, helpers);
            }
            order.push(s);
        }
    }
    let reached: Vec<bool> = aux.iter().map(|a| a.seen).collect();
    let seen = |s: usize| reached.get(s).copied().unwrap_or(false);
    // Registers whose 64-bit value may be read before being overwritten,
    // before each slot.
    let mut need = vec![0 as Mask; n];
    let after = |need: &[Mask], insn: &Insn, pc: usize| -> Mask {
        let (succ, k) = successors(insn, pc);
        let mut m = 0;
        for &s in succ.iter().take(k) {
            if seen(s) {
                m |= need.get(s).copied().unwrap_or(0);
            }
        }
        m
    };
    let mut changed = true;
    while changed {
        changed = false;
        for &pc in order.iter().rev() {
            let Some(insn) = prog.get(InsnIdx::from_u32(pc as u32)) else {
                continue;
            };
            let e = effects.get(pc).copied().unwrap_or_default();
            let out = after(&need, insn, pc);
            let mut before = e.read64 | (out & !e.kill);
            if let Insn::Call(CallTarget::Local(off)) = *insn {
                let callee = pc as i64 + 1 + off as i64;
                let entry = usize::try_from(callee)
                    .ok()
                    .and_then(|c| need.get(c))
                    .copied()
                    .unwrap_or(ARGS);
                before = (out & CALLEE_SAVED) | (entry & ARGS);
            }
            if let Some(b) = need.get_mut(pc) {
                if *b != before {
                    *b = before;
                    changed = true;
                }
            }
        }
    }
    for &pc in &order {
        let Some(insn) = prog.get(InsnIdx::from_u32(pc as u32)) else {
            continue;
        };
        let e = effects.get(pc).copied().unwrap_or_default();
        let needed = e
            .def32
            .is_some_and(|r| after(&need, insn, pc) & (1 << r) != 0);
        if let Some(a) = aux.get_mut(pc) {
            a.zext_needed = needed;
        }
    }
}
