//! ELF reading (through the `object` crate) and program linking.

use std::collections::HashMap;

use bpf_isa::{Program, RawInsn};
use object::read::elf::{FileHeader, SectionHeader, Sym as _};
use object::{elf, LittleEndian as LE};

use crate::btf::{kind, Btf};
use crate::error::{BtfMapError, ObjectError};
use crate::progtype::prog_type_from_section;
use crate::types::*;

type Header = elf::FileHeader64<LE>;

const EM_BPF: u16 = 247;
const ET_REL: u16 = 1;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHF_EXECINSTR: u64 = 4;
const STT_OBJECT: u8 = 1;
const STT_SECTION: u8 = 3;
const STT_FUNC: u8 = 2;
const STT_FILE: u8 = 4;
const R_BPF_64_64: u32 = 1;
const R_BPF_64_32: u32 = 10;

const OP_CALL: u8 = 0x85;
const OP_LD_IMM64: u8 = 0x18;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_MAP_IDX: u8 = 5;
const PSEUDO_MAP_IDX_VALUE: u8 = 6;
const PSEUDO_FUNC: u8 = 4;

/// A symbol, read once.
struct Sym {
    name: String,
    /// Defining section, `None` for undefined/absolute.
    section: Option<usize>,
    value: u64,
    size: u64,
    st_type: u8,
}

/// An ELF relocation on a code section, by slot.
#[derive(Clone, Copy)]
struct Rel {
    slot: usize,
    r_type: u32,
    sym: usize,
}

/// A function: a run of slots in a code section.
struct Func {
    name: String,
    sec: usize,
    start: usize,
    len: usize,
}

/// A code section.
struct Code {
    insns: Vec<RawInsn>,
    /// Sorted by slot.
    rels: Vec<Rel>,
}

/// Where relocations against a symbol's section lead.
enum Target {
    /// `(offset within section → map index)` for legacy/BTF maps.
    Maps(Vec<(u64, usize)>),
    /// A global-data map and its size.
    Data { map: usize, size: u64 },
}

struct Ctx<'a> {
    names: Vec<String>,
    syms: Vec<Sym>,
    code: HashMap<usize, Code>,
    funcs: Vec<Func>,
    targets: HashMap<usize, Target>,
    maps: &'a [MapDef],
}

/// Largest global-data section accepted: the kernel's `KMALLOC_MAX_SIZE` for array map values.
pub const MAX_GLOBAL_DATA_SIZE: u64 = 4 << 20;

fn bad_section(index: usize, e: impl ToString) -> ObjectError {
    ObjectError::BadSection {
        index,
        reason: e.to_string(),
    }
}

