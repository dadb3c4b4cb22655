#![doc = include_str!("../README.md")]
//! # bpf-verifier
//!
//! Sound abstract interpretation of eBPF programs, faithful to the Linux
//! kernel's verifier: abstract domains ([`tnum`], [`scalar`], [`reg`],
//! [`stack`], [`state`]) kept apart from the transfer functions
//! (`transfer`), the checks (`check`, [`ctx`], [`helpers`]) and the
//! exploration (`verifier`, [`prune`]).
//!
//! ```
//! use bpf_isa::{AluOp, Insn, Program, Reg, Size, Source, Width};
//! use bpf_verifier::{verify, Options, ProgKind};
//!
//! // r0 = *(u32 *)(r1 + 0); exit  -- reads skb->len
//! let prog = Program::from_insns(vec![
//!     Insn::Ldx { size: Size::W, dst: Reg::R0, src: Reg::R1, off: 0 },
//!     Insn::Exit,
//! ]);
//! let ok = verify(&prog, &Options::new(ProgKind::SocketFilter)).unwrap();
//! assert_eq!(ok.processed_insns, 2);
//!
//! // exit without setting r0
//! let bad = Program::from_insns(vec![Insn::Exit]);
//! let err = verify(&bad, &Options::new(ProgKind::SocketFilter)).unwrap_err();
//! assert_eq!(err.message, "R0 !read_ok");
//! ```

pub mod ctx;
pub mod error;
pub mod fastcall;
pub mod helpers;
pub mod nocsr;
pub mod platform;
pub mod prune;
pub mod reg;
pub mod rewrite;
pub mod scalar;
pub mod stack;
pub mod state;
pub mod tnum;

mod check;
mod klog;
mod liveness;
mod precision;
mod scc;
mod transfer;
mod verifier;
mod zext;

use bpf_isa::Program;

pub use error::{ErrorKind, VerifierError};
pub use helpers::{ArgKind, HelperProto, HelperTable, RetKind};
pub use platform::{MapInfo, Options, ProgKind};
pub use stack::InsnSet;

/// Per-instruction facts for later passes and the JITs (indexed by slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InsnAux {
    /// Reached on some path.
    pub seen: bool,
    /// For `ld_imm64` of a map or map value: the map's index in [`Options::maps`].
    pub map_index: Option<u32>,
    /// For an 8-byte stack load that restored a spilled register on every
    /// path that reached it: the instructions that may have spilled it.
    pub fill_defs: InsnSet,
    /// For a stack store: its value was read other than by a full fill
    /// (partial read, helper access, variable-offset read, atomic).
    pub spill_escapes: bool,
    /// Stack reach of this instruction on verified paths: for each frame it
    /// touched (by the start slot of the frame's subprogram), the deepest
    /// byte below that frame's pointer it accessed, directly or through a
    /// helper argument. Rewrites that delete instructions (see [`nocsr`])
    /// recompute stack depths from it.
    pub stack_extent: smallvec::SmallVec<[(u32, u32); 1]>,
    /// For a load, store or atomic: whether the base register was the
    /// context (the kernel's `aux->ptr_type == PTR_TO_CTX`). The verifier
    /// rejects an instruction that accesses the context on one path and
    /// other memory on another, so [`rewrite`] may convert it.
    pub ctx_access: bool,
    /// For a load: the base register was a `sock_common` pointer (the
    /// kernel converts such loads from `struct bpf_sock` to the kernel's
    /// socket; [`rewrite`] has no such conversion and refuses them).
    pub sock_access: bool,
    /// For a load, store or atomic: some path reached it (its base type was recorded).
    pub mem_access_seen: bool,
    /// The instruction defines a register by its low 32 bits only (a 32-bit
    /// ALU operation, a 1-, 2- or 4-byte load, ...) and some verified
    /// continuation may read all 64 bits of that value before overwriting
    /// it: a JIT whose 32-bit operations leave the upper half undefined
    /// must zero-extend here (the kernel's `zext_dst`; see the `zext`
    /// module notes in the README).
    pub zext_needed: bool,
    /// For a `call bpf_tail_call` reached on some path: the program array
    /// and index it uses, when the same on every path (the kernel's
    /// `map_ptr_state` / `map_key_state`). `None` elsewhere.
    pub tail_call: Option<TailCallAux>,
}

