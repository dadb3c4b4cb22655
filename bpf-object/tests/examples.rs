//! Parses the committed example objects (`examples/*.o` at the repository
//! root, built from the `.c` next to them with `clang-19 -O2 -g -target bpf`)
//! and checks programs, maps and relocations against facts read from
//! `llvm-readelf-19 -s -S` and `llvm-objdump-19 -d -r` of those objects and
//! from the C sources. If the objects are rebuilt with another clang, the
//! instruction counts and slots below may need re-reading from those tools.

use bpf_isa::{CallTarget, Insn, LdImm64Src};
use bpf_object::{
    map_flags, map_type, DataKind, MapKind, ObjProgram, Object, ProgType, RelocKind, SectionKind,
};

fn load(name: &str) -> Object {
    let path = format!("{}/../examples/{name}.o", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Object::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn prog<'a>(obj: &'a Object, name: &str) -> &'a ObjProgram {
    obj.program(name)
        .unwrap_or_else(|| panic!("no program {name}"))
}

/// Checks that hold for every linked program: functions tile the program,
/// every call/function reference lands on the start of a placed function and
/// the instruction says so, map references point at existing maps.
fn check_linked(obj: &Object, p: &ObjProgram) {
    let mut next = 0;
    for f in &p.functions {
        assert_eq!(f.start, next, "{}: functions must tile the program", p.name);
        next += f.len;
    }
    assert_eq!(next, p.insns.slot_len(), "{}", p.name);
    assert_eq!(p.functions[0].name, p.name);
    for r in &p.relocations {
        let insn = p.insns.get(bpf_isa::InsnIdx::from_u32(r.insn as u32));
        match r.kind {
            RelocKind::Call { target } => {
                assert!(p
                    .functions
                    .iter()
                    .any(|f| f.start == target && f.name == r.symbol));
                let want = target as i32 - r.insn as i32 - 1;
                assert_eq!(
                    insn,
                    Some(&Insn::Call(CallTarget::Local(want))),
                    "{}",
                    p.name
                );
            }
            RelocKind::FuncAddr { target } => {
                assert!(p
                    .functions
                    .iter()
                    .any(|f| f.start == target && f.name == r.symbol));
                let want = target as i32 - r.insn as i32 - 1;
                assert!(
                    matches!(insn, Some(Insn::LdImm64 { src: LdImm64Src::Func(o), .. }) if *o == want)
                );
            }
            RelocKind::Map { map } => {
                assert_eq!(obj.maps[map].name, r.symbol);
                assert!(
                    matches!(insn, Some(Insn::LdImm64 { src: LdImm64Src::MapIdx(i), .. }) if *i as usize == map)
                );
            }
            RelocKind::MapValue { map, offset } => {
                assert!(matches!(obj.maps[map].kind, MapKind::GlobalData(_)));
                assert!((offset as usize) < obj.maps[map].value_size as usize);
                assert!(matches!(insn,
                    Some(Insn::LdImm64 { src: LdImm64Src::MapIdxValue { idx, off }, .. })
                        if *idx as usize == map && *off == offset));
            }
            RelocKind::Extern => {}
        }
    }
    // Every local call in the program is one the linker resolved.
    let calls = p
        .insns
        .iter()
        .filter(|(_, i)| matches!(i, Insn::Call(CallTarget::Local(_))))
        .count();
    let resolved = p
        .relocations
        .iter()
        .filter(|r| matches!(r.kind, RelocKind::Call { .. }))
        .count();
    assert_eq!(calls, resolved, "{}", p.name);
}

