//! The process-wide pack allocator for JIT images, after the Linux
//! kernel's `bpf_prog_pack` (5.18+).
//!
//! A *pack* is one `memfd` of [`PACK_SIZE`] bytes mapped twice with
//! `MAP_SHARED`: a read+exec view, the only one ever executed, and a
//! read+write view, never executable. No mapping is ever writable and
//! executable at once, and the pages never change protection, so handing
//! out or taking back an image costs neither `mmap`/`mprotect`/`munmap`
//! nor the TLB shootdowns an `munmap` sends to every other thread.
//!
//! Every pack belongs to one pad byte (the backend's trap filler: x86-64
//! `int3`, AArch64 `udf`) and is filled with it when created. Images take
//! runs of [`CHUNK_SIZE`]-byte chunks, first fit, from a bitmap per pack;
//! the pool is one [`Mutex`]. An image is copied in through the writable
//! view before its executable address is handed to anyone; when the last
//! owner lets go, its chunks are filled with the pad byte again (through
//! the writable view) and only then returned to the pool. So every free
//! chunk holds traps, and a stale jump into freed code traps instead of
//! running whatever was there.
//!
//! Images larger than [`DEDICATED_THRESHOLD`] get a pack of their own
//! (rounded up to whole pages), unmapped when the image goes. Packs in the
//! pool are kept; a pack that becomes empty is unmapped only if another
//! empty pack with the same pad byte exists (so that one compile/drop
//! cycle at a pack boundary does not map and unmap a pack each time).

use core::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{JitError, JitErrorKind};

/// Bytes of one pooled pack (a multiple of every page size Linux uses).
pub const PACK_SIZE: usize = 256 * 1024;

/// Allocation granule inside a pack: images start at multiples of it.
pub const CHUNK_SIZE: usize = 64;

/// Images of more bytes than this get a dedicated pair of mappings
/// instead of chunks of a pooled pack.
pub const DEDICATED_THRESHOLD: usize = PACK_SIZE / 2;

const CHUNKS: usize = PACK_SIZE / CHUNK_SIZE;
const WORDS: usize = CHUNKS.div_ceil(64);

fn os_error() -> JitError {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    JitError::program(JitErrorKind::Memory(errno))
}

fn too_large() -> JitError {
    JitError::program(JitErrorKind::ImageTooLarge)
}

/// Makes `len` bytes at `rx` (just written through the other view)
/// visible to instruction fetch. A no-op on x86-64, whose instruction
/// caches are coherent with data writes.
#[inline]
pub(crate) fn sync_icache(rx: *const u8, len: usize) {
    #[cfg(target_arch = "aarch64")]
    {
        extern "C" {
            // libgcc / compiler-rt: cleans the data cache and invalidates
            // the instruction cache for the range.
            fn __clear_cache(start: *mut libc::c_char, end: *mut libc::c_char);
        }
        let start = rx.cast_mut().cast::<libc::c_char>();
        // SAFETY: callers pass a range inside one executable view.
        unsafe { __clear_cache(start, start.add(len)) };
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (rx, len);
}

/// One `memfd` mapped twice: read+exec at `rx`, read+write at `rw`.
struct Pack {
    rx: NonNull<u8>,
    rw: NonNull<u8>,
    size: usize,
    pad: u8,
}

// SAFETY: the pointers are two views of a mapping this value owns and
// unmaps only on drop. The executable view is only read or executed. The
// writable view is written only by the single owner of a chunk (its
// `Chunk`, which the pool's bitmap hands to exactly one allocation), so no
// two threads write the same bytes without synchronisation; moving or
// sharing the pointers between threads is therefore sound.
unsafe impl Send for Pack {}
// SAFETY: as above; `Pack` has no interior state besides the mapped bytes.
unsafe impl Sync for Pack {}

/// Closes a descriptor on every exit path (the mappings keep the pages).
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this guard owns.
        unsafe { libc::close(self.0) };
    }
}

/// Unmaps a mapping on early exit.
struct Map(NonNull<u8>, usize);

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly a mapping this guard owns.
        unsafe { libc::munmap(self.0.as_ptr().cast(), self.1) };
    }
}

impl Pack {
    /// Maps a pack of `size` bytes (a multiple of the page size), fills it
    /// with `pad` and then copies `code` to its start.
    fn map(size: usize, pad: u8, code: &[u8]) -> Result<Pack, JitError> {
        let len = libc::off_t::try_from(size).map_err(|_| too_large())?;
        if code.len() > size {
            return Err(too_large());
        }
        // SAFETY: the name is a NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"bpf-jit-pack".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error());
        }
        let fd = Fd(fd);
        // SAFETY: resizing a memfd this function owns.
        if unsafe { libc::ftruncate(fd.0, len) } != 0 {
            return Err(os_error());
        }
        let map = |prot| {
            // SAFETY: a shared mapping of the memfd at an address of the kernel's choosing.
            let p =
                unsafe { libc::mmap(core::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd.0, 0) };
            if p == libc::MAP_FAILED {
                Err(os_error())
            } else {
                NonNull::new(p.cast::<u8>())
                    .map(|p| Map(p, size))
                    .ok_or_else(os_error)
            }
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: `rw` is a fresh writable mapping of `size >= code.len()`
        // bytes that nothing else knows of yet.
        unsafe {
            core::ptr::write_bytes(rw.0.as_ptr(), pad, size);
            core::ptr::copy_nonoverlapping(code.as_ptr(), rw.0.as_ptr(), code.len());
        }
        // The executable view is created after the bytes are in place.
        let rx = map(libc::PROT_READ | libc::PROT_EXEC)?;
        sync_icache(rx.0.as_ptr(), size);
        let pack = Pack {
            rx: rx.0,
            rw: rw.0,
            size,
            pad,
        };
        // Ownership of both mappings moves to `pack`.
        core::mem::forget(rx);
        core::mem::forget(rw);
        Ok(pack)
    }
}

