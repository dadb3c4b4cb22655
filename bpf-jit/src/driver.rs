//! The target-independent driver: plans subprograms and frames, resolves
//! helpers and `ld_imm64` pseudo sources, then lowers the program in one
//! pass with displacement fix-ups when the first pass's guesses hold, else
//! pass after pass until the layout converges.

use bpf_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, LdImm64Src, Program, Reg, Size, Source, Width,
};

use bpf_callgraph::CallGraph;

use crate::buffer::{CodeBuffer, Label};
use crate::error::{JitError, JitErrorKind};
use crate::masm::{
    AluKind, DivKind, EntryKind, ExtendKind, FrameInfo, IntCmpKind, MacroAssembler, OperandSize,
    RegImm, RmwKind, ShiftKind,
};
use crate::patch::DirectTailCall;

/// The native signature of a helper: five `u64` arguments (eBPF `r1`-`r5`),
/// one `u64` result (eBPF `r0`).
pub type HelperFn = unsafe extern "C" fn(u64, u64, u64, u64, u64) -> u64;

/// Helper id → native function, supplied by the caller.
///
/// Entries are either host functions ([`HelperTable::insert`]) or raw
/// addresses in the address space the code will run in
/// ([`HelperTable::insert_address`]: e.g. a cross-compiled image run under
/// an emulator).
#[derive(Clone, Debug, Default)]
pub struct HelperTable {
    /// Sorted by id.
    entries: Vec<(i32, HelperEntry)>,
    /// `bpf_fastcall` helpers: id and the eBPF registers (bit `i` for `ri`,
    /// `r0`-`r5`) calls to it must leave intact. Sorted by id; no zero masks.
    preserve: Vec<(i32, u16)>,
}

#[derive(Clone, Copy, Debug)]
enum HelperEntry {
    Fn(HelperFn),
    Addr(u64),
}

impl HelperEntry {
    fn address(self) -> u64 {
        match self {
            HelperEntry::Fn(f) => f as usize as u64,
            HelperEntry::Addr(a) => a,
        }
    }
}

impl HelperTable {
    /// An empty table.
    pub fn new() -> HelperTable {
        HelperTable::default()
    }

    /// Registers (or replaces) helper `id`.
    pub fn insert(&mut self, id: i32, f: HelperFn) -> &mut HelperTable {
        self.set_preserve(id, 0);
        self.put(id, HelperEntry::Fn(f))
    }

    /// Registers (or replaces) helper `id` as a `bpf_fastcall` function:
    /// compiled calls to it leave the eBPF registers in `preserve` intact
    /// (bit `i` for `ri`; only `r0`-`r5` count, the others survive every
    /// call anyway), whatever the native function does to them. This is
    /// what makes a program whose spill/fill brackets around the call were
    /// removed (`bpf_verifier::nocsr`) correct: pass the registers the
    /// helper neither takes nor returns.
    pub fn insert_fastcall(&mut self, id: i32, f: HelperFn, preserve: u16) -> &mut HelperTable {
        self.set_preserve(id, preserve);
        self.put(id, HelperEntry::Fn(f))
    }

    /// Registers (or replaces) helper `id` as a raw code address in the
    /// address space the compiled code will run in (which need not be this
    /// process: cross-compiled code run under an emulator). The code calls
    /// it with the native C ABI, as [`HelperFn`].
    pub fn insert_address(&mut self, id: i32, addr: u64) -> &mut HelperTable {
        self.set_preserve(id, 0);
        self.put(id, HelperEntry::Addr(addr))
    }

    /// [`HelperTable::insert_address`] for a `bpf_fastcall` function whose
    /// calls must leave the eBPF registers in `preserve` intact (see
    /// [`HelperTable::insert_fastcall`]).
    pub fn insert_address_fastcall(
        &mut self,
        id: i32,
        addr: u64,
        preserve: u16,
    ) -> &mut HelperTable {
        self.set_preserve(id, preserve);
        self.put(id, HelperEntry::Addr(addr))
    }

    /// Sets (or, with 0, clears) the registers calls to helper `id` must
    /// preserve, without changing its function (see
    /// [`HelperTable::insert_fastcall`]). Bits above `r5` are dropped.
    pub fn set_preserve(&mut self, id: i32, preserve: u16) -> &mut HelperTable {
        let preserve = preserve & PRESERVABLE;
        match self.preserve.binary_search_by_key(&id, |e| e.0) {
            Ok(i) if preserve == 0 => {
                self.preserve.remove(i);
            }
            Ok(i) => {
                if let Some(e) = self.preserve.get_mut(i) {
                    e.1 = preserve;
                }
            }
            Err(_) if preserve == 0 => {}
            Err(i) => self.preserve.insert(i, (id, preserve)),
        }
        self
    }

    /// The registers calls to helper `id` must preserve (bit `i` for `ri`;
    /// 0 for an ordinary helper, which may clobber `r0`-`r5`).
    pub fn preserve_mask(&self, id: i32) -> u16 {
        self.preserve
            .binary_search_by_key(&id, |e| e.0)
            .ok()
            .and_then(|i| self.preserve.get(i))
            .map_or(0, |e| e.1)
    }

    fn put(&mut self, id: i32, e: HelperEntry) -> &mut HelperTable {
        match self.entries.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => {
                if let Some(old) = self.entries.get_mut(i) {
                    old.1 = e;
                }
            }
            Err(i) => self.entries.insert(i, (id, e)),
        }
        self
    }

    /// The host function registered for `id` (`None` for an unknown id or
    /// one registered with [`HelperTable::insert_address`]).
    pub fn get(&self, id: i32) -> Option<HelperFn> {
        let i = self.entries.binary_search_by_key(&id, |e| e.0).ok()?;
        match self.entries.get(i)?.1 {
            HelperEntry::Fn(f) => Some(f),
            HelperEntry::Addr(_) => None,
        }
    }

    /// The code address registered for `id`, however it was registered.
    pub fn address(&self, id: i32) -> Option<u64> {
        let i = self.entries.binary_search_by_key(&id, |e| e.0).ok()?;
        self.entries.get(i).map(|e| e.1.address())
    }

    /// Number of registered helpers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no helper is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Resolves an `ld_imm64` pseudo source (map fd, map value, BTF id, map
/// index, …) to the 64-bit value to load: called once per such instruction
/// with its slot index. `None` fails the compilation with
/// [`JitErrorKind::UnresolvedLdImm64`].
pub type LdImm64Resolver<'a> = &'a dyn Fn(usize, LdImm64Src) -> Option<u64>;

/// Resolves a kfunc call (`call kfunc#btf_id`, with `off` selecting the
/// module BTF, 0 for vmlinux) to the address of a native function called
/// with the C ABI as helpers are ([`HelperFn`]). `None` fails the
/// compilation naming the call.
pub type KfuncResolver<'a> = &'a dyn Fn(i32, i16) -> Option<u64>;

/// The registers a `bpf_fastcall` preserve mask can name: `r0`-`r5` (bit
/// `i` for `ri`).
pub const PRESERVABLE: u16 = 0b11_1111;

/// Helper id of `bpf_tail_call`.
pub const TAIL_CALL_HELPER: i32 = 12;

/// Default eBPF stack per frame when no stack depths are supplied (`MAX_BPF_STACK`).
pub const DEFAULT_STACK_DEPTH: u32 = 512;

/// Most layout passes with short branches allowed before the driver falls
/// back to long forms everywhere (two more passes, which always converge).
///
/// The first pass guesses optimistically (short forms wherever a guess fits;
/// see [`CodeBuffer::begin_optimistic_pass`]; with a backend that records
/// its label fields, most programs are then done in that one pass), each
/// later one estimates from the layout of the one before; so most of the
/// rest converge in two passes, and one whose sizes keep changing is cut
/// off here.
///
/// [`CodeBuffer::begin_optimistic_pass`]: crate::CodeBuffer::begin_optimistic_pass
pub const MAX_RELAX_PASSES: u32 = 16;

/// What the caller supplies besides the program.
#[derive(Clone, Copy)]
pub struct JitOptions<'a> {
    /// Helper id → native function.
    pub helpers: &'a HelperTable,
    /// Resolver of `ld_imm64` pseudo sources; without one they fail to compile.
    pub ld_imm64: Option<LdImm64Resolver<'a>>,
    /// Stack depth per subprogram in bytes (in subprogram order); without
    /// it, or for subprograms past its end, every frame gets
    /// [`DEFAULT_STACK_DEPTH`] bytes.
    pub stack_depths: Option<&'a [u32]>,
    /// Put every frame's eBPF stack in a private region supplied by the
    /// caller instead of on the native stack (see [`FrameInfo::private_stack`]).
    /// The main entry is then called as `entry(r1, r2, r3, r4, r5, top)`
    /// where `top` (16-byte aligned) is the address just above a region of
    /// at least the size the runtime derives from
    /// [`CompiledCode::private_stack_bytes`]; the region grows downward.
    /// Programs with callback subprograms are refused
    /// ([`JitErrorKind::PrivateStack`]). Off by default.
    pub private_stack: bool,
    /// Compile tail calls whose prog array and index are constant
    /// ([`crate::tailsite`]) to patchable direct jumps
    /// ([`crate::patch`]; listed in [`CompiledCode::direct_tail_calls`]).
    /// Such a site takes no tail call until its image is registered with
    /// the array ([`crate::JitProgram::attach`]). Off by default.
    pub direct_tail_calls: bool,
    /// Constant blinding (the kernel's `bpf_jit_blind_constants`): with a
    /// seed, every immediate of the program (ALU and jump immediates but
    /// shift amounts, `st` immediates, `ld_imm64` values, `ld_abs`/`ld_ind`
    /// offsets) is loaded into the backend's hidden register
    /// ([`MacroAssembler::ax_reg`]) as `imm ^ key` and recovered with
    /// `^ key`, then used as a register operand, so that no
    /// program-chosen immediate appears in the image. Each instruction
    /// gets its own 32-bit key, derived from the seed and its position;
    /// pass a fresh random seed per compilation ([`random_blinding_seed`]).
    /// `None` (default): off.
    pub blind_constants: Option<u64>,
    /// The native function `ld_abs`/`ld_ind` (legacy packet loads) call,
    /// as a [`HelperFn`] address: `f(ctx, offset, size)`, with `ctx` = eBPF
    /// `r6`, `offset` whose low 32 bits are the signed packet offset (the
    /// immediate, or `src + imm`), and `size` 1, 2 or 4. It returns the
    /// loaded bytes as a host-order number (network order converted, as
    /// the kernel's `bpf_skb_load_helper_*`), or a negative value when the
    /// load fails, which ends the program with `r0 = 0`. `r1`-`r5` are
    /// clobbered. Without it such instructions are refused; they are only
    /// allowed in the main subprogram (the kernel forbids them in programs
    /// with bpf-to-bpf calls).
    pub ld_abs: Option<u64>,
    /// Resolver of kfunc calls; without one they are refused.
    pub kfuncs: Option<KfuncResolver<'a>>,
    /// Lower a bpf-to-bpf call to a small leaf subprogram as the
    /// subprogram's body in place of the call (see [`MAX_INLINE_BODY`] for
    /// which subprograms qualify). The result is the same as the call's
    /// (`r0`; `r1`-`r5` hold what the callee left, which the verifier
    /// forbids reading anyway), with no `call`/`ret`, prologue or
    /// epilogue. The subprogram is still compiled at its own entry, but an
    /// inlined call does not pass through that entry: a loader that will
    /// patch subprogram entries (the kernel's `freplace` of a global
    /// function) must turn this off. Off with constant blinding. On by
    /// default.
    pub inline_leaf_calls: bool,
}

/// Largest body (instructions before its `exit`) of a subprogram whose
/// calls [`JitOptions::inline_leaf_calls`] lowers in place. Such a
/// subprogram also makes no call of any kind, has no jump (its only
/// `exit` is its last instruction) and names none of `r6`-`r10` (so it
/// needs no frame of its own).
pub const MAX_INLINE_BODY: usize = 16;

/// A seed for [`JitOptions::blind_constants`] that differs from one call
/// to the next (std's randomly keyed hasher over a counter and the time).
pub fn random_blinding_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    h.write_u64(now);
    h.finish()
}

/// `BPF_MAX_LOOPS`: the `may_goto` budget each frame starts with.
pub const MAY_GOTO_BUDGET: u32 = 8 * 1024 * 1024;

impl<'a> JitOptions<'a> {
    /// Options with `helpers`, no resolver and default stack depths.
    pub fn new(helpers: &'a HelperTable) -> JitOptions<'a> {
        JitOptions {
            helpers,
            ld_imm64: None,
            stack_depths: None,
            private_stack: false,
            direct_tail_calls: false,
            blind_constants: None,
            ld_abs: None,
            kfuncs: None,
            inline_leaf_calls: true,
        }
    }

    /// With constant blinding keyed by `seed` (see [`JitOptions::blind_constants`]).
    pub fn with_blinding(mut self, seed: u64) -> JitOptions<'a> {
        self.blind_constants = Some(seed);
        self
    }

    /// With a resolver of kfunc calls (see [`KfuncResolver`]).
    pub fn with_kfuncs(mut self, resolver: KfuncResolver<'a>) -> JitOptions<'a> {
        self.kfuncs = Some(resolver);
        self
    }

    /// With the packet-load function of `ld_abs`/`ld_ind` (see [`JitOptions::ld_abs`]).
    pub fn with_ld_abs(mut self, f: HelperFn) -> JitOptions<'a> {
        self.ld_abs = Some(f as usize as u64);
        self
    }

    /// [`JitOptions::with_ld_abs`] with a raw code address in the address
    /// space the code will run in (e.g. under an emulator).
    pub fn with_ld_abs_address(mut self, addr: u64) -> JitOptions<'a> {
        self.ld_abs = Some(addr);
        self
    }

    /// With (`true`) or without direct tail calls (see [`JitOptions::direct_tail_calls`]).
    pub fn with_direct_tail_calls(mut self, on: bool) -> JitOptions<'a> {
        self.direct_tail_calls = on;
        self
    }

    /// With (`true`) or without the private stack (see [`JitOptions::private_stack`]).
    pub fn with_private_stack(mut self, on: bool) -> JitOptions<'a> {
        self.private_stack = on;
        self
    }

    /// With a resolver of `ld_imm64` pseudo sources.
    pub fn with_ld_imm64(mut self, resolver: LdImm64Resolver<'a>) -> JitOptions<'a> {
        self.ld_imm64 = Some(resolver);
        self
    }

    /// With (`true`) or without inlining of leaf calls (see
    /// [`JitOptions::inline_leaf_calls`]).
    pub fn with_inline_leaf_calls(mut self, on: bool) -> JitOptions<'a> {
        self.inline_leaf_calls = on;
        self
    }

    /// With per-subprogram stack depths (e.g. from the verifier or `bpf-callgraph`).
    pub fn with_stack_depths(mut self, depths: &'a [u32]) -> JitOptions<'a> {
        self.stack_depths = Some(depths);
        self
    }
}

impl core::fmt::Debug for JitOptions<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JitOptions")
            .field("helpers", &self.helpers.len())
            .field("ld_imm64", &self.ld_imm64.is_some())
            .field("stack_depths", &self.stack_depths)
            .field("private_stack", &self.private_stack)
            .field("direct_tail_calls", &self.direct_tail_calls)
            .field("blind_constants", &self.blind_constants.is_some())
            .field("ld_abs", &self.ld_abs.is_some())
            .field("kfuncs", &self.kfuncs.is_some())
            .field("inline_leaf_calls", &self.inline_leaf_calls)
            .finish()
    }
}

