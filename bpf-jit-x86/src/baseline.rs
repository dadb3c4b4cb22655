//! The baseline tier: one pass from bytecode to x86-64 machine code.
//!
//! [`Baseline`] compiles straight from the 8-byte slots as a loader
//! receives them, with no decoded [`bpf_isa::Program`], no plan and no
//! layout passes: a pre-scan finds the subprograms and the callee-saved
//! registers in use, then each instruction is checked against the
//! decoder's field rules and lowered with one dispatch on its opcode,
//! writing its bytes directly. Forward branches take the 4-byte form and
//! are patched at the end; backward ones take the short form when it
//! reaches.
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
//! (see [`Baseline::try_compile`]): tail calls, `ld_imm64` pseudo sources,
//! kfunc calls, `callx`, `may_goto`, `addr_space_cast`, `ld_abs`/`ld_ind`,
//! the fetching `and`/`or`/`xor` atomics, `bpf_fastcall` helpers, constant
//! blinding, private stacks, and every program the optimizing compiler
//! would reject (invalid encodings, bad branch targets, recursion, …).
//! [`Baseline::compile`] does that fallback itself, so it accepts and
//! rejects exactly what `Program::decode` plus [`crate::Compiler::compile`] do.

use bpf_jit::{
    JitError, JitErrorKind, JitOptions, JitProgram, DEFAULT_STACK_DEPTH, TAIL_CALL_HELPER,
};

use crate::{direct, Compiler, X86Masm, REG_MAP};

/// Native register number of each eBPF register (`r0`..`r10`; the rest
/// are never read: the pre-scan refuses register fields above 10).
const X: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < REG_MAP.len() {
        t[i] = REG_MAP[i].num();
        i += 1;
    }
    t
};

const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
/// The scratch register ([`crate::AUX`]).
const R11: u8 = 11;

/// x86 condition code of each conditional jump op (`code >> 4`); 0xff for none.
const CC: [u8; 16] = [
    0xff, 0x4, 0x7, 0x3, 0x5, 0x5, 0xf, 0xd, 0xff, 0xff, 0x2, 0x6, 0xc, 0xe, 0xff, 0xff,
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

/// By a slot's register byte (dst in the low nibble, src in the high):
/// REX.R and REX.B (low byte) and the register-direct modrm (high byte)
/// with src's native register in the reg field and dst's in r/m.
const PAIR: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let (d, s) = (X[b & 15], X[b >> 4]);
        t[b] = ((s >> 3) << 2 | (d >> 3)) as u16 | ((0xc0 | (s & 7) << 3 | (d & 7)) as u16) << 8;
        b += 1;
    }
    t
};

/// By a register nibble: REX.B (low byte) and the register-direct modrm
/// with that register in r/m and 0 in the reg field (high byte).
const RM1: [u16; 16] = {
    let mut t = [0u16; 16];
    let mut r = 0;
    while r < 16 {
        t[r] = (X[r] >> 3) as u16 | ((0xc0 | (X[r] & 7)) as u16) << 8;
        r += 1;
    }
    t
};

/// The 0x81/0x83 group's operation for add, sub, or, and, xor (by `code >> 4`).
const ALU_EXT: [u8; 16] = [0, 5, 0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0];
/// The register-to-register opcode of add, sub, or, and, xor (by `code >> 4`).
const ALU_OPC: [u8; 16] = [
    0x01, 0x29, 0, 0, 0x09, 0x21, 0, 0, 0, 0, 0x31, 0, 0, 0, 0, 0,
];

/// Most bytes one eBPF instruction lowers to (a division with its checks is
/// about 40, a helper call 13, an `exit` 12), with room to spare: the
/// buffer always has this much (plus one 8-byte store) free before an
/// instruction is lowered.
const MAX_INSN_BYTES: usize = 128;

/// Slot offset marking the second slot of an `ld_imm64` (not a branch target).
const NOT_A_START: u32 = u32::MAX;

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
    /// Native offset of each slot's code ([`NOT_A_START`] for an `ld_imm64`'s second slot).
    offs: Vec<u32>,
    /// Forward branches: offset of the 4-byte displacement, target slot.
    fixups: Vec<(u32, u32)>,
    /// bpf-to-bpf call sites found by the pre-scan: site slot, target slot.
    calls: Vec<(u32, u32)>,
    /// Emitted bpf-to-bpf calls: offset of the displacement, target slot.
    call_fixups: Vec<(u32, u32)>,
    /// Entry offset of each subprogram (where its `nop5` starts).
    entries: Vec<u32>,
    /// Subprogram start slots, sorted (the main one, 0, first).
    starts: Vec<u32>,
    /// Call-graph edges (caller, callee) by subprogram index.
    edges: Vec<(u16, u16)>,
    /// The optimizing compiler, for what this one leaves to it.
    full: Compiler,
}

/// Cursor writing into the code buffer's spare capacity.
#[derive(Clone, Copy)]
struct Out {
    p: *mut u8,
    at: usize,
}

impl Out {
    /// Writes the low `n` bytes of `v` (`n <= 8`).
    #[inline(always)]
    fn put(&mut self, v: u64, n: usize) {
        // SAFETY: before each instruction is lowered, the buffer has
        // `MAX_INSN_BYTES + 8` bytes of capacity past `at`, and no
        // lowering writes more than `MAX_INSN_BYTES`; `at` only grows by
        // what was written.
        unsafe { self.p.add(self.at).cast::<u64>().write_unaligned(v) };
        self.at += n;
    }

