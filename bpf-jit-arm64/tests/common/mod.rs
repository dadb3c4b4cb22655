//! Shared by the execution tests: starting the qemu-user harness and
//! running compiled programs in it.

#![allow(dead_code)]

use bpf_isa::Program;
use bpf_jit::{CompiledCode, HelperTable, JitOptions};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::{Arm64Options, Atomics};

/// Starts the emulator. When the tools are missing: fails under
/// `BPFKIT_REQUIRE_TOOLS=1`, else says plainly that `what` is skipped.
pub fn emulator(what: &str) -> Option<Emulator> {
    match Emulator::spawn() {
        Ok(e) => Some(e),
        Err(err) => {
            assert!(
                std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "arm64 emulation required (BPFKIT_REQUIRE_TOOLS=1): {err}"
            );
            eprintln!("SKIPPED {what} on arm64: {err}");
            None
        }
    }
}

/// Which code region an image goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Within `bl` range of the harness's helpers.
    Near,
    /// Out of `bl` range.
    Far,
}

/// The conformance suite's helper 5, and the harness helpers under ids 1-4.
pub fn harness_helpers(emu: &Emulator) -> HelperTable {
    let l = emu.layout();
    let mut h = HelperTable::new();
    h.insert_address(1, l.helper(HarnessHelper::WeightedSum));
    h.insert_address(2, l.helper(HarnessHelper::CallCallback));
    h.insert_address(3, l.helper(HarnessHelper::MapAdd));
    h.insert_address(5, l.helper(HarnessHelper::ReturnArg1));
    h
}

/// Compiles `prog` for `base` (so near helpers are reached with `bl`).
pub fn compile_at(
    prog: &Program,
    opts: &JitOptions<'_>,
    base: u64,
    atomics: Atomics,
) -> Result<CompiledCode, String> {
    let arm = Arm64Options {
        atomics,
        image_base: Some(base),
    };
    bpf_jit_arm64::compile_code_with(prog, opts, &arm).map_err(|e| format!("jit: {e}"))
}

/// Address of the start of `region` plus `offset`.
pub fn region_base(emu: &Emulator, region: Region, offset: u64) -> u64 {
    let l = emu.layout();
    match region {
        Region::Near => l.near_code + offset,
        Region::Far => l.far_code + offset,
    }
}

/// Compiles `prog` into `region`, copies `mem` to the data region, runs it
/// with r1 = mem, r2 = its length, and returns r0 and the memory afterwards.
pub fn run_mem(
    emu: &mut Emulator,
    prog: &Program,
    helpers: &HelperTable,
    region: Region,
    atomics: Atomics,
    mem: &[u8],
) -> Result<(u64, Vec<u8>), String> {
    let base = region_base(emu, region, 0);
    let code = compile_at(prog, &JitOptions::new(helpers), base, atomics)?;
    emu.write(base, &code.code).map_err(|e| e.to_string())?;
    let data = emu.layout().data;
    emu.write(data, mem).map_err(|e| e.to_string())?;
    let r0 = emu
        .call(base, [data, mem.len() as u64, 0, 0, 0])
        .map_err(|e| e.to_string())?;
    let after = emu.read(data, mem.len()).map_err(|e| e.to_string())?;
    Ok((r0, after))
}
