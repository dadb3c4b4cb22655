//! Direct tail calls: the patchable sites a backend emits, and the one
//! state machine that rewrites them when a program-array slot changes.
//!
//! # The site
//!
//! A `bpf_tail_call` whose array and index are the same on every path
//! ([`crate::tailsite`]) compiles, with [`JitOptions::direct_tail_calls`],
//! to a sequence with two patchable places (their byte offsets are a
//! [`SiteLayout`]):
//!
//! ```text
//!         if counter >= MAX_TAIL_CALL_CNT goto out
//! bypass: goto out            (patchable: "goto out" or a no-op)
//!         counter += 1
//!         tear the frame down
//! target: <never falls through> (patchable: jump to the slot's program)
//! out:    ...
//! ```
//!
//! # The state machine
//!
//! A site starts in state *empty* (bypass = `goto out`, target = nothing).
//! A thread that passed the bypass while it was a no-op has already torn
//! its frame down and must find a jump at the target, so no state may ever
//! have the bypass off and no target. [`update_site`] moves between states
//! in this order only:
//!
//! * insert (slot empty → program P): write target → P, **then** bypass off;
//! * replace (P → Q): write target → Q (bypass stays off);
//! * remove (P → empty): bypass on, and **leave the target at P**. The
//!   site never returns to the starting state: a thread still between
//!   bypass and target jumps to P, which the slot's owner keeps mapped
//!   until no run is in flight (as bpf-vm's retire list does); new arrivals
//!   take the bypass. The next insert rewrites the target before turning
//!   the bypass off again.
//!
//! Each write is one aligned, single-copy-atomic store (4 or 8 bytes), so
//! a concurrently executing thread sees each patchable instruction either
//! wholly old or wholly new. How a site is written is a [`SiteCodec`]
//! (one per backend) over a [`CodeWriter`] (an in-process writable alias of
//! the image, [`PatchImage`], or an emulator's memory).
//!
//! [`JitOptions::direct_tail_calls`]: crate::JitOptions::direct_tail_calls

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::pack::Chunk;

/// Byte offsets (from the image start) of one direct tail-call site's
/// patchable parts, as the backend emitted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SiteLayout {
    /// The bypass instruction (`goto out` or a no-op).
    pub bypass: u32,
    /// The target instruction (a jump to the slot's program).
    pub target: u32,
    /// An 8-byte aligned literal holding a target address, if the backend
    /// uses one (arm64: always; x86-64: for targets out of `rel32` range).
    pub literal: Option<u32>,
    /// x86-64: an indirect `jmp [rip + literal]` the target jumps to when
    /// the program is out of `rel32` range.
    pub stub: Option<u32>,
    /// The instruction after the site (`out`).
    pub out: u32,
}

/// A direct tail-call site of a compiled image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectTailCall {
    /// Position of the `call 12` in [`bpf_isa::Program::insns`].
    pub pos: usize,
    /// Its slot index (as the kernel counts).
    pub slot: usize,
    /// The prog array: the value its `ld_imm64` resolved to (for a
    /// [`JitProgArray`](crate::JitProgArray), its [`as_ptr`](crate::JitProgArray::as_ptr)).
    pub array: u64,
    /// The constant index.
    pub index: u32,
    /// Where its patchable parts are.
    pub layout: SiteLayout,
}

/// Kind of a patchable location (for listings such as `bpfkit dump jited`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchKind {
    /// The bypass jump.
    Bypass,
    /// The target jump.
    Target,
    /// A target-address literal.
    Literal,
    /// The far-target stub (x86-64).
    Stub,
}

impl PatchKind {
    /// Lower-case name (`bypass`, `target`, `literal`, `stub`).
    pub const fn name(self) -> &'static str {
        match self {
            PatchKind::Bypass => "bypass",
            PatchKind::Target => "target",
            PatchKind::Literal => "literal",
            PatchKind::Stub => "stub",
        }
    }
}

impl SiteLayout {
    /// Every patchable location with its kind, ascending by offset.
    pub fn parts(&self) -> Vec<(u32, PatchKind)> {
        let mut v = vec![
            (self.bypass, PatchKind::Bypass),
            (self.target, PatchKind::Target),
        ];
        if let Some(l) = self.literal {
            v.push((l, PatchKind::Literal));
        }
        if let Some(s) = self.stub {
            v.push((s, PatchKind::Stub));
        }
        v.sort_unstable_by_key(|p| p.0);
        v
    }
}

/// Why a site could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchErrorKind {
    /// A write outside the image or not aligned to its size.
    #[error("bad write of {len} bytes at offset {offset}")]
    BadWrite {
        /// Byte offset in the image.
        offset: u32,
        /// Size of the write (4 or 8).
        len: u8,
    },
    /// The backend cannot reach the target from this site.
    #[error("target {0:#x} unreachable from the site")]
    Unreachable(u64),
    /// The writer failed (e.g. an emulator's channel).
    #[error("write failed: {0}")]
    Writer(String),
}

