//! Memory access checks (kernel `check_mem_access` and friends): by the
//! base pointer's type, bounds under fixed and variable offsets, alignment
//! as the kernel enforces it on x86-64 (stack accesses and atomics must be
//! aligned; other accesses need not be), and the value a load produces.

use bpf_isa::Reg;

use crate::ctx::{check_ctx_access, ctx_desc};
use crate::error::{ErrorKind as K, VerifierError};
use crate::platform::{BPF_F_RDONLY_PROG, BPF_MAX_VAR_OFF, MAX_BPF_STACK};
use crate::reg::{RegState, RegType};
use crate::scalar::Scalar;
use crate::stack::{Stack, StackRead, StackReadError};
use crate::state::State;
use crate::verifier::Env;

type R<T> = Result<T, VerifierError>;

/// The kind of access.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// A load.
    Read,
    /// A store of this value (`None`: unknown data).
    Write(Option<RegState>),
    /// An atomic read-modify-write.
    Atomic,
}

impl Access {
    fn writes(self) -> bool {
        !matches!(self, Access::Read)
    }
}

/// Checks an access of `size` bytes at `base + off`; returns the loaded
/// value for reads (`None`: an unknown scalar of the access size).
pub(crate) fn check_mem(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    base: Reg,
    off: i64,
    size: u32,
    access: Access,
) -> R<Option<RegState>> {
    let reg = st.cur().regs[base.idx()];
    let regno = base.num();
    let off = off + reg.off as i64;
    // Kernel `save_aux_ptr_type`: one instruction may not access the context
    // on one path and other memory on another (its conversion differs).
    if let Some(a) = env.aux.get_mut(pc) {
        let is_ctx = reg.ty == RegType::Ctx;
        let is_sock = reg.ty == RegType::SockCommon;
        // `reg_type_mismatch`: the converted types (ctx, sockets) may not
        // mix with each other or with plain memory.
        if a.mem_access_seen && (a.ctx_access != is_ctx || a.sock_access != is_sock) {
            return Err(env.err(
                pc,
                K::MemoryAccess,
                "same insn cannot be used with different pointers".into(),
            ));
        }
        a.mem_access_seen = true;
        a.ctx_access = is_ctx;
        a.sock_access = is_sock;
    }
    if let Access::Write(Some(v)) = access {
        if v.is_pointer() && !env.opts.privileged && reg.ty != RegType::Stack {
            return Err(env.err(
                pc,
                K::PointerLeak,
                format!("R{} leaks addr into mem", regno),
            ));
        }
    }
    match reg.ty {
        RegType::Stack => stack_access(env, st, pc, &reg, regno, off, size, access),
        RegType::MapValue => {
            let Some(m) = env.opts.maps.get(reg.map as usize).cloned() else {
                return Err(env.err(pc, K::MemoryAccess, "invalid map".into()));
            };
            if access.writes() && m.flags & BPF_F_RDONLY_PROG != 0 {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!(
                        "write into map forbidden, value_size={} off={off} size={size}",
                        m.value_size
                    ),
                ));
            }
            region(
                env,
                pc,
                &reg,
                regno,
                off,
                size,
                m.value_size as u64,
                |o, s| {
                    format!(
                        "invalid access to map value, value_size={} off={o} size={s}",
                        m.value_size
                    )
                },
            )?;
            Ok(None)
        }
        RegType::Mem => {
            let sz = reg.range as u64;
            region(env, pc, &reg, regno, off, size, sz, |o, s| {
                format!("invalid access to memory, mem_size={sz} off={o} size={s}")
            })?;
            Ok(None)
        }
        RegType::Packet | RegType::PacketMeta => {
            if access.writes() && !env.opts.prog.direct_packet_write() {
                return Err(env.err(pc, K::MemoryAccess, "cannot write into packet".into()));
            }
            if !env.opts.prog.direct_packet_read() {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("R{regno} invalid mem access '{}'", reg.ty.name()),
                ));
            }
            if reg.var.smin < 0 {
                return Err(env.err(pc, K::MemoryAccess, format!("R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")));
            }
            if off < 0 || off + size as i64 > reg.range as i64 {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!(
                        "invalid access to packet, off={} size={size}, R{regno}(id={},off={},r={})",
                        off - reg.off as i64,
                        reg.id,
                        reg.off,
                        reg.range
                    ),
                ));
            }
            Ok(None)
        }
        RegType::Ctx => {
            if reg.off != 0 {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!(
                        "dereference of modified ctx ptr R{regno} off={} disallowed",
                        reg.off
                    ),
                ));
            }
            if reg.var.const_value() != Some(0) {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("variable ctx access var_off={} disallowed", reg.var.var_off),
                ));
            }
            if matches!(access, Access::Atomic) {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("BPF_ATOMIC stores into R{regno} ctx is not allowed"),
                ));
            }
            if let Access::Write(Some(v)) = access {
                if v.is_pointer() {
                    return Err(env.err(
                        pc,
                        K::PointerLeak,
                        format!("R{regno} leaks addr into ctx"),
                    ));
                }
            }
            let desc = ctx_desc(env.opts.prog);
            match check_ctx_access(&desc, off, size, access.writes()) {
                Some(RegType::Scalar) => Ok(None),
                Some(t) => {
                    let mut r = RegState::pointer(t);
                    // A maybe-NULL field gets an id for its NULL check.
                    r.id = if t.maybe_null() { env.new_id() } else { 0 };
                    Ok(Some(r))
                }
                None => Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("invalid bpf_context access off={off} size={size}"),
                )),
            }
        }
        RegType::SockCommon => {
            // check_mem_access (type_is_sk_pointer) and check_sock_access.
            if access.writes() {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("R{regno} cannot write into sock_common"),
                ));
            }
            if reg.var.smin < 0 {
                return Err(env.err(pc, K::MemoryAccess, format!("R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")));
            }
            if !crate::ctx::sock_common_read_ok(off, size) {
                return Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("R{regno} invalid sock_common access off={off} size={size}"),
                ));
            }
            Ok(None)
        }
        RegType::NotInit => Err(env.err(pc, K::UninitRegister, format!("R{regno} !read_ok"))),
        t => Err(env.err(
            pc,
            K::MemoryAccess,
            format!("R{regno} invalid mem access '{}'", t.name()),
        )),
    }
}