fn data_kind(name: &str) -> Option<DataKind> {
    let is = |base: &str| {
        name == base
            || name
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    if is(".data") {
        Some(DataKind::Data)
    } else if is(".rodata") {
        Some(DataKind::Rodata)
    } else if is(".bss") {
        Some(DataKind::Bss)
    } else {
        None
    }
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    for (i, byte) in w.iter_mut().enumerate() {
        *byte = off
            .checked_add(i)
            .and_then(|o| b.get(o))
            .copied()
            .unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

pub(crate) fn parse(data: &[u8]) -> Result<Object, ObjectError> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ObjectError::Unsupported("not an ELF file"));
    }
    if data.get(4) != Some(&2) {
        return Err(ObjectError::Unsupported("not a 64-bit ELF file"));
    }
    if data.get(5) != Some(&1) {
        return Err(ObjectError::Unsupported("not a little-endian ELF file"));
    }
    let header = Header::parse(data)?;
    let endian = header.endian()?;
    let machine = header.e_machine(endian).0;
    if machine != EM_BPF {
        return Err(ObjectError::WrongMachine(machine));
    }
    if header.e_type(endian).0 != ET_REL {
        return Err(ObjectError::Unsupported("not a relocatable object"));
    }
    let sections = header.sections(endian, data)?;
    let symtab = sections.symbols(endian, data, elf::SHT_SYMTAB)?;

    // Section names and contents.
    let mut names = Vec::with_capacity(sections.len());
    let mut contents: Vec<&[u8]> = Vec::with_capacity(sections.len());
    for (index, sh) in sections.iter().enumerate() {
        let name = sections
            .section_name(endian, sh)
            .map_err(|e| bad_section(index, e))?;
        names.push(String::from_utf8_lossy(name).into_owned());
        let bytes = if sh.sh_type(endian).0 == SHT_NOBITS {
            &[][..]
        } else {
            sh.data(endian, data).map_err(|e| bad_section(index, e))?
        };
        contents.push(bytes);
    }
    let section_size = |i: usize| {
        sections
            .iter()
            .nth(i)
            .map(|sh| sh.sh_size(endian))
            .unwrap_or(0)
    };

    // Symbols.
    let mut syms = Vec::with_capacity(symtab.len());
    for (index, s) in symtab.iter().enumerate() {
        let name = symtab
            .symbol_name(endian, s)
            .map_err(|e| ObjectError::BadSymbol {
                index,
                reason: e.to_string(),
            })?;
        let section = symtab
            .symbol_section(endian, s, object::SymbolIndex(index))
            .map_err(|e| ObjectError::BadSymbol {
                index,
                reason: e.to_string(),
            })?
            .map(|i| i.0)
            .filter(|&i| i > 0 && i < names.len());
        let st_type = s.st_type().0;
        let mut name = String::from_utf8_lossy(name).into_owned();
        if st_type == STT_SECTION && name.is_empty() {
            if let Some(i) = section {
                name = names[i].clone();
            }
        }
        syms.push(Sym {
            name,
            section,
            value: s.st_value(endian),
            size: s.st_size(endian),
            st_type,
        });
    }

    // Classify sections.
    let mut infos = Vec::new();
    let mut code: HashMap<usize, Code> = HashMap::new();
    for (index, sh) in sections.iter().enumerate().skip(1) {
        let name = names[index].as_str();
        let size = sh.sh_size(endian);
        let sh_type = sh.sh_type(endian).0;
        let exec = sh.sh_flags(endian).0 & SHF_EXECINSTR != 0;
        let kind = if exec && sh_type != SHT_NOBITS {
            if name == ".text" {
                SectionKind::Text
            } else {
                SectionKind::Programs
            }
        } else if sh_type == SHT_REL {
            SectionKind::Relocations
        } else if name == "maps" {
            SectionKind::LegacyMaps
        } else if name == ".maps" {
            SectionKind::BtfMaps
        } else if name == "license" {
            SectionKind::License
        } else if name == "version" {
            SectionKind::Version
        } else if name == ".BTF" {
            SectionKind::Btf
        } else if name == ".BTF.ext" {
            SectionKind::BtfExt
        } else if let Some(d) = data_kind(name) {
            SectionKind::Data(d)
        } else {
            SectionKind::Other
        };
        if matches!(kind, SectionKind::Programs | SectionKind::Text) {
            let bytes = contents[index];
            let insns =
                RawInsn::slice_from_bytes(bytes).ok_or_else(|| ObjectError::BadCodeSize {
                    section: name.to_string(),
                    size,
                })?;
            code.insert(
                index,
                Code {
                    insns,
                    rels: Vec::new(),
                },
            );
        }
        infos.push(SectionInfo {
            index,
            name: name.to_string(),
            size,
            kind,
        });
    }

    // Relocations of code sections.
    for (index, sh) in sections.iter().enumerate() {
        let Some((rels, _link)) = sh.rel(endian, data).map_err(|e| bad_section(index, e))? else {
            continue;
        };
        let target = sh.info_link(endian).0;
        let Some(c) = code.get_mut(&target) else {
            continue; // relocations of debug info, BTF, .maps: not needed here
        };
        let tname = names.get(target).cloned().unwrap_or_default();
        for r in rels {
            let offset = r.r_offset.get(endian);
            let slot = usize::try_from(offset / 8).unwrap_or(usize::MAX);
            if !offset.is_multiple_of(8) || slot >= c.insns.len() {
                return Err(ObjectError::RelocationOutOfRange {
                    section: tname,
                    offset,
                });
            }
            let sym = r.r_sym(endian) as usize;
            if sym == 0 || sym >= syms.len() {
                return Err(ObjectError::BadSymbol {
                    index: sym,
                    reason: format!("relocation in `{tname}` at offset {offset} names no symbol"),
                });
            }
            c.rels.push(Rel {
                slot,
                r_type: r.r_type(endian).0,
                sym,
            });
        }
        c.rels.sort_by_key(|r| r.slot);
    }

    // Functions.
    let mut funcs = Vec::new();
    for s in &syms {
        let Some(sec) = s.section else { continue };
        let Some(c) = code.get(&sec) else { continue };
        if s.st_type != STT_FUNC {
            continue;
        }
        let bad = || ObjectError::BadFunctionSymbol {
            symbol: s.name.clone(),
            section: names[sec].clone(),
            offset: s.value,
            size: s.size,
        };
        if !s.value.is_multiple_of(8) || !s.size.is_multiple_of(8) || s.size == 0 {
            return Err(bad());
        }
        let start = usize::try_from(s.value / 8).map_err(|_| bad())?;
        let len = usize::try_from(s.size / 8).map_err(|_| bad())?;
        if start.checked_add(len).is_none_or(|end| end > c.insns.len()) {
            return Err(bad());
        }
        funcs.push(Func {
            name: s.name.clone(),
            sec,
            start,
            len,
        });
    }
    // A code section without function symbols (hand-written assembly) is one function.
    for (&sec, c) in &code {
        if !c.insns.is_empty() && !funcs.iter().any(|f| f.sec == sec) {
            funcs.push(Func {
                name: names[sec].clone(),
                sec,
                start: 0,
                len: c.insns.len(),
            });
        }
    }
    funcs.sort_by_key(|f| (f.sec, f.start));

    // Maps.
    let mut maps = Vec::new();
    let mut targets: HashMap<usize, Target> = HashMap::new();
    for info in &infos {
        if info.kind != SectionKind::LegacyMaps {
            continue;
        }
        let bytes = contents[info.index];
        let mut defs: Vec<&Sym> = syms
            .iter()
            .filter(|s| {
                s.section == Some(info.index) && !matches!(s.st_type, STT_SECTION | STT_FILE)
            })
            .collect();
        defs.sort_by_key(|s| s.value);
        let mut offsets = Vec::new();
        if !defs.is_empty() {
            let count = defs.len();
            let bad = || ObjectError::BadLegacyMaps {
                size: info.size,
                count,
            };
            if !bytes.len().is_multiple_of(count) {
                return Err(bad());
            }
            let def_size = bytes.len() / count;
            if def_size < 4 {
                return Err(bad());
            }
            for s in defs {
                let off = usize::try_from(s.value).map_err(|_| bad())?;
                let def = off
                    .checked_add(def_size)
                    .and_then(|end| bytes.get(off..end))
                    .ok_or_else(bad)?;
                offsets.push((s.value, maps.len()));
                maps.push(MapDef {
                    name: s.name.clone(),
                    kind: MapKind::Legacy,
                    section: info.name.clone(),
                    map_type: le_u32(def, 0),
                    key_size: le_u32(def, 4),
                    value_size: le_u32(def, 8),
                    max_entries: le_u32(def, 12),
                    flags: le_u32(def, 16),
                    initial_data: None,
                });
            }
        }
        targets.insert(info.index, Target::Maps(offsets));
    }

    let btf_section = infos.iter().find(|i| i.kind == SectionKind::Btf);
    if let Some(mi) = infos.iter().find(|i| i.kind == SectionKind::BtfMaps) {
        let bi = btf_section.ok_or(ObjectError::MissingBtf)?;
        let btf = Btf::parse(contents[bi.index])?;
        let offsets = btf_maps(&btf, &syms, mi.index, &mi.name, &mut maps)?;
        targets.insert(mi.index, Target::Maps(offsets));
    }

    for info in &infos {
        let SectionKind::Data(dk) = info.kind else {
            continue;
        };
        if info.size == 0 {
            continue;
        }
        // The kernel rejects array values above KMALLOC_MAX_SIZE (4 MiB on x86-64
        // and arm64 with 4 KiB pages) with E2BIG; refuse them here too rather than
        // allocate what a corrupted `sh_size` of a NOBITS section claims.
        if info.size > MAX_GLOBAL_DATA_SIZE {
            return Err(bad_section(
                info.index,
                "global data section larger than the kernel's 4 MiB map value limit",
            ));
        }
        let value_size =
            u32::try_from(info.size).map_err(|_| bad_section(info.index, "too large"))?;
        let initial = if dk == DataKind::Bss || section_is_nobits(&sections, endian, info.index) {
            vec![0u8; value_size as usize]
        } else {
            contents[info.index].to_vec()
        };
        targets.insert(
            info.index,
            Target::Data {
                map: maps.len(),
                size: info.size,
            },
        );
        maps.push(MapDef {
            name: info.name.clone(),
            kind: MapKind::GlobalData(dk),
            section: info.name.clone(),
            map_type: map_type::ARRAY,
            key_size: 4,
            value_size,
            max_entries: 1,
            flags: if dk == DataKind::Rodata {
                map_flags::RDONLY_PROG
            } else {
                0
            },
            initial_data: Some(initial),
        });
    }

    // License and version.
    let license = infos
        .iter()
        .find(|i| i.kind == SectionKind::License)
        .map(|i| {
            let b = contents[i.index];
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        });
    let kernel_version = match infos.iter().find(|i| i.kind == SectionKind::Version) {
        Some(i) => {
            let b = contents[i.index];
            if b.len() != 4 {
                return Err(ObjectError::BadVersion(section_size(i.index)));
            }
            Some(le_u32(b, 0))
        }
        None => None,
    };

    // Global variables: object symbols inside a global-data section.
    let mut globals = Vec::new();
    for s in &syms {
        if s.st_type != STT_OBJECT {
            continue;
        }
        let Some(Target::Data { map, size }) = s.section.and_then(|i| targets.get(&i)) else {
            continue;
        };
        if s.value.saturating_add(s.size) > *size {
            continue;
        }
        let (Ok(offset), Ok(vsize)) = (u32::try_from(s.value), u32::try_from(s.size)) else {
            continue;
        };
        globals.push(GlobalVar {
            name: s.name.clone(),
            map: *map,
            offset,
            size: vsize,
        });
    }

    // Programs.
    let ctx = Ctx {
        names,
        syms,
        code,
        funcs,
        targets,
        maps: &maps,
    };
    let mut programs = Vec::new();
    for (fi, f) in ctx.funcs.iter().enumerate() {
        let is_prog = infos
            .iter()
            .any(|i| i.index == f.sec && i.kind == SectionKind::Programs);
        if is_prog {
            programs.push(ctx.link(fi)?);
        }
    }

    Ok(Object {
        programs,
        maps,
        sections: infos,
        license,
        kernel_version,
        globals,
    })
}

