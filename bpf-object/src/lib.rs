#![doc = include_str!("../README.md")]

mod btf;
pub mod error;
mod parse;
pub mod progtype;
pub mod types;

pub use error::{BtfError, BtfMapError, ObjectError};
pub use progtype::{prog_type_from_section, ProgType};
pub use types::*;

impl Object {
    /// Parses an eBPF ELF object (64-bit little-endian, `EM_BPF`, relocatable)
    /// as clang emits it: programs linked with their subprograms, maps,
    /// global data, license and kernel version. Never panics; every problem
    /// is an [`ObjectError`].
    pub fn parse(bytes: &[u8]) -> Result<Object, ObjectError> {
        parse::parse(bytes)
    }
}
