//! The AArch64 engine (`Engine::Arm64`, under qemu-user) with the
//! runtime's maps, helpers, program arrays and `bpf_loop`: expected values
//! are computed by hand (or documented, for the bench programs), and the
//! interpreter is run alongside as a second witness.
//!
//! Needs `qemu-aarch64` and `aarch64-linux-gnu-gcc`: without them each test
//! says so and returns, except under `BPFKIT_REQUIRE_TOOLS=1`, where it
//! fails.

use std::path::PathBuf;
use std::sync::Arc;

use bpf_isa::Program;

mod common;
use bpf_vm::{Engine, HelperError, HelperRegistry, LoadedProgram, Map, MapType, VmError, XdpMd};
use common::{
    asm, def, self_call, BPF_LOOP_SUM, BPF_LOOP_SUM_RESULT, COUNTER, HASH_ERRNO, HASH_ERRNO_RESULT,
};

/// Enables the shared arena (before any map is created); `false` (with a
/// message) when the emulator's tools are missing.
fn ready(what: &str) -> bool {
    if let Err(e) = bpf_jit_arm64::emu::tools_available() {
        assert!(
            std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "arm64 emulation required (BPFKIT_REQUIRE_TOOLS=1): {e}"
        );
        eprintln!("SKIPPED {what} on arm64: {e}");
        return false;
    }
    bpf_vm::shared::enable().expect("shared arena");
    true
}

fn run(p: &LoadedProgram, mem: &mut [u8]) -> Result<u64, VmError> {
    // SAFETY: the test programs touch only their stack, map values the
    // helpers return (checked for NULL) and `mem`.
    unsafe { p.run_mem(mem) }
}

/// Loads `prog` on the interpreter and on arm64 with `maps` bound by fd.
fn both(
    prog: &Program,
    maps: &[(i32, &Arc<Map>)],
    helpers: impl Fn() -> HelperRegistry,
) -> [LoadedProgram; 2] {
    [Engine::Interp, Engine::Arm64].map(|e| {
        let mut b = LoadedProgram::builder(prog, e).helpers(helpers());
        for (fd, m) in maps {
            b = b.map(*fd, (*m).clone());
        }
        b.build().unwrap_or_else(|err| panic!("{e}: {err}"))
    })
}

#[test]
fn array_map_lookup_and_atomic_add() {
    if !ready("array map") {
        return;
    }
    let m = Map::new(def(MapType::Array, 4, 8, 1)).expect("map");
    let [interp, arm] = both(&asm(COUNTER), &[(1, &m)], HelperRegistry::kernel);
    assert_eq!(arm.engine(), Engine::Arm64);
    assert_eq!(run(&arm, &mut []).expect("arm64"), 1);
    assert_eq!(run(&interp, &mut []).expect("interp"), 2);
    assert_eq!(run(&arm, &mut []).expect("arm64"), 3);
    assert_eq!(
        m.lookup(&0u32.to_le_bytes()),
        Ok(3u64.to_le_bytes().to_vec())
    );
    // A value written from userspace is what the emulated program sees.
    m.update(&0u32.to_le_bytes(), &100u64.to_le_bytes(), 0)
        .expect("update");
    assert_eq!(run(&arm, &mut []).expect("arm64"), 101);
}

#[test]
fn hash_map_update_delete_and_errno() {
    if !ready("hash map") {
        return;
    }
    for engine in [Engine::Interp, Engine::Arm64] {
        let m = Map::new(def(MapType::Hash, 4, 8, 4)).expect("map");
        let p = LoadedProgram::builder(&asm(HASH_ERRNO), engine)
            .map(1, m.clone())
            .build()
            .expect("build");
        assert_eq!(
            run(&p, &mut []).expect("run"),
            HASH_ERRNO_RESULT,
            "{engine}"
        );
        assert_eq!(
            m.lookup(&7u32.to_le_bytes()),
            Ok(9u64.to_le_bytes().to_vec())
        );
    }
}

