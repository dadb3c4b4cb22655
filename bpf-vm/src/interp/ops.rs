//! The interpreter's pre-decoded form: one compact [`Op`] per instruction, jump
//! targets resolved to op indices, helper ids resolved to table indices.

use std::sync::Arc;

use bpf_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LdImm64Src, Program, Size, Source, Width,
};

use crate::error::VmError;
use crate::helpers::{HelperFn, HelperRegistry, BPF_FUNC_LOOP, BPF_FUNC_TAIL_CALL};
use crate::maps::{Map, ProgArrayShared};

/// Tag of `ld_imm64` function references (`BPF_PSEUDO_FUNC`): the low 32 bits hold the op index.
pub(crate) const FUNC_TAG: u64 = 0xbfbf_f0f0_0000_0000;
/// Mask selecting the tag bits of [`FUNC_TAG`].
pub(crate) const FUNC_TAG_MASK: u64 = 0xffff_ffff_0000_0000;

macro_rules! codes {
    ($($name:ident),* $(,)?) => {
        /// Operation code of an [`Op`].
        #[allow(missing_docs, non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(crate) enum Code { $($name),* }
    };
}

codes! {
    // 64-bit ALU, immediate then register source.
    Add64I, Sub64I, Mul64I, Div64I, SDiv64I, Mod64I, SMod64I, Or64I, And64I, Lsh64I, Rsh64I,
    Arsh64I, Xor64I, Mov64I,
    Add64R, Sub64R, Mul64R, Div64R, SDiv64R, Mod64R, SMod64R, Or64R, And64R, Lsh64R, Rsh64R,
    Arsh64R, Xor64R, Mov64R,
    // 32-bit ALU.
    Add32I, Sub32I, Mul32I, Div32I, SDiv32I, Mod32I, SMod32I, Or32I, And32I, Lsh32I, Rsh32I,
    Arsh32I, Xor32I, Mov32I,
    Add32R, Sub32R, Mul32R, Div32R, SDiv32R, Mod32R, SMod32R, Or32R, And32R, Lsh32R, Rsh32R,
    Arsh32R, Xor32R, Mov32R,
    Neg64, Neg32,
    MovSx32B, MovSx32H, MovSx64B, MovSx64H, MovSx64W,
    Trunc16, Trunc32, Nop, Bswap16, Bswap32, Bswap64,
    // Loads and stores.
    LdDw,
    LdAbsB, LdAbsH, LdAbsW, LdIndB, LdIndH, LdIndW,
    LdxB, LdxH, LdxW, LdxDW, LdxSxB, LdxSxH, LdxSxW,
    StB, StH, StW, StDW, StxB, StxH, StxW, StxDW,
    Atomic32, Atomic64,
    LdAcqB, LdAcqH, LdAcqW, LdAcqDW, StRelB, StRelH, StRelW, StRelDW,
    // Control flow.
    Ja,
    Jeq64I, Jgt64I, Jge64I, Jset64I, Jne64I, Jsgt64I, Jsge64I, Jlt64I, Jle64I, Jslt64I, Jsle64I,
    Jeq64R, Jgt64R, Jge64R, Jset64R, Jne64R, Jsgt64R, Jsge64R, Jlt64R, Jle64R, Jslt64R, Jsle64R,
    Jeq32I, Jgt32I, Jge32I, Jset32I, Jne32I, Jsgt32I, Jsge32I, Jlt32I, Jle32I, Jslt32I, Jsle32I,
    Jeq32R, Jgt32R, Jge32R, Jset32R, Jne32R, Jsgt32R, Jsge32R, Jlt32R, Jle32R, Jslt32R, Jsle32R,
    MayGoto,
    CallHelper, CallUnknown, CallLocal, CallX, TailCall, Loop,
    Exit,
    // Trap: reached by falling off the end, or an unsupported instruction (`a` selects the message).
    Trap,
    // Superinstructions (see `fuse`): each stands for the op at its index and
    // the next one, which stays in place as the plain op for jumps landing on it.
    // `rD = rS; rD += rT` (aux = T) and `rD = rS; rD += imm`.
    MovAdd64RR, MovAdd64RI,
    // `rD += a; if rD <cond> c goto b` and `rD += a; if rD <cond> rAux goto b`.
    AddJeqI, AddJneI, AddJgtI, AddJgeI, AddJltI, AddJleI, AddJsgtI, AddJsgeI, AddJsltI, AddJsleI,
    AddJeqR, AddJneR, AddJgtR, AddJgeR, AddJltR, AddJleR, AddJsgtR, AddJsgeR, AddJsltR, AddJsleR,
    // Loads and stores at a constant offset from r10 inside the current
    // frame (see `stack_op`): no region check needed.
    LdxStkB, LdxStkH, LdxStkW, LdxStkDW,
    StStkB, StStkH, StStkW, StStkDW,
    StxStkB, StxStkH, StxStkW, StxStkDW,
}

