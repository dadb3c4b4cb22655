//! Differential test: the AArch64 JIT, run under qemu-user, against the
//! reference interpreter (`bpf-vm`) on programs from the shared generator
//! (`bpf_isa::arbitrary::valid_program_from`), shaped exactly as the
//! x86-64 backend's differential test shapes them. Each case is compiled
//! with LSE atomics or with LL/SC loops (chosen by the case) and runs in
//! one long-lived emulator process. `BPF_DIFF_CASES` overrides the number
//! of cases (default 5,000).
//!
//! The generator's programs are structurally valid but not verified, so
//! they are shaped here into what a verifier would accept and what can run
//! natively: every register is initialised to a generated constant first
//! (so neither side sees its own pointers), `r10` is never written or read
//! as a value, memory accesses go to the first 64 bytes of the stack (which
//! are zeroed first), backward jumps become jumps to the next instruction
//! (termination), local calls and `may_goto` are replaced by
//! same-size instructions. The straight-line instructions are the
//! generator's own (`any_straight_insn`: every ALU, ALU64, `neg`, `movsx`,
//! byte swap and `ld_imm64` form) plus stack loads, stores, atomics, load-acquire and store-release.
//! All registers are folded into `r0` at the end, so every register's final
//! value is compared.

use bpf_isa::arbitrary::{any_straight_insn, valid_program_from};
use bpf_isa::{AluOp, AtomicOp, CallTarget, Insn, LdImm64Src, Program, Reg, Size, Source, Width};
use bpf_jit::HelperTable;
use bpf_jit_arm64::emu::Emulator;
use bpf_jit_arm64::Atomics;
use proptest::prelude::*;
use std::sync::{Mutex, OnceLock};

mod common;

fn is_value_reg(r: Reg) -> bool {
    r != Reg::R10
}

/// The generator's straight-line instructions that are valid without a
/// verifier's context: no r10 as a value, no pointers from maps.
fn alu_like() -> BoxedStrategy<Insn> {
    any_straight_insn()
        .prop_filter("register arithmetic only", |i| match *i {
            Insn::Alu { dst, src, .. } => {
                is_value_reg(dst) && !matches!(src, Source::Reg(Reg::R10))
            }
            Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => is_value_reg(dst),
            Insn::MovSx { dst, src, .. } => is_value_reg(dst) && is_value_reg(src),
            Insn::LdImm64 {
                dst,
                src: LdImm64Src::Imm(_),
            } => is_value_reg(dst),
            _ => false,
        })
        .boxed()
}

fn value_reg() -> impl Strategy<Value = Reg> {
    (0u8..10).prop_map(|n| Reg::from_u8(n).unwrap_or(Reg::R0))
}

fn stack_ops() -> BoxedStrategy<Insn> {
    let size = prop::sample::select(&Size::ALL[..]);
    let slot = 1i16..=8;
    prop_oneof![
        (size.clone(), value_reg(), slot.clone()).prop_map(|(size, dst, k)| Insn::Ldx {
            size,
            dst,
            src: Reg::R10,
            off: -8 * k
        }),
        (
            prop::sample::select(&[Size::B, Size::H, Size::W][..]),
            value_reg(),
            slot.clone()
        )
            .prop_map(|(size, dst, k)| Insn::LdxSx {
                size,
                dst,
                src: Reg::R10,
                off: -8 * k
            }),
        (size.clone(), value_reg(), slot.clone()).prop_map(|(size, src, k)| Insn::Stx {
            size,
            dst: Reg::R10,
            src,
            off: -8 * k
        }),
        (size, any::<i32>(), slot.clone()).prop_map(|(size, imm, k)| Insn::St {
            size,
            dst: Reg::R10,
            off: -8 * k,
            imm
        }),
        (
            prop::sample::select(&AtomicOp::ALL[..10]),
            prop::sample::select(&[Size::W, Size::DW][..]),
            value_reg(),
            slot.clone()
        )
            .prop_map(|(op, size, src, k)| Insn::Atomic {
                size,
                op,
                dst: Reg::R10,
                src,
                off: -8 * k
            }),
        // load-acquire: `dst` is loaded, `src` is the base.
        (
            prop::sample::select(&Size::ALL[..]),
            value_reg(),
            slot.clone()
        )
            .prop_map(|(size, dst, k)| Insn::Atomic {
                size,
                op: AtomicOp::LoadAcquire,
                dst,
                src: Reg::R10,
                off: -8 * k
            }),
        (prop::sample::select(&Size::ALL[..]), value_reg(), slot).prop_map(|(size, src, k)| {
            Insn::Atomic {
                size,
                op: AtomicOp::StoreRelease,
                dst: Reg::R10,
                src,
                off: -8 * k,
            }
        }),
    ]
    .boxed()
}

fn mov64(dst: Reg, src: Source) -> Insn {
    Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst,
        src,
    }
}

