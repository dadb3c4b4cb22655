//! `cargo xtask build-examples`: compile every `examples/*.c` to a BPF object.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{files_with_ext, run};

/// Compiles `examples/*.c` with `clang-19 -O2 -g -target bpf -c X.c -o X.o`, run
/// inside `examples/` with relative names (the DWARF records them), each
/// object next to its source.
pub fn build_examples(root: &Path) -> Result<()> {
    let dir = root.join("examples");
    let sources = files_with_ext(&dir, "c")?;
    if sources.is_empty() {
        bail!("no C sources in {}", dir.display());
    }
    for src in &sources {
        let (Some(c), Some(o)) = (
            src.file_name(),
            src.with_extension("o").file_name().map(ToOwned::to_owned),
        ) else {
            bail!("{}: not a file name", src.display());
        };
        run(Command::new("clang-19")
            .current_dir(&dir)
            .args(["-O2", "-g", "-target", "bpf", "-c"])
            .arg(c)
            .arg("-o")
            .arg(o))?;
    }
    eprintln!("built {} objects in {}", sources.len(), dir.display());
    Ok(())
}
