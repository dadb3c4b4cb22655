//! [`Engine::Arm64`](super::Engine::Arm64): AArch64 code in the qemu-user
//! harness of `bpf_jit_arm64::emu`, with this process's maps and helpers.
//!
//! One emulator per process, behind a mutex, runs every AArch64 program;
//! compiled code goes into its near code region (a bump allocator: code is
//! never freed). The shared arena ([`crate::shared`]) is mapped into it at
//! the same address, so map values, program-array tables, the run's buffer
//! and the run's stack are the same memory in both processes. Helper ids
//! are upcall stubs: a helper call becomes an upcall that runs the
//! [`HelperRegistry`](crate::HelperRegistry) closure here, with the same
//! run state as the x86-64 engine's trampolines.
//!
//! A private-stack program ([`LoadBuilder::private_stack`]) gets, for each
//! run, a region of the arena (so helpers can dereference pointers into
//! its frames) with the same guard words as the x86-64 engine's regions;
//! the entry takes the region's top as its sixth argument (`x5`).

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use bpf_isa::LdImm64Src;
use bpf_jit::JitOptions;
use bpf_jit_arm64::emu::{upcall_stub, EmuError, Emulator, HarnessHelper, UPCALL_STUB_BYTES};
use bpf_jit_arm64::{Arm64Options, Atomics};

use super::skb::{put_struct, take_struct, SKB_CTX_ROOM};
use super::{
    dispatch_in, jit_ld_abs, private_stack_region_bytes, record, Guarded, Inner, LoadBuilder,
    LoadedProgram, MapRefs, RunGuard, RunState, JIT_HELPER_IDS, PRIVATE_CHAIN_MAX, RUN,
};
use crate::context::{SkbMd, XdpMd};
use crate::error::{HelperError, VmError};
use crate::helpers::{HelperFn, BPF_FUNC_LOOP};
use crate::maps::{errno, Map, MapKind, ProgArrayShared};
use crate::mem::MemState;
use crate::BPF_MAX_LOOPS;

/// Upcall id of the `ld_abs`/`ld_ind` packet-load routine.
const LD_ABS_ID: usize = JIT_HELPER_IDS;
/// Bytes reserved per stub at the start of the near region.
const STUB_SLOT: u64 = 32;
/// Bytes at the start of the near region kept for stubs.
const STUB_AREA: u64 = 16 << 10;
/// Bytes of the stack runs use (in the arena).
const STACK_BYTES: usize = 256 << 10;
/// Bytes reserved for the context (`xdp_md` or `__sk_buff`) in front of
/// a run's data.
const CTX_ROOM: usize = SKB_CTX_ROOM;

/// A program compiled by the AArch64 JIT and loaded into the engine's
/// emulator, with everything its code refers to.
pub struct Arm64Prog {
    entry: u64,
    code_len: usize,
    pub(super) maps: Vec<Arc<Map>>,
    pub(super) prog_arrays: Vec<Arc<ProgArrayShared>>,
    helpers: Box<[Option<Arc<HelperFn>>]>,
    builtins: bool,
    /// Compiled for a private stack (entered with a region top in `x5`).
    private_stack: bool,
}

impl std::fmt::Debug for Arm64Prog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm64Prog")
            .field("entry", &format_args!("{:#x}", self.entry))
            .field("code_bytes", &self.code_len)
            .field("maps", &self.maps.len())
            .finish()
    }
}

impl Arm64Prog {
    /// Address of the main entry in the emulator (what a program-array
    /// slot holds).
    pub fn entry_address(&self) -> u64 {
        self.entry
    }

    /// Size of the machine code in bytes.
    pub fn code_len(&self) -> usize {
        self.code_len
    }

    /// Whether it was compiled for a private stack
    /// ([`LoadBuilder::private_stack`]).
    pub fn private_stack(&self) -> bool {
        self.private_stack
    }
}

struct Runtime {
    emu: Emulator,
    /// Next free byte of the near code region, and its end.
    next: u64,
    end: u64,
    /// Stub address by upcall id (0: not written yet).
    stubs: Vec<u64>,
    /// Top of the runs' stack (in the arena).
    stack_top: u64,
}

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

thread_local! {
    /// An AArch64 run is executing on this thread.
    static IN_RUN: Cell<bool> = const { Cell::new(false) };
}