impl Drop for Pack {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two views this value owns; no
        // `Chunk` (the only holders of addresses inside) is left.
        unsafe {
            libc::munmap(self.rx.as_ptr().cast(), self.size);
            libc::munmap(self.rw.as_ptr().cast(), self.size);
        }
    }
}

/// A pooled pack and its bookkeeping.
struct Slot {
    pack: Arc<Pack>,
    /// One bit per chunk, set when allocated.
    used: Vec<u64>,
    /// Number of free chunks.
    free: usize,
    /// No chunk below this index is free.
    hint: usize,
}

/// The pool: every pooled pack, of every pad byte.
struct Pool {
    slots: Vec<Slot>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { slots: Vec::new() });

fn lock_pool() -> std::sync::MutexGuard<'static, Pool> {
    // Nothing panics while the lock is held (bitmap updates use checked
    // accesses), so a poisoned pool is still consistent: recover it.
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// First index of a run of `need` clear bits in `bits` at or after
/// `start`, below `nbits`.
fn find_run(bits: &[u64], nbits: usize, need: usize, start: usize) -> Option<usize> {
    let mut i = start;
    let mut run_start = start;
    let mut run = 0usize;
    while i < nbits {
        let b = i % 64;
        let s = bits.get(i / 64)? >> b;
        if s & 1 == 1 {
            i += s.trailing_ones() as usize;
            run_start = i;
            run = 0;
        } else {
            let zeros = if s == 0 {
                64 - b
            } else {
                s.trailing_zeros() as usize
            };
            run += zeros;
            i += zeros;
            if run >= need {
                return (run_start + need <= nbits).then_some(run_start);
            }
        }
    }
    None
}

/// Sets (`on`) or clears `n` bits from `start`.
fn set_run(bits: &mut [u64], start: usize, n: usize, on: bool) {
    let mut i = start;
    let end = start.saturating_add(n);
    while i < end {
        let b = i % 64;
        let k = (64 - b).min(end - i);
        let mask = if k == 64 {
            u64::MAX
        } else {
            ((1u64 << k) - 1) << b
        };
        if let Some(w) = bits.get_mut(i / 64) {
            if on {
                *w |= mask;
            } else {
                *w &= !mask;
            }
        }
        i += k;
    }
}

/// A run of chunks holding one image (or a whole dedicated pack), shared
/// by its [`crate::ExecMemory`] and [`crate::RwAlias`]; the chunks go
/// back to the pool when the last of them is dropped.
pub(crate) struct Chunk {
    pack: Arc<Pack>,
    /// Byte offset in the pack.
    offset: usize,
    /// Bytes owned (whole chunks; the whole pack if dedicated).
    len: usize,
    pooled: bool,
}

impl core::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chunk")
            .field("rx", &self.rx())
            .field("len", &self.len)
            .field("pooled", &self.pooled)
            .finish()
    }
}

impl Chunk {
    /// Start of the chunk in the executable view.
    #[inline]
    pub(crate) fn rx(&self) -> *const u8 {
        // `offset + len <= size` (the allocator's invariant), so this stays in the view.
        self.pack.rx.as_ptr().wrapping_add(self.offset)
    }

    /// Start of the chunk in the writable view.
    #[inline]
    pub(crate) fn rw(&self) -> *mut u8 {
        self.pack.rw.as_ptr().wrapping_add(self.offset)
    }

    /// Bytes owned by this chunk run.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the chunks come from a pooled pack.
    #[inline]
    pub(crate) fn pooled(&self) -> bool {
        self.pooled
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if !self.pooled {
            // A dedicated pack: unmapped with the last `Arc<Pack>`, right after this.
            return;
        }
        // Traps back in first, through the writable view: nobody else
        // owns these bytes until the bits are cleared below.
        // SAFETY: `rw()..rw()+len` is this chunk run in the writable view.
        unsafe { core::ptr::write_bytes(self.rw(), self.pack.pad, self.len) };
        sync_icache(self.rx(), self.len);
        let n = self.len / CHUNK_SIZE;
        let first = self.offset / CHUNK_SIZE;
        let mut pool = lock_pool();
        let Some(i) = pool
            .slots
            .iter()
            .position(|s| Arc::ptr_eq(&s.pack, &self.pack))
        else {
            return;
        };
        let pad = self.pack.pad;
        let empty = {
            let Some(s) = pool.slots.get_mut(i) else {
                return;
            };
            set_run(&mut s.used, first, n, false);
            s.free += n;
            s.hint = s.hint.min(first);
            s.free == CHUNKS
        };
        if empty {
            let empties = pool
                .slots
                .iter()
                .filter(|s| s.pack.pad == pad && s.free == CHUNKS)
                .count();
            if empties > 1 {
                // Our `Arc<Pack>` is the last: the pack is unmapped when
                // `self.pack` drops, after the lock is released.
                pool.slots.swap_remove(i);
            }
        }
    }
}