/// What all verified paths agree on at one `bpf_tail_call` site, for a JIT
/// that emits a direct tail call (the kernel's `record_func_map` and
/// `record_func_key`). A JIT may jump straight to the program in slot `key`
/// of map `map_index` only when both are `Some`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailCallAux {
    /// The program array's index in [`Options::maps`]; `None` ("poisoned")
    /// when paths pass different maps.
    pub map_index: Option<u32>,
    /// The index into the program array (`r3`); `None` ("poisoned") unless
    /// it is the same constant, below the map's `max_entries`, on every path.
    pub key: Option<u32>,
}

impl TailCallAux {
    /// Joins what one more path passes (`map`, and `key` when it is a
    /// constant below `max_entries`) into what earlier paths agreed on.
    pub fn join(prev: Option<TailCallAux>, map: u32, key: Option<u32>) -> TailCallAux {
        match prev {
            None => TailCallAux {
                map_index: Some(map),
                key,
            },
            Some(t) => TailCallAux {
                map_index: t.map_index.filter(|&m| m == map),
                key: t.key.filter(|&k| Some(k) == key),
            },
        }
    }
}

impl InsnAux {
    /// Records that this instruction touched `bytes` below the frame pointer
    /// of the frame whose subprogram starts at slot `subprog_start`.
    pub fn note_stack_extent(&mut self, subprog_start: u32, bytes: u32) {
        match self.stack_extent.iter_mut().find(|e| e.0 == subprog_start) {
            Some(e) => e.1 = e.1.max(bytes),
            None => self.stack_extent.push((subprog_start, bytes)),
        }
    }
}

/// A program the verifier accepted, with what later stages need.
#[derive(Clone, Debug)]
pub struct VerifiedProgram {
    /// The instructions (no rewrites yet in this stage).
    pub prog: Program,
    /// Per-slot facts.
    pub aux: Vec<InsnAux>,
    /// Deepest stack use in bytes per subprogram, parallel to `subprog_starts`.
    pub stack_depth: Vec<u32>,
    /// Start slot of each subprogram.
    pub subprog_starts: Vec<u32>,
    /// Instructions processed over all paths.
    pub processed_insns: u64,
    /// States kept for pruning.
    pub total_states: u64,
    /// Most states kept at once.
    pub peak_states: u64,
    /// Most states kept at one instruction.
    pub max_states_per_insn: u64,
    /// The log (empty at level 0).
    pub log: String,
    /// The program type it was verified as (decides, e.g., which helpers
    /// are `bpf_fastcall`, see [`fastcall::FastcallTable`]).
    pub prog_kind: ProgKind,
}

impl VerifiedProgram {
    /// For the fill at `slot`: the instructions that may have defined the restored value.
    pub fn defining_spills(&self, slot: usize) -> &[u32] {
        self.aux.get(slot).map_or(&[], |a| a.fill_defs.as_slice())
    }

    /// Whether the value stored by the instruction at `slot` was read other than by a fill.
    pub fn spill_escapes(&self, slot: usize) -> bool {
        self.aux.get(slot).is_some_and(|a| a.spill_escapes)
    }
}

/// Verifies `prog` under `opts`.
pub fn verify(prog: &Program, opts: &Options) -> Result<VerifiedProgram, VerifierError> {
    verify_with_log(prog, opts).map_err(|(e, _)| e)
}

/// Verifies `prog` under `opts`; on rejection also returns the log.
pub fn verify_with_log(
    prog: &Program,
    opts: &Options,
) -> Result<VerifiedProgram, (VerifierError, String)> {
    let (vp, cg) = explore(prog, opts)?;
    check_call_chains(&cg, &vp.stack_depth, opts, &vp.log)?;
    Ok(vp)
}

