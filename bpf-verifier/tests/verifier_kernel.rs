//! Live-kernel differential test: every corpus program (hand-written rules,
//! generated sweeps, and every object the project builds from C) is loaded
//! into the running kernel (`BPF_PROG_LOAD`, log level 2 plus statistics) and
//! verified by us; the verdicts are compared. Programs with subprograms or
//! callbacks carry a minimal BTF with one `FUNC` per subprogram so that the
//! kernel can compare them (it wants `func_info` for callbacks).
//!
//! Fails if we accept a program the kernel rejects for memory safety, if the
//! agreement falls under 97%, or if the corpus has fewer than 400 programs.
//! Prints every disagreement, and our processed-instruction counts and
//! verification times beside the kernel's.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bpf_isa::Program;
use bpf_tests::kernel;
use bpf_verifier::{verify, MapInfo, Options, ProgKind};

fn kind(t: u32) -> Option<ProgKind> {
    Some(match t {
        1 => ProgKind::SocketFilter,
        2 => ProgKind::Kprobe,
        3 => ProgKind::SchedCls,
        5 => ProgKind::Tracepoint,
        6 => ProgKind::Xdp,
        17 => ProgKind::RawTracepoint,
        _ => return None,
    })
}

fn corpus_maps() -> Vec<MapInfo> {
    let m = |name: &str, map_type, key_size, value_size, max_entries, flags| MapInfo {
        name: name.into(),
        map_type,
        key_size,
        value_size,
        max_entries,
        flags,
        fd: None,
    };
    vec![
        m("hash", 1, 4, 8, 16, 0),
        m("array", 2, 4, 16, 1, 0),
        m("rb", 27, 0, 0, 4096, 0),
        m("progs", 3, 4, 4, 4, 0),
        m("array64", 2, 4, 64, 4, 0),
        m(
            "rdonly",
            2,
            4,
            8,
            1,
            bpf_verifier::platform::BPF_F_RDONLY_PROG,
        ),
        m("perf", 4, 4, 4, 4, 0),
        m("pcpu_array", 6, 4, 8, 2, 0),
    ]
}

/// The kernel's verdict on one program.
struct KernelVerdict {
    ok: bool,
    log: String,
}

impl KernelVerdict {
    /// The rejection reason: the last log line that is not a statistic.
    fn reason(&self) -> String {
        self.log
            .lines()
            .rev()
            .map(str::trim)
            .map(|l| l.split("verification time").next().unwrap_or(l).trim())
            .find(|l| {
                !l.is_empty()
                    && !l.starts_with("processed ")
                    && !l.starts_with("verification time")
                    && !l.starts_with("stack depth")
                    && !l.starts_with("mark_precise")
            })
            .unwrap_or("")
            .to_string()
    }

    fn stat(&self, key: &str) -> Option<u64> {
        let line = self.log.lines().rev().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    }
}

/// Loads `prog` (with BTF `func_info` when it has subprograms) at log level
/// 2 plus statistics.
fn kernel_load(t: u32, prog: &Program, fds: &[i32], starts: &[u32]) -> KernelVerdict {
    let btf = if starts.len() > 1 {
        match kernel::btf_load(&kernel::func_btf(starts.len())) {
            Ok(fd) => Some(fd),
            Err(e) => {
                return KernelVerdict {
                    ok: false,
                    log: e.to_string(),
                }
            }
        }
    } else {
        None
    };
    let func_info = if btf.is_some() {
        kernel::func_infos(starts)
    } else {
        Vec::new()
    };
    let code = prog.to_bytes();
    let attempt = |level: u32, size: usize| {
        let mut load = kernel::ProgLoad::new(t, &code);
        load.log_level = level;
        load.log_size = size;
        load.fd_array = fds;
        load.btf_fd = btf.as_ref().map(|b| b.as_raw_fd());
        load.func_info = &func_info;
        match kernel::prog_load_logged(&load) {
            Ok((_fd, log)) => (true, 0, log),
            Err(kernel::KernelError::Failed { errno, log, .. }) => (false, errno, log),
            Err(e) => (false, 0, e.to_string()),
        }
    };
    // Level 2 (every instruction) plus statistics; a log too small for a
    // large program (ENOSPC) falls back to statistics only.
    let (mut ok, mut e, mut log) = attempt(2 | 4, 16 << 20);
    if !ok && e == libc::ENOSPC {
        (ok, e, log) = attempt(1 | 4, 16 << 20);
        if !ok && e == libc::ENOSPC {
            (ok, _, log) = attempt(4, 1 << 16);
        }
    }
    KernelVerdict { ok, log }
}

/// Kernel rejection reasons that are not about memory safety (features we
/// do not model, configuration); everything else counts as a safety rule.
fn non_safety_reason(r: &str) -> bool {
    [
        "unknown func",
        "cannot use helper",
        "not supported",
        "license",
        "attach",
    ]
    .iter()
    .any(|p| r.contains(p))
}

