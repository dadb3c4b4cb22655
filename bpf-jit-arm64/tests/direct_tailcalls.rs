//! Direct tail calls on AArch64 under qemu-user: the emitted sequence as
//! GNU objdump decodes it, sites following the slot through the same state
//! machine as x86-64 (`bpf_jit::update_site`, writes done by an aligned
//! store *inside* the emulated process, as a patcher thread would), the
//! 33-call limit, and a harness thread running the program while the host
//! inserts, replaces and removes the slot's program thousands of times.

mod common;

use std::process::Command;

use bpf_isa::{assemble, LdImm64Src};
use bpf_jit::{update_site, CodeWriter, DirectTailCall, JitOptions, PatchErrorKind};
use bpf_jit_arm64::direct::{ARM64_SITE_CODEC, NOP};
use bpf_jit_arm64::emu::Emulator;
use bpf_jit_arm64::Atomics;
use common::{compile_at, emulator, harness_helpers, region_base, Region, CHAIN};

/// Stores `x1` (`w1` for `poke4`) at `[x0]` with one aligned store, then
/// makes the word visible to instruction fetch (decoded by GNU objdump:
/// `str w1, [x0]` / `str x1, [x0]`; `dc cvau, x0; dsb ish; ic ivau, x0;
/// dsb ish; isb; ret`).
const POKE4: [u32; 7] = [
    0xb900_0001,
    0xd50b_7b20,
    0xd503_3b9f,
    0xd50b_7520,
    0xd503_3b9f,
    0xd503_3fdf,
    0xd65f_03c0,
];
const POKE8: [u32; 7] = [
    0xf900_0001,
    0xd50b_7b20,
    0xd503_3b9f,
    0xd50b_7520,
    0xd503_3b9f,
    0xd503_3fdf,
    0xd65f_03c0,
];

const CALLER: &str = "r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 1\nexit";

struct Env {
    emu: Emulator,
    array: u64,
    map: u64,
    poke4: u64,
    poke8: u64,
    /// How long each write's new state is left alone before the next.
    linger: std::time::Duration,
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Env {
    fn new(emu: Emulator) -> Env {
        let data = emu.layout().data;
        let poke4 = region_base(&emu, Region::Near, 0x30_0000);
        let mut e = Env {
            emu,
            array: data + 0x1000,
            map: data + 0x2000,
            poke4,
            poke8: poke4 + 0x100,
            linger: std::time::Duration::ZERO,
        };
        let mut arr = 2u64.to_le_bytes().to_vec();
        arr.resize(8 + 16, 0);
        e.emu.write(e.array, &arr).expect("array");
        e.emu.write(e.map, &[0; 64]).expect("map");
        e.emu.write(e.poke4, &words(&POKE4)).expect("poke4");
        e.emu.write(e.poke8, &words(&POKE8)).expect("poke8");
        e
    }

    /// The caller (one direct site) at the start of the near region and
    /// three targets returning 7, 8 and 9: two in the near region, the
    /// third in the far one, out of `b` range (the literal reaches it all
    /// the same). Returns the caller's base, its site and the targets.
    fn caller_and_targets(&mut self) -> (u64, DirectTailCall, [u64; 3]) {
        let base = region_base(&self.emu, Region::Near, 0);
        let site = self.install(base, CALLER)[0];
        let t7 = region_base(&self.emu, Region::Near, 1 << 16);
        let t8 = region_base(&self.emu, Region::Near, 2 << 16);
        let t9 = region_base(&self.emu, Region::Far, 0);
        assert!(self.install(t7, "r0 = 7\nexit").is_empty());
        self.install(t8, "r0 = 8\nexit");
        self.install(t9, "r0 = 9\nexit");
        (base, site, [t7, t8, t9])
    }

    /// Compiles `src` with direct tail calls at `base`; returns its sites.
    fn install(&mut self, base: u64, src: &str) -> Vec<DirectTailCall> {
        let prog = assemble(src).expect("assembles");
        let h = harness_helpers(&self.emu);
        let (array, map) = (self.array, self.map);
        let resolve = move |_: usize, s: LdImm64Src| match s {
            LdImm64Src::MapFd(1) => Some(array),
            LdImm64Src::MapFd(2) => Some(map),
            _ => None,
        };
        let opts = JitOptions::new(&h)
            .with_ld_imm64(&resolve)
            .with_direct_tail_calls(true);
        let code = compile_at(&prog, &opts, base, Atomics::Lse).expect("compiles");
        self.emu.write(base, &code.code).expect("write");
        code.direct_tail_calls
    }

    fn writer(&mut self, base: u64) -> EmuWriter<'_> {
        EmuWriter {
            base,
            linger: self.linger,
            poke4: self.poke4,
            poke8: self.poke8,
            emu: &mut self.emu,
        }
    }

