//! The one-pass baseline compiler (`bpf_jit_x86::Baseline`) against the
//! reference interpreter (`bpf-vm`) and the optimizing compiler:
//!
//! 1. the shared generator's runnable programs, compiled from their bytes;
//! 2. a targeted generator of its own (memory of every size, sign-extending
//!    loads, `st`, atomics, division edge cases, shifts by register, byte
//!    swaps, `movsx`, `ld_imm64` shapes, every jump condition forward and
//!    backward, long jumps), comparing `r0` (every register folded in) and
//!    the final buffer;
//! 3. hand-written bpf-to-bpf and helper calls;
//! 4. random slot sequences: what the one-pass path accepts is a subset of
//!    what `Program::decode` plus `Compiler::compile` accept, and
//!    `Baseline::compile` accepts exactly what they do.
//!
//! The bpf_conformance suite through `Baseline::compile` is in
//! `tests/conformance.rs`, next to the optimizing compiler's run.
//! `BPF_DIFF_CASES` sets the case count of 1 and 2 for a longer run.
//!
//! Programs are written as raw slots here (`slot`), from the eBPF
//! instruction-set encoding, so the bytes the baseline reads do not come
//! from our own encoder.

use std::cell::RefCell;

use bpf_isa::arbitrary::runnable_program;
use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_x86::Baseline;
use bpf_vm::helpers::HelperRegistry;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// One 8-byte slot: opcode, registers, offset, immediate (little-endian).
fn slot(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    bpf_isa::RawInsn::new(op, dst, src, off, imm).to_bytes()
}

/// `ld_imm64 dst, v` (two slots).
fn ld_imm64(out: &mut Vec<[u8; 8]>, dst: u8, v: u64) {
    out.push(slot(0x18, dst, 0, 0, v as u32 as i32));
    out.push(slot(0, 0, 0, 0, (v >> 32) as u32 as i32));
}

fn bytes(slots: &[[u8; 8]]) -> Vec<u8> {
    slots.concat()
}

/// `default` cases, or `BPF_DIFF_CASES` when set (for longer runs).
fn cases_or_env(default: u32) -> u32 {
    std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // The shared generator filters its programs.
        max_local_rejects: 1 << 22,
        max_global_rejects: 1 << 20,
        ..Config::default()
    })
}

fn fmt(prog: &Program) -> String {
    bpf_isa::fmt_program(prog, &Default::default())
}

// ---------------------------------------------------------------------------
// 1. The shared generator's programs.

#[test]
fn baseline_matches_interpreter_on_runnable_programs() {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let jit = RefCell::new(Baseline::new());
    // (cases, handled by the one-pass path)
    let counts = RefCell::new((0u32, 0u32));
    let cases = cases_or_env(3000);
    let result = runner(cases).run(&runnable_program(48), |prog| {
        let vm = bpf_vm::Interpreter::new(&prog)
            .map_err(|e| TestCaseError::fail(format!("interpreter: {e}")))?;
        let mut mem = [0u8; 8];
        let want = vm
            .run_mem(&mut mem)
            .map_err(|e| TestCaseError::fail(format!("interpreter run: {e}")))?;
        let code = prog.to_bytes();
        counts.borrow_mut().0 += 1;
        let compiled = jit
            .borrow_mut()
            .try_compile(&code, &opts)
            .map_err(|e| TestCaseError::fail(format!("baseline: {e}")))?;
        let Some(native) = compiled else {
            // The generator emits nothing the one-pass path leaves out.
            return Err(TestCaseError::fail(format!(
                "left to the optimizing compiler:\n{}",
                fmt(&prog)
            )));
        };
        counts.borrow_mut().1 += 1;
        let mut mem2 = [0u8; 8];
        // SAFETY: the shaped program only accesses the first 64 bytes of its stack.
        let got = unsafe { native.call_mem(&mut mem2) };
        prop_assert_eq!(got, want, "program:\n{}", fmt(&prog));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (total, handled) = *counts.borrow();
    eprintln!("runnable programs: {handled} of {total} compiled by the one-pass path");
    assert!(total >= cases, "only {total} cases ran");
    assert_eq!(
        handled, total,
        "every case is compiled by the one-pass path"
    );
}

// ---------------------------------------------------------------------------
// 2. The targeted generator.

/// Buffer size; programs address it through a base register set to its
/// middle (`MID`), so offsets run from -256 to 255.
const BUF: usize = 512;
const MID: i32 = 256;
/// Stack slot holding the buffer's address.
const PTR_SLOT: i16 = -8;
/// Stack slot holding a loop counter.
const COUNT_SLOT: i16 = -16;
/// The stack bytes steps read and write: `[r10 - 64, r10 - 16)`.
const STACK_LO: i16 = -64;
const STACK_HI: i16 = -16;

/// An instruction or short sequence without control flow.
#[derive(Clone, Debug)]
enum Simple {
    /// One ALU instruction (`op` a full opcode; `off` for `movsx`/`sdiv`).
    Alu {
        op: u8,
        dst: u8,
        src: u8,
        off: i16,
        imm: i32,
    },
    /// Division or remainder, optionally preceded by setting the dividend
    /// and (register form) the divisor.
    Div {
        op: u8,
        signed: bool,
        dst: u8,
        src: u8,
        imm: i32,
        set_dst: Option<u64>,
        set_src: Option<u64>,
    },
    /// Shift by a register, optionally setting the count first.
    ShiftReg {
        op: u8,
        dst: u8,
        src: u8,
        count: Option<i32>,
    },
    /// `ld_imm64`.
    LdImm { dst: u8, v: u64 },
    /// `dst = *(size *)(p + off)` (`op` 0x61.. or the `MEMSX` 0x81..).
    Load { op: u8, dst: u8, p: u8, off: i16 },
    /// `*(size *)(p + off) = src`.
    Store { op: u8, p: u8, src: u8, off: i16 },
    /// `*(size *)(p + off) = imm`.
    StImm { op: u8, p: u8, off: i16, imm: i32 },
    /// Stack load (`op` as `Load`, base r10).
    StackLoad { op: u8, dst: u8, off: i16 },
    /// Stack store of a register or (`imm` set) an immediate.
    StackStore {
        op: u8,
        src: u8,
        off: i16,
        imm: Option<i32>,
    },
    /// An atomic on the buffer (`op` 0xc3 or 0xdb, `aop` the operation);
    /// for `cmpxchg`, `matching` loads the old value into r0 first.
    Atomic {
        op: u8,
        aop: i32,
        p: u8,
        src: u8,
        off: i16,
        matching: bool,
    },
    /// Load-acquire (`store` false) or store-release of size `op`.
    AcqRel {
        op: u8,
        store: bool,
        p: u8,
        reg: u8,
        off: i16,
    },
}

/// Control flow around simple steps.
#[derive(Clone, Debug)]
enum Block {
    Simple(Simple),
    /// `[prep] if a <cond> b/imm goto end; body; [filler]; end:`.
    /// `op` is a full conditional jump opcode, or 0x05/0x06 for `ja`.
    Forward {
        op: u8,
        a: u8,
        b: u8,
        imm: i32,
        prep: u8,
        body: Vec<Simple>,
        long: bool,
    },
    /// A loop of `n` iterations closed by a backward jump of kind `kind`
    /// (see `emit_loop`).
    Loop {
        kind: usize,
        w32: bool,
        n: i32,
        c: u8,
        k: u8,
        body: Vec<Simple>,
        long: bool,
    },
}

/// Registers steps compute with (r10 is only ever a base).
fn reg() -> impl Strategy<Value = u8> + Clone {
    0..10u8
}

/// Values of every shape: small, u32 with bit 31 set, negative i32,
/// full 64-bit, and the extremes.
fn value() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        (0..100u64),
        (0x8000_0000u64..=0xffff_ffff),
        any::<i32>().prop_map(|v| i64::from(v.min(-1)) as u64),
        any::<u64>(),
        prop::sample::select(vec![
            0,
            1,
            u64::MAX,
            i64::MIN as u64,
            i64::MAX as u64,
            0x8000_0000,
            0xffff_ffff,
            0xffff_ffff_8000_0000,
            0x1_0000_0000,
        ]),
    ]
}

