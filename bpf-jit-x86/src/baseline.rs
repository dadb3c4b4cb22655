//! The baseline tier: one pass from bytecode to x86-64 machine code.
//!
//! [`Baseline`] compiles straight from the 8-byte slots as a loader
//! receives them, with no decoded [`bpf_isa::Program`], no plan and no
//! layout passes. A loop walks the slots once. It lowers the most common
//! slots itself (register-register ALU and `mov`: one lookup in `RRF`)
//! and calls one handler for each of the others through a table indexed
//! by the opcode byte (`HANDLERS`; each handler is small and instantiated
//! per opcode, so the hot state stays in registers). A handler checks the
//! slot against the decoder's field rules and writes to an unchecked
//! cursor (the loop checks the room once per run of slots). The hot forms
//! come from static tables of whole encodings (`RRF`, `GRP`, `ONE`, `LDF`,
//! `STF`, `STK`) built at compile time from the backend's encoder
//! ([`crate::enc`]'s `const fn` forms), and checked entry by entry, as
//! written here, against its full encoders; the rarer forms go through
//! those encoders ([`enc::Sink`]).
//! Subprograms are found as the calls to them go by (a call back into code
//! already lowered as another subprogram's makes the compile start over
//! with every start marked first). The callee-saved registers each
//! subprogram uses are known only at the end: each prologue and each
//! `exit` keeps 7 bytes of room, filled in then with that subprogram's
//! pushes or pops and a nop.
//! Forward branches take the 4-byte form and are patched at the end;
//! backward ones take the short form when it reaches.
//!
//! The code follows the optimizing compiler's conventions ([`crate::Compiler`]):
//! the same register map ([`crate::REG_MAP`]), prologue head (so a tail
//! call from another program enters it at [`crate::TAIL_CALL_ENTRY_OFFSET`]),
//! frame layout and helper calls, with the same eBPF semantics (division by
//! zero, `INT_MIN / -1`, shift masking, zero-extension). It does none of
//! that compiler's optimizations (leaf inlining, divisor ranges, address
//! forwarding, compare fusion, short forward branches).
//!
//! Whatever it does not handle, it leaves to the optimizing compiler
//! (see [`Baseline::try_compile`]): tail calls, `ld_imm64` function
//! references and pseudo sources the options' resolver does not resolve
//! (map, map value, BTF id and map index sources it resolves are loaded
//! as the optimizing compiler loads them), kfunc calls, `callx`, `may_goto`, `addr_space_cast`, `ld_abs`/`ld_ind`,
//! `bpf_fastcall` helpers, constant blinding, private stacks, more than 64
//! subprograms, and every program the optimizing compiler
//! would reject (invalid encodings, bad branch targets, recursion, …).
//! [`Baseline::compile`] does that fallback itself, so it accepts and
//! rejects exactly what `Program::decode` plus [`crate::Compiler::compile`] do.

use bpf_isa::LdImm64Src;
use bpf_jit::{
    JitError, JitErrorKind, JitOptions, JitProgram, DEFAULT_STACK_DEPTH, TAIL_CALL_HELPER,
};

use crate::direct::{self, NOPS};
use crate::enc::{self, Alu1, Cc, Gpr, Mem, Shift, Sink, Sz};
use crate::{Compiler, X86Masm, AUX, AUX2, REG_MAP};

/// Native register of each eBPF register (`r0`..`r10`; fields above 10
/// map to `rax`: their code is lowered, then thrown away, because
/// `finish` refuses a program naming such a register).
const X: [Gpr; 16] = {
    let mut t = [Gpr::RAX; 16];
    let mut i = 0;
    while i < REG_MAP.len() {
        t[i] = REG_MAP[i];
        i += 1;
    }
    t
};

/// The condition of each conditional jump op (`code >> 4`; `JSET` tests,
/// so its condition is "not zero").
const CC: [Option<Cc>; 16] = [
    None,
    Some(Cc::E),  // jeq
    Some(Cc::A),  // jgt
    Some(Cc::Ae), // jge
    Some(Cc::Ne), // jset
    Some(Cc::Ne), // jne
    Some(Cc::G),  // jsgt
    Some(Cc::Ge), // jsge
    None,
    None,
    Some(Cc::B),  // jlt
    Some(Cc::Be), // jle
    Some(Cc::L),  // jslt
    Some(Cc::Le), // jsle
    None,
    None,
];

/// For a slot's register byte (dst in the low nibble, src in the high):
/// bit `dst` and bit `src` set.
const NIBBLES: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = 1 << (b & 15) | 1 << (b >> 4);
        b += 1;
    }
    t
};

/// A register-direct form `[REX] opc ModRM` (`reg` in the reg field,
/// `rm` in r/m) as the shared encoder writes it ([`enc::form_reg`]),
/// packed as a table entry: the bytes (at most 3) in bits 0..24, their
/// count in bits 24..32.
const fn reg_form(w64: bool, opc: u8, reg: u8, rm: u8) -> u32 {
    let sz = if w64 { Sz::Q } else { Sz::W };
    pack3(enc::form_reg(sz, opc, reg, Gpr::new(rm)))
}

/// An opcode-register form `[REX] op+r` ([`enc::form_opreg`]), packed as
/// [`reg_form`] packs.
const fn opreg_form(w64: bool, op: u8, r: u8) -> u32 {
    pack3(enc::form_opreg(w64, op, Gpr::new(r)))
}

/// `(bytes, count)` of a form of at most 3 bytes, as one `u32`.
const fn pack3((v, n): (u64, u32)) -> u32 {
    assert!(n <= 3, "a register form longer than 3 bytes");
    v as u32 | n << 24
}

/// The register-register operations of [`RRF`], by index: `op r/m, r`
/// for [`Alu1`]'s operations at their own index, and `mov` at 2 (where
/// `adc` would be; `adc` and `sbb` are never emitted).
const RR_OPS: [u8; 8] = [0x01, 0x09, 0x89, 0x19, 0x21, 0x29, 0x31, 0x39];

/// The row of [`RRF`] of an operation ([`RR_OPS`]) at a width.
#[inline(always)]
const fn rr_row(w64: bool, op: usize) -> usize {
    (w64 as usize) * 8 + op
}

/// [`RR_OPS`]' index of `mov`.
const RR_MOV: usize = 2;

/// By row (`width * 8 + operation`: 32-bit rows 0..8, 64-bit rows
/// 8..16; operations as in [`RR_OPS`]) and a slot's register byte (dst in the low nibble, src in the high): the
/// whole form of `op dst, src` ([`reg_form`], src in the reg field), or 0
/// where the operation writes dst and dst is r10 (a slot left to the
/// optimizing compiler). A 64-bit `mov` of a register to itself is no
/// code: a form of 0 bytes (`0x90` keeps the entry non-empty). Instead of
/// [`enc`]'s general assembly (a test checks both give the same bytes).
static RRF: [[u32; 256]; 16] = {
    let mut t = [[0u32; 256]; 16];
    let mut w = 0;
    while w < 2 {
        let mut op = 0;
        while op < 8 {
            let mut b = 0;
            while b < 256 {
                let (d, s) = (X[b & 15].num(), X[b >> 4].num());
                let writes = RR_OPS[op] != 0x39;
                if writes && b & 15 == 10 {
                    // Empty: dst is r10.
                } else if w == 1 && op == RR_MOV && b & 15 == b >> 4 {
                    t[8 + op][b] = 0x90;
                } else {
                    t[w * 8 + op][b] = reg_form(w == 1, RR_OPS[op], s, d);
                }
                b += 1;
            }
            op += 1;
        }
        w += 1;
    }
    t
};

/// By opcode byte: the row of [`RRF`] (`width * 8 + operation`) of the
/// register-register ALU and `mov` opcodes, which the slot loop lowers
/// itself when the slot's offset and immediate are zero; [`NO_ROW`] for
/// the other opcodes.
static RR_ROW: [u8; 256] = {
    let mut t = [NO_ROW; 256];
    let mut k = 0;
    // add, sub, or, and, xor, mov (by `code >> 4`) in their x86 order.
    let ops: [(u8, usize); 6] = [
        (0x0, Alu1::Add as usize),
        (0x1, Alu1::Sub as usize),
        (0x4, Alu1::Or as usize),
        (0x5, Alu1::And as usize),
        (0xa, Alu1::Xor as usize),
        (0xb, RR_MOV),
    ];
    while k < ops.len() {
        let (op, row) = ops[k];
        t[(op << 4 | 0x0c) as usize] = row as u8;
        t[(op << 4 | 0x0f) as usize] = 8 + row as u8;
        k += 1;
    }
    t
};

/// [`RR_ROW`]'s entry of the other opcodes.
const NO_ROW: u8 = 0xff;

/// By width, group operation and an eBPF register: the form of a group
/// opcode on that register, `83 /op` (`op` 0..8: [`Alu1`] with an 8-bit
/// immediate; `81` for a 32-bit one is two less in the opcode byte) or
/// `C1 /(op - 8)` (`op` 8..16: [`Shift`] by an 8-bit count), without
/// the immediate ([`reg_form`]); 0 where the operation writes the
/// register and it is r10.
static GRP: [[[u32; 16]; 16]; 2] = {
    let mut t = [[[0u32; 16]; 16]; 2];
    let mut w = 0;
    while w < 2 {
        let mut op = 0;
        while op < 16 {
            let mut r = 0;
            while r < 16 {
                let (opc, ext) = if op < 8 { (0x83, op) } else { (0xc1, op - 8) };
                let writes = op != Alu1::Cmp as usize;
                if !(writes && r == 10) {
                    t[w][op][r] = reg_form(w == 1, opc, ext as u8, X[r].num());
                }
                r += 1;
            }
            op += 1;
        }
        w += 1;
    }
    t
};

/// The memory form of `opc` at size `sz` on `[base + disp8]` (`reg` in
/// the reg field) as the shared encoder writes it without its
/// displacement ([`enc::form_mem_disp8`]), as a [`put_mem`] entry: the
/// bytes (at most 4) in bits 0..32, their count in bits 32..40, and
/// [`NEED_DISP`] when the base takes a displacement even when it is 0
/// (rbp, r13).
const fn mem_form(sz: Sz, opc: u16, reg: u8, base: u8) -> u64 {
    let (v, n) = enc::form_mem_disp8(sz, opc, reg, Gpr::new(base));
    assert!(n <= 4, "a memory form longer than 4 bytes");
    let need = if base & 7 == 5 { NEED_DISP } else { 0 };
    v | (n as u64) << 32 | need
}

/// [`mem_form`]'s flag: the base register takes a displacement even
/// when it is 0.
const NEED_DISP: u64 = 1 << 40;

/// A memory operation of [`mem_forms`]: the operand size (that of the
/// register; a `movzx` load is `W`) and the opcode (one byte, or `0F xx`
/// as `0xxx0F`).
type MemOp = (Sz, u16);

