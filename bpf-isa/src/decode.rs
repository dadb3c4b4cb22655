//! Decoding raw slots into typed instructions, with the kernel's field checks.

use crate::error::{Error, ErrorKind};
use crate::insn::*;
use crate::opcode::*;
use crate::raw::RawInsn;

fn reg(n: u8) -> Result<Reg, ErrorKind> {
    Reg::from_u8(n).ok_or(ErrorKind::InvalidRegister(n))
}

fn reserved(code: u8, field: &'static str) -> ErrorKind {
    ErrorKind::ReservedField { code, field }
}

fn check_zero(code: u8, cond: bool, field: &'static str) -> Result<(), ErrorKind> {
    if cond {
        Ok(())
    } else {
        Err(reserved(code, field))
    }
}

fn mem_size(code: u8) -> Size {
    match size(code) {
        BPF_W => Size::W,
        BPF_H => Size::H,
        BPF_B => Size::B,
        _ => Size::DW,
    }
}

fn alu_op(code: u8, off: i16) -> Result<Option<AluOp>, ErrorKind> {
    Ok(Some(match op(code) {
        BPF_ADD => AluOp::Add,
        BPF_SUB => AluOp::Sub,
        BPF_MUL => AluOp::Mul,
        BPF_DIV if off == 0 => AluOp::Div,
        BPF_DIV if off == 1 => AluOp::SDiv,
        BPF_MOD if off == 0 => AluOp::Mod,
        BPF_MOD if off == 1 => AluOp::SMod,
        BPF_DIV | BPF_MOD => return Err(reserved(code, "off")),
        BPF_OR => AluOp::Or,
        BPF_AND => AluOp::And,
        BPF_LSH => AluOp::Lsh,
        BPF_RSH => AluOp::Rsh,
        BPF_XOR => AluOp::Xor,
        BPF_MOV => AluOp::Mov,
        BPF_ARSH => AluOp::Arsh,
        _ => return Ok(None),
    }))
}

fn jmp_cond(code: u8) -> Option<JmpCond> {
    Some(match op(code) {
        BPF_JEQ => JmpCond::Eq,
        BPF_JGT => JmpCond::Gt,
        BPF_JGE => JmpCond::Ge,
        BPF_JSET => JmpCond::Set,
        BPF_JNE => JmpCond::Ne,
        BPF_JSGT => JmpCond::Sgt,
        BPF_JSGE => JmpCond::Sge,
        BPF_JLT => JmpCond::Lt,
        BPF_JLE => JmpCond::Le,
        BPF_JSLT => JmpCond::Slt,
        BPF_JSLE => JmpCond::Sle,
        _ => return None,
    })
}

fn decode_alu(r: RawInsn, width: Width) -> Result<Insn, ErrorKind> {
    let code = r.code;
    let dst = reg(r.dst)?;
    match op(code) {
        BPF_NEG => {
            check_zero(code, src(code) == BPF_K, "src")?;
            check_zero(code, r.src == 0, "src")?;
            check_zero(code, r.off == 0, "off")?;
            check_zero(code, r.imm == 0, "imm")?;
            return Ok(Insn::Neg { width, dst });
        }
        BPF_END => {
            let kind = match (width, src(code)) {
                (Width::W32, BPF_TO_LE) => Endian::ToLe,
                (Width::W32, _) => Endian::ToBe,
                (Width::W64, BPF_K) => Endian::Swap,
                (Width::W64, _) => return Err(ErrorKind::UnknownOpcode(code)),
            };
            check_zero(code, r.src == 0, "src")?;
            check_zero(code, r.off == 0, "off")?;
            let bits = match r.imm {
                16 => 16,
                32 => 32,
                64 => 64,
                _ => return Err(reserved(code, "imm")),
            };
            return Ok(Insn::Endian { kind, bits, dst });
        }
        _ => {}
    }
    if op(code) == BPF_MOV && src(code) == BPF_X && r.off != 0 {
        let from = match (width, r.off) {
            (_, 8) => Size::B,
            (_, 16) => Size::H,
            (Width::W64, 32) => Size::W,
            (Width::W64, BPF_ADDR_SPACE_CAST) => {
                return Ok(Insn::AddrSpaceCast {
                    dst,
                    src: reg(r.src)?,
                    dst_as: (r.imm as u32 >> 16) as u16,
                    src_as: r.imm as u32 as u16,
                });
            }
            _ => return Err(reserved(code, "off")),
        };
        check_zero(code, r.imm == 0, "imm")?;
        return Ok(Insn::MovSx {
            width,
            dst,
            src: reg(r.src)?,
            from,
        });
    }
    let op = alu_op(code, r.off)?.ok_or(ErrorKind::UnknownOpcode(code))?;
    if !matches!(op, AluOp::SDiv | AluOp::SMod) {
        check_zero(code, r.off == 0, "off")?;
    }
    let src = if src(code) == BPF_X {
        check_zero(code, r.imm == 0, "imm")?;
        Source::Reg(reg(r.src)?)
    } else {
        check_zero(code, r.src == 0, "src")?;
        Source::Imm(r.imm)
    };
    Ok(Insn::Alu {
        width,
        op,
        dst,
        src,
    })
}