#[test]
fn helper_closure_reads_the_programs_stack_and_memory() {
    if !ready("helper closure") {
        return;
    }
    // Helper 200: the u64 at r1 (a stack slot) times r2, plus the first
    // byte of the run's memory (r3).
    let reg = || {
        let mut h = HelperRegistry::kernel();
        h.register(200, |cx, a| {
            let mut v = [0u8; 8];
            cx.read(a[0], &mut v)?;
            let mut b = [0u8; 1];
            cx.read(a[2], &mut b)?;
            Ok(u64::from_le_bytes(v) * a[1] + u64::from(b[0]))
        });
        h.register(201, |_, _| Err(HelperError::Other("refused".into())));
        h
    };
    let prog = asm("
        r3 = r1
        r1 = 1234
        *(u64 *)(r10 - 8) = r1
        r1 = r10
        r1 += -8
        r2 = 3
        call 200
        exit");
    let [interp, arm] = both(&prog, &[], reg);
    let mut mem = [7u8, 1, 2];
    assert_eq!(run(&interp, &mut mem.clone()).expect("interp"), 3709);
    assert_eq!(run(&arm, &mut mem).expect("arm64"), 3709);
    // A helper error ends the run with the error.
    let [_, arm] = both(&asm("call 201\nr0 = 5\nexit"), &[], reg);
    let err = run(&arm, &mut []).expect_err("helper error");
    assert!(matches!(err, VmError::Helper { id: 201, .. }), "{err}");
}

#[test]
fn tail_calls_through_a_prog_array_and_their_limit() {
    if !ready("tail calls") {
        return;
    }
    let pa = Map::new(def(MapType::ProgArray, 4, 4, 2)).expect("prog array");
    let counter = Map::new(def(MapType::Array, 4, 8, 1)).expect("counter");
    let slots = pa.as_prog_array().expect("prog array");
    let target = LoadedProgram::builder(&asm("r0 = 42\nexit"), Engine::Arm64)
        .build()
        .expect("target");
    slots.set_program(0, Some(&target)).expect("set");
    let caller = LoadedProgram::builder(
        &asm("r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 1\nexit"),
        Engine::Arm64,
    )
    .map(1, pa.clone())
    .build()
    .expect("caller");
    assert_eq!(run(&caller, &mut []).expect("run"), 42);
    // An empty slot falls through.
    let miss = LoadedProgram::builder(
        &asm("r2 = map[fd:1]\nr3 = 1\ncall 12\nr0 = 1\nexit"),
        Engine::Arm64,
    )
    .map(1, pa.clone())
    .build()
    .expect("miss");
    assert_eq!(run(&miss, &mut []).expect("run"), 1);
    // Counts its executions and tail-calls itself (slot 1): 1 run + 33
    // tail calls (MAX_TAIL_CALL_CNT), then falls through to r0 = 7.
    let selfcall = self_call(1);
    let me = LoadedProgram::builder(&asm(&selfcall), Engine::Arm64)
        .map(1, pa.clone())
        .map(2, counter.clone())
        .build()
        .expect("selfcall");
    slots.set_program(1, Some(&me)).expect("set");
    assert_eq!(run(&me, &mut []).expect("run"), 7);
    assert_eq!(
        counter.lookup(&0u32.to_le_bytes()),
        Ok(34u64.to_le_bytes().to_vec())
    );
    // Clearing the slot: the caller falls through again.
    slots.set_program(0, None).expect("clear");
    assert_eq!(run(&caller, &mut []).expect("run"), 1);
    // An interpreted program cannot be an arm64 program's target: the slot
    // holds no arm64 entry, so the tail call falls through.
    let interp = LoadedProgram::builder(&asm("r0 = 9\nexit"), Engine::Interp)
        .build()
        .expect("interp");
    slots.set_program(0, Some(&interp)).expect("set");
    assert_eq!(run(&caller, &mut []).expect("run"), 1);
    slots.clear();
}

#[test]
fn bpf_loop_calls_back_into_the_emulator() {
    if !ready("bpf_loop") {
        return;
    }
    let [interp, arm] = both(&asm(BPF_LOOP_SUM), &[], HelperRegistry::kernel);
    assert_eq!(run(&interp, &mut []).expect("interp"), BPF_LOOP_SUM_RESULT);
    assert_eq!(run(&arm, &mut []).expect("arm64"), (45 << 8) + 10);
    // A callback returning 1 stops after the first iteration.
    let src = "r1 = 10\nr2 = subprog[cb]\nr3 = 0\nr4 = 0\ncall 181\nexit\ncb: r0 = 1\nexit";
    let [_, arm] = both(&asm(src), &[], HelperRegistry::kernel);
    assert_eq!(run(&arm, &mut []).expect("arm64"), 1);
    // Flags must be zero: -EINVAL.
    let src = "r1 = 10\nr2 = subprog[cb]\nr3 = 0\nr4 = 1\ncall 181\nexit\ncb: r0 = 1\nexit";
    let [_, arm] = both(&asm(src), &[], HelperRegistry::kernel);
    assert_eq!(run(&arm, &mut []).expect("arm64"), -22i64 as u64);
}

#[test]
fn ld_abs_and_faults() {
    if !ready("ld_abs") {
        return;
    }
    // Big-endian 16-bit load at offset 2 of the packet: 0x5678.
    let p = LoadedProgram::builder(&asm("r6 = r1\nr0 = *(u16 *)skb[2]\nexit"), Engine::Arm64)
        .build()
        .expect("build");
    let mut pkt = [0x12u8, 0x34, 0x56, 0x78];
    assert_eq!(run(&p, &mut pkt).expect("run"), 0x5678);
    // A load from address 0 faults in the emulator: an error, and the
    // engine stays usable.
    let bad = LoadedProgram::builder(&asm("r1 = 0\nr0 = *(u64 *)(r1 + 0)\nexit"), Engine::Arm64)
        .build()
        .expect("build");
    let err = run(&bad, &mut []).expect_err("fault");
    assert!(matches!(err, VmError::Emulator(_)), "{err}");
    assert_eq!(run(&p, &mut pkt).expect("run after a fault"), 0x5678);
}

#[test]
fn xdp_bench_programs_give_the_documented_results() {
    if !ready("bench XDP") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench");
    let packet = std::fs::read(dir.join("packet.bin")).expect("../shared/bench/packet.bin");
    // /work/shared/bench/README.md, "Expected results on packet.bin".
    let expected = [
        ("csum", 0x0000c00du64, 0x000000000000c00du64),
        ("fnv1a", 0x0a450ec1, 0xa11f2fd80a450ec1),
        ("parse_hash", 0x1687ee41, 0x637a74541687ee41),
        ("sort", 0xde403c4f, 0xe23b005bde403c4f),
        ("calls", 0x50c9e376, 0x5698e0d850c9e376),
        ("alu", 0xfc406f69, 0x2eee90eafc406f69),
    ];
    for (name, xdp, mem) in expected {
        let bytes = std::fs::read(dir.join(format!("build/{name}.v3.o"))).expect("object");
        let obj = bpf_object::Object::parse(&bytes).expect("parse");
        for (section, want) in [("xdp", xdp), ("mem", mem)] {
            let prog = obj
                .programs_in_section(section)
                .next()
                .unwrap_or_else(|| panic!("{name}: no {section} program"));
            let p = LoadedProgram::builder(&prog.insns, Engine::Arm64)
                .build()
                .unwrap_or_else(|e| panic!("{name}/{section}: {e}"));
            let mut pkt = packet.clone();
            // SAFETY: the bench programs are verified by the kernel (README).
            let r = unsafe {
                if section == "xdp" {
                    p.run_xdp(&mut pkt, &XdpMd::default())
                } else {
                    p.run_mem(&mut pkt)
                }
            }
            .unwrap_or_else(|e| panic!("{name}/{section}: {e}"));
            let r = if section == "xdp" { r & 0xffff_ffff } else { r };
            assert_eq!(r, want, "{name}/{section}");
        }
    }
}

#[test]
fn runs_from_several_threads_share_the_maps() {
    if !ready("threads") {
        return;
    }
    let m = Map::new(def(MapType::Array, 4, 8, 1)).expect("map");
    let p = LoadedProgram::builder(&asm(COUNTER), Engine::Arm64)
        .map(1, m.clone())
        .build()
        .expect("build");
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    assert!(run(&p, &mut []).expect("run") >= 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(
        m.lookup(&0u32.to_le_bytes()),
        Ok(60u64.to_le_bytes().to_vec())
    );
}
