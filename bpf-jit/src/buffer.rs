//! The code buffer shared by the driver and a backend: bytes, labels and the
//! previous layout pass that branch relaxation estimates from.

use core::mem::MaybeUninit;

/// A position in the image that branches, calls and address loads can name.
///
/// The driver allocates them: one per BPF instruction (the start of its
/// native code) followed by one per subprogram (its entry, before the
/// prologue). Backends never create labels; jumps inside one lowered
/// instruction are fixed up by the backend itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(u32);

impl Label {
    /// The label numbered `n`.
    #[inline]
    pub const fn new(n: u32) -> Label {
        Label(n)
    }

    /// The label's number.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a backend needs to pick a branch encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchEstimate {
    /// Displacement from the end of the branch instruction to the label.
    /// Exact once the layout has converged; 0 in the first pass.
    pub disp: i64,
    /// Whether a short form may be chosen if `disp` fits it. False when the
    /// driver forces long forms, and in a first pass not started with
    /// [`CodeBuffer::begin_optimistic_pass`] (every branch then starts
    /// long, so sizes only shrink).
    pub may_shorten: bool,
}

/// The form of a label-relative field a backend wrote, as recorded for
/// one-pass layout ([`CodeBuffer::record`]). The field belongs to the
/// instruction that ends at the offset where it is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelField {
    /// The instruction's last byte: a signed 8-bit displacement from the
    /// end of the instruction (x86 `jmp`/`jcc rel8`).
    Rel8,
    /// The instruction's last four bytes: a signed little-endian 32-bit
    /// displacement from the end of the instruction (x86 `rel32`,
    /// RIP-relative `lea`).
    Rel32,
    /// Nothing was emitted: a jump left out because its target was taken
    /// to be where it ends. Valid only if the displacement is exactly 0.
    Omitted,
    /// AArch64 `b`/`bl`: the last 4-byte word's bits 0-25 hold the
    /// displacement from the start of that instruction in words (±128 MiB).
    A64Imm26,
    /// AArch64 `b.cond`/`cbz`: the last word's bits 5-23 hold the
    /// displacement from the start of that instruction in words (±1 MiB).
    A64Imm19,
    /// AArch64 `adr`: the last word's bits 29-30 (low two) and 5-23 (high
    /// 19) hold the byte displacement from the start of that instruction
    /// (±1 MiB).
    A64Adr,
}

/// A label-relative field written in a recording pass.
#[derive(Clone, Copy, Debug)]
struct Fixup {
    label: u32,
    /// End of the instruction (the displacement counts from here).
    end: u32,
    field: LabelField,
}

/// Growable machine-code buffer with label bookkeeping for multi-pass layout.
///
/// Each pass the driver clears the bytes, binds every label as it reaches it
/// and keeps the positions of the previous pass. A branch's displacement is
/// estimated entirely in the previous pass's layout (label position minus
/// where the branch ended then), so that the final pass, whose layout equals
/// the previous one, writes exact displacements.
///
/// The first pass has no previous layout. Started with
/// [`CodeBuffer::begin_pass`] it makes every branch long (sizes then only
/// shrink); started with [`CodeBuffer::begin_optimistic_pass`] it guesses
/// (backward targets from this pass's positions, forward ones from the
/// average code size so far), so that a program whose guesses hold
/// converges in two passes; started with [`CodeBuffer::begin_one_pass`],
/// the backend also records its label-relative fields, and such a program
/// is finished in that one pass ([`CodeBuffer::finish_one_pass`]).
#[derive(Clone, Debug, Default)]
pub struct CodeBuffer {
    bytes: Vec<u8>,
    cur: Vec<u32>,
    prev: Vec<u32>,
    have_prev: bool,
    started: bool,
    force_long: bool,
    /// First pass without a previous layout: guess instead of going long.
    optimistic: bool,
    /// Label that started the current unit.
    unit_label: u32,
    /// Start of the current unit (instruction or prologue) in this pass.
    unit_cur: u32,
    /// Label whose previous-pass position is the start of the current
    /// unit in the previous pass ([`UNBOUND`] before the first bind of a
    /// pass: the unit then started at 0). Looked up only by
    /// [`CodeBuffer::estimate`], so that binding stays cheap.
    unit_prev_label: u32,
    /// Recording label-relative fields for a one-pass layout.
    recording: bool,
    /// Never finish in one pass (see [`CodeBuffer::set_one_pass`]).
    no_one_pass: bool,
    /// The fields recorded in this pass.
    fixups: Vec<Fixup>,
}