/// Bounds of a region access under the register's variable offset (kernel
/// `check_mem_region_access`).
#[allow(clippy::too_many_arguments)]
fn region(
    env: &mut Env<'_>,
    pc: usize,
    reg: &RegState,
    regno: u8,
    off: i64,
    size: u32,
    mem_size: u64,
    msg: impl Fn(i64, u32) -> String,
) -> R<()> {
    let v = &reg.var;
    if v.smin < 0
        && (v.smin == i64::MIN
            || v.smin + off < 0
            || (off + v.smin) != (off + v.smin) as i32 as i64)
    {
        return Err(env.err(pc, K::MemoryAccess, format!("R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")));
    }
    let lo = v.smin.saturating_add(off);
    if lo < 0 || lo as u64 + size as u64 > mem_size {
        let m = msg(lo, size);
        let _ = env.err(pc, K::MemoryAccess, m.clone());
        if v.is_const() {
            return Err(VerifierError::new(pc, K::MemoryAccess, m));
        }
        return Err(env.err(
            pc,
            K::MemoryAccess,
            format!("R{regno} min value is outside of the allowed memory range"),
        ));
    }
    if v.umax >= BPF_MAX_VAR_OFF as u64 {
        return Err(env.err(
            pc,
            K::MemoryAccess,
            format!("R{regno} unbounded memory access, make sure to bounds check any such access"),
        ));
    }
    let hi = v.umax as i64 + off;
    if hi < 0 || hi as u64 + size as u64 > mem_size {
        let m = msg(hi, size);
        let _ = env.err(pc, K::MemoryAccess, m);
        return Err(env.err(
            pc,
            K::MemoryAccess,
            format!("R{regno} max value is outside of the allowed memory range"),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn stack_access(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    reg: &RegState,
    regno: u8,
    off: i64,
    size: u32,
    access: Access,
) -> R<Option<RegState>> {
    let what = if access.writes() {
        " write to"
    } else {
        " read from"
    };
    let fidx = reg.frameno as usize;
    if fidx >= st.frames.len() {
        return Err(env.err(pc, K::MemoryAccess, format!("R{regno} invalid stack frame")));
    }
    // Alignment: stack accesses must be aligned (always strict).
    let fixed = reg.var.var_off.add(crate::tnum::Tnum::constant(off as u64));
    if size > 1 && !fixed.is_aligned(size as u64) {
        return Err(env.err(
            pc,
            K::MemoryAccess,
            format!(
                "misaligned stack access off {}+{}+{} size {size}",
                // The kernel's `tnum_strn` (6.18) prints a constant as a
                // number: decimal up to U16_MAX, hex above.
                match reg.var.var_off.is_const().then_some(reg.var.var_off.value) {
                    Some(c) if c <= 0xffff => c.to_string(),
                    Some(c) => format!("{c:#x}"),
                    None => reg.var.var_off.to_string(),
                },
                reg.off,
                off - reg.off as i64
            ),
        ));
    }
    let (lo, hi) = if let Some(c) = reg.var.const_value() {
        let lo = off + c as i64;
        (lo, lo + size as i64)
    } else {
        if reg.var.smax >= BPF_MAX_VAR_OFF || reg.var.smin <= -BPF_MAX_VAR_OFF {
            return Err(env.err(
                pc,
                K::MemoryAccess,
                format!("invalid unbounded variable-offset{what} stack R{regno}"),
            ));
        }
        (reg.var.smin + off, reg.var.smax + off + size as i64)
    };
    let min_valid = if access.writes() || env.opts.privileged {
        -MAX_BPF_STACK
    } else {
        -(st.frames[fidx].stack.allocated() as i64)
    };
    if lo < min_valid || lo > -1 || hi > 0 {
        let m = if reg.var.is_const() {
            format!("invalid{what} stack R{regno} off={off} size={size}")
        } else {
            format!(
                "invalid variable-offset{what} stack R{regno} var_off={} off={off} size={size}",
                reg.var.var_off
            )
        };
        return Err(env.err(pc, K::MemoryAccess, m));
    }
    let subprog = st.frames[fidx].subprog;
    env.note_depth(subprog, (-lo) as u32);
    if let Some(a) = env.aux.get_mut(pc) {
        a.note_stack_extent(subprog, (-lo) as u32);
    }
    if !matches!(access, Access::Write(_)) {
        env.note_stack_read(st, pc, fidx, lo, hi);
    }
    let privileged = env.opts.privileged;
    let stack: &mut Stack = &mut st.frames[fidx].stack;
    if !reg.var.is_const() {
        // Variable offset: every byte in the range may be touched.
        match access {
            Access::Read => {
                let mut defs = crate::stack::InsnSet::new();
                for s in stack.slots_in(lo, hi) {
                    defs.union_with(&s.defs);
                }
                if let Err(o) = stack.check_range_init(lo, hi, privileged) {
                    return Err(env.err(pc, K::MemoryAccess, format!("invalid variable-offset read from stack R{regno} var_off={} off={o} size={size}", reg.var.var_off)));
                }
                let zero = stack.range_is_zero(lo, hi);
                env.note_escape(&defs);
                return Ok(Some(if zero {
                    RegState::constant(0)
                } else {
                    RegState::unknown()
                }));
            }
            _ => {
                stack.clobber(lo, (hi - lo) as u32, pc as u32);
                return Ok(None);
            }
        }
    }
    match access {
        Access::Read => {
            let (spi, _) = Stack::locate(lo);
            let defs = stack.slot(spi).map(|s| s.defs.clone()).unwrap_or_default();
            let is_fill = size == 8 && stack.slot(spi).is_some_and(|s| s.is_full_spill());
            let r = stack.read(lo, size, privileged);
            match r {
                Ok(StackRead::Fill(v)) => {
                    env.note_stack_hist(fidx, lo);
                    if is_fill {
                        env.note_fill(pc, &defs);
                    } else {
                        env.note_escape(&defs);
                    }
                    Ok(Some(v))
                }
                Ok(StackRead::Zero) => {
                    env.note_escape(&defs);
                    Ok(Some(RegState::constant(0)))
                }
                Ok(StackRead::Unknown) => {
                    env.note_escape(&defs);
                    Ok(Some(RegState::scalar(Scalar::UNKNOWN.truncate(size))))
                }
                Err(StackReadError::PartialPointerFill) => {
                    Err(env.err(pc, K::MemoryAccess, "invalid size of register fill".into()))
                }
                Err(StackReadError::Uninit(i)) => Err(env.err(
                    pc,
                    K::MemoryAccess,
                    format!("invalid read from stack off {lo}+{i} size {size}"),
                )),
            }
        }
        Access::Write(v) => {
            if let Some(r) = v {
                if r.is_pointer() && size != 8 {
                    return Err(env.err(
                        pc,
                        K::MemoryAccess,
                        "invalid size of register spill".into(),
                    ));
                }
            }
            stack.write(lo, size, v.as_ref(), pc as u32, privileged);
            let spilled = v.is_some()
                && stack
                    .slot(Stack::locate(lo).0)
                    .is_some_and(|s| s.is_spill());
            env.note_stack_write(st, fidx, lo, lo + size as i64, spilled);
            Ok(None)
        }
        Access::Atomic => {
            // `check_atomic_rmw` reads the old value first (the rules of
            // `check_stack_read_fixed_off`: a spilled pointer only as a whole)
            // and then writes unknown data, which scrubs any spill.
            let (spi, _) = Stack::locate(lo);
            let defs = stack.slot(spi).map(|s| s.defs.clone()).unwrap_or_default();
            let old = match stack.read(lo, size, privileged) {
                Ok(StackRead::Fill(v)) if v.is_pointer() => v,
                Ok(StackRead::Zero) => RegState::constant(0),
                Ok(_) => RegState::scalar(Scalar::UNKNOWN.truncate(size)),
                Err(StackReadError::PartialPointerFill) => {
                    return Err(env.err(
                        pc,
                        K::MemoryAccess,
                        "invalid size of register fill".into(),
                    ))
                }
                Err(StackReadError::Uninit(i)) => {
                    return Err(env.err(
                        pc,
                        K::MemoryAccess,
                        format!("invalid read from stack off {lo}+{i} size {size}"),
                    ))
                }
            };
            env.note_escape(&defs);
            stack.clobber(lo, size, pc as u32);
            Ok(Some(old))
        }
    }
}

/// Checks a helper's memory argument in register `regno` for `size` bytes
/// (kernel `check_helper_mem_access`).
pub(crate) fn check_helper_mem(
    env: &mut Env<'_>,
    st: &mut State,
    pc: usize,
    regno: usize,
    size: u64,
    write: bool,
    zero_ok: bool,
) -> R<()> {
    let reg = st.cur().regs[regno];
    if size == 0 && zero_ok && reg.is_const(0) {
        return Ok(());
    }
    let size32 = size.min(u32::MAX as u64) as u32;
    match reg.ty {
        RegType::Stack => {
            let fidx = reg.frameno as usize;
            if fidx >= st.frames.len() {
                return Err(env.err(pc, K::HelperCall, format!("R{regno} invalid stack frame")));
            }
            let off = reg.off as i64;
            let (lo, hi) = match reg.var.const_value() {
                Some(c) => (off + c as i64, off + c as i64 + size as i64),
                None => {
                    if reg.var.smax >= BPF_MAX_VAR_OFF || reg.var.smin <= -BPF_MAX_VAR_OFF {
                        return Err(env.err(pc, K::HelperCall, format!("invalid unbounded variable-offset indirect access to stack R{regno}")));
                    }
                    (reg.var.smin + off, reg.var.smax + off + size as i64)
                }
            };
            if lo < -MAX_BPF_STACK || hi > 0 || (size > 0 && lo > -1) {
                return Err(env.err(
                    pc,
                    K::HelperCall,
                    format!("invalid indirect access to stack R{regno} off={lo} size={size}"),
                ));
            }
            let subprog = st.frames[fidx].subprog;
            env.note_depth(subprog, (-lo) as u32);
            if let Some(a) = env.aux.get_mut(pc) {
                a.note_stack_extent(subprog, (-lo) as u32);
            }
            if !write {
                env.note_stack_read(st, pc, fidx, lo, hi);
            }
            let privileged = env.opts.privileged;
            let stack = &mut st.frames[fidx].stack;
            let mut defs = crate::stack::InsnSet::new();
            for s in stack.slots_in(lo, hi) {
                defs.union_with(&s.defs);
            }
            env.note_escape(&defs);
            let stack = &mut st.frames[fidx].stack;
            if write {
                stack.clobber(lo, (hi - lo) as u32, pc as u32);
            } else if let Err(o) = stack.check_range_init(lo, hi, privileged) {
                return Err(env.err(
                    pc,
                    K::HelperCall,
                    format!(
                        "invalid indirect read from stack R{regno} off {lo}+{} size {size}",
                        o - lo
                    ),
                ));
            }
            Ok(())
        }
        RegType::MapValue | RegType::Mem | RegType::Packet | RegType::PacketMeta => {
            let base = Reg::from_u8(regno as u8).unwrap_or(Reg::R1);
            if size == 0 {
                return Ok(());
            }
            check_mem(
                env,
                st,
                pc,
                base,
                0,
                size32,
                if write {
                    Access::Write(None)
                } else {
                    Access::Read
                },
            )?;
            // The whole range, not only its first `size32` bytes, was checked above only if size fits.
            if size > u32::MAX as u64 {
                return Err(env.err(
                    pc,
                    K::HelperCall,
                    format!("R{regno} unbounded memory access"),
                ));
            }
            Ok(())
        }
        RegType::NotInit => Err(env.err(pc, K::UninitRegister, format!("R{regno} !read_ok"))),
        // `check_reg_type` lists the kernel's `mem_types` (ring-buffer
        // memory, buffers and trusted BTF pointers are not modelled here).
        t => Err(env.err(
            pc,
            K::HelperCall,
            format!(
                "R{regno} type={} expected=fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_",
                t.name()
            ),
        )),
    }
}
