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
    ProgType as CgType, StackConfig, TracingKind,
};
use bpf_isa::Program;
use bpf_object::{Object, ProgType};

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

fn cg_type(t: ProgType) -> CgType {
    match t {
        ProgType::SocketFilter => CgType::SocketFilter,
        ProgType::Kprobe => CgType::Kprobe,
        ProgType::SchedCls => CgType::SchedCls,
        ProgType::SchedAct => CgType::SchedAct,
        ProgType::Tracepoint => CgType::Tracepoint,
        ProgType::Xdp => CgType::Xdp,
        ProgType::PerfEvent => CgType::PerfEvent,
        ProgType::CgroupSkb => CgType::CgroupSkb,
        ProgType::RawTracepoint | ProgType::RawTracepointWritable => CgType::RawTracepoint,
        ProgType::Tracing => CgType::Tracing(TracingKind::Fentry),
        ProgType::Lsm => CgType::Lsm,
        ProgType::StructOps => CgType::StructOps,
        ProgType::Syscall => CgType::Syscall,
        ProgType::Mem => CgType::Userspace,
        // Every other kernel type is outside the private-stack rules, like a socket filter.
        _ => CgType::SocketFilter,
    }
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
                cg_type(p.prog_type),
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
        let ok = one(&mut out, &title, &prog, &[], CgType::Userspace, args)?;
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
    ty: CgType,
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
