//! `cargo xtask fuzz TARGET --seconds N`: seed the corpus, run cargo-fuzz, report execs/s.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, SectionKind};

use crate::util::{cargo, display, files_with_ext, run};

/// The fuzz targets under `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &["decode", "assemble", "elf", "verify", "nocsr", "jit"];

/// Runs one fuzz target for `seconds` seconds, passing `extra` on to libFuzzer.
pub fn fuzz(root: &Path, target: &str, seconds: u64, extra: &[String]) -> Result<()> {
    if !TARGETS.contains(&target) {
        bail!(
            "unknown fuzz target `{target}`; known: {}",
            TARGETS.join(", ")
        );
    }
    ensure_cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = write_seeds(root, target, &corpus)?;
    eprintln!("  {seeds} seed inputs written to {}", corpus.display());

    let mut cmd = cargo();
    cmd.current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", target, "--"])
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .args(extra)
        .stderr(Stdio::piped());
    let line = display(&cmd);
    eprintln!("  $ {line}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let mut stats = Stats::default();
    if let Some(err) = child.stderr.take() {
        for l in BufReader::new(err).lines() {
            let l = l.context("reading libFuzzer output")?;
            eprintln!("{l}");
            stats.observe(&l);
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    report(target, &stats);
    if !status.success() {
        match &stats.artifact {
            Some(a) => bail!("fuzz target `{target}` found a failure; reproducer: {a}"),
            None => bail!("`{line}` failed ({status})"),
        }
    }
    Ok(())
}

/// What we learn from libFuzzer's log.
#[derive(Default)]
struct Stats {
    /// Last `exec/s:` figure of a status line.
    last_rate: Option<u64>,
    /// `stat::number_of_executed_units`.
    units: Option<u64>,
    /// `Done N runs in S second(s)`.
    done: Option<(u64, u64)>,
    /// `Test unit written to PATH`.
    artifact: Option<String>,
}

impl Stats {
    fn observe(&mut self, l: &str) {
        if let Some(rest) = l.split("exec/s: ").nth(1) {
            if let Some(n) = rest.split_whitespace().next().and_then(|s| s.parse().ok()) {
                self.last_rate = Some(n);
            }
        }
        if let Some(rest) = l.strip_prefix("stat::number_of_executed_units: ") {
            self.units = rest.trim().parse().ok();
        }
        if let Some(rest) = l.strip_prefix("Done ") {
            let mut w = rest.split_whitespace();
            let runs = w.next().and_then(|s| s.parse().ok());
            let secs = w.nth(2).and_then(|s| s.parse().ok());
            if let (Some(r), Some(s)) = (runs, secs) {
                self.done = Some((r, s));
            }
        }
        if let Some(rest) = l.split("Test unit written to ").nth(1) {
            self.artifact = Some(rest.trim().to_string());
        }
    }
}

fn report(target: &str, s: &Stats) {
    match s.done {
        Some((runs, secs)) if secs > 0 => eprintln!(
            "fuzz {target}: {runs} executions in {secs} s = {} exec/s",
            runs / secs
        ),
        _ => match (s.units, s.last_rate) {
            (Some(u), Some(r)) => {
                eprintln!("fuzz {target}: {u} executions, last reported {r} exec/s")
            }
            (None, Some(r)) => eprintln!("fuzz {target}: last reported {r} exec/s"),
            _ => eprintln!("fuzz {target}: libFuzzer reported no execution rate"),
        },
    }
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !present {
        eprintln!("  cargo-fuzz not found; installing it");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// Writes seed inputs for `target` into `corpus`; returns how many.
fn write_seeds(root: &Path, target: &str, corpus: &Path) -> Result<usize> {
    let objects = seed_objects(root)?;
    let mut n = 0;
    let mut put = |name: String, bytes: &[u8]| -> Result<()> {
        let path = corpus.join(format!("seed-{name}"));
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        n += 1;
        Ok(())
    };
    match target {
        "elf" => {
            for o in &objects {
                let bytes = fs::read(o).with_context(|| format!("reading {}", o.display()))?;
                put(stem(o), &bytes)?;
            }
        }
        // Code sections; `jit` takes an options byte first (0: defaults).
        "decode" | "jit" => {
            let lead: &[u8] = if target == "jit" { &[0] } else { &[] };
            for o in &objects {
                let bytes = fs::read(o).with_context(|| format!("reading {}", o.display()))?;
                for (sec, code) in code_sections(&bytes) {
                    let seed = [lead, code.as_slice()].concat();
                    put(format!("{}-{}", stem(o), sec.replace('/', "_")), &seed)?;
                }
            }
        }
        "assemble" => {
            for d in files_with_ext(&conformance_dir(root), "data")? {
                let text =
                    fs::read_to_string(&d).with_context(|| format!("reading {}", d.display()))?;
                if let Some(asm) = asm_part(&text) {
                    put(stem(&d), asm.as_bytes())?;
                }
            }
            for s in files_with_ext(&root.join("examples"), "s")? {
                let bytes = fs::read(&s).with_context(|| format!("reading {}", s.display()))?;
                put(stem(&s), &bytes)?;
            }
        }
        "nocsr" => {
            // (op, arg) block pairs (see fuzz_targets/nocsr.rs): full and
            // partial brackets, a loop and a skip around brackets, stray
            // reads and writes, an escaping stack pointer.
            let seeds: [&[u8]; 5] = [
                &[0x00, 0x1f, 0x03, 0x01],
                &[0xf0, 0x03, 0x00, 0x07, 0x03, 0x02],
                &[0xe0, 0x01, 0x00, 0x25, 0x06, 0x08, 0x04, 0x09],
                &[0x00, 0x03, 0x08, 0x00, 0x00, 0x44, 0x07, 0x10, 0x05, 0x18],
                &[
                    0x00, 0x1f, 0x02, 0x81, 0xf1, 0x02, 0x01, 0x9f, 0x03, 0x04, 0xe0, 0x00, 0x00,
                    0x0c, 0x06, 0xc0, 0x00, 0x31, 0x09, 0x55,
                ],
            ];
            for (i, b) in seeds.iter().enumerate() {
                put(format!("blocks{i}"), b)?;
            }
        }
        _ => {}
    }
    Ok(n)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The bpf_conformance data kept beside the repository (`../shared/conformance`).
fn conformance_dir(root: &Path) -> PathBuf {
    root.join("..").join("shared").join("conformance")
}

/// BPF objects to seed from: `examples/*.o` and the shared benchmark objects.
fn seed_objects(root: &Path) -> Result<Vec<PathBuf>> {
    let mut v = files_with_ext(&root.join("examples"), "o")?;
    v.extend(files_with_ext(
        &root.join("..").join("shared").join("bench").join("build"),
        "o",
    )?);
    Ok(v)
}

/// The `-- asm` part of a bpf_conformance `.data` file.
fn asm_part(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut inside = false;
    for l in text.lines() {
        if let Some(tag) = l.strip_prefix("-- ") {
            inside = tag.trim() == "asm";
            continue;
        }
        if inside {
            out.push_str(l);
            out.push('\n');
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Executable sections of an ELF object: `(name, bytes)`.
fn code_sections(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Ok(file) = object::File::parse(bytes) else {
        return Vec::new();
    };
    file.sections()
        .filter(|s| s.kind() == SectionKind::Text)
        .filter_map(|s| {
            let name = s.name().ok()?.to_string();
            let data = s.data().ok()?.to_vec();
            (!data.is_empty()).then_some((name, data))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_from_libfuzzer_lines() {
        // Lines in the shape libFuzzer prints them (status line, final stats, done).
        let mut s = Stats::default();
        s.observe("#4096\tpulse  cov: 812 ft: 1790 corp: 120/9Kb exec/s: 2048 rss: 80Mb");
        assert_eq!(s.last_rate, Some(2048));
        s.observe("stat::number_of_executed_units: 123456");
        assert_eq!(s.units, Some(123456));
        s.observe("Done 123456 runs in 61 second(s)");
        assert_eq!(s.done, Some((123456, 61)));
        assert_eq!(s.artifact, None);
        s.observe("artifact_prefix='./'; Test unit written to ./crash-abc");
        assert_eq!(s.artifact.as_deref(), Some("./crash-abc"));
    }

    #[test]
    fn asm_part_of_conformance_file() {
        let text = "# comment\n-- asm\nmov %r0, 1\nexit\n-- result\n0x1\n";
        assert_eq!(asm_part(text).as_deref(), Some("mov %r0, 1\nexit\n"));
        assert_eq!(asm_part("-- result\n0x1\n"), None);
    }
}