fn small_imm() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        -300..300i32,
        any::<i32>(),
        prop::sample::select(vec![0, 1, -1, i32::MIN, i32::MAX, 0x7f, 0x80, -0x80, -0x81]),
    ]
}

/// A buffer offset (from `MID`) for an access of `size` bytes, aligned
/// to `size` when `aligned`.
fn buf_off(size: i16, aligned: bool) -> impl Strategy<Value = i16> + Clone {
    (-(MID as i16)..(MID as i16 - size + 1)).prop_map(move |o| {
        if aligned {
            o.div_euclid(size) * size
        } else {
            o
        }
    })
}

fn stack_off(size: i16) -> impl Strategy<Value = i16> + Clone {
    STACK_LO..(STACK_HI - size + 1)
}

/// Size field (0x00 w, 0x08 h, 0x10 b, 0x18 dw) with its byte count.
fn size() -> impl Strategy<Value = (u8, i16)> + Clone {
    prop::sample::select(vec![(0x00u8, 4i16), (0x08, 2), (0x10, 1), (0x18, 8)])
}

/// ALU operations other than division: (opcode with the class, off, imm
/// chooser). Immediate shifts keep their count in range.
fn alu() -> impl Strategy<Value = Simple> {
    let regular = (
        prop::sample::select(vec![0x00u8, 0x10, 0x20, 0x40, 0x50, 0xa0, 0xb0]),
        any::<bool>(),
        any::<bool>(),
        reg(),
        reg(),
        small_imm(),
    )
        .prop_map(|(o, w64, by_reg, dst, src, imm)| {
            let op = o | if w64 { 7 } else { 4 } | if by_reg { 8 } else { 0 };
            Simple::Alu {
                op,
                dst,
                src: if by_reg { src } else { 0 },
                off: 0,
                imm: if by_reg { 0 } else { imm },
            }
        });
    let shift_imm = (
        prop::sample::select(vec![0x60u8, 0x70, 0xc0]),
        any::<bool>(),
        reg(),
        0..64i32,
    )
        .prop_map(|(o, w64, dst, imm)| Simple::Alu {
            op: o | if w64 { 7 } else { 4 },
            dst,
            src: 0,
            off: 0,
            imm: if w64 { imm } else { imm & 31 },
        });
    let neg = (any::<bool>(), reg()).prop_map(|(w64, dst)| Simple::Alu {
        op: if w64 { 0x87 } else { 0x84 },
        dst,
        src: 0,
        off: 0,
        imm: 0,
    });
    let movsx = (
        prop::sample::select(vec![
            (0xbfu8, 8i16),
            (0xbf, 16),
            (0xbf, 32),
            (0xbc, 8),
            (0xbc, 16),
        ]),
        reg(),
        reg(),
    )
        .prop_map(|((op, off), dst, src)| Simple::Alu {
            op,
            dst,
            src,
            off,
            imm: 0,
        });
    let end = (
        prop::sample::select(vec![0xd4u8, 0xdc, 0xd7]),
        prop::sample::select(vec![16i32, 32, 64]),
        reg(),
    )
        .prop_map(|(op, imm, dst)| Simple::Alu {
            op,
            dst,
            src: 0,
            off: 0,
            imm,
        });
    prop_oneof![4 => regular, 2 => shift_imm, 1 => neg, 2 => movsx, 2 => end]
}

fn div() -> impl Strategy<Value = Simple> {
    let divisor = prop::sample::select(vec![
        0u64,
        1,
        u64::MAX,
        0xffff_ffff,
        2,
        3,
        7,
        0x8000_0000,
        i64::MIN as u64,
        0xffff_ffff_0000_0000,
        0x1_0000_0001,
    ]);
    let dividend = prop::sample::select(vec![
        i64::MIN as u64,
        0x8000_0000,
        0xffff_ffff_8000_0000,
        u64::MAX,
        1000,
        0xffff_ffff,
        0x1234_5678_9abc_def0,
    ]);
    let imm = prop_oneof![
        prop::sample::select(vec![0i32, 1, -1, i32::MIN, 2, 7, -7, 3]),
        any::<i32>(),
    ];
    (
        prop::sample::select(vec![0x34u8, 0x94]),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        reg(),
        reg(),
        imm,
        prop::option::of(prop_oneof![dividend, value()]),
        prop::option::weighted(0.7, prop_oneof![divisor, value()]),
    )
        .prop_map(
            |(o, w64, by_reg, signed, dst, src, imm, set_dst, set_src)| Simple::Div {
                op: o | if w64 { 3 } else { 0 } | if by_reg { 8 } else { 0 },
                signed,
                dst,
                src: if by_reg { src } else { 0 },
                imm: if by_reg { 0 } else { imm },
                set_dst,
                set_src: if by_reg { set_src } else { None },
            },
        )
}

fn shift_reg() -> impl Strategy<Value = Simple> {
    (
        prop::sample::select(vec![0x6cu8, 0x7c, 0xcc, 0x6f, 0x7f, 0xcf]),
        prop_oneof![reg(), Just(4u8)],
        prop_oneof![reg(), Just(4u8)],
        prop::option::weighted(0.7, prop_oneof![0..70i32, any::<i32>()]),
    )
        .prop_map(|(op, dst, src, count)| Simple::ShiftReg {
            op,
            dst,
            src,
            count,
        })
}

