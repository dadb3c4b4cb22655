//! `ld_abs`/`ld_ind` and `may_goto` on both engines: the x86-64 JIT (its
//! packet-load routine reads the run's packet) gives the interpreter's
//! results, which are checked against values computed by hand.

use bpf_isa::arbitrary::scenarios;
use bpf_isa::assemble;
use bpf_vm::{Engine, LoadedProgram};

/// Runs `src` on `pkt` (as `run_mem`: r1 = the packet) on every engine;
/// asserts they agree and returns the result.
fn both(src: &str, pkt: &[u8]) -> u64 {
    let prog = assemble(src).expect("assembles");
    let mut results = Vec::new();
    for engine in Engine::available() {
        let p = LoadedProgram::builder(&prog, engine)
            .build()
            .expect("loads");
        let mut mem = pkt.to_vec();
        // SAFETY: the programs read the packet only through ld_abs/ld_ind.
        let r = unsafe { p.run_mem(&mut mem) }.expect("runs");
        results.push((engine, r));
    }
    assert!(
        Engine::available().contains(&Engine::X86) || !cfg!(target_arch = "x86_64"),
        "the JIT engine must be available on x86-64"
    );
    let first = results.first().map(|r| r.1).expect("an engine");
    for (engine, r) in &results {
        assert_eq!(*r, first, "{engine:?} disagrees on {src}: {results:?}");
    }
    first
}

const PKT: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];

#[test]
fn in_range_loads_are_big_endian() {
    assert_eq!(both("r6 = r1\n r0 = *(u8 *)skb[0]\n exit", &PKT), 0x12);
    assert_eq!(both("r6 = r1\n r0 = *(u16 *)skb[2]\n exit", &PKT), 0x5678);
    assert_eq!(
        both("r6 = r1\n r0 = *(u32 *)skb[4]\n exit", &PKT),
        0x9abc_def0
    );
}

#[test]
fn out_of_range_and_negative_offsets_return_zero() {
    assert_eq!(
        both("r6 = r1\n r0 = *(u32 *)skb[6]\n r0 = 7\n exit", &PKT),
        0
    );
    assert_eq!(
        both("r6 = r1\n r0 = *(u8 *)skb[8]\n r0 = 7\n exit", &PKT),
        0
    );
    assert_eq!(
        both("r6 = r1\n r0 = *(u8 *)skb[-1]\n r0 = 7\n exit", &PKT),
        0
    );
    assert_eq!(
        both(
            "r6 = r1\n r2 = -4\n r0 = *(u16 *)skb[r2 + 2]\n r0 = 7\n exit",
            &PKT
        ),
        0
    );
    // An empty packet: every load fails.
    assert_eq!(both("r6 = r1\n r0 = *(u8 *)skb[0]\n r0 = 7\n exit", &[]), 0);
}

#[test]
fn ld_ind_with_a_register_offset() {
    // r7 + 1 = 5: bytes 5..7 = bc de.
    assert_eq!(
        both("r6 = r1\n r7 = 4\n r0 = *(u16 *)skb[r7 + 1]\n exit", &PKT),
        0xbcde
    );
    // The low 32 bits of src + imm count: 0x1_0000_0003 + 0 -> offset 3.
    assert_eq!(
        both(
            "r6 = r1\n r7 = 0x100000003 ll\n r0 = *(u8 *)skb[r7]\n exit",
            &PKT
        ),
        0x78
    );
    // Loaded values feed later code; r6-r9 survive: 0x12 + 0xf0 + 1.
    assert_eq!(
        both(
            "r6 = r1
             r9 = 1
             r0 = *(u8 *)skb[0]
             r8 = r0
             r0 = *(u8 *)skb[7]
             r0 += r8
             r0 += r9
             exit",
            &PKT
        ),
        0x12 + 0xf0 + 1
    );
}

#[test]
fn may_goto_budget_on_both_engines() {
    assert_eq!(
        both(scenarios::MAY_GOTO_LOOP, &PKT),
        scenarios::MAY_GOTO_LOOP_RESULT
    );
}

#[test]
fn blinded_jit_agrees() {
    // By hand: (0x1234_5678 + 0x1111_1111) ^ 0xff = 0x2345_6789 ^ 0xff =
    // 0x2345_6776; then + the packet's u16 at 2 (0x5678) = 0x2345_bdee.
    let prog = assemble(
        "r6 = r1
         r0 = 0x12345678
         r0 += 0x11111111
         r0 ^= 0xff
         r7 = r0
         r0 = *(u16 *)skb[2]
         r0 += r7
         exit",
    )
    .expect("assembles");
    for engine in Engine::available() {
        let p = LoadedProgram::builder(&prog, engine)
            .blind_constants(Some(0x5eed))
            .build()
            .expect("loads");
        let mut mem = PKT.to_vec();
        // SAFETY: the program reads the packet only through ld_abs.
        let r = unsafe { p.run_mem(&mut mem) }.expect("runs");
        assert_eq!(r, 0x2345_bdee, "{engine:?}");
    }
}
