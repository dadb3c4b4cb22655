//! Bad input: every failure is an `error:` line on stderr and exit status 1, never a panic.

mod common;

use common::*;

#[test]
fn missing_file() {
    for cmd in ["disasm", "asm", "info"] {
        let o = bpfkit([cmd, "/nonexistent/bpfkit-test-input"]);
        assert_fails_with(&o, "/nonexistent/bpfkit-test-input");
    }
}

#[test]
fn raw_bytecode_of_bad_length() {
    let path = scratch("len12.bin");
    std::fs::write(&path, [0x95u8; 12]).unwrap();
    let o = bpfkit(["disasm".as_ref(), path.as_os_str()]);
    assert_fails_with(&o, "not a multiple of 8");
}

#[test]
fn raw_bytecode_with_unknown_opcode_names_the_index() {
    // exit ; opcode 0xff (unassigned)
    let path = scratch("badop.bin");
    std::fs::write(
        &path,
        [0x95, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap();
    let o = bpfkit(["disasm".as_ref(), path.as_os_str()]);
    assert_fails_with(&o, "insn 1");
}

#[test]
fn truncated_and_corrupt_elf() {
    let good = std::fs::read(examples_dir().join("legacy_maps.o")).unwrap();
    let cut = scratch("truncated.o");
    std::fs::write(&cut, &good[..100]).unwrap();
    // Section header table offset (e_shoff, bytes 40..48) pointed far past the end.
    let mut bad = good.clone();
    bad[40..48].copy_from_slice(&0x7fff_ffffu64.to_le_bytes());
    let corrupt = scratch("corrupt.o");
    std::fs::write(&corrupt, &bad).unwrap();
    for path in [&cut, &corrupt] {
        for cmd in ["disasm", "info"] {
            let o = bpfkit([cmd.as_ref(), path.as_os_str()]);
            assert_fails_with(&o, "not a usable BPF object");
        }
    }
}

#[test]
fn info_on_raw_bytes() {
    let path = scratch("notelf.bin");
    std::fs::write(&path, [0x95, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let o = bpfkit(["info".as_ref(), path.as_os_str()]);
    assert_fails_with(&o, "not an ELF file");
    let o = bpfkit([
        "disasm".as_ref(),
        path.as_os_str(),
        "--prog".as_ref(),
        "x".as_ref(),
    ]);
    assert_fails_with(&o, "ELF objects only");
}

#[test]
fn asm_errors_name_the_line() {
    let path = scratch("bad.s");
    std::fs::write(&path, "r0 = 0\nr11 = 1\nexit\n").unwrap();
    let o = bpfkit(["asm".as_ref(), path.as_os_str(), "--hex".as_ref()]);
    assert_fails_with(&o, "line 2");
    assert!(o.stdout.is_empty());

    let path = scratch("bad_ubpf.s");
    std::fs::write(&path, "mov %r0, 1\nfrobnicate %r1\nexit\n").unwrap();
    let o = bpfkit([
        "asm".as_ref(),
        path.as_os_str(),
        "--syntax".as_ref(),
        "ubpf".as_ref(),
        "--hex".as_ref(),
    ]);
    assert_fails_with(&o, "line 2");
}

#[test]
fn asm_non_utf8_source() {
    let path = scratch("binary.s");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let o = bpfkit(["asm".as_ref(), path.as_os_str(), "--hex".as_ref()]);
    assert_fails_with(&o, "cannot read");
}

#[test]
fn usage_errors_are_clap_errors_not_panics() {
    let o = bpfkit(["disasm"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("panicked"));
    let o = bpfkit(["asm", "x.s", "--syntax", "intel"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("intel"));
}

#[test]
fn elf_of_another_machine() {
    // The bpfkit executable itself is an ELF file, but not a BPF object.
    let exe = env!("CARGO_BIN_EXE_bpfkit");
    for cmd in ["disasm", "info"] {
        let o = bpfkit([cmd, exe]);
        assert_fails_with(&o, "not a usable BPF object");
    }
}
