//! End-to-end tests under qemu-user: helper calls with `bl` (image within
//! ±128 MiB of the helper) and with `movz/movk` + `blr` (out of range),
//! bpf-to-bpf calls and frames, callbacks, `callx`, branch relaxation
//! across the ±1 MiB `b.cond` range, and tail calls with the 33-per-
//! invocation counter (the kernel selftests' numbers: `tailcall3` 33 tail
//! calls, `tailcall_bpf2bpf_hierarchy_1` 34 runs). Expected values are
//! computed by hand from the programs.

mod common;

use bpf_isa::arbitrary::scenarios;
use bpf_isa::{assemble, LdImm64Src};
use bpf_jit::{HelperTable, JitOptions, PROG_ARRAY_SLOTS_OFFSET};
use bpf_jit_arm64::emu::{Emulator, HarnessHelper};
use bpf_jit_arm64::Atomics;
use common::{compile_at, emulator, harness_helpers, region_base, Region, CHAIN};

fn words(code: &[u8]) -> impl Iterator<Item = u32> + '_ {
    code.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

fn run(emu: &mut Emulator, src: &str, region: Region, helpers: &HelperTable) -> (u64, Vec<u8>) {
    let prog = assemble(src).expect("assembles");
    let base = region_base(emu, region, 0);
    let code = compile_at(&prog, &JitOptions::new(helpers), base, Atomics::Lse).expect("compiles");
    emu.write(base, &code.code).expect("write");
    let r0 = emu.call(base, [0; 5]).expect("runs");
    (r0, code.code)
}

#[test]
fn helpers_near_with_bl_and_far_with_blr() {
    let Some(mut emu) = emulator("helper calls") else {
        return;
    };
    let h = harness_helpers(&emu);
    // r6-r9 survive the call; 1 + 2*2 + 3*3 + 4*4 + 5*5 = 55.
    let src = "
        r6 = 1000
        r9 = 9000
        r1 = 1
        r2 = 2
        r3 = 3
        r4 = 4
        r5 = 5
        call 1
        r0 += r6
        r0 += r9
        exit";
    let (near, near_code) = run(&mut emu, src, Region::Near, &h);
    let (far, far_code) = run(&mut emu, src, Region::Far, &h);
    assert_eq!(near, 55 + 10_000);
    assert_eq!(far, 55 + 10_000);
    let is_bl = |w: u32| w & 0xfc00_0000 == 0x9400_0000;
    let blr_x9 = 0xd63f_0120;
    assert!(words(&near_code).any(is_bl), "near image calls with bl");
    assert!(!words(&near_code).any(|w| w == blr_x9));
    assert!(
        words(&far_code).any(|w| w == blr_x9),
        "far image calls with blr"
    );
    assert!(!words(&far_code).any(is_bl));
}

/// bpf-to-bpf calls: arguments in r1-r5, r6-r9 preserved, each frame has
/// its own stack, calls nested three deep ([`scenarios::LOCAL_CALLS`]).
#[test]
fn local_calls_and_frames() {
    let Some(mut emu) = emulator("bpf-to-bpf calls") else {
        return;
    };
    // The program and its hand-computed result are shared with the x86-64
    // JIT's tests.
    let (r0, _) = run(
        &mut emu,
        scenarios::LOCAL_CALLS,
        Region::Near,
        &HelperTable::new(),
    );
    assert_eq!(r0, scenarios::LOCAL_CALLS_RESULT);
}

#[test]
fn callback_and_callx() {
    let Some(mut emu) = emulator("callbacks") else {
        return;
    };
    let h = harness_helpers(&emu);
    // Helper 2 calls cb(7, 10, 20, 30, 40) and adds 1: cb = r1 * r2 + r5.
    let src = "
        r1 = subprog[cb]
        r2 = 7
        call 2
        exit
      cb:
        r0 = r1
        r0 *= r2
        r0 += r5
        exit";
    let (r0, _) = run(&mut emu, src, Region::Far, &h);
    assert_eq!(r0, 7 * 10 + 40 + 1);
    // callx with a helper id: helper 5 returns its first argument.
    let src = "
        r6 = 5
        r1 = 1234
        callx r6
        exit";
    let (r0, _) = run(&mut emu, src, Region::Near, &h);
    assert_eq!(r0, 1234);
}

