//! Execution engines: the reference interpreter, the x86-64 JIT (the
//! optimizing compiler or its one-pass baseline tier) or the AArch64 JIT
//! (under qemu-user), chosen when a program is loaded, with the same maps,
//! helpers, contexts and program arrays.
//!
//! ```
//! use bpf_vm::{Engine, LoadedProgram};
//!
//! let prog = bpf_isa::assemble("r0 = r2\nr0 *= 6\nexit")?;
//! for engine in Engine::available() {
//!     let p = LoadedProgram::builder(&prog, engine).build()?;
//!     // SAFETY: the program touches no memory.
//!     assert_eq!(unsafe { p.run_mem(&mut [0u8; 7]) }?, 42);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How JIT-compiled programs reach the runtime
//!
//! * **Maps.** An `ld_imm64` map reference loads the address of the
//!   runtime's `Map` object (as with the interpreter) — except for a program
//!   array, whose reference loads the address of its
//!   [`bpf_jit::JitProgArray`], the table the compiled tail-call sequence
//!   reads. Map-value references load the value's stable address.
//! * **Helpers.** Compiled code calls native `extern "C"` functions of five
//!   `u64` arguments. Each helper id below 256 has a trampoline that finds
//!   the run's state in a thread-local (set for the duration of a run) and
//!   calls the [`HelperRegistry`] closure with a [`crate::HelperCtx`] in
//!   unchecked mode, translating the map handle in `r1` to the map object.
//!   A helper error is recorded and reported when the run returns (the
//!   helper returns 0 to the program); a helper asking to unwind
//!   ([`crate::HelperCtx::unwind`]) likewise ends the run with an error,
//!   since compiled code cannot be unwound from inside a helper.
//! * **bpf_loop** (with the kernel built-ins) calls the compiled callback
//!   subprogram directly through its native address.
//! * **Tail calls** go between compiled programs only: installing a
//!   program in a program array
//!   ([`ProgArray::set_program`](crate::maps::ProgArray::set_program))
//!   fills both the interpreter's slot and the compiled code's table. A
//!   program array owns the programs in its slots; programs keep only its
//!   table alive; a compiled program replaced in a slot is retired until no
//!   compiled run is in flight (see [`crate::maps::ProgArray`]).
//! * **Helpers' map handles** are looked up in the entry program's maps,
//!   then in those of the programs reachable through its program arrays
//!   (what a tail-called program uses), cached for the rest of the run.
//! * **XDP.** `xdp_md.data` and `data_end` are 32-bit fields holding
//!   pointers; the kernel's verifier rewrites those loads, the JIT runs
//!   unverified code. So the JIT engine copies the packet into a buffer in
//!   the low 2 GiB of the address space (`MAP_32BIT`), where a 32-bit field
//!   holds the whole pointer, runs, and copies the packet back.
//! * **`__sk_buff`** likewise: the whole 192-byte struct is built in front
//!   of the packet copy (`data`, `data_end`, `data_meta` as 32-bit
//!   pointers, unmodelled fields zero) and its writable fields are copied
//!   back into the caller's [`SkbMd`] ([`LoadedProgram::run_skb`]).
//!
//! # The AArch64 engine
//!
//! [`Engine::Arm64`] runs AArch64 code in the qemu-user harness of
//! `bpf_jit_arm64::emu`, a separate process: one emulator per process
//! (behind a mutex; runs from several threads take turns), started on the
//! first load. It reaches this process's runtime as follows.
//!
//! * **Shared memory.** [`crate::shared::enable`] creates a `memfd` arena
//!   mapped below 4 GiB at the same address in this process and in the
//!   emulator. Map storage, AArch64 program-array tables, each run's copy
//!   of its memory / packet (and `xdp_md` / `__sk_buff`) and the runs' stack are
//!   allocated there, so map-value pointers, stack keys and the packet are
//!   the same addresses on both sides. Maps must be created after the
//!   arena is enabled (a load referring to an array or program array
//!   outside it is refused).
//! * **Helpers** are upcalls: helper id `n` is a stub in the emulator's
//!   code region that sends `n` and `r1`-`r5` to this process, which runs
//!   the [`HelperRegistry`] closure exactly as the x86-64 trampolines do
//!   (same run state, map handles, error recording) and returns `r0`.
//!   `ld_abs`/`ld_ind` are an upcall too.
//! * **bpf_loop**: the host-side helper calls the callback's address in
//!   the emulator (a nested call served by the upcall in progress).
//! * **Tail calls** read the program array's AArch64 table in the arena;
//!   [`ProgArray::set_program`](crate::maps::ProgArray::set_program) writes
//!   an AArch64 program's emulator entry there (direct tail calls are off).
//! * **Private stacks**: each run's region is a block of the arena (so
//!   helpers reach pointers into it), guarded and checked as on x86-64;
//!   its top is the entry's sixth argument (`x5`).
//! * **Not supported**: a run started from inside another
//!   AArch64 run (e.g. from a helper), freeing code (the emulator's 4 MiB
//!   code region is a bump allocator).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bpf_isa::{CallTarget, Insn, LdImm64Src, Program};
use bpf_jit::{HelperTable, JitOptions, JitProgram};

use crate::context::{SkbMd, XdpMd};
use crate::error::{HelperError, VmError};
use crate::helpers::{HelperCtx, HelperFn, HelperRegistry, BPF_FUNC_LOOP};
use crate::interp::Interpreter;
use crate::maps::{errno, Map, ProgArrayShared};
use crate::mem::MemState;
use crate::BPF_MAX_LOOPS;

mod arm64;
mod skb;
pub use arm64::Arm64Prog;

/// Which engine runs a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// The reference interpreter (checked execution).
    Interp,
    /// The x86-64 JIT (`bpf-jit-x86`): native code, unchecked.
    X86,
    /// The x86-64 JIT's one-pass baseline tier ([`bpf_jit_x86::Baseline`]):
    /// compiled straight from the bytecode, faster to load, slower code;
    /// programs it does not handle (tail calls, private stacks, constant
    /// blinding, `bpf_fastcall` helpers, …) go to the
    /// optimizing compiler as with [`Engine::X86`]. Either way the result is
    /// a JIT program like an [`Engine::X86`] one: same maps, helpers, program
    /// arrays and tail calls (to and from [`Engine::X86`] programs too).
    X86Baseline,
    /// The AArch64 JIT (`bpf-jit-arm64`), run under qemu-user in a helper
    /// process (see [the module docs](crate::engine#the-aarch64-engine)):
    /// unchecked within that process, with this process's maps and
    /// helpers. Not in [`Engine::available`] (it needs `qemu-aarch64` and
    /// `aarch64-linux-gnu-gcc`; loading fails with [`VmError::Emulator`]
    /// when they are missing).
    Arm64,
}

