//! The dispatch loop.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bpf_isa::AtomicOp;

use super::ops::{Code, Op, FUNC_TAG, FUNC_TAG_MASK, TRAP_ADDR_SPACE, TRAP_END};
use super::{Interpreter, Tracer};
use crate::context::{CtxView, SkbMd, XdpMd, SKB_SIZE, XDP_MD_SIZE};
use crate::error::{HelperError, VmError};
use crate::helpers::HelperCtx;
use crate::maps::errno;
use crate::mem::MemState;
use crate::{BPF_MAX_LOOPS, MAX_CALL_FRAMES, MAX_TAIL_CALL_CNT, STACK_SIZE};

/// Words of the main stack: room for [`MAX_CALL_FRAMES`] frames, the most
/// one program's own bpf-to-bpf calls can stack.
const STACK_WORDS: usize = STACK_SIZE * MAX_CALL_FRAMES / 8;
/// Most frames live at once in a run. A tail call replaces the frame it is
/// made from (its target runs in that frame and returns to that frame's
/// caller), but the target may call further: each of the at most
/// [`MAX_TAIL_CALL_CNT`] tail calls can start a program whose own call chain
/// adds up to `MAX_CALL_FRAMES - 1` frames on top of the frames below it.
const MAX_RUN_FRAMES: usize = (MAX_TAIL_CALL_CNT as usize + 1) * (MAX_CALL_FRAMES - 1) + 1;
/// Words of the deep stack: the frames past the main stack's capacity
/// (allocated on first use, which only tail calls from subprograms need).
const DEEP_WORDS: usize = STACK_SIZE * (MAX_RUN_FRAMES - MAX_CALL_FRAMES) / 8;
/// `bpf_loop`'s limit on iterations (`BPF_MAX_LOOPS`, also the may_goto budget).
const LOOP_MAX: u64 = BPF_MAX_LOOPS;

/// Per-run inputs: context, packet, extra regions.
pub(crate) struct Env<'a> {
    r1: u64,
    r2: u64,
    /// The packet `ld_abs`/`ld_ind` read: address and length.
    pkt: (u64, u64),
    pub(crate) ctx: CtxView,
    ctx_base: u64,
    ctx_len: u64,
    /// Fixed regions besides the stack: (address, length, writable).
    fixed: [(u64, u64, bool); 1],
    _life: std::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> Env<'a> {
    pub(crate) fn mem(mem: &'a mut [u8]) -> Env<'a> {
        let (p, n) = (mem.as_mut_ptr() as u64, mem.len() as u64);
        let p = if n == 0 { 0 } else { p };
        Env {
            r1: p,
            r2: n,
            pkt: (p, n),
            ctx: CtxView::None,
            ctx_base: u64::MAX,
            ctx_len: 0,
            fixed: [(p, n, true)],
            _life: std::marker::PhantomData,
        }
    }

    pub(crate) fn xdp(packet: &'a mut [u8], md: XdpMd, backing: &'a mut [u64]) -> Env<'a> {
        let (p, n) = (packet.as_mut_ptr() as u64, packet.len() as u64);
        let base = backing.as_mut_ptr() as u64;
        Env {
            r1: base,
            r2: 0,
            pkt: (p, n),
            ctx: CtxView::Xdp {
                data: p,
                data_end: p + n,
                md,
            },
            ctx_base: base,
            ctx_len: XDP_MD_SIZE,
            fixed: [(p, n, true)],
            _life: std::marker::PhantomData,
        }
    }

    pub(crate) fn skb(packet: &'a mut [u8], md: SkbMd, backing: &'a mut [u64]) -> Env<'a> {
        let (p, n) = (packet.as_mut_ptr() as u64, packet.len() as u64);
        let base = backing.as_mut_ptr() as u64;
        Env {
            r1: base,
            r2: 0,
            pkt: (p, n),
            ctx: CtxView::Skb {
                data: p,
                data_end: p + n,
                shadow: md.to_shadow(n as u32),
            },
            ctx_base: base,
            ctx_len: SKB_SIZE,
            fixed: [(p, n, true)],
            _life: std::marker::PhantomData,
        }
    }
}

#[derive(Clone, Copy)]
struct LoopState {
    i: u64,
    n: u64,
    cb: u32,
    ctx: u64,
}

/// A caller's state, saved by a bpf-to-bpf call.
#[derive(Clone, Copy)]
struct Frame {
    ret_pc: u32,
    /// Depth at which the caller's program started (0, or the depth of the
    /// frame a tail call into it was made from).
    base: u32,
    prog: *const Interpreter,
    saved: [u64; 4],
    /// The caller's frame pointer.
    r10: u64,
    may_goto: u64,
    lp: Option<LoopState>,
}

const EMPTY_FRAME: Frame = Frame {
    ret_pc: 0,
    base: 0,
    prog: std::ptr::null(),
    saved: [0; 4],
    r10: 0,
    may_goto: 0,
    lp: None,
};

fn helper_err(insn: usize, id: i32, e: HelperError) -> VmError {
    match e {
        HelperError::MemoryFault { addr, size, write } => VmError::MemoryFault {
            insn,
            addr,
            size: size.min(u32::MAX as u64) as u32,
            write,
        },
        HelperError::Other(message) => VmError::Helper { insn, id, message },
    }
}

#[inline(always)]
fn bswap16(v: u64) -> u64 {
    (v as u16).swap_bytes() as u64
}

