//! Interpreter semantics, checked execution, calls, loops and contexts.
//! Expected values are computed by hand from the kernel's documented semantics.

use bpf_isa::{assemble, Insn, Program, Size};
use bpf_vm::{HelperRegistry, Interpreter, SkbMd, VmError, XdpMd};

fn asm(src: &str) -> Program {
    assemble(src).unwrap_or_else(|e| panic!("assembly failed: {e}\n{src}"))
}

fn run(src: &str, mem: &mut [u8]) -> Result<u64, VmError> {
    Interpreter::new(&asm(src))?.run_mem(mem)
}

#[test]
fn division_and_modulo_edge_cases() {
    // 64-bit division by zero yields 0.
    assert_eq!(run("r0 = 7\nr1 = 0\nr0 /= r1\nexit", &mut []), Ok(0));
    // 64-bit modulo by zero leaves dst.
    assert_eq!(run("r0 = 7\nr1 = 0\nr0 %= r1\nexit", &mut []), Ok(7));
    // 32-bit modulo by zero leaves the low half, zero-extended.
    assert_eq!(
        run("r0 = -1\nw1 = 0\nw0 %= w1\nexit", &mut []),
        Ok(0xffff_ffff)
    );
    // 32-bit division result is zero-extended.
    assert_eq!(run("r0 = -1\nw0 /= 1\nexit", &mut []), Ok(0xffff_ffff));
    // INT64_MIN s/ -1 wraps to INT64_MIN; s% -1 gives 0.
    assert_eq!(
        run("r0 = 0x8000000000000000 ll\nr0 s/= -1\nexit", &mut []),
        Ok(0x8000_0000_0000_0000)
    );
    assert_eq!(
        run("r0 = 0x8000000000000000 ll\nr0 s%= -1\nexit", &mut []),
        Ok(0)
    );
    // -7 s% 2 = -1 (sign of the dividend), 32-bit form zero-extended.
    assert_eq!(run("w0 = -7\nw0 s%= 2\nexit", &mut []), Ok(0xffff_ffff));
}

#[test]
fn shifts_are_masked_and_alu32_zero_extends() {
    // 1 << (65 & 63) = 2
    assert_eq!(run("r0 = 1\nr1 = 65\nr0 <<= r1\nexit", &mut []), Ok(2));
    // w: 1 << (33 & 31) = 2
    assert_eq!(run("w0 = 1\nw1 = 33\nw0 <<= w1\nexit", &mut []), Ok(2));
    // arsh32 of 0x80000000 by 4 = 0xf8000000, zero-extended.
    assert_eq!(
        run("w0 = 0x80000000\nw0 s>>= 4\nexit", &mut []),
        Ok(0xf800_0000)
    );
    // w0 = w0 + 1 with r0 = -1 gives 0 (upper half cleared).
    assert_eq!(run("r0 = -1\nw0 += 1\nexit", &mut []), Ok(0));
    // movsx: r0 = (s8)0x80 = -128
    assert_eq!(
        run("r1 = 0x180\nr0 = (s8)r1\nexit", &mut []),
        Ok(-128i64 as u64)
    );
    // bswap and be16
    assert_eq!(
        run("r0 = 0x1122334455667788 ll\nr0 = bswap64 r0\nexit", &mut []),
        Ok(0x8877_6655_4433_2211)
    );
    assert_eq!(
        run("r0 = 0x1122334455667788 ll\nr0 = be16 r0\nexit", &mut []),
        Ok(0x8877)
    );
}

#[test]
fn sign_extending_loads() {
    let mut mem = [0xfe, 0xff, 0, 0];
    assert_eq!(
        run("r0 = *(s8 *)(r1 + 0)\nexit", &mut mem),
        Ok(-2i64 as u64)
    );
    assert_eq!(
        run("r0 = *(s16 *)(r1 + 0)\nexit", &mut mem),
        Ok(-2i64 as u64)
    );
    assert_eq!(run("r0 = *(u16 *)(r1 + 0)\nexit", &mut mem), Ok(0xfffe));
}

#[test]
fn may_goto_budget_is_eight_million_per_frame() {
    // Falls through BPF_MAX_LOOPS times, then jumps.
    let src = "r0 = 0\nl: may_goto +2\nr0 += 1\ngoto l\nexit";
    assert_eq!(run(src, &mut []), Ok(8 * 1024 * 1024));
}

