//! `bpfkit dump jited`: the listing's native bytes, re-decoded by GNU
//! binutils (`objdump` for x86-64, `aarch64-linux-gnu-objdump` for AArch64;
//! independent of iced-x86 and LLVM, which bpfkit uses), give the same
//! mnemonics in the same order; every eBPF instruction of the program is
//! listed, in order, under its function; prologues start with the patchable
//! 5-byte nop of the design (x86) and the native code of `r0 = 42` sets the
//! return register to 42.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{assert_fails_with, bpfkit, examples_dir, have_tool, scratch, stderr, stdout, tool};

/// A parsed `dump jited` listing.
#[derive(Debug, Default)]
struct Listing {
    /// Native lines: (offset, bytes, text).
    native: Vec<(u32, Vec<u8>, String)>,
    /// eBPF instruction lines: slot -> text, in order.
    bpf: Vec<(usize, String)>,
    /// Offsets of native lines under each eBPF slot.
    under: BTreeMap<usize, Vec<usize>>,
    /// Function labels, in order.
    labels: Vec<String>,
    /// Index into `native` of the first line of each prologue.
    prologues: Vec<usize>,
    /// `; patch site: …` comments and the index into `native` of the line
    /// they announce.
    patches: Vec<(String, usize)>,
    /// Headings of the code after the last instruction (`; out-of-line:
    /// …`, `; padding`, `; callx helper table`) and the indices into
    /// `native` of the lines under each.
    tails: Vec<(String, Vec<usize>)>,
}

