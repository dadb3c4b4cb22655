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
//! * [`runnable_program`]: programs shaped so that they verify, terminate
//!   and do not fault, with every register's final value folded into `r0`:
//!   the input of the JITs' differential tests against the interpreter.
//! * [`bench_program`]: a fixed (not random) program of a given size for
//!   compile-time benchmarks.
//! * [`calls::CallCases`]: a deterministic stream of program sets with
//!   bpf-to-bpf calls, tail calls through a program array and an array map,
//!   for the JITs' differential tests of calls against the interpreter.
//! * [`scenarios`]: fixed programs with hand-computed results that several
//!   crates' tests run on their engines (`may_goto`, `ld_abs`, constant
//!   blinding, recursion through tail calls).
//!
//! ```
//! use bpf_isa::arbitrary::valid_program;
//! use proptest::prelude::*;
//!
//! proptest!(|(p in valid_program(32))| {
//!     prop_assert!(p.validate().is_ok());
//! });
//! ```

pub mod calls;
pub mod scenarios;

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

// ---------------------------------------------------------------------------
// Runnable programs: the shape the interpreter-vs-JIT differential tests use.

fn is_value_reg(r: Reg) -> bool {
    r != Reg::R10
}

/// The straight-line instructions that are valid without a verifier's
/// context: no `r10` as a value, no pointers from maps.
fn runnable_alu() -> BoxedStrategy<Insn> {
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

/// `r0`..`r9`.
fn value_reg() -> impl Strategy<Value = Reg> + Clone {
    (0u8..10).prop_map(|n| Reg::from_u8(n).unwrap_or(Reg::R0))
}

/// Loads, stores, atomics, load-acquire and store-release on the first 64
/// bytes of the stack (8-byte slots `r10 - 8` .. `r10 - 64`).
fn runnable_stack_ops() -> BoxedStrategy<Insn> {
    let size = select(&Size::ALL[..]);
    let slot = 1i16..=8;
    prop_oneof![
        (size.clone(), value_reg(), slot.clone()).prop_map(|(size, dst, k)| Insn::Ldx {
            size,
            dst,
            src: Reg::R10,
            off: -8 * k
        }),
        (
            select(&[Size::B, Size::H, Size::W][..]),
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
            select(&AtomicOp::ALL[..10]),
            select(&[Size::W, Size::DW][..]),
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
        (select(&Size::ALL[..]), value_reg(), slot.clone()).prop_map(|(size, dst, k)| {
            Insn::Atomic {
                size,
                op: AtomicOp::LoadAcquire,
                dst,
                src: Reg::R10,
                off: -8 * k,
            }
        }),
        (select(&Size::ALL[..]), value_reg(), slot).prop_map(|(size, src, k)| {
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

/// Makes a generated program runnable (see [`runnable_program`]).
fn make_runnable(p: &Program, init: &[i32; 10]) -> Program {
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

/// Programs that a verifier would accept and that terminate without
/// faulting, for comparing an execution engine (a JIT) with the reference
/// interpreter: [`valid_program_from`] programs of up to `max_len`
/// generated instructions, shaped as follows.
///
/// * Every register `r0`..`r9` is first set to a generated constant (so
///   neither engine sees its own pointers), and the first 64 bytes of the
///   stack are zeroed.
/// * `r10` is never written or read as a value.
/// * The straight-line instructions are the generator's own
///   ([`any_straight_insn`]: every ALU, ALU64, `neg`, `movsx`, byte swap and
///   `ld_imm64` immediate form) plus loads, stores, atomics, load-acquire
///   and store-release on the first 64 bytes of the stack.
/// * Backward jumps become jumps to the next instruction (so the program
///   terminates); local calls, `may_goto` and `ld_imm64` function
///   references are replaced by same-size instructions.
/// * At the end every register is folded into `r0`, so comparing the
///   return values compares every register's final value.
///
/// The programs need no context and no helpers: run them with any (or no)
/// memory argument.
///
/// ```
/// use bpf_isa::arbitrary::runnable_program;
/// use proptest::prelude::*;
///
/// proptest!(|(p in runnable_program(16))| {
///     prop_assert!(p.validate().is_ok());
/// });
/// ```
pub fn runnable_program(max_len: usize) -> impl Strategy<Value = Program> {
    let body = prop_oneof![3 => runnable_alu(), 1 => runnable_stack_ops()].boxed();
    (valid_program_from(max_len, body), any::<[i32; 10]>())
        .prop_map(|(p, init)| make_runnable(&p, &init))
}

// ---------------------------------------------------------------------------
// Deterministic benchmark programs.

/// A fixed program for compile-time benchmarks: `blocks` copies of a
/// 15-instruction (16-slot) block mixing ALU and ALU64 operations, a stack
/// store and load, division, an `ld_imm64`, a byte swap and one conditional
/// forward branch that skips `skip` slots (clamped so it lands at the
/// latest on the final `exit`), followed by `exit`.
///
/// Small `skip` values give branches that fit a JIT's short forms; large
/// ones (≥ 50 or so) make branches span more than 127 bytes of native code.
/// The result is the same for the same arguments.
pub fn bench_program(blocks: usize, skip: i16) -> Program {
    let mut v = Vec::with_capacity(blocks.saturating_mul(16).saturating_add(1));
    for b in 0..blocks {
        let k = (b % 7) as i32;
        let room = (blocks - b).saturating_mul(16).saturating_sub(10);
        let off = skip.min(i16::try_from(room).unwrap_or(i16::MAX)).max(0);
        bench_block(&mut v, k, off);
    }
    v.push(Insn::Exit);
    Program::from_insns(v)
}

/// The block of [`bench_program`] and [`initialized_bench_program`]:
/// `r0 = k`, then the 15-instruction mix with its branch skipping `off` slots.
fn bench_block(v: &mut Vec<Insn>, k: i32, off: i16) {
    v.push(Insn::alu(Width::W64, AluOp::Mov, Reg::R0, Source::Imm(k)));
    v.push(Insn::alu(
        Width::W64,
        AluOp::Add,
        Reg::R0,
        Source::Reg(Reg::R1),
    ));
    v.push(Insn::alu(
        Width::W32,
        AluOp::Xor,
        Reg::R3,
        Source::Imm(0x1234),
    ));
    v.push(Insn::alu(Width::W64, AluOp::Lsh, Reg::R3, Source::Imm(3)));
    v.push(Insn::alu(
        Width::W64,
        AluOp::Rsh,
        Reg::R2,
        Source::Reg(Reg::R4),
    ));
    v.push(Insn::Stx {
        size: Size::DW,
        dst: Reg::R10,
        src: Reg::R0,
        off: -8,
    });
    v.push(Insn::Ldx {
        size: Size::W,
        dst: Reg::R6,
        src: Reg::R10,
        off: -8,
    });
    v.push(Insn::alu(Width::W64, AluOp::Mul, Reg::R6, Source::Imm(31)));
    v.push(Insn::alu(
        Width::W64,
        AluOp::Div,
        Reg::R6,
        Source::Reg(Reg::R7),
    ));
    v.push(Insn::Jmp {
        width: Width::W64,
        cond: JmpCond::Sgt,
        dst: Reg::R6,
        src: Source::Imm(100),
        off,
    });
    v.push(Insn::alu(
        Width::W64,
        AluOp::Sub,
        Reg::R7,
        Source::Reg(Reg::R6),
    ));
    v.push(Insn::alu(Width::W32, AluOp::And, Reg::R8, Source::Imm(-1)));
    v.push(Insn::LdImm64 {
        dst: Reg::R9,
        src: LdImm64Src::Imm(0x1122_3344_5566_7788),
    });
    v.push(Insn::Endian {
        kind: Endian::ToBe,
        bits: 32,
        dst: Reg::R9,
    });
    v.push(Insn::Neg {
        width: Width::W64,
        dst: Reg::R8,
    });
}

/// [`bench_program`]'s blocks (with `r0 = 1 + block % 7` and branches over
/// 2 slots) behind a prologue that writes `r2`-`r4` and `r6`-`r9` (1), and
/// ending `r0 = r6; exit`: every register is written before it is read, so
/// JITs with a verifier of their own (rbpf's) take it. The program the JIT
/// compile-time benchmark compares with rbpf on.
pub fn initialized_bench_program(blocks: usize) -> Program {
    let mut v = Vec::with_capacity(blocks.saturating_mul(15).saturating_add(9));
    for r in [
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
    ] {
        v.push(Insn::alu(Width::W64, AluOp::Mov, r, Source::Imm(1)));
    }
    for b in 0..blocks {
        bench_block(&mut v, (b % 7) as i32 + 1, 2);
    }
    v.push(Insn::alu(
        Width::W64,
        AluOp::Mov,
        Reg::R0,
        Source::Reg(Reg::R6),
    ));
    v.push(Insn::Exit);
    Program::from_insns(v)
}
