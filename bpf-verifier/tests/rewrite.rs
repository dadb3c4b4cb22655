//! Post-verification rewrites: the translated programs run in bpf-vm and
//! give the same results as the originals (dead-code removal, context
//! conversion to another layout), and map references become the addresses
//! a resolver gives. Expected values are computed by hand from the inputs.

use bpf_isa::{assemble, Insn, LdImm64Src, Program};
use bpf_verifier::rewrite::{CtxLayoutTable, LayoutField, MapAddrs, RewriteConfig};
use bpf_verifier::{verify, MapInfo, Options, ProgKind};
use bpf_vm::{Interpreter, SkbMd, XdpMd};

fn run_mem(p: &Program, mem: &mut [u8]) -> u64 {
    Interpreter::new(p)
        .expect("interpreter")
        .run_mem(mem)
        .expect("run")
}

#[test]
fn dead_code_removed_same_results() {
    // The `r0 = r9` block is dead (r1 & 3 is at most 3), the jump is hard-wired.
    let src =
        "r1 = *(u8 *)(r1 + 0)\nr1 &= 3\nr0 = r1\nif r1 > 3 goto +2\nr0 += 10\nexit\nr0 = r9\nexit";
    let prog = assemble(src).unwrap();
    let v = verify(&prog, &Options::new(ProgKind::Mem { size: 4 })).unwrap();
    let x = v.xlated(ProgKind::Mem { size: 4 }).unwrap();
    // Hand count: 8 instructions, minus the never-taken jump and the two dead ones.
    assert_eq!(x.prog.len(), 5);
    assert_eq!(x.orig_slot, vec![0, 1, 2, 4, 5]);
    for b in [0u8, 1, 2, 7, 0xff] {
        let mut m = [b, 0, 0, 0];
        let want = u64::from(b & 3) + 10;
        assert_eq!(run_mem(&prog, &mut m.clone()), want);
        assert_eq!(run_mem(&x.prog, &mut m), want);
    }
}

#[test]
fn always_taken_branch_and_calls_retargeted() {
    // Branch always taken (r2 == 5): the fall-through is dead; the call
    // crosses the removed instructions and must be re-targeted.
    let src = "r2 = 5\nr6 = *(u8 *)(r1 + 0)\nif r2 == 5 goto +2\nr0 = 1\nexit\nr1 = r6\ncall pc+2\nr0 += 1\nexit\nr0 = r1\nr0 *= 3\nif r0 > 1000 goto +1\nexit\nr0 = r7\nexit";
    let prog = assemble(src).unwrap();
    let kind = ProgKind::Mem { size: 1 };
    let v = verify(&prog, &Options::new(kind)).unwrap();
    let x = v.xlated(kind).unwrap();
    // Removed: `r0 = 1`, `exit` (dead fall-through), the never-taken
    // `if r0 > 1000` and its dead target block (2 insns). The always-taken
    // jump stays as `goto +0`.
    assert_eq!(x.prog.len(), 15 - 5);
    assert_eq!(x.subprog_starts.len(), 2);
    assert!(matches!(x.prog.insns()[2], Insn::Ja { off: 0 }));
    for b in [0u8, 1, 100, 255] {
        let want = u64::from(b) * 3 + 1;
        assert_eq!(run_mem(&prog, &mut [b]), want);
        assert_eq!(run_mem(&x.prog, &mut [b]), want);
    }
    // The xlated program verifies again.
    verify(&x.prog, &Options::new(kind)).unwrap();
}

/// A flat 64-bit XDP context: data, data_end, data_meta as u64, then the u32 fields.
fn flat_xdp() -> CtxLayoutTable {
    let f = |uapi_off, uapi_size, target_off, target_size| LayoutField {
        uapi_off,
        uapi_size,
        target_off,
        target_size,
    };
    let mut t = CtxLayoutTable::new();
    t.set(
        ProgKind::Xdp,
        vec![
            f(0, 4, 0, 8),
            f(4, 4, 8, 8),
            f(8, 4, 16, 8),
            f(12, 4, 24, 4),
            f(16, 4, 28, 4),
        ],
    );
    t
}

#[test]
fn xdp_ctx_converted_to_another_layout() {
    let src = "r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr0 = *(u32 *)(r1 + 12)\nr5 = *(u32 *)(r1 + 16)\nr0 += r5\nr4 = r2\nr4 += 4\nif r4 > r3 goto +2\nr5 = *(u16 *)(r2 + 2)\nr0 += r5\nexit";
    let prog = assemble(src).unwrap();
    let v = verify(&prog, &Options::new(ProgKind::Xdp)).unwrap();
    let layout = flat_xdp();
    let x = v
        .rewrite(&RewriteConfig::new(ProgKind::Xdp, &layout))
        .unwrap();
    assert_eq!(x.prog.len(), prog.len());
    assert!(matches!(
        x.prog.insns()[1],
        Insn::Ldx {
            size: bpf_isa::Size::DW,
            off: 8,
            ..
        }
    ));
    let md = XdpMd {
        ingress_ifindex: 7,
        rx_queue_index: 3,
        egress_ifindex: 0,
    };
    for pkt in [
        vec![1u8, 2, 3, 4, 5],
        vec![0x10, 0x20, 0x34, 0x12],
        vec![9, 9],
    ] {
        // By hand: ifindex + queue, plus the little-endian u16 at 2 when 4 bytes exist.
        let want = 10
            + if pkt.len() >= 4 {
                u64::from(u16::from_le_bytes([pkt[2], pkt[3]]))
            } else {
                0
            };
        let mut p = pkt.clone();
        let orig = Interpreter::new(&prog)
            .unwrap()
            .run_xdp(&mut p, &md)
            .unwrap();
        assert_eq!(orig, want);
        // The flat context followed by the packet, in one buffer.
        let mut buf = vec![0u8; 32 + pkt.len()];
        let base = buf.as_ptr() as u64;
        let (data, end) = (base + 32, base + 32 + pkt.len() as u64);
        buf[0..8].copy_from_slice(&data.to_le_bytes());
        buf[8..16].copy_from_slice(&end.to_le_bytes());
        buf[16..24].copy_from_slice(&data.to_le_bytes());
        buf[24..28].copy_from_slice(&7u32.to_le_bytes());
        buf[28..32].copy_from_slice(&3u32.to_le_bytes());
        buf[32..].copy_from_slice(&pkt);
        assert_eq!(run_mem(&x.prog, &mut buf), want);
    }
}