    fn update(&mut self, base: u64, site: &DirectTailCall, old: u64, new: u64) {
        let mut w = self.writer(base);
        update_site(&ARM64_SITE_CODEC, &mut w, site, old, new).expect("patched");
    }

    fn count(&mut self) -> u64 {
        let b = self.emu.read(self.map, 8).expect("read");
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
}

/// Writes through the poke functions: an aligned store by the emulated CPU.
struct EmuWriter<'a> {
    emu: &'a mut Emulator,
    linger: std::time::Duration,
    base: u64,
    poke4: u64,
    poke8: u64,
}

impl CodeWriter for EmuWriter<'_> {
    fn base(&self) -> u64 {
        self.base
    }
    fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind> {
        let b = self
            .emu
            .read(self.base + u64::from(offset), len as usize)
            .map_err(|e| PatchErrorKind::Writer(e.to_string()))?;
        let mut w = [0u8; 8];
        w[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
        Ok(u64::from_le_bytes(w))
    }
    fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind> {
        let addr = self.base + u64::from(offset);
        if !addr.is_multiple_of(u64::from(len)) {
            return Err(PatchErrorKind::BadWrite { offset, len });
        }
        let f = if len == 8 { self.poke8 } else { self.poke4 };
        self.emu
            .call(f, [addr, value, 0, 0, 0])
            .map_err(|e| PatchErrorKind::Writer(e.to_string()))?;
        std::thread::sleep(self.linger);
        Ok(())
    }
}

#[test]
fn sequence_decodes_as_documented() {
    let Some(emu) = emulator("direct tail calls") else {
        return;
    };
    let mut env = Env::new(emu);
    let base = region_base(&env.emu, Region::Near, 0);
    let sites = env.install(base, CALLER);
    assert_eq!(sites.len(), 1);
    let l = sites[0].layout;
    let code = env.emu.read(base, l.out as usize + 8).expect("read");
    let path = std::env::temp_dir().join(format!("direct_tc_{}.bin", std::process::id()));
    std::fs::write(&path, &code).unwrap();
    let out = Command::new("aarch64-linux-gnu-objdump")
        .args(["-D", "-b", "binary", "-m", "aarch64"])
        .arg(&path)
        .output()
        .expect("aarch64-linux-gnu-objdump (binutils-aarch64-linux-gnu) is required");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let line_at = |off: u32| {
        let key = format!("{off:x}:\t");
        text.lines()
            .find(|l| l.trim_start().starts_with(&key))
            .unwrap_or_else(|| panic!("no line at {off:#x} in\n{text}"))
            .to_string()
    };
    let bypass = line_at(l.bypass);
    assert!(
        bypass.contains("\tb\t") && bypass.contains(&format!("0x{:x}", l.out)),
        "{bypass}"
    );
    let target = line_at(l.target);
    let lit = l.literal.unwrap();
    assert_eq!(lit % 8, 0);
    assert!(
        target.contains("ldr\tx9, 0x") && target.contains(&format!("0x{lit:x}")),
        "{target}"
    );
    let br = line_at(l.target + 4);
    assert!(br.contains("br\tx9"), "{br}");
    assert_eq!(l.out, lit + 8);
}

