//! One module per subcommand: each has an `Args` (clap) and a `run(&Args)`.

pub mod asm;
pub mod callgraph;
pub mod disasm;
pub mod dump;
pub mod info;
pub mod run;
pub mod verify;
