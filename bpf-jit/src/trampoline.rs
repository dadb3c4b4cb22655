//! The target-independent half of the backends' trampolines: which
//! programs are attached on which side of the original, in which order,
//! under which ids.
//!
//! A backend's trampoline keeps an [`Attachments`] of whatever it needs
//! per program (the x86-64 backend an `Arc` of the compiled program, the
//! AArch64 backend the program's entry address) and generates its image
//! from [`Attachments::side`].
//!
//! ```
//! use bpf_jit::trampoline::{Attachments, Side};
//!
//! let mut progs = Attachments::new();
//! let a = progs.attach(Side::Entry, 0x1000u64);
//! let b = progs.attach(Side::Exit, 0x2000);
//! let c = progs.attach(Side::Entry, 0x3000);
//! assert_eq!(progs.ids(Side::Entry), [a, c]);
//! assert_eq!(progs.side(Side::Exit).copied().collect::<Vec<_>>(), [0x2000]);
//! assert_eq!(progs.detach(a), Some(0x1000));
//! assert_eq!(progs.detach(a), None);
//! assert_eq!(progs.get(b), Some((Side::Exit, &0x2000)));
//! ```

/// What a trampoline returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TrampolineMode {
    /// fentry/fexit: programs observe; the original's result (or 0) is returned.
    #[default]
    Observe,
    /// struct_ops-like: every program's `r0` becomes the running return value.
    Replace,
}

/// Bytes of the context array on a trampoline's frame: `nargs + 1`
/// slots (the arguments, then the return value) rounded up to 16 bytes,
/// so the stack pointer stays 16-byte aligned on both targets.
pub const fn frame_size(nargs: usize) -> usize {
    ((nargs + 1) * 8).next_multiple_of(16)
}

/// Identifies one attachment, for detaching it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachId(u64);

impl AttachId {
    /// The id's number (unique per trampoline, increasing in attach order).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Which side of the original an attached program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Before the original (fentry).
    Entry,
    /// After the original (fexit).
    Exit,
}

/// The programs attached to one trampoline: a `T` per attachment, with
/// its side and id, kept in attach order.
#[derive(Clone, Debug)]
pub struct Attachments<T> {
    list: Vec<(AttachId, Side, T)>,
    next_id: u64,
}

impl<T> Default for Attachments<T> {
    fn default() -> Self {
        Attachments {
            list: Vec::new(),
            next_id: 0,
        }
    }
}

impl<T> Attachments<T> {
    /// No attachments; the first id will be 0.
    pub fn new() -> Attachments<T> {
        Attachments::default()
    }

    /// Attaches `prog` on `side`, after the ones already there; returns
    /// its new id (ids are never reused).
    pub fn attach(&mut self, side: Side, prog: T) -> AttachId {
        let id = AttachId(self.next_id);
        self.next_id += 1;
        self.list.push((id, side, prog));
        id
    }

    /// Removes `id`, returning its program, or `None` if it is not attached.
    pub fn detach(&mut self, id: AttachId) -> Option<T> {
        let pos = self.list.iter().position(|(i, _, _)| *i == id)?;
        Some(self.list.remove(pos).2)
    }

    /// The ids attached on `side`, in the order they run.
    pub fn ids(&self, side: Side) -> Vec<AttachId> {
        self.list
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(id, _, _)| *id)
            .collect()
    }

    /// The programs attached on `side`, in the order they run.
    pub fn side(&self, side: Side) -> impl Iterator<Item = &T> + '_ {
        self.list
            .iter()
            .filter(move |(_, s, _)| *s == side)
            .map(|(_, _, p)| p)
    }

    /// The side and program of `id`, if attached.
    pub fn get(&self, id: AttachId) -> Option<(Side, &T)> {
        self.list
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, s, p)| (*s, p))
    }

    /// Every attached program, both sides, in attach order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.list.iter().map(|(_, _, p)| p)
    }

    /// How many programs are attached.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether no program is attached.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_are_not_reused() {
        let mut a = Attachments::new();
        let x = a.attach(Side::Entry, 'x');
        let y = a.attach(Side::Entry, 'y');
        assert_eq!((x.get(), y.get()), (0, 1));
        assert_eq!(a.detach(y), Some('y'));
        let z = a.attach(Side::Exit, 'z');
        assert_eq!(z.get(), 2);
        assert_eq!(a.len(), 2);
        assert_eq!(a.iter().copied().collect::<String>(), "xz");
        assert_eq!(a.ids(Side::Exit), [z]);
        assert_eq!(a.get(y), None);
        assert!(!a.is_empty());
    }

    /// By hand: 0 args -> 1 slot = 8 -> 16; 1 -> 16; 2 -> 24 -> 32;
    /// 6 -> 56 -> 64; 7 -> 64; 8 -> 72 -> 80.
    #[test]
    fn frame_size_rounds_to_16() {
        let want = [(0, 16), (1, 16), (2, 32), (6, 64), (7, 64), (8, 80)];
        for (nargs, bytes) in want {
            assert_eq!(frame_size(nargs), bytes, "{nargs}");
        }
    }
}
