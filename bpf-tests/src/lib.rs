//! Cross-crate integration and conformance tests, and the shared reader of
//! bpf_conformance `.data` files.

use std::path::{Path, PathBuf};

pub mod benchprogs;
pub mod kernel;

pub use bpf_isa::asm::conformance::ConformanceCase;

/// Parses a `.data` file's text: [`bpf_isa::asm::conformance::parse_case`]
/// with the error as text.
pub fn parse_case(text: &str) -> Result<ConformanceCase, String> {
    bpf_isa::asm::conformance::parse_case(text).map_err(|e| e.to_string())
}

/// The bpf_conformance data directory (`../shared/conformance` beside the workspace).
pub fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// Every `.data` file in `dir`, sorted.
pub fn data_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections() {
        let c = parse_case("# c\n-- asm\nmov %r0, 1\nexit\n-- mem\n00 ff\n-- result\n0x2a\n")
            .expect("parse");
        assert_eq!(c.asm, "mov %r0, 1\nexit\n");
        assert_eq!(c.mem, vec![0, 0xff]);
        assert_eq!(c.result, Some(42));
        assert_eq!(c.error, None);
    }
}