/// The machine code of a compiled program, not yet executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledCode {
    /// The image.
    pub code: Vec<u8>,
    /// Byte offset of each subprogram's entry (its prologue), subprogram 0 first.
    pub entries: Vec<u32>,
    /// Position in [`Program::insns`] of each subprogram's first instruction.
    pub subprog_starts: Vec<usize>,
    /// Byte offset of the native code of each eBPF instruction (parallel to
    /// [`Program::insns`]).
    pub insn_offsets: Vec<u32>,
    /// Number of layout passes it took.
    pub passes: u32,
    /// With [`JitOptions::private_stack`]: bytes of private region one
    /// invocation of the main program needs without tail calls (the
    /// deepest bpf-to-bpf call chain's sum of rounded frame depths); 0 when
    /// compiled for the native stack. A tail call replaces the calling
    /// frame but may come from deep in a chain, so a runtime sizes the
    /// region as `(MAX_TAIL_CALL_CNT + 1)` times the largest value among
    /// the programs an invocation can reach.
    pub private_stack_bytes: u32,
    /// Compiled with [`JitOptions::private_stack`].
    pub private_stack: bool,
    /// The direct tail-call sites (with [`JitOptions::direct_tail_calls`]),
    /// ascending by position.
    pub direct_tail_calls: Vec<DirectTailCall>,
    /// Byte offset where the code of the last eBPF instruction ends. What
    /// follows belongs to no single instruction: the `ld_abs`/`ld_ind`
    /// failure exit (up to [`CompiledCode::deferred`]), the backend's
    /// out-of-line code ([`MacroAssembler::emit_deferred`]), and the
    /// `callx` helper table ([`CompiledCode::helper_table`]).
    pub insns_end: u32,
    /// Byte offset of the backend's out-of-line code (x86-64: the cold
    /// paths of divisions by a register), up to the helper table's
    /// alignment padding or the end of the code.
    pub deferred: u32,
    /// Byte offset of the `callx` helper-address table (8-byte entries up
    /// to the end of the image), if the program has a `callx`.
    pub helper_table: Option<u32>,
}

/// Positions in [`Program::insns`] where subprograms start, from
/// `bpf-callgraph` (0 and every target of a local call or of an `ld_imm64`
/// function reference, sorted).
///
/// The call graph's structural checks apply: calls and jumps inside the
/// program, no jump leaving its subprogram, no fall-through between
/// subprograms, no recursion and no unreachable subprogram (the kernel's
/// rules); a violation is a [`JitErrorKind::CallGraph`] naming the slot.
pub fn subprogram_starts(prog: &Program) -> Result<Vec<usize>, JitError> {
    let cg = call_graph(prog)?;
    let mut starts = Vec::with_capacity(cg.len());
    starts_of(prog, &cg, &mut starts)?;
    Ok(starts)
}

fn call_graph(prog: &Program) -> Result<CallGraph, JitError> {
    CallGraph::build(prog).map_err(|e| JitError::at(e.index(), JitErrorKind::CallGraph(e)))
}

/// Appends the position of each subprogram's first instruction to `out`.
fn starts_of(prog: &Program, cg: &CallGraph, out: &mut Vec<usize>) -> Result<(), JitError> {
    for s in cg.subprogs().values() {
        let slot = s.start.slot();
        let pos = prog
            .insn_at_slot(slot)
            .ok_or(JitError::at(slot, JitErrorKind::BadTarget(slot as i64)))?;
        out.push(pos);
    }
    Ok(())
}

/// Position in `insns` of the instruction at `slot + step + off`, where
/// `slot` is the slot of the instruction at position `pos`.
///
/// Tries first the position the target has if no wide (`ld_imm64`)
/// instruction lies in between, then searches.
fn target_pos(
    prog: &Program,
    pos: usize,
    slot: usize,
    step: usize,
    off: i64,
) -> Result<usize, JitError> {
    let t = slot as i64 + step as i64 + off;
    let guess = usize::try_from(pos as i64 + (t - slot as i64)).ok();
    if let Some(g) = guess {
        if prog.starts().get(g).is_some_and(|&s| i64::from(s) == t) {
            return Ok(g);
        }
    }
    usize::try_from(t)
        .ok()
        .and_then(|t| prog.insn_at_slot(t))
        .ok_or_else(|| JitError::at(slot, JitErrorKind::BadTarget(t)))
}

/// Precomputed facts per instruction and per subprogram.
struct Plan {
    /// Label (branch target or subprogram entry) or helper address / ld_imm64 value.
    aux: Vec<u64>,
    frames: Vec<FrameInfo>,
    starts: Vec<usize>,
    /// Whether the program has a `callx` (the image then ends with a helper table).
    has_callx: bool,
    /// See [`CompiledCode::private_stack_bytes`].
    private_stack_bytes: u32,
    /// Helper calls to `bpf_fastcall` helpers: position and preserve mask,
    /// ascending by position.
    fastcall_calls: Vec<(usize, u16)>,
    /// Direct tail calls: position, array value, index; ascending.
    direct: Vec<(usize, u64, u32)>,
    /// The direct sites the current pass emitted.
    direct_sites: core::cell::RefCell<Vec<DirectTailCall>>,
    /// Per subprogram: offset from `r10` of its `may_goto` budget slot
    /// (below the program's stack), when it has a `may_goto`.
    may_goto_slots: Vec<Option<i32>>,
    /// `ld_abs`/`ld_ind` function address, when the program has one.
    ld_abs: Option<u64>,
    /// Constant-blinding seed.
    blind: Option<u64>,
    /// Bit `i` set when instruction `i` is a jump target: straight-line
    /// facts (see [`Ranges`]) end there.
    targets: Vec<u64>,
    /// Divisions and remainders whose register divisor [`Ranges`] proves
    /// neither 0 nor -1, ascending.
    safe_divs: Vec<usize>,
    /// Every division and remainder with a register divisor, ascending
    /// (the scan's; [`Plan::finish`] picks the safe ones).
    divs: Vec<usize>,
    /// Calls lowered as their callee's body ([`JitOptions::inline_leaf_calls`]):
    /// call position, body start, body end (the callee's `exit`); ascending.
    inline: Vec<(usize, usize, usize)>,
    /// Every position [`emit_pass`] cannot lower on its fast path,
    /// ascending and distinct: subprogram starts, `bpf_fastcall` calls,
    /// direct tail calls, safe divisions, `may_goto`, `ld_abs`/`ld_ind`,
    /// and with blinding every instruction.
    specials: Vec<usize>,
}

impl Plan {
    /// Computes [`Plan::safe_divs`] (from [`Plan::divs`]) and
    /// [`Plan::specials`] (`extra`: the `may_goto` and `ld_abs`/`ld_ind`
    /// positions).
    fn finish(mut self, prog: &Program, extra: Vec<usize>) -> Plan {
        if !self.divs.is_empty() {
            let mut safe = core::mem::take(&mut self.safe_divs);
            safe_divisors(prog, &self, &mut safe);
            self.safe_divs = safe;
        }
        let mut sp = core::mem::take(&mut self.specials);
        sp.clear();
        if self.blind.is_some() {
            sp.extend(0..prog.len());
        } else if extra.is_empty()
            && self.fastcall_calls.is_empty()
            && self.direct.is_empty()
            && self.safe_divs.is_empty()
            && self.inline.is_empty()
        {
            // Only the subprogram starts: already ascending and distinct.
            sp.extend_from_slice(&self.starts);
        } else {
            sp.extend_from_slice(&extra);
            sp.extend_from_slice(&self.starts);
            sp.extend(self.fastcall_calls.iter().map(|e| e.0));
            sp.extend(self.direct.iter().map(|e| e.0));
            sp.extend_from_slice(&self.safe_divs);
            sp.extend(self.inline.iter().map(|e| e.0));
            sp.sort_unstable();
            sp.dedup();
        }
        self.specials = sp;
        self
    }

    /// The last jump target in `lo..=hi`, if any.
    fn last_target_in(&self, lo: usize, hi: usize) -> Option<usize> {
        last_bit_in(&self.targets, lo, hi)
    }

    /// Whether position `pos` is a jump target.
    #[inline(always)]
    fn is_target(&self, pos: usize) -> bool {
        self.targets
            .get(pos / 64)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }
}

/// The highest set bit of the bit set `words` (bit `i` is bit `i % 64`
/// of word `i / 64`) in `lo..=hi`, a word at a time.
fn last_bit_in(words: &[u64], lo: usize, hi: usize) -> Option<usize> {
    let mut w = hi / 64;
    // Bits 0..=hi % 64 of the first word looked at.
    let mut mask = u64::MAX >> (63 - hi % 64);
    loop {
        let bits = words.get(w).copied().unwrap_or(0) & mask;
        if bits != 0 {
            let p = w * 64 + 63 - bits.leading_zeros() as usize;
            return (p >= lo).then_some(p);
        }
        if w == 0 || w * 64 <= lo {
            return None;
        }
        w -= 1;
        mask = u64::MAX;
    }
}

/// How many instructions before a division [`safe_divisors`] looks back
/// at most: the facts it needs are nearly always set a few instructions
/// earlier, and the bound keeps the analysis linear in the number of
/// divisions, not the program's length.
const RANGE_WINDOW: usize = 48;

/// Fills `out` with the divisions and remainders of [`Plan::divs`]
/// (positions, ascending) whose register divisor [`Ranges`], run over the
/// straight-line code before each one (from the last jump target or
/// subprogram start, at most [`RANGE_WINDOW`] instructions back), proves
/// neither 0 nor -1. Starting later than the block's start only knows
/// less (every register unknown there), so it stays sound.
fn safe_divisors(prog: &Program, plan: &Plan, out: &mut Vec<usize>) {
    out.clear();
    let insns = prog.insns();
    let mut ranges = Ranges::UNKNOWN;
    // `ranges` holds the facts before instruction `at`, gathered with no
    // jump target or subprogram start in between.
    let mut at = 0usize;
    for &d in &plan.divs {
        let Some(insn) = insns.get(d) else {
            continue;
        };
        // The latest reset point in `at..=d` (a jump target or a
        // subprogram start), or where the window begins.
        let lo = at.max(d.saturating_sub(RANGE_WINDOW));
        let sub_start = plan
            .starts
            .partition_point(|&x| x <= d)
            .checked_sub(1)
            .and_then(|i| plan.starts.get(i).copied())
            .unwrap_or(0);
        let mut from = plan
            .last_target_in(lo, d)
            .max((lo..=d).contains(&sub_start).then_some(sub_start));
        if from.is_none() && d.saturating_sub(at) > RANGE_WINDOW {
            from = Some(lo);
        }
        let start = from.unwrap_or(at);
        // Only a few kinds of instruction can leave a register known
        // nonzero: unless the divisor's last writer since `start` is one,
        // the check stays and nothing needs stepping.
        let divisor_may_be_known = match *insn {
            Insn::Alu {
                src: Source::Reg(r),
                ..
            } => insns
                .get(start..d)
                .unwrap_or_default()
                .iter()
                .rev()
                .find(|i| i.written_regs() & reg_bit(r) != 0)
                .is_some_and(may_leave_nonzero),
            _ => false,
        };
        if let (false, Some(f)) = (divisor_may_be_known, from) {
            // Nothing known before `f`; a later division in this block
            // steps from there. (Without a reset point, the facts carried
            // in may still know the divisor: step as usual.)
            ranges = Ranges::UNKNOWN;
            at = f;
            continue;
        }
        if let Some(f) = from {
            ranges = Ranges::UNKNOWN;
            at = f;
        }
        for p in at..d {
            if let Some(i) = insns.get(p) {
                ranges.step(i, plan.aux.get(p).copied().unwrap_or(0));
            }
        }
        if ranges.safe_divisor(insn) {
            out.push(d);
        }
        ranges.step(insn, plan.aux.get(d).copied().unwrap_or(0));
        at = d + 1;
    }
}

fn plan(prog: &Program, opts: &JitOptions<'_>, sc: &mut Scratch) -> Result<Plan, JitError> {
    let n = prog.len();
    let mut scan = Scan {
        prog,
        opts,
        starts: &[0],
        one_subprog: true,
        fastcall_calls: take_cleared(&mut sc.fastcall_calls),
        ld_abs: None,
        has_callx: false,
        targets: take_zeroed(&mut sc.targets, n.div_ceil(64)),
        divs: take_cleared(&mut sc.divs),
        extra: take_cleared(&mut sc.extra),
        edges: take_cleared(&mut sc.edges),
        calls: false,
    };
    let mut aux = take_zeroed(&mut sc.aux, n);
    // A program without calls, function references or tail calls is one
    // subprogram that no tail call reaches: no call graph needed (the
    // checks below still bound every jump and the fall-through). Scan it
    // as such; the scan stops at the first instruction that needs the
    // call graph, and then everything is planned with it. An error found
    // first is returned only if the call graph would not have been built
    // (which would have reported its own errors first).
    match scan.subprog(&mut aux, 0, 0, n) {
        Ok(facts) => {
            let (frame, may_goto) = frame_of(prog, opts, None, 0, 0, n, facts)?;
            let mut frames = take_cleared(&mut sc.frames);
            frames.push(frame);
            let mut may_goto_slots = take_cleared(&mut sc.may_goto_slots);
            may_goto_slots.push(may_goto);
            let private_stack_bytes = if opts.private_stack {
                frame.stack_depth
            } else {
                0
            };
            let mut starts = take_cleared(&mut sc.starts);
            starts.push(0);
            let direct = direct_calls(prog, opts, &starts, &aux);
            Ok(Plan {
                aux,
                frames,
                starts,
                has_callx: false,
                private_stack_bytes,
                fastcall_calls: scan.fastcall_calls,
                direct,
                direct_sites: core::cell::RefCell::new(Vec::new()),
                may_goto_slots,
                ld_abs: scan.ld_abs,
                blind: opts.blind_constants,
                targets: scan.targets,
                safe_divs: take_cleared(&mut sc.safe_divs),
                divs: scan.divs,
                inline: take_cleared(&mut sc.inline),
                specials: take_cleared(&mut sc.specials),
            }
            .finish(prog, scan.extra))
        }
        Err(ScanStop::Error(e)) if !needs_call_graph(prog.insns()) => Err(e),
        Err(_) => {
            // The tables the stopped scan took come back for the full one.
            sc.targets = scan.targets;
            sc.fastcall_calls = scan.fastcall_calls;
            sc.extra = scan.extra;
            sc.divs = scan.divs;
            sc.edges = scan.edges;
            let mut starts = take_cleared(&mut sc.starts);
            if local_call_starts(prog, opts, &mut starts) {
                // Without the call graph; any error is reported by the
                // call-graph path, in the kernel's order.
                if let Ok(plan) = plan_subprogs(prog, opts, aux, sc, starts, None) {
                    return Ok(plan);
                }
                return plan_with_call_graph(prog, opts, vec![0; n], sc);
            }
            sc.starts = starts;
            plan_with_call_graph(prog, opts, aux, sc)
        }
    }
}

/// Reusable memory for the driver's per-compile tables (see
/// [`compile_reusing`]): compiling many programs with one `Scratch` (and
/// one backend) allocates only for what the results own.
#[derive(Debug, Default)]
pub struct Scratch {
    aux: Vec<u64>,
    targets: Vec<u64>,
    fastcall_calls: Vec<(usize, u16)>,
    extra: Vec<usize>,
    frames: Vec<FrameInfo>,
    may_goto_slots: Vec<Option<i32>>,
    starts: Vec<usize>,
    safe_divs: Vec<usize>,
    divs: Vec<usize>,
    specials: Vec<usize>,
    edges: Vec<(u16, u16, u32)>,
    walk: Vec<(u16, usize)>,
    inline: Vec<(usize, usize, usize)>,
    used: Vec<u16>,
    /// Used for one compile only ([`compile`]): the result takes the code
    /// buffer's memory rather than a copy.
    one_shot: bool,
}

