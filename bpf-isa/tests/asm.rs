//! Assembler tests.
//!
//! Expected encodings come from outside this crate: clang-19's BPF assembler
//! (the same source text assembled by `clang -target bpf`), the bytes that
//! bpf_conformance's `lddw.data` lists in its `-- raw` section, and hand
//! encodings from the field layout of RFC 9669 where neither tool can help.

use std::path::{Path, PathBuf};
use std::process::Command;

use bpf_isa::asm::AsmErrorKind;
use bpf_isa::*;

/// Kernel-syntax source that clang-19 (`-mcpu=v4`) also assembles; every
/// line is one instruction.
const LLVM_SRC: &str = "\
r0 = 42
w1 += w2
w1 = -5
r1 = 0x7fffffff
r0 = -2147483648
if r1 > r2 goto +3
if w1 s< -5 goto -2
if r1 & 0x10 goto +1
if r1 == -1 goto +1
if w3 s>= w4 goto -1
*(u32 *)(r10 - 4) = r1
*(u8 *)(r10 - 1) = 7
*(u64 *)(r10 - 8) = -7
*(u16 *)(r1 + 0x10) = r9
r0 = *(u64 *)(r1 + 8)
r1 = *(s16 *)(r2 - 2)
r1 = *(s32 *)(r2 + 0)
lock *(u64 *)(r1 + 0) += r2
lock *(u32 *)(r1 + 0) &= w2
lock *(u32 *)(r1 - 8) |= w2
lock *(u64 *)(r1 + 0) ^= r2
r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)
w2 = atomic_fetch_or((u32 *)(r1 + 0), w2)
w2 = atomic_fetch_and((u32 *)(r1 + 0), w2)
r2 = atomic_fetch_xor((u64 *)(r1 + 0), r2)
r0 = cmpxchg_64(r1 + 0, r0, r2)
w0 = cmpxchg32_32(r1 + 0, w0, w2)
r2 = xchg_64(r1 + 0, r2)
w2 = xchg32_32(r1 + 0, w2)
r1 = 0x1234 ll
r1 = -1 ll
r1 = 0x8000000000000000 ll
r0 = be16 r0
r0 = le64 r0
r0 = bswap32 r0
r1 = (s8)r2
w1 = (s16)w2
r1 = (s32)r2
r1 s/= r2
r1 s%= 3
w1 s%= 3
w5 /= w6
r1 = -r1
w1 = -w1
goto +3
gotol -7
call 12
callx r5
r0 = *(u8 *)skb[12]
r0 = *(u16 *)skb[r3]
may_goto +2
r1 = addr_space_cast(r2, 1, 0)
r1 >>= 3
r1 s>>= r3
w1 s>>= 3
r1 <<= 63
r1 ^= r2
r1 *= -1
r1 -= r1
r1 %= r7
w3 = w4
exit
";

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bpf-isa-asm-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Assembles `src` with clang-19 and returns the `.text` bytes.
fn clang_text(src: &str, dir: &Path) -> Vec<u8> {
    let s = dir.join("t.s");
    let o = dir.join("t.o");
    let bin = dir.join("t.bin");
    std::fs::write(&s, src).expect("write .s");
    let st = Command::new("clang-19")
        .args(["-target", "bpf", "-mcpu=v4", "-c"])
        .arg(&s)
        .arg("-o")
        .arg(&o)
        .status()
        .expect("run clang-19");
    assert!(st.success(), "clang-19 failed on the test source");
    let st = Command::new("llvm-objcopy-19")
        .args(["-O", "binary", "--only-section=.text"])
        .arg(&o)
        .arg(&bin)
        .status()
        .expect("run llvm-objcopy-19");
    assert!(st.success());
    std::fs::read(&bin).expect("read .text")
}