#[test]
fn bpf2bpf_calls_have_own_frames_and_restore_callee_saved() {
    let src = "
        r6 = 5
        *(u64 *)(r10 - 8) = 7
        call pc f
        r1 = *(u64 *)(r10 - 8)
        r0 += r1
        r0 += r6
        exit
    f:
        r6 = 100
        *(u64 *)(r10 - 8) = r6
        r0 = *(u64 *)(r10 - 8)
        exit";
    assert_eq!(run(src, &mut []), Ok(112));
}

#[test]
fn call_depth_limit() {
    // slot 0 calls f (slot 2); f calls itself forever.
    let src = "call pc f\nexit\nf: call pc f\nexit";
    assert_eq!(
        run(src, &mut []),
        Err(VmError::CallDepthExceeded { insn: 2, max: 8 })
    );
    // Seven nested calls (eight frames) are fine.
    let src = "
        r0 = 0
        call pc f1
        exit
    f1: call pc f2
        exit
    f2: call pc f3
        exit
    f3: call pc f4
        exit
    f4: call pc f5
        exit
    f5: call pc f6
        exit
    f6: call pc f7
        exit
    f7: r0 = 77
        exit";
    assert_eq!(run(src, &mut []), Ok(77));
}

#[test]
fn checked_mode_reports_fault_with_slot_index() {
    let mut mem = [1u8, 2, 3, 4];
    let base = mem.as_ptr() as u64;
    // ld_imm64 takes slots 0-1: the faulting load is slot 2.
    let err = run("r2 = 1 ll\nr0 = *(u32 *)(r1 + 2)\nexit", &mut mem);
    assert_eq!(
        err,
        Err(VmError::MemoryFault {
            insn: 2,
            addr: base + 2,
            size: 4,
            write: false
        })
    );
    // A store above the frame pointer.
    let err = run("r0 = 0\n*(u64 *)(r10 + 0) = r0\nexit", &mut []);
    assert!(
        matches!(
            err,
            Err(VmError::MemoryFault {
                insn: 1,
                size: 8,
                write: true,
                ..
            })
        ),
        "{err:?}"
    );
    // Below the 512-byte frame.
    let err = run("r0 = *(u64 *)(r10 - 520)\nexit", &mut []);
    assert!(
        matches!(err, Err(VmError::MemoryFault { insn: 0, .. })),
        "{err:?}"
    );
    // A wild pointer.
    let err = run("r1 = 4096\nr0 = *(u8 *)(r1 + 0)\nexit", &mut []);
    assert!(
        matches!(
            err,
            Err(VmError::MemoryFault {
                insn: 1,
                addr: 4096,
                size: 1,
                ..
            })
        ),
        "{err:?}"
    );
    // The same in-bounds load is fine.
    assert_eq!(
        run("r0 = *(u32 *)(r1 + 0)\nexit", &mut mem),
        Ok(0x0403_0201)
    );
}

#[test]
fn unchecked_mode_gives_same_results() {
    let prog = asm("r0 = *(u32 *)(r1 + 0)\nr0 += r2\nexit");
    let vm = Interpreter::new(&prog).expect("build");
    let mut mem = [1u8, 0, 0, 0];
    // SAFETY: the program reads 4 bytes of the 4-byte buffer only.
    let r = unsafe { vm.run_mem_unchecked(&mut mem) };
    assert_eq!(r, Ok(5));
}

#[test]
fn budget_and_fall_off_and_unknown_helper() {
    let prog = asm("l: goto l");
    let vm = Interpreter::builder(&prog)
        .instruction_limit(Some(1000))
        .build()
        .expect("build");
    assert_eq!(
        vm.run_mem(&mut []),
        Err(VmError::BudgetExceeded {
            insn: 0,
            limit: 1000
        })
    );
    assert_eq!(run("r0 = 1", &mut []), Err(VmError::FellOffEnd { insn: 1 }));
    assert_eq!(
        run("r0 = 1\ncall 9999\nexit", &mut []),
        Err(VmError::UnknownHelper { insn: 1, id: 9999 })
    );
}

#[test]
fn atomics_fetch_and_cmpxchg() {
    let src = "
        r1 = 10
        *(u64 *)(r10 - 8) = r1
        r2 = 5
        r2 = atomic_fetch_add((u64 *)(r10 - 8), r2)
        r0 = 15
        r3 = 99
        r0 = cmpxchg_64(r10 - 8, r0, r3)
        r4 = *(u64 *)(r10 - 8)
        r0 *= 1000
        r0 += r4
        r2 *= 1000000
        r0 += r2
        exit";
    // fetch_add returned 10; cmpxchg saw 15 (== r0) and stored 99, r0 = 15.
    assert_eq!(run(src, &mut []), Ok(10_000_000 + 15_000 + 99));
}

