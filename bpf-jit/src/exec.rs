//! Executable memory: mapped read+write, filled, then flipped to read+exec
//! (never writable and executable at once), unmapped on drop.

use core::ptr::NonNull;

use crate::driver::CompiledCode;
use crate::error::{JitError, JitErrorKind};
use crate::patch::RwAlias;

/// A page-aligned read+exec mapping holding one image.
#[derive(Debug)]
pub struct ExecMemory {
    ptr: NonNull<u8>,
    map_len: usize,
    code_len: usize,
}

// SAFETY: the mapping is immutable (read+exec) once constructed and owned
// exclusively by this value; sharing read access across threads is sound.
unsafe impl Send for ExecMemory {}
// SAFETY: as above, no interior mutability.
unsafe impl Sync for ExecMemory {}

fn os_error() -> JitError {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    JitError::program(JitErrorKind::Memory(errno))
}

impl ExecMemory {
    /// Maps `code` executable; the rest of the last page is filled with `pad`.
    pub fn new(code: &[u8], pad: u8) -> Result<ExecMemory, JitError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page)
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let map_len = code
            .len()
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or(JitError::program(JitErrorKind::ImageTooLarge))?;
        // SAFETY: anonymous private mapping at an address of the kernel's choosing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(os_error)?;
        // From here on `mem` owns the mapping and unmaps it on every exit path.
        let mem = ExecMemory {
            ptr,
            map_len,
            code_len: code.len(),
        };
        // SAFETY: the mapping is `map_len >= code.len()` writable bytes that nothing else aliases.
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), ptr.as_ptr(), code.len());
            core::ptr::write_bytes(ptr.as_ptr().add(code.len()), pad, map_len - code.len());
        }
        #[cfg(target_arch = "aarch64")]
        {
            extern "C" {
                // libgcc / compiler-rt: cleans the data cache and
                // invalidates the instruction cache for the range.
                fn __clear_cache(start: *mut libc::c_char, end: *mut libc::c_char);
            }
            // SAFETY: the range is the mapping just written.
            unsafe {
                __clear_cache(p.cast(), p.cast::<libc::c_char>().add(map_len));
            }
        }
        // SAFETY: `ptr`/`map_len` describe exactly the mapping created above.
        let rc = unsafe { libc::mprotect(p, map_len, libc::PROT_READ | libc::PROT_EXEC) };
        if rc != 0 {
            return Err(os_error());
        }
        Ok(mem)
    }

    /// Start of the image.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The image bytes (readable: the mapping is read+exec).
    pub fn code(&self) -> &[u8] {
        // SAFETY: `code_len` bytes were initialised and stay mapped readable while `self` lives.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.code_len) }
    }

    /// Length of the image in bytes (without padding).
    pub fn len(&self) -> usize {
        self.code_len
    }

    /// Whether the image is empty.
    pub fn is_empty(&self) -> bool {
        self.code_len == 0
    }
}

impl Drop for ExecMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping this value owns; nothing borrows it any more.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.map_len);
        }
    }
}

impl ExecMemory {
    /// Maps `code` executable as [`ExecMemory::new`] does, plus a second,
    /// read+write view of the same pages ([`RwAlias`]) through which direct
    /// tail-call sites are patched while the code runs.
    ///
    /// The pages come from a `memfd` mapped twice (`MAP_SHARED`): once
    /// read+exec (this value, the only view that is executed) and once
    /// read+write (the alias, never executable), so no mapping is ever
    /// writable and executable at once and the running pages never lose
    /// their execute permission (as an `mprotect` to read+write would do,
    /// crashing every thread executing them).
    pub fn new_patchable(code: &[u8], pad: u8) -> Result<(ExecMemory, RwAlias), JitError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = usize::try_from(page)
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let map_len = code
            .len()
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or(JitError::program(JitErrorKind::ImageTooLarge))?;
        let len = libc::off_t::try_from(map_len)
            .map_err(|_| JitError::program(JitErrorKind::ImageTooLarge))?;
        // SAFETY: the name is a NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"bpf-jit".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error());
        }
        // Closes the descriptor on every exit path (the mappings keep the pages).
        struct Fd(libc::c_int);
        impl Drop for Fd {
            fn drop(&mut self) {
                // SAFETY: closing a descriptor this guard owns.
                unsafe { libc::close(self.0) };
            }
        }
        let fd = Fd(fd);
        // SAFETY: resizing a memfd this function owns.
        if unsafe { libc::ftruncate(fd.0, len) } != 0 {
            return Err(os_error());
        }
        let map = |prot| {
            // SAFETY: a shared mapping of the memfd at an address of the kernel's choosing.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    map_len,
                    prot,
                    libc::MAP_SHARED,
                    fd.0,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                Err(os_error())
            } else {
                NonNull::new(p.cast::<u8>()).ok_or_else(os_error)
            }
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: `rw` is a fresh mapping of `map_len` bytes owned from here on.
        let alias = unsafe { RwAlias::from_raw(rw, map_len, 0) };
        // SAFETY: the alias is `map_len >= code.len()` writable bytes nothing else uses yet.
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), rw.as_ptr(), code.len());
            core::ptr::write_bytes(rw.as_ptr().add(code.len()), pad, map_len - code.len());
        }
        let rx = map(libc::PROT_READ | libc::PROT_EXEC)?;
        let mem = ExecMemory {
            ptr: rx,
            map_len,
            code_len: code.len(),
        };
        #[cfg(target_arch = "aarch64")]
        {
            extern "C" {
                fn __clear_cache(start: *mut libc::c_char, end: *mut libc::c_char);
            }
            // SAFETY: the range is the executable view just mapped.
            unsafe {
                __clear_cache(
                    rx.as_ptr().cast(),
                    rx.as_ptr().cast::<libc::c_char>().add(map_len),
                );
            }
        }
        // SAFETY: the same mapping, now with its executable view's address.
        let alias = unsafe { alias.with_rx(rx.as_ptr() as u64) };
        Ok((mem, alias))
    }
}

/// A compiled, executable program: the image and its subprogram entries.
#[derive(Debug)]
pub struct JitProgram {
    /// Direct tail-call sites and the writable alias (see
    /// [`JitProgram::new_patchable`]); declared first so that it is
    /// released before the executable view is unmapped.
    patch: Option<std::sync::Arc<crate::patch::PatchImage>>,
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
        if code.direct_tail_calls.is_empty() {
            return JitProgram::new(code, pad);
        }
        let (mem, alias) = ExecMemory::new_patchable(&code.code, pad)?;
        // The other fields as `new` sets them; its plain mapping is replaced.
        let mut p = JitProgram::new(code, pad)?;
        p.mem = mem;
        p.patch = Some(std::sync::Arc::new(crate::patch::PatchImage {
            alias,
            sites: code.direct_tail_calls.clone(),
            codec,
        }));
        Ok(p)
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
        assert!(line.contains(" r-xp "), "{line}");
        // SAFETY: the mapping has at least one page of readable bytes.
        let pad = unsafe { *m.as_ptr().add(3) };
        assert_eq!(pad, 0xcc);
    }
}