/// Atomic read-modify-write on `addr` (naturally aligned); returns the old value.
///
/// # Safety
/// `addr` must be valid for reads and writes of `N` bytes and aligned to `N`.
#[inline]
unsafe fn atomic_rmw<const N: usize>(addr: u64, op: AtomicOp, val: u64, expect: u64) -> u64 {
    let ord = Ordering::SeqCst;
    if N == 8 {
        // SAFETY: caller guarantees validity and alignment.
        let a = unsafe { AtomicU64::from_ptr(addr as *mut u64) };
        match op {
            AtomicOp::Add { .. } => a.fetch_add(val, ord),
            AtomicOp::Or { .. } => a.fetch_or(val, ord),
            AtomicOp::And { .. } => a.fetch_and(val, ord),
            AtomicOp::Xor { .. } => a.fetch_xor(val, ord),
            AtomicOp::Xchg => a.swap(val, ord),
            AtomicOp::Cmpxchg => match a.compare_exchange(expect, val, ord, ord) {
                Ok(v) | Err(v) => v,
            },
            AtomicOp::LoadAcquire | AtomicOp::StoreRelease => 0,
        }
    } else {
        // SAFETY: as above.
        let a = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
        let v = val as u32;
        (match op {
            AtomicOp::Add { .. } => a.fetch_add(v, ord),
            AtomicOp::Or { .. } => a.fetch_or(v, ord),
            AtomicOp::And { .. } => a.fetch_and(v, ord),
            AtomicOp::Xor { .. } => a.fetch_xor(v, ord),
            AtomicOp::Xchg => a.swap(v, ord),
            AtomicOp::Cmpxchg => match a.compare_exchange(expect as u32, v, ord, ord) {
                Ok(x) | Err(x) => x,
            },
            AtomicOp::LoadAcquire | AtomicOp::StoreRelease => 0,
        }) as u64
    }
}

/// The same operation without atomicity, for misaligned addresses in unchecked mode.
///
/// # Safety
/// `addr` must be valid for reads and writes of `N` bytes.
unsafe fn plain_rmw<const N: usize>(addr: u64, op: AtomicOp, val: u64, expect: u64) -> u64 {
    let mask = if N == 8 { u64::MAX } else { u32::MAX as u64 };
    // SAFETY: caller guarantees validity.
    let old = unsafe {
        if N == 8 {
            (addr as *const u64).read_unaligned()
        } else {
            (addr as *const u32).read_unaligned() as u64
        }
    };
    let new = match op {
        AtomicOp::Add { .. } => old.wrapping_add(val),
        AtomicOp::Or { .. } => old | val,
        AtomicOp::And { .. } => old & val,
        AtomicOp::Xor { .. } => old ^ val,
        AtomicOp::Xchg => val,
        AtomicOp::Cmpxchg => {
            if old == expect & mask {
                val
            } else {
                old
            }
        }
        AtomicOp::LoadAcquire | AtomicOp::StoreRelease => old,
    } & mask;
    // SAFETY: as above.
    unsafe {
        if N == 8 {
            (addr as *mut u64).write_unaligned(new)
        } else {
            (addr as *mut u32).write_unaligned(new as u32)
        }
    }
    old
}

impl Interpreter {
    /// Runs the program. With `CHECKED`, every access is checked against the
    /// regions of the run; without, the caller has promised the program is safe.
    pub(crate) fn exec<const CHECKED: bool, T: Tracer>(
        &self,
        env: &mut Env<'_>,
        tracer: &mut T,
    ) -> Result<u64, VmError> {
        // The instruction budget is counted only when there is one.
        if CHECKED && self.limit.is_some() {
            self.run::<true, true, T>(env, tracer)
        } else {
            self.run::<CHECKED, false, T>(env, tracer)
        }
    }

