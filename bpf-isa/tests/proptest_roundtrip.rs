//! Property tests over the shared generator (`bpf_isa::arbitrary`):
//! encode/decode and disassemble/assemble round trips, and robustness of the
//! decoder and both assemblers on arbitrary input.

use bpf_isa::arbitrary::{any_insn, valid_program};
use bpf_isa::*;
use proptest::prelude::*;

const DEC: DisasmOptions = DisasmOptions { hex: false };
const HEX: DisasmOptions = DisasmOptions { hex: true };

/// `fmt_program` output without the `N: ` index prefixes.
fn listing(p: &Program, opts: &DisasmOptions) -> String {
    fmt_program(p, opts)
        .lines()
        .map(|l| match l.split_once(": ") {
            Some((idx, text)) if idx.chars().all(|c| c.is_ascii_digit()) => text,
            _ => l,
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn insn_encode_decode(insn in any_insn()) {
        let p = Program::from_insns(vec![insn]);
        let bytes = p.to_bytes();
        prop_assert_eq!(bytes.len(), insn.slots() * 8);
        prop_assert_eq!(Program::decode(&bytes), Ok(p));
    }

    #[test]
    fn insn_disasm_asm(insn in any_insn()) {
        for opts in [DEC, HEX] {
            let text = fmt_insn(&insn, &opts);
            let back = assemble(&text).map_err(|e| TestCaseError::fail(format!("`{text}`: {e}")))?;
            prop_assert_eq!(back.insns(), &[insn][..], "`{}`", text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn program_encode_decode(p in valid_program(64)) {
        prop_assert_eq!(p.validate(), Ok(()));
        prop_assert!(matches!(p.insns().last(), Some(Insn::Exit)));
        prop_assert_eq!(Program::decode_validated(&p.to_bytes()), Ok(p));
    }

    #[test]
    fn program_disasm_asm(p in valid_program(64)) {
        for opts in [DEC, HEX] {
            let text = listing(&p, &opts);
            let back = assemble(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(&back, &p);
            // With the index prefixes, too.
            let back = assemble(&fmt_program(&p, &opts)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &p);
        }
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Program::decode_validated(&bytes);
        // Every slot on its own, so that later slots are exercised too.
        for chunk in bytes.chunks(8) {
            let _ = Program::decode(chunk);
        }
    }

    #[test]
    fn decode_mutated_programs_never_panics(
        p in valid_program(32),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = p.to_bytes();
        let n = bytes.len();
        for (at, v) in flips {
            bytes[at.index(n)] = v;
        }
        if let Ok(q) = Program::decode(&bytes) {
            // Whatever decodes re-encodes to a program that decodes to itself.
            prop_assert_eq!(Program::decode(&q.to_bytes()), Ok(q.clone()));
            let _ = q.validate();
        }
    }

    #[test]
    fn assemblers_never_panic_on_arbitrary_text(s in "\\PC{0,200}") {
        let _ = assemble(&s);
        let _ = assemble_ubpf(&s);
    }

    #[test]
    fn assemblers_never_panic_on_mutated_listings(
        p in valid_program(16),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), "[-+*()\\[\\],:#;rw0-9a-z =<>&|^%/]"), 1..6),
    ) {
        let mut text = listing(&p, &DEC).into_bytes();
        let n = text.len();
        for (at, s) in cuts {
            text[at.index(n)] = s.as_bytes()[0];
        }
        let text = String::from_utf8_lossy(&text);
        let _ = assemble(&text);
        let _ = assemble_ubpf(&text);
    }
}

/// The generators are not degenerate: every instruction form, atomic
/// operation and `ld_imm64` source shows up, and programs contain branches.
#[test]
fn generators_cover_every_form() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::HashSet;

    let mut runner = TestRunner::deterministic();
    let mut kinds = HashSet::new();
    let mut atomics = HashSet::new();
    let mut ld64 = HashSet::new();
    let strat = any_insn();
    for _ in 0..20_000 {
        let insn = strat.new_tree(&mut runner).unwrap().current();
        kinds.insert(std::mem::discriminant(&insn));
        match insn {
            Insn::Atomic { op, .. } => {
                atomics.insert(format!("{op:?}"));
            }
            Insn::LdImm64 { src, .. } => {
                ld64.insert(std::mem::discriminant(&src));
            }
            _ => {}
        }
    }
    // Insn has 20 variants.
    assert_eq!(kinds.len(), 20, "instruction forms seen: {}", kinds.len());
    assert_eq!(atomics.len(), AtomicOp::ALL.len());
    assert_eq!(ld64.len(), 7);

    let strat = valid_program(64);
    let mut branches = 0;
    let mut local_calls = 0;
    for _ in 0..200 {
        let p = strat.new_tree(&mut runner).unwrap().current();
        branches += p
            .insns()
            .iter()
            .filter(|i| i.branch_offset().is_some())
            .count();
        local_calls += p
            .insns()
            .iter()
            .filter(|i| matches!(i, Insn::Call(CallTarget::Local(_))))
            .count();
    }
    assert!(branches > 100, "{branches} branches");
    assert!(local_calls > 10, "{local_calls} local calls");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    /// `Program::decode` (straight from the bytes) gives exactly what
    /// decoding the slots does (`RawInsn::slice_from_bytes`, then
    /// `Program::decode_raw`): the same program or the same error, on
    /// arbitrary bytes (mostly invalid) and on encoded valid programs
    /// (with `ld_imm64`s, and cut short to split one).
    #[test]
    fn decode_from_bytes_matches_decode_raw(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..96),
            valid_program(24).prop_map(|p| p.to_bytes()),
            (valid_program(24), 0usize..200).prop_map(|(p, cut)| {
                let b = p.to_bytes();
                let keep = (cut * 8).min(b.len());
                b[..keep].to_vec()
            }),
        ],
    ) {
        let direct = Program::decode(&bytes);
        let via_raw = RawInsn::slice_from_bytes(&bytes)
            .ok_or_else(|| Error::new(bytes.len() / 8, ErrorKind::BadLength(bytes.len())))
            .and_then(|raw| Program::decode_raw(&raw));
        prop_assert_eq!(direct, via_raw);
    }
}