    /// Overwrites the byte at `pos` (already written).
    #[inline(always)]
    fn patch8(&mut self, pos: usize, v: u8) {
        debug_assert!(pos < self.at);
        // SAFETY: `pos` is below `at`, inside the buffer's capacity.
        unsafe { self.p.add(pos).write(v) };
    }

    /// Points the rel8 whose byte is at `pos` to the current offset.
    #[inline(always)]
    fn land8(&mut self, pos: usize) {
        // Internal sequences are far shorter than 127 bytes.
        self.patch8(pos, (self.at - pos - 1) as u8);
    }
}

#[inline(always)]
const fn rex(w: bool, r: u8, b: u8) -> u8 {
    0x40 | ((w as u8) << 3) | ((r >> 3) << 2) | (b >> 3)
}

#[inline(always)]
const fn modrm_rr(reg: u8, rm: u8) -> u64 {
    (0xc0 | ((reg & 7) << 3) | (rm & 7)) as u64
}

/// Whether `r` is `spl`/`bpl`/`sil`/`dil` as a byte operand (needs a REX prefix).
#[inline(always)]
const fn byte_rex(r: u8) -> bool {
    r & 0b1100 == 0b0100
}

/// Writes `v`, a sequence of `n` bytes starting with a REX prefix,
/// without that prefix when it is the plain 0x40 and `keep` is unset.
#[inline(always)]
fn put_rex(o: &mut Out, v: u64, n: usize, keep: bool) {
    let skip = usize::from(v as u8 == 0x40 && !keep);
    o.put(v >> (8 * skip), n - skip);
}

/// `[REX] op /r` with the registers of a slot's register byte `b1`
/// (src in the reg field, dst in r/m; see [`PAIR`]).
#[inline(always)]
fn rr_b1(o: &mut Out, w: bool, opc: u8, b1: u8) {
    let p = u64::from(PAIR[usize::from(b1)]);
    let v = (0x40 | u64::from(w) << 3 | (p & 0xff)) | u64::from(opc) << 8 | (p >> 8) << 16;
    put_rex(o, v, 3, false);
}

/// `op r, imm` of the 0x81/0x83 group on eBPF register `dnum` (`ext` = the operation).
#[inline(always)]
fn ri_n(o: &mut Out, w: bool, ext: u8, dnum: usize, imm: i32) {
    let r = u64::from(RM1[dnum & 15]);
    let small = imm as i8 as i32 == imm;
    let opc: u64 = if small { 0x83 } else { 0x81 };
    let v = (0x40 | u64::from(w) << 3 | (r & 0xff))
        | opc << 8
        | ((r >> 8) | u64::from(ext) << 3) << 16
        | u64::from(imm as u32) << 24;
    put_rex(o, v, if small { 4 } else { 7 }, false);
}

/// `[REX] op /r` with a register `rm`.
#[inline(always)]
fn rr(o: &mut Out, w: bool, opc: u8, reg: u8, rm: u8) {
    let v = u64::from(rex(w, reg, rm)) | u64::from(opc) << 8 | modrm_rr(reg, rm) << 16;
    put_rex(o, v, 3, false);
}

/// `[REX] 0F op /r` with a register `rm` (a REX is forced when `rm` is a
/// byte operand that needs one and `byte` is set).
#[inline(always)]
fn rr0f(o: &mut Out, w: bool, opc: u8, reg: u8, rm: u8, byte: bool) {
    let v = u64::from(rex(w, reg, rm)) | 0x0f << 8 | u64::from(opc) << 16 | modrm_rr(reg, rm) << 24;
    put_rex(o, v, 4, byte && byte_rex(rm));
}

/// `op rm, imm` of the 0x81/0x83 group (`ext` = the operation).
#[inline(always)]
fn ri(o: &mut Out, w: bool, ext: u8, rm: u8, imm: i32) {
    let small = imm as i8 as i32 == imm;
    let opc: u64 = if small { 0x83 } else { 0x81 };
    let m = 0xc0 | u64::from(ext << 3) | u64::from(rm & 7);
    // The imm8 form's byte is the low byte of the 4 written.
    let v = u64::from(rex(w, 0, rm)) | opc << 8 | m << 16 | u64::from(imm as u32) << 24;
    put_rex(o, v, if small { 4 } else { 7 }, false);
}

/// `mov r64, r64` (nothing when they are the same).
#[inline(always)]
fn mov64(o: &mut Out, dst: u8, src: u8) {
    if dst != src {
        rr(o, true, 0x89, src, dst);
    }
}

/// `mov r32, r32` (zero-extends).
#[inline(always)]
fn mov32(o: &mut Out, dst: u8, src: u8) {
    rr(o, false, 0x89, src, dst);
}

/// `xor r32, r32` (zeroes the register).
#[inline(always)]
fn zero(o: &mut Out, r: u8) {
    rr(o, false, 0x31, r, r);
}

/// `mov r32, imm32` (zero-extends).
#[inline(always)]
fn mov32_imm(o: &mut Out, dst: u8, imm: u32) {
    if dst >= 8 {
        o.put(0x41, 1);
    }
    o.put(u64::from(0xb8 + (dst & 7)) | u64::from(imm) << 8, 5);
}

