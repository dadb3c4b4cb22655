//! Proptest strategies: every valid instruction, and structurally valid programs.
//!
//! This is THE shared generator of the workspace (feature `arbitrary`): the
//! decoder's and assembler's property tests use it, and the interpreter, the
//! JITs and the verifier reuse it for their differential tests, so every pass
//! sees the same distribution of instruction forms.
//!
//! * [`any_insn`]: one instruction of any form the decoder accepts, with any
//!   field values the decoder accepts (branch offsets arbitrary).
//! * [`valid_program`]: a program that passes [`Program::validate`]: every
//!   jump, local call and `ld_imm64` function reference lands on an
//!   instruction start inside the program, and the last instruction is
//!   `exit`. Nothing else is promised (memory accesses may be out of bounds,
//!   loops may not terminate, calls need not form proper subprograms): it is
//!   input for decoders, printers and verifiers that must handle anything.
//! * [`valid_program_from`]: the same program shape with the straight-line
//!   instructions drawn from a strategy of your choice — e.g. only ALU
//!   instructions for an interpreter-vs-JIT comparison that must not fault.
//!
//! ```
//! use bpf_isa::arbitrary::valid_program;
//! use proptest::prelude::*;
//!
//! proptest!(|(p in valid_program(32))| {
//!     prop_assert!(p.validate().is_ok());
//! });
//! ```

use proptest::prelude::*;
use proptest::sample::{select, Index};

use crate::insn::*;
use crate::program::Program;

/// Largest program length [`valid_program`] honours: all branch offsets fit
/// in the 16-bit `off` field even when every instruction is an `ld_imm64`.
pub const MAX_PROGRAM_LEN: usize = 16_000;

/// Any register `r0`..`r10`.
pub fn any_reg() -> impl Strategy<Value = Reg> + Clone {
    select(&Reg::ALL[..])
}

/// `W32` or `W64`.
pub fn any_width() -> impl Strategy<Value = Width> + Clone {
    select(&[Width::W32, Width::W64][..])
}

/// Any access size.
pub fn any_size() -> impl Strategy<Value = Size> + Clone {
    select(&Size::ALL[..])
}

/// A register or any 32-bit immediate.
pub fn any_source() -> impl Strategy<Value = Source> + Clone {
    prop_oneof![
        any_reg().prop_map(Source::Reg),
        any::<i32>().prop_map(Source::Imm),
        // Small immediates are the common case and hit the interesting edges.
        (-64i32..64).prop_map(Source::Imm),
    ]
}

/// Any `ld_imm64` source.
pub fn any_ldimm64_src() -> impl Strategy<Value = LdImm64Src> + Clone {
    prop_oneof![
        any::<u64>().prop_map(LdImm64Src::Imm),
        any::<i32>().prop_map(LdImm64Src::MapFd),
        (any::<i32>(), any::<u32>()).prop_map(|(fd, off)| LdImm64Src::MapValue { fd, off }),
        any::<i32>().prop_map(LdImm64Src::BtfId),
        any::<i32>().prop_map(LdImm64Src::Func),
        any::<i32>().prop_map(LdImm64Src::MapIdx),
        (any::<i32>(), any::<u32>()).prop_map(|(idx, off)| LdImm64Src::MapIdxValue { idx, off }),
    ]
}

