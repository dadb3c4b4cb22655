//! Executable memory: images placed in the process-wide pack allocator
//! ([`crate::pack`], the kernel's `bpf_prog_pack` design). Every image is
//! written through a read+write view of its pages and executed through a
//! separate read+exec view of the same pages; no mapping is ever writable
//! and executable at once.

use std::sync::Arc;

use crate::driver::CompiledCode;
use crate::error::JitError;
use crate::pack::{self, Chunk};
use crate::patch::RwAlias;

/// One image in executable (read+exec) memory.
///
/// Images of at most [`pack::DEDICATED_THRESHOLD`] bytes share pooled
/// packs (64-byte chunks); larger ones, and those made with
/// [`ExecMemory::new_dedicated`], get mappings of their own. Dropping the
/// value re-fills its chunks with the pad byte and returns them to the pool.
#[derive(Debug)]
pub struct ExecMemory {
    chunk: Arc<Chunk>,
    code_len: usize,
}

impl ExecMemory {
    /// Places `code` in executable memory; the bytes after it (to the end
    /// of its chunk, and every free chunk of the pack) are `pad`.
    ///
    /// The trampolines use this too: a pooled image is as immutable as a
    /// private mapping (nothing writes it but its own [`RwAlias`], which
    /// only [`ExecMemory::new_patchable`] hands out).
    pub fn new(code: &[u8], pad: u8) -> Result<ExecMemory, JitError> {
        Ok(ExecMemory {
            chunk: pack::alloc(code, pad)?,
            code_len: code.len(),
        })
    }

    /// As [`ExecMemory::new`], but always in a mapping of its own (a
    /// `memfd` of whole pages mapped read+exec, plus its read+write view),
    /// unmapped on drop.
    pub fn new_dedicated(code: &[u8], pad: u8) -> Result<ExecMemory, JitError> {
        Ok(ExecMemory {
            chunk: pack::alloc_dedicated(code, pad)?,
            code_len: code.len(),
        })
    }

    /// Places `code` as [`ExecMemory::new`] does and also returns its
    /// writable view ([`RwAlias`]), through which direct tail-call sites
    /// are patched while the code runs: the same pages, mapped read+write
    /// at another address, limited to this image's bytes. The executable
    /// pages never lose their execute permission (as an `mprotect` to
    /// read+write would make them, crashing every thread executing them).
    /// The image's chunks stay allocated while either value lives.
    pub fn new_patchable(code: &[u8], pad: u8) -> Result<(ExecMemory, RwAlias), JitError> {
        let mem = ExecMemory::new(code, pad)?;
        let alias = mem.alias();
        Ok((mem, alias))
    }

    /// The writable view of this image (see [`ExecMemory::new_patchable`]).
    fn alias(&self) -> RwAlias {
        RwAlias::new(Arc::clone(&self.chunk), self.code_len)
    }

    /// Start of the image.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.chunk.rx()
    }

    /// The image bytes (read through the read+exec view).
    pub fn code(&self) -> &[u8] {
        // SAFETY: `code_len <= chunk.len()` bytes were written before the
        // chunk was handed out and stay mapped readable while `self` lives;
        // only the alias writes them, with aligned atomic word stores.
        unsafe { core::slice::from_raw_parts(self.chunk.rx(), self.code_len) }
    }

    /// Length of the image in bytes (without padding).
    pub fn len(&self) -> usize {
        self.code_len
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.code_len == 0
    }

    /// Bytes reserved for the image: whole chunks in a pooled pack, whole
    /// pages in a dedicated mapping. The bytes past [`ExecMemory::len`]
    /// are the pad byte.
    pub fn reserved_len(&self) -> usize {
        self.chunk.len()
    }

    /// Whether the image lives in a pooled pack (rather than a dedicated mapping).
    pub fn is_pooled(&self) -> bool {
        self.chunk.pooled()
    }
}

/// A compiled, executable program: the image and its subprogram entries.
#[derive(Debug)]
pub struct JitProgram {
    /// Direct tail-call sites and the writable alias (see
    /// [`JitProgram::new_patchable`]); the alias keeps the image's chunks
    /// allocated while a prog array still holds it.
    patch: Option<Arc<crate::patch::PatchImage>>,
    mem: ExecMemory,
    entries: Vec<u32>,
    private_stack_bytes: u32,
    private_stack: bool,
}

impl JitProgram {
    /// Makes `code` executable, padding with the backend's `pad` byte.
    pub fn new(code: &CompiledCode, pad: u8) -> Result<JitProgram, JitError> {
        Ok(JitProgram {
            patch: None,
            mem: ExecMemory::new(&code.code, pad)?,
            entries: code.entries.clone(),
            private_stack_bytes: code.private_stack_bytes,
            private_stack: code.private_stack,
        })
    }

    /// Makes `code` executable as [`JitProgram::new`], keeping its direct
    /// tail-call sites ([`CompiledCode::direct_tail_calls`]) patchable
    /// through a writable alias ([`ExecMemory::new_patchable`]) with the
    /// backend's `codec`. Without direct sites this is [`JitProgram::new`].
    /// Register the sites with each prog array they name through
    /// [`JitProgram::attach`].
    pub fn new_patchable(
        code: &CompiledCode,
        pad: u8,
        codec: &'static dyn crate::patch::SiteCodec,
    ) -> Result<JitProgram, JitError> {
        JitProgram::from_parts(
            &code.code,
            code.entries.clone(),
            code.private_stack_bytes,
            code.private_stack,
            code.direct_tail_calls.clone(),
            pad,
            codec,
        )
    }

