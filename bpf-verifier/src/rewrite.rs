//! Rewrites after verification (the kernel's `convert_ctx_accesses`,
//! map-fd resolution and `opt_remove_dead_code`), producing the translated
//! ("xlated") instruction stream a runtime or a JIT executes:
//!
//! * **Context accesses** are converted from the uapi layout the program was
//!   written against (`struct __sk_buff`, `struct xdp_md`, ...) to the
//!   runtime's own layout, described by a [`CtxLayout`] the platform
//!   provides ([`CtxLayoutTable::bpf_vm`] for bpf-vm; a table of the
//!   kernel's `struct sk_buff` offsets could be plugged the same way).
//!   Narrow loads of a widened field become a full load, a shift and a mask.
//! * **Map references** (`ld_imm64` with a map fd, index or value) become
//!   plain 64-bit constants: the address a [`MapResolver`] the caller
//!   supplies gives for the map (or its value plus the offset).
//! * **Dead code** is removed: instructions no verified path reached, and
//!   conditional jumps whose target or fall-through was never reached
//!   (hard-wired first, as the kernel does); every jump, local call and
//!   function reference is re-targeted.
//!
//! ```
//! use bpf_verifier::{verify, Options, ProgKind};
//! use bpf_verifier::rewrite::{RewriteConfig, CtxLayoutTable};
//!
//! // The branch is never taken: `r0 = 1` is dead and the jump goes away.
//! let prog = bpf_isa::assemble("r0 = 0\nif r0 != 0 goto +1\nexit\nr0 = 1\nexit").unwrap();
//! let v = verify(&prog, &Options::new(ProgKind::SocketFilter)).unwrap();
//! let layout = CtxLayoutTable::bpf_vm();
//! let x = v.rewrite(&RewriteConfig::new(ProgKind::SocketFilter, &layout)).unwrap();
//! assert_eq!(x.prog.len(), 2);
//! assert_eq!(x.orig_slot, vec![0, 2]);
//! ```

use bpf_isa::{CallTarget, Insn, LdImm64Src, Program, Size};
use thiserror::Error;

use crate::ctx::{ctx_desc, CtxDesc};
use crate::platform::ProgKind;
use crate::VerifiedProgram;

/// Where one uapi context field lives in the runtime's context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayoutField {
    /// Offset of the field in the uapi structure.
    pub uapi_off: u32,
    /// Size of the field in the uapi structure (1, 2, 4 or 8).
    pub uapi_size: u32,
    /// Offset of the field in the runtime's structure.
    pub target_off: i16,
    /// Size of the field in the runtime's structure (at least `uapi_size`
    /// for loads; equal to it for writable fields).
    pub target_size: u32,
}

/// A runtime context layout: where each uapi field of a program type's
/// context lives. Implemented by [`CtxLayoutTable`]; a platform may supply
/// its own.
pub trait CtxLayout {
    /// The field of `prog`'s context that contains the uapi byte `off`, or
    /// `None` if this layout does not provide it.
    fn field(&self, prog: ProgKind, off: u32) -> Option<LayoutField>;
}

/// A [`CtxLayout`] as data: per program type, fields in any order.
#[derive(Clone, Debug, Default)]
pub struct CtxLayoutTable {
    entries: Vec<(ProgKind, Vec<LayoutField>)>,
    identity_for_rest: bool,
}

impl CtxLayoutTable {
    /// An empty table: every context access is an error unless
    /// [`CtxLayoutTable::with_identity_fallback`] is set.
    pub fn new() -> CtxLayoutTable {
        CtxLayoutTable::default()
    }

    /// Adds (or replaces) the fields of `prog`'s context.
    pub fn set(&mut self, prog: ProgKind, fields: Vec<LayoutField>) {
        match self.entries.iter_mut().find(|e| e.0 == prog) {
            Some(e) => e.1 = fields,
            None => self.entries.push((prog, fields)),
        }
    }

    /// Program types without an entry keep the uapi layout (builder style).
    pub fn with_identity_fallback(mut self) -> CtxLayoutTable {
        self.identity_for_rest = true;
        self
    }

