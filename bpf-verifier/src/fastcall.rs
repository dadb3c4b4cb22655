//! The platform's `bpf_fastcall` functions: calls that leave every
//! caller-saved register intact apart from their own arguments and result.
//!
//! The eBPF calling convention lets a call clobber `r0`–`r5`, so compilers
//! bracket such calls with spills and fills of the live registers. A
//! fastcall function promises more: it clobbers only `r0` (unless it returns
//! nothing) and the argument registers `r1..=rN` for its `N` parameters.
//! [`crate::nocsr`] uses that promise to delete the brackets; whoever runs
//! the program (interpreter, JIT, kernel) must then keep it.
//!
//! The Linux list (6.18): the helper `bpf_get_smp_processor_id` (8), but
//! only for the program types whose prototype for it carries
//! `allow_fastcall` (`bpf_get_smp_processor_id_proto`: tracing types, tc,
//! XDP; socket filters get `bpf_get_raw_smp_processor_id_proto` from
//! `bpf_base_func_proto`, without it, so the kernel keeps their brackets:
//! [`FastcallScope::KernelProto`], [`ProgKind::kernel_fastcall_helper`]).
//! The kernel also only uses it where the call is inlined, as x86-64 and
//! arm64 do. Then the kfuncs flagged `KF_FASTCALL`, `bpf_cast_to_kern_ctx`
//! and `bpf_rdonly_cast` (the ones the running kernel's BTF tags
//! `bpf_fastcall`), for every program type. A platform adds its own
//! functions with [`FastcallTable::add_helper`] and
//! [`FastcallTable::add_kfunc`]; those hold for every program type.
//!
//! ```
//! use bpf_isa::{CallTarget, Reg};
//! use bpf_verifier::fastcall::FastcallTable;
//!
//! let t = FastcallTable::linux();
//! let f = t.lookup(&CallTarget::Helper(8)).unwrap(); // bpf_get_smp_processor_id
//! assert!(f.clobbers().contains(Reg::R0));
//! assert!(f.preserves().contains(Reg::R1));
//! assert!(t.lookup(&CallTarget::Helper(7)).is_none()); // bpf_get_prandom_u32
//! // Per program type: fastcall for a raw tracepoint, not for a socket filter.
//! use bpf_verifier::ProgKind;
//! assert!(t.lookup_for(&CallTarget::Helper(8), ProgKind::RawTracepoint).is_some());
//! assert!(t.lookup_for(&CallTarget::Helper(8), ProgKind::SocketFilter).is_none());
//! ```

use bpf_isa::{CallTarget, Reg};

use crate::ProgKind;

/// The program types a table entry holds for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FastcallScope {
    /// Every program type (platform registrations, the kfuncs).
    #[default]
    All,
    /// The program types whose Linux prototype of the helper carries
    /// `allow_fastcall` ([`ProgKind::kernel_fastcall_helper`]), plus the
    /// userspace [`ProgKind::Mem`] type, whose runtimes (bpf-vm, the JITs)
    /// keep the promise.
    KernelProto,
}

impl FastcallScope {
    /// Whether an entry for helper `id` holds for programs of type `kind`.
    pub const fn holds_for(self, id: i32, kind: ProgKind) -> bool {
        match self {
            FastcallScope::All => true,
            FastcallScope::KernelProto => {
                kind.kernel_fastcall_helper(id) || matches!(kind, ProgKind::Mem { .. })
            }
        }
    }
}

/// A set of registers `r0`–`r10`, bit `i` for `ri`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegMask(pub u16);

impl RegMask {
    /// The registers a normal call may clobber: `r0`–`r5`.
    pub const CALLER_SAVED: RegMask = RegMask(0b11_1111);

    /// Whether `r` is in the set.
    pub const fn contains(self, r: Reg) -> bool {
        self.0 & (1 << r.num()) != 0
    }

    /// The set with `r` added.
    pub const fn with(self, r: Reg) -> RegMask {
        RegMask(self.0 | (1 << r.num()))
    }

    /// The registers of `self` not in `other`.
    pub const fn without(self, other: RegMask) -> RegMask {
        RegMask(self.0 & !other.0)
    }

    /// The members, ascending.
    pub fn iter(self) -> impl Iterator<Item = Reg> {
        (0u8..=10)
            .filter(move |i| self.0 & (1 << i) != 0)
            .filter_map(Reg::from_u8)
    }
}

/// One fastcall function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastcallFn {
    /// Name, for messages.
    pub name: String,
    /// Number of parameters (`r1..=rN` are clobbered), at most 5.
    pub params: u8,
    /// Whether it returns a value in `r0` (a void function preserves `r0` too).
    pub returns: bool,
}

