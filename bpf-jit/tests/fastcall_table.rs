//! `HelperTable`'s `bpf_fastcall` preserve masks: set, replaced, cleared by
//! a plain re-registration, bits outside r0-r5 dropped. (The backends'
//! use of them is tested in bpf-jit-x86/tests/nocsr_fastcall.rs and
//! bpf-jit-arm64/tests/fastcall.rs.)

use bpf_jit::{HelperTable, PRESERVABLE};

unsafe extern "C" fn nop(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    0
}

#[test]
fn masks_are_kept_per_helper() {
    let mut t = HelperTable::new();
    t.insert_fastcall(8, nop, 0b11_1110);
    t.insert(1, nop);
    t.insert_address_fastcall(200, 0x1000, 0b100);
    assert_eq!(t.preserve_mask(8), 0b11_1110);
    assert_eq!(t.preserve_mask(1), 0);
    assert_eq!(t.preserve_mask(200), 0b100);
    assert_eq!(t.preserve_mask(7), 0, "unknown helper");
    // r6 and above are callee-saved anyway: dropped.
    t.set_preserve(1, 0b111_1100_0010);
    assert_eq!(t.preserve_mask(1), 0b10);
    assert_eq!(PRESERVABLE, 0b11_1111);
    // Re-registering as an ordinary helper clears the mask.
    t.insert(8, nop);
    assert_eq!(t.preserve_mask(8), 0);
    t.insert_address(200, 0x2000);
    assert_eq!(t.preserve_mask(200), 0);
    t.set_preserve(1, 0);
    assert_eq!(t.preserve_mask(1), 0);
    assert_eq!(t.len(), 3);
}