fn section_is_nobits(
    sections: &object::read::elf::SectionTable<'_, Header>,
    endian: LE,
    index: usize,
) -> bool {
    sections
        .iter()
        .nth(index)
        .is_some_and(|sh| sh.sh_type(endian).0 == SHT_NOBITS)
}

/// Reads the BTF-defined maps of `.maps`, appending them to `maps`; returns
/// `(symbol offset, map index)` for relocation lookup.
fn btf_maps(
    btf: &Btf<'_>,
    syms: &[Sym],
    sec: usize,
    sec_name: &str,
    maps: &mut Vec<MapDef>,
) -> Result<Vec<(u64, usize)>, ObjectError> {
    let mut datasec = None;
    for id in 1..=btf.len() as u32 {
        let t = btf.get(id)?;
        if t.kind == kind::DATASEC && btf.name(t.name_off)? == ".maps" {
            datasec = Some(*t);
            break;
        }
    }
    let Some(ds) = datasec else {
        return Err(ObjectError::BtfMap {
            map: sec_name.to_string(),
            error: BtfMapError::NoDatasec,
        });
    };
    let mut offsets = Vec::new();
    for var in btf.members(&ds) {
        let vt = btf.get(var.type_id)?;
        let vname = btf.name(vt.name_off)?.to_string();
        let wrap = |error: BtfMapError| ObjectError::BtfMap {
            map: vname.clone(),
            error,
        };
        // A DATASEC entry points at a VAR whose type is the definition.
        let def_id = if vt.kind == kind::VAR {
            vt.size_or_type
        } else {
            var.type_id
        };
        let def = read_btf_map(btf, def_id).map_err(wrap)?;
        let sym = syms
            .iter()
            .find(|s| s.section == Some(sec) && s.name == vname && s.st_type != STT_SECTION)
            .ok_or_else(|| wrap(BtfMapError::NoSymbol))?;
        offsets.push((sym.value, maps.len()));
        maps.push(MapDef {
            name: vname,
            kind: MapKind::Btf,
            section: sec_name.to_string(),
            ..def
        });
    }
    Ok(offsets)
}

