//! `bpfkit info` on the example objects; expected values come from the C
//! sources in examples/ and from `llvm-objdump-19 -dr`.

mod common;

use common::*;

fn info(name: &str) -> String {
    let o = bpfkit(["info".as_ref(), examples_dir().join(name).as_os_str()]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    stdout(&o)
}

/// The whitespace-separated fields of the first line starting with `first` (after indentation).
fn row(text: &str, first: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|w| w.first().is_some_and(|w| w == first) || w.get(1).is_some_and(|w| w == first))
        .unwrap_or_else(|| panic!("no row for {first} in:\n{text}"))
}

#[test]
fn legacy_maps() {
    let text = info("legacy_maps.o");
    // char _license[] SEC("license") = "Dual MIT/GPL"; u32 _version SEC("version") = 0x060c00;
    assert!(text.contains("license: Dual MIT/GPL\n"), "{text}");
    assert!(text.contains("kernel version: 0x60c00\n"), "{text}");
    // SEC("socket") int count_packets: BPF_PROG_TYPE_SOCKET_FILTER = 1; llvm-objdump
    // lists slots 0..=25.
    assert_eq!(
        row(&text, "count_packets"),
        ["count_packets", "socket", "SocketFilter", "(1)", "26"]
    );
    // BPF_MAP_TYPE_ARRAY = 2, key u32, value u64, 4 entries, no flags.
    assert_eq!(
        row(&text, "packet_count"),
        [
            "0",
            "packet_count",
            "legacy",
            "array",
            "(2)",
            "4",
            "8",
            "4",
            "0x0"
        ]
    );
    // BPF_MAP_TYPE_HASH = 1, u32 -> u32, 256 entries, BPF_F_NO_PREALLOC = 1.
    assert_eq!(
        row(&text, "seen_marks"),
        [
            "1",
            "seen_marks",
            "legacy",
            "hash",
            "(1)",
            "4",
            "4",
            "256",
            "0x1"
        ]
    );
    // llvm-objdump -dr: R_BPF_64_64 at byte 0x30 (slot 6) and 0xa0 (slot 20).
    assert!(text.contains("relocations (2):"), "{text}");
    assert!(
        text.contains("count_packets insn 6: packet_count (map #0)"),
        "{text}"
    );
    assert!(
        text.contains("count_packets insn 20: seen_marks (map #1)"),
        "{text}"
    );
}

#[test]
fn xdp_pass() {
    let text = info("xdp_pass.o");
    // SEC("xdp") int xdp_pass: `w0 = 2; exit` — 2 slots; BPF_PROG_TYPE_XDP = 6; "GPL".
    assert!(text.contains("license: GPL\n"), "{text}");
    assert_eq!(
        row(&text, "xdp_pass"),
        ["xdp_pass", "xdp", "Xdp", "(6)", "2"]
    );
    assert!(text.contains("maps (0):"), "{text}");
    assert!(text.contains("relocations (0):"), "{text}");
    assert!(!text.contains("kernel version"), "{text}");
}

#[test]
fn every_example_parses() {
    for obj in example_objects() {
        let o = bpfkit(["info".as_ref(), obj.as_os_str()]);
        assert!(o.status.success(), "{}: {}", obj.display(), stderr(&o));
        assert!(stdout(&o).contains("programs ("), "{}", obj.display());
    }
}
