//! Direct tail calls on x86-64: the patchable sequence and its codec.
//!
//! ```text
//!         mov  rax, [rbp - tcc_ptr]       ; the counter's address
//!         mov  r11, [rax]
//!         cmp  r11, 33
//!         jae  out
//!         nopN                            ; if needed: offset % 8 <= 3
//! bypass: jmp  out                        ; e9 rel32 <-> nop5 (patched)
//!         add  r11, 1
//!         mov  [rax], r11
//!         pop  callee-saved…; pop rax; pop rax; leave
//!         nopN                            ; if needed: offset % 8 <= 3
//! target: nop5                            ; <-> jmp prog+7 / jmp stub (patched)
//!         int3…                           ; until offset % 8 == 0
//! lit:    .quad 0                         ; far target address (patched)
//! stub:   jmp  [rip + lit]
//! out:
//! ```
//!
//! Both patchable instructions are 5 bytes inside one aligned 8-byte word,
//! so one atomic 8-byte store (read-modify-write of the word under the prog
//! array's lock) changes each; a thread fetching it sees the old or the new
//! instruction, never a mix. The target nop is never executed: the bypass
//! is on until the target has been written, and stays on after removal.
//! A program more than ±2 GiB away from the site (`rel32`) is reached
//! through the stub: the literal is written first, then the target jumps
//! to the stub. Images are `mmap`ed by the kernel close together in
//! practice, so the stub is the rare path.

use bpf_jit::{
    CodeWriter, FrameInfo, JitErrorKind, PatchErrorKind, SiteCodec, SiteLayout, MAX_TAIL_CALL_CNT,
};

use crate::enc::{self, Alu1, Cc, Gpr, Mem, Sz};
use crate::{tcc_ptr_mem, X86Masm, AUX, TAIL_CALL_ENTRY_OFFSET};

/// The 5-byte no-op (`nop dword [rax + rax*1 + 0]`).
pub const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/// `jmp rel32` from the instruction at `from` to `to` (absolute addresses
/// or offsets in the same image), if in range.
pub fn jmp_rel32(from: u64, to: u64) -> Option<[u8; 5]> {
    let rel = i32::try_from((to as i64).wrapping_sub(from.wrapping_add(5) as i64)).ok()?;
    let r = rel.to_le_bytes();
    Some([0xe9, r[0], r[1], r[2], r[3]])
}

/// The recommended single-instruction nops of 1 to 7 bytes (Intel SDM
/// vol. 2B, NOP), so that padding costs one instruction.
pub(crate) const NOPS: [&[u8]; 8] = [
    &[],
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
];

/// One nop up to the next offset whose next 5 bytes fit in one aligned
/// 8-byte word (`offset % 8 <= 3`).
fn pad_for_patch(m: &mut X86Masm) {
    let r = m.buf.offset() % 8;
    if r > 3 {
        let n = (8 - r) as usize;
        m.buf.put(NOPS.get(n).copied().unwrap_or(&[]));
    }
}