fn read_btf_map(btf: &Btf<'_>, def_id: u32) -> Result<MapDef, BtfMapError> {
    let sid = btf.skip_mods(def_id)?;
    let st = *btf.get(sid)?;
    if st.kind != kind::STRUCT {
        return Err(BtfMapError::NotStruct);
    }
    let (mut map_type, mut key, mut value, mut key_size, mut value_size) =
        (None, None, None, None, None);
    let (mut max_entries, mut flags, mut has_values) = (0, 0, false);
    for m in btf.members(&st) {
        let fname = btf.name(m.name_off)?;
        let uint = || -> Result<u32, BtfMapError> {
            let p = btf.get(btf.skip_mods(m.type_id)?)?;
            if p.kind != kind::PTR {
                return Err(BtfMapError::NotUint(fname.to_string()));
            }
            let a = btf.get(btf.skip_mods(p.size_or_type)?)?;
            btf.array(a)
                .map(|(_, n)| n)
                .ok_or_else(|| BtfMapError::NotUint(fname.to_string()))
        };
        let pointee_size = || -> Result<u32, BtfMapError> {
            let p = btf.get(btf.skip_mods(m.type_id)?)?;
            if p.kind != kind::PTR {
                return Err(BtfMapError::NotType(fname.to_string()));
            }
            Ok(btf.size_of(p.size_or_type)?)
        };
        match fname {
            "type" => map_type = Some(uint()?),
            "max_entries" => max_entries = uint()?,
            "map_flags" => flags = uint()?,
            "key_size" => key_size = Some(uint()?),
            "value_size" => value_size = Some(uint()?),
            "key" => key = Some(pointee_size()?),
            "value" => value = Some(pointee_size()?),
            "values" => has_values = true,
            // pinning, numa_node, map_extra and anything newer: not needed to run.
            _ => {}
        }
    }
    let pick = |field, typed: Option<u32>, explicit: Option<u32>| match (typed, explicit) {
        (Some(t), Some(e)) if t != e => Err(BtfMapError::SizeMismatch {
            field,
            typed: t,
            explicit: e,
        }),
        (t, e) => Ok(t.or(e)),
    };
    let key_size = pick("key", key, key_size)?.unwrap_or(0);
    // Prog arrays and map-in-map declared with `__array(values, ...)` hold 4-byte ids.
    let value_size = pick("value", value, value_size)?.unwrap_or(if has_values { 4 } else { 0 });
    Ok(MapDef {
        name: String::new(),
        kind: MapKind::Btf,
        section: String::new(),
        map_type: map_type.ok_or(BtfMapError::MissingType)?,
        key_size,
        value_size,
        max_entries,
        flags,
        initial_data: None,
    })
}