    /// [`JitProgram::new_patchable`] from the parts of a [`CompiledCode`]
    /// (the image, its subprogram entries, the private-stack facts and
    /// the direct tail-call sites), for a driver that has them without
    /// building one ([`compile_executable`](crate::compile_executable)).
    pub fn from_parts(
        code: &[u8],
        entries: Vec<u32>,
        private_stack_bytes: u32,
        private_stack: bool,
        direct_tail_calls: Vec<crate::patch::DirectTailCall>,
        pad: u8,
        codec: &'static dyn crate::patch::SiteCodec,
    ) -> Result<JitProgram, JitError> {
        let mem = ExecMemory::new(code, pad)?;
        let patch = if direct_tail_calls.is_empty() {
            None
        } else {
            Some(Arc::new(crate::patch::PatchImage {
                alias: mem.alias(),
                sites: direct_tail_calls,
                codec,
            }))
        };
        Ok(JitProgram {
            patch,
            mem,
            entries,
            private_stack_bytes,
            private_stack,
        })
    }

    /// The direct tail-call sites (empty unless built with
    /// [`JitProgram::new_patchable`]).
    pub fn direct_tail_calls(&self) -> &[crate::patch::DirectTailCall] {
        self.patch.as_ref().map_or(&[], |p| p.sites())
    }

    /// Registers this program's direct tail-call sites that name `array`
    /// with it and patches them to the array's current contents; from then
    /// on [`JitProgArray::set`](crate::JitProgArray::set) keeps them in step
    /// with the slot. The array holds the sites weakly: dropping the
    /// program unregisters them. Returns the number of sites registered.
    pub fn attach(&self, array: &crate::JitProgArray) -> Result<usize, crate::patch::PatchError> {
        match &self.patch {
            Some(p) => array.register(p),
            None => Ok(0),
        }
    }

    /// The executable image.
    pub fn memory(&self) -> &ExecMemory {
        &self.mem
    }

    /// Byte offset of each subprogram's entry.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// Whether it was compiled for a private stack
    /// ([`JitOptions::private_stack`](crate::JitOptions::private_stack)):
    /// then it must be run with [`JitProgram::call_with_stack`].
    pub fn private_stack(&self) -> bool {
        self.private_stack
    }

    /// See [`CompiledCode::private_stack_bytes`] (0 on the native stack).
    pub fn private_stack_bytes(&self) -> u32 {
        self.private_stack_bytes
    }

    /// Runs the main program of a private-stack image with `r1`-`r5` =
    /// `args` and its eBPF frames below `stack_top` (the native entry's
    /// sixth argument), returning `r0`.
    ///
    /// # Safety
    ///
    /// As [`JitProgram::call`]; in addition `stack_top` must be 16-byte
    /// aligned and the end of writable memory at least as large as the
    /// program needs (see [`CompiledCode::private_stack_bytes`]) for the
    /// whole run, used by nothing else meanwhile.
    pub unsafe fn call_with_stack(&self, args: [u64; 5], stack_top: u64) -> u64 {
        // SAFETY: the image starts with the main entry, a native C-ABI
        // function; a private-stack entry reads a sixth u64 argument (the
        // region's top); the caller guarantees the rest.
        unsafe {
            let f: extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64 =
                core::mem::transmute(self.mem.as_ptr());
            f(args[0], args[1], args[2], args[3], args[4], stack_top)
        }
    }

    /// Runs the main program with `r1`-`r5` = `args`, returning `r0`.
    ///
    /// # Safety
    ///
    /// The compiled program runs unchecked native code: it must have been
    /// verified (every memory access it makes valid for the arguments
    /// given, every helper it calls sound for those arguments), and it must
    /// have been compiled for the host's instruction set.
    pub unsafe fn call(&self, args: [u64; 5]) -> u64 {
        // SAFETY: the image starts with the main entry, a function with the
        // native C ABI taking five u64 and returning one (the JIT ABI); the
        // caller guarantees the program is safe to run with `args`.
        unsafe {
            let f: extern "C" fn(u64, u64, u64, u64, u64) -> u64 =
                core::mem::transmute(self.mem.as_ptr());
            f(args[0], args[1], args[2], args[3], args[4])
        }
    }

    /// Runs the main program with `r1` = `mem`'s address and `r2` = its
    /// length (the bpf_conformance convention), returning `r0`.
    ///
    /// # Safety
    ///
    /// As [`JitProgram::call`]: the program must only access `mem` (and its
    /// own stack) and call sound helpers.
    pub unsafe fn call_mem(&self, mem: &mut [u8]) -> u64 {
        let args = [mem.as_mut_ptr() as u64, mem.len() as u64, 0, 0, 0];
        // SAFETY: forwarded to the caller.
        unsafe { self.call(args) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_read_exec_and_padded() {
        let m = ExecMemory::new(&[1, 2, 3], 0xcc).unwrap();
        assert_eq!(m.code(), &[1, 2, 3]);
        assert_eq!(m.len(), 3);
        // Read /proc/self/maps: the page must be r-x, never w.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let addr = m.as_ptr() as usize;
        let line = maps
            .lines()
            .find(|l| {
                let (range, _) = l.split_once(' ').unwrap();
                let (lo, hi) = range.split_once('-').unwrap();
                let lo = usize::from_str_radix(lo, 16).unwrap();
                let hi = usize::from_str_radix(hi, 16).unwrap();
                (lo..hi).contains(&addr)
            })
            .expect("mapping listed");
        // Shared (the pack's memfd), readable and executable, never writable.
        assert!(line.contains(" r-xs "), "{line}");
        // SAFETY: the mapping has at least one page of readable bytes.
        let pad = unsafe { *m.as_ptr().add(3) };
        assert_eq!(pad, 0xcc);
    }
}