impl FastcallFn {
    /// The registers the call really clobbers (the kernel's
    /// `GENMASK(num_params, is_void ? 1 : 0)`).
    pub fn clobbers(&self) -> RegMask {
        let mut m = RegMask(0);
        if self.returns {
            m = m.with(Reg::R0);
        }
        for i in 1..=self.params.min(5) {
            if let Some(r) = Reg::from_u8(i) {
                m = m.with(r);
            }
        }
        m
    }

    /// The caller-saved registers the call leaves intact.
    pub fn preserves(&self) -> RegMask {
        RegMask::CALLER_SAVED.without(self.clobbers())
    }
}

/// A kfunc entry: known by name, matched by BTF id once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastcallKfunc {
    /// The function.
    pub func: FastcallFn,
    /// Its BTF id and module BTF index (`off` of the call), once known.
    pub btf: Option<(i32, i16)>,
}

/// The fastcall functions of a platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FastcallTable {
    helpers: Vec<(i32, FastcallFn, FastcallScope)>,
    kfuncs: Vec<FastcallKfunc>,
}

impl FastcallTable {
    /// A table without functions (no bracket is ever removed).
    pub fn new() -> FastcallTable {
        FastcallTable::default()
    }

    /// Linux 6.18's list: helper 8 (`bpf_get_smp_processor_id`, no
    /// parameters, returns a value) and the kfuncs `bpf_cast_to_kern_ctx`
    /// (1 parameter) and `bpf_rdonly_cast` (2 parameters), whose BTF ids
    /// must be bound with [`FastcallTable::resolve_kfunc`] before calls to
    /// them match.
    ///
    /// Helper 8 is scoped [`FastcallScope::KernelProto`]: use
    /// [`FastcallTable::lookup_for`] (as [`crate::nocsr`] does with the
    /// verified program's type) to get the kernel's per-type answer.
    pub fn linux() -> FastcallTable {
        let mut t = FastcallTable::new();
        t.add_helper_scoped(
            8,
            "bpf_get_smp_processor_id",
            0,
            true,
            FastcallScope::KernelProto,
        );
        t.add_kfunc("bpf_cast_to_kern_ctx", None, 1, true);
        t.add_kfunc("bpf_rdonly_cast", None, 2, true);
        t
    }

    /// Adds (or replaces) helper `id` as fastcall with `params` parameters,
    /// for every program type.
    pub fn add_helper(&mut self, id: i32, name: &str, params: u8, returns: bool) {
        self.add_helper_scoped(id, name, params, returns, FastcallScope::All);
    }

