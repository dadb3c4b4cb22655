//! Encoding typed instructions into raw slots.

use crate::insn::*;
use crate::opcode::*;
use crate::raw::RawInsn;

const fn size_bits(s: Size) -> u8 {
    match s {
        Size::B => BPF_B,
        Size::H => BPF_H,
        Size::W => BPF_W,
        Size::DW => BPF_DW,
    }
}

const fn alu_class(w: Width) -> u8 {
    match w {
        Width::W32 => BPF_ALU,
        Width::W64 => BPF_ALU64,
    }
}

const fn jmp_class(w: Width) -> u8 {
    match w {
        Width::W32 => BPF_JMP32,
        Width::W64 => BPF_JMP,
    }
}

/// The opcode bits and `off` of a binary ALU operation.
const fn alu_bits(op: AluOp) -> (u8, i16) {
    match op {
        AluOp::Add => (BPF_ADD, 0),
        AluOp::Sub => (BPF_SUB, 0),
        AluOp::Mul => (BPF_MUL, 0),
        AluOp::Div => (BPF_DIV, 0),
        AluOp::SDiv => (BPF_DIV, 1),
        AluOp::Or => (BPF_OR, 0),
        AluOp::And => (BPF_AND, 0),
        AluOp::Lsh => (BPF_LSH, 0),
        AluOp::Rsh => (BPF_RSH, 0),
        AluOp::Mod => (BPF_MOD, 0),
        AluOp::SMod => (BPF_MOD, 1),
        AluOp::Xor => (BPF_XOR, 0),
        AluOp::Mov => (BPF_MOV, 0),
        AluOp::Arsh => (BPF_ARSH, 0),
    }
}

/// The opcode bits of a jump condition.
pub const fn cond_bits(c: JmpCond) -> u8 {
    match c {
        JmpCond::Eq => BPF_JEQ,
        JmpCond::Gt => BPF_JGT,
        JmpCond::Ge => BPF_JGE,
        JmpCond::Set => BPF_JSET,
        JmpCond::Ne => BPF_JNE,
        JmpCond::Sgt => BPF_JSGT,
        JmpCond::Sge => BPF_JSGE,
        JmpCond::Lt => BPF_JLT,
        JmpCond::Le => BPF_JLE,
        JmpCond::Slt => BPF_JSLT,
        JmpCond::Sle => BPF_JSLE,
    }
}