/// Makes a generated program runnable (see the module docs).
fn shape(p: &Program, init: &[i32; 10]) -> Program {
    let mut out = Vec::with_capacity(p.len() + 40);
    for k in 1..=8 {
        out.push(Insn::St {
            size: Size::DW,
            dst: Reg::R10,
            off: -8 * k,
            imm: 0,
        });
    }
    for (n, &v) in init.iter().enumerate() {
        out.push(mov64(
            Reg::from_u8(n as u8).unwrap_or(Reg::R0),
            Source::Imm(v),
        ));
    }
    let last = p.len().saturating_sub(1);
    for (n, insn) in p.insns().iter().enumerate() {
        let mut fixed = match *insn {
            Insn::Jmp { off, .. } | Insn::Ja { off } | Insn::MayGoto { off } if off < 0 => {
                match *insn {
                    Insn::Jmp {
                        width,
                        cond,
                        dst,
                        src,
                        ..
                    } => Insn::Jmp {
                        width,
                        cond,
                        dst,
                        src,
                        off: 0,
                    },
                    _ => Insn::Ja { off: 0 },
                }
            }
            Insn::JaLong { imm } if imm < 0 => Insn::JaLong { imm: 0 },
            Insn::MayGoto { off } => Insn::Ja { off },
            Insn::Call(CallTarget::Local(_)) => mov64(Reg::R0, Source::Imm(1)),
            Insn::LdImm64 {
                dst,
                src: LdImm64Src::Func(_),
            } => Insn::LdImm64 {
                dst,
                src: LdImm64Src::Imm(0x1234),
            },
            Insn::Exit if n == last => break,
            other => other,
        };
        // r10 is never a value: comparisons against it would compare two
        // different frame addresses, and writing it is invalid.
        match &mut fixed {
            Insn::Jmp { dst, src, .. } => {
                if *dst == Reg::R10 {
                    *dst = Reg::R0;
                }
                if *src == Source::Reg(Reg::R10) {
                    *src = Source::Reg(Reg::R1);
                }
            }
            Insn::LdImm64 { dst, .. } if *dst == Reg::R10 => *dst = Reg::R0,
            _ => {}
        }
        out.push(fixed);
    }
    // Fold every register into r0 (jumps to the final exit land here).
    for k in 1..=9u8 {
        out.push(Insn::Alu {
            width: Width::W64,
            op: AluOp::Mul,
            dst: Reg::R0,
            src: Source::Imm(31),
        });
        out.push(Insn::Alu {
            width: Width::W64,
            op: AluOp::Xor,
            dst: Reg::R0,
            src: Source::Reg(Reg::from_u8(k).unwrap_or(Reg::R0)),
        });
    }
    out.push(Insn::Exit);
    Program::from_insns(out)
}

fn programs() -> impl Strategy<Value = Program> {
    let body = prop_oneof![3 => alu_like(), 1 => stack_ops()].boxed();
    (valid_program_from(48, body), any::<[i32; 10]>()).prop_map(|(p, init)| shape(&p, &init))
}

fn cases() -> u32 {
    std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

/// One emulator for the whole run (`None` when the tools are missing and
/// not required: the skip has then been reported).
fn emu() -> &'static Mutex<Option<Emulator>> {
    static EMU: OnceLock<Mutex<Option<Emulator>>> = OnceLock::new();
    EMU.get_or_init(|| Mutex::new(common::emulator("the differential test")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_local_rejects: 10_000_000, ..ProptestConfig::default() })]

    #[test]
    fn arm64_jit_matches_interpreter(prog in programs(), llsc in any::<bool>()) {
        prop_assert!(prog.validate().is_ok(), "shaped program invalid");
        let mut guard = emu().lock().unwrap_or_else(|e| e.into_inner());
        let Some(emu) = guard.as_mut() else {
            return Ok(());
        };
        let vm = bpf_vm::Interpreter::new(&prog).map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
        let mut mem = [0u8; 8];
        let want = vm.run_mem(&mut mem).map_err(|e| TestCaseError::fail(format!("interpreter run: {e}")))?;
        let helpers = HelperTable::new();
        let atomics = if llsc { Atomics::LlSc } else { Atomics::Lse };
        let (got, _) = common::run_mem(emu, &prog, &helpers, common::Region::Near, atomics, &[0u8; 8])
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(got, want, "{:?} program:\n{}", atomics, bpf_isa::fmt_program(&prog, &Default::default()));
    }
}

#[test]
fn emulator_is_present_or_skip_is_reported() {
    // Not a silent skip: with the tools installed (CI installs them) the
    // differential run above must have had an emulator.
    if bpf_jit_arm64::emu::tools_available().is_ok() {
        assert!(emu().lock().unwrap_or_else(|e| e.into_inner()).is_some());
    }
}
