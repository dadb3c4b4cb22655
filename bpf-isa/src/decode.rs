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
    Ok(match (op(code), off) {
        (BPF_DIV, 1) => Some(AluOp::SDiv),
        (BPF_MOD, 1) => Some(AluOp::SMod),
        (BPF_DIV | BPF_MOD, o) if o != 0 => return Err(reserved(code, "off")),
        _ => COMMON_ALU.get(usize::from(code >> 4)).copied().flatten(),
    })
}

fn jmp_cond(code: u8) -> Option<JmpCond> {
    COMMON_JMP.get(usize::from(code >> 4)).copied().flatten()
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

/// ALU operations by the opcode's high nibble, where the offset must be 0
/// (`neg`, `end` and the signed forms go the general way).
const COMMON_ALU: [Option<AluOp>; 16] = [
    Some(AluOp::Add),
    Some(AluOp::Sub),
    Some(AluOp::Mul),
    Some(AluOp::Div),
    Some(AluOp::Or),
    Some(AluOp::And),
    Some(AluOp::Lsh),
    Some(AluOp::Rsh),
    None,
    Some(AluOp::Mod),
    Some(AluOp::Xor),
    Some(AluOp::Mov),
    Some(AluOp::Arsh),
    None,
    None,
    None,
];

/// Conditional jumps by the opcode's high nibble (`ja`, `call`, `exit`
/// and `may_goto` go the general way).
const COMMON_JMP: [Option<JmpCond>; 16] = [
    None,
    Some(JmpCond::Eq),
    Some(JmpCond::Gt),
    Some(JmpCond::Ge),
    Some(JmpCond::Set),
    Some(JmpCond::Ne),
    Some(JmpCond::Sgt),
    Some(JmpCond::Sge),
    None,
    None,
    Some(JmpCond::Lt),
    Some(JmpCond::Le),
    Some(JmpCond::Slt),
    Some(JmpCond::Sle),
    None,
    None,
];

/// The second operand of a common ALU or jump instruction `r`: a register
/// (with imm 0) or the immediate (with src 0); `None` if those fields are
/// not valid for it.
#[inline(always)]
fn common_operand(r: RawInsn) -> Option<Source> {
    if r.code & BPF_X != 0 {
        if r.imm != 0 {
            return None;
        }
        Reg::from_u8(r.src).map(Source::Reg)
    } else if r.src == 0 {
        Some(Source::Imm(r.imm))
    } else {
        None
    }
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
    // The common instructions (ALU with offset 0, conditional jumps, plain
    // loads and stores) with every field valid, with one dispatch; the
    // rest, invalid encodings included, the general way (which gives the
    // same result for these too).
    let code = r.code;
    let width = |wide| if wide { Width::W64 } else { Width::W32 };
    match code & 0x07 {
        BPF_ALU | BPF_ALU64 => {
            if let (Some(op), 0, Some(dst), Some(src)) = (
                COMMON_ALU.get(usize::from(code >> 4)).copied().flatten(),
                r.off,
                Reg::from_u8(r.dst),
                common_operand(r),
            ) {
                return Ok(Insn::Alu {
                    width: width(code & 0x07 == BPF_ALU64),
                    op,
                    dst,
                    src,
                });
            }
        }
        BPF_JMP | BPF_JMP32 => {
            if let (Some(cond), Some(dst), Some(src)) = (
                COMMON_JMP.get(usize::from(code >> 4)).copied().flatten(),
                Reg::from_u8(r.dst),
                common_operand(r),
            ) {
                return Ok(Insn::Jmp {
                    width: width(code & 0x07 == BPF_JMP),
                    cond,
                    dst,
                    src,
                    off: r.off,
                });
            }
        }
        BPF_LDX | BPF_STX if mode(code) == BPF_MEM && r.imm == 0 => {
            if let (Some(dst), Some(src)) = (Reg::from_u8(r.dst), Reg::from_u8(r.src)) {
                let (size, off) = (mem_size(code), r.off);
                return Ok(if code & 0x07 == BPF_LDX {
                    Insn::Ldx {
                        size,
                        dst,
                        src,
                        off,
                    }
                } else {
                    Insn::Stx {
                        size,
                        dst,
                        src,
                        off,
                    }
                });
            }
        }
        BPF_ST if mode(code) == BPF_MEM && r.src == 0 => {
            if let Some(dst) = Reg::from_u8(r.dst) {
                return Ok(Insn::St {
                    size: mem_size(code),
                    dst,
                    off: r.off,
                    imm: r.imm,
                });
            }
        }
        _ => {}
    }
    decode_general(r, slots)
}

/// [`decode_slots`] for every instruction: `r` is `slots[0]`.
fn decode_general(r: RawInsn, slots: &[RawInsn]) -> Result<Insn, ErrorKind> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw() -> impl Strategy<Value = RawInsn> {
        // Every opcode; registers mostly in range; fields mostly zero or
        // small, so that valid encodings are common.
        (
            any::<u8>(),
            prop_oneof![0u8..=10, 0u8..=15],
            prop_oneof![0u8..=10, 0u8..=15],
            prop_oneof![Just(0i16), Just(1), any::<i16>()],
            prop_oneof![Just(0i32), any::<i32>()],
        )
            .prop_map(|(code, dst, src, off, imm)| RawInsn {
                code,
                dst,
                src,
                off,
                imm,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20000))]

        /// The one-dispatch path for common instructions changes nothing:
        /// `decode_slots` gives exactly what the general path gives, the
        /// same instruction or the same error, on every encoding.
        #[test]
        fn common_path_agrees_with_the_general_one(r in raw(), next in raw()) {
            let slots = [r, next];
            prop_assert_eq!(decode_slots(&slots), decode_general(r, &slots));
            prop_assert_eq!(decode_slots(&slots[..1]), decode_general(r, &slots[..1]));
        }
    }
}
