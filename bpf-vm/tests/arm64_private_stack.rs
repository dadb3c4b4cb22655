//! Private stacks on the AArch64 engine (`Engine::Arm64` with
//! `LoadBuilder::private_stack`, under qemu-user): the recursion-through-
//! tail-call scenario (hand value from `scenarios::tail_recursion_expected`),
//! a helper that reads a key from the private frame and a map access, and
//! the guard words.
//!
//! Needs `qemu-aarch64` and `aarch64-linux-gnu-gcc`: without them each test
//! says so and returns, except under `BPFKIT_REQUIRE_TOOLS=1`, where it
//! fails.

use std::sync::Arc;

use bpf_isa::arbitrary::scenarios::{
    tail_recursion_expected, TAIL_RECURSION as SCENARIO, TAIL_RECURSION_LEVELS as LEVELS,
};
use bpf_vm::{Engine, HelperRegistry, LoadedProgram, Map, MapType, VmError};

mod common;
use common::{asm, def, prog_array, COUNTER};

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

/// Loads the scenario on arm64 (private stack or not), installs it in its
/// own prog array and runs it: (r0, level counter).
fn run_scenario(private: bool) -> Result<(u64, u64), VmError> {
    let pa: Arc<Map> = prog_array(1);
    let p = LoadedProgram::builder(&asm(SCENARIO), Engine::Arm64)
        .map(1, pa.clone())
        .stack_depths(vec![64, 32])
        .private_stack(private)
        .build()?;
    let arr = pa.as_prog_array().expect("prog array");
    arr.set_program(0, Some(&p)).expect("set");
    let mut mem = [0u8; 8];
    // SAFETY: the program touches its stack and the 8-byte context only.
    let r = unsafe { p.run_mem(&mut mem) };
    arr.set_program(0, None).expect("clear");
    Ok((r?, u64::from_le_bytes(mem)))
}

#[test]
fn recursion_through_tail_calls_on_a_private_stack() {
    if !ready("tail recursion") {
        return;
    }
    let want = tail_recursion_expected();
    // Guards are checked by the run: an overflow would be an Err.
    let private = run_scenario(true).expect("arm64 private stack");
    assert_eq!(private, (want, LEVELS), "arm64, private stack");
    let native = run_scenario(false).expect("arm64 native stack");
    assert_eq!(native, (want, LEVELS), "arm64, native stack");
}

#[test]
fn helper_reads_a_key_from_the_private_frame() {
    if !ready("private-stack map lookup") {
        return;
    }
    // COUNTER: key 0 stored at r10 - 4 (in the private region, which the
    // lookup helper reads on the host), then an atomic add of 1 into the
    // value and a load of it.
    let m = Map::new(def(MapType::Array, 4, 8, 1)).expect("map");
    let p = LoadedProgram::builder(&asm(COUNTER), Engine::Arm64)
        .helpers(HelperRegistry::kernel())
        .map(1, m.clone())
        .private_stack(true)
        .build()
        .expect("builds");
    for want in 1..=3u64 {
        // SAFETY: the program touches its stack and the map value only.
        assert_eq!(unsafe { p.run_mem(&mut []) }.expect("runs"), want);
    }
    assert_eq!(
        m.lookup(&0u32.to_le_bytes()),
        Ok(3u64.to_le_bytes().to_vec())
    );
    // A key the array does not hold: the helper returns NULL, r0 = -1.
    let miss = asm(&COUNTER.replace("*(u32 *)(r10 - 4) = 0", "*(u32 *)(r10 - 4) = 5"));
    let p = LoadedProgram::builder(&miss, Engine::Arm64)
        .helpers(HelperRegistry::kernel())
        .map(1, m)
        .private_stack(true)
        .build()
        .expect("builds");
    // SAFETY: as above.
    assert_eq!(unsafe { p.run_mem(&mut []) }.expect("runs"), u64::MAX);
}

#[test]
fn guard_above_the_region_catches_a_write_past_the_top() {
    if !ready("private-stack guard") {
        return;
    }
    // r10 + 0 is the first byte above the frame: the upper guard.
    let prog = asm("*(u64 *)(r10 + 0) = 1\nr0 = 0\nexit");
    let p = LoadedProgram::builder(&prog, Engine::Arm64)
        .stack_depths(vec![16])
        .private_stack(true)
        .build()
        .expect("builds");
    // SAFETY: the write lands in the run's private region's guard words.
    let e = unsafe { p.run_mem(&mut []) }.expect_err("overflow detected");
    assert!(
        matches!(e, VmError::PrivateStackOverflow { side: "above" }),
        "{e}"
    );
    // The next run re-arms the guards and is fine without the stray write.
    let ok = asm("*(u64 *)(r10 - 8) = 7\nr0 = *(u64 *)(r10 - 8)\nexit");
    let p = LoadedProgram::builder(&ok, Engine::Arm64)
        .stack_depths(vec![16])
        .private_stack(true)
        .build()
        .expect("builds");
    // SAFETY: stack accesses only.
    assert_eq!(unsafe { p.run_mem(&mut []) }.expect("runs"), 7);
}
