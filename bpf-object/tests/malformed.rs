//! Malformed objects: every example object truncated at many lengths, with
//! hundreds of seeded random byte flips, and with targeted damage (wrong
//! machine, relocation out of range, missing symbol, bad BTF). Parsing must
//! return an error or a result, never panic; targeted damage must give the
//! matching typed error.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bpf_object::{BtfError, Object, ObjectError};
use object::read::elf::{FileHeader, SectionHeader};
use object::{elf, LittleEndian as LE};

fn examples() -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert!(out.len() >= 7, "expected the example objects in {dir}");
    out
}

/// Parses, turning a panic into a test failure that names the mutation.
fn parse_no_panic(bytes: &[u8], what: &dyn Fn() -> String) -> Result<Object, ObjectError> {
    match catch_unwind(AssertUnwindSafe(|| Object::parse(bytes))) {
        Ok(r) => r,
        Err(_) => panic!("Object::parse panicked on {}", what()),
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_at_every_length_is_an_error() {
    for (name, bytes) in examples() {
        assert!(Object::parse(&bytes).is_ok(), "{name} must parse whole");
        // Section headers sit at the end, so every proper prefix loses them.
        for len in 0..bytes.len() {
            let r = parse_no_panic(&bytes[..len], &|| {
                format!("{name} truncated to {len} bytes")
            });
            assert!(r.is_err(), "{name} truncated to {len} bytes parsed");
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let mut outcomes = (0usize, 0usize);
    for (name, bytes) in examples() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ bytes.len() as u64);
        for round in 0..600 {
            let mut m = bytes.clone();
            let flips = 1 + (rng.next() % 8) as usize;
            let mut log = Vec::new();
            for _ in 0..flips {
                let pos = (rng.next() % m.len() as u64) as usize;
                let val = (rng.next() >> 24) as u8;
                m[pos] = val;
                log.push((pos, val));
            }
            let r = parse_no_panic(&m, &|| format!("{name} round {round}: bytes set {log:?}"));
            if r.is_ok() {
                outcomes.0 += 1
            } else {
                outcomes.1 += 1
            }
        }
    }
    eprintln!("byte flips: {} parsed, {} rejected", outcomes.0, outcomes.1);
    // Most flips land in debug info and are harmless; some must be caught.
    assert!(outcomes.1 > 0);
}

/// Flips bytes only inside the sections this crate reads (headers, symbols,
/// relocations, code, maps, BTF), where damage is most likely to matter.
#[test]
fn flips_in_interesting_sections_never_panic() {
    let mut rejected = 0;
    for (name, bytes) in examples() {
        let ranges = interesting_ranges(&bytes);
        let mut rng = XorShift(0x1234_5678_9abc_def1 ^ bytes.len() as u64);
        for round in 0..600 {
            let mut m = bytes.clone();
            let (start, end) = ranges[(rng.next() % ranges.len() as u64) as usize];
            if end <= start {
                continue;
            }
            let pos = start + (rng.next() % (end - start) as u64) as usize;
            let val = (rng.next() >> 24) as u8;
            m[pos] = val;
            let r = parse_no_panic(&m, &|| {
                format!("{name} round {round}: byte {pos} set to {val:#x}")
            });
            rejected += r.is_err() as usize;
        }
    }
    eprintln!("targeted flips rejected: {rejected}");
    assert!(rejected > 0);
}

fn sections(bytes: &[u8]) -> Vec<(String, u32, usize, usize)> {
    let h = elf::FileHeader64::<LE>::parse(bytes).unwrap();
    let e = h.endian().unwrap();
    let table = h.sections(e, bytes).unwrap();
    table
        .iter()
        .map(|s| {
            let name = String::from_utf8_lossy(table.section_name(e, s).unwrap()).into_owned();
            (
                name,
                s.sh_type(e).0,
                s.sh_offset(e) as usize,
                s.sh_size(e) as usize,
            )
        })
        .collect()
}

fn interesting_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut r = vec![(0, 64)];
    let h = elf::FileHeader64::<LE>::parse(bytes).unwrap();
    let e = h.endian().unwrap();
    let shoff = h.e_shoff(e) as usize;
    r.push((shoff, bytes.len()));
    for (name, ty, off, size) in sections(bytes) {
        if name.starts_with(".debug") || ty == 8 {
            continue;
        }
        r.push((off, (off + size).min(bytes.len())));
    }
    r
}

fn find(bytes: &[u8], want: &str) -> (usize, usize) {
    let (_, _, off, size) = sections(bytes)
        .into_iter()
        .find(|s| s.0 == want)
        .unwrap_or_else(|| panic!("no section {want}"));
    (off, size)
}

fn load(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../examples/{name}.o",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn wrong_machine() {
    let mut b = load("xdp_pass");
    // e_machine is the u16 at offset 18; 62 is EM_X86_64.
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    assert_eq!(Object::parse(&b), Err(ObjectError::WrongMachine(62)));
}

#[test]
fn not_elf_big_endian_and_32_bit() {
    assert_eq!(
        Object::parse(b"hello").unwrap_err(),
        ObjectError::Unsupported("not an ELF file")
    );
    let mut b = load("xdp_pass");
    b[5] = 2;
    assert_eq!(
        Object::parse(&b).unwrap_err(),
        ObjectError::Unsupported("not a little-endian ELF file")
    );
    let mut b = load("xdp_pass");
    b[4] = 1;
    assert_eq!(
        Object::parse(&b).unwrap_err(),
        ObjectError::Unsupported("not a 64-bit ELF file")
    );
}

#[test]
fn relocation_out_of_range() {
    let mut b = load("global_data");
    // First Elf64_Rel of .relkprobe/do_sys_openat2: r_offset (u64) then r_info.
    let (off, _) = find(&b, ".relkprobe/do_sys_openat2");
    b[off..off + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::RelocationOutOfRange {
            offset: 0x10_0000,
            ..
        })
    ));
    // misaligned
    let mut b = load("global_data");
    b[off..off + 8].copy_from_slice(&0x3bu64.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::RelocationOutOfRange { offset: 0x3b, .. })
    ));
}