/// A site patch failure: the tail call's slot index and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("insn {slot}: direct tail call: {kind}")]
pub struct PatchError {
    /// Slot index of the `call 12`.
    pub slot: usize,
    /// The reason.
    pub kind: PatchErrorKind,
}

/// Reads and writes aligned words of one image in the address space it runs in.
pub trait CodeWriter {
    /// Address of the image's first byte where it runs.
    fn base(&self) -> u64;
    /// The `len`-byte (4 or 8) little-endian word at `offset` (aligned to `len`).
    fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind>;
    /// Stores the `len`-byte word at `offset` in one single-copy-atomic
    /// store, visible to instruction fetch on every thread afterwards.
    fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind>;
}

/// How a backend writes its direct tail-call sites.
pub trait SiteCodec: Send + Sync {
    /// Makes the bypass `goto out` (`on`) or a no-op.
    fn set_bypass(
        &self,
        w: &mut dyn CodeWriter,
        site: &SiteLayout,
        on: bool,
    ) -> Result<(), PatchErrorKind>;

    /// Makes the target jump into the program whose main entry is at
    /// `entry` (past its fixed head, at the backend's tail-call entry
    /// offset). May write several words; the last one written is the one
    /// that makes the new target visible.
    fn set_target(
        &self,
        w: &mut dyn CodeWriter,
        site: &SiteLayout,
        entry: u64,
    ) -> Result<(), PatchErrorKind>;
}

/// Moves `site` from slot value `old` to `new` (main-entry addresses, 0 for
/// an empty slot) in the order the module docs give. The site must be in
/// the state `old` left it in (a new site is in state 0).
pub fn update_site(
    codec: &dyn SiteCodec,
    w: &mut dyn CodeWriter,
    site: &DirectTailCall,
    old: u64,
    new: u64,
) -> Result<(), PatchError> {
    let err = |kind| PatchError {
        slot: site.slot,
        kind,
    };
    let l = &site.layout;
    match (old, new) {
        (_, 0) if old != 0 => codec.set_bypass(w, l, true).map_err(err),
        (0, 0) => Ok(()),
        (0, n) => {
            codec.set_target(w, l, n).map_err(err)?;
            codec.set_bypass(w, l, false).map_err(err)
        }
        (o, n) if o == n => Ok(()),
        (_, n) => codec.set_target(w, l, n).map_err(err),
    }
}

/// The writable view of one executable image: the image's bytes in the
/// read+write mapping of its pack (the same pages as the read+exec view,
/// at another address; the executable view is never writable). Writes are
/// bounded by the image's own length, never its neighbours' in the pack.
/// Holding it keeps the image's chunks allocated. Created with
/// [`crate::ExecMemory::new_patchable`].
#[derive(Debug)]
pub struct RwAlias {
    chunk: Arc<Chunk>,
    len: usize,
}

impl RwAlias {
    /// A view of the first `len` bytes of `chunk` (clamped to the chunk).
    pub(crate) fn new(chunk: Arc<Chunk>, len: usize) -> RwAlias {
        let len = len.min(chunk.len());
        RwAlias { chunk, len }
    }

    /// Number of bytes writable through the alias (the image's length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the image is empty (nothing is writable).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: u32, len: u8) -> Result<usize, PatchErrorKind> {
        let o = offset as usize;
        let ok = (len == 4 || len == 8)
            && o.is_multiple_of(len as usize)
            && o.checked_add(len as usize).is_some_and(|e| e <= self.len);
        if ok {
            Ok(o)
        } else {
            Err(PatchErrorKind::BadWrite { offset, len })
        }
    }
}

impl CodeWriter for &RwAlias {
    fn base(&self) -> u64 {
        self.chunk.rx() as u64
    }

    fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind> {
        let o = self.check(offset, len)?;
        // SAFETY: `check` keeps the access inside the image (so inside the
        // writable view) and aligned to its size (chunks are 64-byte aligned).
        unsafe {
            let p = self.chunk.rw().add(o);
            Ok(if len == 8 {
                AtomicU64::from_ptr(p.cast()).load(Ordering::Acquire)
            } else {
                u64::from(AtomicU32::from_ptr(p.cast()).load(Ordering::Acquire))
            })
        }
    }

    fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind> {
        let o = self.check(offset, len)?;
        // SAFETY: `check` keeps the access inside the image and aligned;
        // the image's chunks belong to it alone, and its writers (the prog
        // arrays' patching, under their lock) use atomic stores.
        unsafe {
            let p = self.chunk.rw().add(o);
            if len == 8 {
                AtomicU64::from_ptr(p.cast()).store(value, Ordering::SeqCst);
            } else {
                AtomicU32::from_ptr(p.cast()).store(value as u32, Ordering::SeqCst);
            }
        }
        crate::pack::sync_icache(self.chunk.rx().wrapping_add(o), len as usize);
        Ok(())
    }
}

