//! Calls to small leaf subprograms lowered in place
//! (`JitOptions::inline_leaf_calls`): generated programs whose main
//! subprogram calls straight-line leaves (ALU, byte swaps, sign
//! extensions, `ld_imm64`, divisions, the rotate and lea pair idioms) and
//! folds each `r0` into `r6`, run on the JIT with inlining on and off and
//! on the reference interpreter: the same result every time. Leaves that
//! jump, call or name r6-r10 are generated too (they must stay calls).
//! `BPF_DIFF_CASES` overrides the number of cases (2000).

use bpf_isa::{AluOp, CallTarget, Endian, Insn, LdImm64Src, Program, Reg, Size, Source, Width};
use bpf_jit::{HelperTable, JitOptions};
use proptest::prelude::*;

const ARGS: [Reg; 6] = [Reg::R0, Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5];

/// One straight-line instruction on r0-r5.
fn leaf_insn() -> impl Strategy<Value = Vec<Insn>> {
    let reg = prop::sample::select(ARGS.to_vec());
    let width = prop_oneof![Just(Width::W32), Just(Width::W64)];
    let op = prop::sample::select(vec![
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::SDiv,
        AluOp::Mod,
        AluOp::SMod,
        AluOp::Or,
        AluOp::And,
        AluOp::Xor,
        AluOp::Mov,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Arsh,
    ]);
    let src = prop_oneof![
        reg.clone().prop_map(Source::Reg),
        any::<i32>().prop_map(Source::Imm),
        (0i32..70).prop_map(Source::Imm),
    ];
    prop_oneof![
        6 => (width.clone(), op, reg.clone(), src).prop_map(|(w, op, d, s)| vec![Insn::alu(w, op, d, s)]),
        1 => (reg.clone(), any::<u64>()).prop_map(|(d, v)| vec![Insn::LdImm64 {
            dst: d,
            src: LdImm64Src::Imm(v),
        }]),
        1 => (reg.clone(), prop::sample::select(vec![16u8, 32, 64])).prop_map(|(d, bits)| {
            vec![Insn::Endian { kind: Endian::ToBe, bits, dst: d }]
        }),
        1 => (reg.clone(), reg.clone()).prop_map(|(d, s)| vec![Insn::MovSx {
            width: Width::W64,
            dst: d,
            src: s,
            from: Size::H,
        }]),
        // The rotate idiom `x = a; x >>= 64 - k; a <<= k; a |= x`.
        // `x` is another register than `a` (no rejected cases).
        1 => (0..ARGS.len(), 1..ARGS.len(), 1i32..64).prop_map(|(i, j, k)| {
            let (a, x) = (ARGS[i], ARGS[(i + j) % ARGS.len()]);
            vec![
                Insn::alu(Width::W64, AluOp::Mov, x, Source::Reg(a)),
                Insn::alu(Width::W64, AluOp::Rsh, x, Source::Imm(64 - k)),
                Insn::alu(Width::W64, AluOp::Lsh, a, Source::Imm(k)),
                Insn::alu(Width::W64, AluOp::Or, a, Source::Reg(x)),
            ]
        }),
        // `d = s; d += imm` (a lea) and the zero-extension pair.
        1 => (reg.clone(), reg, any::<i32>()).prop_map(|(d, s, i)| vec![
            Insn::alu(Width::W64, AluOp::Mov, d, Source::Reg(s)),
            Insn::alu(Width::W64, AluOp::Add, d, Source::Imm(i)),
            Insn::alu(Width::W64, AluOp::Lsh, d, Source::Imm(32)),
            Insn::alu(Width::W64, AluOp::Rsh, d, Source::Imm(32)),
        ]),
    ]
}

/// A leaf body: `r0 = r1` then up to 14 instructions; sometimes made
/// ineligible (a forward jump, or a use of r6 saved and restored by the
/// frame) so that both kinds of call are compiled side by side.
fn leaf() -> impl Strategy<Value = Vec<Insn>> {
    (prop::collection::vec(leaf_insn(), 0..6), 0u8..4).prop_map(|(parts, kind)| {
        let mut body = vec![Insn::alu(
            Width::W64,
            AluOp::Mov,
            Reg::R0,
            Source::Reg(Reg::R1),
        )];
        body.extend(parts.into_iter().flatten().take(14));
        match kind {
            0 => body.push(Insn::Ja { off: 0 }),
            1 => {
                body.push(Insn::alu(
                    Width::W64,
                    AluOp::Mov,
                    Reg::R6,
                    Source::Reg(Reg::R0),
                ));
                body.push(Insn::alu(
                    Width::W64,
                    AluOp::Add,
                    Reg::R0,
                    Source::Reg(Reg::R6),
                ));
            }
            _ => {}
        }
        body.push(Insn::Exit);
        body
    })
}