/// One pre-decoded instruction (16 bytes).
///
/// `a` is the immediate (for `LdDw` the low half; for `CallHelper` the helper id;
/// for `Atomic*` the kernel's atomic `imm`); `b` is the jump target op index, the
/// memory offset (sign-extended `off`), the helper table index, or `LdDw`'s high half.
/// `aux` and `c` are the second register and immediate of superinstructions.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
pub(crate) struct Op {
    pub a: i32,
    pub b: u32,
    pub c: i32,
    pub code: Code,
    pub dst: u8,
    pub src: u8,
    pub aux: u8,
}

/// `Trap` reasons.
pub(crate) const TRAP_END: i32 = 0;
pub(crate) const TRAP_KFUNC: i32 = 1;
pub(crate) const TRAP_ADDR_SPACE: i32 = 2;

/// Everything the lowering produced.
pub(crate) struct Lowered {
    pub ops: Vec<Op>,
    /// Slot index of each op (the sentinel maps to the program's slot count).
    pub slots: Vec<u32>,
    pub helpers: Vec<(i32, Arc<HelperFn>)>,
    /// Maps referenced by the program (kept alive by the interpreter),
    /// program arrays excepted.
    pub maps: Vec<Arc<Map>>,
    /// Program arrays referenced by the program: their slot tables only
    /// (the array's owner owns the programs in them).
    pub prog_arrays: Vec<Arc<ProgArrayShared>>,
    /// Map values the program addresses directly (`ld_imm64` of a map
    /// value, i.e. global data): `(address, length)` of each whole value.
    pub direct: Vec<(u64, u64)>,
}

fn alu_index(op: AluOp) -> u8 {
    match op {
        AluOp::Add => 0,
        AluOp::Sub => 1,
        AluOp::Mul => 2,
        AluOp::Div => 3,
        AluOp::SDiv => 4,
        AluOp::Mod => 5,
        AluOp::SMod => 6,
        AluOp::Or => 7,
        AluOp::And => 8,
        AluOp::Lsh => 9,
        AluOp::Rsh => 10,
        AluOp::Arsh => 11,
        AluOp::Xor => 12,
        AluOp::Mov => 13,
    }
}

fn cond_index(c: JmpCond) -> u8 {
    match c {
        JmpCond::Eq => 0,
        JmpCond::Gt => 1,
        JmpCond::Ge => 2,
        JmpCond::Set => 3,
        JmpCond::Ne => 4,
        JmpCond::Sgt => 5,
        JmpCond::Sge => 6,
        JmpCond::Lt => 7,
        JmpCond::Le => 8,
        JmpCond::Slt => 9,
        JmpCond::Sle => 10,
    }
}