#[test]
fn ld_abs_reads_big_endian_and_exits_zero_out_of_range() {
    let mut pkt = [0u8; 14];
    pkt[12] = 0x08;
    pkt[13] = 0x00;
    let ok = Program::from_insns(vec![
        Insn::LdAbs {
            size: Size::H,
            imm: 12,
        },
        Insn::Exit,
    ]);
    let vm = Interpreter::new(&ok).expect("build");
    assert_eq!(vm.run_mem(&mut pkt), Ok(0x0800));
    let bad = asm("r0 = 5\nr0 = *(u32 *)skb[12]\nr0 = 9\nexit");
    let vm = Interpreter::new(&bad).expect("build");
    assert_eq!(vm.run_mem(&mut pkt), Ok(0));
}

#[test]
fn xdp_context_conversion() {
    // Reads data/data_end (4-byte fields become 64-bit pointers), checks the
    // bound, returns first byte + ingress_ifindex * 256.
    let src = "
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 1
        if r4 > r3 goto out
        r0 = *(u8 *)(r2 + 0)
        r5 = *(u32 *)(r1 + 12)
        r5 <<= 8
        r0 += r5
        exit
    out:
        r0 = 1
        exit";
    let vm = Interpreter::new(&asm(src)).expect("build");
    let md = XdpMd {
        ingress_ifindex: 3,
        ..XdpMd::default()
    };
    assert_eq!(vm.run_xdp(&mut [0x2a, 0], &md), Ok(0x32a));
    assert_eq!(vm.run_xdp(&mut [], &md), Ok(1));
    // The context is read-only for XDP.
    let vm = Interpreter::new(&asm("r0 = 1\n*(u32 *)(r1 + 12) = r0\nexit")).expect("build");
    assert!(matches!(
        vm.run_xdp(&mut [0u8; 4], &md),
        Err(VmError::MemoryFault {
            insn: 1,
            write: true,
            ..
        })
    ));
}

#[test]
fn skb_context_fields() {
    // r0 = skb->len; skb->mark = 0x55; skb->cb[1] = len
    let src = "
        r0 = *(u32 *)(r1 + 0)
        r2 = 0x55
        *(u32 *)(r1 + 8) = r2
        *(u32 *)(r1 + 52) = r0
        r3 = *(u32 *)(r1 + 76)
        r4 = *(u32 *)(r1 + 80)
        r4 -= r3
        r0 += r4
        exit";
    let vm = Interpreter::new(&asm(src)).expect("build");
    let mut skb = SkbMd::default();
    assert_eq!(vm.run_skb(&mut [0u8; 60], &mut skb), Ok(120));
    assert_eq!(skb.mark, 0x55);
    assert_eq!(skb.cb[1], 60);
    // hash (offset 68) is read-only.
    let vm = Interpreter::new(&asm("r0 = 1\n*(u32 *)(r1 + 68) = r0\nexit")).expect("build");
    assert!(vm.run_skb(&mut [0u8; 4], &mut skb).is_err());
}

#[test]
fn conformance_helpers_and_callx() {
    let prog = asm("r1 = 3\nr2 = 4\nr3 = 5\nr4 = 6\nr5 = 7\ncall 0\nexit");
    let vm = Interpreter::builder(&prog)
        .helpers(HelperRegistry::conformance())
        .build()
        .expect("build");
    // gather_bytes(3,4,5,6,7) = 0x03_04050607
    assert_eq!(vm.run_mem(&mut []), Ok(0x03_0405_0607));
    // unwind(0) ends the program with r0 = 0.
    let prog = asm("r1 = 0\ncall 5\nr0 = 2\nexit");
    let vm = Interpreter::builder(&prog)
        .helpers(HelperRegistry::conformance())
        .build()
        .expect("build");
    assert_eq!(vm.run_mem(&mut []), Ok(0));
}