/// The (first, second) slots of an instruction; the second is `None` unless it is an `ld_imm64`.
pub fn encode(insn: &Insn) -> (RawInsn, Option<RawInsn>) {
    let r = |code, dst: u8, src: u8, off, imm| RawInsn::new(code, dst, src, off, imm);
    let one = |x| (x, None);
    match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let (bits, off) = alu_bits(op);
            let code = alu_class(width) | bits;
            one(match src {
                Source::Reg(s) => r(code | BPF_X, dst.num(), s.num(), off, 0),
                Source::Imm(i) => r(code | BPF_K, dst.num(), 0, off, i),
            })
        }
        Insn::Neg { width, dst } => one(r(alu_class(width) | BPF_NEG, dst.num(), 0, 0, 0)),
        Insn::MovSx {
            width,
            dst,
            src,
            from,
        } => one(r(
            alu_class(width) | BPF_MOV | BPF_X,
            dst.num(),
            src.num(),
            from.bits() as i16,
            0,
        )),
        Insn::AddrSpaceCast {
            dst,
            src,
            dst_as,
            src_as,
        } => one(r(
            BPF_ALU64 | BPF_MOV | BPF_X,
            dst.num(),
            src.num(),
            BPF_ADDR_SPACE_CAST,
            (((dst_as as u32) << 16) | src_as as u32) as i32,
        )),
        Insn::Endian { kind, bits, dst } => {
            let code = match kind {
                Endian::ToLe => BPF_ALU | BPF_END | BPF_TO_LE,
                Endian::ToBe => BPF_ALU | BPF_END | BPF_TO_BE,
                Endian::Swap => BPF_ALU64 | BPF_END,
            };
            one(r(code, dst.num(), 0, 0, bits as i32))
        }
        Insn::Ja { off } => one(r(BPF_JMP | BPF_JA, 0, 0, off, 0)),
        Insn::JaLong { imm } => one(r(BPF_JMP32 | BPF_JA, 0, 0, 0, imm)),
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => {
            let code = jmp_class(width) | cond_bits(cond);
            one(match src {
                Source::Reg(s) => r(code | BPF_X, dst.num(), s.num(), off, 0),
                Source::Imm(i) => r(code | BPF_K, dst.num(), 0, off, i),
            })
        }
        Insn::MayGoto { off } => one(r(BPF_JMP | BPF_JCOND, 0, BPF_MAY_GOTO, off, 0)),
        Insn::Call(t) => one(match t {
            CallTarget::Helper(id) => r(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_HELPER_CALL, 0, id),
            CallTarget::Local(off) => r(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, off),
            CallTarget::Kfunc { btf_id, off } => {
                r(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, off, btf_id)
            }
        }),
        Insn::CallReg { reg } => one(r(BPF_JMP | BPF_CALL | BPF_X, reg.num(), 0, 0, 0)),
        Insn::Exit => one(r(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)),
        Insn::LdImm64 { dst, src } => {
            let (pseudo, lo, hi) = match src {
                LdImm64Src::Imm(v) => (BPF_PSEUDO_IMM, v as u32 as i32, (v >> 32) as u32 as i32),
                LdImm64Src::MapFd(fd) => (BPF_PSEUDO_MAP_FD, fd, 0),
                LdImm64Src::MapValue { fd, off } => (BPF_PSEUDO_MAP_VALUE, fd, off as i32),
                LdImm64Src::BtfId(id) => (BPF_PSEUDO_BTF_ID, id, 0),
                LdImm64Src::Func(off) => (BPF_PSEUDO_FUNC, off, 0),
                LdImm64Src::MapIdx(i) => (BPF_PSEUDO_MAP_IDX, i, 0),
                LdImm64Src::MapIdxValue { idx, off } => (BPF_PSEUDO_MAP_IDX_VALUE, idx, off as i32),
            };
            (
                r(BPF_LD | BPF_IMM | BPF_DW, dst.num(), pseudo, 0, lo),
                Some(r(0, 0, 0, 0, hi)),
            )
        }
        Insn::LdAbs { size, imm } => one(r(BPF_LD | BPF_ABS | size_bits(size), 0, 0, 0, imm)),
        Insn::LdInd { size, src, imm } => {
            one(r(BPF_LD | BPF_IND | size_bits(size), 0, src.num(), 0, imm))
        }
        Insn::Ldx {
            size,
            dst,
            src,
            off,
        } => one(r(
            BPF_LDX | BPF_MEM | size_bits(size),
            dst.num(),
            src.num(),
            off,
            0,
        )),
        Insn::LdxSx {
            size,
            dst,
            src,
            off,
        } => one(r(
            BPF_LDX | BPF_MEMSX | size_bits(size),
            dst.num(),
            src.num(),
            off,
            0,
        )),
        Insn::St {
            size,
            dst,
            off,
            imm,
        } => one(r(
            BPF_ST | BPF_MEM | size_bits(size),
            dst.num(),
            0,
            off,
            imm,
        )),
        Insn::Stx {
            size,
            dst,
            src,
            off,
        } => one(r(
            BPF_STX | BPF_MEM | size_bits(size),
            dst.num(),
            src.num(),
            off,
            0,
        )),
        Insn::Atomic {
            size,
            op,
            dst,
            src,
            off,
        } => one(r(
            BPF_STX | BPF_ATOMIC | size_bits(size),
            dst.num(),
            src.num(),
            off,
            op.imm(),
        )),
    }
}

/// Appends the encoding of `insn` (8 or 16 bytes) to `out`.
pub fn encode_into(insn: &Insn, out: &mut Vec<u8>) {
    let (a, b) = encode(insn);
    out.extend_from_slice(&a.to_bytes());
    if let Some(b) = b {
        out.extend_from_slice(&b.to_bytes());
    }
}

/// Appends the raw slots of `insn` to `out`.
pub fn encode_raw_into(insn: &Insn, out: &mut Vec<RawInsn>) {
    let (a, b) = encode(insn);
    out.push(a);
    if let Some(b) = b {
        out.push(b);
    }
}
