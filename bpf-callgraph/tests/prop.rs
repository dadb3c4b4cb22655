//! Property tests: random call graphs (acyclic and cyclic, random tail calls,
//! callbacks, global functions and depths) built into real programs; every
//! verdict is checked against a brute-force model that enumerates all call
//! paths the way the kernel's walk does, without memoisation or pruning.
#![allow(clippy::needless_range_loop)]

mod common;

use bpf_callgraph::*;
use common::{build, Op, Sub};
use cranelift_entity::EntityRef;
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Case {
    subs: Vec<Sub>,
    global: Vec<bool>,
    is_async: Vec<bool>,
    jit: bool,
    kprobe: bool,
    jit_priv: bool,
}

fn case(cyclic: bool) -> impl Strategy<Value = Case> {
    (1usize..=14).prop_flat_map(move |n| {
        let op = (0u8..6, 0usize..n).prop_map(|(k, t)| match k {
            0 => Op::TailCall,
            1 => Op::Loop(t),
            _ => Op::Call(t),
        });
        let depth = prop_oneof![3 => 0u32..=8, 1 => 0u32..=64];
        let sub = (depth, prop::collection::vec(op, 0..3));
        (
            prop::collection::vec(sub, n),
            prop::collection::vec((0usize..n, any::<bool>(), prop::bool::weighted(0.8)), n),
            prop::collection::vec(prop::bool::weighted(0.15), n),
            prop::collection::vec(prop::bool::weighted(0.3), n),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                move |(subs, incoming, global, is_async, jit, kprobe, jit_priv)| {
                    let mut subs: Vec<Sub> = subs
                        .into_iter()
                        .enumerate()
                        .map(|(i, (d, ops))| Sub {
                            depth: d * 8,
                            // Acyclic: only forward edges.
                            ops: ops
                                .into_iter()
                                .filter(|o| match o {
                                    Op::Call(t) | Op::Loop(t) => cyclic || *t > i,
                                    Op::TailCall => true,
                                })
                                .collect(),
                        })
                        .collect();
                    // Every subprogram but the entry is a target of someone, so
                    // spec index == subprogram index.
                    for (i, &(from, as_loop, chain)) in incoming.iter().enumerate().skip(1) {
                        // Mostly from the previous subprogram, so long chains occur.
                        let from = if chain {
                            i - 1
                        } else if cyclic {
                            from
                        } else {
                            from % i
                        };
                        let op = if as_loop { Op::Loop(i) } else { Op::Call(i) };
                        subs[from].ops.push(op);
                    }
                    Case {
                        subs,
                        global,
                        is_async,
                        jit,
                        kprobe,
                        jit_priv,
                    }
                },
            )
    })
}

fn edges(c: &Case, s: usize) -> Vec<(usize, bool)> {
    // (callee, is_loop) in op order.
    c.subs[s]
        .ops
        .iter()
        .filter_map(|o| match *o {
            Op::Call(t) => Some((t, false)),
            Op::Loop(t) => Some((t, true)),
            Op::TailCall => None,
        })
        .collect()
}

fn reaches(c: &Case, from: usize, to: usize, walk_only: bool) -> bool {
    // Plain DFS over all paths of length >= 1 (graph is tiny).
    let mut seen = vec![false; c.subs.len()];
    let mut st = vec![from];
    while let Some(x) = st.pop() {
        for (t, is_loop) in edges(c, x) {
            if walk_only && is_loop && c.is_async[t] {
                continue;
            }
            if t == to {
                return true;
            }
            if !seen[t] {
                seen[t] = true;
                st.push(t);
            }
        }
    }
    false
}

fn has_tc(c: &Case, s: usize) -> bool {
    c.subs[s].ops.contains(&Op::TailCall)
}

fn round(d: u32, jit: bool) -> u32 {
    if jit {
        d.div_ceil(16) * 16
    } else {
        d.max(1).div_ceil(32) * 32
    }
}

#[derive(Debug, PartialEq)]
enum Verdict {
    TooDeep(u32, Vec<usize>),
    Combined(usize, u32, Vec<usize>),
    FrameTooLarge(usize, u32),
    TailCall(u32, Vec<usize>),
}

struct Model<'a> {
    c: &'a Case,
    priv_: Vec<bool>,
}

