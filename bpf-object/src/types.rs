//! The parsed object model.

use crate::progtype::ProgType;

/// A parsed eBPF object file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Every program (one per function symbol of every executable section
    /// other than `.text`), in section order, then symbol offset order.
    pub programs: Vec<ObjProgram>,
    /// Every map: legacy `maps` definitions (by offset), then BTF-defined
    /// `.maps` (in BTF declaration order), then one array map per global-data
    /// section (in section order). [`RelocKind::Map`] and
    /// [`RelocKind::MapValue`] index this vector.
    pub maps: Vec<MapDef>,
    /// The sections of the file (except the null section), with what this
    /// crate took each one for.
    pub sections: Vec<SectionInfo>,
    /// The `license` section's string (up to its first NUL), if present.
    pub license: Option<String>,
    /// The `version` section's value, if present.
    pub kernel_version: Option<u32>,
    /// Every variable symbol (`STT_OBJECT`) defined in a global-data section,
    /// in symbol-table order: where its value lives in which map.
    pub globals: Vec<GlobalVar>,
}

impl Object {
    /// The program whose function symbol is `name`.
    pub fn program(&self, name: &str) -> Option<&ObjProgram> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The index and definition of the map called `name`.
    pub fn map(&self, name: &str) -> Option<(usize, &MapDef)> {
        self.maps.iter().enumerate().find(|(_, m)| m.name == name)
    }

    /// The global variable called `name`.
    pub fn global(&self, name: &str) -> Option<&GlobalVar> {
        self.globals.iter().find(|g| g.name == name)
    }

    /// The programs of the section `section`.
    pub fn programs_in_section<'a>(
        &'a self,
        section: &'a str,
    ) -> impl Iterator<Item = &'a ObjProgram> + 'a {
        self.programs.iter().filter(move |p| p.section == section)
    }
}

/// One program: an entry function with every subprogram it reaches appended
/// and its calls, function references and map references resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjProgram {
    /// The entry function's symbol name (the section name for a section
    /// without function symbols).
    pub name: String,
    /// The ELF section the entry function is in (`xdp`, `kprobe/...`).
    pub section: String,
    /// Program type guessed from [`ObjProgram::section`].
    pub prog_type: ProgType,
    /// What the section name says to attach to (`do_sys_open` of
    /// `kprobe/do_sys_open`), if anything.
    pub attach_to: Option<String>,
    /// The linked instructions: the entry function at slot 0, then each
    /// subprogram once, in the order they were first reached. Local calls
    /// and `BPF_PSEUDO_FUNC` references are relative to this layout; map
    /// references are `BPF_PSEUDO_MAP_IDX` / `BPF_PSEUDO_MAP_IDX_VALUE` with
    /// an index into [`Object::maps`].
    pub insns: bpf_isa::Program,
    /// The functions laid out in [`ObjProgram::insns`], entry first.
    pub functions: Vec<Function>,
    /// Every reference the linker resolved, in slot order per function.
    pub relocations: Vec<Relocation>,
}

/// A function placed in a linked program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// Symbol name.
    pub name: String,
    /// ELF section it came from.
    pub section: String,
    /// First slot in the linked program.
    pub start: usize,
    /// Length in slots.
    pub len: usize,
}

/// A resolved reference at one instruction of a linked program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Slot of the instruction in the linked program.
    pub insn: usize,
    /// The symbol referred to (the callee, the map, the data section or variable).
    pub symbol: String,
    /// What was resolved, and how the instruction was rewritten.
    pub kind: RelocKind,
}

/// What a [`Relocation`] resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelocKind {
    /// A bpf-to-bpf call (`BPF_PSEUDO_CALL`), with or without an ELF
    /// relocation; `imm` now points at `target` (a slot of the linked program).
    Call {
        /// Slot of the callee's instruction.
        target: usize,
    },
    /// An `ld_imm64` of a function address (a callback): rewritten to
    /// `BPF_PSEUDO_FUNC` pointing at `target`.
    FuncAddr {
        /// Slot of the function.
        target: usize,
    },
    /// An `ld_imm64` of a map: rewritten to `BPF_PSEUDO_MAP_IDX` with `imm = map`.
    Map {
        /// Index into [`Object::maps`].
        map: usize,
    },
    /// An `ld_imm64` of an address in global data: rewritten to
    /// `BPF_PSEUDO_MAP_IDX_VALUE` with `imm = map` and the second slot's `imm = offset`.
    MapValue {
        /// Index into [`Object::maps`].
        map: usize,
        /// Byte offset into the map's value.
        offset: u32,
    },
    /// A reference to an undefined (extern) symbol: a kfunc call or a ksym.
    /// The instruction is left as clang emitted it.
    Extern,
}

