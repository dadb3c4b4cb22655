//! End-to-end checks of the verifier's outputs on hand-analysed programs.

use bpf_isa::assemble;
use bpf_verifier::{verify, verify_with_log, ErrorKind, Options, ProgKind};

fn opts() -> Options {
    Options::new(ProgKind::SocketFilter)
}

#[test]
fn fill_reads_its_spill() {
    // 0: spill r1; 1: fill r1; 2-3: use, exit.
    let p = assemble("*(u64 *)(r10 - 8) = r1\nr1 = *(u64 *)(r10 - 8)\nr0 = 0\nexit").unwrap();
    let v = verify(&p, &opts()).unwrap();
    assert_eq!(v.defining_spills(1), &[0]);
    assert!(!v.spill_escapes(0));
    assert_eq!(v.stack_depth.first().copied(), Some(8));
}

#[test]
fn partial_read_escapes() {
    let p = assemble("r1 = 5\n*(u64 *)(r10 - 8) = r1\nr0 = *(u32 *)(r10 - 8)\nexit").unwrap();
    let v = verify(&p, &opts()).unwrap();
    assert!(v.spill_escapes(1));
    assert!(v.defining_spills(2).is_empty());
}

#[test]
fn fill_after_join_sees_both_spills() {
    // Spills at slots 2 and 5 on two paths, fill at slot 6.
    let p = assemble(
        "r2 = *(u32 *)(r1 + 0)\nif r2 > 3 goto +2\n*(u64 *)(r10 - 8) = r1\ngoto +2\nr0 = 0\n*(u64 *)(r10 - 8) = r2\nr3 = *(u64 *)(r10 - 8)\nr0 = 0\nexit",
    )
    .unwrap();
    let v = verify(&p, &opts()).unwrap();
    assert_eq!(v.defining_spills(6), &[2, 5]);
}

#[test]
fn log_has_stats_line_and_error() {
    let p = assemble("exit").unwrap();
    let (e, log) = verify_with_log(&p, &opts().with_log_level(1)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::UninitRegister);
    assert_eq!(e.insn, 0);
    assert!(log.contains("R0 !read_ok"), "{log}");
    assert!(
        log.contains("processed 1 insns (limit 1000000) max_states_per_insn"),
        "{log}"
    );
    let ok = verify(
        &assemble("r0 = 0\nexit").unwrap(),
        &opts().with_log_level(2),
    )
    .unwrap();
    assert_eq!(ok.processed_insns, 2);
    // The kernel's spelling (its level-2 log of the same program).
    assert!(ok.log.contains("0: (b7) r0 = 0 "), "{}", ok.log);
}

#[test]
fn unprivileged_rules() {
    let mut o = opts();
    o.privileged = false;
    let leak = assemble("r0 = r1\nexit").unwrap();
    assert_eq!(
        verify(&leak, &o).unwrap_err().message,
        "R0 leaks addr as return value"
    );
    let uninit = assemble("r0 = *(u64 *)(r10 - 8)\nexit").unwrap();
    assert!(verify(&uninit, &o).is_err());
    assert!(verify(&uninit, &opts()).is_ok());
    let back = assemble("r0 = 0\nl: r0 += 1\nif r0 < 3 goto l\nexit").unwrap();
    assert_eq!(verify(&back, &o).unwrap_err().kind, ErrorKind::ControlFlow);
    assert!(verify(&back, &opts()).is_ok());
}

#[test]
fn instruction_limit() {
    let mut o = opts();
    o.insn_limit = 50;
    let p = assemble("r0 = 0\nl: r0 += 1\nif r0 < 1000 goto l\nexit").unwrap();
    assert_eq!(verify(&p, &o).unwrap_err().kind, ErrorKind::TooComplex);
}
