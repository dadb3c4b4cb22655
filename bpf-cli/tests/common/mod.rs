//! Helpers shared by the integration tests: running `bpfkit` and external tools.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `bpfkit` with `args`.
pub fn bpfkit<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_bpfkit"))
        .args(args)
        .output()
        .expect("the bpfkit binary runs")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean failure: exit status 1, a `bpfkit: error:` message
/// containing `needle`, and no panic.
pub fn assert_fails_with(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "bpfkit panicked: {err}");
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr: {err}");
    assert!(err.contains("bpfkit: error:"), "no error message: {err}");
    assert!(err.contains(needle), "stderr lacks `{needle}`: {err}");
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every `examples/*.o`, sorted.
pub fn example_objects() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no example objects in examples/");
    v
}

/// A scratch path for this test (under Cargo's per-target temporary directory).
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bpf-cli-tests");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.join(name)
}

/// Whether an external tool is usable. When it is not, says so on stderr, and
/// fails the test if `BPFKIT_REQUIRE_TOOLS` is set (as `cargo xtask ci` does).
pub fn have_tool(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var_os("BPFKIT_REQUIRE_TOOLS").is_some();
        assert!(
            !required,
            "{tool} is required (BPFKIT_REQUIRE_TOOLS is set) but not runnable"
        );
        eprintln!("SKIPPED: {tool} not found; this test did not run");
    }
    ok
}

/// Runs a tool and returns its stdout, failing the test on a non-zero exit.
pub fn tool(cmd: &mut Command) -> String {
    let o = cmd.output().expect("tool runs");
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