    /// bpf-vm's layout: its interpreter serves context accesses at the uapi
    /// offsets (`xdp_md`, `__sk_buff`, the `mem` type's plain memory), with
    /// a 4-byte load of a packet pointer field yielding the full pointer,
    /// so every field maps to itself.
    pub fn bpf_vm() -> CtxLayoutTable {
        CtxLayoutTable::new().with_identity_fallback()
    }
}

impl CtxLayout for CtxLayoutTable {
    fn field(&self, prog: ProgKind, off: u32) -> Option<LayoutField> {
        if let Some((_, fields)) = self.entries.iter().find(|e| e.0 == prog) {
            return fields
                .iter()
                .find(|f| f.uapi_off <= off && off < f.uapi_off.saturating_add(f.uapi_size))
                .copied();
        }
        if !self.identity_for_rest {
            return None;
        }
        identity_field(prog, off)
    }
}

/// The uapi field containing `off`, mapped to itself.
fn identity_field(prog: ProgKind, off: u32) -> Option<LayoutField> {
    let same = |o: u32, s: u32| LayoutField {
        uapi_off: o,
        uapi_size: s,
        target_off: i16::try_from(o).unwrap_or(i16::MAX),
        target_size: s,
    };
    match ctx_desc(prog) {
        CtxDesc::Fields { fields, .. } => {
            let f = fields
                .iter()
                .find(|f| f.off <= off && off < f.off + f.size)?;
            // Scratch areas and grouped ranges are word arrays.
            if f.size > 8 || (f.size == 8 && f.off % 8 != 0) {
                Some(same(off - off % 4, 4))
            } else {
                Some(same(f.off, f.size))
            }
        }
        CtxDesc::ReadOnly { .. } => Some(same(off - off % 8, 8)),
        CtxDesc::None => None,
    }
}

/// Gives the runtime addresses of the program's maps.
pub trait MapResolver {
    /// The address (or handle) of the map at `index` in [`crate::Options::maps`].
    fn map_addr(&self, index: u32) -> Option<u64>;
    /// The address of byte `off` of the map's (single) value, for
    /// `BPF_PSEUDO_MAP_VALUE` / `BPF_PSEUDO_MAP_IDX_VALUE` references.
    fn value_addr(&self, index: u32, off: u32) -> Option<u64>;
}

/// A resolver backed by a table of map addresses and value addresses.
#[derive(Clone, Debug, Default)]
pub struct MapAddrs {
    /// Per map index: the map's address.
    pub maps: Vec<u64>,
    /// Per map index: the address of the map's value (global data), if any.
    pub values: Vec<Option<u64>>,
}

impl MapResolver for MapAddrs {
    fn map_addr(&self, index: u32) -> Option<u64> {
        self.maps.get(index as usize).copied()
    }

    fn value_addr(&self, index: u32, off: u32) -> Option<u64> {
        self.values
            .get(index as usize)
            .copied()
            .flatten()
            .map(|a| a.wrapping_add(u64::from(off)))
    }
}

/// What to rewrite.
pub struct RewriteConfig<'a> {
    /// The program type the program was verified for.
    pub prog: ProgKind,
    /// The runtime's context layout.
    pub ctx: &'a dyn CtxLayout,
    /// Map addresses; `None` keeps the pseudo map references.
    pub maps: Option<&'a dyn MapResolver>,
    /// Remove dead code.
    pub remove_dead_code: bool,
}