/// By access size (`(code >> 3) & 3`: word, half, byte, double word) and a
/// slot's register byte (dst in the low nibble, src in the high): the
/// [`mem_form`] of `ops[size]`; a load (`load`) has dst in the reg field
/// and src as the base, and an empty entry when dst is r10; a store the
/// other way round.
const fn mem_forms(ops: [MemOp; 4], load: bool) -> [[u64; 256]; 4] {
    let mut t = [[0u64; 256]; 4];
    let mut k = 0;
    while k < 4 {
        let (sz, opc) = ops[k];
        let mut b = 0;
        while b < 256 {
            let (d, s) = (X[b & 15].num(), X[b >> 4].num());
            if !load {
                t[k][b] = mem_form(sz, opc, s, d);
            } else if b & 15 != 10 {
                t[k][b] = mem_form(sz, opc, d, s);
            }
            b += 1;
        }
        k += 1;
    }
    t
}

/// The zero-extending loads `dst = *(src + disp)` (`mov r32`, `movzx
/// r32`, `mov r64`) by size and register byte ([`mem_forms`]).
static LDF: [[u64; 256]; 4] = mem_forms(
    [
        (Sz::W, 0x8b),
        (Sz::W, 0xb7_0f),
        (Sz::W, 0xb6_0f),
        (Sz::Q, 0x8b),
    ],
    true,
);

/// The stores `*(dst + disp) = src` by size and register byte
/// ([`mem_forms`]).
static STF: [[u64; 256]; 4] = mem_forms(
    [(Sz::W, 0x89), (Sz::H, 0x89), (Sz::B, 0x88), (Sz::Q, 0x89)],
    false,
);

/// The stores `*(dst + disp) = imm` (`C7 /0`, `C6 /0` for a byte), without
/// the immediate, by size and register byte ([`mem_forms`]; with src 0,
/// the register byte is dst, and the reg field `rax`'s 0 is the `/0`).
static STK: [[u64; 256]; 4] = mem_forms(
    [(Sz::W, 0xc7), (Sz::H, 0xc7), (Sz::B, 0xc6), (Sz::Q, 0xc7)],
    false,
);

/// The x86 operation of add, sub, or, and, xor (by `code >> 4`; the
/// other entries are never read).
const ALU: [Alu1; 16] = {
    let mut t = [Alu1::Add; 16];
    t[1] = Alu1::Sub;
    t[4] = Alu1::Or;
    t[5] = Alu1::And;
    t[10] = Alu1::Xor;
    t
};

/// Most bytes one eBPF instruction lowers to (a division with its checks is
/// about 40, a helper call 13, an `exit` 12), with room to spare.
const MAX_INSN_BYTES: usize = 128;

/// Most bytes one slot's lowering writes: its instruction, after a
/// prologue (25 bytes) when it starts a subprogram. The buffer has this
/// much, plus one 8-byte store, free before each slot is lowered.
const SLOT_MAX_BYTES: usize = MAX_INSN_BYTES + 32;

/// Slot offset marking the second slot of an `ld_imm64` (not a branch target).
const NOT_A_START: u32 = u32::MAX;
/// Slot offset marking a subprogram start not reached yet.
const START_MARK: u32 = u32::MAX - 1;

/// Raw fields of a slot.
const SRC_FIELD: u64 = 0xf000;
const DST_FIELD: u64 = 0x0f00;
const OFF_FIELD: u64 = 0xffff_0000;
const IMM_FIELD: u64 = 0xffff_ffff_0000_0000;

/// The one-pass compiler. Reuse one value for many programs: its tables
/// (and those of the optimizing compiler it falls back to) are kept.
///
/// ```
/// use bpf_jit::{HelperTable, JitOptions};
///
/// let helpers = HelperTable::new();
/// let opts = JitOptions::new(&helpers);
/// let mut jit = bpf_jit_x86::Baseline::new();
/// // r0 = 7; r0 *= 6; exit
/// let code = [
///     0xb7, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
///     0x27, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
///     0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
/// ];
/// let prog = jit.try_compile(&code, &opts).unwrap().expect("the baseline handles this one");
/// // SAFETY: the program touches no memory.
/// assert_eq!(unsafe { prog.call([0; 5]) }, 42);
/// ```
#[derive(Debug, Default)]
pub struct Baseline {
    code: Vec<u8>,
    /// Native offset of each slot's code ([`NOT_A_START`] for an
    /// `ld_imm64`'s second slot, [`START_MARK`] for a subprogram start
    /// ahead).
    offs: Vec<u32>,
    /// Forward branches: offset of the 4-byte displacement, target slot.
    fixups: Vec<(u32, u32)>,
    /// bpf-to-bpf call sites: site slot, target slot.
    calls: Vec<(u32, u32)>,
    /// Emitted bpf-to-bpf calls: offset of the displacement, target slot.
    call_fixups: Vec<(u32, u32)>,
    /// Entry offset of each subprogram (where its `nop5` starts).
    entries: Vec<u32>,
    /// Subprogram start slots, sorted (the main one, 0, first).
    starts: Vec<u32>,
    /// Offset of each frame's `sub rsp` immediate (the room for the
    /// callee-saved pushes follows it).
    frames: Vec<u32>,
    /// Offset of the room for the callee-saved pops in each `exit`.
    exits: Vec<u32>,
    /// Registers named by the program (bit `i` for `ri`).
    used: u32,
    /// Registers named by each subprogram (in `starts` order).
    sub_used: Vec<u32>,
    /// Call-graph edges (caller, callee) by subprogram index.
    edges: Vec<(u16, u16)>,
    /// The depth-first search's path: subprogram, next edge to follow.
    path: Vec<(u16, usize)>,
    /// The optimizing compiler, for what this one leaves to it.
    full: Compiler,
}

/// Cursor writing into the code buffer's spare capacity.
#[derive(Clone, Copy)]
struct Out {
    p: *mut u8,
}

impl Out {
    /// Writes the low `n` bytes of `v` (`n <= 8`).
    #[inline(always)]
    fn put(&mut self, v: u64, n: usize) {
        // SAFETY: before each slot is lowered, the buffer has
        // `SLOT_MAX_BYTES + 8` bytes of capacity past the cursor, and no
        // slot writes more than `SLOT_MAX_BYTES` (a prologue and
        // `MAX_INSN_BYTES`); the cursor only moves past what was written.
        unsafe {
            self.p.cast::<u64>().write_unaligned(v);
            self.p = self.p.add(n);
        }
    }

    /// Writes the low `n` bytes of `v`, then the low `m` of `t` (`m` is 1,
    /// 2 or 4; `n + m <= 8`): two stores, the second over what the first
    /// wrote past `n` bytes.
    #[inline(always)]
    fn put_then(&mut self, v: u64, n: usize, t: u64, m: usize) {
        // SAFETY: as in `put`; every caller's `n + m` is at most 8, so
        // both stores end within the first store's 8 bytes.
        unsafe {
            self.p.cast::<u64>().write_unaligned(v);
            let q = self.p.add(n);
            match m {
                1 => q.write(t as u8),
                2 => q.cast::<u16>().write_unaligned(t as u16),
                _ => q.cast::<u32>().write_unaligned(t as u32),
            }
            self.p = q.add(m);
        }
    }

    /// The last byte written.
    #[inline(always)]
    fn last(&self) -> *mut u8 {
        self.p.wrapping_sub(1)
    }

    /// Points the rel8 at `pos` (a byte this cursor wrote, a short way
    /// back) to the cursor.
    #[inline(always)]
    fn land8(&mut self, pos: *mut u8) {
        // Internal sequences are far shorter than 127 bytes.
        let d = (self.p as usize - pos as usize - 1) as u8;
        // SAFETY: `pos` is a byte written by this cursor, in the buffer.
        unsafe { pos.write(d) };
    }
}

impl Sink for Out {
    #[inline(always)]
    fn put_le(&mut self, v: u64, len: u32) {
        self.put(v, len as usize);
    }

    #[inline(always)]
    fn put_le2(&mut self, a: u64, len_a: u32, b: u64, len_b: u32) {
        self.put(a, len_a as usize);
        self.put(b, len_b as usize);
    }
}

/// Pushes `x` onto `v` if it has room (else a miss, which the capacity
/// reserved up front rules out): no growth path in the handlers.
#[inline(always)]
fn push_reserved<T>(v: &mut Vec<T>, x: T) -> Step<()> {
    if v.len() == v.capacity() {
        return Err(Fallback);
    }
    let len = v.len();
    // SAFETY: `len < capacity`: the slot is allocated, and the first
    // `len + 1` elements are initialized once it is written.
    unsafe {
        v.as_mut_ptr().add(len).write(x);
        v.set_len(len + 1);
    }
    Ok(())
}

/// Writes the register form `e` ([`reg_form`]: [`RRF`], [`GRP`]);
/// `None` for an empty entry (dst is r10).
#[inline(always)]
fn put_reg(o: &mut Out, e: u32) -> Step<()> {
    if e == 0 {
        return Err(Fallback);
    }
    o.put(u64::from(e), (e >> 24) as usize);
    Ok(())
}

/// Writes `83 /op ib` or `81 /op id` from the [`GRP`] entry `e` of the
/// 8-bit form, with `imm` (`6B`/`69` for `imul` likewise, from [`ONE`]).
#[inline(always)]
fn put_grp_imm(o: &mut Out, e: u32, imm: i32) -> Step<()> {
    if e == 0 {
        return Err(Fallback);
    }
    let n = (e >> 24) as usize;
    if imm as i8 as i32 == imm {
        o.put_then(u64::from(e), n, u64::from(imm as u8), 1);
    } else {
        // 81 instead of 83: the opcode is the byte before the ModRM.
        let form = u64::from(e) - (2 << (8 * n - 16));
        o.put_then(form, n, u64::from(imm as u32), 4);
    }
    Ok(())
}

/// Writes `C1 /op ib` from the [`GRP`] entry `e` (not empty), with `ib`.
#[inline(always)]
fn put_grp_ib(o: &mut Out, e: u32, ib: u8) {
    o.put_then(u64::from(e), (e >> 24) as usize, u64::from(ib), 1);
}

/// Writes the memory form `e` ([`mem_form`]: [`LDF`], [`STF`], [`STK`])
/// with the displacement `disp`, in its shortest form (none, 8 or 32
/// bits); `None` for an empty entry (dst is r10).
#[inline(always)]
fn put_mem(o: &mut Out, e: u64, disp: i16) -> Step<()> {
    if e == 0 {
        return Err(Fallback);
    }
    let n = ((e >> 32) & 0xff) as usize;
    // ModRM is the last byte: mod 01 (disp8) in the entry.
    let modrm_mod = 0x40u64 << (8 * n - 8);
    if disp == 0 && e & NEED_DISP == 0 {
        o.put(e - modrm_mod, n);
    } else if disp as i8 as i16 == disp {
        o.put_then(e, n, u64::from(disp as u8), 1);
    } else {
        o.put_then(e + modrm_mod, n, u64::from(i32::from(disp) as u32), 4);
    }
    Ok(())
}

