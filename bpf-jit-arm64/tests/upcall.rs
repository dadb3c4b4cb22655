//! Upcalls, nested calls, shared memory and stack switching in the
//! qemu-user harness (`Emulator::call_with_upcalls`, `map_shared`,
//! `call_on_stack`).

mod common;

use bpf_jit::{HelperTable, JitOptions};
use bpf_jit_arm64::emu::{upcall_stub, Emulator, HarnessHelper};
use bpf_jit_arm64::Atomics;

fn stub_at(emu: &mut Emulator, off: u64, id: u16) -> u64 {
    let l = *emu.layout();
    let at = l.near_code + off;
    let stub = upcall_stub(id, l.helper(HarnessHelper::Upcall));
    emu.write(at, &stub).expect("write stub");
    at
}

#[test]
fn upcall_passes_id_and_arguments_and_returns_the_handlers_value() {
    let Some(mut emu) = common::emulator("upcall") else {
        return;
    };
    let stub = stub_at(&mut emu, 0, 42);
    let mut seen = Vec::new();
    let r = emu
        .call_with_upcalls(stub, [1, 2, 3, 4, 5], &mut |_, id, a| {
            seen.push((id, a));
            a.iter().sum::<u64>() * 10
        })
        .expect("call");
    assert_eq!(r, 150);
    assert_eq!(seen, vec![(42, [1, 2, 3, 4, 5])]);
    // Without a handler an upcall returns 0 and the harness stays usable.
    assert_eq!(emu.call(stub, [9, 9, 9, 9, 9]).expect("call"), 0);
    let ws = emu.layout().helper(HarnessHelper::WeightedSum);
    assert_eq!(emu.call(ws, [1, 1, 1, 1, 1]).expect("call"), 15);
}

#[test]
fn handler_may_call_into_the_emulator() {
    let Some(mut emu) = common::emulator("nested upcall") else {
        return;
    };
    let stub = stub_at(&mut emu, 64, 7);
    let ws = emu.layout().helper(HarnessHelper::WeightedSum);
    let r = emu
        .call_with_upcalls(stub, [2, 0, 0, 0, 0], &mut |e, _, a| {
            // a + 2b + 3c + 4d + 5e with (2, 1, 1, 1, 1) = 2 + 14 = 16.
            e.call(ws, [a[0], 1, 1, 1, 1]).expect("nested") + 1
        })
        .expect("call");
    assert_eq!(r, 17);
}

/// A memfd mapped at `addr` in this process; its `/proc` path.
fn shared_memfd(addr: u64, len: usize) -> Option<(*mut u8, std::path::PathBuf)> {
    // SAFETY: plain system calls; results checked.
    unsafe {
        let fd = libc::memfd_create(c"bpfkit-upcall-test".as_ptr(), libc::MFD_CLOEXEC);
        if fd < 0 || libc::ftruncate(fd, len as libc::off_t) != 0 {
            return None;
        }
        let p = libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
            fd,
            0,
        );
        if p == libc::MAP_FAILED || p as u64 != addr {
            return None;
        }
        Some((
            p.cast(),
            format!("/proc/{}/fd/{fd}", std::process::id()).into(),
        ))
    }
}

#[test]
fn shared_memory_and_a_program_on_a_shared_stack() {
    let Some(mut emu) = common::emulator("shared memory") else {
        return;
    };
    let addr = 0x5a00_0000u64;
    let len = 1usize << 20;
    let (host, path) = shared_memfd(addr, len).expect("host mapping");
    emu.map_shared(addr, len as u64, &path).expect("map_shared");
    // Host writes, harness reads; harness writes, host reads.
    // SAFETY: `host` maps `len` bytes.
    unsafe {
        host.add(100)
            .copy_from_nonoverlapping([1u8, 2, 3, 4].as_ptr(), 4)
    };
    assert_eq!(emu.read(addr + 100, 4).expect("read"), vec![1, 2, 3, 4]);
    emu.write(addr + 200, &[9, 8, 7]).expect("write");
    // SAFETY: as above.
    assert_eq!(
        unsafe { std::slice::from_raw_parts(host.add(200), 3) },
        [9, 8, 7]
    );

    // A program that passes a pointer to its stack to helper 1 (an upcall):
    // on a stack in the shared range the host reads the value directly.
    let stub = stub_at(&mut emu, 128, 1);
    let mut helpers = HelperTable::new();
    helpers.insert_address(1, stub);
    let prog = bpf_isa::assemble(
        "r1 = 77\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -8\ncall 1\nr0 += 1\nexit",
    )
    .expect("assemble");
    let base = emu.layout().near_code + 4096;
    let code =
        common::compile_at(&prog, &JitOptions::new(&helpers), base, Atomics::Lse).expect("compile");
    emu.write(base, &code.code).expect("load");
    let top = addr + len as u64;
    let mut ptrs = Vec::new();
    let r = emu
        .call_on_stack(base, top, [0; 5], &mut |_, id, a| {
            assert_eq!(id, 1);
            ptrs.push(a[0]);
            if a[0] < addr || a[0] + 8 > top {
                return 0;
            }
            // SAFETY: inside the shared mapping (checked above).
            unsafe { (a[0] as *const u64).read_unaligned() * 2 }
        })
        .expect("call_on_stack");
    assert_eq!(r, 155, "77 * 2 + 1; pointers seen: {ptrs:x?}");
    assert!(ptrs.iter().all(|&p| p > top - 4096 && p < top));
    assert!(emu
        .call_on_stack(base, top - 8, [0; 5], &mut |_, _, _| 0)
        .is_err());
}