#[test]
fn missing_symbol() {
    let mut b = load("subprogs");
    let (off, _) = find(&b, ".reltc");
    // r_info = (sym << 32) | type; point the first relocation at symbol 999.
    let info = (999u64 << 32) | 10;
    b[off + 8..off + 16].copy_from_slice(&info.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::BadSymbol { index: 999, .. })
    ));
}

#[test]
fn relocation_of_wrong_type() {
    let mut b = load("subprogs");
    let (off, _) = find(&b, ".reltc");
    let info = u64::from_le_bytes(b[off + 8..off + 16].try_into().unwrap());
    let info = (info & !0xffff_ffff) | 3; // R_BPF_64_ABS32 on a call
    b[off + 8..off + 16].copy_from_slice(&info.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::UnsupportedRelocation {
            r_type: 3,
            insn: 2,
            ..
        })
    ));
}

#[test]
fn call_target_outside_functions() {
    let mut b = load("subprogs");
    // classify_a slot 2 is `call 0x3` against .text; make it 0x1000.
    let (off, _) = find(&b, "tc");
    let at = off + 2 * 8 + 4;
    b[at..at + 4].copy_from_slice(&0x1000i32.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::BadCallTarget {
            insn: 2,
            target: 0x1001,
            ..
        })
    ));
}

#[test]
fn data_offset_out_of_range() {
    let mut b = load("global_data");
    // trace_close slot 3: `r1 = 0x10 ll` against .rodata.str1.1 (37 bytes); make it 0x100.
    let (off, _) = find(&b, "tracepoint/syscalls/sys_enter_close");
    let at = off + 3 * 8 + 4;
    b[at..at + 4].copy_from_slice(&0x100i32.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::DataOffsetOutOfRange {
            insn: 3,
            offset: 0x100,
            size: 37,
            ..
        })
    ));
}

