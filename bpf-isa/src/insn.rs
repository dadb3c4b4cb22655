//! The typed instruction representation.

use core::fmt;

/// One eBPF register, `r0` to `r10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    /// Return value, scratch.
    R0 = 0,
    /// First argument, scratch.
    R1 = 1,
    /// Second argument, scratch.
    R2 = 2,
    /// Third argument, scratch.
    R3 = 3,
    /// Fourth argument, scratch.
    R4 = 4,
    /// Fifth argument, scratch.
    R5 = 5,
    /// Callee-saved.
    R6 = 6,
    /// Callee-saved.
    R7 = 7,
    /// Callee-saved.
    R8 = 8,
    /// Callee-saved.
    R9 = 9,
    /// Read-only frame pointer.
    R10 = 10,
}

impl Reg {
    /// All eleven registers in numeric order.
    pub const ALL: [Reg; 11] = [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
        Reg::R10,
    ];

    /// The register numbered `n`, if `n <= 10`.
    #[inline]
    pub const fn from_u8(n: u8) -> Option<Reg> {
        if n <= 10 {
            Some(Reg::ALL[n as usize])
        } else {
            None
        }
    }

    /// The register's number.
    #[inline]
    pub const fn num(self) -> u8 {
        self as u8
    }

    /// The register's number as an index.
    #[inline]
    pub const fn idx(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.num())
    }
}

/// Operand width of an ALU or jump instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// 32-bit (`BPF_ALU`, `BPF_JMP32`): lower halves, ALU results zero-extended.
    W32,
    /// 64-bit (`BPF_ALU64`, `BPF_JMP`).
    W64,
}

/// Size of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// 1 byte (`BPF_B`).
    B,
    /// 2 bytes (`BPF_H`).
    H,
    /// 4 bytes (`BPF_W`).
    W,
    /// 8 bytes (`BPF_DW`).
    DW,
}

impl Size {
    /// All four sizes, smallest first.
    pub const ALL: [Size; 4] = [Size::B, Size::H, Size::W, Size::DW];

    /// Size in bytes.
    #[inline]
    pub const fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// Size in bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.bytes() * 8
    }
}

/// Second operand of an ALU or conditional-jump instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A register (`BPF_X`).
    Reg(Reg),
    /// A 32-bit immediate (`BPF_K`); sign-extended to 64 bits by 64-bit operations.
    Imm(i32),
}

/// Binary ALU operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// `dst += src`
    Add,
    /// `dst -= src`
    Sub,
    /// `dst *= src`
    Mul,
    /// Unsigned `dst /= src` (division by zero yields 0).
    Div,
    /// Signed `dst s/= src` (`off == 1`; division by zero yields 0).
    SDiv,
    /// `dst |= src`
    Or,
    /// `dst &= src`
    And,
    /// `dst <<= src` (amount masked to the width).
    Lsh,
    /// Logical `dst >>= src`.
    Rsh,
    /// Unsigned `dst %= src` (modulo by zero leaves `dst`).
    Mod,
    /// Signed `dst s%= src` (`off == 1`; modulo by zero leaves `dst`).
    SMod,
    /// `dst ^= src`
    Xor,
    /// `dst = src`
    Mov,
    /// Arithmetic `dst s>>= src`.
    Arsh,
}

impl AluOp {
    /// Every binary ALU operation.
    pub const ALL: [AluOp; 14] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::SDiv,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Mod,
        AluOp::SMod,
        AluOp::Xor,
        AluOp::Mov,
        AluOp::Arsh,
    ];
}

/// Kind of a byte-swap instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// `le16/le32/le64` (`BPF_ALU | BPF_END | BPF_TO_LE`): a no-op besides truncation on little-endian hosts.
    ToLe,
    /// `be16/be32/be64` (`BPF_ALU | BPF_END | BPF_TO_BE`).
    ToBe,
    /// `bswap16/32/64` (`BPF_ALU64 | BPF_END`): unconditional swap.
    Swap,
}

/// Condition of a conditional jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JmpCond {
    /// `==`
    Eq,
    /// unsigned `>`
    Gt,
    /// unsigned `>=`
    Ge,
    /// `dst & src != 0`
    Set,
    /// `!=`
    Ne,
    /// signed `>`
    Sgt,
    /// signed `>=`
    Sge,
    /// unsigned `<`
    Lt,
    /// unsigned `<=`
    Le,
    /// signed `<`
    Slt,
    /// signed `<=`
    Sle,
}