impl Engine {
    /// The engines that can run on this host.
    pub fn available() -> Vec<Engine> {
        if cfg!(target_arch = "x86_64") {
            vec![Engine::Interp, Engine::X86, Engine::X86Baseline]
        } else {
            vec![Engine::Interp]
        }
    }

    /// The engine's command-line name (`interp`, `x86`, `x86-baseline`,
    /// `arm64`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Interp => "interp",
            Engine::X86 => "x86",
            Engine::X86Baseline => "x86-baseline",
            Engine::Arm64 => "arm64",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "interp" | "interpreter" => Ok(Engine::Interp),
            "x86" | "x86_64" | "x86-64" | "jit" => Ok(Engine::X86),
            "x86-baseline" | "baseline" => Ok(Engine::X86Baseline),
            "arm64" | "aarch64" => Ok(Engine::Arm64),
            other => Err(format!(
                "unknown engine {other:?} (available: interp, x86, x86-baseline, arm64)"
            )),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Number of helper ids compiled code can call (trampolines exist for `0..256`).
pub const JIT_HELPER_IDS: usize = 256;

/// A program compiled by the x86-64 JIT, with everything its code refers to.
pub struct JitProg {
    code: JitProgram,
    /// The engine it was loaded for ([`Engine::X86`] or [`Engine::X86Baseline`]).
    engine: Engine,
    /// The maps the code refers to, program arrays excepted.
    maps: Vec<Arc<Map>>,
    /// The program arrays it tail-calls through: their tables (which the
    /// code addresses) but not the maps, which own their slots' programs.
    prog_arrays: Vec<Arc<ProgArrayShared>>,
    helpers: Box<[Option<Arc<HelperFn>>]>,
    builtins: bool,
    /// The code calls nothing outside its own image (no helper, kfunc,
    /// `callx`, tail call or packet-load routine) and runs on the native
    /// stack: it never reaches the run state or a program-array slot, so a
    /// run is a plain native call (see [`calls_out`]).
    self_contained: bool,
}

/// Whether `prog` has an instruction whose compiled code may leave the
/// image: a helper or kfunc call (tail calls included), `callx`, or a
/// legacy packet load.
fn calls_out(prog: &Program) -> bool {
    prog.insns().iter().any(|i| {
        matches!(
            i,
            Insn::Call(CallTarget::Helper(_) | CallTarget::Kfunc { .. })
                | Insn::CallReg { .. }
                | Insn::LdAbs { .. }
                | Insn::LdInd { .. }
        )
    })
}

impl std::fmt::Debug for JitProg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProg")
            .field("code_bytes", &self.code.memory().len())
            .field("engine", &self.engine)
            .field("maps", &self.maps.len())
            .finish()
    }
}

impl JitProg {
    /// The executable image.
    pub fn code(&self) -> &JitProgram {
        &self.code
    }

    /// Address of the main entry (what a program-array slot holds).
    pub fn entry_address(&self) -> u64 {
        self.code.memory().as_ptr() as u64
    }
}

#[derive(Clone)]
enum Inner {
    Interp(Arc<Interpreter>),
    Jit(Arc<JitProg>),
    Arm64(Arc<Arm64Prog>),
}

/// A loaded program, run by the engine chosen at load time.
#[derive(Clone)]
pub struct LoadedProgram {
    inner: Inner,
}

impl std::fmt::Debug for LoadedProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Interp(i) => f.debug_tuple("LoadedProgram").field(i).finish(),
            Inner::Jit(j) => f.debug_tuple("LoadedProgram").field(j).finish(),
            Inner::Arm64(a) => f.debug_tuple("LoadedProgram").field(a).finish(),
        }
    }
}

/// Builds a [`LoadedProgram`]: engine, helpers, maps, limits.
pub struct LoadBuilder<'p> {
    prog: &'p Program,
    engine: Engine,
    helpers: HelperRegistry,
    maps_by_fd: BTreeMap<i32, Arc<Map>>,
    maps_by_idx: Vec<Arc<Map>>,
    limit: Option<u64>,
    stack_depths: Option<Vec<u32>>,
    private_stack: bool,
    /// `bpf_fastcall` helpers: id and preserve mask, by id.
    fastcall: BTreeMap<i32, u16>,
    /// Constant-blinding seed for the JIT.
    blind: Option<u64>,
}

impl<'p> LoadBuilder<'p> {
    /// Uses `helpers` instead of [`HelperRegistry::kernel`].
    pub fn helpers(mut self, helpers: HelperRegistry) -> Self {
        self.helpers = helpers;
        self
    }

    /// Binds map `fd` (what `ld_imm64` with `BPF_PSEUDO_MAP_FD` / `_VALUE` names).
    pub fn map(mut self, fd: i32, map: Arc<Map>) -> Self {
        self.maps_by_fd.insert(fd, map);
        self
    }

    /// Binds the `fd_array` that `BPF_PSEUDO_MAP_IDX` / `_IDX_VALUE` index.
    pub fn fd_array(mut self, maps: Vec<Arc<Map>>) -> Self {
        self.maps_by_idx = maps;
        self
    }

    /// Interpreter only: instruction budget of checked runs.
    pub fn instruction_limit(mut self, n: Option<u64>) -> Self {
        self.limit = n;
        self
    }

    /// JIT only: stack bytes per subprogram (in subprogram order), e.g. from
    /// the verifier; by default every frame gets 512 bytes.
    pub fn stack_depths(mut self, depths: Vec<u32>) -> Self {
        self.stack_depths = Some(depths);
        self
    }

    /// JIT only: declares helper `id` `bpf_fastcall`: compiled calls to it
    /// leave the eBPF registers in `preserve` (bit `i` for `ri`, `r0`-`r5`)
    /// intact, so a program whose spills and fills around the call were
    /// removed (`bpf_verifier::nocsr`) stays correct. A mask of 0 makes it an
    /// ordinary helper again. By default the builder declares
    /// [`FASTCALL_HELPERS`](crate::helpers::FASTCALL_HELPERS); pass the
    /// entries of the verifier's fastcall table for platform additions.
    /// (The interpreter preserves `r1`-`r5` around every helper call.)
    pub fn fastcall(mut self, id: i32, preserve: u16) -> Self {
        if preserve == 0 {
            self.fastcall.remove(&id);
        } else {
            self.fastcall.insert(id, preserve);
        }
        self
    }

    /// JIT only: keep the program's eBPF frames in a private region instead
    /// of on the thread's native stack (`bpf_jit::JitOptions::private_stack`).
    /// On x86-64 each run takes a region from a per-thread pool (a run
    /// nested inside a helper takes the next one); on [`Engine::Arm64`] a
    /// block of the shared arena. Either is sized for the deepest call chain of
    /// every private-stack program loaded so far times 34 levels of tail
    /// calls, with guard words on both sides that are checked after the run
    /// ([`VmError::PrivateStackOverflow`]). Programs with callback
    /// subprograms are refused; programs with and without a private stack
    /// cannot share a program array. Off by default; ignored by the interpreter.
    pub fn private_stack(mut self, on: bool) -> Self {
        self.private_stack = on;
        self
    }

