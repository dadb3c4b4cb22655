//! The running kernel as an oracle: every bpf_conformance program that needs
//! no input memory is loaded as a socket filter (r1 = the `__sk_buff` context,
//! which such a program never reads), run with `BPF_PROG_TEST_RUN` on a
//! 64-byte zero packet, and the kernel's return value is compared with the
//! interpreter's `r0`.
//!
//! The kernel reports a socket filter's return value as a `u32`, so only the
//! low 32 bits of `r0` are compared. Programs the verifier rejects are
//! counted per reason (the error line of its log); the test fails only when a
//! program the kernel loaded returns something else than our interpreter.

use std::collections::BTreeMap;

use bpf_isa::{AluOp, CallTarget, Insn, Program, Reg, Source};
use bpf_tests::kernel::{self, prog_type, ProgLoad};
use bpf_tests::{conformance_dir, data_files, parse_case};
use bpf_vm::{HelperRegistry, Interpreter};

/// Registers an instruction reads (conservatively: calls read r1–r5).
fn reads(insn: &Insn, reg: Reg) -> bool {
    let src_is = |s: &Source| matches!(s, Source::Reg(r) if *r == reg);
    match insn {
        Insn::Alu { op, dst, src, .. } => src_is(src) || (*op != AluOp::Mov && *dst == reg),
        Insn::Neg { dst, .. } | Insn::Endian { dst, .. } => *dst == reg,
        Insn::MovSx { src, .. } | Insn::AddrSpaceCast { src, .. } => *src == reg,
        Insn::Jmp { dst, src, .. } => *dst == reg || src_is(src),
        Insn::Call(_) => reg.num() >= 1 && reg.num() <= 5,
        Insn::CallReg { reg: r } => *r == reg || (reg.num() >= 1 && reg.num() <= 5),
        Insn::Exit => reg == Reg::R0,
        Insn::LdAbs { .. } => reg == Reg::R6,
        Insn::LdInd { src, .. } => reg == Reg::R6 || *src == reg,
        Insn::Ldx { src, .. } | Insn::LdxSx { src, .. } => *src == reg,
        Insn::St { dst, .. } => *dst == reg,
        Insn::Stx { dst, src, .. } | Insn::Atomic { dst, src, .. } => {
            *dst == reg || *src == reg || reg == Reg::R0
        }
        Insn::Ja { .. } | Insn::JaLong { .. } | Insn::MayGoto { .. } | Insn::LdImm64 { .. } => {
            false
        }
    }
}

/// Whether an instruction overwrites `reg` (calls clobber r1–r5).
fn writes(insn: &Insn, reg: Reg) -> bool {
    match insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::MovSx { dst, .. }
        | Insn::AddrSpaceCast { dst, .. }
        | Insn::LdImm64 { dst, .. }
        | Insn::Ldx { dst, .. }
        | Insn::LdxSx { dst, .. } => *dst == reg,
        Insn::Call(_) | Insn::CallReg { .. } => reg.num() <= 5,
        _ => false,
    }
}

/// Whether the program may read `r1` while it still holds the context
/// pointer (a forward data-flow over the entry function; local calls count
/// as reads of their arguments).
fn may_read_ctx(prog: &Program) -> bool {
    let n = prog.len();
    let mut live = vec![false; n];
    let mut work = vec![0usize];
    if let Some(l) = live.first_mut() {
        *l = true;
    }
    while let Some(i) = work.pop() {
        let Some(insn) = prog.insns().get(i) else {
            continue;
        };
        if reads(insn, Reg::R1) {
            return true;
        }
        if writes(insn, Reg::R1) {
            continue;
        }
        let next = i + 1;
        let succ: Vec<usize> = match prog.flow(i) {
            bpf_isa::Flow::Exit => vec![],
            bpf_isa::Flow::Next => vec![next],
            bpf_isa::Flow::Jump(s) => prog.insn_at_slot(s).into_iter().collect(),
            bpf_isa::Flow::Branch(s) => {
                let mut v: Vec<usize> = prog.insn_at_slot(s).into_iter().collect();
                v.push(next);
                v
            }
        };
        for s in succ {
            if let Some(l) = live.get_mut(s) {
                if !*l {
                    *l = true;
                    work.push(s);
                }
            }
        }
    }
    false
}

fn calls_helper(prog: &Program) -> bool {
    prog.insns().iter().any(|i| {
        matches!(
            i,
            Insn::Call(CallTarget::Helper(_)) | Insn::Call(CallTarget::Kfunc { .. })
        )
    })
}

fn uses_packet_loads(prog: &Program) -> bool {
    prog.insns()
        .iter()
        .any(|i| matches!(i, Insn::LdAbs { .. } | Insn::LdInd { .. }))
}

