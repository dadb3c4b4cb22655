//! `bpf_fastcall` spill/fill removal against the live kernel.
//!
//! Every naked raw_tp case of the kernel selftest
//! `tools/testing/selftests/bpf/progs/verifier_bpf_fastcall.c` is written
//! here in our assembler and loaded into the running kernel; the kernel's
//! xlated program (after undoing its x86-64 inlining of
//! `bpf_get_smp_processor_id`) is compared with our rewrite. Where the
//! kernel's per-subprogram contract keeps pairs that our per-pair rule
//! removes, the test asserts exactly that (kernel keeps, we remove) and
//! that the rewritten program computes the same results in bpf-vm.
//!
//! Needs root and bpf(); on this project's machines both are there, and a
//! missing kernel fails the test loudly.

use bpf_isa::{assemble, Program, RawInsn};
use bpf_tests::kernel::{prog_info, prog_load, ProgLoad};

/// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
const RAW_TRACEPOINT: u32 = 17;
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::helpers::{ArgKind, HelperProto, RetKind, Special};
use bpf_verifier::nocsr::{remove_fastcall_spills, NocsrOutcome};
use bpf_verifier::{verify, Options, ProgKind};
use bpf_vm::{Engine, LoadedProgram};

/// How our result relates to the kernel's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Our rewrite equals the kernel's xlated program.
    SameAsKernel,
    /// Same pairs removed; the kernel's xlated output has other rewrites
    /// (may_goto, bpf_loop inlining), so only the pair counts are compared.
    SameCount,
    /// We remove more pairs than the kernel.
    MoreThanKernel,
}

struct Case {
    name: &'static str,
    asm: &'static str,
    expect: Expect,
    /// Pairs the selftest's `__xlated` annotations say the kernel removes.
    kernel_removes: usize,
    /// Pairs we remove (hand-derived from the per-pair rule).
    we_remove: usize,
    /// Run in bpf-vm (helpers all implemented there).
    run_vm: bool,
    /// Extra platform fastcall helpers `(id, name)` (0 parameters, returning).
    platform: &'static [(i32, &'static str)],
    /// Loadable into the kernel without BTF (callbacks need `func_info`,
    /// which these hand-written programs do not carry).
    kernel: bool,
}

const fn case(
    name: &'static str,
    asm: &'static str,
    expect: Expect,
    kernel_removes: usize,
    we_remove: usize,
) -> Case {
    Case {
        name,
        asm,
        expect,
        kernel_removes,
        we_remove,
        run_vm: true,
        platform: &[],
        kernel: true,
    }
}

use Expect::*;

