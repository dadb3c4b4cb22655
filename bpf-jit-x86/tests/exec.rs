//! End-to-end tests of the driver and the backend: branch relaxation,
//! bpf-to-bpf calls, helper calls, `ld_imm64` resolution, callbacks, and the
//! typed errors for what is not supported yet. Expected values are computed
//! by hand from the programs.

use bpf_isa::arbitrary::scenarios;
use bpf_isa::{assemble, LdImm64Src};
use bpf_jit::{HelperTable, JitError, JitErrorKind, JitOptions};

fn run(src: &str, helpers: &HelperTable) -> u64 {
    let prog = assemble(src).expect("assembles");
    let jit = bpf_jit_x86::compile(&prog, &JitOptions::new(helpers)).expect("compiles");
    // SAFETY: the test programs only touch their stack.
    unsafe { jit.call([0; 5]) }
}

/// A loop whose body is far longer than 127 bytes, so its backward branch
/// and the forward branch over the body need the long forms, while the
/// short jumps elsewhere stay short.
#[test]
fn long_and_short_branches() {
    let mut body = String::new();
    for _ in 0..40 {
        body.push_str("r2 += 3\nr2 ^= 1\n"); // 8 bytes of x86 each pair
    }
    let src = format!(
        "r0 = 0
         r1 = 10
         r2 = 0
        loop:
         if r1 == 0 goto out
         {body}
         r1 += -1
         r0 += 1
         goto loop
        out:
         if r2 != 0 goto skip
         r0 = 99
        skip:
         exit"
    );
    let prog = assemble(&src).expect("assembles");
    let helpers = HelperTable::new();
    let code = bpf_jit_x86::compile_code(&prog, &JitOptions::new(&helpers)).expect("compiles");
    // Every first-pass guess holds (the forward branch over the 320-byte
    // body is guessed long): the one-pass fix-up suffices.
    assert_eq!(code.passes, 1, "{} passes", code.passes);
    // The `if r2 != 0 goto skip` is a 4-byte `test` + 2-byte short `jne`.
    let n = prog.len();
    let jne_at = code.insn_offsets[n - 3] as usize;
    assert_eq!(&code.code[jne_at + 3..jne_at + 5], &[0x75, 0x05]);
    let jit = bpf_jit::JitProgram::new(&code, 0xcc).expect("maps");
    // SAFETY: no memory accesses.
    assert_eq!(unsafe { jit.call([0; 5]) }, 10);
}

/// bpf-to-bpf calls: arguments in r1-r5, r6-r9 preserved, each frame has its
/// own stack, calls nested three deep.
#[test]
fn local_calls_and_frames() {
    // The program and its hand-computed result are shared with the AArch64
    // JIT's tests.
    assert_eq!(
        run(scenarios::LOCAL_CALLS, &HelperTable::new()),
        scenarios::LOCAL_CALLS_RESULT
    );
}

/// Recursion is rejected, as the kernel does (bpf-callgraph's check).
#[test]
fn recursion_is_rejected_naming_the_call() {
    let prog = assemble(
        "call pc f
         exit
       f:
         call pc f
         exit",
    )
    .expect("assembles");
    let Err(e) = bpf_jit_x86::compile(&prog, &JitOptions::new(&HelperTable::new())) else {
        panic!("recursion accepted");
    };
    assert_eq!(e.index, Some(2));
    assert!(matches!(e.kind, JitErrorKind::CallGraph(_)), "{e}");
}

unsafe extern "C" fn sum5(a: u64, b: u64, c: u64, d: u64, e: u64) -> u64 {
    a + 10 * b + 100 * c + 1000 * d + 10000 * e
}

/// Calls `r1` (a JIT-compiled callback) with `r2` and 1, like `bpf_loop` does.
unsafe extern "C" fn call_back(f: u64, ctx: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: `f` is the address of a compiled subprogram, a C-ABI function.
    let f: extern "C" fn(u64, u64, u64, u64, u64) -> u64 = unsafe { core::mem::transmute(f) };
    f(7, ctx, 0, 0, 0) + 1
}

#[test]
fn helpers_get_r1_to_r5_and_keep_r6_to_r9() {
    let src = "
        r6 = 6
        r9 = 9
        r1 = 1
        r2 = 2
        r3 = 3
        r4 = 4
        r5 = 5
        call 1
        r0 += r6
        r0 += r9
        exit";
    let mut h = HelperTable::new();
    h.insert(1, sum5);
    assert_eq!(run(src, &h), 54321 + 15);
}

#[test]
fn ld_imm64_function_address_as_callback() {
    let src = "
        r1 = subprog[cb]
        r2 = 30
        call 2
        exit
      cb:
        r0 = r1
        r0 *= r2
        exit";
    let mut h = HelperTable::new();
    h.insert(2, call_back);
    // cb(7, 30) = 210, plus 1 in the helper.
    assert_eq!(run(src, &h), 211);
}

#[test]
fn ld_imm64_pseudo_sources_through_the_resolver() {
    let src = "
        r1 = map[fd:3]
        r2 = map_value[fd:4]+8
        r0 = r1
        r0 += r2
        exit";
    let prog = assemble(src).expect("assembles");
    let helpers = HelperTable::new();
    let resolve = |slot: usize, src: LdImm64Src| match (slot, src) {
        (0, LdImm64Src::MapFd(3)) => Some(0x1_0000_0000),
        (2, LdImm64Src::MapValue { fd: 4, off: 8 }) => Some(0x2000),
        _ => None,
    };
    let opts = JitOptions::new(&helpers).with_ld_imm64(&resolve);
    let jit = bpf_jit_x86::compile(&prog, &opts).expect("compiles");
    // SAFETY: no memory accesses.
    assert_eq!(unsafe { jit.call([0; 5]) }, 0x1_0000_2000);
}

#[test]
fn unsupported_instructions_are_typed_errors_naming_the_slot() {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    // (`may_goto` compiles now: tests/extras.rs.)
    let cases: [(&str, JitError); 2] = [
        (
            "r6 = r1\nr0 = *(u8 *)skb[4]\nexit",
            JitError::at(
                1,
                JitErrorKind::Unsupported("ld_abs/ld_ind without JitOptions::ld_abs"),
            ),
        ),
        (
            "r0 = 0\ncall 99\nexit",
            JitError::at(1, JitErrorKind::UnknownHelper(99)),
        ),
    ];
    for (src, want) in cases {
        let prog = assemble(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(
            bpf_jit_x86::compile(&prog, &opts).err(),
            Some(want),
            "{src}"
        );
    }
}
