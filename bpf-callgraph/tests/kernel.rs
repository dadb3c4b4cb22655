//! Live-kernel oracle: programs with deep and mixed call chains, callbacks and
//! tail calls are loaded with `bpf(BPF_PROG_LOAD)` as socket filters, and the
//! kernel's verdict (accept, or the stack rule named in the verifier log) is
//! compared with ours. Needs root and a kernel with `bpf()`; says so and skips
//! otherwise.
#![allow(clippy::needless_range_loop)]

mod common;

use bpf_callgraph::*;
use bpf_isa::Program;
use bpf_tests::kernel;
use common::{build, Op, Sub};
use std::os::fd::AsRawFd;

const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;

/// Loads with BTF func info for the subprograms at `starts` (the kernel
/// wants it for tail calls in programs with subprograms and for callback
/// references); returns (accepted, verifier log).
fn load(p: &Program, starts: &[usize]) -> (bool, String) {
    let btf = match kernel::btf_load(&kernel::func_btf(starts.len())) {
        Ok(fd) => fd,
        Err(e) => return (false, e.to_string()),
    };
    let starts: Vec<u32> = starts.iter().map(|&s| s as u32).collect();
    let func_info = kernel::func_infos(&starts);
    let code = p.to_bytes();
    let mut load = kernel::ProgLoad::new(kernel::prog_type::SOCKET_FILTER, &code);
    load.log_level = 1;
    load.log_size = 1 << 20;
    load.btf_fd = Some(btf.as_raw_fd());
    load.func_info = &func_info;
    match kernel::prog_load_logged(&load) {
        Ok((_fd, log)) => (true, log),
        Err(kernel::KernelError::Failed { log, .. }) => (false, log),
        Err(e) => (false, e.to_string()),
    }
}

#[derive(Debug, PartialEq, Eq, Clone)]
enum V {
    Accept,
    Combined(usize, u32),
    TooDeep,
    TailCall(u32),
    Structural,
    Other(String),
}

