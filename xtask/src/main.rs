//! `cargo xtask`: project automation.
//!
//! - `cargo xtask ci [--keep-going]` — the whole check (prerequisites, fmt, clippy, tests,
//!   docs, fuzz targets).
//! - `cargo xtask fuzz TARGET [--seconds N] [-- LIBFUZZER_ARGS]` — run one cargo-fuzz target.
//! - `cargo xtask build-examples` — compile `examples/*.c` to BPF objects.
//! - `cargo xtask bench-table [--runs N] [--filter F] [--cpu C | --no-pin]` — run the
//!   JIT run-time bench N times and print medians, spreads and ratios (not part of `ci`).

mod bench_table;
mod ci;
mod examples;
mod fuzz;
mod util;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage:
  cargo xtask ci [--keep-going]           run every CI step (stops at the first failure
                                          unless --keep-going)
  cargo xtask fuzz TARGET [--seconds N] [-- LIBFUZZER_ARGS]
                                          run a fuzz target (decode | assemble | elf | verify | nocsr | jit), default 60 s
  cargo xtask build-examples              compile examples/*.c with clang-19 -target bpf
  cargo xtask bench-table [--runs N] [--filter F] [--cpu C | --no-pin]
                                          run `cargo bench -p bpf-tests --bench jit` N times
                                          (default 3, filter run/, pinned to CPU 1 with
                                          taskset) and print a markdown table of medians";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = util::repo_root()?;
    match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => ci::ci(&root, false),
        Some("ci") if args.len() == 2 && args[1] == "--keep-going" => ci::ci(&root, true),
        Some("fuzz") => {
            let mut target = None;
            let mut seconds = 60u64;
            let mut extra = Vec::new();
            let mut it = args.iter().skip(1);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--" => {
                        extra.extend(it.by_ref().cloned());
                    }
                    "--seconds" => {
                        let v = it.next().context("--seconds needs a value")?;
                        seconds = v
                            .parse()
                            .with_context(|| format!("--seconds: `{v}` is not a number"))?;
                    }
                    t if target.is_none() && !t.starts_with('-') => target = Some(t.to_string()),
                    other => bail!("unexpected argument `{other}`\n{USAGE}"),
                }
            }
            let target = target.with_context(|| format!("fuzz needs a TARGET\n{USAGE}"))?;
            fuzz::fuzz(&root, &target, seconds, &extra)
        }
        Some("build-examples") if args.len() == 1 => examples::build_examples(&root),
        Some("bench-table") => {
            let opts = bench_table::parse_args(&args[1..])?;
            bench_table::bench_table(&root, &opts)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}
