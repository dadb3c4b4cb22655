//! The lowering trait: the small, target-independent vocabulary every backend
//! implements with its own encodings.
//!
//! The driver ([`crate::compile`]) walks the program and calls these methods;
//! the backend only encodes. Operation kinds are small shared enums
//! ([`AluKind`], [`ShiftKind`], [`DivKind`], [`IntCmpKind`], [`ExtendKind`],
//! [`RmwKind`], [`OperandSize`]); what differs per ISA is an associated type
//! ([`MacroAssembler::Reg`], [`MacroAssembler::Address`]).
//!
//! Signatures are three-operand (`dst`, `lhs`, `rhs`) because that is what a
//! RISC target (AArch64) encodes directly. A two-operand target (x86-64)
//! copies `lhs` into `dst` first when they differ; the driver always passes
//! `dst == lhs`, as eBPF is itself two-operand, so that copy never happens in
//! compiled programs.
//!
//! Every method's doc comment states its contract in eBPF terms: the value
//! each register holds afterwards. 32-bit ([`OperandSize::S32`]) results are
//! always zero-extended to 64 bits, as eBPF requires; backends never rely on
//! the verifier to insert zero-extensions.

use bpf_isa::{Reg as BpfReg, Size};

use crate::buffer::{CodeBuffer, Label};
use crate::error::JitErrorKind;

/// Width of an ALU operation, comparison or register move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperandSize {
    /// 32 bits; results are zero-extended to 64 bits.
    S32,
    /// 64 bits.
    S64,
}

impl OperandSize {
    /// The size of an eBPF ALU or jump width.
    #[inline]
    pub const fn of(w: bpf_isa::Width) -> OperandSize {
        match w {
            bpf_isa::Width::W32 => OperandSize::S32,
            bpf_isa::Width::W64 => OperandSize::S64,
        }
    }

    /// Number of bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        match self {
            OperandSize::S32 => 32,
            OperandSize::S64 => 64,
        }
    }
}

/// Second operand of an ALU operation, comparison or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegImm<R> {
    /// A register.
    Reg(R),
    /// A 32-bit immediate, sign-extended to 64 bits for 64-bit operations
    /// (as eBPF's `imm` field).
    Imm(i32),
}

/// Binary ALU operations with no eBPF-specific corner cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluKind {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction `lhs - rhs`.
    Sub,
    /// Wrapping multiplication (low bits; signedness does not matter).
    Mul,
    /// Bitwise and.
    And,
    /// Bitwise or.
    Or,
    /// Bitwise exclusive or.
    Xor,
}

/// Shift operations. The amount is taken modulo the operand width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShiftKind {
    /// Left shift.
    Shl,
    /// Logical right shift.
    ShrU,
    /// Arithmetic right shift.
    ShrS,
}

/// Division and remainder with eBPF's total semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DivKind {
    /// Unsigned quotient; `x / 0 == 0`.
    DivU,
    /// Signed quotient; `x / 0 == 0`, `MIN / -1 == MIN`.
    DivS,
    /// Unsigned remainder; `x % 0 == x`.
    RemU,
    /// Signed remainder (sign of the dividend); `x % 0 == x`, `MIN % -1 == 0`.
    RemS,
}

/// Branch conditions, comparing `lhs` with `rhs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntCmpKind {
    /// `lhs == rhs`
    Eq,
    /// `lhs != rhs`
    Ne,
    /// unsigned `lhs > rhs`
    GtU,
    /// unsigned `lhs >= rhs`
    GeU,
    /// unsigned `lhs < rhs`
    LtU,
    /// unsigned `lhs <= rhs`
    LeU,
    /// signed `lhs > rhs`
    GtS,
    /// signed `lhs >= rhs`
    GeS,
    /// signed `lhs < rhs`
    LtS,
    /// signed `lhs <= rhs`
    LeS,
    /// `lhs & rhs != 0` (eBPF `JSET`)
    TestNonZero,
}

