//! `bpfkit disasm` against `llvm-objdump-19` on the example objects, and on raw bytecode.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;

/// One listed instruction: slot (relative to its function), text, and a flag:
/// for llvm-objdump "has a relocation", for us "carries a `; symbol` comment".
type Line = (usize, String, bool);

/// One function as `llvm-objdump-19 -dr --no-show-raw-insn` lists it.
#[derive(Debug, Default)]
struct ObjdumpFn {
    section: String,
    /// Its instructions; text without the `<label>` suffix.
    insns: Vec<Line>,
}

/// One program of our listing: its entry function only.
struct Listed {
    name: String,
    section: String,
    lines: Vec<Line>,
}

fn objdump(path: &std::path::Path) -> HashMap<String, ObjdumpFn> {
    let text = tool(
        Command::new("llvm-objdump-19")
            .args(["-dr", "--no-show-raw-insn"])
            .arg(path),
    );
    let mut fns: HashMap<String, ObjdumpFn> = HashMap::new();
    let mut section = String::new();
    let mut current: Option<(String, usize)> = None;
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("Disassembly of section ") {
            section = s.trim_end_matches(':').to_string();
            current = None;
        } else if let Some((addr, rest)) = line.split_once(" <") {
            if let (Ok(addr), Some(name)) = (u64::from_str_radix(addr, 16), rest.strip_suffix(">:"))
            {
                let start = usize::try_from(addr / 8).unwrap();
                fns.insert(
                    name.to_string(),
                    ObjdumpFn {
                        section: section.clone(),
                        insns: Vec::new(),
                    },
                );
                current = Some((name.to_string(), start));
            }
        }
        let Some((name, start)) = &current else {
            continue;
        };
        let f = fns.get_mut(name).unwrap();
        if line.contains("R_BPF_") {
            if let Some(last) = f.insns.last_mut() {
                last.2 = true;
            }
        } else if let Some((idx, insn)) = line.trim_start().split_once(":\t") {
            if let Ok(idx) = idx.parse::<usize>() {
                let mut insn = insn.trim().to_string();
                if insn.ends_with('>') {
                    if let Some(p) = insn.rfind(" <") {
                        insn.truncate(p);
                    }
                }
                f.insns.push((idx - start, insn, false));
            }
        }
    }
    fns
}

/// Our listing, program by program.
fn ours(out: &str) -> Vec<Listed> {
    let mut progs = Vec::new();
    let mut in_entry = false;
    for line in out.lines() {
        if let Some(head) = line.strip_suffix("):") {
            let (name, section) = head.split_once(" (section ").expect("header line");
            progs.push(Listed {
                name: name.to_string(),
                section: section.to_string(),
                lines: Vec::new(),
            });
            in_entry = true;
        } else if line.ends_with(':') && !line.contains(' ') {
            in_entry = false; // a subprogram label
        } else if let Some((slot, text)) = line.split_once(": ") {
            if in_entry {
                let (text, comment) = match text.rsplit_once(" ; ") {
                    Some((t, _)) => (t, true),
                    None => (text, false),
                };
                let slot = slot.parse().expect("slot number");
                progs.last_mut().expect("a header first").lines.push((
                    slot,
                    text.to_string(),
                    comment,
                ));
            }
        }
    }
    progs
}