impl JmpCond {
    /// Every condition.
    pub const ALL: [JmpCond; 11] = [
        JmpCond::Eq,
        JmpCond::Gt,
        JmpCond::Ge,
        JmpCond::Set,
        JmpCond::Ne,
        JmpCond::Sgt,
        JmpCond::Sge,
        JmpCond::Lt,
        JmpCond::Le,
        JmpCond::Slt,
        JmpCond::Sle,
    ];

    /// The condition with the operands swapped (`a < b` is `b > a`); `Set` maps to itself.
    pub const fn swapped(self) -> JmpCond {
        match self {
            JmpCond::Eq => JmpCond::Eq,
            JmpCond::Ne => JmpCond::Ne,
            JmpCond::Set => JmpCond::Set,
            JmpCond::Gt => JmpCond::Lt,
            JmpCond::Lt => JmpCond::Gt,
            JmpCond::Ge => JmpCond::Le,
            JmpCond::Le => JmpCond::Ge,
            JmpCond::Sgt => JmpCond::Slt,
            JmpCond::Slt => JmpCond::Sgt,
            JmpCond::Sge => JmpCond::Sle,
            JmpCond::Sle => JmpCond::Sge,
        }
    }

    /// The negated condition, where one exists (`Set` has none).
    pub const fn negated(self) -> Option<JmpCond> {
        Some(match self {
            JmpCond::Eq => JmpCond::Ne,
            JmpCond::Ne => JmpCond::Eq,
            JmpCond::Set => return None,
            JmpCond::Gt => JmpCond::Le,
            JmpCond::Le => JmpCond::Gt,
            JmpCond::Ge => JmpCond::Lt,
            JmpCond::Lt => JmpCond::Ge,
            JmpCond::Sgt => JmpCond::Sle,
            JmpCond::Sle => JmpCond::Sgt,
            JmpCond::Sge => JmpCond::Slt,
            JmpCond::Slt => JmpCond::Sge,
        })
    }
}

/// Read-modify-write operation of an atomic instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `*addr += src`, with `fetch`: `src` receives the old value.
    Add {
        /// `BPF_FETCH`: return the old value in `src`.
        fetch: bool,
    },
    /// `*addr |= src`.
    Or {
        /// `BPF_FETCH`: return the old value in `src`.
        fetch: bool,
    },
    /// `*addr &= src`.
    And {
        /// `BPF_FETCH`: return the old value in `src`.
        fetch: bool,
    },
    /// `*addr ^= src`.
    Xor {
        /// `BPF_FETCH`: return the old value in `src`.
        fetch: bool,
    },
    /// `src = xchg(addr, src)`.
    Xchg,
    /// `r0 = cmpxchg(addr, r0, src)`.
    Cmpxchg,
    /// `dst = load_acquire(src + off)`: here the instruction's `dst` is the
    /// loaded-into register and `src` the base address register.
    LoadAcquire,
    /// `store_release(dst + off, src)`.
    StoreRelease,
}

impl AtomicOp {
    /// Every atomic operation.
    pub const ALL: [AtomicOp; 12] = [
        AtomicOp::Add { fetch: false },
        AtomicOp::Add { fetch: true },
        AtomicOp::Or { fetch: false },
        AtomicOp::Or { fetch: true },
        AtomicOp::And { fetch: false },
        AtomicOp::And { fetch: true },
        AtomicOp::Xor { fetch: false },
        AtomicOp::Xor { fetch: true },
        AtomicOp::Xchg,
        AtomicOp::Cmpxchg,
        AtomicOp::LoadAcquire,
        AtomicOp::StoreRelease,
    ];

    /// The `imm` field that encodes this operation.
    pub const fn imm(self) -> i32 {
        use crate::opcode::*;
        let (base, fetch) = match self {
            AtomicOp::Add { fetch } => (BPF_ADD as i32, fetch),
            AtomicOp::Or { fetch } => (BPF_OR as i32, fetch),
            AtomicOp::And { fetch } => (BPF_AND as i32, fetch),
            AtomicOp::Xor { fetch } => (BPF_XOR as i32, fetch),
            AtomicOp::Xchg => return BPF_XCHG,
            AtomicOp::Cmpxchg => return BPF_CMPXCHG,
            AtomicOp::LoadAcquire => return BPF_LOAD_ACQ,
            AtomicOp::StoreRelease => return BPF_STORE_REL,
        };
        if fetch {
            base | BPF_FETCH
        } else {
            base
        }
    }