impl IntCmpKind {
    /// The condition of an eBPF conditional jump.
    pub const fn of(c: bpf_isa::JmpCond) -> IntCmpKind {
        use bpf_isa::JmpCond as J;
        match c {
            J::Eq => IntCmpKind::Eq,
            J::Ne => IntCmpKind::Ne,
            J::Gt => IntCmpKind::GtU,
            J::Ge => IntCmpKind::GeU,
            J::Lt => IntCmpKind::LtU,
            J::Le => IntCmpKind::LeU,
            J::Sgt => IntCmpKind::GtS,
            J::Sge => IntCmpKind::GeS,
            J::Slt => IntCmpKind::LtS,
            J::Sle => IntCmpKind::LeS,
            J::Set => IntCmpKind::TestNonZero,
        }
    }
}

/// Sign extensions of a register's low bits (eBPF `movsx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExtendKind {
    /// Low 8 bits sign-extended to 32, then zero-extended to 64.
    I8To32,
    /// Low 16 bits sign-extended to 32, then zero-extended to 64.
    I16To32,
    /// Low 8 bits sign-extended to 64.
    I8To64,
    /// Low 16 bits sign-extended to 64.
    I16To64,
    /// Low 32 bits sign-extended to 64.
    I32To64,
}

/// Read-modify-write atomic operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmwKind {
    /// `*addr += src`
    Add,
    /// `*addr |= src`
    Or,
    /// `*addr &= src`
    And,
    /// `*addr ^= src`
    Xor,
    /// `*addr = src` (exchange; always returns the old value).
    Xchg,
}

/// Which kind of entry a prologue starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// The program's main entry (subprogram 0).
    Main,
    /// A bpf-to-bpf callee (or a callback whose address an `ld_imm64` takes).
    Subprog,
}

/// Everything a backend needs to build one subprogram's frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// Main program or subprogram.
    pub kind: EntryKind,
    /// Bytes of eBPF stack below the frame pointer (`r10`), already rounded
    /// up to a multiple of 16.
    pub stack_depth: u32,
    /// Bit `n` set when callee-saved eBPF register `rn` (6 to 9) is used by
    /// the subprogram and so must be saved and restored; bit 10 when the
    /// subprogram names the frame pointer `r10` at all (a backend whose
    /// frame pointer lives in a callee-saved register, as AArch64's `x25`,
    /// saves and sets it only then; x86-64 ignores the bit).
    pub callee_saved: u16,
    /// A tail call can happen while this frame is live (`bpf-callgraph`'s
    /// `tail_call_reachable`): the frame keeps the pointer to the
    /// invocation's tail-call counter and passes it on to its callees.
    pub tail_call_reachable: bool,
    /// The eBPF stack lives in a private region instead of the native
    /// stack (see [`crate::driver::JitOptions::private_stack`]): the frame
    /// setup points `r10` at the incoming-frame register (the sixth native
    /// argument register: x86-64 `r9`, AArch64 `x5`) instead of carving
    /// `stack_depth` bytes out of the native stack; calls and tail calls
    /// pass the callee its incoming frame address in that register.
    pub private_stack: bool,
    /// The subprogram's code can make a native call: a helper or kfunc
    /// call, a bpf-to-bpf call, a `callx`, a tail call or an
    /// `ld_abs`/`ld_ind` (which calls a routine). A frame without (a
    /// leaf) never needs the native stack aligned for a callee.
    pub makes_calls: bool,
}

impl FrameInfo {
    /// Whether the callee-saved eBPF register `r` must be saved.
    #[inline]
    pub const fn saves(&self, r: BpfReg) -> bool {
        self.callee_saved & (1 << r.num()) != 0
    }
}

/// One backend: encodes the driver's vocabulary for one instruction set.
///
/// Register operands are native registers (`Self::Reg`); the driver obtains
/// them with [`MacroAssembler::reg`] from eBPF registers. Methods that return
/// `Result` may refuse an operand combination the target cannot encode; all
/// others are total.
pub trait MacroAssembler {
    /// A native general-purpose register.
    type Reg: Copy + Eq + core::fmt::Debug;
    /// A memory operand `base + offset` in the target's addressing modes.
    type Address: Copy + core::fmt::Debug;

    /// Byte the image is padded with after the code (a trap instruction or a
    /// prefix of one: `int3` on x86-64; `udf #0` is four zero bytes on AArch64).
    const PAD_BYTE: u8;

