//! Direct tail calls on x86-64, in process: the sequence decodes as
//! documented (iced-x86), sites are taken, fall through, replaced and
//! removed as the slot changes, the 33-call limit holds, far targets go
//! through the stub, the image is never writable and executable at once,
//! and threads running the program while another rewrites the slot only
//! ever see allowed results.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bpf_isa::{assemble, LdImm64Src, Program};
use bpf_jit::{
    update_site, CodeWriter, HelperTable, JitOptions, JitProgArray, JitProgram, PatchErrorKind,
    SiteCodec,
};
use bpf_jit_x86::direct::{NOP5, X86_SITE_CODEC};
use bpf_jit_x86::TAIL_CALL_ENTRY_OFFSET;
use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind};

/// Tail-calls slot 0 of map fd 1; returns 100 if the call falls through.
const CALLER: &str = "r2 = map[fd:1]\nr3 = 0\ncall 12\nr0 = 100\nexit";

/// Counts its runs in the u64 at ctx and tail-calls itself (slot 0).
const SELF_CHAIN: &str = "r6 = r1
r2 = *(u64 *)(r6 + 0)
r2 += 1
*(u64 *)(r6 + 0) = r2
r1 = r6
r2 = map[fd:1]
r3 = 0
call 12
r0 = *(u64 *)(r6 + 0)
exit";

fn prog(src: &str) -> Program {
    assemble(src).expect("assembles")
}

fn jit(src: &str, pa: &JitProgArray, direct: bool) -> JitProgram {
    let helpers = HelperTable::new();
    let table = pa.as_ptr();
    let r = move |_: usize, s: LdImm64Src| (s == LdImm64Src::MapFd(1)).then_some(table);
    let opts = JitOptions::new(&helpers)
        .with_ld_imm64(&r)
        .with_direct_tail_calls(direct);
    let p = bpf_jit_x86::compile(&prog(src), &opts).expect("compiles");
    p.attach(pa).expect("attaches");
    p
}

fn run(p: &JitProgram, ctx: &mut u64) -> u64 {
    // SAFETY: the test programs only touch the u64 at ctx.
    unsafe { p.call([ctx as *mut u64 as u64, 0, 0, 0, 0]) }
}

fn entry(p: &JitProgram) -> u64 {
    p.memory().as_ptr() as u64
}

#[test]
fn sequence_decodes_as_documented() {
    let pa = JitProgArray::new(1);
    let helpers = HelperTable::new();
    let table = pa.as_ptr();
    let r = move |_: usize, _: LdImm64Src| Some(table);
    let opts = JitOptions::new(&helpers)
        .with_ld_imm64(&r)
        .with_direct_tail_calls(true);
    let code = bpf_jit_x86::compile_code(&prog(CALLER), &opts).unwrap();
    assert_eq!(code.direct_tail_calls.len(), 1);
    let site = code.direct_tail_calls[0];
    assert_eq!(
        (site.pos, site.slot, site.array, site.index),
        (2, 3, table, 0)
    );
    let l = site.layout;
    // Each patchable instruction lies in one aligned 8-byte word.
    assert!(l.bypass % 8 <= 3 && l.target % 8 <= 3, "{l:?}");
    assert_eq!(l.literal.unwrap() % 8, 0);
    // `out` is where the fall-through code (r0 = 100) starts.
    assert_eq!(l.out, code.insn_offsets[3]);
    let at = |off: u32| {
        let mut d = Decoder::with_ip(
            64,
            &code.code[off as usize..],
            u64::from(off),
            DecoderOptions::NONE,
        );
        d.decode()
    };
    let bypass = at(l.bypass);
    assert_eq!(bypass.mnemonic(), Mnemonic::Jmp);
    assert_eq!(bypass.len(), 5);
    assert_eq!(bypass.near_branch_target(), u64::from(l.out));
    let target = at(l.target);
    assert_eq!(target.mnemonic(), Mnemonic::Nop);
    assert_eq!(target.len(), 5);
    let stub = at(l.stub.unwrap());
    assert_eq!(stub.mnemonic(), Mnemonic::Jmp);
    assert_eq!(stub.op0_kind(), OpKind::Memory);
    assert!(stub.is_ip_rel_memory_operand());
    assert_eq!(stub.ip_rel_memory_address(), u64::from(l.literal.unwrap()));
    assert_eq!(u64::from(l.stub.unwrap()) + 6, u64::from(l.out));
    // Walking from the call's first byte: the counter check's `jae` goes to out.
    let mut d = Decoder::with_ip(
        64,
        &code.code[code.insn_offsets[2] as usize..l.bypass as usize],
        u64::from(code.insn_offsets[2]),
        DecoderOptions::NONE,
    );
    let jae = d
        .iter()
        .find(|i| i.mnemonic() == Mnemonic::Jae)
        .expect("counter check");
    assert_eq!(jae.near_branch_target(), u64::from(l.out));
}

