//! `bpfkit asm` against clang-19's own BPF assembler, and on the uBPF syntax.

mod common;

use std::process::Command;

use common::*;

/// A program in the LLVM syntax that both clang and bpfkit accept.
const LLVM_SRC: &str = "\
r0 = 42
r1 = r10
r1 += -8
*(u64 *)(r10 - 8) = r0
r2 = *(u64 *)(r10 - 8)
if r2 == 42 goto +1
r0 = 0
r3 = 0x1122334455667788 ll
w4 = w3
w4 s>>= 3
r5 = be16 r5
lock *(u64 *)(r1 + 0) += r0
call 1
exit
";

#[test]
fn llvm_syntax_matches_clang() {
    if !have_tool("clang-19") || !have_tool("llvm-objcopy-19") {
        return;
    }
    let src = scratch("prog.s");
    std::fs::write(&src, LLVM_SRC).unwrap();
    let clang_obj = scratch("prog_clang.o");
    let clang_bin = scratch("prog_clang.bin");
    tool(
        Command::new("clang-19")
            .args(["-target", "bpf", "-c"])
            .arg(&src)
            .arg("-o")
            .arg(&clang_obj),
    );
    tool(
        Command::new("llvm-objcopy-19")
            .args(["-O", "binary", "--only-section=.text"])
            .arg(&clang_obj)
            .arg(&clang_bin),
    );
    let expected = std::fs::read(&clang_bin).unwrap();
    assert_eq!(expected.len(), 15 * 8, "clang output: 15 slots");

    let ours = scratch("prog_ours.bin");
    let o = bpfkit([
        "asm".as_ref(),
        src.as_os_str(),
        "-o".as_ref(),
        ours.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&ours).unwrap(), expected);

    // --hex prints the same bytes, one slot per line.
    let o = bpfkit(["asm".as_ref(), src.as_os_str(), "--hex".as_ref()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hex: Vec<u8> = stdout(&o)
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect();
    assert_eq!(hex, expected);
    assert_eq!(stdout(&o).lines().count(), 15);
}

#[test]
fn default_output_is_file_with_bin_extension() {
    let src = scratch("default_out.s");
    std::fs::write(&src, "r0 = 1\nexit\n").unwrap();
    let out = src.with_extension("bin");
    let _ = std::fs::remove_file(&out);
    let o = bpfkit(["asm".as_ref(), src.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // b7 00 00 00 01 00 00 00 ; 95 00 00 00 00 00 00 00 — encoded by hand.
    assert_eq!(
        std::fs::read(&out).unwrap(),
        [0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn ubpf_syntax() {
    // The first lines of bpf_conformance's add.data.
    let src = scratch("add.ubpf");
    std::fs::write(
        &src,
        "mov32 %r0, 0\nmov32 %r1, 2\nadd32 %r0, 1\nadd32 %r0, %r1\nexit\n",
    )
    .unwrap();
    let o = bpfkit([
        "asm".as_ref(),
        src.as_os_str(),
        "--syntax".as_ref(),
        "ubpf".as_ref(),
        "--hex".as_ref(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // BPF_ALU|BPF_MOV|BPF_K = 0xb4, BPF_ALU|BPF_ADD|BPF_K = 0x04, BPF_ALU|BPF_ADD|BPF_X = 0x0c
    // with src r1 in the high nibble of byte 1, BPF_JMP|BPF_EXIT = 0x95.
    assert_eq!(
        stdout(&o),
        "b4 00 00 00 00 00 00 00\n\
         b4 01 00 00 02 00 00 00\n\
         04 00 00 00 01 00 00 00\n\
         0c 10 00 00 00 00 00 00\n\
         95 00 00 00 00 00 00 00\n"
    );
}

#[test]
fn disasm_of_asm_round_trips() {
    // What `disasm` prints, `asm` reads back to the same bytes.
    if !have_tool("clang-19") {
        return;
    }
    let src = scratch("rt.s");
    std::fs::write(&src, LLVM_SRC).unwrap();
    let bin = scratch("rt.bin");
    let o = bpfkit([
        "asm".as_ref(),
        src.as_os_str(),
        "-o".as_ref(),
        bin.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = bpfkit(["disasm".as_ref(), bin.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text: String = stdout(&o)
        .lines()
        .map(|l| l.split_once(": ").map_or(l, |(_, t)| t).to_string() + "\n")
        .collect();
    let src2 = scratch("rt2.s");
    std::fs::write(&src2, text).unwrap();
    let bin2 = scratch("rt2.bin");
    let o = bpfkit([
        "asm".as_ref(),
        src2.as_os_str(),
        "-o".as_ref(),
        bin2.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(&bin2).unwrap());
}