#[test]
fn bad_instruction_names_the_slot() {
    let mut b = load("xdp_pass");
    let (off, _) = find(&b, "xdp");
    b[off + 8] = 0xff; // second insn (exit) -> unknown opcode
    match Object::parse(&b) {
        Err(ObjectError::Decode { program, error }) => {
            assert_eq!(program, "xdp_pass");
            assert_eq!(error.index, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_btf() {
    let (off, _) = find(&load("btf_maps"), ".BTF");
    let mut b = load("btf_maps");
    b[off] ^= 0xff; // magic
    assert_eq!(
        Object::parse(&b),
        Err(ObjectError::Btf(BtfError::BadHeader("bad magic")))
    );

    // type_len (header u32 at 12) larger than the section
    let mut b = load("btf_maps");
    b[off + 12..off + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Object::parse(&b),
        Err(ObjectError::Btf(BtfError::BadHeader(_)))
    ));

    // The first type's kind set to 31 (unknown): info is the u32 at type area + 4.
    let mut b = load("btf_maps");
    let hdr_len = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
    let type_off = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
    let info_at = off + hdr_len + type_off + 4;
    b[info_at + 3] = 31;
    assert_eq!(
        Object::parse(&b),
        Err(ObjectError::Btf(BtfError::UnknownKind { id: 1, kind: 31 }))
    );

    // .maps without .BTF: rename the .BTF section (its name in .strtab).
    let mut b = load("btf_maps");
    let pos = b
        .windows(6)
        .position(|w| w == b".BTF\0.")
        .or_else(|| b.windows(5).position(|w| w == b".BTF\0"));
    let pos = pos.expect(".BTF name");
    b[pos + 1] = b'X';
    assert_eq!(Object::parse(&b), Err(ObjectError::MissingBtf));
}

#[test]
fn legacy_maps_section_that_does_not_divide() {
    let mut b = load("legacy_maps");
    // Shrink `maps` (40 bytes, 2 symbols) to 39 via its section header's sh_size.
    let h = elf::FileHeader64::<LE>::parse(b.as_slice()).unwrap();
    let e = h.endian().unwrap();
    let shoff = h.e_shoff(e) as usize;
    let idx = sections(&b).iter().position(|s| s.0 == "maps").unwrap();
    let size_at = shoff + idx * 64 + 32;
    assert_eq!(
        u64::from_le_bytes(b[size_at..size_at + 8].try_into().unwrap()),
        40
    );
    b[size_at..size_at + 8].copy_from_slice(&39u64.to_le_bytes());
    assert_eq!(
        Object::parse(&b),
        Err(ObjectError::BadLegacyMaps { size: 39, count: 2 })
    );
}

/// A NOBITS `.bss` whose `sh_size` claims gigabytes (found by the `elf` fuzz
/// target as a 4 GB allocation) is a typed error, not an allocation.
#[test]
fn huge_bss_is_rejected_without_allocating() {
    let mut b = load("global_data");
    let h = elf::FileHeader64::<LE>::parse(&*b).unwrap();
    let e = h.endian().unwrap();
    let shoff = h.e_shoff(e) as usize;
    let shentsize = h.e_shentsize(e) as usize;
    let idx = sections(&b)
        .iter()
        .position(|s| s.0 == ".bss")
        .expect("global_data.o has a .bss section");
    // sh_size is at offset 32 of an Elf64_Shdr.
    let at = shoff + idx * shentsize + 32;
    b[at..at + 8].copy_from_slice(&4_143_972_336u64.to_le_bytes());
    match Object::parse(&b) {
        Err(ObjectError::BadSection { index, reason }) => {
            assert_eq!(index, idx);
            assert!(reason.contains("4 MiB"), "{reason}");
        }
        other => panic!("expected BadSection for .bss, got {other:?}"),
    }
}