    /// Compiles with constant blinding keyed by `seed`
    /// (`bpf_jit::JitOptions::blind_constants`; `None`: off, the default;
    /// `bpf_jit::random_blinding_seed` gives a fresh key). Ignored by the
    /// interpreter.
    pub fn blind_constants(mut self, seed: Option<u64>) -> Self {
        self.blind = seed;
        self
    }

    fn lookup(&self, fd: i32, is_idx: bool) -> Option<Arc<Map>> {
        if is_idx {
            usize::try_from(fd)
                .ok()
                .and_then(|i| self.maps_by_idx.get(i))
                .cloned()
        } else {
            self.maps_by_fd.get(&fd).cloned()
        }
    }

    /// Validates and loads (lowers or compiles) the program.
    pub fn build(self) -> Result<LoadedProgram, VmError> {
        match self.engine {
            Engine::Interp => {
                let mut b = Interpreter::builder(self.prog)
                    .helpers(self.helpers)
                    .fd_array(self.maps_by_idx)
                    .instruction_limit(self.limit);
                for (fd, m) in self.maps_by_fd {
                    b = b.map(fd, m);
                }
                Ok(LoadedProgram {
                    inner: Inner::Interp(Arc::new(b.build()?)),
                })
            }
            Engine::X86 | Engine::X86Baseline => self.build_jit(),
            Engine::Arm64 => arm64::build(self),
        }
    }

    /// The helpers a JIT-compiled program may call: the registered ones
    /// (and `bpf_loop` when the kernel's built-ins are on), by id, and the
    /// JIT's table, filled by `add(table, id, registers to preserve)`
    /// with the engine's native entry for helper `id`.
    fn jit_helpers(
        &self,
        mut add: impl FnMut(&mut HelperTable, usize, u16) -> Result<(), VmError>,
    ) -> Result<JitHelpers, VmError> {
        let builtins = self.helpers.kernel_builtins();
        let mut helpers: Vec<Option<Arc<HelperFn>>> = vec![None; JIT_HELPER_IDS];
        let mut table = HelperTable::new();
        for (id, slot) in helpers.iter_mut().enumerate() {
            let idn = id as i32;
            if let Some(f) = self.helpers.get(idn) {
                *slot = Some(f);
                add(
                    &mut table,
                    id,
                    self.fastcall.get(&idn).copied().unwrap_or(0),
                )?;
            } else if builtins && idn == BPF_FUNC_LOOP {
                add(&mut table, id, 0)?;
            }
        }
        Ok((helpers, table))
    }

    fn build_jit(self) -> Result<LoadedProgram, VmError> {
        if !cfg!(target_arch = "x86_64") {
            return Err(VmError::Unsupported {
                insn: 0,
                what: "the x86-64 JIT on a non-x86-64 host",
            });
        }
        self.prog.validate()?;
        let builtins = self.helpers.kernel_builtins();
        let (helpers, table) = self.jit_helpers(|table, id, keep| {
            if let Some(tramp) = TRAMPOLINES.get(id) {
                table.insert_fastcall(id as i32, *tramp, keep);
            }
            Ok(())
        })?;
        let refs = MapRefs::default();
        let resolve = |slot: usize, src: LdImm64Src| -> Option<u64> {
            let (fd, map, off) = refs.lookup(&self, slot, src)?;
            if let (None, Some(pa)) = (off, map.as_prog_array()) {
                let shared = pa.shared();
                refs.note_array(shared);
                return Some(shared.handle());
            }
            refs.value(map, slot, fd, off)
        };
        let mut opts = JitOptions::new(&table)
            .with_ld_imm64(&resolve)
            .with_ld_abs(jit_ld_abs);
        if let Some(d) = &self.stack_depths {
            opts = opts.with_stack_depths(d);
        }
        opts = opts.with_private_stack(self.private_stack);
        opts.blind_constants = self.blind;
        // Tail calls through a constant array and index become patchable
        // direct jumps, kept in step with the slot by the array (below).
        opts = opts.with_direct_tail_calls(true);
        // The thread's compiler keeps its buffers from one load to the
        // next; a fresh one if it is in use (or the thread is exiting).
        let code = if self.engine == Engine::X86Baseline {
            // The one-pass tier reads the bytecode; what it does not handle
            // goes to the optimizing compiler, with the same options.
            let bytes = self.prog.to_bytes();
            X86_BASELINE
                .try_with(|c| {
                    c.try_borrow_mut()
                        .map(|mut c| c.compile(&bytes, &opts))
                        .ok()
                })
                .ok()
                .flatten()
                .unwrap_or_else(|| bpf_jit_x86::Baseline::new().compile(&bytes, &opts))
        } else {
            X86_COMPILER
                .try_with(|c| {
                    c.try_borrow_mut()
                        .map(|mut c| c.compile(self.prog, &opts))
                        .ok()
                })
                .ok()
                .flatten()
                .unwrap_or_else(|| bpf_jit_x86::compile(self.prog, &opts))
        }
        .map_err(|e| refs.jit_error(e))?;
        let (maps, prog_arrays) = refs.into_parts();
        if prog_arrays
            .iter()
            .any(|a| !a.claim_stack_kind(self.private_stack))
        {
            return Err(VmError::Unsupported {
                insn: 0,
                what: "a program array shared by native-stack and private-stack programs",
            });
        }
        // Register the direct tail-call sites with their arrays (which then
        // patch them on every slot change; a replaced or cleared target is
        // retired until no compiled run is in flight, so a thread already
        // past a site's bypass still finds mapped code at its target).
        for a in &prog_arrays {
            code.attach(a.jit_table())
                .map_err(|e| VmError::Unsupported {
                    insn: e.slot,
                    what: "direct tail call site",
                })?;
        }
        if self.private_stack {
            PRIVATE_CHAIN_MAX.fetch_max(code.private_stack_bytes(), Ordering::SeqCst);
        }
        Ok(LoadedProgram {
            inner: Inner::Jit(Arc::new(JitProg {
                code,
                engine: self.engine,
                maps,
                prog_arrays,
                helpers: helpers.into_boxed_slice(),
                builtins,
                self_contained: !self.private_stack && !calls_out(self.prog),
            })),
        })
    }
}