impl X86Masm {
    /// See [`bpf_jit::MacroAssembler::tail_call_direct`] and the module docs.
    pub(crate) fn emit_tail_call_direct(
        &mut self,
        frame: &FrameInfo,
    ) -> Result<Option<SiteLayout>, JitErrorKind> {
        if !frame.tail_call_reachable {
            return Err(JitErrorKind::Unsupported(
                "tail call in a frame without counter",
            ));
        }
        let tcc = tcc_ptr_mem(frame)?;
        let b = &mut self.buf;
        enc::load(b, Sz::Q, Gpr::RAX, tcc);
        let counter = Mem {
            base: Gpr::RAX,
            disp: 0,
        };
        enc::load(b, Sz::Q, AUX, counter);
        enc::alu_ri(b, Sz::Q, Alu1::Cmp, AUX, MAX_TAIL_CALL_CNT as i32);
        let out1 = self.jcc_fwd(Cc::Ae);
        pad_for_patch(self);
        let bypass = self.buf.offset();
        // Placeholder; pointed at `out` below.
        enc::jmp_near(&mut self.buf, 0);
        let b = &mut self.buf;
        enc::alu_ri(b, Sz::Q, Alu1::Add, AUX, 1);
        enc::store(b, Sz::Q, counter, AUX);
        if frame.private_stack {
            // As in the indirect sequence: the target's frame takes this
            // one's place in the private region.
            enc::mov_rr(&mut self.buf, Sz::Q, crate::FIN, Gpr::RBP);
        }
        // The same unwind as the indirect sequence: callee-saved registers,
        // the counter pointer, the counter slot into rax, the frame.
        self.unwind_frame(frame, true);
        pad_for_patch(self);
        let target = self.buf.offset();
        self.buf.put(&NOP5);
        while !self.buf.offset().is_multiple_of(8) {
            self.buf.put1(0xcc);
        }
        let literal = self.buf.offset();
        self.buf.put8(0);
        let stub = self.buf.offset();
        // jmp qword [rip + disp32], disp from the end of this 6-byte instruction.
        let disp = i64::from(literal) - (i64::from(stub) + 6);
        let disp = i32::try_from(disp).map_err(|_| JitErrorKind::ImageTooLarge)?;
        self.buf.put(&[0xff, 0x25]);
        self.buf.put4(disp as u32);
        let out = self.buf.offset();
        let jmp =
            jmp_rel32(u64::from(bypass), u64::from(out)).ok_or(JitErrorKind::ImageTooLarge)?;
        if let Some(dst) = self
            .buf
            .bytes_mut()
            .get_mut(bypass as usize..bypass as usize + 5)
        {
            dst.copy_from_slice(&jmp);
        }
        self.patch_here(out1);
        Ok(Some(SiteLayout {
            bypass,
            target,
            literal: Some(literal),
            stub: Some(stub),
            out,
        }))
    }
}

/// The x86-64 [`SiteCodec`]: 5-byte instructions rewritten with one
/// aligned 8-byte store each.
#[derive(Clone, Copy, Debug, Default)]
pub struct X86SiteCodec;

/// The codec instance [`crate::compile`] gives patchable programs.
pub static X86_SITE_CODEC: X86SiteCodec = X86SiteCodec;

/// Writes the 5 bytes `insn` at `at` (which must not cross an aligned
/// 8-byte word) with one 8-byte store, keeping the word's other bytes.
fn put5(w: &mut dyn CodeWriter, at: u32, insn: [u8; 5]) -> Result<(), PatchErrorKind> {
    let word = at & !7;
    let shift = (at - word) as usize;
    let mut bytes = w.read(word, 8)?.to_le_bytes();
    let dst = bytes
        .get_mut(shift..shift + 5)
        .ok_or(PatchErrorKind::BadWrite { offset: at, len: 5 })?;
    dst.copy_from_slice(&insn);
    w.write(word, 8, u64::from_le_bytes(bytes))
}

impl SiteCodec for X86SiteCodec {
    fn set_bypass(
        &self,
        w: &mut dyn CodeWriter,
        site: &SiteLayout,
        on: bool,
    ) -> Result<(), PatchErrorKind> {
        let insn = if on {
            jmp_rel32(u64::from(site.bypass), u64::from(site.out))
                .ok_or(PatchErrorKind::Unreachable(u64::from(site.out)))?
        } else {
            NOP5
        };
        put5(w, site.bypass, insn)
    }

    fn set_target(
        &self,
        w: &mut dyn CodeWriter,
        site: &SiteLayout,
        entry: u64,
    ) -> Result<(), PatchErrorKind> {
        let dest = entry.wrapping_add(u64::from(TAIL_CALL_ENTRY_OFFSET));
        let from = w.base().wrapping_add(u64::from(site.target));
        if let Some(j) = jmp_rel32(from, dest) {
            return put5(w, site.target, j);
        }
        // Out of rel32 range: through the stub's literal.
        let (Some(lit), Some(stub)) = (site.literal, site.stub) else {
            return Err(PatchErrorKind::Unreachable(dest));
        };
        w.write(lit, 8, dest)?;
        let j = jmp_rel32(u64::from(site.target), u64::from(stub))
            .ok_or(PatchErrorKind::Unreachable(dest))?;
        put5(w, site.target, j)
    }
}