fn parse(text: &str) -> Listing {
    let mut l = Listing::default();
    let mut cur: Option<usize> = None;
    let mut tail: Option<usize> = None;
    let mut want_prologue = false;
    for line in text.lines().skip(1) {
        if let Some(rest) = line.strip_prefix("    ; patch site: ") {
            l.patches.push((rest.to_string(), l.native.len()));
        } else if let Some(rest) = line.strip_prefix("    ") {
            let (off, rest) = rest.split_once(":  ").expect("native line has `off:  `");
            let off = u32::from_str_radix(off, 16).expect("hex offset");
            let hex = rest.get(..30).unwrap_or(rest).trim();
            let text = rest.get(31..).unwrap_or("").trim().to_string();
            let bytes: Vec<u8> = hex
                .split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
                .collect();
            if want_prologue {
                l.prologues.push(l.native.len());
                want_prologue = false;
            }
            if let Some(s) = cur {
                l.under.entry(s).or_default().push(l.native.len());
            } else if let Some(t) = tail.and_then(|t| l.tails.get_mut(t)) {
                t.1.push(l.native.len());
            }
            l.native.push((off, bytes, text));
        } else if line == "  ; prologue" {
            want_prologue = true;
            cur = None;
            tail = None;
        } else if let Some(rest) = line.strip_prefix("  ; ") {
            tail = Some(l.tails.len());
            l.tails.push((rest.to_string(), Vec::new()));
            cur = None;
        } else if let Some(rest) = line.strip_prefix("  ") {
            let (slot, text) = rest.split_once(": ").expect("eBPF line has `slot: `");
            let slot: usize = slot.parse().expect("slot number");
            l.bpf.push((slot, text.to_string()));
            cur = Some(slot);
            tail = None;
        } else if let Some(name) = line.strip_suffix(':') {
            l.labels.push(name.to_string());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    l
}

/// The listing's bytes, checked to be contiguous from offset 0.
fn image(l: &Listing) -> Vec<u8> {
    let mut v = Vec::new();
    for (off, bytes, _) in &l.native {
        assert_eq!(*off as usize, v.len(), "native lines are contiguous");
        v.extend_from_slice(bytes);
    }
    v
}

/// Mnemonics of `llvm-objdump`/GNU `objdump -D -b binary` output lines
/// `  off:\tbytes\tmnemonic operands`.
fn gnu_mnemonics(objdump_out: &str) -> Vec<String> {
    objdump_out
        .lines()
        .filter_map(|line| {
            let mut parts = line.split('\t');
            let addr = parts.next()?.trim().strip_suffix(':')?;
            u64::from_str_radix(addr, 16).ok()?;
            let _bytes = parts.next()?;
            let insn = parts.next()?;
            insn.split_whitespace().next().map(str::to_string)
        })
        .collect()
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn x86_listing_matches_binutils_and_the_program() {
    let obj = examples_dir().join("subprogs.o");
    let o = bpfkit([
        "dump",
        "jited",
        obj.to_str().unwrap(),
        "--prog",
        "classify_b",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("classify_b (section tc): x86-64, "),
        "{out}"
    );
    let l = parse(&out);

    // Every eBPF instruction, in order, as `bpfkit disasm` lists it.
    let d = bpfkit(["disasm", obj.to_str().unwrap(), "--prog", "classify_b"]);
    assert!(d.status.success());
    let want: Vec<(usize, String)> = stdout(&d)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (slot, text) = line.split_once(": ")?;
            let text = text.split(" ; ").next().unwrap_or(text).trim_end();
            Some((slot.parse().ok()?, text.to_string()))
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(l.bpf, want);
    // The three subprograms it reaches, named as in subprogs.c.
    for f in ["rotate_add", "global_sum", "mix"] {
        assert!(
            l.labels.iter().any(|x| x == f),
            "label {f} in {:?}",
            l.labels
        );
    }
    // One prologue per function (entry + 3), each opening with `nop5`
    // (0f 1f 44 00 00, the patchable nop of the design).
    assert_eq!(l.prologues.len(), 4);
    for &i in &l.prologues {
        assert_eq!(l.native[i].1, [0x0f, 0x1f, 0x44, 0x00, 0x00]);
    }
    // A `call` to a subprogram is a `call rel32` (e8), or, for a small
    // leaf subprogram (no calls, no jumps, none of r6-r10),
    // the callee's body in place (`JitOptions::inline_leaf_calls`): code
    // with neither a call nor a `ret`. This program has both kinds.
    let (mut called, mut inlined) = (0, 0);
    for (slot, text) in &l.bpf {
        if text.starts_with("call ") {
            let lines = &l.under[slot];
            assert!(!lines.is_empty(), "slot {slot}: {text} has no code");
            if lines.iter().any(|&i| l.native[i].1.first() == Some(&0xe8)) {
                called += 1;
            } else {
                assert!(
                    lines
                        .iter()
                        .all(|&i| !matches!(l.native[i].1.first(), Some(&0xc3 | &0xff))),
                    "slot {slot}: {text} is neither a call rel32 nor a body"
                );
                inlined += 1;
            }
        }
    }
    assert!(
        called > 0 && inlined > 0,
        "{called} calls, {inlined} inlined"
    );

    // The same bytes through GNU objdump: the same mnemonics.
    if !have_tool("objdump") {
        return;
    }
    let bin = scratch("dump_jited_x86.bin");
    std::fs::write(&bin, image(&l)).unwrap();
    let gnu = tool(
        Command::new("objdump")
            .args(["-D", "-b", "binary", "-mi386:x86-64", "-M", "intel"])
            .arg(&bin),
    );
    let theirs = gnu_mnemonics(&gnu);
    let ours: Vec<String> = l.native.iter().map(|n| first_word(&n.2)).collect();
    assert_eq!(ours.len(), theirs.len(), "instruction count\n{gnu}");
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        // binutils prints `movabs` for a 64-bit immediate mov, iced `mov`.
        let same = a == b || (a == "mov" && b == "movabs");
        assert!(same, "insn {i} at {:#x}: {a} vs {b}", l.native[i].0);
    }
}

/// `r0 = 42; exit` as raw bytecode.
fn ret42() -> std::path::PathBuf {
    let p = scratch("dump_jited_ret42.bin");
    std::fs::write(
        &p,
        [
            0xb7, 0, 0, 0, 42, 0, 0, 0, // r0 = 42
            0x95, 0, 0, 0, 0, 0, 0, 0, // exit
        ],
    )
    .unwrap();
    p
}

#[test]
fn x86_r0_is_rax() {
    let o = bpfkit(["dump", "jited", ret42().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = parse(&stdout(&o));
    assert_eq!(l.bpf.len(), 2);
    // The kernel maps r0 to rax: `r0 = 42` is a mov of 0x2a into eax/rax.
    let first = &l.native[l.under[&0][0]].2;
    assert!(
        first.starts_with("mov eax, 0x2a") || first.starts_with("mov rax, 0x2a"),
        "{first}"
    );
    // `exit` ends in `ret`.
    let last = l.under[&1].last().copied().unwrap();
    assert_eq!(l.native[last].1, [0xc3]);
}

#[test]
fn arm64_listing_matches_binutils() {
    let obj = examples_dir().join("subprogs.o");
    let o = bpfkit([
        "dump",
        "jited",
        "--arch",
        "arm64",
        obj.to_str().unwrap(),
        "--prog",
        "classify_b",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("classify_b (section tc): aarch64, "),
        "{out}"
    );
    let l = parse(&out);
    assert_eq!(l.prologues.len(), 4);
    assert!(l.native.iter().all(|n| n.1.len() == 4));
    let img = image(&l);

    if !have_tool("aarch64-linux-gnu-objdump") {
        return;
    }
    let bin = scratch("dump_jited_arm64.bin");
    std::fs::write(&bin, &img).unwrap();
    let gnu = tool(
        Command::new("aarch64-linux-gnu-objdump")
            .args(["-D", "-b", "binary", "-maarch64"])
            .arg(&bin),
    );
    let theirs = gnu_mnemonics(&gnu);
    let ours: Vec<String> = l.native.iter().map(|n| first_word(&n.2)).collect();
    assert_eq!(ours.len(), theirs.len(), "{gnu}");
    let mut differ = 0;
    for (a, b) in ours.iter().zip(&theirs) {
        // LLVM and binutils spell a few aliases differently (e.g. `mov` vs
        // `orr`); count, and require near-total agreement.
        if a != b {
            differ += 1;
        }
    }
    assert!(
        differ * 10 <= ours.len(),
        "{differ} of {} mnemonics differ\n{out}\n{gnu}",
        ours.len()
    );
}

#[test]
fn arm64_r0_gets_42() {
    let o = bpfkit([
        "dump",
        "jited",
        "--arch",
        "arm64",
        ret42().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = parse(&stdout(&o));
    let texts: Vec<&str> = l.under[&0]
        .iter()
        .map(|&i| l.native[i].2.as_str())
        .collect();
    // The kernel maps r0 to x7 (a 32-bit `mov w7` zero-extends, as a
    // 64-bit `mov` of a non-negative immediate needs).
    assert!(
        texts.iter().any(|t| {
            (t.contains("x7,") || t.contains("w7,")) && (t.contains("#0x2a") || t.contains("#42"))
        }),
        "{texts:?}"
    );
    // `exit` ends in `ret`.
    let last = l.under[&1].last().copied().unwrap();
    assert_eq!(l.native[last].2, "ret");
}

#[test]
fn errors_are_clean() {
    let obj = examples_dir().join("subprogs.o");
    let o = bpfkit(["dump", "jited", obj.to_str().unwrap(), "--prog", "nosuch"]);
    assert_fails_with(&o, "no program named `nosuch`");
    let o = bpfkit(["dump", "xlated", obj.to_str().unwrap(), "--arch", "arm64"]);
    assert_fails_with(&o, "--arch applies to `dump jited` only");
}

/// `r2 = map[fd:1]; r3 = 0; call 12; r0 = 1; exit` as raw bytecode.
fn const_tail_call() -> std::path::PathBuf {
    let p = scratch("dump_jited_tail_call.bin");
    std::fs::write(
        &p,
        [
            0x18, 0x12, 0, 0, 1, 0, 0, 0, // r2 = map[fd:1] (src 1 = BPF_PSEUDO_MAP_FD)
            0, 0, 0, 0, 0, 0, 0, 0, // (second slot)
            0xb7, 0x03, 0, 0, 0, 0, 0, 0, // r3 = 0
            0x85, 0, 0, 0, 12, 0, 0, 0, // call 12 (bpf_tail_call)
            0xb7, 0, 0, 0, 1, 0, 0, 0, // r0 = 1
            0x95, 0, 0, 0, 0, 0, 0, 0, // exit
        ],
    )
    .unwrap();
    p
}

#[test]
fn x86_direct_tail_call_patch_sites_are_marked() {
    let o = bpfkit(["dump", "jited", const_tail_call().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = parse(&stdout(&o));
    let kinds: Vec<&str> = l
        .patches
        .iter()
        .map(|(t, _)| t.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        ["bypass", "target", "literal", "stub"],
        "{:?}",
        l.patches
    );
    for (text, _) in &l.patches {
        assert!(text.ends_with("(slot 3, index 0)"), "{text}");
    }
    // The bypass is a 5-byte `jmp rel32` (e9) to the code of slot 4
    // (`r0 = 1`), the target the 5-byte nop 0f 1f 44 00 00, both inside
    // one aligned 8-byte word.
    let out = l.native[l.under[&4][0]].0;
    let (_, bypass) = l.patches[0];
    let (off, bytes, text) = &l.native[bypass];
    assert_eq!(bytes.len(), 5);
    assert_eq!(bytes[0], 0xe9);
    assert_eq!(
        i64::from(*off) + 5 + i64::from(i32::from_le_bytes(bytes[1..5].try_into().unwrap())),
        i64::from(out),
        "{text}"
    );
    assert!(off % 8 <= 3);
    let (_, target) = l.patches[1];
    let (off, bytes, _) = &l.native[target];
    assert_eq!(bytes, &[0x0f, 0x1f, 0x44, 0x00, 0x00]);
    assert!(off % 8 <= 3);
    // Both lie in the code of the tail call (slot 3).
    assert!(l.under[&3].contains(&bypass) && l.under[&3].contains(&target));
}

/// `--blind-seed`: the immediate 0x12345678 of `r0 = 0x12345678` no longer
/// appears in the native bytes (it does without blinding); two seeds give
/// different code.
#[test]
fn blinding_hides_the_immediate() {
    let p = scratch("dump_jited_blind.bin");
    std::fs::write(
        &p,
        [
            0xb7, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, // r0 = 0x12345678
            0x95, 0, 0, 0, 0, 0, 0, 0, // exit
        ],
    )
    .unwrap();
    let bytes_of = |extra: &[&str]| -> Vec<u8> {
        let mut args = vec!["dump", "jited", p.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = bpfkit(args);
        assert!(o.status.success(), "{}", stderr(&o));
        parse(&stdout(&o))
            .native
            .into_iter()
            .flat_map(|n| n.1)
            .collect()
    };
    let has = |code: &[u8]| code.windows(4).any(|w| w == [0x78, 0x56, 0x34, 0x12]);
    assert!(has(&bytes_of(&[])));
    let a = bytes_of(&["--blind-seed", "1"]);
    let b = bytes_of(&["--blind-seed", "2"]);
    assert!(!has(&a) && !has(&b));
    assert_ne!(a, b);
    assert!(!has(&bytes_of(&["--blind"])));
}

/// The signed displacement target of a `jmp` (eb rel8 / e9 rel32) line.
fn jmp_target(off: u32, bytes: &[u8]) -> i64 {
    let end = i64::from(off) + bytes.len() as i64;
    match bytes {
        [0xeb, d] => end + i64::from(*d as i8),
        [0xe9, a, b, c, d] => end + i64::from(i32::from_le_bytes([*a, *b, *c, *d])),
        _ => panic!("not a jmp: {bytes:02x?}"),
    }
}

/// `bpfkit dump jited` of a raw instruction file (x86-64, the default):
/// its output, checked to be a success, and the parsed listing.
fn dump_raw(name: &str, insns: &[u8]) -> (String, Listing) {
    let p = scratch(name);
    std::fs::write(&p, insns).unwrap();
    let o = bpfkit(["dump", "jited", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l = parse(&out);
    (out, l)
}

/// Division by a register: the x86 check for a zero divisor jumps to
/// out-of-line code after the last instruction, which the listing puts
/// under its own heading rather than under `exit`. By the ISA, `x / 0`
/// is 0 and execution goes on with the next instruction: the cold path
/// zeroes `rax` (r0) and jumps back to the code of `exit`.
#[test]
fn x86_division_checks_are_listed_apart() {
    let (out, l) = dump_raw(
        "dump_jited_div.bin",
        &[
            0xbf, 0x10, 0, 0, 0, 0, 0, 0, // r0 = r1
            0x3f, 0x20, 0, 0, 0, 0, 0, 0, // r0 /= r2
            0x95, 0, 0, 0, 0, 0, 0, 0, // exit
        ],
    );
    assert_eq!(l.bpf.len(), 3);
    // `exit` is `ret` and nothing after it.
    assert_eq!(l.native[*l.under[&2].last().unwrap()].1, [0xc3], "{out}");
    let heads: Vec<&str> = l.tails.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(heads, ["out-of-line: division checks"], "{out}");
    let lines = &l.tails[0].1;
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(l.native[lines[0]].2, "xor eax, eax", "{out}");
    let (off, bytes, _) = &l.native[lines[1]];
    let exit_code = l.native[l.under[&2][0]].0;
    assert_eq!(jmp_target(*off, bytes), i64::from(exit_code), "{out}");
}

/// `callx`: the image ends with the helper-address table, listed as data
/// under its own heading (entry `id` = the placeholder address of helper
/// `id`, 0x7fff_0000_0000 + id, documented by `dump jited`).
#[test]
fn x86_callx_helper_table_is_listed_apart() {
    let (out, l) = dump_raw(
        "dump_jited_callx.bin",
        &[
            0xb7, 0x01, 0, 0, 5, 0, 0, 0, // r1 = 5
            0x8d, 0x01, 0, 0, 0, 0, 0, 0, // callx r1
            0x95, 0, 0, 0, 0, 0, 0, 0, // exit
        ],
    );
    assert_eq!(l.native[*l.under[&2].last().unwrap()].1, [0xc3], "{out}");
    let table = l
        .tails
        .iter()
        .find(|t| t.0 == "callx helper table")
        .unwrap_or_else(|| panic!("no table heading:\n{out}"));
    assert_eq!(
        l.tails.last().map(|t| t.0.as_str()),
        Some("callx helper table")
    );
    let rows = &table.1;
    assert!(rows.len() > 5, "{out}");
    // 8-byte aligned, 8 bytes a row.
    let first = l.native[rows[0]].0;
    assert_eq!(first % 8, 0);
    for (k, &i) in rows.iter().enumerate() {
        let (off, bytes, text) = &l.native[i];
        assert_eq!(*off, first + 8 * k as u32);
        let want = 0x0000_7fff_0000_0000u64 + k as u64;
        assert_eq!(bytes.as_slice(), want.to_le_bytes(), "row {k}: {text}");
        assert_eq!(text, &format!(".quad {want:#x}"));
    }
}

/// `ld_abs`: its failure path (a packet too short) ends the program with
/// r0 = 0 (the kernel's rule for legacy packet loads); that exit follows
/// the last instruction, under its own heading.
#[test]
fn x86_ld_abs_failure_exit_is_listed_apart() {
    let (out, l) = dump_raw(
        "dump_jited_ld_abs.bin",
        &[
            0xbf, 0x16, 0, 0, 0, 0, 0, 0, // r6 = r1
            0x30, 0, 0, 0, 0, 0, 0, 0, // r0 = *(u8 *)skb[0]
            0x95, 0, 0, 0, 0, 0, 0, 0, // exit
        ],
    );
    assert_eq!(l.native[*l.under[&2].last().unwrap()].1, [0xc3], "{out}");
    let heads: Vec<&str> = l.tails.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(heads, ["out-of-line: ld_abs/ld_ind failure exit"], "{out}");
    let lines = &l.tails[0].1;
    assert_eq!(l.native[lines[0]].2, "xor eax, eax", "{out}");
    assert_eq!(l.native[*lines.last().unwrap()].1, [0xc3], "{out}");
}