impl LoadedProgram {
    /// Starts loading `prog` for `engine` with the kernel helpers and no maps.
    pub fn builder(prog: &Program, engine: Engine) -> LoadBuilder<'_> {
        LoadBuilder {
            prog,
            engine,
            helpers: HelperRegistry::kernel(),
            maps_by_fd: BTreeMap::new(),
            maps_by_idx: Vec::new(),
            limit: None,
            stack_depths: None,
            private_stack: false,
            blind: None,
            fastcall: crate::helpers::FASTCALL_HELPERS.iter().copied().collect(),
        }
    }

    /// An interpreted program as a loaded one (e.g. for
    /// [`ProgArray::set_program`](crate::maps::ProgArray::set_program)).
    pub fn from_interpreter(interp: Arc<Interpreter>) -> LoadedProgram {
        LoadedProgram {
            inner: Inner::Interp(interp),
        }
    }

    /// The engine that runs it.
    pub fn engine(&self) -> Engine {
        match &self.inner {
            Inner::Interp(_) => Engine::Interp,
            Inner::Jit(j) => j.engine,
            Inner::Arm64(_) => Engine::Arm64,
        }
    }

    /// The interpreter, for [`Engine::Interp`].
    pub fn interpreter(&self) -> Option<&Arc<Interpreter>> {
        match &self.inner {
            Inner::Interp(i) => Some(i),
            Inner::Jit(_) | Inner::Arm64(_) => None,
        }
    }

    /// The compiled program, for [`Engine::X86`] and [`Engine::X86Baseline`].
    pub fn jit(&self) -> Option<&Arc<JitProg>> {
        match &self.inner {
            Inner::Jit(j) => Some(j),
            Inner::Interp(_) | Inner::Arm64(_) => None,
        }
    }

    /// The program compiled for AArch64, for [`Engine::Arm64`].
    pub fn arm64(&self) -> Option<&Arc<Arm64Prog>> {
        match &self.inner {
            Inner::Arm64(a) => Some(a),
            Inner::Interp(_) | Inner::Jit(_) => None,
        }
    }

    /// Runs with `r1` = `mem`'s address and `r2` = its length.
    ///
    /// # Safety
    /// With [`Engine::Interp`] this is always safe (checked execution). With
    /// [`Engine::X86`] or [`Engine::X86Baseline`] the program runs as unchecked native code: it must be
    /// memory-safe for this input (verified), as must every program it tail
    /// calls, and every helper it calls must be sound for its arguments.
    pub unsafe fn run_mem(&self, mem: &mut [u8]) -> Result<u64, VmError> {
        match &self.inner {
            Inner::Interp(i) => i.run_mem(mem),
            Inner::Jit(j) => {
                let args = [mem.as_mut_ptr() as u64, mem.len() as u64, 0, 0, 0];
                let pkt = if mem.is_empty() {
                    (0, 0)
                } else {
                    (args[0], args[1])
                };
                // SAFETY: forwarded to the caller.
                unsafe { run_jit(j, args, pkt) }
            }
            Inner::Arm64(a) => arm64::run(a, mem, arm64::RunCtx::Mem),
        }
    }

    /// Runs an XDP program on `packet` (no metadata area) and returns `r0`.
    ///
    /// # Safety
    /// As for [`LoadedProgram::run_mem`], for an XDP context.
    pub unsafe fn run_xdp(&self, packet: &mut [u8], md: &XdpMd) -> Result<u64, VmError> {
        match &self.inner {
            Inner::Interp(i) => i.run_xdp(packet, md),
            // SAFETY: forwarded to the caller.
            Inner::Jit(j) => unsafe { run_jit_xdp(j, packet, md) },
            Inner::Arm64(a) => arm64::run(a, packet, arm64::RunCtx::Xdp(md)),
        }
    }

    /// Runs a socket-filter / tc program on `packet` with `r1` pointing at a
    /// `struct __sk_buff` built from `skb` (`len` is the packet's length;
    /// `data`, `data_meta` and `data_end` delimit the packet); afterwards the
    /// packet and the writable fields of `skb` (`mark`, `priority`,
    /// `tc_index`, `cb`, `tc_classid`) hold what the program wrote.
    /// `ld_abs`/`ld_ind` read the packet.
    ///
    /// On the JIT engines the struct and a copy of the packet are placed
    /// below 4 GiB (a `MAP_32BIT` buffer on x86-64, the shared arena on
    /// arm64) so the 32-bit pointer fields hold whole addresses; fields of
    /// `struct __sk_buff` that [`SkbMd`] does not model read as zero there
    /// (the interpreter refuses them).
    ///
    /// # Safety
    /// As for [`LoadedProgram::run_mem`], for a `struct __sk_buff` context.
    pub unsafe fn run_skb(&self, packet: &mut [u8], skb: &mut SkbMd) -> Result<u64, VmError> {
        match &self.inner {
            Inner::Interp(i) => i.run_skb(packet, skb),
            // SAFETY: forwarded to the caller.
            Inner::Jit(j) => unsafe { skb::run_jit_skb(j, packet, skb) },
            Inner::Arm64(a) => arm64::run(a, packet, arm64::RunCtx::Skb(skb)),
        }
    }
}

// ---- runs ---------------------------------------------------------------------

/// The state of one compiled run, reachable from helper trampolines.
struct RunState {
    mem: MemState,
    /// The entry program's maps and program arrays (alive for the whole
    /// run: the caller holds the program).
    entry_maps: *const [Arc<Map>],
    entry_arrays: *const [Arc<ProgArrayShared>],
    helpers: *const [Option<Arc<HelperFn>>],
    builtins: bool,
    /// Maps of tail-called programs that helpers were passed (found through
    /// the entry's program arrays), kept for the rest of the run.
    extra: Vec<Arc<Map>>,
    /// The last `r1` a helper was passed that named no map reachable from
    /// the entry, with the [`SLOT_GEN`] of that search: while no slot
    /// changes, the same value needs no new search.
    miss: Option<(u64, u64)>,
    error: Option<VmError>,
    /// The packet `ld_abs`/`ld_ind` read ([`jit_ld_abs`]): address and
    /// length (the interpreter's for the same run).
    pkt: (u64, u64),
}

thread_local! {
    static RUN: Cell<*mut RunState> = const { Cell::new(std::ptr::null_mut()) };
}

// ---- program retirement -------------------------------------------------------
//
// Compiled code jumps through program-array tables holding raw entry
// addresses, so a program taken out of a slot may still be executing (a
// tail call read the slot just before). Such programs are retired: kept in
// `RETIRED` until no compiled run is in flight. The scheme:
//
// * a run increments `IN_FLIGHT` before its code can read any slot and
//   decrements it when it returns;
// * a slot is overwritten in the table *before* its old program is put on
//   the retire list;
// * the list is emptied only by someone who, holding its lock, sees
//   `IN_FLIGHT == 0` (all `SeqCst`). Every program on the list was unlinked
//   before that check, so a run that could still hold its address started
//   before the check and would have been counted; runs starting after the
//   check read the new slot contents.
//
// Reclaiming happens on every retirement and whenever the last in-flight
// run returns, so retired programs live at most until the process next has
// no compiled run in flight.