/// `[base + disp]`.
#[inline(always)]
fn at(base: Gpr, off: i16) -> Mem {
    Mem {
        base,
        disp: i32::from(off),
    }
}

/// `dst = v` for any 64-bit value, in the shortest form.
#[inline(always)]
fn mov_imm64(o: &mut Out, dst: Gpr, v: u64) {
    if let Ok(v) = u32::try_from(v) {
        enc::mov_r32_imm(o, dst, v);
    } else if let Ok(i) = i32::try_from(v as i64) {
        enc::mov_r64_simm(o, dst, i);
    } else {
        enc::movabs(o, dst, v);
    }
}

/// `mov dst, src` (64-bit; nothing when they are the same).
#[inline(always)]
fn mov64(o: &mut Out, dst: Gpr, src: Gpr) {
    if dst != src {
        enc::mov_rr(o, Sz::Q, dst, src);
    }
}

/// Grows `code`, written up to the cursor `p`; returns the cursor in the
/// new buffer (whose start `c` now has).
#[cold]
#[inline(never)]
fn regrow(code: &mut Vec<u8>, c: &mut Ctx<'_>, p: *mut u8) -> *mut u8 {
    let at = c.at(p) as usize;
    // SAFETY: the first `at` bytes were written.
    unsafe { code.set_len(at) };
    code.reserve(SLOT_MAX_BYTES * 64);
    let base = code.as_mut_ptr();
    c.base = base;
    base.wrapping_add(at)
}

/// Why a one-pass lowering stopped (internal).
#[derive(Clone, Copy)]
enum Miss {
    /// The program is left to the optimizing compiler.
    Fallback,
    /// A subprogram start was found late: lower again with every start
    /// marked first.
    Rescan,
}
use self::Miss::Fallback;

type Step<T> = Result<T, Miss>;

impl Baseline {
    /// A compiler with nothing allocated yet.
    pub fn new() -> Baseline {
        Baseline::default()
    }

    /// Compiles `bytecode` (8-byte slots, little-endian) into executable
    /// memory: in one pass when [`Baseline::try_compile`] handles it,
    /// otherwise `Program::decode` and the optimizing compiler (whose
    /// errors, decoding ones as [`JitErrorKind::Decode`], are returned).
    pub fn compile(
        &mut self,
        bytecode: &[u8],
        opts: &JitOptions<'_>,
    ) -> Result<JitProgram, JitError> {
        if let Some(p) = self.try_compile(bytecode, opts)? {
            return Ok(p);
        }
        let prog = bpf_isa::Program::decode(bytecode)
            .map_err(|e| JitError::at(e.index, JitErrorKind::Decode(e.kind)))?;
        self.full.compile(&prog, opts)
    }

    /// The one-pass compile alone: `Ok(None)` when the program needs the
    /// optimizing compiler (see the module documentation), `Err` only when
    /// executable memory cannot be had. A program it compiles is one that
    /// `Program::decode` and [`crate::Compiler::compile`] accept, with the
    /// same behaviour when run.
    pub fn try_compile(
        &mut self,
        bytecode: &[u8],
        opts: &JitOptions<'_>,
    ) -> Result<Option<JitProgram>, JitError> {
        if opts.blind_constants.is_some() || opts.private_stack || self.full.masm.has_fastcall() {
            return Ok(None);
        }
        let (words, rest) = bytecode.as_chunks::<8>();
        if !rest.is_empty() || words.is_empty() || words.len() >= (START_MARK / 2) as usize {
            return Ok(None);
        }
        // Subprograms are found as the calls to them go by. A call back
        // into code already lowered as part of another subprogram means
        // a start was missed: then all starts are marked first and the
        // program is lowered again.
        let done = match self.emit(words, opts, false) {
            Err(Miss::Rescan) => self.emit(words, opts, true),
            r => r,
        };
        if done.is_err() || self.finish().is_err() {
            return Ok(None);
        }
        JitProgram::from_parts(
            &self.code,
            self.entries.clone(),
            0,
            false,
            Vec::new(),
            <X86Masm as bpf_jit::MacroAssembler>::PAD_BYTE,
            &direct::X86_SITE_CODEC,
        )
        .map(Some)
    }

