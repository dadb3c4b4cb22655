//! The reference interpreter.
//!
//! A [`Program`] is lowered once into a compact op array (jump targets and
//! helper ids resolved) and run by one `match` dispatch loop, with the Linux
//! kernel's semantics for every instruction (see the crate docs for the list).

mod exec;
pub(crate) mod ops;

use std::collections::BTreeMap;
use std::sync::Arc;

use bpf_isa::{Insn, Program};

use crate::context::{CtxView, SkbMd, XdpMd, SKB_SIZE, XDP_MD_SIZE};
use crate::error::VmError;
use crate::helpers::{HelperFn, HelperRegistry};
use crate::maps::{Map, ProgArrayShared};
use ops::Op;

pub(crate) use exec::Env;

/// A program ready to run: pre-decoded, with its helpers and maps bound.
///
/// ```
/// use bpf_isa::{AluOp, Insn, Program, Reg, Size, Source, Width};
/// use bpf_vm::Interpreter;
///
/// // r0 = *(u8 *)(r1 + 0) + r2  (memory byte plus memory length)
/// let prog = Program::from_insns(vec![
///     Insn::Ldx { size: Size::B, dst: Reg::R0, src: Reg::R1, off: 0 },
///     Insn::Alu { width: Width::W64, op: AluOp::Add, dst: Reg::R0, src: Source::Reg(Reg::R2) },
///     Insn::Exit,
/// ]);
/// let vm = Interpreter::new(&prog).unwrap();
/// assert_eq!(vm.run_mem(&mut [40, 0]).unwrap(), 42);
/// ```
pub struct Interpreter {
    pub(crate) prog: Program,
    pub(crate) ops: Box<[Op]>,
    pub(crate) slots: Box<[u32]>,
    pub(crate) helpers: Box<[(i32, Arc<HelperFn>)]>,
    pub(crate) maps: Vec<Arc<Map>>,
    /// Program arrays the program tail-calls through (slot tables only).
    pub(crate) prog_arrays: Box<[Arc<ProgArrayShared>]>,
    /// Directly addressed map values (global data): `(address, length)`.
    pub(crate) direct: Box<[(u64, u64)]>,
    pub(crate) registry: HelperRegistry,
    pub(crate) limit: Option<u64>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("ops", &self.ops.len())
            .field("maps", &self.maps.len())
            .field("limit", &self.limit)
            .finish()
    }
}

/// Observes a checked run instruction by instruction (see
/// [`Interpreter::run_mem_traced`]). Runs without a tracer compile the hook
/// out entirely.
///
/// ```
/// use bpf_isa::assemble;
/// use bpf_vm::{Interpreter, Tracer};
///
/// struct Slots(Vec<usize>);
/// impl Tracer for Slots {
///     fn step(&mut self, _prog: &Interpreter, slot: usize, _regs: &[u64; 11]) {
///         self.0.push(slot);
///     }
/// }
/// let prog = assemble("r0 = 1\nr0 += 2\nexit").unwrap();
/// let vm = Interpreter::new(&prog).unwrap();
/// let mut t = Slots(Vec::new());
/// assert_eq!(vm.run_mem_traced(&mut [], &mut t).unwrap(), 3);
/// assert_eq!(t.0, [0, 1, 2]);
/// ```
pub trait Tracer {
    /// Whether [`Tracer::step`] is called at all (`false` only for the
    /// built-in no-op tracer).
    const ACTIVE: bool = true;

    /// Called before each instruction runs: the program running it (the
    /// entry program or a tail-call target; see [`Interpreter::insn_at_slot`]),
    /// the instruction's slot in that program, and registers r0–r10.
    fn step(&mut self, prog: &Interpreter, slot: usize, regs: &[u64; 11]);
}

/// The tracer of untraced runs.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    const ACTIVE: bool = false;
    #[inline(always)]
    fn step(&mut self, _: &Interpreter, _: usize, _: &[u64; 11]) {}
}

/// Builds an [`Interpreter`]: helpers, maps and limits.
pub struct InterpreterBuilder<'p> {
    prog: &'p Program,
    helpers: HelperRegistry,
    maps_by_fd: BTreeMap<i32, Arc<Map>>,
    maps_by_idx: Vec<Arc<Map>>,
    limit: Option<u64>,
}

impl<'p> InterpreterBuilder<'p> {
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

    /// Stops checked runs with [`VmError::BudgetExceeded`] after `n` instructions
    /// (counted across bpf-to-bpf calls, loops and tail calls). Unchecked runs
    /// are not counted: a verified program terminates.
    pub fn instruction_limit(mut self, n: Option<u64>) -> Self {
        self.limit = n;
        self
    }

    /// Validates and lowers the program.
    pub fn build(self) -> Result<Interpreter, VmError> {
        let by_fd = &self.maps_by_fd;
        let by_idx = &self.maps_by_idx;
        let lookup = |fd: i32, is_idx: bool| -> Option<Arc<Map>> {
            if is_idx {
                usize::try_from(fd)
                    .ok()
                    .and_then(|i| by_idx.get(i))
                    .cloned()
            } else {
                by_fd.get(&fd).cloned()
            }
        };
        let l = ops::lower(self.prog, &self.helpers, &lookup)?;
        Ok(Interpreter {
            prog: self.prog.clone(),
            ops: l.ops.into_boxed_slice(),
            slots: l.slots.into_boxed_slice(),
            helpers: l.helpers.into_boxed_slice(),
            maps: l.maps,
            prog_arrays: l.prog_arrays.into_boxed_slice(),
            direct: l.direct.into_boxed_slice(),
            registry: self.helpers,
            limit: self.limit,
        })
    }
}

