//! End-to-end test of the bpf_conformance plugin binary.

use std::io::Write;
use std::process::{Command, Stdio};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x} ")).collect()
}

fn plugin(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpf-conformance-plugin"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    // The plugin may reject its arguments and exit before reading stdin:
    // a broken pipe here is not a failure of the test.
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_runs_conformance_programs() {
    // ldxh from memory: the suite's ldxh.data (mem 0xaa 0xbb 0x11 0x22, result 0x2211).
    let prog = bpf_isa::assemble_ubpf("ldxh %r0, [%r1+2]\nexit").expect("asm");
    let (ok, out, err) = plugin(
        &[&hex(&[0xaa, 0xbb, 0x11, 0x22]), "--engine", "interp"],
        &hex(&prog.to_bytes()),
    );
    assert!(ok, "{err}");
    assert_eq!(out, "2211");
    // No memory; lddw result printed as %lx.
    let prog = bpf_isa::assemble_ubpf("lddw %r0, 0x1122334455667788\nexit").expect("asm");
    let (ok, out, err) = plugin(&[], &hex(&prog.to_bytes()));
    assert!(ok, "{err}");
    assert_eq!(out, "1122334455667788");
    // Helper 5 (unwind) with a nonzero argument returns; the program then returns 2.
    let prog = bpf_isa::assemble_ubpf("mov %r1, -1\ncall 5\nmov %r0, 2\nexit").expect("asm");
    let (ok, out, _) = plugin(&[], &hex(&prog.to_bytes()));
    assert!(ok);
    assert_eq!(out, "2");
}

#[test]
fn plugin_reports_errors() {
    let prog = bpf_isa::assemble_ubpf("mov %r0, 1\nexit").expect("asm");
    let (ok, _, err) = plugin(&["--engine", "jit-x86"], &hex(&prog.to_bytes()));
    assert!(!ok);
    assert!(err.contains("unknown engine"), "{err}");
    // Out-of-bounds load: a typed error on stderr.
    let prog = bpf_isa::assemble_ubpf("ldxdw %r0, [%r1+8]\nexit").expect("asm");
    let (ok, _, err) = plugin(&[&hex(&[1, 2, 3, 4])], &hex(&prog.to_bytes()));
    assert!(!ok);
    assert!(err.contains("memory fault"), "{err}");
    // Garbage on stdin.
    let (ok, _, _) = plugin(&[], "zz");
    assert!(!ok);
}

#[test]
fn plugin_points_arm64_to_the_multi_plugin() {
    let (ok, _, err) = plugin(&["--engine", "arm64"], "9500000000000000");
    assert!(!ok);
    assert!(err.contains("bpf-conformance-plugin-multi"), "{err}");
}

/// The `-- asm`, `-- mem` and `-- result` sections of a bpf_conformance file.
fn conformance_case(text: &str) -> (String, Vec<u8>, Option<String>) {
    let (mut asm, mut mem, mut result, mut section) = (String::new(), Vec::new(), None, "");
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("-- ") {
            section = s.trim();
            continue;
        }
        match section {
            "asm" => {
                asm.push_str(line);
                asm.push('\n');
            }
            "mem" => mem.extend(
                line.split_whitespace()
                    .map(|h| u8::from_str_radix(h, 16).expect("hex byte in -- mem")),
            ),
            "result" if !line.trim().is_empty() => {
                // `%lx` form: lower-case hex without prefix or leading zeros.
                let t = line.trim().trim_start_matches("0x");
                let v = u64::from_str_radix(t, 16).expect("hex -- result");
                result = Some(format!("{v:x}"));
            }
            _ => {}
        }
    }
    (asm, mem, result)
}

/// Every file of `../shared/conformance` through the plugin binary, as the
/// bpf_conformance runner drives it, on the interpreter and the x86 JIT.
#[test]
fn plugin_passes_the_conformance_suite_on_both_engines() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance data not found at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    assert!(files.len() >= 200, "only {} files", files.len());
    for engine in ["interp", "x86"] {
        let start = std::time::Instant::now();
        let mut failed = Vec::new();
        for path in &files {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let (asm, mem, result) =
                conformance_case(&std::fs::read_to_string(path).expect("read"));
            let Some(want) = result else {
                failed.push(format!("{name}: no -- result"));
                continue;
            };
            let prog = bpf_isa::assemble_ubpf(&asm).expect("conformance asm assembles");
            let mem_hex: String = mem.iter().map(|b| format!("{b:02x}")).collect();
            let mut args = vec!["--engine", engine];
            if !mem.is_empty() {
                args.insert(0, &mem_hex);
            }
            let (ok, out, err) = plugin(&args, &hex(&prog.to_bytes()));
            if !ok || out != want {
                failed.push(format!("{name}: printed {out:?}, expected {want} ({err})"));
            }
        }
        eprintln!(
            "plugin --engine {engine}: {} of {} files in {:.1} s",
            files.len() - failed.len(),
            files.len(),
            start.elapsed().as_secs_f64()
        );
        assert!(failed.is_empty(), "{engine}:\n{}", failed.join("\n"));
    }
}