/// `Code` at `base + k` (the enum's declaration order is relied on).
fn code_at(base: Code, k: u8) -> Code {
    const ALL_ALU: [Code; 56] = {
        use Code::*;
        [
            Add64I, Sub64I, Mul64I, Div64I, SDiv64I, Mod64I, SMod64I, Or64I, And64I, Lsh64I,
            Rsh64I, Arsh64I, Xor64I, Mov64I, Add64R, Sub64R, Mul64R, Div64R, SDiv64R, Mod64R,
            SMod64R, Or64R, And64R, Lsh64R, Rsh64R, Arsh64R, Xor64R, Mov64R, Add32I, Sub32I,
            Mul32I, Div32I, SDiv32I, Mod32I, SMod32I, Or32I, And32I, Lsh32I, Rsh32I, Arsh32I,
            Xor32I, Mov32I, Add32R, Sub32R, Mul32R, Div32R, SDiv32R, Mod32R, SMod32R, Or32R,
            And32R, Lsh32R, Rsh32R, Arsh32R, Xor32R, Mov32R,
        ]
    };
    const ALL_JMP: [Code; 44] = {
        use Code::*;
        [
            Jeq64I, Jgt64I, Jge64I, Jset64I, Jne64I, Jsgt64I, Jsge64I, Jlt64I, Jle64I, Jslt64I,
            Jsle64I, Jeq64R, Jgt64R, Jge64R, Jset64R, Jne64R, Jsgt64R, Jsge64R, Jlt64R, Jle64R,
            Jslt64R, Jsle64R, Jeq32I, Jgt32I, Jge32I, Jset32I, Jne32I, Jsgt32I, Jsge32I, Jlt32I,
            Jle32I, Jslt32I, Jsle32I, Jeq32R, Jgt32R, Jge32R, Jset32R, Jne32R, Jsgt32R, Jsge32R,
            Jlt32R, Jle32R, Jslt32R, Jsle32R,
        ]
    };
    match base {
        Code::Add64I => ALL_ALU.get(k as usize).copied().unwrap_or(Code::Trap),
        _ => ALL_JMP.get(k as usize).copied().unwrap_or(Code::Trap),
    }
}

fn op(code: Code, dst: u8, src: u8, a: i32, b: u32) -> Op {
    Op {
        code,
        dst,
        src,
        aux: 0,
        a,
        b,
        c: 0,
    }
}

/// The `AddJ*` superinstruction for a 64-bit conditional jump code, if any
/// (`Jset` has none).
fn add_jump(j: Code) -> Option<Code> {
    use Code::*;
    Some(match j {
        Jeq64I => AddJeqI,
        Jne64I => AddJneI,
        Jgt64I => AddJgtI,
        Jge64I => AddJgeI,
        Jlt64I => AddJltI,
        Jle64I => AddJleI,
        Jsgt64I => AddJsgtI,
        Jsge64I => AddJsgeI,
        Jslt64I => AddJsltI,
        Jsle64I => AddJsleI,
        Jeq64R => AddJeqR,
        Jne64R => AddJneR,
        Jgt64R => AddJgtR,
        Jge64R => AddJgeR,
        Jlt64R => AddJltR,
        Jle64R => AddJleR,
        Jsgt64R => AddJsgtR,
        Jsge64R => AddJsgeR,
        Jslt64R => AddJsltR,
        Jsle64R => AddJsleR,
        _ => return None,
    })
}

/// Replaces the first op of common pairs by a superinstruction doing both
/// (the second op stays, so jumps into the pair still work). Only pairs whose
/// first op cannot fault are fused, so errors keep their instruction index.
pub(crate) fn fuse(ops: &mut [Op]) {
    for i in 0..ops.len().saturating_sub(1) {
        let (Some(&x), Some(&y)) = (ops.get(i), ops.get(i + 1)) else {
            continue;
        };
        let fused = match (x.code, y.code) {
            (Code::Mov64R, Code::Add64R) if y.dst == x.dst => Op {
                code: Code::MovAdd64RR,
                aux: y.src,
                ..x
            },
            (Code::Mov64R, Code::Add64I) if y.dst == x.dst => Op {
                code: Code::MovAdd64RI,
                a: y.a,
                ..x
            },
            (Code::Add64I, j) if y.dst == x.dst => match add_jump(j) {
                // Register forms compare with register `aux`, read after the add.
                Some(code) => Op {
                    code,
                    dst: x.dst,
                    src: 0,
                    aux: y.src,
                    a: x.a,
                    b: y.b,
                    c: y.a,
                },
                None => continue,
            },
            _ => continue,
        };
        if let Some(slot) = ops.get_mut(i) {
            *slot = fused;
        }
    }
}

