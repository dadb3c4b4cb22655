//! Soundness oracle: random well-formed programs (pointer arithmetic on the
//! input memory and the stack, loads and stores, branches on bounds) are
//! verified for the `mem` program type; every accepted one must run in
//! bpf-vm's checked mode on random inputs without a memory violation.

use bpf_isa::{AluOp, Insn, JmpCond, Program, Reg, Size, Source, Width};
use bpf_verifier::{verify, Options, ProgKind};
use bpf_vm::{Interpreter, VmError};

const MEM: u32 = 64;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const SCRATCH: [Reg; 5] = [Reg::R0, Reg::R3, Reg::R4, Reg::R5, Reg::R6];

fn gen(rng: &mut Rng) -> Program {
    let mut v: Vec<Insn> = Vec::new();
    // Keep r1 (mem) and r2 (len); initialise scratch registers.
    for r in SCRATCH {
        v.push(Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: r,
            src: Source::Imm(rng.below(16) as i32),
        });
    }
    let n = 6 + rng.below(20) as usize;
    for _ in 0..n {
        let d = rng.pick(&SCRATCH);
        let s = rng.pick(&SCRATCH);
        let size = rng.pick(&Size::ALL);
        let k = rng.below(80) as i16 - 8;
        match rng.below(12) {
            0 => v.push(Insn::Ldx {
                size,
                dst: d,
                src: Reg::R1,
                off: k,
            }),
            1 => v.push(Insn::Alu {
                width: Width::W64,
                op: AluOp::And,
                dst: d,
                src: Source::Imm(rng.pick(&[7, 15, 31, 63, 127, 0xff])),
            }),
            2 => v.push(Insn::Alu {
                width: rng.pick(&[Width::W32, Width::W64]),
                op: rng.pick(&[
                    AluOp::Add,
                    AluOp::Sub,
                    AluOp::Mul,
                    AluOp::Or,
                    AluOp::Xor,
                    AluOp::Rsh,
                    AluOp::Lsh,
                    AluOp::Arsh,
                    AluOp::Div,
                    AluOp::Mod,
                ]),
                dst: d,
                src: Source::Imm(1 + rng.below(7) as i32),
            }),
            3 => v.push(Insn::Alu {
                width: rng.pick(&[Width::W32, Width::W64]),
                op: rng.pick(&[AluOp::Add, AluOp::Sub, AluOp::And, AluOp::Or, AluOp::Mov]),
                dst: d,
                src: Source::Reg(s),
            }),
            4 => {
                // d = r1 + s (pointer arithmetic), then access.
                v.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: d,
                    src: Source::Reg(Reg::R1),
                });
                v.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Add,
                    dst: d,
                    src: Source::Reg(s),
                });
                let t = rng.pick(&SCRATCH);
                v.push(Insn::Ldx {
                    size,
                    dst: t,
                    src: d,
                    off: k,
                });
            }
            5 => {
                // Stack pointer with variable part.
                v.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: d,
                    src: Source::Reg(Reg::R10),
                });
                v.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Add,
                    dst: d,
                    src: Source::Imm(-(8 * (1 + rng.below(8) as i32))),
                });
                if rng.below(2) == 0 && s != d {
                    v.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Add,
                        dst: d,
                        src: Source::Reg(s),
                    });
                }
                if rng.below(2) == 0 {
                    v.push(Insn::St {
                        size,
                        dst: d,
                        off: 0,
                        imm: 1,
                    });
                } else {
                    let t = rng.pick(&SCRATCH);
                    v.push(Insn::Ldx {
                        size,
                        dst: t,
                        src: d,
                        off: 0,
                    });
                }
            }
            6 | 7 => {
                // Forward branch on bounds.
                let skip = rng.below(4) as i16;
                let cond = rng.pick(&JmpCond::ALL);
                let src = if rng.below(2) == 0 {
                    Source::Imm(rng.below(70) as i32 - 4)
                } else {
                    Source::Reg(s)
                };
                v.push(Insn::Jmp {
                    width: rng.pick(&[Width::W32, Width::W64]),
                    cond,
                    dst: d,
                    src,
                    off: skip,
                });
                // Pad so the target exists.
                for _ in 0..skip {
                    v.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Add,
                        dst: d,
                        src: Source::Imm(1),
                    });
                }
            }
            8 => v.push(Insn::Stx {
                size,
                dst: Reg::R1,
                src: s,
                off: k,
            }),
            9 => v.push(Insn::Stx {
                size: Size::DW,
                dst: Reg::R10,
                src: s,
                off: -8 * (1 + rng.below(8) as i16),
            }),
            10 => v.push(Insn::Ldx {
                size: Size::DW,
                dst: d,
                src: Reg::R10,
                off: -8 * (1 + rng.below(8) as i16),
            }),
            _ => v.push(Insn::MovSx {
                width: Width::W64,
                dst: d,
                src: s,
                from: rng.pick(&[Size::B, Size::H, Size::W]),
            }),
        }
    }
    v.push(Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst: Reg::R0,
        src: Source::Imm(0),
    });
    v.push(Insn::Exit);
    Program::from_insns(v)
}

#[test]
fn accepted_programs_run_safely() {
    let n: u64 = std::env::var("BPF_VERIFIER_SOUNDNESS_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let opts = Options::new(ProgKind::Mem { size: MEM });
    let (mut accepted, mut runs) = (0u64, 0u64);
    for i in 0..n {
        let prog = gen(&mut rng);
        if prog.validate().is_err() {
            continue;
        }
        if verify(&prog, &opts).is_err() {
            continue;
        }
        accepted += 1;
        let vm = Interpreter::new(&prog).expect("interpreter");
        for _ in 0..8 {
            let mut mem = [0u8; MEM as usize];
            for b in mem.iter_mut() {
                *b = rng.next() as u8;
            }
            runs += 1;
            match vm.run_mem(&mut mem) {
                Ok(_) => {}
                Err(e @ (VmError::MemoryFault { .. } | VmError::MisalignedAtomic { .. })) => {
                    panic!(
                        "program {i} accepted but faults: {e}\n{}",
                        bpf_isa::fmt_program(&prog, &Default::default())
                    )
                }
                Err(e) => panic!("program {i}: unexpected VM error {e}"),
            }
        }
    }
    eprintln!("soundness: {n} programs generated, {accepted} accepted, {runs} checked runs without a violation");
    assert!(
        accepted > n / 20,
        "too few accepted programs ({accepted}) to exercise the verifier"
    );
}