impl Scratch {
    /// Empty scratch space (nothing allocated until the first compile).
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// Takes back the tables of a finished compile.
    fn restore(&mut self, plan: Plan) {
        self.aux = plan.aux;
        self.targets = plan.targets;
        self.fastcall_calls = plan.fastcall_calls;
        self.frames = plan.frames;
        self.may_goto_slots = plan.may_goto_slots;
        self.starts = plan.starts;
        self.safe_divs = plan.safe_divs;
        self.divs = plan.divs;
        self.specials = plan.specials;
        self.inline = plan.inline;
    }
}

/// `v`'s allocation, emptied.
fn take_cleared<T>(v: &mut Vec<T>) -> Vec<T> {
    let mut v = core::mem::take(v);
    v.clear();
    v
}

/// `v`'s allocation, holding `n` zeros.
fn take_zeroed(v: &mut Vec<u64>, n: usize) -> Vec<u64> {
    let mut v = take_cleared(v);
    if v.capacity() < n {
        // Fresh zeroed memory (calloc) beats growing and filling.
        return vec![0; n];
    }
    v.resize(n, 0);
    v
}

/// [`plan`] for a program that needs its call graph: one scan per
/// subprogram. `aux` is reused (any values in it are overwritten).
fn plan_with_call_graph(
    prog: &Program,
    opts: &JitOptions<'_>,
    aux: Vec<u64>,
    sc: &mut Scratch,
) -> Result<Plan, JitError> {
    let cg = call_graph(prog)?;
    let mut starts = take_cleared(&mut sc.starts);
    starts_of(prog, &cg, &mut starts)?;
    if opts.private_stack {
        // A callback is entered from a helper, which cannot pass the
        // incoming-frame register.
        if let Some(cb) = bpf_callgraph::privstack::jit_private_stack_blocker(&cg) {
            let slot = cg.subprog(cb).map_or(0, |s| s.start.slot());
            return Err(JitError::at(
                slot,
                JitErrorKind::PrivateStack("callback subprogram"),
            ));
        }
    }
    plan_subprogs(prog, opts, aux, sc, starts, Some(&cg))
}

/// The subprogram starts (positions, ascending) of a program whose only
/// calls are bpf-to-bpf calls (no tail call, `callx` or function
/// reference) and which is not compiled for a private stack, collected
/// in `out`; `false` otherwise, or if a call target is out of range or
/// there are more subprograms than the kernel allows. Such a program
/// needs no tail-call reachability and no callbacks: [`plan_subprogs`]
/// then checks the rest of the call graph's rules itself (see
/// [`calls_form_a_tree_walk`]).
fn local_call_starts(prog: &Program, opts: &JitOptions<'_>, out: &mut Vec<usize>) -> bool {
    if opts.private_stack {
        return false;
    }
    out.push(0);
    let slots = prog.starts();
    for (pos, insn) in prog.insns().iter().enumerate() {
        match *insn {
            Insn::Call(CallTarget::Local(off)) => {
                let slot = slots.get(pos).copied().unwrap_or(0) as usize;
                match target_pos(prog, pos, slot, 1, i64::from(off)) {
                    Ok(t) => out.push(t),
                    Err(_) => return false,
                }
            }
            Insn::Call(CallTarget::Helper(TAIL_CALL_HELPER))
            | Insn::CallReg { .. }
            | Insn::LdImm64 {
                src: LdImm64Src::Func(_),
                ..
            } => return false,
            _ => {}
        }
    }
    out.sort_unstable();
    out.dedup();
    out.len() <= bpf_callgraph::BPF_MAX_SUBPROGS
}

/// Whether the calls `edges` (caller, callee: subprogram indices, grouped
/// by caller in ascending order) between `n` subprograms reach every
/// subprogram from subprogram 0 without recursion: the call graph's
/// last two rules, for [`local_call_starts`] programs.
fn calls_form_a_tree_walk(
    n: usize,
    edges: &[(u16, u16, u32)],
    stack: &mut Vec<(u16, usize)>,
) -> bool {
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = [WHITE; bpf_callgraph::BPF_MAX_SUBPROGS];
    if n == 0 || n > color.len() {
        return false;
    }
    let first = |s: u16| edges.partition_point(|e| e.0 < s);
    stack.clear();
    stack.push((0, first(0)));
    color[0] = GREY;
    while let Some(top) = stack.last_mut() {
        let (node, next) = *top;
        match edges.get(next) {
            Some(&(caller, callee, _)) if caller == node => {
                top.1 += 1;
                match color.get(usize::from(callee)) {
                    Some(&WHITE) => {
                        color[usize::from(callee)] = GREY;
                        stack.push((callee, first(callee)));
                    }
                    Some(&BLACK) => {}
                    // Recursion (or an out-of-range callee).
                    _ => return false,
                }
            }
            _ => {
                color[usize::from(node)] = BLACK;
                stack.pop();
            }
        }
    }
    color.iter().take(n).all(|&c| c == BLACK)
}

/// [`plan`] for a program of several subprograms starting at `starts`:
/// one scan per subprogram. With `cg`, the call graph has checked the
/// structure and gives tail-call reachability; without it (a
/// [`local_call_starts`] program), the calls found by the scan are
/// checked here and a violation is an error (the caller then plans with
/// the call graph for the kernel's own error). `aux` is reused (any
/// values in it are overwritten).
fn plan_subprogs(
    prog: &Program,
    opts: &JitOptions<'_>,
    mut aux: Vec<u64>,
    sc: &mut Scratch,
    starts: Vec<usize>,
    cg: Option<&CallGraph>,
) -> Result<Plan, JitError> {
    let n = prog.len();
    aux.iter_mut().for_each(|a| *a = 0);
    let mut scan = Scan {
        prog,
        opts,
        starts: &starts,
        one_subprog: false,
        fastcall_calls: take_cleared(&mut sc.fastcall_calls),
        ld_abs: None,
        has_callx: false,
        targets: take_zeroed(&mut sc.targets, n.div_ceil(64)),
        divs: take_cleared(&mut sc.divs),
        extra: take_cleared(&mut sc.extra),
        edges: take_cleared(&mut sc.edges),
        calls: false,
    };
    let mut frames = take_cleared(&mut sc.frames);
    let mut may_goto_slots = take_cleared(&mut sc.may_goto_slots);
    // Registers each subprogram names (the scan's), for `inline_body`.
    let mut used = take_cleared(&mut sc.used);
    for (s, &begin) in starts.iter().enumerate() {
        let end = starts.get(s + 1).copied().unwrap_or(n);
        let facts = scan.subprog(&mut aux, s, begin, end).map_err(|e| match e {
            ScanStop::Error(e) => e,
            // Not produced when scanning subprogram by subprogram.
            ScanStop::NeedsCallGraph => {
                JitError::program(JitErrorKind::Unsupported("call graph needed twice"))
            }
        })?;
        let (frame, may_goto) = frame_of(prog, opts, cg, s, begin, end, facts)?;
        frames.push(frame);
        may_goto_slots.push(may_goto);
        used.push(facts.used);
    }
    if cg.is_none() && !calls_form_a_tree_walk(starts.len(), &scan.edges, &mut sc.walk) {
        return Err(JitError::program(JitErrorKind::Unsupported(
            "recursive or unreachable subprogram",
        )));
    }
    let private_stack_bytes = match cg {
        Some(cg) if opts.private_stack => chain_bytes(cg, &frames).ok_or(JitError::program(
            JitErrorKind::PrivateStack("frames too large"),
        ))?,
        _ => 0,
    };
    let direct = direct_calls(prog, opts, &starts, &aux);
    let mut inline = take_cleared(&mut sc.inline);
    if opts.inline_leaf_calls && opts.blind_constants.is_none() {
        for &(_, callee, at) in &scan.edges {
            let s = usize::from(callee);
            let (Some(&begin), Some(frame), Some(&regs)) =
                (starts.get(s), frames.get(s), used.get(s))
            else {
                continue;
            };
            let end = starts.get(s + 1).copied().unwrap_or(n);
            if let Some(exit) = inline_body(prog.insns(), frame, regs, begin, end) {
                inline.push((at as usize, begin, exit));
            }
        }
        inline.sort_unstable();
    }
    sc.used = used;
    let Scan {
        fastcall_calls,
        ld_abs,
        has_callx,
        targets,
        divs,
        extra,
        edges,
        ..
    } = scan;
    sc.edges = edges;
    Ok(Plan {
        aux,
        frames,
        starts,
        has_callx,
        private_stack_bytes,
        fastcall_calls,
        direct,
        direct_sites: core::cell::RefCell::new(Vec::new()),
        may_goto_slots,
        ld_abs,
        blind: opts.blind_constants,
        targets,
        safe_divs: take_cleared(&mut sc.safe_divs),
        divs,
        inline,
        specials: take_cleared(&mut sc.specials),
    }
    .finish(prog, extra))
}

/// The position of the `exit` ending the subprogram at `begin..end` if
/// its calls may be lowered as its body (see [`MAX_INLINE_BODY`]); `used`
/// is the registers the plan's scan found it naming.
fn inline_body(
    insns: &[Insn],
    frame: &FrameInfo,
    used: u16,
    begin: usize,
    end: usize,
) -> Option<usize> {
    let exit = end.checked_sub(1)?;
    // r6-r10: the body would need the callee's own frame.
    if frame.makes_calls
        || used & 0b111_1100_0000 != 0
        || exit < begin
        || exit - begin > MAX_INLINE_BODY
        || insns.get(exit) != Some(&Insn::Exit)
    {
        return None;
    }
    // Straight-line: no jump, call or other exit before the last.
    let straight = insns.get(begin..exit)?.iter().all(|insn| {
        !insn.is_jmp_class()
            && !matches!(
                insn,
                Insn::LdAbs { .. }
                    | Insn::LdInd { .. }
                    | Insn::AddrSpaceCast { .. }
                    | Insn::LdImm64 {
                        src: LdImm64Src::Func(_),
                        ..
                    }
            )
    });
    straight.then_some(exit)
}

/// Direct tail calls (position, array value, index), when enabled.
fn direct_calls(
    prog: &Program,
    opts: &JitOptions<'_>,
    starts: &[usize],
    aux: &[u64],
) -> Vec<(usize, u64, u32)> {
    if opts.direct_tail_calls {
        let key = |pos: usize, _src: LdImm64Src| aux.get(pos).copied();
        crate::tailsite::const_tail_calls(prog, starts, &key)
            .into_iter()
            .map(|c| (c.pos, c.key, c.index))
            .collect()
    } else {
        Vec::new()
    }
}

/// Why [`Scan::subprog`] stopped.
enum ScanStop {
    /// The program cannot be compiled.
    Error(JitError),
    /// Scanning as one subprogram, an instruction that needs the call
    /// graph (see [`needs_call_graph`]).
    NeedsCallGraph,
}

impl From<JitError> for ScanStop {
    fn from(e: JitError) -> ScanStop {
        ScanStop::Error(e)
    }
}

/// What a subprogram's scan found.
#[derive(Clone, Copy)]
struct SubprogFacts {
    /// Bit `n` set when the subprogram names `rn`.
    used: u16,
    has_may_goto: bool,
    /// Whether it has an instruction that makes a native call (see
    /// [`FrameInfo::makes_calls`]).
    makes_calls: bool,
}

/// The per-instruction pass of [`plan`] and what it gathers across
/// subprograms.
struct Scan<'a, 'o> {
    prog: &'a Program,
    opts: &'a JitOptions<'o>,
    /// Subprogram starts (positions), for entry labels.
    starts: &'a [usize],
    /// Scanning the whole program as one subprogram without a call graph.
    one_subprog: bool,
    fastcall_calls: Vec<(usize, u16)>,
    ld_abs: Option<u64>,
    has_callx: bool,
    /// Jump targets, one bit per position (see [`Plan::targets`]).
    targets: Vec<u64>,
    /// Divisions and remainders with a register divisor (see
    /// [`Plan::divs`]).
    divs: Vec<usize>,
    /// Positions of `may_goto`, `ld_abs` and `ld_ind` (see [`Plan::specials`]).
    extra: Vec<usize>,
    /// Bpf-to-bpf calls found scanning subprogram by subprogram: (caller,
    /// callee) subprogram indices and the call's position.
    edges: Vec<(u16, u16, u32)>,
    /// The subprogram being scanned has a call of some kind so far (set
    /// by [`Scan::other`], which sees every call).
    calls: bool,
}

impl Scan<'_, '_> {
    /// Label of the entry of the subprogram starting at `pos`.
    fn entry_label(&self, pos: usize) -> u64 {
        // Subprogram entry labels follow the per-instruction labels.
        let s = self.starts.partition_point(|&x| x < pos);
        (self.prog.len() + s) as u64
    }