    /// The dispatch loop; `LIMITED` counts the instruction budget.
    fn run<const CHECKED: bool, const LIMITED: bool, T: Tracer>(
        &self,
        env: &mut Env<'_>,
        tracer: &mut T,
    ) -> Result<u64, VmError> {
        let mut stack = [0u64; STACK_WORDS];
        let stack_lo_all = stack.as_mut_ptr() as u64;
        let stack_hi = stack_lo_all + (STACK_WORDS * 8) as u64;
        let frame_size = STACK_SIZE as u64;
        let mut mem = MemState::new(stack_hi - frame_size, stack_hi);
        for &(p, n, w) in &env.fixed {
            mem.add(p, n, w);
        }
        let (ctx_base, ctx_len) = (env.ctx_base, env.ctx_len);
        if ctx_len != 0 {
            // The context itself is a region for helpers that take it; loads
            // and stores by the program are intercepted below.
            mem.add(ctx_base, ctx_len, false);
        }
        let (pkt_ptr, pkt_len) = env.pkt;
        // Global data the program addresses through `ld_imm64`.
        for &(p, n) in self.direct.iter() {
            mem.add(p, n, true);
        }

        let mut r = [0u64; 16];
        r[1] = env.r1;
        r[2] = env.r2;
        r[10] = stack_hi;

        // Saved callers: `frames[i]` (then `deep_frames[i - MAX_CALL_FRAMES]`)
        // is the caller of the frame at depth `i + 1`; `depth` is the
        // current frame's depth.
        let mut frames = [EMPTY_FRAME; MAX_CALL_FRAMES];
        let mut deep_frames: Vec<Frame> = Vec::new();
        let mut depth = 0usize;
        // Depth at which the running program started (tail calls move it).
        let mut base = 0usize;
        // Frames at depth MAX_CALL_FRAMES and deeper (see `MAX_RUN_FRAMES`).
        let mut deep: Box<[u64]> = Box::default();
        let mut may_goto = LOOP_MAX;
        let mut tail_calls = 0u32;
        let limit = self.limit.unwrap_or(u64::MAX);
        let mut budget = limit;

        let mut cur: &Interpreter = self;
        let mut ops: *const Op = cur.ops.as_ptr();
        let mut pc: usize = 0;

        macro_rules! slot {
            () => {
                cur.slots.get(pc).copied().unwrap_or(0) as usize
            };
        }
        macro_rules! fault {
            ($addr:expr, $n:expr, $w:expr) => {
                return Err(VmError::MemoryFault {
                    insn: slot!(),
                    addr: $addr,
                    size: $n as u32,
                    write: $w,
                })
            };
        }
        macro_rules! load {
            ($ty:ty, $addr:expr) => {{
                let addr: u64 = $addr;
                const N: u64 = std::mem::size_of::<$ty>() as u64;
                if addr.wrapping_sub(ctx_base) < ctx_len {
                    match env.ctx.load(addr - ctx_base, N) {
                        Some(v) => v,
                        None => fault!(addr, N, false),
                    }
                } else {
                    if CHECKED && !mem.check(addr, N, false) {
                        fault!(addr, N, false);
                    }
                    // SAFETY: checked mode verified the range lies in a live
                    // region; unchecked mode has the caller's promise.
                    unsafe { (addr as *const $ty).read_unaligned() as u64 }
                }
            }};
        }
        macro_rules! store {
            ($ty:ty, $addr:expr, $val:expr) => {{
                let addr: u64 = $addr;
                let val: u64 = $val;
                const N: u64 = std::mem::size_of::<$ty>() as u64;
                if addr.wrapping_sub(ctx_base) < ctx_len {
                    if !env.ctx.store(addr - ctx_base, N, val) {
                        fault!(addr, N, true);
                    }
                } else {
                    if CHECKED && !mem.check(addr, N, true) {
                        fault!(addr, N, true);
                    }
                    // SAFETY: as for loads.
                    unsafe { (addr as *mut $ty).write_unaligned(val as $ty) }
                }
            }};
        }
        macro_rules! ld_pkt {
            ($n:expr, $off:expr) => {{
                let off: i64 = $off;
                let n: u64 = $n;
                if off < 0 || (off as u64).saturating_add(n) > pkt_len {
                    // The kernel ends the program with r0 = 0 on a failed packet load.
                    return Ok(0);
                }
                let p = (pkt_ptr + off as u64) as *const u8;
                // SAFETY: bounds checked against the packet just above.
                unsafe {
                    match n {
                        1 => p.read() as u64,
                        2 => u16::from_be_bytes((p as *const [u8; 2]).read()) as u64,
                        _ => u32::from_be_bytes((p as *const [u8; 4]).read()) as u64,
                    }
                }
            }};
        }
        // The saved caller of the current frame (`None` at depth 0).
        macro_rules! caller {
            () => {
                match depth.checked_sub(1) {
                    Some(i) if i < MAX_CALL_FRAMES => frames.get_mut(i),
                    Some(i) => deep_frames.get_mut(i - MAX_CALL_FRAMES),
                    None => None,
                }
            };
        }
        // The top of the frame at depth `k` (the r10 of that frame).
        macro_rules! frame_top {
            ($k:expr) => {{
                let k: usize = $k;
                if k < MAX_CALL_FRAMES {
                    stack_hi - k as u64 * frame_size
                } else {
                    deep.as_ptr() as u64 + (DEEP_WORDS * 8) as u64
                        - (k - MAX_CALL_FRAMES) as u64 * frame_size
                }
            }};
        }
        macro_rules! call_local {
            ($target:expr) => {{
                if depth + 1 - base >= MAX_CALL_FRAMES || depth + 1 >= MAX_RUN_FRAMES {
                    return Err(VmError::CallDepthExceeded {
                        insn: slot!(),
                        max: MAX_CALL_FRAMES,
                    });
                }
                let f = Frame {
                    ret_pc: pc as u32 + 1,
                    base: base as u32,
                    prog: cur as *const Interpreter,
                    saved: [r[6], r[7], r[8], r[9]],
                    r10: r[10],
                    may_goto,
                    lp: None,
                };
                if let Some(slot) = frames.get_mut(depth) {
                    *slot = f;
                } else {
                    deep_frames.truncate(depth - MAX_CALL_FRAMES);
                    deep_frames.push(f);
                }
                depth += 1;
                let k = depth;
                if k >= MAX_CALL_FRAMES && deep.is_empty() {
                    deep = vec![0u64; DEEP_WORDS].into_boxed_slice();
                }
                r[10] = frame_top!(k);
                if k < MAX_CALL_FRAMES {
                    mem.stack_lo = r[10] - frame_size;
                } else {
                    mem.stack_lo = stack_lo_all;
                    mem.deep_lo = r[10] - frame_size;
                    mem.deep_hi = deep.as_ptr() as u64 + (DEEP_WORDS * 8) as u64;
                }
                may_goto = LOOP_MAX;
                pc = $target;
            }};
        }

        loop {
            // SAFETY: `pc` is always < ops.len(): targets are resolved to valid op
            // indices, fall-through past the last instruction reaches the Trap
            // sentinel (which never advances), superinstructions are never the
            // last op before it, and returns go to `call pc + 1`.
            let op: &Op = unsafe { &*ops.add(pc) };
            if T::ACTIVE {
                if let Some(regs) = r.first_chunk::<11>() {
                    tracer.step(cur, slot!(), regs);
                }
            }
            if LIMITED {
                if budget == 0 {
                    return Err(VmError::BudgetExceeded {
                        insn: slot!(),
                        limit,
                    });
                }
                budget -= 1;
            }
            // Operand decoding, done in the arms that need it (so that the
            // dispatch itself only loads the op code).
            macro_rules! d {
                () => {
                    (op.dst & 15) as usize
                };
            }
            macro_rules! s {
                () => {
                    (op.src & 15) as usize
                };
            }
            macro_rules! imm {
                () => {
                    op.a as i64 as u64
                };
            }
            macro_rules! uimm {
                () => {
                    op.a as u32
                };
            }
            macro_rules! off {
                () => {
                    op.b as i32 as i64 as u64
                };
            }
            macro_rules! aux {
                () => {
                    (op.aux & 15) as usize
                };
            }
            macro_rules! cimm {
                () => {
                    op.c as i64 as u64
                };
            }
            // The r10-relative address of a stack op, as a `*mut $ty`.
            macro_rules! stk {
                ($ty:ty) => {
                    r[10].wrapping_add(off!()) as *mut $ty
                };
            }
            // A conditional jump to `op.b`.
            macro_rules! jump_if {
                ($cond:expr) => {
                    if $cond {
                        pc = op.b as usize;
                        continue;
                    }
                };
            }
            // The second half of a superinstruction: skipped (the plain op
            // that follows runs next) when tracing or when the budget has no
            // room for it, so both see every instruction.
            macro_rules! second_half {
                () => {
                    if T::ACTIVE || (LIMITED && budget == 0) {
                        pc += 1;
                        continue;
                    }
                    if LIMITED {
                        budget -= 1;
                    }
                };
            }
            // `rD += imm; if rD <cond> rhs goto b`.
            macro_rules! add_jump {
                ($rhs:expr, |$a:ident, $b:ident| $cond:expr) => {{
                    let v = r[d!()].wrapping_add(imm!());
                    r[d!()] = v;
                    second_half!();
                    let $a = v;
                    let $b: u64 = $rhs;
                    pc = if $cond { op.b as usize } else { pc + 2 };
                    continue;
                }};
            }
            match op.code {
                Code::MovAdd64RR => {
                    r[d!()] = r[s!()];
                    second_half!();
                    r[d!()] = r[d!()].wrapping_add(r[aux!()]);
                    pc += 2;
                    continue;
                }
                Code::MovAdd64RI => {
                    r[d!()] = r[s!()];
                    second_half!();
                    r[d!()] = r[d!()].wrapping_add(imm!());
                    pc += 2;
                    continue;
                }
                Code::AddJeqI => add_jump!(cimm!(), |a, b| a == b),
                Code::AddJneI => add_jump!(cimm!(), |a, b| a != b),
                Code::AddJgtI => add_jump!(cimm!(), |a, b| a > b),
                Code::AddJgeI => add_jump!(cimm!(), |a, b| a >= b),
                Code::AddJltI => add_jump!(cimm!(), |a, b| a < b),
                Code::AddJleI => add_jump!(cimm!(), |a, b| a <= b),
                Code::AddJsgtI => add_jump!(cimm!(), |a, b| (a as i64) > b as i64),
                Code::AddJsgeI => add_jump!(cimm!(), |a, b| (a as i64) >= b as i64),
                Code::AddJsltI => add_jump!(cimm!(), |a, b| (a as i64) < b as i64),
                Code::AddJsleI => add_jump!(cimm!(), |a, b| (a as i64) <= b as i64),
                Code::AddJeqR => add_jump!(r[aux!()], |a, b| a == b),
                Code::AddJneR => add_jump!(r[aux!()], |a, b| a != b),
                Code::AddJgtR => add_jump!(r[aux!()], |a, b| a > b),
                Code::AddJgeR => add_jump!(r[aux!()], |a, b| a >= b),
                Code::AddJltR => add_jump!(r[aux!()], |a, b| a < b),
                Code::AddJleR => add_jump!(r[aux!()], |a, b| a <= b),
                Code::AddJsgtR => add_jump!(r[aux!()], |a, b| (a as i64) > b as i64),
                Code::AddJsgeR => add_jump!(r[aux!()], |a, b| (a as i64) >= b as i64),
                Code::AddJsltR => add_jump!(r[aux!()], |a, b| (a as i64) < b as i64),
                Code::AddJsleR => add_jump!(r[aux!()], |a, b| (a as i64) <= b as i64),
                Code::Add64I => r[d!()] = r[d!()].wrapping_add(imm!()),
                Code::Sub64I => r[d!()] = r[d!()].wrapping_sub(imm!()),
                Code::Mul64I => r[d!()] = r[d!()].wrapping_mul(imm!()),
                Code::Div64I => r[d!()] = r[d!()].checked_div(imm!()).unwrap_or(0),
                Code::SDiv64I => {
                    r[d!()] = match imm!() as i64 {
                        0 => 0,
                        v => (r[d!()] as i64).wrapping_div(v) as u64,
                    }
                }
                Code::Mod64I => {
                    if imm!() != 0 {
                        r[d!()] %= imm!()
                    }
                }
                Code::SMod64I => {
                    if imm!() != 0 {
                        r[d!()] = (r[d!()] as i64).wrapping_rem(imm!() as i64) as u64
                    }
                }
                Code::Or64I => r[d!()] |= imm!(),
                Code::And64I => r[d!()] &= imm!(),
                Code::Lsh64I => r[d!()] <<= imm!() & 63,
                Code::Rsh64I => r[d!()] >>= imm!() & 63,
                Code::Arsh64I => r[d!()] = ((r[d!()] as i64) >> (imm!() & 63)) as u64,
                Code::Xor64I => r[d!()] ^= imm!(),
                Code::Mov64I => r[d!()] = imm!(),
                Code::Add64R => r[d!()] = r[d!()].wrapping_add(r[s!()]),
                Code::Sub64R => r[d!()] = r[d!()].wrapping_sub(r[s!()]),
                Code::Mul64R => r[d!()] = r[d!()].wrapping_mul(r[s!()]),
                Code::Div64R => r[d!()] = r[d!()].checked_div(r[s!()]).unwrap_or(0),
                Code::SDiv64R => {
                    r[d!()] = match r[s!()] as i64 {
                        0 => 0,
                        v => (r[d!()] as i64).wrapping_div(v) as u64,
                    }
                }
                Code::Mod64R => {
                    if r[s!()] != 0 {
                        r[d!()] %= r[s!()]
                    }
                }
                Code::SMod64R => {
                    if r[s!()] != 0 {
                        r[d!()] = (r[d!()] as i64).wrapping_rem(r[s!()] as i64) as u64
                    }
                }
                Code::Or64R => r[d!()] |= r[s!()],
                Code::And64R => r[d!()] &= r[s!()],
                Code::Lsh64R => r[d!()] <<= r[s!()] & 63,
                Code::Rsh64R => r[d!()] >>= r[s!()] & 63,
                Code::Arsh64R => r[d!()] = ((r[d!()] as i64) >> (r[s!()] & 63)) as u64,
                Code::Xor64R => r[d!()] ^= r[s!()],
                Code::Mov64R => r[d!()] = r[s!()],

                Code::Add32I => r[d!()] = (r[d!()] as u32).wrapping_add(uimm!()) as u64,
                Code::Sub32I => r[d!()] = (r[d!()] as u32).wrapping_sub(uimm!()) as u64,
                Code::Mul32I => r[d!()] = (r[d!()] as u32).wrapping_mul(uimm!()) as u64,
                Code::Div32I => r[d!()] = (r[d!()] as u32).checked_div(uimm!()).unwrap_or(0) as u64,
                Code::SDiv32I => {
                    r[d!()] = match uimm!() as i32 {
                        0 => 0,
                        v => (r[d!()] as i32).wrapping_div(v) as u32 as u64,
                    }
                }
                Code::Mod32I => {
                    r[d!()] = match uimm!() {
                        0 => r[d!()] as u32 as u64,
                        v => ((r[d!()] as u32) % v) as u64,
                    }
                }
                Code::SMod32I => {
                    r[d!()] = match uimm!() as i32 {
                        0 => r[d!()] as u32 as u64,
                        v => (r[d!()] as i32).wrapping_rem(v) as u32 as u64,
                    }
                }
                Code::Or32I => r[d!()] = (r[d!()] as u32 | uimm!()) as u64,
                Code::And32I => r[d!()] = (r[d!()] as u32 & uimm!()) as u64,
                Code::Lsh32I => r[d!()] = ((r[d!()] as u32) << (uimm!() & 31)) as u64,
                Code::Rsh32I => r[d!()] = ((r[d!()] as u32) >> (uimm!() & 31)) as u64,
                Code::Arsh32I => r[d!()] = ((r[d!()] as i32) >> (uimm!() & 31)) as u32 as u64,
                Code::Xor32I => r[d!()] = (r[d!()] as u32 ^ uimm!()) as u64,
                Code::Mov32I => r[d!()] = uimm!() as u64,
                Code::Add32R => r[d!()] = (r[d!()] as u32).wrapping_add(r[s!()] as u32) as u64,
                Code::Sub32R => r[d!()] = (r[d!()] as u32).wrapping_sub(r[s!()] as u32) as u64,
                Code::Mul32R => r[d!()] = (r[d!()] as u32).wrapping_mul(r[s!()] as u32) as u64,
                Code::Div32R => {
                    r[d!()] = (r[d!()] as u32).checked_div(r[s!()] as u32).unwrap_or(0) as u64
                }
                Code::SDiv32R => {
                    r[d!()] = match r[s!()] as i32 {
                        0 => 0,
                        v => (r[d!()] as i32).wrapping_div(v) as u32 as u64,
                    }
                }
                Code::Mod32R => {
                    r[d!()] = match r[s!()] as u32 {
                        0 => r[d!()] as u32 as u64,
                        v => ((r[d!()] as u32) % v) as u64,
                    }
                }
                Code::SMod32R => {
                    r[d!()] = match r[s!()] as i32 {
                        0 => r[d!()] as u32 as u64,
                        v => (r[d!()] as i32).wrapping_rem(v) as u32 as u64,
                    }
                }
                Code::Or32R => r[d!()] = (r[d!()] as u32 | r[s!()] as u32) as u64,
                Code::And32R => r[d!()] = (r[d!()] as u32 & r[s!()] as u32) as u64,
                Code::Lsh32R => r[d!()] = ((r[d!()] as u32) << (r[s!()] & 31)) as u64,
                Code::Rsh32R => r[d!()] = ((r[d!()] as u32) >> (r[s!()] & 31)) as u64,
                Code::Arsh32R => r[d!()] = ((r[d!()] as i32) >> (r[s!()] & 31)) as u32 as u64,
                Code::Xor32R => r[d!()] = (r[d!()] as u32 ^ r[s!()] as u32) as u64,
                Code::Mov32R => r[d!()] = r[s!()] as u32 as u64,

                Code::Neg64 => r[d!()] = (r[d!()] as i64).wrapping_neg() as u64,
                Code::Neg32 => r[d!()] = (r[d!()] as i32).wrapping_neg() as u32 as u64,
                Code::MovSx32B => r[d!()] = r[s!()] as i8 as i32 as u32 as u64,
                Code::MovSx32H => r[d!()] = r[s!()] as i16 as i32 as u32 as u64,
                Code::MovSx64B => r[d!()] = r[s!()] as i8 as i64 as u64,
                Code::MovSx64H => r[d!()] = r[s!()] as i16 as i64 as u64,
                Code::MovSx64W => r[d!()] = r[s!()] as i32 as i64 as u64,
                Code::Trunc16 => r[d!()] = r[d!()] as u16 as u64,
                Code::Trunc32 => r[d!()] = r[d!()] as u32 as u64,
                Code::Nop => {}
                Code::Bswap16 => r[d!()] = bswap16(r[d!()]),
                Code::Bswap32 => r[d!()] = (r[d!()] as u32).swap_bytes() as u64,
                Code::Bswap64 => r[d!()] = r[d!()].swap_bytes(),

                Code::LdDw => r[d!()] = (op.a as u32 as u64) | ((op.b as u64) << 32),
                Code::LdAbsB => r[0] = ld_pkt!(1, op.a as i64),
                Code::LdAbsH => r[0] = ld_pkt!(2, op.a as i64),
                Code::LdAbsW => r[0] = ld_pkt!(4, op.a as i64),
                Code::LdIndB => r[0] = ld_pkt!(1, (r[s!()] as i32).wrapping_add(op.a) as i64),
                Code::LdIndH => r[0] = ld_pkt!(2, (r[s!()] as i32).wrapping_add(op.a) as i64),
                Code::LdIndW => r[0] = ld_pkt!(4, (r[s!()] as i32).wrapping_add(op.a) as i64),

                Code::LdxB => r[d!()] = load!(u8, r[s!()].wrapping_add(off!())),
                Code::LdxH => r[d!()] = load!(u16, r[s!()].wrapping_add(off!())),
                Code::LdxW => r[d!()] = load!(u32, r[s!()].wrapping_add(off!())),
                Code::LdxDW => r[d!()] = load!(u64, r[s!()].wrapping_add(off!())),
                Code::LdxSxB => {
                    r[d!()] = load!(u8, r[s!()].wrapping_add(off!())) as i8 as i64 as u64
                }
                Code::LdxSxH => {
                    r[d!()] = load!(u16, r[s!()].wrapping_add(off!())) as i16 as i64 as u64
                }
                Code::LdxSxW => {
                    r[d!()] = load!(u32, r[s!()].wrapping_add(off!())) as i32 as i64 as u64
                }
                // SAFETY (stack ops): lowering made these only for programs
                // that never write r10, so r10 is the top of the current
                // frame, and only for offsets whose whole access lies in
                // `[r10 - STACK_SIZE, r10)`: the live frame's memory.
                Code::LdxStkB => r[d!()] = unsafe { stk!(u8).read() } as u64,
                Code::LdxStkH => r[d!()] = unsafe { stk!(u16).read_unaligned() } as u64,
                Code::LdxStkW => r[d!()] = unsafe { stk!(u32).read_unaligned() } as u64,
                Code::LdxStkDW => r[d!()] = unsafe { stk!(u64).read_unaligned() },
                Code::StStkB => unsafe { stk!(u8).write(imm!() as u8) },
                Code::StStkH => unsafe { stk!(u16).write_unaligned(imm!() as u16) },
                Code::StStkW => unsafe { stk!(u32).write_unaligned(imm!() as u32) },
                Code::StStkDW => unsafe { stk!(u64).write_unaligned(imm!()) },
                Code::StxStkB => unsafe { stk!(u8).write(r[s!()] as u8) },
                Code::StxStkH => unsafe { stk!(u16).write_unaligned(r[s!()] as u16) },
                Code::StxStkW => unsafe { stk!(u32).write_unaligned(r[s!()] as u32) },
                Code::StxStkDW => unsafe { stk!(u64).write_unaligned(r[s!()]) },
                Code::StB => store!(u8, r[d!()].wrapping_add(off!()), imm!()),
                Code::StH => store!(u16, r[d!()].wrapping_add(off!()), imm!()),
                Code::StW => store!(u32, r[d!()].wrapping_add(off!()), imm!()),
                Code::StDW => store!(u64, r[d!()].wrapping_add(off!()), imm!()),
                Code::StxB => store!(u8, r[d!()].wrapping_add(off!()), r[s!()]),
                Code::StxH => store!(u16, r[d!()].wrapping_add(off!()), r[s!()]),
                Code::StxW => store!(u32, r[d!()].wrapping_add(off!()), r[s!()]),
                Code::StxDW => store!(u64, r[d!()].wrapping_add(off!()), r[s!()]),

                Code::Atomic32 | Code::Atomic64 => {
                    let wide = op.code == Code::Atomic64;
                    let n: u64 = if wide { 8 } else { 4 };
                    let addr = r[d!()].wrapping_add(off!());
                    let Some(aop) = AtomicOp::from_imm(op.a) else {
                        return Err(VmError::Unsupported {
                            insn: slot!(),
                            what: "atomic operation",
                        });
                    };
                    if CHECKED {
                        if addr.wrapping_sub(ctx_base) < ctx_len || !mem.check(addr, n, true) {
                            fault!(addr, n, true);
                        }
                        if addr % n != 0 {
                            return Err(VmError::MisalignedAtomic {
                                insn: slot!(),
                                addr,
                                size: n as u32,
                            });
                        }
                    }
                    let val = r[s!()];
                    let expect = r[0];
                    // SAFETY: the range is checked (checked mode) or promised
                    // (unchecked); alignment picks the atomic or the plain path.
                    let old = unsafe {
                        match (wide, addr % n == 0) {
                            (true, true) => atomic_rmw::<8>(addr, aop, val, expect),
                            (false, true) => atomic_rmw::<4>(addr, aop, val, expect),
                            (true, false) => plain_rmw::<8>(addr, aop, val, expect),
                            (false, false) => plain_rmw::<4>(addr, aop, val, expect),
                        }
                    };
                    match aop {
                        AtomicOp::Cmpxchg => r[0] = old,
                        AtomicOp::Xchg
                        | AtomicOp::Add { fetch: true }
                        | AtomicOp::Or { fetch: true }
                        | AtomicOp::And { fetch: true }
                        | AtomicOp::Xor { fetch: true } => r[s!()] = old,
                        _ => {}
                    }
                }
                Code::LdAcqB | Code::LdAcqH | Code::LdAcqW | Code::LdAcqDW => {
                    std::sync::atomic::fence(Ordering::Acquire);
                    let a = r[s!()].wrapping_add(off!());
                    r[d!()] = match op.code {
                        Code::LdAcqB => load!(u8, a),
                        Code::LdAcqH => load!(u16, a),
                        Code::LdAcqW => load!(u32, a),
                        _ => load!(u64, a),
                    };
                    std::sync::atomic::fence(Ordering::Acquire);
                }
                Code::StRelB | Code::StRelH | Code::StRelW | Code::StRelDW => {
                    std::sync::atomic::fence(Ordering::Release);
                    let a = r[d!()].wrapping_add(off!());
                    match op.code {
                        Code::StRelB => store!(u8, a, r[s!()]),
                        Code::StRelH => store!(u16, a, r[s!()]),
                        Code::StRelW => store!(u32, a, r[s!()]),
                        _ => store!(u64, a, r[s!()]),
                    }
                }

                Code::Ja => {
                    pc = op.b as usize;
                    continue;
                }
                Code::Jeq64I => jump_if!(r[d!()] == imm!()),
                Code::Jgt64I => jump_if!(r[d!()] > imm!()),
                Code::Jge64I => jump_if!(r[d!()] >= imm!()),
                Code::Jset64I => jump_if!(r[d!()] & imm!() != 0),
                Code::Jne64I => jump_if!(r[d!()] != imm!()),
                Code::Jsgt64I => jump_if!((r[d!()] as i64) > imm!() as i64),
                Code::Jsge64I => jump_if!((r[d!()] as i64) >= imm!() as i64),
                Code::Jlt64I => jump_if!(r[d!()] < imm!()),
                Code::Jle64I => jump_if!(r[d!()] <= imm!()),
                Code::Jslt64I => jump_if!((r[d!()] as i64) < imm!() as i64),
                Code::Jsle64I => jump_if!((r[d!()] as i64) <= imm!() as i64),
                Code::Jeq64R => jump_if!(r[d!()] == r[s!()]),
                Code::Jgt64R => jump_if!(r[d!()] > r[s!()]),
                Code::Jge64R => jump_if!(r[d!()] >= r[s!()]),
                Code::Jset64R => jump_if!(r[d!()] & r[s!()] != 0),
                Code::Jne64R => jump_if!(r[d!()] != r[s!()]),
                Code::Jsgt64R => jump_if!((r[d!()] as i64) > r[s!()] as i64),
                Code::Jsge64R => jump_if!((r[d!()] as i64) >= r[s!()] as i64),
                Code::Jlt64R => jump_if!(r[d!()] < r[s!()]),
                Code::Jle64R => jump_if!(r[d!()] <= r[s!()]),
                Code::Jslt64R => jump_if!((r[d!()] as i64) < r[s!()] as i64),
                Code::Jsle64R => jump_if!((r[d!()] as i64) <= r[s!()] as i64),
                Code::Jeq32I => jump_if!(r[d!()] as u32 == uimm!()),
                Code::Jgt32I => jump_if!(r[d!()] as u32 > uimm!()),
                Code::Jge32I => jump_if!(r[d!()] as u32 >= uimm!()),
                Code::Jset32I => jump_if!(r[d!()] as u32 & uimm!() != 0),
                Code::Jne32I => jump_if!(r[d!()] as u32 != uimm!()),
                Code::Jsgt32I => jump_if!((r[d!()] as i32) > uimm!() as i32),
                Code::Jsge32I => jump_if!((r[d!()] as i32) >= uimm!() as i32),
                Code::Jlt32I => jump_if!((r[d!()] as u32) < uimm!()),
                Code::Jle32I => jump_if!(r[d!()] as u32 <= uimm!()),
                Code::Jslt32I => jump_if!((r[d!()] as i32) < uimm!() as i32),
                Code::Jsle32I => jump_if!((r[d!()] as i32) <= uimm!() as i32),
                Code::Jeq32R => jump_if!(r[d!()] as u32 == r[s!()] as u32),
                Code::Jgt32R => jump_if!(r[d!()] as u32 > r[s!()] as u32),
                Code::Jge32R => jump_if!(r[d!()] as u32 >= r[s!()] as u32),
                Code::Jset32R => jump_if!(r[d!()] as u32 & r[s!()] as u32 != 0),
                Code::Jne32R => jump_if!(r[d!()] as u32 != r[s!()] as u32),
                Code::Jsgt32R => jump_if!((r[d!()] as i32) > r[s!()] as i32),
                Code::Jsge32R => jump_if!((r[d!()] as i32) >= r[s!()] as i32),
                Code::Jlt32R => jump_if!((r[d!()] as u32) < r[s!()] as u32),
                Code::Jle32R => jump_if!(r[d!()] as u32 <= r[s!()] as u32),
                Code::Jslt32R => jump_if!((r[d!()] as i32) < r[s!()] as i32),
                Code::Jsle32R => jump_if!((r[d!()] as i32) <= r[s!()] as i32),
                Code::MayGoto => {
                    if may_goto == 0 {
                        pc = op.b as usize;
                        continue;
                    }
                    may_goto -= 1;
                }
                Code::CallHelper => {
                    let Some((id, f)) = cur.helpers.get(op.b as usize) else {
                        return Err(VmError::UnknownHelper {
                            insn: slot!(),
                            id: op.a as i64,
                        });
                    };
                    let mut cx = HelperCtx {
                        checked: CHECKED,
                        mem: &mut mem,
                        maps: &cur.maps,
                        unwind: None,
                    };
                    let ret = f(&mut cx, [r[1], r[2], r[3], r[4], r[5]])
                        .map_err(|e| helper_err(slot!(), *id, e))?;
                    if let Some(v) = cx.unwind {
                        return Ok(v);
                    }
                    r[0] = ret;
                }
                Code::CallUnknown => {
                    return Err(VmError::UnknownHelper {
                        insn: slot!(),
                        id: op.a as i64,
                    })
                }
                Code::CallLocal => {
                    call_local!(op.b as usize);
                    continue;
                }
                Code::CallX => {
                    let v = r[d!()];
                    if v & FUNC_TAG_MASK == FUNC_TAG {
                        let t = (v & 0xffff_ffff) as usize;
                        if t + 1 >= cur.ops.len() {
                            return Err(VmError::BadCallTarget {
                                insn: slot!(),
                                value: v,
                            });
                        }
                        call_local!(t);
                        continue;
                    }
                    let id = i32::try_from(v).map_err(|_| VmError::BadCallTarget {
                        insn: slot!(),
                        value: v,
                    })?;
                    let Some(f) = cur.registry.get(id) else {
                        return Err(VmError::UnknownHelper {
                            insn: slot!(),
                            id: v as i64,
                        });
                    };
                    let mut cx = HelperCtx {
                        checked: CHECKED,
                        mem: &mut mem,
                        maps: &cur.maps,
                        unwind: None,
                    };
                    let ret = f(&mut cx, [r[1], r[2], r[3], r[4], r[5]])
                        .map_err(|e| helper_err(slot!(), id, e))?;
                    if let Some(v) = cx.unwind {
                        return Ok(v);
                    }
                    r[0] = ret;
                }
                Code::TailCall => {
                    // r1 = ctx, r2 = prog array, r3 = index. On failure the
                    // program continues with the next instruction.
                    let target = if tail_calls >= MAX_TAIL_CALL_CNT {
                        None
                    } else {
                        cur.prog_arrays
                            .iter()
                            .find(|pa| pa.handle() == r[2])
                            .and_then(|pa| pa.interp(r[3] as u32))
                    };
                    if let Some(next) = target {
                        tail_calls += 1;
                        let p: *const Interpreter = Arc::as_ptr(&next);
                        mem.keep.push(next);
                        // SAFETY: `mem.keep` holds an `Arc` to the program
                        // until this function returns, so the pointee lives
                        // at least as long as `cur` is used.
                        cur = unsafe { &*p };
                        ops = cur.ops.as_ptr();
                        for &(p, n) in cur.direct.iter() {
                            mem.add(p, n, true);
                        }
                        // The target replaces the program of this frame (and
                        // its stack): it returns to this frame's caller, and
                        // its own calls count from here.
                        base = depth;
                        // (r10 is the frame's top again, whatever the caller
                        // did to it: the target's stack ops rely on it.)
                        r[10] = frame_top!(base);
                        may_goto = LOOP_MAX;
                        pc = 0;
                        continue;
                    }
                }
                Code::Loop => {
                    // bpf_loop(nr_loops, callback_fn, callback_ctx, flags)
                    let (n, cb, cctx, flags) = (r[1], r[2], r[3], r[4]);
                    if flags != 0 {
                        r[0] = (-errno::EINVAL) as u64;
                    } else if n > LOOP_MAX {
                        r[0] = (-errno::E2BIG) as u64;
                    } else if n == 0 {
                        r[0] = 0;
                    } else {
                        let t = (cb & 0xffff_ffff) as usize;
                        if cb & FUNC_TAG_MASK != FUNC_TAG || t + 1 >= cur.ops.len() {
                            return Err(VmError::BadCallTarget {
                                insn: slot!(),
                                value: cb,
                            });
                        }
                        call_local!(t);
                        if let Some(f) = caller!() {
                            f.lp = Some(LoopState {
                                i: 0,
                                n,
                                cb: t as u32,
                                ctx: cctx,
                            });
                        }
                        r[1] = 0;
                        r[2] = cctx;
                        continue;
                    }
                }
                Code::Exit => {
                    if depth == 0 {
                        return Ok(r[0]);
                    }
                    let Some(f) = caller!() else {
                        return Ok(r[0]);
                    };
                    if let Some(lp) = f.lp.as_mut() {
                        if r[0] == 0 && lp.i + 1 < lp.n {
                            lp.i += 1;
                            r[1] = lp.i;
                            r[2] = lp.ctx;
                            may_goto = LOOP_MAX;
                            pc = lp.cb as usize;
                            continue;
                        }
                        r[0] = lp.i + 1;
                    }
                    let f = *f;
                    depth -= 1;
                    [r[6], r[7], r[8], r[9]] = f.saved;
                    r[10] = f.r10;
                    if depth < MAX_CALL_FRAMES {
                        mem.stack_lo = r[10] - frame_size;
                        mem.deep_lo = u64::MAX;
                        mem.deep_hi = 0;
                    } else {
                        mem.deep_lo = r[10] - frame_size;
                    }
                    base = f.base as usize;
                    may_goto = f.may_goto;
                    // SAFETY: frame programs are `self` or kept alive in `mem.keep`.
                    cur = unsafe { &*f.prog };
                    ops = cur.ops.as_ptr();
                    pc = f.ret_pc as usize;
                    continue;
                }
                Code::Trap => {
                    return Err(match op.a {
                        TRAP_END => VmError::FellOffEnd { insn: slot!() },
                        TRAP_ADDR_SPACE => VmError::Unsupported {
                            insn: slot!(),
                            what: "addr_space_cast (arena)",
                        },
                        _ => VmError::Unsupported {
                            insn: slot!(),
                            what: "kfunc call",
                        },
                    });
                }
            }
            pc += 1;
        }
    }
}
