//! BPF trampolines for AArch64: native AAPCS64 functions that run attached
//! eBPF programs around (or instead of) a native function.
//!
//! The same design as `bpf-jit-x86`'s trampolines, for up to
//! [`MAX_ARGS`] = 8 integer arguments (`x0`-`x7`). A trampoline of
//! `nargs` arguments is itself a native function of that signature. Each
//! call:
//!
//! 1. stores its arguments into a `u64` context array on its own frame
//!    (`ctx[0..nargs]`) and zeroes the return slot `ctx[nargs]`;
//! 2. runs each attached *entry* program in attach order (fentry-like:
//!    `r1` = `x0` = pointer to the array);
//! 3. calls the original native function, if one is attached, with the
//!    arguments reloaded from the array into `x0..x{nargs-1}`, and stores
//!    its return value (`x0`) into `ctx[nargs]`;
//! 4. runs each attached *exit* program in attach order (fexit-like: the
//!    arguments at `ctx[0..nargs]`, the return value at `ctx[nargs]`);
//! 5. returns `ctx[nargs]` in `x0`.
//!
//! A program compiled by this backend is an ordinary AAPCS64 function
//! taking `r1` in `x0` and returning `r0` in `x0` (see the crate docs), so
//! a program call is `mov x0, sp` and a call of the program's main entry.
//!
//! # Addresses and images
//!
//! The code is generated for a known address (like
//! [`Arm64Options::image_base`](crate::Arm64Options::image_base) for
//! programs), because AArch64's direct call `bl` reaches only ±128 MiB: a
//! call whose target is within range of its call site is one `bl`; any
//! other is `movz/movk x16, #target` (one instruction per non-zero
//! halfword) + `blr x16` (`x16` is the AAPCS64 intra-procedure-call
//! scratch register that linker veneers use for the same purpose). With no
//! base address every call is absolute and the code is position
//! independent.
//!
//! All addresses (programs, original, image) are `u64` in the address
//! space the code runs in, which on an x86-64 host is the emulator's
//! ([`crate::emu`]). [`Arm64Trampoline`] is the host-side description —
//! signature, mode, original, attached programs with their
//! [`AttachId`]s — and [`Arm64Trampoline::emit_code`] produces the image
//! for a base address. Attaching or detaching changes the description;
//! the caller then emits a new image and installs it (at a new address, or
//! over the old one once no thread can be running it), and keeps every
//! program the old image may still call mapped until then.
//!
//! ```
//! use bpf_jit_arm64::trampoline::{Arm64Trampoline, Side, TrampolineMode};
//!
//! let mut t = Arm64Trampoline::new(2, Some(0x40_0000), TrampolineMode::Replace)?;
//! let id = t.attach_exit(0x400_0000);
//! let code = t.emit_code(Some(0x400_1000))?;
//! // Both calls are in `bl` range of 0x400_1000: no `blr`.
//! let words = code.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
//! assert_eq!(words.filter(|w| w & 0xfc00_0000 == 0x9400_0000).count(), 2);
//! assert_eq!(t.attached(Side::Exit), vec![id]);
//! t.detach(id)?;
//! assert!(t.attached(Side::Exit).is_empty());
//! # Ok::<(), bpf_jit_arm64::trampoline::TrampolineError>(())
//! ```
//!
//! # Modes
//!
//! * [`TrampolineMode::Observe`] (fentry/fexit): programs' `r0` is ignored;
//!   the trampoline returns the original's result (0 without an original).
//! * [`TrampolineMode::Replace`] (struct_ops-like): after every program
//!   the trampoline stores its `r0` into `ctx[nargs]`, so the value
//!   returned is the last one written there: the `r0` of the last exit
//!   program, else the original's result, else the `r0` of the last entry
//!   program, else 0. Exit programs see the running value at `ctx[nargs]`.
//!
//! # Frame
//!
//! ```text
//!        caller's sp -> +----------------------+
//!                       | x30 (return address) |  [x29, #8]
//!        x29 ---------> | x29 (caller's fp)    |  [x29]
//!                       | (8 bytes padding     |
//!                       |  when nargs is even) |
//!                       | ctx[nargs]: return   |  [sp, #8*nargs]
//!                       | ctx[nargs-1]         |
//!                       | ...                  |
//!        sp ----------> | ctx[0]               |  [sp]
//!                       +----------------------+
//!
//! stp x29, x30, [sp, #-16]!     frame record
//! mov x29, sp
//! sub sp, sp, #S                S = frame_size(nargs): (nargs + 1) * 8 rounded up to 16
//! str x<i>, [sp, #8*i]          ctx[i], i < nargs
//! str xzr, [sp, #8*nargs]       ctx[nargs] = 0
//! entry programs:  mov x0, sp; bl prog | movz/movk x16 + blr x16
//!                  (Replace: str x0, [sp, #8*nargs])
//! original:        ldr x<i>, [sp, #8*i]; bl orig | movz/movk x16 + blr x16
//!                  str x0, [sp, #8*nargs]
//! exit programs:   as entry programs
//! ldr x0, [sp, #8*nargs]
//! mov sp, x29
//! ldp x29, x30, [sp], #16
//! ret
//! ```
//!
//! `sp` stays 16-byte aligned throughout (AAPCS64's public interface
//! rule), and the context array starts at `sp`, so `r1` is `mov x0, sp`.
//! Between calls the trampoline keeps nothing in registers (the arguments
//! are reloaded from the array for the original), so the only callee-saved
//! registers it touches are `x29` and `x30`, saved in the frame record;
//! the programs and the original preserve `x19`-`x28` themselves.