/// The selftest file's naked raw_tp cases, in file order.
fn selftest_cases() -> Vec<Case> {
    vec![
        case("simple", "r1 = 1\nr2 = 2\nr3 = 3\nr4 = 4\nr5 = 5\n*(u64 *)(r10 - 16) = r1\n*(u64 *)(r10 - 24) = r2\n*(u64 *)(r10 - 32) = r3\n*(u64 *)(r10 - 40) = r4\n*(u64 *)(r10 - 48) = r5\ncall 8\nr5 = *(u64 *)(r10 - 48)\nr4 = *(u64 *)(r10 - 40)\nr3 = *(u64 *)(r10 - 32)\nr2 = *(u64 *)(r10 - 24)\nr1 = *(u64 *)(r10 - 16)\nexit", SameAsKernel, 5, 5),
        case("canary_zero_spills", "call 8\nexit", SameAsKernel, 0, 0),
        case("wrong_reg_in_pattern1", "r1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr2 = *(u64 *)(r10 - 16)\nexit", SameAsKernel, 0, 0),
        case("wrong_reg_in_pattern2", "r6 = 1\n*(u64 *)(r10 - 16) = r6\ncall 8\nr6 = *(u64 *)(r10 - 16)\nexit", SameAsKernel, 0, 0),
        case("wrong_reg_in_pattern3", "r0 = 1\n*(u64 *)(r10 - 16) = r0\ncall 8\nr0 = *(u64 *)(r10 - 16)\nexit", SameAsKernel, 0, 0),
        case("wrong_base_in_pattern", "r1 = 1\nr2 = r10\n*(u64 *)(r2 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nexit", SameAsKernel, 0, 0),
        case("wrong_insn_in_pattern", "r1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr2 = 1\nr1 = *(u64 *)(r10 - 16)\nexit", SameAsKernel, 0, 0),
        case("wrong_off_in_pattern1", "r1 = 1\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nexit", SameAsKernel, 0, 0),
        case("wrong_off_in_pattern2", "r1 = 1\n*(u32 *)(r10 - 4) = r1\ncall 8\nr1 = *(u32 *)(r10 - 4)\nexit", SameAsKernel, 0, 0),
        case("wrong_size_in_pattern", "r1 = 1\n*(u32 *)(r10 - 16) = r1\ncall 8\nr1 = *(u32 *)(r10 - 16)\nexit", SameAsKernel, 0, 0),
        case("partial_pattern", "r1 = 1\nr2 = 2\n*(u32 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r2\ncall 8\nr2 = *(u64 *)(r10 - 16)\nr1 = *(u32 *)(r10 - 8)\nexit", SameAsKernel, 1, 1),
        // The kernel keeps the pairs at -8/-16 (not at the lowest offset); we remove them too.
        case("min_stack_offset", "r1 = 1\nr2 = 2\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r2\ncall 8\nr2 = *(u64 *)(r10 - 16)\nr1 = *(u64 *)(r10 - 8)\n*(u64 *)(r10 - 24) = r1\n*(u64 *)(r10 - 32) = r2\ncall 8\nr2 = *(u64 *)(r10 - 32)\nr1 = *(u64 *)(r10 - 24)\nexit", MoreThanKernel, 2, 4),
        case("bad_fixed_read", "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr1 = r10\nr1 += -8\nr1 = *(u64 *)(r1 - 0)\nexit", SameAsKernel, 0, 0),
        // A later write to the slot reads nothing: the pair goes.
        case("bad_fixed_write", "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr1 = r10\nr1 += -8\n*(u64 *)(r1 - 0) = r1\nexit", MoreThanKernel, 0, 1),
        case("bad_varying_read", "r6 = *(u64 *)(r1 + 0)\nr6 &= 0x7\nr6 += 0x2\nr7 = 0\nr7 -= r6\nr1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nr1 = r10\nr1 += r7\nr1 = *(u8 *)(r1 - 0)\nexit", SameAsKernel, 0, 0),
        case("bad_varying_write", "r6 = *(u64 *)(r1 + 0)\nr6 &= 0x7\nr6 += 0x2\nr7 = 0\nr7 -= r6\nr1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nr1 = r10\nr1 += r7\n*(u8 *)(r1 - 0) = r7\nexit", MoreThanKernel, 0, 1),
        case("bad_write_in_subprog", "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr1 = r10\nr1 += -8\ncall pc+1\nexit\nr0 = 1\n*(u64 *)(r1 - 0) = r0\nexit", MoreThanKernel, 0, 1),
        // bpf_probe_read_kernel (113) writes fp-8: we count a helper's
        // stack argument as a read (conservative), as the kernel keeps it.
        Case { run_vm: false, ..case("bad_helper_write", "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr1 = r10\nr1 += -8\nr2 = 1\nr3 = 42\ncall 113\nexit", SameAsKernel, 0, 0) },
        case("invalidate_one_subprog", "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr1 = r10\nr1 += -8\nr1 = *(u64 *)(r1 - 0)\ncall pc+1\nexit\nr1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nexit", SameAsKernel, 1, 1),
        case("subprogs_use_independent_offsets", "r1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\ncall pc+1\nexit\nr1 = 1\n*(u64 *)(r10 - 24) = r1\ncall 8\nr1 = *(u64 *)(r10 - 24)\n*(u64 *)(r10 - 16) = r1\nexit", SameAsKernel, 2, 2),
        // Returns bpf_get_prandom_u32's value: not run in the VM.
        Case { run_vm: false, ..case("helper_call_does_not_prevent_bpf_fastcall", "r1 = 1\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\n*(u64 *)(r10 - 8) = r1\ncall 7\nr1 = *(u64 *)(r10 - 8)\nexit", SameAsKernel, 1, 1) },
        case("may_goto_interaction_x86_64", "r1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nmay_goto +1\n*(u64 *)(r10 - 8) = r1\nexit", SameCount, 1, 1),
        // bpf_loop callbacks need BTF func_info to load: the kernel side is
        // the selftest's `__xlated` annotations, not a live load.
        Case { kernel: false, ..case("bpf_loop_interaction1", "r1 = 1\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nld_pseudo r2, 4, 6\nr3 = 0\nr4 = 0\ncall 181\nr0 = 0\nexit\nr0 = 0\nexit", SameCount, 1, 1) },
        Case { kernel: false, ..case("bpf_loop_interaction2", "r1 = 42\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\n*(u64 *)(r10 - 16) = r1\ncall 7\nr1 = *(u64 *)(r10 - 16)\nld_pseudo r2, 4, 6\nr3 = 0\nr4 = 0\ncall 181\nr0 = 0\nexit\nr0 = 0\nexit", SameCount, 1, 1) },
    ]
}

