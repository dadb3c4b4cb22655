//! Instruction semantics on the abstract state: ALU (scalars and pointer
//! arithmetic), moves, loads and stores (through [`crate::check`]),
//! branches with refinement, calls and exits.

use bpf_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LdImm64Src, Reg, Size, Source, Width,
};

use crate::check::{check_mem, Access};
use crate::error::{ErrorKind as K, VerifierError};
use crate::helpers::{map_allows_helper, ArgKind, RetKind, Special};
use crate::platform::{
    map_type, BPF_MAX_VAR_OFF, BPF_MAX_VAR_SIZ, MAX_CALL_FRAMES, MAX_PACKET_OFF,
};
use crate::reg::{RegState, RegType};
use crate::scalar::{branch_taken, refine, Scalar, ScalarOp};
use crate::state::{CallbackFrame, Frame, State};
use crate::verifier::{Env, Next};

type R<T> = Result<T, VerifierError>;

fn op_str(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div | AluOp::SDiv => "/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod | AluOp::SMod => "%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn scalar_op(op: AluOp) -> Option<ScalarOp> {
    Some(match op {
        AluOp::Add => ScalarOp::Add,
        AluOp::Sub => ScalarOp::Sub,
        AluOp::Mul => ScalarOp::Mul,
        AluOp::Div => ScalarOp::Div,
        AluOp::SDiv => ScalarOp::SDiv,
        AluOp::Or => ScalarOp::Or,
        AluOp::And => ScalarOp::And,
        AluOp::Lsh => ScalarOp::Lsh,
        AluOp::Rsh => ScalarOp::Rsh,
        AluOp::Mod => ScalarOp::Mod,
        AluOp::SMod => ScalarOp::SMod,
        AluOp::Xor => ScalarOp::Xor,
        AluOp::Arsh => ScalarOp::Arsh,
        AluOp::Mov => return None,
    })
}

/// Reads register `r`, failing with `R%d !read_ok` when it holds nothing.
pub(crate) fn read_reg(env: &mut Env<'_>, st: &State, pc: usize, r: Reg) -> R<RegState> {
    let v = st.cur().regs[r.idx()];
    if v.ty == RegType::NotInit {
        return Err(env.err(pc, K::UninitRegister, format!("R{} !read_ok", r.num())));
    }
    Ok(v)
}

fn check_dst(env: &mut Env<'_>, pc: usize, r: Reg) -> R<()> {
    if r == Reg::R10 {
        return Err(env.err(
            pc,
            K::FramePointerWrite,
            "frame pointer is read only".into(),
        ));
    }
    Ok(())
}

fn set(st: &mut State, r: Reg, v: RegState) {
    st.cur_mut().regs[r.idx()] = v;
}

/// Executes one instruction on `st`.
pub(crate) fn step(env: &mut Env<'_>, st: &mut State, pc: usize, insn: &Insn) -> R<Next> {
    let next = pc + insn.slots();
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            alu(env, st, pc, width, op, dst, src)?;
            Ok(Next::Goto(next))
        }
        Insn::Neg { width, dst } => {
            unary(env, st, pc, dst, |s| s.neg(width == Width::W32))?;
            Ok(Next::Goto(next))
        }
        Insn::Endian { kind, bits, dst } => {
            unary(env, st, pc, dst, |s| {
                s.endian(bits as u32, kind != Endian::ToLe)
            })?;
            Ok(Next::Goto(next))
        }
        Insn::MovSx {
            width,
            dst,
            src,
            from,
        } => {
            let v = read_reg(env, st, pc, src)?;
            check_dst(env, pc, dst)?;
            let r = if v.ty == RegType::Scalar {
                if width == Width::W32 {
                    RegState::scalar(v.var.sign_extend32(from.bytes()))
                } else {
                    RegState::scalar(v.var.sign_extend(from.bytes()))
                }
            } else if env.opts.privileged {
                RegState::unknown()
            } else {
                return Err(env.err(
                    pc,
                    K::PointerLeak,
                    format!("R{} sign-extension part of pointer", src.num()),
                ));
            };
            set(st, dst, r);
            Ok(Next::Goto(next))
        }
        Insn::AddrSpaceCast { .. } => Err(env.err(
            pc,
            K::Unsupported,
            "addr_space_cast is not supported".into(),
        )),
        Insn::Ja { off } => Ok(Next::Goto((next as i64 + off as i64) as usize)),
        Insn::JaLong { imm } => Ok(Next::Goto((next as i64 + imm as i64) as usize)),
        Insn::MayGoto { off } => {
            // As the kernel: the path goes on at the target (the hidden
            // counter ran out); the fall-through, one more iteration, waits
            // with its imprecise scalars widened against the previous
            // iteration's, and converges in `Env::visit`.
            let mut body = st.clone();
            body.may_goto_depth = body.may_goto_depth.saturating_add(1);
            env.widen_loop_state(&mut body, pc);
            Ok(Next::Fork {
                pc: (next as i64 + off as i64) as usize,
                other: Box::new(body),
                other_pc: next,
            })
        }
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => {
            let target = (next as i64 + off as i64) as usize;
            branch(
                env,
                st,
                pc,
                width == Width::W32,
                cond,
                dst,
                src,
                next,
                target,
            )
        }
        Insn::Call(CallTarget::Helper(id)) => match helper_call(env, st, pc, id)? {
            // The path goes on after the call; the callback iteration waits.
            Some((cb_state, cb_start)) => Ok(Next::Fork {
                pc: next,
                other: Box::new(cb_state),
                other_pc: cb_start,
            }),
            None if st.frames.len() > 1
                && env
                    .opts
                    .helpers
                    .get(id)
                    .is_some_and(|p| p.special == Special::TailCall) =>
            {
                tail_call_exit(env, st, pc, next)
            }
            None => Ok(Next::Goto(next)),
        },
        Insn::Call(CallTarget::Local(off)) => {
            let target = (pc as i64 + 1 + off as i64) as u32;
            local_call(env, st, pc, target)?;
            Ok(Next::Goto(target as usize))
        }
        Insn::Call(CallTarget::Kfunc { .. }) => Err(env.err(
            pc,
            K::Unsupported,
            "calling kernel functions is not supported".into(),
        )),
        Insn::CallReg { .. } => Err(env.err(pc, K::InvalidInsn, "unknown opcode 8d".into())),
        Insn::Exit => exit(env, st, pc),
        Insn::LdImm64 { dst, src } => {
            check_dst(env, pc, dst)?;
            let r = ld_imm64(env, pc, src)?;
            set(st, dst, r);
            Ok(Next::Goto(next))
        }
        Insn::LdAbs { .. } | Insn::LdInd { .. } => {
            if !env.opts.prog.ld_abs_allowed() {
                return Err(env.err(
                    pc,
                    K::InvalidInsn,
                    "BPF_LD_[ABS|IND] instructions not allowed for this program type".into(),
                ));
            }
            // The kernel's order (`check_ld_abs`): r6 readable, r6 the
            // context, then the index register.
            read_reg(env, st, pc, bpf_isa::Reg::R6)?;
            let r6 = st.cur().regs[6];
            if r6.ty != RegType::Ctx {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    "at the time of BPF_LD_ABS|IND R6 != pointer to skb".into(),
                ));
            }
            if let Insn::LdInd { src, .. } = *insn {
                read_reg(env, st, pc, src)?;
            }
            // Kernel `check_ld_abs` -> `check_ptr_off_reg`: the context pointer
            // must be unmodified.
            if r6.off != 0 || r6.var.const_value() != Some(0) {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!(
                        "dereference of modified ctx ptr R6 off={} disallowed",
                        r6.off
                    ),
                ));
            }
            for r in 1..=5 {
                st.cur_mut().regs[r] = RegState::NOT_INIT;
            }
            // `check_ld_abs`: r0 is marked unknown (all 64 bits), whatever
            // the size loaded.
            st.cur_mut().regs[0] = RegState::unknown();
            Ok(Next::Goto(next))
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
            read_reg(env, st, pc, src)?;
            check_dst(env, pc, dst)?;
            let sx = matches!(insn, Insn::LdxSx { .. });
            let v = check_mem(env, st, pc, src, off as i64, size.bytes(), Access::Read)?;
            let v = match v {
                Some(r) if r.ty == RegType::Scalar && size != Size::DW => {
                    if sx {
                        RegState::scalar(r.var.sign_extend(size.bytes()))
                    } else {
                        RegState::scalar(r.var.truncate(size.bytes()))
                    }
                }
                Some(r) => r,
                None if sx => RegState::scalar(Scalar::UNKNOWN.sign_extend(size.bytes())),
                None => RegState::scalar(Scalar::UNKNOWN.truncate(size.bytes())),
            };
            set(st, dst, v);
            Ok(Next::Goto(next))
        }
        Insn::St {
            size,
            dst,
            off,
            imm,
        } => {
            let val = RegState::constant(imm as i64 as u64);
            store(env, st, pc, dst, off, size, val)?;
            Ok(Next::Goto(next))
        }
        Insn::Stx {
            size,
            dst,
            src,
            off,
        } => {
            let val = read_reg(env, st, pc, src)?;
            let val = link_spill(env, st, dst, off, size, src, val);
            store(env, st, pc, dst, off, size, val)?;
            Ok(Next::Goto(next))
        }
        Insn::Atomic {
            size,
            op,
            dst,
            src,
            off,
        } => {
            atomic(env, st, pc, size, op, dst, src, off)?;
            Ok(Next::Goto(next))
        }
    }
}

