//! The program-array layout compiled code reads on a tail call.
//!
//! A tail call `bpf_tail_call(ctx, map, index)` receives in `r2` the value
//! the `ld_imm64` map reference resolved to. For a program array the JIT's
//! caller must resolve it to [`JitProgArray::as_ptr`]: the address of a
//! table whose layout every backend knows:
//!
//! ```text
//! +0                          u32 max_entries (upper 32 bits of the word zero)
//! +8 + 8 * i                  u64 entry address of the program in slot i, or 0
//! ```
//!
//! ([`PROG_ARRAY_MAX_ENTRIES_OFFSET`], [`PROG_ARRAY_SLOTS_OFFSET`]). A slot
//! holds the address of a compiled program's main entry (offset 0 of its
//! image); the tail call jumps past that program's fixed head, at the
//! backend's tail-call entry offset.
//!
//! The table does not own the programs: whoever fills a slot must keep the
//! program's image mapped for as long as any code may still jump to it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Byte offset of `max_entries` (a `u32`) in the table.
pub const PROG_ARRAY_MAX_ENTRIES_OFFSET: i32 = 0;
/// Byte offset of slot 0; slot `i` is at `PROG_ARRAY_SLOTS_OFFSET + 8 * i`.
pub const PROG_ARRAY_SLOTS_OFFSET: i32 = 8;

/// Most tail calls one invocation of a program may make (`MAX_TAIL_CALL_CNT`).
pub const MAX_TAIL_CALL_CNT: u32 = 33;

/// A program array as compiled code sees it (see the module docs).
///
/// ```
/// use bpf_jit::JitProgArray;
///
/// let pa = JitProgArray::new(4);
/// assert_eq!(pa.max_entries(), 4);
/// pa.set(2, 0x1000).unwrap();
/// assert_eq!(pa.get(2), Some(0x1000));
/// assert!(pa.set(4, 0x1000).is_err());
/// ```
#[derive(Debug)]
pub struct JitProgArray {
    /// Word 0: `max_entries`; words 1..: slot addresses.
    words: Box<[AtomicU64]>,
}

/// A slot index at or past `max_entries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("prog array index {index} out of range (max_entries {max_entries})")]
pub struct SlotOutOfRange {
    /// The index given.
    pub index: u32,
    /// The table's size.
    pub max_entries: u32,
}

impl JitProgArray {
    /// An empty table of `max_entries` slots.
    pub fn new(max_entries: u32) -> JitProgArray {
        let words = (0..=u64::from(max_entries))
            .map(|i| AtomicU64::new(if i == 0 { u64::from(max_entries) } else { 0 }))
            .collect();
        JitProgArray { words }
    }

    /// The address compiled code receives as the map (`r2` of a tail call).
    pub fn as_ptr(&self) -> u64 {
        self.words.as_ptr() as u64
    }

    /// Number of slots.
    pub fn max_entries(&self) -> u32 {
        (self.words.len() - 1) as u32
    }

    /// Sets slot `index` to a program's entry address (0 clears it).
    pub fn set(&self, index: u32, entry: u64) -> Result<(), SlotOutOfRange> {
        let w = self.words.get(index as usize + 1).ok_or(SlotOutOfRange {
            index,
            max_entries: self.max_entries(),
        })?;
        w.store(entry, Ordering::Release);
        Ok(())
    }

    /// The entry address in slot `index` (`Some(0)` when empty, `None` when out of range).
    pub fn get(&self, index: u32) -> Option<u64> {
        self.words
            .get(index as usize + 1)
            .map(|w| w.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_documented_offsets() {
        let pa = JitProgArray::new(3);
        pa.set(1, 0xdead_beef_0000).unwrap();
        let base = pa.as_ptr() as *const u8;
        // SAFETY: reading inside the table's 4 words.
        let (max, slot1) = unsafe {
            (
                (base.add(PROG_ARRAY_MAX_ENTRIES_OFFSET as usize) as *const u32).read(),
                (base.add(PROG_ARRAY_SLOTS_OFFSET as usize + 8) as *const u64).read(),
            )
        };
        assert_eq!(max, 3);
        assert_eq!(slot1, 0xdead_beef_0000);
        assert_eq!(pa.get(0), Some(0));
        assert_eq!(pa.get(3), None);
        assert_eq!(
            pa.set(3, 1),
            Err(SlotOutOfRange {
                index: 3,
                max_entries: 3
            })
        );
    }
}
