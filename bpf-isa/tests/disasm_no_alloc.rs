//! `write_insn` formats straight into its writer: no heap allocation per
//! instruction. Checked with a counting global allocator that counts only the
//! allocations made by the testing thread while the check is armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bpf_isa::*;

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A writer that keeps only a running length: it never allocates.
struct Sink(usize);

impl std::fmt::Write for Sink {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn sample() -> Vec<Insn> {
    let (r1, r2) = (Reg::R1, Reg::R2);
    let mut v = Vec::new();
    for width in [Width::W64, Width::W32] {
        for op in AluOp::ALL {
            v.push(Insn::Alu {
                width,
                op,
                dst: r1,
                src: Source::Imm(i32::MIN),
            });
            v.push(Insn::Alu {
                width,
                op,
                dst: r1,
                src: Source::Reg(r2),
            });
        }
        for cond in JmpCond::ALL {
            v.push(Insn::Jmp {
                width,
                cond,
                dst: r1,
                src: Source::Imm(-1),
                off: i16::MIN,
            });
        }
    }
    for size in Size::ALL {
        for op in AtomicOp::ALL {
            v.push(Insn::Atomic {
                size,
                op,
                dst: r1,
                src: r2,
                off: -8,
            });
        }
        v.push(Insn::Ldx {
            size,
            dst: r1,
            src: r2,
            off: 0,
        });
        v.push(Insn::St {
            size,
            dst: r1,
            off: -4,
            imm: 7,
        });
    }
    v.extend([
        Insn::LdImm64 {
            dst: r1,
            src: LdImm64Src::Imm(u64::MAX),
        },
        Insn::LdImm64 {
            dst: r1,
            src: LdImm64Src::MapValue { fd: 3, off: 8 },
        },
        Insn::Call(CallTarget::Kfunc { btf_id: 9, off: 1 }),
        Insn::Call(CallTarget::Local(-3)),
        Insn::LdInd {
            size: Size::W,
            src: r2,
            imm: -12,
        },
        Insn::Endian {
            kind: Endian::Swap,
            bits: 64,
            dst: r1,
        },
        Insn::Exit,
    ]);
    v
}

#[test]
fn write_insn_does_not_allocate() {
    let insns = sample();
    let mut text = String::with_capacity(1 << 16);
    let mut sink = Sink(0);
    for opts in [DisasmOptions::default(), DisasmOptions { hex: true }] {
        ARMED.with(|a| a.set(true));
        for insn in &insns {
            write_insn(&mut sink, insn, &opts).unwrap();
            write_insn(&mut text, insn, &opts).unwrap();
            text.push('\n');
        }
        ARMED.with(|a| a.set(false));
    }
    let n = COUNT.with(Cell::get);
    assert_eq!(
        n,
        0,
        "write_insn allocated {n} times for {} instructions",
        insns.len() * 2
    );
    assert_eq!(sink.0 + insns.len() * 2, text.len());
    // The counter does count: formatting through `format!` allocates.
    ARMED.with(|a| a.set(true));
    let s = format!("{}", insns.len());
    ARMED.with(|a| a.set(false));
    assert!(
        COUNT.with(Cell::get) > 0,
        "counter saw no allocation for {s}"
    );
}