    /// Marks the target slot of every bpf-to-bpf call as a subprogram
    /// start in `offs` (the main one, slot 0, needs no mark).
    fn mark_starts(&mut self, words: &[[u8; 8]]) -> Step<()> {
        let n = words.len();
        let mut i = 0;
        while let Some(w) = words.get(i) {
            let w = u64::from_le_bytes(*w);
            match w as u8 {
                0x18 => i += 1,
                0x85 if (w >> 12) & 15 == 1 => {
                    let t = i as i64 + 1 + i64::from((w >> 32) as i32);
                    if t < 0 || t >= n as i64 {
                        return Err(Miss::Fallback);
                    }
                    if t > 0 {
                        self.offs[t as usize] = START_MARK;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }

    /// Acyclic call graph, every subprogram reachable from the main one.
    fn check_call_graph(&mut self) -> Step<()> {
        let k = self.starts.len();
        self.edges.clear();
        for &(site, target) in &self.calls {
            let caller = self.starts.partition_point(|&s| s <= site) - 1;
            let callee = self
                .starts
                .binary_search(&target)
                .map_err(|_| Miss::Fallback)?;
            self.edges.push((caller as u16, callee as u16));
        }
        self.edges.sort_unstable();
        self.edges.dedup();
        // Depth-first from the main subprogram: 0 unvisited, 1 on the
        // path, 2 done; an edge to a node on the path is recursion.
        // (The path is a reused vector: no per-compile zeroing.)
        let mut state = [0u8; MAX_SUBPROGS];
        let path = &mut self.path;
        path.clear();
        path.push((0, 0));
        state[0] = 1;
        while let Some(&(node, next)) = path.last() {
            match self.edges.get(next) {
                Some(&(from, to)) if from == node => {
                    if let Some(top) = path.last_mut() {
                        top.1 += 1;
                    }
                    match state[usize::from(to)] {
                        0 => {
                            state[usize::from(to)] = 1;
                            path.push((to, self.edges.partition_point(|e| e.0 < to)));
                        }
                        1 => return Err(Miss::Fallback),
                        _ => {}
                    }
                }
                _ => {
                    state[usize::from(node)] = 2;
                    path.pop();
                }
            }
        }
        if state[..k].iter().any(|&s| s != 2) {
            return Err(Miss::Fallback);
        }
        Ok(())
    }

    /// Lowers every subprogram, in slot order, one handler call per
    /// instruction ([`HANDLERS`]). With `marked`, every start is marked
    /// before ([`Baseline::mark_starts`]); without, each is marked by the
    /// first call to it, which must come before it (else [`Miss::Rescan`]).
    fn emit(&mut self, words: &[[u8; 8]], opts: &JitOptions<'_>, marked: bool) -> Step<()> {
        let n = words.len();
        self.offs.clear();
        self.offs.resize(n, 0);
        self.fixups.clear();
        self.call_fixups.clear();
        self.calls.clear();
        self.entries.clear();
        self.frames.clear();
        self.exits.clear();
        self.starts.clear();
        self.code.clear();
        self.code.reserve(n * 16 + 4 * MAX_INSN_BYTES);
        // At most one of each per slot: the handlers push without growing.
        self.fixups.reserve(n);
        self.call_fixups.reserve(n);
        self.calls.reserve(n);
        self.exits.reserve(n);
        if marked {
            self.mark_starts(words)?;
        }
        let code = &mut self.code;
        let mut base = code.as_mut_ptr();
        // Handlers and this loop share the offsets through one raw
        // pointer (no handler resizes them).
        let offs = self.offs.as_mut_ptr();
        let mut c = Ctx {
            base,
            words,
            offs,
            begin: 0,
            fixups: &mut self.fixups,
            call_fixups: &mut self.call_fixups,
            calls: &mut self.calls,
            starts: &mut self.starts,
            entries: &mut self.entries,
            frames: &mut self.frames,
            exits: &mut self.exits,
            fix_mark: 0,
            opts,
            miss: Miss::Fallback,
            hi_slot: usize::MAX,
        };
        let mut p = c.open(0, base)?;
        let mut i = 0;
        while i < n {
            // The slots whose worst case fits in the buffer run without a
            // check each; when none fits, the buffer grows.
            let room = (base as usize + code.capacity()).wrapping_sub(p as usize + 8);
            let fit = room / SLOT_MAX_BYTES;
            if fit == 0 || room > isize::MAX as usize {
                p = regrow(code, &mut c, p);
                base = c.base;
                continue;
            }
            let end = n.min(i + fit);
            while i < end {
                // SAFETY (the unchecked accesses): `i < end <= n`, the
                // length of `words` and of the offsets.
                let slot = unsafe { offs.add(i) };
                if unsafe { *slot } == START_MARK {
                    p = c.open(i, p)?;
                }
                let w = u64::from_le_bytes(*unsafe { words.get_unchecked(i) });
                // SAFETY: as above.
                unsafe { *slot = (p as usize - base as usize) as u32 };
                let row = RR_ROW[usize::from(w as u8)];
                // (A row, and no offset or immediate.)
                if u64::from(row) | (w & !0xffff) < 16 {
                    // The register-register ALU and `mov` forms, the
                    // most common slots, without a handler call.
                    let e = RRF[usize::from(row & 15)][b1(w)];
                    let mut o = Out { p };
                    put_reg(&mut o, e)?;
                    p = o.p;
                } else {
                    p = HANDLERS[usize::from(w as u8)](&mut c, w, i, p);
                    if p.is_null() {
                        return Err(c.miss);
                    }
                }
                i += 1;
            }
        }
        ends_subprog(words, n)?;
        let at = c.at(p) as usize;
        // The registers each subprogram names, in a pass of their own (it
        // keeps the slot loop's state in registers).
        self.sub_used.clear();
        self.used = 0;
        for (k, &s) in self.starts.iter().enumerate() {
            let end = self.starts.get(k + 1).map_or(n, |&e| e as usize);
            let used = words.get(s as usize..end).map_or(u32::MAX, names);
            self.sub_used.push(used);
            self.used |= used;
        }
        // SAFETY: the first `at` bytes were written.
        unsafe { self.code.set_len(at) };
        Ok(())
    }

    /// After [`Baseline::emit`]: registers in range, the call graph, the
    /// frames' callee-saved pushes and pops, and the branch targets.
    fn finish(&mut self) -> Step<()> {
        if self.used & !0x7ff != 0 {
            return Err(Miss::Fallback);
        }
        if !self.calls.is_empty() {
            self.check_call_graph()?;
        }
        // The callee-saved registers (r6-r9) a subprogram names are
        // pushed by its frame and popped in reverse order at each of its
        // exits, in the room left for them.
        let saved = |k: usize| {
            self.sub_used
                .get(k)
                .map_or(15, |&u| (u >> 6 & 0xf) as usize)
        };
        for (k, &f) in self.frames.iter().enumerate() {
            let saved = saved(k);
            // The pad keeping rsp 16-byte aligned after the pushes.
            let pad = if saved.count_ones() % 2 == 1 { 8 } else { 0 };
            let f = f as usize;
            let size = self.code.get(f..f + 4).ok_or(Miss::Fallback)?;
            let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) + pad;
            self.code[f..f + 4].copy_from_slice(&size.to_le_bytes());
            self.code[f + 4..f + 4 + SAVE_ROOM].copy_from_slice(&SAVES[saved].0);
        }
        for &e in &self.exits {
            // The subprogram the exit is in: the last entry at or before it.
            let k = self.entries.partition_point(|&x| x <= e).saturating_sub(1);
            let e = e as usize;
            let room = self.code.get_mut(e..e + SAVE_ROOM).ok_or(Miss::Fallback)?;
            room.copy_from_slice(&SAVES[saved(k)].1);
        }
        self.resolve()
    }
}

/// The registers `words` name (bit `i` for `ri`; fields above 10 too).
fn names(words: &[[u8; 8]]) -> u32 {
    let (mut a, mut b) = (0, 0);
    let (pairs, last) = words.as_chunks::<2>();
    for [x, y] in pairs {
        a |= NIBBLES[usize::from(x[1])];
        b |= NIBBLES[usize::from(y[1])];
    }
    for x in last {
        a |= NIBBLES[usize::from(x[1])];
    }
    a | b
}

/// Room kept in each prologue for the callee-saved pushes (`push rbx`,
/// then `push r13` to `r15`, 2 bytes each) and before each `leave` for
/// the pops; what the program does not need is a multi-byte nop.
const SAVE_ROOM: usize = 7;

/// Most subprograms the baseline handles (the kernel allows 256).
const MAX_SUBPROGS: usize = 64;

/// By the set of r6-r9 a program uses (bit `i` for `r(6 + i)`): the
/// room of a prologue (the pushes in order, then a nop) and of an exit
/// (a nop, then the pops in reverse order). A test checks the bytes
/// against [`enc::push`] and [`enc::pop`].
static SAVES: [([u8; SAVE_ROOM], [u8; SAVE_ROOM]); 16] = {
    let mut t = [([0u8; SAVE_ROOM], [0u8; SAVE_ROOM]); 16];
    let mut set = 0;
    while set < 16 {
        // The pushes in order, the pops (`enc::push`'s and `enc::pop`'s
        // bytes) in reverse order, ending the room.
        let (mut push, mut pop) = ([0u8; SAVE_ROOM], [0u8; SAVE_ROOM]);
        let (mut len, mut at) = (0, SAVE_ROOM);
        let mut r = 0;
        while r < 4 {
            if set & 1 << r != 0 {
                let (v, n) = enc::form_opreg(false, 0x50, X[6 + r]);
                let (w, _) = enc::form_opreg(false, 0x58, X[6 + r]);
                at -= n as usize;
                let mut k = 0;
                while k < n as usize {
                    push[len + k] = (v >> (8 * k)) as u8;
                    pop[at + k] = (w >> (8 * k)) as u8;
                    k += 1;
                }
                len += n as usize;
            }
            r += 1;
        }
        let fill = NOPS[SAVE_ROOM - len];
        let mut k = 0;
        while k < fill.len() {
            push[len + k] = fill[k];
            pop[k] = fill[k];
            k += 1;
        }
        t[set] = (push, pop);
        set += 1;
    }
    t
};

/// Whether the instruction before slot `s` (a subprogram start, or the
/// end) ends a subprogram: `exit`, or `ja` somewhere other than `s`.
fn ends_subprog(words: &[[u8; 8]], s: usize) -> Step<()> {
    let last = s
        .checked_sub(1)
        .and_then(|k| words.get(k))
        .ok_or(Miss::Fallback)?;
    let last = u64::from_le_bytes(*last);
    match last as u8 {
        0x95 => Ok(()),
        0x05 if last & OFF_FIELD != 0 => Ok(()),
        0x06 if last & IMM_FIELD != 0 => Ok(()),
        _ => Err(Miss::Fallback),
    }
}

/// What the handlers reach through a pointer: the compile's tables.
struct Ctx<'a> {
    /// Start of the code buffer (offsets count from here).
    base: *mut u8,
    words: &'a [[u8; 8]],
    /// The offsets (`words.len()` of them: [`Baseline::offs`]).
    offs: *mut u32,
    /// First slot of the subprogram being lowered.
    begin: usize,
    fixups: &'a mut Vec<(u32, u32)>,
    call_fixups: &'a mut Vec<(u32, u32)>,
    calls: &'a mut Vec<(u32, u32)>,
    starts: &'a mut Vec<u32>,
    entries: &'a mut Vec<u32>,
    frames: &'a mut Vec<u32>,
    exits: &'a mut Vec<u32>,
    /// The first of the current subprogram's forward branches.
    fix_mark: usize,
    opts: &'a JitOptions<'a>,
    /// Why a handler returned a null cursor.
    miss: Miss,
    /// The second slot of the last `ld_imm64`.
    hi_slot: usize,
}

impl Ctx<'_> {
    /// The offset entry of slot `t` ([`NOT_A_START`] past the end).
    #[inline(always)]
    fn off(&self, t: usize) -> u32 {
        if t < self.words.len() {
            // SAFETY: the offsets are `words.len()` entries.
            unsafe { *self.offs.add(t) }
        } else {
            NOT_A_START
        }
    }

    /// Sets the offset entry of slot `t` (nothing past the end).
    #[inline(always)]
    fn set_off(&mut self, t: usize, v: u32) {
        if t < self.words.len() {
            // SAFETY: as in `off`.
            unsafe { *self.offs.add(t) = v };
        }
    }

    /// Code offset of the cursor position `p`.
    #[inline(always)]
    fn at(&self, p: *mut u8) -> u32 {
        (p as usize - self.base as usize) as u32
    }

    /// Starts the subprogram at slot `s` with its prologue, at `p` (the
    /// previous one must end there, and none of its forward branches go
    /// past).
    #[cold]
    #[inline(never)]
    fn open(&mut self, s: usize, p: *mut u8) -> Step<*mut u8> {
        let k = self.starts.len();
        if k > 0 {
            ends_subprog(self.words, s)?;
            if self.fixups[self.fix_mark..]
                .iter()
                .any(|&(_, t)| t as usize >= s)
            {
                return Err(Fallback);
            }
        }
        if k >= MAX_SUBPROGS {
            return Err(Fallback);
        }
        self.fix_mark = self.fixups.len();
        self.starts.push(s as u32);
        self.begin = s;
        // The frame: depth rounded to 16 (the finish adds the pad keeping
        // rsp 16-byte aligned after the pushes).
        let depth = self
            .opts
            .stack_depths
            .and_then(|d| d.get(k).copied())
            .unwrap_or(DEFAULT_STACK_DEPTH);
        if depth > 1 << 24 {
            return Err(Fallback);
        }
        let mut o = Out { p };
        self.entries.push(self.at(o.p));
        // nop5, then on the main entry nop2 (no tail calls here)
        enc::nop5(&mut o);
        if k == 0 {
            enc::nop2(&mut o);
        }
        enc::push(&mut o, Gpr::RBP);
        enc::mov_rr(&mut o, Sz::Q, Gpr::RBP, Gpr::RSP);
        enc::sub_rsp_imm32(&mut o, (depth + 15) & !15);
        self.frames.push(self.at(o.p) - 4);
        o.put(0, SAVE_ROOM);
        Ok(o.p)
    }

    /// `jmp`/`jcc` from slot `i` to slot `t`, at or after the current
    /// subprogram's start and before the program's end (the next
    /// subprogram's start is checked when it is reached).
    #[inline(always)]
    fn jump(&mut self, o: &mut Out, cc: Option<Cc>, i: usize, t: i64) -> Step<()> {
        if t < self.begin as i64 || t >= self.words.len() as i64 {
            return Err(Fallback);
        }
        let t = t as usize;
        if t == i + 1 && cc.is_none() {
            // To the next instruction.
            return Ok(());
        }
        if t <= i {
            let dest = self.off(t);
            if dest == NOT_A_START {
                return Err(Fallback);
            }
            // The rel fields count from the end of the instruction.
            let here = i64::from(self.at(o.p));
            let from = |len: i64| i64::from(dest) - (here + len);
            match (cc, i8::try_from(from(2))) {
                (Some(c), Ok(d)) => enc::jcc_short(o, c, d),
                (None, Ok(d)) => enc::jmp_short(o, d),
                (Some(c), Err(_)) => enc::jcc_near(o, c, from(6) as i32),
                (None, Err(_)) => enc::jmp_near(o, from(5) as i32),
            }
        } else {
            match cc {
                Some(c) => enc::jcc_near(o, c, 0),
                None => enc::jmp_near(o, 0),
            }
            let pos = self.at(o.p) - 4;
            push_reserved(self.fixups, (pos, t as u32))?;
        }
        Ok(())
    }
}

/// Lowers the instruction at slot `i` (raw `w`) at the cursor; returns
/// the cursor past its code.
/// A null cursor: a miss, whose kind is in [`Ctx::miss`] (the cursor
/// comes back in a register, not through memory as a `Result` would).
type Handler = fn(&mut Ctx<'_>, u64, usize, *mut u8) -> *mut u8;

/// Runs a handler's body, returning its cursor (see [`Handler`]).
#[inline(always)]
fn run<'a>(c: &mut Ctx<'a>, body: impl FnOnce(&mut Ctx<'a>) -> Step<*mut u8>) -> *mut u8 {
    match body(c) {
        Ok(p) => p,
        Err(m) => {
            c.miss = m;
            core::ptr::null_mut()
        }
    }
}

/// The register byte of a slot (dst in the low nibble, src in the high).
#[inline(always)]
fn b1(w: u64) -> usize {
    usize::from((w >> 8) as u8)
}
/// Register fields of a slot.
#[inline(always)]
fn dn(w: u64) -> usize {
    ((w >> 8) & 15) as usize
}
#[inline(always)]
fn sn(w: u64) -> usize {
    ((w >> 12) & 15) as usize
}
#[inline(always)]
fn rd(w: u64) -> Gpr {
    X[dn(w)]
}
#[inline(always)]
fn rs(w: u64) -> Gpr {
    X[sn(w)]
}
#[inline(always)]
fn off16(w: u64) -> i16 {
    (w >> 16) as i16
}
#[inline(always)]
fn imm32(w: u64) -> i32 {
    (w >> 32) as i32
}
/// The fields in `mask` are zero (reserved for this opcode).
#[inline(always)]
fn zero(w: u64, mask: u64) -> Step<()> {
    if w & mask == 0 {
        Ok(())
    } else {
        Err(Fallback)
    }
}
#[inline(always)]
fn sz(w64: bool) -> Sz {
    if w64 {
        Sz::Q
    } else {
        Sz::W
    }
}

/// Opcodes no handler takes: left to the optimizing compiler.
fn h_none(c: &mut Ctx<'_>, _w: u64, _i: usize, _p: *mut u8) -> *mut u8 {
    c.miss = Miss::Fallback;
    core::ptr::null_mut()
}

/// ALU / ALU64 add, sub, or, and, xor with an immediate.
fn h_alu_k<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, SRC_FIELD | OFF_FIELD)?;
        let mut o = Out { p };
        let e = GRP[usize::from(C & 7 == 7)][ALU[usize::from(C >> 4)] as usize][dn(w)];
        put_grp_imm(&mut o, e, imm32(w))?;
        Ok(o.p)
    })
}

