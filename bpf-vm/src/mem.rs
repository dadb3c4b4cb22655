//! Memory regions a running program may touch, for checked execution.

use std::any::Any;
use std::sync::Arc;

use smallvec::SmallVec;

/// Something kept alive until the run ends because the program holds a pointer into it.
pub(crate) type KeepAlive = Arc<dyn Any + Send + Sync>;

/// One accessible byte range `[lo, hi)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub lo: u64,
    pub hi: u64,
    pub writable: bool,
}

/// The regions of one run: the active stack frames, fixed regions (memory,
/// packet, context) and regions handed out by helpers (map values, ring-buffer
/// records), plus the objects those point into.
pub(crate) struct MemState {
    /// Lowest address of the deepest active stack frame.
    pub stack_lo: u64,
    /// One past the top of the outermost stack frame.
    pub stack_hi: u64,
    pub regions: SmallVec<[Region; 8]>,
    pub keep: Vec<KeepAlive>,
}

impl MemState {
    pub fn new(stack_lo: u64, stack_hi: u64) -> MemState {
        MemState {
            stack_lo,
            stack_hi,
            regions: SmallVec::new(),
            keep: Vec::new(),
        }
    }

    /// Adds a region (empty ones are ignored).
    pub fn add(&mut self, lo: u64, len: u64, writable: bool) {
        if len == 0 {
            return;
        }
        let hi = lo.saturating_add(len);
        self.regions.push(Region { lo, hi, writable });
    }

    /// Whether `[addr, addr + size)` lies inside one region allowing the access.
    #[inline]
    pub fn allows(&self, addr: u64, size: u64, write: bool) -> bool {
        let Some(end) = addr.checked_add(size) else {
            return false;
        };
        if addr >= self.stack_lo && end <= self.stack_hi {
            return true;
        }
        self.regions
            .iter()
            .any(|r| addr >= r.lo && end <= r.hi && (r.writable || !write))
    }
}