/// Our own cases beyond the kernel's contract: we remove pairs it keeps.
fn beyond_cases() -> Vec<Case> {
    vec![
        // Three calls, three offsets; the kernel only takes the lowest.
        case("three_offsets", "r1 = 7\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\n*(u64 *)(r10 - 24) = r1\ncall 8\nr1 = *(u64 *)(r10 - 24)\nr0 = r1\nexit", MoreThanKernel, 1, 3),
        // Only the platform knows bpf_get_prandom_u32 as fastcall.
        Case { platform: &[(7, "bpf_get_prandom_u32")], ..case("platform_prandom", "r1 = 5\nr2 = 6\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r2\ncall 7\nr2 = *(u64 *)(r10 - 16)\nr1 = *(u64 *)(r10 - 8)\nr0 = r1\nr0 += r2\nexit", MoreThanKernel, 0, 2) },
        Case { platform: &[(5, "bpf_ktime_get_ns")], ..case("platform_ktime", "r3 = 9\n*(u64 *)(r10 - 8) = r3\ncall 5\nr3 = *(u64 *)(r10 - 8)\nr0 = r3\nexit", MoreThanKernel, 0, 1) },
        // A later store and load of the same slot read the new value.
        case("store_load_after", "r1 = 3\nr6 = 11\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\n*(u64 *)(r10 - 8) = r6\nr0 = *(u64 *)(r10 - 8)\nr0 += r1\nexit", MoreThanKernel, 0, 1),
        // The slot is used before the bracket.
        case("use_before", "r6 = 4\n*(u64 *)(r10 - 8) = r6\nr6 = *(u64 *)(r10 - 8)\nr1 = 2\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr0 = r1\nr0 += r6\nexit", MoreThanKernel, 0, 1),
        // An immediate store over the slot, then a narrow read of it.
        case("st_imm_after", "r2 = 8\n*(u64 *)(r10 - 8) = r2\ncall 8\nr2 = *(u64 *)(r10 - 8)\n*(u64 *)(r10 - 8) = 77\nr0 = *(u32 *)(r10 - 8)\nr0 += r2\nexit", MoreThanKernel, 0, 1),
        // A callee writes another slot of the caller's region.
        case("callee_writes_other_slot", "r2 = 6\n*(u64 *)(r10 - 8) = r2\ncall 8\nr2 = *(u64 *)(r10 - 8)\nr6 = r2\nr1 = r10\nr1 += -16\ncall pc+3\nr0 = *(u64 *)(r10 - 16)\nr0 += r6\nexit\nr0 = 5\n*(u64 *)(r1 + 0) = r0\nexit", MoreThanKernel, 0, 1),
        // An unrelated deeper store moves the kernel's expected offset.
        case("deeper_unrelated_store", "r3 = 1\n*(u64 *)(r10 - 24) = r3\nr1 = 2\nr2 = 3\n*(u64 *)(r10 - 8) = r1\n*(u64 *)(r10 - 16) = r2\ncall 8\nr2 = *(u64 *)(r10 - 16)\nr1 = *(u64 *)(r10 - 8)\nr0 = r1\nr0 += r2\nexit", MoreThanKernel, 0, 2),
        // The bracket in a bounded loop, plus a stray write to the slot.
        case("loop_with_stray_write", "r6 = 3\nr1 = 0\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr1 += 2\nr6 -= 1\nif r6 != 0 goto -6\n*(u64 *)(r10 - 8) = r6\nr0 = r1\nexit", MoreThanKernel, 0, 1),
        // Branches around the bracket, reads of another slot in the region.
        case("branches_and_region_read", "r6 = *(u64 *)(r1 + 0)\n*(u64 *)(r10 - 16) = r6\nr1 = 1\nif r6 > 10 goto +1\nr1 = 2\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr0 = *(u64 *)(r10 - 16)\nr0 += r1\nexit", MoreThanKernel, 0, 1),
        // Two brackets in one subprogram at unrelated offsets, one with two pairs.
        case("two_patterns_mixed", "r1 = 1\nr2 = 2\n*(u64 *)(r10 - 32) = r2\n*(u64 *)(r10 - 8) = r1\ncall 8\nr1 = *(u64 *)(r10 - 8)\nr2 = *(u64 *)(r10 - 32)\n*(u64 *)(r10 - 24) = r2\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nr2 = *(u64 *)(r10 - 24)\nr0 = r1\nr0 += r2\nexit", MoreThanKernel, 0, 4),
    ]
}