    /// One dispatch per instruction of subprogram `s` (positions
    /// `begin..end`): the registers it names, and its label, helper
    /// address or `ld_imm64` value, stored in `aux`. The common
    /// instructions are handled inline; the rest by [`Scan::other`].
    fn subprog(
        &mut self,
        aux: &mut [u64],
        s: usize,
        begin: usize,
        end: usize,
    ) -> Result<SubprogFacts, ScanStop> {
        let Some(insns) = self.prog.insns().get(begin..end) else {
            return Err(JitError::program(JitErrorKind::BadTarget(begin as i64)).into());
        };
        let mut used = 0u16;
        let mut has_may_goto = false;
        self.calls = false;
        for (i, insn) in insns.iter().enumerate() {
            match *insn {
                Insn::Alu { dst, src, op, .. } => {
                    used |= reg_bit(dst) | src_bit(src);
                    if matches!(src, Source::Reg(_))
                        && matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod)
                    {
                        self.divs.push(begin + i);
                    }
                }
                Insn::Neg { dst, .. } | Insn::Endian { dst, .. } | Insn::St { dst, .. } => {
                    used |= reg_bit(dst);
                }
                Insn::MovSx { dst, src, .. }
                | Insn::AddrSpaceCast { dst, src, .. }
                | Insn::Ldx { dst, src, .. }
                | Insn::LdxSx { dst, src, .. }
                | Insn::Stx { dst, src, .. }
                | Insn::Atomic { dst, src, .. } => {
                    used |= reg_bit(dst) | reg_bit(src);
                }
                Insn::Exit => {}
                _ => {
                    let pos = begin + i;
                    used |= self.other(aux, s, begin, end, pos)?;
                    has_may_goto |= matches!(insn, Insn::MayGoto { .. });
                }
            }
        }
        Ok(SubprogFacts {
            used,
            has_may_goto,
            makes_calls: self.calls,
        })
    }

    /// Marks `t` as a jump target and returns it.
    #[inline]
    fn target(&mut self, t: usize) -> u64 {
        if let Some(w) = self.targets.get_mut(t / 64) {
            *w |= 1 << (t % 64);
        }
        t as u64
    }

    /// [`Scan::subprog`] for the instruction at `pos` when it is a jump, a
    /// call, a wide load or `ld_abs`/`ld_ind`: stores its `aux` value and
    /// returns the registers it names.
    #[inline(never)]
    fn other(
        &mut self,
        aux: &mut [u64],
        s: usize,
        begin: usize,
        end: usize,
        pos: usize,
    ) -> Result<u16, ScanStop> {
        let prog = self.prog;
        let opts = self.opts;
        let all_starts = prog.starts();
        let (Some(insn), Some(&slot)) = (prog.insns().get(pos), all_starts.get(pos)) else {
            return Err(JitError::program(JitErrorKind::BadTarget(pos as i64)).into());
        };
        let mut used = 0u16;
        // Position of the instruction a branch at `pos` (slot `slot`) with
        // offset `off` lands on, checked to stay in the subprogram.
        let branch = |off: i64| -> Result<usize, JitError> {
            let t = i64::from(slot) + 1 + off;
            // Without wide instructions in between, the target's position
            // is as far from `pos` as its slot is from `slot`.
            let guess = pos as i64 + 1 + off;
            let p = match usize::try_from(guess) {
                Ok(g) if all_starts.get(g).is_some_and(|&x| i64::from(x) == t) => g,
                _ => target_pos(prog, pos, slot as usize, 1, off)?,
            };
            if p < begin || p >= end {
                return Err(JitError::at(slot as usize, JitErrorKind::CrossesSubprogram));
            }
            Ok(p)
        };
        // Every call makes the frame a non-leaf (ld_abs/ld_ind below too).
        self.calls |= matches!(insn, Insn::Call(_) | Insn::CallReg { .. });
        let value = match *insn {
            Insn::Jmp { dst, src, off, .. } => {
                used |= reg_bit(dst) | src_bit(src);
                self.target(branch(i64::from(off))?)
            }
            Insn::Ja { off } => self.target(branch(i64::from(off))?),
            Insn::JaLong { imm } => self.target(branch(i64::from(imm))?),
            Insn::MayGoto { off } => {
                self.extra.push(pos);
                self.target(branch(i64::from(off))?)
            }
            Insn::LdAbs { .. } | Insn::LdInd { .. } => {
                self.extra.push(pos);
                self.calls = true;
                let slot = slot as usize;
                if let Insn::LdInd { src, .. } = *insn {
                    used |= reg_bit(src);
                }
                if s != 0 {
                    return Err(JitError::at(
                        slot,
                        JitErrorKind::Unsupported("ld_abs/ld_ind outside the main subprogram"),
                    )
                    .into());
                }
                self.ld_abs = Some(opts.ld_abs.ok_or(JitError::at(
                    slot,
                    JitErrorKind::Unsupported("ld_abs/ld_ind without JitOptions::ld_abs"),
                ))?);
                // The context is read from r6.
                return Ok(used | 1 << 6);
            }
            Insn::Call(CallTarget::Local(_))
            | Insn::Call(CallTarget::Helper(TAIL_CALL_HELPER))
            | Insn::CallReg { .. }
            | Insn::LdImm64 {
                src: LdImm64Src::Func(_),
                ..
            } if self.one_subprog => return Err(ScanStop::NeedsCallGraph),
            Insn::Call(CallTarget::Local(off)) => {
                let label =
                    self.entry_label(target_pos(prog, pos, slot as usize, 1, i64::from(off))?);
                let callee = label.saturating_sub(prog.len() as u64);
                self.edges.push((s as u16, callee as u16, pos as u32));
                label
            }
            // bpf_tail_call: inline code (MacroAssembler::tail_call).
            Insn::Call(CallTarget::Helper(TAIL_CALL_HELPER)) => return Ok(used),
            Insn::CallReg { reg } => {
                self.has_callx = true;
                return Ok(reg_bit(reg));
            }
            Insn::Call(CallTarget::Kfunc { btf_id, off }) => opts
                .kfuncs
                .and_then(|r| r(btf_id, off))
                .ok_or(JitError::at(
                    slot as usize,
                    JitErrorKind::Unsupported("unresolved kfunc"),
                ))?,
            Insn::Call(CallTarget::Helper(id)) => match opts.helpers.address(id) {
                Some(addr) => {
                    let keep = opts.helpers.preserve_mask(id);
                    if keep != 0 {
                        self.fastcall_calls.push((pos, keep));
                    }
                    addr
                }
                None => {
                    return Err(JitError::at(slot as usize, JitErrorKind::UnknownHelper(id)).into())
                }
            },
            Insn::LdImm64 { dst, src } => {
                used |= reg_bit(dst);
                let slot = slot as usize;
                match src {
                    LdImm64Src::Func(off) => {
                        self.entry_label(target_pos(prog, pos, slot, 1, i64::from(off))?)
                    }
                    LdImm64Src::Imm(v) => v,
                    _ => {
                        let what = match src {
                            LdImm64Src::MapFd(_) => "map fd",
                            LdImm64Src::MapValue { .. } => "map value",
                            LdImm64Src::BtfId(_) => "BTF id",
                            LdImm64Src::MapIdx(_) => "map index",
                            LdImm64Src::MapIdxValue { .. } => "map index value",
                            LdImm64Src::Imm(_) | LdImm64Src::Func(_) => "immediate",
                        };
                        opts.ld_imm64
                            .and_then(|r| r(slot, src))
                            .ok_or(JitError::at(slot, JitErrorKind::UnresolvedLdImm64(what)))?
                    }
                }
            }
            // Handled inline by `subprog`.
            Insn::Alu { .. }
            | Insn::Neg { .. }
            | Insn::Endian { .. }
            | Insn::St { .. }
            | Insn::MovSx { .. }
            | Insn::AddrSpaceCast { .. }
            | Insn::Ldx { .. }
            | Insn::LdxSx { .. }
            | Insn::Stx { .. }
            | Insn::Atomic { .. }
            | Insn::Exit => return Ok(used),
        };
        if let Some(a) = aux.get_mut(pos) {
            *a = value;
        }
        Ok(used)
    }
}

/// Bit `n` for register `rn`.
#[inline(always)]
fn reg_bit(r: Reg) -> u16 {
    1u16 << (r.num() & 15)
}

/// [`reg_bit`] of a register operand, 0 for an immediate.
#[inline(always)]
fn src_bit(src: Source) -> u16 {
    match src {
        Source::Reg(r) => reg_bit(r),
        Source::Imm(_) => 0,
    }
}

/// The frame of subprogram `s` (positions `begin..end`) and its
/// `may_goto` budget slot, after checking that it does not fall through
/// into the next one.
fn frame_of(
    prog: &Program,
    opts: &JitOptions<'_>,
    cg: Option<&CallGraph>,
    s: usize,
    begin: usize,
    end: usize,
    facts: SubprogFacts,
) -> Result<(FrameInfo, Option<i32>), JitError> {
    let insns = prog.insns();
    let slots = prog.starts();
    let SubprogFacts {
        used,
        has_may_goto,
        makes_calls,
    } = facts;
    // The last instruction must not fall through into the next subprogram.
    if let (Some(last), Some(&slot)) = (
        end.checked_sub(1).and_then(|p| insns.get(p)),
        end.checked_sub(1).and_then(|p| slots.get(p)),
    ) {
        if !last.is_terminator() {
            return Err(JitError::at(slot as usize, JitErrorKind::CrossesSubprogram));
        }
    }
    let depth = opts
        .stack_depths
        .and_then(|d| d.get(s).copied())
        .unwrap_or(DEFAULT_STACK_DEPTH);
    let mut depth = depth
        .checked_add(15)
        .map(|d| d & !15)
        .ok_or(JitError::program(JitErrorKind::ImageTooLarge))?;
    let may_goto = if has_may_goto {
        // The kernel's hidden 8-byte budget slot, below the program's
        // stack (16 bytes keep the frame aligned).
        let off = depth
            .checked_add(8)
            .and_then(|o| i32::try_from(o).ok())
            .ok_or(JitError::program(JitErrorKind::ImageTooLarge))?;
        depth = depth
            .checked_add(16)
            .ok_or(JitError::program(JitErrorKind::ImageTooLarge))?;
        Some(-off)
    } else {
        None
    };
    let info = cg.and_then(|cg| cg.subprogs().values().nth(s));
    let tail_call_reachable = info.is_some_and(|i| i.tail_call_reachable);
    if tail_call_reachable && s != 0 && info.is_some_and(|i| i.is_callback) {
        // A callback is entered from a helper, which cannot hand it the
        // counter pointer.
        let slot = slots.get(begin).copied().unwrap_or(0) as usize;
        return Err(JitError::at(
            slot,
            JitErrorKind::Unsupported("tail call reachable from a callback"),
        ));
    }
    let frame = FrameInfo {
        kind: if s == 0 {
            EntryKind::Main
        } else {
            EntryKind::Subprog
        },
        stack_depth: depth,
        // r6-r9 and r10 (a frame whose code never names r10 need
        // not set it up: AArch64 then skips saving x25). On a private
        // stack r10 is always set: calls derive their callee's
        // incoming frame address from it.
        // The may_goto slot is addressed from r10.
        callee_saved: (used & 0b111_1100_0000)
            | if opts.private_stack || has_may_goto {
                1 << 10
            } else {
                0
            },
        tail_call_reachable,
        private_stack: opts.private_stack,
        makes_calls,
    };
    Ok((frame, may_goto))
}

/// Whether `insns` has a bpf-to-bpf call, a function reference, a tail
/// call or a `callx`: anything that makes a program more than one
/// subprogram or a frame tail-call reachable.
fn needs_call_graph(insns: &[Insn]) -> bool {
    insns.iter().any(|i| {
        matches!(
            i,
            Insn::Call(CallTarget::Local(_) | CallTarget::Helper(TAIL_CALL_HELPER))
                | Insn::CallReg { .. }
                | Insn::LdImm64 {
                    src: LdImm64Src::Func(_),
                    ..
                }
        )
    })
}

/// The deepest bpf-to-bpf call chain from the main program: the largest
/// sum of rounded frame depths along a path of calls (`None` on overflow).
/// Callees come before their callers in the call graph's post-order.
fn chain_bytes(cg: &CallGraph, frames: &[FrameInfo]) -> Option<u32> {
    let mut chain = vec![0u32; frames.len()];
    for &id in cg.post_order() {
        let i = id.as_u32() as usize;
        let mut deepest = 0u32;
        for site in cg.sites_of(id) {
            if site.kind == bpf_callgraph::EdgeKind::Call {
                let callee = site.callee.as_u32() as usize;
                deepest = deepest.max(chain.get(callee).copied().unwrap_or(0));
            }
        }
        let own = frames.get(i).map_or(0, |f| f.stack_depth);
        if let Some(c) = chain.get_mut(i) {
            *c = own.checked_add(deepest)?;
        }
    }
    chain.first().copied()
}

/// Compiles `prog` with backend `masm`.
///
/// The program is assumed verified (memory safety is the verifier's job),
/// but nothing in it can make the driver panic: malformed control flow and
/// unsupported instructions are reported as [`JitError`]s naming the slot.
pub fn compile<M: MacroAssembler>(
    masm: &mut M,
    prog: &Program,
    opts: &JitOptions<'_>,
) -> Result<CompiledCode, JitError> {
    let mut once = Scratch::new();
    // Nothing is kept: the results take the buffers instead of copies.
    once.one_shot = true;
    compile_reusing(masm, &mut once, prog, opts)
}

/// [`compile`] with the driver's tables in `scratch`, kept for the next
/// call: the way to compile many programs (reuse `masm` too; its code
/// buffer is kept the same way).
pub fn compile_reusing<M: MacroAssembler>(
    masm: &mut M,
    scratch: &mut Scratch,
    prog: &Program,
    opts: &JitOptions<'_>,
) -> Result<CompiledCode, JitError> {
    let one_shot = scratch.one_shot;
    compile_then(masm, scratch, prog, opts, |buf, done| {
        let n = prog.len();
        let (insn_offsets, code) = if one_shot {
            let mut offsets = buf.take_label_offsets();
            offsets.truncate(n);
            (offsets, buf.take_bytes())
        } else {
            // Copied out: the buffer keeps its memory for the next compile.
            (buf.label_offsets_in(0..n), buf.bytes().to_vec())
        };
        Ok(CompiledCode {
            code,
            entries: done.entries,
            subprog_starts: done.subprog_starts.to_vec(),
            insn_offsets,
            passes: done.passes,
            private_stack_bytes: done.private_stack_bytes,
            private_stack: opts.private_stack,
            direct_tail_calls: done.direct_tail_calls,
            insns_end: done.insns_end,
            deferred: done.deferred,
            helper_table: done.helper_table,
        })
    })
}

/// Compiles `prog` as [`compile_reusing`] and maps the image executable
/// straight from the backend's buffer (no [`CompiledCode`] in between):
/// the way a loader that only runs the code compiles. `pad` is the
/// backend's trap byte and `codec` its direct tail-call site codec (see
/// [`JitProgram::new_patchable`](crate::JitProgram::new_patchable)).
pub fn compile_executable<M: MacroAssembler>(
    masm: &mut M,
    scratch: &mut Scratch,
    prog: &Program,
    opts: &JitOptions<'_>,
    pad: u8,
    codec: &'static dyn crate::patch::SiteCodec,
) -> Result<crate::JitProgram, JitError> {
    compile_then(masm, scratch, prog, opts, |buf, done| {
        crate::JitProgram::from_parts(
            buf.bytes(),
            done.entries,
            done.private_stack_bytes,
            opts.private_stack,
            done.direct_tail_calls,
            pad,
            codec,
        )
    })
}

/// What a finished layout leaves besides the code and the instruction
/// labels (both still in the buffer).
struct Done<'p> {
    entries: Vec<u32>,
    subprog_starts: &'p [usize],
    passes: u32,
    private_stack_bytes: u32,
    direct_tail_calls: Vec<DirectTailCall>,
    insns_end: u32,
    deferred: u32,
    helper_table: Option<u32>,
}

/// Plans and emits `prog`, then hands the finished buffer to `take`
/// (which copies or takes what it keeps); the buffer is reset after.
fn compile_then<M: MacroAssembler, R>(
    masm: &mut M,
    scratch: &mut Scratch,
    prog: &Program,
    opts: &JitOptions<'_>,
    take: impl FnOnce(&mut CodeBuffer, Done<'_>) -> Result<R, JitError>,
) -> Result<R, JitError> {
    if prog.is_empty() {
        return Err(JitError::program(JitErrorKind::Empty));
    }
    let plan = plan(prog, opts, scratch)?;
    let r = match emit(masm, &plan, prog, opts) {
        Ok(done) => take(masm.buffer_mut(), done),
        Err(e) => Err(e),
    };
    masm.buffer_mut().reset();
    scratch.restore(plan);
    r
}

/// The layout passes of [`compile_reusing`]: on success the code and the
/// labels' positions are in the backend's buffer.
fn emit<'p, M: MacroAssembler>(
    masm: &mut M,
    plan: &'p Plan,
    prog: &Program,
    opts: &JitOptions<'_>,
) -> Result<Done<'p>, JitError> {
    let n = prog.len();
    // Labels: one per instruction, one per subprogram entry, then the
    // callx helper table.
    let table_label = Label::new((n + plan.starts.len()) as u32);
    let table = if plan.has_callx {
        helper_address_table(opts.helpers)
    } else {
        Vec::new()
    };
    // ... and the `ld_abs` failure exit.
    let nlabels = n + plan.starts.len() + 2;
    if masm.ax_reg().is_none() {
        if plan.blind.is_some() {
            return Err(JitError::program(JitErrorKind::Unsupported(
                "constant blinding (no hidden register)",
            )));
        }
        if plan.may_goto_slots.iter().any(Option::is_some) {
            let slot = prog
                .insns()
                .iter()
                .zip(prog.starts())
                .find(|(i, _)| matches!(i, Insn::MayGoto { .. }))
                .map_or(0, |(_, &s)| s as usize);
            return Err(JitError::at(slot, JitErrorKind::Unsupported("may_goto")));
        }
    }
    let buf = masm.buffer_mut();
    buf.reset();
    // Room for the whole image up front (most instructions lower to at
    // most 8 bytes), so that no pass reallocates it.
    buf.reserve(
        nlabels,
        n.saturating_mul(8)
            .saturating_add(table.len().saturating_mul(8))
            .saturating_add(256),
    );
    let mut passes = 0;
    for pass in 0..MAX_RELAX_PASSES + 2 {
        passes = pass + 1;
        let buf = masm.buffer_mut();
        let one_pass = pass == 0 && M::RECORDS_LABEL_FIELDS && buf.one_pass_allowed();
        if one_pass {
            buf.begin_one_pass(nlabels);
        } else if pass < MAX_RELAX_PASSES {
            buf.begin_optimistic_pass(nlabels);
        } else {
            buf.begin_pass(nlabels, true);
        }
        let emitted = emit_pass(masm, prog, plan, table_label, table.len() as u32);
        let deferred = masm.buffer().offset();
        // Also after a failed pass: nothing deferred may outlive it.
        masm.emit_deferred();
        emitted?;
        if plan.has_callx {
            emit_helper_table::<M>(masm, &table, table_label);
        }
        let done = if one_pass {
            masm.buffer_mut().finish_one_pass()
        } else {
            masm.buffer().converged()
        };
        if done {
            let buf = masm.buffer_mut();
            let entries = buf.label_offsets_in(n..n + plan.starts.len());
            let ld_abs_exit = Label::new((n + plan.starts.len() + 1) as u32);
            let insns_end = match plan.ld_abs {
                Some(_) => buf.label_offset(ld_abs_exit).unwrap_or(deferred),
                None => deferred,
            };
            let helper_table = if plan.has_callx {
                buf.label_offset(table_label)
            } else {
                None
            };
            return Ok(Done {
                entries,
                subprog_starts: &plan.starts,
                passes,
                private_stack_bytes: plan.private_stack_bytes,
                direct_tail_calls: plan.direct_sites.take(),
                insns_end,
                deferred,
                helper_table,
            });
        }
    }
    let _ = passes;
    Err(JitError::program(JitErrorKind::NoConvergence))
}