/// Every instruction that does not transfer control (no jumps, calls or
/// `exit`) and is not a pc-relative `ld_imm64`, with any valid field values.
pub fn any_straight_insn() -> BoxedStrategy<Insn> {
    let alu = (
        any_width(),
        select(&AluOp::ALL[..]),
        any_reg(),
        any_source(),
    )
        .prop_map(|(width, op, dst, src)| Insn::Alu {
            width,
            op,
            dst,
            src,
        });
    let neg = (any_width(), any_reg()).prop_map(|(width, dst)| Insn::Neg { width, dst });
    let movsx = (
        any_width(),
        any_reg(),
        any_reg(),
        select(&[Size::B, Size::H, Size::W][..]),
    )
        .prop_map(|(width, dst, src, from)| {
            // 32-bit sign-extending moves take 8 or 16 bits only.
            let from = if width == Width::W32 && from == Size::W {
                Size::H
            } else {
                from
            };
            Insn::MovSx {
                width,
                dst,
                src,
                from,
            }
        });
    let cast = (any_reg(), any_reg(), any::<u16>(), any::<u16>()).prop_map(
        |(dst, src, dst_as, src_as)| Insn::AddrSpaceCast {
            dst,
            src,
            dst_as,
            src_as,
        },
    );
    let endian = (
        select(&[Endian::ToLe, Endian::ToBe, Endian::Swap][..]),
        select(&[16u8, 32, 64][..]),
        any_reg(),
    )
        .prop_map(|(kind, bits, dst)| Insn::Endian { kind, bits, dst });
    let ld64 = (any_reg(), any_ldimm64_src()).prop_map(|(dst, src)| {
        let src = match src {
            LdImm64Src::Func(x) => LdImm64Src::MapFd(x),
            other => other,
        };
        Insn::LdImm64 { dst, src }
    });
    let small = || select(&[Size::B, Size::H, Size::W][..]);
    let ldabs = (small(), any::<i32>()).prop_map(|(size, imm)| Insn::LdAbs { size, imm });
    let ldind = (small(), any_reg(), any::<i32>()).prop_map(|(size, src, imm)| Insn::LdInd {
        size,
        src,
        imm,
    });
    let ldx = (any_size(), any_reg(), any_reg(), any::<i16>()).prop_map(|(size, dst, src, off)| {
        Insn::Ldx {
            size,
            dst,
            src,
            off,
        }
    });
    let ldxsx = (small(), any_reg(), any_reg(), any::<i16>()).prop_map(|(size, dst, src, off)| {
        Insn::LdxSx {
            size,
            dst,
            src,
            off,
        }
    });
    let st =
        (any_size(), any_reg(), any::<i16>(), any::<i32>()).prop_map(|(size, dst, off, imm)| {
            Insn::St {
                size,
                dst,
                off,
                imm,
            }
        });
    let stx = (any_size(), any_reg(), any_reg(), any::<i16>()).prop_map(|(size, dst, src, off)| {
        Insn::Stx {
            size,
            dst,
            src,
            off,
        }
    });
    let atomic = (
        any_size(),
        select(&AtomicOp::ALL[..]),
        any_reg(),
        any_reg(),
        any::<i16>(),
    )
        .prop_map(|(size, op, dst, src, off)| {
            // Read-modify-write operations exist for 4 and 8 bytes only.
            let rmw = !matches!(op, AtomicOp::LoadAcquire | AtomicOp::StoreRelease);
            let size = if rmw && matches!(size, Size::B | Size::H) {
                Size::W
            } else {
                size
            };
            Insn::Atomic {
                size,
                op,
                dst,
                src,
                off,
            }
        });
    prop_oneof![
        6 => alu,
        1 => neg,
        1 => movsx,
        1 => cast,
        1 => endian,
        1 => ld64,
        1 => ldabs,
        1 => ldind,
        2 => ldx,
        1 => ldxsx,
        1 => st,
        2 => stx,
        2 => atomic,
    ]
    .boxed()
}

/// Calls that are not pc-relative: helpers, kfuncs and `callx`.
fn any_absolute_call() -> impl Strategy<Value = Insn> + Clone {
    prop_oneof![
        any::<i32>().prop_map(|id| Insn::Call(CallTarget::Helper(id))),
        (any::<i32>(), any::<i16>())
            .prop_map(|(btf_id, off)| Insn::Call(CallTarget::Kfunc { btf_id, off })),
        any_reg().prop_map(|reg| Insn::CallReg { reg }),
    ]
}

/// Every valid instruction form with every valid field value; branch offsets
/// and pc-relative immediates are arbitrary (see [`valid_program`] for
/// programs whose targets are in range).
pub fn any_insn() -> BoxedStrategy<Insn> {
    let jmp = (
        any_width(),
        select(&JmpCond::ALL[..]),
        any_reg(),
        any_source(),
        any::<i16>(),
    )
        .prop_map(|(width, cond, dst, src, off)| Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        });
    prop_oneof![
        12 => any_straight_insn(),
        2 => jmp,
        1 => any::<i16>().prop_map(|off| Insn::Ja { off }),
        1 => any::<i32>().prop_map(|imm| Insn::JaLong { imm }),
        1 => any::<i16>().prop_map(|off| Insn::MayGoto { off }),
        1 => any::<i32>().prop_map(|o| Insn::Call(CallTarget::Local(o))),
        1 => (any_reg(), any::<i32>())
            .prop_map(|(dst, o)| Insn::LdImm64 { dst, src: LdImm64Src::Func(o) }),
        1 => any_absolute_call(),
        1 => Just(Insn::Exit),
    ]
    .boxed()
}

