//! Socket-filter / tc programs (`struct __sk_buff`, uapi offsets) on every
//! engine: the interpreter, the x86-64 JIT and the AArch64 JIT (under
//! qemu-user). Expected values are computed by hand from the packet, the
//! `SkbMd` given and the uapi layout of `struct __sk_buff` (len 0,
//! mark 8, protocol 16, priority 32, cb[] 48..68, tc_classid 72, data 76,
//! data_end 80).
//!
//! The arm64 runs need `qemu-aarch64` and `aarch64-linux-gnu-gcc`: without
//! them each test says so and runs only the other engines, except under
//! `BPFKIT_REQUIRE_TOOLS=1`, where it fails.

mod common;

use bpf_vm::{Engine, LoadedProgram, SkbMd, VmError};
use common::asm;

/// The engines to run on: the interpreter, x86-64 on x86-64 hosts, and
/// arm64 when its tools are present.
fn engines(what: &str) -> Vec<Engine> {
    let mut e = Engine::available();
    match bpf_jit_arm64::emu::tools_available() {
        Ok(()) => {
            bpf_vm::shared::enable().expect("shared arena");
            e.push(Engine::Arm64);
        }
        Err(err) => {
            assert!(
                std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "arm64 emulation required (BPFKIT_REQUIRE_TOOLS=1): {err}"
            );
            eprintln!("SKIPPED {what} on arm64: {err}");
        }
    }
    if cfg!(target_arch = "x86_64") {
        assert!(e.contains(&Engine::X86), "x86-64 JIT not available");
    }
    e
}

/// Runs `src` as a socket filter on `engine`.
fn run(engine: Engine, src: &str, pkt: &mut [u8], skb: &mut SkbMd) -> Result<u64, VmError> {
    let p = LoadedProgram::builder(&asm(src), engine)
        .build()
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    // SAFETY: the test programs read the context's modelled fields, write
    // only its writable ones, and touch the packet only after checking
    // against data_end (or through ld_abs/ld_ind).
    unsafe { p.run_skb(pkt, skb) }
}

/// `len`, `protocol` and two packet bytes read through `data`/`data_end`,
/// combined as `len << 32 | protocol << 16 | pkt[1] << 8 | pkt[0]`.
const READS: &str = "
    r2 = *(u32 *)(r1 + 76)
    r3 = *(u32 *)(r1 + 80)
    r4 = r2
    r4 += 2
    r0 = 0
    if r4 > r3 goto out
    r0 = *(u32 *)(r1 + 0)
    r0 <<= 32
    r5 = *(u32 *)(r1 + 16)
    r5 <<= 16
    r0 |= r5
    r5 = *(u8 *)(r2 + 1)
    r5 <<= 8
    r0 |= r5
    r5 = *(u8 *)(r2 + 0)
    r0 |= r5
out:
    exit";

#[test]
fn reads_len_protocol_and_packet_bytes() {
    for engine in engines("skb reads") {
        let mut pkt = [0xab, 0xcd, 1, 2, 3, 4, 5];
        let mut skb = SkbMd {
            protocol: 0x0008,
            ..SkbMd::default()
        };
        let before = skb;
        let r = run(engine, READS, &mut pkt, &mut skb).expect("run");
        // len 7, protocol 0x0008, pkt[1] = 0xcd, pkt[0] = 0xab.
        assert_eq!(r, 0x7_0008_cdab, "{engine}");
        assert_eq!(skb, before, "{engine}: nothing written");
        assert_eq!(pkt, [0xab, 0xcd, 1, 2, 3, 4, 5], "{engine}");
    }
}

