//! Trampolines: native SysV functions that run eBPF programs around (or
//! instead of) a native function. Expected values are computed by hand from
//! the programs and native functions; expected machine code comes from
//! `llvm-mc-19 -triple=x86_64 -x86-asm-syntax=intel -show-encoding`
//! (except the `sub rsp, imm32` form, whose bytes are taken by hand from the
//! Intel SDM: `REX.W 81 /5 id`, since llvm-mc picks the imm8 form).

#![cfg(target_arch = "x86_64")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bpf_jit::{CodeBuffer, ExecMemory, HelperTable, JitOptions, JitProgram};
use bpf_jit_x86::trampoline::{
    emit_code, emit_epilogue, emit_prologue, Side, Trampoline, TrampolineError, TrampolineMode,
};
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter, MemorySizeOptions, NumberBase};

// ---- helpers ---------------------------------------------------------------

fn jit(src: &str) -> Arc<JitProgram> {
    let prog = bpf_isa::assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    Arc::new(bpf_jit_x86::compile(&prog, &JitOptions::new(&helpers)).expect("compiles"))
}

/// Eight u64 that JIT-compiled programs write through a baked-in address.
struct Buf(Box<[AtomicU64; 8]>);

impl Buf {
    fn new() -> Buf {
        Buf(Box::new(std::array::from_fn(|_| AtomicU64::new(0))))
    }
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }
    fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::SeqCst)
    }
    fn vec(&self, n: usize) -> Vec<u64> {
        (0..n).map(|i| self.get(i)).collect()
    }
    fn set(&self, i: usize, v: u64) {
        self.0[i].store(v, Ordering::SeqCst)
    }
}

/// A program that copies `ctx[0..=n]` to `buf[0..=n]`, counts its runs in
/// `buf[7]` and returns 77.
fn recorder(n: usize, buf: &Buf) -> Arc<JitProgram> {
    let mut src = format!("r2 = {:#x} ll\n", buf.addr());
    for i in 0..=n {
        let o = 8 * i;
        src.push_str(&format!(
            "r3 = *(u64 *)(r1 + {o})\n*(u64 *)(r2 + {o}) = r3\n"
        ));
    }
    src.push_str("r3 = *(u64 *)(r2 + 56)\nr3 += 1\n*(u64 *)(r2 + 56) = r3\nr0 = 77\nexit\n");
    jit(&src)
}

/// A program doing `buf[0] = buf[0] * 10 + digit` and returning `digit`.
fn digit(d: u64, buf: &Buf) -> Arc<JitProgram> {
    jit(&format!(
        "r2 = {:#x} ll
         r3 = *(u64 *)(r2 + 0)
         r3 *= 10
         r3 += {d}
         *(u64 *)(r2 + 0) = r3
         r0 = {d}
         exit",
        buf.addr()
    ))
}

