//! BPF trampolines: native SysV C-ABI functions that run attached eBPF
//! programs around (or instead of) a native function.
//!
//! A native caller cannot call an eBPF program directly for an arbitrary
//! signature: a program takes one context pointer in `r1`. A
//! [`Trampoline`] for a signature of `nargs` integer arguments (0 to
//! [`MAX_ARGS`]) is itself a native function of that signature. Each call:
//!
//! 1. stores its arguments into a `u64` context array on its own frame
//!    (`ctx[0..nargs]`) and zeroes the return slot `ctx[nargs]`;
//! 2. runs each attached *entry* program in attach order (fentry-like:
//!    `r1` = pointer to the array);
//! 3. calls the original native function, if one is attached, with the
//!    original arguments (reloaded from the array), and stores its return
//!    value into `ctx[nargs]`;
//! 4. runs each attached *exit* program in attach order (fexit-like: the
//!    arguments at `ctx[0..nargs]`, the return value at `ctx[nargs]`);
//! 5. returns `ctx[nargs]`.
//!
//! ```
//! # #[cfg(target_arch = "x86_64")] {
//! use std::sync::Arc;
//! use bpf_jit::{HelperTable, JitOptions};
//! use bpf_jit_x86::trampoline::{Trampoline, TrampolineMode};
//!
//! extern "C" fn add(a: u64, b: u64) -> u64 {
//!     a + b
//! }
//! let helpers = HelperTable::new();
//! // An exit program computing `ctx[2] * 10` (the return value times 10).
//! let prog = bpf_isa::assemble("r0 = *(u64 *)(r1 + 16)\nr0 *= 10\nexit")?;
//! let prog = Arc::new(bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers))?);
//!
//! let f = add as extern "C" fn(u64, u64) -> u64 as usize;
//! let mut t = Trampoline::new(2, Some(f), TrampolineMode::Replace)?;
//! t.attach_exit(prog)?;
//! // SAFETY: `add` takes two integers; the program reads ctx[0..3].
//! assert_eq!(unsafe { t.call(&[3, 4])? }, 70);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modes
//!
//! * [`TrampolineMode::Observe`] (fentry/fexit): programs' `r0` is ignored;
//!   the trampoline returns the original's result (0 without an original).
//! * [`TrampolineMode::Replace`] (struct_ops-like): after every program
//!   the trampoline stores its `r0` into `ctx[nargs]`, so the value
//!   returned is the last one written there: the `r0` of the last program
//!   that ran after the original (the last exit program), else the
//!   original's result, else the `r0` of the last entry program (without
//!   an original), else 0. With no original and only entry programs
//!   attached, the trampoline *is* a native function pointer whose
//!   behaviour is the last program's; exit programs see the running value
//!   at `ctx[nargs]` and may rewrite it.
//!
//! # Frame
//!
//! ```text
//! push rbp; mov rbp, rsp          rsp is 16-byte aligned from here on
//! sub rsp, S                      S = (nargs + 1) * 8 rounded up to 16
//! mov [rbp - S + 8*i], argreg_i   ctx[i], i < nargs (rdi rsi rdx rcx r8 r9)
//! mov qword [rbp - S + 8*nargs], 0
//! ...calls: mov rdi, rsp; movabs rax, target; call rax...
//! mov rax, [rbp - S + 8*nargs]
//! leave; ret
//! ```
//!
//! The array starts at `rsp`, so `r1` is `mov rdi, rsp`. Every `call` is
//! made with `rsp` 16-byte aligned, as SysV requires. Between calls the
//! trampoline keeps nothing in registers (the arguments are reloaded from
//! the array for the original), so it uses only `rbp` among the
//! callee-saved registers, and restores it with `leave`; the programs and
//! the original are SysV functions that preserve the others themselves.
//!
//! # Attaching and detaching
//!
//! An image is immutable executable memory ([`ExecMemory`], never
//! writable and executable at once). [`Trampoline::attach_entry`],
//! [`Trampoline::attach_exit`] and [`Trampoline::detach`] generate a new
//! image; the previous one is not changed. Callers that stored the
//! function pointer must swap it for the new [`Trampoline::as_fn_ptr`]
//! themselves, and keep the old image alive (via the
//! [`Arc<TrampolineImage>`] from [`Trampoline::image`]) until no thread can
//! still be running it. Each image holds an `Arc` of every program it
//! calls, so a detached program stays mapped while an old image may still
//! call it.