/// The kernel's xlated program in our terms: its x86-64 inline expansion
/// of `bpf_get_smp_processor_id` (`r0 = imm; r0 = percpu(r0); r0 = *(u32 *)(r0 + 0)`)
/// back to `call 8`, helper call addresses and subprogram numbers blanked,
/// pseudo-call offsets back in `imm`.
fn canon_kernel(xlated: &[u8]) -> Vec<RawInsn> {
    let raw = RawInsn::slice_from_bytes(xlated).expect("xlated is whole slots");
    let is_inline = |i: usize| -> bool {
        match (raw.get(i), raw.get(i + 1), raw.get(i + 2)) {
            (Some(m), Some(p), Some(l)) => {
                m.code == 0xb7
                    && m.dst == 0
                    && p.code == 0xbf
                    && p.dst == 0
                    && p.src == 0
                    && p.off == -1
                    && l.code == 0x61
                    && l.dst == 0
                    && l.src == 0
                    && l.off == 0
            }
            _ => false,
        }
    };
    // Kernel slot -> canonical slot.
    let mut map = vec![0i64; raw.len() + 1];
    let mut keep = Vec::with_capacity(raw.len());
    let (mut i, mut n) = (0usize, 0i64);
    while i < raw.len() {
        if is_inline(i) {
            map[i..i + 3].fill(n);
            keep.push((i, RawInsn::new(0x85, 0, 0, 0, 0)));
            i += 3;
        } else {
            map[i] = n;
            keep.push((i, raw[i]));
            i += 1;
        }
        n += 1;
    }
    map[raw.len()] = n;
    let retarget = |k: usize, rel: i64| -> i64 {
        let t = (k as i64 + 1 + rel).clamp(0, raw.len() as i64) as usize;
        map[t] - (map[k] + 1)
    };
    keep.into_iter()
        .map(|(k, r)| {
            let class = r.code & 7;
            let op = r.code & 0xf0;
            let is_jmp = (class == 5 || class == 6) && op != 0x80 && op != 0x90;
            if is_jmp && class == 6 && op == 0 {
                RawInsn::new(
                    r.code,
                    r.dst,
                    r.src,
                    r.off,
                    retarget(k, r.imm as i64) as i32,
                )
            } else if is_jmp {
                RawInsn::new(
                    r.code,
                    r.dst,
                    r.src,
                    retarget(k, r.off as i64) as i16,
                    r.imm,
                )
            } else if r.code == 0x85 && r.src == 1 {
                RawInsn::new(0x85, 0, 1, 0, retarget(k, r.off as i64) as i32)
            } else {
                canon_call(r, true)
            }
        })
        .collect()
}

fn canon_call(r: RawInsn, kernel: bool) -> RawInsn {
    if r.code == 0x85 && r.src == 0 {
        return RawInsn::new(0x85, 0, 0, 0, 0);
    }
    let _ = kernel;
    r
}

fn canon_ours(p: &Program) -> Vec<RawInsn> {
    p.to_raw()
        .into_iter()
        .map(|r| canon_call(r, false))
        .collect()
}