/// Dense helper-address table for `callx`: entry `id` is helper `id`'s
/// address, 0 where no helper is registered (see [`callx_unknown_helper`]).
/// Ids past 4095 are not reachable through `callx`.
fn helper_address_table(helpers: &HelperTable) -> Vec<u64> {
    let max = helpers
        .entries
        .iter()
        .map(|e| e.0)
        .filter(|&id| (0..4096).contains(&id))
        .max();
    let Some(max) = max else {
        return Vec::new();
    };
    let mut t = vec![0u64; max as usize + 1];
    for &(id, f) in &helpers.entries {
        if let Some(e) = usize::try_from(id).ok().and_then(|i| t.get_mut(i)) {
            *e = f.address();
        }
    }
    t
}

/// After the code: 8-byte alignment, then the table.
fn emit_helper_table<M: MacroAssembler>(masm: &mut M, table: &[u64], label: Label) {
    let buf = masm.buffer_mut();
    while !buf.offset().is_multiple_of(8) {
        buf.put1(M::PAD_BYTE);
    }
    buf.bind(label);
    for &addr in table {
        buf.put8(if addr == 0 {
            callx_unknown_helper as HelperFn as usize as u64
        } else {
            addr
        });
    }
}

/// What a `callx` of an unregistered helper id (below the table's end)
/// calls: returns `-ENOSYS`. (The kernel rejects `callx` outright; a
/// verified program never reaches this.)
unsafe extern "C" fn callx_unknown_helper(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    (-38i64) as u64
}

/// Whether [`Ranges::step`] may leave the register `insn` writes with a
/// lower bound above 0 (every other write leaves 0 or nothing known).
#[inline]
fn may_leave_nonzero(insn: &Insn) -> bool {
    matches!(
        *insn,
        Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov | AluOp::Or | AluOp::Add | AluOp::Rsh,
            ..
        } | Insn::LdImm64 {
            src: LdImm64Src::Imm(_),
            ..
        }
    )
}

/// Unsigned 64-bit bounds of each eBPF register's value, known from the
/// straight-line code since the last jump target or subprogram entry (a
/// tiny local range analysis, independent of the verifier). The driver
/// uses it to prove a divisor is neither 0 nor -1, so the backend may
/// leave out the division's run-time checks.
#[derive(Clone, Copy, Debug)]
struct Ranges {
    lo: [u64; 11],
    hi: [u64; 11],
}

impl Ranges {
    /// Nothing known.
    const UNKNOWN: Ranges = Ranges {
        lo: [0; 11],
        hi: [u64::MAX; 11],
    };

    fn set(&mut self, r: Reg, lo: u64, hi: u64) {
        if let (Some(l), Some(h)) = (self.lo.get_mut(r.idx()), self.hi.get_mut(r.idx())) {
            *l = lo;
            *h = hi;
        }
    }

    fn get(&self, r: Reg) -> (u64, u64) {
        (
            self.lo.get(r.idx()).copied().unwrap_or(0),
            self.hi.get(r.idx()).copied().unwrap_or(u64::MAX),
        )
    }

    /// Whether `insn` is a division or remainder whose register divisor
    /// is, as an operand of the instruction's width, never 0 and, for the
    /// signed kinds, never -1 (it is then in `1..=i32::MAX`/`i64::MAX`).
    #[inline(never)]
    fn safe_divisor(&self, insn: &Insn) -> bool {
        let Insn::Alu {
            width,
            op,
            src: Source::Reg(r),
            ..
        } = *insn
        else {
            return false;
        };
        let (lo, hi) = self.get(r);
        let max = match (op, width) {
            (AluOp::Div | AluOp::Mod, Width::W64) => u64::MAX,
            (AluOp::Div | AluOp::Mod, Width::W32) => u64::from(u32::MAX),
            (AluOp::SDiv | AluOp::SMod, Width::W64) => i64::MAX as u64,
            (AluOp::SDiv | AluOp::SMod, Width::W32) => i32::MAX as u64,
            _ => return false,
        };
        lo >= 1 && hi <= max
    }

    /// The bounds after `insn` (whose `ld_imm64` value is `aux`).
    #[inline]
    fn step(&mut self, insn: &Insn, aux: u64) {
        const ALL: (u64, u64) = (0, u64::MAX);
        match *insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let (lo, hi) = self.get(dst);
                let (nlo, nhi) = match (width, op, src) {
                    (Width::W64, AluOp::Mov, Source::Imm(i)) => (i as i64 as u64, i as i64 as u64),
                    (Width::W32, AluOp::Mov, Source::Imm(i)) => {
                        (u64::from(i as u32), u64::from(i as u32))
                    }
                    (Width::W64, AluOp::Mov, Source::Reg(s)) => self.get(s),
                    // x & m <= min(x, m); x | m >= max(x, m) (unsigned).
                    (Width::W64, AluOp::And, Source::Imm(i)) => (0, hi.min(i as i64 as u64)),
                    (Width::W64, AluOp::Or, Source::Imm(i)) => (lo.max(i as i64 as u64), u64::MAX),
                    // No wrap for any value in range: both bounds move.
                    (Width::W64, AluOp::Add, Source::Imm(i)) if i >= 0 => {
                        match hi.checked_add(i as u64) {
                            Some(h) => (lo + i as u64, h),
                            None => ALL,
                        }
                    }
                    (Width::W64, AluOp::Rsh, Source::Imm(k)) if (0..64).contains(&k) => {
                        (lo >> k, hi >> k)
                    }
                    // Every 32-bit result is zero-extended.
                    (Width::W32, _, _) => (0, u64::from(u32::MAX)),
                    _ => ALL,
                };
                self.set(dst, nlo, nhi);
            }
            Insn::Ldx { size, dst, .. } => {
                let hi = match size {
                    Size::B => 0xff,
                    Size::H => 0xffff,
                    Size::W => u64::from(u32::MAX),
                    Size::DW => u64::MAX,
                };
                self.set(dst, 0, hi);
            }
            Insn::LdImm64 {
                dst,
                src: LdImm64Src::Imm(_),
            } => self.set(dst, aux, aux),
            // Everything else: each register it writes is unknown after it
            // (calls and ld_abs/ld_ind clobber r0-r5; r6-r9 survive).
            _ => {
                let written = insn.written_regs();
                for r in Reg::ALL {
                    if written & reg_bit(r) != 0 {
                        self.set(r, ALL.0, ALL.1);
                    }
                }
            }
        }
    }
}

/// Largest code offset at which an instruction may start: displacements
/// stay far from overflowing `i32`.
const IMAGE_LIMIT: u32 = i32::MAX as u32 / 2;

/// Where [`emit_special`] is in the plan's ascending position lists.
#[derive(Default)]
struct Cursors {
    sub: usize,
    inline: usize,
    fastcall: usize,
    direct: usize,
    safe_div: usize,
}

/// Emits the whole program once. Most instructions take the fast path (a
/// label, a size check, one [`lower`]); the positions in
/// [`Plan::specials`] go through [`emit_special`].
fn emit_pass<M: MacroAssembler>(
    masm: &mut M,
    prog: &Program,
    plan: &Plan,
    table: Label,
    table_len: u32,
) -> Result<(), JitError> {
    let n = prog.len();
    // Subprogram 0 starts at position 0 (always special), so `frame` is
    // set before the first instruction is lowered.
    let Some(mut frame) = plan.frames.first() else {
        return Ok(());
    };
    plan.direct_sites.borrow_mut().clear();
    let insns = prog.insns();
    let aux = plan.aux.as_slice();
    let specials = plan.specials.as_slice();
    let mut cur = Cursors::default();
    let mut sp = 0usize;
    let mut next_special = specials.first().copied().unwrap_or(usize::MAX);
    let pairs = plan.blind.is_none();
    // The last position lowered alone by the fast path (for
    // `branch_on_last_alu`).
    let mut last_single = usize::MAX;
    let mut pos = 0usize;
    while let Some(insn) = insns.get(pos) {
        if pos == next_special {
            sp += 1;
            next_special = specials.get(sp).copied().unwrap_or(usize::MAX);
            let ctx = SpecialCtx {
                plan,
                n,
                next_special,
                table,
                table_len,
            };
            pos += emit_special(masm, prog, &ctx, &mut cur, &mut frame, pos)?;
            continue;
        }
        let buf = masm.buffer_mut();
        buf.bind(Label::new(pos as u32));
        if buf.offset() > IMAGE_LIMIT {
            return Err(at_pos(prog, pos, JitErrorKind::ImageTooLarge));
        }
        if pairs && is_pair_shape(insns, pos) {
            if M::INDEXED_ADDRESSING && is_pointer_sum(insns, pos) {
                let ctx = ForwardCtx {
                    plan,
                    next_special,
                    frame,
                    table,
                    table_len,
                };
                let n = forward_address(masm, prog, &ctx, pos)?;
                if n != 0 {
                    pos += n;
                    last_single = usize::MAX;
                    continue;
                }
            }
            if fuse_pair(masm, insns, pos, plan, next_special) {
                pos += 2;
                continue;
            }
        }
        let a = aux.get(pos).copied().unwrap_or(0);
        if matches!(insn, Insn::Jmp { .. })
            && pos.checked_sub(1) == Some(last_single)
            && branch_on_last_alu(masm, insns, pos, plan, a).map_err(|k| at_pos(prog, pos, k))?
        {
            pos += 1;
            continue;
        }
        lower(masm, insn, a, frame, table, table_len).map_err(|k| at_pos(prog, pos, k))?;
        last_single = pos;
        pos += 1;
    }
    if plan.ld_abs.is_some() {
        // The failure exit of ld_abs/ld_ind (main subprogram only): r0 = 0
        // and return from the main frame.
        masm.buffer_mut()
            .bind(Label::new((n + plan.starts.len() + 1) as u32));
        let r0 = masm.reg(Reg::R0);
        masm.mov_imm(r0, 0);
        if let Some(main) = plan.frames.first() {
            masm.epilogue(main);
        }
    }
    Ok(())
}

/// `if dst == 0` / `if dst != 0` at `pos` right after an in-place
/// add, sub, and, or or xor of `dst` at the same width at `pos - 1`
/// (lowered alone, by `alu`) that no jump separates from it: the backend
/// may branch on the flags that operation left
/// ([`MacroAssembler::branch_on_last_alu`]) instead of comparing again.
/// Returns whether it did (nothing emitted otherwise).
#[inline(never)]
fn branch_on_last_alu<M: MacroAssembler>(
    masm: &mut M,
    insns: &[Insn],
    pos: usize,
    plan: &Plan,
    aux: u64,
) -> Result<bool, JitErrorKind> {
    let (
        Some(&Insn::Jmp {
            width,
            cond: cond @ (bpf_isa::JmpCond::Eq | bpf_isa::JmpCond::Ne),
            dst,
            src: Source::Imm(0),
            ..
        }),
        Some(&Insn::Alu {
            width: alu_width,
            op: AluOp::Add | AluOp::Sub | AluOp::And | AluOp::Or | AluOp::Xor,
            dst: alu_dst,
            ..
        }),
    ) = (
        insns.get(pos),
        pos.checked_sub(1).and_then(|p| insns.get(p)),
    )
    else {
        return Ok(false);
    };
    if alu_width != width || alu_dst != dst || plan.is_target(pos) || plan.blind.is_some() {
        return Ok(false);
    }
    masm.branch_on_last_alu(IntCmpKind::of(cond), Label::new(aux as u32))
}

/// Whether `pos` holds `rX = rY; rX += rZ` at 64 bits (the shape
/// [`forward_address`] starts from; a quick test on both opcodes).
#[inline(always)]
fn is_pointer_sum(insns: &[Insn], pos: usize) -> bool {
    matches!(
        (insns.get(pos), insns.get(pos + 1)),
        (
            Some(Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                src: Source::Reg(_),
                ..
            }),
            Some(Insn::Alu {
                width: Width::W64,
                op: AluOp::Add,
                src: Source::Reg(_),
                ..
            })
        )
    )
}

/// The most instructions [`forward_address`] looks at after the sum.
const FORWARD_WINDOW: usize = 8;
/// The most instructions [`dead_at`] looks at from a jump target.
const DEAD_SCAN: usize = 32;

/// What [`forward_address`] needs from [`emit_pass`].
struct ForwardCtx<'p> {
    plan: &'p Plan,
    next_special: usize,
    frame: &'p FrameInfo,
    table: Label,
    table_len: u32,
}

/// One use of the forwarded sum in a [`forward_address`] window.
#[derive(Clone, Copy)]
enum ForwardUse {
    /// `rY = rX; rY += imm` (two positions).
    Lea(Reg, i32),
    /// A conditional jump that reads neither `rX` nor writes anything.
    Jump,
    /// `rZ = *(size *)(rX + off)`.
    Load(Size, Reg, i16),
}