    /// Whether the backend records every label-relative field it writes
    /// with [`CodeBuffer::record`] (branches, local calls, label address
    /// loads, and jumps it leaves out), and bases every other
    /// layout-dependent choice on the current offset only. The driver then
    /// finishes a program in one pass when the first pass's choices hold
    /// ([`CodeBuffer::finish_one_pass`]); otherwise it always runs the
    /// pass loop. Default `false`.
    const RECORDS_LABEL_FIELDS: bool = false;

    // ---- buffer and registers -------------------------------------------------

    /// The code buffer.
    fn buffer(&self) -> &CodeBuffer;

    /// The code buffer, mutably (the driver binds labels and starts passes through it).
    fn buffer_mut(&mut self) -> &mut CodeBuffer;

    /// The native register that holds eBPF register `r` for the whole program.
    fn reg(&self, r: BpfReg) -> Self::Reg;

    /// The memory operand `base + off`. May emit code (e.g. on AArch64,
    /// materialising an offset that no addressing mode reaches into a scratch
    /// register), so it must be called immediately before the one memory
    /// access that uses it.
    fn address(&mut self, base: Self::Reg, off: i32) -> Self::Address;

    /// The kernel's hidden register `AX`: a native register that holds no
    /// eBPF register, through which the driver lowers `may_goto` (the
    /// loop-budget slot is loaded, tested, decremented and stored through
    /// it) and blinds constants (see [`crate::JitOptions::blind_constants`]).
    /// It lives only within the lowering of one instruction and is never
    /// live across a call. Every method must accept it as an operand: none
    /// may use it as an internal temporary, and [`MacroAssembler::address`]
    /// must not clobber it. `None` (the default): the backend has none, and
    /// the driver refuses `may_goto` and constant blinding.
    fn ax_reg(&self) -> Option<Self::Reg> {
        None
    }

    // ---- frame ----------------------------------------------------------------

    /// The start of every entry, before the frame is set up: on x86-64 a
    /// 5-byte patchable nop, and on a main entry then `xor eax, eax` (a
    /// program that may tail call: the counter starts at 0) or a 2-byte
    /// nop, so that the tail-call entry offset is the same for every
    /// program. A main entry's size must not depend on `frame` beyond its
    /// [`FrameInfo::kind`]; a subprogram entry, never the target of a tail
    /// call, may be shorter.
    fn entry_padding(&mut self, frame: &FrameInfo);

    /// Sets up the frame: saves the caller's frame pointer, points the eBPF
    /// frame pointer (`r10`) at the top of `frame.stack_depth` bytes of stack,
    /// stores the tail-call counter pointer when the frame is
    /// `tail_call_reachable` (a main entry first turns a counter value
    /// into a counter slot of its own), and saves the callee-saved registers
    /// `frame` lists. The stack pointer must be aligned as the native C ABI
    /// requires for calls afterwards, if [`FrameInfo::makes_calls`]; a
    /// frame that needs neither a frame pointer nor alignment may save and
    /// set nothing but the callee-saved registers. Code entering at the tail-call entry
    /// offset runs exactly this. With [`FrameInfo::private_stack`], `r10` is
    /// instead the incoming-frame register's value (the top of this frame
    /// in the private region) and no eBPF stack is taken from the native
    /// stack.
    fn frame_setup(&mut self, frame: &FrameInfo);

    /// Undoes [`MacroAssembler::frame_setup`] and returns to the caller with
    /// eBPF `r0` as the native return value.
    fn frame_restore_and_return(&mut self, frame: &FrameInfo);

    /// Whole prologue: [`MacroAssembler::entry_padding`] then
    /// [`MacroAssembler::frame_setup`].
    fn prologue(&mut self, frame: &FrameInfo) {
        self.entry_padding(frame);
        self.frame_setup(frame);
    }

    /// Whole epilogue of an `exit`: [`MacroAssembler::frame_restore_and_return`].
    fn epilogue(&mut self, frame: &FrameInfo) {
        self.frame_restore_and_return(frame);
    }

    /// Emits the out-of-line code the backend deferred during the pass
    /// (cold paths such as a division's by-zero result, kept out of the
    /// straight-line code so that the common path takes no branch). The
    /// driver calls it once per layout pass, after the last instruction and
    /// before the data that ends the image. The default defers nothing.
    fn emit_deferred(&mut self) {}