use bpf_jit::trampoline::Attachments;
pub use bpf_jit::trampoline::{frame_size, AttachId, Side, TrampolineMode};
use bpf_jit::CodeBuffer;

use crate::enc::{self, LdSt, MovWide, Sf, XReg};

/// Most integer arguments a trampoline takes (the AAPCS64 argument registers).
pub const MAX_ARGS: usize = 8;

/// The AAPCS64 integer argument registers, in order.
pub const ARG_REGS: [XReg; MAX_ARGS] = [
    XReg::new(0),
    XReg::new(1),
    XReg::new(2),
    XReg::new(3),
    XReg::new(4),
    XReg::new(5),
    XReg::new(6),
    XReg::new(7),
];

/// The register of absolute calls (`movz/movk x16` + `blr x16`): `x16`
/// (IP0), caller-saved and not an argument register.
pub const CALL_REG: XReg = XReg::new(16);

/// Errors of describing or emitting a trampoline.
#[derive(Debug, thiserror::Error)]
pub enum TrampolineError {
    /// More than [`MAX_ARGS`] arguments were asked for.
    #[error("{0} arguments: a trampoline takes at most {MAX_ARGS}")]
    TooManyArgs(usize),
    /// [`Arm64Trampoline::detach`] of an id that is not attached.
    #[error("attachment {0} is not attached")]
    NotAttached(u64),
    /// An image base that is not 4-byte aligned (AArch64 instructions are).
    #[error("image base {0:#x} is not 4-byte aligned")]
    MisalignedBase(u64),
}

/// An upper bound of the code size in bytes of a trampoline of `nargs`
/// arguments calling `progs` programs (and an original), whatever the
/// addresses: what to reserve for an image.
pub const fn max_code_size(nargs: usize, progs: usize) -> usize {
    // Prologue 3 + nargs + 1; per program mov + at most 4 movz/movk + blr
    // + str; original nargs loads + 5 + str; epilogue 4.
    4 * ((3 + nargs + 1) + 7 * progs + (nargs + 6) + 4)
}

/// The host-side description of a trampoline for one native signature:
/// its argument count, mode, original and attached programs (see the
/// [module docs](self)). It produces the image for a given address with
/// [`Arm64Trampoline::emit_code`].
#[derive(Clone, Debug)]
pub struct Arm64Trampoline {
    nargs: usize,
    original: Option<u64>,
    mode: TrampolineMode,
    attached: Attachments<u64>,
}