#[test]
fn xdp_pass() {
    let obj = load("xdp_pass");
    assert_eq!(obj.license.as_deref(), Some("GPL"));
    assert_eq!(obj.kernel_version, None);
    assert!(obj.maps.is_empty());
    assert_eq!(obj.programs.len(), 1);
    let p = prog(&obj, "xdp_pass");
    assert_eq!(p.section, "xdp");
    assert_eq!(p.prog_type, ProgType::Xdp);
    // llvm-objdump: b7 00 00 00 02 00 00 00 (r0 = 2), 95 00 .. (exit)
    assert_eq!(
        p.insns.to_bytes(),
        [0xb7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
    );
    assert!(p.relocations.is_empty());
    check_linked(&obj, p);
}

#[test]
fn subprograms_are_linked_like_libbpf() {
    let obj = load("subprogs");
    assert_eq!(obj.programs.len(), 3);
    // Two programs share section "tc" (symbols classify_a 40 bytes, classify_b 64 bytes).
    let tc: Vec<_> = obj
        .programs_in_section("tc")
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(tc, ["classify_a", "classify_b"]);
    for p in &obj.programs {
        check_linked(&obj, p);
    }

    // classify_a (5 slots) calls static mix (.text+0x20, 48 bytes) via R_BPF_64_32 against .text.
    let a = prog(&obj, "classify_a");
    assert_eq!(a.prog_type, ProgType::SchedCls);
    let layout: Vec<_> = a
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(layout, [("classify_a", 0, 5), ("mix", 5, 6)]);
    // objdump: slot 2 `call 0x3` -> now points at slot 5.
    assert_eq!(a.insns.get(idx(2)), Some(&Insn::Call(CallTarget::Local(2))));

    // classify_b (8 slots) calls rotate_add (.text, 40 bytes), global_sum (32 bytes, relocated
    // against its own symbol with imm -1); rotate_add calls mix with no relocation (same section).
    let b = prog(&obj, "classify_b");
    let layout: Vec<_> = b
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(
        layout,
        [
            ("classify_b", 0, 8),
            ("rotate_add", 8, 5),
            ("global_sum", 13, 4),
            ("mix", 17, 6)
        ]
    );
    let calls: Vec<_> = b
        .relocations
        .iter()
        .map(|r| (r.insn, r.symbol.as_str(), r.kind))
        .collect();
    assert_eq!(
        calls,
        [
            (2, "rotate_add", RelocKind::Call { target: 8 }),
            (5, "global_sum", RelocKind::Call { target: 13 }),
            // rotate_add's `call -0x9` (its slot 2 -> 8 + 2 = 10)
            (10, "mix", RelocKind::Call { target: 17 }),
        ]
    );
    // mix starts with `r0 = r2` (objdump: bf 20) wherever it is placed.
    let mov = Insn::Alu {
        width: bpf_isa::Width::W64,
        op: bpf_isa::AluOp::Mov,
        dst: bpf_isa::Reg::R0,
        src: bpf_isa::Source::Reg(bpf_isa::Reg::R2),
    };
    assert_eq!(a.insns.get(idx(5)), Some(&mov));
    assert_eq!(b.insns.get(idx(17)), Some(&mov));

    let s = prog(&obj, "sock_filter");
    assert_eq!(s.prog_type, ProgType::SocketFilter);
    assert_eq!(s.insns.slot_len(), 4 + 4);
    assert_eq!(s.relocations[0].kind, RelocKind::Call { target: 4 });
}

fn idx(slot: u32) -> bpf_isa::InsnIdx {
    bpf_isa::InsnIdx::from_u32(slot)
}

#[test]
fn legacy_maps_and_version() {
    let obj = load("legacy_maps");
    assert_eq!(obj.license.as_deref(), Some("Dual MIT/GPL"));
    assert_eq!(obj.kernel_version, Some(0x060c00));
    let m: Vec<_> = obj
        .maps
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.kind,
                m.map_type,
                m.key_size,
                m.value_size,
                m.max_entries,
                m.flags,
            )
        })
        .collect();
    assert_eq!(
        m,
        [
            ("packet_count", MapKind::Legacy, map_type::ARRAY, 4, 8, 4, 0),
            (
                "seen_marks",
                MapKind::Legacy,
                map_type::HASH,
                4,
                4,
                256,
                map_flags::NO_PREALLOC
            ),
        ]
    );
    let p = prog(&obj, "count_packets");
    assert_eq!(p.insns.slot_len(), 208 / 8);
    let r: Vec<_> = p.relocations.iter().map(|r| (r.insn, r.kind)).collect();
    // objdump: R_BPF_64_64 at 0x30 (slot 6) packet_count, 0xa0 (slot 20) seen_marks
    assert_eq!(
        r,
        [
            (6, RelocKind::Map { map: 0 }),
            (20, RelocKind::Map { map: 1 })
        ]
    );
    check_linked(&obj, p);
    let kinds: Vec<_> = obj
        .sections
        .iter()
        .filter(|s| s.name == "maps" || s.name == "version")
        .map(|s| s.kind)
        .collect();
    assert_eq!(kinds, [SectionKind::LegacyMaps, SectionKind::Version]);
}