/// The combined stack depth along call chains (the kernel's
/// `check_max_stack_depth`), with per-subprogram depths `depth` (parallel
/// to the call graph's subprograms). `log` is the log of the accepted
/// exploration, ending with its stats line.
pub(crate) fn check_call_chains(
    cg: &bpf_callgraph::CallGraph,
    depth: &[u32],
    opts: &Options,
    log: &str,
) -> Result<(), (VerifierError, String)> {
    let mut depths = cranelift_entity::SecondaryMap::new();
    for (i, id) in cg.subprogs().keys().enumerate() {
        depths[id] = depth.get(i).copied().unwrap_or(0);
    }
    let Err(e) = cg.check_stack(&depths, &stack_config(opts)) else {
        return Ok(());
    };
    let err = VerifierError::new(e.index(), ErrorKind::MemoryAccess, e.to_string());
    let mut out = String::new();
    if opts.log_level > 0 {
        // The message goes before the stats line.
        let body = log.trim_end_matches('\n');
        let (head, stats) = body.rsplit_once('\n').unwrap_or(("", body));
        if !head.is_empty() {
            out.push_str(head);
            out.push('\n');
        }
        // The kernel's sentence, without our index prefix and chain suffix.
        let msg = err.message.as_str();
        let msg = msg
            .strip_prefix("insn ")
            .and_then(|m| m.split_once(": ").map(|x| x.1))
            .unwrap_or(msg);
        let msg = msg.split("; chain: ").next().unwrap_or(msg);
        out.push_str(msg);
        out.push('\n');
        out.push_str(stats);
        out.push('\n');
    }
    Err((err, out))
}

/// The stack-check settings for `opts`: JIT rounding, and the private-stack
/// inputs of the kernel's `bpf_enable_priv_stack` (program type, JIT
/// support; tracing attach kinds and struct_ops requests are not program
/// kinds here).
pub(crate) fn stack_config(opts: &Options) -> bpf_callgraph::StackConfig {
    bpf_callgraph::StackConfig {
        jit: true,
        priv_stack: match opts.prog.prog_type() {
            Some(prog_type) => bpf_callgraph::PrivStackConfig {
                prog_type,
                tracing_kind: None,
                jit_supports_private_stack: opts.jit_private_stack,
                priv_stack_requested: false,
            },
            // A userspace program has no kernel private stack.
            None => bpf_callgraph::PrivStackConfig::default(),
        },
    }
}

