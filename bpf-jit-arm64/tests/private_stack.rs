//! Private stacks on AArch64 under qemu-user: the recursion-through-tail-
//! call scenario (entry -> subprogram -> tail call back into entry, with
//! live stack markers at every level) gives the same result on the native
//! stack and on a private region, equal to the value computed by hand, and
//! leaves the region's guard words intact — also when the tail call is a
//! patched direct site.

use bpf_isa::{assemble, LdImm64Src};
use bpf_jit::{
    update_site, CodeWriter, JitOptions, PatchErrorKind, MAX_TAIL_CALL_CNT, PROG_ARRAY_SLOTS_OFFSET,
};
use bpf_jit_arm64::direct::ARM64_SITE_CODEC;
use bpf_jit_arm64::emu::Emulator;
use bpf_jit_arm64::Atomics;

mod common;
use common::{
    arm_private_region, compile_at, emulator, harness_helpers, private_guards_intact, region_base,
    Region,
};

const LEVELS: u64 = 5;

/// Entry counts its level in the context's first word and leaves markers
/// at both ends of its 64-byte frame; `sub` leaves its own, then tail-calls
/// the entry (prog array fd 1, slot 0) until level 5, where it returns its
/// markers' sum; every entry level folds its markers into r0 on the way back.
const SCENARIO: &str = "
    r6 = r1
    r7 = *(u64 *)(r6 + 0)
    r7 += 1
    *(u64 *)(r6 + 0) = r7
    r8 = r7
    r8 *= 1000
    r8 += 11
    *(u64 *)(r10 - 8) = r8
    *(u64 *)(r10 - 64) = r7
    r1 = r6
    call pc sub
    r1 = *(u64 *)(r10 - 8)
    r2 = *(u64 *)(r10 - 64)
    r0 *= 31
    r0 += r1
    r0 += r2
    exit
  sub:
    r6 = r1
    r7 = *(u64 *)(r6 + 0)
    r8 = r7
    r8 *= 1000
    r8 += 22
    *(u64 *)(r10 - 8) = r8
    *(u64 *)(r10 - 32) = r7
    if r7 >= 5 goto done
    r1 = r6
    r2 = map[fd:1]
    r3 = 0
    call 12
  done:
    r0 = *(u64 *)(r10 - 8)
    r1 = *(u64 *)(r10 - 32)
    r0 += r1
    exit";

/// By hand: the deepest `sub` returns 5022 + 5; entry level k (5 down to
/// 1) turns r0 into r0 * 31 + (1000k + 11) + k.
fn expected() -> u64 {
    let mut r0 = LEVELS * 1000 + 22 + LEVELS;
    for k in (1..=LEVELS).rev() {
        r0 = r0
            .wrapping_mul(31)
            .wrapping_add(k * 1000 + 11)
            .wrapping_add(k);
    }
    r0
}

#[test]
fn recursion_through_tail_calls_on_native_and_private_stacks() {
    let Some(mut emu) = emulator("the private-stack scenario") else {
        return;
    };
    let prog = assemble(SCENARIO).expect("assembles");
    let data = emu.layout().data;
    let (ctx, array) = (data, data + 0x1000);
    let h = harness_helpers(&emu);
    let resolve = move |_: usize, s: LdImm64Src| match s {
        LdImm64Src::MapFd(1) => Some(array),
        _ => None,
    };
    let depths = [64u32, 32];
    let mut results = Vec::new();
    // Native stack; private stack; private stack with the tail call as a
    // patched direct site.
    for (k, private, direct) in [(0u64, false, false), (1, true, false), (2, true, true)] {
        let opts = JitOptions::new(&h)
            .with_ld_imm64(&resolve)
            .with_stack_depths(&depths)
            .with_private_stack(private)
            .with_direct_tail_calls(direct);
        let base = region_base(&emu, Region::Near, k << 16);
        let code = compile_at(&prog, &opts, base, Atomics::Lse).expect("compiles");
        emu.write(base, &code.code).expect("code");
        assert_eq!(code.direct_tail_calls.len(), usize::from(direct));
        for site in &code.direct_tail_calls {
            let mut w = PlainWriter {
                emu: &mut emu,
                base,
            };
            update_site(&ARM64_SITE_CODEC, &mut w, site, 0, base).expect("patched");
        }
        // One-slot prog array holding the program itself.
        let mut arr = 1u64.to_le_bytes().to_vec();
        arr.resize(PROG_ARRAY_SLOTS_OFFSET as usize + 8, 0);
        arr[PROG_ARRAY_SLOTS_OFFSET as usize..].copy_from_slice(&base.to_le_bytes());
        emu.write(array, &arr).expect("array");
        emu.write(ctx, &[0; 8]).expect("ctx");
        let r0 = if private {
            assert_eq!(code.private_stack_bytes, 96, "64 + 32");
            let bytes = u64::from(code.private_stack_bytes) * u64::from(MAX_TAIL_CALL_CNT + 1);
            let top = arm_private_region(&mut emu, bytes).expect("region");
            let r0 = emu.call8(base, [ctx, 8, 0, 0, 0, top, 0, 0]).expect("runs");
            assert!(
                private_guards_intact(&mut emu, top, bytes).expect("reads"),
                "guard words overwritten"
            );
            r0
        } else {
            emu.call(base, [ctx, 8, 0, 0, 0]).expect("runs")
        };
        let level = u64::from_le_bytes(emu.read(ctx, 8).expect("ctx").try_into().expect("8"));
        results.push((r0, level));
    }
    assert_eq!(results[0], (expected(), LEVELS), "native stack");
    assert_eq!(results[1], (expected(), LEVELS), "private stack");
    assert_eq!(
        results[2],
        (expected(), LEVELS),
        "private stack, direct site"
    );
}

/// Patches code with plain harness writes (nothing runs meanwhile).
struct PlainWriter<'a> {
    emu: &'a mut Emulator,
    base: u64,
}

impl CodeWriter for PlainWriter<'_> {
    fn base(&self) -> u64 {
        self.base
    }
    fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind> {
        let b = self
            .emu
            .read(self.base + u64::from(offset), usize::from(len.min(8)))
            .map_err(|e| PatchErrorKind::Writer(e.to_string()))?;
        let mut w = [0u8; 8];
        w[..b.len()].copy_from_slice(&b);
        Ok(u64::from_le_bytes(w))
    }
    fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind> {
        let bytes = value.to_le_bytes();
        self.emu
            .write(
                self.base + u64::from(offset),
                &bytes[..usize::from(len.min(8))],
            )
            .map_err(|e| PatchErrorKind::Writer(e.to_string()))
    }
}

#[test]
fn a_write_above_the_frame_hits_the_guard() {
    let Some(mut emu) = emulator("the private-stack guard") else {
        return;
    };
    let prog = assemble("*(u64 *)(r10 + 0) = 1\nr0 = 0\nexit").expect("assembles");
    let h = harness_helpers(&emu);
    let depths = [16u32];
    let opts = JitOptions::new(&h)
        .with_stack_depths(&depths)
        .with_private_stack(true);
    let base = region_base(&emu, Region::Near, 0);
    let code = compile_at(&prog, &opts, base, Atomics::Lse).expect("compiles");
    emu.write(base, &code.code).expect("code");
    let bytes = 16 * u64::from(MAX_TAIL_CALL_CNT + 1);
    let top = arm_private_region(&mut emu, bytes).expect("region");
    emu.call8(base, [0, 0, 0, 0, 0, top, 0, 0]).expect("runs");
    assert!(!private_guards_intact(&mut emu, top, bytes).expect("reads"));
}