/// `dst = imm` (64-bit, `imm` sign-extended).
#[inline(always)]
fn mov_imm(o: &mut Out, dst: u8, imm: i32) {
    if imm >= 0 {
        mov32_imm(o, dst, imm as u32);
    } else {
        // mov r64, simm32
        let v = u64::from(rex(true, 0, dst)) | 0xc7 << 8 | modrm_rr(0, dst) << 16;
        o.put(v | u64::from(imm as u32) << 24, 7);
    }
}

/// `dst = v` for any 64-bit value.
#[inline(always)]
fn mov_imm64(o: &mut Out, dst: u8, v: u64) {
    if v <= u64::from(u32::MAX) {
        mov32_imm(o, dst, v as u32);
    } else if let Ok(i) = i32::try_from(v as i64) {
        mov_imm(o, dst, i);
    } else {
        // movabs r64, imm64
        o.put(
            u64::from(rex(true, 0, dst)) | u64::from(0xb8 + (dst & 7)) << 8,
            2,
        );
        o.put(v, 8);
    }
}

/// Memory operand instruction: `[66] [REX] opc modrm disp` with base
/// `base` (never `rsp`/`r12`, which no eBPF register maps to) and `reg`
/// in the modrm's reg field. `opc` holds `nopc` (1 or 2) opcode bytes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mem(
    o: &mut Out,
    p66: bool,
    w: bool,
    force_rex: bool,
    opc: u64,
    nopc: usize,
    reg: u8,
    base: u8,
    disp: i32,
) {
    if p66 {
        o.put(0x66, 1);
    }
    let small = disp as i8 as i32 == disp;
    let m = if small { 0x40 } else { 0x80 } | u64::from(((reg & 7) << 3) | (base & 7));
    let v = u64::from(rex(w, reg, base)) | opc << 8 | m << (8 + 8 * nopc);
    put_rex(o, v, 2 + nopc, force_rex);
    o.put(u64::from(disp as u32), if small { 1 } else { 4 });
}

/// Grows `code` (whose first `at` bytes are written); returns the new
/// base pointer and limit ([`Em::limit`]).
#[cold]
#[inline(never)]
fn grow(code: &mut Vec<u8>, at: usize) -> (*mut u8, usize) {
    // SAFETY: the first `at` bytes were written.
    unsafe { code.set_len(at) };
    code.reserve(MAX_INSN_BYTES * 64);
    (code.as_mut_ptr(), code.capacity() - (MAX_INSN_BYTES + 8))
}

/// What [`Baseline::try_compile`] hands back when it leaves a program to
/// the optimizing compiler (internal).
struct Fallback;

