//! Direct tail calls on AArch64: the patchable sequence and its codec.
//!
//! ```text
//!         ldr  x11, [x29, #-8]          ; the counter's address
//!         ldr  x10, [x11]
//!         cmp  x10, #33
//!         b.hs out
//! bypass: b    out                      ; <-> nop (patched, one 4-byte str)
//!         add  x10, x10, #1
//!         str  x10, [x11]
//!         <unwind: callee-saved registers, x12 = counter slot, sp, x29/x30>
//! target: ldr  x9, lit                  ; 64-bit PC-relative literal load
//!         br   x9
//!         udf  #0                       ; if needed, so that lit is 8-aligned
//! lit:    .quad 0                       ; prog + 8 (patched, one 8-byte str)
//! out:
//! ```
//!
//! The bypass is an instruction patch between `B` and `NOP`, both in the
//! architecture's list of instructions that may be modified while another
//! thread executes them (Arm ARM B2.2.5, "concurrent modification and
//! execution of instructions"); the writer then cleans the data cache and
//! invalidates the instruction cache for the word. The target is a *data*
//! patch: the literal is read by a load, so an aligned 8-byte store is
//! single-copy atomic and needs no instruction-cache maintenance, and the
//! literal reaches any address, so there is no range fallback (a `b` would
//! reach only ±128 MiB). The cost is one load and an indirect branch with a
//! single, well-predicted target.

use bpf_jit::{
    CodeWriter, FrameInfo, JitErrorKind, PatchErrorKind, SiteCodec, SiteLayout, MAX_TAIL_CALL_CNT,
};

use crate::enc::{self, Cond, LdSt, Sf, XReg};
use crate::{Arm64Masm, TAIL_CALL_ENTRY_OFFSET, TCC_PTR_OFFSET, TMP1, TMP2, TMP_ADDR};

/// `nop`.
pub const NOP: u32 = 0xd503_201f;

/// `b` from `from` to `to` (byte offsets or addresses), if within ±128 MiB.
pub fn b_word(from: u64, to: u64) -> Option<u32> {
    let disp = (to as i64).wrapping_sub(from as i64);
    if disp % 4 != 0 || !enc::fits_imm26(disp) {
        return None;
    }
    Some(0x1400_0000 | ((disp >> 2) as u32 & 0x03ff_ffff))
}

/// `ldr xt, <pc + disp>` (64-bit literal load), `disp` a multiple of 4
/// within ±1 MiB.
fn ldr_literal(rt: XReg, disp: i64) -> Option<u32> {
    if disp % 4 != 0 || !enc::fits_imm19(disp) {
        return None;
    }
    Some(0x5800_0000 | (((disp >> 2) as u32 & 0x7_ffff) << 5) | rt.num())
}

impl Arm64Masm {
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
        let b = &mut self.buf;
        enc::ldr_x(b, TMP_ADDR, XReg::FP, TCC_PTR_OFFSET);
        enc::ldr_x(b, TMP2, TMP_ADDR, 0);
        enc::add_sub_imm(
            b,
            Sf::X,
            true,
            true,
            XReg::ZR,
            TMP2,
            MAX_TAIL_CALL_CNT,
            false,
        );
        let out1 = self.fwd(|b| enc::b_cond(b, Cond::Hs, 0));
        let bypass = self.buf.offset();
        // Placeholder; pointed at `out` below.
        enc::emit(&mut self.buf, NOP);
        let b = &mut self.buf;
        enc::add_sub_imm(b, Sf::X, false, false, TMP2, TMP2, 1, false);
        enc::ldst_uimm(b, 3, LdSt::Store, TMP2, TMP_ADDR, 0);
        if frame.private_stack {
            // As in the indirect sequence: the target's frame takes this
            // one's place in the private region.
            enc::mov(&mut self.buf, Sf::X, crate::FIN, crate::REG_MAP[10]);
        }
        self.unwind(frame);
        let target = self.buf.offset();
        // The literal follows `ldr` + `br` (+ one `udf` to align it).
        let literal = (target + 8).next_multiple_of(8);
        let ldr = ldr_literal(TMP1, i64::from(literal) - i64::from(target))
            .ok_or(JitErrorKind::ImageTooLarge)?;
        enc::emit(&mut self.buf, ldr);
        enc::br(&mut self.buf, TMP1);
        while self.buf.offset() < literal {
            enc::emit(&mut self.buf, 0);
        }
        self.buf.put8(0);
        let out = self.buf.offset();
        let b_out = b_word(u64::from(bypass), u64::from(out)).ok_or(JitErrorKind::ImageTooLarge)?;
        if let Some(w) = self
            .buf
            .bytes_mut()
            .get_mut(bypass as usize..bypass as usize + 4)
        {
            w.copy_from_slice(&b_out.to_le_bytes());
        }
        self.patch_here(out1);
        Ok(Some(SiteLayout {
            bypass,
            target,
            literal: Some(literal),
            stub: None,
            out,
        }))
    }
}

/// The AArch64 [`SiteCodec`]: the bypass rewritten with one 4-byte store,
/// the target with one 8-byte store to its literal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arm64SiteCodec;

/// The codec instance for AArch64 images.
pub static ARM64_SITE_CODEC: Arm64SiteCodec = Arm64SiteCodec;

impl SiteCodec for Arm64SiteCodec {
    fn set_bypass(
        &self,
        w: &mut dyn CodeWriter,
        site: &SiteLayout,
        on: bool,
    ) -> Result<(), PatchErrorKind> {
        let word = if on {
            b_word(u64::from(site.bypass), u64::from(site.out))
                .ok_or(PatchErrorKind::Unreachable(u64::from(site.out)))?
        } else {
            NOP
        };
        w.write(site.bypass, 4, u64::from(word))
    }

    fn set_target(
        &self,
        w: &mut dyn CodeWriter,
        site: &SiteLayout,
        entry: u64,
    ) -> Result<(), PatchErrorKind> {
        let lit = site.literal.ok_or(PatchErrorKind::BadWrite {
            offset: site.target,
            len: 8,
        })?;
        w.write(
            lit,
            8,
            entry.wrapping_add(u64::from(TAIL_CALL_ENTRY_OFFSET)),
        )
    }
}
