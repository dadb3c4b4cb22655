//! Shared test helper: builds real programs from a description of subprograms.
#![allow(dead_code)]

use bpf_isa::{AluOp, CallTarget, Insn, LdImm64Src, Program, Reg, Size, Source, Width};

/// One operation inside a generated subprogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `r1 = r6; call subprog#N`.
    Call(usize),
    /// `r1 = r6; r2 = map; r3 = 0; call bpf_tail_call`.
    TailCall,
    /// `r1 = 1; r2 = &subprog#N; r3 = 0; r4 = 0; call bpf_loop`.
    Loop(usize),
}

/// One generated subprogram.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sub {
    /// Bytes of stack it touches (a multiple of 8, at most 512; 0 for none).
    pub depth: u32,
    /// What it does, in order.
    pub ops: Vec<Op>,
}

pub const BPF_FUNC_LOOP: i32 = 181;

fn mov(dst: Reg, src: Source) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src,
    }
}

/// Instruction list of one subprogram; `Call`/`Loop` targets are patched later.
fn body(s: &Sub, map_fd: i32) -> Vec<(Insn, Option<(usize, bool)>)> {
    let mut v: Vec<(Insn, Option<(usize, bool)>)> = Vec::new();
    v.push((mov(Reg::R6, Source::Reg(Reg::R1)), None));
    if s.depth > 0 {
        v.push((
            Insn::St {
                size: Size::DW,
                dst: Reg::R10,
                off: -(s.depth as i16),
                imm: 0,
            },
            None,
        ));
    }
    for op in &s.ops {
        match *op {
            Op::Call(t) => {
                v.push((mov(Reg::R1, Source::Reg(Reg::R6)), None));
                v.push((Insn::Call(CallTarget::Local(0)), Some((t, false))));
            }
            Op::TailCall => {
                v.push((mov(Reg::R1, Source::Reg(Reg::R6)), None));
                v.push((
                    Insn::LdImm64 {
                        dst: Reg::R2,
                        src: LdImm64Src::MapFd(map_fd),
                    },
                    None,
                ));
                v.push((mov(Reg::R3, Source::Imm(0)), None));
                v.push((Insn::Call(CallTarget::Helper(12)), None));
            }
            Op::Loop(t) => {
                v.push((mov(Reg::R1, Source::Imm(1)), None));
                v.push((
                    Insn::LdImm64 {
                        dst: Reg::R2,
                        src: LdImm64Src::Func(0),
                    },
                    Some((t, true)),
                ));
                v.push((mov(Reg::R3, Source::Imm(0)), None));
                v.push((mov(Reg::R4, Source::Imm(0)), None));
                v.push((Insn::Call(CallTarget::Helper(BPF_FUNC_LOOP)), None));
            }
        }
    }
    v.push((mov(Reg::R0, Source::Imm(0)), None));
    v.push((Insn::Exit, None));
    v
}

/// Lays the subprograms out in order (subprogram 0 first) and resolves the
/// calls. Returns the program and each subprogram's start slot.
pub fn build(subs: &[Sub], map_fd: i32) -> (Program, Vec<usize>) {
    let bodies: Vec<_> = subs.iter().map(|s| body(s, map_fd)).collect();
    let mut starts = Vec::new();
    let mut slot = 0usize;
    for b in &bodies {
        starts.push(slot);
        slot += b.iter().map(|(i, _)| i.slots()).sum::<usize>();
    }
    let mut insns = Vec::new();
    let mut slot = 0usize;
    for b in &bodies {
        for (insn, fix) in b {
            let insn = match (fix, insn) {
                (Some((t, false)), _) => Insn::Call(CallTarget::Local(
                    (starts[*t] as i64 - slot as i64 - 1) as i32,
                )),
                (Some((t, true)), Insn::LdImm64 { dst, .. }) => Insn::LdImm64 {
                    dst: *dst,
                    src: LdImm64Src::Func((starts[*t] as i64 - slot as i64 - 1) as i32),
                },
                _ => *insn,
            };
            slot += insn.slots();
            insns.push(insn);
        }
    }
    (Program::from_insns(insns), starts)
}