    // ---- moves ----------------------------------------------------------------

    /// `dst = src` (32-bit: `dst = (u32)src`).
    fn mov(&mut self, size: OperandSize, dst: Self::Reg, src: Self::Reg);

    /// `dst = value`, all 64 bits; the backend picks the shortest encoding.
    fn mov_imm(&mut self, dst: Self::Reg, value: u64);

    /// `dst = extend(src)` per `kind`.
    fn extend(&mut self, kind: ExtendKind, dst: Self::Reg, src: Self::Reg);

    /// `dst = src` truncated to its low `bits` (16, 32 or 64) and zero-extended.
    fn zero_extend(&mut self, bits: u8, dst: Self::Reg, src: Self::Reg);

    /// `dst` = the low `bits` (16, 32 or 64) of `src` with their bytes in
    /// reverse order, zero-extended.
    fn byte_swap(&mut self, bits: u8, dst: Self::Reg, src: Self::Reg);

    // ---- arithmetic -----------------------------------------------------------

    /// `dst = lhs op rhs`.
    fn alu(
        &mut self,
        kind: AluKind,
        size: OperandSize,
        dst: Self::Reg,
        lhs: Self::Reg,
        rhs: RegImm<Self::Reg>,
    );

    /// `dst = lhs shift (rhs mod width)`.
    fn shift(
        &mut self,
        kind: ShiftKind,
        size: OperandSize,
        dst: Self::Reg,
        lhs: Self::Reg,
        rhs: RegImm<Self::Reg>,
    );

    /// `dst = rotate_left(dst, amount)` at `size` (a 32-bit rotate clears
    /// the upper half), for `amount` in `1..bits`. Returns `false`, having
    /// emitted nothing, if the backend has no rotate (the default): the
    /// driver then lowers the instructions it matched one by one.
    fn rotate_left(&mut self, size: OperandSize, dst: Self::Reg, amount: u8) -> bool {
        let _ = (size, dst, amount);
        false
    }

    /// Whether [`MacroAssembler::add3`] and
    /// [`MacroAssembler::load_indexed`] are one instruction each (a base +
    /// index + displacement addressing mode): the driver then forwards a
    /// pointer sum `rX = rA + rB` into its uses instead of computing it
    /// (see `docs/ARCHITECTURE.md`). The default is `false`.
    const INDEXED_ADDRESSING: bool = false;

    /// `dst = a + b + imm` (64 bits). The default is two additions.
    fn add3(&mut self, dst: Self::Reg, a: Self::Reg, b: Self::Reg, imm: i32) {
        self.alu(AluKind::Add, OperandSize::S64, dst, a, RegImm::Reg(b));
        self.alu(AluKind::Add, OperandSize::S64, dst, dst, RegImm::Imm(imm));
    }

    /// `dst = *(size *)(a + b + off)`, zero-extended. The default adds into
    /// `dst` first, then loads through it.
    fn load_indexed(
        &mut self,
        size: Size,
        dst: Self::Reg,
        a: Self::Reg,
        b: Self::Reg,
        off: i32,
    ) -> Result<(), JitErrorKind> {
        self.alu(AluKind::Add, OperandSize::S64, dst, a, RegImm::Reg(b));
        let addr = self.address(dst, off);
        self.load(size, false, dst, addr)
    }

    /// `dst = lhs / rhs` or `lhs % rhs` with eBPF's semantics for a zero
    /// divisor and for `MIN / -1` (see [`DivKind`]). Must not trap.
    fn div_rem(
        &mut self,
        kind: DivKind,
        size: OperandSize,
        dst: Self::Reg,
        lhs: Self::Reg,
        rhs: RegImm<Self::Reg>,
    );

    /// [`MacroAssembler::div_rem`] by a register the driver has proved
    /// holds neither 0 nor, for the signed kinds, -1 (as an operand of
    /// `size`): the backend may leave out its checks for those divisors.
    /// The default keeps them.
    fn div_rem_nonzero(
        &mut self,
        kind: DivKind,
        size: OperandSize,
        dst: Self::Reg,
        lhs: Self::Reg,
        rhs: Self::Reg,
    ) {
        self.div_rem(kind, size, dst, lhs, RegImm::Reg(rhs));
    }