/// Compiled runs executing right now, on all threads.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
/// Programs taken out of program-array slots, waiting for quiescence.
static RETIRED: Mutex<Vec<LoadedProgram>> = Mutex::new(Vec::new());
/// Whether `RETIRED` may be non-empty (spares runs the lock).
static HAVE_RETIRED: AtomicBool = AtomicBool::new(false);
/// Bumped after every change of a program-array slot (and the retirement
/// of the program it replaced): a [`reachable_map`] search that found
/// nothing stays valid while this does not change (programs only leave
/// `RETIRED` otherwise, which cannot make a missing map appear).
static SLOT_GEN: AtomicU64 = AtomicU64::new(0);

/// Records that a program-array slot changed (see [`SLOT_GEN`]); called
/// after the old program is retired.
pub(crate) fn note_slot_change() {
    SLOT_GEN.fetch_add(1, Ordering::SeqCst);
}

/// Takes a program out of service: a compiled one goes to the retire list
/// (it may still be running), an interpreted one is released at once
/// (interpreted runs hold their own references).
pub(crate) fn retire(prog: LoadedProgram) {
    if prog.jit().is_none() {
        return;
    }
    if let Ok(mut g) = RETIRED.lock() {
        g.push(prog);
        HAVE_RETIRED.store(true, Ordering::SeqCst);
    }
    reclaim();
}

/// Frees the retired programs if no compiled run is in flight.
fn reclaim() {
    let freed = match RETIRED.lock() {
        Ok(mut g) if IN_FLIGHT.load(Ordering::SeqCst) == 0 => {
            HAVE_RETIRED.store(false, Ordering::SeqCst);
            std::mem::take(&mut *g)
        }
        _ => Vec::new(),
    };
    // Dropped outside the lock: freeing a program may free program arrays,
    // which retire their own slots.
    drop(freed);
}

/// Number of compiled programs taken out of program-array slots and not
/// yet freed because a compiled run was in flight when they were retired
/// (0 whenever no compiled run is executing). For tests and diagnostics.
pub fn retired_programs() -> usize {
    RETIRED.lock().map_or(0, |g| g.len())
}

/// Counts a compiled run as in flight for as long as it lives.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if IN_FLIGHT.fetch_sub(1, Ordering::SeqCst) == 1 && HAVE_RETIRED.load(Ordering::SeqCst) {
            reclaim();
        }
    }
}

/// The map behind `handle` among the maps of the programs reachable from
/// `entry` through program-array slots (or waiting in the retire list):
/// the maps a tail-called program may pass to a helper.
fn reachable_map(entry_arrays: &[Arc<ProgArrayShared>], handle: u64) -> Option<Arc<Map>> {
    let mut seen: Vec<*const ProgArrayShared> = Vec::new();
    let mut todo: Vec<Arc<ProgArrayShared>> = entry_arrays.to_vec();
    let find = |maps: &[Arc<Map>]| {
        maps.iter()
            .find(|m| Arc::as_ptr(m) as u64 == handle)
            .cloned()
    };
    let check = |j: &JitProg| find(&j.maps);
    while let Some(pa) = todo.pop() {
        if seen.contains(&Arc::as_ptr(&pa)) {
            continue;
        }
        seen.push(Arc::as_ptr(&pa));
        for p in pa.programs() {
            if let Some(j) = p.jit() {
                if let Some(m) = check(j) {
                    return Some(m);
                }
                todo.extend(j.prog_arrays.iter().cloned());
            }
            if let Some(a) = p.arm64() {
                if let Some(m) = find(&a.maps) {
                    return Some(m);
                }
                todo.extend(a.prog_arrays.iter().cloned());
            }
        }
    }
    let retired = RETIRED.lock().ok()?;
    retired
        .iter()
        .filter_map(|p| p.jit())
        .find_map(|j| check(j))
}

/// Restores the previous run state (nested runs) when dropped.
struct RunGuard {
    prev: *mut RunState,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        RUN.with(|r| r.set(self.prev));
    }
}

// ---- private stacks -------------------------------------------------------------
//
// A private-stack program's frames live in a region of the run's own: the
// entry is called with the region's top as sixth argument. Each thread keeps
// a stack of regions; a run takes the one at its nesting depth (a program
// run from inside a helper of another run takes the next), so runs allocate
// only when they nest deeper, or need more room, than any before.

/// Largest `private_stack_bytes` of any private-stack program loaded so far.
static PRIVATE_CHAIN_MAX: AtomicU32 = AtomicU32::new(0);

/// Guard bytes on each side of a private region.
pub const PRIVATE_STACK_GUARD_BYTES: usize = 32;
/// The pattern the guard words hold.
const GUARD_WORD: u64 = 0x5ca1_ab1e_dead_beef;
const GUARD_WORDS: usize = PRIVATE_STACK_GUARD_BYTES / 8;

/// Bytes of private region one run needs: every level of tail calls
/// (`MAX_TAIL_CALL_CNT + 1`) may stack the largest chain of frames.
pub fn private_stack_region_bytes() -> usize {
    let chain = PRIVATE_CHAIN_MAX.load(Ordering::SeqCst) as usize;
    chain.saturating_mul(bpf_jit::MAX_TAIL_CALL_CNT as usize + 1)
}

thread_local! {
    /// One x86-64 JIT compiler per thread, reused by every JIT load
    /// ([`bpf_jit_x86::Compiler`]: its code buffer and the driver's tables
    /// are kept between compiles).
    static X86_COMPILER: RefCell<bpf_jit_x86::Compiler> = RefCell::new(bpf_jit_x86::Compiler::new());
    /// The thread's baseline-tier compiler ([`Engine::X86Baseline`]).
    static X86_BASELINE: RefCell<bpf_jit_x86::Baseline> = RefCell::new(bpf_jit_x86::Baseline::new());
}