fn off32(off: i16) -> u32 {
    off as i32 as u32
}

/// Whether `insn` may write r10. Programs that never do keep r10 at the
/// top of the current frame, which makes r10-relative accesses checkable
/// at lowering time.
fn writes_r10(insn: &Insn) -> bool {
    insn.written_regs() & (1 << 10) != 0
}

/// The r10-relative form of a load/store `code` of `size` bytes at `off`
/// from `base`, when the access lies inside the current frame
/// (`[r10 - STACK_SIZE, r10)`): such an access is always valid, so it
/// skips the region check.
fn stack_op(code: Code, base: u8, off: i16, size: Size, fast: bool) -> Code {
    let n = match size {
        Size::B => 1,
        Size::H => 2,
        Size::W => 4,
        Size::DW => 8,
    };
    let off = i64::from(off);
    if !fast || base != 10 || off < -(crate::STACK_SIZE as i64) || off + n > 0 {
        return code;
    }
    use Code::*;
    match code {
        LdxB => LdxStkB,
        LdxH => LdxStkH,
        LdxW => LdxStkW,
        LdxDW => LdxStkDW,
        StB => StStkB,
        StH => StStkH,
        StW => StStkW,
        StDW => StStkDW,
        StxB => StxStkB,
        StxH => StxStkH,
        StxW => StxStkW,
        StxDW => StxStkDW,
        other => other,
    }
}

