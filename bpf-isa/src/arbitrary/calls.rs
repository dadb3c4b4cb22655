//! Deterministic program sets with bpf-to-bpf calls, tail calls and an
//! array map: the input of the JITs' `differential_calls` tests (x86-64 on
//! the host, AArch64 under qemu-user), which compare each backend with the
//! interpreter on `r0` and on the map's contents.
//!
//! A [`CallCase`] is three programs that share two maps, referenced by
//! `ld_imm64` map-fd pseudo sources: a counter array at fd [`COUNTERS_FD`]
//! (one entry of [`COUNTERS_VALUE_SIZE`] bytes, four `u64` words) and a
//! program array at fd [`PROG_ARRAY_FD`] with [`PROG_ARRAY_ENTRIES`] slots:
//!
//! * **main** ([`CallCase::main`]): registers from constants, a random ALU
//!   body, a `call` to a subprogram, fresh `r1`-`r5`, another body, the
//!   fold of `r0`-`r9` added to word 0 of the counters, and an exit with
//!   the fold of `r6`-`r9`.
//! * **sub** (inside main): a random body, its fold added to word 1, then a
//!   tail call to a random index (0 and 1 are meant to be filled, 2 left
//!   empty, 3 is out of range), then `r0` from `r6`-`r9`, which the
//!   callee-saved convention preserved.
//! * **leaves** ([`CallCase::leaves`], for slots 0 and 1): constants, a
//!   body, the fold added to word 2 + slot and, when [`CallCase::chains`]
//!   is set (leaf 0 only), a tail call to slot 0 again: the chain stops at
//!   the 33-tail-call limit, so word 2 shows how many ran.
//!
//! The programs use two helpers: `bpf_map_lookup_elem` ([`HELPER_MAP_LOOKUP`],
//! on the counter array with key 0, result null-checked) and
//! `bpf_tail_call` ([`HELPER_TAIL_CALL`]). Registers that a call or a
//! failed tail call clobbers are never read afterwards, as the kernel's
//! verifier demands. The stream of cases depends only on the seed.
//!
//! ```
//! use bpf_isa::arbitrary::calls::{CallCases, DEFAULT_SEED};
//!
//! let mut cases = CallCases::new(DEFAULT_SEED);
//! let case = cases.next_case();
//! assert!(case.main.validate().is_ok());
//! assert!(case.leaves.iter().all(|p| p.validate().is_ok()));
//! // The same seed gives the same programs.
//! assert_eq!(CallCases::new(DEFAULT_SEED).next_case(), case);
//! ```

use crate::insn::*;
use crate::program::Program;

/// Map fd of the program array in `ld_imm64` references.
pub const PROG_ARRAY_FD: i32 = 1;
/// Map fd of the counter array in `ld_imm64` references.
pub const COUNTERS_FD: i32 = 2;
/// Slots of the program array (the sub's random index goes one past it).
pub const PROG_ARRAY_ENTRIES: u32 = 3;
/// Value size of the counter array's single entry (four `u64` words).
pub const COUNTERS_VALUE_SIZE: u32 = 32;
/// Helper id of `bpf_map_lookup_elem`.
pub const HELPER_MAP_LOOKUP: i32 = 1;
/// Helper id of `bpf_tail_call`.
pub const HELPER_TAIL_CALL: i32 = 12;
/// The seed the differential tests start from.
pub const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// One generated program set (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallCase {
    /// The program that runs first (main and its subprogram).
    pub main: Program,
    /// The programs for program-array slots 0 and 1.
    pub leaves: [Program; 2],
    /// Whether leaf 0 tail-calls slot 0 again (a chain up to the limit).
    pub chains: bool,
}

/// A reproducible stream of [`CallCase`]s (xorshift64 underneath).
#[derive(Clone, Debug)]
pub struct CallCases {
    state: u64,
}

