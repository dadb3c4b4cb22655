//! End-to-end tests of the `bpf-conformance-plugin` binary, driven the way
//! the bpf_conformance runner drives a plugin (memory hex in argv[1], program
//! hex on stdin, `r0` as `%lx` on stdout, errors on stderr with a non-zero
//! exit): the whole suite with `--engine interp`, `x86`, `x86-baseline` and `arm64`
//! (expected values are the files' own `-- result` / `-- error` sections),
//! hand-checked programs, and the error paths.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use bpf_tests::{conformance_dir, data_files, parse_case};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the plugin with `args` and `stdin`; `(success, stdout, stderr)`.
fn run_plugin(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpf-conformance-plugin"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    if let Some(mut input) = child.stdin.take() {
        // The plugin may fail before reading: a broken pipe is its answer.
        let _ = input.write_all(stdin.as_bytes());
        let _ = input.write_all(b"\n");
    }
    let out = child.wait_with_output().expect("wait for plugin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// Runs the plugin as the runner does: memory (if any) in argv[1], then
/// `--engine`, program on stdin.
fn plugin(engine: &str, mem: &[u8], prog_hex: &str) -> (bool, String, String) {
    let mem_hex = hex(mem);
    let mut args = vec!["--engine", engine];
    if !mem.is_empty() {
        args.insert(0, &mem_hex);
    }
    run_plugin(&args, prog_hex)
}

/// Bytecode of a ubpf-syntax program as hex pairs separated by spaces.
fn asm_hex(src: &str) -> String {
    let prog = bpf_isa::assemble_ubpf(src).expect("test program assembles");
    prog.to_bytes()
        .iter()
        .map(|b| format!("{b:02x} "))
        .collect()
}

/// Checks one file on `engine`; `Err` describes a mismatch.
fn check(path: &PathBuf, engine: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case = parse_case(&text)?;
    let prog = match bpf_isa::assemble_ubpf(&case.asm) {
        Ok(p) => p,
        // The runner cannot hand such a program to a plugin at all.
        Err(_) if case.error.is_some() => return Ok(()),
        Err(e) => return Err(format!("does not assemble: {e}")),
    };
    let (ok, out, err) = plugin(engine, &case.mem, &hex(&prog.to_bytes()));
    match (&case.error, case.result, ok) {
        (Some(_), _, false) => Ok(()),
        (Some(want), _, true) => Err(format!("expected error {want:?}, printed {out}")),
        (None, Some(want), true) if out == format!("{want:x}") => Ok(()),
        (None, Some(want), true) => Err(format!("printed {out}, expected {want:x}")),
        (None, _, false) => Err(format!("failed: {err}")),
        (None, None, true) => Err("file has neither -- result nor -- error".into()),
    }
}

/// Runs `files` on `engine`, asserting that all pass.
fn suite(engine: &str, files: &[PathBuf]) {
    let start = Instant::now();
    let failures: Vec<String> = files
        .iter()
        .filter_map(|p| {
            check(p, engine).err().map(|e| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                format!("{name}: {e}")
            })
        })
        .collect();
    eprintln!(
        "plugin --engine {engine}: {} of {} files passed in {:.1} s",
        files.len() - failures.len(),
        files.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn all_files() -> Vec<PathBuf> {
    let dir = conformance_dir();
    let files = data_files(&dir)
        .unwrap_or_else(|e| panic!("conformance data not found at {}: {e}", dir.display()));
    assert!(files.len() >= 200, "only {} .data files", files.len());
    files
}

#[test]
fn plugin_interp_passes_the_whole_suite() {
    suite("interp", &all_files());
}

#[test]
fn plugin_x86_passes_the_whole_suite() {
    suite("x86", &all_files());
}

#[test]
fn plugin_x86_baseline_passes_the_whole_suite() {
    suite("x86-baseline", &all_files());
}

#[test]
fn plugin_arm64_passes_the_suite() {
    suite("arm64", &all_files());
}

/// Hand-computed results, on every engine; memory and program given as
/// space-separated hex pairs, as the plugin also accepts.
#[test]
fn plugin_runs_hand_checked_programs() {
    for engine in ["interp", "x86", "x86-baseline", "arm64"] {
        // ldxh of bytes 2..4 of aa bb 11 22, little-endian: 0x2211.
        let (ok, out, err) = run_plugin(
            &["aa bb 11 22", "--engine", engine],
            &asm_hex("ldxh %r0, [%r1+2]\nexit"),
        );
        assert!(ok, "{engine}: {err}");
        assert_eq!(out, "2211", "{engine}");
        // No memory; a 64-bit immediate printed as %lx.
        let (ok, out, err) = run_plugin(
            &["--engine", engine],
            &asm_hex("lddw %r0, 0x1122334455667788\nexit"),
        );
        assert!(ok, "{engine}: {err}");
        assert_eq!(out, "1122334455667788", "{engine}");
        // Helper 5 with a nonzero argument returns; the program then returns 2.
        let (ok, out, err) = run_plugin(
            &["--engine", engine],
            &asm_hex("mov %r1, -1\ncall 5\nmov %r0, 2\nexit"),
        );
        assert!(ok, "{engine}: {err}");
        assert_eq!(out, "2", "{engine}");
    }
    // Without --engine the interpreter runs; --program replaces stdin.
    let (ok, out, err) = run_plugin(&["--program", "b7000000070000009500000000000000"], "");
    assert!(ok, "{err}");
    assert_eq!(out, "7");
}

#[test]
fn plugin_rejects_unknown_engines() {
    for engine in ["mips", "jit-x86"] {
        let (ok, _, err) = plugin(engine, &[], "b700000001000000 9500000000000000");
        assert!(!ok);
        assert!(err.contains("unknown engine"), "{err}");
    }
}

#[test]
fn plugin_reports_errors() {
    // Out-of-bounds load (8 bytes at offset 8 of a 4-byte memory): the
    // interpreter reports a typed memory fault on stderr.
    let (ok, _, err) = plugin(
        "interp",
        &[1, 2, 3, 4],
        &asm_hex("ldxdw %r0, [%r1+8]\nexit"),
    );
    assert!(!ok);
    assert!(err.contains("memory fault"), "{err}");
    for engine in ["interp", "x86", "x86-baseline", "arm64"] {
        // Not hex, an odd number of digits, a truncated lddw: all rejected.
        for bad in ["zz", "b70000000100000", "1800000001000000"] {
            let (ok, out, err) = plugin(engine, &[], bad);
            assert!(!ok, "{engine} accepted {bad:?}, printed {out}");
            assert!(!err.is_empty(), "{engine}: no message for {bad:?}");
        }
    }
    // Bad memory hex and unknown arguments.
    let (ok, _, err) = run_plugin(&["a", "--engine", "interp"], "9500000000000000");
    assert!(!ok);
    assert!(err.contains("odd number of hex digits"), "{err}");
    let (ok, _, err) = run_plugin(&["--frobnicate"], "9500000000000000");
    assert!(!ok);
    assert!(err.contains("invalid argument"), "{err}");
}
