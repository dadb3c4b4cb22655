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
use bpf_isa::arbitrary::scenarios::{
    tail_recursion_expected, TAIL_RECURSION as SCENARIO, TAIL_RECURSION_LEVELS as LEVELS,
};
use common::{
    arm_private_region, compile_at, emulator, harness_helpers, private_guards_intact, region_base,
    Region,
};

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
    assert_eq!(
        results[0],
        (tail_recursion_expected(), LEVELS),
        "native stack"
    );
    assert_eq!(
        results[1],
        (tail_recursion_expected(), LEVELS),
        "private stack"
    );
    assert_eq!(
        results[2],
        (tail_recursion_expected(), LEVELS),
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