impl<'a> RewriteConfig<'a> {
    /// Context conversion to `ctx` and dead-code removal; maps are kept.
    pub fn new(prog: ProgKind, ctx: &'a dyn CtxLayout) -> RewriteConfig<'a> {
        RewriteConfig {
            prog,
            ctx,
            maps: None,
            remove_dead_code: true,
        }
    }

    /// Resolves maps through `maps` (builder style).
    pub fn with_maps(mut self, maps: &'a dyn MapResolver) -> RewriteConfig<'a> {
        self.maps = Some(maps);
        self
    }
}

/// Why a rewrite failed; `insn` is the slot in the verified program.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RewriteError {
    /// The layout has no place for a context field the program accesses.
    #[error("insn {insn}: the runtime's context has no field at uapi offset {off}")]
    CtxField {
        /// Slot of the access.
        insn: usize,
        /// uapi offset accessed.
        off: i64,
    },
    /// The access cannot be converted (a store or sign-extending load of a
    /// field whose size changes, an unsupported size).
    #[error("insn {insn}: cannot convert this context access ({what})")]
    CtxAccess {
        /// Slot of the access.
        insn: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The resolver does not know the map.
    #[error("insn {insn}: no address for map {map}")]
    Map {
        /// Slot of the `ld_imm64`.
        insn: usize,
        /// Map index.
        map: u32,
    },
    /// A map reference the verifier did not record.
    #[error("insn {insn}: map reference without verifier data")]
    MapAux {
        /// Slot of the `ld_imm64`.
        insn: usize,
    },
    /// A jump, call or function reference whose target was removed or is
    /// no longer reachable with a 16/32-bit offset.
    #[error("insn {insn}: cannot re-target this jump")]
    Target {
        /// Slot of the jump.
        insn: usize,
    },
}

/// The translated program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xlated {
    /// The rewritten instructions.
    pub prog: Program,
    /// For every slot of [`Xlated::prog`], the slot of the verified
    /// program it came from (several for an expanded access).
    pub orig_slot: Vec<u32>,
    /// Start slot of each subprogram in [`Xlated::prog`], parallel to
    /// [`VerifiedProgram::subprog_starts`].
    pub subprog_starts: Vec<u32>,
}

fn size_of(n: u32) -> Option<Size> {
    Some(match n {
        1 => Size::B,
        2 => Size::H,
        4 => Size::W,
        8 => Size::DW,
        _ => return None,
    })
}

/// A pending re-target: output index of the jump, original slot of its target.
struct Fix {
    at: usize,
    at_slot: u32,
    target: usize,
    from: usize,
}

/// The original target slot of a control transfer at `slot`.
fn target_of(insn: &Insn, slot: usize) -> Option<i64> {
    let rel = match *insn {
        Insn::Ja { off } | Insn::Jmp { off, .. } | Insn::MayGoto { off } => off as i64,
        Insn::JaLong { imm } => imm as i64,
        Insn::Call(CallTarget::Local(imm)) => imm as i64,
        Insn::LdImm64 {
            src: LdImm64Src::Func(imm),
            ..
        } => imm as i64,
        _ => return None,
    };
    Some(slot as i64 + 1 + rel)
}

impl VerifiedProgram {
    /// The xlated stream for bpf-vm: context accesses in bpf-vm's layout
    /// ([`CtxLayoutTable::bpf_vm`]), dead code removed, maps kept as pseudo
    /// references (bpf-vm resolves them when it loads the program).
    pub fn xlated(&self, prog: ProgKind) -> Result<Xlated, RewriteError> {
        let layout = CtxLayoutTable::bpf_vm();
        self.rewrite(&RewriteConfig::new(prog, &layout))
    }

