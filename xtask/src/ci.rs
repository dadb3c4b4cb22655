//! `cargo xtask ci`: the project's whole check, as one table of steps.
//!
//! To add a step, write a `fn(&Path) -> Result<()>` and add a row to [`STEPS`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::util::{cargo, is_root, on_path, run};

/// One CI step: a name for the log and the function that runs it from the repo root.
struct Step {
    name: &'static str,
    run: fn(&Path) -> Result<()>,
}

/// The steps, in order. The first failure stops the run.
const STEPS: &[Step] = &[
    Step {
        name: "prerequisites",
        run: prerequisites,
    },
    Step {
        name: "fmt",
        run: fmt,
    },
    Step {
        name: "clippy",
        run: clippy,
    },
    Step {
        name: "test",
        run: test,
    },
    Step {
        name: "doc",
        run: doc,
    },
    Step {
        name: "fuzz-check",
        run: fuzz_check,
    },
];

/// Runs every step in order and prints each name and duration and a summary.
///
/// Stops at the first failure, unless `keep_going` is set: then every step
/// runs and the failures are listed at the end (the result is still an error).
pub fn ci(root: &Path, keep_going: bool) -> Result<()> {
    let total = Instant::now();
    let mut done: Vec<(&str, Duration, bool)> = Vec::new();
    for step in STEPS {
        eprintln!("==> [{}] starting", step.name);
        let t = Instant::now();
        let res = (step.run)(root);
        let dt = t.elapsed();
        match res {
            Ok(()) => {
                eprintln!("==> [{}] ok in {:.1}s", step.name, dt.as_secs_f64());
                done.push((step.name, dt, true));
            }
            Err(e) => {
                eprintln!(
                    "==> [{}] FAILED after {:.1}s: {e:#}",
                    step.name,
                    dt.as_secs_f64()
                );
                done.push((step.name, dt, false));
                if !keep_going {
                    summary(&done, total.elapsed());
                    bail!("ci step `{}` failed: {e:#}", step.name);
                }
            }
        }
    }
    summary(&done, total.elapsed());
    let failed: Vec<&str> = done.iter().filter(|d| !d.2).map(|d| d.0).collect();
    if !failed.is_empty() {
        bail!("ci steps failed: {}", failed.join(", "));
    }
    eprintln!("ci: all {} steps passed", STEPS.len());
    Ok(())
}

fn summary(done: &[(&str, Duration, bool)], total: Duration) {
    eprintln!("---- ci summary ----");
    for (name, dt, ok) in done {
        let status = if *ok { "ok" } else { "FAILED" };
        eprintln!("  {name:<14} {:>7.1}s  {status}", dt.as_secs_f64());
    }
    eprintln!("  {:<14} {:>7.1}s", "total", total.as_secs_f64());
}

/// External tools the tests use, with the Debian package that provides each.
/// An absolute path names a file the package installs instead of a program.
pub const TOOLS: &[(&str, &str)] = &[
    ("clang-19", "clang-19"),
    ("llvm-objdump-19", "llvm-19"),
    ("llvm-objcopy-19", "llvm-19"),
    // LLVM 14's objdump, the decimal-printing reference of the disassembler test.
    ("llvm-objdump", "llvm"),
    ("objdump", "binutils"),
    ("qemu-aarch64", "qemu-user"),
    ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    ("aarch64-linux-gnu-objdump", "binutils-aarch64-linux-gnu"),
    // The arm64 harness is built against the cross libc (a Recommends of the
    // compiler, which `--no-install-recommends` skips).
    (
        "/usr/aarch64-linux-gnu/include/stdio.h",
        "libc6-dev-arm64-cross",
    ),
    // libfuzzer-sys compiles libFuzzer's C++ sources when the fuzz targets are built.
    ("c++", "g++"),
];

/// Installs missing apt packages (as root) and rustup components.
fn prerequisites(_root: &Path) -> Result<()> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|&(_, pkg)| pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        eprintln!("  tools present: {}", tool_names());
    } else if !is_root() {
        bail!(
            "missing tools; install these Debian packages as root: apt-get install -y {}",
            missing.join(" ")
        );
    } else if !on_path("apt-get") {
        bail!(
            "missing tools and no apt-get; install the equivalents of: {}",
            missing.join(" ")
        );
    } else {
        eprintln!("  installing {}", missing.join(" "));
        run(std::process::Command::new("apt-get").arg("update"))?;
        run(std::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        let still: Vec<&str> = TOOLS
            .iter()
            .filter(|(tool, _)| !have(tool))
            .map(|&(tool, _)| tool)
            .collect();
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.join(" "));
        }
    }

    for (component, sub) in [("rustfmt", "fmt"), ("clippy", "clippy")] {
        let ok = cargo()
            .args([sub, "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("  installing rustup component {component}");
            run(std::process::Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// A program on `PATH`, or a file when `tool` is an absolute path.
fn have(tool: &str) -> bool {
    if tool.starts_with('/') {
        Path::new(tool).is_file()
    } else {
        on_path(tool)
    }
}

fn tool_names() -> String {
    TOOLS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
}

fn fmt(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))
}

fn clippy(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn test(root: &Path) -> Result<()> {
    run(cargo()
        .current_dir(root)
        .args(["test", "--workspace"])
        .env("BPFKIT_REQUIRE_TOOLS", "1"))
}

fn doc(root: &Path) -> Result<()> {
    run(cargo()
        .current_dir(root)
        .args(["doc", "--workspace", "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))
}

/// Type-checks the fuzz targets (a separate workspace under `fuzz/`, its own target dir).
fn fuzz_check(root: &Path) -> Result<()> {
    let manifest = root.join("fuzz").join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} is missing", manifest.display());
    }
    run(cargo()
        .current_dir(root.join("fuzz"))
        .args(["check", "--bins"])
        .env("RUSTFLAGS", "-D warnings"))
}
