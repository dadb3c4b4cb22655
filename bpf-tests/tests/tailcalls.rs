//! Tail-call hierarchies modelled on the kernel's selftests
//! (`tools/testing/selftests/bpf/progs/tailcall3.c`,
//! `tailcall_bpf2bpf_hierarchy{1,2,3}.c`; expected numbers from
//! `prog_tests/tailcalls.c`): entry counts, fall-through counts and return
//! values, run on the interpreter, on the x86-64 JIT and in the live kernel
//! (`BPF_PROG_TEST_RUN` with a real prog array, programs loaded as `tc`
//! with BTF func info), all three compared with the selftests' numbers.
//!
//! Placeholder map fds in the assembly: 1 and 3 are program arrays, 2 is an
//! array of counters (one `u64` per counter in its single value, updated
//! through `bpf_map_lookup_elem`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use bpf_isa::{assemble, Insn, LdImm64Src, Program};
use bpf_tests::kernel;
use bpf_vm::{Engine, LoadedProgram, Map, MapDef, MapType};

/// One program of a case: its assembly and, if it sits in a program array,
/// which (placeholder fd) and at which index.
struct Part {
    asm: &'static str,
    slots: &'static [(i32, u32)],
}

/// A case: its programs (the first is the entry), prog-array sizes by
/// placeholder fd, number of counters, and the selftest's expected return
/// value and counters.
struct Case {
    name: &'static str,
    parts: &'static [Part],
    prog_arrays: &'static [(i32, u32)],
    counters: u32,
    retval: u64,
    expected: &'static [u64],
}