fn ld_imm64(env: &mut Env<'_>, pc: usize, src: LdImm64Src) -> R<RegState> {
    let find_fd = |fd: i32| env.opts.maps.iter().position(|m| m.fd == Some(fd));
    let (map, val_off) = match src {
        LdImm64Src::Imm(v) => return Ok(RegState::constant(v)),
        LdImm64Src::Func(off) => {
            let mut r = RegState::pointer(RegType::Func);
            r.frameno = (pc as i64 + 1 + off as i64) as u32;
            return Ok(r);
        }
        LdImm64Src::MapFd(fd) => (find_fd(fd), None),
        LdImm64Src::MapIdx(i) => (
            usize::try_from(i).ok().filter(|&i| i < env.opts.maps.len()),
            None,
        ),
        LdImm64Src::MapValue { fd, off } => (find_fd(fd), Some(off)),
        LdImm64Src::MapIdxValue { idx, off } => (
            usize::try_from(idx)
                .ok()
                .filter(|&i| i < env.opts.maps.len()),
            Some(off),
        ),
        LdImm64Src::BtfId(_) => {
            return Err(env.err(pc, K::Unsupported, "BTF ids are not supported".into()))
        }
    };
    let Some(map) = map else {
        return Err(env.err(
            pc,
            K::InvalidInsn,
            format!(
                "fd {} is not pointing to valid bpf_map",
                match src {
                    LdImm64Src::MapFd(fd) | LdImm64Src::MapValue { fd, .. } => fd,
                    LdImm64Src::MapIdx(i) | LdImm64Src::MapIdxValue { idx: i, .. } => i,
                    _ => -1,
                }
            ),
        ));
    };
    if let Some(a) = env.aux.get_mut(pc) {
        a.map_index = Some(map as u32);
    }
    let info = env.opts.maps.get(map).cloned();
    match val_off {
        None => {
            let mut r = RegState::pointer(RegType::MapPtr);
            r.map = map as u32;
            Ok(r)
        }
        Some(off) => {
            let Some(info) = info else {
                return Err(env.err(pc, K::InvalidInsn, "invalid map".into()));
            };
            if info.map_type != map_type::ARRAY || info.max_entries != 1 {
                return Err(env.err(
                    pc,
                    K::InvalidInsn,
                    "direct value access on this map type is not supported".into(),
                ));
            }
            if off >= info.value_size {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!(
                        "invalid access to map value pointer, value_size={} off={off}",
                        info.value_size
                    ),
                ));
            }
            let mut r = RegState::pointer(RegType::MapValue);
            r.map = map as u32;
            r.off = off as i32;
            Ok(r)
        }
    }
}

