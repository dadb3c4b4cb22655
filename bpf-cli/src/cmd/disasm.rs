//! `bpfkit disasm FILE [--hex] [--prog NAME | --section S]`.
//!
//! An ELF object is listed program by program: a header line
//! `<name> (section <section>):`, then one `<slot>: <text>` line per
//! instruction of the linked program, with a `<function>:` line where each
//! appended subprogram starts and the resolved symbol as a `; comment` on
//! relocated instructions. Anything else is taken as raw little-endian
//! bytecode and listed as one program.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bpf_isa::{write_insn, DisasmOptions, Program};
use bpf_object::{ObjProgram, Object};

use crate::files;

/// Arguments of `bpfkit disasm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ELF object (`.o`) or raw bytecode (any other file).
    pub file: PathBuf,
    /// Print immediates and offsets in hexadecimal, as LLVM 19's `llvm-objdump` does.
    #[arg(long)]
    pub hex: bool,
    /// Only the program whose entry symbol is NAME (ELF objects only).
    #[arg(long, value_name = "NAME", conflicts_with = "section")]
    pub prog: Option<String>,
    /// Only the programs of section S (ELF objects only).
    #[arg(long, value_name = "S")]
    pub section: Option<String>,
}

/// Runs `bpfkit disasm`.
pub fn run(args: &Args) -> Result<()> {
    let bytes = files::read(&args.file)?;
    let opts = DisasmOptions { hex: args.hex };
    let text = if files::is_elf(&bytes) {
        let obj = Object::parse(&bytes)
            .with_context(|| format!("{}: not a usable BPF object", args.file.display()))?;
        list_object(&obj, args, &opts)?
    } else {
        if args.prog.is_some() || args.section.is_some() {
            bail!(
                "{}: --prog and --section apply to ELF objects only; this file is raw bytecode",
                args.file.display()
            );
        }
        let prog = Program::decode(&bytes)
            .with_context(|| format!("{}: cannot decode", args.file.display()))?;
        if let Err(e) = prog.validate() {
            eprintln!("bpfkit: warning: {}: {e}", args.file.display());
        }
        let mut out = String::new();
        list_insns(&mut out, &prog, &opts, &[], &[]);
        out
    };
    files::write_stdout(&text)
}

/// The listing of the selected programs of `obj`.
fn list_object(obj: &Object, args: &Args, opts: &DisasmOptions) -> Result<String> {
    let selected: Vec<&ObjProgram> = obj
        .programs
        .iter()
        .filter(|p| args.prog.as_deref().is_none_or(|n| p.name == n))
        .filter(|p| args.section.as_deref().is_none_or(|s| p.section == s))
        .collect();
    if selected.is_empty() {
        let available: Vec<String> = obj
            .programs
            .iter()
            .map(|p| format!("{} (section {})", p.name, p.section))
            .collect();
        let what = match (&args.prog, &args.section) {
            (Some(n), _) => format!("no program named `{n}`"),
            (None, Some(s)) => format!("no program in section `{s}`"),
            (None, None) => "the object holds no programs".to_string(),
        };
        if available.is_empty() {
            bail!("{}: {what}", args.file.display());
        }
        bail!(
            "{}: {what}; programs: {}",
            args.file.display(),
            available.join(", ")
        );
    }
    let mut out = String::new();
    for (n, p) in selected.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{} (section {}):", p.name, p.section);
        let mut labels: Vec<(usize, &str)> = p
            .functions
            .iter()
            .filter(|f| f.start != 0)
            .map(|f| (f.start, f.name.as_str()))
            .collect();
        labels.sort_unstable();
        let mut notes: Vec<(usize, &str)> = p
            .relocations
            .iter()
            .map(|r| (r.insn, r.symbol.as_str()))
            .collect();
        notes.sort_unstable();
        list_insns(&mut out, &p.insns, opts, &labels, &notes);
    }
    Ok(out)
}

/// Appends `<slot>: <text>` lines for `prog` to `out`, with a `<name>:` line
/// before each slot in `labels` and ` ; symbol` after each slot in `notes`
/// (both sorted by slot).
fn list_insns(
    out: &mut String,
    prog: &Program,
    opts: &DisasmOptions,
    labels: &[(usize, &str)],
    notes: &[(usize, &str)],
) {
    let (mut l, mut n) = (0, 0);
    for (idx, insn) in prog.iter() {
        let slot = idx.slot();
        while let Some(&(at, name)) = labels.get(l) {
            if at > slot {
                break;
            }
            if at == slot {
                let _ = writeln!(out, "{name}:");
            }
            l += 1;
        }
        let _ = write!(out, "{slot}: ");
        let _ = write_insn(out, insn, opts);
        while let Some(&(at, sym)) = notes.get(n) {
            if at > slot {
                break;
            }
            if at == slot {
                let _ = write!(out, " ; {sym}");
            }
            n += 1;
        }
        out.push('\n');
    }
}