#[test]
fn btf_defined_maps() {
    let obj = load("btf_maps");
    let m: Vec<_> = obj
        .maps
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.kind,
                m.map_type,
                m.key_size,
                m.value_size,
                m.max_entries,
                m.flags,
            )
        })
        .collect();
    assert_eq!(
        m,
        [
            // struct flow_key: 4+4+2+2+1, padded to 16; struct flow_stats: 3 * 8
            (
                "flows",
                MapKind::Btf,
                map_type::HASH,
                16,
                24,
                4096,
                map_flags::NO_PREALLOC
            ),
            // typedef'd u32 key, u64[2] value; pinning ignored
            (
                "counters",
                MapKind::Btf,
                map_type::PERCPU_ARRAY,
                4,
                16,
                8,
                0
            ),
            // explicit key_size / value_size
            ("recent", MapKind::Btf, map_type::LRU_HASH, 8, 16, 128, 0),
        ]
    );
    let p = prog(&obj, "track_flows");
    assert_eq!(p.insns.slot_len(), 792 / 8);
    let r: Vec<_> = p
        .relocations
        .iter()
        .map(|r| (r.insn, r.symbol.as_str(), r.kind))
        .collect();
    assert_eq!(
        r,
        [
            (46, "flows", RelocKind::Map { map: 0 }),
            (70, "flows", RelocKind::Map { map: 0 }),
            (76, "counters", RelocKind::Map { map: 1 }),
            (93, "recent", RelocKind::Map { map: 2 }),
        ]
    );
    check_linked(&obj, p);
}

