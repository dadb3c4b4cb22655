//! Code bytes per `../shared/bench/` program: our x86-64 and AArch64 JITs
//! against the running kernel's JIT (`jited_prog_len` from
//! `BPF_OBJ_GET_INFO_BY_FD`), all on the object's `xdp` section so that the
//! same instructions are compiled. The kernel's figure includes its own
//! prologue and epilogue, as ours do.
//!
//! `cargo run -p bpf-tests --example jit_sizes [-- --dump NAME]`: with
//! `--dump`, the two x86 images of program NAME are written to
//! `target/jit_sizes/NAME.{ours,kernel}.bin` for
//! `objdump -D -b binary -mi386:x86-64`.

use std::process::ExitCode;

use bpf_jit::{HelperTable, JitOptions};
use bpf_tests::benchprogs::{self, EXPECTED};
use bpf_tests::kernel;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dump = match args.as_slice() {
        [] => None,
        [flag, name] if flag == "--dump" => Some(name.clone()),
        _ => {
            eprintln!("usage: jit_sizes [--dump NAME]");
            return ExitCode::FAILURE;
        }
    };
    match run(dump.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jit_sizes: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dump: Option<&str>) -> Result<(), String> {
    kernel::available().map_err(|e| format!("bpf() unavailable, no kernel figures: {e}"))?;
    let packet = benchprogs::packet()?;
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);

    println!(
        "{:<11} {:>6} {:>6} | {:>9} {:>9} {:>11} | {:>7} {:>9} | {:>10}",
        "prog",
        "insns",
        "funcs",
        "ours x86",
        "kernel",
        "ours arm64",
        "x86/krn",
        "arm64/krn",
        "x86 passes"
    );
    let (mut tx, mut tk, mut ta) = (0usize, 0usize, 0usize);
    for e in EXPECTED {
        let p = benchprogs::load(e.name)?;
        let x86 = bpf_jit_x86::compile_code(&p.xdp, &opts)
            .map_err(|err| format!("{}: x86 JIT: {err}", e.name))?;
        let arm = bpf_jit_arm64::compile_code(&p.xdp, &opts)
            .map_err(|err| format!("{}: arm64 JIT: {err}", e.name))?;
        let fd = benchprogs::kernel_load_xdp(&p.xdp, e.name)
            .map_err(|err| format!("{}: kernel load: {err}", e.name))?;
        let run = kernel::prog_test_run(&fd, &packet, 1)
            .map_err(|err| format!("{}: kernel test run: {err}", e.name))?;
        if run.retval != e.xdp {
            return Err(format!(
                "{}: kernel returned {:#x}, README says {:#x}",
                e.name, run.retval, e.xdp
            ));
        }
        let info = kernel::prog_info(&fd).map_err(|err| format!("{}: {err}", e.name))?;
        let k = info.jited_len as usize;
        if k == 0 {
            return Err(format!("{}: the kernel JIT is off (jited_len 0)", e.name));
        }
        if let Some(d) = dump.filter(|d| *d == e.name) {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/jit_sizes");
            std::fs::create_dir_all(&dir).map_err(|err| err.to_string())?;
            for (what, bytes) in [("ours", &x86.code), ("kernel", &info.jited)] {
                let f = dir.join(format!("{d}.{what}.bin"));
                std::fs::write(&f, bytes).map_err(|err| format!("{}: {err}", f.display()))?;
                eprintln!("wrote {}", f.display());
            }
        }
        println!(
            "{:<11} {:>6} {:>6} | {:>9} {:>9} {:>11} | {:>7.2} {:>9.2} | {:>10}",
            e.name,
            p.xdp.len(),
            p.xdp_functions,
            x86.code.len(),
            k,
            arm.code.len(),
            x86.code.len() as f64 / k as f64,
            arm.code.len() as f64 / k as f64,
            x86.passes,
        );
        tx += x86.code.len();
        tk += k;
        ta += arm.code.len();
    }
    println!(
        "{:<11} {:>6} {:>6} | {:>9} {:>9} {:>11} | {:>7.2} {:>9.2}",
        "total",
        "",
        "",
        tx,
        tk,
        ta,
        tx as f64 / tk as f64,
        ta as f64 / tk as f64
    );
    println!(
        "goal (x86 total <= kernel total): {}",
        if tx <= tk { "met" } else { "MISSED" }
    );
    Ok(())
}
