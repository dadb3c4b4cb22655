//! `bpfkit asm FILE [--syntax llvm|ubpf] [-o OUT] [--hex]`: text to raw bytecode.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use bpf_isa::asm::{assemble, assemble_ubpf};
use clap::ValueEnum;

use crate::files;

/// Arguments of `bpfkit asm`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Assembly source file.
    pub file: PathBuf,
    /// Source syntax: `llvm` (what `llvm-objdump -d` prints and clang assembles)
    /// or `ubpf` (the bpf_conformance suite's `mov %r0, 1` style).
    #[arg(long, value_enum, default_value_t = Syntax::Llvm)]
    pub syntax: Syntax,
    /// Write the bytecode here (default: FILE with the extension `.bin`, unless `--hex`).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Print the bytecode as hex to stdout, one 8-byte slot per line.
    #[arg(long)]
    pub hex: bool,
}

/// Assembly syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Syntax {
    /// LLVM / kernel syntax (`r0 = 1`, `if r1 > r2 goto +3`).
    Llvm,
    /// uBPF / bpf_conformance syntax (`mov %r0, 1`, `jgt %r1, %r2, +3`).
    Ubpf,
}

/// Runs `bpfkit asm`.
pub fn run(args: &Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let prog = match args.syntax {
        Syntax::Llvm => assemble(&text),
        Syntax::Ubpf => assemble_ubpf(&text),
    }
    .with_context(|| format!("{}", args.file.display()))?;
    let bytes = prog.to_bytes();

    if args.hex {
        files::write_stdout(&hex_lines(&bytes))?;
    }
    let out = match (&args.output, args.hex) {
        (Some(o), _) => Some(o.clone()),
        (None, false) => Some(args.file.with_extension("bin")),
        (None, true) => None,
    };
    if let Some(out) = out {
        std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "wrote {} instructions ({} bytes) to {}",
            prog.slot_len(),
            bytes.len(),
            out.display()
        );
    }
    Ok(())
}

/// Bytecode as hex, one 8-byte slot per line, bytes separated by spaces.
fn hex_lines(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3 + bytes.len() / 8);
    for slot in bytes.chunks(8) {
        for (i, b) in slot.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            let _ = write!(s, "{b:02x}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::hex_lines;

    #[test]
    fn hex_one_slot_per_line() {
        // r0 = 42 (b7 00 00 00 2a 00 00 00), exit (95 00 ...), encoded by hand.
        let bytes = [0xb7, 0, 0, 0, 0x2a, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            hex_lines(&bytes),
            "b7 00 00 00 2a 00 00 00\n95 00 00 00 00 00 00 00\n"
        );
    }
}
