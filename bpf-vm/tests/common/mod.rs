//! Shared by bpf-vm's integration tests: assembling, map definitions, and
//! the scenario programs several of them run (with their hand-computed
//! results).

#![allow(dead_code)]

use std::sync::Arc;

use bpf_isa::{assemble, Program};
use bpf_vm::{Map, MapDef, MapType};

/// Assembles `src`, panicking with the text on failure.
pub fn asm(src: &str) -> Program {
    assemble(src).unwrap_or_else(|e| panic!("assembly failed: {e}\n{src}"))
}

/// A map definition.
pub fn def(t: MapType, k: u32, v: u32, n: u32) -> MapDef {
    MapDef {
        map_type: t,
        key_size: k,
        value_size: v,
        max_entries: n,
    }
}

/// A program array of `n` slots.
pub fn prog_array(n: u32) -> Arc<Map> {
    Map::new(def(MapType::ProgArray, 4, 4, n)).expect("prog array")
}

/// A one-entry array of one `u64` counter.
pub fn counters() -> Arc<Map> {
    Map::new(def(MapType::Array, 4, 8, 1)).expect("counters")
}

/// Counts its runs in the counter at map fd 2 (atomically) and tail-calls
/// slot `slot` of the prog array at fd 1 (meant to hold itself): 1 run +
/// 33 tail calls (MAX_TAIL_CALL_CNT), then returns 7.
pub fn self_call(slot: u32) -> String {
    format!(
        "
        r6 = r1
        *(u32 *)(r10 - 4) = 0
        r1 = map[fd:2]
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r1 = r6
        r2 = map[fd:1]
        r3 = {slot}
        call 12
    out:
        r0 = 7
        exit"
    )
}

/// On a hash map at fd 1 (4-byte keys, 8-byte values, room for 4):
/// update(key 7, value 9, BPF_NOEXIST) twice, 0 then -EEXIST (-17);
/// delete(key 8), -ENOENT (-2); lookup(7) then finds the value 9. Returns
/// the value << 24 | (delete & 0xff) << 16 | (second update & 0xff) << 8
/// | (first update & 0xff), or -1 when the lookup misses.
pub const HASH_ERRNO: &str = "
        *(u32 *)(r10 - 4) = 7
        *(u64 *)(r10 - 16) = 9
        r1 = map[fd:1]
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1
        call 2
        r6 = r0
        r1 = map[fd:1]
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1
        call 2
        r7 = r0
        *(u32 *)(r10 - 4) = 8
        r1 = map[fd:1]
        r2 = r10
        r2 += -4
        call 3
        r8 = r0
        *(u32 *)(r10 - 4) = 7
        r1 = map[fd:1]
        r2 = r10
        r2 += -4
        call 1
        if r0 == 0 goto miss
        r0 = *(u64 *)(r0 + 0)
        r0 <<= 24
        r8 &= 0xff
        r7 &= 0xff
        r6 &= 0xff
        r8 <<= 16
        r7 <<= 8
        r0 |= r8
        r0 |= r7
        r0 |= r6
        exit
    miss:
        r0 = -1
        exit";

/// [`HASH_ERRNO`]'s result by hand:
/// 9 << 24 | (-2 & 0xff) << 16 | (-17 & 0xff) << 8 | 0.
pub const HASH_ERRNO_RESULT: u64 = (9 << 24) | (0xfe << 16) | (0xef << 8);

/// `bpf_loop` (helper 181) with 10 iterations of a callback that adds its
/// index to a stack word (the context), returning 0 (continue). Returns
/// the word << 8 + bpf_loop's result.
pub const BPF_LOOP_SUM: &str = "
        *(u64 *)(r10 - 8) = 0
        r1 = 10
        r2 = subprog[cb]
        r3 = r10
        r3 += -8
        r4 = 0
        call 181
        r6 = r0
        r0 = *(u64 *)(r10 - 8)
        r0 <<= 8
        r0 += r6
        exit
    cb:
        r3 = *(u64 *)(r2 + 0)
        r3 += r1
        *(u64 *)(r2 + 0) = r3
        r0 = 0
        exit";

/// [`BPF_LOOP_SUM`]'s result by hand: sum(0..10) = 45 after 10 iterations.
pub const BPF_LOOP_SUM_RESULT: u64 = (45 << 8) + 10;

/// Increments the `u64` at key 0 of the array at map fd 1 with an atomic
/// add and returns the new value (-1 if the lookup misses).
pub const COUNTER: &str = "
    *(u32 *)(r10 - 4) = 0
    r1 = map[fd:1]
    r2 = r10
    r2 += -4
    call 1
    if r0 == 0 goto miss
    r1 = 1
    lock *(u64 *)(r0 + 0) += r1
    r0 = *(u64 *)(r0 + 0)
    exit
miss:
    r0 = -1
    exit";