type Step<T> = Result<T, Fallback>;

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
        if !rest.is_empty() || words.is_empty() || words.len() >= (u32::MAX / 2) as usize {
            return Ok(None);
        }
        let Ok(used) = self.scan(words) else {
            return Ok(None);
        };
        if self.emit(words, used, opts).is_err() || self.resolve().is_err() {
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

    /// The pre-scan: register fields in range, subprogram starts, call
    /// edges (acyclic, every subprogram reachable), and what the baseline
    /// leaves to the optimizing compiler among the calls and `ld_imm64`s.
    /// Returns the registers named anywhere (bit `i` for `ri`).
    fn scan(&mut self, words: &[[u8; 8]]) -> Step<u32> {
        let n = words.len();
        self.starts.clear();
        self.starts.push(0);
        self.calls.clear();
        let mut used = 0u32;
        let mut i = 0;
        while let Some(w) = words.get(i) {
            let w = u64::from_le_bytes(*w);
            used |= NIBBLES[usize::from((w >> 8) as u8)];
            match w as u8 {
                0x18 => {
                    if w & SRC_FIELD != 0 {
                        return Err(Fallback);
                    }
                    i += 2;
                    continue;
                }
                0x85 => {
                    let imm = (w >> 32) as i32;
                    match (w >> 12) & 15 {
                        0 if imm != TAIL_CALL_HELPER => {}
                        1 => {
                            let t = i as i64 + 1 + i64::from(imm);
                            if t < 0 || t >= n as i64 {
                                return Err(Fallback);
                            }
                            self.starts.push(t as u32);
                            self.calls.push((i as u32, t as u32));
                        }
                        _ => return Err(Fallback),
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if used & !0x7ff != 0 {
            return Err(Fallback);
        }
        if self.starts.len() > 1 {
            self.starts.sort_unstable();
            self.starts.dedup();
            self.check_call_graph()?;
        }
        Ok(used)
    }

    /// Acyclic call graph, every subprogram reachable from the main one,
    /// and far fewer subprograms than `BPF_MAX_SUBPROGS`.
    fn check_call_graph(&mut self) -> Step<()> {
        let k = self.starts.len();
        if k > 64 {
            return Err(Fallback);
        }
        self.edges.clear();
        for &(site, target) in &self.calls {
            let caller = self.starts.partition_point(|&s| s <= site) - 1;
            let callee = self.starts.binary_search(&target).map_err(|_| Fallback)?;
            self.edges.push((caller as u16, callee as u16));
        }
        self.edges.sort_unstable();
        self.edges.dedup();
        // Depth-first from the main subprogram: 0 unvisited, 1 on the
        // path, 2 done; an edge to a node on the path is recursion.
        let mut state = [0u8; 64];
        let mut stack: [(u16, usize); 64] = [(0, 0); 64];
        let mut depth = 1;
        state[0] = 1;
        stack[0] = (0, 0);
        while depth > 0 {
            let (node, next) = stack[depth - 1];
            match self.edges.get(next) {
                Some(&(from, to)) if from == node => {
                    stack[depth - 1].1 += 1;
                    match state[usize::from(to)] {
                        0 => {
                            state[usize::from(to)] = 1;
                            stack[depth] = (to, self.edges.partition_point(|e| e.0 < to));
                            depth += 1;
                        }
                        1 => return Err(Fallback),
                        _ => {}
                    }
                }
                _ => {
                    state[usize::from(node)] = 2;
                    depth -= 1;
                }
            }
        }
        if state[..k].iter().any(|&s| s != 2) {
            return Err(Fallback);
        }
        Ok(())
    }

    /// Lowers every subprogram. `used`: registers named (bit `i` for `ri`).
    fn emit(&mut self, words: &[[u8; 8]], used: u32, opts: &JitOptions<'_>) -> Step<()> {
        let n = words.len();
        self.offs.clear();
        self.offs.resize(n, 0);
        self.fixups.clear();
        self.call_fixups.clear();
        self.entries.clear();
        self.code.clear();
        self.code.reserve(n * 16 + 4 * MAX_INSN_BYTES);
        let mut em = Em {
            o: Out {
                p: self.code.as_mut_ptr(),
                at: 0,
            },
            limit: self.code.capacity() - (MAX_INSN_BYTES + 8),
            code: &mut self.code,
            offs: &mut self.offs,
            fixups: &mut self.fixups,
            call_fixups: &mut self.call_fixups,
        };
        // Callee-saved registers (r6-r9) pushed by every frame, and the
        // pops of the epilogue, in reverse order.
        let (mut pushes, mut npush) = (0u64, 0);
        let (mut pops, mut npops) = (0u64, 0);
        for (r, &x) in X.iter().enumerate().take(10).skip(6) {
            if used & (1 << r) != 0 {
                let (push, pop, len) = if x >= 8 {
                    (
                        0x41 | u64::from(0x50 + (x & 7)) << 8,
                        0x41 | u64::from(0x58 + (x & 7)) << 8,
                        2,
                    )
                } else {
                    (u64::from(0x50 + x), u64::from(0x58 + x), 1)
                };
                pushes |= push << (8 * npush);
                npush += len;
                pops = pops << (8 * len) | pop;
                npops += len;
            }
        }
        let count = (used >> 6 & 0xf).count_ones();
        let pad = if count % 2 == 1 { 8 } else { 0 };

        let nsub = self.starts.len();
        for s in 0..nsub {
            let begin = self.starts[s] as usize;
            let end = self.starts.get(s + 1).map_or(n, |&e| e as usize);
            em.room();
            let o = &mut em.o;
            // The frame: depth rounded to 16, plus the pad keeping rsp
            // 16-byte aligned after the pushes.
            let depth = opts
                .stack_depths
                .and_then(|d| d.get(s).copied())
                .unwrap_or(DEFAULT_STACK_DEPTH);
            if depth > 1 << 24 {
                return Err(Fallback);
            }
            let size = ((depth + 15) & !15) + pad;
            self.entries.push(o.at as u32);
            // nop5, then on the main entry nop2 (no tail calls here)
            o.put(0x00_0044_1f0f, 5);
            if s == 0 {
                o.put(0x9066, 2);
            }
            // push rbp; mov rbp, rsp; sub rsp, imm32
            o.put(0x00ec_8148_e589_4855, 8);
            o.at -= 1;
            o.put(u64::from(size), 4);
            o.put(pushes, npush);
            let mut i = begin;
            let mut last = 0u8;
            if end > words.len() || end > em.offs.len() {
                return Err(Fallback);
            }
            while i < end {
                em.room();
                let w = u64::from_le_bytes(words[i]);
                em.offs[i] = em.o.at as u32;
                last = w as u8;
                i = em.insn(words, w, i, begin, end, opts, pops, npops)?;
            }
            // The last instruction must not fall through.
            if !matches!(last, 0x95 | 0x05 | 0x06) {
                return Err(Fallback);
            }
        }
        // SAFETY: the first `at` bytes were written.
        let at = em.o.at;
        unsafe { self.code.set_len(at) };
        Ok(())
    }
}

/// The emission state of one compile, kept in registers by the optimizer
/// (nothing takes its address outside inlined code).
struct Em<'a> {
    o: Out,
    /// `o.at` beyond which the next instruction may not fit.
    limit: usize,
    code: &'a mut Vec<u8>,
    offs: &'a mut [u32],
    fixups: &'a mut Vec<(u32, u32)>,
    call_fixups: &'a mut Vec<(u32, u32)>,
}

impl Em<'_> {
    /// Makes room for one more instruction's bytes.
    #[inline(always)]
    fn room(&mut self) {
        if self.o.at > self.limit {
            let (p, limit) = grow(self.code, self.o.at);
            self.o.p = p;
            self.limit = limit;
        }
    }

    /// Lowers the instruction at slot `i` (raw `w`) of the subprogram
    /// `[begin, end)`; returns the next slot.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn insn(
        &mut self,
        words: &[[u8; 8]],
        w: u64,
        i: usize,
        begin: usize,
        end: usize,
        opts: &JitOptions<'_>,
        pops: u64,
        npops: usize,
    ) -> Step<usize> {
        let o = &mut self.o;
        let code = w as u8;
        let dnum = ((w >> 8) & 15) as usize;
        let snum = ((w >> 12) & 15) as usize;
        let dst = X[dnum];
        let src = X[snum];
        let off = (w >> 16) as i16;
        let imm = (w >> 32) as i32;
        let zero_ok = |mask: u64| if w & mask == 0 { Ok(()) } else { Err(Fallback) };
        match code {
            // ---- ALU / ALU64 with an immediate ----
            0x04 | 0x14 | 0x44 | 0x54 | 0xa4 | 0x07 | 0x17 | 0x47 | 0x57 | 0xa7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let ext = ALU_EXT[usize::from(code >> 4)];
                ri_n(o, code & 7 == 7, ext, dnum, imm);
            }
            0x0c | 0x1c | 0x4c | 0x5c | 0xac | 0x0f | 0x1f | 0x4f | 0x5f | 0xaf => {
                zero_ok(IMM_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let opc = ALU_OPC[usize::from(code >> 4)];
                rr_b1(o, code & 7 == 7, opc, (w >> 8) as u8);
            }
            // mov
            0xb4 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                mov32_imm(o, dst, imm as u32);
            }
            0xb7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                mov_imm(o, dst, imm);
            }
            0xbc | 0xbf => {
                zero_ok(IMM_FIELD)?;
                no_r10(dnum)?;
                let w64 = code == 0xbf;
                match (off, w64) {
                    (0, true) => {
                        if dnum != snum {
                            rr_b1(o, true, 0x89, (w >> 8) as u8);
                        }
                    }
                    (0, false) => rr_b1(o, false, 0x89, (w >> 8) as u8),
                    (8, _) => rr0f(o, w64, 0xbe, dst, src, true),
                    (16, _) => rr0f(o, w64, 0xbf, dst, src, false),
                    (32, true) => rr(o, true, 0x63, dst, src),
                    _ => return Err(Fallback),
                }
            }
            // mul
            0x24 | 0x27 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let x = rex(code == 0x27, dst, dst);
                let m = modrm_rr(dst, dst);
                let (mut v, mut len) = if imm as i8 as i32 == imm {
                    (
                        u64::from(x) | 0x6b << 8 | m << 16 | u64::from(imm as u8) << 24,
                        4,
                    )
                } else {
                    (
                        u64::from(x) | 0x69 << 8 | m << 16 | u64::from(imm as u32) << 24,
                        7,
                    )
                };
                if x == 0x40 {
                    v >>= 8;
                    len -= 1;
                }
                o.put(v, len);
            }
            0x2c | 0x2f => {
                zero_ok(IMM_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                rr0f(o, code == 0x2f, 0xaf, dst, src, false);
            }
            // shifts by an immediate
            0x64 | 0x74 | 0xc4 | 0x67 | 0x77 | 0xc7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let w64 = code & 7 == 7;
                let count = (imm as u32 & if w64 { 63 } else { 31 }) as u8;
                if count == 0 {
                    // Nothing to shift; a 32-bit result is still zero-extended.
                    if !w64 {
                        mov32(o, dst, dst);
                    }
                } else {
                    let ext = shift_ext(code);
                    let r = u64::from(RM1[dnum]);
                    let v = (0x40 | u64::from(w64) << 3 | (r & 0xff))
                        | 0xc1 << 8
                        | ((r >> 8) | u64::from(ext) << 3) << 16
                        | u64::from(count) << 24;
                    put_rex(o, v, 4, false);
                }
            }
            // shifts by a register (x86 masks the count as eBPF does)
            0x6c | 0x7c | 0xcc | 0x6f | 0x7f | 0xcf => {
                zero_ok(IMM_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let w64 = code & 7 == 7;
                let ext = shift_ext(code);
                let shift_cl = |o: &mut Out, r: u8| rr(o, w64, 0xd3, ext, r);
                if src == RCX {
                    shift_cl(o, dst);
                } else {
                    // rcx (r4) is saved in r11 around the shift.
                    mov64(o, R11, RCX);
                    mov64(o, RCX, src);
                    if dst == RCX {
                        shift_cl(o, R11);
                    } else {
                        shift_cl(o, dst);
                    }
                    mov64(o, RCX, R11);
                }
            }
            // neg
            0x84 | 0x87 => {
                zero_ok(SRC_FIELD | OFF_FIELD | IMM_FIELD)?;
                no_r10(dnum)?;
                rr(o, code == 0x87, 0xf7, 3, dst);
            }
            // div, mod (off 1: signed)
            0x34 | 0x37 | 0x94 | 0x97 | 0x3c | 0x3f | 0x9c | 0x9f => {
                let by_reg = code & 8 != 0;
                zero_ok(if by_reg { IMM_FIELD } else { SRC_FIELD })?;
                no_r10(dnum)?;
                if off != 0 && off != 1 {
                    return Err(Fallback);
                }
                let w64 = code & 7 == 7;
                let rem = code >> 4 == 9;
                let divisor = if by_reg { Some(src) } else { None };
                self.o = div_rem(*o, w64, off == 1, rem, dst, divisor, imm);
            }
            // endianness
            0xd4 | 0xdc | 0xd7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let swap = code != 0xd4;
                match (imm, swap) {
                    (16, false) => rr0f(o, false, 0xb7, dst, dst, false),
                    (32, false) => mov32(o, dst, dst),
                    (64, false) => {}
                    (16, true) => {
                        // ror r16, 8; movzx r32, r16
                        o.put(0x66, 1);
                        let x = rex(false, 0, dst);
                        let v =
                            u64::from(x) | 0xc1 << 8 | (0xc8 | u64::from(dst & 7)) << 16 | 8 << 24;
                        if x != 0x40 {
                            o.put(v, 4);
                        } else {
                            o.put(v >> 8, 3);
                        }
                        rr0f(o, false, 0xb7, dst, dst, false);
                    }
                    (32 | 64, true) => {
                        let x = rex(imm == 64, 0, dst);
                        let v = u64::from(x) | 0x0f << 8 | u64::from(0xc8 + (dst & 7)) << 16;
                        if x != 0x40 {
                            o.put(v, 3);
                        } else {
                            o.put(v >> 8, 2);
                        }
                    }
                    _ => return Err(Fallback),
                }
            }
            // ---- loads and stores ----
            0x61 | 0x69 | 0x71 | 0x79 | 0x81 | 0x89 | 0x91 => {
                zero_ok(IMM_FIELD)?;
                no_r10(dnum)?;
                load(o, code, dst, src, i32::from(off));
            }
            0x62 | 0x6a | 0x72 | 0x7a => {
                zero_ok(SRC_FIELD)?;
                let disp = i32::from(off);
                match code {
                    0x72 => {
                        mem(o, false, false, false, 0xc6, 1, 0, dst, disp);
                        o.put(u64::from(imm as u8), 1);
                    }
                    0x6a => {
                        mem(o, true, false, false, 0xc7, 1, 0, dst, disp);
                        o.put(u64::from(imm as u16), 2);
                    }
                    _ => {
                        mem(o, false, code == 0x7a, false, 0xc7, 1, 0, dst, disp);
                        o.put(u64::from(imm as u32), 4);
                    }
                }
            }
            0x63 | 0x6b | 0x73 | 0x7b => {
                zero_ok(IMM_FIELD)?;
                store(o, code, dst, src, i32::from(off));
            }
            // atomics
            0xc3 | 0xdb | 0xd3 | 0xcb => {
                let disp = i32::from(off);
                let w64 = code == 0xdb;
                let rmw = matches!(code, 0xc3 | 0xdb);
                match imm {
                    // lock add/or/and/xor
                    0x00 | 0x40 | 0x50 | 0xa0 if rmw => {
                        let opc = match imm {
                            0x00 => 0x01,
                            0x40 => 0x09,
                            0x50 => 0x21,
                            _ => 0x31,
                        };
                        o.put(0xf0, 1);
                        mem(o, false, w64, false, opc, 1, src, dst, disp);
                    }
                    // lock xadd, xchg: the old value into src
                    0x01 | 0xe1 if rmw => {
                        no_r10(snum)?;
                        if imm == 0x01 {
                            o.put(0xf0, 1);
                            mem(o, false, w64, false, 0xc10f, 2, src, dst, disp);
                        } else {
                            mem(o, false, w64, false, 0x87, 1, src, dst, disp);
                        }
                    }
                    // fetching and/or/xor: a lock cmpxchg loop through rax
                    0x41 | 0x51 | 0xa1 if rmw => {
                        no_r10(snum)?;
                        fetch_op(o, w64, imm, dst, src, disp);
                    }
                    // lock cmpxchg: r0 is the comparand and gets the old value
                    0xf1 if rmw => {
                        o.put(0xf0, 1);
                        mem(o, false, w64, false, 0xb10f, 2, src, dst, disp);
                        if !w64 {
                            // Success leaves eax's upper half alone: zero-extend.
                            mov32(o, RAX, RAX);
                        }
                    }
                    // load-acquire (dst = *(src + off)) and store-release
                    // (*(dst + off) = src): plain moves under x86's ordering.
                    0x100 => {
                        no_r10(dnum)?;
                        let size = code & 0x18;
                        load(o, 0x61 | size, dst, src, disp);
                    }
                    0x110 => {
                        let size = code & 0x18;
                        store(o, 0x63 | size, dst, src, disp);
                    }
                    _ => return Err(Fallback),
                }
            }
            // ld_imm64 (plain; the pre-scan left pseudo sources out)
            0x18 => {
                no_r10(dnum)?;
                zero_ok(OFF_FIELD)?;
                let hi = words.get(i + 1).ok_or(Fallback)?;
                let hi = u64::from_le_bytes(*hi);
                if hi & 0xffff_ffff != 0 || i + 1 >= end {
                    return Err(Fallback);
                }
                self.offs[i + 1] = NOT_A_START;
                mov_imm64(o, dst, (w >> 32) | (hi & IMM_FIELD));
                return Ok(i + 2);
            }
            // ---- jumps ----
            0x05 => {
                zero_ok(SRC_FIELD | DST_FIELD | IMM_FIELD)?;
                self.jump(None, i, i as i64 + 1 + i64::from(off), begin, end)?;
            }
            0x06 => {
                zero_ok(SRC_FIELD | DST_FIELD | OFF_FIELD)?;
                self.jump(None, i, i as i64 + 1 + i64::from(imm), begin, end)?;
            }
            0x85 => {
                zero_ok(DST_FIELD | OFF_FIELD)?;
                if snum == 0 {
                    // Helper (the pre-scan left tail calls out).
                    let addr = opts.helpers.address(imm).ok_or(Fallback)?;
                    if opts.helpers.preserve_mask(imm) != 0 {
                        return Err(Fallback);
                    }
                    // movabs r11, addr; call r11
                    o.put(0xbb49, 2);
                    o.put(addr, 8);
                    o.put(0xd3ff41, 3);
                } else {
                    // bpf-to-bpf (the pre-scan checked the target).
                    let t = (i as i64 + 1 + i64::from(imm)) as u32;
                    o.put(0xe8, 1);
                    self.call_fixups.push((o.at as u32, t));
                    o.put(0, 4);
                }
            }
            0x95 => {
                zero_ok(!0xff)?;
                // pops; leave; ret
                o.put(pops, npops);
                o.put(0xc3c9, 2);
            }
            _ => {
                // Conditional jumps, 64- and 32-bit.
                let class = code & 7;
                let cc = CC[usize::from(code >> 4)];
                if !(class == 5 || class == 6) || cc == 0xff {
                    return Err(Fallback);
                }
                let w64 = class == 5;
                let set = code >> 4 == 4;
                if code & 8 != 0 {
                    zero_ok(IMM_FIELD)?;
                    // cmp dst, src / test dst, src
                    rr(o, w64, if set { 0x85 } else { 0x39 }, src, dst);
                } else {
                    zero_ok(SRC_FIELD)?;
                    if set {
                        // test dst, imm32
                        let x = rex(w64, 0, dst);
                        let v = u64::from(x)
                            | 0xf7 << 8
                            | modrm_rr(0, dst) << 16
                            | u64::from(imm as u32) << 24;
                        if x != 0x40 {
                            o.put(v, 7);
                        } else {
                            o.put(v >> 8, 6);
                        }
                    } else if imm == 0 && (cc == 4 || cc == 5) {
                        rr(o, w64, 0x85, dst, dst);
                    } else {
                        ri(o, w64, 7, dst, imm);
                    }
                }
                self.jump(Some(cc), i, i as i64 + 1 + i64::from(off), begin, end)?;
            }
        }
        Ok(i + 1)
    }

    /// `jmp`/`jcc` from slot `i` to slot `t`, inside `[begin, end)`.
    #[inline(always)]
    fn jump(&mut self, cc: Option<u8>, i: usize, t: i64, begin: usize, end: usize) -> Step<()> {
        if t < begin as i64 || t >= end as i64 {
            return Err(Fallback);
        }
        let t = t as usize;
        let o = &mut self.o;
        if t == i + 1 && cc.is_none() {
            // To the next instruction.
            return Ok(());
        }
        if t <= i {
            let dest = self.offs[t];
            if dest == NOT_A_START {
                return Err(Fallback);
            }
            let short = i64::from(dest) - (o.at as i64 + 2);
            if let Ok(d) = i8::try_from(short) {
                let op = cc.map_or(0xeb, |c| 0x70 + c);
                o.put(u64::from(op) | u64::from(d as u8) << 8, 2);
            } else {
                match cc {
                    Some(c) => {
                        let d = i64::from(dest) - (o.at as i64 + 6);
                        o.put(
                            0x800f | u64::from(c) << 8 | u64::from(d as i32 as u32) << 16,
                            6,
                        );
                    }
                    None => {
                        let d = i64::from(dest) - (o.at as i64 + 5);
                        o.put(0xe9 | u64::from(d as i32 as u32) << 8, 5);
                    }
                }
            }
        } else {
            match cc {
                Some(c) => o.put(0x800f | u64::from(c) << 8, 2),
                None => o.put(0xe9, 1),
            }
            self.fixups.push((o.at as u32, t as u32));
            o.put(0, 4);
        }
        Ok(())
    }
}

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