struct Case {
    name: String,
    prog_type: u32,
    prog: Program,
    maps: Vec<MapInfo>,
    fds: Vec<i32>,
}

#[derive(Default)]
struct Tally {
    /// (kernel processed, our processed) for programs both accept.
    proc_pairs: Vec<(u64, u64)>,
    total: usize,
    agree: usize,
    accepted_both: usize,
    rejected_both: usize,
    unsound: Vec<String>,
    accept_non_safety: Vec<String>,
    stricter: Vec<String>,
    our_us: f64,
    kernel_us: u64,
    rows: Vec<String>,
}

fn subprog_starts(prog: &Program) -> Vec<u32> {
    match bpf_callgraph::CallGraph::build(prog) {
        Ok(cg) => cg
            .subprogs()
            .values()
            .map(|s| s.start.slot() as u32)
            .collect(),
        Err(_) => vec![0],
    }
}

fn run_case(c: &Case, tally: &mut Tally) {
    let Some(k) = kind(c.prog_type) else {
        return;
    };
    let starts = subprog_starts(&c.prog);
    let kv = kernel_load(c.prog_type, &c.prog, &c.fds, &starts);
    let mut opts = Options::new(k).with_maps(c.maps.clone());
    opts.log_level = 1;
    let t0 = Instant::now();
    let ours = verify(&c.prog, &opts);
    let our_us = t0.elapsed().as_secs_f64() * 1e6;
    tally.total += 1;
    tally.our_us += our_us;
    let k_time = kv.stat("verification time").unwrap_or(0);
    tally.kernel_us += k_time;
    let k_proc = kv.stat("processed");
    let o_proc = ours.as_ref().ok().map(|v| v.processed_insns);
    let kreason = if kv.ok { String::new() } else { kv.reason() };
    if std::env::var_os("BPF_CORPUS_LOG").is_some() {
        eprintln!("--- kernel log of {}:\n{}", c.name, kv.log);
        let mut o2 = opts.clone();
        o2.log_level = 2;
        match verify(&c.prog, &o2) {
            Ok(v) => eprintln!("--- our log of {}:\n{}", c.name, v.log),
            Err(e) => eprintln!("--- ours rejects {}: {e:?}", c.name),
        }
    }
    let oreason = ours
        .as_ref()
        .err()
        .map(|e| format!("{} (insn {})", e.message, e.insn))
        .unwrap_or_default();
    let name = &c.name;
    tally.rows.push(format!(
        "{name:40} {:7} {:>9} {:>9} {:>9.1} {:>9}",
        match (kv.ok, ours.is_ok()) {
            (true, true) => "acc/acc",
            (false, false) => "rej/rej",
            (true, false) => "acc/REJ",
            (false, true) => "rej/ACC",
        },
        k_proc.map_or("-".into(), |p| p.to_string()),
        o_proc.map_or("-".into(), |p| p.to_string()),
        our_us,
        k_time
    ));
    match (kv.ok, ours.is_ok()) {
        (true, true) => {
            tally.agree += 1;
            tally.accepted_both += 1;
            if let (Some(k), Some(o)) = (k_proc, o_proc) {
                tally.proc_pairs.push((k, o));
            }
        }
        (false, false) => {
            tally.agree += 1;
            tally.rejected_both += 1;
            eprintln!("agree reject {name:36} kernel: {kreason} | ours: {oreason}");
        }
        (false, true) => {
            let line = format!("{name}: kernel rejects ({kreason}), we accept");
            if non_safety_reason(&kreason) {
                tally.accept_non_safety.push(line);
            } else {
                tally.unsound.push(line);
            }
        }
        (true, false) => tally
            .stricter
            .push(format!("{name}: kernel accepts, we reject: {oreason}")),
    }
}

fn object_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for dir in [
        root.join("examples"),
        PathBuf::from("/work/shared/bench/build"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            eprintln!(
                "NOTE: {} is absent: its objects are not in the corpus",
                dir.display()
            );
            continue;
        };
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "o"))
            .collect();
        v.sort();
        out.extend(v);
    }
    out
}

