//! The baseline tier: one pass from bytecode to x86-64 machine code.
//!
//! [`Baseline`] compiles straight from the 8-byte slots as a loader
//! receives them, with no decoded [`bpf_isa::Program`], no plan and no
//! layout passes: a pre-scan finds the subprograms and the callee-saved
//! registers in use, then each instruction is checked against the
//! decoder's field rules and lowered with one dispatch on its opcode
//! through the backend's encoders ([`crate::enc`], writing to an
//! unchecked cursor: [`enc::Sink`]); the hottest forms (ALU, compare and
//! shift on registers) come from tables indexed by the slot's register
//! byte, checked byte for byte against those encoders. Forward branches take the 4-byte form and
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

use crate::enc::{self, Alu1, Cc, Gpr, Mem, Shift, Sink, Sz};
use crate::{direct, Compiler, X86Masm, AUX, AUX2, REG_MAP};

/// Native register of each eBPF register (`r0`..`r10`; the rest are
/// never read: the pre-scan refuses register fields above 10).
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

/// By a slot's register byte (dst in the low nibble, src in the high):
/// REX.R and REX.B (low byte) and the register-direct ModRM (high byte)
/// with src's native register in the reg field and dst's in r/m. The
/// hot ALU forms use it instead of [`enc`]'s general assembly (a test
/// checks both give the same bytes).
const PAIR: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        let (d, s) = (X[b & 15].num(), X[b >> 4].num());
        t[b] = ((s >> 3) << 2 | (d >> 3)) as u16 | ((0xc0 | (s & 7) << 3 | (d & 7)) as u16) << 8;
        b += 1;
    }
    t
};

/// By a register nibble: REX.B (low byte) and the register-direct ModRM
/// with that register in r/m and 0 in the reg field (high byte).
const RM1: [u16; 16] = {
    let mut t = [0u16; 16];
    let mut r = 0;
    while r < 16 {
        let x = X[r].num();
        t[r] = (x >> 3) as u16 | ((0xc0 | (x & 7)) as u16) << 8;
        r += 1;
    }
    t
};

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

/// Writes `v`, `n` bytes starting with a REX prefix, without that prefix
/// when it is the plain 0x40.
#[inline(always)]
fn put_rex(o: &mut Out, v: u64, n: usize) {
    let skip = usize::from(v as u8 == 0x40);
    o.put(v >> (8 * skip), n - skip);
}

/// `op dst, src` (`op r/m, r`: add, or, and, sub, xor, cmp, or `mov`'s
/// 0x89 with `opc`) on the registers of the register byte `b1`: the same
/// bytes as [`enc::alu_rr`] / [`enc::mov_rr`], from [`PAIR`].
#[inline(always)]
fn rr_b1(o: &mut Out, w64: bool, opc: u8, b1: u8) {
    let p = u64::from(PAIR[usize::from(b1)]);
    let v = (0x40 | u64::from(w64) << 3 | (p & 0xff)) | u64::from(opc) << 8 | (p >> 8) << 16;
    put_rex(o, v, 3);
}

/// `op r, imm` of the 0x81/0x83 group (`ext`) on eBPF register `dnum`:
/// the same bytes as [`enc::alu_ri`], from [`RM1`].
#[inline(always)]
fn ri_n(o: &mut Out, w64: bool, ext: u8, dnum: usize, imm: i32) {
    let r = u64::from(RM1[dnum & 15]);
    let small = imm as i8 as i32 == imm;
    let opc: u64 = if small { 0x83 } else { 0x81 };
    // The imm8 form's byte is the low byte of the 4 written.
    let v = (0x40 | u64::from(w64) << 3 | (r & 0xff))
        | opc << 8
        | ((r >> 8) | u64::from(ext) << 3) << 16
        | u64::from(imm as u32) << 24;
    put_rex(o, v, if small { 4 } else { 7 });
}

