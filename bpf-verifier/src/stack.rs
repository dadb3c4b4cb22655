//! Stack slots: per 8-byte slot, the kind of each byte, the spilled
//! register, and the set of instructions that may have defined the slot's
//! current contents (for spill/fill analyses such as `bpf_fastcall`).
//!
//! Slot `i` covers bytes `fp - 8 * (i + 1) .. fp - 8 * i`; byte `b` of a
//! slot is the one at address `fp - 8 * (i + 1) + b` (so byte 0 is the least
//! significant byte of a spilled register).

use smallvec::SmallVec;

use crate::reg::{RegState, RegType};

/// What a stack byte holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteKind {
    /// Never written (`STACK_INVALID`).
    Invalid,
    /// Some unknown data (`STACK_MISC`).
    Misc,
    /// Known zero (`STACK_ZERO`).
    Zero,
    /// Part of a spilled register (`STACK_SPILL`).
    Spill,
}

impl ByteKind {
    /// The character the kernel's log uses for the kind.
    pub const fn log_char(self) -> char {
        match self {
            ByteKind::Invalid => '?',
            ByteKind::Misc => 'm',
            ByteKind::Zero => '0',
            ByteKind::Spill => 'r',
        }
    }
}

/// A small set of instruction slot indices, kept sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InsnSet(SmallVec<[u32; 2]>);

impl InsnSet {
    /// The empty set.
    pub fn new() -> InsnSet {
        InsnSet(SmallVec::new())
    }

    /// `{insn}`.
    pub fn single(insn: u32) -> InsnSet {
        let mut s = InsnSet::new();
        s.0.push(insn);
        s
    }

    /// Adds `insn`.
    pub fn insert(&mut self, insn: u32) {
        if let Err(pos) = self.0.binary_search(&insn) {
            self.0.insert(pos, insn);
        }
    }

    /// Adds every member of `other`.
    pub fn union_with(&mut self, other: &InsnSet) {
        for &i in &other.0 {
            self.insert(i);
        }
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &InsnSet) -> bool {
        self.0.iter().all(|i| other.0.binary_search(i).is_ok())
    }

    /// The members, ascending.
    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every member.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// One 8-byte stack slot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StackSlot {
    /// Kind of each byte, by address.
    pub kinds: [ByteKind; 8],
    /// The spilled register, meaningful where `kinds` is [`ByteKind::Spill`].
    pub spilled: RegState,
    /// Instructions that may have written the current contents.
    pub defs: InsnSet,
}

impl Default for StackSlot {
    fn default() -> Self {
        StackSlot {
            kinds: [ByteKind::Invalid; 8],
            spilled: RegState::NOT_INIT,
            defs: InsnSet::new(),
        }
    }
}

impl StackSlot {
    /// Whether the slot holds a spilled register (any byte is a spill byte).
    pub fn is_spill(&self) -> bool {
        self.kinds.contains(&ByteKind::Spill)
    }

    /// Whether all eight bytes are one full 8-byte spill.
    pub fn is_full_spill(&self) -> bool {
        self.kinds.iter().all(|&k| k == ByteKind::Spill)
    }

    /// Number of spill bytes from byte 0 upward (the spill size).
    pub fn spill_size(&self) -> u32 {
        self.kinds
            .iter()
            .take_while(|&&k| k == ByteKind::Spill)
            .count() as u32
    }

    /// Whether every byte is untouched.
    pub fn is_invalid(&self) -> bool {
        self.kinds.iter().all(|&k| k == ByteKind::Invalid)
    }

    /// Turns spill bytes into misc data (a partial overwrite destroys a spill).
    pub fn scrub_spill(&mut self) {
        if self.is_spill() {
            for k in &mut self.kinds {
                if *k != ByteKind::Invalid {
                    *k = ByteKind::Misc;
                }
            }
            self.spilled = RegState::NOT_INIT;
        }
    }
}

/// What a fixed-offset stack read produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackRead {
    /// A register restored from a spill (the caller truncates narrow fills).
    Fill(RegState),
    /// Known zero bytes.
    Zero,
    /// Unknown data.
    Unknown,
}

/// Why a fixed-offset stack read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackReadError {
    /// Partial read of a spilled pointer (`invalid size of register fill`).
    PartialPointerFill,
    /// Read of an uninitialised byte (unprivileged): byte index `i` of the access.
    Uninit(u32),
}

/// One frame's stack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stack {
    slots: Vec<StackSlot>,
}

impl Stack {
    /// The slots allocated so far (slot 0 is `fp-8`).
    pub fn slots(&self) -> &[StackSlot] {
        &self.slots
    }