    /// The operation encoded by an atomic instruction's `imm`, if any.
    pub const fn from_imm(imm: i32) -> Option<AtomicOp> {
        use crate::opcode::*;
        const ADD: i32 = BPF_ADD as i32;
        const ADD_F: i32 = BPF_ADD as i32 | BPF_FETCH;
        const OR: i32 = BPF_OR as i32;
        const OR_F: i32 = BPF_OR as i32 | BPF_FETCH;
        const AND: i32 = BPF_AND as i32;
        const AND_F: i32 = BPF_AND as i32 | BPF_FETCH;
        const XOR: i32 = BPF_XOR as i32;
        const XOR_F: i32 = BPF_XOR as i32 | BPF_FETCH;
        Some(match imm {
            ADD => AtomicOp::Add { fetch: false },
            ADD_F => AtomicOp::Add { fetch: true },
            OR => AtomicOp::Or { fetch: false },
            OR_F => AtomicOp::Or { fetch: true },
            AND => AtomicOp::And { fetch: false },
            AND_F => AtomicOp::And { fetch: true },
            XOR => AtomicOp::Xor { fetch: false },
            XOR_F => AtomicOp::Xor { fetch: true },
            BPF_XCHG => AtomicOp::Xchg,
            BPF_CMPXCHG => AtomicOp::Cmpxchg,
            BPF_LOAD_ACQ => AtomicOp::LoadAcquire,
            BPF_STORE_REL => AtomicOp::StoreRelease,
            _ => return None,
        })
    }

    /// Whether the operation writes a register (fetch forms, xchg, cmpxchg, load-acquire).
    pub const fn writes_register(self) -> bool {
        !matches!(
            self,
            AtomicOp::Add { fetch: false }
                | AtomicOp::Or { fetch: false }
                | AtomicOp::And { fetch: false }
                | AtomicOp::Xor { fetch: false }
                | AtomicOp::StoreRelease
        )
    }
}

/// What an `ld_imm64` instruction loads (its `src_reg` pseudo source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LdImm64Src {
    /// A plain 64-bit constant (`src_reg == 0`).
    Imm(u64),
    /// A map by file descriptor (`BPF_PSEUDO_MAP_FD`).
    MapFd(i32),
    /// A pointer into a map's value (`BPF_PSEUDO_MAP_VALUE`): fd, then byte offset.
    MapValue {
        /// Map file descriptor.
        fd: i32,
        /// Offset into the value (the second slot's `imm`).
        off: u32,
    },
    /// A kernel object by BTF id (`BPF_PSEUDO_BTF_ID`).
    BtfId(i32),
    /// A BPF function, pc-relative in slots like a pseudo call (`BPF_PSEUDO_FUNC`).
    Func(i32),
    /// A map by index into `fd_array` (`BPF_PSEUDO_MAP_IDX`).
    MapIdx(i32),
    /// A pointer into a map's value by `fd_array` index (`BPF_PSEUDO_MAP_IDX_VALUE`).
    MapIdxValue {
        /// Index into `fd_array`.
        idx: i32,
        /// Offset into the value.
        off: u32,
    },
}

/// What a call instruction calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallTarget {
    /// A helper by static id (`src_reg == 0`).
    Helper(i32),
    /// A BPF subprogram at `pc + 1 + imm` slots (`BPF_PSEUDO_CALL`).
    Local(i32),
    /// A kernel function by BTF id (`BPF_PSEUDO_KFUNC_CALL`); `off` selects the BTF object (0 is vmlinux).
    Kfunc {
        /// BTF id of the function.
        btf_id: i32,
        /// Index of the module BTF in `fd_array`, 0 for vmlinux.
        off: i16,
    },
}