/// Label position not bound in a pass.
const UNBOUND: u32 = u32::MAX;

impl CodeBuffer {
    /// An empty buffer with room for `labels` labels and `bytes` bytes of code.
    pub fn with_capacity(labels: usize, bytes: usize) -> CodeBuffer {
        CodeBuffer {
            bytes: Vec::with_capacity(bytes),
            cur: vec![UNBOUND; labels],
            prev: vec![UNBOUND; labels],
            ..CodeBuffer::default()
        }
    }

    /// Reserves room for `labels` labels and `bytes` bytes of code, so that
    /// the passes that follow do not reallocate.
    pub fn reserve(&mut self, labels: usize, bytes: usize) {
        self.bytes.reserve(bytes);
        self.cur.reserve(labels);
        // Room for one recorded field per label (the previous layout is
        // only needed once a one-pass layout fails: allocated then).
        self.fixups.reserve(labels);
    }

    /// Starts a layout pass over `labels` labels like
    /// [`CodeBuffer::begin_pass`] (short forms allowed), except that if
    /// there is no previous layout, estimates are guesses that prefer short
    /// forms rather than "long, displacement 0".
    ///
    /// Any layout reached this way is still exact once
    /// [`CodeBuffer::converged`] holds; but sizes may then grow as well as
    /// shrink from pass to pass, so the caller must bound the passes and
    /// fall back to [`CodeBuffer::begin_pass`] with `force_long`.
    pub fn begin_optimistic_pass(&mut self, labels: usize) {
        self.begin_pass(labels, false);
        self.optimistic = !self.have_prev;
    }

    /// Starts the first layout pass of a one-pass layout: an optimistic
    /// pass ([`CodeBuffer::begin_optimistic_pass`]) from scratch in which
    /// the backend records every label-relative field it writes
    /// ([`CodeBuffer::record`]), so that [`CodeBuffer::finish_one_pass`]
    /// can fix them up instead of running a second pass.
    pub fn begin_one_pass(&mut self, labels: usize) {
        // A first pass from scratch: no previous layout to fill in (the
        // guesses read only this pass's positions).
        self.reset();
        self.cur.resize(labels, UNBOUND);
        self.started = true;
        self.force_long = false;
        self.optimistic = true;
        self.recording = true;
        self.unit_label = 0;
        self.unit_cur = 0;
        self.unit_prev_label = UNBOUND;
    }

    /// Whether a driver may finish a layout in one pass
    /// ([`CodeBuffer::begin_one_pass`]); `true` unless turned off here
    /// (e.g. to compare with the result of the pass loop). Kept across
    /// [`CodeBuffer::reset`].
    pub fn set_one_pass(&mut self, on: bool) {
        self.no_one_pass = !on;
    }

    /// See [`CodeBuffer::set_one_pass`].
    pub fn one_pass_allowed(&self) -> bool {
        !self.no_one_pass
    }

    /// Whether this pass records label-relative fields (started with
    /// [`CodeBuffer::begin_one_pass`]).
    #[inline]
    pub fn recording(&self) -> bool {
        self.recording
    }

    /// Records that the instruction just written (ending at the current
    /// offset) holds a `field` relative to `label`. Does nothing unless
    /// the pass [records](CodeBuffer::recording).
    #[inline]
    pub fn record(&mut self, label: Label, field: LabelField) {
        if self.recording {
            self.fixups.push(Fixup {
                label: label.0,
                end: self.offset(),
                field,
            });
        }
    }