    /// Bytes of stack allocated (a multiple of 8).
    pub fn allocated(&self) -> u32 {
        self.slots.len() as u32 * 8
    }

    /// The slot holding the byte at `fp + off` (`off` in `-512..0`), if allocated.
    pub fn slot(&self, spi: usize) -> Option<&StackSlot> {
        self.slots.get(spi)
    }

    /// Mutable slot `spi`, allocating up to it.
    pub fn slot_mut(&mut self, spi: usize) -> &mut StackSlot {
        if self.slots.len() <= spi {
            self.slots.resize(spi + 1, StackSlot::default());
        }
        // The resize above guarantees the index.
        let n = self.slots.len() - 1;
        let i = spi.min(n);
        &mut self.slots[i]
    }

    /// Slot index and byte index of the byte at `fp + off` (`off < 0`).
    pub fn locate(off: i64) -> (usize, usize) {
        let pos = (-off - 1) as usize; // 0 = fp-1
        let spi = pos / 8;
        let byte = 7 - pos % 8;
        (spi, byte)
    }

    /// Writes `size` bytes at `fp + off` (aligned: within one slot) from
    /// instruction `insn`. `value` is the stored register (for `stx`, or a
    /// constant register for `st`), `None` for unknown data.
    /// `spill_scalars` allows narrow spills of scalars (privileged).
    pub fn write(
        &mut self,
        off: i64,
        size: u32,
        value: Option<&RegState>,
        insn: u32,
        spill_scalars: bool,
    ) {
        let (spi, b) = Stack::locate(off);
        let slot = self.slot_mut(spi);
        let size = size.min(8) as usize;
        if size == 8 {
            slot.defs = InsnSet::single(insn);
        } else {
            slot.defs.insert(insn);
        }
        let b = b.min(8 - size);
        match value {
            Some(r) if b == 0 && size == 8 && (r.is_pointer() || spill_scalars) => {
                slot.kinds = [ByteKind::Spill; 8];
                slot.spilled = *r;
            }
            Some(r) if b == 0 && r.ty == RegType::Scalar && spill_scalars => {
                let was_spill = slot.is_spill();
                for (i, k) in slot.kinds.iter_mut().enumerate() {
                    if i < size {
                        *k = ByteKind::Spill;
                    } else if was_spill && *k == ByteKind::Spill {
                        *k = ByteKind::Misc;
                    }
                }
                slot.spilled = *r;
            }
            _ => {
                slot.scrub_spill();
                let zero = value.is_some_and(|r| {
                    r.ty == RegType::Scalar && r.var.truncate(size as u32).const_value() == Some(0)
                });
                for k in &mut slot.kinds[b..b + size] {
                    *k = if zero { ByteKind::Zero } else { ByteKind::Misc };
                }
            }
        }
    }

    /// Marks `size` bytes at `fp + off` as unknown data written by `insn`
    /// (helper writes, variable-offset writes), destroying spills they touch.
    pub fn clobber(&mut self, off: i64, size: u32, insn: u32) {
        let mut o = off;
        let end = off + size as i64;
        while o < end {
            let (spi, b) = Stack::locate(o);
            let slot = self.slot_mut(spi);
            slot.scrub_spill();
            if let Some(k) = slot.kinds.get_mut(b) {
                *k = ByteKind::Misc;
            }
            slot.defs.insert(insn);
            o += 1;
        }
    }

    /// Reads `size` bytes at `fp + off` (within one slot) the way the
    /// kernel's `check_stack_read_fixed_off` does. `allow_uninit` lets
    /// never-written bytes read as unknown (privileged).
    pub fn read(
        &self,
        off: i64,
        size: u32,
        allow_uninit: bool,
    ) -> Result<StackRead, StackReadError> {
        let (spi, b) = Stack::locate(off);
        let Some(slot) = self.slots.get(spi) else {
            return if allow_uninit {
                Ok(StackRead::Unknown)
            } else {
                Err(StackReadError::Uninit(0))
            };
        };
        let size = (size.min(8) as usize).min(8 - b.min(8));
        if slot.is_spill() {
            let spill = slot.spill_size();
            if size == 8 && spill == 8 {
                return Ok(StackRead::Fill(slot.spilled));
            }
            if slot.spilled.ty != RegType::Scalar {
                return Err(StackReadError::PartialPointerFill);
            }
            if b == 0 && size as u32 <= spill {
                return Ok(StackRead::Fill(slot.spilled));
            }
            let mut spill_cnt = 0;
            let mut zero_cnt = 0;
            for (i, k) in slot.kinds[b..b + size].iter().enumerate() {
                match k {
                    ByteKind::Spill => spill_cnt += 1,
                    ByteKind::Misc => {}
                    ByteKind::Zero => zero_cnt += 1,
                    ByteKind::Invalid if allow_uninit => {}
                    ByteKind::Invalid => return Err(StackReadError::Uninit(i as u32)),
                }
            }
            if (spill_cnt == size && slot.spilled.is_const(0)) || zero_cnt == size {
                return Ok(StackRead::Zero);
            }
            return Ok(StackRead::Unknown);
        }
        let mut zero = 0;
        for (i, k) in slot.kinds[b..b + size].iter().enumerate() {
            match k {
                ByteKind::Zero => zero += 1,
                ByteKind::Misc | ByteKind::Spill => {}
                ByteKind::Invalid if allow_uninit => {}
                ByteKind::Invalid => return Err(StackReadError::Uninit(i as u32)),
            }
        }
        Ok(if zero == size {
            StackRead::Zero
        } else {
            StackRead::Unknown
        })
    }

