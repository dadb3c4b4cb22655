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
//! program's image mapped for as long as any code may still jump to it —
//! with direct tail calls ([`crate::patch`]) that includes a program that
//! was *removed* from the slot, until no run that started before the
//! removal is still in flight (a removed site keeps its target).
//!
//! # Direct tail-call sites
//!
//! Programs whose direct sites name this table register them
//! ([`crate::JitProgram::attach`]); [`JitProgArray::set`] then patches every
//! registered site of the slot, under the table's lock, following
//! [`crate::patch::update_site`]. Registrations are weak: a dropped program
//! is skipped and forgotten (its sites are never written again; a patch in
//! progress keeps its writable alias alive, never the executable view).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::patch::{PatchError, PatchImage};

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
    /// Registered direct sites: slot index, image, site number in the image.
    sites: Mutex<Vec<(u32, Weak<PatchImage>, usize)>>,
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
        JitProgArray {
            words,
            sites: Mutex::new(Vec::new()),
        }
    }

    fn lock_sites(&self) -> MutexGuard<'_, Vec<(u32, Weak<PatchImage>, usize)>> {
        self.sites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `image`'s direct sites that name this table and patches
    /// them to the slots' current contents (see the module docs). Sites
    /// whose index is past `max_entries` are not registered: their bypass
    /// stays on, as a tail call through an out-of-range index fails.
    pub fn register(&self, image: &Arc<PatchImage>) -> Result<usize, PatchError> {
        let me = self.as_ptr();
        let mut sites = self.lock_sites();
        sites.retain(|s| s.1.strong_count() > 0);
        let mut n = 0;
        for (i, site) in image.sites().iter().enumerate() {
            if site.array != me {
                continue;
            }
            let Some(current) = self.get(site.index) else {
                continue;
            };
            image.validate(i)?;
            image.update(i, 0, current)?;
            sites.push((site.index, Arc::downgrade(image), i));
            n += 1;
        }
        Ok(n)
    }

    /// Number of live registered direct sites.
    pub fn registered_sites(&self) -> usize {
        self.lock_sites()
            .iter()
            .filter(|s| s.1.strong_count() > 0)
            .count()
    }

    /// The address compiled code receives as the map (`r2` of a tail call).
    pub fn as_ptr(&self) -> u64 {
        self.words.as_ptr() as u64
    }

    /// Number of slots.
    pub fn max_entries(&self) -> u32 {
        (self.words.len() - 1) as u32
    }

    /// Sets slot `index` to a program's entry address (0 clears it), then
    /// patches every registered direct site of the slot.
    pub fn set(&self, index: u32, entry: u64) -> Result<(), SlotOutOfRange> {
        let w = self.words.get(index as usize + 1).ok_or(SlotOutOfRange {
            index,
            max_entries: self.max_entries(),
        })?;
        let mut sites = self.lock_sites();
        let old = w.swap(entry, Ordering::AcqRel);
        sites.retain(|(i, img, site)| {
            let Some(img) = img.upgrade() else {
                return false;
            };
            if *i == index {
                // Offsets were validated at registration and the alias
                // covers the whole image, so a write cannot fail; a site
                // that did fail is dropped rather than left half-known.
                return img.update(*site, old, entry).is_ok();
            }
            true
        });
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