/// One eBPF instruction.
///
/// Jump and call offsets count 8-byte slots relative to the next slot, exactly
/// as encoded; `ld_imm64` occupies two slots ([`Insn::slots`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// Binary ALU operation `dst op= src`.
    Alu {
        /// 32- or 64-bit operation.
        width: Width,
        /// The operation.
        op: AluOp,
        /// Destination (and first operand).
        dst: Reg,
        /// Second operand.
        src: Source,
    },
    /// `dst = -dst`.
    Neg {
        /// 32- or 64-bit operation.
        width: Width,
        /// Operand and destination.
        dst: Reg,
    },
    /// Sign-extending move `dst = (s8/s16/s32) src` (`BPF_MOV | BPF_X` with `off` 8, 16 or 32).
    MovSx {
        /// 32-bit forms take 8 or 16 bits; 64-bit forms 8, 16 or 32.
        width: Width,
        /// Destination.
        dst: Reg,
        /// Source register.
        src: Reg,
        /// Size of the sign-extended part of `src` (`B`, `H` or `W`).
        from: Size,
    },
    /// `dst = addr_space_cast(src, dst_as, src_as)` (arena pointers; `BPF_ALU64 | BPF_MOV | BPF_X`, `off == 1`).
    AddrSpaceCast {
        /// Destination.
        dst: Reg,
        /// Source register.
        src: Reg,
        /// Destination address space (high 16 bits of `imm`).
        dst_as: u16,
        /// Source address space (low 16 bits of `imm`).
        src_as: u16,
    },
    /// Byte swap or endianness conversion of the low `bits` of `dst`.
    Endian {
        /// `le`, `be` or `bswap`.
        kind: Endian,
        /// 16, 32 or 64.
        bits: u8,
        /// Operand and destination.
        dst: Reg,
    },
    /// Unconditional jump with a 16-bit offset (`BPF_JMP | BPF_JA`).
    Ja {
        /// Offset in slots from the next slot.
        off: i16,
    },
    /// Unconditional jump with a 32-bit offset, `gotol` (`BPF_JMP32 | BPF_JA`).
    JaLong {
        /// Offset in slots from the next slot.
        imm: i32,
    },
    /// Conditional jump `if dst cond src goto +off`.
    Jmp {
        /// 64-bit (`BPF_JMP`) or 32-bit (`BPF_JMP32`) comparison.
        width: Width,
        /// The condition.
        cond: JmpCond,
        /// First operand.
        dst: Reg,
        /// Second operand.
        src: Source,
        /// Offset in slots from the next slot.
        off: i16,
    },
    /// `may_goto +off` (`BPF_JMP | BPF_JCOND`, `src_reg == BPF_MAY_GOTO`).
    MayGoto {
        /// Offset in slots from the next slot.
        off: i16,
    },
    /// Call a helper, a subprogram or a kfunc.
    Call(CallTarget),
    /// Call through a register, `callx` (`BPF_JMP | BPF_CALL | BPF_X`; the Linux kernel rejects it).
    ///
    /// Encoded with the register number in `dst` and `imm == 0`, as LLVM 19 and
    /// the bpf_conformance assembler do; decoding also accepts the older LLVM
    /// encoding with the register number in `imm` and `dst == 0`.
    CallReg {
        /// The register holding the target.
        reg: Reg,
    },
    /// Return from the program or subprogram with `r0`.
    Exit,
    /// Two-slot 64-bit immediate load (`BPF_LD | BPF_IMM | BPF_DW`).
    LdImm64 {
        /// Destination.
        dst: Reg,
        /// What is loaded.
        src: LdImm64Src,
    },
    /// Legacy `r0 = ntoh(*(size *)(skb->data + imm))` (`BPF_LD | BPF_ABS`).
    LdAbs {
        /// `B`, `H` or `W`.
        size: Size,
        /// Packet offset.
        imm: i32,
    },
    /// Legacy `r0 = ntoh(*(size *)(skb->data + src + imm))` (`BPF_LD | BPF_IND`).
    LdInd {
        /// `B`, `H` or `W`.
        size: Size,
        /// Register holding the variable part of the offset.
        src: Reg,
        /// Constant part of the offset.
        imm: i32,
    },
    /// Load `dst = *(size *)(src + off)`, zero-extending.
    Ldx {
        /// Access size.
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Byte offset.
        off: i16,
    },
    /// Sign-extending load `dst = *(s8/s16/s32 *)(src + off)` (`BPF_MEMSX`).
    LdxSx {
        /// `B`, `H` or `W`.
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Byte offset.
        off: i16,
    },
    /// Store immediate `*(size *)(dst + off) = imm`.
    St {
        /// Access size.
        size: Size,
        /// Base address register.
        dst: Reg,
        /// Byte offset.
        off: i16,
        /// Stored value (sign-extended to 8 bytes for `DW`).
        imm: i32,
    },
    /// Store register `*(size *)(dst + off) = src`.
    Stx {
        /// Access size.
        size: Size,
        /// Base address register.
        dst: Reg,
        /// Stored register.
        src: Reg,
        /// Byte offset.
        off: i16,
    },
    /// Atomic operation on `*(size *)(dst + off)` with `src`.
    Atomic {
        /// `W` or `DW` for read-modify-write; any size for load-acquire / store-release.
        size: Size,
        /// The operation.
        op: AtomicOp,
        /// Base address register (the destination register for [`AtomicOp::LoadAcquire`]).
        dst: Reg,
        /// Operand register (the base address register for [`AtomicOp::LoadAcquire`]).
        src: Reg,
        /// Byte offset.
        off: i16,
    },
}

