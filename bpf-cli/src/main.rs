//! `bpfkit`: command-line front end of the bpfkit crates.
//!
//! Each subcommand lives in its own module under [`cmd`]; `main` only parses
//! the arguments, dispatches, and turns an error into a message on stderr and
//! exit status 1.

mod cmd;
mod files;

use clap::{Parser, Subcommand};

/// eBPF toolkit: disassemble, assemble and inspect eBPF programs and objects.
#[derive(Parser, Debug)]
#[command(name = "bpfkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Disassemble an ELF object (per program) or raw bytecode.
    Disasm(cmd::disasm::Args),
    /// Dump a program after our post-verification rewrites (`dump xlated`) or as our JIT compiles it (`dump jited`).
    Dump(cmd::dump::Args),
    /// Assemble text (LLVM or uBPF syntax) into raw bytecode.
    Asm(cmd::asm::Args),
    /// Show the programs, maps, relocations and license of an ELF object.
    Info(cmd::info::Args),
    /// Subprograms, call graph, stack depths and tail-call reachability (`--dot` for Graphviz).
    Callgraph(cmd::callgraph::Args),
    /// Run a program on the interpreter: r0, time per run, globals, trace.
    Run(cmd::run::Args),
    /// Verify every program of the objects: one veristat-like row per program (`--json`, `--log-level`).
    Verify(cmd::verify::Args),
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Disasm(a) => cmd::disasm::run(&a),
        Command::Asm(a) => cmd::asm::run(&a),
        Command::Dump(a) => cmd::dump::run(&a),
        Command::Info(a) => cmd::info::run(&a),
        Command::Run(a) => cmd::run::run(&a),
        Command::Verify(a) => cmd::verify::run(&a),
        Command::Callgraph(a) => cmd::callgraph::run(&a),
    };
    if let Err(e) = res {
        eprintln!("bpfkit: error: {e:#}");
        std::process::exit(1);
    }
}