/// The 0xc1/0xd3 group's operation for a shift opcode.
#[inline(always)]
fn shift_ext(code: u8) -> u8 {
    match code >> 4 {
        6 => 4, // shl
        7 => 5, // shr
        _ => 7, // sar
    }
}

/// `dst = *(size *)(base + disp)`, zero- or (mode `MEMSX`) sign-extended.
#[inline(always)]
fn load(o: &mut Out, code: u8, dst: u8, base: u8, disp: i32) {
    let (w, opc, n) = match (code & 0xe0 == 0x80, code & 0x18) {
        (false, 0x10) => (false, 0xb60f, 2), // movzx r32, m8
        (false, 0x08) => (false, 0xb70f, 2), // movzx r32, m16
        (false, 0x00) => (false, 0x8b, 1),   // mov r32, m32
        (false, _) => (true, 0x8b, 1),       // mov r64, m64
        (true, 0x10) => (true, 0xbe0f, 2),   // movsx r64, m8
        (true, 0x08) => (true, 0xbf0f, 2),   // movsx r64, m16
        (true, _) => (true, 0x63, 1),        // movsxd r64, m32
    };
    mem(o, false, w, false, opc, n, dst, base, disp);
}

/// `*(size *)(base + disp) = src`.
#[inline(always)]
fn store(o: &mut Out, code: u8, base: u8, src: u8, disp: i32) {
    match code & 0x18 {
        0x10 => mem(o, false, false, byte_rex(src), 0x88, 1, src, base, disp),
        0x08 => mem(o, true, false, false, 0x89, 1, src, base, disp),
        0x00 => mem(o, false, false, false, 0x89, 1, src, base, disp),
        _ => mem(o, false, true, false, 0x89, 1, src, base, disp),
    }
}