#[test]
fn sites_follow_the_slot_and_the_limit_holds() {
    let Some(emu) = emulator("direct tail calls") else {
        return;
    };
    let mut env = Env::new(emu);
    let (base, site, [t7, t8, t9]) = env.caller_and_targets();
    let run = |env: &mut Env| env.emu.call(base, [0; 5]).expect("runs");
    assert_eq!(run(&mut env), 1, "empty");
    env.update(base, &site, 0, t7);
    assert_eq!(run(&mut env), 7, "inserted");
    env.update(base, &site, t7, t9);
    assert_eq!(run(&mut env), 9, "replaced (far)");
    env.update(base, &site, t9, 0);
    assert_eq!(run(&mut env), 1, "removed");
    let b = env
        .emu
        .read(base + u64::from(site.layout.bypass), 4)
        .unwrap();
    assert_ne!(
        u32::from_le_bytes(b.try_into().unwrap()),
        NOP,
        "bypass on again"
    );
    env.update(base, &site, 0, t8);
    assert_eq!(run(&mut env), 8, "re-inserted");

    // A self-tail-calling program: 1 run + 33 tail calls.
    let chain = region_base(&env.emu, Region::Near, 3 << 16);
    let csite = env.install(chain, CHAIN)[0];
    env.update(chain, &csite, 0, chain);
    assert_eq!(env.emu.call(chain, [0; 5]).expect("runs"), 7);
    assert_eq!(env.count(), 34);
    assert_eq!(env.emu.call(chain, [0; 5]).expect("runs"), 7);
    assert_eq!(env.count(), 68, "the budget is per invocation");
}

#[test]
fn runner_sees_only_allowed_results_while_the_slot_changes() {
    const UPDATES: usize = 400;
    const ROUNDS: usize = 4;
    let Some(emu) = emulator("direct tail calls") else {
        return;
    };
    let mut env = Env::new(emu);
    let (base, site, [t7, t8, t9]) = env.caller_and_targets();
    // Every intermediate state of the state machine lasts 1 ms, thousands
    // of runner calls: a state that has the bypass off and no target
    // (e.g. bypass written before target on an insert) crashes the runner.
    env.linger = std::time::Duration::from_millis(1);
    let targets = [t7, t8, t9, 0];
    let mut total = [0u64; 17];
    let mut calls = 0;
    // Rounds from a freshly written site: the first insert after the
    // starting state is the step where a wrong order (bypass off before a
    // target exists) sends the runner to address 0; later inserts find the
    // previous target still in place.
    for _ in 0..ROUNDS {
        let site2 = env.install(base, CALLER)[0];
        assert_eq!(site2, site);
        env.emu.start_runner(base, [0; 5]).expect("runner");
        // Let the runner get going before the first patch.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut cur = 0;
        for k in 0..UPDATES / ROUNDS {
            let next = targets[k % targets.len()];
            env.update(base, &site, cur, next);
            cur = next;
        }
        let counts = env.emu.stop_runner().expect("runner survived");
        calls += counts.calls;
        for (t, c) in total.iter_mut().zip(counts.counts) {
            *t += c;
        }
    }
    let c = total;
    eprintln!(
        "arm64 concurrent: {UPDATES} updates in {ROUNDS} rounds, {calls} runs: 1 x{}, 7 x{}, 8 x{}, 9 x{}",
        c[1], c[7], c[8], c[9]
    );
    let counts = bpf_jit_arm64::emu::RunnerCounts {
        calls,
        counts: total,
    };
    assert!(counts.calls > 0);
    let allowed = c[1] + c[7] + c[8] + c[9];
    assert_eq!(allowed, counts.calls, "only 1, 7, 8, 9: {c:?}");
}
