//! The pack allocator through the public API: images placed, read back,
//! padded, freed and reused, from several threads; dedicated mappings for
//! large images; the writable alias bounded by its own image; the views'
//! permissions in `/proc/self/maps`.
//!
//! Packs belong to one pad byte, so each test uses a pad byte of its own:
//! the tests run in parallel threads of one process and share the pool,
//! but never share a pack.

use bpf_jit::pack::{CHUNK_SIZE, DEDICATED_THRESHOLD};
use bpf_jit::{CodeWriter, ExecMemory, PatchErrorKind};

/// The `n` bytes at `p` (read through the read+exec view).
///
/// # Safety
///
/// `p..p+n` must be mapped readable.
unsafe fn bytes(p: *const u8, n: usize) -> Vec<u8> {
    // SAFETY: forwarded to the caller.
    unsafe { core::slice::from_raw_parts(p, n).to_vec() }
}

/// An image of `len` bytes whose contents depend on `seed`, never the pad.
fn image(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(31).wrapping_add(seed) % 200 + 1) as u8)
        .collect()
}

/// The image's bytes and every reserved byte after it, checked.
fn check(m: &ExecMemory, want: &[u8], pad: u8) {
    assert_eq!(m.code(), want);
    assert_eq!(m.len(), want.len());
    assert!(m.reserved_len() >= want.len());
    // SAFETY: the reserved bytes are mapped readable while `m` lives.
    let all = unsafe { bytes(m.as_ptr(), m.reserved_len()) };
    assert_eq!(&all[..want.len()], want);
    assert!(
        all[want.len()..].iter().all(|&b| b == pad),
        "pad after image"
    );
}

#[test]
fn many_threads_allocate_read_back_and_free() {
    const PAD: u8 = 0xa1;
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut live: Vec<(ExecMemory, Vec<u8>)> = Vec::new();
                for i in 0..300u32 {
                    let len = ((i * 97 + t * 13) % 3000) as usize;
                    let code = image(len, t * 1000 + i);
                    let m = ExecMemory::new(&code, PAD).unwrap();
                    assert!(m.is_pooled());
                    assert_eq!(m.as_ptr() as usize % CHUNK_SIZE, 0);
                    assert_eq!(
                        m.reserved_len(),
                        len.div_ceil(CHUNK_SIZE).max(1) * CHUNK_SIZE
                    );
                    check(&m, &code, PAD);
                    live.push((m, code));
                    // Free about half, in an order unlike allocation.
                    if i % 3 == 2 {
                        live.swap_remove((i as usize * 7) % live.len());
                        live.swap_remove(0);
                    }
                }
                for (m, code) in &live {
                    check(m, code, PAD);
                }
                live
            })
        })
        .collect();
    // Images alive at the same time (all still held here) never overlap.
    let mut live = Vec::new();
    for t in threads {
        live.extend(t.join().unwrap());
    }
    let mut ranges: Vec<(usize, usize)> = live
        .iter()
        .map(|(m, _)| (m.as_ptr() as usize, m.reserved_len()))
        .collect();
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        assert!(w[0].0 + w[0].1 <= w[1].0, "{w:?} overlap");
    }
    for (m, code) in &live {
        check(m, code, PAD);
    }
}

#[test]
fn freed_chunks_are_refilled_with_pad_and_reused() {
    const PAD: u8 = 0xa2;
    // Keeps the pack non-empty (so mapped) for the whole test.
    let keep = ExecMemory::new(&[1, 2, 3], PAD).unwrap();
    let code = image(200, 7);
    let a = ExecMemory::new(&code, PAD).unwrap();
    check(&a, &code, PAD);
    let (p, n) = (a.as_ptr(), a.reserved_len());
    assert_eq!(n, 256);
    drop(a);
    // SAFETY: the pack stays mapped while `keep` lives (packs are only
    // unmapped when empty).
    let after = unsafe { bytes(p, n) };
    assert!(after.iter().all(|&b| b == PAD), "freed chunk holds traps");
    // First fit: the next image of that size takes the same chunks.
    let other = image(256, 99);
    let b = ExecMemory::new(&other, PAD).unwrap();
    assert_eq!(b.as_ptr(), p, "freed chunks reused");
    check(&b, &other, PAD);
    // A smaller image in the same place: none of the old bytes remain.
    drop(b);
    let c = ExecMemory::new(&[0x55; 10], PAD).unwrap();
    assert_eq!(c.as_ptr(), p);
    check(&c, &[0x55; 10], PAD);
    // SAFETY: as above.
    let rest = unsafe { bytes(p.wrapping_add(10), 246) };
    assert!(rest.iter().all(|&b| b == PAD));
    drop(keep);
}

