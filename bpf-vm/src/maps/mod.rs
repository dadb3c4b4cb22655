//! BPF maps with the kernel's semantics: array, hash, LRU hash, per-CPU array
//! and hash, program array (tail calls) and ring buffer.
//!
//! Every map is thread-safe and may be shared (`Arc<Map>`) between programs,
//! threads and userspace. Map values live at stable addresses: a program holds
//! a raw pointer to a value for the rest of its run, as in the kernel (where RCU
//! keeps a deleted element alive until the program finishes); here the run
//! keeps the value's storage alive instead.

mod array;
mod hash;
mod ringbuf;

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use thiserror::Error;

pub use array::ArrayMap;
pub use hash::HashMap;
pub use ringbuf::RingBuf;

use crate::engine::LoadedProgram;
use crate::interp::Interpreter;
use crate::mem::KeepAlive;

/// `BPF_ANY`: create or update.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create only.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update only.
pub const BPF_EXIST: u64 = 2;

/// Linux errno values returned (negated) to programs.
pub mod errno {
    /// No such entry.
    pub const ENOENT: i64 = 2;
    /// Argument list too long (map full, index out of range).
    pub const E2BIG: i64 = 7;
    /// Out of memory.
    pub const ENOMEM: i64 = 12;
    /// Busy.
    pub const EBUSY: i64 = 16;
    /// Entry exists.
    pub const EEXIST: i64 = 17;
    /// Invalid argument.
    pub const EINVAL: i64 = 22;
}

/// A map operation's failure, with the kernel's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum MapError {
    /// `-ENOENT`: no such key.
    #[error("no such entry (ENOENT)")]
    NoEntry,
    /// `-EEXIST`: key exists and `BPF_NOEXIST` was given.
    #[error("entry exists (EEXIST)")]
    Exists,
    /// `-E2BIG`: map full or index out of range.
    #[error("map full or index out of range (E2BIG)")]
    TooBig,
    /// `-EINVAL`: bad flags, sizes or operation for this map type.
    #[error("invalid argument (EINVAL)")]
    Invalid,
    /// `-ENOMEM`: no room (ring buffer).
    #[error("out of memory (ENOMEM)")]
    NoMem,
}

impl MapError {
    /// The negative errno a helper returns for this error.
    pub fn to_errno(self) -> i64 {
        -match self {
            MapError::NoEntry => errno::ENOENT,
            MapError::Exists => errno::EEXIST,
            MapError::TooBig => errno::E2BIG,
            MapError::Invalid => errno::EINVAL,
            MapError::NoMem => errno::ENOMEM,
        }
    }
}