/// Subprogram starts without a call graph: the entry and every target of a
/// local call or a function reference, ascending.
fn subprog_starts(prog: &Program) -> Vec<u32> {
    let mut v = vec![0u32];
    for (idx, insn) in prog.iter() {
        let off = match *insn {
            bpf_isa::Insn::Call(bpf_isa::CallTarget::Local(off)) => i64::from(off),
            bpf_isa::Insn::LdImm64 {
                src: bpf_isa::LdImm64Src::Func(off),
                ..
            } => i64::from(off),
            _ => continue,
        };
        let t = idx.slot() as i64 + 1 + off;
        if let Ok(t) = u32::try_from(t) {
            v.push(t);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Verification up to (not including) the combined stack-depth check of
/// call chains, which [`nocsr`] runs after its rewrite as the kernel does.
pub(crate) fn explore(
    prog: &Program,
    opts: &Options,
) -> Result<(VerifiedProgram, bpf_callgraph::CallGraph), (VerifierError, String)> {
    let fail = |e: VerifierError| {
        let log = if opts.log_level > 0 {
            format!(
                "{}\nprocessed 0 insns (limit {}) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n",
                e.message, opts.insn_limit
            )
        } else {
            String::new()
        };
        (e, log)
    };
    if prog.is_empty() {
        return Err(fail(VerifierError::new(
            0,
            ErrorKind::ControlFlow,
            "empty program",
        )));
    }
    if let Err(e) = prog.validate() {
        // The kernel's wording where it has one.
        let msg = match e.kind {
            bpf_isa::ErrorKind::JumpOutOfRange { target, .. } => {
                format!("jump out of range from insn {} to {target}", e.index)
            }
            bpf_isa::ErrorKind::JumpIntoLdImm64 { target } => {
                format!("jump into the middle of ldimm64 insn {}", target - 1)
            }
            ref k => k.to_string(),
        };
        return Err(fail(VerifierError::new(
            e.index,
            ErrorKind::ControlFlow,
            msg,
        )));
    }
    // The kernel finds recursion while exploring (the simulated call stack
    // grows past MAX_CALL_FRAMES) or, for recursion every path bounds, in
    // the static walk of `check_max_stack_depth` afterwards: a recursive
    // program is explored and then rejected.
    let (cg, recursion) = match bpf_callgraph::CallGraph::build(prog) {
        Ok(cg) => (Some(cg), None),
        Err(e @ bpf_callgraph::BuildError::Recursion { .. }) => (None, Some(e.index())),
        Err(e) => {
            let msg = match e {
                bpf_callgraph::BuildError::LastInsnNotExit { .. } => {
                    "last insn is not an exit or jmp".to_string()
                }
                ref e => e.to_string(),
            };
            return Err(fail(VerifierError::new(
                e.index(),
                ErrorKind::ControlFlow,
                msg,
            )));
        }
    };
    let starts: Vec<u32> = match &cg {
        Some(cg) => cg
            .subprogs()
            .values()
            .map(|s| s.start.slot() as u32)
            .collect(),
        None => subprog_starts(prog),
    };
    verifier::check_cfg(prog, opts.privileged).map_err(|e| {
        let (e, log) = fail(e);
        if opts.log_level < 2 {
            return (e, log);
        }
        // At level 2 the kernel lists the subprograms before the CFG check.
        let mut head = String::new();
        for (i, s) in starts.iter().enumerate() {
            head.push_str(&format!("func#{i} @{s}\n"));
        }
        (e, head + &log)
    })?;
    let mut env = verifier::Env::new(prog, opts, starts);
    let init = verifier::initial_state(opts);
    match env.run(init) {
        Ok(()) => {
            let mut out = env.finish();
            let Some(cg) = cg else {
                // Every explored path bounded the recursion; the static
                // walk of the call graph does not end (the kernel stops at
                // MAX_CALL_FRAMES).
                let at = recursion.unwrap_or(0);
                let e = VerifierError::new(
                    at,
                    ErrorKind::Call,
                    format!(
                        "the call stack of {} frames is too deep !",
                        platform::MAX_CALL_FRAMES
                    ),
                );
                let mut log = String::new();
                if opts.log_level > 0 {
                    let body = out.log.trim_end_matches('\n');
                    let (head, stats) = body.rsplit_once('\n').unwrap_or(("", body));
                    if !head.is_empty() {
                        log.push_str(head);
                        log.push('\n');
                    }
                    log.push_str(&e.message);
                    log.push('\n');
                    log.push_str(stats);
                    log.push('\n');
                }
                return Err((e, log));
            };
            zext::analyse(prog, &opts.helpers, &mut out.aux);
            Ok((out, cg))
        }
        Err(e) => {
            let mut log = std::mem::take(&mut env.log);
            // Other state lines follow the error line in the kernel's log
            // (level 2): a fresh line if the instruction's line was reused.
            if !log.ends_with('\n') && !log.is_empty() {
                log.push('\n');
            }
            if opts.log_level > 0 {
                use std::fmt::Write as _;
                let _ = writeln!(
                    log,
                    "processed {} insns (limit {}) max_states_per_insn {} total_states {} peak_states {} mark_read 0",
                    env.processed,
                    opts.insn_limit,
                    env.max_states,
                    env.total_states,
                    env.peak_states
                );
            }
            Err((e, log))
        }
    }
}