#[test]
fn insert_replace_remove_reinsert() {
    let pa = JitProgArray::new(2);
    let caller = jit(CALLER, &pa, true);
    assert_eq!(caller.direct_tail_calls().len(), 1);
    assert_eq!(pa.registered_sites(), 1);
    let t7 = jit("r0 = 7\nexit", &pa, true);
    let t8 = jit("r0 = 8\nexit", &pa, true);
    let mut ctx = 0u64;
    assert_eq!(run(&caller, &mut ctx), 100, "empty slot falls through");
    pa.set(0, entry(&t7)).unwrap();
    assert_eq!(run(&caller, &mut ctx), 7, "inserted");
    pa.set(0, entry(&t8)).unwrap();
    assert_eq!(run(&caller, &mut ctx), 8, "replaced");
    pa.set(1, entry(&t7)).unwrap();
    assert_eq!(run(&caller, &mut ctx), 8, "another slot changes nothing");
    pa.set(0, 0).unwrap();
    assert_eq!(run(&caller, &mut ctx), 100, "removed");
    pa.set(0, entry(&t7)).unwrap();
    assert_eq!(run(&caller, &mut ctx), 7, "re-inserted");
    // A program attached after the slot was filled starts patched.
    let late = jit(CALLER, &pa, true);
    assert_eq!(run(&late, &mut ctx), 7);
    drop(late);
    assert_eq!(pa.registered_sites(), 1, "a dropped program unregisters");
    pa.set(0, entry(&t8)).unwrap();
    assert_eq!(run(&caller, &mut ctx), 8);
}

#[test]
fn out_of_range_index_never_tail_calls() {
    let pa = JitProgArray::new(1);
    let caller = jit("r2 = map[fd:1]\nr3 = 1\ncall 12\nr0 = 100\nexit", &pa, true);
    assert_eq!(caller.direct_tail_calls().len(), 1);
    assert_eq!(pa.registered_sites(), 0);
    let t7 = jit("r0 = 7\nexit", &pa, true);
    pa.set(0, entry(&t7)).unwrap();
    assert_eq!(run(&caller, &mut 0u64), 100);
}

#[test]
fn thirty_three_tail_calls_per_invocation() {
    for direct in [true, false] {
        let pa = JitProgArray::new(1);
        let p = jit(SELF_CHAIN, &pa, direct);
        assert_eq!(p.direct_tail_calls().len(), usize::from(direct));
        pa.set(0, entry(&p)).unwrap();
        // The kernel's MAX_TAIL_CALL_CNT: one run plus 33 tail calls.
        let mut ctx = 0u64;
        assert_eq!(run(&p, &mut ctx), 34, "direct: {direct}");
        // The counter is per invocation.
        let mut ctx = 0u64;
        assert_eq!(run(&p, &mut ctx), 34, "direct: {direct}");
        pa.set(0, 0).unwrap();
    }
}