impl Model<'_> {
    fn size(&self, s: usize) -> u32 {
        round(self.c.subs[s].depth, self.c.jit)
    }
    /// The kernel's walk, literally: every path, in op order, first error wins.
    fn walk(
        &self,
        s: usize,
        depth: u32,
        frame: u32,
        path: &mut Vec<usize>,
    ) -> Result<u32, Verdict> {
        path.push(s);
        if s != 0 && has_tc(self.c, s) && depth >= 256 {
            return Err(Verdict::TailCall(depth, path.clone()));
        }
        let own = if self.priv_[s] { 0 } else { self.size(s) };
        if self.priv_[s] {
            if self.size(s) > 512 {
                return Err(Verdict::FrameTooLarge(s, self.size(s)));
            }
        } else if depth + own > 512 {
            return Err(Verdict::Combined(path.len(), depth + own, path.clone()));
        }
        let mut max = depth + own;
        for (t, is_loop) in edges(self.c, s) {
            if is_loop && self.c.is_async[t] {
                continue;
            }
            let f = if self.c.global[t] { 0 } else { frame + 1 };
            if f >= 8 {
                path.push(t);
                return Err(Verdict::TooDeep(f, path.clone()));
            }
            max = max.max(self.walk(t, depth + own, f, path)?);
        }
        path.pop();
        Ok(max)
    }
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let n = c.subs.len();
    let (p, starts) = build(&c.subs, 1);
    let res = CallGraph::build(&p);

    // Structure: recursion reachable from the entry, then unreachable subprograms.
    let reachable: Vec<bool> = (0..n).map(|s| s == 0 || reaches(c, 0, s, false)).collect();
    let recursive = (0..n).any(|s| reachable[s] && reaches(c, s, s, false));
    if recursive {
        match res {
            Err(BuildError::Recursion { cycle, .. }) => {
                let ids: Vec<usize> = cycle.subprogs.iter().map(|s| s.index()).collect();
                prop_assert_eq!(ids[0], 0);
                for w in ids.windows(2) {
                    prop_assert!(
                        edges(c, w[0]).iter().any(|&(t, _)| t == w[1]),
                        "no edge {:?}",
                        w
                    );
                }
                let last = *ids.last().unwrap();
                prop_assert!(ids[..ids.len() - 1].contains(&last));
            }
            other => prop_assert!(
                false,
                "expected recursion, got {:?}",
                other.map(|g| g.len())
            ),
        }
        return Ok(());
    }
    if let Some(u) = (0..n).find(|&s| !reachable[s]) {
        match res {
            Err(BuildError::Unreachable { subprog, at, .. }) => {
                prop_assert_eq!(subprog.index(), u);
                prop_assert_eq!(at, starts[u]);
            }
            other => prop_assert!(
                false,
                "expected unreachable {}, got {:?}",
                u,
                other.map(|g| g.len())
            ),
        }
        return Ok(());
    }
    let mut cg = res.map_err(|e| TestCaseError::fail(format!("unexpected {e}")))?;
    prop_assert_eq!(cg.len(), n);
    for s in 0..n {
        let sp = &cg.subprogs()[SubprogId::new(s)];
        prop_assert_eq!(sp.start.index(), starts[s]);
        prop_assert_eq!(sp.has_tail_call, has_tc(c, s));
        let is_cb = sp.is_callback;
        cg.set_global(SubprogId::new(s), c.global[s]);
        if c.is_async[s] && is_cb {
            cg.set_async_callback(SubprogId::new(s), true);
        }
    }
    let case = Case {
        is_async: (0..n)
            .map(|s| c.is_async[s] && cg.subprogs()[SubprogId::new(s)].is_callback)
            .collect(),
        ..c.clone()
    };
    let c = &case;

    // Tail-call reachability: some path (through calls and sync callbacks) to a tail caller.
    for s in 0..n {
        let want = has_tc(c, s) || (0..n).any(|t| has_tc(c, t) && reaches(c, s, t, true));
        prop_assert_eq!(
            cg.subprogs()[SubprogId::new(s)].tail_call_reachable,
            want,
            "subprog {}",
            s
        );
    }

    // Stack.
    let any_tc = (0..n).any(|s| has_tc(c, s));
    let mode = c.jit_priv && c.kprobe && !any_tc;
    let roots: Vec<usize> = (1..n).rev().filter(|&s| c.is_async[s]).chain([0]).collect();
    let in_async: Vec<bool> = (0..n)
        .map(|s| {
            roots
                .iter()
                .any(|&r| r != 0 && (r == s || reaches(c, r, s, true)))
        })
        .collect();
    let model = Model {
        c,
        priv_: (0..n)
            .map(|s| mode && !in_async[s] && round(c.subs[s].depth, c.jit) >= 64)
            .collect(),
    };
    let mut expect = Ok(0u32);
    for &r in &roots {
        match model.walk(r, 0, 0, &mut Vec::new()) {
            Ok(m) => expect = expect.map(|x: u32| x.max(m)),
            Err(v) => {
                expect = Err(v);
                break;
            }
        }
    }
    let cfg = StackConfig {
        jit: c.jit,
        priv_stack: PrivStackConfig {
            prog_type: if c.kprobe {
                ProgType::Kprobe
            } else {
                ProgType::SocketFilter
            },
            tracing_kind: None,
            jit_supports_private_stack: c.jit_priv,
            priv_stack_requested: false,
        },
    };
    let depths: Vec<u32> = c.subs.iter().map(|s| s.depth).collect();
    let got = cg.check_stack_slice(&depths, &cfg);
    let ids = |ch: &Chain| ch.0.iter().map(|f| f.subprog.index()).collect::<Vec<_>>();
    match (&expect, &got) {
        (Ok(max), Ok(r)) => {
            prop_assert_eq!(*max, r.max_depth);
            for s in 0..n {
                prop_assert_eq!(r.priv_stack[SubprogId::new(s)], model.priv_[s]);
            }
        }
        (Err(Verdict::TooDeep(f, p)), Err(StackError::TooDeep { frames, chain, .. })) => {
            prop_assert_eq!((*f, p.clone()), (*frames, ids(chain)));
        }
        (
            Err(Verdict::Combined(k, d, p)),
            Err(StackError::CombinedTooLarge {
                calls,
                depth,
                chain,
                ..
            }),
        ) => {
            prop_assert_eq!((*k, *d, p.clone()), (*calls, *depth, ids(chain)));
        }
        (
            Err(Verdict::FrameTooLarge(s, z)),
            Err(StackError::FrameTooLarge { subprog, size, .. }),
        ) => {
            prop_assert_eq!((*s, *z), (*subprog as usize, *size));
        }
        (
            Err(Verdict::TailCall(d, p)),
            Err(StackError::TailCallStackTooLarge { depth, chain, .. }),
        ) => {
            prop_assert_eq!((*d, p.clone()), (*depth, ids(chain)));
        }
        (e, g) => prop_assert!(false, "model {:?} vs ours {:?}", e, g),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn acyclic_graphs_match_brute_force(c in case(false)) {
        check(&c)?;
    }

    #[test]
    fn cyclic_graphs_match_brute_force(c in case(true)) {
        check(&c)?;
    }
}