/// The same with a register.
fn h_alu_x<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, IMM_FIELD | OFF_FIELD)?;
        let mut o = Out { p };
        let op = ALU[usize::from(C >> 4)] as usize;
        put_reg(&mut o, RRF[rr_row(C & 7 == 7, op)][b1(w)])?;
        Ok(o.p)
    })
}

/// `mov` with an immediate.
fn h_mov_k<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, SRC_FIELD | OFF_FIELD)?;
        no_r10(dn(w))?;
        let mut o = Out { p };
        let imm = imm32(w);
        // A 64-bit non-negative value zero-extends from the 32-bit form.
        let e = if C == 0xb7 && imm < 0 {
            ONE[1][ONE_MOVS][dn(w)]
        } else {
            ONE[0][ONE_MOVI][dn(w)]
        };
        o.put_then(u64::from(e), (e >> 24) as usize, u64::from(imm as u32), 4);
        Ok(o.p)
    })
}

/// `mov` with a register (`movsx`: [`h_movsx`]).
fn h_mov_x<const C: u8>(c: &mut Ctx<'_>, w: u64, i: usize, p: *mut u8) -> *mut u8 {
    if w >> 16 != 0 {
        return h_movsx::<C>(c, w, i, p);
    }
    run(c, |_| {
        let mut o = Out { p };
        put_reg(&mut o, RRF[rr_row(C == 0xbf, RR_MOV)][b1(w)])?;
        Ok(o.p)
    })
}

/// `movsx` with a register.
#[inline(never)]
fn h_movsx<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, IMM_FIELD)?;
        no_r10(dn(w))?;
        let mut o = Out { p };
        let w64 = C == 0xbf;
        let (dst, src) = (rd(w), rs(w));
        match (off16(w), w64) {
            (8, _) => enc::movsx_r8(&mut o, sz(w64), dst, src),
            (16, _) => enc::movsx_r16(&mut o, sz(w64), dst, src),
            (32, true) => enc::movsxd_rr(&mut o, dst, src),
            _ => return Err(Fallback),
        }
        Ok(o.p)
    })
}

/// `mul` with an immediate or a register.
fn h_mul<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        let by_reg = C & 8 != 0;
        zero(w, OFF_FIELD | if by_reg { IMM_FIELD } else { SRC_FIELD })?;
        no_r10(dn(w))?;
        let mut o = Out { p };
        if by_reg {
            enc::imul_rr(&mut o, sz(C & 7 == 7), rd(w), rs(w));
        } else {
            // 6B /r ib, or 69 /r id (two less in the opcode byte).
            put_grp_imm(
                &mut o,
                ONE[usize::from(C & 7 == 7)][ONE_IMUL8][dn(w)],
                imm32(w),
            )?;
        }
        Ok(o.p)
    })
}

/// Shifts by an immediate.
fn h_shift_k<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, SRC_FIELD | OFF_FIELD)?;
        let mut o = Out { p };
        let w64 = C & 7 == 7;
        let count = (imm32(w) as u32 & if w64 { 63 } else { 31 }) as u8;
        let e = GRP[usize::from(w64)][8 + shift_op(C) as usize][dn(w)];
        if e == 0 {
            return Err(Fallback);
        }
        if count == 0 {
            // Nothing to shift; a 32-bit result is still zero-extended.
            if !w64 {
                enc::mov_rr(&mut o, Sz::W, rd(w), rd(w));
            }
        } else {
            put_grp_ib(&mut o, e, count);
        }
        Ok(o.p)
    })
}

/// Shifts by a register (x86 masks the count as eBPF does).
fn h_shift_x<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, IMM_FIELD | OFF_FIELD)?;
        no_r10(dn(w))?;
        let mut o = Out { p };
        let (s, op, dst, src) = (sz(C & 7 == 7), shift_op(C), rd(w), rs(w));
        if src == Gpr::RCX {
            enc::shift_rcl(&mut o, s, op, dst);
        } else {
            // rcx (r4) is saved in the scratch register around the shift.
            mov64(&mut o, AUX, Gpr::RCX);
            mov64(&mut o, Gpr::RCX, src);
            enc::shift_rcl(&mut o, s, op, if dst == Gpr::RCX { AUX } else { dst });
            mov64(&mut o, Gpr::RCX, AUX);
        }
        Ok(o.p)
    })
}

/// `neg`.
fn h_neg<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, SRC_FIELD | OFF_FIELD | IMM_FIELD)?;
        no_r10(dn(w))?;
        let mut o = Out { p };
        put_form(&mut o, ONE[usize::from(C == 0x87)][ONE_NEG][dn(w)]);
        Ok(o.p)
    })
}

/// `div` and `mod` (offset 1: signed).
fn h_div<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        let by_reg = C & 8 != 0;
        zero(w, if by_reg { IMM_FIELD } else { SRC_FIELD })?;
        no_r10(dn(w))?;
        let off = off16(w);
        if off != 0 && off != 1 {
            return Err(Fallback);
        }
        let divisor = if by_reg { Some(sn(w)) } else { None };
        let o = div_rem(
            Out { p },
            C & 7 == 7,
            off == 1,
            C >> 4 == 9,
            dn(w),
            divisor,
            imm32(w),
        );
        Ok(o.p)
    })
}

/// Byte swaps and truncations.
fn h_endian<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, SRC_FIELD | OFF_FIELD)?;
        no_r10(dn(w))?;
        let mut o = Out { p };
        let dst = rd(w);
        match (imm32(w), C != 0xd4) {
            (16, false) => enc::movzx_r32_r16(&mut o, dst, dst),
            (32, false) => enc::mov_rr(&mut o, Sz::W, dst, dst),
            (64, false) => {}
            (16, true) => {
                enc::shift_ri(&mut o, Sz::H, Shift::Ror, dst, 8);
                enc::movzx_r32_r16(&mut o, dst, dst);
            }
            (32, true) => enc::bswap(&mut o, Sz::W, dst),
            (64, true) => enc::bswap(&mut o, Sz::Q, dst),
            _ => return Err(Fallback),
        }
        Ok(o.p)
    })
}

/// Loads, zero- or (`MEMSX`) sign-extending.
fn h_load<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, IMM_FIELD)?;
        let mut o = Out { p };
        if C & 0xe0 == 0x80 {
            no_r10(dn(w))?;
            enc::load_sx(&mut o, mem_size(C), rd(w), at(rs(w), off16(w)));
        } else {
            put_mem(&mut o, LDF[usize::from(C >> 3) & 3][b1(w)], off16(w))?;
        }
        Ok(o.p)
    })
}

/// Stores of an immediate.
fn h_store_k<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, SRC_FIELD)?;
        let mut o = Out { p };
        let k = usize::from(C >> 3) & 3;
        put_mem(&mut o, STK[k][dn(w)], off16(w))?;
        // The immediate's size is the access size (a double word's
        // sign-extends from 32 bits).
        o.put(u64::from(imm32(w) as u32), [4, 2, 1, 4][k]);
        Ok(o.p)
    })
}

/// Stores of a register.
fn h_store_x<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        zero(w, IMM_FIELD)?;
        let mut o = Out { p };
        put_mem(&mut o, STF[usize::from(C >> 3) & 3][b1(w)], off16(w))?;
        Ok(o.p)
    })
}

/// Atomics (the operation in the immediate).
fn h_atomic<const C: u8>(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |_| {
        let mut o = Out { p };
        let o = &mut o;
        let (m, src) = (at(rd(w), off16(w)), rs(w));
        let s = mem_size(C);
        let rmw = matches!(C, 0xc3 | 0xdb);
        let imm = imm32(w);
        match imm {
            // lock add/or/and/xor
            0x00 | 0x40 | 0x50 | 0xa0 if rmw => {
                enc::lock_alu(o, s, ALU[(imm >> 4) as usize & 15], m, src);
            }
            // lock xadd, xchg: the old value into src
            0x01 if rmw => {
                no_r10(sn(w))?;
                enc::lock_xadd(o, s, m, src);
            }
            0xe1 if rmw => {
                no_r10(sn(w))?;
                enc::xchg(o, s, m, src);
            }
            // fetching and/or/xor: a lock cmpxchg loop through rax
            0x41 | 0x51 | 0xa1 if rmw => {
                no_r10(sn(w))?;
                fetch_op(o, s, ALU[(imm >> 4) as usize & 15], m, src);
            }
            // lock cmpxchg: r0 is the comparand and gets the old value
            0xf1 if rmw => {
                enc::lock_cmpxchg(o, s, m, src);
                if s == Sz::W {
                    // Success leaves eax's upper half alone: zero-extend.
                    enc::mov_rr(o, Sz::W, Gpr::RAX, Gpr::RAX);
                }
            }
            // load-acquire (dst = *(src + off)) and store-release
            // (*(dst + off) = src): plain moves under x86's ordering.
            0x100 => {
                no_r10(dn(w))?;
                load(o, 0x61 | (C & 0x18), rd(w), at(src, off16(w)));
            }
            0x110 => enc::store(o, s, m, src),
            _ => return Err(Fallback),
        }
        Ok(o.p)
    })
}

/// `ld_imm64`: a plain value, or a pseudo source (map fd, map value, BTF
/// id, map index) resolved through [`JitOptions::ld_imm64`] as the
/// optimizing compiler resolves it (function references are left to it).
fn h_ld_imm64(c: &mut Ctx<'_>, w: u64, i: usize, p: *mut u8) -> *mut u8 {
    run(c, |c| {
        no_r10(dn(w))?;
        zero(w, OFF_FIELD)?;
        let hi = c.words.get(i + 1).ok_or(Fallback)?;
        let hi = u64::from_le_bytes(*hi);
        let v = if w & SRC_FIELD == 0 {
            if hi & 0xffff_ffff != 0 {
                return Err(Fallback);
            }
            (w >> 32) | (hi & IMM_FIELD)
        } else {
            pseudo_ld_imm64(c.opts, w, hi, i)?
        };
        // The second slot comes next, to `h_hi` (as opcode 0). Were it a
        // subprogram start, opening it would find that the slot before
        // does not end a subprogram.
        c.hi_slot = i + 1;
        let mut o = Out { p };
        mov_imm64(&mut o, rd(w), v);
        Ok(o.p)
    })
}