fn alu(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    width: Width,
    op: AluOp,
    dst: Reg,
    src: Source,
) -> R<()> {
    let w32 = width == Width::W32;
    let srcv = match src {
        Source::Reg(r) => read_reg(env, st, pc, r)?,
        Source::Imm(i) => RegState::constant(if w32 {
            i as u32 as u64
        } else {
            i as i64 as u64
        }),
    };
    if op != AluOp::Mov {
        read_reg(env, st, pc, dst)?;
    }
    check_dst(env, pc, dst)?;
    if op == AluOp::Mov {
        let v = if w32 {
            if srcv.ty == RegType::Scalar && srcv.var.umax <= u64::from(u32::MAX) {
                // The value fits in 32 bits: a plain copy, linked to the
                // source as the 64-bit move does (the kernel's
                // `is_src_reg_u32` case).
                let mut v = srcv;
                if let Source::Reg(r) = src {
                    if v.id == 0 && !v.var.is_const() {
                        v.id = env.new_id();
                        set(st, r, v);
                    }
                }
                v.var = v.var.zext32();
                v
            } else if srcv.ty == RegType::Scalar {
                RegState::scalar(srcv.var.zext32())
            } else if env.opts.privileged {
                RegState::scalar(Scalar::unknown_u32())
            } else {
                return Err(env.err(
                    pc,
                    K::PointerLeak,
                    format!("R{} partial copy of pointer", src_num(src)),
                ));
            }
        } else {
            let mut v = srcv;
            if let Source::Reg(r) = src {
                if v.ty == RegType::Scalar && v.id == 0 && !v.var.is_const() {
                    v.id = env.new_id();
                    set(st, r, v);
                }
            }
            v
        };
        set(st, dst, v);
        return Ok(());
    }
    let dstv = st.cur().regs[dst.idx()];
    // Constant divisors and shift amounts are checked first.
    if let Source::Imm(i) = src {
        if matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod) && i == 0 {
            return Err(env.err(pc, K::InvalidInsn, "div by zero".into()));
        }
        let bits = if w32 { 32 } else { 64 };
        if matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh) && (i < 0 || i >= bits) {
            return Err(env.err(pc, K::InvalidInsn, format!("invalid shift {i}")));
        }
    }
    if dstv.is_pointer() || srcv.is_pointer() {
        if let Source::Reg(sr) = src {
            // The scalar offset of pointer arithmetic must be precise.
            if dstv.is_pointer() && srcv.ty == RegType::Scalar {
                env.mark_precise(st, sr.num());
            } else if srcv.is_pointer() && dstv.ty == RegType::Scalar {
                env.mark_precise(st, dst.num());
            }
        }
        let r = pointer_alu(env, pc, w32, op, dst, dstv, srcv, src)?;
        set(st, dst, r);
        return Ok(());
    }
    let Some(sop) = scalar_op(op) else {
        return Ok(());
    };
    let mut b = srcv.var;
    if matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh) {
        let bits = if w32 { 32 } else { 64 };
        let amount = if w32 {
            b.var_off
                .is_const()
                .then_some(b.var_off.value as u32 as u64)
        } else {
            b.const_value()
        };
        match amount {
            Some(a) if a < bits => b = Scalar::constant(a),
            _ => {
                // Unknown or too large amount: the result is unknown.
                let r = if w32 {
                    Scalar::unknown_u32()
                } else {
                    Scalar::UNKNOWN
                };
                set(st, dst, RegState::scalar(r));
                return Ok(());
            }
        }
    }
    let r = dstv.var.alu(sop, &b, w32);
    set(st, dst, RegState::scalar(r));
    Ok(())
}

fn src_num(src: Source) -> u8 {
    match src {
        Source::Reg(r) => r.num(),
        Source::Imm(_) => 0,
    }
}

