//! `struct __sk_buff` runs on the x86-64 JIT engine.
//!
//! Compiled code reads the context directly (nothing rewrites its loads as
//! the kernel's verifier would), so the run builds the whole 192-byte
//! struct in front of a copy of the packet, in the low 2 GiB of the address
//! space: `data`, `data_end` and `data_meta` are 32-bit fields holding
//! whole pointers into that copy. After the run the packet and the
//! writable fields (`mark`, `priority`, `tc_index`, `cb[]`, `tc_classid`)
//! are copied back.

use super::{run_jit, JitProg, LowBuf, LOW};
use crate::context::{SkbMd, SKB_SIZE};
use crate::error::VmError;

/// Bytes reserved for `struct __sk_buff` in front of the packet copy (a
/// multiple of 64, so the packet stays cache-line aligned).
pub(super) const SKB_CTX_ROOM: usize = (SKB_SIZE as usize).next_multiple_of(64);

/// Writes `words` (a `struct __sk_buff`) at `at`.
///
/// # Safety
/// `at` must be valid for writes of `SKB_SIZE` bytes.
pub(super) unsafe fn put_struct(at: *mut u8, words: &[u32; 48]) {
    // SAFETY: forwarded to the caller; `words` is SKB_SIZE bytes.
    unsafe { std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), at, SKB_SIZE as usize) };
}

/// Reads the struct at `at` back and updates `skb`'s writable fields.
///
/// # Safety
/// `at` must be valid for reads of `SKB_SIZE` bytes.
pub(super) unsafe fn take_struct(at: *const u8, skb: &mut SkbMd) {
    let mut words = [0u32; 48];
    // SAFETY: forwarded to the caller; `words` is SKB_SIZE bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(at, words.as_mut_ptr().cast::<u8>(), SKB_SIZE as usize)
    };
    skb.write_back(&words);
}

/// # Safety
/// As for [`super::LoadedProgram::run_skb`].
pub(super) unsafe fn run_jit_skb(
    j: &JitProg,
    packet: &mut [u8],
    skb: &mut SkbMd,
) -> Result<u64, VmError> {
    let no_room = VmError::Unsupported {
        insn: 0,
        what: "__sk_buff on the JIT: no memory below 4 GiB for the packet",
    };
    let Ok(len) = u32::try_from(packet.len()) else {
        return Err(no_room);
    };
    let need = SKB_CTX_ROOM + packet.len();
    let mut taken = LOW.with(|l| l.borrow_mut().take());
    if taken.as_ref().is_none_or(|b| b.len < need) {
        taken = LowBuf::new(need);
    }
    let Some(buf) = taken else {
        return Err(no_room);
    };
    // `LowBuf` ends below 4 GiB: the addresses fit 32 bits.
    let data = buf.ptr as u64 + SKB_CTX_ROOM as u64;
    let words = skb.to_struct(data as u32, len);
    // SAFETY: the buffer holds SKB_CTX_ROOM (>= SKB_SIZE) + packet.len() bytes.
    unsafe {
        put_struct(buf.ptr, &words);
        std::ptr::copy_nonoverlapping(packet.as_ptr(), buf.ptr.add(SKB_CTX_ROOM), packet.len());
    }
    let pkt = if packet.is_empty() {
        (0, 0)
    } else {
        (data, u64::from(len))
    };
    // SAFETY: forwarded to the caller; r1 points at the context.
    let r = unsafe { run_jit(j, [buf.ptr as u64, 0, 0, 0, 0], pkt) };
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.ptr.add(SKB_CTX_ROOM), packet.as_mut_ptr(), packet.len());
        take_struct(buf.ptr, skb);
    }
    LOW.with(|l| *l.borrow_mut() = Some(buf));
    r
}
