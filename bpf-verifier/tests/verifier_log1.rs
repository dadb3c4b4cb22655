//! The verifier log at level 1 against the live kernel's: every hand-written
//! socket-filter program of the corpus that uses no map is loaded into the
//! running kernel with `log_level` 1 (and BTF `func_info` when it has
//! subprograms, as the corpus differential loads it) and verified by us at
//! level 1; the logs
//! are compared line by line up to and including the stats line (only the
//! kernel's `verification time` line is dropped; it is not printed at level
//! 1 anyway).
//!
//! At level 1 the kernel prints the trace of the last explored path only
//! (the log is cut back to the branch point whenever a path ends), the
//! rejection reason and the `processed ... insns` stats line.
//!
//! Prints a diff for every program whose log differs and the number of
//! identical logs; asserts that at least [`MIN_EXACT`] logs are identical
//! and that every program in [`EXACT`] is.

mod common;

use std::os::fd::AsRawFd;

use bpf_tests::kernel;
use bpf_verifier::{verify_with_log, Options, ProgKind};

/// Programs whose level-1 log must equal the kernel's (a mix of accepted
/// and rejected programs, with and without branches).
const EXACT: &[&str] = &[
    "ret0",
    "r0_uninit",
    "r2_uninit_read",
    "skb_len",
    "shift32_32",
    "unreachable",
    "jump_oob",
    "jump_into_ld64",
    "fallthrough_end",
    "stack_misaligned",
    "stack_ptr_clobbered",
    "stack_var_off_oob",
    "ld_abs_no_r6",
    "loop_never_exits",
    "may_goto_bounded_index_oob",
    "call_r6_not_passed",
    "call_r1_clobbered",
    "call_stack_oob_caller",
    "call_deep_stack",
    "loop_ok",
    "loop_bad_ret",
    "loop_cb_uninit_ret",
    "loop_cb_second_iter_bad",
    "level1_second_path_fails",
    "level1_first_path_fails",
    "level1_fail_after_call_returns",
    // peak_states counts the back-edges of may_goto loops (add_scc_backedge)
    "loop_may_goto",
    "may_goto_stack_counter",
    "may_goto_nested",
    // check_atomic_rmw on a spilled pointer; a non-NULL sock_common has no id
    "atomic_stack_spilled_ptr",
    "sk_type_denied",
    // recursion found by the simulated call stack, or after exploring
    "call_recursive",
    "call_recursive_bounded",
    // check_reg_type's list of memory types; check_ld_abs's unknown r0
    "helper_printk_ctx",
    "ld_abs_clobbers_r2",
];

/// Programs for this comparison only (socket filters), shaped to exercise
/// how the level-1 log is cut back when a path ends.
const EXTRA: &[(&str, u32, &str)] = &[
    // The fall-through path exits; the pushed branch then fails: the log
    // keeps the branch's instruction line (cut where the kernel cut it) and
    // continues with the popped path's state.
    (
        "level1_second_path_fails",
        1,
        "r0 = 0\nr2 = *(u32 *)(r1 + 0)\nif r2 == 0 goto +1\nexit\nr0 = *(u64 *)(r9 + 0)\nexit",
    ),
    // The fall-through path fails first: nothing is cut.
    (
        "level1_first_path_fails",
        1,
        "r0 = 0\nr2 = *(u32 *)(r1 + 0)\nif r2 == 0 goto +1\nr0 = *(u64 *)(r9 + 0)\nexit",
    ),
    // Two branches, a subprogram call on the failing path.
    (
        "level1_fail_after_call_returns",
        1,
        "r6 = *(u32 *)(r1 + 0)\nif r6 > 7 goto +2\nr0 = 0\nexit\nr1 = r6\ncall pc+2\nr0 = *(u64 *)(r0 + 0)\nexit\nw0 = w1\nexit",
    ),
];

/// Identical logs over the whole sample, at least (measured: 189 of 198
/// on Linux 6.18; the others: peak-state counts of `may_goto` loops, two
/// programs too complex for the 1 MiB kernel log window, and messages we
/// word differently).
const MIN_EXACT: usize = 189;

fn normalise(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in log.lines() {
        if l.starts_with("verification time") {
            continue;
        }
        out.push(l.to_string());
        if l.starts_with("processed ") {
            break;
        }
    }
    out
}

#[test]
fn log_level1_matches_kernel() {
    if !kernel::available_or_skip("the level-1 log comparison") {
        return;
    }
    let all = common::corpus::CORPUS
        .iter()
        .chain(common::corpus::CORPUS_EXTRA)
        .chain(common::corpus2::CORPUS2)
        .chain(EXTRA);
    let only = std::env::var("BPF_LOG1_FILTER").ok();
    let mut sample = 0usize;
    let mut exact = 0usize;
    let mut failed_exact = Vec::new();
    let mut differ = Vec::new();
    for &(name, t, text) in all {
        if t != 1 || text.contains("map[") {
            continue;
        }
        if only.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let Ok(prog) = bpf_isa::assemble(text) else {
            continue;
        };
        let code = prog.to_bytes();
        // With BTF `func_info` when there are subprograms, as the corpus
        // differential loads them (our verifier assumes it: the kernel
        // wants it for callbacks and for LD_ABS / tail calls in subprograms).
        let starts: Vec<u32> = bpf_callgraph::CallGraph::build(&prog)
            .map(|cg| {
                cg.subprogs()
                    .values()
                    .map(|s| s.start.slot() as u32)
                    .collect()
            })
            .unwrap_or_default();
        let btf = (starts.len() > 1)
            .then(|| kernel::btf_load(&kernel::func_btf(starts.len())).expect("btf_load"));
        let func_info = if btf.is_some() {
            kernel::func_infos(&starts)
        } else {
            Vec::new()
        };
        let mut load = kernel::ProgLoad::new(t, &code);
        load.log_level = 1;
        load.log_size = 1 << 20;
        load.btf_fd = btf.as_ref().map(|b| b.as_raw_fd());
        load.func_info = &func_info;
        let klog = match kernel::prog_load_logged(&load) {
            Ok((_fd, log)) => log,
            Err(kernel::KernelError::Failed { log, .. }) => log,
            Err(e) => panic!("{name}: {e}"),
        };
        let mut opts = Options::new(ProgKind::SocketFilter);
        opts.log_level = 1;
        let olog = match verify_with_log(&prog, &opts) {
            Ok(v) => v.log,
            Err((_, log)) => log,
        };
        sample += 1;
        let k = normalise(&klog);
        let o = normalise(&olog);
        if k == o {
            exact += 1;
            continue;
        }
        differ.push(name);
        if EXACT.contains(&name) {
            failed_exact.push(name);
        }
        let n = k.len().max(o.len());
        eprintln!("--- {name}:");
        for i in 0..n {
            let a = k.get(i).map_or("", String::as_str);
            let b = o.get(i).map_or("", String::as_str);
            if a == b {
                eprintln!("  {a}");
            } else {
                eprintln!("K {a}\nO {b}");
            }
        }
    }
    eprintln!("differ: {differ:?}");
    eprintln!("level-1 logs identical to the kernel's: {exact}/{sample}");
    assert!(sample > 0, "empty sample");
    assert!(
        failed_exact.is_empty(),
        "level-1 logs differ from the kernel's for {failed_exact:?}"
    );
    if only.is_none() {
        assert!(
            exact >= MIN_EXACT,
            "only {exact} identical level-1 logs (expected at least {MIN_EXACT})"
        );
    }
}
