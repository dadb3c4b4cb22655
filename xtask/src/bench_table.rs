//! `cargo xtask bench-table [--runs N] [--filter F] [--cpu C | --no-pin]`: runs the
//! criterion bench `bpf-tests/benches/jit.rs` several times and prints one
//! markdown table of the median (and min/max) of criterion's point estimates
//! per program and engine, with ours/kernel and ours/rbpf ratios.
//!
//! One criterion run on a noisy 2-vCPU machine cannot separate engines that
//! are within a few percent of each other; the median of several runs, with
//! the spread next to it, shows whether a gap is real.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, display, on_path, run};

/// Our engine, the one the ratios are about.
const OURS: &str = "bpfkit-x86";
/// The peers the ratios compare against, with their column titles.
const PEERS: &[(&str, &str)] = &[("kernel-jit", "ours/kernel"), ("rbpf-jit", "ours/rbpf")];

/// Options of the subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How many times criterion is run.
    pub runs: usize,
    /// Criterion's benchmark filter (a regular expression on the ids).
    pub filter: String,
    /// The CPU to pin the benchmark to with `taskset`, if any.
    pub cpu: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            runs: 3,
            filter: "run/".to_string(),
            cpu: Some(1),
        }
    }
}

/// Parses the subcommand's arguments (everything after `bench-table`).
pub fn parse_args(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                let v = it.next().context("--runs needs a value")?;
                o.runs = v
                    .parse()
                    .with_context(|| format!("--runs: `{v}` is not a number"))?;
                if o.runs == 0 {
                    bail!("--runs must be at least 1");
                }
            }
            "--filter" => o.filter = it.next().context("--filter needs a value")?.clone(),
            "--cpu" => {
                let v = it.next().context("--cpu needs a value")?;
                o.cpu = Some(
                    v.parse()
                        .with_context(|| format!("--cpu: `{v}` is not a CPU number"))?,
                );
            }
            "--no-pin" => o.cpu = None,
            other => bail!("bench-table: unexpected argument `{other}`"),
        }
    }
    Ok(o)
}

/// Runs the benchmark `opts.runs` times and prints the table on stdout.
pub fn bench_table(root: &std::path::Path, opts: &Options) -> Result<()> {
    // Build once, unpinned, so that the timed runs only run.
    run(cargo().current_dir(root).args([
        "bench",
        "-p",
        "bpf-tests",
        "--bench",
        "jit",
        "--no-run",
    ]))?;

    let pin = match opts.cpu {
        Some(cpu) if on_path("taskset") => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if (cpu as usize) < cpus {
                Some(cpu)
            } else {
                eprintln!("  (CPU {cpu} does not exist here ({cpus} CPUs): not pinned)");
                None
            }
        }
        Some(_) => {
            eprintln!("  (taskset not found: not pinned)");
            None
        }
        None => None,
    };

    let mut samples = Samples::new();
    for i in 0..opts.runs {
        eprintln!("== bench-table: run {} of {}", i + 1, opts.runs);
        let mut cmd = match pin {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string());
                c.arg(cargo().get_program());
                c
            }
            None => cargo(),
        };
        cmd.current_dir(root)
            .args(["bench", "-p", "bpf-tests", "--bench", "jit", "--"])
            .args(["--warm-up-time", "1", "--measurement-time", "3"])
            .arg(&opts.filter)
            .stdout(Stdio::piped());
        let line = display(&cmd);
        eprintln!("  $ {line}");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("could not start `{line}`"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut parser = Parser::default();
        for l in BufReader::new(stdout).lines() {
            let l = l.context("reading the bench's output")?;
            eprintln!("{l}");
            if let Some((id, ns)) = parser.line(&l) {
                samples.add(&id, ns);
            }
        }
        let status = child.wait().context("waiting for the bench")?;
        if !status.success() {
            bail!("`{line}` failed ({status})");
        }
    }
    if samples.is_empty() {
        bail!(
            "no criterion `time:` lines matched filter `{}`",
            opts.filter
        );
    }
    let pinned = match pin {
        Some(cpu) => format!("pinned to CPU {cpu} with `taskset -c {cpu}`"),
        None => "not pinned".to_string(),
    };
    println!(
        "\n{} criterion run(s) (`--warm-up-time 1 --measurement-time 3 {}`), {pinned}.",
        opts.runs, opts.filter
    );
    println!("Cells: median of the runs' point estimates (min-max of them).\n");
    print!("{}", samples.table());
    Ok(())
}

