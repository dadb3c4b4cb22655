//! Reader of the bpf_conformance suite's `.data` files.
//!
//! A file is a sequence of sections, each opened by a line `-- NAME`:
//!
//! * `-- asm`: the program, in the uBPF syntax [`assemble_ubpf`](super::assemble_ubpf) reads;
//! * `-- mem` (optional): the input memory, as whitespace-separated hex bytes;
//! * `-- result`: the expected `r0`, in hexadecimal (`0x` prefix optional);
//! * `-- error` (optional): the error text expected instead of a result.
//!
//! `#` comment lines before the first section are ignored, as are unknown
//! sections.
//!
//! ```
//! use bpf_isa::asm::conformance::parse_case;
//!
//! let case = parse_case("-- asm\nmov %r0, 1\nexit\n-- mem\n00 ff\n-- result\n0x2a\n")?;
//! assert_eq!(case.asm, "mov %r0, 1\nexit\n");
//! assert_eq!(case.mem, [0x00, 0xff]);
//! assert_eq!(case.result, Some(0x2a));
//! assert_eq!(case.error, None);
//! # Ok::<(), bpf_isa::asm::conformance::CaseError>(())
//! ```

use thiserror::Error;

/// One bpf_conformance test case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConformanceCase {
    /// The `-- asm` section (uBPF-style assembly), one line per line.
    pub asm: String,
    /// The `-- mem` bytes (empty when the section is absent).
    pub mem: Vec<u8>,
    /// The expected `r0` (`-- result`), if given.
    pub result: Option<u64>,
    /// The expected error text (`-- error`), if given.
    pub error: Option<String>,
}

/// Why a `.data` file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct CaseError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What was wrong.
    pub kind: CaseErrorKind,
}

/// What was wrong with a `.data` file line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CaseErrorKind {
    /// A `-- mem` token that is not a hex byte.
    #[error("bad mem byte {0:?}")]
    BadMemByte(String),
    /// A `-- result` line that is not a 64-bit hex number.
    #[error("bad result {0:?}")]
    BadResult(String),
}

/// Parses a `.data` file's text (see the module docs for the format).
pub fn parse_case(text: &str) -> Result<ConformanceCase, CaseError> {
    let mut case = ConformanceCase::default();
    let mut section = "";
    for (n, line) in text.lines().enumerate() {
        let err = |kind| CaseError { line: n + 1, kind };
        if let Some(name) = line.strip_prefix("-- ") {
            section = name.trim();
            continue;
        }
        if line.starts_with('#') && section.is_empty() {
            continue;
        }
        match section {
            "asm" => {
                case.asm.push_str(line);
                case.asm.push('\n');
            }
            "mem" => {
                for tok in line.split_whitespace() {
                    let b = u8::from_str_radix(tok, 16)
                        .map_err(|_| err(CaseErrorKind::BadMemByte(tok.to_string())))?;
                    case.mem.push(b);
                }
            }
            "result" => {
                let t = line.trim();
                if !t.is_empty() {
                    let digits = t.strip_prefix("0x").unwrap_or(t);
                    let v = u64::from_str_radix(digits, 16)
                        .map_err(|_| err(CaseErrorKind::BadResult(t.to_string())))?;
                    case.result = Some(v);
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

    #[test]
    fn reads_error_section_and_missing_result() {
        let c = parse_case("-- asm\nexit\n-- error\nbad thing\n").expect("parse");
        assert_eq!(c.result, None);
        assert_eq!(c.error.as_deref(), Some("bad thing"));
    }

    #[test]
    fn rejects_bad_bytes_with_line_numbers() {
        let e = parse_case("-- asm\nexit\n-- mem\n00 zz\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert_eq!(e.kind, CaseErrorKind::BadMemByte("zz".into()));
        let e = parse_case("-- result\n0x1g\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, CaseErrorKind::BadResult("0x1g".into()));
    }
}

/// One `.data` file of a conformance directory, parsed and assembled.
#[derive(Clone, Debug)]
pub struct DirCase {
    /// The file name without `.data`.
    pub name: String,
    /// The `-- asm` program, assembled.
    pub prog: crate::Program,
    /// The `-- mem` input.
    pub mem: Vec<u8>,
    /// The `-- result`, if the file has one.
    pub result: Option<u64>,
}

/// Reads every `*.data` file of `dir`, sorted by name, and parses and
/// assembles each: a [`DirCase`], or the text `"NAME: reason"` for a file
/// that does not read, parse or assemble. Fails only when `dir` cannot be
/// listed.
pub fn load_dir(dir: &std::path::Path) -> std::io::Result<Vec<Result<DirCase, String>>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    Ok(files
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
            let case = parse_case(&text).map_err(|e| format!("{name}: {e}"))?;
            let prog = super::assemble_ubpf(&case.asm)
                .map_err(|e| format!("{name}: does not assemble: {e}"))?;
            Ok(DirCase {
                name,
                prog,
                mem: case.mem,
                result: case.result,
            })
        })
        .collect())
}
