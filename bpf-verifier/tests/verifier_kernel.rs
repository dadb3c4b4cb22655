//! Live-kernel differential test: every corpus program is loaded into the
//! running kernel (`BPF_PROG_LOAD`, log level 2) and verified by us; the
//! verdicts are compared. The test fails if we accept a program the kernel
//! rejects (a possible memory-safety hole); other disagreements are listed.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use bpf_tests::kernel::{self, ProgLoad};
use bpf_verifier::{verify, MapInfo, Options, ProgKind};

fn kind(t: u32) -> ProgKind {
    match t {
        1 => ProgKind::SocketFilter,
        2 => ProgKind::Kprobe,
        3 => ProgKind::SchedCls,
        5 => ProgKind::Tracepoint,
        6 => ProgKind::Xdp,
        _ => ProgKind::RawTracepoint,
    }
}

fn maps() -> Vec<MapInfo> {
    let m = |name: &str, map_type, key_size, value_size, max_entries| MapInfo {
        name: name.into(),
        map_type,
        key_size,
        value_size,
        max_entries,
        flags: 0,
        fd: None,
    };
    vec![
        m("hash", 1, 4, 8, 16),
        m("array", 2, 4, 16, 1),
        m("rb", 27, 0, 0, 4096),
        m("progs", 3, 4, 4, 4),
    ]
}

#[test]
fn kernel_differential() {
    if let Err(e) = kernel::available() {
        eprintln!("SKIPPED: bpf() is not usable here: {e}");
        panic!("the live kernel is required on this machine: {e}");
    }
    let kmaps: Vec<OwnedFd> = maps()
        .iter()
        .map(|m| {
            kernel::map_create(m.map_type, m.key_size, m.value_size, m.max_entries, 0)
                .expect("map_create")
        })
        .collect();
    let fds: Vec<i32> = kmaps.iter().map(|f| f.as_raw_fd()).collect();
    let mut agree = 0;
    let mut total = 0;
    let mut unsound = Vec::new();
    let mut stricter = Vec::new();
    for &(name, t, text) in common::corpus::CORPUS
        .iter()
        .chain(common::corpus::CORPUS_EXTRA)
    {
        let prog = bpf_isa::assemble(text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let bytes = prog.to_bytes();
        let mut load = ProgLoad::new(t, &bytes);
        load.fd_array = &fds;
        load.log_level = 2;
        load.log_size = 1 << 20;
        let k = kernel::prog_load(&load);
        let mut opts = Options::new(kind(t)).with_maps(maps());
        opts.log_level = 1;
        let ours = verify(&prog, &opts);
        total += 1;
        let k_ok = k.is_ok();
        let o_ok = ours.is_ok();
        let kreason = k.as_ref().err().map(|e| e.reason()).unwrap_or_default();
        let oreason = ours
            .as_ref()
            .err()
            .map(|e| format!("{} (insn {})", e.message, e.insn))
            .unwrap_or_default();
        if kreason.contains("missing btf func_info") {
            // Callbacks need BTF in the kernel; these programs carry none.
            eprintln!(
                "not comparable {name}: kernel needs BTF ({kreason}); ours: {}",
                if o_ok { "accept" } else { "reject" }
            );
            total -= 1;
            continue;
        }
        if k_ok == o_ok {
            agree += 1;
            eprintln!(
                "agree  {name:32} {}  kernel: {kreason} | ours: {oreason}",
                if k_ok { "accept" } else { "reject" }
            );
        } else if o_ok {
            unsound.push(format!("{name}: kernel rejects ({kreason}), we accept"));
        } else {
            stricter.push(format!("{name}: kernel accepts, we reject: {oreason}"));
        }
    }
    eprintln!(
        "agreement: {agree}/{total} = {:.1}%",
        100.0 * agree as f64 / total as f64
    );
    for s in &stricter {
        eprintln!("DISAGREE (we are stricter) {s}");
    }
    for s in &unsound {
        eprintln!("DISAGREE (we accept) {s}");
    }
    assert!(total >= 80, "corpus too small: {total}");
    assert!(
        unsound.is_empty(),
        "we accept programs the kernel rejects: {unsound:#?}"
    );
}