/// Cases from a compiled object: its maps are created in the kernel and passed by `fd_array`.
fn object_cases(path: &Path, keep: &mut Vec<OwnedFd>) -> Vec<Case> {
    let bytes = std::fs::read(path).expect("read object");
    let obj = match bpf_object::Object::parse(&bytes) {
        Ok(o) => o,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let mut maps = Vec::new();
    let mut fds = Vec::new();
    for m in &obj.maps {
        let fd = kernel::map_create(m.map_type, m.key_size, m.value_size, m.max_entries, m.flags)
            .unwrap_or_else(|e| panic!("{}: map {}: {e}", path.display(), m.name));
        fds.push(fd.as_raw_fd());
        keep.push(fd);
        maps.push(MapInfo {
            name: m.name.clone(),
            map_type: m.map_type,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            flags: m.flags,
            fd: None,
        });
    }
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    for p in &obj.programs {
        let Some(t) = p.prog_type.kernel_id() else {
            eprintln!(
                "NOTE: {file}:{} ({}) has no kernel program type: not loaded",
                p.name, p.section
            );
            continue;
        };
        if kind(t).is_none() {
            eprintln!("NOTE: {file}:{} type {t} is not one we verify", p.name);
            continue;
        }
        out.push(Case {
            name: format!("{file}:{}", p.name),
            prog_type: t,
            prog: p.insns.clone(),
            maps: maps.clone(),
            fds: fds.clone(),
        });
    }
    out
}

#[test]
fn kernel_differential() {
    if !kernel::available_or_skip("the verifier's kernel differential") {
        return;
    }
    let maps = corpus_maps();
    let kmaps: Vec<OwnedFd> = maps
        .iter()
        .map(|m| {
            kernel::map_create(m.map_type, m.key_size, m.value_size, m.max_entries, m.flags)
                .expect("map_create")
        })
        .collect();
    let fds: Vec<i32> = kmaps.iter().map(|f| f.as_raw_fd()).collect();
    // A program array is bound to the first program type that uses it
    // (`bpf_prog_map_compatible`): each type gets its own as map 3.
    let mut prog_arrays = std::collections::HashMap::new();
    let mut fds_for = |t: u32| -> Vec<i32> {
        let pa = prog_arrays
            .entry(t)
            .or_insert_with(|| kernel::map_create(3, 4, 4, 4, 0).expect("prog array"));
        let mut v = fds.clone();
        v[3] = pa.as_raw_fd();
        v
    };
    let mut cases: Vec<Case> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let hand = common::corpus::CORPUS
        .iter()
        .chain(common::corpus::CORPUS_EXTRA)
        .chain(common::corpus2::CORPUS2)
        .map(|&(n, t, s)| (n.to_string(), t, s.to_string()));
    for (name, t, text) in hand.chain(common::corpus_gen::generated()) {
        assert!(names.insert(name.clone()), "duplicate corpus name {name}");
        let prog = bpf_isa::assemble(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        cases.push(Case {
            name,
            prog_type: t,
            prog,
            maps: maps.clone(),
            fds: fds_for(t),
        });
    }
    let n_text = cases.len();
    let mut keep = Vec::new();
    for f in object_files() {
        cases.extend(object_cases(&f, &mut keep));
    }
    let n_obj = cases.len() - n_text;
    // `BPF_CORPUS_FILTER=substring` runs a subset (for debugging; the
    // size and agreement assertions still apply to what ran).
    if let Ok(f) = std::env::var("BPF_CORPUS_FILTER") {
        cases.retain(|c| c.name.contains(&f));
        eprintln!("NOTE: BPF_CORPUS_FILTER={f}: {} programs", cases.len());
    }
    let mut tally = Tally::default();
    for c in &cases {
        run_case(c, &mut tally);
    }
    eprintln!(
        "\n{:40} {:7} {:>9} {:>9} {:>9} {:>9}",
        "program", "k/ours", "k_proc", "our_proc", "our_us", "k_us"
    );
    for r in &tally.rows {
        eprintln!("{r}");
    }
    for s in &tally.stricter {
        eprintln!("DISAGREE (we are stricter) {s}");
    }
    for s in &tally.accept_non_safety {
        eprintln!("DISAGREE (we accept; not a safety rule) {s}");
    }
    for s in &tally.unsound {
        eprintln!("DISAGREE (we accept a memory-safety rejection) {s}");
    }
    let pct = 100.0 * tally.agree as f64 / tally.total.max(1) as f64;
    eprintln!(
        "corpus: {} programs ({n_text} written, {n_obj} from objects); both accept {}, both reject {}",
        tally.total, tally.accepted_both, tally.rejected_both
    );
    eprintln!("agreement: {}/{} = {pct:.1}%", tally.agree, tally.total);
    let exact = tally.proc_pairs.iter().filter(|(k, o)| k == o).count();
    let mut ratios: Vec<f64> = tally
        .proc_pairs
        .iter()
        .map(|&(k, o)| o as f64 / k.max(1) as f64)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
    eprintln!(
        "processed insns (both accept): {exact}/{} equal to the kernel's, median ours/kernel {median:.3}, min {:.3}, max {:.3}",
        ratios.len(),
        ratios.first().copied().unwrap_or(0.0),
        ratios.last().copied().unwrap_or(0.0)
    );
    eprintln!(
        "verification time: ours {:.0} us, kernel {} us (sum of the logs' `verification time`)",
        tally.our_us, tally.kernel_us
    );
    assert!(tally.total >= 400, "corpus too small: {}", tally.total);
    assert!(
        tally.unsound.is_empty(),
        "we accept programs the kernel rejects for memory safety: {:#?}",
        tally.unsound
    );
    assert!(pct >= 97.0, "agreement {pct:.1}% is under 97%");
}