/// Main: for each call, r1-r5 from constants, `call leaf`, `r6 = r6 * 31 ^ r0`.
fn program() -> impl Strategy<Value = Program> {
    (
        prop::collection::vec(leaf(), 1..4),
        prop::collection::vec((0usize..4, prop::array::uniform5(any::<i32>())), 1..6),
    )
        .prop_map(|(leaves, calls)| {
            let mut main = vec![Insn::alu(Width::W64, AluOp::Mov, Reg::R6, Source::Imm(7))];
            // Call sites, patched once the leaves' positions are known.
            let mut sites = Vec::new();
            for (k, args) in calls {
                for (r, v) in ARGS[1..].iter().zip(args) {
                    main.push(Insn::alu(Width::W64, AluOp::Mov, *r, Source::Imm(v)));
                }
                sites.push((main.len(), k % leaves.len()));
                main.push(Insn::Call(CallTarget::Local(0)));
                main.push(Insn::alu(Width::W64, AluOp::Mul, Reg::R6, Source::Imm(31)));
                main.push(Insn::alu(
                    Width::W64,
                    AluOp::Xor,
                    Reg::R6,
                    Source::Reg(Reg::R0),
                ));
            }
            main.push(Insn::alu(
                Width::W64,
                AluOp::Mov,
                Reg::R0,
                Source::Reg(Reg::R6),
            ));
            main.push(Insn::Exit);
            let mut starts = Vec::new();
            let mut insns = main;
            for l in &leaves {
                starts.push(insns.len());
                insns.extend_from_slice(l);
            }
            // Call offsets count slots (an `ld_imm64` takes two).
            let slots = Program::from_insns(insns.clone()).starts().to_vec();
            for (at, k) in sites {
                let off = i64::from(slots[starts[k]]) - i64::from(slots[at]) - 1;
                insns[at] = Insn::Call(CallTarget::Local(off as i32));
            }
            Program::from_insns(insns)
        })
}

fn run_jit(prog: &Program, inline: bool) -> Result<u64, TestCaseError> {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers).with_inline_leaf_calls(inline);
    let jit = bpf_jit_x86::compile(prog, &opts)
        .map_err(|e| TestCaseError::fail(format!("jit (inline {inline}): {e}")))?;
    // SAFETY: the program touches no memory; it only computes on registers.
    Ok(unsafe { jit.call([0; 5]) })
}

/// 2000 cases, or `BPF_DIFF_CASES` (for the longer run reported in the note).
fn cases() -> u32 {
    std::env::var("BPF_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn inlined_leaf_calls_match_calls_and_the_interpreter(prog in program()) {
        let text = bpf_isa::fmt_program(&prog, &Default::default());
        let vm = bpf_vm::Interpreter::new(&prog)
            .map_err(|e| TestCaseError::fail(format!("interpreter: {e}\n{text}")))?;
        let want = vm
            .run_mem(&mut [0u8; 8])
            .map_err(|e| TestCaseError::fail(format!("interpreter run: {e}\n{text}")))?;
        prop_assert_eq!(run_jit(&prog, true)?, want, "inlined:\n{}", text);
        prop_assert_eq!(run_jit(&prog, false)?, want, "calls:\n{}", text);
    }
}

/// The inlined form has no `call`: a main program calling a leaf twice
/// compiles to one `call rel32` fewer per site with inlining, and the
/// leaf's body appears at each site.
#[test]
fn eligible_leaf_calls_leave_no_call_instruction() {
    let prog = Program::from_insns(vec![
        Insn::alu(Width::W64, AluOp::Mov, Reg::R1, Source::Imm(5)),
        Insn::Call(CallTarget::Local(3)),
        Insn::alu(Width::W64, AluOp::Mov, Reg::R1, Source::Reg(Reg::R0)),
        Insn::Call(CallTarget::Local(1)),
        Insn::Exit,
        // leaf: r0 = r1 * 3 + 1
        Insn::alu(Width::W64, AluOp::Mov, Reg::R0, Source::Reg(Reg::R1)),
        Insn::alu(Width::W64, AluOp::Mul, Reg::R0, Source::Imm(3)),
        Insn::alu(Width::W64, AluOp::Add, Reg::R0, Source::Imm(1)),
        Insn::Exit,
    ]);
    let helpers = HelperTable::new();
    let count_calls = |inline: bool| {
        let opts = JitOptions::new(&helpers).with_inline_leaf_calls(inline);
        let code = bpf_jit_x86::compile_code(&prog, &opts).expect("compiles");
        let mut dec = iced_x86::Decoder::new(64, &code.code, iced_x86::DecoderOptions::NONE);
        let mut calls = 0;
        for i in &mut dec {
            if i.mnemonic() == iced_x86::Mnemonic::Call {
                calls += 1;
            }
        }
        calls
    };
    assert_eq!(count_calls(false), 2);
    assert_eq!(count_calls(true), 0);
    // (5 * 3 + 1) * 3 + 1 = 49 both ways.
    assert_eq!(run_jit(&prog, true).ok(), Some(49));
    assert_eq!(run_jit(&prog, false).ok(), Some(49));
}