fn emu_err(e: EmuError) -> VmError {
    VmError::Emulator(e.to_string())
}

impl Runtime {
    fn start() -> Result<Runtime, VmError> {
        let arena = crate::shared::enable()?;
        let mut emu = Emulator::spawn().map_err(emu_err)?;
        emu.map_shared(arena.base, arena.len, &arena.path)
            .map_err(emu_err)?;
        let (stack, _) = crate::shared::alloc(STACK_BYTES)
            .ok_or_else(|| VmError::Emulator("no room in the shared arena for a stack".into()))?;
        let l = *emu.layout();
        Ok(Runtime {
            emu,
            next: l.near_code + STUB_AREA,
            end: l.near_code + l.region_len,
            stubs: vec![0; JIT_HELPER_IDS + 1],
            stack_top: stack + STACK_BYTES as u64,
        })
    }

    /// The address of the stub for upcall `id`, written on first use.
    fn stub(&mut self, id: usize) -> Result<u64, VmError> {
        let Some(&have) = self.stubs.get(id) else {
            return Err(VmError::UnknownHelper {
                insn: 0,
                id: id as i64,
            });
        };
        if have != 0 {
            return Ok(have);
        }
        let l = *self.emu.layout();
        let at = l.near_code + id as u64 * STUB_SLOT;
        let code = upcall_stub(id as u16, l.helper(HarnessHelper::Upcall));
        debug_assert!(UPCALL_STUB_BYTES as u64 <= STUB_SLOT);
        self.emu.write(at, &code).map_err(emu_err)?;
        if let Some(s) = self.stubs.get_mut(id) {
            *s = at;
        }
        Ok(at)
    }
}

fn with_runtime<T>(f: impl FnOnce(&mut Runtime) -> Result<T, VmError>) -> Result<T, VmError> {
    let mut g = RUNTIME
        .lock()
        .map_err(|_| VmError::Emulator("emulator lock poisoned".into()))?;
    if g.is_none() {
        *g = Some(Runtime::start()?);
    }
    match g.as_mut() {
        Some(rt) => f(rt),
        None => Err(VmError::Emulator("emulator not started".into())),
    }
}

/// Loads `b`'s program for [`super::Engine::Arm64`].
pub(super) fn build(b: LoadBuilder<'_>) -> Result<LoadedProgram, VmError> {
    b.prog.validate()?;
    if IN_RUN.with(Cell::get) {
        return Err(VmError::Emulator(
            "loading a program from inside an arm64 run".into(),
        ));
    }
    with_runtime(|rt| build_in(rt, &b))
}