fn memory() -> impl Strategy<Value = Simple> {
    let load = (size(), any::<bool>(), reg(), reg(), any::<bool>()).prop_flat_map(
        |((sz, n), sx, dst, p, aligned)| {
            buf_off(n, aligned).prop_map(move |off| {
                let sx = sx && n < 8;
                Simple::Load {
                    op: if sx { 0x81 | sz } else { 0x61 | sz },
                    dst,
                    p,
                    off,
                }
            })
        },
    );
    let store = (size(), reg(), reg(), any::<bool>()).prop_flat_map(|((sz, n), p, src, al)| {
        buf_off(n, al).prop_map(move |off| Simple::Store {
            op: 0x63 | sz,
            p,
            src,
            off,
        })
    });
    let st = (size(), reg(), small_imm(), any::<bool>()).prop_flat_map(|((sz, n), p, imm, al)| {
        buf_off(n, al).prop_map(move |off| Simple::StImm {
            op: 0x62 | sz,
            p,
            off,
            imm,
        })
    });
    let stack_load = (size(), any::<bool>(), reg()).prop_flat_map(|((sz, n), sx, dst)| {
        stack_off(n).prop_map(move |off| {
            let sx = sx && n < 8;
            Simple::StackLoad {
                op: if sx { 0x81 | sz } else { 0x61 | sz },
                dst,
                off,
            }
        })
    });
    let stack_store =
        (size(), reg(), prop::option::of(small_imm())).prop_flat_map(|((sz, n), src, imm)| {
            stack_off(n).prop_map(move |off| Simple::StackStore {
                op: if imm.is_some() { 0x62 | sz } else { 0x63 | sz },
                src,
                off,
                imm,
            })
        });
    let atomic = (
        any::<bool>(),
        prop::sample::select(vec![
            0x00i32, 0x40, 0x50, 0xa0, 0x01, 0x41, 0x51, 0xa1, 0xe1, 0xf1,
        ]),
        reg(),
        reg(),
        any::<bool>(),
    )
        .prop_flat_map(|(w64, aop, p, src, matching)| {
            let n = if w64 { 8 } else { 4 };
            buf_off(n, true).prop_map(move |off| Simple::Atomic {
                op: if w64 { 0xdb } else { 0xc3 },
                aop,
                p,
                src,
                off,
                matching,
            })
        });
    let acq_rel = (size(), any::<bool>(), reg(), reg()).prop_flat_map(|((sz, n), store, p, r)| {
        buf_off(n, true).prop_map(move |off| Simple::AcqRel {
            op: 0xc3 | sz,
            store,
            p,
            reg: r,
            off,
        })
    });
    prop_oneof![
        3 => load,
        3 => store,
        2 => st,
        2 => stack_load,
        2 => stack_store,
        4 => atomic,
        1 => acq_rel,
    ]
}

fn simple() -> impl Strategy<Value = Simple> + Clone {
    prop_oneof![
        4 => alu(),
        3 => div(),
        2 => shift_reg(),
        1 => (reg(), value()).prop_map(|(dst, v)| Simple::LdImm { dst, v }),
        5 => memory(),
    ]
    .boxed()
}

/// The conditions: `code >> 4` of jeq .. jsle.
const CONDS: [u8; 11] = [1, 2, 3, 4, 5, 6, 7, 0xa, 0xb, 0xc, 0xd];

/// Kinds of loop closers (see `emit_loop`).
const LOOP_KINDS: usize = 32;

fn block() -> impl Strategy<Value = Block> {
    let fwd = (
        prop_oneof![
            10 => (prop::sample::select(CONDS.to_vec()), any::<bool>(), any::<bool>())
                .prop_map(|(c, w32, by_reg)| (c << 4) | if w32 { 6 } else { 5 } | if by_reg { 8 } else { 0 }),
            1 => Just(0x05u8),
            1 => Just(0x06u8),
        ],
        reg(),
        reg(),
        small_imm(),
        0..3u8,
        prop::collection::vec(simple(), 0..4),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(op, a, b, imm, prep, body, long)| Block::Forward {
            op,
            a,
            b,
            imm,
            prep,
            body,
            long,
        });
    let lp = (
        0..LOOP_KINDS,
        any::<bool>(),
        1..5i32,
        reg(),
        reg(),
        prop::collection::vec(simple(), 0..4),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(kind, w32, n, c, k, body, long)| Block::Loop {
            kind,
            w32,
            n,
            c,
            k: if k == c { (k + 1) % 10 } else { k },
            body,
            long,
        });
    prop_oneof![6 => simple().prop_map(Block::Simple), 2 => fwd, 1 => lp]
}

/// `p = buffer + MID` (from the stack slot).
fn load_base(out: &mut Vec<[u8; 8]>, p: u8) {
    out.push(slot(0x79, p, 10, PTR_SLOT, 0));
    out.push(slot(0x07, p, 0, 0, MID));
}

/// Overwrites the base register `p` so no address reaches the result.
fn clear_base(out: &mut Vec<[u8; 8]>, p: u8) {
    out.push(slot(0xb7, p, 0, 0, 0x5a5a + i32::from(p)));
}

/// `r` if it differs from `p`, else another register.
fn other(r: u8, p: u8) -> u8 {
    if r == p {
        (r + 1) % 10
    } else {
        r
    }
}

