//! `bpfkit verify OBJ...`: runs our verifier on every program of every
//! object and prints one row per program, like the kernel's `veristat`:
//! file, program, verdict, total instructions, processed instructions,
//! states, duration. `--json` prints one object per program instead (a JSON
//! array); `--log-level N` prints our verifier log after each program.
//!
//! Objects are verified in parallel (rayon); on a terminal a progress bar
//! (indicatif) runs on stderr. Each program is verified privileged for the
//! type its section names, with the object's maps; `mem` programs get a
//! memory region of `--mem-size` bytes. The exit status is 0 even when
//! programs fail verification (the table says so); it is 1 only when an
//! object cannot be read or parsed.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use bpf_object::{Object, ProgType};
use bpf_verifier::{verify_with_log, MapInfo, Options, ProgKind};
use rayon::prelude::*;
use serde_json::json;

use crate::files;

/// Arguments of `bpfkit verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ELF objects (`.o`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print our verifier log (1: errors and statistics, 2: every instruction).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub log_level: u32,
    /// One JSON object per program (an array) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Size in bytes of the memory a `mem` program receives.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub mem_size: u32,
}

/// The verdict on one program.
#[derive(Clone, Debug)]
struct Row {
    file: String,
    section: String,
    name: String,
    ok: bool,
    error: Option<String>,
    insns: usize,
    processed: u64,
    states: u64,
    peak_states: u64,
    duration_us: u128,
    log: String,
}

/// The verifier's program kind for an object program of type `t` (`mem`
/// programs get `mem_size` bytes); `None` for types it does not model.
pub(crate) fn kind_of(t: ProgType, mem_size: u32) -> Option<ProgKind> {
    Some(match t {
        ProgType::SocketFilter => ProgKind::SocketFilter,
        ProgType::Kprobe => ProgKind::Kprobe,
        ProgType::SchedCls | ProgType::SchedAct => ProgKind::SchedCls,
        ProgType::Tracepoint => ProgKind::Tracepoint,
        ProgType::Xdp => ProgKind::Xdp,
        ProgType::RawTracepoint | ProgType::RawTracepointWritable => ProgKind::RawTracepoint,
        ProgType::Mem => ProgKind::Mem { size: mem_size },
        _ => return None,
    })
}

fn verify_object(path: &Path, args: &Args) -> Result<Vec<Row>> {
    let bytes = files::read(path)?;
    let obj = Object::parse(&bytes)
        .with_context(|| format!("{}: not a usable BPF object", path.display()))?;
    let maps: Vec<MapInfo> = obj
        .maps
        .iter()
        .map(|m| MapInfo {
            name: m.name.clone(),
            map_type: m.map_type,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            flags: m.flags,
            fd: None,
        })
        .collect();
    let file = path.display().to_string();
    let rows = obj
        .programs
        .par_iter()
        .map(|p| {
            let mut row = Row {
                file: file.clone(),
                section: p.section.clone(),
                name: p.name.clone(),
                ok: false,
                error: None,
                insns: p.insns.slot_len(),
                processed: 0,
                states: 0,
                peak_states: 0,
                duration_us: 0,
                log: String::new(),
            };
            let Some(kind) = kind_of(p.prog_type, args.mem_size) else {
                row.error = Some(format!(
                    "program type {:?} is not supported by the verifier",
                    p.prog_type
                ));
                return row;
            };
            let mut opts = Options::new(kind).with_maps(maps.clone());
            opts.log_level = args.log_level;
            let t0 = Instant::now();
            let res = verify_with_log(&p.insns, &opts);
            row.duration_us = t0.elapsed().as_micros();
            match res {
                Ok(v) => {
                    row.ok = true;
                    row.processed = v.processed_insns;
                    row.states = v.total_states;
                    row.peak_states = v.peak_states;
                    row.log = v.log;
                }
                Err((e, log)) => {
                    row.error = Some(format!("insn {}: {}", e.insn, e.message));
                    row.log = log;
                }
            }
            row
        })
        .collect();
    Ok(rows)
}

/// Runs `bpfkit verify`.
pub fn run(args: &Args) -> Result<()> {
    let bar = if std::io::stderr().is_terminal() && args.files.len() > 1 {
        let b = indicatif::ProgressBar::new(args.files.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} verifying [{bar:30}] {pos}/{len} objects {msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        Some(b)
    } else {
        None
    };
    let per_file: Vec<Result<Vec<Row>>> = args
        .files
        .par_iter()
        .map(|f| {
            let r = verify_object(f, args);
            if let Some(b) = &bar {
                b.inc(1);
            }
            r
        })
        .collect();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut rows = Vec::new();
    for r in per_file {
        rows.extend(r?);
    }
    let out = if args.json {
        json_rows(&rows)
    } else {
        table(&rows, args.log_level)
    };
    files::write_stdout(&out)
}

fn json_rows(rows: &[Row]) -> String {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut o = json!({
                "file": r.file,
                "section": r.section,
                "name": r.name,
                "verdict": if r.ok { "success" } else { "failure" },
                "error": r.error,
                "insns": r.insns,
                "processed_insns": r.processed,
                "states": r.states,
                "peak_states": r.peak_states,
                "duration_us": r.duration_us as u64,
            });
            if !r.log.is_empty() {
                o["log"] = json!(r.log);
            }
            o
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

fn table(rows: &[Row], log_level: u32) -> String {
    use std::fmt::Write as _;
    let headers = [
        "File",
        "Program",
        "Verdict",
        "Insns",
        "Processed",
        "States",
        "Duration (us)",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                Path::new(&r.file)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| r.file.clone()),
                r.name.clone(),
                if r.ok { "success" } else { "failure" }.to_string(),
                r.insns.to_string(),
                r.processed.to_string(),
                r.states.to_string(),
                r.duration_us.to_string(),
            ]
        })
        .collect();
    let mut w: [usize; 7] = headers.map(str::len);
    for c in &cells {
        for (k, x) in c.iter().enumerate() {
            w[k] = w[k].max(x.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: [&str; 7]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {:>w5$}  {:>w6$}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5],
            w6 = w[6]
        );
    };
    line(&mut out, headers);
    let total: usize = w.iter().sum::<usize>() + 12;
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for (r, c) in rows.iter().zip(&cells) {
        line(&mut out, [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6]]);
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  error: {e}");
        }
        if log_level > 0 && !r.log.is_empty() {
            for l in r.log.lines() {
                let _ = writeln!(out, "  | {l}");
            }
        }
    }
    let ok = rows.iter().filter(|r| r.ok).count();
    let _ = writeln!(
        out,
        "{} programs: {} success, {} failure",
        rows.len(),
        ok,
        rows.len() - ok
    );
    out
}