use std::sync::Arc;

use bpf_jit::trampoline::Attachments;
pub use bpf_jit::trampoline::{frame_size, AttachId, Side, TrampolineMode};
use bpf_jit::{CodeBuffer, ExecMemory, JitError, JitProgram, MacroAssembler};

use crate::enc::{self, Gpr, Mem, Sz};
use crate::X86Masm;

/// Most integer arguments a trampoline takes (the SysV argument registers).
pub const MAX_ARGS: usize = 6;

/// The SysV integer argument registers, in order.
pub const ARG_REGS: [Gpr; MAX_ARGS] = [Gpr::RDI, Gpr::RSI, Gpr::RDX, Gpr::RCX, Gpr::R8, Gpr::R9];

/// Errors of building or calling a trampoline.
#[derive(Debug, thiserror::Error)]
pub enum TrampolineError {
    /// More than [`MAX_ARGS`] arguments were asked for.
    #[error("{0} arguments: a trampoline takes at most {MAX_ARGS}")]
    TooManyArgs(usize),
    /// A call through the typed helper passed the wrong number of arguments.
    #[error("trampoline takes {expected} arguments, {got} given")]
    ArgCount {
        /// The trampoline's argument count.
        expected: usize,
        /// The number passed.
        got: usize,
    },
    /// [`Trampoline::detach`] of an id that is not attached.
    #[error("attachment {0} is not attached")]
    NotAttached(u64),
    /// The program was compiled for a private stack
    /// ([`JitProgram::private_stack`]): it needs its region's top as a
    /// sixth argument, and a trampoline calls programs with `r1` only.
    #[error("a program compiled for a private stack cannot be attached to a trampoline")]
    PrivateStack,
    /// Mapping the image executable failed, or it outgrew the frame offsets.
    #[error(transparent)]
    Jit(#[from] JitError),
}

/// One generated trampoline: its executable memory and the programs it
/// calls (kept alive as long as the image is).
#[derive(Debug)]
pub struct TrampolineImage {
    mem: ExecMemory,
    nargs: usize,
    _progs: Vec<Arc<JitProgram>>,
}

impl TrampolineImage {
    /// The entry of the native function (SysV C ABI, `nargs` `u64`
    /// arguments, `u64` result).
    pub fn as_fn_ptr(&self) -> *const u8 {
        self.mem.as_ptr()
    }

    /// The executable memory.
    pub fn memory(&self) -> &ExecMemory {
        &self.mem
    }

    /// The number of arguments the function takes.
    pub fn nargs(&self) -> usize {
        self.nargs
    }