/// Division and remainder with the kernel's semantics: by zero, the
/// quotient is 0 and the remainder the dividend (zero-extended when
/// 32-bit); signed by -1, the quotient is `-dst` (`INT_MIN` stays) and
/// the remainder 0. `divisor`: the register (checked at run time), or
/// `None` for the immediate `imm` (decided here).
#[inline(never)]
fn div_rem(
    mut o: Out,
    w64: bool,
    signed: bool,
    rem: bool,
    dst: u8,
    divisor: Option<u8>,
    imm: i32,
) -> Out {
    // Out of line (and by value, keeping the caller's cursor in registers).
    div_rem_in(&mut o, w64, signed, rem, dst, divisor, imm);
    o
}

#[inline(always)]
fn div_rem_in(
    o: &mut Out,
    w64: bool,
    signed: bool,
    rem: bool,
    dst: u8,
    divisor: Option<u8>,
    imm: i32,
) {
    let neg = |o: &mut Out| rr(o, w64, 0xf7, 3, dst);
    let mut done = [0usize; 2];
    let mut ndone = 0;
    let d = match divisor {
        None => {
            match (imm, rem) {
                (0, false) => return zero(o, dst),
                (0, true) => {
                    if !w64 {
                        mov32(o, dst, dst);
                    }
                    return;
                }
                (-1, false) if signed => return neg(o),
                (-1, true) if signed => return zero(o, dst),
                _ => {}
            }
            if w64 {
                mov_imm(o, R11, imm);
            } else {
                mov32_imm(o, R11, imm as u32);
            }
            R11
        }
        Some(s) => {
            // The divisor stays in place unless it is rax or rdx.
            let d = if s == RAX || s == RDX {
                mov64(o, R11, s);
                R11
            } else {
                s
            };
            // test d, d; jnz 1f; <by zero>; jmp done; 1:
            rr(o, w64, 0x85, d, d);
            o.put(0x75, 2);
            let nonzero = o.at - 1;
            if !rem {
                zero(o, dst);
            } else if !w64 {
                mov32(o, dst, dst);
            }
            o.put(0xeb, 2);
            done[0] = o.at - 1;
            ndone = 1;
            o.land8(nonzero);
            if signed {
                // cmp d, -1; jne 2f; <by -1>; jmp done; 2:
                ri(o, w64, 7, d, -1);
                o.put(0x75, 2);
                let other = o.at - 1;
                if rem {
                    zero(o, dst);
                } else {
                    neg(o);
                }
                o.put(0xeb, 2);
                done[1] = o.at - 1;
                ndone = 2;
                o.land8(other);
            }
            d
        }
    };
    if dst != RAX {
        o.put(0x50, 1); // push rax
    }
    if dst != RDX {
        o.put(0x52, 1); // push rdx
    }
    mov64(o, RAX, dst);
    if signed {
        // cqo / cdq
        if w64 {
            o.put(0x9948, 2);
        } else {
            o.put(0x99, 1);
        }
    } else {
        zero(o, RDX);
    }
    rr(o, w64, 0xf7, if signed { 7 } else { 6 }, d);
    mov64(o, dst, if rem { RDX } else { RAX });
    if dst != RDX {
        o.put(0x5a, 1); // pop rdx
    }
    if dst != RAX {
        o.put(0x58, 1); // pop rax
    }
    for &j in &done[..ndone] {
        o.land8(j);
    }
}