/// Reads criterion's human-readable output line by line and yields
/// `(benchmark id, point estimate in ns)` for each `time:` line.
#[derive(Debug, Default)]
pub struct Parser {
    /// The last benchmark id seen on a line of its own (criterion puts long
    /// ids on their own line and `time:` on the next).
    pending: Option<String>,
}

impl Parser {
    /// Feeds one line; returns a result when the line completes one.
    pub fn line(&mut self, raw: &str) -> Option<(String, f64)> {
        // Progress output may share a line through carriage returns.
        let line = raw.rsplit('\r').next().unwrap_or(raw);
        if let Some(pos) = line.find("time:") {
            let head = line[..pos].trim();
            let id = if head.is_empty() {
                self.pending.take()?
            } else {
                self.pending = None;
                head.to_string()
            };
            let ns = parse_time_triple(&line[pos + "time:".len()..])?;
            return Some((id, ns));
        }
        let starts_flush = !line.starts_with(char::is_whitespace);
        let t = line.trim();
        if starts_flush
            && !t.is_empty()
            && !t.starts_with("Benchmarking")
            && !t.contains(char::is_whitespace)
            && t.contains('/')
        {
            self.pending = Some(t.to_string());
        }
        None
    }
}

/// `[lo unit mid unit hi unit]` -> mid in ns.
fn parse_time_triple(s: &str) -> Option<f64> {
    let inner = s.trim().strip_prefix('[')?;
    let inner = inner.split(']').next()?;
    let toks: Vec<&str> = inner.split_whitespace().collect();
    if toks.len() != 6 {
        return None;
    }
    let value: f64 = toks.get(2)?.parse().ok()?;
    let scale = match *toks.get(3)? {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

/// The point estimates collected so far, by program and engine.
#[derive(Debug, Default)]
pub struct Samples {
    /// Group (e.g. `run/csum`) -> engine -> estimates in ns.
    by_group: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// Engines in the order first seen.
    engines: Vec<String>,
    /// Groups in the order first seen.
    groups: Vec<String>,
}

/// Median, min and max of a non-empty sample.
fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let lo = *s.first()?;
    let hi = *s.last()?;
    let med = if n % 2 == 1 {
        *s.get(n / 2)?
    } else {
        (s.get(n / 2 - 1)? + s.get(n / 2)?) / 2.0
    };
    Some((med, lo, hi))
}

/// A time in ns with three significant digits or so.
fn fmt_ns(ns: f64) -> String {
    if ns >= 100.0 {
        format!("{ns:.0}")
    } else {
        format!("{ns:.1}")
    }
}

impl Samples {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.by_group.is_empty()
    }

    /// Records one estimate for `id` = `group/engine` (the last `/` splits).
    pub fn add(&mut self, id: &str, ns: f64) {
        let (group, engine) = id.rsplit_once('/').unwrap_or((id, ""));
        if !self.groups.iter().any(|g| g == group) {
            self.groups.push(group.to_string());
        }
        if !self.engines.iter().any(|e| e == engine) {
            self.engines.push(engine.to_string());
        }
        self.by_group
            .entry(group.to_string())
            .or_default()
            .entry(engine.to_string())
            .or_default()
            .push(ns);
    }

    /// The markdown table: one row per group, one column per engine, then
    /// the ratios of our median to each peer's and which peer wins.
    pub fn table(&self) -> String {
        let mut out = String::from("| program |");
        let mut rule = String::from("|---|");
        for e in &self.engines {
            out.push_str(&format!(" {e} ns |"));
            rule.push_str("---:|");
        }
        for (_, title) in PEERS {
            out.push_str(&format!(" {title} |"));
            rule.push_str("---:|");
        }
        out.push_str(" peer faster (median) |\n");
        rule.push_str("---|\n");
        out.push_str(&rule);
        for g in &self.groups {
            let Some(row) = self.by_group.get(g) else {
                continue;
            };
            let med = |e: &str| row.get(e).and_then(|v| stats(v)).map(|s| s.0);
            out.push_str(&format!("| {g} |"));
            for e in &self.engines {
                match row.get(e).and_then(|v| stats(v)) {
                    Some((m, lo, hi)) => {
                        out.push_str(&format!(" {} ({}-{}) |", fmt_ns(m), fmt_ns(lo), fmt_ns(hi)))
                    }
                    None => out.push_str(" - |"),
                }
            }
            let ours = med(OURS);
            let mut winners = Vec::new();
            for (peer, _) in PEERS {
                match (ours, med(peer)) {
                    (Some(o), Some(p)) if p > 0.0 => {
                        out.push_str(&format!(" {:.2} |", o / p));
                        if p < o {
                            winners.push(format!("**{peer}**"));
                        }
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push_str(&format!(" {} |\n", winners.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_criterion_layouts_and_units() {
        // Hand-written in criterion 0.5's layout: short ids share the line
        // with `time:`, long ones stand alone with `time:` on the next line.
        let text = "Benchmarking run/csum/bpfkit-x86: Warming up for 1.0000 s\n\
run/csum/bpfkit-x86     time:   [490.10 ns 495.50 ns 501.00 ns]\n\
                        change: [-1.0% +0.2% +1.1%] (p = 0.70 > 0.05)\n\
run/csum/bpfkit-interp\n\
                        time:   [10.500 µs 10.750 µs 11.000 µs]\n\
Found 3 outliers among 100 measurements (3.00%)\n\
run/alu/kernel-jit      time:   [5.1000 us 5.2000 us 5.3000 us]\n\
compile/alu/ours        time:   [1.5000 ms 2.0000 ms 2.5000 ms]\n\
                        thrpt:  [1.0 Melem/s 2.0 Melem/s 3.0 Melem/s]\n";
        let mut p = Parser::default();
        let got: Vec<(String, f64)> = text.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(
            got,
            vec![
                ("run/csum/bpfkit-x86".to_string(), 495.5),
                ("run/csum/bpfkit-interp".to_string(), 10_750.0),
                ("run/alu/kernel-jit".to_string(), 5_200.0),
                ("compile/alu/ours".to_string(), 2_000_000.0),
            ]
        );
    }

    #[test]
    fn table_has_medians_spread_ratios_and_winners() {
        let mut s = Samples::new();
        for (ours, kernel, rbpf) in [
            (500.0, 1000.0, 400.0),
            (520.0, 1100.0, 410.0),
            (480.0, 900.0, 420.0),
        ] {
            s.add("run/csum/bpfkit-x86", ours);
            s.add("run/csum/kernel-jit", kernel);
            s.add("run/csum/rbpf-jit", rbpf);
        }
        let t = s.table();
        let row = t
            .lines()
            .find(|l| l.starts_with("| run/csum |"))
            .unwrap_or("");
        // Medians 500, 1000, 410; ratios 0.50 and 500/410 = 1.22; rbpf wins.
        assert_eq!(
            row,
            "| run/csum | 500 (480-520) | 1000 (900-1100) | 410 (400-420) | 0.50 | 1.22 | **rbpf-jit** |"
        );
    }

    #[test]
    fn even_counts_take_the_mean_of_the_middle_two() {
        assert_eq!(stats(&[4.0, 1.0, 3.0, 2.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&[]).ok(), Some(Options::default()));
        let o = a(&["--runs", "5", "--filter", "run/alu", "--no-pin"]).ok();
        assert_eq!(
            o,
            Some(Options {
                runs: 5,
                filter: "run/alu".into(),
                cpu: None
            })
        );
        assert!(a(&["--runs", "0"]).is_err());
        assert!(a(&["--bogus"]).is_err());
    }
}