fn options(c: &Case) -> (Options, FastcallTable) {
    let mut o = Options::new(ProgKind::RawTracepoint);
    o.helpers.add(HelperProto {
        id: 113,
        name: "bpf_probe_read_kernel",
        args: [
            ArgKind::WriteMem,
            ArgKind::ConstSizeOrZero,
            ArgKind::Anything,
            ArgKind::DontCare,
            ArgKind::DontCare,
        ],
        ret: RetKind::Integer,
        map_types: None,
        special: Special::None,
    });
    let mut t = FastcallTable::linux();
    for &(id, name) in c.platform {
        t.add_helper(id, name, 0, true);
    }
    (o, t)
}

fn kernel_xlated(p: &Program, name: &str) -> Vec<u8> {
    let bytes = p.to_bytes();
    let mut load = ProgLoad::new(RAW_TRACEPOINT, &bytes);
    load.name = name;
    let fd = prog_load(&load).unwrap_or_else(|e| panic!("{name}: kernel rejects: {e:?}"));
    prog_info(&fd).expect("prog_info").xlated
}

/// Spill-shaped slots (`*(u64 *)(r10 + off) = rX`) of the removed pairs
/// still present in the kernel's output, counted against the original.
fn kernel_removed(orig: &Program, kernel: &[RawInsn], out: &NocsrOutcome) -> usize {
    let mut forms: Vec<RawInsn> = out
        .decisions
        .iter()
        .map(|d| RawInsn::new(0x7b, 10, d.pair.reg.num(), d.pair.off, 0))
        .collect();
    forms.sort_by_key(|r| (r.src, r.off));
    forms.dedup();
    let orig_raw = orig.to_raw();
    forms
        .iter()
        .map(|f| {
            let a = orig_raw.iter().filter(|r| *r == f).count();
            let b = kernel.iter().filter(|r| *r == f).count();
            a.saturating_sub(b)
        })
        .sum()
}

fn run_vm(p: &Program, input: &[u8]) -> (u64, Vec<u8>) {
    let lp = LoadedProgram::builder(p, Engine::Interp)
        .build()
        .expect("vm load");
    let mut mem = input.to_vec();
    // SAFETY: the interpreter checks every access.
    let r0 = unsafe { lp.run_mem(&mut mem) }.expect("vm run");
    (r0, mem)
}

fn check(c: &Case) {
    let prog = assemble(c.asm).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let (opts, table) = options(c);
    let vp = verify(&prog, &opts).unwrap_or_else(|e| panic!("{}: we reject: {e:?}", c.name));
    let out = remove_fastcall_spills(&vp, &table).expect("rewrite");
    let (kx, kr) = if c.kernel {
        let kx = canon_kernel(&kernel_xlated(&prog, c.name));
        let kr = kernel_removed(&prog, &kx, &out);
        (kx, kr)
    } else {
        (Vec::new(), c.kernel_removes)
    };
    eprintln!(
        "nocsr {:<42} pairs {} ours {} kernel {} stack {:?} -> {:?}",
        c.name,
        out.decisions.len(),
        out.removed_pairs(),
        kr,
        out.stack_depth_before,
        out.stack_depth
    );
    assert_eq!(kr, c.kernel_removes, "{}: kernel removed", c.name);
    assert_eq!(out.removed_pairs(), c.we_remove, "{}: we removed", c.name);
    match c.expect {
        SameAsKernel if c.kernel => {
            assert_eq!(
                canon_ours(&out.prog),
                kx,
                "{}: ours vs kernel xlated",
                c.name
            )
        }
        SameAsKernel => {}
        SameCount => assert_eq!(out.removed_pairs(), kr, "{}", c.name),
        MoreThanKernel => {
            assert!(out.removed_pairs() > kr, "{}", c.name);
            if kr == 0 && c.kernel {
                // The kernel's output is the original program.
                assert_eq!(canon_ours(&prog), kx, "{}: kernel kept everything", c.name);
            }
        }
    }
    // The rewritten program is shorter by exactly two slots per pair.
    assert_eq!(
        prog.slot_len() - out.prog.slot_len(),
        2 * out.removed_pairs()
    );
    if c.run_vm {
        for seed in 0..16u64 {
            let input: Vec<u8> = (0..64u64)
                .map(|i| (i.wrapping_mul(0x9e37) ^ seed.wrapping_mul(0x85eb)) as u8)
                .collect();
            let a = run_vm(&prog, &input);
            let b = run_vm(&out.prog, &input);
            assert_eq!(a, b, "{}: results differ on seed {seed}", c.name);
        }
    }
}

