//! Raw opcode constants, as defined by RFC 9669 and `include/uapi/linux/bpf.h`.
//!
//! These are the numeric facts of the encoding. Most users want the typed
//! [`Insn`](crate::Insn) instead; the constants are public for tools that
//! build or inspect raw bytes.

/// Instruction class: non-standard load (`ld_imm64`, legacy packet loads).
pub const BPF_LD: u8 = 0x00;
/// Instruction class: load into register.
pub const BPF_LDX: u8 = 0x01;
/// Instruction class: store immediate.
pub const BPF_ST: u8 = 0x02;
/// Instruction class: store register (and atomics).
pub const BPF_STX: u8 = 0x03;
/// Instruction class: 32-bit arithmetic.
pub const BPF_ALU: u8 = 0x04;
/// Instruction class: 64-bit jumps, calls, exit.
pub const BPF_JMP: u8 = 0x05;
/// Instruction class: 32-bit jumps (and `gotol`).
pub const BPF_JMP32: u8 = 0x06;
/// Instruction class: 64-bit arithmetic.
pub const BPF_ALU64: u8 = 0x07;

/// Size field: 4 bytes.
pub const BPF_W: u8 = 0x00;
/// Size field: 2 bytes.
pub const BPF_H: u8 = 0x08;
/// Size field: 1 byte.
pub const BPF_B: u8 = 0x10;
/// Size field: 8 bytes.
pub const BPF_DW: u8 = 0x18;

/// Mode field: immediate (`ld_imm64`).
pub const BPF_IMM: u8 = 0x00;
/// Mode field: legacy absolute packet load.
pub const BPF_ABS: u8 = 0x20;
/// Mode field: legacy indirect packet load.
pub const BPF_IND: u8 = 0x40;
/// Mode field: regular memory access.
pub const BPF_MEM: u8 = 0x60;
/// Mode field: sign-extending load.
pub const BPF_MEMSX: u8 = 0x80;
/// Mode field: atomic operation.
pub const BPF_ATOMIC: u8 = 0xc0;

/// Source field: immediate operand.
pub const BPF_K: u8 = 0x00;
/// Source field: register operand.
pub const BPF_X: u8 = 0x08;

/// ALU operation: add.
pub const BPF_ADD: u8 = 0x00;
/// ALU operation: subtract.
pub const BPF_SUB: u8 = 0x10;
/// ALU operation: multiply.
pub const BPF_MUL: u8 = 0x20;
/// ALU operation: divide (signed when `off == 1`).
pub const BPF_DIV: u8 = 0x30;
/// ALU operation: bitwise or.
pub const BPF_OR: u8 = 0x40;
/// ALU operation: bitwise and.
pub const BPF_AND: u8 = 0x50;
/// ALU operation: left shift.
pub const BPF_LSH: u8 = 0x60;
/// ALU operation: logical right shift.
pub const BPF_RSH: u8 = 0x70;
/// ALU operation: negate.
pub const BPF_NEG: u8 = 0x80;
/// ALU operation: modulo (signed when `off == 1`).
pub const BPF_MOD: u8 = 0x90;
/// ALU operation: bitwise xor.
pub const BPF_XOR: u8 = 0xa0;
/// ALU operation: move (sign-extending when `off` is 8, 16 or 32).
pub const BPF_MOV: u8 = 0xb0;
/// ALU operation: arithmetic right shift.
pub const BPF_ARSH: u8 = 0xc0;
/// ALU operation: byte swap / endianness conversion.
pub const BPF_END: u8 = 0xd0;
/// Source bit of `BPF_END` in the `BPF_ALU` class: convert to little endian.
pub const BPF_TO_LE: u8 = 0x00;
/// Source bit of `BPF_END` in the `BPF_ALU` class: convert to big endian.
pub const BPF_TO_BE: u8 = 0x08;

/// Jump operation: unconditional jump.
pub const BPF_JA: u8 = 0x00;
/// Jump operation: `==`.
pub const BPF_JEQ: u8 = 0x10;
/// Jump operation: unsigned `>`.
pub const BPF_JGT: u8 = 0x20;
/// Jump operation: unsigned `>=`.
pub const BPF_JGE: u8 = 0x30;
/// Jump operation: `dst & src != 0`.
pub const BPF_JSET: u8 = 0x40;
/// Jump operation: `!=`.
pub const BPF_JNE: u8 = 0x50;
/// Jump operation: signed `>`.
pub const BPF_JSGT: u8 = 0x60;
/// Jump operation: signed `>=`.
pub const BPF_JSGE: u8 = 0x70;
/// Jump-class operation: call.
pub const BPF_CALL: u8 = 0x80;
/// Jump-class operation: return.
pub const BPF_EXIT: u8 = 0x90;
/// Jump operation: unsigned `<`.
pub const BPF_JLT: u8 = 0xa0;
/// Jump operation: unsigned `<=`.
pub const BPF_JLE: u8 = 0xb0;
/// Jump operation: signed `<`.
pub const BPF_JSLT: u8 = 0xc0;
/// Jump operation: signed `<=`.
pub const BPF_JSLE: u8 = 0xd0;
/// Jump operation: conditional pseudo jump (`may_goto`).
pub const BPF_JCOND: u8 = 0xe0;

/// Atomic `imm` flag: return the old value.
pub const BPF_FETCH: i32 = 0x01;
/// Atomic exchange (`BPF_XCHG` includes `BPF_FETCH`).
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
/// Atomic compare-and-exchange (`BPF_CMPXCHG` includes `BPF_FETCH`).
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;
/// Atomic load with acquire semantics.
pub const BPF_LOAD_ACQ: i32 = 0x100;
/// Atomic store with release semantics.
pub const BPF_STORE_REL: i32 = 0x110;

/// `ld_imm64` source: plain 64-bit immediate.
pub const BPF_PSEUDO_IMM: u8 = 0;
/// `ld_imm64` source: map by file descriptor.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `ld_imm64` source: address of a map value (map fd + offset).
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `ld_imm64` source: kernel object by BTF id.
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
/// `ld_imm64` source: address of a BPF function (pc-relative).
pub const BPF_PSEUDO_FUNC: u8 = 4;
/// `ld_imm64` source: map by index into the `fd_array`.
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
/// `ld_imm64` source: map value by `fd_array` index + offset.
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;

/// Call source: helper function by static id.
pub const BPF_PSEUDO_HELPER_CALL: u8 = 0;
/// Call source: bpf2bpf call, pc-relative.
pub const BPF_PSEUDO_CALL: u8 = 1;
/// Call source: kernel function by BTF id.
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// `BPF_JCOND` source: `may_goto`.
pub const BPF_MAY_GOTO: u8 = 0;

/// `off` of `BPF_ALU64 | BPF_MOV | BPF_X` marking `addr_space_cast`.
pub const BPF_ADDR_SPACE_CAST: i16 = 1;

/// Mask of the class bits of an opcode.
#[inline]
pub const fn class(code: u8) -> u8 {
    code & 0x07
}
/// Mask of the operation bits of an ALU or jump opcode.
#[inline]
pub const fn op(code: u8) -> u8 {
    code & 0xf0
}
/// Mask of the source bit of an ALU or jump opcode.
#[inline]
pub const fn src(code: u8) -> u8 {
    code & 0x08
}
/// Mask of the size bits of a load/store opcode.
#[inline]
pub const fn size(code: u8) -> u8 {
    code & 0x18
}
/// Mask of the mode bits of a load/store opcode.
#[inline]
pub const fn mode(code: u8) -> u8 {
    code & 0xe0
}