fn build_in(rt: &mut Runtime, b: &LoadBuilder<'_>) -> Result<LoadedProgram, VmError> {
    let builtins = b.helpers.kernel_builtins();
    let (helpers, table) = b.jit_helpers(|table, id, keep| {
        table.insert_address_fastcall(id as i32, rt.stub(id)?, keep);
        Ok(())
    })?;
    let ld_abs = rt.stub(LD_ABS_ID)?;
    let refs = MapRefs::default();
    let resolve = |slot: usize, src: LdImm64Src| -> Option<u64> {
        let (fd, map, off) = refs.lookup(b, slot, src)?;
        let outside = VmError::Unsupported {
            insn: slot,
            what: "a map created before bpf_vm::shared::enable() (the arm64 engine \
                   reaches only maps in the shared arena)",
        };
        if let (None, Some(pa)) = (off, map.as_prog_array()) {
            let shared = pa.shared();
            let Some(handle) = shared.a64_handle() else {
                return refs.fail(outside);
            };
            if !shared.claim_stack_kind(b.private_stack) {
                return refs.fail(VmError::Unsupported {
                    insn: slot,
                    what: "a program array shared by native-stack and private-stack programs",
                });
            }
            refs.note_array(shared);
            return Some(handle);
        }
        if let MapKind::Array(_) = map.kind() {
            let in_arena = map
                .lookup_ptr(&0u32.to_le_bytes())
                .is_none_or(|v| crate::shared::contains(v.ptr, v.len));
            if !in_arena {
                return refs.fail(outside);
            }
        }
        refs.value(map, slot, fd, off)
    };
    let mut opts = JitOptions::new(&table)
        .with_ld_imm64(&resolve)
        .with_ld_abs_address(ld_abs);
    if let Some(d) = &b.stack_depths {
        opts = opts.with_stack_depths(d);
    }
    opts = opts.with_private_stack(b.private_stack);
    opts.blind_constants = b.blind;
    // Tail calls read the arena table (no patched direct jumps).
    opts = opts.with_direct_tail_calls(false);
    let at = rt.next.next_multiple_of(64);
    let arm = Arm64Options {
        atomics: Atomics::Lse,
        image_base: Some(at),
    };
    let code =
        bpf_jit_arm64::compile_code_with(b.prog, &opts, &arm).map_err(|e| refs.jit_error(e))?;
    if let Some(m) = refs.take_error() {
        return Err(m);
    }
    let len = code.code.len() as u64;
    if at.saturating_add(len) > rt.end {
        return Err(VmError::Emulator(
            "the emulator's code region is full".into(),
        ));
    }
    rt.emu.write(at, &code.code).map_err(emu_err)?;
    rt.next = at + len;
    if b.private_stack {
        PRIVATE_CHAIN_MAX.fetch_max(
            code.private_stack_bytes,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
    let (maps, prog_arrays) = refs.into_parts();
    Ok(LoadedProgram {
        inner: Inner::Arm64(Arc::new(Arm64Prog {
            entry: at,
            code_len: code.code.len(),
            maps,
            prog_arrays,
            helpers: helpers.into_boxed_slice(),
            builtins,
            private_stack: b.private_stack,
        })),
    })
}

/// A block of the arena, returned on drop.
struct Block(u64, u8);

impl Drop for Block {
    fn drop(&mut self) {
        crate::shared::free(self.0, self.1);
    }
}

/// Clears [`IN_RUN`] on drop.
struct InRun;

impl Drop for InRun {
    fn drop(&mut self) {
        IN_RUN.with(|r| r.set(false));
    }
}

/// What `r1` points to in a run.
pub(super) enum RunCtx<'a> {
    /// The data itself (`r2` = its length).
    Mem,
    /// An `xdp_md` over the data.
    Xdp(&'a XdpMd),
    /// A `struct __sk_buff` over the data; its writable fields are written
    /// back.
    Skb(&'a mut SkbMd),
}

/// Runs `a` on a copy of `data` in the arena (`r1` = its address, `r2` =
/// its length; or `r1` = an `xdp_md` / `__sk_buff` over it), copying it
/// back.
pub(super) fn run(a: &Arm64Prog, data: &mut [u8], mut ctx: RunCtx<'_>) -> Result<u64, VmError> {
    if IN_RUN.with(|r| r.replace(true)) {
        return Err(VmError::Emulator(
            "an arm64 run from inside an arm64 run (e.g. from a helper) is not supported".into(),
        ));
    }
    let _in_run = InRun;
    let (buf, class) = crate::shared::enable()
        .ok()
        .and_then(|_| crate::shared::alloc(CTX_ROOM + data.len()))
        .ok_or_else(|| VmError::Emulator("no room in the shared arena for the data".into()))?;
    let _block = Block(buf, class);
    let pkt_addr = buf + CTX_ROOM as u64;
    let len = data.len() as u64;
    // SAFETY: the block holds CTX_ROOM + data.len() bytes, all ours.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), pkt_addr as *mut u8, data.len());
    }
    let args = match &ctx {
        RunCtx::Xdp(md) => {
            // The arena lies below 4 GiB: 32-bit fields hold whole pointers.
            let ctx = [
                pkt_addr as u32,
                (pkt_addr + len) as u32,
                pkt_addr as u32,
                md.ingress_ifindex,
                md.rx_queue_index,
                md.egress_ifindex,
            ];
            // SAFETY: 24 bytes at the block's start (CTX_ROOM >= 24).
            unsafe { std::ptr::copy_nonoverlapping(ctx.as_ptr(), buf as *mut u32, ctx.len()) };
            [buf, 0, 0, 0, 0]
        }
        RunCtx::Skb(skb) => {
            // As for XDP: the arena lies below 4 GiB (and `len` fits 32
            // bits, the arena being smaller).
            let words = skb.to_struct(pkt_addr as u32, len as u32);
            // SAFETY: SKB_SIZE bytes at the block's start (CTX_ROOM >= SKB_SIZE).
            unsafe { put_struct(buf as *mut u8, &words) };
            [buf, 0, 0, 0, 0]
        }
        RunCtx::Mem => [pkt_addr, len, 0, 0, 0],
    };
    let pkt = if data.is_empty() {
        (0, 0)
    } else {
        (pkt_addr, len)
    };
    let mut st = RunState {
        mem: MemState::new(0, 0),
        entry_maps: &*a.maps as *const [Arc<Map>],
        entry_arrays: &*a.prog_arrays as *const [Arc<ProgArrayShared>],
        helpers: &*a.helpers as *const [Option<Arc<HelperFn>>],
        builtins: a.builtins,
        extra: Vec::new(),
        miss: None,
        error: None,
        pkt,
    };
    // A private-stack program's region: as large as any program reachable
    // from it (all private-stack programs, loaded before the run) needs.
    let region = if a.private_stack {
        let words = Guarded::words_for(private_stack_region_bytes());
        let (base, class) = crate::shared::alloc(words * 8).ok_or_else(|| {
            VmError::Emulator("no room in the shared arena for a private stack".into())
        })?;
        Some((
            Block(base, class),
            Guarded {
                base: base as *mut u64,
                words,
            },
        ))
    } else {
        None
    };
    // SAFETY: the block holds `words` u64 (16-byte aligned), all ours.
    let fin = region.as_ref().map(|(_, g)| unsafe { g.arm() });
    let prev = RUN.with(|r| r.replace(&mut st as *mut RunState));
    let guard = RunGuard { prev };
    let r = with_runtime(|rt| {
        let top = rt.stack_top;
        let call = match fin {
            Some(fin) => {
                let [a1, a2, a3, a4, a5] = args;
                rt.emu
                    .call_on_stack6(a.entry, top, [a1, a2, a3, a4, a5, fin], &mut upcall)
            }
            None => rt.emu.call_on_stack(a.entry, top, args, &mut upcall),
        };
        call.map_err(|e| match e {
            EmuError::Fault(sig) => VmError::Emulator(format!("the program raised signal {sig}")),
            e => emu_err(e),
        })
    });
    drop(guard);
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(pkt_addr as *const u8, data.as_mut_ptr(), data.len()) };
    if let RunCtx::Skb(skb) = &mut ctx {
        // SAFETY: the struct written above, at the block's start.
        unsafe { take_struct(buf as *const u8, skb) };
    }
    let r0 = r?;
    if let Some((_, g)) = &region {
        // SAFETY: as for `arm` above; the run is over.
        unsafe { g.check() }?;
    }
    match st.error.take() {
        Some(e) => Err(e),
        None => Ok(r0),
    }
}

/// The host side of an upcall: a helper of the run on this thread.
fn upcall(e: &mut Emulator, id: u32, args: [u64; 5]) -> u64 {
    if id as usize == LD_ABS_ID {
        // SAFETY: reads only the run's packet, which the run lends.
        return unsafe { jit_ld_abs(args[0], args[1], args[2], 0, 0) };
    }
    dispatch_in(id as usize, args, Some(e))
}

/// `bpf_loop(nr_loops, callback, ctx, flags)` for AArch64 code: each
/// iteration calls the callback in the emulator (nested in the upcall).
pub(super) fn bpf_loop(e: &mut Emulator, a: [u64; 5]) -> u64 {
    let (n, cb, ctx, flags) = (a[0], a[1], a[2], a[3]);
    if flags != 0 || cb == 0 {
        return (-errno::EINVAL) as u64;
    }
    if n > BPF_MAX_LOOPS {
        return (-errno::E2BIG) as u64;
    }
    for i in 0..n {
        match e.call_with_upcalls(cb, [i, ctx, 0, 0, 0], &mut upcall) {
            Ok(0) => {}
            Ok(_) => return i + 1,
            Err(err) => {
                let p = RUN.with(|r| r.get());
                if !p.is_null() {
                    // SAFETY: the state of the run on this thread; no other
                    // reference to it is live here.
                    let st = unsafe { &mut *p };
                    record(
                        st,
                        BPF_FUNC_LOOP as usize,
                        HelperError::Other(format!("bpf_loop callback: {err}")),
                    );
                }
                return (-errno::EINVAL) as u64;
            }
        }
    }
    n
}
