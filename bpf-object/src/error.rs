//! Typed errors of object parsing.

use thiserror::Error;

/// Why BTF (the `.BTF` section) could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BtfError {
    /// The header is short, has the wrong magic, or points outside the section.
    #[error("bad BTF header: {0}")]
    BadHeader(&'static str),
    /// A type record runs past the end of the type area.
    #[error("BTF type {id} is truncated")]
    TruncatedType {
        /// Id the truncated type would have had.
        id: u32,
    },
    /// A type record has a kind this reader does not know.
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind {
        /// Type id.
        id: u32,
        /// The kind field.
        kind: u32,
    },
    /// A reference to a type id that does not exist.
    #[error("BTF type id {0} does not exist")]
    BadTypeId(u32),
    /// A string offset outside the string area, or a string that is not NUL-terminated UTF-8.
    #[error("bad BTF string at offset {0}")]
    BadString(u32),
    /// A chain of type references that is too long (or a cycle).
    #[error("BTF type {0}: reference chain too long (cycle?)")]
    TooDeep(u32),
    /// A type whose size does not fit in 32 bits.
    #[error("BTF type {0}: size overflows")]
    SizeOverflow(u32),
    /// A type whose size cannot be taken (void, function, forward declaration).
    #[error("BTF type {0} has no size")]
    NoSize(u32),
}

/// Why a BTF-defined map in `.maps` could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BtfMapError {
    /// The `.maps` section has no DATASEC in BTF.
    #[error("no BTF DATASEC for .maps")]
    NoDatasec,
    /// A `.maps` variable is not (a typedef/qualifier of) a struct.
    #[error("map definition is not a struct")]
    NotStruct,
    /// A `__uint` field is not a pointer to an array.
    #[error("field `{0}` is not __uint(...) (pointer to array)")]
    NotUint(String),
    /// A `__type` field is not a pointer.
    #[error("field `{0}` is not __type(...) (pointer)")]
    NotType(String),
    /// `key`/`key_size` (or `value`/`value_size`) disagree.
    #[error("`{field}` size {typed} disagrees with `{field}_size` {explicit}")]
    SizeMismatch {
        /// `key` or `value`.
        field: &'static str,
        /// Size from `__type`.
        typed: u32,
        /// Size from `__uint(..._size, ...)`.
        explicit: u32,
    },
    /// The `type` field is missing.
    #[error("map type missing")]
    MissingType,
    /// No ELF symbol in `.maps` has the variable's name.
    #[error("no symbol for the map in .maps")]
    NoSymbol,
    /// A BTF error while resolving the definition.
    #[error(transparent)]
    Btf(#[from] BtfError),
}

/// Every way [`crate::Object::parse`] can fail.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ObjectError {
    /// The ELF container could not be read (message from the `object` crate).
    #[error("ELF: {0}")]
    Elf(String),
    /// Not a 64-bit little-endian relocatable ELF file.
    #[error("unsupported ELF file: {0}")]
    Unsupported(&'static str),
    /// The ELF machine is not BPF (247).
    #[error("ELF machine {0} is not BPF (247)")]
    WrongMachine(u16),
    /// A section's name or contents could not be read.
    #[error("section {index}: {reason}")]
    BadSection {
        /// Section index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// An executable section whose size is not a multiple of 8.
    #[error("section `{section}`: size {size} is not a multiple of 8")]
    BadCodeSize {
        /// Section name.
        section: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A function symbol that is misaligned or reaches past its section.
    #[error("symbol `{symbol}` in `{section}`: offset {offset} size {size} outside the section or misaligned")]
    BadFunctionSymbol {
        /// Symbol name.
        symbol: String,
        /// Section name.
        section: String,
        /// Symbol value (byte offset).
        offset: u64,
        /// Symbol size in bytes.
        size: u64,
    },
    /// A symbol could not be read, or a relocation names a symbol index that does not exist.
    #[error("symbol {index}: {reason}")]
    BadSymbol {
        /// Symbol index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A relocation whose offset is not at an instruction of its section.
    #[error(
        "section `{section}`: relocation at byte offset {offset} is outside the code or misaligned"
    )]
    RelocationOutOfRange {
        /// Section name.
        section: String,
        /// The relocation's byte offset.
        offset: u64,
    },
    /// A relocation of a type or on an instruction this loader does not handle.
    #[error("section `{section}` insn {insn}: unsupported relocation type {r_type} on opcode {code:#04x}")]
    UnsupportedRelocation {
        /// Section name.
        section: String,
        /// Slot index in the section.
        insn: usize,
        /// ELF relocation type.
        r_type: u32,
        /// Opcode byte of the instruction.
        code: u8,
    },
    /// A relocation against a symbol that is neither code, a map, nor global data.
    #[error("program `{program}` insn {insn}: relocation against `{symbol}` which is not code, a map or global data")]
    BadRelocationTarget {
        /// Program name.
        program: String,
        /// Slot index in the linked program.
        insn: usize,
        /// Symbol name.
        symbol: String,
    },
    /// A call or function reference whose target is not inside a function.
    #[error("program `{program}` insn {insn}: call target {target} in `{section}` is not inside a function")]
    BadCallTarget {
        /// Program name.
        program: String,
        /// Slot index in the linked program.
        insn: usize,
        /// Section of the target.
        section: String,
        /// Target slot within that section.
        target: i64,
    },
    /// A global-data reference whose offset is outside its section.
    #[error("program `{program}` insn {insn}: offset {offset} outside `{map}` ({size} bytes)")]
    DataOffsetOutOfRange {
        /// Program name.
        program: String,
        /// Slot index in the linked program.
        insn: usize,
        /// The data map's name.
        map: String,
        /// The offset (symbol value + addend).
        offset: i64,
        /// Size of the data section.
        size: u64,
    },
    /// A linked program grew past what 32-bit call offsets can express.
    #[error("program `{program}` is too large to link")]
    TooLarge {
        /// Program name.
        program: String,
    },
    /// An instruction could not be decoded, or a jump leaves the linked program.
    #[error("program `{program}`: {error}")]
    Decode {
        /// Program name.
        program: String,
        /// The instruction error (its `index` is a slot in the linked program).
        error: bpf_isa::Error,
    },
    /// The legacy `maps` section does not divide into one definition per symbol.
    #[error("legacy `maps` section of {size} bytes does not hold {count} map definitions")]
    BadLegacyMaps {
        /// Section size.
        size: u64,
        /// Number of map symbols.
        count: usize,
    },
    /// A `.maps` section exists but there is no `.BTF`.
    #[error("`.maps` needs BTF but the object has no .BTF section")]
    MissingBtf,
    /// The `.BTF` section is malformed.
    #[error("BTF: {0}")]
    Btf(#[from] BtfError),
    /// A BTF-defined map could not be understood.
    #[error("map `{map}`: {error}")]
    BtfMap {
        /// The map (variable) name.
        map: String,
        /// What is wrong.
        error: BtfMapError,
    },
    /// The `version` section is not 4 bytes.
    #[error("`version` section has {0} bytes, expected 4")]
    BadVersion(u64),
}

impl From<object::read::Error> for ObjectError {
    fn from(e: object::read::Error) -> Self {
        ObjectError::Elf(e.to_string())
    }
}