/// `shift r, count` (`C1 /op ib`) on eBPF register `dnum`: the same
/// bytes as [`enc::shift_ri`], from [`RM1`].
#[inline(always)]
fn shift_n(o: &mut Out, w64: bool, op: Shift, dnum: usize, count: u8) {
    let r = u64::from(RM1[dnum & 15]);
    let v = (0x40 | u64::from(w64) << 3 | (r & 0xff))
        | 0xc1 << 8
        | ((r >> 8) | u64::from(op as u8) << 3) << 16
        | u64::from(count) << 24;
    put_rex(o, v, 4);
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
        // Callee-saved registers (r6-r9) pushed by every frame (and popped
        // in reverse order at each exit).
        let mut saved = [Gpr::RAX; 4];
        let mut nsaved = 0;
        for (r, &x) in X.iter().enumerate().take(10).skip(6) {
            if used & (1 << r) != 0 {
                saved[nsaved] = x;
                nsaved += 1;
            }
        }
        let saved = &saved[..nsaved];
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
            enc::nop5(o);
            if s == 0 {
                enc::nop2(o);
            }
            enc::push(o, Gpr::RBP);
            enc::mov_rr(o, Sz::Q, Gpr::RBP, Gpr::RSP);
            enc::sub_rsp_imm32(o, size);
            for &r in saved {
                enc::push(o, r);
            }
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
                i = em.insn(words, w, i, begin, end, opts, saved)?;
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
        saved: &[Gpr],
    ) -> Step<usize> {
        let o = &mut self.o;
        let code = w as u8;
        let dnum = ((w >> 8) & 15) as usize;
        let snum = ((w >> 12) & 15) as usize;
        let dst = X[dnum];
        let src = X[snum];
        let sz = |w64: bool| if w64 { Sz::Q } else { Sz::W };
        let off = (w >> 16) as i16;
        let imm = (w >> 32) as i32;
        let zero_ok = |mask: u64| if w & mask == 0 { Ok(()) } else { Err(Fallback) };
        match code {
            // ---- ALU / ALU64 with an immediate ----
            0x04 | 0x14 | 0x44 | 0x54 | 0xa4 | 0x07 | 0x17 | 0x47 | 0x57 | 0xa7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                ri_n(
                    o,
                    code & 7 == 7,
                    ALU[usize::from(code >> 4)] as u8,
                    dnum,
                    imm,
                );
            }
            0x0c | 0x1c | 0x4c | 0x5c | 0xac | 0x0f | 0x1f | 0x4f | 0x5f | 0xaf => {
                zero_ok(IMM_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let opc = ALU[usize::from(code >> 4)] as u8 * 8 + 1;
                rr_b1(o, code & 7 == 7, opc, (w >> 8) as u8);
            }
            // mov
            0xb4 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                enc::mov_r32_imm(o, dst, imm as u32);
            }
            0xb7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                // A non-negative value zero-extends from the shorter form.
                mov_imm64(o, dst, i64::from(imm) as u64);
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
                    (8, _) => enc::movsx_r8(o, sz(w64), dst, src),
                    (16, _) => enc::movsx_r16(o, sz(w64), dst, src),
                    (32, true) => enc::movsxd_rr(o, dst, src),
                    _ => return Err(Fallback),
                }
            }
            // mul
            0x24 | 0x27 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                enc::imul_rri(o, sz(code == 0x27), dst, dst, imm);
            }
            0x2c | 0x2f => {
                zero_ok(IMM_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                enc::imul_rr(o, sz(code == 0x2f), dst, src);
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
                        enc::mov_rr(o, Sz::W, dst, dst);
                    }
                } else {
                    shift_n(o, w64, shift_op(code), dnum, count);
                }
            }
            // shifts by a register (x86 masks the count as eBPF does)
            0x6c | 0x7c | 0xcc | 0x6f | 0x7f | 0xcf => {
                zero_ok(IMM_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                let (s, op) = (sz(code & 7 == 7), shift_op(code));
                if src == Gpr::RCX {
                    enc::shift_rcl(o, s, op, dst);
                } else {
                    // rcx (r4) is saved in the scratch register around the shift.
                    mov64(o, AUX, Gpr::RCX);
                    mov64(o, Gpr::RCX, src);
                    enc::shift_rcl(o, s, op, if dst == Gpr::RCX { AUX } else { dst });
                    mov64(o, Gpr::RCX, AUX);
                }
            }
            // neg
            0x84 | 0x87 => {
                zero_ok(SRC_FIELD | OFF_FIELD | IMM_FIELD)?;
                no_r10(dnum)?;
                enc::neg(o, sz(code == 0x87), dst);
            }
            // div, mod (off 1: signed)
            0x34 | 0x37 | 0x94 | 0x97 | 0x3c | 0x3f | 0x9c | 0x9f => {
                let by_reg = code & 8 != 0;
                zero_ok(if by_reg { IMM_FIELD } else { SRC_FIELD })?;
                no_r10(dnum)?;
                if off != 0 && off != 1 {
                    return Err(Fallback);
                }
                let rem = code >> 4 == 9;
                let divisor = if by_reg { Some(src) } else { None };
                self.o = div_rem(*o, sz(code & 7 == 7), off == 1, rem, dst, divisor, imm);
            }
            // endianness
            0xd4 | 0xdc | 0xd7 => {
                zero_ok(SRC_FIELD | OFF_FIELD)?;
                no_r10(dnum)?;
                match (imm, code != 0xd4) {
                    (16, false) => enc::movzx_r32_r16(o, dst, dst),
                    (32, false) => enc::mov_rr(o, Sz::W, dst, dst),
                    (64, false) => {}
                    (16, true) => {
                        enc::shift_ri(o, Sz::H, Shift::Ror, dst, 8);
                        enc::movzx_r32_r16(o, dst, dst);
                    }
                    (32, true) => enc::bswap(o, Sz::W, dst),
                    (64, true) => enc::bswap(o, Sz::Q, dst),
                    _ => return Err(Fallback),
                }
            }
            // ---- loads and stores ----
            0x61 | 0x69 | 0x71 | 0x79 | 0x81 | 0x89 | 0x91 => {
                zero_ok(IMM_FIELD)?;
                no_r10(dnum)?;
                load(o, code, dst, at(src, off));
            }
            0x62 | 0x6a | 0x72 | 0x7a => {
                zero_ok(SRC_FIELD)?;
                enc::store_imm(o, mem_size(code), at(dst, off), imm);
            }
            0x63 | 0x6b | 0x73 | 0x7b => {
                zero_ok(IMM_FIELD)?;
                enc::store(o, mem_size(code), at(dst, off), src);
            }
            // atomics
            0xc3 | 0xdb | 0xd3 | 0xcb => {
                let m = at(dst, off);
                let s = mem_size(code);
                let rmw = matches!(code, 0xc3 | 0xdb);
                match imm {
                    // lock add/or/and/xor
                    0x00 | 0x40 | 0x50 | 0xa0 if rmw => {
                        enc::lock_alu(o, s, ALU[(imm >> 4) as usize & 15], m, src);
                    }
                    // lock xadd, xchg: the old value into src
                    0x01 if rmw => {
                        no_r10(snum)?;
                        enc::lock_xadd(o, s, m, src);
                    }
                    0xe1 if rmw => {
                        no_r10(snum)?;
                        enc::xchg(o, s, m, src);
                    }
                    // fetching and/or/xor: a lock cmpxchg loop through rax
                    0x41 | 0x51 | 0xa1 if rmw => {
                        no_r10(snum)?;
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
                        no_r10(dnum)?;
                        load(o, 0x61 | (code & 0x18), dst, at(src, off));
                    }
                    0x110 => enc::store(o, s, m, src),
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
                    // Helper (the pre-scan left tail calls out), called
                    // as the optimizing backend calls it.
                    let addr = opts.helpers.address(imm).ok_or(Fallback)?;
                    if opts.helpers.preserve_mask(imm) != 0 {
                        return Err(Fallback);
                    }
                    enc::movabs(o, AUX, addr);
                    enc::call_r(o, AUX);
                } else {
                    // bpf-to-bpf (the pre-scan checked the target).
                    let t = (i as i64 + 1 + i64::from(imm)) as u32;
                    enc::call_rel(o, 0);
                    self.call_fixups.push((o.at as u32 - 4, t));
                }
            }
            0x95 => {
                zero_ok(!0xff)?;
                for &r in saved.iter().rev() {
                    enc::pop(o, r);
                }
                enc::leave(o);
                enc::ret(o);
            }
            _ => {
                // Conditional jumps, 64- and 32-bit.
                let class = code & 7;
                let Some(cc) = CC[usize::from(code >> 4)].filter(|_| class == 5 || class == 6)
                else {
                    return Err(Fallback);
                };
                let s = sz(class == 5);
                let set = code >> 4 == 4;
                if code & 8 != 0 {
                    zero_ok(IMM_FIELD)?;
                    if set {
                        enc::test_rr(o, s, dst, src);
                    } else {
                        rr_b1(o, class == 5, Alu1::Cmp as u8 * 8 + 1, (w >> 8) as u8);
                    }
                } else {
                    zero_ok(SRC_FIELD)?;
                    if set {
                        enc::test_ri(o, s, dst, imm);
                    } else if imm == 0 && matches!(cc, Cc::E | Cc::Ne) {
                        enc::test_rr(o, s, dst, dst);
                    } else {
                        ri_n(o, class == 5, Alu1::Cmp as u8, dnum, imm);
                    }
                }
                self.jump(Some(cc), i, i as i64 + 1 + i64::from(off), begin, end)?;
            }
        }
        Ok(i + 1)
    }

    /// `jmp`/`jcc` from slot `i` to slot `t`, inside `[begin, end)`.
    #[inline(always)]
    fn jump(&mut self, cc: Option<Cc>, i: usize, t: i64, begin: usize, end: usize) -> Step<()> {
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
            // The rel fields count from the end of the instruction.
            let from = |len: i64| i64::from(dest) - (o.at as i64 + len);
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
            self.fixups.push((o.at as u32 - 4, t as u32));
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
/// the remainder 0. `divisor`: the register (checked at run time), or
/// `None` for the immediate `imm` (decided here). Unlike the optimizing
/// backend, whose checks branch to out-of-line stubs, the cases are
/// handled inline.
#[inline(never)]
fn div_rem(
    mut o: Out,
    s: Sz,
    signed: bool,
    rem: bool,
    dst: Gpr,
    divisor: Option<Gpr>,
    imm: i32,
) -> Out {
    // Out of line (and by value, keeping the caller's cursor in registers).
    div_rem_in(&mut o, s, signed, rem, dst, divisor, imm);
    o
}

#[inline(always)]
fn div_rem_in(
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
    let mut done = [0usize; 2];
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
            let nonzero = o.at - 1;
            by_zero(o);
            enc::jmp_short(o, 0);
            done[0] = o.at - 1;
            ndone = 1;
            o.land8(nonzero);
            if signed {
                // cmp d, -1; jne 2f; <by -1>; jmp done; 2:
                enc::alu_ri(o, s, Alu1::Cmp, d, -1);
                enc::jcc_short(o, Cc::Ne, 0);
                let other = o.at - 1;
                by_minus1(o);
                enc::jmp_short(o, 0);
                done[1] = o.at - 1;
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
    let top = o.at;
    enc::mov_rr(o, Sz::Q, AUX, Gpr::RAX);
    enc::alu_rr(o, s, op, AUX, operand);
    enc::lock_cmpxchg(o, s, m, AUX);
    // jne top (the loop is far shorter than 128 bytes)
    enc::jcc_short(o, Cc::Ne, (top as i64 - (o.at as i64 + 2)) as i8);
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
        let mut o = Out {
            p: v.as_mut_ptr(),
            at: 0,
        };
        f(&mut o);
        // SAFETY: `o.at` (at most 7) bytes were written into the capacity.
        unsafe { v.set_len(o.at) };
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

    /// The table-driven hot forms give the bytes of the shared encoders
    /// (whose forms the emit tests check against llvm-mc), for every
    /// register pair, operation, width and immediate size.
    #[test]
    fn table_forms_match_the_shared_encoders() {
        let mut ops: Vec<(u8, Option<Alu1>)> = vec![(0x89, None)];
        for a in [
            Alu1::Add,
            Alu1::Or,
            Alu1::And,
            Alu1::Sub,
            Alu1::Xor,
            Alu1::Cmp,
        ] {
            ops.push((a as u8 * 8 + 1, Some(a)));
        }
        for (d, &xd) in X.iter().enumerate().take(11) {
            for w64 in [false, true] {
                let s = if w64 { Sz::Q } else { Sz::W };
                for (src, &xs) in X.iter().enumerate().take(11) {
                    let b1 = (src << 4 | d) as u8;
                    for &(opc, alu) in &ops {
                        let want = bytes(|o| match alu {
                            Some(a) => enc::alu_rr(o, s, a, xd, xs),
                            None => enc::mov_rr(o, s, xd, xs),
                        });
                        assert_eq!(
                            bytes(|o| rr_b1(o, w64, opc, b1)),
                            want,
                            "{opc:#x} r{d}, r{src}"
                        );
                    }
                }
                for a in [
                    Alu1::Add,
                    Alu1::Or,
                    Alu1::And,
                    Alu1::Sub,
                    Alu1::Xor,
                    Alu1::Cmp,
                ] {
                    for imm in [0, 1, -1, 127, -128, 128, -129, i32::MAX, i32::MIN] {
                        let want = bytes(|o| enc::alu_ri(o, s, a, xd, imm));
                        assert_eq!(
                            bytes(|o| ri_n(o, w64, a as u8, d, imm)),
                            want,
                            "{a:?} r{d}, {imm}"
                        );
                    }
                }
                for op in [Shift::Shl, Shift::Shr, Shift::Sar] {
                    for count in [1u8, 7, 31, 63] {
                        let want = bytes(|o| enc::shift_ri(o, s, op, xd, count));
                        assert_eq!(
                            bytes(|o| shift_n(o, w64, op, d, count)),
                            want,
                            "{op:?} r{d}, {count}"
                        );
                    }
                }
            }
        }
    }
}