fn emit_simple(out: &mut Vec<[u8; 8]>, s: &Simple) {
    match *s {
        Simple::Alu {
            op,
            dst,
            src,
            off,
            imm,
        } => out.push(slot(op, dst, src, off, imm)),
        Simple::Div {
            op,
            signed,
            dst,
            src,
            imm,
            set_dst,
            set_src,
        } => {
            if let Some(v) = set_dst {
                ld_imm64(out, dst, v);
            }
            if let Some(v) = set_src {
                ld_imm64(out, src, v);
            }
            out.push(slot(op, dst, src, i16::from(signed), imm));
        }
        Simple::ShiftReg {
            op,
            dst,
            src,
            count,
        } => {
            if let Some(c) = count {
                out.push(slot(0xb7, src, 0, 0, c));
            }
            out.push(slot(op, dst, src, 0, 0));
        }
        Simple::LdImm { dst, v } => ld_imm64(out, dst, v),
        Simple::Load { op, dst, p, off } => {
            load_base(out, p);
            out.push(slot(op, dst, p, off, 0));
            if dst != p {
                clear_base(out, p);
            }
        }
        Simple::Store { op, p, src, off } => {
            load_base(out, p);
            out.push(slot(op, p, other(src, p), off, 0));
            clear_base(out, p);
        }
        Simple::StImm { op, p, off, imm } => {
            load_base(out, p);
            out.push(slot(op, p, 0, off, imm));
            clear_base(out, p);
        }
        Simple::StackLoad { op, dst, off } => out.push(slot(op, dst, 10, off, 0)),
        Simple::StackStore { op, src, off, imm } => match imm {
            Some(imm) => out.push(slot(op, 10, 0, off, imm)),
            None => out.push(slot(op, 10, src, off, 0)),
        },
        Simple::Atomic {
            op,
            aop,
            p,
            src,
            off,
            matching,
        } => {
            let cmpxchg = aop == 0xf1;
            // cmpxchg's r0 is the comparand: keep the address out of it.
            let p = if cmpxchg && p == 0 { 6 } else { p };
            let src = other(src, p);
            load_base(out, p);
            if cmpxchg && matching {
                // A 64-bit load also for the 32-bit form where it fits:
                // r0's low half matches, its upper half (the next bytes)
                // must not survive into the result.
                let wide = op == 0xdb || i32::from(off) + 8 <= MID;
                out.push(slot(if wide { 0x79 } else { 0x61 }, 0, p, off, 0));
            }
            out.push(slot(op, p, src, off, aop));
            clear_base(out, p);
        }
        Simple::AcqRel {
            op,
            store,
            p,
            reg,
            off,
        } => {
            load_base(out, p);
            if store {
                out.push(slot(op, p, other(reg, p), off, 0x110));
                clear_base(out, p);
            } else {
                out.push(slot(op, reg, p, off, 0x100));
                if reg != p {
                    clear_base(out, p);
                }
            }
        }
    }
}

/// More than 127 bytes of code (16 `ld_imm64` of full 64-bit values).
fn filler(out: &mut Vec<[u8; 8]>) {
    for i in 0..16u8 {
        ld_imm64(
            out,
            i % 10,
            0x0123_4567_89ab_cdef_u64.rotate_left(u32::from(i) * 4),
        );
    }
}

/// Jump from `from` (already pushed) to `to`: the offset goes in `off`,
/// or in `imm` for the JMP32-class `ja` (0x06).
fn patch(out: &mut [[u8; 8]], from: usize, to: usize) {
    let d = to as i64 - from as i64 - 1;
    let s = &mut out[from];
    if s[0] == 0x06 {
        s[4..8].copy_from_slice(&(d as i32).to_le_bytes());
    } else {
        s[2..4].copy_from_slice(&(d as i16).to_le_bytes());
    }
}

fn emit_forward(out: &mut Vec<[u8; 8]>, b: &Block) {
    let Block::Forward {
        op,
        a,
        b,
        imm,
        prep,
        body,
        long,
    } = b
    else {
        return;
    };
    let (op, a, b, imm) = (*op, *a, *b, *imm);
    match prep {
        // Equal operands (so eq/ge/le conditions hold).
        1 if op & 8 != 0 => out.push(slot(0xbf, a, b, 0, 0)),
        1 => out.push(slot(0xb7, a, 0, 0, imm)),
        // Operands near each other.
        2 => out.push(slot(0xb7, a, 0, 0, imm.wrapping_add(1))),
        _ => {}
    }
    let at = out.len();
    if op & 8 != 0 {
        out.push(slot(op, a, b, 0, 0));
    } else if op == 0x05 || op == 0x06 {
        out.push(slot(op, 0, 0, 0, 0));
    } else {
        out.push(slot(op, a, 0, 0, imm));
    }
    for s in body {
        emit_simple(out, s);
    }
    if *long {
        filler(out);
    }
    let end = out.len();
    patch(out, at, end);
}

/// A loop running `body` `n` times; the counter lives at `COUNT_SLOT`
/// and is loaded into `c` (and the bound into `k`) to close the loop.
///
/// Kinds 0-11 count down from `n` and loop while `c` is not 0 (`c` in
/// 1..=n); 12-23 count up from 0 and loop while `c < n`; 24 and 25 exit
/// forward on `c == 0` and loop with `ja`/`gotol` back; 26-31 repeat
/// 0-5 with the operands swapped where the condition allows.
fn emit_loop(out: &mut Vec<[u8; 8]>, b: &Block) {
    let Block::Loop {
        kind,
        w32,
        n,
        c,
        k,
        body,
        long,
    } = b
    else {
        return;
    };
    let (kind, n, c, k) = (*kind, *n, *c, *k);
    let class = if *w32 { 6 } else { 5 };
    let up = (12..24).contains(&kind);
    out.push(slot(0x7a, 10, 0, COUNT_SLOT, if up { 0 } else { n }));
    let top = out.len();
    for s in body {
        emit_simple(out, s);
    }
    if *long {
        filler(out);
    }
    out.push(slot(0x79, c, 10, COUNT_SLOT, 0));
    out.push(slot(0x07, c, 0, 0, if up { 1 } else { -1 }));
    out.push(slot(0x7b, 10, c, COUNT_SLOT, 0));
    // (condition, dst, src or none, imm or bound value in k)
    let (cond, dst, src, v): (u8, u8, Option<u8>, i32) = match kind {
        // count down: continue while c >= 1
        0 => (5, c, None, 0),     // c != 0
        1 => (2, c, None, 0),     // c > 0
        2 => (6, c, None, 0),     // c s> 0
        3 => (3, c, None, 1),     // c >= 1
        4 => (7, c, None, 1),     // c s>= 1
        5 => (4, c, None, 7),     // c & 7
        6 => (5, c, Some(k), 0),  // c != k(0)
        7 => (2, c, Some(k), 0),  // c > k(0)
        8 => (6, c, Some(k), 0),  // c s> k(0)
        9 => (3, c, Some(k), 1),  // c >= k(1)
        10 => (7, c, Some(k), 1), // c s>= k(1)
        11 => (4, c, Some(k), 7), // c & k(7)
        // count up: continue while c < n
        12 => (0xa, c, None, n),     // c < n
        13 => (0xb, c, None, n - 1), // c <= n-1
        14 => (0xc, c, None, n),     // c s< n
        15 => (0xd, c, None, n - 1), // c s<= n-1
        16 => (0xa, c, Some(k), n),
        17 => (0xb, c, Some(k), n - 1),
        18 => (0xc, c, Some(k), n),
        19 => (0xd, c, Some(k), n - 1),
        20 => (2, k, Some(c), n),     // k(n) > c
        21 => (3, k, Some(c), n - 1), // k(n-1) >= c
        22 => (6, k, Some(c), n),     // k(n) s> c
        23 => (7, k, Some(c), n - 1), // k(n-1) s>= c
        24 | 25 => {
            // if c == 0 goto out; goto top; out:
            out.push(slot((1 << 4) | class, c, 0, 1, 0));
            let at = out.len();
            out.push(slot(if kind == 24 { 0x05 } else { 0x06 }, 0, 0, 0, 0));
            patch(out, at, top);
            return;
        }
        // count down, operands swapped
        26 => (0xa, k, Some(c), 0), // k(0) < c
        27 => (0xb, k, Some(c), 1), // k(1) <= c
        28 => (0xc, k, Some(c), 0), // k(0) s< c
        29 => (0xd, k, Some(c), 1), // k(1) s<= c
        30 => (1, c, None, 0),      // c == 0 falls through: see below
        _ => (5, k, Some(c), 0),    // k(0) != c
    };
    if kind == 30 {
        // if c == k(0) goto out (forward, by register); ja top
        out.push(slot(0xb7, k, 0, 0, 0));
        out.push(slot((1 << 4) | class | 8, c, k, 1, 0));
        let at = out.len();
        out.push(slot(0x05, 0, 0, 0, 0));
        patch(out, at, top);
        return;
    }
    let at = match src {
        Some(s) => {
            out.push(slot(0xb7, k, 0, 0, v));
            out.push(slot((cond << 4) | class | 8, dst, s, 0, 0));
            out.len() - 1
        }
        None => {
            out.push(slot((cond << 4) | class, dst, 0, 0, v));
            out.len() - 1
        }
    };
    patch(out, at, top);
}

