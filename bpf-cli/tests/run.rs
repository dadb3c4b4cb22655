//! `bpfkit run` on the example objects. Expected values are worked out by
//! hand from the C sources in `examples/` (and, where the compiler decides,
//! from `llvm-objdump-19 -d` of the committed objects).

mod common;

use common::{assert_fails_with, bpfkit, examples_dir, have_tool, scratch, stdout, tool};

fn example(name: &str) -> String {
    examples_dir().join(name).display().to_string()
}

fn data_file(name: &str, bytes: &[u8]) -> String {
    let p = scratch(name);
    std::fs::write(&p, bytes).expect("write scratch data");
    p.display().to_string()
}

/// Runs `bpfkit run ... --json` and parses its one line.
fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--json");
    let o = bpfkit(&all);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "bpfkit {all:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// FNV-1a 64 as the C source of `examples/mem.c` defines it.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[test]
fn mem_program_sums_and_hashes() {
    let bytes = b"hello, bpf";
    let data = data_file("mem.bin", bytes);
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    let v = run_json(&[
        &example("mem.o"),
        "--section",
        "mem",
        "--data",
        &data,
        "--repeat",
        "5",
    ]);
    assert_eq!(v["r0"].as_u64(), Some(sum ^ fnv1a(bytes)), "{v}");
    assert_eq!(v["runs"].as_u64(), Some(5));
    assert!(v["ns_per_run"].as_f64().is_some_and(|ns| ns > 0.0), "{v}");

    // Text output: r0 in hex, then the time.
    let o = bpfkit([
        "run",
        &example("mem.o"),
        "--prog",
        "mem_sum",
        "--data",
        &data,
    ]);
    let out = stdout(&o);
    assert!(o.status.success());
    let first = out.lines().next().unwrap_or_default();
    assert_eq!(first, format!("r0 = {:#x}", sum ^ fnv1a(bytes)));
    assert!(out.contains("ns/run = "), "{out}");
}

#[test]
fn tail_calls_through_a_filled_prog_array() {
    let small = data_file("pkt100.bin", &[0u8; 100]);
    let large = data_file("pkt600.bin", &[0u8; 600]);
    let jumbo = data_file("pkt2000.bin", &[0u8; 2000]);
    let obj = example("tail_calls.o");
    let both = "jump_table=1:handle_small,2:handle_large";
    // Empty slot: the dispatcher's fallback `return -1` (an int), which
    // llvm-objdump shows as `r0 = 0xffffffff ll`.
    let v = run_json(&[&obj, "--prog", "dispatch", "--data", &small]);
    assert_eq!(v["r0"].as_u64(), Some(0xffff_ffff));
    // skb->len = 100 <= 512: slot 1, handle_small returns 1.
    let v = run_json(&[
        &obj,
        "--prog",
        "dispatch",
        "--data",
        &small,
        "--prog-array",
        both,
    ]);
    assert_eq!(v["r0"].as_u64(), Some(1));
    // 600 > 512: slot 2, handle_large: 600 <= 1500 gives 2.
    let v = run_json(&[
        &obj,
        "--section",
        "socket",
        "--data",
        &large,
        "--prog-array",
        both,
    ]);
    assert_eq!(v["r0"].as_u64(), Some(2));
    // 2000 > 1500 gives 0.
    let v = run_json(&[
        &obj,
        "--prog",
        "dispatch",
        "--data",
        &jumbo,
        "--prog-array",
        both,
    ]);
    assert_eq!(v["r0"].as_u64(), Some(0));
    // Only slot 1 filled (repeatable option), a large packet: fallback.
    let v = run_json(&[
        &obj,
        "--prog",
        "dispatch",
        "--data",
        &large,
        "--prog-array",
        "jump_table=1:handle_small",
        "--prog-array",
        "jump_table=3:handle_large",
    ]);
    assert_eq!(v["r0"].as_u64(), Some(0xffff_ffff));
}

