//! A process-wide shared-memory arena for the AArch64 engine
//! ([`crate::Engine::Arm64`]).
//!
//! AArch64 code runs in a separate process (the qemu-user harness of
//! `bpf_jit_arm64::emu`). For it to use this process's maps directly, all
//! memory a program touches lives in one `memfd` mapped at the same address
//! in both processes: [`enable`] creates it ([`ARENA_BYTES`], sparse) and
//! maps it here, below 4 GiB (so a 32-bit `xdp_md.data` field holds a
//! whole pointer); the engine maps it into its emulator.
//!
//! Once the arena is enabled, map storage (array values, hash elements,
//! ring-buffer records, program-array tables) is allocated from it, so maps
//! must be created *after* [`enable`] to be usable by AArch64 programs.
//! Without the arena nothing changes. Allocation uses power-of-two size
//! classes with free lists (a freed block is reused for the same class);
//! when the arena is exhausted, storage falls back to the heap, which
//! AArch64 programs cannot reach (their loads then fault in the emulator,
//! reported as an error).

use std::sync::{Mutex, OnceLock};

use crate::VmError;

/// Size of the arena in bytes (address space; pages are allocated on use).
pub const ARENA_BYTES: usize = 256 << 20;

/// Addresses tried for the arena, all below 4 GiB.
const CANDIDATES: [u64; 6] = [
    0x4000_0000,
    0x5000_0000,
    0x6000_0000,
    0x7000_0000,
    0x9000_0000,
    0xa000_0000,
];

/// Smallest block (log2).
const MIN_CLASS: u32 = 4;
/// Number of size classes (`2^4` .. `2^28` bytes).
const CLASSES: usize = 25;

/// Where the arena lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaInfo {
    /// Start address (the same in every process that maps it).
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// A path other processes open to map it (`/proc/<pid>/fd/<n>`).
    pub path: std::path::PathBuf,
}

struct Arena {
    info: ArenaInfo,
    alloc: Mutex<Alloc>,
}

struct Alloc {
    bump: u64,
    free: [Vec<u64>; CLASSES],
}

static ARENA: OnceLock<Result<Arena, String>> = OnceLock::new();

fn create() -> Result<Arena, String> {
    // SAFETY: plain system calls; every result is checked.
    unsafe {
        let fd = libc::memfd_create(c"bpfkit-arena".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        if libc::ftruncate(fd, ARENA_BYTES as libc::off_t) != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(format!("ftruncate: {e}"));
        }
        for addr in CANDIDATES {
            let p = libc::mmap(
                addr as *mut libc::c_void,
                ARENA_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                fd,
                0,
            );
            if p == libc::MAP_FAILED {
                continue;
            }
            if p as u64 != addr {
                // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
                libc::munmap(p, ARENA_BYTES);
                continue;
            }
            // The descriptor stays open for the life of the process: other
            // processes map the arena through it.
            return Ok(Arena {
                info: ArenaInfo {
                    base: addr,
                    len: ARENA_BYTES as u64,
                    path: format!("/proc/{}/fd/{fd}", std::process::id()).into(),
                },
                alloc: Mutex::new(Alloc {
                    bump: 0,
                    free: Default::default(),
                }),
            });
        }
        libc::close(fd);
        Err("no free address below 4 GiB for the shared arena".into())
    }
}

/// Creates and maps the arena (once per process; later calls return the
/// same arena, or the same error).
pub fn enable() -> Result<ArenaInfo, VmError> {
    match ARENA.get_or_init(create) {
        Ok(a) => Ok(a.info.clone()),
        Err(e) => Err(VmError::Emulator(e.clone())),
    }
}

/// The arena, if [`enable`] succeeded.
pub fn arena() -> Option<ArenaInfo> {
    match ARENA.get() {
        Some(Ok(a)) => Some(a.info.clone()),
        _ => None,
    }
}

/// Whether `[addr, addr + len)` lies in the arena.
pub fn contains(addr: u64, len: u64) -> bool {
    match ARENA.get() {
        Some(Ok(a)) => {
            addr >= a.info.base
                && addr
                    .checked_add(len)
                    .is_some_and(|e| e <= a.info.base + a.info.len)
        }
        _ => false,
    }
}

/// A zeroed block of at least `bytes` bytes (16-byte aligned) from the
/// arena: its address and size class, or `None` without an arena or room.
pub(crate) fn alloc(bytes: usize) -> Option<(u64, u8)> {
    let Some(Ok(a)) = ARENA.get() else {
        return None;
    };
    let size = bytes.max(1).checked_next_power_of_two()?;
    let class = size.trailing_zeros().max(MIN_CLASS);
    let idx = (class - MIN_CLASS) as usize;
    let size = 1u64 << class;
    let addr = {
        let mut g = a.alloc.lock().ok()?;
        let reuse = g.free.get_mut(idx)?.pop();
        match reuse {
            Some(p) => p,
            None => {
                let off = g.bump;
                if off.checked_add(size)? > a.info.len {
                    return None;
                }
                g.bump = off + size;
                a.info.base + off
            }
        }
    };
    // SAFETY: `[addr, addr + size)` is a block of the arena's live mapping
    // that no one else holds (fresh, or returned to the free list).
    unsafe { std::ptr::write_bytes(addr as *mut u8, 0, size as usize) };
    Some((addr, idx as u8))
}

/// Returns a block from [`alloc`].
pub(crate) fn free(addr: u64, class: u8) {
    if let Some(Ok(a)) = ARENA.get() {
        if let Ok(mut g) = a.alloc.lock() {
            if let Some(l) = g.free.get_mut(usize::from(class)) {
                l.push(addr);
            }
        }
    }
}
