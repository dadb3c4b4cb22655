//! `bpfkit info OBJ`: what an ELF object holds — programs, maps, relocations, license.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bpf_object::{MapKind, Object, RelocKind};

use crate::files;

/// Arguments of `bpfkit info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ELF object (`.o`) as clang emits it.
    pub obj: PathBuf,
}

/// Runs `bpfkit info`.
pub fn run(args: &Args) -> Result<()> {
    let bytes = files::read(&args.obj)?;
    if !files::is_elf(&bytes) {
        bail!("{}: not an ELF file", args.obj.display());
    }
    let obj = Object::parse(&bytes)
        .with_context(|| format!("{}: not a usable BPF object", args.obj.display()))?;
    files::write_stdout(&render(&obj))
}

/// The report, as text.
fn render(obj: &Object) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "license: {}", obj.license.as_deref().unwrap_or("(none)"));
    if let Some(v) = obj.kernel_version {
        let _ = writeln!(s, "kernel version: {v:#x}");
    }

    let _ = writeln!(s, "\nprograms ({}):", obj.programs.len());
    let nw = obj
        .programs
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let sw = obj
        .programs
        .iter()
        .map(|p| p.section.len())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        s,
        "  {:<nw$} {:<sw$} {:<22} {:>6}",
        "name", "section", "type", "insns"
    );
    for p in &obj.programs {
        let ty = match p.prog_type.kernel_id() {
            Some(id) => format!("{:?} ({id})", p.prog_type),
            None => format!("{:?}", p.prog_type),
        };
        let _ = writeln!(
            s,
            "  {:<nw$} {:<sw$} {:<22} {:>6}",
            p.name,
            p.section,
            ty,
            p.insns.slot_len()
        );
        for f in p.functions.iter().skip(1) {
            let _ = writeln!(
                s,
                "    + subprogram {} (section {}) at slot {}, {} insns",
                f.name, f.section, f.start, f.len
            );
        }
    }

    let _ = writeln!(s, "\nmaps ({}):", obj.maps.len());
    let mw = obj
        .maps
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let _ = writeln!(
        s,
        "  {:>3} {:<mw$} {:<6} {:<22} {:>5} {:>6} {:>11} {:>8}",
        "#", "name", "kind", "type", "key", "value", "max_entries", "flags"
    );
    for (i, m) in obj.maps.iter().enumerate() {
        let kind = match m.kind {
            MapKind::Legacy => "legacy",
            MapKind::Btf => "btf",
            MapKind::GlobalData(_) => "data",
        };
        let ty = match map_type_name(m.map_type) {
            Some(n) => format!("{n} ({})", m.map_type),
            None => m.map_type.to_string(),
        };
        let _ = writeln!(
            s,
            "  {:>3} {:<mw$} {:<6} {:<22} {:>5} {:>6} {:>11} {:>#8x}",
            i, m.name, kind, ty, m.key_size, m.value_size, m.max_entries, m.flags
        );
    }

    let count: usize = obj.programs.iter().map(|p| p.relocations.len()).sum();
    let _ = writeln!(s, "\nrelocations ({count}):");
    for p in &obj.programs {
        for r in &p.relocations {
            let what = match r.kind {
                RelocKind::Call { target } => format!("call -> slot {target}"),
                RelocKind::FuncAddr { target } => format!("function address -> slot {target}"),
                RelocKind::Map { map } => format!("map #{map}"),
                RelocKind::MapValue { map, offset } => format!("map #{map} value + {offset}"),
                RelocKind::Extern => "extern".to_string(),
            };
            let _ = writeln!(s, "  {} insn {}: {} ({})", p.name, r.insn, r.symbol, what);
        }
    }
    s
}

/// The kernel's name for an `enum bpf_map_type` value (lower case, without `BPF_MAP_TYPE_`).
fn map_type_name(t: u32) -> Option<&'static str> {
    const NAMES: [&str; 34] = [
        "unspec",
        "hash",
        "array",
        "prog_array",
        "perf_event_array",
        "percpu_hash",
        "percpu_array",
        "stack_trace",
        "cgroup_array",
        "lru_hash",
        "lru_percpu_hash",
        "lpm_trie",
        "array_of_maps",
        "hash_of_maps",
        "devmap",
        "sockmap",
        "cpumap",
        "xskmap",
        "sockhash",
        "cgroup_storage",
        "reuseport_sockarray",
        "percpu_cgroup_storage",
        "queue",
        "stack",
        "sk_storage",
        "devmap_hash",
        "struct_ops",
        "ringbuf",
        "inode_storage",
        "task_storage",
        "bloom_filter",
        "user_ringbuf",
        "cgrp_storage",
        "arena",
    ];
    NAMES.get(usize::try_from(t).ok()?).copied()
}