    /// Applies the rewrites of `cfg` (see the [module](crate::rewrite) docs).
    pub fn rewrite(&self, cfg: &RewriteConfig<'_>) -> Result<Xlated, RewriteError> {
        let src = &self.prog;
        let n = src.slot_len();
        let seen = |slot: usize| self.aux.get(slot).is_some_and(|a| a.seen);
        let mut out: Vec<Insn> = Vec::with_capacity(src.len() + 8);
        let mut orig: Vec<u32> = Vec::with_capacity(n + 8);
        // Output slot of each original slot (u32::MAX: removed).
        let mut new_slot: Vec<u32> = vec![u32::MAX; n + 1];
        let mut fixes: Vec<Fix> = Vec::new();
        let mut slot_out = 0u32;
        let push =
            |out: &mut Vec<Insn>, orig: &mut Vec<u32>, slot_out: &mut u32, i: Insn, from: usize| {
                let w = i.slots() as u32;
                out.push(i);
                for _ in 0..w {
                    orig.push(from as u32);
                }
                *slot_out += w;
            };
        for (idx, insn) in src.iter() {
            let slot = idx.slot();
            if cfg.remove_dead_code && !seen(slot) {
                continue;
            }
            new_slot[slot] = slot_out;
            let insn = *insn;
            // Control transfers: hard-wire never-taken or always-taken conditionals.
            if let Some(t) = target_of(&insn, slot) {
                let t = usize::try_from(t).map_err(|_| RewriteError::Target { insn: slot })?;
                if cfg.remove_dead_code {
                    if let Insn::Jmp { .. } = insn {
                        let fall = slot + insn.slots();
                        match (seen(t), seen(fall)) {
                            (false, _) => continue, // never taken: falls through
                            (true, false) => {
                                fixes.push(Fix {
                                    at: out.len(),
                                    at_slot: slot_out,
                                    target: t,
                                    from: slot,
                                });
                                push(
                                    &mut out,
                                    &mut orig,
                                    &mut slot_out,
                                    Insn::Ja { off: 0 },
                                    slot,
                                );
                                continue;
                            }
                            (true, true) => {}
                        }
                    }
                }
                fixes.push(Fix {
                    at: out.len(),
                    at_slot: slot_out,
                    target: t,
                    from: slot,
                });
                push(&mut out, &mut orig, &mut slot_out, insn, slot);
                continue;
            }
            let aux = self.aux.get(slot);
            let is_ctx = aux.is_some_and(|a| a.ctx_access);
            if aux.is_some_and(|a| a.sock_access) {
                return Err(RewriteError::CtxAccess {
                    insn: slot,
                    what: "load through a sock_common pointer (not converted)",
                });
            }
            match insn {
                Insn::Ldx { .. } | Insn::LdxSx { .. } | Insn::Stx { .. } | Insn::St { .. }
                    if is_ctx =>
                {
                    convert_ctx(cfg, slot, insn, &mut |i| {
                        push(&mut out, &mut orig, &mut slot_out, i, slot)
                    })?;
                }
                Insn::LdImm64 { dst, src: s }
                    if cfg.maps.is_some()
                        && !matches!(
                            s,
                            LdImm64Src::Imm(_) | LdImm64Src::Func(_) | LdImm64Src::BtfId(_)
                        ) =>
                {
                    let resolver = cfg.maps.ok_or(RewriteError::MapAux { insn: slot })?;
                    let map = aux
                        .and_then(|a| a.map_index)
                        .ok_or(RewriteError::MapAux { insn: slot })?;
                    let addr = match s {
                        LdImm64Src::MapValue { off, .. } | LdImm64Src::MapIdxValue { off, .. } => {
                            resolver.value_addr(map, off)
                        }
                        _ => resolver.map_addr(map),
                    }
                    .ok_or(RewriteError::Map { insn: slot, map })?;
                    push(
                        &mut out,
                        &mut orig,
                        &mut slot_out,
                        Insn::LdImm64 {
                            dst,
                            src: LdImm64Src::Imm(addr),
                        },
                        slot,
                    );
                }
                _ => push(&mut out, &mut orig, &mut slot_out, insn, slot),
            }
        }
        new_slot[n] = slot_out;
        for f in &fixes {
            let to = *new_slot
                .get(f.target)
                .filter(|&&s| s != u32::MAX)
                .ok_or(RewriteError::Target { insn: f.from })?;
            let rel = to as i64 - (f.at_slot as i64 + 1);
            let bad = || RewriteError::Target { insn: f.from };
            let i16_rel = || i16::try_from(rel).map_err(|_| bad());
            let i32_rel = || i32::try_from(rel).map_err(|_| bad());
            let Some(slot_insn) = out.get_mut(f.at) else {
                return Err(bad());
            };
            match slot_insn {
                Insn::Ja { off } | Insn::Jmp { off, .. } | Insn::MayGoto { off } => {
                    *off = i16_rel()?
                }
                Insn::JaLong { imm } => *imm = i32_rel()?,
                Insn::Call(CallTarget::Local(imm)) => *imm = i32_rel()?,
                Insn::LdImm64 {
                    src: LdImm64Src::Func(imm),
                    ..
                } => *imm = i32_rel()?,
                _ => return Err(bad()),
            }
        }
        // A jump to the next instruction is a no-op left by hard-wiring only
        // when the target follows directly; keep it (harmless, like the kernel's `ja 0`).
        let subprog_starts = self
            .subprog_starts
            .iter()
            .map(|&s| {
                new_slot
                    .get(s as usize)
                    .copied()
                    .filter(|&x| x != u32::MAX)
                    .ok_or(RewriteError::Target { insn: s as usize })
            })
            .collect::<Result<Vec<u32>, RewriteError>>()?;
        Ok(Xlated {
            prog: Program::from_insns(out),
            orig_slot: orig,
            subprog_starts,
        })
    }
}

fn convert_ctx(
    cfg: &RewriteConfig<'_>,
    slot: usize,
    insn: Insn,
    emit: &mut dyn FnMut(Insn),
) -> Result<(), RewriteError> {
    let (off, size) = match insn {
        Insn::Ldx { off, size, .. }
        | Insn::LdxSx { off, size, .. }
        | Insn::Stx { off, size, .. }
        | Insn::St { off, size, .. } => (off as i64, size.bytes()),
        _ => {
            return Err(RewriteError::CtxAccess {
                insn: slot,
                what: "not a load or store",
            })
        }
    };
    let uoff = u32::try_from(off).map_err(|_| RewriteError::CtxField { insn: slot, off })?;
    let f = cfg
        .ctx
        .field(cfg.prog, uoff)
        .ok_or(RewriteError::CtxField { insn: slot, off })?;
    let delta = uoff - f.uapi_off;
    if delta + size > f.uapi_size {
        return Err(RewriteError::CtxAccess {
            insn: slot,
            what: "access crosses a field",
        });
    }
    let same_width = f.target_size == f.uapi_size;
    // Accesses that keep their width: only the offset moves.
    let moved = |o: i16| -> Result<i16, RewriteError> {
        o.checked_add(delta as i16).ok_or(RewriteError::CtxAccess {
            insn: slot,
            what: "offset overflow",
        })
    };
    match insn {
        Insn::Ldx { dst, src, .. } => {
            // A full load of a pointer field yields the whole (wider) pointer.
            let pointer = !matches!(
                crate::ctx::check_ctx_access(&ctx_desc(cfg.prog), off, size, false),
                Some(crate::reg::RegType::Scalar) | None
            );
            if same_width || (pointer && delta == 0 && size == f.uapi_size) {
                let size = if same_width {
                    size_of(size)
                } else {
                    size_of(f.target_size)
                }
                .ok_or(RewriteError::CtxAccess {
                    insn: slot,
                    what: "field size",
                })?;
                let off = if same_width {
                    moved(f.target_off)?
                } else {
                    f.target_off
                };
                emit(Insn::Ldx {
                    size,
                    dst,
                    src,
                    off,
                });
            } else {
                // Narrow load of a widened field: full load, shift, mask (little endian).
                let full = size_of(f.target_size).ok_or(RewriteError::CtxAccess {
                    insn: slot,
                    what: "field size",
                })?;
                emit(Insn::Ldx {
                    size: full,
                    dst,
                    src,
                    off: f.target_off,
                });
                if delta > 0 {
                    emit(Insn::Alu {
                        width: bpf_isa::Width::W64,
                        op: bpf_isa::AluOp::Rsh,
                        dst,
                        src: bpf_isa::Source::Imm((delta * 8) as i32),
                    });
                }
                if size < 8 {
                    if size == 4 {
                        // `w = w` zero-extends the low 32 bits.
                        emit(Insn::Alu {
                            width: bpf_isa::Width::W32,
                            op: bpf_isa::AluOp::Mov,
                            dst,
                            src: bpf_isa::Source::Reg(dst),
                        });
                    } else {
                        // 0xff or 0xffff.
                        let mask = (1i32 << (size * 8)) - 1;
                        emit(Insn::Alu {
                            width: bpf_isa::Width::W64,
                            op: bpf_isa::AluOp::And,
                            dst,
                            src: bpf_isa::Source::Imm(mask),
                        });
                    }
                }
            }
        }
        Insn::LdxSx {
            dst, src, size: s, ..
        } if same_width => emit(Insn::LdxSx {
            size: s,
            dst,
            src,
            off: moved(f.target_off)?,
        }),
        Insn::Stx {
            dst, src, size: s, ..
        } if same_width => emit(Insn::Stx {
            size: s,
            dst,
            src,
            off: moved(f.target_off)?,
        }),
        Insn::St {
            dst, imm, size: s, ..
        } if same_width => emit(Insn::St {
            size: s,
            dst,
            off: moved(f.target_off)?,
            imm,
        }),
        _ => {
            return Err(RewriteError::CtxAccess {
                insn: slot,
                what: "store or sign-extending load of a field whose size changes",
            })
        }
    }
    Ok(())
}