    /// `dst = -src` (wrapping).
    fn neg(&mut self, size: OperandSize, dst: Self::Reg, src: Self::Reg);

    // ---- memory ---------------------------------------------------------------

    /// `dst = *(size *)addr`, zero-extended (`signed == false`) or
    /// sign-extended to 64 bits (`signed == true`, sizes `B`, `H`, `W`).
    fn load(
        &mut self,
        size: Size,
        signed: bool,
        dst: Self::Reg,
        addr: Self::Address,
    ) -> Result<(), JitErrorKind>;

    /// `*(size *)addr = src` (an immediate is sign-extended to the size, as
    /// eBPF's `st` does for `DW`).
    fn store(
        &mut self,
        size: Size,
        addr: Self::Address,
        src: RegImm<Self::Reg>,
    ) -> Result<(), JitErrorKind>;

    /// Atomic `*(size *)addr = *addr op src`; with `fetch`, `src` receives
    /// the old value (zero-extended for `W`). [`RmwKind::Xchg`] always fetches.
    /// Sizes `W` and `DW`. Sequentially consistent.
    fn atomic_rmw(
        &mut self,
        kind: RmwKind,
        size: Size,
        addr: Self::Address,
        src: Self::Reg,
        fetch: bool,
    ) -> Result<(), JitErrorKind>;

    /// Atomic compare-and-exchange: if `*addr == expected` (low `size` bits)
    /// then `*addr = new`; either way `expected` receives the old value,
    /// zero-extended. The driver passes eBPF `r0` as `expected`; a target may
    /// require that.
    fn atomic_cmpxchg(
        &mut self,
        size: Size,
        addr: Self::Address,
        expected: Self::Reg,
        new: Self::Reg,
    ) -> Result<(), JitErrorKind>;

    /// `dst = load_acquire((size *)addr)`, zero-extended.
    fn load_acquire(
        &mut self,
        size: Size,
        dst: Self::Reg,
        addr: Self::Address,
    ) -> Result<(), JitErrorKind>;

    /// `store_release((size *)addr, src)`.
    fn store_release(
        &mut self,
        size: Size,
        addr: Self::Address,
        src: Self::Reg,
    ) -> Result<(), JitErrorKind>;

    // ---- control flow ---------------------------------------------------------

    /// Unconditional jump to `target`. Uses the buffer's estimate
    /// ([`CodeBuffer::estimate`]) to choose a short form; may emit nothing
    /// when the target is the next instruction.
    fn jmp(&mut self, target: Label) -> Result<(), JitErrorKind>;

    /// `if lhs cond rhs goto target` (compare and branch).
    fn branch(
        &mut self,
        cond: IntCmpKind,
        size: OperandSize,
        lhs: Self::Reg,
        rhs: RegImm<Self::Reg>,
        target: Label,
    ) -> Result<(), JitErrorKind>;

    /// `if result cond 0 goto target` for `cond` [`IntCmpKind::Eq`] or
    /// [`IntCmpKind::Ne`], where `result` is what the method called just
    /// before wrote: an in-place [`MacroAssembler::alu`] (`dst == lhs`) of
    /// kind Add, Sub, And, Or or Xor, at the size the branch compares at,
    /// whose `dst` is the register the branch compares with 0; nothing
    /// jumps between them. A backend whose `alu` leaves flags that tell
    /// whether its result is 0 may branch on them without comparing again
    /// and return `true`; otherwise it emits nothing and returns `false`
    /// (the default), and the driver lowers the branch as usual.
    fn branch_on_last_alu(
        &mut self,
        cond: IntCmpKind,
        target: Label,
    ) -> Result<bool, JitErrorKind> {
        let _ = (cond, target);
        Ok(false)
    }

    /// Calls the native C-ABI function at `addr` with eBPF `r1`-`r5` as its
    /// five arguments; `r0` receives the result, `r1`-`r5` are clobbered.
    fn call_helper(&mut self, addr: u64) -> Result<(), JitErrorKind>;