#[test]
fn selftest_cases_match_kernel() {
    if !bpf_tests::kernel::available_or_skip("bpf_fastcall cases on the live kernel") {
        return;
    }
    let cases = selftest_cases();
    for c in &cases {
        check(c);
    }
    let ours: usize = cases.iter().map(|c| c.we_remove).sum();
    let kern: usize = cases.iter().map(|c| c.kernel_removes).sum();
    eprintln!("nocsr selftest totals: ours {ours} kernel {kern}");
}

#[test]
fn beyond_kernel_cases() {
    if !bpf_tests::kernel::available_or_skip("bpf_fastcall cases on the live kernel") {
        return;
    }
    let cases = beyond_cases();
    assert!(cases.len() >= 10);
    for c in &cases {
        check(c);
    }
}

/// `bpf_get_smp_processor_id` is `bpf_fastcall` only where the program
/// type's helper prototype carries `allow_fastcall`:
/// `bpf_get_smp_processor_id_proto`, which the tracing types
/// (`bpf_tracing_func_proto`), tc and XDP (`net/core/filter.c`) hand out;
/// socket filters get `bpf_get_raw_smp_processor_id_proto` from
/// `bpf_base_func_proto`, without it. The same bracketed program is loaded
/// as each type; the kernel's xlated output decides whether the pairs
/// went, and ours must agree.
#[test]
fn helper_8_fastcall_per_program_type() {
    if !bpf_tests::kernel::available_or_skip("bpf_fastcall per program type on the live kernel") {
        return;
    }
    let src = "r1 = 7\nr2 = 9\n*(u64 *)(r10 - 8) = r2\n*(u64 *)(r10 - 16) = r1\ncall 8\nr1 = *(u64 *)(r10 - 16)\nr2 = *(u64 *)(r10 - 8)\nr0 = r1\nr0 += r2\nexit";
    let prog = assemble(src).expect("assembles");
    // (kind, kernel type id, pairs the kernel source says go)
    let kinds = [
        (ProgKind::SocketFilter, 1u32, 0usize),
        (ProgKind::SchedCls, 3, 2),
        (ProgKind::Xdp, 6, 2),
        (ProgKind::Kprobe, 2, 2),
        (ProgKind::Tracepoint, 5, 2),
        (ProgKind::RawTracepoint, 17, 2),
    ];
    let spills = |raw: &[RawInsn]| {
        raw.iter()
            .filter(|r| r.code == 0x7b && r.dst == 10 && (r.off == -8 || r.off == -16))
            .count()
    };
    for (kind, ty, expect) in kinds {
        let name = format!("fastcall_h8_{ty}");
        let bytes = prog.to_bytes();
        let mut load = ProgLoad::new(ty, &bytes);
        load.name = &name;
        let fd = prog_load(&load).unwrap_or_else(|e| panic!("{name}: kernel rejects: {e:?}"));
        let kx = canon_kernel(&prog_info(&fd).expect("prog_info").xlated);
        let kernel_removed = 2 - spills(&kx);
        let vp = verify(&prog, &Options::new(kind)).expect("we accept");
        let out = remove_fastcall_spills(&vp, &FastcallTable::linux()).expect("rewrite");
        eprintln!(
            "helper 8 in {kind:?}: kernel removes {kernel_removed}, we remove {}",
            out.removed_pairs()
        );
        assert_eq!(kernel_removed, expect, "{kind:?}: the kernel's answer");
        assert_eq!(out.removed_pairs(), kernel_removed, "{kind:?}: ours");
        assert_eq!(canon_ours(&out.prog), kx, "{kind:?}: ours vs kernel xlated");
        // A platform registration removes the pairs whatever the type.
        let mut t = FastcallTable::linux();
        t.add_helper(8, "bpf_get_smp_processor_id", 0, true);
        let all = remove_fastcall_spills(&vp, &t).expect("rewrite");
        assert_eq!(all.removed_pairs(), 2, "{kind:?}: registered everywhere");
    }
}