    /// Calls the trampoline with `args` (exactly [`TrampolineImage::nargs`] of them).
    ///
    /// # Safety
    ///
    /// Runs native code: every attached program must be verified safe for
    /// a context of `nargs + 1` readable `u64` (and for whatever else it
    /// touches), and the original, if any, must be a function of
    /// `nargs` integer arguments returning an integer that is sound to
    /// call with `args`.
    pub unsafe fn call(&self, args: &[u64]) -> Result<u64, TrampolineError> {
        type F0 = extern "C" fn() -> u64;
        type F1 = extern "C" fn(u64) -> u64;
        type F2 = extern "C" fn(u64, u64) -> u64;
        type F3 = extern "C" fn(u64, u64, u64) -> u64;
        type F4 = extern "C" fn(u64, u64, u64, u64) -> u64;
        type F5 = extern "C" fn(u64, u64, u64, u64, u64) -> u64;
        type F6 = extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64;
        if args.len() != self.nargs {
            return Err(TrampolineError::ArgCount {
                expected: self.nargs,
                got: args.len(),
            });
        }
        let p = self.as_fn_ptr();
        // SAFETY: the image is a SysV function taking `nargs` u64 and
        // returning u64 (see the module docs); `args.len() == nargs`
        // selects the matching type; the caller vouches for what it runs.
        let r = unsafe {
            match *args {
                [] => core::mem::transmute::<*const u8, F0>(p)(),
                [a] => core::mem::transmute::<*const u8, F1>(p)(a),
                [a, b] => core::mem::transmute::<*const u8, F2>(p)(a, b),
                [a, b, c] => core::mem::transmute::<*const u8, F3>(p)(a, b, c),
                [a, b, c, d] => core::mem::transmute::<*const u8, F4>(p)(a, b, c, d),
                [a, b, c, d, e] => core::mem::transmute::<*const u8, F5>(p)(a, b, c, d, e),
                [a, b, c, d, e, f] => core::mem::transmute::<*const u8, F6>(p)(a, b, c, d, e, f),
                _ => {
                    return Err(TrampolineError::ArgCount {
                        expected: self.nargs,
                        got: args.len(),
                    })
                }
            }
        };
        Ok(r)
    }
}

/// A trampoline for one native signature, with its attached programs and
/// its current image (see the [module docs](self)).
#[derive(Debug)]
pub struct Trampoline {
    nargs: usize,
    original: Option<usize>,
    mode: TrampolineMode,
    attached: Attachments<Arc<JitProgram>>,
    image: Arc<TrampolineImage>,
}

impl Trampoline {
    /// A trampoline taking `nargs` (0 to [`MAX_ARGS`]) integer arguments,
    /// calling `original` (the address of an `extern "C"` function of
    /// that many integer arguments returning an integer) if given, with
    /// no programs attached yet.
    ///
    /// Nothing is called here; the soundness of `original` is part of the
    /// contract of calling the image.
    pub fn new(
        nargs: usize,
        original: Option<usize>,
        mode: TrampolineMode,
    ) -> Result<Trampoline, TrampolineError> {
        if nargs > MAX_ARGS {
            return Err(TrampolineError::TooManyArgs(nargs));
        }
        let image = Arc::new(build(nargs, original, mode, &Attachments::new())?);
        Ok(Trampoline {
            nargs,
            original,
            mode,
            attached: Attachments::new(),
            image,
        })
    }

    /// The number of arguments.
    pub fn nargs(&self) -> usize {
        self.nargs
    }

    /// The mode.
    pub fn mode(&self) -> TrampolineMode {
        self.mode
    }

    /// The current image; clone the `Arc` to keep it alive while calling it.
    pub fn image(&self) -> Arc<TrampolineImage> {
        Arc::clone(&self.image)
    }

    /// The current image's entry (changes on every attach and detach).
    pub fn as_fn_ptr(&self) -> *const u8 {
        self.image.as_fn_ptr()
    }

    /// The ids attached on `side`, in the order they run.
    pub fn attached(&self, side: Side) -> Vec<AttachId> {
        self.attached.ids(side)
    }

    /// Calls the current image (see [`TrampolineImage::call`]).
    ///
    /// # Safety
    ///
    /// As [`TrampolineImage::call`].
    pub unsafe fn call(&self, args: &[u64]) -> Result<u64, TrampolineError> {
        // SAFETY: forwarded to the caller.
        unsafe { self.image.call(args) }
    }

    /// Attaches `prog` (its main entry) to run before the original, after
    /// the entry programs already attached; regenerates the image.
    pub fn attach_entry(&mut self, prog: Arc<JitProgram>) -> Result<AttachId, TrampolineError> {
        self.attach(Side::Entry, prog)
    }

    /// Attaches `prog` (its main entry) to run after the original, after
    /// the exit programs already attached; regenerates the image.
    pub fn attach_exit(&mut self, prog: Arc<JitProgram>) -> Result<AttachId, TrampolineError> {
        self.attach(Side::Exit, prog)
    }

    /// Attaches `prog` on `side`; regenerates the image.
    pub fn attach(
        &mut self,
        side: Side,
        prog: Arc<JitProgram>,
    ) -> Result<AttachId, TrampolineError> {
        if prog.private_stack() {
            return Err(TrampolineError::PrivateStack);
        }
        let mut attached = self.attached.clone();
        let id = attached.attach(side, prog);
        self.image = Arc::new(build(self.nargs, self.original, self.mode, &attached)?);
        self.attached = attached;
        Ok(id)
    }

