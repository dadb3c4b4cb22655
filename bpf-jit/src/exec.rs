//! Executable memory: mapped read+write, filled, then flipped to read+exec
//! (never writable and executable at once), unmapped on drop.

use core::ptr::NonNull;

use crate::driver::CompiledCode;
use crate::error::{JitError, JitErrorKind};

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

/// A compiled, executable program: the image and its subprogram entries.
#[derive(Debug)]
pub struct JitProgram {
    mem: ExecMemory,
    entries: Vec<u32>,
}

impl JitProgram {
    /// Makes `code` executable, padding with the backend's `pad` byte.
    pub fn new(code: &CompiledCode, pad: u8) -> Result<JitProgram, JitError> {
        Ok(JitProgram {
            mem: ExecMemory::new(&code.code, pad)?,
            entries: code.entries.clone(),
        })
    }

    /// The executable image.
    pub fn memory(&self) -> &ExecMemory {
        &self.mem
    }

    /// Byte offset of each subprogram's entry.
    pub fn entries(&self) -> &[u32] {
        &self.entries
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