thread_local! {
    /// Regions of this thread, by nesting depth (16-byte units).
    static REGIONS: RefCell<Vec<Box<[u128]>>> = const { RefCell::new(Vec::new()) };
    /// Private-stack runs in progress on this thread.
    static REGION_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// A private region: words `[0, GUARD_WORDS)` and the last `GUARD_WORDS`
/// are guards; the program's frames lie in between, below the top that
/// [`Guarded::arm`] returns. Both engines use it (the x86-64 engine over a
/// per-thread region, the arm64 engine over a block of the shared arena).
struct Guarded {
    base: *mut u64,
    words: usize,
}

impl Guarded {
    /// Words a region of `need` frame bytes takes, guards included (a
    /// multiple of 2, so the region is whole 16-byte units).
    fn words_for(need: usize) -> usize {
        (need + 2 * PRIVATE_STACK_GUARD_BYTES).div_ceil(16) * 2
    }

    /// Writes the guard words; returns the region's top (16-byte aligned
    /// when `base` is).
    ///
    /// # Safety
    /// `base` must point at `words` (>= 2 * GUARD_WORDS) writable u64 that
    /// no one else uses while the region is armed.
    unsafe fn arm(&self) -> u64 {
        // SAFETY: forwarded to the caller.
        unsafe {
            for i in 0..GUARD_WORDS {
                self.base.add(i).write(GUARD_WORD);
                self.base.add(self.words - 1 - i).write(GUARD_WORD);
            }
            self.base.add(self.words - GUARD_WORDS) as u64
        }
    }

    /// Which guard, if any, the run overwrote, as
    /// [`VmError::PrivateStackOverflow`].
    ///
    /// # Safety
    /// As for [`Guarded::arm`].
    unsafe fn check(&self) -> Result<(), VmError> {
        // SAFETY: forwarded to the caller.
        let side = unsafe {
            if (0..GUARD_WORDS).any(|i| self.base.add(i).read() != GUARD_WORD) {
                Some("below")
            } else if (0..GUARD_WORDS)
                .any(|i| self.base.add(self.words - 1 - i).read() != GUARD_WORD)
            {
                Some("above")
            } else {
                None
            }
        };
        match side {
            Some(side) => Err(VmError::PrivateStackOverflow { side }),
            None => Ok(()),
        }
    }
}

/// One run's region of the per-thread pool.
struct RegionLease {
    region: Guarded,
}

impl RegionLease {
    fn take(need: usize) -> RegionLease {
        let depth = REGION_DEPTH.with(|d| {
            let v = d.get();
            d.set(v + 1);
            v
        });
        let units = Guarded::words_for(need) / 2;
        REGIONS.with(|r| {
            let mut r = r.borrow_mut();
            while r.len() <= depth {
                r.push(Box::default());
            }
            let mut lease = RegionLease {
                region: Guarded {
                    base: std::ptr::null_mut(),
                    words: 0,
                },
            };
            if let Some(slot) = r.get_mut(depth) {
                if slot.len() < units {
                    *slot = vec![0u128; units].into_boxed_slice();
                }
                // The boxed slice stays put while the vector grows (nested runs).
                lease.region.base = slot.as_mut_ptr().cast::<u64>();
                lease.region.words = slot.len() * 2;
            }
            lease
        })
    }

    /// Writes the guard words; returns the region's top (16-byte aligned).
    fn arm(&self) -> u64 {
        // SAFETY: the lease owns the region's slot at its depth.
        unsafe { self.region.arm() }
    }

    /// Which guard, if any, the run overwrote.
    fn check(&self) -> Result<(), VmError> {
        // SAFETY: as in `arm`.
        unsafe { self.region.check() }
    }
}

impl Drop for RegionLease {
    fn drop(&mut self) {
        REGION_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// # Safety
/// The program must be safe to run with `args` (see [`LoadedProgram::run_mem`]).
unsafe fn run_jit(j: &JitProg, args: [u64; 5], pkt: (u64, u64)) -> Result<u64, VmError> {
    if j.self_contained {
        // Nothing in the code reads the run state or a program-array slot:
        // no state to publish, no in-flight count to keep.
        // SAFETY: forwarded to the caller.
        return Ok(unsafe { j.code.call(args) });
    }
    let mut st = RunState {
        mem: MemState::new(0, 0),
        entry_maps: &*j.maps as *const [Arc<Map>],
        entry_arrays: &*j.prog_arrays as *const [Arc<ProgArrayShared>],
        helpers: &*j.helpers as *const [Option<Arc<HelperFn>>],
        builtins: j.builtins,
        extra: Vec::new(),
        miss: None,
        error: None,
        pkt,
    };
    let in_flight = InFlight::enter();
    let prev = RUN.with(|r| r.replace(&mut st as *mut RunState));
    let guard = RunGuard { prev };
    let lease = j
        .code
        .private_stack()
        .then(|| RegionLease::take(private_stack_region_bytes()));
    // SAFETY: the caller guarantees the program is safe for `args`; the run
    // state outlives the call and is only reached through `RUN` meanwhile.
    // A private-stack program gets a region of its own, as large as any
    // program reachable from it (through program arrays) needs: all of
    // them are private-stack programs, loaded before the run.
    let r0 = unsafe {
        match &lease {
            Some(l) => j.code.call_with_stack(args, l.arm()),
            None => j.code.call(args),
        }
    };
    let overflow = lease.as_ref().map_or(Ok(()), RegionLease::check);
    drop(lease);
    drop(guard);
    drop(in_flight);
    overflow?;
    match st.error.take() {
        Some(e) => Err(e),
        None => Ok(r0),
    }
}

/// A buffer in the low 2 GiB of the address space (`MAP_32BIT`).
struct LowBuf {
    ptr: *mut u8,
    len: usize,
}

impl LowBuf {
    fn new(len: usize) -> Option<LowBuf> {
        let len = len.max(4096).next_multiple_of(4096);
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | map_32bit(),
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || (p as u64).saturating_add(len as u64) > u64::from(u32::MAX) {
            if p != libc::MAP_FAILED {
                // SAFETY: unmapping the mapping just made.
                unsafe { libc::munmap(p, len) };
            }
            return None;
        }
        Some(LowBuf { ptr: p.cast(), len })
    }
}

impl Drop for LowBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping this value owns.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn map_32bit() -> libc::c_int {
    libc::MAP_32BIT
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn map_32bit() -> libc::c_int {
    0
}

thread_local! {
    static LOW: RefCell<Option<LowBuf>> = const { RefCell::new(None) };
}

/// Bytes reserved for `struct xdp_md` at the start of the low buffer.
const XDP_CTX_ROOM: usize = 64;

/// # Safety
/// As for [`LoadedProgram::run_xdp`].
unsafe fn run_jit_xdp(j: &JitProg, packet: &mut [u8], md: &XdpMd) -> Result<u64, VmError> {
    let need = XDP_CTX_ROOM + packet.len();
    let mut taken = LOW.with(|l| l.borrow_mut().take());
    if taken.as_ref().is_none_or(|b| b.len < need) {
        taken = LowBuf::new(need);
    }
    let Some(buf) = taken else {
        return Err(VmError::Unsupported {
            insn: 0,
            what: "XDP on the JIT: no memory below 4 GiB",
        });
    };
    let data = buf.ptr as u64 + XDP_CTX_ROOM as u64;
    let end = data + packet.len() as u64;
    let mut ctx = [0u32; 6];
    ctx[0] = data as u32;
    ctx[1] = end as u32;
    ctx[2] = data as u32; // data_meta: no metadata area
    ctx[3] = md.ingress_ifindex;
    ctx[4] = md.rx_queue_index;
    ctx[5] = md.egress_ifindex;
    // SAFETY: the buffer holds XDP_CTX_ROOM + packet.len() bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(ctx.as_ptr().cast::<u8>(), buf.ptr, 24);
        std::ptr::copy_nonoverlapping(packet.as_ptr(), buf.ptr.add(XDP_CTX_ROOM), packet.len());
    }
    // SAFETY: forwarded to the caller; r1 points at the context.
    let r = unsafe { run_jit(j, [buf.ptr as u64, 0, 0, 0, 0], (data, packet.len() as u64)) };
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.ptr.add(XDP_CTX_ROOM), packet.as_mut_ptr(), packet.len())
    };
    LOW.with(|l| *l.borrow_mut() = Some(buf));
    r
}

// ---- helper trampolines ---------------------------------------------------------

/// The `ld_abs`/`ld_ind` routine of compiled programs
/// ([`bpf_jit::JitOptions::ld_abs`]): `size` bytes at the signed 32-bit
/// offset `off` of the run's packet, big-endian to a host number, or
/// `-EFAULT` when they are not all inside it (the program then returns 0,
/// as the interpreter's run does). The context argument is not needed:
/// the packet is the run's.
unsafe extern "C" fn jit_ld_abs(_ctx: u64, off: u64, size: u64, _: u64, _: u64) -> u64 {
    const EFAULT: u64 = -14i64 as u64;
    let p = RUN.with(|r| r.get());
    if p.is_null() {
        return EFAULT;
    }
    // SAFETY: `p` is the state of the run executing on this thread (set by
    // `run_jit` for the duration of the native call); read only.
    let (ptr, len) = unsafe { (*p).pkt };
    let Ok(off) = u64::try_from(off as u32 as i32) else {
        return EFAULT;
    };
    if size > 4 || off.saturating_add(size) > len {
        return EFAULT;
    }
    // SAFETY: `[ptr + off, ptr + off + size)` lies in the run's packet,
    // which the caller of the run lent for its duration.
    let bytes = unsafe { std::slice::from_raw_parts((ptr + off) as *const u8, size as usize) };
    bytes.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
}

/// The native entry of helper `ID` for compiled code.
unsafe extern "C" fn trampoline<const ID: usize>(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch(ID, a, b, c, d, e)
}

macro_rules! row {
    ($hi:literal) => {
        [
            trampoline::<{ $hi * 16 }>,
            trampoline::<{ $hi * 16 + 1 }>,
            trampoline::<{ $hi * 16 + 2 }>,
            trampoline::<{ $hi * 16 + 3 }>,
            trampoline::<{ $hi * 16 + 4 }>,
            trampoline::<{ $hi * 16 + 5 }>,
            trampoline::<{ $hi * 16 + 6 }>,
            trampoline::<{ $hi * 16 + 7 }>,
            trampoline::<{ $hi * 16 + 8 }>,
            trampoline::<{ $hi * 16 + 9 }>,
            trampoline::<{ $hi * 16 + 10 }>,
            trampoline::<{ $hi * 16 + 11 }>,
            trampoline::<{ $hi * 16 + 12 }>,
            trampoline::<{ $hi * 16 + 13 }>,
            trampoline::<{ $hi * 16 + 14 }>,
            trampoline::<{ $hi * 16 + 15 }>,
        ]
    };
}

type Tramp = unsafe extern "C" fn(u64, u64, u64, u64, u64) -> u64;

static TRAMPOLINE_ROWS: [[Tramp; 16]; 16] = [
    row!(0),
    row!(1),
    row!(2),
    row!(3),
    row!(4),
    row!(5),
    row!(6),
    row!(7),
    row!(8),
    row!(9),
    row!(10),
    row!(11),
    row!(12),
    row!(13),
    row!(14),
    row!(15),
];

/// The registered helpers by id, and the JIT's table of their entries.
type JitHelpers = (Vec<Option<Arc<HelperFn>>>, HelperTable);

/// What resolving a program's map references collects while a JIT
/// compiles it: the maps and program arrays it uses (kept alive by the
/// loaded program) and the first error, which the JIT's resolver callback
/// can only report as "unresolved".
#[derive(Default)]
struct MapRefs {
    used: Mutex<Vec<Arc<Map>>>,
    arrays: Mutex<Vec<Arc<ProgArrayShared>>>,
    missing: Mutex<Option<VmError>>,
}

impl MapRefs {
    /// Records `e` (unless an earlier error is recorded) and returns the
    /// resolver's "unresolved".
    fn fail(&self, e: VmError) -> Option<u64> {
        if let Ok(mut m) = self.missing.lock() {
            m.get_or_insert(e);
        }
        None
    }

    /// The map an `ld_imm64` source names (by fd or by index into the
    /// builder's maps), with its fd and value offset; `None` for other
    /// sources, and for an unknown map (recorded as the error).
    fn lookup(
        &self,
        b: &LoadBuilder<'_>,
        slot: usize,
        src: LdImm64Src,
    ) -> Option<(i32, Arc<Map>, Option<u32>)> {
        let (fd, is_idx, off) = match src {
            LdImm64Src::MapFd(fd) => (fd, false, None),
            LdImm64Src::MapIdx(i) => (i, true, None),
            LdImm64Src::MapValue { fd, off } => (fd, false, Some(off)),
            LdImm64Src::MapIdxValue { idx, off } => (idx, true, Some(off)),
            _ => return None,
        };
        match b.lookup(fd, is_idx) {
            Some(map) => Some((fd, map, off)),
            None => {
                self.fail(VmError::UnknownMap { insn: slot, fd });
                None
            }
        }
    }

    /// Keeps `shared` alive with the program.
    fn note_array(&self, shared: &Arc<ProgArrayShared>) {
        if let Ok(mut a) = self.arrays.lock() {
            if !a.iter().any(|x| Arc::ptr_eq(x, shared)) {
                a.push(shared.clone());
            }
        }
    }

    /// The address `map` resolves to (the map itself, or with `off` the
    /// address of its value's byte `off`), keeping the map alive with the
    /// program.
    fn value(&self, map: Arc<Map>, slot: usize, fd: i32, off: Option<u32>) -> Option<u64> {
        let value = match off {
            None => Arc::as_ptr(&map) as u64,
            Some(off) => match map.direct_value(off) {
                Some(v) => v.ptr,
                None => {
                    return self.fail(VmError::BadMapValue {
                        insn: slot,
                        fd,
                        off,
                    })
                }
            },
        };
        if let Ok(mut u) = self.used.lock() {
            if !u.iter().any(|m| Arc::ptr_eq(m, &map)) {
                u.push(map);
            }
        }
        Some(value)
    }

    /// The recorded error, if any.
    fn take_error(&self) -> Option<VmError> {
        self.missing.lock().ok().and_then(|mut m| m.take())
    }

    /// A JIT's error as the engine reports it: the recorded resolver
    /// error if there is one, else the JIT's own.
    fn jit_error(&self, e: bpf_jit::JitError) -> VmError {
        if let Some(m) = self.take_error() {
            return m;
        }
        match e.kind {
            bpf_jit::JitErrorKind::UnknownHelper(id) => VmError::UnknownHelper {
                insn: e.index.unwrap_or(0),
                id: i64::from(id),
            },
            _ => VmError::Jit(e),
        }
    }

    /// The maps and program arrays used.
    fn into_parts(self) -> (Vec<Arc<Map>>, Vec<Arc<ProgArrayShared>>) {
        (
            self.used.into_inner().unwrap_or_default(),
            self.arrays.into_inner().unwrap_or_default(),
        )
    }
}

/// All trampolines, by helper id.
static TRAMPOLINES: std::sync::LazyLock<Vec<Tramp>> =
    std::sync::LazyLock::new(|| TRAMPOLINE_ROWS.iter().flatten().copied().collect());

/// A helper call from x86-64 code. The arguments come in registers and
/// the array is built here: an array built in the (tiny) trampoline and
/// passed by reference would be copied with 16-byte loads that stall on
/// its 8-byte stores.
#[inline(never)]
fn dispatch(id: usize, a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    dispatch_in(id, [a, b, c, d, e], None)
}

/// A helper call of the run on this thread; `emu`: the AArch64 engine's
/// emulator, whose code the run executes (for `bpf_loop` callbacks).
///
/// The fast path (a registered helper, `r1` one of the entry's maps or no
/// map at all) takes no lock, clones no `Arc` and allocates nothing.
#[inline(always)]
fn dispatch_in(id: usize, args: [u64; 5], emu: Option<&mut bpf_jit_arm64::emu::Emulator>) -> u64 {
    let p = RUN.with(|r| r.get());
    if p.is_null() {
        return 0;
    }
    // bpf_loop calls back into compiled code, which may call helpers: it
    // must not hold a reference to the run state while doing so.
    let (builtins, helpers) = {
        // SAFETY: `p` is the state of the run executing on this thread
        // (set by `run_jit` for the duration of the native call); no other
        // reference to it is live here.
        let st = unsafe { &*p };
        (st.builtins, st.helpers)
    };
    if builtins && id == BPF_FUNC_LOOP as usize {
        return loop_call(args, emu);
    }
    // SAFETY: the program's helper table is owned by the entry program,
    // which outlives the run (its caller holds it); it is not part of the
    // run state, so borrowing it alongside `st` below is sound.
    let helpers = unsafe { &*helpers };
    // SAFETY: as above; this is the only live reference until return.
    let st = unsafe { &mut *p };
    let Some(f) = helpers.get(id).and_then(Option::as_deref) else {
        return unregistered(st, id);
    };
    // SAFETY: the entry program outlives the run (its caller holds it).
    let (entry_maps, entry_arrays) = unsafe { (&*st.entry_maps, &*st.entry_arrays) };
    let has = |maps: &[Arc<Map>]| maps.iter().any(|m| Arc::as_ptr(m) as u64 == args[0]);
    let maps: &[Arc<Map>] = if has(entry_maps) {
        entry_maps
    } else if entry_arrays.is_empty() {
        // No program array: the code running is the entry's own.
        entry_maps
    } else if has(&st.extra) || find_reachable(st, args[0]) {
        &st.extra
    } else {
        entry_maps
    };
    let mut cx = HelperCtx {
        checked: false,
        mem: &mut st.mem,
        maps,
        unwind: None,
    };
    let r = f(&mut cx, args);
    let unwind = cx.unwind;
    match r {
        Ok(v) if unwind.is_none() => v,
        Ok(v) => {
            unwind_unsupported(st, id);
            v
        }
        Err(e) => {
            record(st, id, e);
            0
        }
    }
}

/// `bpf_loop` for the engine running: the x86-64 JIT's or (with `emu`)
/// the AArch64 emulator's.
#[cold]
#[inline(never)]
fn loop_call(args: [u64; 5], emu: Option<&mut bpf_jit_arm64::emu::Emulator>) -> u64 {
    match emu {
        Some(e) => arm64::bpf_loop(e, args),
        None => bpf_loop(args),
    }
}

/// Records a call of helper `id`, which the run's program has not got.
#[cold]
#[inline(never)]
fn unregistered(st: &mut RunState, id: usize) -> u64 {
    record(st, id, HelperError::Other("helper not registered".into()));
    0
}

/// Records that helper `id` asked to unwind, which compiled code cannot.
#[cold]
#[inline(never)]
fn unwind_unsupported(st: &mut RunState, id: usize) {
    record(
        st,
        id,
        HelperError::Other("unwinding is not supported by the JIT engine".into()),
    );
}

/// Whether `handle` names a map of a program reachable from the entry
/// through its program arrays; if so the map is added to `st.extra`. A
/// failed search is remembered until a program-array slot changes.
#[cold]
#[inline(never)]
fn find_reachable(st: &mut RunState, handle: u64) -> bool {
    let gen = SLOT_GEN.load(Ordering::SeqCst);
    if st.miss == Some((handle, gen)) {
        return false;
    }
    // SAFETY: the entry program outlives the run (its caller holds it).
    let entry_arrays = unsafe { &*st.entry_arrays };
    match reachable_map(entry_arrays, handle) {
        Some(m) => {
            st.extra.push(m);
            true
        }
        None => {
            st.miss = Some((handle, gen));
            false
        }
    }
}

#[cold]
fn record(st: &mut RunState, id: usize, e: HelperError) {
    if st.error.is_none() {
        st.error = Some(VmError::Helper {
            insn: 0,
            id: id as i32,
            message: e.to_string(),
        });
    }
}

/// `bpf_loop(nr_loops, callback, ctx, flags)` for compiled code.
fn bpf_loop(a: [u64; 5]) -> u64 {
    let (n, cb, ctx, flags) = (a[0], a[1], a[2], a[3]);
    if flags != 0 {
        return (-errno::EINVAL) as u64;
    }
    if n > BPF_MAX_LOOPS {
        return (-errno::E2BIG) as u64;
    }
    if cb == 0 {
        return (-errno::EINVAL) as u64;
    }
    // SAFETY: `cb` is the native address of a compiled callback subprogram
    // (an `ld_imm64` function reference, verified by the caller's promise);
    // compiled subprograms are SysV functions of five u64 arguments.
    let f: Tramp = unsafe { std::mem::transmute::<usize, Tramp>(cb as usize) };
    for i in 0..n {
        // SAFETY: as above.
        if unsafe { f(i, ctx, 0, 0, 0) } != 0 {
            return i + 1;
        }
    }
    n
}