#[test]
fn global_data() {
    let obj = load("global_data");
    let m: Vec<_> = obj
        .maps
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.kind,
                m.map_type,
                m.key_size,
                m.value_size,
                m.max_entries,
                m.flags,
            )
        })
        .collect();
    // readelf: .data 0xc, .rodata 0x10, .bss 0x10 (NOBITS), .rodata.str1.1 0x25 bytes.
    let ro = map_flags::RDONLY_PROG;
    assert_eq!(
        m,
        [
            ("last_call", MapKind::Btf, map_type::HASH, 4, 8, 1024, 0),
            (
                ".data",
                MapKind::GlobalData(DataKind::Data),
                map_type::ARRAY,
                4,
                12,
                1,
                0
            ),
            (
                ".rodata",
                MapKind::GlobalData(DataKind::Rodata),
                map_type::ARRAY,
                4,
                16,
                1,
                ro
            ),
            (
                ".bss",
                MapKind::GlobalData(DataKind::Bss),
                map_type::ARRAY,
                4,
                16,
                1,
                0
            ),
            (
                ".rodata.str1.1",
                MapKind::GlobalData(DataKind::Rodata),
                map_type::ARRAY,
                4,
                37,
                1,
                ro
            ),
        ]
    );
    // Initial values from the C source: call_count = 7 at 0, sample_every = 3 at 8;
    // target_pid = 42 at 0, min_gap_ns = 1000 at 8; .bss all zero.
    let data = obj.maps[1].initial_data.as_deref().unwrap();
    assert_eq!(data, [7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
    let rodata = obj.maps[2].initial_data.as_deref().unwrap();
    assert_eq!(&rodata[..4], 42u32.to_le_bytes());
    assert_eq!(&rodata[8..], 1000u64.to_le_bytes());
    assert_eq!(obj.maps[3].initial_data.as_deref(), Some(&[0u8; 16][..]));
    let strs = obj.maps[4].initial_data.as_deref().unwrap();
    assert_eq!(strs, b"open by pid %u\n\0close, dropped %llu\n\0");
    assert!(obj.maps[0].initial_data.is_none());

    let open = prog(&obj, "trace_open");
    assert_eq!(open.prog_type, ProgType::Kprobe);
    assert_eq!(open.attach_to.as_deref(), Some("do_sys_openat2"));
    assert_eq!(open.insns.slot_len(), 472 / 8);
    let r: Vec<_> = open
        .relocations
        .iter()
        .map(|r| (r.insn, r.symbol.as_str(), r.kind))
        .collect();
    // objdump -r of kprobe/do_sys_openat2; offsets = symbol value (+ imm for section symbols)
    assert_eq!(
        r,
        [
            (7, "target_pid", RelocKind::MapValue { map: 2, offset: 0 }),
            (11, "call_count", RelocKind::MapValue { map: 1, offset: 0 }),
            (18, "last_call", RelocKind::Map { map: 0 }),
            (24, "min_gap_ns", RelocKind::MapValue { map: 2, offset: 8 }),
            (28, ".bss", RelocKind::MapValue { map: 3, offset: 0 }), // static `dropped`
            (
                33,
                "total_gap_ns",
                RelocKind::MapValue { map: 3, offset: 8 }
            ),
            (42, "last_call", RelocKind::Map { map: 0 }),
            (
                46,
                "sample_every",
                RelocKind::MapValue { map: 1, offset: 8 }
            ),
            (
                53,
                ".rodata.str1.1",
                RelocKind::MapValue { map: 4, offset: 0 }
            ),
        ]
    );
    // Helper calls stay helper calls: get_current_pid_tgid (14), ktime_get_ns (5),
    // map_lookup_elem (1), map_update_elem (2), trace_printk (6).
    let helpers: Vec<i32> = open
        .insns
        .iter()
        .filter_map(|(_, i)| match i {
            Insn::Call(CallTarget::Helper(h)) => Some(*h),
            _ => None,
        })
        .collect();
    assert_eq!(helpers, [14, 5, 1, 2, 6]);
    check_linked(&obj, open);

    let close = prog(&obj, "trace_close");
    assert_eq!(close.prog_type, ProgType::Tracepoint);
    assert_eq!(close.attach_to.as_deref(), Some("syscalls/sys_enter_close"));
    // `r1 = 0x10 ll` against .rodata.str1.1: the second string, at offset 16.
    assert_eq!(
        close.relocations[1].kind,
        RelocKind::MapValue { map: 4, offset: 16 }
    );
    check_linked(&obj, close);
}

#[test]
fn tail_calls() {
    let obj = load("tail_calls");
    assert_eq!(obj.maps.len(), 1);
    let jt = &obj.maps[0];
    assert_eq!(
        (
            jt.name.as_str(),
            jt.map_type,
            jt.key_size,
            jt.value_size,
            jt.max_entries
        ),
        ("jump_table", map_type::PROG_ARRAY, 4, 4, 4)
    );
    let names: Vec<_> = obj
        .programs
        .iter()
        .map(|p| (p.name.as_str(), p.section.as_str(), p.insns.slot_len()))
        .collect();
    // symbol sizes 16, 56, 80 bytes
    assert_eq!(
        names,
        [
            ("handle_small", "socket/1", 2),
            ("handle_large", "socket/2", 7),
            ("dispatch", "socket", 10)
        ]
    );
    let d = prog(&obj, "dispatch");
    assert_eq!(d.relocations[0].insn, 4);
    assert_eq!(d.relocations[0].kind, RelocKind::Map { map: 0 });
    assert!(d
        .insns
        .iter()
        .any(|(_, i)| *i == Insn::Call(CallTarget::Helper(12))));
    for p in &obj.programs {
        assert_eq!(p.prog_type, ProgType::SocketFilter);
        check_linked(&obj, p);
    }
}

#[test]
fn mem_program() {
    let obj = load("mem");
    let p = prog(&obj, "mem_sum");
    assert_eq!(p.prog_type, ProgType::Mem);
    assert_eq!(p.prog_type.kernel_id(), None);
    // mem_sum 112 bytes + fnv1a 128 bytes; `call -0x1` against .text at slot 11
    let layout: Vec<_> = p
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(layout, [("mem_sum", 0, 14), ("fnv1a", 14, 16)]);
    assert_eq!(p.relocations[0].insn, 11);
    assert_eq!(p.relocations[0].kind, RelocKind::Call { target: 14 });
    check_linked(&obj, p);
}

#[test]
fn callbacks_become_pseudo_func() {
    let obj = load("callbacks");
    let p = prog(&obj, "looper");
    // looper 160 bytes; step at .text+0 (56), step2 at .text+0x38 (56), pad at .text+0x70 (24)
    let layout: Vec<_> = p
        .functions
        .iter()
        .map(|f| (f.name.as_str(), f.start, f.len))
        .collect();
    assert_eq!(
        layout,
        [
            ("looper", 0, 20),
            ("step", 20, 7),
            ("step2", 27, 7),
            ("pad", 34, 3)
        ]
    );
    let r: Vec<_> = p
        .relocations
        .iter()
        .map(|r| (r.insn, r.symbol.as_str(), r.kind))
        .collect();
    assert_eq!(
        r,
        [
            (5, "step", RelocKind::FuncAddr { target: 20 }),
            (11, "step2", RelocKind::FuncAddr { target: 27 }),
            (17, "pad", RelocKind::Call { target: 34 }),
        ]
    );
    let loops = p
        .insns
        .iter()
        .filter(|(_, i)| **i == Insn::Call(CallTarget::Helper(181)))
        .count();
    assert_eq!(loops, 2);
    check_linked(&obj, p);
}

/// The benchmark objects in ../shared/bench/build (built by its build.sh).
#[test]
fn bench_objects() {
    let dir = format!("{}/../../shared/bench/build", env!("CARGO_MANIFEST_DIR"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        skip(&format!("{dir} is absent; bench objects not checked"));
        return;
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no objects in {dir}");
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        let obj = Object::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let base = stem.split('.').next().unwrap();
        // bench.h: one xdp and one mem entry point per file, GPL license.
        assert_eq!(obj.license.as_deref(), Some("GPL"));
        let xdp = prog(&obj, &format!("{base}_xdp"));
        let mem = prog(&obj, &format!("{base}_mem"));
        assert_eq!(xdp.prog_type, ProgType::Xdp);
        assert_eq!(mem.prog_type, ProgType::Mem);
        for p in [xdp, mem] {
            check_linked(&obj, p);
            if base == "calls" {
                // calls.c: two noinline .text subprograms, each called once per loop
                let subs: Vec<_> = p.functions[1..]
                    .iter()
                    .map(|f| (f.name.as_str(), f.section.as_str()))
                    .collect();
                assert_eq!(
                    subs,
                    [("calls_f1", ".text"), ("calls_f2", ".text")],
                    "{stem}"
                );
                assert_eq!(p.relocations.len(), 2);
            } else {
                assert_eq!(p.functions.len(), 1, "{stem}");
            }
        }
    }
    eprintln!("parsed {} bench objects", paths.len());
}

/// Global variable symbols, from `llvm-objdump-19 -t examples/global_data.o`
/// (`O` symbols in `.data`, `.rodata`, `.bss`; `dropped` is the static one).
#[test]
fn global_data_variables() {
    let obj = load("global_data");
    let map_of = |section: &str| obj.map(section).map(|(i, _)| i).expect(section);
    let expect = [
        ("dropped", ".bss", 0, 8),
        ("target_pid", ".rodata", 0, 4),
        ("call_count", ".data", 0, 8),
        ("min_gap_ns", ".rodata", 8, 8),
        ("total_gap_ns", ".bss", 8, 8),
        ("sample_every", ".data", 8, 4),
    ];
    let mut names: Vec<&str> = obj.globals.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> = expect.iter().map(|e| e.0).collect();
    want.sort_unstable();
    assert_eq!(
        names, want,
        "the `.maps` and `license` objects are not globals"
    );
    for (name, section, offset, size) in expect {
        let g = obj
            .global(name)
            .unwrap_or_else(|| panic!("no global {name}"));
        assert_eq!(
            (g.map, g.offset, g.size),
            (map_of(section), offset, size),
            "{name}"
        );
    }
    // Initial values from the C source: call_count = 7, sample_every = 3.
    let data = obj.maps[map_of(".data")]
        .initial_data
        .as_deref()
        .expect("data");
    assert_eq!(data.get(0..8), Some(&7u64.to_le_bytes()[..]));
    assert_eq!(data.get(8..12), Some(&3u32.to_le_bytes()[..]));
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