#[test]
fn globals_start_from_their_initial_values() {
    let obj = example("global_data.o");
    let read = [
        "--read-global",
        "call_count",
        "--read-global",
        "sample_every",
        "--read-global",
        "target_pid",
        "--read-global",
        "total_gap_ns",
        "--read-global",
        "dropped",
    ];
    // pid 42 (= target_pid): call_count goes 7 -> 8; the hash map is empty
    // so no gap is added; 8 % 3 != 0 so nothing is printed; returns 0.
    let mut args = vec![
        &*obj,
        "--prog",
        "trace_open",
        "--helper-ret",
        "14=0x2a0000002a",
    ];
    args.extend_from_slice(&read);
    let v = run_json(&args);
    assert_eq!(v["r0"].as_u64(), Some(0));
    let g = &v["globals"];
    assert_eq!(g["call_count"].as_u64(), Some(8), "{v}");
    assert_eq!(g["sample_every"].as_u64(), Some(3));
    assert_eq!(g["target_pid"].as_u64(), Some(42));
    assert_eq!(g["total_gap_ns"].as_u64(), Some(0));
    assert_eq!(g["dropped"].as_u64(), Some(0));

    // Every run starts from call_count = 7, so after 4 runs it is still 8.
    let v = run_json(&[
        &obj,
        "--prog",
        "trace_open",
        "--helper-ret",
        "14=0x2a0000002a",
        "--repeat",
        "4",
        "--read-global",
        "call_count",
    ]);
    assert_eq!(v["globals"]["call_count"].as_u64(), Some(8));

    // Another pid: an early `return 0`, nothing changes.
    let v = run_json(&[
        &obj,
        "--prog",
        "trace_open",
        "--helper-ret",
        "14=0x700000007",
        "--read-global",
        "call_count",
    ]);
    assert_eq!(v["globals"]["call_count"].as_u64(), Some(7));
}

