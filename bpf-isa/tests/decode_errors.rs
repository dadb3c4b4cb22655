//! Decode and validation errors, each with the index of the offending slot.
//!
//! The byte encodings are written by hand from RFC 9669's field layout
//! (`code`, `dst | src << 4`, `off` little-endian, `imm` little-endian).

use bpf_isa::*;

const EXIT: [u8; 8] = [0x95, 0, 0, 0, 0, 0, 0, 0];
const MOV_R0_0: [u8; 8] = [0xb7, 0, 0, 0, 0, 0, 0, 0];

/// `prefix` slots of `r0 = 0`, then `bad`, then `exit`.
fn prog(prefix: usize, bad: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..prefix {
        v.extend_from_slice(&MOV_R0_0);
    }
    v.extend_from_slice(bad);
    v.extend_from_slice(&EXIT);
    v
}

fn decode_err(bytes: &[u8]) -> Error {
    Program::decode(bytes).expect_err("decode should fail")
}

fn reserved(code: u8, field: &'static str) -> ErrorKind {
    ErrorKind::ReservedField { code, field }
}

#[test]
fn unknown_opcodes() {
    // 0xff: class ALU64 with op 0xf0, which does not exist.
    let e = decode_err(&prog(2, &[0xff, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(2, ErrorKind::UnknownOpcode(0xff)));
    // 0x8e: BPF_JMP32 | BPF_CALL | BPF_X (calls exist only in BPF_JMP).
    let e = decode_err(&prog(1, &[0x8e, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(1, ErrorKind::UnknownOpcode(0x8e)));
    // 0x9b: BPF_STX | BPF_MEMSX | BPF_DW is not a store.
    let e = decode_err(&prog(3, &[0x9b, 0x21, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(3, ErrorKind::UnknownOpcode(0x9b)));
    // 0x98: class BPF_LD with mode 0x80 (sign-extending loads exist only in BPF_LDX).
    let e = decode_err(&prog(0, &[0x98, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(0, ErrorKind::UnknownOpcode(0x98)));
    // 0xd3: one-byte atomic add (BPF_STX | BPF_ATOMIC | BPF_B, imm BPF_ADD).
    let e = decode_err(&prog(1, &[0xd3, 0x21, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(1, ErrorKind::UnknownOpcode(0xd3)));
}

#[test]
fn reserved_fields() {
    // exit with imm = 1
    let e = decode_err(&prog(1, &[0x95, 0, 0, 0, 1, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0x95, "imm")));
    // r1 += r2 with off = 3 (add takes no offset)
    let e = decode_err(&prog(2, &[0x0f, 0x21, 3, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(2, reserved(0x0f, "off")));
    // r1 += 5 with src_reg = 2
    let e = decode_err(&prog(0, &[0x07, 0x21, 0, 0, 5, 0, 0, 0]));
    assert_eq!(e, Error::new(0, reserved(0x07, "src")));
    // r1 += r2 with imm = 7
    let e = decode_err(&prog(1, &[0x0f, 0x21, 0, 0, 7, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0x0f, "imm")));
    // r1 /= r2 with off = 2 (only 0 and 1 exist)
    let e = decode_err(&prog(1, &[0x3f, 0x21, 2, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0x3f, "off")));
    // goto +1 with dst = 1
    let e = decode_err(&prog(1, &[0x05, 0x01, 1, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0x05, "dst")));
    // be16 r0 with imm = 8 (only 16, 32, 64)
    let e = decode_err(&prog(2, &[0xdc, 0, 0, 0, 8, 0, 0, 0]));
    assert_eq!(e, Error::new(2, reserved(0xdc, "imm")));
    // call with src_reg = 3 (no such pseudo call)
    let e = decode_err(&prog(1, &[0x85, 0x30, 0, 0, 1, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0x85, "src")));
    // ld_imm64 whose second slot has a non-zero opcode
    let e = decode_err(&prog(
        1,
        &[0x18, 0x01, 0, 0, 1, 0, 0, 0, 0x07, 0, 0, 0, 0, 0, 0, 0],
    ));
    assert_eq!(e, Error::new(1, reserved(0x18, "second slot code")));
    // ld_imm64 map fd with a non-zero second imm
    let e = decode_err(&prog(
        0,
        &[0x18, 0x11, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    ));
    assert_eq!(e, Error::new(0, reserved(0x18, "second slot imm")));
    // atomic with an unknown operation (imm = 0x02)
    let e = decode_err(&prog(1, &[0xdb, 0x21, 0, 0, 2, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0xdb, "imm")));
    // w1 = (s32)w2: 32-bit sign-extending move from 32 bits does not exist
    let e = decode_err(&prog(1, &[0xbc, 0x21, 32, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(1, reserved(0xbc, "off")));
}

#[test]
fn bad_registers() {
    // r11 = 0 (dst 11)
    let e = decode_err(&prog(1, &[0xb7, 0x0b, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(1, ErrorKind::InvalidRegister(11)));
    // r0 = r15 (src 15)
    let e = decode_err(&prog(2, &[0xbf, 0xf0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(e, Error::new(2, ErrorKind::InvalidRegister(15)));
    // callx with imm = 12 (old encoding, register number out of range)
    let e = decode_err(&prog(0, &[0x8d, 0, 0, 0, 12, 0, 0, 0]));
    assert_eq!(e, Error::new(0, ErrorKind::InvalidRegister(12)));
}

#[test]
fn callx_register_field() {
    // LLVM 19 / bpf_conformance: register in dst.
    let p = Program::decode(&[0x8d, 0x05, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(p.insns(), &[Insn::CallReg { reg: Reg::R5 }]);
    // Older LLVM: register in imm.
    let p = Program::decode(&[0x8d, 0x00, 0, 0, 5, 0, 0, 0]).unwrap();
    assert_eq!(p.insns(), &[Insn::CallReg { reg: Reg::R5 }]);
    // Both at once is ambiguous.
    let e = decode_err(&[0x8d, 0x03, 0, 0, 5, 0, 0, 0]);
    assert_eq!(e, Error::new(0, reserved(0x8d, "dst")));
    // We encode the register in dst.
    assert_eq!(
        Program::from_insns(vec![Insn::CallReg { reg: Reg::R5 }]).to_bytes(),
        [0x8d, 0x05, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn truncated_ld_imm64() {
    let mut v = Vec::new();
    v.extend_from_slice(&MOV_R0_0);
    v.extend_from_slice(&MOV_R0_0);
    v.extend_from_slice(&[0x18, 0x01, 0, 0, 1, 0, 0, 0]);
    let e = decode_err(&v);
    assert_eq!(e, Error::new(2, ErrorKind::TruncatedLdImm64));
}

#[test]
fn bad_length() {
    let e = decode_err(&[0x95, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.kind, ErrorKind::BadLength(9));
}

#[test]
fn jumps_out_of_range() {
    // slot 0: r0 = 0; slot 1: goto +5; slot 2: exit -> target 7, program has 3 slots
    let bytes = prog(1, &[0x05, 0, 5, 0, 0, 0, 0, 0]);
    let e = Program::decode_validated(&bytes).unwrap_err();
    assert_eq!(
        e,
        Error::new(1, ErrorKind::JumpOutOfRange { target: 7, len: 3 })
    );
    // slot 2: if r0 == 0 goto -4 -> target -1
    let bytes = prog(2, &[0x15, 0, 0xfc, 0xff, 0, 0, 0, 0]);
    let e = Program::decode_validated(&bytes).unwrap_err();
    assert_eq!(
        e,
        Error::new(2, ErrorKind::JumpOutOfRange { target: -1, len: 4 })
    );
    // slot 1: call pc+1 (local) -> target 3 in a 3-slot program: one past the end
    let bytes = prog(1, &[0x85, 0x10, 0, 0, 1, 0, 0, 0]);
    let e = Program::decode_validated(&bytes).unwrap_err();
    assert_eq!(
        e,
        Error::new(1, ErrorKind::JumpOutOfRange { target: 3, len: 3 })
    );
    // slot 0: gotol -1 -> target 0 is fine (an infinite loop is structurally valid)
    assert!(Program::decode_validated(&prog(0, &[0x06, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])).is_ok());
}

#[test]
fn jump_into_ld_imm64() {
    // slot 0: goto +1 -> slot 2, the second half of the ld_imm64 at slot 1
    let mut v = Vec::new();
    v.extend_from_slice(&[0x05, 0, 1, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&[0x18, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&EXIT);
    let e = Program::decode_validated(&v).unwrap_err();
    assert_eq!(e, Error::new(0, ErrorKind::JumpIntoLdImm64 { target: 2 }));
    // slot 0: r0 = 0; slots 1-2: ld_imm64; slot 3: ld_imm64 function reference to slot 2.
    let mut v = Vec::new();
    v.extend_from_slice(&MOV_R0_0);
    v.extend_from_slice(&[0x18, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // target = 3 + 1 + imm = 2 -> imm = -2
    v.extend_from_slice(&[
        0x18, 0x41, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    v.extend_from_slice(&EXIT);
    let e = Program::decode_validated(&v).unwrap_err();
    assert_eq!(e, Error::new(3, ErrorKind::JumpIntoLdImm64 { target: 2 }));
}

#[test]
fn empty_program() {
    let e = Program::decode_validated(&[]).unwrap_err();
    assert_eq!(e, Error::new(0, ErrorKind::Empty));
}
