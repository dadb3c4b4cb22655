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
