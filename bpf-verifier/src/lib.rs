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
mod transfer;
mod verifier;

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
    /// For a load, store or atomic: some path reached it (its base type was recorded).
    pub mem_access_seen: bool,
    /// The instruction's 32-bit result needs explicit zero extension (always
    /// `true` for 32-bit ALU results in this stage: no analysis yet).
    pub zext_needed: bool,
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
        return Err(fail(VerifierError::new(
            e.index,
            ErrorKind::ControlFlow,
            e.kind.to_string(),
        )));
    }
    let cg = bpf_callgraph::CallGraph::build(prog).map_err(|e| {
        fail(VerifierError::new(
            e.index(),
            ErrorKind::ControlFlow,
            e.to_string(),
        ))
    })?;
    let starts: Vec<u32> = cg
        .subprogs()
        .values()
        .map(|s| s.start.slot() as u32)
        .collect();
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
            // Combined stack depth along call chains.
            let mut depths = cranelift_entity::SecondaryMap::new();
            for (i, id) in cg.subprogs().keys().enumerate() {
                depths[id] = env.depth.get(i).copied().unwrap_or(0);
            }
            if let Err(e) = cg.check_stack(
                &depths,
                &bpf_callgraph::StackConfig {
                    jit: true,
                    ..Default::default()
                },
            ) {
                return Err(fail(VerifierError::new(
                    e.index(),
                    ErrorKind::MemoryAccess,
                    e.to_string(),
                )));
            }
            let mut out = env.finish();
            for (idx, insn) in prog.iter() {
                if let Some(a) = out.aux.get_mut(idx.slot()) {
                    a.zext_needed = matches!(
                        insn,
                        bpf_isa::Insn::Alu {
                            width: bpf_isa::Width::W32,
                            ..
                        }
                    );
                }
            }
            Ok(out)
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