#[test]
fn non_constant_index_stays_indirect() {
    let pa = JitProgArray::new(2);
    let caller = jit(
        "r3 = *(u64 *)(r1 + 0)\nr2 = map[fd:1]\ncall 12\nr0 = 100\nexit",
        &pa,
        true,
    );
    assert!(caller.direct_tail_calls().is_empty());
    let t7 = jit("r0 = 7\nexit", &pa, true);
    pa.set(1, entry(&t7)).unwrap();
    assert_eq!(run(&caller, &mut 1u64), 7);
    assert_eq!(run(&caller, &mut 0u64), 100);
}

/// The mapping flags of the page holding `addr` in /proc/self/maps.
fn perms_of(addr: u64) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("procfs");
    for line in maps.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((lo, hi)) = range.split_once('-') else {
            continue;
        };
        let lo = u64::from_str_radix(lo, 16).unwrap();
        let hi = u64::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&addr) {
            return perms.to_string();
        }
    }
    panic!("{addr:#x} not mapped");
}

#[test]
fn no_mapping_is_writable_and_executable() {
    let pa = JitProgArray::new(1);
    let caller = jit(CALLER, &pa, true);
    let t7 = jit("r0 = 7\nexit", &pa, true);
    pa.set(0, entry(&t7)).unwrap();
    assert_eq!(perms_of(entry(&caller)), "r-xs");
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let perms = line.split_whitespace().nth(1).unwrap_or("");
        assert!(
            !(perms.contains('w') && perms.contains('x')),
            "W+X mapping: {line}"
        );
    }
}

/// A writer over a copy of an image placed at a chosen address.
struct Copy {
    base: u64,
    code: Vec<u8>,
}

impl CodeWriter for Copy {
    fn base(&self) -> u64 {
        self.base
    }
    fn read(&mut self, offset: u32, len: u8) -> Result<u64, PatchErrorKind> {
        let mut b = [0u8; 8];
        b[..len as usize].copy_from_slice(&self.code[offset as usize..][..len as usize]);
        Ok(u64::from_le_bytes(b))
    }
    fn write(&mut self, offset: u32, len: u8, value: u64) -> Result<(), PatchErrorKind> {
        assert_eq!(offset % u32::from(len), 0, "unaligned write");
        self.code[offset as usize..][..len as usize]
            .copy_from_slice(&value.to_le_bytes()[..len as usize]);
        Ok(())
    }
}

#[test]
fn near_and_far_targets_decode_to_the_program() {
    let helpers = HelperTable::new();
    let r = |_: usize, _: LdImm64Src| Some(0x1000);
    let opts = JitOptions::new(&helpers)
        .with_ld_imm64(&r)
        .with_direct_tail_calls(true);
    let code = bpf_jit_x86::compile_code(&prog(CALLER), &opts).unwrap();
    let site = code.direct_tail_calls[0];
    let l = site.layout;
    let base = 0x7f00_0000_0000u64;
    let decode_at = |w: &Copy, off: u32| {
        let mut d = Decoder::with_ip(
            64,
            &w.code[off as usize..],
            base + u64::from(off),
            DecoderOptions::NONE,
        );
        d.decode()
    };
    let mut w = Copy {
        base,
        code: code.code.clone(),
    };
    // Near: the target is a rel32 jmp past the program's head.
    let near = base + 0x10_0000;
    update_site(&X86_SITE_CODEC, &mut w, &site, 0, near).unwrap();
    let t = decode_at(&w, l.target);
    assert_eq!(t.mnemonic(), Mnemonic::Jmp);
    assert_eq!(
        t.near_branch_target(),
        near + u64::from(TAIL_CALL_ENTRY_OFFSET)
    );
    assert_eq!(&w.code[l.bypass as usize..][..5], &NOP5, "bypass off");
    // Far (4 GiB away): the target jumps to the stub, whose literal holds it.
    let far = base + (4 << 30);
    update_site(&X86_SITE_CODEC, &mut w, &site, near, far).unwrap();
    let t = decode_at(&w, l.target);
    assert_eq!(t.near_branch_target(), base + u64::from(l.stub.unwrap()));
    let lit = l.literal.unwrap() as usize;
    let lit = u64::from_le_bytes(w.code[lit..lit + 8].try_into().unwrap());
    assert_eq!(lit, far + u64::from(TAIL_CALL_ENTRY_OFFSET));
    // Remove: the bypass jumps to out again, the target stays.
    update_site(&X86_SITE_CODEC, &mut w, &site, far, 0).unwrap();
    let b = decode_at(&w, l.bypass);
    assert_eq!(b.near_branch_target(), base + u64::from(l.out));
    assert_eq!(
        decode_at(&w, l.target).near_branch_target(),
        base + u64::from(l.stub.unwrap())
    );
    // Only the patchable bytes ever changed.
    let changed: Vec<usize> = (0..code.code.len())
        .filter(|&i| code.code[i] != w.code[i])
        .collect();
    let lit0 = l.literal.unwrap() as usize;
    for i in changed {
        let in_part = (l.target as usize..l.target as usize + 5).contains(&i)
            || (lit0..lit0 + 8).contains(&i);
        assert!(in_part, "byte {i} changed outside the patchable parts");
    }
    // The codec refuses a bypass word that would straddle words.
    let mut bad = l;
    bad.bypass = 5;
    assert!(X86_SITE_CODEC.set_bypass(&mut w, &bad, true).is_err());
}