/// A conditional branch over more than 1 MiB of code needs the inverted
/// `b.cond` over a `b`; short branches elsewhere stay one instruction.
/// (The skipped body is 30,000 inline tail-call sequences, 68 bytes each:
/// eBPF's 16-bit jump offsets cannot span 1 MiB of smaller instructions.)
#[test]
fn branches_beyond_one_mib() {
    let Some(mut emu) = emulator("long branches") else {
        return;
    };
    let body = "call 12\n".repeat(30_000);
    let src = format!(
        "r0 = 1
         r2 = 0
         if r1 != 0 goto far
         goto over
         {body}
        over:
         r0 = 2
        far:
         if r2 == 0 goto out
         r0 += 10
        out:
         exit"
    );
    let prog = assemble(&src).expect("assembles");
    let base = region_base(&emu, Region::Far, 0);
    let h = HelperTable::new();
    let code = compile_at(&prog, &JitOptions::new(&h), base, Atomics::Lse).expect("compiles");
    assert!(code.code.len() > 1 << 20, "{} bytes", code.code.len());
    // The first pass guesses the forward `b.cond`s short; the one-pass
    // check finds them out of range and the pass loop takes over.
    assert!(code.passes >= 2, "{} passes", code.passes);
    emu.write(base, &code.code).expect("write");
    assert_eq!(emu.call(base, [1, 0, 0, 0, 0]).expect("runs"), 1);
    assert_eq!(emu.call(base, [0, 0, 0, 0, 0]).expect("runs"), 2);
    // `if r1 != 0 goto far`: cmp, b.eq +8 (inverted), b far.
    let at = code.insn_offsets[2] as usize;
    let w: Vec<u32> = words(&code.code[at..at + 12]).collect();
    assert_eq!(w[1], 0x5400_0040, "b.eq +8");
    assert_eq!(w[2] & 0xfc00_0000, 0x1400_0000, "b");
    // `if r2 == 0 goto out`: cmp, b.eq +8 over the one-instruction add.
    let n = prog.len();
    let at = code.insn_offsets[n - 3] as usize;
    let w: Vec<u32> = words(&code.code[at..at + 8]).collect();
    assert_eq!(w[1], 0x5400_0040, "b.eq +8");
}

/// Tail-call environment: a prog array and a counter map in the data
/// region, each program compiled at its own place in the near region.
struct TailEnv {
    emu: Emulator,
    array: u64,
    map: u64,
}

impl TailEnv {
    fn new(emu: Emulator, max_entries: u64) -> TailEnv {
        let data = emu.layout().data;
        let mut t = TailEnv {
            emu,
            array: data + 0x1000,
            map: data + 0x2000,
        };
        let mut arr = max_entries.to_le_bytes().to_vec();
        arr.resize(8 + 8 * max_entries as usize, 0);
        t.emu.write(t.array, &arr).expect("array");
        t.emu.write(t.map, &[0; 64]).expect("map");
        t
    }

    /// Compiles `src` as program `k` (at near + k * 64 KiB); returns its entry.
    fn install(&mut self, k: u64, src: &str, atomics: Atomics) -> u64 {
        let prog = assemble(src).expect("assembles");
        let h = harness_helpers(&self.emu);
        let (array, map) = (self.array, self.map);
        let resolve = move |_: usize, s: LdImm64Src| match s {
            LdImm64Src::MapFd(1) => Some(array),
            LdImm64Src::MapFd(2) => Some(map),
            _ => None,
        };
        let opts = JitOptions::new(&h).with_ld_imm64(&resolve);
        let base = region_base(&self.emu, Region::Near, k << 16);
        let code = compile_at(&prog, &opts, base, atomics).expect("compiles");
        self.emu.write(base, &code.code).expect("write");
        base
    }

    fn set_slot(&mut self, i: u64, entry: u64) {
        let at = self.array + PROG_ARRAY_SLOTS_OFFSET as u64 + 8 * i;
        self.emu.write(at, &entry.to_le_bytes()).expect("slot");
    }

    fn count(&mut self, word: u64) -> u64 {
        let b = self.emu.read(self.map + 8 * word, 8).expect("read");
        u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
    }

    fn reset(&mut self) {
        self.emu.write(self.map, &[0; 64]).expect("map");
    }
}

/// `tailcall_bpf2bpf_hierarchy_1`: entry counts, then calls a subprogram
/// that tail-calls entry, twice. One counter per invocation: 34 runs.
const HIERARCHY: &str = "
    r6 = r1
    r1 = map[fd:2]
    r2 = 0
    r3 = 1
    call 3
    r1 = r6
    call pc sub
    r1 = r6
    call pc sub
    r0 = 5
    exit
  sub:
    r2 = map[fd:1]
    r3 = 0
    call 12
    r0 = 0
    exit";

#[test]
fn tail_calls_are_limited_to_33_per_invocation() {
    let Some(emu) = emulator("tail calls") else {
        return;
    };
    let mut t = TailEnv::new(emu, 2);
    for atomics in [Atomics::Lse, Atomics::LlSc] {
        let chain = t.install(0, CHAIN, atomics);
        t.set_slot(0, chain);
        t.reset();
        assert_eq!(t.emu.call(chain, [0; 5]).expect("runs"), 7);
        assert_eq!(t.count(0), 34, "1 run + 33 tail calls");
        // The budget is per invocation: a second run counts afresh.
        assert_eq!(t.emu.call(chain, [0; 5]).expect("runs"), 7);
        assert_eq!(t.count(0), 68);

        let hier = t.install(1, HIERARCHY, atomics);
        t.set_slot(0, hier);
        t.reset();
        assert_eq!(t.emu.call(hier, [0; 5]).expect("runs"), 5);
        assert_eq!(t.count(0), 34, "hierarchy_1: 34 runs");
    }
}