// Native originals: f_n(a_0..a_{n-1}) = 7_000_000 + sum (i + 1) * a_i.
extern "C" fn f0() -> u64 {
    7_000_000
}
extern "C" fn f1(a: u64) -> u64 {
    7_000_000 + a
}
extern "C" fn f2(a: u64, b: u64) -> u64 {
    7_000_000 + a + 2 * b
}
extern "C" fn f3(a: u64, b: u64, c: u64) -> u64 {
    7_000_000 + a + 2 * b + 3 * c
}
extern "C" fn f4(a: u64, b: u64, c: u64, d: u64) -> u64 {
    7_000_000 + a + 2 * b + 3 * c + 4 * d
}
extern "C" fn f5(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    7_000_000 + a + 2 * b + 3 * c + 4 * d + 5 * e
}
extern "C" fn f6(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> u64 {
    7_000_000 + a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f
}

fn original(n: usize) -> usize {
    type F0 = extern "C" fn() -> u64;
    type F1 = extern "C" fn(u64) -> u64;
    type F2 = extern "C" fn(u64, u64) -> u64;
    type F3 = extern "C" fn(u64, u64, u64) -> u64;
    type F4 = extern "C" fn(u64, u64, u64, u64) -> u64;
    type F5 = extern "C" fn(u64, u64, u64, u64, u64) -> u64;
    type F6 = extern "C" fn(u64, u64, u64, u64, u64, u64) -> u64;
    match n {
        0 => f0 as F0 as usize,
        1 => f1 as F1 as usize,
        2 => f2 as F2 as usize,
        3 => f3 as F3 as usize,
        4 => f4 as F4 as usize,
        5 => f5 as F5 as usize,
        _ => f6 as F6 as usize,
    }
}

/// Arguments `a_i = 10^i`, so the weighted sum spells the digits `n..1`.
fn args(n: usize) -> Vec<u64> {
    (0..n as u32).map(|i| 10u64.pow(i)).collect()
}

/// `f_n(args(n))`, by hand.
const EXPECTED: [u64; 7] = [
    7_000_000, 7_000_001, 7_000_021, 7_000_321, 7_004_321, 7_054_321, 7_654_321,
];

// ---- behaviour ---------------------------------------------------------------

#[test]
fn argument_counts_0_to_6_with_entry_and_exit_programs() {
    for (n, &expected) in EXPECTED.iter().enumerate() {
        let t_entry = Buf::new();
        let t_exit = Buf::new();
        let mut t = Trampoline::new(n, Some(original(n)), TrampolineMode::Observe).unwrap();
        // Without programs, the trampoline forwards.
        // SAFETY: the original takes n integers; no programs attached.
        assert_eq!(unsafe { t.call(&args(n)) }.unwrap(), expected, "n={n}");
        t.attach_entry(recorder(n, &t_entry)).unwrap();
        t.attach_exit(recorder(n, &t_exit)).unwrap();
        // SAFETY: the recorders read ctx[0..=n] and write their own buffer.
        let r = unsafe { t.call(&args(n)) }.unwrap();
        assert_eq!(
            r, expected,
            "n={n}: observe mode returns the original's result"
        );
        let mut want_entry = args(n);
        want_entry.push(0); // return slot zeroed before the original runs
        assert_eq!(t_entry.vec(n + 1), want_entry, "n={n}");
        let mut want_exit = args(n);
        want_exit.push(expected);
        assert_eq!(t_exit.vec(n + 1), want_exit, "n={n}");
        assert_eq!((t_entry.get(7), t_exit.get(7)), (1, 1), "n={n}");
    }
}

#[test]
fn observe_without_original_returns_zero() {
    for n in [0, 3, 6] {
        let b = Buf::new();
        let mut t = Trampoline::new(n, None, TrampolineMode::Observe).unwrap();
        t.attach_entry(recorder(n, &b)).unwrap();
        t.attach_exit(recorder(n, &b)).unwrap();
        // SAFETY: recorders only.
        assert_eq!(unsafe { t.call(&args(n)) }.unwrap(), 0, "n={n}");
        let mut want = args(n);
        want.push(0);
        assert_eq!(b.vec(n + 1), want);
        assert_eq!(b.get(7), 2);
    }
}

static ORDER: AtomicU64 = AtomicU64::new(0);

/// Original of the ordering tests: appends digit 5 to `buf[0]` (its
/// argument is the buffer's address) and returns 500.
extern "C" fn append5(buf: u64) -> u64 {
    // SAFETY: the tests pass the address of a live `Buf`.
    let cell = unsafe { &*(buf as *const AtomicU64) };
    cell.store(cell.load(Ordering::SeqCst) * 10 + 5, Ordering::SeqCst);
    ORDER.fetch_add(1, Ordering::SeqCst);
    500
}

#[test]
fn several_programs_run_in_order_and_detach() {
    let b = Buf::new();
    let orig = append5 as extern "C" fn(u64) -> u64 as usize;
    let mut t = Trampoline::new(1, Some(orig), TrampolineMode::Observe).unwrap();
    let e1 = t.attach_entry(digit(1, &b)).unwrap();
    let e2 = t.attach_entry(digit(2, &b)).unwrap();
    let x3 = t.attach_exit(digit(3, &b)).unwrap();
    let x4 = t.attach_exit(digit(4, &b)).unwrap();
    assert_eq!(t.attached(Side::Entry), vec![e1, e2]);
    assert_eq!(t.attached(Side::Exit), vec![x3, x4]);
    // SAFETY: the programs and the original write b[0] only.
    assert_eq!(unsafe { t.call(&[b.addr()]) }.unwrap(), 500);
    assert_eq!(b.get(0), 12534);

    // Detach the second entry and the first exit program; the old image is
    // kept alive by the caller and still runs the old chain.
    let old = t.image();
    t.detach(e2).unwrap();
    t.detach(x3).unwrap();
    assert_ne!(old.as_fn_ptr(), t.as_fn_ptr());
    b.set(0, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { t.call(&[b.addr()]) }.unwrap(), 500);
    assert_eq!(b.get(0), 154);
    b.set(0, 0);
    // SAFETY: as above; `old` still holds the detached programs.
    assert_eq!(unsafe { old.call(&[b.addr()]) }.unwrap(), 500);
    assert_eq!(b.get(0), 12534);
    drop(old);

    assert!(matches!(t.detach(e2), Err(TrampolineError::NotAttached(1))));
    t.detach(e1).unwrap();
    t.detach(x4).unwrap();
    b.set(0, 0);
    // SAFETY: only the original is left.
    assert_eq!(unsafe { t.call(&[b.addr()]) }.unwrap(), 500);
    assert_eq!(b.get(0), 5);
}

/// struct_ops-like: a table of native callbacks, one of them a BPF program.
struct Ops {
    combine: extern "C" fn(u64, u64, u64) -> u64,
}

fn native_user(ops: &Ops, x: u64) -> u64 {
    (ops.combine)(x, x + 1, 1000)
}

#[test]
fn replace_mode_bpf_program_as_native_function_pointer() {
    // r0 = ctx[0] * ctx[1] + ctx[2]
    let prog = jit("r0 = *(u64 *)(r1 + 0)
                    r2 = *(u64 *)(r1 + 8)
                    r0 *= r2
                    r2 = *(u64 *)(r1 + 16)
                    r0 += r2
                    exit");
    let mut t = Trampoline::new(3, None, TrampolineMode::Replace).unwrap();
    t.attach_entry(prog).unwrap();
    let image = t.image();
    // SAFETY: a trampoline of 3 arguments is an `extern "C" fn(u64, u64, u64) -> u64`;
    // the program reads ctx[0..3].
    let combine = unsafe {
        core::mem::transmute::<*const u8, extern "C" fn(u64, u64, u64) -> u64>(image.as_fn_ptr())
    };
    let ops = Ops { combine };
    assert_eq!(native_user(&ops, 6), 6 * 7 + 1000);
    assert_eq!(native_user(&ops, 100), 100 * 101 + 1000);

    // An exit program sees the running return value at ctx[3] and rewrites it.
    let plus1 = jit("r0 = *(u64 *)(r1 + 24)\nr0 += 1\nexit");
    t.attach_exit(plus1).unwrap();
    // SAFETY: programs read ctx[0..=3].
    assert_eq!(unsafe { t.call(&[6, 7, 1000]) }.unwrap(), 1043);
}

#[test]
fn replace_mode_with_original() {
    // Entry program's r0 is overwritten by the original's result; the exit
    // program's r0 is returned.
    let b = Buf::new();
    let orig = append5 as extern "C" fn(u64) -> u64 as usize;
    let mut t = Trampoline::new(1, Some(orig), TrampolineMode::Replace).unwrap();
    t.attach_entry(digit(1, &b)).unwrap();
    // SAFETY: the program and original write b[0].
    assert_eq!(unsafe { t.call(&[b.addr()]) }.unwrap(), 500);
    let x = t.attach_exit(digit(3, &b)).unwrap();
    b.set(0, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { t.call(&[b.addr()]) }.unwrap(), 3);
    assert_eq!(b.get(0), 153);
    t.detach(x).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { t.call(&[b.addr()]) }.unwrap(), 500);
}

#[test]
fn replace_mode_entry_only_returns_last_program() {
    let b = Buf::new();
    let mut t = Trampoline::new(0, None, TrampolineMode::Replace).unwrap();
    // SAFETY: nothing attached.
    assert_eq!(unsafe { t.call(&[]) }.unwrap(), 0);
    t.attach_entry(digit(4, &b)).unwrap();
    t.attach_entry(digit(9, &b)).unwrap();
    // SAFETY: the programs write b[0].
    assert_eq!(unsafe { t.call(&[]) }.unwrap(), 9);
    assert_eq!(b.get(0), 49);
}

#[test]
fn errors() {
    assert!(matches!(
        Trampoline::new(7, None, TrampolineMode::Observe),
        Err(TrampolineError::TooManyArgs(7))
    ));
    let t = Trampoline::new(2, None, TrampolineMode::Observe).unwrap();
    // SAFETY: the call is refused before running anything.
    let r = unsafe { t.call(&[1, 2, 3]) };
    assert!(matches!(
        r,
        Err(TrampolineError::ArgCount {
            expected: 2,
            got: 3
        })
    ));
    let mut b = CodeBuffer::default();
    assert!(emit_prologue(&mut b, 7).is_err());
    assert!(emit_epilogue(&mut b, 9).is_err());
}

/// `mov rax, rsp; ret` (llvm-mc: `48 89 e0`, `c3`): returns its entry `rsp`.
const GET_RSP: &[u8] = &[0x48, 0x89, 0xe0, 0xc3];

#[test]
fn calls_are_16_byte_aligned() {
    let get_rsp = ExecMemory::new(GET_RSP, 0xcc).unwrap();
    // r0 = r10: the program's frame pointer, which is its entry rsp - 8.
    let frame = jit("r0 = r10\nexit");
    for n in 0..=6 {
        let t =
            Trampoline::new(n, Some(get_rsp.as_ptr() as usize), TrampolineMode::Observe).unwrap();
        // SAFETY: GET_RSP touches nothing.
        let rsp = unsafe { t.call(&args(n)) }.unwrap();
        // At a call rsp % 16 == 0, so after the return address is pushed it is 8.
        assert_eq!(rsp % 16, 8, "n={n}: original entered with rsp={rsp:#x}");

        let mut t = Trampoline::new(n, None, TrampolineMode::Replace).unwrap();
        t.attach_entry(Arc::clone(&frame)).unwrap();
        // SAFETY: the program reads no memory.
        let fp = unsafe { t.call(&args(n)) }.unwrap();
        assert_eq!(fp % 16, 0, "n={n}: program frame pointer {fp:#x}");
    }
}

/// A hand-written caller (bytes from llvm-mc of the text below) that sets
/// every callee-saved register to a known value, calls `rdi` with an
/// aligned stack, and stores what the callee left in them to `rsi[0..6]`.
///
/// ```text
/// push rbx; push rbp; push r12; push r13; push r14; push r15; push rsi
/// movabs rbx, 0x1111..; movabs rbp, 0x6666..; movabs r12, 0x2222..
/// movabs r13, 0x3333..; movabs r14, 0x4444..; movabs r15, 0x5555..
/// call rdi
/// pop rsi
/// mov [rsi], rbx; mov [rsi+8], rbp; mov [rsi+16], r12
/// mov [rsi+24], r13; mov [rsi+32], r14; mov [rsi+40], r15
/// pop r15; pop r14; pop r13; pop r12; pop rbp; pop rbx; ret
/// ```
const HARNESS: &[u8] = &[
    0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57, 0x56, 0x48, 0xbb, 0x11, 0x11, 0x11,
    0x11, 0x11, 0x11, 0x11, 0x11, 0x48, 0xbd, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x49,
    0xbc, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x49, 0xbd, 0x33, 0x33, 0x33, 0x33, 0x33,
    0x33, 0x33, 0x33, 0x49, 0xbe, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44, 0x49, 0xbf, 0x55,
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0xff, 0xd7, 0x5e, 0x48, 0x89, 0x1e, 0x48, 0x89, 0x6e,
    0x08, 0x4c, 0x89, 0x66, 0x10, 0x4c, 0x89, 0x6e, 0x18, 0x4c, 0x89, 0x76, 0x20, 0x4c, 0x89, 0x7e,
    0x28, 0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b, 0xc3,
];

#[test]
fn callee_saved_registers_preserved() {
    let harness = ExecMemory::new(HARNESS, 0xcc).unwrap();
    // SAFETY: HARNESS is a SysV function of (callee, out) per its listing.
    let run = unsafe {
        core::mem::transmute::<*const u8, extern "C" fn(*const u8, *mut u64)>(harness.as_ptr())
    };
    let b = Buf::new();
    // Programs that use r6-r9 (rbx, r13, r14, r15) and their stack.
    let clobber = jit("r6 = 1\nr7 = 2\nr8 = 3\nr9 = 4\n*(u64 *)(r10 - 8) = r6\nr0 = r9\nexit");
    let mut t = Trampoline::new(
        0,
        Some(f0 as extern "C" fn() -> u64 as usize),
        TrampolineMode::Replace,
    )
    .unwrap();
    t.attach_entry(Arc::clone(&clobber)).unwrap();
    t.attach_entry(recorder(0, &b)).unwrap();
    t.attach_exit(clobber).unwrap();
    let mut out = [0u64; 6];
    run(t.as_fn_ptr(), out.as_mut_ptr());
    assert_eq!(
        out,
        [
            0x1111_1111_1111_1111,
            0x6666_6666_6666_6666,
            0x2222_2222_2222_2222,
            0x3333_3333_3333_3333,
            0x4444_4444_4444_4444,
            0x5555_5555_5555_5555,
        ]
    );
    assert_eq!(b.get(7), 1, "the recorder ran");
}

// ---- emit table ----------------------------------------------------------------

fn disasm(bytes: &[u8]) -> String {
    let mut f = IntelFormatter::new();
    let o = f.options_mut();
    o.set_space_after_operand_separator(true);
    o.set_space_between_memory_add_operators(true);
    o.set_number_base(NumberBase::Decimal);
    o.set_signed_immediate_operands(true);
    o.set_memory_size_options(MemorySizeOptions::Always);
    let mut d = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        let insn = d.decode();
        let mut s = String::new();
        if insn.is_invalid() {
            s.push_str("(bad)");
        } else {
            f.format(&insn, &mut s);
        }
        out.push(s);
    }
    out.join("; ")
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Row {
    what: &'static str,
    bytes: Vec<u8>,
    hex: &'static str,
    asm: &'static str,
}

fn emitted(f: impl FnOnce(&mut CodeBuffer)) -> Vec<u8> {
    let mut b = CodeBuffer::default();
    f(&mut b);
    b.take_bytes()
}

#[test]
fn emit_table_prologue_epilogue() {
    let rows = [
        Row {
            what: "prologue, 0 args",
            bytes: emitted(|b| emit_prologue(b, 0).unwrap()),
            hex: "55 48 89 e5 48 81 ec 10 00 00 00 48 c7 45 f0 00 00 00 00",
            asm: "push rbp; mov rbp, rsp; sub rsp, 16; mov qword ptr [rbp - 16], 0",
        },
        Row {
            what: "prologue, 2 args",
            bytes: emitted(|b| emit_prologue(b, 2).unwrap()),
            hex: "55 48 89 e5 48 81 ec 20 00 00 00 48 89 7d e0 48 89 75 e8 48 c7 45 f0 00 00 00 00",
            asm: "push rbp; mov rbp, rsp; sub rsp, 32; mov qword ptr [rbp - 32], rdi; \
                  mov qword ptr [rbp - 24], rsi; mov qword ptr [rbp - 16], 0",
        },
        Row {
            what: "prologue, 6 args",
            bytes: emitted(|b| emit_prologue(b, 6).unwrap()),
            hex: "55 48 89 e5 48 81 ec 40 00 00 00 48 89 7d c0 48 89 75 c8 48 89 55 d0 \
                  48 89 4d d8 4c 89 45 e0 4c 89 4d e8 48 c7 45 f0 00 00 00 00",
            asm: "push rbp; mov rbp, rsp; sub rsp, 64; mov qword ptr [rbp - 64], rdi; \
                  mov qword ptr [rbp - 56], rsi; mov qword ptr [rbp - 48], rdx; \
                  mov qword ptr [rbp - 40], rcx; mov qword ptr [rbp - 32], r8; \
                  mov qword ptr [rbp - 24], r9; mov qword ptr [rbp - 16], 0",
        },
        Row {
            what: "epilogue, 2 args",
            bytes: emitted(|b| emit_epilogue(b, 2).unwrap()),
            hex: "48 8b 45 f0 c9 c3",
            asm: "mov rax, qword ptr [rbp - 16]; leave; ret",
        },
        Row {
            // 6 slots: a 48-byte frame, ctx[5] at rbp - 8.
            what: "epilogue, 5 args",
            bytes: emitted(|b| emit_epilogue(b, 5).unwrap()),
            hex: "48 8b 45 f8 c9 c3",
            asm: "mov rax, qword ptr [rbp - 8]; leave; ret",
        },
        Row {
            what: "whole trampoline, 1 arg, replace, entry + original + exit",
            bytes: emit_code(
                1,
                Some(0x1234_5678_9abc_def0),
                TrampolineMode::Replace,
                &[0x1111_2222_3333_4444],
                &[0x5555_6666_7777_8888],
            )
            .unwrap(),
            hex: "55 48 89 e5 48 81 ec 10 00 00 00 48 89 7d f0 48 c7 45 f8 00 00 00 00 \
                  48 89 e7 48 b8 44 44 33 33 22 22 11 11 ff d0 48 89 45 f8 \
                  48 8b 7d f0 48 b8 f0 de bc 9a 78 56 34 12 ff d0 48 89 45 f8 \
                  48 89 e7 48 b8 88 88 77 77 66 66 55 55 ff d0 48 89 45 f8 \
                  48 8b 45 f8 c9 c3",
            asm: "push rbp; mov rbp, rsp; sub rsp, 16; mov qword ptr [rbp - 16], rdi; \
                  mov qword ptr [rbp - 8], 0; \
                  mov rdi, rsp; mov rax, 1229801703532086340; call rax; mov qword ptr [rbp - 8], rax; \
                  mov rdi, qword ptr [rbp - 16]; mov rax, 1311768467463790320; call rax; \
                  mov qword ptr [rbp - 8], rax; \
                  mov rdi, rsp; mov rax, 6148933456521300104; call rax; mov qword ptr [rbp - 8], rax; \
                  mov rax, qword ptr [rbp - 8]; leave; ret",
        },
    ];
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for row in &rows {
        assert_eq!(hex(&row.bytes), norm(row.hex), "{}: bytes", row.what);
        assert_eq!(
            disasm(&row.bytes),
            norm(row.asm),
            "{}: disassembly",
            row.what
        );
    }
}

#[test]
fn private_stack_programs_are_refused() {
    let prog = bpf_isa::assemble("r0 = 1\nexit").expect("assembles");
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers).with_private_stack(true);
    let p = Arc::new(bpf_jit_x86::compile(&prog, &opts).expect("compiles"));
    let mut t = Trampoline::new(1, None, TrampolineMode::Observe).unwrap();
    assert!(matches!(
        t.attach_entry(p),
        Err(TrampolineError::PrivateStack)
    ));
    // The same program on the native stack attaches.
    t.attach_entry(jit("r0 = 1\nexit"))
        .expect("native-stack program attaches");
}