    /// Ends a pass started with [`CodeBuffer::begin_one_pass`]: if every
    /// recorded field's exact displacement (in this pass's layout) fits the
    /// form written, writes them all and returns `true`: the code is then
    /// final. Otherwise returns `false` (some fields may be half written):
    /// the caller continues with the pass loop ([`CodeBuffer::begin_pass`]
    /// keeps this pass's layout as the previous one). Always `false` for
    /// a pass that did not record.
    pub fn finish_one_pass(&mut self) -> bool {
        if !self.recording {
            return false;
        }
        self.recording = false;
        let ok = self.fixups.iter().all(|f| {
            let Some(&target) = self.cur.get(f.label as usize) else {
                return false;
            };
            if target == UNBOUND {
                return false;
            }
            let disp = i64::from(target) - i64::from(f.end);
            let end = f.end as usize;
            match f.field {
                LabelField::Omitted => disp == 0,
                LabelField::Rel8 => match (
                    i8::try_from(disp),
                    end.checked_sub(1).and_then(|a| self.bytes.get_mut(a..end)),
                ) {
                    (Ok(d), Some(field)) => {
                        field.copy_from_slice(&d.to_le_bytes());
                        true
                    }
                    _ => false,
                },
                LabelField::Rel32 => match (
                    i32::try_from(disp),
                    end.checked_sub(4).and_then(|a| self.bytes.get_mut(a..end)),
                ) {
                    (Ok(d), Some(field)) => {
                        field.copy_from_slice(&d.to_le_bytes());
                        true
                    }
                    _ => false,
                },
                LabelField::A64Imm26 | LabelField::A64Imm19 | LabelField::A64Adr => {
                    // AArch64 displacements count from the instruction itself.
                    let disp = disp + 4;
                    let (ok, mask, bits) = match f.field {
                        LabelField::A64Imm26 => (
                            disp % 4 == 0 && (-(1 << 27)..1 << 27).contains(&disp),
                            0x03ff_ffff,
                            (disp >> 2) as u32 & 0x03ff_ffff,
                        ),
                        LabelField::A64Imm19 => (
                            disp % 4 == 0 && (-(1 << 20)..1 << 20).contains(&disp),
                            0x7_ffff << 5,
                            ((disp >> 2) as u32 & 0x7_ffff) << 5,
                        ),
                        _ => (
                            (-(1 << 20)..1 << 20).contains(&disp),
                            (3 << 29) | (0x7_ffff << 5),
                            (disp as u32 & 3) << 29 | ((disp as u32 >> 2) & 0x7_ffff) << 5,
                        ),
                    };
                    match end.checked_sub(4).and_then(|a| self.bytes.get_mut(a..end)) {
                        Some(word) if ok => {
                            let mut w = [0u8; 4];
                            w.copy_from_slice(word);
                            let v = (u32::from_le_bytes(w) & !mask) | bits;
                            word.copy_from_slice(&v.to_le_bytes());
                            true
                        }
                        _ => false,
                    }
                }
            }
        });
        self.fixups.clear();
        ok
    }

    /// Starts a layout pass over `labels` labels: keeps the positions bound
    /// in the pass just finished (if any) and clears the code.
    pub fn begin_pass(&mut self, labels: usize, force_long: bool) {
        if self.started && self.cur.len() == labels {
            std::mem::swap(&mut self.cur, &mut self.prev);
            self.have_prev = true;
        } else {
            self.prev.clear();
            self.prev.resize(labels, UNBOUND);
            self.have_prev = false;
        }
        self.cur.clear();
        self.cur.resize(labels, UNBOUND);
        self.bytes.clear();
        self.started = true;
        self.force_long = force_long;
        self.optimistic = false;
        self.recording = false;
        self.fixups.clear();
        self.unit_label = 0;
        self.unit_cur = 0;
        self.unit_prev_label = UNBOUND;
    }

    /// Forgets every previous pass: the next [`CodeBuffer::begin_pass`] starts from scratch.
    pub fn reset(&mut self) {
        self.cur.clear();
        self.prev.clear();
        self.bytes.clear();
        self.have_prev = false;
        self.started = false;
        self.optimistic = false;
        self.recording = false;
        self.fixups.clear();
    }

    /// Binds `label` at the current offset and starts a new layout unit there.
    #[inline]
    pub fn bind(&mut self, label: Label) {
        let here = self.offset();
        if let Some(slot) = self.cur.get_mut(label.index()) {
            *slot = here;
        }
        self.unit_cur = here;
        self.unit_label = label.0;
        self.unit_prev_label = label.0;
    }