/// Offsets a pointer may carry (kernel `check_reg_sane_offset`).
fn sane_offset(env: &mut Env<'_>, pc: usize, s: &Scalar, ty: RegType) -> R<()> {
    let name = ty.name();
    if let Some(v) = s.const_value() {
        let v = v as i64;
        if v >= BPF_MAX_VAR_OFF || v <= -BPF_MAX_VAR_OFF {
            return Err(env.err(
                pc,
                K::PointerArithmetic,
                format!("math between {name} pointer and {v} is not allowed"),
            ));
        }
    }
    if s.smin == i64::MIN {
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!(
                "math between {name} pointer and register with unbounded min value is not allowed"
            ),
        ));
    }
    if s.smin >= BPF_MAX_VAR_OFF || s.smin <= -BPF_MAX_VAR_OFF {
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!("value {} makes {name} pointer be out of bounds", s.smin),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn pointer_alu(
    env: &mut Env<'_>,
    pc: usize,
    w32: bool,
    op: AluOp,
    dst: Reg,
    dstv: RegState,
    srcv: RegState,
    src: Source,
) -> R<RegState> {
    let d = dst.num();
    if dstv.is_pointer() && srcv.is_pointer() {
        if op == AluOp::Sub && env.opts.privileged {
            return Ok(RegState::unknown());
        }
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!("R{d} pointer {} pointer prohibited", op_str(op)),
        ));
    }
    let (ptr, off_reg, swapped) = if dstv.is_pointer() {
        (dstv, srcv, false)
    } else {
        (srcv, dstv, true)
    };
    if w32 {
        if op == AluOp::Sub && env.opts.privileged {
            return Ok(RegState::scalar(Scalar::unknown_u32()));
        }
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!("R{d} 32-bit pointer arithmetic prohibited"),
        ));
    }
    if ptr.ty.maybe_null() {
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!(
                "R{d} pointer arithmetic on {} prohibited, null-check it first",
                ptr.ty.name()
            ),
        ));
    }
    let known = off_reg.var.const_value();
    let ok_type = match ptr.ty {
        RegType::Ctx
        | RegType::MapValue
        | RegType::Stack
        | RegType::Packet
        | RegType::PacketMeta
        | RegType::Mem
        | RegType::Func => true,
        RegType::MapPtr => known == Some(0) && op == AluOp::Add,
        _ => false,
    };
    if !ok_type {
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!("R{d} pointer arithmetic on {} prohibited", ptr.ty.name()),
        ));
    }
    match op {
        AluOp::Add | AluOp::Sub => {}
        AluOp::And | AluOp::Or | AluOp::Xor => {
            return Err(env.err(
                pc,
                K::PointerArithmetic,
                format!("R{d} bitwise operator {} on pointer prohibited", op_str(op)),
            ));
        }
        _ => {
            return Err(env.err(
                pc,
                K::PointerArithmetic,
                format!(
                    "R{d} pointer arithmetic with {} operator prohibited",
                    op_str(op)
                ),
            ));
        }
    }
    sane_offset(env, pc, &off_reg.var, ptr.ty)?;
    let mut r = ptr;
    if op == AluOp::Sub {
        if swapped {
            return Err(env.err(
                pc,
                K::PointerArithmetic,
                format!("R{d} tried to subtract pointer from scalar"),
            ));
        }
        if ptr.ty == RegType::Stack {
            return Err(env.err(
                pc,
                K::PointerArithmetic,
                format!("R{d} subtraction from stack pointer prohibited"),
            ));
        }
    }
    let _ = src;
    // A known offset moves the fixed offset while it fits in 32 bits;
    // otherwise (or when unknown) it goes into the variable part.
    let fixed = known
        .and_then(|c| {
            let c = c as i64;
            if op == AluOp::Add {
                (ptr.off as i64).checked_add(c)
            } else {
                (ptr.off as i64).checked_sub(c)
            }
        })
        .filter(|&n| n == n as i32 as i64);
    match fixed {
        Some(n) => r.off = n as i32,
        None => {
            r.var = ptr.var.alu(
                if op == AluOp::Add {
                    ScalarOp::Add
                } else {
                    ScalarOp::Sub
                },
                &off_reg.var,
                false,
            );
            if ptr.ty.is_pkt() {
                r.id = env.new_id();
                r.range = 0;
            }
        }
    }
    // The resulting pointer's offsets must stay sane too.
    let mut total = r.var;
    total = total.alu(ScalarOp::Add, &Scalar::constant(r.off as i64 as u64), false);
    sane_offset(env, pc, &total, ptr.ty)?;
    Ok(r)
}

/// A unary operation on `dst` (`neg`, byte swaps): `f` of a scalar; a
/// pointer becomes unknown when privileged and is refused otherwise.
fn unary(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    dst: Reg,
    f: impl FnOnce(Scalar) -> Scalar,
) -> R<()> {
    let v = read_reg(env, st, pc, dst)?;
    check_dst(env, pc, dst)?;
    let r = if v.ty == RegType::Scalar {
        RegState::scalar(f(v.var))
    } else if env.opts.privileged {
        RegState::unknown()
    } else {
        return Err(env.err(
            pc,
            K::PointerArithmetic,
            format!("R{} pointer arithmetic prohibited", dst.num()),
        ));
    };
    set(st, dst, r);
    Ok(())
}

/// `*(size *)(dst + off) = val` (`st` and `stx`): `dst` must be readable
/// and the access a valid write of `val`.
/// The kernel's `check_stack_write_fixed_off` (privileged): a scalar
/// spilled to a slot-aligned fixed stack offset, whose value fits the store,
/// gets an id first (`assign_scalar_id_before_mov`), so that the register
/// and the spilled copy are refined together by later branches.
fn link_spill(
    env: &mut Env<'_>,
    st: &mut State,
    dst: Reg,
    off: i16,
    size: Size,
    src: Reg,
    val: RegState,
) -> RegState {
    let base = st.cur().regs[dst.idx()];
    let Some(var) = base.var.const_value() else {
        return val;
    };
    if !env.opts.privileged
        || base.ty != RegType::Stack
        || val.ty != RegType::Scalar
        || val.id != 0
        || val.var.is_const()
    {
        return val;
    }
    let total = i64::from(off) + i64::from(base.off) + var as i64;
    let width = 64 - val.var.umax.leading_zeros();
    if total % 8 != 0 || width > 8 * size.bytes() {
        return val;
    }
    let mut v = val;
    v.id = env.new_id();
    set(st, src, v);
    v
}

fn store(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    dst: Reg,
    off: i16,
    size: Size,
    val: RegState,
) -> R<()> {
    read_reg(env, st, pc, dst)?;
    check_mem(
        env,
        st,
        pc,
        dst,
        off as i64,
        size.bytes(),
        Access::Write(Some(val)),
    )?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn atomic(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    size: Size,
    op: AtomicOp,
    dst: Reg,
    src: Reg,
    off: i16,
) -> R<()> {
    match op {
        AtomicOp::LoadAcquire => {
            // dst = *(src + off)
            read_reg(env, st, pc, src)?;
            check_dst(env, pc, dst)?;
            let v = check_mem(env, st, pc, src, off as i64, size.bytes(), Access::Read)?;
            let v = match v {
                Some(r) if r.ty == RegType::Scalar => {
                    RegState::scalar(r.var.truncate(size.bytes()))
                }
                Some(r) => r,
                None => RegState::unknown(),
            };
            set(st, dst, v);
            Ok(())
        }
        AtomicOp::StoreRelease => {
            let val = read_reg(env, st, pc, src)?;
            read_reg(env, st, pc, dst)?;
            check_mem(
                env,
                st,
                pc,
                dst,
                off as i64,
                size.bytes(),
                Access::Write(Some(val)),
            )?;
            Ok(())
        }
        _ => {
            let val = read_reg(env, st, pc, src)?;
            read_reg(env, st, pc, dst)?;
            if op == AtomicOp::Cmpxchg {
                read_reg(env, st, pc, Reg::R0)?;
            }
            if val.is_pointer() && !env.opts.privileged {
                return Err(env.err(
                    pc,
                    K::PointerLeak,
                    format!("R{} leaks addr into mem", src.num()),
                ));
            }
            let base = st.cur().regs[dst.idx()];
            if matches!(
                base.ty,
                RegType::Ctx | RegType::Packet | RegType::PacketMeta | RegType::SockCommon
            ) {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!(
                        "BPF_ATOMIC stores into R{} {} is not allowed",
                        dst.num(),
                        base.ty.name()
                    ),
                ));
            }
            let old = check_mem(env, st, pc, dst, off as i64, size.bytes(), Access::Atomic)?;
            // A fetch of a whole spilled pointer yields the pointer (the
            // kernel's register fill); anything else an unknown number.
            let fetched = match old {
                Some(r) if r.is_pointer() => r,
                _ => RegState::scalar(Scalar::UNKNOWN.truncate(size.bytes())),
            };
            if op == AtomicOp::Cmpxchg {
                set(st, Reg::R0, fetched);
            } else if op.writes_register() {
                check_dst(env, pc, src)?;
                set(st, src, fetched);
            }
            Ok(())
        }
    }
}

