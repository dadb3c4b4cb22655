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

/// A region no access lies in.
const NO_REGION: Region = Region {
    lo: u64::MAX,
    hi: 0,
    writable: false,
};

/// The regions of one run: the active stack frames, fixed regions (memory,
/// packet, context) and regions handed out by helpers (map values, ring-buffer
/// records), plus the objects those point into.
///
/// Regions are only ever added during a run, so the region that satisfied
/// the last access (`last`, tried first) stays valid until the run ends.
pub(crate) struct MemState {
    /// Lowest address of the deepest active stack frame of the main stack.
    pub stack_lo: u64,
    /// One past the top of the outermost stack frame.
    pub stack_hi: u64,
    /// Active frames of the deep stack (frames past the main stack's
    /// capacity, reachable only through tail calls from subprograms):
    /// `[deep_lo, deep_hi)`, empty (`lo > hi`) while none is active.
    pub deep_lo: u64,
    /// One past the top of the deep stack's outermost frame.
    pub deep_hi: u64,
    pub regions: SmallVec<[Region; 8]>,
    /// The region that allowed the last non-stack access.
    last: Region,
    pub keep: Vec<KeepAlive>,
}

impl MemState {
    pub fn new(stack_lo: u64, stack_hi: u64) -> MemState {
        MemState {
            stack_lo,
            stack_hi,
            deep_lo: u64::MAX,
            deep_hi: 0,
            regions: SmallVec::new(),
            last: NO_REGION,
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

    /// Whether `[addr, addr + size)` lies inside one region allowing the
    /// access (helpers' view: no region cache update).
    pub fn allows(&self, addr: u64, size: u64, write: bool) -> bool {
        let Some(end) = addr.checked_add(size) else {
            return false;
        };
        self.in_stack(addr, end)
            || self
                .regions
                .iter()
                .any(|r| addr >= r.lo && end <= r.hi && (r.writable || !write))
    }

    #[inline(always)]
    fn in_stack(&self, addr: u64, end: u64) -> bool {
        (addr >= self.stack_lo && end <= self.stack_hi)
            || (addr >= self.deep_lo && end <= self.deep_hi)
    }

    /// [`MemState::allows`] for the interpreter's loads and stores: tries
    /// the stack, then the region of the last hit, then the rest (caching
    /// the hit).
    #[inline(always)]
    pub fn check(&mut self, addr: u64, size: u64, write: bool) -> bool {
        let end = addr.wrapping_add(size);
        if end < addr {
            return false;
        }
        let l = &self.last;
        if addr >= l.lo && end <= l.hi && (l.writable || !write) {
            return true;
        }
        if addr >= self.stack_lo && end <= self.stack_hi {
            return true;
        }
        self.check_slow(addr, end, write)
    }

    #[inline(never)]
    fn check_slow(&mut self, addr: u64, end: u64, write: bool) -> bool {
        if addr >= self.deep_lo && end <= self.deep_hi {
            return true;
        }
        match self
            .regions
            .iter()
            .find(|r| addr >= r.lo && end <= r.hi && (r.writable || !write))
        {
            Some(r) => {
                self.last = *r;
                true
            }
            None => false,
        }
    }
}
