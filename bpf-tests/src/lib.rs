//! Cross-crate integration and conformance tests, and the shared reader of
//! bpf_conformance `.data` files.

use std::path::{Path, PathBuf};

pub mod benchprogs;
pub mod kernel;

/// One bpf_conformance test case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConformanceCase {
    /// The `-- asm` section (uBPF-style assembly).
    pub asm: String,
    /// The `-- mem` bytes.
    pub mem: Vec<u8>,
    /// The expected `r0` (`-- result`), if given.
    pub result: Option<u64>,
    /// The expected error text (`-- error`), if given.
    pub error: Option<String>,
}

/// Parses a `.data` file's text.
pub fn parse_case(text: &str) -> Result<ConformanceCase, String> {
    let mut case = ConformanceCase::default();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- ") {
            section = name.trim().to_string();
            continue;
        }
        if line.starts_with('#') && section.is_empty() {
            continue;
        }
        match section.as_str() {
            "asm" => {
                case.asm.push_str(line);
                case.asm.push('\n');
            }
            "mem" => {
                for tok in line.split_whitespace() {
                    let b = u8::from_str_radix(tok, 16)
                        .map_err(|e| format!("bad mem byte {tok:?}: {e}"))?;
                    case.mem.push(b);
                }
            }
            "result" => {
                let t = line.trim();
                if !t.is_empty() {
                    let t = t.trim_start_matches("0x");
                    case.result = Some(
                        u64::from_str_radix(t, 16).map_err(|e| format!("bad result {t:?}: {e}"))?,
                    );
                }
            }
            "error" => {
                let t = line.trim();
                if !t.is_empty() {
                    case.error = Some(t.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(case)
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