/// The value of the `ld_imm64` pseudo source in slots `w`, `hi` (at slot
/// `i`): decoded by the shared decoder (its field rules), resolved by the
/// options' resolver; a function reference, or no value, is a miss.
#[cold]
#[inline(never)]
fn pseudo_ld_imm64(opts: &JitOptions<'_>, w: u64, hi: u64, i: usize) -> Step<u64> {
    let slots = [
        bpf_isa::RawInsn::from_bytes(w.to_le_bytes()),
        bpf_isa::RawInsn::from_bytes(hi.to_le_bytes()),
    ];
    match bpf_isa::decode::decode_slots(&slots) {
        Ok(bpf_isa::Insn::LdImm64 { src, .. })
            if !matches!(src, LdImm64Src::Func(_) | LdImm64Src::Imm(_)) =>
        {
            opts.ld_imm64.and_then(|r| r(i, src)).ok_or(Fallback)
        }
        _ => Err(Fallback),
    }
}

/// The second slot of an `ld_imm64` (opcode 0, checked with the first):
/// no code, and no branch may land on it.
fn h_hi(c: &mut Ctx<'_>, _w: u64, i: usize, p: *mut u8) -> *mut u8 {
    if c.hi_slot != i {
        c.miss = Miss::Fallback;
        return core::ptr::null_mut();
    }
    c.set_off(i, NOT_A_START);
    p
}

/// `ja` (`gotol` for 0x06).
fn h_ja<const C: u8>(c: &mut Ctx<'_>, w: u64, i: usize, p: *mut u8) -> *mut u8 {
    run(c, |c| {
        let mut o = Out { p };
        let delta = if C == 0x05 {
            zero(w, SRC_FIELD | DST_FIELD | IMM_FIELD)?;
            i64::from(off16(w))
        } else {
            zero(w, SRC_FIELD | DST_FIELD | OFF_FIELD)?;
            i64::from(imm32(w))
        };
        c.jump(&mut o, None, i, i as i64 + 1 + delta)?;
        Ok(o.p)
    })
}

/// Conditional jumps, 64- and 32-bit.
fn h_jcc<const C: u8>(c: &mut Ctx<'_>, w: u64, i: usize, p: *mut u8) -> *mut u8 {
    run(c, |c| {
        let mut o = Out { p };
        let cc = CC[usize::from(C >> 4)].ok_or(Fallback)?;
        let w64 = C & 7 == 5;
        let s = sz(w64);
        let set = C >> 4 == 4;
        if C & 8 != 0 {
            zero(w, IMM_FIELD)?;
            if set {
                enc::test_rr(&mut o, s, rd(w), rs(w));
            } else {
                put_reg(&mut o, RRF[rr_row(w64, Alu1::Cmp as usize)][b1(w)])?;
            }
        } else {
            zero(w, SRC_FIELD)?;
            let imm = imm32(w);
            if set {
                enc::test_ri(&mut o, s, rd(w), imm);
            } else if imm == 0 && matches!(cc, Cc::E | Cc::Ne) {
                enc::test_rr(&mut o, s, rd(w), rd(w));
            } else {
                put_grp_imm(
                    &mut o,
                    GRP[usize::from(w64)][Alu1::Cmp as usize][dn(w)],
                    imm,
                )?;
            }
        }
        c.jump(&mut o, Some(cc), i, i as i64 + 1 + i64::from(off16(w)))?;
        Ok(o.p)
    })
}

/// Helper and bpf-to-bpf calls.
fn h_call(c: &mut Ctx<'_>, w: u64, i: usize, p: *mut u8) -> *mut u8 {
    run(c, |c| {
        zero(w, DST_FIELD | OFF_FIELD)?;
        let mut o = Out { p };
        let imm = imm32(w);
        match sn(w) {
            0 => {
                // A helper (not a tail call), called as the optimizing
                // backend calls it.
                if imm == TAIL_CALL_HELPER {
                    return Err(Fallback);
                }
                let addr = c.opts.helpers.address(imm).ok_or(Fallback)?;
                if c.opts.helpers.preserve_mask(imm) != 0 {
                    return Err(Fallback);
                }
                enc::movabs(&mut o, AUX, addr);
                enc::call_r(&mut o, AUX);
            }
            1 => {
                // bpf-to-bpf: a start ahead is marked; one behind must have
                // been started already.
                let t = i as i64 + 1 + i64::from(imm);
                if t < 0 || t >= c.words.len() as i64 {
                    return Err(Fallback);
                }
                let t = t as u32;
                if t as usize > i {
                    c.set_off(t as usize, START_MARK);
                } else if c.starts.binary_search(&t).is_err() {
                    return Err(Miss::Rescan);
                }
                push_reserved(c.calls, (i as u32, t))?;
                enc::call_rel(&mut o, 0);
                let pos = c.at(o.p) - 4;
                push_reserved(c.call_fixups, (pos, t))?;
            }
            _ => return Err(Fallback),
        }
        Ok(o.p)
    })
}

/// `exit`: room for the callee-saved pops (filled in at the end), then
/// `leave; ret`.
fn h_exit(c: &mut Ctx<'_>, w: u64, _i: usize, p: *mut u8) -> *mut u8 {
    run(c, |c| {
        zero(w, !0xff)?;
        let mut o = Out { p };
        push_reserved(c.exits, c.at(o.p))?;
        o.put(0, SAVE_ROOM);
        enc::leave(&mut o);
        enc::ret(&mut o);
        Ok(o.p)
    })
}

/// `t[code] = handler::<code>` for each listed opcode.
macro_rules! set {
    ($t:ident, $h:ident: $($c:literal),+) => {
        $( $t[$c] = $h::<$c>; )+
    };
}

/// The handler of each opcode.
static HANDLERS: [Handler; 256] = {
    let mut t: [Handler; 256] = [h_none; 256];
    set!(t, h_alu_k: 0x04, 0x14, 0x44, 0x54, 0xa4, 0x07, 0x17, 0x47, 0x57, 0xa7);
    set!(t, h_alu_x: 0x0c, 0x1c, 0x4c, 0x5c, 0xac, 0x0f, 0x1f, 0x4f, 0x5f, 0xaf);
    set!(t, h_mov_k: 0xb4, 0xb7);
    set!(t, h_mov_x: 0xbc, 0xbf);
    set!(t, h_mul: 0x24, 0x27, 0x2c, 0x2f);
    set!(t, h_shift_k: 0x64, 0x74, 0xc4, 0x67, 0x77, 0xc7);
    set!(t, h_shift_x: 0x6c, 0x7c, 0xcc, 0x6f, 0x7f, 0xcf);
    set!(t, h_neg: 0x84, 0x87);
    set!(t, h_div: 0x34, 0x37, 0x94, 0x97, 0x3c, 0x3f, 0x9c, 0x9f);
    set!(t, h_endian: 0xd4, 0xdc, 0xd7);
    set!(t, h_load: 0x61, 0x69, 0x71, 0x79, 0x81, 0x89, 0x91);
    set!(t, h_store_k: 0x62, 0x6a, 0x72, 0x7a);
    set!(t, h_store_x: 0x63, 0x6b, 0x73, 0x7b);
    set!(t, h_atomic: 0xc3, 0xdb, 0xd3, 0xcb);
    set!(t, h_ja: 0x05, 0x06);
    set!(t, h_jcc: 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d, 0x55, 0x5d, 0x65);
    set!(t, h_jcc: 0x6d, 0x75, 0x7d, 0xa5, 0xad, 0xb5, 0xbd, 0xc5, 0xcd, 0xd5, 0xdd);
    set!(t, h_jcc: 0x16, 0x1e, 0x26, 0x2e, 0x36, 0x3e, 0x46, 0x4e, 0x56, 0x5e, 0x66);
    set!(t, h_jcc: 0x6e, 0x76, 0x7e, 0xa6, 0xae, 0xb6, 0xbe, 0xc6, 0xce, 0xd6, 0xde);
    t[0x18] = h_ld_imm64;
    t[0x00] = h_hi;
    t[0x85] = h_call;
    t[0x95] = h_exit;
    t
};

impl Baseline {
    /// Patches forward branches and calls.
    fn resolve(&mut self) -> Step<()> {
        for &(pos, t) in &self.fixups {
            let dest = self.offs.get(t as usize).copied().unwrap_or(NOT_A_START);
            if dest == NOT_A_START {
                return Err(Fallback);
            }
            patch32(&mut self.code, pos, dest);
        }
        for &(pos, t) in &self.call_fixups {
            let idx = self.starts.binary_search(&t).map_err(|_| Fallback)?;
            let dest = *self.entries.get(idx).ok_or(Fallback)?;
            patch32(&mut self.code, pos, dest);
        }
        Ok(())
    }
}

/// Writes the rel32 at `pos` so that it reaches `dest`.
fn patch32(code: &mut [u8], pos: u32, dest: u32) {
    let d = dest.wrapping_sub(pos.wrapping_add(4));
    if let Some(f) = code.get_mut(pos as usize..(pos as usize).saturating_add(4)) {
        f.copy_from_slice(&d.to_le_bytes());
    }
}

/// Refuses a write to `r10` (left to the optimizing compiler's rules).
#[inline(always)]
fn no_r10(n: usize) -> Step<()> {
    if n == 10 {
        Err(Fallback)
    } else {
        Ok(())
    }
}

/// The shift of a shift opcode.
#[inline(always)]
fn shift_op(code: u8) -> Shift {
    match code >> 4 {
        6 => Shift::Shl,
        7 => Shift::Shr,
        _ => Shift::Sar,
    }
}

/// The access size of a load, store or atomic opcode.
#[inline(always)]
fn mem_size(code: u8) -> Sz {
    match code & 0x18 {
        0x10 => Sz::B,
        0x08 => Sz::H,
        0x00 => Sz::W,
        _ => Sz::Q,
    }
}

/// `dst = *(size *)m`, zero- or (mode `MEMSX`) sign-extended.
#[inline(always)]
fn load(o: &mut Out, code: u8, dst: Gpr, m: Mem) {
    let s = mem_size(code);
    match (code & 0xe0 == 0x80, s) {
        (false, Sz::B | Sz::H) => enc::load_zx(o, s, dst, m),
        (false, _) => enc::load(o, s, dst, m),
        (true, _) => enc::load_sx(o, s, dst, m),
    }
}