/// A verifier message with its decimal numbers replaced by `N`
/// (`invalid shift -16` and `invalid shift 40` are one category).
fn category(reason: &str) -> String {
    reason
        .split(' ')
        .map(|w| {
            let digits = w.strip_prefix('-').unwrap_or(w);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                "N"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn kernel_agrees_with_interpreter() {
    if !kernel::available_or_skip("conformance against the live kernel") {
        return;
    }
    let dir = conformance_dir();
    let files = data_files(&dir)
        .unwrap_or_else(|e| panic!("conformance data required at {}: {e}", dir.display()));
    assert!(!files.is_empty(), "no .data files in {}", dir.display());

    let packet = [0u8; 64];
    let mut skipped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut rejected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut loaded = 0usize;
    let mut agree = 0usize;
    let mut disagreements = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let case = match parse_case(&text) {
            Ok(c) => c,
            Err(e) => panic!("{name}: {e}"),
        };
        let mut skip = |why: &'static str| skipped.entry(why).or_default().push(name.clone());
        if case.error.is_some() || case.result.is_none() {
            skip("expects an error");
            continue;
        }
        if !case.mem.is_empty() || text.contains("-- mem") {
            skip("needs input memory (-- mem)");
            continue;
        }
        let Ok(prog) = bpf_isa::assemble_ubpf(&case.asm) else {
            skip("does not assemble");
            continue;
        };
        if calls_helper(&prog) {
            skip("calls a helper (the conformance helpers are not the kernel's)");
            continue;
        }
        if uses_packet_loads(&prog) {
            skip("uses ld_abs/ld_ind (reads the packet)");
            continue;
        }
        if may_read_ctx(&prog) {
            skip("may read r1 before writing it (r1 is the context in the kernel)");
            continue;
        }

        let bytes = prog.to_bytes();
        let fd = match kernel::prog_load(&ProgLoad::new(prog_type::SOCKET_FILTER, &bytes)) {
            Ok(fd) => fd,
            Err(e) => {
                let reason = e.reason();
                rejected
                    .entry(category(&reason))
                    .or_default()
                    .push(format!("{name} ({reason})"));
                continue;
            }
        };
        loaded += 1;
        let run = kernel::prog_test_run(&fd, &packet, 1)
            .unwrap_or_else(|e| panic!("{name}: loaded but BPF_PROG_TEST_RUN failed: {e}"));
        let ours = Interpreter::builder(&prog)
            .helpers(HelperRegistry::conformance())
            .instruction_limit(Some(100_000_000))
            .build()
            .and_then(|vm| vm.run_mem(&mut []));
        match ours {
            Ok(r0) if r0 as u32 == run.retval => agree += 1,
            Ok(r0) => disagreements.push(format!(
                "{name}: kernel retval {:#x}, interpreter r0 {r0:#x} (low 32 bits {:#x})",
                run.retval, r0 as u32
            )),
            Err(e) => disagreements.push(format!(
                "{name}: kernel retval {:#x}, interpreter error: {e}",
                run.retval
            )),
        }
    }

    println!("kernel oracle over {} conformance files:", files.len());
    for (why, names) in &skipped {
        println!("  not tried, {why}: {}", names.len());
    }
    let nrej: usize = rejected.values().map(Vec::len).sum();
    println!("  rejected by the verifier: {nrej}");
    for (why, names) in &rejected {
        println!("    {why:?}: {} ({})", names.len(), names.join(", "));
    }
    println!("  loaded: {loaded}, agree on the low 32 bits of r0: {agree}");
    for d in &disagreements {
        println!("  DISAGREE {d}");
    }
    assert!(loaded > 0, "the kernel loaded none of the programs");
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s) with the kernel:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// The wrapper end to end: an array map created and filled from userspace,
/// read by a program that names it through `fd_array`, and what the kernel
/// reports about that program.
#[test]
fn wrapper_round_trip() {
    if !kernel::available_or_skip("the bpf() wrapper round trip") {
        return;
    }
    // BPF_MAP_TYPE_ARRAY, 4-byte key, 8-byte value, 1 entry.
    let map = kernel::map_create(2, 4, 8, 1, 0).expect("BPF_MAP_CREATE");
    kernel::map_update(
        &map,
        &0u32.to_le_bytes(),
        &0x1234_5678_9abc_u64.to_le_bytes(),
        0,
    )
    .expect("BPF_MAP_UPDATE_ELEM");
    let prog = bpf_isa::assemble(
        "
        *(u32 *)(r10 - 4) = 0
        r1 = map[idx:0]
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto miss
        r0 = *(u64 *)(r0 + 0)
        exit
    miss:
        r0 = 7
        exit",
    )
    .expect("assembles");
    let bytes = prog.to_bytes();
    let fds = [std::os::fd::AsRawFd::as_raw_fd(&map)];
    let mut load = ProgLoad::new(prog_type::SOCKET_FILTER, &bytes);
    load.fd_array = &fds;
    load.name = "roundtrip";
    let fd = kernel::prog_load(&load).unwrap_or_else(|e| panic!("{e}"));
    let run = kernel::prog_test_run(&fd, &[0u8; 64], 3).expect("BPF_PROG_TEST_RUN");
    // The map value's low 32 bits (the kernel's retval is a u32).
    assert_eq!(run.retval, 0x5678_9abc);
    let info = kernel::prog_info(&fd).expect("BPF_OBJ_GET_INFO_BY_FD");
    assert_eq!(info.prog_type, prog_type::SOCKET_FILTER);
    assert!(info.verified_insns > 0, "{info:?}");
    // The verifier rewrites but keeps one 8-byte slot per instruction here
    // (the map lookup is inlined for arrays, so at least as many as we sent).
    assert_eq!(info.xlated.len(), info.xlated_len as usize);
    assert!(info.xlated_len as usize >= bytes.len() - 8, "{info:?}");
    assert_eq!(info.xlated_len % 8, 0);
    let jit_on = std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim() != "0")
        .unwrap_or(false);
    if jit_on {
        assert!(info.jited_len > 0 && info.jited.len() == info.jited_len as usize);
    }
    println!(
        "xlated {} bytes, jited {} bytes, verified_insns {}, mean {} ns/run",
        info.xlated_len, info.jited_len, info.verified_insns, run.duration_ns
    );

    // A rejected program returns the verifier's reason.
    let bad = bpf_isa::assemble("r0 = r5\nexit")
        .expect("assembles")
        .to_bytes();
    let e = kernel::prog_load(&ProgLoad::new(prog_type::SOCKET_FILTER, &bad)).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EACCES), "{e}");
    assert_eq!(e.reason(), "R5 !read_ok");
}
