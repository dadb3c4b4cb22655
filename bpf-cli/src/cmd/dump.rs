//! `bpfkit dump xlated FILE [--prog NAME]`: the program after our
//! post-verification rewrites, as the kernel's `bpftool prog dump xlated`
//! shows its own.
//!
//! Each selected program is verified (bpf-verifier, privileged, the program
//! type from its section) and rewritten by the `bpf_fastcall` spill/fill
//! removal ([`bpf_verifier::nocsr`]) with Linux's fastcall table; the
//! result is listed one `<slot>: <text>` line per instruction, followed by a
//! summary line: pairs removed and kept, stack depth before and after per
//! subprogram. Raw bytecode (any non-ELF file) is taken as one raw
//! tracepoint program.
//!
//! `bpfkit dump jited FILE [--prog NAME] [--arch x86|arm64]`: our JIT's
//! machine code interleaved with the eBPF instructions (module `jited`).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use bpf_isa::{fmt_insn, DisasmOptions, Program};
use bpf_object::{ObjProgram, Object, ProgType};
use bpf_verifier::fastcall::FastcallTable;
use bpf_verifier::nocsr::remove_fastcall_spills;
use bpf_verifier::{verify, Options, ProgKind};

use crate::files;

mod jited;
pub use jited::Arch;

/// What to dump.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// The rewritten eBPF instructions.
    Xlated,
    /// Our JIT's machine code, interleaved with the eBPF instructions.
    Jited,
}

/// Arguments of `bpfkit dump`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to dump (`xlated` or `jited`).
    #[arg(value_enum)]
    pub what: What,
    /// ELF object (`.o`) or raw bytecode (any other file).
    pub file: PathBuf,
    /// Only the program whose entry symbol is NAME (ELF objects only).
    #[arg(long, value_name = "NAME")]
    pub prog: Option<String>,
    /// Print immediates and offsets in hexadecimal.
    #[arg(long)]
    pub hex: bool,
    /// Target of `dump jited` (default x86).
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// `dump jited`: compile with constant blinding (a random key).
    #[arg(long)]
    pub blind: bool,
    /// `dump jited`: compile with constant blinding keyed by SEED
    /// (reproducible listings).
    #[arg(long, value_name = "SEED")]
    pub blind_seed: Option<u64>,
}

fn kind_of(t: ProgType) -> ProgKind {
    match t {
        ProgType::SocketFilter => ProgKind::SocketFilter,
        ProgType::Kprobe => ProgKind::Kprobe,
        ProgType::SchedCls | ProgType::SchedAct => ProgKind::SchedCls,
        ProgType::Tracepoint => ProgKind::Tracepoint,
        ProgType::Xdp => ProgKind::Xdp,
        _ => ProgKind::RawTracepoint,
    }
}

/// Runs `bpfkit dump`.
pub fn run(args: &Args) -> Result<()> {
    match args.what {
        What::Jited => return jited::run(args),
        What::Xlated if args.arch.is_some() => bail!("--arch applies to `dump jited` only"),
        What::Xlated if args.blind || args.blind_seed.is_some() => {
            bail!("--blind applies to `dump jited` only")
        }
        What::Xlated => {}
    }
    let bytes = files::read(&args.file)?;
    let opts = DisasmOptions { hex: args.hex };
    let mut out = String::new();
    if files::is_elf(&bytes) {
        let obj = parse_object(args, &bytes)?;
        let selected = select_programs(args, &obj)?;
        for (n, p) in selected.iter().enumerate() {
            if n > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "{} (section {}):", p.name, p.section);
            dump_one(&mut out, &p.insns, kind_of(p.prog_type), &opts)
                .with_context(|| format!("{}: program `{}`", args.file.display(), p.name))?;
        }
    } else {
        let prog = decode_raw(args, &bytes)?;
        dump_one(&mut out, &prog, ProgKind::RawTracepoint, &opts)
            .with_context(|| format!("{}", args.file.display()))?;
    }
    files::write_stdout(&out)
}

/// Parses the ELF object `bytes` read from `args.file`.
fn parse_object(args: &Args, bytes: &[u8]) -> Result<Object> {
    Object::parse(bytes)
        .with_context(|| format!("{}: not a usable BPF object", args.file.display()))
}

/// The programs of `obj` that `--prog` selects (all without it); an error
/// listing the object's programs when none is selected.
fn select_programs<'a>(args: &Args, obj: &'a Object) -> Result<Vec<&'a ObjProgram>> {
    let selected: Vec<_> = obj
        .programs
        .iter()
        .filter(|p| args.prog.as_deref().is_none_or(|n| p.name == n))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = obj.programs.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "{}: no program{}; programs: {}",
            args.file.display(),
            args.prog
                .as_deref()
                .map(|n| format!(" named `{n}`"))
                .unwrap_or_default(),
            names.join(", ")
        );
    }
    Ok(selected)
}

/// Decodes raw bytecode `bytes` read from `args.file` (`--prog` is refused:
/// it applies to ELF objects only).
fn decode_raw(args: &Args, bytes: &[u8]) -> Result<Program> {
    if args.prog.is_some() {
        bail!(
            "{}: --prog applies to ELF objects only",
            args.file.display()
        );
    }
    Program::decode(bytes).with_context(|| format!("{}: cannot decode", args.file.display()))
}

/// Verifies, rewrites and lists one program.
fn dump_one(out: &mut String, prog: &Program, kind: ProgKind, opts: &DisasmOptions) -> Result<()> {
    let vp = verify(prog, &Options::new(kind))
        .map_err(|e| anyhow!("verifier: insn {}: {}", e.insn, e.message))?;
    let res = remove_fastcall_spills(&vp, &FastcallTable::linux())?;
    for (idx, insn) in res.prog.iter() {
        let _ = writeln!(out, "{}: {}", idx.slot(), fmt_insn(insn, opts));
    }
    let _ = writeln!(
        out,
        "; bpf_fastcall: {} of {} spill/fill pairs removed; stack {:?} -> {:?}",
        res.removed_pairs(),
        res.decisions.len(),
        res.stack_depth_before,
        res.stack_depth
    );
    Ok(())
}