    /// Whether `label` comes after the current layout unit in label order
    /// (for instruction labels: a forward target). A jump may be left out
    /// only when its target is forward and at displacement 0; a jump to its
    /// own instruction, or back over instructions that emitted nothing, is a
    /// loop and must be emitted.
    #[inline]
    pub fn is_forward(&self, label: Label) -> bool {
        label.0 > self.unit_label
    }

    /// Whether every label sits where it sat in the previous pass (so every
    /// displacement written in this pass is exact).
    pub fn converged(&self) -> bool {
        self.have_prev && self.cur == self.prev
    }

    /// Position of `label` in the current pass, if bound yet.
    pub fn label_offset(&self, label: Label) -> Option<u32> {
        self.cur
            .get(label.index())
            .copied()
            .filter(|&p| p != UNBOUND)
    }

    /// Estimated displacement to `label` from the end of a branch
    /// instruction that starts at the current offset and is `len` bytes long.
    #[inline]
    pub fn estimate(&self, label: Label, len: u32) -> BranchEstimate {
        let target = match self.prev.get(label.index()) {
            Some(&p) if self.have_prev && p != UNBOUND => p,
            _ if self.optimistic && !self.force_long => return self.guess(label, len),
            _ => {
                return BranchEstimate {
                    disp: 0,
                    may_shorten: false,
                }
            }
        };
        // Where this branch ended in the previous pass: the unit's previous
        // start plus the (layout-independent) distance into the unit.
        let into_unit = i64::from(self.offset()) - i64::from(self.unit_cur);
        let unit_prev = self
            .prev
            .get(self.unit_prev_label as usize)
            .copied()
            .unwrap_or(self.unit_cur);
        let end_prev = i64::from(unit_prev) + into_unit + i64::from(len);
        BranchEstimate {
            disp: i64::from(target) - end_prev,
            may_shorten: !self.force_long,
        }
    }

    /// Optimistic first-pass estimate: exact in this pass's layout for a
    /// label already bound (a backward target), 0 for the label right
    /// after the current unit, else the label distance times the average
    /// bytes per label so far (a multiple of 4 from 4 to 64 KiB: in range
    /// of every long form).
    fn guess(&self, label: Label, len: u32) -> BranchEstimate {
        let end = i64::from(self.offset()) + i64::from(len);
        let disp = match self.cur.get(label.index()) {
            Some(&p) if p != UNBOUND => i64::from(p) - end,
            _ if label.0 == self.unit_label.wrapping_add(1) => 0,
            _ => {
                let ahead = i64::from(label.0) - i64::from(self.unit_label);
                // Bytes before this unit over the labels they hold.
                let avg = i64::from(self.unit_cur) / i64::from(self.unit_label).max(1);
                // A multiple of 4: fixed-width targets reject others.
                (ahead * avg.max(1)).clamp(4, 1 << 16) & !3
            }
        };
        BranchEstimate {
            disp,
            may_shorten: true,
        }
    }

    /// Current offset (bytes emitted so far in this pass).
    #[inline]
    pub fn offset(&self) -> u32 {
        self.bytes.len() as u32
    }

    /// The code emitted so far.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The code emitted so far, mutably (for patching inside the current unit).
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Appends one byte.
    #[inline]
    pub fn put1(&mut self, b: u8) {
        self.bytes.push(b);
    }

    /// Appends bytes.
    #[inline]
    pub fn put(&mut self, b: &[u8]) {
        // A byte loop: for the short opcode sequences a backend writes this
        // beats an out-of-line `memcpy` call.
        self.bytes.reserve(b.len());
        for &x in b {
            self.bytes.push(x);
        }
    }

    /// Appends a little-endian `u16`.
    #[inline]
    pub fn put2(&mut self, v: u16) {
        self.put_le(u64::from(v), 2);
    }

    /// Appends a little-endian `u32`.
    #[inline]
    pub fn put4(&mut self, v: u32) {
        self.put_le(u64::from(v), 4);
    }

    /// Appends a little-endian `u64`.
    #[inline]
    pub fn put8(&mut self, v: u64) {
        self.put_le(v, 8);
    }

