//! Emulated ns per tail call on AArch64 (qemu-user), direct (patched
//! `nop` bypass + literal target) vs indirect (table load and `br`): a
//! program in slot 0 that tail-calls itself through slot 0, so one
//! invocation makes the kernel's maximum of 33 tail calls. Timed by the
//! harness's BENCH loop (`Emulator::bench8`, `CLOCK_MONOTONIC` around the
//! loop) through criterion's `iter_custom`; 33 elements per iteration, so
//! the throughput line reads as tail calls per second. `no tail call`:
//! the same program with an empty slot (invocation overhead). Emulated
//! time says more about qemu's translation than about hardware.

use std::time::Duration;

use bpf_isa::{assemble, LdImm64Src};
use bpf_jit::{
    update_site, CodeWriter, HelperTable, JitOptions, PatchErrorKind, MAX_TAIL_CALL_CNT,
    PROG_ARRAY_SLOTS_OFFSET,
};
use bpf_jit_arm64::direct::ARM64_SITE_CODEC;
use bpf_jit_arm64::emu::Emulator;
use bpf_jit_arm64::{Arm64Options, Atomics};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SELF_TAIL_CALL: &str = "r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 0\nexit";

/// Plain (non-atomic) writes: nothing runs while the bench sets up.
struct Plain<'a>(&'a mut Emulator, u64);

impl CodeWriter for Plain<'_> {
    fn base(&self) -> u64 {
        self.1
    }
    fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind> {
        let b = self
            .0
            .read(self.1 + u64::from(offset), len as usize)
            .map_err(|e| PatchErrorKind::Writer(e.to_string()))?;
        let mut w = [0u8; 8];
        let n = b.len().min(8);
        w[..n].copy_from_slice(&b[..n]);
        Ok(u64::from_le_bytes(w))
    }
    fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind> {
        self.0
            .write(
                self.1 + u64::from(offset),
                &value.to_le_bytes()[..len as usize],
            )
            .map_err(|e| PatchErrorKind::Writer(e.to_string()))
    }
}

fn bench(c: &mut Criterion) {
    let mut emu = match Emulator::spawn() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("SKIPPED arm64 tail-call bench: {e}");
            return;
        }
    };
    let l = *emu.layout();
    let array = l.data + 0x1000;
    let mut table = 1u64.to_le_bytes().to_vec();
    table.resize(16, 0);
    emu.write(array, &table).expect("array");
    let prog = assemble(SELF_TAIL_CALL).expect("assembles");
    let helpers = HelperTable::new();
    let resolve = move |_: usize, s: LdImm64Src| (s == LdImm64Src::MapFd(1)).then_some(array);
    let mut g = c.benchmark_group("tail_call_arm64_qemu");
    let slot0 = array + PROG_ARRAY_SLOTS_OFFSET as u64;
    for (k, (name, direct)) in [("direct", true), ("indirect", false)]
        .into_iter()
        .enumerate()
    {
        let base = l.near_code + ((k as u64) << 16);
        let opts = JitOptions::new(&helpers)
            .with_ld_imm64(&resolve)
            .with_direct_tail_calls(direct);
        let arm = Arm64Options {
            atomics: Atomics::Lse,
            image_base: Some(base),
        };
        let code = bpf_jit_arm64::compile_code_with(&prog, &opts, &arm).expect("compiles");
        assert_eq!(code.direct_tail_calls.len(), usize::from(direct));
        emu.write(base, &code.code).expect("code");
        emu.write(slot0, &base.to_le_bytes()).expect("slot");
        for site in &code.direct_tail_calls {
            update_site(&ARM64_SITE_CODEC, &mut Plain(&mut emu, base), site, 0, base)
                .expect("patched");
        }
        g.throughput(Throughput::Elements(u64::from(MAX_TAIL_CALL_CNT)));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                Duration::from_nanos(emu.bench8(base, iters, [0; 8]).expect("bench"))
            })
        });
        emu.write(slot0, &0u64.to_le_bytes()).expect("slot");
        if name == "indirect" {
            g.throughput(Throughput::Elements(1));
            g.bench_function("no tail call", |b| {
                b.iter_custom(|iters| {
                    Duration::from_nanos(emu.bench8(base, iters, [0; 8]).expect("bench"))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