impl CallCases {
    /// A stream starting from `seed` (a zero seed is replaced by
    /// [`DEFAULT_SEED`]: xorshift would stay at zero).
    pub fn new(seed: u64) -> CallCases {
        CallCases {
            state: if seed == 0 { DEFAULT_SEED } else { seed },
        }
    }

    /// The next case.
    pub fn next_case(&mut self) -> CallCase {
        let main = self.gen_main();
        let chains = self.below(2) == 0;
        let leaf0 = self.gen_leaf(0, chains);
        let leaf1 = self.gen_leaf(1, false);
        CallCase {
            main,
            leaves: [leaf0, leaf1],
            chains,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, from: &[T], default: T) -> T {
        let i = self.below(from.len() as u64) as usize;
        from.get(i).copied().unwrap_or(default)
    }

    /// One of r0-r9.
    fn reg(&mut self) -> Reg {
        let i = self.below(10) as usize;
        reg_n(i)
    }

    fn imm(&mut self) -> i32 {
        const EDGE: [i32; 10] = [0, 1, -1, i32::MIN, i32::MAX, 31, 32, 63, 64, 0x7f];
        if self.below(2) == 0 {
            self.pick(&EDGE, 0)
        } else {
            self.next_u64() as i32
        }
    }

    fn width(&mut self) -> Width {
        if self.below(2) == 0 {
            Width::W32
        } else {
            Width::W64
        }
    }

    /// One random ALU-class instruction on r0-r9 (edge values included).
    fn alu_insn(&mut self) -> Insn {
        let dst = self.reg();
        match self.below(12) {
            0 => Insn::Neg {
                width: self.width(),
                dst,
            },
            1 => Insn::Endian {
                kind: self.pick(&[Endian::ToLe, Endian::ToBe, Endian::Swap], Endian::Swap),
                bits: self.pick(&[16, 32, 64], 64),
                dst,
            },
            _ => {
                let width = self.width();
                let op = self.pick(&AluOp::ALL, AluOp::Add);
                let src = if self.below(2) == 0 {
                    Source::Reg(self.reg())
                } else {
                    Source::Imm(self.imm())
                };
                Insn::Alu {
                    width,
                    op,
                    dst,
                    src,
                }
            }
        }
    }

    fn body(&mut self, out: &mut Vec<Insn>) {
        for _ in 0..self.below(12) {
            let insn = self.alu_insn();
            out.push(insn);
        }
    }

    fn init(&mut self, regs: std::ops::RangeInclusive<usize>, out: &mut Vec<Insn>) {
        for n in regs {
            out.push(mov(reg_n(n), self.imm()));
        }
    }

    fn gen_main(&mut self) -> Program {
        let mut m = Vec::new();
        self.init(0..=9, &mut m);
        self.body(&mut m);
        let call_at = m.len();
        m.push(Insn::Call(CallTarget::Local(0))); // patched below
        self.init(1..=5, &mut m);
        self.body(&mut m);
        fold(&mut m);
        add_to_map(0, &mut m);
        finish(&mut m);
        // The subprogram: a callee starts with only r1-r5 (and r10) readable.
        let sub_start = m.len();
        m.push(mov(Reg::R0, self.imm()));
        self.init(6..=9, &mut m);
        self.body(&mut m);
        fold(&mut m);
        add_to_map(1, &mut m);
        let idx = self.below(u64::from(PROG_ARRAY_ENTRIES) + 1) as i32;
        tail_call(idx, &mut m);
        finish(&mut m);
        // The call's offset counts slots (an ld_imm64 takes two).
        let p = Program::from_insns(m.clone());
        let slot = |i: usize| i64::from(p.starts().get(i).copied().unwrap_or(0));
        let off = slot(sub_start) - slot(call_at) - 1;
        if let Some(c) = m.get_mut(call_at) {
            *c = Insn::Call(CallTarget::Local(off as i32));
        }
        Program::from_insns(m)
    }

    fn gen_leaf(&mut self, slot: i16, again: bool) -> Program {
        let mut m = Vec::new();
        self.init(0..=9, &mut m);
        self.body(&mut m);
        fold(&mut m);
        add_to_map(2 + slot, &mut m);
        if again {
            tail_call(0, &mut m);
        }
        finish(&mut m);
        Program::from_insns(m)
    }
}

fn reg_n(n: usize) -> Reg {
    Reg::ALL.get(n).copied().unwrap_or(Reg::R0)
}

fn mov(dst: Reg, imm: i32) -> Insn {
    alu(AluOp::Mov, dst, Source::Imm(imm))
}

fn alu(op: AluOp, dst: Reg, src: Source) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op,
        dst,
        src,
    }
}