/// Division and remainder with the kernel's semantics: by zero, the
/// quotient is 0 and the remainder the dividend (zero-extended when
/// 32-bit); signed by -1, the quotient is `-dst` (`INT_MIN` stays) and
/// the remainder 0. `divisor`: the eBPF register (checked at run time),
/// or `None` for the immediate `imm` (decided here); `dn` is not r10.
/// Unlike the optimizing backend, whose checks branch to out-of-line
/// stubs, the cases are handled inline. Every form comes from the
/// tables ([`RRF`], [`ONE`]); a test checks the whole sequence against
/// one assembled by [`enc`].
#[inline(never)]
fn div_rem(
    mut o: Out,
    w64: bool,
    signed: bool,
    rem: bool,
    dn: usize,
    divisor: Option<usize>,
    imm: i32,
) -> Out {
    // Out of line (and by value, keeping the caller's cursor in registers).
    div_rem_in(
        &mut o,
        w64,
        signed,
        rem,
        dn & 15,
        divisor.map(|r| r & 15),
        imm,
    );
    o
}

/// Writes the register form `e`, known not to be empty.
#[inline(always)]
fn put_form(o: &mut Out, e: u32) {
    o.put(u64::from(e), (e >> 24) as usize);
}

#[inline(always)]
fn div_rem_in(
    o: &mut Out,
    w64: bool,
    signed: bool,
    rem: bool,
    dn: usize,
    divisor: Option<usize>,
    imm: i32,
) {
    let wi = usize::from(w64);
    // xor dst32, dst32 / mov dst32, dst32 (dst is not r10: not empty).
    let zero = RRF[rr_row(false, Alu1::Xor as usize)][dn * 17];
    let by_zero = |o: &mut Out| match (rem, w64) {
        (false, _) => put_form(o, zero),
        (true, false) => put_form(o, RRF[rr_row(false, RR_MOV)][dn * 17]),
        (true, true) => {}
    };
    let by_minus1 = |o: &mut Out| {
        put_form(o, if rem { zero } else { ONE[wi][ONE_NEG][dn] });
    };
    let mut done = [core::ptr::null_mut::<u8>(); 2];
    let mut ndone = 0;
    let d = match divisor {
        None => {
            if imm == 0 {
                return by_zero(o);
            }
            if signed && imm == -1 {
                return by_minus1(o);
            }
            if w64 && imm < 0 {
                // mov r11, simm32 (REX.W C7 /0)
                o.put_then(0xc3_c7_49, 3, u64::from(imm as u32), 4);
            } else {
                // mov r11d, imm32 (zero-extends)
                o.put_then(0xbb_41, 2, u64::from(imm as u32), 4);
            }
            ONE_AUX
        }
        Some(r) => {
            // The divisor stays in place unless it is rax (r0) or rdx
            // (r3): then mov r11, rax / rdx.
            let d = match r {
                // (Fields above 10 are refused at the end.)
                0 | 11.. => {
                    o.put(0xc3_89_49, 3);
                    ONE_AUX
                }
                3 => {
                    o.put(0xd3_89_49, 3);
                    ONE_AUX
                }
                r => r,
            };
            // test d, d; jnz 1f; <by zero>; jmp done; 1:
            put_form(o, ONE[wi][ONE_TEST][d]);
            o.put(0x75, 2);
            let nonzero = o.last();
            by_zero(o);
            o.put(0xeb, 2);
            done[0] = o.last();
            ndone = 1;
            o.land8(nonzero);
            if signed {
                // cmp d, -1; jne 2f; <by -1>; jmp done; 2:
                o.put_then(
                    u64::from(ONE[wi][ONE_CMP][d]),
                    (ONE[wi][ONE_CMP][d] >> 24) as usize,
                    0xff,
                    1,
                );
                o.put(0x75, 2);
                let other = o.last();
                by_minus1(o);
                o.put(0xeb, 2);
                done[1] = o.last();
                ndone = 2;
                o.land8(other);
            }
            d
        }
    };
    // push rax; push rdx (unless dst is one of them); mov rax, dst
    if dn != 0 {
        o.put(0x50, 1);
    }
    if dn != 3 {
        o.put(0x52, 1);
    }
    put_form(o, RRF[rr_row(true, RR_MOV)][dn << 4]);
    if signed {
        // cdq / cqo
        if w64 {
            o.put(0x99_48, 2);
        } else {
            o.put(0x99, 1);
        }
    } else {
        // xor edx, edx
        o.put(0xd2_31, 2);
    }
    put_form(o, ONE[wi][if signed { ONE_IDIV } else { ONE_DIV }][d]);
    // mov dst, rdx / rax; pop rdx; pop rax
    put_form(
        o,
        RRF[rr_row(true, RR_MOV)][if rem { 3 << 4 } else { 0 } | dn],
    );
    if dn != 3 {
        o.put(0x5a, 1);
    }
    if dn != 0 {
        o.put(0x58, 1);
    }
    for &j in &done[..ndone] {
        o.land8(j);
    }
}

/// Index of the scratch register in [`ONE`] (eBPF registers are 0..=10).
const ONE_AUX: usize = 11;
/// [`ONE`]'s forms: `test r, r`; `cmp r, ib` (`83 /7`); `neg r`; `div r`;
/// `idiv r`; `mov r, imm32` (`B8+r`); `mov r, simm32` (`C7 /0`); `imul r,
/// r, ib` (`6B /r`); each without its immediate.
const ONE_TEST: usize = 0;
const ONE_CMP: usize = 1;
const ONE_NEG: usize = 2;
const ONE_DIV: usize = 3;
const ONE_IDIV: usize = 4;
const ONE_MOVI: usize = 5;
const ONE_MOVS: usize = 6;
const ONE_IMUL8: usize = 7;

/// By width and form (`ONE_*`), on an eBPF register (0..=10) or the
/// scratch register ([`ONE_AUX`]): the forms on one register (as
/// [`reg_form`] gives them; `B8+r` has no ModRM: [`opreg_form`]).
static ONE: [[[u32; 16]; 8]; 2] = {
    let mut t = [[[0u32; 16]; 8]; 2];
    let mut w = 0;
    while w < 2 {
        let mut r = 0;
        while r < 16 {
            let n = if r == ONE_AUX { AUX.num() } else { X[r].num() };
            let w64 = w == 1;
            t[w][ONE_TEST][r] = reg_form(w64, 0x85, n, n);
            t[w][ONE_CMP][r] = reg_form(w64, 0x83, 7, n);
            t[w][ONE_NEG][r] = reg_form(w64, 0xf7, 3, n);
            t[w][ONE_DIV][r] = reg_form(w64, 0xf7, 6, n);
            t[w][ONE_IDIV][r] = reg_form(w64, 0xf7, 7, n);
            t[w][ONE_MOVI][r] = opreg_form(w64, 0xb8, n);
            t[w][ONE_MOVS][r] = reg_form(w64, 0xc7, 0, n);
            t[w][ONE_IMUL8][r] = reg_form(w64, 0x6b, n, n);
            r += 1;
        }
        w += 1;
    }
    t
};

