//! The verifier log at level 2 against the live kernel's: a sample of small
//! corpus programs (socket filters without maps or calls) is loaded into the
//! running kernel with `log_level` 2 and verified by us at level 2; the logs
//! are compared line by line. Only the kernel's `verification time` line and
//! the lines after the stats line (`stack depth ...`) are dropped.
//!
//! Prints the number of exactly matching lines over the sample and a diff for
//! every program whose log differs; asserts full equality for the programs in
//! [`EXACT`].

mod common;

use bpf_tests::kernel;
use bpf_verifier::{verify_with_log, Options, ProgKind};

/// Sample programs (names in the corpus of `tests/common`).
const SAMPLE: &[&str] = &[
    "ret0",
    "div_reg_ok",
    "shift_63",
    "shift32_32",
    "ret_ctx_priv",
    "bounded_loop",
    "skb_len",
    "skb_len_narrow",
    "skb_cb_write",
    "skb_cb_write_dw",
    "skb_st_ctx",
    "unreachable",
    "stack_rw",
    "stack_spill_ctx_fill",
    "stack_partial_ptr_fill",
    "stack_fp_sub",
    "stack_fp_add_neg",
    "stack_var_off",
    "ptr_ptr_sub_priv",
    "jmp32_range",
    "atomic_stack",
];

/// Programs whose log must equal the kernel's line for line.
/// The others differ where we do not log yet: `mark_precise` backtracking,
/// the stack-liveness lines, `SCC` lines (and the SCC column of the
/// `Live regs` block), and the kernel's unknown result of a division.
const EXACT: &[&str] = &[
    "ret0",
    "shift_63",
    "shift32_32",
    "ret_ctx_priv",
    "skb_len",
    "skb_len_narrow",
    "skb_cb_write",
    "skb_cb_write_dw",
    "skb_st_ctx",
    "unreachable",
    "stack_partial_ptr_fill",
    "stack_fp_sub",
    "ptr_ptr_sub_priv",
];

/// The kernel's log without the lines that cannot match: `verification time`
/// and what follows the stats line.
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
fn log_level2_matches_kernel() {
    let mut total = 0usize;
    let mut same = 0usize;
    let mut failed_exact = Vec::new();
    let mut exact_progs = 0usize;
    let all = common::corpus::CORPUS
        .iter()
        .chain(common::corpus::CORPUS_EXTRA)
        .chain(common::corpus2::CORPUS2);
    for &name in SAMPLE {
        let Some(&(_, t, text)) = all.clone().find(|c| c.0 == name) else {
            panic!("{name}: not in the corpus");
        };
        assert_eq!(t, 1, "{name}: the sample holds socket filters only");
        let prog = bpf_isa::assemble(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let code = prog.to_bytes();
        let mut load = kernel::ProgLoad::new(t, &code);
        load.log_level = 2;
        load.log_size = 1 << 20;
        let klog = match kernel::prog_load_logged(&load) {
            Ok((_fd, log)) => log,
            Err(kernel::KernelError::Failed { log, .. }) => log,
            Err(e) => panic!("{name}: {e}"),
        };
        let mut opts = Options::new(ProgKind::SocketFilter);
        opts.log_level = 2;
        let olog = match verify_with_log(&prog, &opts) {
            Ok(v) => v.log,
            Err((_, log)) => log,
        };
        let k = normalise(&klog);
        let o = normalise(&olog);
        let n = k.len().max(o.len());
        let m = k.iter().zip(&o).filter(|(a, b)| a == b).count();
        total += n;
        same += m;
        if k != o {
            eprintln!("--- {name}: {m}/{n} lines match");
            for i in 0..n {
                let a = k.get(i).map_or("", String::as_str);
                let b = o.get(i).map_or("", String::as_str);
                if a == b {
                    eprintln!("  {a}");
                } else {
                    eprintln!("K {a}\nO {b}");
                }
            }
            if EXACT.contains(&name) {
                failed_exact.push(name);
            }
        } else {
            eprintln!("--- {name}: exact ({n} lines)");
            exact_progs += 1;
        }
    }
    eprintln!(
        "log lines equal to the kernel's at the same position: {same}/{total}; \
         programs with identical logs: {exact_progs}/{}",
        SAMPLE.len()
    );
    assert!(
        exact_progs >= EXACT.len(),
        "fewer identical logs than listed"
    );
    assert!(
        failed_exact.is_empty(),
        "logs differ from the kernel's for {failed_exact:?}"
    );
}
