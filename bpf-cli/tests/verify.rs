//! `bpfkit verify` on the example objects. Expected program names and
//! sections come from the `SEC("...") int name(` lines of the C sources in
//! examples/; instruction counts from `llvm-objdump-19 -d`; verdicts of the
//! trivially safe programs by hand (the kernel accepts them too, see
//! bpf-verifier's kernel differential).

mod common;

use common::*;

/// `(section, name)` of every program in the C sources.
fn programs_in_sources() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for obj in example_objects() {
        let c = obj.with_extension("c");
        let text = std::fs::read_to_string(&c).expect("C source next to the object");
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("SEC(\"") else {
                continue;
            };
            let Some((section, tail)) = rest.split_once("\")") else {
                continue;
            };
            let words: Vec<&str> = tail.split_whitespace().collect();
            if let Some(name) = words.get(1).and_then(|w| w.split('(').next()) {
                if words.get(1).is_some_and(|w| w.contains('(')) {
                    v.push((section.to_string(), name.to_string()));
                }
            }
        }
    }
    v.sort();
    v
}

fn run_json(extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args: Vec<std::ffi::OsString> = vec!["verify".into(), "--json".into()];
    args.extend(extra.iter().map(|s| s.into()));
    args.extend(example_objects().into_iter().map(|p| p.into_os_string()));
    let o = bpfkit(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON output");
    v.as_array().expect("an array").clone()
}

#[test]
fn json_has_every_program_with_the_fields() {
    let rows = run_json(&[]);
    let mut got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["section"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, programs_in_sources());
    for r in &rows {
        for k in [
            "file",
            "section",
            "name",
            "verdict",
            "error",
            "insns",
            "processed_insns",
            "states",
            "duration_us",
        ] {
            assert!(r.get(k).is_some(), "missing {k} in {r}");
        }
        let verdict = r["verdict"].as_str().unwrap();
        assert!(verdict == "success" || verdict == "failure", "{r}");
        // An error exactly when the verdict is failure.
        assert_eq!(r["error"].is_null(), verdict == "success", "{r}");
    }
    let find = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    // xdp_pass.c: `return XDP_PASS;` -> llvm-objdump: `r0 = 0x2; exit`.
    let x = find("xdp_pass");
    assert_eq!(x["verdict"], "success");
    assert_eq!(x["insns"], 2);
    assert_eq!(x["processed_insns"], 2);
    // legacy_maps.c count_packets: llvm-objdump lists slots 0..=25.
    let c = find("count_packets");
    assert_eq!(c["insns"], 26);
    assert_eq!(c["verdict"], "success");
}

#[test]
fn table_and_log_level() {
    let xdp = examples_dir().join("xdp_pass.o");
    let o = bpfkit([
        "verify".as_ref(),
        "--log-level".as_ref(),
        "2".as_ref(),
        xdp.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&header[..4], ["File", "Program", "Verdict", "Insns"]);
    let row = text
        .lines()
        .find(|l| l.starts_with("xdp_pass.o"))
        .expect("a row for xdp_pass");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..5], ["xdp_pass.o", "xdp_pass", "success", "2", "2"]);
    // Level 2 prints the log with the statistics line.
    assert!(text.contains("processed 2 insns (limit 1000000)"), "{text}");
    assert!(
        text.ends_with("1 programs: 1 success, 0 failure\n"),
        "{text}"
    );
}

#[test]
fn unreadable_object_fails_cleanly() {
    let o = bpfkit(["verify", "/nonexistent/x.o"]);
    assert_fails_with(&o, "/nonexistent/x.o");
}