/// r0 = fold of r0-r9.
fn fold(out: &mut Vec<Insn>) {
    for k in 1..=9 {
        out.push(alu(AluOp::Mul, Reg::R0, Source::Imm(31)));
        out.push(alu(AluOp::Xor, Reg::R0, Source::Reg(reg_n(k))));
    }
}

/// Adds r0 to word `w` of the counters' value; r0 survives in r6.
/// Clobbers r1-r5.
fn add_to_map(w: i16, out: &mut Vec<Insn>) {
    out.extend([
        alu(AluOp::Mov, Reg::R6, Source::Reg(Reg::R0)),
        Insn::St {
            size: Size::W,
            dst: Reg::R10,
            off: -4,
            imm: 0,
        },
        Insn::LdImm64 {
            dst: Reg::R1,
            src: LdImm64Src::MapFd(COUNTERS_FD),
        },
        alu(AluOp::Mov, Reg::R2, Source::Reg(Reg::R10)),
        alu(AluOp::Add, Reg::R2, Source::Imm(-4)),
        Insn::Call(CallTarget::Helper(HELPER_MAP_LOOKUP)),
        Insn::Jmp {
            width: Width::W64,
            cond: JmpCond::Eq,
            dst: Reg::R0,
            src: Source::Imm(0),
            off: 3,
        },
        Insn::Ldx {
            size: Size::DW,
            dst: Reg::R1,
            src: Reg::R0,
            off: 8 * w,
        },
        alu(AluOp::Add, Reg::R1, Source::Reg(Reg::R6)),
        Insn::Stx {
            size: Size::DW,
            dst: Reg::R0,
            src: Reg::R1,
            off: 8 * w,
        },
    ]);
}

fn tail_call(idx: i32, out: &mut Vec<Insn>) {
    out.extend([
        Insn::LdImm64 {
            dst: Reg::R2,
            src: LdImm64Src::MapFd(PROG_ARRAY_FD),
        },
        mov(Reg::R3, idx),
        Insn::Call(CallTarget::Helper(HELPER_TAIL_CALL)),
    ]);
}

/// r0 = fold of r6-r9 (what survives calls), then exit.
fn finish(out: &mut Vec<Insn>) {
    out.push(mov(Reg::R0, 17));
    for k in 6..=9 {
        out.push(alu(AluOp::Mul, Reg::R0, Source::Imm(31)));
        out.push(alu(AluOp::Xor, Reg::R0, Source::Reg(reg_n(k))));
    }
    out.push(Insn::Exit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_validate_and_chains_occur() {
        let mut g = CallCases::new(DEFAULT_SEED);
        let mut chains = 0;
        for _ in 0..200 {
            let c = g.next_case();
            assert!(c.main.validate().is_ok());
            for l in &c.leaves {
                assert!(l.validate().is_ok());
            }
            chains += usize::from(c.chains);
            // Exactly one local call, to the subprogram past main's exit.
            let calls = c
                .main
                .insns()
                .iter()
                .filter(|i| matches!(i, Insn::Call(CallTarget::Local(_))))
                .count();
            assert_eq!(calls, 1);
        }
        assert!(chains > 50 && chains < 150, "{chains}");
    }
}