/// `src = atomic_fetch_<op>((size *)(base + disp), src)` for `and`, `or`
/// and `xor` (`imm` 0x51, 0x41, 0xa1), which x86 has no single
/// instruction for: `rax` (r0) is saved in `r10` (the kernel's AX, no
/// eBPF register) for the `cmpxchg` loop, with `r10` standing in for a
/// base or source that was `rax`:
///
/// ```text
///     mov r10, rax
///     mov rax, [base + disp]
/// 1:  mov r11, rax
///     op  r11, src
///     lock cmpxchg [base + disp], r11
///     jne 1b
///     mov src, rax        ; the old value (zero-extended when 32-bit)
///     mov rax, r10        ; unless src is r0
/// ```
fn fetch_op(o: &mut Out, w64: bool, imm: i32, base: u8, src: u8, disp: i32) {
    const R10: u8 = 10;
    let opc = match imm {
        0x41 => 0x09, // or
        0x51 => 0x21, // and
        _ => 0x31,    // xor
    };
    let b = if base == RAX { R10 } else { base };
    let s = if src == RAX { R10 } else { src };
    mov64(o, R10, RAX);
    mem(o, false, w64, false, 0x8b, 1, RAX, b, disp);
    let top = o.at;
    rr(o, true, 0x89, RAX, R11);
    rr(o, w64, opc, s, R11);
    o.put(0xf0, 1);
    mem(o, false, w64, false, 0xb10f, 2, R11, b, disp);
    // jne top (the loop is far shorter than 128 bytes)
    let back = top as i64 - (o.at as i64 + 2);
    o.put(0x75 | u64::from(back as i8 as u8) << 8, 2);
    if src == RAX {
        // r0 takes the old value: nothing to restore (a 32-bit result is
        // already zero-extended: both the load and cmpxchg write eax).
        return;
    }
    if w64 {
        mov64(o, src, RAX);
    } else {
        mov32(o, src, RAX);
    }
    mov64(o, RAX, R10);
}