#[test]
fn trace_prints_each_instruction_and_changed_registers() {
    let src = data_file("trace.s", b"r0 = 40\nr1 = 2\nr0 += r1\nexit\n");
    let o = bpfkit(["run", &src, "--trace"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 6, "{out}");
    assert!(
        lines[0].starts_with("    0: r0 = 40") && lines[0].ends_with("r0 = 0x28"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("    1: r1 = 2") && lines[1].ends_with("r1 = 0x2"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("    2: r0 += r1") && lines[2].ends_with("r0 = 0x2a"),
        "{out}"
    );
    assert_eq!(lines[3], "    3: exit");
    assert_eq!(lines[4], "traced run: r0 = 0x2a");
    assert_eq!(lines[5], "r0 = 0x2a");
}

#[test]
fn raw_bytecode_and_conformance_files() {
    // r0 = 7; r0 *= 6; exit
    let raw = data_file(
        "prog.bin",
        &[
            0xb7, 0, 0, 0, 7, 0, 0, 0, 0x27, 0, 0, 0, 6, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    assert_eq!(run_json(&[&raw])["r0"].as_u64(), Some(42));

    // uBPF syntax, r1 = the data and r2 = its length.
    let asm = data_file("len.s", b"mov %r0, %r2\nexit\n");
    let data = data_file("five.bin", &[1, 2, 3, 4, 5]);
    assert_eq!(run_json(&[&asm, "--data", &data])["r0"].as_u64(), Some(5));

    // A bpf_conformance file: its own `-- mem` and `-- result`.
    let conf = data_file(
        "case.data",
        b"-- asm\nldxb %r0, [%r1+2]\nexit\n-- mem\n00 01 2a 03\n-- result\n0x2a\n",
    );
    assert_eq!(run_json(&[&conf])["r0"].as_u64(), Some(0x2a));
}

#[test]
fn errors_are_reported() {
    let o = bpfkit(["run", &example("mem.o"), "--engine", "jit"]);
    assert_fails_with(&o, "engine `jit`");
    let o = bpfkit([
        "run",
        &example("global_data.o"),
        "--prog",
        "trace_close",
        "--read-global",
        "nope",
    ]);
    assert_fails_with(&o, "no global variable named `nope`");
    let o = bpfkit([
        "run",
        &example("tail_calls.o"),
        "--prog",
        "dispatch",
        "--prog-array",
        "jump_table=1:nope",
    ]);
    assert_fails_with(&o, "no program named `nope`");
    let o = bpfkit(["run", &example("tail_calls.o")]);
    assert_fails_with(&o, "3 programs match");
    // A memory fault is an error, not a crash: read past 1 byte of data.
    let asm = data_file("oob.s", b"r0 = *(u64 *)(r1 + 0)\nexit\n");
    let data = data_file("one.bin", &[1]);
    let o = bpfkit(["run", &asm, "--data", &data]);
    assert_fails_with(&o, "memory fault");
}

/// `r0` of `bpfkit run ARGS --engine ENGINE --json`.
fn r0_on(engine: &str, args: &[&str]) -> Option<u64> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--engine", engine]);
    run_json(&all)["r0"].as_u64()
}

#[test]
fn every_engine_computes_the_same_r0() {
    // The expected values are those of the interpreter tests above, worked
    // out by hand; each engine must reproduce them.
    let bytes = b"hello, bpf";
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    let data = data_file("engines-mem.bin", bytes);
    let raw = data_file(
        "engines-prog.bin",
        &[
            0xb7, 0, 0, 0, 7, 0, 0, 0, 0x27, 0, 0, 0, 6, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    let asm = data_file("engines-len.s", b"mov %r0, %r2\nexit\n");
    let five = data_file("engines-five.bin", &[1, 2, 3, 4, 5]);
    let conf = data_file(
        "engines-case.data",
        b"-- asm\nldxb %r0, [%r1+2]\nexit\n-- mem\n00 01 2a 03\n-- result\n0x2a\n",
    );
    // Conformance helper 5 returns its (nonzero) argument: r0 = 7 + 1.
    let helper5 = data_file(
        "engines-helper5.data",
        b"-- asm\nmov %r1, 7\ncall 5\nadd %r0, 1\nexit\n-- result\n0x8\n",
    );
    for engine in ["interp", "x86", "x86-baseline", "arm64"] {
        let mem = example("mem.o");
        assert_eq!(
            r0_on(engine, &[&mem, "--section", "mem", "--data", &data]),
            Some(sum ^ fnv1a(bytes)),
            "mem.o on {engine}"
        );
        assert_eq!(r0_on(engine, &[&raw]), Some(42), "raw bytecode on {engine}");
        assert_eq!(
            r0_on(engine, &[&asm, "--data", &five]),
            Some(5),
            "r2 = length on {engine}"
        );
        assert_eq!(r0_on(engine, &[&conf]), Some(0x2a), ".data on {engine}");
        assert_eq!(r0_on(engine, &[&helper5]), Some(8), "helper 5 on {engine}");
    }
}

#[test]
fn jit_engines_have_maps_helpers_globals_and_xdp() {
    for engine in ["x86", "x86-baseline", "arm64"] {
        for private in [false, true] {
            jit_engine_has_maps_helpers_globals_and_xdp(engine, private);
        }
    }
}

/// With `private`, every run adds `--private-stack`: the results are the
/// same, the frames live in a guarded region (on arm64, in the arena the
/// helpers also see).
fn jit_engine_has_maps_helpers_globals_and_xdp(engine: &str, private: bool) {
    let ps: &[&str] = if private { &["--private-stack"] } else { &[] };
    // XDP_PASS is 2 in the UAPI.
    let pkt = data_file("engines-pkt.bin", &[0u8; 64]);
    assert_eq!(
        r0_on(
            engine,
            &[&[&*example("xdp_pass.o"), "--data", &pkt], ps].concat()
        ),
        Some(2),
        "xdp_pass.o on {engine} (private stack: {private})"
    );
    // As in `globals_start_from_their_initial_values`: pid 42 takes
    // call_count from 7 to 8 and returns 0, on every one of 3 runs.
    let v = run_json(
        &[
            &[
                &*example("global_data.o"),
                "--prog",
                "trace_open",
                "--engine",
                engine,
                "--helper-ret",
                "14=0x2a0000002a",
                "--repeat",
                "3",
                "--read-global",
                "call_count",
                "--read-global",
                "target_pid",
            ],
            ps,
        ]
        .concat(),
    );
    assert_eq!(v["r0"].as_u64(), Some(0), "{engine}: {v}");
    assert_eq!(
        v["globals"]["call_count"].as_u64(),
        Some(8),
        "{engine}: {v}"
    );
    assert_eq!(
        v["globals"]["target_pid"].as_u64(),
        Some(42),
        "{engine}: {v}"
    );
}

/// A socket filter with global data, in the uapi `struct __sk_buff`
/// layout (offsets: len 0, mark 8, data 76, data_end 80).
const SKB_GLOBALS_C: &str = r#"
typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
struct __sk_buff {
	u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci;
	u32 vlan_proto, priority, ingress_ifindex, ifindex, tc_index, cb[5];
	u32 hash, tc_classid, data, data_end;
};
u64 seen_len = 5;
u32 fourth_byte;
__attribute__((section("socket"), used)) int skb_globals(struct __sk_buff *skb)
{
	u8 *data = (u8 *)(long)skb->data;
	u8 *end = (u8 *)(long)skb->data_end;
	seen_len += skb->len;
	if (data + 4 > end)
		return 1;
	fourth_byte = data[3];
	return data[0] + skb->len + skb->mark;
}
char _license[] __attribute__((section("license"), used)) = "GPL";
"#;

#[test]
fn socket_filters_run_the_same_on_every_engine() {
    let small = data_file("skb-pkt100.bin", &[0u8; 100]);
    let large = data_file("skb-pkt600.bin", &[0u8; 600]);
    let tails = example("tail_calls.o");
    let both = "jump_table=1:handle_small,2:handle_large";
    let subprogs = example("subprogs.o");
    let compiled = have_tool("clang-19").then(|| {
        let src = scratch("skb_globals.c");
        std::fs::write(&src, SKB_GLOBALS_C).expect("write C source");
        let obj = scratch("skb_globals.o");
        tool(
            std::process::Command::new("clang-19")
                .args(["-O2", "-target", "bpf", "-c"])
                .arg(&src)
                .arg("-o")
                .arg(&obj),
        );
        obj.display().to_string()
    });
    let five = data_file("skb-five.bin", &[10, 20, 30, 40, 50]);
    let three = data_file("skb-three.bin", &[10, 20, 30]);
    for engine in ["interp", "x86", "x86-baseline", "arm64"] {
        // As in `tail_calls_through_a_filled_prog_array`: len 100 goes to
        // slot 1 (returns 1), 600 to slot 2 (600 <= 1500: returns 2), an
        // empty slot to the fallback -1 (as an int).
        let tail = |data: &str, arrays: &[&str]| {
            let mut a = vec![&*tails, "--prog", "dispatch", "--data", data];
            for m in arrays {
                a.extend_from_slice(&["--prog-array", m]);
            }
            r0_on(engine, &a)
        };
        assert_eq!(tail(&small, &[both]), Some(1), "tail_calls.o on {engine}");
        assert_eq!(tail(&large, &[both]), Some(2), "tail_calls.o on {engine}");
        assert_eq!(
            tail(&large, &["jump_table=1:handle_small"]),
            Some(0xffff_ffff),
            "tail_calls.o on {engine}"
        );
        // sock_filter: global_sum(len, 0) = len + 1.
        assert_eq!(
            r0_on(
                engine,
                &[&subprogs, "--prog", "sock_filter", "--data", &small]
            ),
            Some(101),
            "subprogs.o sock_filter on {engine}"
        );
        // classify_a: (len ^ mark) * 0x100000001b3, low bit; the factor is
        // odd, so the low bit of len ^ 0: 5 bytes give 1, 100 give 0.
        assert_eq!(
            r0_on(
                engine,
                &[&subprogs, "--prog", "classify_a", "--data", &five]
            ),
            Some(1),
            "subprogs.o classify_a on {engine}"
        );
        assert_eq!(
            r0_on(
                engine,
                &[&subprogs, "--prog", "classify_a", "--data", &small]
            ),
            Some(0),
            "subprogs.o classify_a on {engine}"
        );
        let Some(obj) = &compiled else { continue };
        // 5 bytes: seen_len = 5 + 5, fourth_byte = 40, r0 = 10 + 5 + 0.
        let v = run_json(&[
            obj,
            "--engine",
            engine,
            "--data",
            &five,
            "--repeat",
            "2",
            "--read-global",
            "seen_len",
            "--read-global",
            "fourth_byte",
        ]);
        assert_eq!(v["r0"].as_u64(), Some(15), "{engine}: {v}");
        assert_eq!(v["globals"]["seen_len"].as_u64(), Some(10), "{engine}: {v}");
        assert_eq!(
            v["globals"]["fourth_byte"].as_u64(),
            Some(40),
            "{engine}: {v}"
        );
        // 3 bytes: data + 4 > data_end, so no packet read: r0 = 1,
        // seen_len = 5 + 3, fourth_byte keeps its initial 0.
        let v = run_json(&[
            obj,
            "--engine",
            engine,
            "--data",
            &three,
            "--read-global",
            "seen_len",
            "--read-global",
            "fourth_byte",
        ]);
        assert_eq!(v["r0"].as_u64(), Some(1), "{engine}: {v}");
        assert_eq!(v["globals"]["seen_len"].as_u64(), Some(8), "{engine}: {v}");
        assert_eq!(
            v["globals"]["fourth_byte"].as_u64(),
            Some(0),
            "{engine}: {v}"
        );
    }
}

#[test]
fn engines_reject_what_they_do_not_support_yet() {
    let o = bpfkit(["run", &example("mem.o"), "--engine", "mips"]);
    assert_fails_with(&o, "engine `mips`");
    let asm = data_file("engines-helper.s", b"call 14\nexit\n");
    let o = bpfkit(["run", &asm, "--engine", "x86", "--trace"]);
    assert_fails_with(&o, "--trace needs");
    // A fault in emulated code is an error, not a crash: a NULL load.
    let oob = data_file("engines-oob.s", b"r1 = 0\nr0 = *(u64 *)(r1 + 0)\nexit\n");
    let o = bpfkit(["run", &oob, "--engine", "arm64"]);
    assert_fails_with(&o, "signal");
}

#[test]
fn private_stack_on_both_jits() {
    // The expected values are those above, worked out by hand; with
    // `--private-stack` the frames live in a guarded region instead.
    let bytes = b"hello, bpf";
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    let data = data_file("private-mem.bin", bytes);
    // Stores 7 at r10 - 8 and 9 at r10 - 512 (the bottom of a 512-byte
    // frame), reads both back: 7 + 9 = 16.
    let stack = data_file(
        "private-stack.s",
        b"mov %r1, 7\nstxdw [%r10-8], %r1\nmov %r1, 9\nstxdw [%r10-512], %r1\n\
          ldxdw %r0, [%r10-8]\nldxdw %r2, [%r10-512]\nadd %r0, %r2\nexit\n",
    );
    for engine in ["x86", "arm64"] {
        let mem = example("mem.o");
        assert_eq!(
            r0_on(
                engine,
                &[&mem, "--section", "mem", "--data", &data, "--private-stack"]
            ),
            Some(sum ^ fnv1a(bytes)),
            "mem.o on {engine} with a private stack"
        );
        assert_eq!(
            r0_on(engine, &[&stack, "--private-stack"]),
            Some(16),
            "stack program on {engine} with a private stack"
        );
        // As in `socket_filters_run_the_same_on_every_engine`: a bpf-to-bpf
        // call (global_sum(len, 0) = len + 1) and a tail call (len 100 goes
        // to slot 1, which returns 1), on the private stack.
        let small = data_file("private-pkt100.bin", &[0u8; 100]);
        assert_eq!(
            r0_on(
                engine,
                &[
                    &example("subprogs.o"),
                    "--prog",
                    "sock_filter",
                    "--data",
                    &small,
                    "--private-stack"
                ]
            ),
            Some(101),
            "subprogs.o sock_filter on {engine} with a private stack"
        );
        assert_eq!(
            r0_on(
                engine,
                &[
                    &example("tail_calls.o"),
                    "--prog",
                    "dispatch",
                    "--data",
                    &small,
                    "--prog-array",
                    "jump_table=1:handle_small,2:handle_large",
                    "--private-stack"
                ]
            ),
            Some(1),
            "tail_calls.o on {engine} with a private stack"
        );
    }
    let o = bpfkit(["run", &stack, "--private-stack"]);
    assert_fails_with(&o, "--private-stack needs a JIT engine");
}

/// An XDP program's result as the kernel reports it (`BPF_PROG_TEST_RUN`'s
/// `retval`, the low 32 bits of `r0`) next to the full `r0`: the benchmark
/// objects of `../shared/bench`, whose expected XDP return values its
/// README lists (checked there on the kernel's JIT).
#[test]
fn xdp_retval_is_the_low_32_bits_as_the_kernel_reports() {
    let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench");
    if !bench.join("packet.bin").exists() {
        assert!(
            std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "../shared/bench is required (BPFKIT_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: ../shared/bench not found next to the repository");
        return;
    }
    let pkt = bench.join("packet.bin");
    let pkt = pkt.to_str().expect("utf-8 path");
    // From ../shared/bench/README.md, "u32 result (XDP return value)".
    for (prog, want) in [("sort", 0xde40_3c4fu64), ("alu", 0xfc40_6f69)] {
        let obj = bench.join(format!("build/{prog}.v4.o"));
        let obj = obj.to_str().expect("utf-8 path");
        let name = format!("{prog}_xdp");
        let v = run_json(&[obj, "--prog", &name, "--data", pkt]);
        assert_eq!(v["retval"].as_u64(), Some(want), "{name}: {v}");
        assert_eq!(
            v["r0"].as_u64().map(|r| r & 0xffff_ffff),
            Some(want),
            "{name}: {v}"
        );
    }
}
