//! Differential test with bpf-to-bpf calls, tail calls and maps: the
//! AArch64 JIT, run under qemu-user, against the interpreter (`bpf-vm`,
//! with its real array map and prog array) on generated program sets,
//! comparing `r0` and the contents of the array map every program adds its
//! results to.
//!
//! The cases come from the shared generator `bpf_isa::arbitrary::calls`,
//! the same stream the x86-64 backend's `differential_calls` test runs:
//! per case a main program whose subprogram tail-calls a random index of a
//! three-slot prog array (slots 0 and 1 filled, 2 empty, index 3 out of
//! range) and two leaf programs, leaf 0 possibly tail-calling itself until
//! the 33-tail-call limit stops it.
//!
//! In the emulator the maps are blocks in the harness's data region: the
//! prog array in the `bpf_jit::JitProgArray` layout, the counter array in
//! the layout the harness's `bpf_map_lookup_elem` (`HarnessHelper::
//! ArrayLookup`, helper id 1) reads. The `ld_imm64` map references resolve
//! to those blocks' addresses. The three images of a case go one after the
//! other into the near code region (helpers reached with `bl`) on even
//! cases and into the far region (`movz/movk` + `blr`) on odd ones.
//! `BPF_DIFF_CASES` overrides the number of cases (default 5,000).

mod common;

use std::sync::Arc;

use bpf_isa::arbitrary::calls::{
    CallCases, COUNTERS_FD, COUNTERS_VALUE_SIZE, DEFAULT_SEED, HELPER_MAP_LOOKUP,
    PROG_ARRAY_ENTRIES, PROG_ARRAY_FD,
};
use bpf_isa::{LdImm64Src, Program};
use bpf_jit::{HelperTable, JitOptions, PROG_ARRAY_MAX_ENTRIES_OFFSET, PROG_ARRAY_SLOTS_OFFSET};
use bpf_jit_arm64::emu::{
    Emulator, HarnessHelper, ARRAY_MAP_MAX_ENTRIES_OFFSET, ARRAY_MAP_VALUES_OFFSET,
    ARRAY_MAP_VALUE_SIZE_OFFSET,
};
use bpf_jit_arm64::Atomics;
use bpf_vm::{Engine, LoadedProgram, Map, MapDef, MapType};
use common::{compile_at, region_base, Region};

/// Runs the three programs on the interpreter with bpf-vm's maps; returns
/// main's `r0` and the counter array's value.
fn run_interp(progs: &[Program; 3]) -> Result<(u64, Vec<u8>), String> {
    let counters = Map::new(MapDef {
        map_type: MapType::Array,
        key_size: 4,
        value_size: COUNTERS_VALUE_SIZE,
        max_entries: 1,
    })
    .map_err(|e| e.to_string())?;
    let pa = Map::new(MapDef {
        map_type: MapType::ProgArray,
        key_size: 4,
        value_size: 4,
        max_entries: PROG_ARRAY_ENTRIES,
    })
    .map_err(|e| e.to_string())?;
    let load = |p: &Program| {
        LoadedProgram::builder(p, Engine::Interp)
            .map(PROG_ARRAY_FD, pa.clone())
            .map(COUNTERS_FD, counters.clone())
            .build()
            .map_err(|e| format!("interp: {e}"))
    };
    let main = load(&progs[0])?;
    let leaves = [load(&progs[1])?, load(&progs[2])?];
    let table = pa.as_prog_array().ok_or("not a prog array")?;
    for (i, l) in leaves.iter().enumerate() {
        table
            .set_program(i as u32, Some(l))
            .map_err(|e| e.to_string())?;
    }
    let mut mem = [0u8; 16];
    // SAFETY: the interpreter checks every memory access.
    let r0 = unsafe { main.run_mem(&mut mem) }.map_err(|e| format!("interp: {e}"))?;
    for i in 0..PROG_ARRAY_ENTRIES {
        let _ = table.set_program(i, None);
    }
    let _: &Arc<Map> = &counters;
    let value = counters
        .lookup(&0u32.to_le_bytes())
        .map_err(|e| e.to_string())?;
    Ok((r0, value))
}

/// Where a case's maps live in the harness's data region, and the reusable
/// buffers that fill them.
struct Arm64Env {
    helpers: HelperTable,
    /// The prog array (`JitProgArray` layout).
    prog_array: u64,
    /// The counter array (the harness's array-map layout).
    counters: u64,
    /// Images of the current case, back to back.
    code: Vec<u8>,
    /// Initial contents of the data block: prog array, then counters.
    data: Vec<u8>,
}

/// Bytes from the prog array to the counter array in the data block.
const COUNTERS_AT: usize = 64;

impl Arm64Env {
    fn new(emu: &Emulator) -> Arm64Env {
        let l = emu.layout();
        let mut helpers = HelperTable::new();
        helpers.insert_address(HELPER_MAP_LOOKUP, l.helper(HarnessHelper::ArrayLookup));
        Arm64Env {
            helpers,
            prog_array: l.data,
            counters: l.data + COUNTERS_AT as u64,
            code: Vec::new(),
            data: vec![0; COUNTERS_AT + ARRAY_MAP_VALUES_OFFSET as usize + 32],
        }
    }

