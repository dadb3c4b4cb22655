#![doc = include_str!("../README.md")]

pub mod buffer;
pub mod driver;
pub mod error;
pub mod exec;
pub mod masm;
pub mod pack;
pub mod patch;
pub mod progarray;
pub mod tailsite;
pub mod trampoline;

pub use buffer::{BranchEstimate, CodeBuffer, Label, LabelField};
pub use driver::{
    compile, compile_executable, compile_reusing, random_blinding_seed, subprogram_starts,
    CompiledCode, HelperFn, HelperTable, JitOptions, KfuncResolver, LdImm64Resolver, Scratch,
    DEFAULT_STACK_DEPTH, MAX_INLINE_BODY, MAX_RELAX_PASSES, MAY_GOTO_BUDGET, PRESERVABLE,
    TAIL_CALL_HELPER,
};
pub use error::{JitError, JitErrorKind};
pub use exec::{ExecMemory, JitProgram};
pub use masm::{
    AluKind, DivKind, EntryKind, ExtendKind, FrameInfo, IntCmpKind, MacroAssembler, OperandSize,
    RegImm, RmwKind, ShiftKind,
};
pub use patch::{
    update_site, CodeWriter, DirectTailCall, PatchError, PatchErrorKind, PatchImage, PatchKind,
    RwAlias, SiteCodec, SiteLayout,
};
pub use progarray::{
    JitProgArray, SlotOutOfRange, MAX_TAIL_CALL_CNT, PROG_ARRAY_MAX_ENTRIES_OFFSET,
    PROG_ARRAY_SLOTS_OFFSET,
};