/// The fused pairs (`rD = rS; rD += x` and `rD += imm; if rD <cond> ... goto`)
/// give the plain semantics, also when a jump lands on the second half, when
/// the compared register is the incremented one, and when the instruction
/// budget runs out between the two halves.
#[test]
fn superinstructions_keep_plain_semantics() {
    // Sum 0..=10 with `r3 = r0; r3 += r1` and `r1 += 1; if r1 != 11` (imm form).
    let src = "r0 = 0\nr1 = 0\nl: r3 = r0\nr3 += r1\nr0 = r3\nr1 += 1\nif r1 != 11 goto l\nexit";
    assert_eq!(run(src, &mut []), Ok(55));
    // Register form, unsigned and signed: count up to r2 = 5 from -3.
    let src = "r0 = 0\nr1 = -3\nr2 = 5\nl: r0 += 1\nr1 += 1\nif r1 s< r2 goto l\nexit";
    assert_eq!(run(src, &mut []), Ok(8));
    // `rD = rS; rD += rD` doubles rS; a jump straight onto the add skips the mov.
    assert_eq!(run("r1 = 21\nr0 = r1\nr0 += r0\nexit", &mut []), Ok(42));
    assert_eq!(
        run("r0 = 5\nr1 = 9\ngoto l\nr0 = r1\nl: r0 += 2\nexit", &mut []),
        Ok(7)
    );
    // Comparing the incremented register with itself: always equal.
    assert_eq!(
        run(
            "r0 = 1\nr0 += 1\nif r0 == r0 goto l\nr0 = 9\nl: exit",
            &mut []
        ),
        Ok(2)
    );
    // Budget: 3 instructions run (r0 = 0, r0 += 1, the jump); the 4th (exit) is refused.
    let prog = asm("r0 = 0\nr0 += 1\nif r0 == 1 goto l\nl: exit");
    for (limit, want) in [
        (2, Err(VmError::BudgetExceeded { insn: 2, limit: 2 })),
        (3, Err(VmError::BudgetExceeded { insn: 3, limit: 3 })),
        (4, Ok(1)),
    ] {
        let vm = Interpreter::builder(&prog)
            .instruction_limit(Some(limit))
            .build()
            .expect("build");
        assert_eq!(vm.run_mem(&mut []), want, "limit {limit}");
    }
}

/// Global data (`ld_imm64` of a map value) is accessible in checked mode,
/// through the pointer and at negative offsets from it, and nowhere past it.
#[test]
fn direct_map_values_are_accessible_when_checked() {
    use bpf_isa::{LdImm64Src, Reg};
    use bpf_vm::{Map, MapDef, MapType};
    let map = Map::new(MapDef {
        map_type: MapType::Array,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
    })
    .expect("map");
    map.update(&0u32.to_le_bytes(), &[1, 2, 3, 4, 5, 6, 7, 8], 0)
        .expect("update");
    let prog = |off: i16| {
        Program::from_insns(vec![
            Insn::LdImm64 {
                dst: Reg::R1,
                src: LdImm64Src::MapValue { fd: 3, off: 4 },
            },
            Insn::Ldx {
                size: Size::W,
                dst: Reg::R0,
                src: Reg::R1,
                off,
            },
            Insn::Exit,
        ])
    };
    let vm = |p: &Program| {
        Interpreter::builder(p)
            .map(3, map.clone())
            .build()
            .expect("build")
    };
    // Bytes 4..8 and 0..4 of the value, little-endian.
    assert_eq!(vm(&prog(0)).run_mem(&mut []), Ok(0x0807_0605));
    assert_eq!(vm(&prog(-4)).run_mem(&mut []), Ok(0x0403_0201));
    assert!(matches!(
        vm(&prog(2)).run_mem(&mut []),
        Err(VmError::MemoryFault { insn: 2, .. })
    ));
}

/// The tracer sees every instruction, fused pairs included, with the
/// registers before it.
#[test]
fn tracer_sees_every_instruction() {
    struct T(Vec<(usize, u64)>);
    impl bpf_vm::Tracer for T {
        fn step(&mut self, _: &Interpreter, slot: usize, regs: &[u64; 11]) {
            self.0.push((slot, regs[0]));
        }
    }
    let prog = asm("r0 = 1\nr0 += 2\nif r0 != 3 goto l\nr1 = r0\nr1 += 4\nr0 = r1\nl: exit");
    let vm = Interpreter::new(&prog).expect("build");
    let mut t = T(Vec::new());
    assert_eq!(vm.run_mem_traced(&mut [], &mut t), Ok(7));
    assert_eq!(
        t.0,
        [(0, 0), (1, 1), (2, 3), (3, 3), (4, 3), (5, 3), (6, 7)]
    );
}