/// Places `code` in executable memory filled with `pad` around it, in a
/// pooled pack unless it is larger than [`DEDICATED_THRESHOLD`]. The
/// executable address exists for the caller only once this returns, after
/// the bytes are written.
pub(crate) fn alloc(code: &[u8], pad: u8) -> Result<Arc<Chunk>, JitError> {
    // Reusing a chunk at the same executable address is only safe where
    // instruction fetch is coherent with stores (x86-64). AArch64 would also
    // need every core to resynchronise its instruction stream before a
    // reused chunk runs (the kernel's text_poke does it with an IPI, user
    // space with `membarrier(SYNC_CORE)`), and qemu-user does not see writes
    // through the alias to code it has translated: there every image gets
    // mappings of its own, at fresh addresses.
    if code.len() > DEDICATED_THRESHOLD || !cfg!(target_arch = "x86_64") {
        return alloc_dedicated(code, pad);
    }
    let need = code.len().div_ceil(CHUNK_SIZE).max(1);
    let (pack, first) = {
        let mut pool = lock_pool();
        let found = pool.slots.iter_mut().find_map(|s| {
            if s.pack.pad != pad || s.free < need {
                return None;
            }
            let first = find_run(&s.used, CHUNKS, need, s.hint)?;
            Some((s, first))
        });
        match found {
            Some((s, first)) => {
                set_run(&mut s.used, first, need, true);
                s.free -= need;
                if first == s.hint {
                    s.hint = first + need;
                }
                (Arc::clone(&s.pack), first)
            }
            None => {
                // A new pack (rare): mapped and filled under the lock so
                // that concurrent allocations do not each map one.
                let pack = Arc::new(Pack::map(PACK_SIZE, pad, &[])?);
                let mut used = vec![0u64; WORDS];
                set_run(&mut used, 0, need, true);
                pool.slots.push(Slot {
                    pack: Arc::clone(&pack),
                    used,
                    free: CHUNKS - need,
                    hint: need,
                });
                (pack, 0)
            }
        }
    };
    let chunk = Chunk {
        pack,
        offset: first * CHUNK_SIZE,
        len: need * CHUNK_SIZE,
        pooled: true,
    };
    // SAFETY: the bitmap gave this run to us alone; it is `need * CHUNK_SIZE
    // >= code.len()` bytes inside the writable view, already all pad bytes
    // (fresh pack, or re-filled on free).
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), chunk.rw(), code.len()) };
    sync_icache(chunk.rx(), code.len());
    Ok(Arc::new(chunk))
}

/// Places `code` in a pack of its own (rounded up to whole pages, padded).
pub(crate) fn alloc_dedicated(code: &[u8], pad: u8) -> Result<Arc<Chunk>, JitError> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(page)
        .ok()
        .filter(|&p| p > 0)
        .unwrap_or(4096);
    let size = code
        .len()
        .max(1)
        .checked_next_multiple_of(page)
        .ok_or_else(too_large)?;
    let pack = Arc::new(Pack::map(size, pad, code)?);
    Ok(Arc::new(Chunk {
        pack,
        offset: 0,
        len: size,
        pooled: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_run_first_fit() {
        let mut bits = vec![0u64; 2];
        assert_eq!(find_run(&bits, 128, 1, 0), Some(0));
        assert_eq!(find_run(&bits, 128, 128, 0), Some(0));
        assert_eq!(find_run(&bits, 128, 129, 0), None);
        set_run(&mut bits, 0, 3, true);
        assert_eq!(bits[0], 0b111);
        assert_eq!(find_run(&bits, 128, 2, 0), Some(3));
        // A run that crosses the word boundary.
        set_run(&mut bits, 5, 55, true);
        assert_eq!(bits[0], 0x0fff_ffff_ffff_ffe7);
        assert_eq!(find_run(&bits, 128, 2, 0), Some(3));
        assert_eq!(find_run(&bits, 128, 3, 0), Some(60));
        assert_eq!(find_run(&bits, 128, 68, 0), Some(60));
        assert_eq!(find_run(&bits, 128, 69, 0), None);
        set_run(&mut bits, 60, 68, true);
        assert_eq!(bits, vec![!0b11000, u64::MAX]);
        assert_eq!(find_run(&bits, 128, 1, 0), Some(3));
        set_run(&mut bits, 0, 128, false);
        assert_eq!(bits, vec![0, 0]);
    }
}