/// `src = atomic_fetch_<op>(m, src)` for `and`, `or` and `xor`, which x86
/// has no single instruction for: `rax` (r0) is saved in the second
/// scratch register (the kernel's AX, no eBPF register) for the `cmpxchg`
/// loop, which stands in for a base or source that was `rax`:
///
/// ```text
///     mov aux2, rax
///     mov rax, [base + disp]
/// 1:  mov aux, rax
///     op  aux, src
///     lock cmpxchg [base + disp], aux
///     jne 1b
///     mov src, rax        ; the old value (zero-extended when 32-bit)
///     mov rax, aux2       ; unless src is r0
/// ```
fn fetch_op(o: &mut Out, s: Sz, op: Alu1, m: Mem, src: Gpr) {
    let m = if m.base == Gpr::RAX {
        Mem { base: AUX2, ..m }
    } else {
        m
    };
    let operand = if src == Gpr::RAX { AUX2 } else { src };
    mov64(o, AUX2, Gpr::RAX);
    enc::load(o, s, Gpr::RAX, m);
    let top = o.p as usize;
    enc::mov_rr(o, Sz::Q, AUX, Gpr::RAX);
    enc::alu_rr(o, s, op, AUX, operand);
    enc::lock_cmpxchg(o, s, m, AUX);
    // jne top (the loop is far shorter than 128 bytes)
    enc::jcc_short(o, Cc::Ne, (top as i64 - (o.p as usize as i64 + 2)) as i8);
    if src == Gpr::RAX {
        // r0 takes the old value: nothing to restore (a 32-bit result is
        // already zero-extended: both the load and cmpxchg write eax).
        return;
    }
    enc::mov_rr(o, s, src, Gpr::RAX);
    mov64(o, Gpr::RAX, AUX2);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes with `f` into a fresh buffer (room for one instruction).
    fn bytes(f: impl FnOnce(&mut Out)) -> Vec<u8> {
        let mut v: Vec<u8> = Vec::with_capacity(64);
        let mut o = Out { p: v.as_mut_ptr() };
        f(&mut o);
        let len = o.p as usize - v.as_ptr() as usize;
        // SAFETY: `len` (at most 7) bytes were written into the capacity.
        unsafe { v.set_len(len) };
        v
    }

    /// [`CC`] is the condition the optimizing backend branches on for the
    /// jump the decoder reads from each opcode, and `None` exactly where
    /// the opcode is no conditional jump.
    #[test]
    fn condition_table_matches_the_decoder_and_the_backend() {
        for op in 0..16u8 {
            let raw = bpf_isa::RawInsn::new(0x05 | op << 4, 0, 0, 0, 0);
            let want = match bpf_isa::decode::decode_slots(&[raw]) {
                Ok(bpf_isa::Insn::Jmp { cond, .. }) => {
                    Some(crate::cc(bpf_jit::IntCmpKind::of(cond)))
                }
                _ => None,
            };
            assert_eq!(CC[usize::from(op)], want, "jump op {op:#x}");
        }
    }

    /// The save rooms hold the pushes of the shared encoder in order, and
    /// its pops in reverse order, with a nop filling the rest.
    #[test]
    fn save_rooms_match_the_shared_encoders() {
        for (set, (push_room, pop_room)) in SAVES.iter().enumerate() {
            let regs: Vec<Gpr> = (0..4)
                .filter(|r| set & 1 << r != 0)
                .map(|r| X[6 + r])
                .collect();
            let push = bytes(|o| regs.iter().for_each(|&r| enc::push(o, r)));
            let pop = bytes(|o| regs.iter().rev().for_each(|&r| enc::pop(o, r)));
            let nop = NOPS[SAVE_ROOM - push.len()];
            assert_eq!(
                push_room.to_vec(),
                [&push[..], nop].concat(),
                "pushes of {set:#b}"
            );
            assert_eq!(
                pop_room.to_vec(),
                [nop, &pop[..]].concat(),
                "pops of {set:#b}"
            );
        }
    }

    /// The table-driven hot forms give the bytes of the shared encoders
    /// (whose forms the emit tests check against llvm-mc), for every
    /// register pair, operation, width, immediate and displacement size;
    /// and their entries are empty exactly where the operation writes r10.
    #[test]
    fn table_forms_match_the_shared_encoders() {
        let alus = [
            Alu1::Add,
            Alu1::Or,
            Alu1::And,
            Alu1::Sub,
            Alu1::Xor,
            Alu1::Cmp,
        ];
        let put = |f: &dyn Fn(&mut Out) -> Step<()>| {
            let mut r = Ok(());
            let b = bytes(|o| r = f(o));
            r.map(|()| b)
        };
        let imms = [0, 1, -1, 127, -128, 128, -129, i32::MAX, i32::MIN];
        let disps = [0i16, 1, -1, 127, -128, 128, -129, i16::MAX, i16::MIN];
        for (d, &xd) in X.iter().enumerate().take(11) {
            for w64 in [false, true] {
                let s = if w64 { Sz::Q } else { Sz::W };
                let wi = usize::from(w64);
                for (src, &xs) in X.iter().enumerate().take(11) {
                    let b = src << 4 | d;
                    let mut ops: Vec<(usize, Vec<u8>)> =
                        vec![(RR_MOV, bytes(|o| enc::mov_rr(o, s, xd, xs)))];
                    for a in alus {
                        ops.push((a as usize, bytes(|o| enc::alu_rr(o, s, a, xd, xs))));
                    }
                    for (op, mut want) in ops {
                        if w64 && op == RR_MOV && d == src {
                            // A 64-bit move to itself: no code.
                            want.clear();
                        }
                        let got = put(&|o| put_reg(o, RRF[rr_row(w64, op)][b]));
                        if d == 10 && op != Alu1::Cmp as usize {
                            assert!(got.is_err(), "{op} r{d}, r{src} writes r10");
                        } else {
                            assert_eq!(got.ok(), Some(want), "{op} r{d}, r{src}");
                        }
                    }
                }
                for a in alus {
                    for imm in imms {
                        let want = bytes(|o| enc::alu_ri(o, s, a, xd, imm));
                        let got = put(&|o| put_grp_imm(o, GRP[wi][a as usize][d], imm));
                        if d == 10 && a != Alu1::Cmp {
                            assert!(got.is_err(), "{a:?} r{d} writes r10");
                        } else {
                            assert_eq!(got.ok(), Some(want), "{a:?} r{d}, {imm}");
                        }
                    }
                }
                // One-register forms: neg, imul by an immediate, and the
                // immediate moves (32-bit B8+r, 64-bit C7 /0).
                assert_eq!(
                    bytes(|o| put_form(o, ONE[wi][ONE_NEG][d])),
                    bytes(|o| enc::neg(o, s, xd)),
                    "neg r{d}"
                );
                for imm in imms {
                    let want = bytes(|o| enc::imul_rri(o, s, xd, xd, imm));
                    let got = put(&|o| put_grp_imm(o, ONE[wi][ONE_IMUL8][d], imm));
                    assert_eq!(got.ok(), Some(want), "imul r{d}, {imm}");
                    let e = if w64 {
                        ONE[1][ONE_MOVS][d]
                    } else {
                        ONE[0][ONE_MOVI][d]
                    };
                    let want = bytes(|o| match w64 {
                        true => enc::mov_r64_simm(o, xd, imm),
                        false => enc::mov_r32_imm(o, xd, imm as u32),
                    });
                    let got = bytes(|o| {
                        o.put_then(u64::from(e), (e >> 24) as usize, u64::from(imm as u32), 4)
                    });
                    assert_eq!(got, want, "mov r{d}, {imm}");
                }
                for op in [Shift::Shl, Shift::Shr, Shift::Sar] {
                    let e = GRP[wi][8 + op as usize][d];
                    assert_eq!(e == 0, d == 10, "{op:?} r{d}");
                    if d == 10 {
                        continue;
                    }
                    for count in [1u8, 7, 31, 63] {
                        let want = bytes(|o| enc::shift_ri(o, s, op, xd, count));
                        assert_eq!(bytes(|o| put_grp_ib(o, e, count)), want, "{op:?} r{d}");
                    }
                }
            }
            // Loads, stores and immediate stores of each size, on every
            // base and displacement size.
            for (k, size) in [Sz::W, Sz::H, Sz::B, Sz::Q].into_iter().enumerate() {
                for (src, &xs) in X.iter().enumerate().take(11) {
                    let b = src << 4 | d;
                    for disp in disps {
                        let m = at(xs, disp);
                        let want = bytes(|o| match size {
                            Sz::B | Sz::H => enc::load_zx(o, size, xd, m),
                            _ => enc::load(o, size, xd, m),
                        });
                        let got = put(&|o| put_mem(o, LDF[k][b], disp));
                        if d == 10 {
                            assert!(got.is_err(), "load into r10");
                        } else {
                            assert_eq!(
                                got.ok(),
                                Some(want),
                                "load {size:?} r{d}, [r{src}{disp:+}]"
                            );
                        }
                        let m = at(xd, disp);
                        let want = bytes(|o| enc::store(o, size, m, xs));
                        let got = put(&|o| put_mem(o, STF[k][b], disp));
                        assert_eq!(
                            got.ok(),
                            Some(want),
                            "store {size:?} [r{d}{disp:+}], r{src}"
                        );
                    }
                }
                for disp in disps {
                    let m = at(xd, disp);
                    let want = bytes(|o| enc::store_imm(o, size, m, 0x7654_3210));
                    let got = put(&|o| {
                        put_mem(o, STK[k][d], disp)?;
                        o.put(0x7654_3210, [4, 2, 1, 4][k]);
                        Ok(())
                    });
                    assert_eq!(got.ok(), Some(want), "store {size:?} [r{d}{disp:+}], imm");
                }
            }
        }
    }
    /// The division as the shared encoders assemble it (the reference of
    /// `division_forms_match_the_shared_encoders`): by zero, the
    /// quotient is 0 and the remainder the dividend (zero-extended when
    /// 32-bit); signed by -1, the quotient is `-dst` (`INT_MIN` stays) and
    /// the remainder 0. `divisor`: the register (checked at run time), or
    /// `None` for the immediate `imm` (decided here). Unlike the optimizing
    /// backend, whose checks branch to out-of-line stubs, the cases are
    /// handled inline.
    fn div_rem_ref(
        mut o: Out,
        s: Sz,
        signed: bool,
        rem: bool,
        dst: Gpr,
        divisor: Option<Gpr>,
        imm: i32,
    ) -> Out {
        // Out of line (and by value, keeping the caller's cursor in registers).
        div_rem_ref_in(&mut o, s, signed, rem, dst, divisor, imm);
        o
    }

    fn div_rem_ref_in(
        o: &mut Out,
        s: Sz,
        signed: bool,
        rem: bool,
        dst: Gpr,
        divisor: Option<Gpr>,
        imm: i32,
    ) {
        let zero = |o: &mut Out| enc::alu_rr(o, Sz::W, Alu1::Xor, dst, dst);
        let by_zero = |o: &mut Out| match (rem, s) {
            (false, _) => zero(o),
            (true, Sz::W) => enc::mov_rr(o, Sz::W, dst, dst),
            (true, _) => {}
        };
        let by_minus1 = |o: &mut Out| if rem { zero(o) } else { enc::neg(o, s, dst) };
        let mut done = [core::ptr::null_mut::<u8>(); 2];
        let mut ndone = 0;
        let d = match divisor {
            None => {
                if imm == 0 {
                    return by_zero(o);
                }
                if signed && imm == -1 {
                    return by_minus1(o);
                }
                if s == Sz::Q {
                    mov_imm64(o, AUX, i64::from(imm) as u64);
                } else {
                    enc::mov_r32_imm(o, AUX, imm as u32);
                }
                AUX
            }
            Some(r) => {
                // The divisor stays in place unless it is rax or rdx.
                let d = if r == Gpr::RAX || r == Gpr::RDX {
                    mov64(o, AUX, r);
                    AUX
                } else {
                    r
                };
                // test d, d; jnz 1f; <by zero>; jmp done; 1:
                enc::test_rr(o, s, d, d);
                enc::jcc_short(o, Cc::Ne, 0);
                let nonzero = o.last();
                by_zero(o);
                enc::jmp_short(o, 0);
                done[0] = o.last();
                ndone = 1;
                o.land8(nonzero);
                if signed {
                    // cmp d, -1; jne 2f; <by -1>; jmp done; 2:
                    enc::alu_ri(o, s, Alu1::Cmp, d, -1);
                    enc::jcc_short(o, Cc::Ne, 0);
                    let other = o.last();
                    by_minus1(o);
                    enc::jmp_short(o, 0);
                    done[1] = o.last();
                    ndone = 2;
                    o.land8(other);
                }
                d
            }
        };
        if dst != Gpr::RAX {
            enc::push(o, Gpr::RAX);
        }
        if dst != Gpr::RDX {
            enc::push(o, Gpr::RDX);
        }
        mov64(o, Gpr::RAX, dst);
        if signed {
            enc::sign_extend_ax(o, s);
        } else {
            enc::alu_rr(o, Sz::W, Alu1::Xor, Gpr::RDX, Gpr::RDX);
        }
        enc::div(o, s, signed, d);
        mov64(o, dst, if rem { Gpr::RDX } else { Gpr::RAX });
        if dst != Gpr::RDX {
            enc::pop(o, Gpr::RDX);
        }
        if dst != Gpr::RAX {
            enc::pop(o, Gpr::RAX);
        }
        for &j in &done[..ndone] {
            o.land8(j);
        }
    }

    /// The table-driven division gives the bytes of the same sequence
    /// assembled by the shared encoders, for every destination, divisor
    /// register, width, signedness, operation, and immediates around the
    /// special cases.
    #[test]
    fn division_forms_match_the_shared_encoders() {
        for (dn, &xd) in X.iter().enumerate().take(10) {
            for w64 in [false, true] {
                let s = if w64 { Sz::Q } else { Sz::W };
                for signed in [false, true] {
                    for rem in [false, true] {
                        let mut divisors: Vec<(Option<usize>, i32)> =
                            (0..=10).map(|r| (Some(r), 0)).collect();
                        for imm in [0, 1, -1, 7, -7, i32::MAX, i32::MIN] {
                            divisors.push((None, imm));
                        }
                        for (divisor, imm) in divisors {
                            let got = bytes(|o| {
                                *o = div_rem(*o, w64, signed, rem, dn, divisor, imm);
                            });
                            let want = bytes(|o| {
                                *o =
                                    div_rem_ref(*o, s, signed, rem, xd, divisor.map(|r| X[r]), imm);
                            });
                            assert_eq!(
                                got, want,
                                "r{dn} w64={w64} signed={signed} rem={rem} by {divisor:?}/{imm}"
                            );
                        }
                    }
                }
            }
        }
    }
}
