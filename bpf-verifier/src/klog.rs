//! Pieces of the kernel's verifier log format (level 2): instruction text as
//! the kernel's disassembler prints it, the `Live regs before insn:` block,
//! and the alignment of the `; R0=...` state after an instruction.

use std::fmt::Write as _;

use bpf_isa::RawInsn;

const ALU_OPS: [&str; 16] = [
    "+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "end", "?",
    "?",
];
const JMP_OPS: [&str; 16] = [
    "goto", "==", ">", ">=", "&", "!=", "s>", "s>=", "call", "exit", "<", "<=", "s<", "s<=", "?",
    "?",
];

fn size_name(code: u8) -> &'static str {
    match code & 0x18 {
        0x00 => "u32",
        0x08 => "u16",
        0x10 => "u8",
        _ => "u64",
    }
}

/// Appends the kernel's text for the instruction `raw` (with `next` the
/// second slot of a `ld_imm64`), `(op) text`, without a newline.
pub(crate) fn insn_text(out: &mut String, raw: &RawInsn, next: Option<&RawInsn>, helper: &str) {
    let code = raw.code;
    let (d, s, off, imm) = (raw.dst, raw.src, raw.off, raw.imm);
    let _ = write!(out, "({code:02x}) ");
    let class = code & 7;
    let op = ALU_OPS.get(usize::from(code >> 4)).copied().unwrap_or("?");
    let jop = JMP_OPS.get(usize::from(code >> 4)).copied().unwrap_or("?");
    let x = code & 8 != 0;
    let _ = match class {
        4 | 7 => {
            let p = if class == 7 { 'r' } else { 'w' };
            match code >> 4 {
                0x8 => write!(out, "{p}{d} = -{p}{d}"),
                0xd => {
                    let kind = if class == 7 {
                        "bswap"
                    } else if x {
                        "be"
                    } else {
                        "le"
                    };
                    write!(out, "r{d} = {kind}{imm} r{d}")
                }
                0xb if x && off != 0 => write!(out, "{p}{d} = (s{off}){p}{s}"),
                0xb => write!(
                    out,
                    "{p}{d} = {}",
                    if x {
                        format!("{p}{s}")
                    } else {
                        imm.to_string()
                    }
                ),
                0x3 | 0x9 if off == 1 => {
                    let sop = if code >> 4 == 0x3 { "s/=" } else { "s%=" };
                    if x {
                        write!(out, "{p}{d} {sop} {p}{s}")
                    } else {
                        write!(out, "{p}{d} {sop} {imm}")
                    }
                }
                _ if x => write!(out, "{p}{d} {op} {p}{s}"),
                _ => write!(out, "{p}{d} {op} {imm}"),
            }
        }
        1 if code & 0xe0 == 0x80 => {
            let bits = match code & 0x18 {
                0x00 => 32,
                0x08 => 16,
                _ => 8,
            };
            write!(out, "r{d} = *(s{bits} *)(r{s} {off:+})")
        }
        1 => write!(out, "r{d} = *({} *)(r{s} {off:+})", size_name(code)),
        3 if code & 0xe0 == 0xc0 => atomic_text(out, raw),
        3 if code & 0xe0 == 0x60 => {
            write!(out, "*({} *)(r{d} {off:+}) = r{s}", size_name(code))
        }
        2 => write!(out, "*({} *)(r{d} {off:+}) = {imm}", size_name(code)),
        0 if code & 0xe0 == 0x20 => write!(out, "r0 = *({} *)skb[{imm}]", size_name(code)),
        0 if code & 0xe0 == 0x40 => {
            write!(out, "r0 = *({} *)skb[r{s} + {imm}]", size_name(code))
        }
        0 if code == 0x18 => {
            let hi = next.map_or(0, |n| n.imm as u32 as u64);
            let v = (hi << 32) | u64::from(imm as u32);
            write!(out, "r{d} = {v:#x}")
        }
        5 | 6 => {
            let p = if class == 5 { 'r' } else { 'w' };
            match code >> 4 {
                0x0 => write!(
                    out,
                    "goto pc{:+}",
                    if class == 6 { imm } else { i32::from(off) }
                ),
                0x8 if s == 1 => write!(out, "call pc{imm:+}"),
                0x8 => write!(out, "call {helper}#{imm}"),
                0x9 => write!(out, "exit"),
                0xe if class == 5 && s == 0 => write!(out, "may_goto pc{off:+}"),
                _ if x => write!(out, "if {p}{d} {jop} {p}{s} goto pc{off:+}"),
                _ => write!(out, "if {p}{d} {jop} {:#x} goto pc{off:+}", imm),
            }
        }
        _ => write!(out, "BUG_{code:02x}"),
    };
}

/// An atomic read-modify-write as the kernel prints it.
fn atomic_text(out: &mut String, raw: &RawInsn) -> std::fmt::Result {
    let (d, s, off, imm) = (raw.dst, raw.src, raw.off, raw.imm);
    let sz = size_name(raw.code);
    let w = if raw.code & 0x18 == 0x18 { "64" } else { "" };
    let name = |op: i32| match op {
        0x00 => Some(("+=", "add")),
        0x40 => Some(("|=", "or")),
        0x50 => Some(("&=", "and")),
        0xa0 => Some(("^=", "xor")),
        _ => None,
    };
    match imm {
        0xe1 => write!(out, "r{s} = atomic{w}_xchg(({sz} *)(r{d} {off:+}), r{s})"),
        0xf1 => write!(
            out,
            "r0 = atomic{w}_cmpxchg(({sz} *)(r{d} {off:+}), r0, r{s})"
        ),
        _ => match name(imm & !1) {
            Some((op, _)) if imm & 1 == 0 => {
                write!(out, "lock *({sz} *)(r{d} {off:+}) {op} r{s}")
            }
            Some((_, f)) => write!(
                out,
                "r{s} = atomic{w}_fetch_{f}(({sz} *)(r{d} {off:+}), r{s})"
            ),
            None => write!(out, "BUG_{:02x}", raw.code),
        },
    }
}

/// The column (0-based) of the `;` that follows the text of an instruction whose line
/// (including its index and trailing newline) is `pos` bytes long.
pub(crate) fn state_column(pos: usize) -> usize {
    (pos + 4).max(40).div_ceil(8) * 8 - 2
}

/// Registers (bit `i` for `Ri`) whose state the kernel prints after the
/// instruction: the ones it reads or writes.
pub(crate) fn scratched(raw: &RawInsn) -> u16 {
    let bit = |r: u8| 1u16.checked_shl(u32::from(r)).unwrap_or(0);
    let (d, s, x) = (raw.dst, raw.src, raw.code & 8 != 0);
    match raw.code & 7 {
        4 | 7 => bit(d) | if x { bit(s) } else { 0 },
        1 | 3 => bit(d) | bit(s),
        // LD_ABS / LD_IND: r6 read, r0-r5 reset (and the index register).
        0 if matches!(raw.code & 0xe0, 0x20 | 0x40) => {
            0x7f | if raw.code & 0xe0 == 0x40 { bit(s) } else { 0 }
        }
        2 | 0 => bit(d),
        _ => match raw.code >> 4 {
            0x8 => 0x3f,
            0x0 | 0x9 => 0,
            // may_goto
            0xe if raw.code & 7 == 5 => 0,
            _ => bit(d) | if x { bit(s) } else { 0 },
        },
    }
}