fn decode_jmp(r: RawInsn, width: Width) -> Result<Insn, ErrorKind> {
    let code = r.code;
    match op(code) {
        BPF_JA => {
            check_zero(code, src(code) == BPF_K, "src")?;
            check_zero(code, r.src == 0, "src")?;
            check_zero(code, r.dst == 0, "dst")?;
            return Ok(match width {
                Width::W64 => {
                    check_zero(code, r.imm == 0, "imm")?;
                    Insn::Ja { off: r.off }
                }
                Width::W32 => {
                    check_zero(code, r.off == 0, "off")?;
                    Insn::JaLong { imm: r.imm }
                }
            });
        }
        BPF_CALL if width == Width::W64 => {
            if src(code) == BPF_X {
                check_zero(code, r.src == 0, "src")?;
                check_zero(code, r.off == 0, "off")?;
                // LLVM 19 and bpf_conformance put the register in `dst` (imm 0);
                // older LLVM put it in `imm` (dst 0). Both are accepted.
                let n = if r.imm == 0 {
                    r.dst
                } else {
                    check_zero(code, r.dst == 0, "dst")?;
                    u8::try_from(r.imm).map_err(|_| reserved(code, "imm"))?
                };
                return Ok(Insn::CallReg { reg: reg(n)? });
            }
            check_zero(code, r.dst == 0, "dst")?;
            let target = match r.src {
                BPF_PSEUDO_HELPER_CALL => {
                    check_zero(code, r.off == 0, "off")?;
                    CallTarget::Helper(r.imm)
                }
                BPF_PSEUDO_CALL => {
                    check_zero(code, r.off == 0, "off")?;
                    CallTarget::Local(r.imm)
                }
                BPF_PSEUDO_KFUNC_CALL => CallTarget::Kfunc {
                    btf_id: r.imm,
                    off: r.off,
                },
                _ => return Err(reserved(code, "src")),
            };
            return Ok(Insn::Call(target));
        }
        BPF_EXIT if width == Width::W64 => {
            check_zero(code, src(code) == BPF_K, "src")?;
            check_zero(code, r.src == 0, "src")?;
            check_zero(code, r.dst == 0, "dst")?;
            check_zero(code, r.off == 0, "off")?;
            check_zero(code, r.imm == 0, "imm")?;
            return Ok(Insn::Exit);
        }
        BPF_JCOND if width == Width::W64 => {
            check_zero(code, src(code) == BPF_K, "src")?;
            check_zero(code, r.src == BPF_MAY_GOTO, "src")?;
            check_zero(code, r.dst == 0, "dst")?;
            check_zero(code, r.imm == 0, "imm")?;
            return Ok(Insn::MayGoto { off: r.off });
        }
        _ => {}
    }
    let cond = jmp_cond(code).ok_or(ErrorKind::UnknownOpcode(code))?;
    let dst = reg(r.dst)?;
    let src = if src(code) == BPF_X {
        check_zero(code, r.imm == 0, "imm")?;
        Source::Reg(reg(r.src)?)
    } else {
        check_zero(code, r.src == 0, "src")?;
        Source::Imm(r.imm)
    };
    Ok(Insn::Jmp {
        width,
        cond,
        dst,
        src,
        off: r.off,
    })
}

