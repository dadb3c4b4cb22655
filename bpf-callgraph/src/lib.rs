#![doc = include_str!("../README.md")]

pub mod depth;
pub mod error;
pub mod graph;
pub mod privstack;
pub mod render;
pub mod stack;

use cranelift_entity::entity_impl;

pub use bpf_isa::ProgType;
pub use depth::estimate_stack_depths;
pub use error::{BuildError, Chain, Cycle, Frame, StackError};
pub use graph::{BuildOptions, CallGraph, CallSite, EdgeKind, Subprog};
pub use privstack::{prog_priv_stack_mode, PrivStackConfig, PrivStackMode, TracingKind};
pub use render::{render_tree, to_dot};
pub use stack::{round_up_stack_depth, StackConfig, StackReport};

/// A subprogram, numbered in order of start slot; subprogram 0 is the entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SubprogId(u32);
entity_impl!(SubprogId, "subprog");

/// Helper id of `bpf_tail_call`.
pub const BPF_FUNC_TAIL_CALL: i32 = 12;
/// The kernel's limit on subprograms per program (`BPF_MAX_SUBPROGS`).
pub const BPF_MAX_SUBPROGS: usize = 256;
/// Combined stack size limit of one call chain, in bytes (`MAX_BPF_STACK`).
pub const MAX_BPF_STACK: u32 = 512;
/// Maximum number of frames on a call chain (`MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: u32 = 8;
/// A tail-calling subprogram must be entered with less than this many bytes of caller frames.
pub const TAIL_CALL_STACK_LIMIT: u32 = 256;
/// Smallest rounded frame that goes on the private stack (`BPF_PRIV_STACK_MIN_SIZE`).
pub const BPF_PRIV_STACK_MIN_SIZE: u32 = 64;
