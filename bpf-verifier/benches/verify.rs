//! Verification time: ours against the kernel's own `verification time`
//! (log level `BPF_LOG_STATS` = 4), measured in the same run, for the six
//! benchmark programs of `../shared/bench` (their `xdp` sections) and the
//! written corpus. Prints a table, then lets Criterion time ours.

#[path = "../tests/common/corpus.rs"]
#[allow(dead_code)]
mod corpus;

use std::time::Instant;

use bpf_isa::Program;
use bpf_tests::kernel::{self, ProgLoad};
use bpf_verifier::{verify, MapInfo, Options, ProgKind};
use criterion::{criterion_group, criterion_main, Criterion};

const BENCH: [&str; 6] = ["csum", "fnv1a", "parse_hash", "sort", "calls", "alu"];

fn bench_prog(name: &str) -> Option<Program> {
    let path = format!(
        "{}/../../shared/bench/build/{name}.v3.o",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("NOTE: {path} is absent ({e}): {name} not measured");
            return None;
        }
    };
    let obj = bpf_object::Object::parse(&bytes).ok()?;
    obj.programs
        .iter()
        .find(|p| p.section == "xdp")
        .map(|p| p.insns.clone())
}

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

/// The kernel's `verification time` in microseconds and processed count, if it accepts.
fn kernel_time(t: u32, prog: &Program, fds: &[i32]) -> Option<(u64, u64)> {
    let bytes = prog.to_bytes();
    let mut load = ProgLoad::new(t, &bytes);
    load.fd_array = fds;
    load.log_level = 4;
    load.log_size = 1 << 16;
    let (_fd, log) = kernel::prog_load_logged(&load).ok()?;
    let stat = |key: &str| -> Option<u64> {
        let l = log.lines().find(|l| l.starts_with(key))?;
        l[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((stat("verification time")?, stat("processed")?))
}

fn our_time(prog: &Program, opts: &Options, reps: u32) -> Option<(f64, u64)> {
    let v = verify(prog, opts).ok()?;
    let t = Instant::now();
    for _ in 0..reps {
        let _ = verify(prog, opts);
    }
    Some((
        t.elapsed().as_secs_f64() * 1e6 / reps as f64,
        v.processed_insns,
    ))
}

fn table() {
    if let Err(e) = kernel::available() {
        eprintln!("NOTE: bpf() is not usable here ({e}): no kernel column");
    }
    let kmaps: Vec<_> = maps()
        .iter()
        .filter_map(|m| {
            kernel::map_create(m.map_type, m.key_size, m.value_size, m.max_entries, 0).ok()
        })
        .collect();
    use std::os::fd::AsRawFd;
    let fds: Vec<i32> = kmaps.iter().map(|f| f.as_raw_fd()).collect();
    println!(
        "{:14} {:>10} {:>10} {:>12} {:>12}",
        "program", "k_proc", "our_proc", "kernel_us", "ours_us"
    );
    for name in BENCH {
        let Some(p) = bench_prog(name) else { continue };
        let k = kernel_time(6, &p, &[]);
        let o = our_time(&p, &Options::new(ProgKind::Xdp), 10);
        println!(
            "{name:14} {:>10} {:>10} {:>12} {:>12.1}",
            k.map_or("-".into(), |k| k.1.to_string()),
            o.map_or("-".into(), |o| o.1.to_string()),
            k.map_or("-".into(), |k| k.0.to_string()),
            o.map_or(f64::NAN, |o| o.0)
        );
    }
    let (mut k_sum, mut o_sum, mut n) = (0u64, 0f64, 0);
    for &(_, t, text) in corpus::CORPUS.iter().chain(corpus::CORPUS_EXTRA) {
        let Ok(p) = bpf_isa::assemble(text) else {
            continue;
        };
        let opts = Options::new(kind(t)).with_maps(maps());
        if let (Some(k), Some(o)) = (kernel_time(t, &p, &fds), our_time(&p, &opts, 20)) {
            k_sum += k.0;
            o_sum += o.0;
            n += 1;
        }
    }
    println!(
        "written corpus, {n} programs both accept: kernel {k_sum} us, ours {o_sum:.1} us (sums)"
    );
}

fn benches(c: &mut Criterion) {
    table();
    for name in BENCH {
        let Some(p) = bench_prog(name) else { continue };
        let opts = Options::new(ProgKind::Xdp);
        c.bench_function(&format!("verify/{name}"), |b| b.iter(|| verify(&p, &opts)));
    }
    let progs: Vec<(Program, Options)> = corpus::CORPUS
        .iter()
        .chain(corpus::CORPUS_EXTRA)
        .filter_map(|&(_, t, text)| {
            Some((
                bpf_isa::assemble(text).ok()?,
                Options::new(kind(t)).with_maps(maps()),
            ))
        })
        .collect();
    c.bench_function("verify/written-corpus", |b| {
        b.iter(|| {
            for (p, o) in &progs {
                let _ = verify(p, o);
            }
        })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