/// Applies a refined scalar to every copy linked by id.
fn propagate_scalar(st: &mut State, reg: Reg, v: RegState) {
    let id = v.id;
    set(st, reg, v);
    if id == 0 {
        return;
    }
    st.for_each_reg(|r| {
        if r.ty == RegType::Scalar && r.id == id {
            r.var = v.var;
        }
    });
}

/// Marks packet range `range` for every packet pointer sharing `p`'s id and type.
fn mark_pkt_range(st: &mut State, p: &RegState, right_open: bool) {
    if p.off < 0 || (p.off == 0 && right_open) {
        return;
    }
    if p.var.umax > MAX_PACKET_OFF || p.var.umax + p.off as u64 > MAX_PACKET_OFF {
        return;
    }
    let new = p.off as u32 + right_open as u32;
    let (ty, id) = (p.ty, p.id);
    st.for_each_reg(|r| {
        if r.ty == ty && r.id == id && r.var == p.var {
            r.range = r.range.max(new);
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn branch(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    w32: bool,
    cond: JmpCond,
    dst: Reg,
    src: Source,
    next: usize,
    target: usize,
) -> R<Next> {
    let a = read_reg(env, st, pc, dst)?;
    let (b, b_reg) = match src {
        Source::Reg(r) => (read_reg(env, st, pc, r)?, Some(r)),
        Source::Imm(i) => (
            RegState::constant(if w32 {
                i as u32 as u64
            } else {
                i as i64 as u64
            }),
            None,
        ),
    };
    let fork = |_: &State, taken: State| Next::Fork {
        pc: next,
        other: Box::new(taken),
        other_pc: target,
    };
    // Pointer comparisons.
    if a.is_pointer() || b.is_pointer() {
        // NULL checks: maybe-NULL pointer against zero.
        let (p, z) = if a.ty.maybe_null() && b.is_const(0) {
            (a, true)
        } else if b.ty.maybe_null() && a.is_const(0) {
            (b, true)
        } else {
            (a, false)
        };
        if z && !w32 && matches!(cond, JmpCond::Eq | JmpCond::Ne) {
            let mut eq = st.clone();
            eq.mark_null(p.id, true);
            st.mark_null(p.id, false);
            // st is now the != 0 state.
            return Ok(if cond == JmpCond::Eq {
                Next::Fork {
                    pc: next,
                    other: Box::new(eq),
                    other_pc: target,
                }
            } else {
                let ne = st.clone();
                *st = eq;
                Next::Fork {
                    pc: next,
                    other: Box::new(ne),
                    other_pc: target,
                }
            });
        }
        // Non-NULL pointer against zero: decided.
        let nonnull = |r: &RegState| r.is_pointer() && !r.ty.maybe_null();
        if !w32
            && matches!(cond, JmpCond::Eq | JmpCond::Ne)
            && ((nonnull(&a) && b.is_const(0)) || (nonnull(&b) && a.is_const(0)))
        {
            return Ok(Next::Goto(if cond == JmpCond::Ne { target } else { next }));
        }
        // Packet pointer against packet end.
        if !w32 {
            let pkt_vs_end = |p: &RegState, e: &RegState| {
                (p.ty == RegType::Packet && e.ty == RegType::PacketEnd)
                    || (p.ty == RegType::PacketMeta && e.ty == RegType::Packet)
            };
            let mut taken = st.clone();
            // (register whose range is set, branch where `p < end` (right open) or `p <= end`)
            let mut handled = false;
            if pkt_vs_end(&a, &b) {
                handled = true;
                match cond {
                    JmpCond::Gt => mark_pkt_range(st, &a, false),
                    JmpCond::Ge => mark_pkt_range(st, &a, true),
                    JmpCond::Lt => mark_pkt_range(&mut taken, &a, true),
                    JmpCond::Le => mark_pkt_range(&mut taken, &a, false),
                    _ => handled = false,
                }
            } else if pkt_vs_end(&b, &a) {
                handled = true;
                match cond {
                    JmpCond::Gt => mark_pkt_range(&mut taken, &b, true),
                    JmpCond::Ge => mark_pkt_range(&mut taken, &b, false),
                    JmpCond::Lt => mark_pkt_range(st, &b, false),
                    JmpCond::Le => mark_pkt_range(st, &b, true),
                    _ => handled = false,
                }
            }
            if handled {
                return Ok(fork(st, taken));
            }
        }
        if !env.opts.privileged {
            return Err(env.err(
                pc,
                K::PointerLeak,
                format!("R{} pointer comparison prohibited", dst.num()),
            ));
        }
        let taken = st.clone();
        return Ok(fork(st, taken));
    }
    // Scalars.
    if let Some(t) = branch_taken(&a.var, &b.var, cond, w32) {
        // The outcome depended on the values: they must be precise.
        env.mark_precise(st, dst.num());
        if let Some(r) = b_reg {
            env.mark_precise(st, r.num());
        }
        return Ok(Next::Goto(if t { target } else { next }));
    }
    // The kernel's `check_cond_jmp_op` records scalars linked to the
    // compared ones in the jump history (`collect_linked_regs`).
    let mut linked = 0u32;
    for id in [a.id, if b_reg.is_some() { b.id } else { 0 }] {
        if id != 0 {
            st.for_each_reg(|r| linked += u32::from(r.id == id));
        }
    }
    if linked > 1 {
        env.push_jmp_hist();
    }
    let mut taken = st.clone();
    let (mut ta, mut tb) = (a, b);
    refine(&mut ta.var, &mut tb.var, cond, w32, true);
    let (mut fa, mut fb) = (a, b);
    refine(&mut fa.var, &mut fb.var, cond, w32, false);
    let t_dead = ta.var.is_empty() || tb.var.is_empty();
    let f_dead = fa.var.is_empty() || fb.var.is_empty();
    if !t_dead {
        propagate_scalar(&mut taken, dst, ta);
        if let Some(r) = b_reg {
            propagate_scalar(&mut taken, r, tb);
        }
    }
    if !f_dead {
        propagate_scalar(st, dst, fa);
        if let Some(r) = b_reg {
            propagate_scalar(st, r, fb);
        }
    }
    match (t_dead, f_dead) {
        (true, true) => Ok(Next::End),
        (true, false) => Ok(Next::Goto(next)),
        (false, true) => {
            *st = taken;
            Ok(Next::Goto(target))
        }
        (false, false) => Ok(fork(st, taken)),
    }
}

fn check_size_arg(
    env: &mut Env<'_>,
    pc: usize,
    regno: usize,
    r: &RegState,
    zero_ok: bool,
) -> R<u64> {
    if r.ty != RegType::Scalar {
        return Err(env.err(
            pc,
            K::HelperCall,
            format!("R{regno} type={} expected=scalar", r.ty.name()),
        ));
    }
    if r.var.smin < 0 {
        return Err(env.err(
            pc,
            K::HelperCall,
            format!("R{regno} min value is negative, either use unsigned or 'var &= const'"),
        ));
    }
    if r.var.umin == 0 && !zero_ok {
        return Err(env.err(
            pc,
            K::HelperCall,
            format!(
                "R{regno} invalid zero-sized read: u64=[{},{}]",
                r.var.umin, r.var.umax
            ),
        ));
    }
    if r.var.umax >= BPF_MAX_VAR_SIZ {
        return Err(env.err(
            pc,
            K::HelperCall,
            format!("R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'"),
        ));
    }
    Ok(r.var.umax)
}

/// `bpf_map_lookup_elem`.
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;

/// The key a `bpf_map_lookup_elem` key argument `key` points to when it is
/// known (kernel `get_constant_map_key`): privileged only, for array and
/// per-CPU array maps, the key on the stack at a constant offset, either
/// `key_size` known-zero bytes or a scalar spill of exactly `key_size` bytes
/// at the start of an 8-byte slot holding a constant (that slot becomes
/// precise). The value is the spilled register's full 64 bits.
fn constant_map_key(
    env: &mut Env<'_>,
    st: &State,
    key: &RegState,
    map_type: u32,
    key_size: u32,
) -> Option<u64> {
    use crate::platform::map_type as mt;
    use crate::stack::ByteKind;
    if !env.opts.privileged || !matches!(map_type, mt::ARRAY | mt::PERCPU_ARRAY) {
        return None;
    }
    if key.ty != RegType::Stack {
        return None;
    }
    let off = i64::from(key.off).checked_add(key.var.const_value()? as i64)?;
    if !(-512..0).contains(&off) {
        return None;
    }
    let spi = ((-off - 1) / 8) as usize;
    // Byte index of the key's first byte within its slot (by address).
    let first = (off + 8 * (spi as i64 + 1)) as usize;
    let slot = st.frames.get(key.frameno as usize)?.stack.slot(spi)?;
    let tail = slot.kinds.get(first..)?;
    let run = |k: ByteKind| tail.iter().take_while(|&&b| b == k).count() as u32;
    if run(ByteKind::Zero) >= key_size {
        return Some(0);
    }
    if slot.kinds.first() != Some(&ByteKind::Spill) || slot.spilled.ty != RegType::Scalar {
        return None;
    }
    if run(ByteKind::Spill) != key_size {
        return None;
    }
    let v = slot.spilled.var.const_value()?;
    env.mark_slot_precise(st, key.frameno as usize, spi);
    // The kernel compares the value as a signed 64-bit number.
    (v as i64 >= 0).then_some(v)
}

/// Records the program array and index of the `bpf_tail_call` at `pc` on
/// this path (kernel `record_func_map` / `record_func_key`). A constant
/// index below the map's `max_entries` is recorded for a direct tail call,
/// so it must be precise; any other index poisons the site's key.
fn record_tail_call(env: &mut Env<'_>, st: &mut State, pc: usize, map: Option<u32>, r3: &RegState) {
    let Some(map) = map else {
        return;
    };
    let max = env.opts.maps.get(map as usize).map_or(0, |m| m.max_entries);
    let key = match r3.var.const_value() {
        Some(v) if r3.ty == RegType::Scalar && v < u64::from(max) => Some(v as u32),
        _ => None,
    };
    if key.is_some() {
        env.mark_precise(st, 3);
    }
    if let Some(a) = env.aux.get_mut(pc) {
        a.tail_call = Some(crate::TailCallAux::join(a.tail_call, map, key));
    }
}

/// A helper call; for `bpf_loop` with iterations left, `Some((state
/// entering the callback, callback start))` besides `st` after the call.
fn helper_call(env: &mut Env<'_>, st: &mut State, pc: usize, id: i32) -> R<Option<(State, usize)>> {
    let Some(proto) = env.opts.helpers.get(id).cloned() else {
        return Err(env.err(pc, K::HelperCall, format!("invalid func unknown#{id}")));
    };
    let regs = st.cur().regs;
    let mut map: Option<u32> = None;
    let mut alloc_size = 0u32;
    let mut release: Option<u32> = None;
    let mut callback: Option<(u32, RegState)> = None;
    let mut const_key: Option<u64> = None;
    for (i, kind) in proto.args.iter().enumerate() {
        let regno = i + 1;
        let r = regs[regno];
        if *kind == ArgKind::DontCare {
            continue;
        }
        if r.ty == RegType::NotInit {
            return Err(env.err(pc, K::UninitRegister, format!("R{regno} !read_ok")));
        }
        let bad = |env: &mut Env<'_>, exp: &str| {
            Err(env.err(
                pc,
                K::HelperCall,
                format!("R{regno} type={} expected={exp}", r.ty.name()),
            ))
        };
        match kind {
            ArgKind::DontCare | ArgKind::Anything => {}
            ArgKind::MapPtr => {
                if r.ty != RegType::MapPtr {
                    return bad(env, "map_ptr");
                }
                map = Some(r.map);
                let mt = env.opts.maps.get(r.map as usize).map_or(0, |m| m.map_type);
                let allowed =
                    proto.map_types.is_none_or(|t| t.contains(&mt)) && map_allows_helper(mt, id);
                if !allowed {
                    return Err(env.err(
                        pc,
                        K::HelperCall,
                        format!("cannot pass map_type {mt} into func {}#{id}", proto.name),
                    ));
                }
            }
            ArgKind::MapKey | ArgKind::MapValue => {
                let Some(m) = map.and_then(|m| env.opts.maps.get(m as usize)) else {
                    return Err(env.err(
                        pc,
                        K::HelperCall,
                        format!(
                            "invalid map_ptr to access map->{}",
                            if *kind == ArgKind::MapKey {
                                "key"
                            } else {
                                "value"
                            }
                        ),
                    ));
                };
                let size = if *kind == ArgKind::MapKey {
                    m.key_size
                } else {
                    m.value_size
                };
                crate::check::check_helper_mem(env, st, pc, regno, size as u64, false, false)?;
                if *kind == ArgKind::MapKey && id == HELPER_MAP_LOOKUP_ELEM {
                    const_key = constant_map_key(env, st, &r, m.map_type, m.key_size);
                }
            }
            ArgKind::ReadMem | ArgKind::WriteMem => {
                let size_reg = regs.get(regno + 1).copied().unwrap_or(RegState::NOT_INIT);
                let zero_ok = proto.args.get(i + 1) == Some(&ArgKind::ConstSizeOrZero);
                if size_reg.ty == RegType::NotInit {
                    return Err(env.err(pc, K::UninitRegister, format!("R{} !read_ok", regno + 1)));
                }
                let n = check_size_arg(env, pc, regno + 1, &size_reg, zero_ok)?;
                env.mark_precise(st, (regno + 1) as u8);
                crate::check::check_helper_mem(
                    env,
                    st,
                    pc,
                    regno,
                    n,
                    *kind == ArgKind::WriteMem,
                    zero_ok,
                )?;
            }
            ArgKind::ConstSize | ArgKind::ConstSizeOrZero => {}
            ArgKind::AllocSize => {
                if r.ty != RegType::Scalar {
                    return bad(env, "scalar");
                }
                env.mark_precise(st, regno as u8);
                match r.var.const_value() {
                    Some(v) if v <= u32::MAX as u64 => alloc_size = v as u32,
                    _ => {
                        return Err(env.err(
                            pc,
                            K::HelperCall,
                            format!("R{regno} is not a known constant'"),
                        ))
                    }
                }
            }
            ArgKind::Ctx => {
                if r.ty != RegType::Ctx {
                    return bad(env, "ctx");
                }
                if r.off != 0 || !r.var.is_const() || r.var.const_value() != Some(0) {
                    return Err(env.err(
                        pc,
                        K::HelperCall,
                        format!(
                            "dereference of modified ctx ptr R{regno} off={} disallowed",
                            r.off
                        ),
                    ));
                }
            }
            ArgKind::Func => {
                if r.ty != RegType::Func {
                    return bad(env, "func");
                }
                callback = Some((r.frameno, RegState::NOT_INIT));
            }
            ArgKind::StackOrNull => {
                if !(r.ty == RegType::Stack || r.is_const(0)) {
                    return bad(env, "fp");
                }
                if let Some(cb) = callback.as_mut() {
                    cb.1 = r;
                }
            }
            ArgKind::RingbufRelease => {
                if r.ty != RegType::Mem || !r.ringbuf {
                    return bad(env, "ringbuf_mem");
                }
                if r.off != 0 || r.var.const_value() != Some(0) {
                    return Err(env.err(
                        pc,
                        K::HelperCall,
                        format!("R{regno} must have zero offset when passed to release func"),
                    ));
                }
                if r.ref_obj_id == 0 || !st.refs.iter().any(|(i, _)| *i == r.ref_obj_id) {
                    return Err(env.err(
                        pc,
                        K::Reference,
                        format!("R{regno} must be referenced when passed to release function"),
                    ));
                }
                release = Some(r.ref_obj_id);
            }
        }
    }
    if proto.special == Special::TailCall {
        record_tail_call(env, st, pc, map, &regs[3]);
    }
    if let Some(rid) = release {
        st.refs.retain(|(i, _)| *i != rid);
        let privileged = env.opts.privileged;
        st.for_each_reg(|r| {
            if r.ref_obj_id == rid {
                *r = if privileged {
                    RegState::unknown()
                } else {
                    RegState::NOT_INIT
                };
            }
        });
    }
    let mut cb_entry = None;
    if proto.special == Special::Loop {
        if let Some((start, ctx)) = callback {
            // As the kernel: the callback is visited again and again, each
            // exit returning to this call, until an iteration's state lies
            // within an earlier one's (see `Env::visit`) or the iteration
            // count (r1, hence precise) is used up. The flags must be 0.
            if regs[4].is_const(0) {
                env.mark_precise(st, 4);
            }
            env.mark_precise(st, 1);
            let depth = st.cur().callback_depth;
            if u64::from(depth) < regs[1].var.umax {
                let frameno = st.frames.len() as u32;
                if st.frames.len() >= MAX_CALL_FRAMES {
                    return Err(env.err(
                        pc,
                        K::Call,
                        format!(
                            "the call stack of {} frames is too deep",
                            st.frames.len() + 1
                        ),
                    ));
                }
                // Enter the callback: a new frame with r1 = index, r2 = ctx.
                let mut entry = st.clone();
                entry.cur_mut().callback_depth = depth + 1;
                entry.callback_unroll_depth += 1;
                let mut f = Frame::new(frameno, pc as u32, start);
                f.regs[1] = RegState::unknown();
                f.regs[2] = ctx;
                f.callback = Some(CallbackFrame { ctx });
                entry.frames.push(f);
                cb_entry = Some((entry, start as usize));
            }
            st.cur_mut().callback_depth = 0;
        }
    }
    for r in 1..=5 {
        st.cur_mut().regs[r] = RegState::NOT_INIT;
    }
    let r0 = match proto.ret {
        RetKind::Integer => RegState::unknown(),
        RetKind::Void => RegState::NOT_INIT,
        RetKind::MapValueOrNull => {
            let map = map.unwrap_or(0);
            let max_entries = env.opts.maps.get(map as usize).map_or(0, |m| m.max_entries);
            if const_key.is_some_and(|k| k < u64::from(max_entries)) {
                // A constant in-bounds key of an array map: never NULL.
                let mut r = RegState::pointer(RegType::MapValue);
                r.map = map;
                r
            } else {
                let mut r = RegState::pointer(RegType::MapValueOrNull);
                r.map = map;
                r.id = env.new_id();
                r
            }
        }
        RetKind::RingbufMemOrNull => {
            let mut r = RegState::pointer(RegType::MemOrNull);
            let id = env.new_id();
            r.id = id;
            r.ref_obj_id = id;
            r.range = alloc_size;
            r.ringbuf = true;
            st.refs.push((id, pc as u32));
            r
        }
    };
    st.cur_mut().regs[0] = r0;
    Ok(cb_entry)
}

/// A tail call in a subprogram (kernel `check_helper_call`, 6.13+): when it
/// succeeds, the called program's exit returns to the subprogram's caller.
/// The failed call goes on at `next` (explored later); the current path
/// leaves the subprogram with an unknown r0 and every packet pointer
/// invalidated (`clear_all_pkt_pointers`: the other program may have
/// changed the packet), as if by `exit`.
fn tail_call_exit(env: &mut Env<'_>, st: &mut State, pc: usize, next: usize) -> R<Next> {
    let cont = st.clone();
    let privileged = env.opts.privileged;
    st.for_each_reg(|r| {
        if matches!(
            r.ty,
            RegType::Packet | RegType::PacketMeta | RegType::PacketEnd
        ) {
            *r = if privileged {
                RegState::unknown()
            } else {
                RegState::NOT_INIT
            };
        }
    });
    st.cur_mut().regs[0] = RegState::unknown();
    match exit(env, st, pc)? {
        Next::Goto(to) => Ok(Next::Fork {
            pc: to,
            other: Box::new(cont),
            other_pc: next,
        }),
        // `exit` of a subprogram always returns to a caller; were it not
        // to, only the failed call's path remains.
        _ => {
            *st = cont;
            Ok(Next::Goto(next))
        }
    }
}

fn local_call(env: &mut Env<'_>, st: &mut State, pc: usize, target: u32) -> R<()> {
    if st.frames.len() >= MAX_CALL_FRAMES {
        return Err(env.err(
            pc,
            K::Call,
            format!(
                "the call stack of {} frames is too deep",
                st.frames.len() + 1
            ),
        ));
    }
    let frameno = st.frames.len() as u32;
    let caller = st.cur().regs;
    let mut f = Frame::new(frameno, pc as u32, target);
    f.regs[1..=5].copy_from_slice(&caller[1..=5]);
    st.frames.push(f);
    Ok(())
}

fn exit(env: &mut Env<'_>, st: &mut State, pc: usize) -> R<Next> {
    // A subprogram may return without setting r0 (the caller then cannot read it).
    let r0 = if st.frames.len() > 1 {
        st.cur().regs[0]
    } else {
        read_reg(env, st, pc, Reg::R0)?
    };
    if st.frames.len() > 1 {
        let callee = st.frames.pop().unwrap_or_else(|| Frame::new(0, 0, 0));
        let callsite = callee.callsite as usize;
        if r0.ty == RegType::Stack && r0.frameno as usize >= st.frames.len() {
            return Err(env.err(
                pc,
                K::Call,
                "cannot return stack pointer to the caller".into(),
            ));
        }
        if callee.callback.is_some() {
            // Also for an unset r0 (the kernel's `prepare_func_exit`).
            if r0.ty != RegType::Scalar {
                return Err(env.err(pc, K::ReturnValue, "R0 not a scalar value".into()));
            }
            // The return value's range is relied on: it must be precise.
            st.frames.push(callee);
            env.mark_precise(st, 0);
            st.frames.pop();
            if r0.var.smin < 0 || r0.var.smax > 1 {
                return Err(env.err(pc, K::ReturnValue, format!("At callback return the register R0 has smin={} smax={} should have been in [0, 1]", r0.var.smin, r0.var.smax)));
            }
            // Back to the calling helper, which may run another iteration;
            // what changed in imprecise scalars since the previous
            // iteration is forgotten so that the iterations converge.
            env.widen_loop_state(st, callsite);
            return Ok(Next::Goto(callsite));
        }
        let fr = st.cur_mut();
        fr.regs[0] = r0;
        for r in 1..=5 {
            fr.regs[r] = RegState::NOT_INIT;
        }
        return Ok(Next::Goto(callsite + 1));
    }
    if r0.is_pointer() && !env.opts.privileged {
        return Err(env.err(pc, K::PointerLeak, "R0 leaks addr as return value".into()));
    }
    if let Some(&(id, at)) = st.refs.first() {
        return Err(env.err(
            pc,
            K::Reference,
            format!("Unreleased reference id={id} alloc_insn={at}"),
        ));
    }
    Ok(Next::End)
}