#[test]
fn elf_listing_matches_llvm_objdump() {
    if !have_tool("llvm-objdump-19") {
        return;
    }
    let mut compared = 0;
    for obj in example_objects() {
        let reference = objdump(&obj);
        let o = bpfkit([
            std::ffi::OsStr::new("disasm"),
            "--hex".as_ref(),
            obj.as_os_str(),
        ]);
        assert!(o.status.success(), "{}: {}", obj.display(), stderr(&o));
        let listing = ours(&stdout(&o));
        // Every function outside .text is a program, and we list each one.
        let mut expected: Vec<&String> = reference
            .iter()
            .filter(|(_, f)| f.section != ".text")
            .map(|(n, _)| n)
            .collect();
        let mut got: Vec<&String> = listing.iter().map(|p| &p.name).collect();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{}: programs", obj.display());

        for Listed {
            name,
            section,
            lines,
        } in &listing
        {
            let f = &reference[name];
            assert_eq!(section, &f.section, "{}: section of {name}", obj.display());
            assert_eq!(
                lines.len(),
                f.insns.len(),
                "{}: length of {name}",
                obj.display()
            );
            for ((slot, text, comment), (rslot, rtext, relocated)) in lines.iter().zip(&f.insns) {
                let at = format!("{} {name} slot {slot}", obj.display());
                assert_eq!(slot, rslot, "{at}");
                if *relocated {
                    // The loader resolved it: we show the symbol as a comment.
                    assert!(comment, "{at}: relocated `{rtext}` lacks its symbol");
                } else if rtext.starts_with("call ") && text.starts_with("call pc") {
                    // A bpf-to-bpf call in the same section: LLVM prints the raw
                    // imm, we print the kernel's `call pc+N` (see bpf_isa::disasm).
                } else {
                    assert_eq!(text, rtext, "{at}");
                    compared += 1;
                }
            }
        }
    }
    eprintln!("compared {compared} instructions with llvm-objdump-19");
    assert!(compared > 50, "only {compared} instructions compared");
}

#[test]
fn filters_select_programs() {
    let obj = examples_dir().join("subprogs.o");
    let o = bpfkit([
        "disasm".as_ref(),
        obj.as_os_str(),
        "--prog".as_ref(),
        "classify_b".as_ref(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = ours(&stdout(&o)).into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["classify_b"]);

    // subprogs.c puts classify_a and classify_b in SEC("tc").
    let o = bpfkit([
        "disasm".as_ref(),
        obj.as_os_str(),
        "--section".as_ref(),
        "tc".as_ref(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = ours(&stdout(&o)).into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["classify_a", "classify_b"]);

    let o = bpfkit([
        "disasm".as_ref(),
        obj.as_os_str(),
        "--prog".as_ref(),
        "nope".as_ref(),
    ]);
    assert_fails_with(&o, "no program named `nope`");
    assert!(
        stderr(&o).contains("classify_a (section tc)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn raw_bytecode_listing() {
    // r0 = 42 ; r1 = 0x1122334455667788 ll ; if r0 > r1 goto -3 ; exit  — encoded by hand.
    let bytes: [u8; 40] = [
        0xb7, 0x00, 0, 0, 0x2a, 0, 0, 0, //
        0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55, //
        0x00, 0x00, 0, 0, 0x44, 0x33, 0x22, 0x11, //
        0x2d, 0x10, 0xfd, 0xff, 0, 0, 0, 0, //
        0x95, 0x00, 0, 0, 0, 0, 0, 0,
    ];
    let path = scratch("raw.bin");
    std::fs::write(&path, bytes).unwrap();
    let o = bpfkit(["disasm".as_ref(), path.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Texts as LLVM 14's llvm-objdump prints these encodings; ld_imm64 takes slots 1-2.
    assert_eq!(
        stdout(&o),
        "0: r0 = 42\n1: r1 = 1234605616436508552 ll\n3: if r0 > r1 goto -3\n4: exit\n"
    );
    let o = bpfkit(["disasm".as_ref(), "--hex".as_ref(), path.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "0: r0 = 0x2a\n1: r1 = 0x1122334455667788 ll\n3: if r0 > r1 goto -0x3\n4: exit\n"
    );
}

#[test]
fn raw_bytecode_with_bad_jump_still_lists_and_warns() {
    // ja +5 ; exit — the jump leaves the program.
    let bytes = [0x05, 0, 5, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let path = scratch("badjump.bin");
    std::fs::write(&path, bytes).unwrap();
    let o = bpfkit(["disasm".as_ref(), path.as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0: goto +5\n1: exit\n");
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    assert!(stderr(&o).contains("insn 0"), "{}", stderr(&o));
}