/// Deep chains hit the frame and depth limits often; make sure the generator
/// does produce each verdict (a property test that never sees a rejection
/// would prove little).
#[test]
fn generator_covers_every_verdict() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = [0usize; 6];
    let strat = case(false);
    for _ in 0..3000 {
        let c = strat.new_tree(&mut runner).unwrap().current();
        let (p, _) = build(&c.subs, 1);
        let mut cg = CallGraph::build(&p).unwrap();
        for s in 0..c.subs.len() {
            cg.set_global(SubprogId::new(s), c.global[s]);
        }
        let depths: Vec<u32> = c.subs.iter().map(|s| s.depth).collect();
        let cfg = StackConfig {
            jit: c.jit,
            ..Default::default()
        };
        let k = match cg.check_stack_slice(&depths, &cfg) {
            Ok(r) if r.max_frames > 0 => 0,
            Ok(_) => 1,
            Err(StackError::TooDeep { .. }) => 2,
            Err(StackError::CombinedTooLarge { .. }) => 3,
            Err(StackError::TailCallStackTooLarge { .. }) => 4,
            Err(StackError::FrameTooLarge { .. }) => 5,
        };
        seen[k] += 1;
    }
    eprintln!("verdicts seen: {seen:?}");
    assert!(
        seen[0] > 0 && seen[2] > 0 && seen[3] > 0 && seen[4] > 0,
        "{seen:?}"
    );
}