/// The whole program: the buffer's address saved, the stack window and
/// every register initialized, the blocks, then every register folded
/// into r0.
fn targeted_program(init: &[u64; 10], stack: &[i32; 6], blocks: &[Block]) -> Vec<[u8; 8]> {
    let mut out = Vec::new();
    out.push(slot(0x7b, 10, 1, PTR_SLOT, 0));
    for (i, &v) in stack.iter().enumerate() {
        out.push(slot(0x7a, 10, 0, STACK_LO + 8 * i as i16, v));
    }
    for (r, &v) in init.iter().enumerate() {
        ld_imm64(&mut out, r as u8, v);
    }
    for b in blocks {
        match b {
            Block::Simple(s) => emit_simple(&mut out, s),
            Block::Forward { .. } => emit_forward(&mut out, b),
            Block::Loop { .. } => emit_loop(&mut out, b),
        }
    }
    for r in 1..10 {
        out.push(slot(0x27, 0, 0, 0, 31));
        out.push(slot(0xaf, 0, r, 0, 0));
    }
    out.push(slot(0x95, 0, 0, 0, 0));
    out
}

#[test]
fn baseline_matches_interpreter_on_targeted_programs() {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let jit = RefCell::new(Baseline::new());
    let count = RefCell::new(0u32);
    let cases = cases_or_env(2500);
    let strategy = (
        any::<[u64; 10]>(),
        any::<[i32; 6]>(),
        prop::collection::vec(block(), 1..24),
        prop::collection::vec(any::<u8>(), BUF),
    );
    let result = runner(cases).run(&strategy, |(init, stack, blocks, fill)| {
        let slots = targeted_program(&init, &stack, &blocks);
        let code = bytes(&slots);
        let prog = Program::decode(&code)
            .map_err(|e| TestCaseError::fail(format!("decode: {e}\n{blocks:?}")))?;
        let listing = fmt(&prog);
        let vm = bpf_vm::Interpreter::new(&prog)
            .map_err(|e| TestCaseError::fail(format!("interpreter: {e}\n{listing}")))?;
        let mut want_mem = fill.clone();
        let want = vm
            .run_mem(&mut want_mem)
            .map_err(|e| TestCaseError::fail(format!("interpreter run: {e}\n{listing}")))?;
        let compiled = jit
            .borrow_mut()
            .try_compile(&code, &opts)
            .map_err(|e| TestCaseError::fail(format!("baseline: {e}")))?;
        let Some(native) = compiled else {
            return Err(TestCaseError::fail(format!(
                "left to the optimizing compiler:\n{listing}"
            )));
        };
        *count.borrow_mut() += 1;
        let mut got_mem = fill.clone();
        // SAFETY: the interpreter ran the program on a copy of this buffer
        // with its bounds checks; the program's control flow and addresses
        // do not depend on the buffer's address (it never reaches a value
        // other than a base register), so the native run makes the same
        // accesses.
        let got = unsafe { native.call_mem(&mut got_mem) };
        prop_assert_eq!(got, want, "r0 differs; program:\n{}", listing);
        prop_assert!(
            got_mem == want_mem,
            "buffer differs at {:?}; program:\n{}",
            got_mem.iter().zip(&want_mem).position(|(a, b)| a != b),
            listing
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let n = *count.borrow();
    eprintln!("targeted programs: {n} cases, all compiled by the one-pass path");
    assert!(n >= cases, "only {n} cases ran");
}

// ---------------------------------------------------------------------------
// 3. Calls.

/// The native helper: `a * b + c - d + 2 * e`.
unsafe extern "C" fn mix_helper(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    a.wrapping_mul(b)
        .wrapping_add(c)
        .wrapping_sub(d)
        .wrapping_add(e.wrapping_mul(2))
}

const MIX_ID: i32 = 77;

/// Runs `slots` through the one-pass path (which must take it), the
/// interpreter (with `mix_helper` as helper 77) and the optimizing
/// compiler; all three must give `expected`.
fn check_calls(name: &str, slots: &[[u8; 8]], expected: u64) {
    let code = bytes(slots);
    let mut table = HelperTable::new();
    table.insert(MIX_ID, mix_helper);
    let opts = JitOptions::new(&table);
    let native = Baseline::new()
        .try_compile(&code, &opts)
        .expect("executable memory")
        .unwrap_or_else(|| panic!("{name}: left to the optimizing compiler"));
    let mut mem = [0u8; 8];
    // SAFETY: the programs only touch their own stack frames.
    let got = unsafe { native.call_mem(&mut mem) };

    let prog = Program::decode(&code).expect("decodes");
    let mut reg = HelperRegistry::new();
    reg.register(MIX_ID, |_, a: [u64; 5]| {
        // SAFETY: a pure function of its arguments.
        Ok(unsafe { mix_helper(a[0], a[1], a[2], a[3], a[4]) })
    });
    let vm = bpf_vm::Interpreter::builder(&prog)
        .helpers(reg)
        .build()
        .expect("interpreter");
    let want = vm.run_mem(&mut [0u8; 8]).expect("interpreter run");

    let full = bpf_jit_x86::compile(&prog, &opts).expect("optimizing compile");
    // SAFETY: as above.
    let optimized = unsafe { full.call_mem(&mut [0u8; 8]) };

    assert_eq!(want, expected, "{name}: interpreter vs hand computation");
    assert_eq!(got, expected, "{name}: baseline vs hand computation");
    assert_eq!(optimized, expected, "{name}: optimizing JIT");
}

/// `call` to the subprogram starting at slot `target` from slot `at`.
fn call_local(at: usize, target: usize) -> [u8; 8] {
    slot(0x85, 0, 1, 0, (target as i64 - at as i64 - 1) as i32)
}

fn mov(dst: u8, imm: i32) -> [u8; 8] {
    slot(0xb7, dst, 0, 0, imm)
}

fn add_reg(dst: u8, src: u8) -> [u8; 8] {
    slot(0x0f, dst, src, 0, 0)
}

const EXIT: [u8; 8] = [0x95, 0, 0, 0, 0, 0, 0, 0];

/// main -> sub1 -> sub2 -> sub3 (three calls deep); every callee writes
/// r6-r9 and its own stack, the callers check theirs survived.
#[test]
fn nested_calls_three_deep() {
    let mut p: Vec<[u8; 8]> = vec![
        // main
        mov(6, 10),
        mov(7, 20),
        mov(8, 30),
        mov(9, 40),
        slot(0x7a, 10, 0, -8, 1000), // *(u64 *)(r10 - 8) = 1000
        mov(1, 5),
        mov(2, 7),
        [0; 8], // 7: call sub1
        add_reg(0, 6),
        add_reg(0, 7),
        add_reg(0, 8),
        add_reg(0, 9),
        slot(0x79, 1, 10, -8, 0), // r1 = *(u64 *)(r10 - 8)
        add_reg(0, 1),
        EXIT,
    ];
    // sub1(a, b) = sub2(a + b) + a * b + 77 (its own stack slot)
    let sub1 = p.len();
    p.extend([
        slot(0xbf, 6, 1, 0, 0),    // r6 = r1
        slot(0xbf, 7, 2, 0, 0),    // r7 = r2
        slot(0x7a, 10, 0, -8, 77), // *(u64 *)(r10 - 8) = 77
        mov(8, -1),
        mov(9, -2),
        slot(0xbf, 1, 6, 0, 0), // r1 = r6
        add_reg(1, 7),          // r1 += r7
        [0; 8],                 // call sub2
        slot(0xbf, 2, 6, 0, 0), // r2 = r6
        slot(0x2f, 2, 7, 0, 0), // r2 *= r7
        add_reg(0, 2),
        slot(0x79, 8, 10, -8, 0), // r8 = *(u64 *)(r10 - 8)
        add_reg(0, 8),
        EXIT,
    ]);
    // sub2(x) = sub3(2x) + x, clobbering r6-r9
    let sub2 = p.len();
    p.extend([
        mov(6, 1000),
        mov(8, 3),
        mov(9, 4),
        slot(0xbf, 7, 1, 0, 0),    // r7 = r1
        slot(0x7b, 10, 7, -16, 0), // *(u64 *)(r10 - 16) = r7
        slot(0x27, 1, 0, 0, 2),    // r1 *= 2
        [0; 8],                    // call sub3
        slot(0x79, 7, 10, -16, 0), // r7 = *(u64 *)(r10 - 16)
        add_reg(0, 7),
        EXIT,
    ]);
    // sub3(y) = 3y + 1 through its stack
    let sub3 = p.len();
    p.extend([
        slot(0xbf, 6, 1, 0, 0), // r6 = r1
        mov(9, 3),
        slot(0x2f, 6, 9, 0, 0), // r6 *= r9
        slot(0xbf, 0, 6, 0, 0), // r0 = r6
        slot(0x07, 0, 0, 0, 1), // r0 += 1
        mov(6, 0),
        mov(7, 0),
        mov(8, 0),
        slot(0x7b, 10, 0, -16, 0), // *(u64 *)(r10 - 16) = r0
        mov(0, 0),
        slot(0x79, 0, 10, -16, 0), // r0 = *(u64 *)(r10 - 16)
        EXIT,
    ]);
    p[7] = call_local(7, sub1);
    p[sub1 + 7] = call_local(sub1 + 7, sub2);
    p[sub2 + 6] = call_local(sub2 + 6, sub3);
    // sub3(24) = 73; sub2(12) = 73 + 12 = 85; sub1(5, 7) = 85 + 35 + 77
    // = 197; main: 197 + 10 + 20 + 30 + 40 + 1000 = 1297.
    check_calls("nested", &p, 1297);
}

/// A helper call from main: arguments in r1-r5, r6 survives it.
#[test]
fn helper_call() {
    let p = vec![
        mov(6, 1000),
        mov(1, 6),
        mov(2, 7),
        mov(3, 100),
        mov(4, 3),
        mov(5, 1),
        slot(0x85, 0, 0, 0, MIX_ID),
        add_reg(0, 6),
        EXIT,
    ];
    // 6 * 7 + 100 - 3 + 2 * 1 = 141; + 1000
    check_calls("helper", &p, 1141);
}

/// Helper calls from a subprogram and around a loop in main; the
/// callee keeps values in r6-r9 across its helper call.
#[test]
fn helper_call_in_subprogram() {
    let mut p: Vec<[u8; 8]> = vec![
        // main: r6 = 0; for r7 in 3..=1 (3 iterations): r6 += sub(r7)
        mov(6, 0),
        mov(7, 3),
        slot(0xbf, 1, 7, 0, 0), // 2: r1 = r7
        [0; 8],                 // 3: call sub
        add_reg(6, 0),
        slot(0x17, 7, 0, 0, 1),  // r7 -= 1
        slot(0x55, 7, 0, -5, 0), // if r7 != 0 goto 2
        slot(0xbf, 0, 6, 0, 0),  // r0 = r6
        EXIT,
    ];
    // sub(x) = mix(x, x, 10, 0, 0) + x + 5 (r8 = x, r9 = 5 across the call)
    let sub = p.len();
    p.extend([
        slot(0xbf, 8, 1, 0, 0), // r8 = r1
        mov(9, 5),
        slot(0xbf, 2, 1, 0, 0), // r2 = r1
        mov(3, 10),
        mov(4, 0),
        mov(5, 0),
        slot(0x85, 0, 0, 0, MIX_ID),
        add_reg(0, 8),
        add_reg(0, 9),
        EXIT,
    ]);
    p[3] = call_local(3, sub);
    // sub(3) = 9 + 10 + 3 + 5 = 27; sub(2) = 4 + 10 + 2 + 5 = 21;
    // sub(1) = 1 + 10 + 1 + 5 = 17; total 65.
    check_calls("helper in subprogram", &p, 65);
}

/// Two callees of main sharing a third (a diamond), with a 32-bit
/// result zero-extended across the return.
#[test]
fn shared_callee() {
    let mut p: Vec<[u8; 8]> = vec![
        mov(1, 4),
        [0; 8], // 1: call a
        slot(0xbf, 6, 0, 0, 0),
        mov(1, 5),
        [0; 8], // 4: call b
        add_reg(0, 6),
        EXIT,
    ];
    // a(x) = leaf(x) + 1
    let a = p.len();
    p.extend([[0; 8], slot(0x07, 0, 0, 0, 1), EXIT]);
    // b(x) = leaf(x) * 2
    let b = p.len();
    p.extend([[0; 8], slot(0x27, 0, 0, 0, 2), EXIT]);
    // leaf(x) = (u32)(x - 6): w0 = w1; w0 -= 6
    let leaf = p.len();
    p.extend([slot(0xbc, 0, 1, 0, 0), slot(0x14, 0, 0, 0, 6), EXIT]);
    p[1] = call_local(1, a);
    p[4] = call_local(4, b);
    p[a] = call_local(a, leaf);
    p[b] = call_local(b, leaf);
    // a(4) = 0xffff_fffe + 1 = 0xffff_ffff; b(5) = 0xffff_ffff * 2
    // = 0x1_ffff_fffe; sum 0x2_ffff_fffd.
    check_calls("shared callee", &p, 0x2_ffff_fffd);
}

/// A subprogram placed before its only caller: lowering in slot order
/// first takes it for part of the main program, the call back into it
/// reveals the start, and the program is lowered again with every start
/// known. The callee also jumps backward inside itself, and a forward
/// branch of main stays inside main.
#[test]
fn callee_before_its_caller() {
    let mut p: Vec<[u8; 8]> = vec![
        mov(1, 3),
        slot(0x15, 1, 0, 1, 0), // if r1 == 0 goto +1 (inside main; not taken)
        [0; 8],                 // 2: call b
        EXIT,
    ];
    // a(x) = 1 + 7 * x for x > 0: r0 = 1; do { r0 += 7; r1 -= 1 } while r1 != 0
    let a = p.len();
    p.extend([
        mov(0, 1),
        slot(0x07, 0, 0, 0, 7),
        slot(0x07, 1, 0, 0, -1),
        slot(0x55, 1, 0, -3, 0), // if r1 != 0 goto -3
        EXIT,
    ]);
    // b(x) = a(x + 2) + 100
    let b = p.len();
    p.extend([
        slot(0x07, 1, 0, 0, 2),
        [0; 8], // call a
        slot(0x07, 0, 0, 0, 100),
        EXIT,
    ]);
    p[2] = call_local(2, b);
    p[b + 1] = call_local(b + 1, a);
    // b(3) = a(5) + 100 = 1 + 5 * 7 + 100 = 136
    check_calls("callee before its caller", &p, 136);
}

// ---------------------------------------------------------------------------
// 3b. `ld_imm64` pseudo sources.

/// Each pseudo source the resolver knows loads the value it resolves to
/// (the same as through the optimizing compiler), in the one-pass path;
/// a function reference, an unresolved source, or no resolver leave the
/// program to the optimizing compiler, which then gives the same result
/// or error.
#[test]
fn ld_imm64_pseudo_sources_load_the_resolved_value() {
    use bpf_isa::LdImm64Src;
    let helpers = HelperTable::new();
    // (src field, first imm, second imm, what the decoder reads)
    let cases: [(u8, i32, i32, LdImm64Src); 5] = [
        (1, 7, 0, LdImm64Src::MapFd(7)),
        (2, 7, 24, LdImm64Src::MapValue { fd: 7, off: 24 }),
        (3, 99, 0, LdImm64Src::BtfId(99)),
        (5, 2, 0, LdImm64Src::MapIdx(2)),
        (6, 2, 16, LdImm64Src::MapIdxValue { idx: 2, off: 16 }),
    ];
    let resolve = |slot: usize, src: LdImm64Src| -> Option<u64> {
        let base = 0x7f00_1234_5000u64 + 0x100 * slot as u64;
        match src {
            LdImm64Src::MapFd(7) => Some(base),
            LdImm64Src::MapValue { fd: 7, off } => Some(base + off as u64),
            LdImm64Src::BtfId(99) => Some(0xffff_ffff_8100_0000),
            LdImm64Src::MapIdx(2) => Some(base | 1),
            LdImm64Src::MapIdxValue { idx: 2, off } => Some((base | 1) + off as u64),
            _ => None,
        }
    };
    for (src, lo, hi, want_src) in cases {
        // r2 = 1; r1 = <pseudo> (slot 1); r0 = r1; r0 += r2; exit
        let slots = [
            slot(0xb7, 2, 0, 0, 1),
            slot(0x18, 1, src, 0, lo),
            slot(0, 0, 0, 0, hi),
            slot(0xbf, 0, 1, 0, 0),
            slot(0x0f, 0, 2, 0, 0),
            slot(0x95, 0, 0, 0, 0),
        ];
        let code = bytes(&slots);
        let want = resolve(1, want_src).expect("a resolved case") + 1;
        let opts = JitOptions::new(&helpers).with_ld_imm64(&resolve);
        let one_pass = Baseline::new()
            .try_compile(&code, &opts)
            .expect("executable memory")
            .unwrap_or_else(|| panic!("{want_src:?} left to the optimizing compiler"));
        // SAFETY: the program touches no memory.
        assert_eq!(unsafe { one_pass.call([0; 5]) }, want, "{want_src:?}");
        let prog = Program::decode(&code).expect("decodes");
        let full = bpf_jit_x86::Compiler::new()
            .compile(&prog, &opts)
            .expect("compiles");
        // SAFETY: as above.
        assert_eq!(
            unsafe { full.call([0; 5]) },
            want,
            "{want_src:?} (optimizing)"
        );
        // Without a resolver: not one-pass, and the same error either way.
        let bare = JitOptions::new(&helpers);
        assert!(Baseline::new()
            .try_compile(&code, &bare)
            .expect("memory")
            .is_none());
        let a = Baseline::new()
            .compile(&code, &bare)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let b = bpf_jit_x86::Compiler::new()
            .compile(&prog, &bare)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(a.is_err(), "{want_src:?} compiled without a resolver");
        assert_eq!(a, b, "{want_src:?} without a resolver");
    }
    // A source the resolver does not know: left to the optimizing
    // compiler, which reports it.
    let slots = [
        slot(0x18, 1, 1, 0, 8),
        slot(0, 0, 0, 0, 0),
        slot(0xb7, 0, 0, 0, 0),
        slot(0x95, 0, 0, 0, 0),
    ];
    let code = bytes(&slots);
    let opts = JitOptions::new(&helpers).with_ld_imm64(&resolve);
    assert!(Baseline::new()
        .try_compile(&code, &opts)
        .expect("memory")
        .is_none());
    assert!(Baseline::new().compile(&code, &opts).is_err());
}

// ---------------------------------------------------------------------------
// 4. Acceptance is a subset of the optimizing path's.

/// Every opcode the instruction set defines.
const VALID_OPCODES: &[u8] = &[
    // ALU (class 4) and ALU64 (class 7), immediate and register
    0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74, 0x7c,
    0x84, 0x94, 0x9c, 0xa4, 0xac, 0xb4, 0xbc, 0xc4, 0xcc, 0xd4, 0xdc, //
    0x07, 0x0f, 0x17, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x47, 0x4f, 0x57, 0x5f, 0x67, 0x6f, 0x77, 0x7f,
    0x87, 0x97, 0x9f, 0xa7, 0xaf, 0xb7, 0xbf, 0xc7, 0xcf, 0xd7, //
    // JMP (class 5)
    0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d, 0x55, 0x5d, 0x65, 0x6d, 0x75, 0x7d, 0x85,
    0x8d, 0x95, 0xa5, 0xad, 0xb5, 0xbd, 0xc5, 0xcd, 0xd5, 0xdd, 0xe5, //
    // JMP32 (class 6)
    0x06, 0x16, 0x1e, 0x26, 0x2e, 0x36, 0x3e, 0x46, 0x4e, 0x56, 0x5e, 0x66, 0x6e, 0x76, 0x7e, 0xa6,
    0xae, 0xb6, 0xbe, 0xc6, 0xce, 0xd6, 0xde, //
    // LD: ld_imm64, ld_abs, ld_ind
    0x18, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, //
    // LDX (MEM and MEMSX), ST, STX, atomics
    0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91, 0x62, 0x6a, 0x72, 0x7a, 0x63, 0x6b, 0x73, 0x7b, 0xc3,
    0xdb, 0xcb, 0xd3,
];

/// The immediates instructions give meaning to (byte swap widths,
/// atomic operations, …), picked from now and then.
const SPECIAL_IMMS: &[i32] = &[
    16, 32, 64, 0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xa0, 0xa1, 0xe1, 0xf1, 0x100, 0x110, 12, -1,
];

fn raw_slot(len: usize) -> impl Strategy<Value = [u8; 8]> {
    let opcode = prop_oneof![9 => prop::sample::select(VALID_OPCODES), 1 => any::<u8>()];
    let nibble = prop_oneof![9 => 0..11u8, 1 => 0..16u8];
    let src = prop_oneof![6 => Just(0u8), 4 => 0..11u8, 1 => 0..16u8];
    let off = prop_oneof![
        6 => Just(0i16),
        3 => -(len as i16)..(len as i16),
        1 => prop::sample::select(vec![1i16, 8, 16, 32, -8, -16]),
        1 => any::<i16>(),
    ];
    let imm = prop_oneof![
        5 => Just(0i32),
        3 => -(len as i32)..(len as i32 + 3),
        2 => prop::sample::select(SPECIAL_IMMS),
        1 => any::<i32>(),
    ];
    (opcode, nibble, src, off, imm)
        .prop_map(|(op, dst, src, off, imm)| slot(op, dst, src, off, imm))
}

fn raw_program() -> impl Strategy<Value = Vec<u8>> {
    (1..=12usize)
        .prop_flat_map(|len| {
            (
                prop::collection::vec(raw_slot(len), len),
                prop::bool::weighted(0.7),
                prop::option::weighted(0.15, (0..len, -3..(len as i32))),
            )
        })
        .prop_map(|(mut slots, exit, call)| {
            if let Some((at, imm)) = call {
                slots[at] = slot(0x85, 0, 1, 0, imm);
            }
            if exit {
                let last = slots.len() - 1;
                slots[last] = EXIT;
            }
            bytes(&slots)
        })
}

#[test]
fn one_pass_acceptance_is_a_subset() {
    let mut table = HelperTable::new();
    table.insert(1, mix_helper);
    table.insert(MIX_ID, mix_helper);
    let opts = JitOptions::new(&table);
    // Reused across cases (including rejected ones): a compile must not
    // depend on what an earlier one left behind.
    let reused = RefCell::new(Baseline::new());
    let full = RefCell::new(bpf_jit_x86::Compiler::new());
    let (accepted, total, compiled) = (RefCell::new(0u32), RefCell::new(0u32), RefCell::new(0u32));
    let cases = 50_000;
    let result = runner(cases).run(&raw_program(), |code| {
        *total.borrow_mut() += 1;
        let one_pass = reused
            .borrow_mut()
            .try_compile(&code, &opts)
            .map_err(|e| TestCaseError::fail(format!("try_compile: {e}")))?;
        let optimized = match Program::decode(&code) {
            Ok(prog) => full.borrow_mut().compile(&prog, &opts).map(|_| prog),
            Err(e) => {
                if one_pass.is_some() {
                    return Err(TestCaseError::fail(format!(
                        "one-pass accepted what decode rejects ({e}): {code:02x?}"
                    )));
                }
                Err(bpf_jit::JitError::at(
                    e.index,
                    bpf_jit::JitErrorKind::Decode(e.kind),
                ))
            }
        };
        if one_pass.is_some() {
            *accepted.borrow_mut() += 1;
            if let Err(e) = &optimized {
                return Err(TestCaseError::fail(format!(
                    "one-pass accepted what the optimizing compiler rejects ({e}): {code:02x?}"
                )));
            }
        }
        *compiled.borrow_mut() += u32::from(optimized.is_ok());
        let fallback = Baseline::new().compile(&code, &opts);
        prop_assert_eq!(
            fallback.is_ok(),
            optimized.is_ok(),
            "Baseline::compile {:?} vs decode + Compiler::compile {:?}: {:02x?}",
            fallback.as_ref().err().map(ToString::to_string),
            optimized.as_ref().err().map(ToString::to_string),
            code
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, total, compiled) = (*accepted.borrow(), *total.borrow(), *compiled.borrow());
    eprintln!(
        "random slots: {total} inputs, {compiled} compiled by decode + Compiler, \
         {accepted} by the one-pass path"
    );
    assert!(total >= cases, "only {total} cases ran");
    assert!(
        accepted * 20 >= total,
        "the generator reaches the one-pass path too rarely ({accepted} of {total})"
    );
}