/// Kernel map type (`enum bpf_map_type` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH` (1).
    Hash,
    /// `BPF_MAP_TYPE_ARRAY` (2).
    Array,
    /// `BPF_MAP_TYPE_PROG_ARRAY` (3).
    ProgArray,
    /// `BPF_MAP_TYPE_PERCPU_HASH` (5).
    PercpuHash,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` (6).
    PercpuArray,
    /// `BPF_MAP_TYPE_LRU_HASH` (9).
    LruHash,
    /// `BPF_MAP_TYPE_RINGBUF` (27).
    RingBuf,
}

impl MapType {
    /// The kernel's numeric map type.
    pub fn kernel_id(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PercpuHash => 5,
            MapType::PercpuArray => 6,
            MapType::LruHash => 9,
            MapType::RingBuf => 27,
        }
    }

    /// The map type with kernel number `id`, if supported.
    pub fn from_kernel_id(id: u32) -> Option<MapType> {
        Some(match id {
            1 => MapType::Hash,
            2 => MapType::Array,
            3 => MapType::ProgArray,
            5 => MapType::PercpuHash,
            6 => MapType::PercpuArray,
            9 => MapType::LruHash,
            27 => MapType::RingBuf,
            _ => return None,
        })
    }
}

/// A map's definition (what `BPF_MAP_CREATE` takes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// The type.
    pub map_type: MapType,
    /// Key size in bytes (4 for arrays, 0 for ring buffers).
    pub key_size: u32,
    /// Value size in bytes (4 for prog arrays, 0 for ring buffers).
    pub value_size: u32,
    /// Capacity (ring buffers: data size in bytes, a power of two).
    pub max_entries: u32,
}

/// Number of CPUs per-CPU maps keep a slot for, unless a map says otherwise.
static DEFAULT_NCPUS: AtomicU32 = AtomicU32::new(4);
static NEXT_CPU: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static CURRENT_CPU: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Sets the number of CPUs that per-CPU maps created afterwards provide (at least 1).
pub fn set_default_ncpus(n: u32) {
    DEFAULT_NCPUS.store(n.max(1), Ordering::Relaxed);
}

/// The number of CPUs new per-CPU maps provide.
pub fn default_ncpus() -> u32 {
    DEFAULT_NCPUS.load(Ordering::Relaxed)
}

/// The CPU number of the calling thread: assigned round-robin on first use, or
/// set with [`set_current_cpu`]. Per-CPU maps use it modulo their CPU count and
/// `bpf_get_smp_processor_id` returns it.
pub fn current_cpu() -> u32 {
    CURRENT_CPU.with(|c| match c.get() {
        Some(v) => v,
        None => {
            let v = NEXT_CPU.fetch_add(1, Ordering::Relaxed) % default_ncpus();
            c.set(Some(v));
            v
        }
    })
}

/// Pins the calling thread to CPU slot `cpu` for per-CPU maps.
pub fn set_current_cpu(cpu: u32) {
    CURRENT_CPU.with(|c| c.set(Some(cpu)));
}

/// Zeroed, 8-byte aligned storage with interior mutability: programs write it
/// through raw pointers while it is shared. Allocated from the shared arena
/// ([`crate::shared`]) when it is enabled (so AArch64 programs in the
/// emulator reach it), else on the heap.
pub(crate) struct Storage {
    words: Box<[AtomicU64]>,
    /// `(address, size class)` of an arena block (then `words` is empty).
    arena: Option<(u64, u8)>,
    bytes: usize,
}

impl Storage {
    pub fn zeroed(bytes: usize) -> Storage {
        let n = bytes.div_ceil(8);
        if n > 0 {
            if let Some(block) = crate::shared::alloc(n * 8) {
                return Storage {
                    words: Box::default(),
                    arena: Some(block),
                    bytes: n * 8,
                };
            }
        }
        Storage {
            words: (0..n).map(|_| AtomicU64::new(0)).collect(),
            arena: None,
            bytes: n * 8,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn ptr(&self) -> *mut u8 {
        match self.arena {
            Some((addr, _)) => addr as *mut u8,
            None => self.words.as_ptr() as *mut u8,
        }
    }

    /// Copies `out.len()` bytes starting at `off` out (bounds-checked).
    pub fn read(&self, off: usize, out: &mut [u8]) -> bool {
        if off.checked_add(out.len()).is_none_or(|e| e > self.len()) {
            return false;
        }
        // SAFETY: range checked above; the words are plain memory with interior
        // mutability, read bytewise.
        unsafe { std::ptr::copy(self.ptr().add(off), out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copies `data` in at `off` (bounds-checked).
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        if off.checked_add(data.len()).is_none_or(|e| e > self.len()) {
            return false;
        }
        // SAFETY: range checked above; writes through the interior-mutable words.
        unsafe { std::ptr::copy(data.as_ptr(), self.ptr().add(off), data.len()) };
        true
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((addr, class)) = self.arena {
            crate::shared::free(addr, class);
        }
    }
}

/// A pointer a program may use, the length behind it, and what keeps it alive.
pub(crate) struct ValueRef {
    pub ptr: u64,
    pub len: u64,
    pub keep: KeepAlive,
}

/// A program array: slots holding programs for `bpf_tail_call`, for the
/// interpreter and (as entry addresses in a [`bpf_jit::JitProgArray`]) for
/// JIT-compiled code; see [`ProgArray::set_program`].
///
/// # Ownership
///
/// The array owns the programs in its slots; a program does not own the
/// array it tail-calls through. Programs keep only the array's slot table
/// alive (so compiled code never reads freed memory), not the [`Map`]
/// itself. When the map is dropped — the last `Arc<Map>` held by its owner
/// (the loader or object collection that created it) goes away — every
/// slot is cleared, as the kernel clears a program array when its last
/// user reference is closed. So a program that sits in the array it
/// tail-calls through is freed once the owner drops the array and the
/// program; there is no reference cycle to break by hand.
/// [`ProgArray::clear`] empties the slots explicitly.
///
/// A compiled program replaced in (or cleared from) a slot may still be
/// running on some thread: it goes to a retire list and is freed once no
/// compiled run is in flight (see [`crate::engine::retired_programs`]).
/// After a tail call fails on an emptied slot, the program continues with
/// the next instruction, as in the kernel.
pub struct ProgArray {
    shared: Arc<ProgArrayShared>,
}

/// The part of a program array programs keep alive: the slots and the
/// table compiled code reads.
pub(crate) struct ProgArrayShared {
    slots: RwLock<Vec<Option<LoadedProgram>>>,
    jit: bpf_jit::JitProgArray,
    /// The same table for AArch64 programs (emulator entry addresses), in
    /// the shared arena ([`crate::shared`]); present when the arena was
    /// enabled before the array was created.
    a64: Option<Storage>,
    /// Stack kind of the compiled programs that use it (tail call through
    /// it or sit in its slots): 0 not yet known, 1 native stack, 2 private
    /// stack. A tail call keeps the caller's kind of frame, so the kinds
    /// must not mix (the first compiled user decides, as the kernel's
    /// program-array owner does for program types).
    stack_kind: std::sync::atomic::AtomicU8,
}

impl ProgArrayShared {
    /// The table compiled code reads (and direct tail-call sites register with).
    pub(crate) fn jit_table(&self) -> &bpf_jit::JitProgArray {
        &self.jit
    }

    /// Records that a compiled program with (`private`) or without a
    /// private stack uses this array; `false` if the array already belongs
    /// to the other kind.
    pub(crate) fn claim_stack_kind(&self, private: bool) -> bool {
        use std::sync::atomic::Ordering;
        let want = if private { 2 } else { 1 };
        match self
            .stack_kind
            .compare_exchange(0, want, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(have) => have == want,
        }
    }

    /// The address of the AArch64 table (`max_entries`, then the slots'
    /// emulator entry addresses), if the array lives in the shared arena.
    pub(crate) fn a64_handle(&self) -> Option<u64> {
        self.a64.as_ref().map(|t| t.ptr() as u64)
    }

    /// The handle programs load for this array (`ld_imm64`) and pass to
    /// `bpf_tail_call`: the address of the compiled table, for both engines.
    pub(crate) fn handle(&self) -> u64 {
        self.jit.as_ptr()
    }

    /// The interpreted program in slot `idx`, if any.
    pub(crate) fn interp(&self, idx: u32) -> Option<Arc<Interpreter>> {
        let g = self.slots.read().ok()?;
        g.get(idx as usize)?.as_ref()?.interpreter().cloned()
    }

    /// Every program currently in a slot.
    pub(crate) fn programs(&self) -> Vec<LoadedProgram> {
        match self.slots.read() {
            Ok(g) => g.iter().flatten().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Puts `prog` in slot `idx` for both engines; the program it replaces
    /// is retired (compiled code) or released.
    fn set_slot(&self, idx: u32, prog: Option<LoadedProgram>) -> Result<(), MapError> {
        let old = {
            let mut g = self.slots.write().map_err(|_| MapError::Invalid)?;
            let slot = g.get_mut(idx as usize).ok_or(MapError::TooBig)?;
            if let Some(j) = prog.as_ref().and_then(|p| p.jit()) {
                if !self.claim_stack_kind(j.code().private_stack()) {
                    // Native-stack and private-stack programs cannot tail
                    // call each other.
                    return Err(MapError::Invalid);
                }
            }
            if let Some(a) = prog.as_ref().and_then(|p| p.arm64()) {
                if self.a64.is_none() {
                    // Created before the shared arena: AArch64 code cannot read it.
                    return Err(MapError::Invalid);
                }
                if !self.claim_stack_kind(a.private_stack()) {
                    return Err(MapError::Invalid);
                }
            }
            let entry = prog
                .as_ref()
                .and_then(|p| p.jit())
                .map_or(0, |j| j.entry_address());
            let a64_entry = prog
                .as_ref()
                .and_then(|p| p.arm64())
                .map_or(0, |a| a.entry_address());
            // Unlink from the compiled tables before the old program is retired.
            self.jit.set(idx, entry).map_err(|_| MapError::TooBig)?;
            if let Some(t) = &self.a64 {
                let off = (bpf_jit::PROG_ARRAY_SLOTS_OFFSET as usize)
                    .saturating_add((idx as usize).saturating_mul(8));
                let slot = t.ptr().wrapping_add(off).cast::<AtomicU64>();
                if off.saturating_add(8) <= t.len() {
                    // SAFETY: an 8-aligned word inside the table (checked);
                    // AArch64 code reads it in the emulator meanwhile.
                    unsafe { (*slot).store(a64_entry, Ordering::SeqCst) };
                }
            }
            std::mem::replace(slot, prog)
        };
        if let Some(old) = old {
            crate::engine::retire(old);
        }
        crate::engine::note_slot_change();
        Ok(())
    }

    /// Empties every slot.
    fn clear(&self) {
        let n = self.jit.max_entries();
        for i in 0..n {
            let _ = self.set_slot(i, None);
        }
    }
}

/// An AArch64 program-array table of `n` slots in the shared arena, if enabled.
fn a64_table(n: u32) -> Option<Storage> {
    crate::shared::arena()?;
    let slots = bpf_jit::PROG_ARRAY_SLOTS_OFFSET as usize;
    let t = Storage::zeroed(slots + 8 * n as usize);
    if !crate::shared::contains(t.ptr() as u64, t.len() as u64) {
        return None;
    }
    let off = bpf_jit::PROG_ARRAY_MAX_ENTRIES_OFFSET as usize;
    t.write(off, &n.to_le_bytes());
    Some(t)
}

impl ProgArray {
    fn new(n: u32) -> ProgArray {
        ProgArray {
            shared: Arc::new(ProgArrayShared {
                slots: RwLock::new(vec![None; n as usize]),
                jit: bpf_jit::JitProgArray::new(n),
                a64: a64_table(n),
                stack_kind: std::sync::atomic::AtomicU8::new(0),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ProgArrayShared> {
        &self.shared
    }

    /// The table compiled code reads on a tail call.
    pub fn jit_table(&self) -> &bpf_jit::JitProgArray {
        &self.shared.jit
    }

    /// Puts interpreted program `prog` in slot `idx` (or clears it with `None`).
    pub fn set(&self, idx: u32, prog: Option<Arc<Interpreter>>) -> Result<(), MapError> {
        self.shared
            .set_slot(idx, prog.map(LoadedProgram::from_interpreter))
    }

    /// Puts `prog` in slot `idx` (or clears it with `None`) for both engines:
    /// an interpreted program becomes the interpreter's tail-call target, a
    /// compiled one the compiled code's. A compiled program replaced here is
    /// freed once no compiled run is in flight. Compiled programs with and
    /// without a private stack cannot share an array (a tail call keeps
    /// the caller's kind of frame): the first compiled program that uses
    /// it decides, a program of the other kind is refused with
    /// [`MapError::Invalid`].
    pub fn set_program(&self, idx: u32, prog: Option<&LoadedProgram>) -> Result<(), MapError> {
        self.shared.set_slot(idx, prog.cloned())
    }

    /// The interpreted program in slot `idx`, if any.
    pub fn get(&self, idx: u32) -> Option<Arc<Interpreter>> {
        self.shared.interp(idx)
    }

    /// The program in slot `idx`, if any (either engine).
    pub fn program(&self, idx: u32) -> Option<LoadedProgram> {
        let g = self.shared.slots.read().ok()?;
        g.get(idx as usize).cloned().flatten()
    }

    /// Empties every slot (what dropping the array does).
    pub fn clear(&self) {
        self.shared.clear();
    }
}

impl Drop for ProgArray {
    fn drop(&mut self) {
        self.shared.clear();
    }
}

/// The type-specific part of a map.
pub enum MapKind {
    /// Array or per-CPU array.
    Array(ArrayMap),
    /// Hash, LRU hash or per-CPU hash.
    Hash(HashMap),
    /// Program array.
    ProgArray(ProgArray),
    /// Ring buffer.
    RingBuf(RingBuf),
}

/// A BPF map.
pub struct Map {
    def: MapDef,
    kind: MapKind,
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map").field("def", &self.def).finish()
    }
}

impl Map {
    /// Creates a map; per-CPU maps get [`default_ncpus`] slots.
    pub fn new(def: MapDef) -> Result<Arc<Map>, MapError> {
        Map::with_ncpus(def, default_ncpus())
    }

    /// Creates a map; per-CPU maps get `ncpus` slots.
    pub fn with_ncpus(def: MapDef, ncpus: u32) -> Result<Arc<Map>, MapError> {
        let ncpus = ncpus.max(1);
        let kind = match def.map_type {
            MapType::Array | MapType::PercpuArray => {
                if def.key_size != 4 || def.value_size == 0 || def.max_entries == 0 {
                    return Err(MapError::Invalid);
                }
                let per_cpu = def.map_type == MapType::PercpuArray;
                MapKind::Array(ArrayMap::new(
                    def.value_size,
                    def.max_entries,
                    if per_cpu { ncpus } else { 1 },
                    per_cpu,
                ))
            }
            MapType::Hash | MapType::LruHash | MapType::PercpuHash => {
                if def.key_size == 0 || def.value_size == 0 || def.max_entries == 0 {
                    return Err(MapError::Invalid);
                }
                let per_cpu = def.map_type == MapType::PercpuHash;
                MapKind::Hash(HashMap::new(
                    def.key_size,
                    def.value_size,
                    def.max_entries,
                    def.map_type == MapType::LruHash,
                    if per_cpu { ncpus } else { 1 },
                    per_cpu,
                ))
            }
            MapType::ProgArray => {
                if def.key_size != 4 || def.value_size != 4 || def.max_entries == 0 {
                    return Err(MapError::Invalid);
                }
                MapKind::ProgArray(ProgArray::new(def.max_entries))
            }
            MapType::RingBuf => {
                if def.key_size != 0
                    || def.value_size != 0
                    || !def.max_entries.is_power_of_two()
                    || def.max_entries < 4096
                {
                    return Err(MapError::Invalid);
                }
                MapKind::RingBuf(RingBuf::new(def.max_entries))
            }
        };
        Ok(Arc::new(Map { def, kind }))
    }

    /// The definition.
    pub fn def(&self) -> &MapDef {
        &self.def
    }

    /// The type-specific part (for prog-array slots and ring-buffer consumers).
    pub fn kind(&self) -> &MapKind {
        &self.kind
    }

    /// The ring buffer, if this is one.
    pub fn as_ringbuf(&self) -> Option<&RingBuf> {
        match &self.kind {
            MapKind::RingBuf(r) => Some(r),
            _ => None,
        }
    }

    /// The program array, if this is one.
    pub fn as_prog_array(&self) -> Option<&ProgArray> {
        match &self.kind {
            MapKind::ProgArray(p) => Some(p),
            _ => None,
        }
    }

    /// Userspace lookup. Per-CPU maps return every CPU's value, each padded to 8 bytes.
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<u8>, MapError> {
        self.check_key(key)?;
        match &self.kind {
            MapKind::Array(a) => a.lookup_user(key),
            MapKind::Hash(h) => h.lookup_user(key),
            _ => Err(MapError::Invalid),
        }
    }

    /// Userspace update with `BPF_ANY` / `BPF_NOEXIST` / `BPF_EXIST`. Per-CPU
    /// maps take every CPU's value, each padded to 8 bytes.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        self.check_key(key)?;
        match &self.kind {
            MapKind::Array(a) => a.update(key, value, flags, None),
            MapKind::Hash(h) => h.update(key, value, flags, None),
            _ => Err(MapError::Invalid),
        }
    }

    /// Userspace delete.
    pub fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        match &self.kind {
            MapKind::Array(_) => Err(MapError::Invalid),
            MapKind::Hash(h) => h.delete(key),
            _ => Err(MapError::Invalid),
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.def.key_size as usize {
            return Err(MapError::Invalid);
        }
        Ok(())
    }

    /// Program-side lookup: a pointer to the value (this CPU's for per-CPU maps).
    pub(crate) fn lookup_ptr(&self, key: &[u8]) -> Option<ValueRef> {
        match &self.kind {
            MapKind::Array(a) => a.lookup_ptr(key),
            MapKind::Hash(h) => h.lookup_ptr(key),
            _ => None,
        }
    }

    /// Program-side update (per-CPU maps: this CPU's value only).
    pub(crate) fn update_prog(&self, key: &[u8], value: &[u8], flags: u64) -> i64 {
        let cpu = Some(current_cpu());
        let r = match &self.kind {
            MapKind::Array(a) => a.update(key, value, flags, cpu),
            MapKind::Hash(h) => h.update(key, value, flags, cpu),
            _ => Err(MapError::Invalid),
        };
        match r {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// Program-side delete.
    pub(crate) fn delete_prog(&self, key: &[u8]) -> i64 {
        match self.delete(key) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// The address of `off` in the value of key 0, for `ld_imm64` map-value references (arrays only).
    pub(crate) fn direct_value(&self, off: u32) -> Option<ValueRef> {
        match &self.kind {
            MapKind::Array(a) if !a.per_cpu() && off < self.def.value_size => {
                let v = a.lookup_ptr(&0u32.to_le_bytes())?;
                Some(ValueRef {
                    ptr: v.ptr + off as u64,
                    len: v.len - off as u64,
                    keep: v.keep,
                })
            }
            _ => None,
        }
    }
}