    /// Appends the low `len` bytes of `v` in little-endian order (`len` is
    /// capped at 8; bytes of `v` above `len` are ignored).
    #[inline]
    pub fn put_le(&mut self, v: u64, len: u32) {
        let l = (len as usize).min(8);
        let new_len = self.bytes.len() + l;
        if let Some(spare) = self.bytes.spare_capacity_mut().get_mut(..8) {
            spare.copy_from_slice(&v.to_le_bytes().map(MaybeUninit::new));
            // SAFETY: the first 8 >= l bytes of spare capacity were
            // initialized just above.
            unsafe { self.bytes.set_len(new_len) };
        } else {
            self.put_slow(v, l, 0, 0);
        }
    }

    /// Appends the low `len_a` bytes of `a`, then the low `len_b` bytes of
    /// `b`, both little-endian (each length capped at 8; bytes above a
    /// length are ignored). One capacity check and two 8-byte stores: the
    /// way to write a whole machine instruction assembled in registers
    /// (e.g. x86 prefixes, opcode and ModRM in `a`, displacement and
    /// immediate in `b`).
    #[inline]
    pub fn put_le2(&mut self, a: u64, len_a: u32, b: u64, len_b: u32) {
        let la = (len_a as usize).min(8);
        let lb = (len_b as usize).min(8);
        let new_len = self.bytes.len() + la + lb;
        if let Some(spare) = self.bytes.spare_capacity_mut().get_mut(..16) {
            if let Some(d) = spare.get_mut(..8) {
                d.copy_from_slice(&a.to_le_bytes().map(MaybeUninit::new));
            }
            if let Some(d) = spare.get_mut(la..la + 8) {
                d.copy_from_slice(&b.to_le_bytes().map(MaybeUninit::new));
            }
            // SAFETY: bytes 0..8 and la..la + 8 of the spare capacity were
            // initialized just above (both ranges lie inside the 16 bytes
            // `spare` has); they cover 0..la + lb as la, lb <= 8.
            unsafe { self.bytes.set_len(new_len) };
        } else {
            self.put_slow(a, la, b, lb);
        }
    }

    /// [`CodeBuffer::put_le2`] when the spare capacity is short: grows
    /// (geometrically, as `Vec` does) and appends.
    #[cold]
    #[inline(never)]
    fn put_slow(&mut self, a: u64, la: usize, b: u64, lb: usize) {
        self.bytes.reserve(16);
        let (a, b) = (a.to_le_bytes(), b.to_le_bytes());
        self.bytes.extend_from_slice(a.get(..la).unwrap_or(&a));
        self.bytes.extend_from_slice(b.get(..lb).unwrap_or(&b));
    }

    /// Takes the label positions of the current pass out of the buffer,
    /// indexed by label number (0 for a label not bound in it).
    pub fn take_label_offsets(&mut self) -> Vec<u32> {
        let mut v = std::mem::take(&mut self.cur);
        for p in &mut v {
            // Branch-free (the loop vectorizes): 0 for UNBOUND.
            *p &= u32::from(*p != UNBOUND).wrapping_neg();
        }
        v
    }

    /// Copies the positions of labels `range` in the current pass (0 for
    /// a label not bound in it), keeping the buffer's memory for the next
    /// compile (see [`CodeBuffer::take_label_offsets`]).
    pub fn label_offsets_in(&self, range: core::ops::Range<usize>) -> Vec<u32> {
        let src = self.cur.get(range).unwrap_or(&[]);
        let mut v = Vec::with_capacity(src.len());
        // Branch-free (the loop vectorizes): 0 for UNBOUND.
        v.extend(
            src.iter()
                .map(|&p| p & u32::from(p != UNBOUND).wrapping_neg()),
        );
        v
    }