    /// Detaches `id`; regenerates the image. The old image (and, through
    /// it, the detached program) stays alive while anyone holds it.
    pub fn detach(&mut self, id: AttachId) -> Result<(), TrampolineError> {
        let mut attached = self.attached.clone();
        attached
            .detach(id)
            .ok_or(TrampolineError::NotAttached(id.get()))?;
        self.image = Arc::new(build(self.nargs, self.original, self.mode, &attached)?);
        self.attached = attached;
        Ok(())
    }
}

fn build(
    nargs: usize,
    original: Option<usize>,
    mode: TrampolineMode,
    attached: &Attachments<Arc<JitProgram>>,
) -> Result<TrampolineImage, TrampolineError> {
    let addrs = |side| {
        attached
            .side(side)
            .map(|p| p.memory().as_ptr() as u64)
            .collect::<Vec<u64>>()
    };
    let entry = addrs(Side::Entry);
    let exit = addrs(Side::Exit);
    let code = emit_code(nargs, original.map(|a| a as u64), mode, &entry, &exit)?;
    let mem = ExecMemory::new(&code, <X86Masm as MacroAssembler>::PAD_BYTE)?;
    Ok(TrampolineImage {
        mem,
        nargs,
        _progs: attached.iter().map(Arc::clone).collect(),
    })
}

/// `[rbp - frame + 8 * slot]`: slot `slot` of the context array.
fn slot(nargs: usize, slot: usize) -> Mem {
    // Both are at most 16 * 7: the casts cannot truncate.
    Mem {
        base: Gpr::RBP,
        disp: (slot * 8) as i32 - frame_size(nargs) as i32,
    }
}

/// `movabs rax, target; call rax`.
fn call_abs(b: &mut CodeBuffer, target: u64) {
    enc::movabs(b, Gpr::RAX, target);
    enc::call_r(b, Gpr::RAX);
}

/// Emits the prologue: frame, arguments into `ctx[0..nargs]`, `ctx[nargs] = 0`.
pub fn emit_prologue(b: &mut CodeBuffer, nargs: usize) -> Result<(), TrampolineError> {
    if nargs > MAX_ARGS {
        return Err(TrampolineError::TooManyArgs(nargs));
    }
    enc::push(b, Gpr::RBP);
    enc::mov_rr(b, Sz::Q, Gpr::RBP, Gpr::RSP);
    enc::sub_rsp_imm32(b, frame_size(nargs) as u32);
    for (i, &r) in ARG_REGS.iter().take(nargs).enumerate() {
        enc::store(b, Sz::Q, slot(nargs, i), r);
    }
    enc::store_imm(b, Sz::Q, slot(nargs, nargs), 0);
    Ok(())
}

/// Emits the epilogue: `rax = ctx[nargs]`, `leave`, `ret`.
pub fn emit_epilogue(b: &mut CodeBuffer, nargs: usize) -> Result<(), TrampolineError> {
    if nargs > MAX_ARGS {
        return Err(TrampolineError::TooManyArgs(nargs));
    }
    enc::load(b, Sz::Q, Gpr::RAX, slot(nargs, nargs));
    enc::leave(b);
    enc::ret(b);
    Ok(())
}

/// Emits a call of the eBPF program at `target` with `r1` = the context array.
fn emit_prog_call(b: &mut CodeBuffer, nargs: usize, target: u64, mode: TrampolineMode) {
    enc::mov_rr(b, Sz::Q, Gpr::RDI, Gpr::RSP);
    call_abs(b, target);
    if mode == TrampolineMode::Replace {
        enc::store(b, Sz::Q, slot(nargs, nargs), Gpr::RAX);
    }
}

/// The machine code of a trampoline (not yet executable): `entry` and
/// `exit` are the native addresses of the programs' entries, `original`
/// that of the native function.
pub fn emit_code(
    nargs: usize,
    original: Option<u64>,
    mode: TrampolineMode,
    entry: &[u64],
    exit: &[u64],
) -> Result<Vec<u8>, TrampolineError> {
    let mut b = CodeBuffer::with_capacity(0, 64 + 24 * (entry.len() + exit.len()));
    emit_prologue(&mut b, nargs)?;
    for &p in entry {
        emit_prog_call(&mut b, nargs, p, mode);
    }
    if let Some(orig) = original {
        for (i, &r) in ARG_REGS.iter().take(nargs).enumerate() {
            enc::load(&mut b, Sz::Q, r, slot(nargs, i));
        }
        call_abs(&mut b, orig);
        enc::store(&mut b, Sz::Q, slot(nargs, nargs), Gpr::RAX);
    }
    for &p in exit {
        emit_prog_call(&mut b, nargs, p, mode);
    }
    emit_epilogue(&mut b, nargs)?;
    Ok(b.take_bytes())
}