/// Decodes the instruction starting at `slots[0]`; an `ld_imm64` also reads `slots[1]`.
///
/// Checks every field the kernel checks structurally (reserved fields zero,
/// registers in range, known opcodes and sub-operations); it does not check
/// jump targets (see [`Program::validate`](crate::Program)).
pub fn decode_slots(slots: &[RawInsn]) -> Result<Insn, ErrorKind> {
    let Some(&r) = slots.first() else {
        return Err(ErrorKind::Empty);
    };
    let code = r.code;
    match class(code) {
        BPF_ALU => decode_alu(r, Width::W32),
        BPF_ALU64 => decode_alu(r, Width::W64),
        BPF_JMP => decode_jmp(r, Width::W64),
        BPF_JMP32 => decode_jmp(r, Width::W32),
        BPF_LD => match mode(code) {
            BPF_IMM if size(code) == BPF_DW => {
                let hi = *slots.get(1).ok_or(ErrorKind::TruncatedLdImm64)?;
                let dst = reg(r.dst)?;
                check_zero(code, r.off == 0, "off")?;
                if hi.code != 0 {
                    return Err(reserved(code, "second slot code"));
                }
                if hi.dst != 0 || hi.src != 0 {
                    return Err(reserved(code, "second slot registers"));
                }
                if hi.off != 0 {
                    return Err(reserved(code, "second slot off"));
                }
                let src = match r.src {
                    BPF_PSEUDO_IMM => {
                        LdImm64Src::Imm((r.imm as u32 as u64) | ((hi.imm as u32 as u64) << 32))
                    }
                    BPF_PSEUDO_MAP_VALUE => LdImm64Src::MapValue {
                        fd: r.imm,
                        off: hi.imm as u32,
                    },
                    BPF_PSEUDO_MAP_IDX_VALUE => LdImm64Src::MapIdxValue {
                        idx: r.imm,
                        off: hi.imm as u32,
                    },
                    s => {
                        check_zero(code, hi.imm == 0, "second slot imm")?;
                        match s {
                            BPF_PSEUDO_MAP_FD => LdImm64Src::MapFd(r.imm),
                            BPF_PSEUDO_BTF_ID => LdImm64Src::BtfId(r.imm),
                            BPF_PSEUDO_FUNC => LdImm64Src::Func(r.imm),
                            BPF_PSEUDO_MAP_IDX => LdImm64Src::MapIdx(r.imm),
                            _ => return Err(reserved(code, "src")),
                        }
                    }
                };
                Ok(Insn::LdImm64 { dst, src })
            }
            BPF_ABS | BPF_IND if size(code) != BPF_DW => {
                check_zero(code, r.dst == 0, "dst")?;
                check_zero(code, r.off == 0, "off")?;
                let size = mem_size(code);
                if mode(code) == BPF_ABS {
                    check_zero(code, r.src == 0, "src")?;
                    Ok(Insn::LdAbs { size, imm: r.imm })
                } else {
                    Ok(Insn::LdInd {
                        size,
                        src: reg(r.src)?,
                        imm: r.imm,
                    })
                }
            }
            _ => Err(ErrorKind::UnknownOpcode(code)),
        },
        BPF_LDX => {
            let size = mem_size(code);
            let sx = match mode(code) {
                BPF_MEM => false,
                BPF_MEMSX if size != Size::DW => true,
                _ => return Err(ErrorKind::UnknownOpcode(code)),
            };
            check_zero(code, r.imm == 0, "imm")?;
            let (dst, src, off) = (reg(r.dst)?, reg(r.src)?, r.off);
            Ok(if sx {
                Insn::LdxSx {
                    size,
                    dst,
                    src,
                    off,
                }
            } else {
                Insn::Ldx {
                    size,
                    dst,
                    src,
                    off,
                }
            })
        }
        BPF_ST => {
            if mode(code) != BPF_MEM {
                return Err(ErrorKind::UnknownOpcode(code));
            }
            check_zero(code, r.src == 0, "src")?;
            Ok(Insn::St {
                size: mem_size(code),
                dst: reg(r.dst)?,
                off: r.off,
                imm: r.imm,
            })
        }
        _ /* BPF_STX */ => {
            let size = mem_size(code);
            let (dst, src, off) = (reg(r.dst)?, reg(r.src)?, r.off);
            match mode(code) {
                BPF_MEM => {
                    check_zero(code, r.imm == 0, "imm")?;
                    Ok(Insn::Stx {
                        size,
                        dst,
                        src,
                        off,
                    })
                }
                BPF_ATOMIC => {
                    let op = AtomicOp::from_imm(r.imm).ok_or(reserved(code, "imm"))?;
                    let rmw = !matches!(op, AtomicOp::LoadAcquire | AtomicOp::StoreRelease);
                    if rmw && !matches!(size, Size::W | Size::DW) {
                        return Err(ErrorKind::UnknownOpcode(code));
                    }
                    Ok(Insn::Atomic {
                        size,
                        op,
                        dst,
                        src,
                        off,
                    })
                }
                _ => Err(ErrorKind::UnknownOpcode(code)),
            }
        }
    }
}

/// Decodes one instruction at slot `index` of `slots`, reporting errors at that index.
pub fn decode_at(slots: &[RawInsn], index: usize) -> Result<Insn, Error> {
    let rest = slots.get(index..).unwrap_or(&[]);
    decode_slots(rest).map_err(|kind| Error::new(index, kind))
}
