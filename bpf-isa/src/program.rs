//! A decoded, validated instruction sequence indexed the kernel's way.

use cranelift_entity::entity_impl;

use crate::decode::decode_slots;
use crate::encode::{encode_into, encode_raw_into};
use crate::error::{Error, ErrorKind};
use crate::insn::{CallTarget, Insn, LdImm64Src};
use crate::raw::RawInsn;

/// Index of an instruction in 8-byte slots, as the kernel counts them
/// (an `ld_imm64` takes two indices; the second is never an instruction start).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InsnIdx(u32);
entity_impl!(InsnIdx, "insn");

/// A sequence of decoded instructions.
///
/// `insns` holds one entry per instruction; `starts` maps each entry to its
/// slot index. Jump offsets inside the instructions are kernel slot offsets.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Program {
    insns: Vec<Insn>,
    starts: Vec<u32>,
    slots: usize,
}

/// Where a control-flow instruction can go next (in slot indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Falls through to the next instruction only.
    Next,
    /// Jumps unconditionally to the slot.
    Jump(usize),
    /// Falls through or jumps to the slot.
    Branch(usize),
    /// Returns.
    Exit,
}

impl Program {
    /// Builds a program from typed instructions (no validation; see [`Program::validate`]).
    pub fn from_insns(insns: Vec<Insn>) -> Program {
        let mut starts = Vec::with_capacity(insns.len());
        let mut slot = 0usize;
        for i in &insns {
            starts.push(slot as u32);
            slot += i.slots();
        }
        Program {
            insns,
            starts,
            slots: slot,
        }
    }

    /// Decodes raw slots, checking every instruction's fields. Jump targets are not checked.
    pub fn decode_raw(raw: &[RawInsn]) -> Result<Program, Error> {
        Program::decode_slots_with(raw.len(), |i| raw.get(i).copied())
    }

    /// Decodes little-endian bytecode, checking every instruction's fields
    /// (the same result as [`RawInsn::slice_from_bytes`] then
    /// [`Program::decode_raw`], without the intermediate slots).
    pub fn decode(bytes: &[u8]) -> Result<Program, Error> {
        if !bytes.len().is_multiple_of(8) {
            return Err(Error::new(
                bytes.len() / 8,
                ErrorKind::BadLength(bytes.len()),
            ));
        }
        let (chunks, _) = bytes.as_chunks::<8>();
        Program::decode_slots_with(chunks.len(), |i| {
            chunks.get(i).map(|&c| RawInsn::from_bytes(c))
        })
    }

    /// Decodes the `n` slots that `slot` returns, in order.
    #[inline(always)]
    fn decode_slots_with(
        n: usize,
        slot: impl Fn(usize) -> Option<RawInsn>,
    ) -> Result<Program, Error> {
        let mut insns = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(n);
        let mut i = 0;
        while let Some(r) = slot(i) {
            // `decode_slots` reads the next slot only for an ld_imm64
            // (opcode 0x18).
            let pair;
            let slots: &[RawInsn] = if r.code != 0x18 {
                core::slice::from_ref(&r)
            } else if let Some(next) = slot(i + 1) {
                pair = [r, next];
                &pair
            } else {
                core::slice::from_ref(&r)
            };
            let insn = decode_slots(slots).map_err(|k| Error::new(i, k))?;
            starts.push(i as u32);
            i += insn.slots();
            insns.push(insn);
        }
        Ok(Program {
            insns,
            starts,
            slots: n,
        })
    }

    /// Decodes and then validates control flow ([`Program::validate`]).
    pub fn decode_validated(bytes: &[u8]) -> Result<Program, Error> {
        let p = Program::decode(bytes)?;
        p.validate()?;
        Ok(p)
    }

    /// Checks that the program is not empty and that every jump, local call and
    /// `ld_imm64` function reference lands on an instruction start inside the program.
    pub fn validate(&self) -> Result<(), Error> {
        if self.insns.is_empty() {
            return Err(Error::new(0, ErrorKind::Empty));
        }
        for (n, insn) in self.insns.iter().enumerate() {
            let at = self.starts[n] as usize;
            let off = match *insn {
                Insn::Call(CallTarget::Local(o))
                | Insn::LdImm64 {
                    src: LdImm64Src::Func(o),
                    ..
                } => Some(o as i64),
                _ => insn.branch_offset(),
            };
            if let Some(off) = off {
                let target = at as i64 + insn.slots().min(1) as i64 + off;
                // A pc-relative reference from an ld_imm64 counts from its first slot + 1,
                // as the kernel does (insn_idx + imm + 1).
                self.check_target(at, target)?;
            }
        }
        Ok(())
    }

    fn check_target(&self, at: usize, target: i64) -> Result<(), Error> {
        if target < 0 || target >= self.slots as i64 {
            return Err(Error::new(
                at,
                ErrorKind::JumpOutOfRange {
                    target,
                    len: self.slots,
                },
            ));
        }
        if self.insn_at_slot(target as usize).is_none() {
            return Err(Error::new(at, ErrorKind::JumpIntoLdImm64 { target }));
        }
        Ok(())
    }

    /// The instructions, one entry per instruction.
    #[inline]
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Slot index of each instruction, parallel to [`Program::insns`].
    #[inline]
    pub fn starts(&self) -> &[u32] {
        &self.starts
    }

    /// Number of instructions (an `ld_imm64` counts once).
    #[inline]
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether there are no instructions.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Number of 8-byte slots.
    #[inline]
    pub fn slot_len(&self) -> usize {
        self.slots
    }

    /// Iterates `(slot index, instruction)`.
    pub fn iter(&self) -> impl Iterator<Item = (InsnIdx, &Insn)> + '_ {
        self.starts
            .iter()
            .zip(&self.insns)
            .map(|(&s, i)| (InsnIdx(s), i))
    }

    /// Position in [`Program::insns`] of the instruction starting at `slot`, if one does.
    pub fn insn_at_slot(&self, slot: usize) -> Option<usize> {
        let s = u32::try_from(slot).ok()?;
        self.starts.binary_search(&s).ok()
    }

    /// The instruction starting at `slot`, if one does.
    pub fn get(&self, slot: InsnIdx) -> Option<&Insn> {
        self.insn_at_slot(slot.0 as usize).map(|n| &self.insns[n])
    }

    /// Control flow out of the instruction at position `n` of [`Program::insns`], in slots.
    /// Calls are [`Flow::Next`] (they return). Targets are not range-checked.
    pub fn flow(&self, n: usize) -> Flow {
        let insn = &self.insns[n];
        let next = self.starts[n] as i64 + insn.slots() as i64;
        let tgt = |off: i64| (next + off).max(0) as usize;
        match *insn {
            Insn::Exit => Flow::Exit,
            Insn::Ja { off } => Flow::Jump(tgt(off as i64)),
            Insn::JaLong { imm } => Flow::Jump(tgt(imm as i64)),
            Insn::Jmp { off, .. } | Insn::MayGoto { off } => Flow::Branch(tgt(off as i64)),
            _ => Flow::Next,
        }
    }

    /// Encodes to little-endian bytecode.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.slots * 8);
        for i in &self.insns {
            encode_into(i, &mut out);
        }
        out
    }

    /// Encodes to raw slots.
    pub fn to_raw(&self) -> Vec<RawInsn> {
        let mut out = Vec::with_capacity(self.slots);
        for i in &self.insns {
            encode_raw_into(i, &mut out);
        }
        out
    }
}

impl InsnIdx {
    /// The slot index as `usize`.
    #[inline]
    pub fn slot(self) -> usize {
        self.0 as usize
    }
}