/// Writes `mark` (8), `priority` (32, one byte), `cb[0]` (48), `cb[4]`
/// (64, from `cb[1]` + `ifindex`), `tc_classid` (72), and a packet byte;
/// returns the `mark` it reads back.
const WRITES: &str = "
    r2 = 0x1234
    *(u32 *)(r1 + 8) = r2
    *(u8 *)(r1 + 32) = 7
    *(u32 *)(r1 + 48) = 0x55
    r3 = *(u32 *)(r1 + 52)
    r4 = *(u32 *)(r1 + 40)
    r3 += r4
    *(u32 *)(r1 + 64) = r3
    *(u32 *)(r1 + 72) = 0x10002
    r5 = *(u32 *)(r1 + 76)
    r6 = *(u32 *)(r1 + 80)
    r7 = r5
    r7 += 1
    if r7 > r6 goto skip
    *(u8 *)(r5 + 0) = 0x99
skip:
    r0 = *(u32 *)(r1 + 8)
    exit";

#[test]
fn writes_to_mark_priority_cb_and_packet_come_back() {
    for engine in engines("skb writes") {
        let mut pkt = [1u8, 2, 3];
        let mut skb = SkbMd {
            mark: 1,
            priority: 0x0300,
            ifindex: 3,
            cb: [0, 40, 0, 0, 9],
            hash: 0xdead,
            ..SkbMd::default()
        };
        let r = run(engine, WRITES, &mut pkt, &mut skb).expect("run");
        assert_eq!(r, 0x1234, "{engine}");
        let want = SkbMd {
            mark: 0x1234,
            // The low byte replaced: 0x0300 -> 0x0307.
            priority: 0x0307,
            ifindex: 3,
            // cb[4] = cb[1] + ifindex = 43.
            cb: [0x55, 40, 0, 0, 43],
            hash: 0xdead,
            tc_classid: 0x10002,
            ..SkbMd::default()
        };
        assert_eq!(skb, want, "{engine}");
        assert_eq!(pkt, [0x99, 2, 3], "{engine}");
    }
}

#[test]
fn ld_abs_and_ld_ind_read_the_skb_packet() {
    // An Ethernet header's type field (bytes 12-13) and a word at 14 + 2.
    let mut pkt = [0u8; 20];
    pkt[12] = 0x08;
    pkt[13] = 0x00;
    pkt[16..20].copy_from_slice(&[0xc0, 0xa8, 0x00, 0x01]);
    let src = "
        r6 = r1
        r0 = *(u16 *)skb[12]
        r8 = r0
        r8 <<= 32
        r7 = 14
        r0 = *(u32 *)skb[r7 + 2]
        r0 |= r8
        exit";
    let past_end = "
        r6 = r1
        r0 = *(u32 *)skb[18]
        r0 = 7
        exit";
    for engine in engines("skb ld_abs") {
        let mut skb = SkbMd::default();
        // Big-endian loads: 0x0800 and 0xc0a80001.
        assert_eq!(
            run(engine, src, &mut pkt, &mut skb).expect("run"),
            0x0800_c0a8_0001,
            "{engine}"
        );
        // Bytes 18..22 of a 20-byte packet: the program ends with 0.
        assert_eq!(
            run(engine, past_end, &mut pkt, &mut skb).expect("run"),
            0,
            "{engine}"
        );
    }
}

#[test]
fn a_read_past_data_end_is_not_taken() {
    // Returns pkt[7] if data + 8 <= data_end, else 1.
    let src = "
        r2 = *(u32 *)(r1 + 76)
        r3 = *(u32 *)(r1 + 80)
        r4 = r2
        r4 += 8
        r0 = 1
        if r4 > r3 goto out
        r0 = *(u8 *)(r2 + 7)
    out:
        exit";
    for engine in engines("skb bounds") {
        let mut skb = SkbMd::default();
        assert_eq!(
            run(engine, src, &mut [9u8; 7], &mut skb).expect("run"),
            1,
            "{engine}: 7 bytes"
        );
        assert_eq!(
            run(engine, src, &mut [0, 0, 0, 0, 0, 0, 0, 42], &mut skb).expect("run"),
            42,
            "{engine}: 8 bytes"
        );
        assert_eq!(
            run(engine, src, &mut [], &mut skb).expect("run"),
            1,
            "{engine}: empty"
        );
    }
}
