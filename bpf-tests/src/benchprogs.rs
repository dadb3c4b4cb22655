//! The six programs of `../shared/bench/` (prebuilt `build/<name>.v3.o`),
//! their packet and the expected results from that directory's README, for
//! the JIT benchmarks (`benches/jit.rs`) and the code-size table
//! (`examples/jit_sizes.rs`).
//!
//! Each object has an `xdp` entry (r1 = `struct xdp_md *`, for the kernel)
//! and a `mem` entry (r1 = memory, r2 = length, for userspace runtimes)
//! over the same body.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use bpf_isa::Program;
use bpf_object::Object;

use crate::kernel::{self, KernelError, ProgLoad};

/// One bench program: name, expected 64-bit result of the `mem` entry and
/// expected XDP return value (the low 32 bits), from the bench README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Program name (`build/<name>.v3.o`).
    pub name: &'static str,
    /// Result of the `mem` entry on `packet.bin`.
    pub mem: u64,
    /// Return value of the `xdp` entry on `packet.bin`.
    pub xdp: u32,
}

/// The README's table of expected results on `packet.bin`.
pub const EXPECTED: [Expected; 6] = [
    Expected {
        name: "csum",
        mem: 0x0000_0000_0000_c00d,
        xdp: 0x0000_c00d,
    },
    Expected {
        name: "fnv1a",
        mem: 0xa11f_2fd8_0a45_0ec1,
        xdp: 0x0a45_0ec1,
    },
    Expected {
        name: "parse_hash",
        mem: 0x637a_7454_1687_ee41,
        xdp: 0x1687_ee41,
    },
    Expected {
        name: "sort",
        mem: 0xe23b_005b_de40_3c4f,
        xdp: 0xde40_3c4f,
    },
    Expected {
        name: "calls",
        mem: 0x5698_e0d8_50c9_e376,
        xdp: 0x50c9_e376,
    },
    Expected {
        name: "alu",
        mem: 0x2eee_90ea_fc40_6f69,
        xdp: 0xfc40_6f69,
    },
];

/// `../shared/bench` beside the workspace.
pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench")
}

/// Reads `packet.bin`.
pub fn packet() -> Result<Vec<u8>, String> {
    let p = bench_dir().join("packet.bin");
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Both entries of one bench object, linked (subprograms appended).
#[derive(Clone, Debug)]
pub struct BenchProg {
    /// The `xdp` section's program.
    pub xdp: Program,
    /// The `mem` section's program.
    pub mem: Program,
    /// Number of functions in the `xdp` program (entry + subprograms).
    pub xdp_functions: usize,
}

/// Parses `build/<name>.v3.o` and returns its two entries.
pub fn load(name: &str) -> Result<BenchProg, String> {
    let path = bench_dir().join(format!("build/{name}.v3.o"));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let obj = Object::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let section = |s: &'static str| {
        obj.programs
            .iter()
            .find(|p| p.section == s)
            .ok_or_else(|| format!("{}: no program in section {s}", path.display()))
    };
    let xdp = section("xdp")?;
    let mem = section("mem")?;
    Ok(BenchProg {
        xdp: xdp.insns.clone(),
        mem: mem.insns.clone(),
        xdp_functions: xdp.functions.len(),
    })
}

/// Loads an XDP program into the running kernel (named `name`, truncated to
/// 15 bytes).
pub fn kernel_load_xdp(prog: &Program, name: &str) -> Result<OwnedFd, KernelError> {
    let bytes = prog.to_bytes();
    let mut load = ProgLoad::new(kernel::prog_type::XDP, &bytes);
    load.name = name;
    kernel::prog_load(&load)
}

/// `r2 = len` followed by `prog`'s bytecode: for runtimes whose "raw"
/// entry sets only `r1` (rbpf's `EbpfVmRaw`), so that the `mem` entry
/// sees the length in `r2`. Jumps and local calls are relative and stay valid.
pub fn with_len_prefix(prog: &Program, len: u32) -> Vec<u8> {
    let mut code = vec![0xb7, 0x02, 0, 0];
    code.extend_from_slice(&len.to_le_bytes());
    code.extend_from_slice(&prog.to_bytes());
    code
}