/// Lowers a validated program.
pub(crate) fn lower(
    prog: &Program,
    helpers: &HelperRegistry,
    maps: &dyn Fn(i32, bool) -> Option<Arc<Map>>,
) -> Result<Lowered, VmError> {
    prog.validate()?;
    let n = prog.len();
    let mut ops = Vec::with_capacity(n + 1);
    let mut slots = Vec::with_capacity(n + 1);
    let mut helper_tab: Vec<(i32, Arc<HelperFn>)> = Vec::new();
    let mut used_maps: Vec<Arc<Map>> = Vec::new();
    let mut prog_arrays: Vec<Arc<ProgArrayShared>> = Vec::new();
    let mut direct: Vec<(u64, u64)> = Vec::new();
    let starts = prog.starts();
    let fast_stack = !prog.insns().iter().any(writes_r10);
    for (i, insn) in prog.insns().iter().enumerate() {
        let at = starts.get(i).copied().unwrap_or(0) as usize;
        // Target op index of a pc-relative reference.
        let target = |off: i64| -> Result<u32, VmError> {
            let slot = at as i64 + 1 + off;
            let bad = || {
                VmError::Invalid(bpf_isa::Error::new(
                    at,
                    bpf_isa::ErrorKind::JumpOutOfRange {
                        target: slot,
                        len: prog.slot_len(),
                    },
                ))
            };
            let s = usize::try_from(slot).map_err(|_| bad())?;
            prog.insn_at_slot(s).map(|x| x as u32).ok_or_else(bad)
        };
        let o = match *insn {
            Insn::Alu {
                width,
                op: aop,
                dst,
                src,
            } => {
                let mut k = alu_index(aop);
                if width == Width::W32 {
                    k += 28;
                }
                match src {
                    Source::Imm(imm) => op(code_at(Code::Add64I, k), dst.num(), 0, imm, 0),
                    Source::Reg(r) => op(code_at(Code::Add64I, k + 14), dst.num(), r.num(), 0, 0),
                }
            }
            Insn::Neg { width, dst } => op(
                if width == Width::W64 {
                    Code::Neg64
                } else {
                    Code::Neg32
                },
                dst.num(),
                0,
                0,
                0,
            ),
            Insn::MovSx {
                width,
                dst,
                src,
                from,
            } => {
                let c = match (width, from) {
                    (Width::W32, Size::B) => Code::MovSx32B,
                    (Width::W32, _) => Code::MovSx32H,
                    (Width::W64, Size::B) => Code::MovSx64B,
                    (Width::W64, Size::H) => Code::MovSx64H,
                    (Width::W64, _) => Code::MovSx64W,
                };
                op(c, dst.num(), src.num(), 0, 0)
            }
            Insn::AddrSpaceCast { .. } => op(Code::Trap, 0, 0, TRAP_ADDR_SPACE, 0),
            Insn::Endian { kind, bits, dst } => {
                let c = match (kind, bits) {
                    (Endian::ToLe, 16) => Code::Trunc16,
                    (Endian::ToLe, 32) => Code::Trunc32,
                    (Endian::ToLe, _) => Code::Nop,
                    (_, 16) => Code::Bswap16,
                    (_, 32) => Code::Bswap32,
                    (_, _) => Code::Bswap64,
                };
                op(c, dst.num(), 0, 0, 0)
            }
            Insn::Ja { off } => op(Code::Ja, 0, 0, 0, target(off as i64)?),
            Insn::JaLong { imm } => op(Code::Ja, 0, 0, 0, target(imm as i64)?),
            Insn::Jmp {
                width,
                cond,
                dst,
                src,
                off,
            } => {
                let mut k = cond_index(cond);
                if width == Width::W32 {
                    k += 22;
                }
                let t = target(off as i64)?;
                match src {
                    Source::Imm(imm) => op(code_at(Code::Jeq64I, k), dst.num(), 0, imm, t),
                    Source::Reg(r) => op(code_at(Code::Jeq64I, k + 11), dst.num(), r.num(), 0, t),
                }
            }
            Insn::MayGoto { off } => op(Code::MayGoto, 0, 0, 0, target(off as i64)?),
            Insn::Call(CallTarget::Helper(id)) => {
                if helpers.kernel_builtins() && id == BPF_FUNC_TAIL_CALL {
                    op(Code::TailCall, 0, 0, id, 0)
                } else if helpers.kernel_builtins() && id == BPF_FUNC_LOOP {
                    op(Code::Loop, 0, 0, id, 0)
                } else if let Some(f) = helpers.get(id) {
                    let idx = match helper_tab.iter().position(|(h, _)| *h == id) {
                        Some(p) => p,
                        None => {
                            helper_tab.push((id, f));
                            helper_tab.len() - 1
                        }
                    };
                    op(Code::CallHelper, 0, 0, id, idx as u32)
                } else {
                    op(Code::CallUnknown, 0, 0, id, 0)
                }
            }
            Insn::Call(CallTarget::Local(off)) => op(Code::CallLocal, 0, 0, 0, target(off as i64)?),
            Insn::Call(CallTarget::Kfunc { .. }) => op(Code::Trap, 0, 0, TRAP_KFUNC, 0),
            Insn::CallReg { reg } => op(Code::CallX, reg.num(), 0, 0, 0),
            Insn::Exit => op(Code::Exit, 0, 0, 0, 0),
            Insn::LdImm64 { dst, src } => {
                let value: u64 = match src {
                    LdImm64Src::Imm(v) => v,
                    LdImm64Src::MapFd(fd) | LdImm64Src::MapIdx(fd) => {
                        let is_idx = matches!(src, LdImm64Src::MapIdx(_));
                        let m = maps(fd, is_idx).ok_or(VmError::UnknownMap { insn: at, fd })?;
                        if let Some(pa) = m.as_prog_array() {
                            let shared = pa.shared();
                            if !prog_arrays.iter().any(|x| Arc::ptr_eq(x, shared)) {
                                prog_arrays.push(shared.clone());
                            }
                            shared.handle()
                        } else {
                            let h = Arc::as_ptr(&m) as u64;
                            used_maps.push(m);
                            h
                        }
                    }
                    LdImm64Src::MapValue { fd, off } | LdImm64Src::MapIdxValue { idx: fd, off } => {
                        let is_idx = matches!(src, LdImm64Src::MapIdxValue { .. });
                        let m = maps(fd, is_idx).ok_or(VmError::UnknownMap { insn: at, fd })?;
                        let v = m.direct_value(off).ok_or(VmError::BadMapValue {
                            insn: at,
                            fd,
                            off,
                        })?;
                        used_maps.push(m);
                        let whole = (v.ptr - u64::from(off), v.len + u64::from(off));
                        if !direct.contains(&whole) {
                            direct.push(whole);
                        }
                        v.ptr
                    }
                    LdImm64Src::Func(off) => FUNC_TAG | target(off as i64)? as u64,
                    LdImm64Src::BtfId(_) => {
                        return Err(VmError::Unsupported {
                            insn: at,
                            what: "ld_imm64 of a BTF id (kernel object)",
                        })
                    }
                };
                op(
                    Code::LdDw,
                    dst.num(),
                    0,
                    value as u32 as i32,
                    (value >> 32) as u32,
                )
            }
            Insn::LdAbs { size, imm } => {
                let c = match size {
                    Size::B => Code::LdAbsB,
                    Size::H => Code::LdAbsH,
                    _ => Code::LdAbsW,
                };
                op(c, 0, 0, imm, 0)
            }
            Insn::LdInd { size, src, imm } => {
                let c = match size {
                    Size::B => Code::LdIndB,
                    Size::H => Code::LdIndH,
                    _ => Code::LdIndW,
                };
                op(c, 0, src.num(), imm, 0)
            }
            Insn::Ldx {
                size,
                dst,
                src,
                off,
            } => {
                let c = match size {
                    Size::B => Code::LdxB,
                    Size::H => Code::LdxH,
                    Size::W => Code::LdxW,
                    Size::DW => Code::LdxDW,
                };
                let c = stack_op(c, src.num(), off, size, fast_stack);
                op(c, dst.num(), src.num(), 0, off32(off))
            }
            Insn::LdxSx {
                size,
                dst,
                src,
                off,
            } => {
                let c = match size {
                    Size::B => Code::LdxSxB,
                    Size::H => Code::LdxSxH,
                    _ => Code::LdxSxW,
                };
                op(c, dst.num(), src.num(), 0, off32(off))
            }
            Insn::St {
                size,
                dst,
                off,
                imm,
            } => {
                let c = match size {
                    Size::B => Code::StB,
                    Size::H => Code::StH,
                    Size::W => Code::StW,
                    Size::DW => Code::StDW,
                };
                let c = stack_op(c, dst.num(), off, size, fast_stack);
                op(c, dst.num(), 0, imm, off32(off))
            }
            Insn::Stx {
                size,
                dst,
                src,
                off,
            } => {
                let c = match size {
                    Size::B => Code::StxB,
                    Size::H => Code::StxH,
                    Size::W => Code::StxW,
                    Size::DW => Code::StxDW,
                };
                let c = stack_op(c, dst.num(), off, size, fast_stack);
                op(c, dst.num(), src.num(), 0, off32(off))
            }
            Insn::Atomic {
                size,
                op: aop,
                dst,
                src,
                off,
            } => {
                let c = match (aop, size) {
                    (AtomicOp::LoadAcquire, Size::B) => Code::LdAcqB,
                    (AtomicOp::LoadAcquire, Size::H) => Code::LdAcqH,
                    (AtomicOp::LoadAcquire, Size::W) => Code::LdAcqW,
                    (AtomicOp::LoadAcquire, Size::DW) => Code::LdAcqDW,
                    (AtomicOp::StoreRelease, Size::B) => Code::StRelB,
                    (AtomicOp::StoreRelease, Size::H) => Code::StRelH,
                    (AtomicOp::StoreRelease, Size::W) => Code::StRelW,
                    (AtomicOp::StoreRelease, Size::DW) => Code::StRelDW,
                    (_, Size::DW) => Code::Atomic64,
                    (_, _) => Code::Atomic32,
                };
                op(c, dst.num(), src.num(), aop.imm(), off32(off))
            }
        };
        ops.push(o);
        slots.push(at as u32);
    }
    // Sentinel: falling off the end traps instead of reading past the array.
    ops.push(op(Code::Trap, 0, 0, TRAP_END, 0));
    fuse(&mut ops);
    slots.push(prog.slot_len() as u32);
    Ok(Lowered {
        ops,
        slots,
        helpers: helper_tab,
        maps: used_maps,
        prog_arrays,
        direct,
    })
}