impl Insn {
    /// The binary ALU instruction `dst op= src` at `width` (shorthand for
    /// the [`Insn::Alu`] literal).
    pub const fn alu(width: Width, op: AluOp, dst: Reg, src: Source) -> Insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        }
    }

    /// The registers the instruction may write, one bit per register (bit
    /// `n` for `rn`): the destination of ALU, move, load and `ld_imm64`
    /// instructions; for atomics, `src` for the fetch forms and `xchg`,
    /// `r0` for `cmpxchg`, `dst` for load-acquire, nothing for the others
    /// and store-release; `r0`-`r5` for every call and for legacy packet
    /// loads (`ld_abs`/`ld_ind`), whose callee or helper clobbers them.
    /// Stores, jumps and `exit` write none.
    ///
    /// ```
    /// use bpf_isa::{AtomicOp, Insn, Reg, Size};
    ///
    /// let acq = Insn::Atomic { op: AtomicOp::LoadAcquire, size: Size::DW, dst: Reg::R3, src: Reg::R10, off: -8 };
    /// assert_eq!(acq.written_regs(), 1 << 3);
    /// assert_eq!(Insn::Exit.written_regs(), 0);
    /// ```
    #[inline]
    pub const fn written_regs(&self) -> u16 {
        const fn bit(r: Reg) -> u16 {
            1 << (r.num() & 15)
        }
        match *self {
            Insn::Alu { dst, .. }
            | Insn::Neg { dst, .. }
            | Insn::Endian { dst, .. }
            | Insn::MovSx { dst, .. }
            | Insn::AddrSpaceCast { dst, .. }
            | Insn::Ldx { dst, .. }
            | Insn::LdxSx { dst, .. }
            | Insn::LdImm64 { dst, .. } => bit(dst),
            Insn::Atomic { op, dst, src, .. } => match op {
                AtomicOp::LoadAcquire => bit(dst),
                AtomicOp::Cmpxchg => bit(Reg::R0),
                _ if op.writes_register() => bit(src),
                _ => 0,
            },
            Insn::Call(_) | Insn::CallReg { .. } | Insn::LdAbs { .. } | Insn::LdInd { .. } => 0x3f,
            Insn::St { .. }
            | Insn::Stx { .. }
            | Insn::Jmp { .. }
            | Insn::Ja { .. }
            | Insn::JaLong { .. }
            | Insn::MayGoto { .. }
            | Insn::Exit => 0,
        }
    }

    /// Number of 8-byte slots the instruction occupies: 2 for `ld_imm64`, else 1.
    #[inline]
    pub const fn slots(&self) -> usize {
        match self {
            Insn::LdImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// The jump target of a jump or a local call, as a slot offset from the
    /// slot after this instruction; `None` for everything else (including `exit`).
    #[inline]
    pub const fn branch_offset(&self) -> Option<i64> {
        match *self {
            Insn::Ja { off } | Insn::Jmp { off, .. } | Insn::MayGoto { off } => Some(off as i64),
            Insn::JaLong { imm } => Some(imm as i64),
            _ => None,
        }
    }

    /// Whether control never falls through to the next instruction.
    #[inline]
    pub const fn is_terminator(&self) -> bool {
        matches!(self, Insn::Ja { .. } | Insn::JaLong { .. } | Insn::Exit)
    }

    /// Whether the instruction is encoded in the `BPF_JMP` or `BPF_JMP32`
    /// class: a jump of any kind (`may_goto` included), a call or `exit`.
    ///
    /// ```
    /// use bpf_isa::{CallTarget, Insn};
    ///
    /// assert!(Insn::Exit.is_jmp_class());
    /// assert!(Insn::Call(CallTarget::Helper(1)).is_jmp_class());
    /// assert!(!Insn::LdAbs { size: bpf_isa::Size::B, imm: 0 }.is_jmp_class());
    /// ```
    #[inline]
    pub const fn is_jmp_class(&self) -> bool {
        matches!(
            self,
            Insn::Jmp { .. }
                | Insn::Ja { .. }
                | Insn::JaLong { .. }
                | Insn::MayGoto { .. }
                | Insn::Call(_)
                | Insn::CallReg { .. }
                | Insn::Exit
        )
    }
}