    /// Takes the finished code out of the buffer.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_le_and_put_le2_write_exactly_the_low_bytes() {
        // Start with no spare capacity so the first writes take the
        // growing path, then many more than the capacity so both paths
        // run; the expected bytes are written out by hand.
        let mut b = CodeBuffer::default();
        b.put_le(0x1122_3344_5566_7788, 3);
        assert_eq!(b.bytes(), [0x88, 0x77, 0x66]);
        b.put_le2(0xaaaa_aaaa_aaaa_aa48, 1, 0xffff_ffff_dead_beef, 4);
        assert_eq!(b.bytes(), [0x88, 0x77, 0x66, 0x48, 0xef, 0xbe, 0xad, 0xde]);
        b.put_le2(0x0102_0304_0506_0708, 8, 0x090a_0b0c_0d0e_0f10, 8);
        assert_eq!(b.bytes().len(), 24);
        assert_eq!(
            b.bytes().get(8..),
            Some(
                &[
                    0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x10, 0x0f, 0x0e, 0x0d, 0x0c,
                    0x0b, 0x0a, 0x09
                ][..]
            )
        );
        // Lengths above 8 are capped; a zero-length write adds nothing.
        b.put_le2(0, 0, 0xee, 9);
        b.put_le(0x55, 0);
        assert_eq!(b.bytes().len(), 32);
        assert_eq!(b.bytes().get(24), Some(&0xee));
        let mut c = CodeBuffer::with_capacity(0, 3);
        for i in 0..1000u32 {
            c.put_le2(u64::from(i & 0xff), 1, u64::from(i), 2);
        }
        assert_eq!(c.bytes().len(), 3000);
        assert_eq!(c.bytes().get(2997..), Some(&[0xe7, 0xe7, 0x03][..]));
        c.put2(0xabcd);
        c.put4(0x0102_0304);
        c.put8(0x1112_1314_1516_1718);
        assert_eq!(
            c.bytes().get(3000..),
            Some(&[0xcd, 0xab, 4, 3, 2, 1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11][..])
        );
    }

    #[test]
    fn first_pass_is_long_then_estimates_from_previous_layout() {
        let l0 = Label::new(0);
        let l1 = Label::new(1);
        let mut b = CodeBuffer::with_capacity(2, 16);
        b.begin_pass(2, false);
        b.bind(l0);
        assert_eq!(
            b.estimate(l1, 2),
            BranchEstimate {
                disp: 0,
                may_shorten: false
            }
        );
        b.put(&[0; 5]);
        b.put(&[0; 3]);
        b.bind(l1);
        assert!(!b.converged());
        // Second pass: the label sat at 8, a 2-byte branch at 0 ends at 2.
        b.begin_pass(2, false);
        b.bind(l0);
        let e = b.estimate(l1, 2);
        assert_eq!(
            e,
            BranchEstimate {
                disp: 6,
                may_shorten: true
            }
        );
        b.put(&[0; 2]);
        b.put(&[0; 3]);
        b.bind(l1);
        assert!(!b.converged());
        b.begin_pass(2, false);
        b.bind(l0);
        assert_eq!(b.estimate(l1, 2).disp, 3);
        b.put(&[0; 5]);
        b.bind(l1);
        assert!(b.converged());
        assert_eq!(b.label_offset(l1), Some(5));
    }

    #[test]
    fn optimistic_first_pass_guesses_then_estimates_from_layout() {
        let short = |disp| BranchEstimate {
            disp,
            may_shorten: true,
        };
        let mut b = CodeBuffer::with_capacity(4, 64);
        b.begin_optimistic_pass(4);
        b.bind(Label::new(0));
        b.put(&[0; 8]);
        b.bind(Label::new(1));
        // Backward: exact in this pass (label 0 at 0, a 2-byte branch at 8).
        assert_eq!(b.estimate(Label::new(0), 2), short(-10));
        // The next label: nothing in between.
        assert_eq!(b.estimate(Label::new(2), 2), short(0));
        // Two labels ahead at 8 bytes per label so far (8 / 1 label before
        // this unit, rounded down to a multiple of 4): 16.
        assert_eq!(b.estimate(Label::new(3), 2), short(16));
        b.put(&[0; 2]);
        b.bind(Label::new(2));
        b.put(&[0; 200]);
        b.bind(Label::new(3));
        assert!(!b.converged());
        // Second pass: estimates from the first layout (label 3 at 210).
        b.begin_optimistic_pass(4);
        b.bind(Label::new(0));
        b.put(&[0; 8]);
        b.bind(Label::new(1));
        assert_eq!(b.estimate(Label::new(3), 2), short(200));
        // Forced long: never shortened.
        b.begin_pass(4, true);
        b.bind(Label::new(0));
        assert!(!b.estimate(Label::new(3), 5).may_shorten);
        // A plain first pass after a reset is all long, displacement 0.
        b.reset();
        b.begin_pass(4, false);
        b.bind(Label::new(0));
        assert_eq!(
            b.estimate(Label::new(3), 5),
            BranchEstimate {
                disp: 0,
                may_shorten: false
            }
        );
    }

    #[test]
    fn one_pass_fixes_up_recorded_fields_or_refuses() {
        // x86: `jmp rel8` at 0 (ends at 2) to label 2 at 6: 4; a
        // `call rel32` at 6 (ends at 11) back to label 0: -11.
        let mut b = CodeBuffer::with_capacity(3, 32);
        b.begin_one_pass(3);
        assert!(b.recording());
        b.bind(Label::new(0));
        b.put(&[0xeb, 0]);
        b.record(Label::new(2), LabelField::Rel8);
        b.bind(Label::new(1));
        b.put(&[0x90; 4]);
        b.bind(Label::new(2));
        b.put1(0xe8);
        b.put4(0);
        b.record(Label::new(0), LabelField::Rel32);
        b.record(Label::new(2), LabelField::Omitted); // wrong: 2 is at 6, not 11
        assert!(!b.finish_one_pass());
        // The same without the bad omission: every field written.
        b.begin_one_pass(3);
        b.bind(Label::new(0));
        b.put(&[0xeb, 0]);
        b.record(Label::new(2), LabelField::Rel8);
        b.bind(Label::new(1));
        b.put(&[0x90; 4]);
        b.bind(Label::new(2));
        b.put1(0xe8);
        b.put4(0);
        b.record(Label::new(0), LabelField::Rel32);
        assert!(b.finish_one_pass());
        assert_eq!(
            b.bytes(),
            &[0xeb, 4, 0x90, 0x90, 0x90, 0x90, 0xe8, 0xf5, 0xff, 0xff, 0xff]
        );
        assert!(!b.recording());
        // A short field out of rel8 range, and an unbound label: refused.
        b.begin_one_pass(2);
        b.bind(Label::new(0));
        b.put(&[0xeb, 0]);
        b.record(Label::new(1), LabelField::Rel8);
        b.put(&[0x90; 200]);
        b.bind(Label::new(1));
        assert!(!b.finish_one_pass());
        b.begin_one_pass(2);
        b.bind(Label::new(0));
        b.put(&[0xeb, 0]);
        b.record(Label::new(1), LabelField::Rel8);
        assert!(!b.finish_one_pass());
        // A plain pass never records.
        b.begin_pass(2, false);
        b.record(Label::new(1), LabelField::Rel8);
        assert!(!b.finish_one_pass());
    }

    #[test]
    fn one_pass_fixes_up_aarch64_fields() {
        // `b` at 0 to label 1 at 12: +12 bytes = 3 words (0x14000003);
        // `b.ne` at 12 back to 0: -3 words (0x54ffffa1); `adr x2` at 16
        // to label 1 at 12: -4 bytes (0x10ffffe2). Encodings by hand from
        // the Arm ARM field layouts.
        let mut b = CodeBuffer::with_capacity(2, 32);
        b.begin_one_pass(2);
        b.bind(Label::new(0));
        b.put4(0x1400_0000);
        b.record(Label::new(1), LabelField::A64Imm26);
        b.put4(0xd503_201f);
        b.put4(0xd503_201f);
        b.bind(Label::new(1));
        b.put4(0x5400_0001);
        b.record(Label::new(0), LabelField::A64Imm19);
        b.put4(0x1000_0002);
        b.record(Label::new(1), LabelField::A64Adr);
        assert!(b.finish_one_pass());
        let words: Vec<u32> = b
            .bytes()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(
            words,
            [
                0x1400_0003,
                0xd503_201f,
                0xd503_201f,
                0x54ff_ffa1,
                0x10ff_ffe2
            ]
        );
    }
}