/// An in-process image's patchable sites: its writable alias, the sites
/// and the backend's codec. A [`crate::JitProgram`] owns it (shared with
/// the prog arrays it registered with, which hold it weakly).
pub struct PatchImage {
    pub(crate) alias: RwAlias,
    pub(crate) sites: Vec<DirectTailCall>,
    pub(crate) codec: &'static dyn SiteCodec,
}

impl core::fmt::Debug for PatchImage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PatchImage")
            .field("alias", &self.alias)
            .field("sites", &self.sites)
            .finish()
    }
}

impl PatchImage {
    /// The image's direct tail-call sites.
    pub fn sites(&self) -> &[DirectTailCall] {
        &self.sites
    }

    /// Runs [`update_site`] on site number `i` through the alias.
    pub fn update(&self, i: usize, old: u64, new: u64) -> Result<(), PatchError> {
        let Some(site) = self.sites.get(i) else {
            return Ok(());
        };
        let mut w = &self.alias;
        update_site(self.codec, &mut w, site, old, new)
    }

    /// Checks that every part of site `i` lies in the image, so that
    /// [`PatchImage::update`] cannot fail on a bad offset.
    pub(crate) fn validate(&self, i: usize) -> Result<(), PatchError> {
        let Some(site) = self.sites.get(i) else {
            return Ok(());
        };
        for (off, _) in site.layout.parts() {
            if off as usize >= self.alias.len {
                return Err(PatchError {
                    slot: site.slot,
                    kind: PatchErrorKind::BadWrite {
                        offset: off,
                        len: 1,
                    },
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer over a byte vector that logs the writes.
    struct Log {
        mem: Vec<u8>,
        writes: Vec<(u32, u64)>,
    }

    impl CodeWriter for Log {
        fn base(&self) -> u64 {
            0x1000
        }
        fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind> {
            let mut b = [0u8; 8];
            let s = self
                .mem
                .get(offset as usize..offset as usize + len as usize)
                .ok_or(PatchErrorKind::BadWrite { offset, len })?;
            b[..len as usize].copy_from_slice(s);
            Ok(u64::from_le_bytes(b))
        }
        fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind> {
            let d = self
                .mem
                .get_mut(offset as usize..offset as usize + len as usize)
                .ok_or(PatchErrorKind::BadWrite { offset, len })?;
            d.copy_from_slice(&value.to_le_bytes()[..len as usize]);
            self.writes.push((offset, value));
            Ok(())
        }
    }

    /// Bypass word at 0: 1 = `goto out`, 0 = no-op; target word at 8: the entry.
    struct Toy;

    impl SiteCodec for Toy {
        fn set_bypass(
            &self,
            w: &mut dyn CodeWriter,
            s: &SiteLayout,
            on: bool,
        ) -> Result<(), PatchErrorKind> {
            w.write(s.bypass, 8, u64::from(on))
        }
        fn set_target(
            &self,
            w: &mut dyn CodeWriter,
            s: &SiteLayout,
            entry: u64,
        ) -> Result<(), PatchErrorKind> {
            w.write(s.target, 8, entry)
        }
    }

    #[test]
    fn state_machine_orders_writes_and_never_returns_to_empty() {
        let site = DirectTailCall {
            pos: 3,
            slot: 4,
            array: 0,
            index: 0,
            layout: SiteLayout {
                bypass: 0,
                target: 8,
                out: 16,
                ..SiteLayout::default()
            },
        };
        let mut w = Log {
            mem: vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            writes: Vec::new(),
        };
        // Insert: target first, then bypass off.
        update_site(&Toy, &mut w, &site, 0, 0xa0).unwrap();
        assert_eq!(w.writes, vec![(8, 0xa0), (0, 0)]);
        // Replace: target only.
        w.writes.clear();
        update_site(&Toy, &mut w, &site, 0xa0, 0xb0).unwrap();
        assert_eq!(w.writes, vec![(8, 0xb0)]);
        // Remove: bypass on, target stays.
        w.writes.clear();
        update_site(&Toy, &mut w, &site, 0xb0, 0).unwrap();
        assert_eq!(w.writes, vec![(0, 1)]);
        assert_eq!(w.read(8, 8).unwrap(), 0xb0);
        // No-ops.
        w.writes.clear();
        update_site(&Toy, &mut w, &site, 0, 0).unwrap();
        update_site(&Toy, &mut w, &site, 0xb0, 0xb0).unwrap();
        assert!(w.writes.is_empty());
    }

    #[test]
    fn writer_errors_name_the_slot() {
        let site = DirectTailCall {
            pos: 0,
            slot: 9,
            array: 0,
            index: 0,
            layout: SiteLayout {
                bypass: 64,
                target: 72,
                out: 80,
                ..SiteLayout::default()
            },
        };
        let mut w = Log {
            mem: vec![0; 16],
            writes: Vec::new(),
        };
        let e = update_site(&Toy, &mut w, &site, 0, 5).unwrap_err();
        assert_eq!(e.slot, 9);
        assert_eq!(e.kind, PatchErrorKind::BadWrite { offset: 72, len: 8 });
    }
}