/// The pointer sum `rX = rA; rX += rB` (64-bit) at `pos`, when every later
/// use of it up to a load that overwrites `rX` (`rX = *(rX + off)`) is an
/// address: `rY = rX; rY += imm` (lowered as one `add3`), a load with base
/// `rX` (lowered as `load_indexed`), or a conditional jump not reading `rX`
/// to a place where [`dead_at`] shows `rX` dead. Then `rX` is never
/// computed: a bounds check and load of `p = data + i` becomes `lea`, `cmp`,
/// `ja`, `movzx [data + i]`. Nothing but `pos` may be a jump target or a
/// special position, `rA` and `rB` must not be written, and neither is
/// `r10`. Returns the number of positions lowered (0: none, nothing
/// emitted). Only for a backend with [`MacroAssembler::INDEXED_ADDRESSING`].
#[inline(never)]
fn forward_address<M: MacroAssembler>(
    masm: &mut M,
    prog: &Program,
    ctx: &ForwardCtx<'_>,
    pos: usize,
) -> Result<usize, JitError> {
    let insns = prog.insns();
    let (
        Some(&Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: x,
            src: Source::Reg(a),
        }),
        Some(&Insn::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: x2,
            src: Source::Reg(b),
        }),
    ) = (insns.get(pos), insns.get(pos + 1))
    else {
        return Ok(0);
    };
    let plan = ctx.plan;
    if x != x2 || a == x || b == x || a == Reg::R10 || b == Reg::R10 || x == Reg::R10 {
        return Ok(0);
    }
    let kept = |r: Reg| r != x && r != a && r != b && r != Reg::R10;
    let usable = |i: usize| i < ctx.next_special && !plan.is_target(i);
    if !usable(pos + 1) {
        return Ok(0);
    }
    // Check the whole window before emitting anything.
    let mut uses = [ForwardUse::Jump; FORWARD_WINDOW];
    let mut n_uses = 0usize;
    let mut i = pos + 2;
    let end = loop {
        if n_uses == FORWARD_WINDOW || !usable(i) {
            return Ok(0);
        }
        let Some(&insn) = insns.get(i) else {
            return Ok(0);
        };
        let (u, len) = match insn {
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: y,
                src: Source::Reg(s),
            } if s == x && kept(y) => match insns.get(i + 1) {
                Some(&Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Add,
                    dst: y2,
                    src: Source::Imm(k),
                }) if y2 == y && usable(i + 1) => (ForwardUse::Lea(y, k), 2),
                _ => return Ok(0),
            },
            Insn::Jmp { dst, src, .. } => {
                let target = plan.aux.get(i).copied().unwrap_or(u64::MAX) as usize;
                if dst == x || src == Source::Reg(x) || !dead_at(insns, target, x) {
                    return Ok(0);
                }
                (ForwardUse::Jump, 1)
            }
            Insn::Ldx {
                size,
                dst,
                src,
                off,
            } if src == x && (dst == x || kept(dst)) => (ForwardUse::Load(size, dst, off), 1),
            _ => return Ok(0),
        };
        if let Some(slot) = uses.get_mut(n_uses) {
            *slot = u;
        }
        n_uses += 1;
        i += len;
        if let ForwardUse::Load(_, d, _) = u {
            if d == x {
                break i;
            }
        }
    };
    let (ra, rb) = (masm.reg(a), masm.reg(b));
    masm.buffer_mut().bind(Label::new(pos as u32 + 1));
    let mut i = pos + 2;
    for u in uses.iter().take(n_uses) {
        masm.buffer_mut().bind(Label::new(i as u32));
        match *u {
            ForwardUse::Lea(y, k) => {
                let d = masm.reg(y);
                masm.add3(d, ra, rb, k);
                masm.buffer_mut().bind(Label::new(i as u32 + 1));
                i += 2;
                continue;
            }
            ForwardUse::Jump => {
                if let Some(insn) = insns.get(i) {
                    let aux = plan.aux.get(i).copied().unwrap_or(0);
                    lower(masm, insn, aux, ctx.frame, ctx.table, ctx.table_len)
                        .map_err(|k| at_pos(prog, i, k))?;
                }
            }
            ForwardUse::Load(size, d, off) => {
                let d = masm.reg(d);
                masm.load_indexed(size, d, ra, rb, i32::from(off))
                    .map_err(|k| at_pos(prog, i, k))?;
            }
        }
        i += 1;
    }
    Ok(end - pos)
}

/// Whether `r` is dead at position `at`: straight-line code from there
/// writes it (without reading it first) or exits (`r` not `r0`) within
/// [`DEAD_SCAN`] instructions. Anything else it does not know (jumps,
/// calls, atomics, ...) counts as a read.
fn dead_at(insns: &[Insn], at: usize, r: Reg) -> bool {
    let end = at.saturating_add(DEAD_SCAN).min(insns.len());
    for insn in insns.get(at..end).unwrap_or_default() {
        let (reads, writes) = match *insn {
            Insn::Alu {
                op: AluOp::Mov,
                dst,
                src,
                ..
            } => (src == Source::Reg(r), dst == r),
            Insn::Alu { dst, src, .. } => (dst == r || src == Source::Reg(r), false),
            Insn::Ldx { dst, src, .. } | Insn::LdxSx { dst, src, .. } => (src == r, dst == r),
            Insn::LdImm64 { dst, .. } => (false, dst == r),
            Insn::St { dst, .. } => (dst == r, false),
            Insn::Stx { dst, src, .. } => (dst == r || src == r, false),
            Insn::Exit => return r != Reg::R0,
            _ => return false,
        };
        if reads {
            return false;
        }
        if writes {
            return true;
        }
    }
    false
}

/// The error `kind` at the slot of the instruction at position `pos`.
#[cold]
#[inline(never)]
fn at_pos(prog: &Program, pos: usize, kind: JitErrorKind) -> JitError {
    let slot = prog.starts().get(pos).copied().unwrap_or(0);
    JitError::at(slot as usize, kind)
}

/// Whether the instructions at `pos` and `pos + 1` have the shape of a
/// pair [`try_pair`] may fuse (a quick test on both opcodes, inlined into
/// the emission loop; [`try_pair`] checks the rest).
#[inline(always)]
fn is_pair_shape(insns: &[Insn], pos: usize) -> bool {
    let head = matches!(
        insns.get(pos),
        Some(
            Insn::Alu {
                op: AluOp::Lsh,
                src: Source::Imm(_),
                ..
            } | Insn::Alu {
                op: AluOp::Mov,
                src: Source::Reg(_),
                ..
            }
        )
    );
    head && matches!(
        insns.get(pos + 1),
        Some(
            Insn::Alu {
                op: AluOp::Rsh | AluOp::Arsh,
                src: Source::Imm(_),
                width: Width::W64,
                ..
            } | Insn::Alu { op: AluOp::Add, .. }
                | Insn::Alu {
                    op: AluOp::Or,
                    src: Source::Reg(_),
                    ..
                }
        )
    )
}

/// Lowers the pair at `pos` as one (see [`try_pair`]) when nothing jumps
/// to `pos + 1` and it is not the next special position, and binds the
/// second instruction's label after it; returns whether it did.
#[inline(always)]
fn fuse_pair<M: MacroAssembler>(
    masm: &mut M,
    insns: &[Insn],
    pos: usize,
    plan: &Plan,
    next_special: usize,
) -> bool {
    let fused =
        pos + 1 != next_special && !plan.is_target(pos + 1) && try_pair(masm, insns, pos, plan);
    if fused {
        masm.buffer_mut().bind(Label::new(pos as u32 + 1));
    }
    fused
}

/// Lowers the instructions at `pos` and `pos + 1` as one (see
/// [`lower_pair`] and [`lower_rotate`]) when they form a pattern; the
/// caller checked that nothing jumps to `pos + 1`. Returns `false` (having
/// emitted nothing) otherwise.
#[inline(never)]
fn try_pair<M: MacroAssembler>(masm: &mut M, insns: &[Insn], pos: usize, plan: &Plan) -> bool {
    let (Some(insn), Some(next)) = (insns.get(pos), insns.get(pos + 1)) else {
        return false;
    };
    // Only these second instructions complete a pattern: most heads are
    // refused by this one test.
    match *next {
        Insn::Alu {
            op: AluOp::Rsh | AluOp::Arsh,
            src: Source::Imm(_),
            width: Width::W64,
            ..
        }
        | Insn::Alu { op: AluOp::Add, .. } => lower_pair(masm, insn, next),
        Insn::Alu {
            op: AluOp::Or,
            src: Source::Reg(_),
            ..
        } => lower_rotate(masm, insns, pos, plan),
        _ => false,
    }
}

/// What [`emit_special`] needs from [`emit_pass`].
struct SpecialCtx<'p> {
    plan: &'p Plan,
    n: usize,
    /// The next special position after this one.
    next_special: usize,
    table: Label,
    table_len: u32,
}

/// Emits the instruction at special position `pos` (see
/// [`Plan::specials`]), with the subprogram's prologue first when one
/// starts there. Returns how many instructions it lowered (2 for a fused
/// pair).
#[inline(never)]
fn emit_special<'p, M: MacroAssembler>(
    masm: &mut M,
    prog: &Program,
    ctx: &SpecialCtx<'p>,
    cur: &mut Cursors,
    frame: &mut &'p FrameInfo,
    pos: usize,
) -> Result<usize, JitError> {
    let plan = ctx.plan;
    let n = ctx.n;
    let insns = prog.insns();
    let Some(insn) = insns.get(pos) else {
        return Ok(1);
    };
    let err = |k| at_pos(prog, pos, k);
    if plan.starts.get(cur.sub) == Some(&pos) {
        if let Some(f) = plan.frames.get(cur.sub) {
            *frame = f;
        }
        masm.buffer_mut().bind(Label::new((n + cur.sub) as u32));
        masm.prologue(frame);
        if let Some(Some(off)) = plan.may_goto_slots.get(cur.sub) {
            // The frame's may_goto budget (`BPF_MAX_LOOPS`).
            let r10 = masm.reg(Reg::R10);
            let a = masm.address(r10, *off);
            masm.store(Size::DW, a, RegImm::Imm(MAY_GOTO_BUDGET as i32))
                .map_err(err)?;
        }
        cur.sub += 1;
    }
    let frame: &FrameInfo = frame;
    let buf = masm.buffer_mut();
    buf.bind(Label::new(pos as u32));
    if buf.offset() > IMAGE_LIMIT {
        return Err(err(JitErrorKind::ImageTooLarge));
    }
    if let Some(&(_, begin, exit)) = plan.inline.get(cur.inline).filter(|e| e.0 == pos) {
        cur.inline += 1;
        emit_inline_body(masm, prog, plan, begin, exit, frame, ctx)?;
        return Ok(1);
    }
    // A pair that lowers to one native instruction, when nothing jumps
    // between the two (and no blinding rewrites the immediate).
    if plan.blind.is_none()
        && is_pair_shape(insns, pos)
        && fuse_pair(masm, insns, pos, plan, ctx.next_special)
    {
        return Ok(2);
    }
    let aux = plan.aux.get(pos).copied().unwrap_or(0);
    if let Some(&(_, array, index)) = plan.direct.get(cur.direct).filter(|e| e.0 == pos) {
        cur.direct += 1;
        let slot = prog.starts().get(pos).copied().unwrap_or(0) as usize;
        emit_direct_tail_call(masm, plan, frame, (pos, slot, array, index)).map_err(err)?;
        return Ok(1);
    }
    let fastcall = plan.fastcall_calls.get(cur.fastcall).filter(|e| e.0 == pos);
    if fastcall.is_some() {
        cur.fastcall += 1;
    }
    let safe_div = plan.safe_divs.get(cur.safe_div) == Some(&pos);
    if safe_div {
        cur.safe_div += 1;
    }
    let key = plan.blind.map(|seed| blind_key(seed, pos));
    let mg_slot = cur
        .sub
        .checked_sub(1)
        .and_then(|s| plan.may_goto_slots.get(s).copied().flatten());
    let (table, table_len) = (ctx.table, ctx.table_len);
    let lowered = match fastcall {
        // A call to a `bpf_fastcall` helper (plan: only helper calls).
        Some(&(_, keep)) => masm.call_helper_preserving(aux, keep),
        // A division by a register proved neither 0 nor -1 here.
        None if safe_div => {
            lower_div_nonzero(masm, insn);
            Ok(())
        }
        None => match lower_extra(masm, insn, aux, mg_slot, plan, n, key) {
            Ok(true) => Ok(()),
            Ok(false) => lower(masm, insn, aux, frame, table, table_len),
            Err(k) => Err(k),
        },
    };
    lowered.map_err(err)?;
    Ok(1)
}

/// Lowers the body `begin..exit` of a leaf subprogram in place of a call
/// to it (see [`Plan::inline`]): its instructions as the fast path lowers
/// them (pairs fused; nothing jumps into a leaf's body), without binding
/// their labels, which belong to the subprogram's own copy.
fn emit_inline_body<M: MacroAssembler>(
    masm: &mut M,
    prog: &Program,
    plan: &Plan,
    begin: usize,
    exit: usize,
    frame: &FrameInfo,
    ctx: &SpecialCtx<'_>,
) -> Result<(), JitError> {
    let insns = prog.insns();
    let mut p = begin;
    while p < exit {
        if p + 1 < exit && is_pair_shape(insns, p) && try_pair(masm, insns, p, plan) {
            p += 2;
            continue;
        }
        let (Some(insn), aux) = (insns.get(p), plan.aux.get(p).copied().unwrap_or(0)) else {
            break;
        };
        lower(masm, insn, aux, frame, ctx.table, ctx.table_len).map_err(|k| at_pos(prog, p, k))?;
        p += 1;
    }
    if masm.buffer().offset() > IMAGE_LIMIT {
        return Err(at_pos(prog, begin, JitErrorKind::ImageTooLarge));
    }
    Ok(())
}