/// `count++` on the `u64` counter at byte `k` of the counters' value,
/// through `bpf_map_lookup_elem` (clobbers r0-r5).
macro_rules! count {
    ($k:literal) => {
        concat!(
            "*(u32 *)(r10 - 4) = 0
             r1 = map[fd:2]
             r2 = r10
             r2 += -4
             call 1
             if r0 == 0 goto +3
             r1 = *(u64 *)(r0 + ",
            $k,
            ")
             r1 += 1
             *(u64 *)(r0 + ",
            $k,
            ") = r1\n"
        )
    };
}

const CASES: &[Case] = &[
    // tailcall3.c: classifier_0 { count++; tail_call(jmp_table, 0); return 1; },
    // entry { tail_call(jmp_table, 0); return 0; }; jmp_table[0] = classifier_0.
    // Expected: retval 1, count 33.
    Case {
        name: "tailcall3 (count)",
        parts: &[
            Part {
                asm: "r6 = r1
                      r2 = map[fd:1]
                      r3 = 0
                      call 12
                      r0 = 0
                      exit",
                slots: &[],
            },
            Part {
                asm: concat!(
                    "r6 = r1\n",
                    count!(0),
                    "r1 = r6
                     r2 = map[fd:1]
                     r3 = 0
                     call 12
                     r0 = 1
                     exit"
                ),
                slots: &[(1, 0)],
            },
        ],
        prog_arrays: &[(1, 1)],
        counters: 1,
        retval: 1,
        expected: &[33],
    },
    // tailcall_bpf2bpf_hierarchy1.c: entry { count++; subprog_tail(); subprog_tail();
    // return 1; }, subprog_tail { tail_call(jmp_table, 0); return 0; };
    // jmp_table[0] = entry. Expected: retval 1, count 34.
    Case {
        name: "tailcall_bpf2bpf_hierarchy_1",
        parts: &[Part {
            asm: concat!(
                "r6 = r1\n",
                count!(0),
                "r1 = r6
                 call pc subprog_tail
                 r1 = r6
                 call pc subprog_tail
                 r0 = 1
                 exit
               subprog_tail:
                 r2 = map[fd:1]
                 r3 = 0
                 call 12
                 r0 = 0
                 exit"
            ),
            slots: &[(1, 0)],
        }],
        prog_arrays: &[(1, 1)],
        counters: 1,
        retval: 1,
        expected: &[34],
    },
    // tailcall_bpf2bpf_hierarchy2.c: main { subprog_tail0(); subprog_tail1(); return 0; },
    // classifier_0 { count0++; subprog_tail0(); return 0; },
    // classifier_1 { count1++; subprog_tail1(); return 0; }; subprog_tailN tail
    // calls jmp_table[N]. Expected: count0 33, count1 0.
    Case {
        name: "tailcall_bpf2bpf_hierarchy_2",
        parts: &[
            Part {
                asm: "r6 = r1
                      call pc subprog_tail0
                      r1 = r6
                      call pc subprog_tail1
                      r0 = 0
                      exit
                    subprog_tail0:
                      r2 = map[fd:1]
                      r3 = 0
                      call 12
                      r0 = 0
                      exit
                    subprog_tail1:
                      r2 = map[fd:1]
                      r3 = 1
                      call 12
                      r0 = 0
                      exit",
                slots: &[],
            },
            Part {
                asm: concat!(
                    "r6 = r1\n",
                    count!(0),
                    "r1 = r6
                     call pc subprog_tail0
                     r0 = 0
                     exit
                   subprog_tail0:
                     r2 = map[fd:1]
                     r3 = 0
                     call 12
                     r0 = 0
                     exit"
                ),
                slots: &[(1, 0)],
            },
            Part {
                asm: concat!(
                    "r6 = r1\n",
                    count!(8),
                    "r1 = r6
                     call pc subprog_tail1
                     r0 = 0
                     exit
                   subprog_tail1:
                     r2 = map[fd:1]
                     r3 = 1
                     call 12
                     r0 = 0
                     exit"
                ),
                slots: &[(1, 1)],
            },
        ],
        prog_arrays: &[(1, 2)],
        counters: 2,
        retval: 0,
        expected: &[33, 0],
    },
    // tailcall_bpf2bpf_hierarchy3.c: main { tail_call(jmp_table0, 0); return 0; },
    // classifier_0 { count++; subprog_tail(jmp_table0); subprog_tail(jmp_table1);
    // return 0; }, subprog_tail(table) { tail_call(table, 0); return 0; };
    // jmp_table0[0] = jmp_table1[0] = classifier_0. Expected: count 33.
    Case {
        name: "tailcall_bpf2bpf_hierarchy_3",
        parts: &[
            Part {
                asm: "r2 = map[fd:1]
                      r3 = 0
                      call 12
                      r0 = 0
                      exit",
                slots: &[],
            },
            Part {
                asm: concat!(
                    "r6 = r1\n",
                    count!(0),
                    "r1 = r6
                     r2 = map[fd:1]
                     call pc subprog_tail
                     r1 = r6
                     r2 = map[fd:3]
                     call pc subprog_tail
                     r0 = 0
                     exit
                   subprog_tail:
                     r3 = 0
                     call 12
                     r0 = 0
                     exit"
                ),
                slots: &[(1, 0), (3, 0)],
            },
        ],
        prog_arrays: &[(1, 1), (3, 1)],
        counters: 1,
        retval: 0,
        expected: &[33],
    },
    // Fall-through: an index past max_entries and an empty slot both
    // continue after the call (tailcall1.c's out-of-range and hole checks).
    Case {
        name: "fall-through (index out of range, empty slot)",
        parts: &[
            Part {
                asm: concat!(
                    "r6 = r1
                     r2 = map[fd:1]
                     r3 = 5
                     call 12\n",
                    count!(0),
                    "r1 = r6
                     r2 = map[fd:1]
                     r3 = 1
                     call 12\n",
                    count!(0),
                    "r1 = r6
                     r2 = map[fd:1]
                     r3 = 0
                     call 12
                     r0 = 7
                     exit"
                ),
                slots: &[],
            },
            Part {
                asm: concat!(count!(8), "r0 = 42\nexit"),
                slots: &[(1, 0)],
            },
        ],
        prog_arrays: &[(1, 2)],
        counters: 2,
        retval: 42,
        expected: &[2, 1],
    },
];

/// What a run gives: r0 and the counters.
type Outcome = (u64, Vec<u64>);

fn prog_array_def(n: u32) -> MapDef {
    MapDef {
        map_type: MapType::ProgArray,
        key_size: 4,
        value_size: 4,
        max_entries: n,
    }
}

fn counters_def(n: u32) -> MapDef {
    MapDef {
        map_type: MapType::Array,
        key_size: 4,
        value_size: 8 * n,
        max_entries: 1,
    }
}

/// Runs `case` on `engine` (JIT frames on a private stack with
/// `private`): (r0, counters).
fn run_vm(case: &Case, engine: Engine, private: bool) -> Result<Outcome, String> {
    let counters = Map::new(counters_def(case.counters)).map_err(|e| e.to_string())?;
    let arrays: Vec<(i32, Arc<Map>)> = case
        .prog_arrays
        .iter()
        .map(|&(fd, n)| Map::new(prog_array_def(n)).map(|m| (fd, m)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut loaded = Vec::new();
    for part in case.parts {
        let prog = assemble(part.asm).map_err(|e| format!("{}: {e}", case.name))?;
        let mut b = LoadedProgram::builder(&prog, engine)
            .map(2, counters.clone())
            .private_stack(private);
        for (fd, m) in &arrays {
            b = b.map(*fd, m.clone());
        }
        let p = b
            .build()
            .map_err(|e| format!("{} on {engine}: {e}", case.name))?;
        for &(fd, idx) in part.slots {
            let pa = arrays
                .iter()
                .find(|(f, _)| *f == fd)
                .and_then(|(_, m)| m.as_prog_array())
                .ok_or("no such prog array")?;
            pa.set_program(idx, Some(&p)).map_err(|e| e.to_string())?;
        }
        loaded.push(p);
    }
    let entry = loaded.first().ok_or("no programs")?;
    let mut mem = [0u8; 64];
    // SAFETY: the programs touch only their stack and the counters' value
    // (through map-value references); the kernel's verifier accepts them.
    let r0 = unsafe { entry.run_mem(&mut mem) }.map_err(|e| e.to_string())?;
    // Break the program <-> prog array reference cycles.
    for (_, m) in &arrays {
        if let Some(pa) = m.as_prog_array() {
            for i in 0..m.def().max_entries {
                let _ = pa.set_program(i, None);
            }
        }
    }
    Ok((
        r0,
        read_counters(
            &counters
                .lookup(&0u32.to_le_bytes())
                .map_err(|e| e.to_string())?,
        ),
    ))
}

fn read_counters(v: &[u8]) -> Vec<u64> {
    v.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect()
}

/// Engines to compare: the interpreter, the x86-64 JIT with native
/// frames and with frames on a private stack, and the AArch64 engine under
/// qemu-user (when its tools are installed: required under
/// `BPFKIT_REQUIRE_TOOLS=1`; its shared arena is enabled here, before
/// [`run_vm`] creates the maps).
fn configs() -> Vec<(Engine, bool, String)> {
    let mut v = Vec::new();
    for e in Engine::available() {
        v.push((e, false, e.to_string()));
        if e == Engine::X86 {
            v.push((e, true, format!("{e} (private stack)")));
        }
    }
    match bpf_jit_arm64::emu::tools_available()
        .map_err(|e| e.to_string())
        .and_then(|()| bpf_vm::shared::enable().map_err(|e| e.to_string()))
    {
        Ok(_) => v.push((Engine::Arm64, false, Engine::Arm64.to_string())),
        Err(e) => {
            assert!(
                std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "arm64 emulation required (BPFKIT_REQUIRE_TOOLS=1): {e}"
            );
            eprintln!("SKIPPED tail-call hierarchies on arm64: {e}");
        }
    }
    v
}

/// Runs `case` on every engine of [`configs`]: (engine label, result).
fn run_engines(case: &Case) -> Vec<(String, Result<Outcome, String>)> {
    configs()
        .into_iter()
        .map(|(engine, private, label)| (label, run_vm(case, engine, private)))
        .collect()
}

#[test]
fn tail_call_hierarchies_on_both_engines() {
    let mut failures = Vec::new();
    for case in CASES {
        for (engine, result) in run_engines(case) {
            match result {
                Ok((r0, counts)) => {
                    eprintln!(
                        "{} on {engine}: r0 = {r0}, counters = {counts:?}",
                        case.name
                    );
                    if r0 != case.retval || counts != case.expected {
                        failures.push(format!(
                            "{} on {engine}: r0 = {r0}, counters {counts:?}; expected r0 = {}, counters {:?}",
                            case.name, case.retval, case.expected
                        ));
                    }
                }
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        Engine::available().contains(&Engine::X86),
        "the x86-64 JIT must be available on this host"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- the live kernel ----------------------------------------------------------

/// Start slots of the subprograms: 0 and every local call target.
fn subprog_starts(prog: &Program) -> Vec<u32> {
    let mut v = vec![0u32];
    for (insn, &slot) in prog.insns().iter().zip(prog.starts()) {
        if let Insn::Call(bpf_isa::CallTarget::Local(off)) = *insn {
            v.push((i64::from(slot) + 1 + i64::from(off)) as u32);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Loads `prog` as a `tc` program with BTF func info for its subprograms.
fn kernel_load(prog: &Program) -> Result<OwnedFd, String> {
    let starts = subprog_starts(prog);
    let btf = kernel::btf_load(&kernel::func_btf(starts.len())).map_err(|e| e.to_string())?;
    let func_info = kernel::func_infos(&starts);
    let code = prog.to_bytes();
    let mut load = kernel::ProgLoad::new(kernel::prog_type::SCHED_CLS, &code);
    load.log_level = 1;
    load.btf_fd = Some(btf.as_raw_fd());
    load.func_info = &func_info;
    kernel::prog_load(&load).map_err(|e| e.to_string())
}

/// Rewrites placeholder map fds to real ones.
fn with_fds(prog: &Program, fds: &[(i32, i32)]) -> Program {
    let real = |fd: i32| fds.iter().find(|(p, _)| *p == fd).map_or(fd, |(_, r)| *r);
    Program::from_insns(
        prog.insns()
            .iter()
            .map(|i| match *i {
                Insn::LdImm64 {
                    dst,
                    src: LdImm64Src::MapFd(fd),
                } => Insn::LdImm64 {
                    dst,
                    src: LdImm64Src::MapFd(real(fd)),
                },
                Insn::LdImm64 {
                    dst,
                    src: LdImm64Src::MapValue { fd, off },
                } => Insn::LdImm64 {
                    dst,
                    src: LdImm64Src::MapValue { fd: real(fd), off },
                },
                other => other,
            })
            .collect(),
    )
}

fn run_kernel(case: &Case) -> Result<(u64, Vec<u64>), String> {
    let counters = kernel::map_create(2, 4, 8 * case.counters, 1, 0).map_err(|e| e.to_string())?;
    let mut fds = vec![(2, counters.as_raw_fd())];
    let mut arrays = Vec::new();
    for &(fd, n) in case.prog_arrays {
        let m = kernel::map_create(3, 4, 4, n, 0).map_err(|e| e.to_string())?;
        fds.push((fd, m.as_raw_fd()));
        arrays.push((fd, m));
    }
    let mut progs = Vec::new();
    for part in case.parts {
        let prog = assemble(part.asm).map_err(|e| e.to_string())?;
        let p = kernel_load(&with_fds(&prog, &fds)).map_err(|e| format!("{}: {e}", case.name))?;
        for &(fd, idx) in part.slots {
            let (_, m) = arrays
                .iter()
                .find(|(f, _)| *f == fd)
                .ok_or("no such prog array")?;
            kernel::map_update(
                m,
                &idx.to_le_bytes(),
                &(p.as_raw_fd() as u32).to_le_bytes(),
                0,
            )
            .map_err(|e| e.to_string())?;
        }
        progs.push(p);
    }
    let entry = progs.first().ok_or("no programs")?;
    let run = kernel::prog_test_run(entry, &[0u8; 64], 1).map_err(|e| e.to_string())?;
    let mut v = vec![0u8; 8 * case.counters as usize];
    kernel::map_lookup(&counters, &0u32.to_le_bytes(), &mut v).map_err(|e| e.to_string())?;
    Ok((u64::from(run.retval), read_counters(&v)))
}

#[test]
fn tail_call_hierarchies_match_the_live_kernel() {
    if !kernel::available_or_skip("tail-call hierarchies on the live kernel") {
        return;
    }
    let mut failures = Vec::new();
    for case in CASES {
        let k = match run_kernel(case) {
            Ok(k) => k,
            Err(e) => {
                failures.push(format!("{}: kernel: {e}", case.name));
                continue;
            }
        };
        eprintln!(
            "{} in the kernel: r0 = {}, counters = {:?}",
            case.name, k.0, k.1
        );
        if k != (case.retval, case.expected.to_vec()) {
            failures.push(format!(
                "{}: kernel gives {k:?}, the selftest expects ({}, {:?})",
                case.name, case.retval, case.expected
            ));
        }
        for (engine, result) in run_engines(case) {
            match result {
                Ok(v) if v == k => {}
                Ok(v) => failures.push(format!("{} on {engine}: {v:?}, kernel {k:?}", case.name)),
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
