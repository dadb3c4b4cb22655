//! The verifier log at level 1 against the live kernel's: every hand-written
//! socket-filter program of the corpus that uses no map is loaded into the
//! running kernel with `log_level` 1 and verified by us at level 1; the logs
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
];

/// Identical logs over the whole sample, at least (measured: see the report
/// the test prints).
const MIN_EXACT: usize = 6;

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
        .chain(common::corpus2::CORPUS2);
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
        let mut load = kernel::ProgLoad::new(t, &code);
        load.log_level = 1;
        load.log_size = 1 << 20;
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

#[test]
fn scratch_kernel_log1() {
    let Ok(text) = std::env::var("G_TEXT") else {
        return;
    };
    let prog = bpf_isa::assemble(&text.replace(';', "\n")).unwrap();
    let code = prog.to_bytes();
    let mut load = kernel::ProgLoad::new(1, &code);
    load.log_level = 1;
    load.log_size = 1 << 20;
    let klog = match kernel::prog_load_logged(&load) {
        Ok((_fd, log)) => log,
        Err(kernel::KernelError::Failed { log, .. }) => log,
        Err(e) => panic!("{e}"),
    };
    eprintln!("{klog:?}\n{klog}");
}