    /// Whether every byte of `fp+lo .. fp+hi` is readable: initialised (or
    /// `allow_uninit`) and, unless `allow_ptr`, not part of a spilled pointer.
    /// Returns the first offending offset.
    pub fn check_range_init(&self, lo: i64, hi: i64, allow_uninit: bool) -> Result<(), i64> {
        let mut o = lo;
        while o < hi {
            let (spi, b) = Stack::locate(o);
            let k = self
                .slots
                .get(spi)
                .and_then(|s| s.kinds.get(b))
                .copied()
                .unwrap_or(ByteKind::Invalid);
            if k == ByteKind::Invalid && !allow_uninit {
                return Err(o);
            }
            o += 1;
        }
        Ok(())
    }

    /// Whether all bytes of `fp+lo .. fp+hi` are known zero.
    pub fn range_is_zero(&self, lo: i64, hi: i64) -> bool {
        let mut o = lo;
        while o < hi {
            let (spi, b) = Stack::locate(o);
            let ok = self.slots.get(spi).is_some_and(|s| {
                s.kinds.get(b) == Some(&ByteKind::Zero)
                    || (s.kinds.get(b) == Some(&ByteKind::Spill) && s.spilled.is_const(0))
            });
            if !ok {
                return false;
            }
            o += 1;
        }
        true
    }

    /// The slots overlapping `fp+lo .. fp+hi`.
    pub fn slots_in(&self, lo: i64, hi: i64) -> impl Iterator<Item = &StackSlot> + '_ {
        let first = if hi >= 0 { 0 } else { Stack::locate(hi - 1).0 };
        let last = Stack::locate(lo.min(-1)).0;
        self.slots
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i >= first && *i <= last)
            .map(|(_, s)| s)
    }

    /// Mutable access to every slot (for id renumbering and invalidation).
    pub fn slots_mut(&mut self) -> &mut [StackSlot] {
        &mut self.slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_matches_layout() {
        assert_eq!(Stack::locate(-8), (0, 0));
        assert_eq!(Stack::locate(-1), (0, 7));
        assert_eq!(Stack::locate(-9), (1, 7));
        assert_eq!(Stack::locate(-16), (1, 0));
    }

    #[test]
    fn spill_fill_and_defs() {
        let mut st = Stack::default();
        let ctx = RegState::pointer(RegType::Ctx);
        st.write(-8, 8, Some(&ctx), 3, true);
        assert_eq!(st.read(-8, 8, true), Ok(StackRead::Fill(ctx)));
        assert_eq!(
            st.read(-8, 4, true),
            Err(StackReadError::PartialPointerFill)
        );
        assert_eq!(
            st.slot(0).map(|s| s.defs.as_slice().to_vec()),
            Some(vec![3])
        );
        // A 4-byte write over the spill scrubs it and adds a definition.
        st.write(-4, 4, None, 5, true);
        assert_eq!(st.read(-8, 8, true), Ok(StackRead::Unknown));
        assert_eq!(
            st.slot(0).map(|s| s.defs.as_slice().to_vec()),
            Some(vec![3, 5])
        );
        // Zero store then read gives zero.
        st.write(-16, 8, Some(&RegState::constant(0)), 7, false);
        assert_eq!(st.read(-16, 4, false), Ok(StackRead::Zero));
        assert_eq!(st.read(-24, 8, false), Err(StackReadError::Uninit(0)));
    }

    #[test]
    fn narrow_scalar_spill() {
        let mut st = Stack::default();
        let v = RegState::constant(42);
        st.write(-8, 4, Some(&v), 1, true);
        assert_eq!(st.read(-8, 4, true), Ok(StackRead::Fill(v)));
        assert_eq!(st.read(-8, 8, true), Ok(StackRead::Unknown));
    }
}
