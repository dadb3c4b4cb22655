//! Smoke tests of decode/encode on hand-checked encodings.
use bpf_isa::*;

#[test]
fn mov_exit_bytes() {
    // b7 00 00 00 2a 00 00 00 = r0 = 42 ; 95 00.. = exit (bytes as clang emits them)
    let bytes = [0xb7, 0, 0, 0, 0x2a, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let p = Program::decode_validated(&bytes).unwrap();
    assert_eq!(
        p.insns(),
        &[
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Source::Imm(42)
            },
            Insn::Exit
        ]
    );
    assert_eq!(p.to_bytes(), bytes);
}

#[test]
fn errors_carry_index() {
    // exit; then a truncated ld_imm64 at slot 1
    let bytes = [0x95, 0, 0, 0, 0, 0, 0, 0, 0x18, 1, 0, 0, 0, 0, 0, 0];
    let e = Program::decode(&bytes).unwrap_err();
    assert_eq!(e, Error::new(1, ErrorKind::TruncatedLdImm64));
    // ja +5 out of range
    let bytes = [0x05, 0, 5, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let e = Program::decode_validated(&bytes).unwrap_err();
    assert_eq!(e.index, 0);
    assert!(matches!(
        e.kind,
        ErrorKind::JumpOutOfRange { target: 6, len: 2 }
    ));
    // unknown opcode 0xff at slot 0
    let e = Program::decode(&[0xff, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(e, Error::new(0, ErrorKind::UnknownOpcode(0xff)));
}
