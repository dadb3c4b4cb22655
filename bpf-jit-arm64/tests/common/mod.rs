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
    run_mem_on(emu, prog, helpers, region, atomics, mem, false)
}

/// Private-stack region for [`run_mem_private`]: offset in the data region
/// of its lower guard, and the guard size on each side.
pub const PRIVATE_REGION_OFFSET: u64 = 2 << 20;
/// Guard bytes on each side of the private region.
pub const PRIVATE_GUARD: u64 = 32;
/// The pattern the guard words hold.
pub const GUARD_WORD: u64 = 0x5ca1_ab1e_dead_beef;

/// Writes guards around a private region of `bytes` (16-byte multiple) in
/// the data region; returns its top (the entry's sixth argument).
pub fn arm_private_region(emu: &mut Emulator, bytes: u64) -> Result<u64, String> {
    let lo = emu.layout().data + PRIVATE_REGION_OFFSET;
    let guard: Vec<u8> = (0..PRIVATE_GUARD / 8)
        .flat_map(|_| GUARD_WORD.to_le_bytes())
        .collect();
    let top = lo + PRIVATE_GUARD + bytes;
    emu.write(lo, &guard).map_err(|e| e.to_string())?;
    emu.write(top, &guard).map_err(|e| e.to_string())?;
    Ok(top)
}

/// Whether both guards around the region armed with `top` are intact.
pub fn private_guards_intact(emu: &mut Emulator, top: u64, bytes: u64) -> Result<bool, String> {
    let guard: Vec<u8> = (0..PRIVATE_GUARD / 8)
        .flat_map(|_| GUARD_WORD.to_le_bytes())
        .collect();
    let below = emu
        .read(top - bytes - PRIVATE_GUARD, PRIVATE_GUARD as usize)
        .map_err(|e| e.to_string())?;
    let above = emu
        .read(top, PRIVATE_GUARD as usize)
        .map_err(|e| e.to_string())?;
    Ok(below == guard && above == guard)
}

/// As [`run_mem`], with the program's frames on a private stack: a region
/// of `(MAX_TAIL_CALL_CNT + 1) * private_stack_bytes` in the data region,
/// guards checked after the run (an overwritten guard is an error).
pub fn run_mem_private(
    emu: &mut Emulator,
    prog: &Program,
    helpers: &HelperTable,
    region: Region,
    atomics: Atomics,
    mem: &[u8],
) -> Result<(u64, Vec<u8>), String> {
    run_mem_on(emu, prog, helpers, region, atomics, mem, true)
}

/// [`run_mem`] (`private` false) or [`run_mem_private`] (true).
fn run_mem_on(
    emu: &mut Emulator,
    prog: &Program,
    helpers: &HelperTable,
    region: Region,
    atomics: Atomics,
    mem: &[u8],
    private: bool,
) -> Result<(u64, Vec<u8>), String> {
    let base = region_base(emu, region, 0);
    let opts = JitOptions::new(helpers).with_private_stack(private);
    let code = compile_at(prog, &opts, base, atomics)?;
    emu.write(base, &code.code).map_err(|e| e.to_string())?;
    let bytes = u64::from(code.private_stack_bytes) * (u64::from(bpf_jit::MAX_TAIL_CALL_CNT) + 1);
    let top = if private {
        arm_private_region(emu, bytes)?
    } else {
        0
    };
    let data = emu.layout().data;
    emu.write(data, mem).map_err(|e| e.to_string())?;
    let args = [data, mem.len() as u64, 0, 0, 0];
    let r0 = if private {
        emu.call8(base, [args[0], args[1], 0, 0, 0, top, 0, 0])
    } else {
        emu.call(base, args)
    }
    .map_err(|e| e.to_string())?;
    if private && !private_guards_intact(emu, top, bytes)? {
        return Err("private stack guard overwritten".into());
    }
    let after = emu.read(data, mem.len()).map_err(|e| e.to_string())?;
    Ok((r0, after))
}

/// `tailcall3`: counts its runs in map word 0 (harness helper 3, map at
/// fd 2) and tail-calls itself (prog array fd 1, slot 0): it runs 1 + 33
/// times, then returns 7.
pub const CHAIN: &str = "
    r6 = r1
    r1 = map[fd:2]
    r2 = 0
    r3 = 1
    call 3
    r1 = r6
    r2 = map[fd:1]
    r3 = 0
    call 12
    r0 = 7
    exit";