impl Interpreter {
    /// Starts building an interpreter for `prog` with the kernel helpers and no maps.
    pub fn builder(prog: &Program) -> InterpreterBuilder<'_> {
        InterpreterBuilder {
            prog,
            helpers: HelperRegistry::kernel(),
            maps_by_fd: BTreeMap::new(),
            maps_by_idx: Vec::new(),
            limit: None,
        }
    }

    /// An interpreter for `prog` with the kernel helpers and no maps.
    pub fn new(prog: &Program) -> Result<Interpreter, VmError> {
        Interpreter::builder(prog).build()
    }

    /// Number of instructions (an `ld_imm64` counts once).
    pub fn len(&self) -> usize {
        self.ops.len().saturating_sub(1)
    }

    /// Whether the program has no instructions (never true for a built interpreter).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The program this interpreter runs.
    pub fn program(&self) -> &Program {
        &self.prog
    }

    /// The instruction starting at `slot`, if one does.
    pub fn insn_at_slot(&self, slot: usize) -> Option<&Insn> {
        self.prog
            .insn_at_slot(slot)
            .and_then(|i| self.prog.insns().get(i))
    }

    /// The maps the program references, program arrays excepted: a program
    /// does not own the arrays it tail-calls through (see
    /// [`crate::maps::ProgArray`]).
    pub fn maps(&self) -> &[Arc<Map>] {
        &self.maps
    }

    /// Runs with `r1` = `mem`'s address and `r2` = its length (the uBPF /
    /// bpf_conformance convention), checking every memory access against the
    /// stack, `mem`, and memory handed out by helpers. `ld_abs`/`ld_ind` read `mem`.
    pub fn run_mem(&self, mem: &mut [u8]) -> Result<u64, VmError> {
        let mut env = Env::mem(mem);
        self.exec::<true, _>(&mut env, &mut NoTrace)
    }

    /// [`Interpreter::run_mem`] without memory checks.
    ///
    /// # Safety
    /// The program must be memory-safe for this input, e.g. accepted by the
    /// kernel's verifier (or ours) for a context of this shape: every load and
    /// store it performs, and every pointer it passes to a helper, must lie in
    /// `mem`, its stack, or memory a helper returned. Otherwise this is
    /// undefined behaviour.
    pub unsafe fn run_mem_unchecked(&self, mem: &mut [u8]) -> Result<u64, VmError> {
        let mut env = Env::mem(mem);
        self.exec::<false, _>(&mut env, &mut NoTrace)
    }

    /// Runs an XDP program on `packet` (`data` is its start, `data_end` its end,
    /// no metadata area: `data_meta == data`). Returns the XDP action in `r0`.
    pub fn run_xdp(&self, packet: &mut [u8], md: &XdpMd) -> Result<u64, VmError> {
        let mut backing = [0u64; (XDP_MD_SIZE as usize).div_ceil(8)];
        let mut env = Env::xdp(packet, *md, &mut backing);
        self.exec::<true, _>(&mut env, &mut NoTrace)
    }

    /// [`Interpreter::run_xdp`] without memory checks.
    ///
    /// # Safety
    /// As for [`Interpreter::run_mem_unchecked`], for an XDP context.
    pub unsafe fn run_xdp_unchecked(&self, packet: &mut [u8], md: &XdpMd) -> Result<u64, VmError> {
        let mut backing = [0u64; (XDP_MD_SIZE as usize).div_ceil(8)];
        let mut env = Env::xdp(packet, *md, &mut backing);
        self.exec::<false, _>(&mut env, &mut NoTrace)
    }

    /// [`Interpreter::run_mem`] calling `tracer` before every instruction.
    pub fn run_mem_traced<T: Tracer>(
        &self,
        mem: &mut [u8],
        tracer: &mut T,
    ) -> Result<u64, VmError> {
        let mut env = Env::mem(mem);
        self.exec::<true, T>(&mut env, tracer)
    }

    /// [`Interpreter::run_xdp`] calling `tracer` before every instruction.
    pub fn run_xdp_traced<T: Tracer>(
        &self,
        packet: &mut [u8],
        md: &XdpMd,
        tracer: &mut T,
    ) -> Result<u64, VmError> {
        let mut backing = [0u64; (XDP_MD_SIZE as usize).div_ceil(8)];
        let mut env = Env::xdp(packet, *md, &mut backing);
        self.exec::<true, T>(&mut env, tracer)
    }

    /// [`Interpreter::run_skb`] calling `tracer` before every instruction.
    pub fn run_skb_traced<T: Tracer>(
        &self,
        packet: &mut [u8],
        skb: &mut SkbMd,
        tracer: &mut T,
    ) -> Result<u64, VmError> {
        let mut backing = [0u64; (SKB_SIZE as usize).div_ceil(8)];
        let mut env = Env::skb(packet, *skb, &mut backing);
        let r = self.exec::<true, T>(&mut env, tracer);
        if let CtxView::Skb { shadow, .. } = &env.ctx {
            skb.write_back(shadow);
        }
        r
    }

    /// Runs a socket-filter / tc program on `packet` with `r1` pointing at a
    /// `struct __sk_buff`; the writable fields of `skb` are updated afterwards.
    /// `ld_abs`/`ld_ind` read the packet.
    pub fn run_skb(&self, packet: &mut [u8], skb: &mut SkbMd) -> Result<u64, VmError> {
        let mut backing = [0u64; (SKB_SIZE as usize).div_ceil(8)];
        let mut env = Env::skb(packet, *skb, &mut backing);
        let r = self.exec::<true, _>(&mut env, &mut NoTrace);
        if let CtxView::Skb { shadow, .. } = &env.ctx {
            skb.write_back(shadow);
        }
        r
    }
}