#[test]
fn concurrent_runs_while_the_slot_changes() {
    const RUNNERS: usize = 3;
    const UPDATES: usize = 20_000;
    let pa = Arc::new(JitProgArray::new(1));
    let caller = Arc::new(jit(CALLER, &pa, true));
    let chain = Arc::new(jit(SELF_CHAIN, &pa, true));
    // Every program the slot ever holds stays mapped for the whole test
    // (the runtime's retire list plays this role in bpf-vm).
    let t7 = jit("r0 = 7\nexit", &pa, true);
    let t8 = jit("r0 = 8\nexit", &pa, true);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let runners: Vec<_> = (0..RUNNERS)
        .map(|i| {
            let (caller, chain, stop) = (caller.clone(), chain.clone(), stop.clone());
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = [0u64; 4];
                let mut runs = 0u64;
                while !stop.load(Ordering::Relaxed) || runs < 1000 {
                    let mut ctx = 0u64;
                    // Runner 0 also runs the chain program (which tail-calls
                    // slot 0 itself); results through slot 0 are 7, 8, or the
                    // chain's run count (1 to 34).
                    let p = if i == 0 && runs % 4 == 3 {
                        &chain
                    } else {
                        &caller
                    };
                    match run(p, &mut ctx) {
                        100 => seen[0] += 1,
                        7 => seen[1] += 1,
                        8 => seen[2] += 1,
                        1..=34 => seen[3] += 1,
                        other => panic!("result {other}"),
                    }
                    runs += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    if runs.is_multiple_of(16) {
                        // Two CPUs shared with the updater.
                        std::thread::yield_now();
                    }
                }
                (runs, seen)
            })
        })
        .collect();
    let targets = [entry(&t7), entry(&t8), entry(&chain)];
    for k in 0..UPDATES {
        // insert, replace, replace, remove, …
        let v = match k % 4 {
            3 => 0,
            j => targets[j % targets.len()],
        };
        pa.set(0, v).unwrap();
        // Let at least RUNNERS + 1 runs complete: one of them started after
        // the update (a runner has at most one run in flight), so every
        // state is observed.
        let seen_before = done.load(Ordering::Relaxed);
        while done.load(Ordering::Relaxed) < seen_before + RUNNERS as u64 + 1 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = [0u64; 4];
    for r in runners {
        let (runs, seen) = r.join().expect("runner did not crash");
        assert!(runs >= 1000);
        for (t, s) in total.iter_mut().zip(seen) {
            *t += s;
        }
    }
    assert!(
        total.iter().all(|&n| n > 0),
        "every state observed: {total:?}"
    );
    eprintln!(
        "concurrent: {UPDATES} slot updates; results: 100 x{}, 7 x{}, 8 x{}, chain x{}",
        total[0], total[1], total[2], total[3]
    );
    pa.set(0, 0).unwrap();
}