#[test]
fn failed_tail_calls_fall_through() {
    let Some(emu) = emulator("tail calls") else {
        return;
    };
    let mut t = TailEnv::new(emu, 2);
    // Slot 1 is empty, index 5 and index 2^32 + 0 (upper half ignored:
    // (u32)index = 0 would hit slot 0, which is empty too) fall through.
    let src = "
        r6 = r1
        r2 = map[fd:1]
        r3 = 5
        call 12
        r1 = r6
        r2 = map[fd:1]
        r3 = 1
        call 12
        r0 = 42
        exit";
    let p = t.install(2, src, Atomics::Lse);
    t.set_slot(0, 0);
    t.set_slot(1, 0);
    assert_eq!(t.emu.call(p, [0; 5]).expect("runs"), 42);
    // A tail call into a program in the far region (br, no bl range limit),
    // passing r1 on.
    let target = "
        r0 = r1
        r0 += 1
        exit";
    let far = region_base(&t.emu, Region::Far, 0);
    let prog = assemble(target).expect("assembles");
    let h = HelperTable::new();
    let code = compile_at(&prog, &JitOptions::new(&h), far, Atomics::Lse).expect("compiles");
    t.emu.write(far, &code.code).expect("write");
    t.set_slot(1, far);
    assert_eq!(t.emu.call(p, [99, 0, 0, 0, 0]).expect("runs"), 100);
}

/// The harness's eight-argument call and its concurrent runner thread (used
/// by the trampoline and direct-tail-call tests).
#[test]
fn harness_call8_and_runner_thread() {
    let Some(mut emu) = common::emulator("harness call8/runner") else {
        return;
    };
    let f = emu.layout().helper(HarnessHelper::WeightedSum8);
    let r = emu.call8(f, [1, 2, 3, 4, 5, 6, 7, 8]).expect("call8");
    // 1 + 4 + 9 + 16 + 25 + 36 + 49 + 64, computed by hand.
    assert_eq!(r, 204);
    // The runner calls ReturnArg1(7, ...) until stopped: every result is 7.
    let g = emu.layout().helper(HarnessHelper::ReturnArg1);
    emu.start_runner(g, [7, 0, 0, 0, 0]).expect("start");
    std::thread::sleep(std::time::Duration::from_millis(50));
    let seen = emu.stop_runner().expect("stop");
    assert!(seen.calls > 0, "{seen:?}");
    assert_eq!(seen.counts[7], seen.calls, "{seen:?}");
    // The harness is still usable afterwards.
    assert_eq!(emu.call(g, [9, 0, 0, 0, 0]).expect("call"), 9);
}

/// The driver's rotate idiom lowered as one `ror` (rotl(x, m) = rotr(x,
/// bits - m)), run under qemu; the same programs and hand-computed values
/// as the x86-64 `pairs` test. The inputs are set by the program itself.
#[test]
fn rotate_idioms_become_one_ror() {
    let Some(mut emu) = emulator("rotate idioms") else {
        return;
    };
    let h = HelperTable::new();
    // 32-bit, first form: w1 = rotl32(0x9abcdef1, 4) = 0xabcdef19, w2 = 9.
    let src = "r1 = 0x9abcdef1 ll\nw2 = w1\nw2 >>= 28\nw1 <<= 4\nw1 |= w2\nr0 = r1\nr0 <<= 8\nr0 += r2\nexit";
    let (r0, code) = run(&mut emu, src, Region::Near, &h);
    assert_eq!(r0, (0xabcd_ef19u64 << 8) + 9);
    // eBPF r1 is x0: `ror w0, w0, #28` (llvm-mc: 00 70 80 13).
    assert!(words(&code).any(|w| w == 0x1380_7000), "no ror w0, w0, #28");
    // 64-bit: rotl64(0xf123456789abcdef, 5).
    let x = 0xf123_4567_89ab_cdefu64;
    let src = format!("r8 = {x:#x} ll\nr1 = r8\nr1 >>= 59\nr8 <<= 5\nr8 |= r1\nr0 = r8\nexit");
    assert_eq!(run(&mut emu, &src, Region::Near, &h).0, x.rotate_left(5));
    // A jump target inside the idiom keeps the instructions apart: on the
    // fall-through w3 = 5 >> 28 = 0, so w1 = 0xabcdef10.
    let src = "r1 = 0x9abcdef1 ll\nr2 = 1\nw3 = w1\nif r2 == 0 goto +1\nw3 = 5\nw3 >>= 28\nw1 <<= 4\nw1 |= w3\nr0 = r1\nexit";
    assert_eq!(run(&mut emu, src, Region::Near, &h).0, 0xabcd_ef10);
}