    /// Adds (or replaces) helper `id` as fastcall with `params` parameters
    /// for the program types of `scope`.
    pub fn add_helper_scoped(
        &mut self,
        id: i32,
        name: &str,
        params: u8,
        returns: bool,
        scope: FastcallScope,
    ) {
        let f = FastcallFn {
            name: name.to_string(),
            params: params.min(5),
            returns,
        };
        match self.helpers.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => {
                if let Some(e) = self.helpers.get_mut(i) {
                    e.1 = f;
                    e.2 = scope;
                }
            }
            Err(i) => self.helpers.insert(i, (id, f, scope)),
        }
    }

    /// Adds (or replaces, by name) a kfunc; `btf` is its `(btf_id, off)` if known.
    pub fn add_kfunc(&mut self, name: &str, btf: Option<(i32, i16)>, params: u8, returns: bool) {
        let func = FastcallFn {
            name: name.to_string(),
            params: params.min(5),
            returns,
        };
        match self.kfuncs.iter_mut().find(|k| k.func.name == name) {
            Some(k) => *k = FastcallKfunc { func, btf },
            None => self.kfuncs.push(FastcallKfunc { func, btf }),
        }
    }

    /// Binds the kfunc `name` to its BTF id; `false` if no such kfunc is listed.
    pub fn resolve_kfunc(&mut self, name: &str, btf_id: i32, off: i16) -> bool {
        match self.kfuncs.iter_mut().find(|k| k.func.name == name) {
            Some(k) => {
                k.btf = Some((btf_id, off));
                true
            }
            None => false,
        }
    }

    /// Removes helper `id` from the table (e.g. for a runtime that does not
    /// keep the promise for it); `true` if it was listed.
    pub fn remove_helper(&mut self, id: i32) -> bool {
        match self.helpers.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => {
                self.helpers.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// The fastcall helpers, by id, whatever their scope.
    pub fn helpers(&self) -> impl Iterator<Item = (i32, &FastcallFn)> + '_ {
        self.helpers.iter().map(|(id, f, _)| (*id, f))
    }

    /// The fastcall helpers for programs of type `kind`, by id.
    pub fn helpers_for(&self, kind: ProgKind) -> impl Iterator<Item = (i32, &FastcallFn)> + '_ {
        self.helpers
            .iter()
            .filter(move |(id, _, s)| s.holds_for(*id, kind))
            .map(|(id, f, _)| (*id, f))
    }

    /// The scope of helper `id`, if listed.
    pub fn helper_scope(&self, id: i32) -> Option<FastcallScope> {
        self.helpers
            .binary_search_by_key(&id, |e| e.0)
            .ok()
            .and_then(|i| self.helpers.get(i))
            .map(|e| e.2)
    }

    /// This table restricted to the entries that hold for programs of type
    /// `kind` (every remaining entry scoped [`FastcallScope::All`]).
    pub fn for_prog(&self, kind: ProgKind) -> FastcallTable {
        FastcallTable {
            helpers: self
                .helpers
                .iter()
                .filter(|(id, _, s)| s.holds_for(*id, kind))
                .map(|(id, f, _)| (*id, f.clone(), FastcallScope::All))
                .collect(),
            kfuncs: self.kfuncs.clone(),
        }
    }

    /// The fastcall kfuncs.
    pub fn kfuncs(&self) -> &[FastcallKfunc] {
        &self.kfuncs
    }

    /// The fastcall function a call instruction in a program of type
    /// `kind` calls, if any (the entry's [`FastcallScope`] must hold).
    pub fn lookup_for(&self, target: &CallTarget, kind: ProgKind) -> Option<&FastcallFn> {
        if let CallTarget::Helper(id) = *target {
            if !self.helper_scope(id)?.holds_for(id, kind) {
                return None;
            }
        }
        self.lookup(target)
    }

    /// The fastcall function a call instruction calls, if any, whatever the
    /// entry's scope (see [`FastcallTable::lookup_for`]).
    pub fn lookup(&self, target: &CallTarget) -> Option<&FastcallFn> {
        match *target {
            CallTarget::Helper(id) => self
                .helpers
                .binary_search_by_key(&id, |e| e.0)
                .ok()
                .and_then(|i| self.helpers.get(i))
                .map(|e| &e.1),
            CallTarget::Kfunc { btf_id, off } => self
                .kfuncs
                .iter()
                .find(|k| k.btf == Some((btf_id, off)))
                .map(|k| &k.func),
            CallTarget::Local(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_kernel_genmask() {
        // GENMASK(0, 0) = r0 for a 0-parameter non-void helper.
        let t = FastcallTable::linux();
        let f = t.lookup(&CallTarget::Helper(8)).map(|f| f.clobbers());
        assert_eq!(f, Some(RegMask(0b1)));
        // bpf_rdonly_cast(obj, btf_id): GENMASK(2, 0) = r0..r2.
        let mut t = t;
        assert!(t.resolve_kfunc("bpf_rdonly_cast", 77, 0));
        let k = t.lookup(&CallTarget::Kfunc { btf_id: 77, off: 0 });
        assert_eq!(k.map(|f| f.clobbers()), Some(RegMask(0b111)));
        assert_eq!(k.map(|f| f.preserves()), Some(RegMask(0b11_1000)));
        // A void one-parameter function preserves r0 and r2..r5.
        t.add_helper(300, "custom", 1, false);
        let c = t.lookup(&CallTarget::Helper(300)).map(|f| f.preserves());
        assert_eq!(c, Some(RegMask(0b11_1101)));
        assert!(t
            .lookup(&CallTarget::Kfunc { btf_id: 78, off: 0 })
            .is_none());
        assert!(t.remove_helper(300));
        assert!(t.lookup(&CallTarget::Helper(300)).is_none());
    }

    #[test]
    fn helper_8_is_fastcall_only_with_allow_fastcall_protos() {
        // bpf_get_smp_processor_id_proto (allow_fastcall) for tracing, tc
        // and XDP; bpf_get_raw_smp_processor_id_proto (none) for socket
        // filters (kernel/bpf/helpers.c, net/core/filter.c, bpf_trace.c).
        let t = FastcallTable::linux();
        let h8 = CallTarget::Helper(8);
        for k in [
            ProgKind::Kprobe,
            ProgKind::Tracepoint,
            ProgKind::RawTracepoint,
            ProgKind::SchedCls,
            ProgKind::Xdp,
            ProgKind::Mem { size: 8 },
        ] {
            assert!(t.lookup_for(&h8, k).is_some(), "{k:?}");
            assert_eq!(t.for_prog(k).helpers().count(), 1);
        }
        let k = ProgKind::SocketFilter;
        assert!(t.lookup_for(&h8, k).is_none());
        assert_eq!(t.for_prog(k).helpers().count(), 0);
        assert_eq!(t.for_prog(k).kfuncs().len(), 2);
        // A platform registration holds everywhere.
        let mut p = t.clone();
        p.add_helper(7, "bpf_get_prandom_u32", 0, true);
        assert!(p.lookup_for(&CallTarget::Helper(7), k).is_some());
        assert_eq!(p.helpers_for(k).count(), 1);
        assert_eq!(p.helpers_for(ProgKind::Kprobe).count(), 2);
    }
}
