//! Runs the bpf_conformance suite through the `bpf-conformance-plugin-multi`
//! binary, the way the bpf_conformance runner drives a plugin (memory hex
//! in argv[1], program hex on stdin, `r0` as `%lx` on stdout), with
//! `--engine x86` and `--engine arm64`. Expected values are the files'
//! own `-- result` / `-- error` sections.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use bpf_tests::{conformance_dir, data_files, parse_case};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the plugin; `(success, stdout, stderr)`.
fn plugin(engine: &str, mem: &[u8], prog_hex: &str) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bpf-conformance-plugin-multi"));
    if !mem.is_empty() {
        cmd.arg(hex(mem));
    }
    let mut child = cmd
        .args(["--engine", engine])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    if let Some(mut input) = child.stdin.take() {
        // The plugin may fail before reading: a broken pipe is its answer.
        let _ = input.write_all(prog_hex.as_bytes());
        let _ = input.write_all(b"\n");
    }
    let out = child.wait_with_output().expect("wait for plugin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
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
fn plugin_x86_passes_the_whole_suite() {
    suite("x86", &all_files());
}

#[test]
fn plugin_arm64_passes_the_suite() {
    suite("arm64", &all_files());
}

#[test]
fn plugin_rejects_unknown_engines() {
    let (ok, _, err) = plugin("mips", &[], "b700000001000000 9500000000000000");
    assert!(!ok);
    assert!(err.contains("unknown engine"), "{err}");
}