#[test]
fn image_above_the_threshold_gets_its_own_mapping() {
    const PAD: u8 = 0xa3;
    let code = image(DEDICATED_THRESHOLD + 1, 3);
    let m = ExecMemory::new(&code, PAD).unwrap();
    assert!(!m.is_pooled());
    assert_eq!(m.reserved_len() % 4096, 0);
    check(&m, &code, PAD);
    // At the threshold it is still pooled; `new_dedicated` never is.
    let code = image(DEDICATED_THRESHOLD, 4);
    let m = ExecMemory::new(&code, PAD).unwrap();
    assert!(m.is_pooled());
    check(&m, &code, PAD);
    let m = ExecMemory::new_dedicated(&[9; 5], PAD).unwrap();
    assert!(!m.is_pooled());
    check(&m, &[9; 5], PAD);
}

#[test]
fn alias_writes_stay_inside_the_image() {
    const PAD: u8 = 0xa4;
    let code = vec![0x11; 100];
    let (m, alias) = ExecMemory::new_patchable(&code, PAD).unwrap();
    // A neighbour in the same pack right after the image's chunks.
    let next = ExecMemory::new(&[0x22; 64], PAD).unwrap();
    assert_eq!(alias.len(), 100);
    let mut w = &alias;
    assert_eq!(w.base(), m.as_ptr() as u64);
    // Last valid 8-byte word: 88..96; last valid 4-byte word: 96..100.
    w.write(88, 8, 0x0102_0304_0506_0708).unwrap();
    w.write(96, 4, 0xa0b0_c0d0).unwrap();
    assert_eq!(w.read(88, 8).unwrap(), 0x0102_0304_0506_0708);
    assert_eq!(
        &m.code()[88..100],
        &[8, 7, 6, 5, 4, 3, 2, 1, 0xd0, 0xc0, 0xb0, 0xa0]
    );
    // One past: rejected with the offset, though the chunk (128 bytes)
    // and the pack go on.
    assert_eq!(
        w.write(96, 8, 0),
        Err(PatchErrorKind::BadWrite { offset: 96, len: 8 })
    );
    assert_eq!(
        w.write(100, 4, 0),
        Err(PatchErrorKind::BadWrite {
            offset: 100,
            len: 4
        })
    );
    assert_eq!(
        w.write(128, 8, 0),
        Err(PatchErrorKind::BadWrite {
            offset: 128,
            len: 8
        })
    );
    // Misaligned or odd sizes.
    assert_eq!(
        w.write(4, 8, 0),
        Err(PatchErrorKind::BadWrite { offset: 4, len: 8 })
    );
    assert_eq!(
        w.write(0, 2, 0),
        Err(PatchErrorKind::BadWrite { offset: 0, len: 2 })
    );
    assert_eq!(&m.code()[..88], &[0x11; 88][..]);
    // SAFETY: the image's reserved bytes are mapped while `m` lives.
    let tail = unsafe { bytes(m.as_ptr().wrapping_add(100), 28) };
    assert!(tail.iter().all(|&b| b == PAD));
    assert_eq!(next.code(), &[0x22; 64]);
}

#[test]
fn alias_keeps_the_chunks_allocated() {
    const PAD: u8 = 0xa5;
    let keep = ExecMemory::new(&[1], PAD).unwrap();
    let (m, alias) = ExecMemory::new_patchable(&[0x33; 64], PAD).unwrap();
    let p = m.as_ptr();
    drop(m);
    // Still the image's: a new image goes elsewhere, writes still land.
    let other = ExecMemory::new(&[0x44; 64], PAD).unwrap();
    assert_ne!(other.as_ptr(), p);
    let mut w = &alias;
    w.write(0, 8, u64::MAX).unwrap();
    assert_eq!(other.code(), &[0x44; 64]);
    drop(alias);
    // Now released (and re-filled): reused by the next image.
    let again = ExecMemory::new(&[0x55; 64], PAD).unwrap();
    assert_eq!(again.as_ptr(), p);
    assert_eq!(again.code(), &[0x55; 64]);
    drop(keep);
}

#[test]
fn no_view_is_writable_and_executable() {
    const PAD: u8 = 0xa6;
    let m = ExecMemory::new(&[0x90; 32], PAD).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let addr = m.as_ptr() as usize;
    let mut packs = 0;
    for line in maps.lines().filter(|l| l.contains("bpf-jit-pack")) {
        packs += 1;
        let perms = line.split_whitespace().nth(1).unwrap();
        assert!(perms == "r-xs" || perms == "rw-s", "{line}");
        let (lo, hi) = line.split_once(' ').unwrap().0.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&addr) {
            assert_eq!(perms, "r-xs", "the image's address is the exec view");
        }
    }
    assert!(packs >= 2, "a pack is two views");
    assert!(maps.lines().all(|l| !l
        .split_whitespace()
        .nth(1)
        .is_some_and(|p| p.starts_with("rwx"))));
}