    /// [`MacroAssembler::call_helper`] for a `bpf_fastcall` helper: the
    /// eBPF registers in `preserve` (bit `i` for `ri`, `r0`-`r5`) hold the
    /// same values after the call as before, whatever the native function
    /// does to their machine registers (`r0` is only in the mask for a
    /// helper returning nothing). The default handles an empty mask with
    /// `call_helper` and refuses any other, so a backend that does not
    /// implement it never runs a rewritten program unsoundly.
    fn call_helper_preserving(&mut self, addr: u64, preserve: u16) -> Result<(), JitErrorKind> {
        if preserve & crate::driver::PRESERVABLE == 0 {
            self.call_helper(addr)
        } else {
            Err(JitErrorKind::Unsupported(
                "bpf_fastcall register preservation",
            ))
        }
    }

    /// Calls the subprogram entered at `target` (bpf-to-bpf call): same
    /// register convention as [`MacroAssembler::call_helper`]. When the
    /// calling `frame` is `tail_call_reachable`, the callee receives the
    /// pointer to the tail-call counter (x86-64: in `rax`). With
    /// [`FrameInfo::private_stack`], the callee's incoming frame address is
    /// the caller's `r10 - stack_depth`, passed in the incoming-frame register.
    fn call_local(&mut self, target: Label, frame: &FrameInfo) -> Result<(), JitErrorKind>;

    /// `dst` = the absolute address of `target` (an `ld_imm64` of a BPF
    /// function, for callbacks).
    fn load_label_address(&mut self, dst: Self::Reg, target: Label) -> Result<(), JitErrorKind>;

    /// `bpf_tail_call(r1 = ctx, r2 = prog array, r3 = index)` from `frame`
    /// (which is `tail_call_reachable`). `r2` points at a
    /// [`JitProgArray`](crate::JitProgArray). In order: if `(u32)index >=
    /// max_entries`, or the invocation's counter is already
    /// [`MAX_TAIL_CALL_CNT`](crate::MAX_TAIL_CALL_CNT), or the slot is
    /// empty, fall through to the next instruction (`r0`-`r5` clobbered);
    /// otherwise increment the counter, tear this frame down (restore the
    /// callee-saved registers and the caller's frame pointer) and jump to
    /// the slot's program past its fixed head, passing on the counter (as a
    /// value from a main program's frame, as the pointer from a subprogram's).
    /// With [`FrameInfo::private_stack`], the target's incoming frame
    /// address is this frame's own (its `r10`), so the target's frame takes
    /// exactly the torn-down frame's place in the private region.
    /// The default refuses it.
    fn tail_call(&mut self, frame: &FrameInfo) -> Result<(), JitErrorKind> {
        let _ = frame;
        Err(JitErrorKind::Unsupported("tail call"))
    }

    /// The direct form of [`MacroAssembler::tail_call`] for a site whose
    /// array and index are constant (see [`crate::patch`] for the sequence
    /// and how it is patched): if the counter is already
    /// [`MAX_TAIL_CALL_CNT`](crate::MAX_TAIL_CALL_CNT) fall through; a
    /// patchable bypass (emitted as a jump to the end of the sequence);
    /// increment the counter; tear the frame down as `tail_call` does; a
    /// patchable target (emitted as a no-op that is never executed: the
    /// bypass is on until the target has been written). Each patchable
    /// instruction must be writable with one aligned single-copy-atomic
    /// store. Returns the parts' offsets, or `None` (having emitted
    /// nothing) when the backend has no direct form; the default.
    fn tail_call_direct(
        &mut self,
        frame: &FrameInfo,
    ) -> Result<Option<crate::patch::SiteLayout>, JitErrorKind> {
        let _ = frame;
        Ok(None)
    }

    /// `callx reg`: calls what the register holds — a helper id below
    /// `table_len` (looked up in the helper-address table at `table`, an
    /// image label whose 8-byte entries are absolute addresses), or else an
    /// absolute code address (an `ld_imm64` function reference).
    /// The default refuses it.
    fn call_indirect(
        &mut self,
        reg: Self::Reg,
        table: Label,
        table_len: u32,
        frame: &FrameInfo,
    ) -> Result<(), JitErrorKind> {
        let _ = (reg, table, table_len, frame);
        Err(JitErrorKind::Unsupported("callx"))
    }
}
