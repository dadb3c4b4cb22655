//! What the verifier hands the JITs, on hand-written programs whose answers
//! are worked out by hand in the comments: tail-call sites
//! ([`bpf_verifier::TailCallAux`]), zero-extension needs
//! ([`bpf_verifier::InsnAux::zext_needed`]), and the combined stack-depth
//! check after the fastcall rewrite (with the live kernel's verdicts).

use bpf_tests::kernel;
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::verify_and_remove_fastcall_spills;
use bpf_verifier::{verify, MapInfo, Options, ProgKind, TailCallAux, VerifiedProgram};

fn prog_array(name: &str, max_entries: u32) -> MapInfo {
    MapInfo {
        name: name.into(),
        map_type: 3,
        key_size: 4,
        value_size: 4,
        max_entries,
        flags: 0,
        fd: None,
    }
}

fn run(text: &str) -> VerifiedProgram {
    let prog = bpf_isa::assemble(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let opts = Options::new(ProgKind::SocketFilter)
        .with_maps(vec![prog_array("pa", 4), prog_array("pb", 8)]);
    verify(&prog, &opts).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// The tail-call facts of the only `call 12` of `vp`, and that no other
/// instruction has any.
fn tail_site(vp: &VerifiedProgram) -> Option<TailCallAux> {
    let sites: Vec<_> = vp.aux.iter().filter_map(|a| a.tail_call).collect();
    assert!(sites.len() <= 1, "{sites:?}");
    sites.first().copied()
}

// Slots: 0 r6 = r1, 1 r7 = *(u32 *)(r6 + 0) (skb->len, unknown),
// 2 if r7 == 0 goto +3, then two arms setting r2/r3, joined at the call.
fn two_arms(left: &str, right: &str) -> String {
    format!(
        "r6 = r1\nr7 = *(u32 *)(r6 + 0)\nif r7 == 0 goto arm2\n{left}\ngoto join\narm2: {right}\njoin: r1 = r6\ncall 12\nr0 = 0\nexit"
    )
}

#[test]
fn tail_call_same_constant_key_on_all_paths() {
    let vp = run(&two_arms(
        "r2 = map[idx:0]\nr3 = 1",
        "r2 = map[idx:0]\nr3 = 1",
    ));
    assert_eq!(
        tail_site(&vp),
        Some(TailCallAux {
            map_index: Some(0),
            key: Some(1)
        })
    );
}

#[test]
fn tail_call_different_keys_poison_the_key() {
    let vp = run(&two_arms(
        "r2 = map[idx:0]\nr3 = 1",
        "r2 = map[idx:0]\nr3 = 2",
    ));
    assert_eq!(
        tail_site(&vp),
        Some(TailCallAux {
            map_index: Some(0),
            key: None
        })
    );
}

#[test]
fn tail_call_non_constant_or_out_of_range_key_is_poisoned() {
    // r3 = skb->len: unknown.
    let vp = run("r6 = r1\nr3 = *(u32 *)(r6 + 0)\nr2 = map[idx:0]\nr1 = r6\ncall 12\nr0 = 0\nexit");
    assert_eq!(
        tail_site(&vp),
        Some(TailCallAux {
            map_index: Some(0),
            key: None
        })
    );
    // 4 is not below max_entries (4) of map 0; 3 is.
    let vp = run("r6 = r1\nr3 = 4\nr2 = map[idx:0]\nr1 = r6\ncall 12\nr0 = 0\nexit");
    assert_eq!(tail_site(&vp).and_then(|t| t.key), None);
    let vp = run("r6 = r1\nr3 = 3\nr2 = map[idx:0]\nr1 = r6\ncall 12\nr0 = 0\nexit");
    assert_eq!(tail_site(&vp).and_then(|t| t.key), Some(3));
}

#[test]
fn tail_call_two_maps_poison_the_map() {
    let vp = run(&two_arms(
        "r2 = map[idx:0]\nr3 = 2",
        "r2 = map[idx:1]\nr3 = 2",
    ));
    assert_eq!(
        tail_site(&vp),
        Some(TailCallAux {
            map_index: None,
            key: Some(2)
        })
    );
}

#[test]
fn no_tail_call_facts_elsewhere() {
    let vp = run("r0 = 0\nexit");
    assert_eq!(tail_site(&vp), None);
}

/// Slots whose `zext_needed` is set.
fn zext_slots(text: &str) -> Vec<usize> {
    let vp = run(text);
    vp.aux
        .iter()
        .enumerate()
        .filter(|(_, a)| a.zext_needed)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn zext_exit_reads_r0_as_64_bits() {
    // 0: w0 = 1 reaches exit (a 64-bit read of r0).
    assert_eq!(zext_slots("w0 = 1\nexit"), vec![0]);
    // 0: w0 = 1 is only read by the 32-bit add, which redefines r0.
    assert_eq!(zext_slots("w0 = 1\nw0 += 2\nexit"), vec![1]);
    // A 64-bit add reads all of r0.
    assert_eq!(zext_slots("w0 = 1\nr0 += 2\nexit"), vec![0]);
    // 64-bit definitions never need it.
    assert_eq!(zext_slots("r0 = 1\nexit"), Vec::<usize>::new());
}

#[test]
fn zext_32_bit_reads_do_not_need_it() {
    // 0: r2 = *(u32 *)(r1 + 0)  (a 4-byte load: 32-bit definition)
    // 1: w3 = w2                 (32-bit read of r2; 32-bit definition of r3)
    // 2: r0 = 0
    // 3: if w3 > 5 goto +1       (32-bit read of r3)
    // 4: r0 = 1
    // 5: exit
    assert_eq!(
        zext_slots("r2 = *(u32 *)(r1 + 0)\nw3 = w2\nr0 = 0\nif w3 > 5 goto +1\nr0 = 1\nexit"),
        Vec::<usize>::new()
    );
    // The same with a 64-bit comparison at 3: slot 1 needs it, slot 0 not.
    assert_eq!(
        zext_slots("r2 = *(u32 *)(r1 + 0)\nw3 = w2\nr0 = 0\nif r3 > 5 goto +1\nr0 = 1\nexit"),
        vec![1]
    );
    // 8-byte loads define all 64 bits.
    assert_eq!(
        zext_slots("r2 = 0\n*(u64 *)(r10 - 8) = r2\nr0 = *(u64 *)(r10 - 8)\nexit"),
        Vec::<usize>::new()
    );
}

#[test]
fn zext_stores_by_size() {
    // A 4-byte store reads 32 bits; an 8-byte store reads 64.
    assert_eq!(
        zext_slots("w1 = 5\n*(u32 *)(r10 - 8) = r1\nr0 = 0\nexit"),
        Vec::<usize>::new()
    );
    assert_eq!(
        zext_slots("w1 = 5\n*(u64 *)(r10 - 8) = r1\nr0 = 0\nexit"),
        vec![0]
    );
}

#[test]
fn zext_joins_paths() {
    // 0: r2 = *(u32 *)(r1 + 0)
    // 1: if w2 == 0 goto +2
    // 2: w3 = 1
    // 3: goto +1
    // 4: w3 = 2
    // 5: r0 = r3      (64-bit move: both definitions of r3 reach it)
    // 6: exit
    assert_eq!(
        zext_slots(
            "r2 = *(u32 *)(r1 + 0)\nif w2 == 0 goto +2\nw3 = 1\ngoto +1\nw3 = 2\nr0 = r3\nexit"
        ),
        vec![2, 4]
    );
}

#[test]
fn zext_helper_arguments_and_clobbers() {
    // The tail call reads r3 (its key) as 64 bits: slot 1 needs it.
    // 0: r6 = r1, 1: w3 = 1, 2-3: r2 = map, 4: r1 = r6, 5: call 12,
    // 6: r0 = 0, 7: exit
    assert_eq!(
        zext_slots("r6 = r1\nw3 = 1\nr2 = map[idx:0]\nr1 = r6\ncall 12\nr0 = 0\nexit"),
        vec![1]
    );
    // bpf_get_prandom_u32 takes no argument and clobbers r1: w1 is dead.
    assert_eq!(zext_slots("w1 = 5\ncall 7\nexit"), Vec::<usize>::new());
    // The helper's r0 is a 64-bit definition.
    assert_eq!(zext_slots("call 7\nexit"), Vec::<usize>::new());
}

#[test]
fn zext_through_subprogram_calls() {
    // 0: w1 = 7, 1: call pc+2, 2: r0 = 0, 3: exit, 4: r0 = r1, 5: exit.
    // The callee reads r1 as 64 bits.
    assert_eq!(
        zext_slots("w1 = 7\ncall pc+2\nr0 = 0\nexit\nr0 = r1\nexit"),
        vec![0]
    );
    // The callee reads w1 only; its own w0 reaches its exit.
    assert_eq!(
        zext_slots("w1 = 7\ncall pc+2\nr0 = 0\nexit\nw0 = w1\nexit"),
        vec![4]
    );
    // r6 survives the call and is read as 64 bits after it.
    assert_eq!(
        zext_slots("w6 = 7\ncall pc+2\nr0 = r6\nexit\nr0 = 0\nexit"),
        vec![0]
    );
    // The callee's w0 is read as 32 bits by the caller after the call.
    assert_eq!(
        zext_slots("call pc+3\nw0 += 1\nr0 = 0\nexit\nw0 = 1\nexit"),
        vec![4]
    );
}

#[test]
fn zext_byte_swaps_and_atomics() {
    // be16/le32/bswap32 define 32 bits (the kernel's `is_reg64`: BPF_ALU
    // class, and BPF_ALU64 bswap16/32); the 64-bit forms define 64.
    // 0: r1 = 0x1234, 1: r1 = be16 r1, 2: r0 = r1, 3: exit
    assert_eq!(
        zext_slots("r1 = 0x1234\nr1 = be16 r1\nr0 = r1\nexit"),
        vec![1]
    );
    assert_eq!(
        zext_slots("r1 = 0x1234\nr1 = le32 r1\nr0 = r1\nexit"),
        vec![1]
    );
    assert_eq!(
        zext_slots("r1 = 0x1234\nr1 = bswap32 r1\nr0 = r1\nexit"),
        vec![1]
    );
    assert_eq!(
        zext_slots("r1 = 0x1234\nr1 = be64 r1\nr0 = r1\nexit"),
        Vec::<usize>::new()
    );
    assert_eq!(
        zext_slots("r1 = 0x1234\nr1 = bswap64 r1\nr0 = r1\nexit"),
        Vec::<usize>::new()
    );
    // A 4-byte atomic fetch defines its source register by 32 bits; the
    // 8-byte one by 64.
    // 0: r1 = 0, 1: *(u64 *)(r10 - 8) = r1, 2: r1 = 1, 3: fetch-add,
    // 4: r0 = r1, 5: exit
    assert_eq!(
        zext_slots("r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = 1\nr1 = atomic_fetch_add((u32 *)(r10 - 8), r1)\nr0 = r1\nexit"),
        vec![3]
    );
    assert_eq!(
        zext_slots("r1 = 0\n*(u64 *)(r10 - 8) = r1\nr1 = 1\nr1 = atomic_fetch_add((u64 *)(r10 - 8), r1)\nr0 = r1\nexit"),
        Vec::<usize>::new()
    );
}

#[test]
fn zext_legacy_packet_loads() {
    // r0 of ld_abs is a 32-bit definition and reaches exit.
    assert_eq!(zext_slots("r6 = r1\nr0 = *(u8 *)skb[0]\nexit"), vec![1]);
}

/// main (slots 0-10) uses 256 bytes of stack, calls sub (slot 11) and
/// then tail calls (a tail call keeps Linux from giving the program
/// private stacks, which would lift the combined limit for raw_tp); sub
/// uses 256 bytes plus an 8-byte fastcall bracket at fp-264 around
/// `bpf_get_smp_processor_id`. Frames count rounded up to 16 bytes:
/// 256 + 272 = 528 > 512 with the bracket, 256 + 256 = 512 without.
const BRACKETED_CHAIN: &str = "r6 = r1
r1 = 0
*(u64 *)(r10 - 256) = r1
call pc+7
r1 = r6
r2 = map[idx:0]
r3 = 0
call 12
r0 = 0
exit
r1 = 1
*(u64 *)(r10 - 256) = r1
*(u64 *)(r10 - 264) = r1
call 8
r1 = *(u64 *)(r10 - 264)
r0 = r1
exit";

/// The same with sub's own stack at fp-288 and the bracket at fp-296:
/// 256 + 304 = 560 with the bracket, 256 + 288 = 544 without.
const DEEP_CHAIN: &str = "r6 = r1
r1 = 0
*(u64 *)(r10 - 256) = r1
call pc+7
r1 = r6
r2 = map[idx:0]
r3 = 0
call 12
r0 = 0
exit
r1 = 1
*(u64 *)(r10 - 288) = r1
*(u64 *)(r10 - 296) = r1
call 8
r1 = *(u64 *)(r10 - 296)
r0 = r1
exit";

/// Loads `prog` into the live kernel as a raw_tp program with a fresh
/// program array as map 0 and BTF `func_info`; `Ok` or the kernel's log.
fn kernel_verdict(prog: &bpf_isa::Program) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let pa = kernel::map_create(3, 4, 4, 4, 0).map_err(|e| e.to_string())?;
    let fds = [pa.as_raw_fd()];
    let starts: Vec<u32> = bpf_callgraph::CallGraph::build(prog)
        .map_err(|e| e.to_string())?
        .subprogs()
        .values()
        .map(|s| s.start.slot() as u32)
        .collect();
    let btf = kernel::btf_load(&kernel::func_btf(starts.len())).map_err(|e| e.to_string())?;
    let func_info = kernel::func_infos(&starts);
    let code = prog.to_bytes();
    let mut load = kernel::ProgLoad::new(17, &code);
    load.fd_array = &fds;
    load.btf_fd = Some(btf.as_raw_fd());
    load.func_info = &func_info;
    load.log_level = 1;
    load.log_size = 1 << 16;
    match kernel::prog_load_logged(&load) {
        Ok(_) => Ok(()),
        Err(kernel::KernelError::Failed { log, .. }) => Err(log),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn chain_depth_is_checked_after_the_fastcall_rewrite() {
    let opts = Options::new(ProgKind::RawTracepoint).with_maps(vec![prog_array("pa", 4)]);
    let prog = bpf_isa::assemble(BRACKETED_CHAIN).expect("assembles");
    let err = verify(&prog, &opts).expect_err("without the rewrite the chain is 528 bytes");
    assert!(
        err.message
            .contains("combined stack size of 2 calls is 528"),
        "{}",
        err.message
    );
    let (vp, out) = verify_and_remove_fastcall_spills(&prog, &opts, &FastcallTable::linux())
        .expect("with the rewrite the chain is 512 bytes");
    assert_eq!(out.removed_pairs(), 1);
    assert_eq!(vp.stack_depth, vec![256, 264]);
    assert_eq!(out.stack_depth, vec![256, 256]);

    // A chain over the limit even without the bracket stays rejected.
    let deep = bpf_isa::assemble(DEEP_CHAIN).expect("assembles");
    let err = verify_and_remove_fastcall_spills(&deep, &opts, &FastcallTable::linux())
        .expect_err("544 bytes after the rewrite");
    assert!(
        err.message
            .contains("combined stack size of 2 calls is 544"),
        "{}",
        err.message
    );

    // The live kernel runs its rewrite first: the same verdicts.
    if !kernel::available_or_skip("the kernel's verdict on the fastcall chains") {
        return;
    }
    if let Err(log) = kernel_verdict(&prog) {
        panic!("the kernel rejects the bracketed chain:\n{log}");
    }
    match kernel_verdict(&deep) {
        Ok(()) => panic!("the kernel accepts the deep chain"),
        Err(log) => assert!(
            log.contains("combined stack size of 2 calls is 544"),
            "{log}"
        ),
    }
}