impl Arm64Trampoline {
    /// A trampoline taking `nargs` (0 to [`MAX_ARGS`]) integer arguments,
    /// calling `original` (the address of a native function of that many
    /// integer arguments returning an integer) if given, with no programs
    /// attached yet.
    pub fn new(
        nargs: usize,
        original: Option<u64>,
        mode: TrampolineMode,
    ) -> Result<Arm64Trampoline, TrampolineError> {
        if nargs > MAX_ARGS {
            return Err(TrampolineError::TooManyArgs(nargs));
        }
        Ok(Arm64Trampoline {
            nargs,
            original,
            mode,
            attached: Attachments::new(),
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

    /// The original function's address, if any.
    pub fn original(&self) -> Option<u64> {
        self.original
    }

    /// Attaches the program whose main entry is at `addr` to run before
    /// the original, after the entry programs already attached.
    pub fn attach_entry(&mut self, addr: u64) -> AttachId {
        self.attach(Side::Entry, addr)
    }

    /// Attaches the program whose main entry is at `addr` to run after
    /// the original, after the exit programs already attached.
    pub fn attach_exit(&mut self, addr: u64) -> AttachId {
        self.attach(Side::Exit, addr)
    }

    /// Attaches the program whose main entry is at `addr` on `side`.
    pub fn attach(&mut self, side: Side, addr: u64) -> AttachId {
        self.attached.attach(side, addr)
    }

    /// Detaches `id`. Images emitted before still call its program.
    pub fn detach(&mut self, id: AttachId) -> Result<(), TrampolineError> {
        self.attached
            .detach(id)
            .map(|_| ())
            .ok_or(TrampolineError::NotAttached(id.get()))
    }

    /// The ids attached on `side`, in the order they run.
    pub fn attached(&self, side: Side) -> Vec<AttachId> {
        self.attached.ids(side)
    }

    /// The address of the program attached as `id`, and its side.
    pub fn program(&self, id: AttachId) -> Option<(Side, u64)> {
        self.attached.get(id).map(|(side, &addr)| (side, addr))
    }

    /// An upper bound of [`Arm64Trampoline::emit_code`]'s length.
    pub fn max_code_size(&self) -> usize {
        max_code_size(self.nargs, self.attached.len())
    }

    /// The image's machine code, valid at address `base` (`bl` for every
    /// call in range); with `None`, position independent (every call
    /// `movz/movk` + `blr`).
    pub fn emit_code(&self, base: Option<u64>) -> Result<Vec<u8>, TrampolineError> {
        let mut b = CodeBuffer::with_capacity(0, self.max_code_size());
        self.emit_into(&mut b, base)?;
        Ok(b.take_bytes())
    }

    /// Appends the image to `b`, whose first byte will be at `base` (if given).
    pub fn emit_into(&self, b: &mut CodeBuffer, base: Option<u64>) -> Result<(), TrampolineError> {
        let side = |s: Side| self.attached.side(s).copied();
        let t = Tramp {
            nargs: self.nargs,
            mode: self.mode,
            base,
        };
        t.emit(b, side(Side::Entry), self.original, side(Side::Exit))
    }
}

/// The machine code of a trampoline of `nargs` arguments in `mode`,
/// calling the programs at `entry`, then `original`, then the programs at
/// `exit`, valid at address `base` (position independent with `None`).
pub fn emit_code(
    nargs: usize,
    original: Option<u64>,
    mode: TrampolineMode,
    entry: &[u64],
    exit: &[u64],
    base: Option<u64>,
) -> Result<Vec<u8>, TrampolineError> {
    let t = Tramp { nargs, mode, base };
    let mut b = CodeBuffer::with_capacity(0, max_code_size(nargs, entry.len() + exit.len()));
    t.emit(
        &mut b,
        entry.iter().copied(),
        original,
        exit.iter().copied(),
    )?;
    Ok(b.take_bytes())
}

/// Emits `movz/movk x16, #target` (only the non-zero halfwords after the
/// first) + `blr x16`.
fn call_abs(b: &mut CodeBuffer, target: u64) {
    let mut first = true;
    for hw in 0..4u8 {
        let h = (target >> (16 * u32::from(hw))) as u16;
        if h == 0 && !(first && hw == 3) {
            continue;
        }
        let op = if first { MovWide::Z } else { MovWide::K };
        enc::mov_wide(b, Sf::X, op, CALL_REG, h, hw);
        first = false;
    }
    enc::blr(b, CALL_REG);
}

/// One trampoline's emission parameters (checked by [`Tramp::check`]).
struct Tramp {
    nargs: usize,
    mode: TrampolineMode,
    base: Option<u64>,
}

impl Tramp {
    fn check(&self) -> Result<(), TrampolineError> {
        if self.nargs > MAX_ARGS {
            return Err(TrampolineError::TooManyArgs(self.nargs));
        }
        match self.base {
            Some(base) if !base.is_multiple_of(4) => Err(TrampolineError::MisalignedBase(base)),
            _ => Ok(()),
        }
    }

    /// The whole trampoline: prologue, entry programs, original, exit
    /// programs, epilogue.
    fn emit(
        &self,
        b: &mut CodeBuffer,
        entry: impl Iterator<Item = u64>,
        original: Option<u64>,
        exit: impl Iterator<Item = u64>,
    ) -> Result<(), TrampolineError> {
        self.check()?;
        self.prologue(b);
        for p in entry {
            self.prog_call(b, p);
        }
        if let Some(orig) = original {
            self.original_call(b, orig);
        }
        for p in exit {
            self.prog_call(b, p);
        }
        self.epilogue(b);
        Ok(())
    }

    /// `str`/`ldr rt, [sp, #8*slot]` (slot at most 8: always the scaled form).
    fn slot(b: &mut CodeBuffer, op: LdSt, rt: XReg, slot: usize) {
        enc::ldst_uimm(b, 3, op, rt, XReg::SP, slot as u32);
    }

    /// `bl target` when `base` is known and the target is in range of this
    /// call site, else `movz/movk x16` + `blr x16`.
    fn call(&self, b: &mut CodeBuffer, target: u64) {
        let near = self
            .base
            .map(|base| target.wrapping_sub(base.wrapping_add(u64::from(b.offset()))) as i64)
            .filter(|&d| enc::fits_imm26(d));
        match near {
            Some(d) => enc::bl_rel(b, d),
            None => call_abs(b, target),
        }
    }

    fn prologue(&self, b: &mut CodeBuffer) {
        enc::stp_pre16(b, XReg::FP, XReg::LR);
        enc::mov_sp(b, XReg::FP, XReg::SP);
        // At most 80: fits imm12.
        enc::add_sub_imm(
            b,
            Sf::X,
            true,
            false,
            XReg::SP,
            XReg::SP,
            frame_size(self.nargs) as u32,
            false,
        );
        for (i, &r) in ARG_REGS.iter().take(self.nargs).enumerate() {
            Self::slot(b, LdSt::Store, r, i);
        }
        Self::slot(b, LdSt::Store, XReg::ZR, self.nargs);
    }

    fn prog_call(&self, b: &mut CodeBuffer, target: u64) {
        enc::mov_sp(b, XReg::X0, XReg::SP);
        self.call(b, target);
        if self.mode == TrampolineMode::Replace {
            Self::slot(b, LdSt::Store, XReg::X0, self.nargs);
        }
    }

    fn original_call(&self, b: &mut CodeBuffer, target: u64) {
        for (i, &r) in ARG_REGS.iter().take(self.nargs).enumerate() {
            Self::slot(b, LdSt::Load, r, i);
        }
        self.call(b, target);
        Self::slot(b, LdSt::Store, XReg::X0, self.nargs);
    }

    fn epilogue(&self, b: &mut CodeBuffer) {
        Self::slot(b, LdSt::Load, XReg::X0, self.nargs);
        enc::mov_sp(b, XReg::SP, XReg::FP);
        enc::ldp_post16(b, XReg::FP, XReg::LR);
        enc::ret(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(code: &[u8]) -> Vec<u32> {
        code.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn frame_keeps_sp_aligned() {
        // (n + 1) * 8 rounded up to 16, by hand.
        let expected = [16, 16, 32, 32, 48, 48, 64, 64, 80];
        for (n, &e) in expected.iter().enumerate() {
            assert_eq!(frame_size(n), e, "nargs {n}");
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(matches!(
            Arm64Trampoline::new(9, None, TrampolineMode::Observe),
            Err(TrampolineError::TooManyArgs(9))
        ));
        assert!(matches!(
            emit_code(9, None, TrampolineMode::Observe, &[], &[], None),
            Err(TrampolineError::TooManyArgs(9))
        ));
        let mut t = Arm64Trampoline::new(1, None, TrampolineMode::Observe).expect("1 arg");
        assert!(matches!(
            t.emit_code(Some(0x1002)),
            Err(TrampolineError::MisalignedBase(0x1002))
        ));
        let id = t.attach_entry(0x1000);
        assert_eq!(t.program(id), Some((Side::Entry, 0x1000)));
        t.detach(id).expect("attached");
        assert!(matches!(t.detach(id), Err(TrampolineError::NotAttached(0))));
        assert_eq!(t.program(id), None);
    }

    #[test]
    fn ids_increase_and_order_is_kept_per_side() {
        let mut t = Arm64Trampoline::new(0, None, TrampolineMode::Replace).expect("0 args");
        let a = t.attach_entry(0x10);
        let b = t.attach_exit(0x20);
        let c = t.attach_entry(0x30);
        assert!(a < b && b < c);
        assert_eq!(t.attached(Side::Entry), vec![a, c]);
        assert_eq!(t.attached(Side::Exit), vec![b]);
        t.detach(a).expect("attached");
        assert_eq!(t.attached(Side::Entry), vec![c]);
    }

    #[test]
    fn bl_exactly_at_the_range_limits() {
        // The last call site is the original's, after `stp; mov; sub; str xzr`
        // (offset 16) in a trampoline without arguments or programs.
        let base = 0x1000_0000u64;
        let site = base + 16;
        let at = |target: u64| {
            words(
                &emit_code(
                    0,
                    Some(target),
                    TrampolineMode::Observe,
                    &[],
                    &[],
                    Some(base),
                )
                .expect("emits"),
            )
        };
        let is_bl = |w: &u32| w & 0xfc00_0000 == 0x9400_0000;
        let blr_x16 = 0xd63f_0200u32;
        // bl reaches [site - 128 MiB, site + 128 MiB - 4].
        for target in [site - (128 << 20), site + (128 << 20) - 4] {
            let w = at(target);
            assert_eq!(w.iter().filter(|w| is_bl(w)).count(), 1, "{target:#x}");
            assert!(!w.contains(&blr_x16));
        }
        for target in [site - (128 << 20) - 4, site + (128 << 20), site + 2] {
            let w = at(target);
            assert!(!w.iter().any(is_bl), "{target:#x}");
            assert!(w.contains(&blr_x16), "{target:#x}");
        }
        // Position independent: never bl.
        let w = words(
            &emit_code(0, Some(site), TrampolineMode::Observe, &[], &[], None).expect("emits"),
        );
        assert!(!w.iter().any(is_bl));
    }

    #[test]
    fn size_bound_holds() {
        let progs = [0x1234_5678_9abc_def0u64, 0xffff_ffff_ffff_fff0];
        for n in 0..=MAX_ARGS {
            for mode in [TrampolineMode::Observe, TrampolineMode::Replace] {
                let code =
                    emit_code(n, Some(u64::MAX - 3), mode, &progs, &progs, None).expect("emits");
                assert!(code.len() <= max_code_size(n, 4), "{n} {mode:?}");
            }
        }
    }
}