fn objdump(args: &[&str], obj: &Path) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .arg(obj)
        .output()
        .expect("run llvm-objdump");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn kernel_syntax_matches_clang() {
    if !tool("clang-19") || !tool("llvm-objcopy-19") {
        skip("clang-19 / llvm-objcopy-19 not installed");
        return;
    }
    let dir = tmpdir("clang");
    let want = clang_text(LLVM_SRC, &dir);
    let ours = assemble(LLVM_SRC).expect("assemble").to_bytes();
    assert_eq!(ours.len(), want.len(), "length differs");
    // Compare slot by slot so a failure names the line.
    let lines: Vec<&str> = LLVM_SRC.lines().collect();
    let p = assemble(LLVM_SRC).expect("assemble");
    for (n, (idx, _)) in p.iter().enumerate() {
        let s = idx.slot() * 8;
        let len = p.insns()[n].slots() * 8;
        assert_eq!(
            &ours[s..s + len],
            &want[s..s + len],
            "line {}: `{}`",
            n + 1,
            lines[n]
        );
    }
}

/// Assembles llvm-objdump's own listing of a clang-built object (instruction
/// column only, `<sym+off>` annotations included) and compares the bytes.
#[test]
fn assembles_llvm_objdump_listings() {
    if !tool("clang-19") || !tool("llvm-objdump-19") {
        skip("clang-19 / llvm-objdump-19 not installed");
        return;
    }
    let dir = tmpdir("objdump");
    let want = clang_text(LLVM_SRC, &dir);
    let obj = dir.join("t.o");
    for args in [
        &["llvm-objdump-19", "-d", "--mattr=+alu32"][..],
        &[
            "llvm-objdump-19",
            "-d",
            "--mattr=+alu32",
            "--no-print-imm-hex",
        ][..],
    ] {
        let listing = objdump(args, &obj);
        // Lines look like "      12:\tdb 21 00 00 ...\tlock *(u64 *)(r1 + 0x0) += r2".
        let mut text = String::new();
        for l in listing.lines() {
            let cols: Vec<&str> = l.split('\t').collect();
            if cols.len() >= 3 && cols[0].trim_end().ends_with(':') {
                text.push_str(cols[2]);
                text.push('\n');
            }
        }
        let ours = assemble(&text)
            .unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
            .to_bytes();
        assert_eq!(ours, want, "{args:?}");
    }
}

fn one(src: &str) -> Insn {
    let p = assemble(src).unwrap_or_else(|e| panic!("`{src}`: {e}"));
    assert_eq!(p.len(), 1, "`{src}`");
    p.insns()[0]
}

fn bytes(src: &str) -> Vec<u8> {
    assemble(src)
        .unwrap_or_else(|e| panic!("`{src}`: {e}"))
        .to_bytes()
}