    /// Compiles the three programs back to back at the start of `region`,
    /// fills slots 0 and 1 with the leaves, zeroes the counters, runs main;
    /// returns its `r0` and the counter array's value.
    fn run(
        &mut self,
        emu: &mut Emulator,
        progs: &[Program; 3],
        region: Region,
    ) -> Result<(u64, Vec<u8>), String> {
        let (prog_array, counters) = (self.prog_array, self.counters);
        let resolve = move |_: usize, s: LdImm64Src| match s {
            LdImm64Src::MapFd(PROG_ARRAY_FD) => Some(prog_array),
            LdImm64Src::MapFd(COUNTERS_FD) => Some(counters),
            _ => None,
        };
        let opts = JitOptions::new(&self.helpers).with_ld_imm64(&resolve);
        let base = region_base(emu, region, 0);
        self.code.clear();
        let mut entries = [0u64; 3];
        for (entry, prog) in entries.iter_mut().zip(progs) {
            // Each image starts 16-byte aligned.
            self.code.resize(self.code.len().next_multiple_of(16), 0);
            *entry = base + self.code.len() as u64;
            let code = compile_at(prog, &opts, *entry, Atomics::Lse)?;
            self.code.extend_from_slice(&code.code);
        }
        self.data.fill(0);
        put_u32(
            &mut self.data,
            PROG_ARRAY_MAX_ENTRIES_OFFSET as usize,
            PROG_ARRAY_ENTRIES,
        );
        for (i, leaf) in entries[1..].iter().enumerate() {
            let at = PROG_ARRAY_SLOTS_OFFSET as usize + 8 * i;
            self.data[at..at + 8].copy_from_slice(&leaf.to_le_bytes());
        }
        put_u32(
            &mut self.data,
            COUNTERS_AT + ARRAY_MAP_MAX_ENTRIES_OFFSET as usize,
            1,
        );
        put_u32(
            &mut self.data,
            COUNTERS_AT + ARRAY_MAP_VALUE_SIZE_OFFSET as usize,
            COUNTERS_VALUE_SIZE,
        );
        emu.write(base, &self.code).map_err(|e| e.to_string())?;
        emu.write(self.prog_array, &self.data)
            .map_err(|e| e.to_string())?;
        let r0 = emu
            .call(entries[0], [0; 5])
            .map_err(|e| format!("arm64: {e}"))?;
        let value = emu
            .read(
                self.counters + ARRAY_MAP_VALUES_OFFSET,
                COUNTERS_VALUE_SIZE as usize,
            )
            .map_err(|e| e.to_string())?;
        Ok((r0, value))
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Starts the emulator, or reports the skip (and fails under
/// `BPFKIT_REQUIRE_TOOLS=1`, or when the tools are in fact installed).
fn emulator(what: &str) -> Option<Emulator> {
    let emu = common::emulator(what);
    if emu.is_none() {
        assert!(
            bpf_jit_arm64::emu::tools_available().is_err(),
            "tools installed but the emulator did not start"
        );
    }
    emu
}

#[test]
fn arm64_jit_matches_interpreter_with_calls_tail_calls_and_maps() {
    let Some(mut emu) = emulator("the calls differential test") else {
        return;
    };
    let cases: u64 = std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let mut env = Arm64Env::new(&emu);
    let mut gen = CallCases::new(DEFAULT_SEED);
    let (mut chains, mut mismatches) = (0u64, Vec::new());
    let start = std::time::Instant::now();
    for case in 0..cases {
        let c = gen.next_case();
        let [leaf0, leaf1] = c.leaves;
        let progs = [c.main, leaf0, leaf1];
        let region = if case % 2 == 0 {
            Region::Near
        } else {
            Region::Far
        };
        let want = run_interp(&progs);
        let got = env.run(&mut emu, &progs, region);
        if let Ok((_, m)) = &want {
            // Word 2 counts slot 0's runs: 33 tail calls when it chains.
            chains += u64::from(m.get(16..24) != Some(&[0u8; 8][..]) && c.chains);
        }
        if want != got {
            mismatches.push(format!(
                "case {case} ({region:?}): interp {want:?}, arm64 {got:?}\nmain:\n{}\nleaf0:\n{}\nleaf1:\n{}",
                bpf_isa::fmt_program(&progs[0], &Default::default()),
                bpf_isa::fmt_program(&progs[1], &Default::default()),
                bpf_isa::fmt_program(&progs[2], &Default::default()),
            ));
            if mismatches.len() >= 3 {
                break;
            }
        }
    }
    eprintln!(
        "arm64 differential_calls: {cases} cases, {chains} with a 33-deep tail-call chain, {} mismatches, {:.1} s",
        mismatches.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
    assert!(
        chains > 0 || cases < 20,
        "no case exercised a tail-call chain"
    );
}

/// The harness's array-map lookup against hand-computed addresses: three
/// values of 12 bytes, each padded to 16, after a 16-byte header.
#[test]
fn harness_array_lookup_follows_array_map_semantics() {
    let Some(mut emu) = emulator("the harness array lookup") else {
        return;
    };
    let data = emu.layout().data;
    let (map, key) = (data + 0x100, data + 0x200);
    let mut block = vec![0u8; 16];
    block[0..4].copy_from_slice(&3u32.to_le_bytes());
    block[4..8].copy_from_slice(&12u32.to_le_bytes());
    emu.write(map, &block).expect("map header");
    let f = emu.layout().helper(HarnessHelper::ArrayLookup);
    for (k, want) in [
        (0u32, map + 16),
        (1, map + 32),
        (2, map + 48),
        (3, 0),
        (u32::MAX, 0),
    ] {
        emu.write(key, &k.to_le_bytes()).expect("key");
        let got = emu.call(f, [map, key, 0, 0, 0]).expect("lookup");
        assert_eq!(got, want, "key {k}");
    }
    // Only the low 32 bits of the key word count (the key is a u32).
    emu.write(key, &[1, 0, 0, 0, 7, 0, 0, 0]).expect("key");
    let got = emu.call(f, [map, key, 0, 0, 0]).expect("lookup");
    assert_eq!(got, map + 32);
}