/// One element of a program before its targets are resolved.
#[derive(Clone, Debug)]
enum Item {
    /// A finished instruction.
    Plain(Insn),
    /// A pc-relative instruction whose target is the instruction chosen by the index.
    Branch(Insn, Index),
}

fn branch_item() -> impl Strategy<Value = Item> {
    let jmp = (
        any_width(),
        select(&JmpCond::ALL[..]),
        any_reg(),
        any_source(),
    )
        .prop_map(|(width, cond, dst, src)| Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off: 0,
        });
    let insn = prop_oneof![
        4 => jmp,
        1 => Just(Insn::Ja { off: 0 }),
        1 => Just(Insn::JaLong { imm: 0 }),
        1 => Just(Insn::MayGoto { off: 0 }),
        1 => Just(Insn::Call(CallTarget::Local(0))),
        1 => any_reg().prop_map(|dst| Insn::LdImm64 { dst, src: LdImm64Src::Func(0) }),
    ];
    (insn, any::<Index>()).prop_map(|(i, at)| Item::Branch(i, at))
}

/// Structurally valid programs of 1 to `max_len` instructions (at most
/// [`MAX_PROGRAM_LEN`]) drawn from every instruction form; see the module
/// docs for what "valid" promises.
pub fn valid_program(max_len: usize) -> BoxedStrategy<Program> {
    let body = prop_oneof![
        8 => any_straight_insn(),
        1 => any_absolute_call(),
        1 => Just(Insn::Exit),
    ]
    .boxed();
    valid_program_from(max_len, body)
}

/// Structurally valid programs of 1 to `max_len` instructions (at most
/// [`MAX_PROGRAM_LEN`]) whose straight-line instructions come from `body`,
/// mixed with jumps, `gotol`, `may_goto`, local calls and `ld_imm64`
/// function references to instruction starts, ending in `exit`.
///
/// `body` should not produce pc-relative instructions (their offsets would
/// be kept as they are); use [`any_straight_insn`] or a narrower strategy.
pub fn valid_program_from(max_len: usize, body: BoxedStrategy<Insn>) -> BoxedStrategy<Program> {
    let max_len = max_len.clamp(1, MAX_PROGRAM_LEN);
    let item = prop_oneof![
        4 => body.prop_map(Item::Plain),
        1 => branch_item(),
    ];
    prop::collection::vec(item, 0..max_len)
        .prop_map(build_program)
        .boxed()
}

fn build_program(items: Vec<Item>) -> Program {
    let n = items.len() + 1;
    let mut starts = Vec::with_capacity(n);
    let mut slot = 0usize;
    for it in &items {
        starts.push(slot);
        let insn = match it {
            Item::Plain(i) | Item::Branch(i, _) => i,
        };
        slot += insn.slots();
    }
    starts.push(slot);
    let mut insns = Vec::with_capacity(n);
    for (pos, it) in items.into_iter().enumerate() {
        let insn = match it {
            Item::Plain(i) => i,
            Item::Branch(mut i, at) => {
                let target = starts.get(at.index(n)).copied().unwrap_or(0);
                let here = starts.get(pos).copied().unwrap_or(0);
                let rel = target as i64 - (here as i64 + 1);
                // MAX_PROGRAM_LEN keeps every distance within 16 bits.
                let off = i16::try_from(rel).unwrap_or(0);
                let imm = rel as i32;
                match &mut i {
                    Insn::Jmp { off: o, .. } | Insn::Ja { off: o } | Insn::MayGoto { off: o } => {
                        *o = off
                    }
                    Insn::JaLong { imm: o }
                    | Insn::Call(CallTarget::Local(o))
                    | Insn::LdImm64 {
                        src: LdImm64Src::Func(o),
                        ..
                    } => *o = imm,
                    _ => {}
                }
                i
            }
        };
        insns.push(insn);
    }
    insns.push(Insn::Exit);
    Program::from_insns(insns)
}