impl Ctx<'_> {
    fn find_func(&self, sec: usize, slot: i64) -> Option<usize> {
        self.funcs
            .iter()
            .position(|f| f.sec == sec && slot >= f.start as i64 && slot < (f.start + f.len) as i64)
    }

    /// Links the program whose entry is `funcs[main]`.
    fn link(&self, main: usize) -> Result<ObjProgram, ObjectError> {
        let entry = &self.funcs[main];
        let pname = entry.name.clone();
        let mut out: Vec<RawInsn> = Vec::new();
        // (function, base slot in `out`)
        let mut placed: Vec<(usize, usize)> = Vec::new();
        let mut relocations = Vec::new();
        self.place(main, &mut out, &mut placed);

        let too_large = || ObjectError::TooLarge {
            program: pname.clone(),
        };
        let mut p = 0;
        while let Some(&(fi, base)) = placed.get(p) {
            let f = &self.funcs[fi];
            let Some(code) = self.code.get(&f.sec) else {
                p += 1;
                continue;
            };
            let secname = &self.names[f.sec];
            let mut j = 0;
            while j < f.len {
                let sec_slot = f.start + j;
                let at = base + j;
                let insn = out[at];
                let rel = code
                    .rels
                    .binary_search_by_key(&sec_slot, |r| r.slot)
                    .ok()
                    .and_then(|k| code.rels.get(k));
                let unsupported = |r_type| ObjectError::UnsupportedRelocation {
                    section: secname.clone(),
                    insn: sec_slot,
                    r_type,
                    code: insn.code,
                };
                let step = if insn.code == OP_LD_IMM64 { 2 } else { 1 };
                match (insn.code, rel) {
                    (OP_CALL, rel) if insn.src == PSEUDO_CALL => {
                        let (tsec, tslot) = match rel {
                            Some(r) => {
                                if r.r_type != R_BPF_64_32 {
                                    return Err(unsupported(r.r_type));
                                }
                                let s = &self.syms[r.sym];
                                let Some(ssec) = s.section else {
                                    relocations.push(Relocation {
                                        insn: at,
                                        symbol: s.name.clone(),
                                        kind: RelocKind::Extern,
                                    });
                                    j += step;
                                    continue;
                                };
                                if !s.value.is_multiple_of(8) {
                                    return Err(ObjectError::BadRelocationTarget {
                                        program: pname.clone(),
                                        insn: at,
                                        symbol: s.name.clone(),
                                    });
                                }
                                (ssec, (s.value / 8) as i64 + insn.imm as i64 + 1)
                            }
                            None => (f.sec, sec_slot as i64 + insn.imm as i64 + 1),
                        };
                        let target =
                            self.place_target(&pname, at, tsec, tslot, &mut out, &mut placed)?;
                        let imm = i32::try_from(target as i64 - (at as i64 + 1))
                            .map_err(|_| too_large())?;
                        out[at].imm = imm;
                        relocations.push(Relocation {
                            insn: at,
                            symbol: self.callee_name(tsec, tslot),
                            kind: RelocKind::Call { target },
                        });
                    }
                    (OP_CALL, Some(r)) => {
                        // A helper or kfunc call against an undefined symbol.
                        let s = &self.syms[r.sym];
                        if s.section.is_some() {
                            return Err(unsupported(r.r_type));
                        }
                        relocations.push(Relocation {
                            insn: at,
                            symbol: s.name.clone(),
                            kind: RelocKind::Extern,
                        });
                    }
                    (OP_LD_IMM64, Some(r)) => {
                        if r.r_type != R_BPF_64_64 {
                            return Err(unsupported(r.r_type));
                        }
                        if j + 1 >= f.len {
                            // Let decoding report the truncated ld_imm64.
                            j += step;
                            continue;
                        }
                        let s = &self.syms[r.sym];
                        let reloc = |kind| Relocation {
                            insn: at,
                            symbol: s.name.clone(),
                            kind,
                        };
                        let bad_target = || ObjectError::BadRelocationTarget {
                            program: pname.clone(),
                            insn: at,
                            symbol: s.name.clone(),
                        };
                        let Some(ssec) = s.section else {
                            relocations.push(reloc(RelocKind::Extern));
                            j += step;
                            continue;
                        };
                        let off = (s.value as i64).wrapping_add(insn.imm as i64);
                        if self.code.contains_key(&ssec) {
                            if off % 8 != 0 {
                                return Err(bad_target());
                            }
                            let target = self.place_target(
                                &pname,
                                at,
                                ssec,
                                off / 8,
                                &mut out,
                                &mut placed,
                            )?;
                            let imm = i32::try_from(target as i64 - (at as i64 + 1))
                                .map_err(|_| too_large())?;
                            out[at].src = PSEUDO_FUNC;
                            out[at].imm = imm;
                            out[at + 1].imm = 0;
                            relocations.push(Relocation {
                                insn: at,
                                symbol: self.callee_name(ssec, off / 8),
                                kind: RelocKind::FuncAddr { target },
                            });
                        } else {
                            match self.targets.get(&ssec) {
                                Some(Target::Maps(list)) => {
                                    let map = list
                                        .iter()
                                        .find(|&&(o, _)| o as i64 == off)
                                        .map(|&(_, m)| m)
                                        .ok_or_else(bad_target)?;
                                    out[at].src = PSEUDO_MAP_IDX;
                                    out[at].imm = i32::try_from(map).map_err(|_| too_large())?;
                                    out[at + 1].imm = 0;
                                    relocations.push(reloc(RelocKind::Map { map }));
                                }
                                Some(&Target::Data { map, size }) => {
                                    let offset = u32::try_from(off)
                                        .ok()
                                        .filter(|&o| (o as u64) < size)
                                        .ok_or_else(|| ObjectError::DataOffsetOutOfRange {
                                            program: pname.clone(),
                                            insn: at,
                                            map: self
                                                .maps
                                                .get(map)
                                                .map(|m| m.name.clone())
                                                .unwrap_or_default(),
                                            offset: off,
                                            size,
                                        })?;
                                    out[at].src = PSEUDO_MAP_IDX_VALUE;
                                    out[at].imm = i32::try_from(map).map_err(|_| too_large())?;
                                    out[at + 1].imm = offset as i32;
                                    relocations.push(reloc(RelocKind::MapValue { map, offset }));
                                }
                                None => return Err(bad_target()),
                            }
                        }
                    }
                    (_, Some(r)) => return Err(unsupported(r.r_type)),
                    _ => {}
                }
                j += step;
            }
            p += 1;
        }

        let functions = placed
            .iter()
            .map(|&(fi, base)| {
                let f = &self.funcs[fi];
                Function {
                    name: f.name.clone(),
                    section: self.names[f.sec].clone(),
                    start: base,
                    len: f.len,
                }
            })
            .collect();
        let decode_err = |error| ObjectError::Decode {
            program: pname.clone(),
            error,
        };
        let insns = Program::decode_raw(&out).map_err(decode_err)?;
        insns.validate().map_err(decode_err)?;
        let section = self.names[entry.sec].clone();
        let (prog_type, attach) = prog_type_from_section(&section);
        Ok(ObjProgram {
            name: pname.clone(),
            attach_to: attach.map(str::to_string),
            section,
            prog_type,
            insns,
            functions,
            relocations,
        })
    }

    /// Appends function `fi` to `out`, records it in `placed`, returns its base slot.
    fn place(&self, fi: usize, out: &mut Vec<RawInsn>, placed: &mut Vec<(usize, usize)>) -> usize {
        let base = out.len();
        if let Some(f) = self.funcs.get(fi) {
            if let Some(c) = self.code.get(&f.sec) {
                out.extend_from_slice(c.insns.get(f.start..f.start + f.len).unwrap_or(&[]));
            }
        }
        placed.push((fi, base));
        base
    }

    fn callee_name(&self, sec: usize, slot: i64) -> String {
        self.find_func(sec, slot)
            .map(|fi| self.funcs[fi].name.clone())
            .unwrap_or_default()
    }

    /// Returns the slot in the linked program of `(sec, slot)`, appending the
    /// function that holds it if it is not placed yet.
    fn place_target(
        &self,
        pname: &str,
        at: usize,
        sec: usize,
        slot: i64,
        out: &mut Vec<RawInsn>,
        placed: &mut Vec<(usize, usize)>,
    ) -> Result<usize, ObjectError> {
        let callee = self
            .find_func(sec, slot)
            .ok_or_else(|| ObjectError::BadCallTarget {
                program: pname.to_string(),
                insn: at,
                section: self.names.get(sec).cloned().unwrap_or_default(),
                target: slot,
            })?;
        let base = match placed.iter().find(|&&(fi, _)| fi == callee) {
            Some(&(_, b)) => b,
            None => self.place(callee, out, placed),
        };
        let f = &self.funcs[callee];
        Ok(base + (slot as usize - f.start))
    }
}
