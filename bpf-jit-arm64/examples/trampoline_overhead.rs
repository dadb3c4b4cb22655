//! Overhead per call of an AArch64 trampoline with one empty entry
//! program around a native function of eight arguments (the harness's
//! `WeightedSum8`), against calling that function directly.
//!
//! ```text
//! cargo run -p bpf-jit-arm64 --example trampoline_overhead --release [-- ITERS]
//! ```
//!
//! The code runs under `qemu-aarch64` (user-mode emulation): the figures
//! are emulated time, measured by the harness's `CLOCK_MONOTONIC` around a
//! loop of calls (harness op `BENCH`, [`Emulator::bench8`]), not what an
//! AArch64 CPU would take. They compare shapes of code under the same
//! emulator, not hardware.

use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::trampoline::{Arm64Trampoline, TrampolineMode};
use bpf_jit_arm64::Arm64Options;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iters: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 2_000_000,
    };
    let mut emu = match Emulator::spawn() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("not run: the arm64 emulator is not available: {e}");
            return Ok(());
        }
    };
    let layout = *emu.layout();
    let original = layout.helper(HarnessHelper::WeightedSum8);
    let args = [1, 2, 3, 4, 5, 6, 7, 8];
    // 1 + 4 + 9 + ... + 64, by hand.
    let expected = 204;

    // The empty program: `r0 = 0; exit`, placed in each region.
    let empty = bpf_isa::assemble("r0 = 0\nexit")?;
    let helpers = HelperTable::new();
    let place_prog = |emu: &mut Emulator, at: u64| -> Result<u64, Box<dyn std::error::Error>> {
        let arm = Arm64Options {
            image_base: Some(at),
            ..Arm64Options::default()
        };
        let code = bpf_jit_arm64::compile_code_with(&empty, &JitOptions::new(&helpers), &arm)?;
        emu.write(at, &code.code)?;
        Ok(at)
    };

    let mut rows = Vec::new();
    rows.push(("direct call of the original", original));
    // Near: the program and the original are within `bl` range.
    let near_prog = place_prog(&mut emu, layout.near_code + 0x1000)?;
    let mut t = Arm64Trampoline::new(8, Some(original), TrampolineMode::Observe)?;
    let bare_at = layout.near_code + 0x2000;
    emu.write(bare_at, &t.emit_code(Some(bare_at))?)?;
    rows.push(("trampoline, no program (bl)", bare_at));
    t.attach_entry(near_prog);
    let near_at = layout.near_code + 0x3000;
    emu.write(near_at, &t.emit_code(Some(near_at))?)?;
    rows.push(("trampoline + empty entry program (bl)", near_at));
    // Far: the same calls out of `bl` range (movz/movk + blr).
    let far_at = layout.far_code + 0x3000;
    emu.write(far_at, &t.emit_code(Some(far_at))?)?;
    rows.push(("trampoline + empty entry program (blr)", far_at));

    println!("emulated figures (qemu-aarch64 user mode), {iters} calls each, best of 5:");
    let mut base_ns = 0.0;
    for (name, addr) in rows {
        let r = emu.call8(addr, args)?;
        if r != expected {
            return Err(format!("{name}: returned {r}, expected {expected}").into());
        }
        let mut best = u64::MAX;
        for _ in 0..5 {
            best = best.min(emu.bench8(addr, iters, args)?);
        }
        let per_call = best as f64 / iters as f64;
        if addr == original {
            base_ns = per_call;
        }
        println!(
            "  {name:<40} {per_call:7.2} ns/call  (+{:.2} ns)",
            per_call - base_ns
        );
    }
    Ok(())
}