/// The 64-bit blinding key material of the instruction at `pos`
/// (splitmix64 of the seed and the position): the same in every layout
/// pass, different per instruction and per seed.
fn blind_key(seed: u64, pos: usize) -> u64 {
    let mut z = seed.wrapping_add(
        (pos as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `ax = imm` (sign-extended for `S64`, zero-extended for `S32`) without
/// `imm` in the code: `ax = imm ^ key; ax ^= key` (the kernel's blinding
/// form).
fn blinded_imm<M: MacroAssembler>(masm: &mut M, size: OperandSize, ax: M::Reg, imm: i32, key: u32) {
    let x = imm ^ key as i32;
    let v = match size {
        OperandSize::S32 => u64::from(x as u32),
        OperandSize::S64 => x as i64 as u64,
    };
    masm.mov_imm(ax, v);
    masm.alu(AluKind::Xor, size, ax, ax, RegImm::Imm(key as i32));
}

/// Whether an ALU immediate is blinded: not shift amounts (small, as the
/// kernel leaves them) nor `mov 0` (kept as the backend's zeroing idiom).
fn blindable(op: AluOp, imm: i32) -> bool {
    match op {
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => false,
        AluOp::Mov => imm != 0,
        _ => true,
    }
}

/// `dst = dst op rhs` for the ALU operations (not `mov`).
#[inline(always)]
fn alu_op<M: MacroAssembler>(
    masm: &mut M,
    op: AluOp,
    size: OperandSize,
    d: M::Reg,
    rhs: RegImm<M::Reg>,
) {
    match op {
        AluOp::Mov => {}
        AluOp::Add => masm.alu(AluKind::Add, size, d, d, rhs),
        AluOp::Sub => masm.alu(AluKind::Sub, size, d, d, rhs),
        AluOp::Mul => masm.alu(AluKind::Mul, size, d, d, rhs),
        AluOp::And => masm.alu(AluKind::And, size, d, d, rhs),
        AluOp::Or => masm.alu(AluKind::Or, size, d, d, rhs),
        AluOp::Xor => masm.alu(AluKind::Xor, size, d, d, rhs),
        AluOp::Lsh => masm.shift(ShiftKind::Shl, size, d, d, rhs),
        AluOp::Rsh => masm.shift(ShiftKind::ShrU, size, d, d, rhs),
        AluOp::Arsh => masm.shift(ShiftKind::ShrS, size, d, d, rhs),
        AluOp::Div => masm.div_rem(DivKind::DivU, size, d, d, rhs),
        AluOp::SDiv => masm.div_rem(DivKind::DivS, size, d, d, rhs),
        AluOp::Mod => masm.div_rem(DivKind::RemU, size, d, d, rhs),
        AluOp::SMod => masm.div_rem(DivKind::RemS, size, d, d, rhs),
    }
}

/// Lowers what [`lower`] does not: `may_goto`, `ld_abs`/`ld_ind`, and,
/// with a blinding `key`, the instructions with an immediate operand.
/// Returns `false` (having emitted nothing) for everything else.
fn lower_extra<M: MacroAssembler>(
    masm: &mut M,
    insn: &Insn,
    aux: u64,
    may_goto_slot: Option<i32>,
    plan: &Plan,
    n: usize,
    key: Option<u64>,
) -> Result<bool, JitErrorKind> {
    let label = Label::new(aux as u32);
    let ax = masm.ax_reg();
    match (*insn, key, ax) {
        (Insn::MayGoto { .. }, _, Some(ax)) => {
            // The kernel's rewrite: if (slot == 0) goto target; slot -= 1.
            let off =
                may_goto_slot.ok_or(JitErrorKind::Unsupported("may_goto without budget slot"))?;
            let r10 = masm.reg(Reg::R10);
            let a = masm.address(r10, off);
            masm.load(Size::DW, false, ax, a)?;
            masm.branch(IntCmpKind::Eq, OperandSize::S64, ax, RegImm::Imm(0), label)?;
            masm.alu(AluKind::Sub, OperandSize::S64, ax, ax, RegImm::Imm(1));
            let a = masm.address(r10, off);
            masm.store(Size::DW, a, RegImm::Reg(ax))?;
        }
        (Insn::LdAbs { size, imm }, _, _) | (Insn::LdInd { size, imm, .. }, _, _) => {
            let f = plan
                .ld_abs
                .ok_or(JitErrorKind::Unsupported("ld_abs/ld_ind"))?;
            let (r1, r2, r3) = (masm.reg(Reg::R1), masm.reg(Reg::R2), masm.reg(Reg::R3));
            // r2 = offset first: the ld_ind source may be r1.
            if let Insn::LdInd { src, .. } = *insn {
                let s = masm.reg(src);
                masm.mov(OperandSize::S64, r2, s);
                match (key, ax) {
                    (Some(k), Some(ax)) if imm != 0 => {
                        blinded_imm(masm, OperandSize::S64, ax, imm, k as u32);
                        masm.alu(AluKind::Add, OperandSize::S64, r2, r2, RegImm::Reg(ax));
                    }
                    _ if imm != 0 => {
                        masm.alu(AluKind::Add, OperandSize::S64, r2, r2, RegImm::Imm(imm))
                    }
                    _ => {}
                }
            } else if let Some(k) = key {
                blinded_imm(masm, OperandSize::S64, r2, imm, k as u32);
            } else {
                masm.mov_imm(r2, imm as i64 as u64);
            }
            let r6 = masm.reg(Reg::R6);
            masm.mov(OperandSize::S64, r1, r6);
            masm.mov_imm(r3, u64::from(size.bytes()));
            masm.call_helper(f)?;
            let r0 = masm.reg(Reg::R0);
            let exit = Label::new((n + plan.starts.len() + 1) as u32);
            masm.branch(IntCmpKind::LtS, OperandSize::S64, r0, RegImm::Imm(0), exit)?;
        }
        (
            Insn::Alu {
                width,
                op,
                dst,
                src: Source::Imm(imm),
            },
            Some(k),
            Some(ax),
        ) if blindable(op, imm) => {
            let size = OperandSize::of(width);
            let d = masm.reg(dst);
            blinded_imm(masm, size, ax, imm, k as u32);
            if op == AluOp::Mov {
                masm.mov(size, d, ax);
            } else {
                alu_op(masm, op, size, d, RegImm::Reg(ax));
            }
        }
        (
            Insn::Jmp {
                width,
                cond,
                dst,
                src: Source::Imm(imm),
                ..
            },
            Some(k),
            Some(ax),
        ) => {
            let size = OperandSize::of(width);
            let l = masm.reg(dst);
            blinded_imm(masm, size, ax, imm, k as u32);
            masm.branch(IntCmpKind::of(cond), size, l, RegImm::Reg(ax), label)?;
        }
        (
            Insn::St {
                size,
                dst,
                off,
                imm,
            },
            Some(k),
            Some(ax),
        ) => {
            blinded_imm(masm, OperandSize::S64, ax, imm, k as u32);
            let b = masm.reg(dst);
            let a = masm.address(b, i32::from(off));
            masm.store(size, a, RegImm::Reg(ax))?;
        }
        (Insn::LdImm64 { dst, src }, Some(k), Some(ax)) if !matches!(src, LdImm64Src::Func(_)) => {
            // dst = hi << 32 | lo, each half through its own key.
            let d = masm.reg(dst);
            let (hi, lo) = ((aux >> 32) as u32 as i32, aux as u32 as i32);
            blinded_imm(masm, OperandSize::S32, ax, hi, (k >> 32) as u32);
            masm.shift(ShiftKind::Shl, OperandSize::S64, ax, ax, RegImm::Imm(32));
            masm.mov(OperandSize::S64, d, ax);
            blinded_imm(masm, OperandSize::S32, ax, lo, k as u32);
            masm.alu(AluKind::Or, OperandSize::S64, d, d, RegImm::Reg(ax));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Lowers a division or remainder whose register divisor [`Ranges`] proved
/// neither 0 nor -1 (kept out of line: rare, and large once inlined).
#[inline(never)]
fn lower_div_nonzero<M: MacroAssembler>(masm: &mut M, insn: &Insn) {
    if let Insn::Alu {
        width,
        op,
        dst,
        src: Source::Reg(r),
    } = *insn
    {
        let (d, r) = (masm.reg(dst), masm.reg(r));
        let kind = match op {
            AluOp::Div => DivKind::DivU,
            AluOp::SDiv => DivKind::DivS,
            AluOp::Mod => DivKind::RemU,
            _ => DivKind::RemS,
        };
        masm.div_rem_nonzero(kind, OperandSize::of(width), d, d, r);
    }
}

/// Lowers the shift-and-or at `pos`, `pos + 1` of a rotate as one rotate,
/// when the instructions before it computed the other half. The idiom
/// (clang's, as eBPF has no rotate), all of one width `bits`:
/// - `a = x; a >>= k; x <<= bits - k; x |= a` (x = rotl(x, bits - k)), or
/// - `a = y; a >>= k; x = y; x <<= bits - k; x |= a` (x = rotl(y, bits - k)),
/// - `x = a; a >>= k; x <<= bits - k; x |= a` (x = rotl(a, bits - k); `a`
///   keeps its shifted value),
///
/// with `a`, `x` (and `y`) distinct registers. The earlier instructions are
/// lowered as they are (`a` keeps its value); only `<<=` and `|=` become one
/// rotate of `x`. Nothing may jump into the idiom past its first
/// instruction. Returns `false` (having emitted nothing) otherwise.
fn lower_rotate<M: MacroAssembler>(masm: &mut M, insns: &[Insn], pos: usize, plan: &Plan) -> bool {
    let is_target = |p: usize| plan.is_target(p);
    let alu = |p: usize| match insns.get(p) {
        Some(&Insn::Alu {
            width,
            op,
            dst,
            src,
        }) => Some((width, op, dst, src)),
        _ => None,
    };
    let (Some((w, AluOp::Lsh, x, Source::Imm(m))), Some((w_or, AluOp::Or, x_or, Source::Reg(a)))) =
        (alu(pos), alu(pos + 1))
    else {
        return false;
    };
    let bits = match w {
        Width::W32 => 32,
        Width::W64 => 64,
    };
    if w_or != w || x_or != x || a == x || !(1..bits).contains(&m) {
        return false;
    }
    // `a = src; a >>= bits - m` ending at `at`.
    let half = |at: usize| -> Option<Reg> {
        let (w1, op1, a1, s1) = alu(at)?;
        let (w0, op0, a0, s0) = alu(at.checked_sub(1)?)?;
        let ok = w1 == w
            && w0 == w
            && op1 == AluOp::Rsh
            && s1 == Source::Imm(bits - m)
            && a1 == a
            && op0 == AluOp::Mov
            && a0 == a
            && !is_target(at);
        match s0 {
            Source::Reg(src) if ok && src != a => Some(src),
            _ => None,
        }
    };
    // `x = a; a >>= bits - m` ending at `at` (the third form).
    let copied_then_shifted = |at: usize| -> bool {
        at.checked_sub(1).and_then(alu) == Some((w, AluOp::Mov, x, Source::Reg(a)))
            && alu(at) == Some((w, AluOp::Rsh, a, Source::Imm(bits - m)))
            && !is_target(at)
    };
    let matched = match pos.checked_sub(1).and_then(|p| alu(p).map(|i| (p, i))) {
        // `x = y` right before: the second form.
        Some((p, (wm, AluOp::Mov, xm, Source::Reg(y)))) if wm == w && xm == x => {
            y != x && y != a && !is_target(p) && p.checked_sub(1).and_then(half) == Some(y)
        }
        Some((p, _)) => half(p) == Some(x) || copied_then_shifted(p),
        None => false,
    };
    let d = masm.reg(x);
    matched && !is_target(pos) && masm.rotate_left(OperandSize::of(w), d, m as u8)
}

/// Lowers two consecutive instructions as one when they form a pattern
/// the backend has a single instruction for; returns `false` (having
/// emitted nothing) otherwise. The caller checked that nothing jumps to
/// the second one.
/// - `rX <<= 32; rX >>= 32` (clang's zero-extension idiom): `rX = (u32)rX`;
///   with `s>>=`, `rX = (s32)rX`.
/// - `rX = rY; rX += imm` or `rX = rY; rX += rZ`, either width: the
///   three-operand `rX = rY + …` (x86-64 `lea`; with `rZ` = `rX`, the
///   second operand is `rY` as well).
#[inline]
fn lower_pair<M: MacroAssembler>(masm: &mut M, a: &Insn, b: &Insn) -> bool {
    let (
        Insn::Alu {
            width,
            op: op_a,
            dst: dst_a,
            src: src_a,
        },
        Insn::Alu {
            width: width_b,
            op: op_b,
            dst: dst_b,
            src: src_b,
        },
    ) = (*a, *b)
    else {
        return false;
    };
    if dst_a != dst_b || width != width_b {
        return false;
    }
    let d = masm.reg(dst_a);
    match (width, op_a, src_a, op_b, src_b) {
        (Width::W64, AluOp::Lsh, Source::Imm(32), AluOp::Rsh, Source::Imm(32)) => {
            masm.zero_extend(32, d, d)
        }
        (Width::W64, AluOp::Lsh, Source::Imm(32), AluOp::Arsh, Source::Imm(32)) => {
            masm.extend(ExtendKind::I32To64, d, d)
        }
        (_, AluOp::Mov, Source::Reg(s), AluOp::Add, rhs) if s != dst_a => {
            let sr = masm.reg(s);
            let rhs = match rhs {
                // `rX += rX` adds the value just moved in.
                Source::Reg(z) if z == dst_a => RegImm::Reg(sr),
                Source::Reg(z) => RegImm::Reg(masm.reg(z)),
                Source::Imm(i) => RegImm::Imm(i),
            };
            masm.alu(AluKind::Add, OperandSize::of(width), d, sr, rhs);
        }
        _ => return false,
    }
    true
}

/// A tail call with a constant array and index: the backend's direct form
/// (recorded in the plan) or, without one, the indirect sequence.
fn emit_direct_tail_call<M: MacroAssembler>(
    masm: &mut M,
    plan: &Plan,
    frame: &FrameInfo,
    (pos, slot, array, index): (usize, usize, u64, u32),
) -> Result<(), JitErrorKind> {
    match masm.tail_call_direct(frame)? {
        Some(layout) => {
            plan.direct_sites.borrow_mut().push(DirectTailCall {
                pos,
                slot,
                array,
                index,
                layout,
            });
            Ok(())
        }
        None => masm.tail_call(frame),
    }
}

/// Lowers one instruction. `aux` is its branch label, helper address or
/// `ld_imm64` value, from the plan.
#[inline(always)]
fn lower<M: MacroAssembler>(
    masm: &mut M,
    insn: &Insn,
    aux: u64,
    frame: &FrameInfo,
    table: Label,
    table_len: u32,
) -> Result<(), JitErrorKind> {
    let label = Label::new(aux as u32);
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let size = OperandSize::of(width);
            let d = masm.reg(dst);
            let rhs = match src {
                Source::Reg(r) => RegImm::Reg(masm.reg(r)),
                Source::Imm(i) => RegImm::Imm(i),
            };
            match op {
                AluOp::Mov => match rhs {
                    RegImm::Reg(s) => masm.mov(size, d, s),
                    RegImm::Imm(i) => {
                        let v = match width {
                            Width::W32 => u64::from(i as u32),
                            Width::W64 => i as i64 as u64,
                        };
                        masm.mov_imm(d, v)
                    }
                },
                _ => alu_op(masm, op, size, d, rhs),
            }
        }
        Insn::Neg { width, dst } => {
            let d = masm.reg(dst);
            masm.neg(OperandSize::of(width), d, d)
        }
        Insn::MovSx {
            width,
            dst,
            src,
            from,
        } => {
            let kind = match (width, from) {
                (Width::W32, Size::B) => ExtendKind::I8To32,
                (Width::W32, Size::H) => ExtendKind::I16To32,
                (Width::W64, Size::B) => ExtendKind::I8To64,
                (Width::W64, Size::H) => ExtendKind::I16To64,
                (Width::W64, Size::W) => ExtendKind::I32To64,
                _ => return Err(JitErrorKind::BadSize(from.bytes())),
            };
            let (d, s) = (masm.reg(dst), masm.reg(src));
            masm.extend(kind, d, s)
        }
        Insn::AddrSpaceCast { .. } => return Err(JitErrorKind::Unsupported("addr_space_cast")),
        Insn::Endian { kind, bits, dst } => {
            let d = masm.reg(dst);
            // Both targets are little-endian: `le` only truncates.
            match kind {
                Endian::ToLe => masm.zero_extend(bits, d, d),
                Endian::ToBe | Endian::Swap => masm.byte_swap(bits, d, d),
            }
        }
        Insn::Ja { .. } | Insn::JaLong { .. } => masm.jmp(label)?,
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            ..
        } => {
            let l = masm.reg(dst);
            let rhs = match src {
                Source::Reg(r) => RegImm::Reg(masm.reg(r)),
                Source::Imm(i) => RegImm::Imm(i),
            };
            masm.branch(IntCmpKind::of(cond), OperandSize::of(width), l, rhs, label)?
        }
        Insn::MayGoto { .. } => return Err(JitErrorKind::Unsupported("may_goto")),
        Insn::Call(CallTarget::Helper(TAIL_CALL_HELPER)) => masm.tail_call(frame)?,
        Insn::Call(CallTarget::Helper(_)) => masm.call_helper(aux)?,
        Insn::Call(CallTarget::Local(_)) => masm.call_local(label, frame)?,
        // A kfunc is called as a helper is (address from the plan's resolver).
        Insn::Call(CallTarget::Kfunc { .. }) => masm.call_helper(aux)?,
        Insn::CallReg { reg } => {
            let r = masm.reg(reg);
            masm.call_indirect(r, table, table_len, frame)?
        }
        Insn::Exit => masm.epilogue(frame),
        Insn::LdImm64 {
            dst,
            src: LdImm64Src::Func(_),
        } => {
            let d = masm.reg(dst);
            masm.load_label_address(d, label)?
        }
        Insn::LdImm64 { dst, .. } => {
            let d = masm.reg(dst);
            masm.mov_imm(d, aux)
        }
        Insn::LdAbs { .. } | Insn::LdInd { .. } => {
            return Err(JitErrorKind::Unsupported("ld_abs/ld_ind"))
        }
        Insn::Ldx {
            size,
            dst,
            src,
            off,
        } => {
            let (d, b) = (masm.reg(dst), masm.reg(src));
            let a = masm.address(b, i32::from(off));
            masm.load(size, false, d, a)?
        }
        Insn::LdxSx {
            size,
            dst,
            src,
            off,
        } => {
            let (d, b) = (masm.reg(dst), masm.reg(src));
            let a = masm.address(b, i32::from(off));
            masm.load(size, true, d, a)?
        }
        Insn::St {
            size,
            dst,
            off,
            imm,
        } => {
            let b = masm.reg(dst);
            let a = masm.address(b, i32::from(off));
            masm.store(size, a, RegImm::Imm(imm))?
        }
        Insn::Stx {
            size,
            dst,
            src,
            off,
        } => {
            let (b, s) = (masm.reg(dst), masm.reg(src));
            let a = masm.address(b, i32::from(off));
            masm.store(size, a, RegImm::Reg(s))?
        }
        Insn::Atomic {
            size,
            op,
            dst,
            src,
            off,
        } => {
            let (d, s) = (masm.reg(dst), masm.reg(src));
            match op {
                AtomicOp::LoadAcquire => {
                    let a = masm.address(s, i32::from(off));
                    masm.load_acquire(size, d, a)?
                }
                AtomicOp::StoreRelease => {
                    let a = masm.address(d, i32::from(off));
                    masm.store_release(size, a, s)?
                }
                AtomicOp::Cmpxchg => {
                    let r0 = masm.reg(Reg::R0);
                    let a = masm.address(d, i32::from(off));
                    masm.atomic_cmpxchg(size, a, r0, s)?
                }
                AtomicOp::Xchg => {
                    let a = masm.address(d, i32::from(off));
                    masm.atomic_rmw(RmwKind::Xchg, size, a, s, true)?
                }
                AtomicOp::Add { fetch }
                | AtomicOp::Or { fetch }
                | AtomicOp::And { fetch }
                | AtomicOp::Xor { fetch } => {
                    let kind = match op {
                        AtomicOp::Add { .. } => RmwKind::Add,
                        AtomicOp::Or { .. } => RmwKind::Or,
                        AtomicOp::And { .. } => RmwKind::And,
                        _ => RmwKind::Xor,
                    };
                    let a = masm.address(d, i32::from(off));
                    masm.atomic_rmw(kind, size, a, s, fetch)?
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpf_isa::{JmpCond, Program};

    #[test]
    fn subprogram_starts_are_zero_and_call_targets() {
        // 0: call +2 (-> 3); 1: exit... laid out as main: call, exit; sub at 2.
        let p = Program::from_insns(vec![
            Insn::Call(CallTarget::Local(1)),
            Insn::Exit,
            Insn::LdImm64 {
                dst: Reg::R1,
                src: LdImm64Src::Func(2),
            },
            Insn::Exit,
            Insn::Exit,
        ]);
        // call at slot 0 -> slot 2 (pos 2); ld_imm64 at slot 2 -> 2+1+2 = slot 5 (pos 4).
        assert_eq!(subprogram_starts(&p).unwrap(), vec![0, 2, 4]);
    }

    #[test]
    fn out_of_range_call_is_an_error_naming_the_slot() {
        let p = Program::from_insns(vec![
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Source::Imm(0),
            },
            Insn::Call(CallTarget::Local(7)),
            Insn::Exit,
        ]);
        let e = subprogram_starts(&p).unwrap_err();
        assert_eq!(
            e,
            JitError::at(
                1,
                JitErrorKind::CallGraph(bpf_callgraph::BuildError::InvalidCallTarget {
                    at: 1,
                    target: 9
                })
            )
        );
    }

    #[test]
    fn plan_rejects_jumps_between_subprograms_and_fallthrough() {
        let helpers = HelperTable::new();
        let opts = JitOptions::new(&helpers);
        let p = Program::from_insns(vec![
            Insn::Call(CallTarget::Local(1)),
            Insn::Jmp {
                width: Width::W64,
                cond: JmpCond::Eq,
                dst: Reg::R0,
                src: Source::Imm(0),
                off: 0,
            },
            Insn::Exit,
        ]);
        // Subprogram 0 is [0, 2): its conditional jump at slot 1 may land
        // in subprogram 1 (the kernel checks jumps before fall-through).
        let e = plan(&p, &opts, &mut Scratch::new()).err().unwrap();
        assert_eq!(e.index, Some(1));
        assert!(
            matches!(
                e.kind,
                JitErrorKind::CallGraph(bpf_callgraph::BuildError::JumpOutOfRange {
                    from: 1,
                    to: 2
                })
            ),
            "{e}"
        );
        let p = Program::from_insns(vec![
            Insn::Call(CallTarget::Local(1)),
            Insn::Ja { off: 0 },
            Insn::Exit,
        ]);
        let e = plan(&p, &opts, &mut Scratch::new()).err().unwrap();
        assert_eq!(
            e,
            JitError::at(
                1,
                JitErrorKind::CallGraph(bpf_callgraph::BuildError::JumpOutOfRange {
                    from: 1,
                    to: 2
                })
            )
        );
    }

    #[test]
    fn callee_saved_mask_and_depth_rounding() {
        let helpers = HelperTable::new();
        let depths = [20u32];
        let opts = JitOptions::new(&helpers).with_stack_depths(&depths);
        let p = Program::from_insns(vec![
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: Reg::R7,
                src: Source::Reg(Reg::R1),
            },
            Insn::Exit,
        ]);
        let plan = plan(&p, &opts, &mut Scratch::new()).unwrap();
        assert_eq!(plan.frames[0].callee_saved, 1 << 7);
        assert_eq!(plan.frames[0].stack_depth, 32);
    }

    #[test]
    fn may_goto_gets_a_budget_slot_below_the_stack() {
        // Depth 20 rounds to 32; the kernel's hidden 8-byte slot goes right
        // below it (r10 - 40), and the frame grows by 16 to stay aligned.
        // The subprogram without may_goto keeps its depth and no slot.
        let p = bpf_isa::assemble(
            "call pc f
           l:
             may_goto out
             goto l
           out:
             exit
           f:
             exit",
        )
        .unwrap();
        let helpers = HelperTable::new();
        let depths = [20u32, 64];
        let opts = JitOptions::new(&helpers).with_stack_depths(&depths);
        let plan = plan(&p, &opts, &mut Scratch::new()).unwrap();
        assert_eq!(plan.may_goto_slots, vec![Some(-40), None]);
        assert_eq!(plan.frames[0].stack_depth, 48);
        assert_eq!(plan.frames[1].stack_depth, 64);
        assert!(plan.frames[0].saves(Reg::R10));
        assert!(!plan.frames[1].saves(Reg::R10));
    }

    #[test]
    fn last_bit_in_matches_a_bit_by_bit_search() {
        let words = [
            0x8000_0000_0000_0001u64,
            0,
            0x0000_0100_0000_0000,
            0xffff_ffff_ffff_ffff,
        ];
        let set = |p: usize| words.get(p / 64).is_some_and(|w| w >> (p % 64) & 1 != 0);
        for lo in 0..260 {
            for hi in lo..260 {
                let want = (lo..=hi).rev().find(|&p| set(p));
                assert_eq!(last_bit_in(&words, lo, hi), want, "lo {lo} hi {hi}");
            }
        }
    }

    #[test]
    fn blind_keys_differ_by_position_and_seed() {
        assert_ne!(blind_key(1, 0), blind_key(1, 1));
        assert_ne!(blind_key(1, 0), blind_key(2, 0));
        assert_eq!(blind_key(1, 5), blind_key(1, 5));
    }

    #[test]
    fn private_stack_bytes_follow_the_deepest_chain() {
        // main (20 -> 32 bytes) calls a (64) and b (16); a calls b. By
        // hand: the deepest chain is main -> a -> b = 32 + 64 + 16 = 112,
        // not the sum of all frames (128).
        let p = bpf_isa::assemble(
            "call pc a
             call pc b
             exit
           a:
             call pc b
             exit
           b:
             exit",
        )
        .unwrap();
        let helpers = HelperTable::new();
        let depths = [20u32, 64, 16];
        let opts = JitOptions::new(&helpers).with_stack_depths(&depths);
        assert_eq!(
            plan(&p, &opts, &mut Scratch::new())
                .unwrap()
                .private_stack_bytes,
            0
        );
        let plan = plan(&p, &opts.with_private_stack(true), &mut Scratch::new()).unwrap();
        assert_eq!(plan.private_stack_bytes, 112);
        // r10 is always set up on a private stack (calls derive from it).
        assert!(plan
            .frames
            .iter()
            .all(|f| f.private_stack && f.saves(Reg::R10)));
    }

    #[test]
    fn unknown_helper_and_unresolved_map() {
        let helpers = HelperTable::new();
        let opts = JitOptions::new(&helpers);
        let p = Program::from_insns(vec![Insn::Call(CallTarget::Helper(1)), Insn::Exit]);
        assert_eq!(
            plan(&p, &opts, &mut Scratch::new()).err().unwrap(),
            JitError::at(0, JitErrorKind::UnknownHelper(1))
        );
        let p = Program::from_insns(vec![
            Insn::Exit,
            Insn::LdImm64 {
                dst: Reg::R1,
                src: LdImm64Src::MapFd(3),
            },
            Insn::Exit,
        ]);
        assert_eq!(
            plan(&p, &opts, &mut Scratch::new()).err().unwrap(),
            JitError::at(1, JitErrorKind::UnresolvedLdImm64("map fd"))
        );
        let r =
            |slot: usize, src: LdImm64Src| (slot == 1 && src == LdImm64Src::MapFd(3)).then_some(77);
        let opts = opts.with_ld_imm64(&r);
        assert_eq!(plan(&p, &opts, &mut Scratch::new()).unwrap().aux[1], 77);
    }

    /// What two plans of the same program must agree on.
    fn plan_facts(p: &Plan) -> impl PartialEq + core::fmt::Debug {
        (
            p.aux.clone(),
            p.frames.clone(),
            p.starts.clone(),
            p.has_callx,
            p.targets.clone(),
            p.specials.clone(),
            p.safe_divs.clone(),
            p.fastcall_calls.clone(),
            p.may_goto_slots.clone(),
            p.direct.clone(),
        )
    }

    /// Plans `p` both ways: [`plan`] (which plans a program whose only
    /// calls are bpf-to-bpf calls without the call graph) and always with
    /// the call graph; they must give the same plan or the same error.
    fn assert_same_plan_as_call_graph(p: &Program, opts: &JitOptions<'_>) {
        let fast = plan(p, opts, &mut Scratch::new());
        let full = call_graph(p)
            .and_then(|_| plan_with_call_graph(p, opts, vec![0; p.len()], &mut Scratch::new()));
        let full = if needs_call_graph(p.insns()) {
            full
        } else {
            // One subprogram: the call graph path is not what plan() uses.
            return;
        };
        match (fast, full) {
            (Ok(a), Ok(b)) => assert_eq!(plan_facts(&a), plan_facts(&b), "{p:?}"),
            (Err(a), Err(b)) => assert_eq!(a, b, "{p:?}"),
            (a, b) => panic!("{p:?}: plan {:?} vs call graph {:?}", a.err(), b.err()),
        }
    }

    #[test]
    fn local_calls_without_call_graph_keep_the_kernels_errors() {
        let helpers = HelperTable::new();
        let opts = JitOptions::new(&helpers);
        let mov = |r: Reg| Insn::Alu {
            width: bpf_isa::Width::W64,
            op: AluOp::Mov,
            dst: r,
            src: Source::Imm(1),
        };
        // 0: call +1 (-> 2); 1: exit | 2: call -1 (-> 2, itself); 3: exit:
        // recursion.
        let recursive = Program::from_insns(vec![
            Insn::Call(CallTarget::Local(1)),
            Insn::Exit,
            Insn::Call(CallTarget::Local(-1)),
            Insn::Exit,
        ]);
        let e = plan(&recursive, &opts, &mut Scratch::new()).err().unwrap();
        assert!(
            matches!(
                e.kind,
                JitErrorKind::CallGraph(bpf_callgraph::BuildError::Recursion { .. })
            ),
            "{e:?}"
        );
        // Subprogram 2 (at 4) is called only from itself: unreachable.
        let unreachable = Program::from_insns(vec![
            Insn::Call(CallTarget::Local(1)),
            Insn::Exit,
            mov(Reg::R6),
            Insn::Exit,
            Insn::Call(CallTarget::Local(-1)),
            Insn::Exit,
        ]);
        let e = plan(&unreachable, &opts, &mut Scratch::new())
            .err()
            .unwrap();
        assert!(
            matches!(
                e.kind,
                JitErrorKind::CallGraph(bpf_callgraph::BuildError::Unreachable { .. })
            ),
            "{e:?}"
        );
        for p in [&recursive, &unreachable] {
            assert_same_plan_as_call_graph(p, &opts);
        }
        // A chain 0 -> 1 -> 2 and 0 -> 2 (a diamond, not recursion) plans.
        let ok = Program::from_insns(vec![
            Insn::Call(CallTarget::Local(2)),
            Insn::Call(CallTarget::Local(4)),
            Insn::Exit,
            mov(Reg::R7),
            Insn::Call(CallTarget::Local(1)),
            Insn::Exit,
            Insn::Exit,
        ]);
        let plan_ok = plan(&ok, &opts, &mut Scratch::new()).unwrap();
        assert_eq!(plan_ok.starts, vec![0, 3, 6]);
        assert_same_plan_as_call_graph(&ok, &opts);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn plan_without_call_graph_matches_plan_with_it(
            p in bpf_isa::arbitrary::valid_program(48)
        ) {
            let mut helpers = HelperTable::new();
            unsafe extern "C" fn h(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 { 0 }
            for id in 1..8 {
                helpers.insert(id, h);
            }
            let opts = JitOptions::new(&helpers);
            assert_same_plan_as_call_graph(&p, &opts);
        }
    }

    #[test]
    fn plan_reports_call_graph_errors_before_instruction_errors() {
        // An unknown helper at 0 comes before a local call: the call
        // graph is built first (as the kernel checks structure before
        // instructions), so its error about the jump at 2 leaving
        // subprogram [0, 3) for subprogram [3, 4) is the one reported.
        let helpers = HelperTable::new();
        let opts = JitOptions::new(&helpers);
        let p = Program::from_insns(vec![
            Insn::Call(CallTarget::Helper(1)),
            Insn::Call(CallTarget::Local(1)),
            Insn::Ja { off: 0 },
            Insn::Exit,
        ]);
        let e = plan(&p, &opts, &mut Scratch::new()).err().unwrap();
        assert_eq!(
            e,
            JitError::at(
                2,
                JitErrorKind::CallGraph(bpf_callgraph::BuildError::JumpOutOfRange {
                    from: 2,
                    to: 3
                })
            )
        );
        // Without the call there is one subprogram: the helper is the error.
        let p = Program::from_insns(vec![
            Insn::Call(CallTarget::Helper(1)),
            Insn::Ja { off: 0 },
            Insn::Exit,
        ]);
        let e = plan(&p, &opts, &mut Scratch::new()).err().unwrap();
        assert_eq!(e, JitError::at(0, JitErrorKind::UnknownHelper(1)));
    }
}
