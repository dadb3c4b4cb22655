//! `bpfkit callgraph OBJ [--prog NAME] [--dot] [--priv-stack]`: subprograms,
//! calls, stack depths and tail-call reachability of each program.
//!
//! Exits with status 1 (after printing every program) when the kernel's
//! stack rules reject one of them.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bpf_callgraph::{
    estimate_stack_depths, render_tree, to_dot, BuildOptions, CallGraph, PrivStackConfig,
    StackConfig, TracingKind,
};
use bpf_isa::{ProgType, Program};
use bpf_object::Object;

use crate::files;

/// Arguments of `bpfkit callgraph`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ELF object (`.o`), or raw bytecode (one program).
    pub file: PathBuf,
    /// Only the program with this name.
    #[arg(long)]
    pub prog: Option<String>,
    /// Print Graphviz DOT instead of a tree.
    #[arg(long)]
    pub dot: bool,
    /// Evaluate private-stack eligibility as for a JIT that supports private
    /// stacks (the kernel's x86-64 and arm64 JITs do).
    #[arg(long)]
    pub priv_stack: bool,
    /// Round frames as the kernel's interpreter does (32 bytes) instead of as
    /// its JIT does (16 bytes).
    #[arg(long)]
    pub interpreter: bool,
}

/// The attach kind of a tracing program, from its section name the way
/// libbpf reads it (`fentry/`, `fexit/`, `fmod_ret/`, `tp_btf/`, `iter/`,
/// and their sleepable `.s` forms). `None` for anything else.
fn tracing_kind(section: &str) -> Option<TracingKind> {
    let (head, _) = section.split_once('/')?;
    Some(match head.strip_suffix(".s").unwrap_or(head) {
        "fentry" => TracingKind::Fentry,
        "fexit" => TracingKind::Fexit,
        "fmod_ret" => TracingKind::FmodRet,
        "tp_btf" => TracingKind::TpBtf,
        "iter" => TracingKind::Iter,
        _ => return None,
    })
}

/// Runs `bpfkit callgraph`.
pub fn run(args: &Args) -> Result<()> {
    let bytes = files::read(&args.file)?;
    let mut out = String::new();
    let mut rejected = 0usize;
    if files::is_elf(&bytes) {
        let obj = Object::parse(&bytes)
            .with_context(|| format!("{}: not a usable BPF object", args.file.display()))?;
        let mut any = false;
        for p in &obj.programs {
            if args.prog.as_deref().is_some_and(|n| n != p.name) {
                continue;
            }
            any = true;
            let symbols: Vec<(usize, &str)> = p
                .functions
                .iter()
                .map(|f| (f.start, f.name.as_str()))
                .collect();
            let title = format!("{} (section {})", p.name, p.section);
            let ok = one(
                &mut out,
                &title,
                &p.insns,
                &symbols,
                p.prog_type,
                tracing_kind(&p.section),
                args,
            )
            .with_context(|| format!("program `{}`", p.name))?;
            rejected += usize::from(!ok);
        }
        if !any {
            match &args.prog {
                Some(n) => bail!("{}: no program named `{n}`", args.file.display()),
                None => bail!("{}: no programs", args.file.display()),
            }
        }
    } else {
        let prog = Program::decode(&bytes)
            .with_context(|| format!("{}: not valid bytecode", args.file.display()))?;
        let title = args.file.display().to_string();
        let ok = one(&mut out, &title, &prog, &[], ProgType::Mem, None, args)?;
        rejected += usize::from(!ok);
    }
    files::write_stdout(&out)?;
    if rejected > 0 {
        bail!("the kernel's stack rules reject {rejected} program(s) (see above)");
    }
    Ok(())
}

fn one(
    out: &mut String,
    title: &str,
    prog: &Program,
    symbols: &[(usize, &str)],
    ty: ProgType,
    tracing_kind: Option<TracingKind>,
    args: &Args,
) -> Result<bool> {
    let opts = BuildOptions {
        symbols,
        ..BuildOptions::default()
    };
    let cg = CallGraph::build_with(prog, &opts)?;
    let depths = estimate_stack_depths(prog, &cg);
    let cfg = StackConfig {
        jit: !args.interpreter,
        priv_stack: PrivStackConfig {
            prog_type: ty,
            tracing_kind,
            jit_supports_private_stack: args.priv_stack,
            priv_stack_requested: false,
        },
    };
    let report = cg.check_stack(&depths, &cfg);
    if args.dot {
        out.push_str(&to_dot(&cg, report.as_ref().ok()));
    } else {
        let _ = writeln!(out, "{title}:");
        out.push_str(&render_tree(&cg, report.as_ref().ok()));
        match &report {
            Ok(r) => {
                let _ = writeln!(
                    out,
                    "  stack: deepest chain {} bytes, {} frames (depths estimated from r10-relative accesses)",
                    r.max_depth, r.max_frames
                );
            }
            Err(e) => {
                let _ = writeln!(out, "  stack: REJECTED: {e}");
            }
        }
        out.push('\n');
    }
    Ok(report.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Section prefixes of libbpf's `section_defs` for BPF_PROG_TYPE_TRACING.
    #[test]
    fn tracing_kinds_from_sections() {
        assert_eq!(
            tracing_kind("fentry/tcp_connect"),
            Some(TracingKind::Fentry)
        );
        assert_eq!(tracing_kind("fentry.s/f"), Some(TracingKind::Fentry));
        assert_eq!(tracing_kind("fexit/f"), Some(TracingKind::Fexit));
        assert_eq!(tracing_kind("fmod_ret/f"), Some(TracingKind::FmodRet));
        assert_eq!(
            tracing_kind("tp_btf/sched_switch"),
            Some(TracingKind::TpBtf)
        );
        assert_eq!(tracing_kind("iter/task"), Some(TracingKind::Iter));
        assert_eq!(tracing_kind("iter.s/task"), Some(TracingKind::Iter));
        assert_eq!(tracing_kind("kprobe/f"), None);
        assert_eq!(tracing_kind("fentry"), None);
        assert_eq!(tracing_kind("xdp"), None);
    }
}