/// A variable in global data (`.data*`, `.rodata*`, `.bss*`): bytes
/// `offset .. offset + size` of the value of map [`GlobalVar::map`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalVar {
    /// The symbol name (static variables included).
    pub name: String,
    /// Index into [`Object::maps`] of the section's [`MapKind::GlobalData`] map.
    pub map: usize,
    /// Byte offset of the variable in the map's value (`st_value`).
    pub offset: u32,
    /// Size in bytes (`st_size`).
    pub size: u32,
}

/// Where a map definition came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// A `struct bpf_map_def` in the legacy `maps` section.
    Legacy,
    /// A BTF-defined map in `.maps`.
    Btf,
    /// A global-data section (`.data*`, `.rodata*`, `.bss*`) as a
    /// single-entry array map whose value is the section.
    GlobalData(DataKind),
}

/// Which kind of global-data section a [`MapKind::GlobalData`] map holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// `.data*`: initialised, writable.
    Data,
    /// `.rodata*`: initialised, read-only for programs (`BPF_F_RDONLY_PROG`).
    Rodata,
    /// `.bss*`: zero-initialised, writable.
    Bss,
}

/// A map the object declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// The map's symbol name, or the section name for global data.
    pub name: String,
    /// Where the definition came from.
    pub kind: MapKind,
    /// The ELF section of the definition.
    pub section: String,
    /// `enum bpf_map_type` value.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: u32,
    /// Initial value for global-data maps (zeros for `.bss`), `None` otherwise.
    pub initial_data: Option<Vec<u8>>,
}

/// Map type numbers (`enum bpf_map_type`) that this crate produces or tests use.
pub mod map_type {
    /// `BPF_MAP_TYPE_HASH`.
    pub const HASH: u32 = 1;
    /// `BPF_MAP_TYPE_ARRAY`.
    pub const ARRAY: u32 = 2;
    /// `BPF_MAP_TYPE_PROG_ARRAY`.
    pub const PROG_ARRAY: u32 = 3;
    /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    pub const PERF_EVENT_ARRAY: u32 = 4;
    /// `BPF_MAP_TYPE_PERCPU_HASH`.
    pub const PERCPU_HASH: u32 = 5;
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    pub const PERCPU_ARRAY: u32 = 6;
    /// `BPF_MAP_TYPE_LRU_HASH`.
    pub const LRU_HASH: u32 = 9;
    /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`.
    pub const ARRAY_OF_MAPS: u32 = 12;
    /// `BPF_MAP_TYPE_HASH_OF_MAPS`.
    pub const HASH_OF_MAPS: u32 = 13;
    /// `BPF_MAP_TYPE_RINGBUF`.
    pub const RINGBUF: u32 = 27;
}

/// Map flag values this crate sets.
pub mod map_flags {
    /// `BPF_F_NO_PREALLOC`.
    pub const NO_PREALLOC: u32 = 1;
    /// `BPF_F_RDONLY_PROG`: programs may only read (set on `.rodata` maps).
    pub const RDONLY_PROG: u32 = 1 << 7;
}

/// What a section was taken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// Executable code holding programs.
    Programs,
    /// `.text`: subprograms only.
    Text,
    /// The legacy `maps` section.
    LegacyMaps,
    /// `.maps`: BTF-defined maps.
    BtfMaps,
    /// A global-data section (one map).
    Data(DataKind),
    /// `license`.
    License,
    /// `version`.
    Version,
    /// `.BTF`.
    Btf,
    /// `.BTF.ext`.
    BtfExt,
    /// A relocation section (`SHT_REL`).
    Relocations,
    /// Anything else (debug info, string and symbol tables, ...).
    Other,
}

/// One ELF section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// ELF section index.
    pub index: usize,
    /// Section name.
    pub name: String,
    /// Size in bytes (`sh_size`).
    pub size: u64,
    /// What this crate took the section for.
    pub kind: SectionKind,
}