fn kernel_verdict(ok: bool, log: &str) -> V {
    if ok {
        return V::Accept;
    }
    let num_after = |pat: &str| -> Option<u32> {
        let i = log.find(pat)? + pat.len();
        log[i..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    if let Some(calls) = num_after("combined stack size of ") {
        let depth = num_after(&format!("combined stack size of {calls} calls is ")).unwrap_or(0);
        return V::Combined(calls as usize, depth);
    }
    if log.contains("tail_calls are not allowed") {
        return V::TailCall(num_after("call stack of previous frames is ").unwrap_or(0));
    }
    if log.contains("frames is too deep") {
        return V::TooDeep;
    }
    if [
        "unreachable insn",
        "back-edge",
        "jump out of range",
        "last insn",
    ]
    .iter()
    .any(|m| log.contains(m))
    {
        return V::Structural;
    }
    V::Other(log.lines().rev().nth(1).unwrap_or("").to_string())
}

fn our_verdict(p: &Program, subs: &[Sub]) -> V {
    let cg = match CallGraph::build(p) {
        Ok(g) => g,
        Err(_) => return V::Structural,
    };
    let depths: Vec<u32> = subs.iter().map(|s| s.depth).collect();
    let cfg = StackConfig {
        jit: jit_enabled(),
        ..Default::default()
    };
    match cg.check_stack_slice(&depths, &cfg) {
        Ok(_) => V::Accept,
        Err(StackError::CombinedTooLarge { calls, depth, .. }) => V::Combined(calls, depth),
        Err(StackError::TooDeep { .. }) => V::TooDeep,
        Err(StackError::TailCallStackTooLarge { depth, .. }) => V::TailCall(depth),
        Err(e) => V::Other(e.to_string()),
    }
}

fn jit_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
        .map(|s| s.trim() != "0")
        .unwrap_or(false)
}

fn sub(depth: u32, ops: &[Op]) -> Sub {
    Sub {
        depth,
        ops: ops.to_vec(),
    }
}

fn chain(n: usize, depth: u32) -> Vec<Sub> {
    (0..n)
        .map(|i| {
            if i + 1 < n {
                sub(depth, &[Op::Call(i + 1)])
            } else {
                sub(depth, &[])
            }
        })
        .collect()
}

/// Tiny deterministic generator (xorshift) for the random part.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random acyclic program; callbacks and whatever they reach never tail
/// call (a callback's r1 is the loop index, not the context `bpf_tail_call` needs).
fn random_case(rng: &mut Rng) -> Vec<Sub> {
    let n = 1 + rng.below(10) as usize;
    let mut subs: Vec<Sub> = (0..n)
        .map(|_| Sub {
            depth: if rng.below(3) == 0 {
                8 * rng.below(65) as u32
            } else {
                8 * rng.below(9) as u32
            },
            ops: vec![],
        })
        .collect();
    let mut via_cb = vec![false; n];
    for i in 1..n {
        let from = if rng.below(4) != 0 {
            i - 1
        } else {
            rng.below(i as u64) as usize
        };
        let as_loop = rng.below(5) == 0;
        subs[from]
            .ops
            .push(if as_loop { Op::Loop(i) } else { Op::Call(i) });
        via_cb[i] = as_loop || via_cb[from];
    }
    for i in 0..n {
        if rng.below(5) == 0 && i + 2 < n {
            let t = i + 1 + rng.below((n - i - 1) as u64) as usize;
            subs[i].ops.push(Op::Call(t));
            via_cb[t] |= via_cb[i];
        }
    }
    // Propagate "reached through a callback" forward (edges go forward only).
    for i in 0..n {
        if via_cb[i] {
            for op in subs[i].ops.clone() {
                if let Op::Call(t) | Op::Loop(t) = op {
                    via_cb[t] = true;
                }
            }
        }
    }
    for i in 0..n {
        if !via_cb[i] && rng.below(4) == 0 {
            subs[i].ops.push(Op::TailCall);
        }
    }
    subs
}

#[test]
fn verdicts_match_the_running_kernel() {
    if !kernel::available_or_skip("call-graph verdicts on the live kernel") {
        return;
    }
    let map = kernel::map_create(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1, 0)
        .unwrap_or_else(|e| panic!("creating the prog array failed although bpf() works: {e}"));
    let map_fd = map.as_raw_fd();
    let mut cases: Vec<(String, Vec<Sub>)> = vec![
        (
            "256+256".into(),
            vec![sub(256, &[Op::Call(1)]), sub(256, &[])],
        ),
        (
            "256+264".into(),
            vec![sub(256, &[Op::Call(1)]), sub(264, &[])],
        ),
        (
            "240+264".into(),
            vec![sub(240, &[Op::Call(1)]), sub(264, &[])],
        ),
        ("chain of 8".into(), chain(8, 32)),
        ("chain of 9".into(), chain(9, 0)),
        ("chain of 8 x 72".into(), chain(8, 72)),
        (
            "tail call after 256".into(),
            vec![sub(256, &[Op::Call(1)]), sub(0, &[Op::TailCall])],
        ),
        (
            "tail call after 240".into(),
            vec![sub(240, &[Op::Call(1)]), sub(256, &[Op::TailCall])],
        ),
        (
            "tail call after 128+128".into(),
            vec![
                sub(128, &[Op::Call(1)]),
                sub(128, &[Op::Call(2)]),
                sub(0, &[Op::TailCall]),
            ],
        ),
        (
            "tail call after 128+112".into(),
            vec![
                sub(128, &[Op::Call(1)]),
                sub(112, &[Op::Call(2)]),
                sub(0, &[Op::TailCall]),
            ],
        ),
        (
            "entry tail calls with 512".into(),
            vec![sub(512, &[Op::TailCall])],
        ),
        (
            "bpf_loop callback 400+200".into(),
            vec![sub(400, &[Op::Loop(1)]), sub(200, &[])],
        ),
        (
            "bpf_loop callback 256+256".into(),
            vec![sub(256, &[Op::Loop(1)]), sub(256, &[])],
        ),
        (
            "first error: tail call before size".into(),
            vec![
                sub(256, &[Op::Call(1), Op::Call(2)]),
                sub(0, &[Op::TailCall]),
                sub(304, &[]),
            ],
        ),
        (
            "first error: size before tail call".into(),
            vec![
                sub(256, &[Op::Call(2), Op::Call(1)]),
                sub(0, &[Op::TailCall]),
                sub(304, &[]),
            ],
        ),
        (
            "recursion".into(),
            vec![
                sub(0, &[Op::Call(1)]),
                sub(0, &[Op::Call(2)]),
                sub(0, &[Op::Call(1)]),
            ],
        ),
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for k in 0..150 {
        cases.push((format!("random #{k}"), random_case(&mut rng)));
    }

    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut explained = Vec::new();
    let mut unexplained = Vec::new();
    for (name, subs) in &cases {
        let (p, starts) = build(subs, map_fd);
        let (ok, log) = load(&p, &starts);
        let k = kernel_verdict(ok, &log);
        let o = our_verdict(&p, subs);
        *counts
            .entry(format!("{k:?}").split('(').next().unwrap_or("").to_string())
            .or_default() += 1;
        if k == o {
            continue;
        }
        // Known, explained differences.
        let reason = match (&k, &o) {
            // The kernel rejects recursion while walking paths (privileged: the
            // frame limit in do_check; unprivileged: "back-edge"); we reject
            // the cycle structurally.
            (V::TooDeep, V::Structural) if name == "recursion" => {
                Some("recursion: kernel hits the frame limit, we name the cycle")
            }
            // do_check finds a 9th frame before check_max_stack_depth looks at sizes.
            (V::TooDeep, _) => {
                let (p0, _) = build(
                    &subs
                        .iter()
                        .map(|s| Sub {
                            depth: 0,
                            ops: s.ops.clone(),
                        })
                        .collect::<Vec<_>>(),
                    map_fd,
                );
                (our_verdict(
                    &p0,
                    &subs
                        .iter()
                        .map(|s| Sub {
                            depth: 0,
                            ..s.clone()
                        })
                        .collect::<Vec<_>>(),
                ) == V::TooDeep)
                    .then_some(
                        "kernel's do_check reports the frame limit before the stack-size walk runs",
                    )
            }
            _ => None,
        };
        match reason {
            Some(r) => explained.push(format!("{name}: kernel {k:?}, ours {o:?} ({r})")),
            None => unexplained.push(format!(
                "{name}: kernel {k:?}, ours {o:?}\n{}",
                log.lines().rev().take(4).collect::<Vec<_>>().join("\n")
            )),
        }
    }
    drop(map);
    eprintln!("kernel verdicts over {} programs: {counts:?}", cases.len());
    for e in &explained {
        eprintln!("explained difference: {e}");
    }
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{}",
        unexplained.join("\n---\n")
    );
    // The suite must exercise acceptance and each stack rule.
    for kind in ["Accept", "Combined", "TooDeep", "TailCall"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} case: {counts:?}"
        );
    }
}