#[test]
fn kernel_style_forms_by_hand() {
    // Hand encodings: code, dst | src << 4, off (le16), imm (le32).
    let cases: [(&str, &[u8]); 13] = [
        ("call pc+5", &[0x85, 0x10, 0, 0, 5, 0, 0, 0]),
        ("call pc-2", &[0x85, 0x10, 0, 0, 0xfe, 0xff, 0xff, 0xff]),
        ("call kfunc#1234", &[0x85, 0x20, 0, 0, 0xd2, 0x04, 0, 0]),
        ("call kfunc#0x10@3", &[0x85, 0x20, 3, 0, 0x10, 0, 0, 0]),
        (
            "r1 = map[fd:5]",
            &[0x18, 0x11, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "r1 = map_value[fd:5]+16",
            &[0x18, 0x21, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0],
        ),
        (
            "r2 = btf_id[123]",
            &[0x18, 0x32, 0, 0, 123, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "r1 = map[idx:2]",
            &[0x18, 0x51, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "r1 = map_value[idx:0]+0x8",
            &[0x18, 0x61, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0],
        ),
        (
            "ld_pseudo r1, 2, 3",
            &[0x18, 0x21, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "r0 = *(u32 *)skb[r3 - 12]",
            &[0x40, 0x30, 0, 0, 0xf4, 0xff, 0xff, 0xff],
        ),
        // BPF_STX | BPF_ATOMIC | BPF_DW, imm BPF_LOAD_ACQ (0x100); dst r0 loaded, src r1 the base.
        (
            "r0 = load_acquire((u64 *)(r1 + 8))",
            &[0xdb, 0x10, 8, 0, 0x00, 0x01, 0, 0],
        ),
        // BPF_STX | BPF_ATOMIC | BPF_W, imm BPF_STORE_REL (0x110).
        (
            "store_release((u32 *)(r1 - 8), r2)",
            &[0xc3, 0x21, 0xf8, 0xff, 0x10, 0x01, 0, 0],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(bytes(src), want, "`{src}`");
    }
    // `subprog[+N]` is pc-relative from the slot after the ld_imm64's first slot.
    assert_eq!(
        bytes("r2 = subprog[+5]"),
        [0x18, 0x42, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn labels_comments_and_prefixes() {
    let src = "
        // leading comment
    start:  r0 = 0          # count
            r1 = 7 ll       ; two slots
    loop:   r0 += 1
            if r0 < 10 goto loop
            call pc done
            goto start
    done:   exit
    ";
    let p = assemble(src).unwrap();
    // Slots: 0 mov, 1-2 ld_imm64, 3 add, 4 jlt, 5 call, 6 ja, 7 exit.
    assert_eq!(p.starts(), &[0, 1, 3, 4, 5, 6, 7]);
    assert!(matches!(p.insns()[3], Insn::Jmp { off: -2, .. })); // 3 - (4 + 1)
    assert_eq!(p.insns()[4], Insn::Call(CallTarget::Local(1))); // 7 - (5 + 1)
    assert_eq!(p.insns()[5], Insn::Ja { off: -7 }); // 0 - (6 + 1)
    p.validate().unwrap();
    // fmt_program-style index prefixes are skipped.
    let q = assemble("0: r1 = 7 ll\n2: exit\n").unwrap();
    assert_eq!(q.slot_len(), 3);
    // A label on its own line before the end names the slot after the last instruction.
    let r = assemble("goto end\nexit\nend:").unwrap();
    assert_eq!(r.insns()[0], Insn::Ja { off: 1 });
}

#[test]
fn immediates_and_offsets_in_range() {
    assert_eq!(
        one("r0 = 0xffffffff"),
        one("r0 = -1"),
        "32-bit immediates wrap"
    );
    assert_eq!(
        one("*(u8 *)(r1 - 32768) = 0"),
        Insn::St {
            size: Size::B,
            dst: Reg::R1,
            off: i16::MIN,
            imm: 0
        }
    );
    assert_eq!(
        one("r1 = 0xffffffffffffffff ll"),
        one("r1 = -1 ll"),
        "64-bit immediates wrap"
    );
}

fn err(src: &str) -> (usize, AsmErrorKind) {
    let e = assemble(src).expect_err(src);
    (e.line, e.kind)
}

#[test]
fn errors_name_the_line() {
    let e = assemble("r0 = 1\n\nr11 = 2\n").unwrap_err();
    assert_eq!(e.to_string(), "line 3: unknown register r11");
    assert_eq!(
        err("exit\nfoo r1\n"),
        (2, AsmErrorKind::UnknownMnemonic("foo".into()))
    );
    assert_eq!(
        err("goto nowhere\n"),
        (1, AsmErrorKind::UndefinedLabel("nowhere".into()))
    );
    assert_eq!(
        err("a:\na:\n"),
        (2, AsmErrorKind::DuplicateLabel("a".into()))
    );
    assert!(matches!(
        err("r0 = 0x100000000"),
        (1, AsmErrorKind::OutOfRange { .. })
    ));
    assert!(matches!(
        err("*(u32 *)(r1 + 32768) = r1"),
        (1, AsmErrorKind::OutOfRange { field: "off", .. })
    ));
    assert!(matches!(err("w1 += r2"), (1, AsmErrorKind::BadOperands(_))));
    assert!(matches!(
        err("r1 = be16 r2"),
        (1, AsmErrorKind::BadOperands(_))
    ));
    assert!(matches!(
        err("r0 = bswap8 r0"),
        (1, AsmErrorKind::UnknownMnemonic(_))
    ));
    // A one-byte atomic add is well-formed text but not an instruction.
    assert!(matches!(
        err("lock *(u8 *)(r1 + 0) += r2"),
        (1, AsmErrorKind::Invalid(_))
    ));
    // A 32-bit move cannot sign-extend from 32 bits.
    assert!(matches!(err("w1 = (s32)w2"), (1, AsmErrorKind::Invalid(_))));
    assert!(matches!(
        err("if r1 > r2 goto +1 extra"),
        (1, AsmErrorKind::Expected { .. })
    ));
    // A label too far for a 16-bit offset.
    let far = format!("goto end\n{}end: exit\n", "r0 = 0\n".repeat(40_000));
    assert!(matches!(
        err(&far),
        (1, AsmErrorKind::LabelOutOfRange { .. })
    ));
}

// ---------------------------------------------------------------------------
// uBPF / bpf_conformance syntax

fn ubpf_bytes(src: &str) -> Vec<u8> {
    assemble_ubpf(src)
        .unwrap_or_else(|e| panic!("`{src}`: {e}"))
        .to_bytes()
}

#[test]
fn ubpf_hand_encodings() {
    // Encodings as bpf_conformance's assembler produces them (checked against
    // its source: opcode tables and field assignments), written by hand.
    let cases: [(&str, &[u8]); 22] = [
        ("mov32 %r0, 0", &[0xb4, 0x00, 0, 0, 0, 0, 0, 0]),
        ("mov %r1, -1", &[0xb7, 0x01, 0, 0, 0xff, 0xff, 0xff, 0xff]),
        ("add %r0, %r1", &[0x0f, 0x10, 0, 0, 0, 0, 0, 0]),
        ("sdiv32 %r0, 3", &[0x34, 0x00, 1, 0, 3, 0, 0, 0]),
        ("smod %r0, %r2", &[0x9f, 0x20, 1, 0, 0, 0, 0, 0]),
        ("neg32 %r3", &[0x84, 0x03, 0, 0, 0, 0, 0, 0]),
        ("movsx1632 %r0, %r1", &[0xbc, 0x10, 16, 0, 0, 0, 0, 0]),
        ("movsx3264 %r0, %r1", &[0xbf, 0x10, 32, 0, 0, 0, 0, 0]),
        ("be16 %r0", &[0xdc, 0x00, 0, 0, 16, 0, 0, 0]),
        ("le32 %r0", &[0xd4, 0x00, 0, 0, 32, 0, 0, 0]),
        ("swap64 %r0", &[0xd7, 0x00, 0, 0, 64, 0, 0, 0]),
        ("bswap16 %r0", &[0xd7, 0x00, 0, 0, 16, 0, 0, 0]),
        ("ldxdw %r0, [%r10-8]", &[0x79, 0xa0, 0xf8, 0xff, 0, 0, 0, 0]),
        ("stxw [%r1+2], %r0", &[0x63, 0x01, 2, 0, 0, 0, 0, 0]),
        ("stw [%r1], 5", &[0x62, 0x01, 0, 0, 5, 0, 0, 0]),
        (
            "lock add [%r10-8], %r1",
            &[0xdb, 0x1a, 0xf8, 0xff, 0, 0, 0, 0],
        ),
        (
            "lock fetch xor32 [%r10-8], %r1",
            &[0xc3, 0x1a, 0xf8, 0xff, 0xa1, 0, 0, 0],
        ),
        (
            "lock cmpxchg [%r10-8], %r1",
            &[0xdb, 0x1a, 0xf8, 0xff, 0xf1, 0, 0, 0],
        ),
        ("call 5", &[0x85, 0x00, 0, 0, 5, 0, 0, 0]),
        ("call runtime 7", &[0x85, 0x20, 0, 0, 7, 0, 0, 0]),
        // callx: register number in dst, imm 0 (bpf_conformance and LLVM 19).
        ("call %r2", &[0x8d, 0x02, 0, 0, 0, 0, 0, 0]),
        (
            "jsge32 %r1, -3, +2",
            &[0x76, 0x01, 2, 0, 0xfd, 0xff, 0xff, 0xff],
        ),
    ];
    for (src, want) in cases {
        assert_eq!(ubpf_bytes(src), want, "`{src}`");
    }
}

#[test]
fn ubpf_labels_and_exit_label() {
    let p = assemble_ubpf(
        "mov %r1, 0\nja32 L2\nL1:\nmov %r2, 0\nexit\nL2:\nmov %r0, 0\nja32 L1\n\
         jne %r0, %r1, exit\ncall local L1\n",
    )
    .unwrap();
    let i = p.insns();
    assert_eq!(i[1], Insn::JaLong { imm: 2 }); // L2 = slot 4; 4 - (1 + 1)
    assert_eq!(i[5], Insn::JaLong { imm: -4 }); // L1 = slot 2; 2 - (5 + 1)
    assert!(matches!(i[6], Insn::Jmp { off: -4, .. })); // exit = slot 3
    assert_eq!(i[7], Insn::Call(CallTarget::Local(-6)));
}

#[test]
fn ubpf_errors() {
    let e = assemble_ubpf("mov %r0, 1\nmov %r11, 2\n").unwrap_err();
    assert_eq!(e.to_string(), "line 2: unknown register %r11");
    let e = assemble_ubpf("frob %r0\n").unwrap_err();
    assert_eq!(e.kind, AsmErrorKind::UnknownMnemonic("frob".into()));
    let e = assemble_ubpf("ja nowhere\n").unwrap_err();
    assert_eq!(e.kind, AsmErrorKind::UndefinedLabel("nowhere".into()));
    assert!(assemble_ubpf("add %r0\n").is_err());
    assert!(assemble_ubpf("ldxw %r0, %r1\n").is_err());
    assert!(assemble_ubpf("lock nand [%r1], %r2\n").is_err());
}

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// The `-- asm` and `-- raw` sections of a `.data` file.
fn sections(text: &str) -> (String, Option<Vec<u8>>) {
    let mut asm = String::new();
    let mut raw: Option<Vec<u8>> = None;
    let mut cur = "";
    for l in text.lines() {
        if let Some(name) = l.strip_prefix("-- ") {
            cur = if name == "asm" || name == "raw" {
                name
            } else {
                ""
            };
            continue;
        }
        match cur {
            "asm" => {
                asm.push_str(l);
                asm.push('\n');
            }
            "raw" => {
                let t = l.trim();
                if let Some(h) = t.strip_prefix("0x") {
                    let v = u64::from_str_radix(h, 16).expect("raw slot");
                    raw.get_or_insert_with(Vec::new)
                        .extend_from_slice(&v.to_le_bytes());
                }
            }
            _ => {}
        }
    }
    (asm, raw)
}

#[test]
fn every_conformance_program_assembles() {
    let dir = conformance_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        skip(&format!("{} is absent", dir.display()));
        return;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    assert!(files.len() >= 200, "only {} .data files", files.len());
    let mut with_raw = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read .data");
        let (asm, raw) = sections(&text);
        let p = assemble_ubpf(&asm).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(!p.is_empty(), "{}", f.display());
        // What we produce must decode back to the same program.
        assert_eq!(
            Program::decode(&p.to_bytes()).unwrap(),
            p,
            "{}",
            f.display()
        );
        if let Some(raw) = raw {
            with_raw += 1;
            assert_eq!(
                p.to_bytes(),
                raw,
                "{}: bytes differ from -- raw",
                f.display()
            );
        }
    }
    assert!(with_raw >= 1, "no -- raw section found");
    eprintln!("assembled {} conformance programs", files.len());
}

/// Reports a skipped test plainly, or fails it when `BPFKIT_REQUIRE_TOOLS=1`
/// (`cargo xtask ci` sets it: there, every tool and `../shared` are present,
/// so a skip would hide a test that did not run).
fn skip(why: &str) {
    assert!(
        std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
        "required but missing (BPFKIT_REQUIRE_TOOLS=1): {why}"
    );
    eprintln!("SKIPPED: {why}");
}