#[test]
fn narrow_skb_load_of_widened_field() {
    // `mark` (uapi offset 8, 4 bytes) lives at offset 16 as 8 bytes in this layout.
    let mut t = CtxLayoutTable::new();
    t.set(
        ProgKind::SocketFilter,
        vec![LayoutField {
            uapi_off: 8,
            uapi_size: 4,
            target_off: 16,
            target_size: 8,
        }],
    );
    for (src, want) in [
        ("r0 = *(u8 *)(r1 + 9)\nexit", 0xccu64),
        ("r0 = *(u16 *)(r1 + 10)\nexit", 0xaabb),
        ("r0 = *(u32 *)(r1 + 8)\nexit", 0xaabb_ccdd),
        ("r0 = *(u8 *)(r1 + 8)\nexit", 0xdd),
    ] {
        let prog = assemble(src).unwrap();
        let v = verify(&prog, &Options::new(ProgKind::SocketFilter)).unwrap();
        let x = v
            .rewrite(&RewriteConfig::new(ProgKind::SocketFilter, &t))
            .unwrap();
        let mut skb = SkbMd {
            mark: 0xaabb_ccdd,
            ..SkbMd::default()
        };
        let orig = Interpreter::new(&prog)
            .unwrap()
            .run_skb(&mut [0u8; 20], &mut skb)
            .unwrap();
        assert_eq!(orig, want, "{src}");
        let mut buf = [0u8; 24];
        // High bytes of the widened field are garbage the mask must drop.
        buf[16..24].copy_from_slice(&0x1122_3344_aabb_ccdd_u64.to_le_bytes());
        assert_eq!(run_mem(&x.prog, &mut buf), want, "{src}");
    }
    // A field the layout does not provide is an error naming the instruction.
    let prog = assemble("r0 = 0\nr0 = *(u32 *)(r1 + 0)\nexit").unwrap();
    let v = verify(&prog, &Options::new(ProgKind::SocketFilter)).unwrap();
    let e = v
        .rewrite(&RewriteConfig::new(ProgKind::SocketFilter, &t))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "insn 1: the runtime's context has no field at uapi offset 0"
    );
}

#[test]
fn map_references_resolved() {
    let m = |value_size| MapInfo {
        name: "m".into(),
        map_type: 2,
        key_size: 4,
        value_size,
        max_entries: 1,
        flags: 0,
        fd: None,
    };
    let prog = assemble(
        "r1 = 0\n*(u32 *)(r10 - 4) = r1\nr2 = r10\nr2 += -4\nr1 = map[idx:1]\ncall 1\nr6 = map_value[idx:0]+8 ll\nr0 = 0\nexit",
    );
    let prog = match prog {
        Ok(p) => p,
        Err(_) => {
            // Build the value reference directly if the text form differs.
            let mut v = assemble("r1 = 0\n*(u32 *)(r10 - 4) = r1\nr2 = r10\nr2 += -4\nr1 = map[idx:1]\ncall 1\nr0 = 0\nexit")
                .unwrap()
                .insns()
                .to_vec();
            v.insert(
                6,
                Insn::LdImm64 {
                    dst: bpf_isa::Reg::R6,
                    src: LdImm64Src::MapIdxValue { idx: 0, off: 8 },
                },
            );
            Program::from_insns(v)
        }
    };
    let opts = Options::new(ProgKind::SocketFilter).with_maps(vec![m(16), m(8)]);
    let v = verify(&prog, &opts).unwrap();
    let addrs = MapAddrs {
        maps: vec![0x1000, 0x2000],
        values: vec![Some(0x5000), None],
    };
    let layout = CtxLayoutTable::bpf_vm();
    let x = v
        .rewrite(&RewriteConfig::new(ProgKind::SocketFilter, &layout).with_maps(&addrs))
        .unwrap();
    let imms: Vec<u64> = x
        .prog
        .insns()
        .iter()
        .filter_map(|i| match i {
            Insn::LdImm64 {
                src: LdImm64Src::Imm(a),
                ..
            } => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(imms, vec![0x2000, 0x5008]);
    // Without an address the rewrite names the instruction.
    let short = MapAddrs {
        maps: vec![0x1000],
        values: vec![],
    };
    let e = v
        .rewrite(&RewriteConfig::new(ProgKind::SocketFilter, &layout).with_maps(&short))
        .unwrap_err();
    assert_eq!(e.to_string(), "insn 4: no address for map 1");
}
