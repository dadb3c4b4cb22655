//! `bpf_fastcall` on AArch64, under qemu-user: a helper declared with a
//! preserve mask ([`HelperTable::insert_address_fastcall`]) leaves the
//! masked eBPF registers intact for the program, although the native
//! function clobbers their machine registers.
//!
//! The clobbering helper is the harness's `CallCallback` (id 2 here): it
//! calls `cb(r2, 10, 20, 30, 40)` and returns its result + 1. The callback
//! is compiled eBPF code that sets r2-r5 (x1-x4) to 1000 before it returns,
//! and the helper's `+ 1` leaves those registers as they are, so without
//! preservation the caller sees r2-r5 = 1000 and r1 (x0) = the result.
//! (`without_mask_the_helper_clobbers` checks that this really happens, so
//! the preserving cases cannot pass vacuously.) Expected values are
//! computed by hand.

mod common;

use bpf_isa::assemble;
use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::Atomics;
use common::{compile_at, emulator, region_base, Region};

/// r1 is the callback's address (kept in r6 to compare), r2 = 7 its
/// argument, r3..r5 = 33, 44, 55. After the call: r7 = 0 if r1 survived,
/// else 100000; r0 = result + r2 + r3 + r4 + r5 + r7. The callback returns
/// its first argument (7), so the helper returns 8.
const PROG: &str = "
    r1 = subprog[cb]
    r6 = r1
    r2 = 7
    r3 = 33
    r4 = 44
    r5 = 55
    call 2
    r7 = 0
    if r1 == r6 goto same
    r7 = 100000
  same:
    r0 += r2
    r0 += r3
    r0 += r4
    r0 += r5
    r0 += r7
    exit
  cb:
    r0 = r1
    r2 = 1000
    r3 = 1000
    r4 = 1000
    r5 = 1000
    exit";

fn run(emu: &mut Emulator, preserve: u16, region: Region) -> u64 {
    let prog = assemble(PROG).expect("assembles");
    let mut h = HelperTable::new();
    let addr = emu.layout().helper(HarnessHelper::CallCallback);
    h.insert_address_fastcall(2, addr, preserve);
    let base = region_base(emu, region, 0);
    let code = compile_at(&prog, &JitOptions::new(&h), base, Atomics::Lse).expect("compiles");
    emu.write(base, &code.code).expect("write");
    emu.call(base, [0; 5]).expect("runs")
}

#[test]
fn without_mask_the_helper_clobbers() {
    let Some(mut emu) = emulator("fastcall control") else {
        return;
    };
    // 8 + 4 * 1000 + 100000 (r1 now holds the result 8).
    assert_eq!(run(&mut emu, 0, Region::Near), 104_008);
}

#[test]
fn fastcall_mask_preserves_registers() {
    let Some(mut emu) = emulator("fastcall preservation") else {
        return;
    };
    for region in [Region::Near, Region::Far] {
        // r1-r5 (x0-x4, two pairs and a single push): 8 + 7 + 33 + 44 + 55.
        assert_eq!(run(&mut emu, 0b11_1110, region), 147, "{region:?}");
        // r2-r5: r1 is lost: 8 + 139 + 100000.
        assert_eq!(run(&mut emu, 0b11_1100, region), 100_147, "{region:?}");
        // r3 alone (one push): 8 + 1000 + 33 + 1000 + 1000 + 100000.
        assert_eq!(run(&mut emu, 0b1000, region), 103_041, "{region:?}");
    }
}

/// A void fastcall helper keeps r0 too: with r0 in the mask the program
/// sees r0 as it was before the call, not the helper's return value.
#[test]
fn void_helper_keeps_r0() {
    let Some(mut emu) = emulator("fastcall r0") else {
        return;
    };
    let prog = assemble("r0 = 5\nr1 = 1234\ncall 5\nr0 += r1\nexit").expect("assembles");
    let ret_arg1 = emu.layout().helper(HarnessHelper::ReturnArg1);
    for (mask, want) in [(0b11, 5 + 1234), (0b10, 1234 + 1234)] {
        let mut h = HelperTable::new();
        h.insert_address_fastcall(5, ret_arg1, mask);
        let base = region_base(&emu, Region::Far, 0);
        let code = compile_at(&prog, &JitOptions::new(&h), base, Atomics::Lse).expect("compiles");
        emu.write(base, &code.code).expect("write");
        assert_eq!(
            emu.call(base, [0; 5]).expect("runs"),
            want,
            "mask {mask:#b}"
        );
    }
}
