//! `bpfkit dump jited FILE [--prog NAME] [--arch x86|arm64]`: the machine
//! code our JIT makes of each selected program, interleaved with the eBPF
//! instructions it came from.
//!
//! Layout of the listing, per program:
//!
//! ```text
//! <name> (section <section>): x86-64, <bytes> bytes, <n> function(s)
//! <function>:
//!   ; prologue
//!     0000:  0f 1f 44 00 00               nop dword ptr [rax+rax]
//!   <slot>: <eBPF instruction>
//!     0012:  31 c0                        xor eax,eax
//! ```
//!
//! Every native instruction is listed under the eBPF instruction whose
//! code it belongs to (`CompiledCode::insn_offsets`); the code between a
//! subprogram's entry and its first instruction is its prologue. Code
//! after the last instruction belongs to none and gets its own heading:
//! `; out-of-line: ld_abs/ld_ind failure exit`, `; out-of-line: division
//! checks` (x86-64's cold paths of divisions by a register), `; padding`
//! and `; callx helper table`, whose 8-byte entries are listed as
//! `.quad` data rather than decoded.
//!
//! The code is compiled but never mapped, so addresses that only exist at
//! load time are placeholders: helper `id` is called at
//! [`HELPER_BASE`]` + id`, and the `ld_imm64` of map `idx` (value at `off`)
//! loads [`MAP_BASE`]` + (idx << 32) + off` (the eBPF line above says which
//! helper or map it is); `ld_abs`/`ld_ind` call [`LD_ABS_ADDR`]. Frames
//! use the JIT's default stack depth. `--blind` (random key) or
//! `--blind-seed SEED` compiles with constant blinding.
//!
//! Tail calls through a constant array and index are compiled as the
//! runtime compiles them, as patchable direct sites; each patchable part
//! is announced by a comment line before the native line holding it:
//! `; patch site: bypass (slot S, index I)`, `; patch site: target …`
//! (and, on x86-64, the far-target `literal`, 8 data bytes the decoder
//! shows as instructions, and its `stub`).
//!
//! x86-64 is decoded in-process with `iced-x86` (Intel syntax). AArch64 is
//! decoded by LLVM: the image is wrapped in an ELF file with `llvm-objcopy`
//! and listed with `llvm-objdump --triple=aarch64 -D -z -j .data`; there is no built-in
//! AArch64 decoder, so without those tools `--arch arm64` fails with a message
//! saying so.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use bpf_isa::{fmt_insn, DisasmOptions, LdImm64Src, Program};
use bpf_jit::{CompiledCode, HelperTable, JitOptions};

use super::Args;
use crate::files;

/// Placeholder address of helper 0 in the listing (helper `id` is at `+ id`).
pub const HELPER_BASE: u64 = 0x0000_7fff_0000_0000;
/// Placeholder address of map 0 in the listing (map `idx` is at `+ (idx << 32)`).
pub const MAP_BASE: u64 = 0x0000_5a00_0000_0000;
/// Placeholder address of the `ld_abs`/`ld_ind` packet-load routine.
pub const LD_ABS_ADDR: u64 = 0x0000_7ffe_0000_0000;
/// Helper ids given a placeholder address (every id the kernel defines fits).
const HELPER_IDS: i32 = 1024;

/// Target architecture of `dump jited`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (bpf-jit-x86), decoded with iced-x86.
    X86,
    /// AArch64 (bpf-jit-arm64), decoded with llvm-objdump.
    Arm64,
}

impl Arch {
    fn title(self) -> &'static str {
        match self {
            Arch::X86 => "x86-64",
            Arch::Arm64 => "aarch64",
        }
    }
}

/// One decoded native instruction.
struct NativeLine {
    off: u32,
    len: u32,
    text: String,
}

/// Runs `bpfkit dump jited`.
pub fn run(args: &Args) -> Result<()> {
    let arch = args.arch.unwrap_or(Arch::X86);
    let bytes = files::read(&args.file)?;
    let dis = DisasmOptions { hex: args.hex };
    let blind = args
        .blind_seed
        .or(args.blind.then(bpf_jit::random_blinding_seed));
    let mut out = String::new();
    if files::is_elf(&bytes) {
        let obj = super::parse_object(args, &bytes)?;
        let selected = super::select_programs(args, &obj)?;
        for (n, p) in selected.iter().enumerate() {
            if n > 0 {
                out.push('\n');
            }
            let names: Vec<(usize, &str)> = p
                .functions
                .iter()
                .map(|f| (f.start, f.name.as_str()))
                .collect();
            let head = format!("{} (section {})", p.name, p.section);
            dump_one(&mut out, &head, &p.insns, &names, arch, &dis, blind)
                .with_context(|| format!("{}: program `{}`", args.file.display(), p.name))?;
        }
    } else {
        let prog = super::decode_raw(args, &bytes)?;
        let head = args.file.display().to_string();
        dump_one(&mut out, &head, &prog, &[], arch, &dis, blind)?;
    }
    files::write_stdout(&out)
}

/// The placeholder value of an `ld_imm64` pseudo source.
fn placeholder(src: LdImm64Src) -> Option<u64> {
    let map = |idx: i32, off: u32| {
        MAP_BASE
            .wrapping_add(u64::from(idx as u32) << 32)
            .wrapping_add(u64::from(off))
    };
    match src {
        LdImm64Src::Imm(v) => Some(v),
        LdImm64Src::MapIdx(i) | LdImm64Src::MapFd(i) => Some(map(i, 0)),
        LdImm64Src::MapIdxValue { idx, off } => Some(map(idx, off)),
        LdImm64Src::MapValue { fd, off } => Some(map(fd, off)),
        LdImm64Src::BtfId(_) | LdImm64Src::Func(_) => None,
    }
}

/// Compiles `prog` for `arch` with placeholder addresses.
fn compile(prog: &Program, arch: Arch, blind: Option<u64>) -> Result<CompiledCode> {
    let mut helpers = HelperTable::new();
    for id in 0..HELPER_IDS {
        helpers.insert_address(id, HELPER_BASE + id as u64);
    }
    let resolve = |_slot: usize, src: LdImm64Src| placeholder(src);
    let mut opts = JitOptions::new(&helpers)
        .with_ld_imm64(&resolve)
        .with_direct_tail_calls(true)
        .with_ld_abs_address(LD_ABS_ADDR);
    opts.blind_constants = blind;
    let code = match arch {
        Arch::X86 => bpf_jit_x86::compile_code(prog, &opts),
        Arch::Arm64 => bpf_jit_arm64::compile_code(prog, &opts),
    };
    code.map_err(|e| anyhow!("{} JIT: {e}", arch.title()))
}

/// Compiles, decodes and lists one program under the header `head`.
/// `names` gives function names by slot.
fn dump_one(
    out: &mut String,
    head: &str,
    prog: &Program,
    names: &[(usize, &str)],
    arch: Arch,
    dis: &DisasmOptions,
    blind: Option<u64>,
) -> Result<()> {
    let code = compile(prog, arch, blind)?;
    // The helper table is data: decoded as such, not as instructions.
    let text_end = code
        .helper_table
        .map_or(code.code.len(), |t| (t as usize).min(code.code.len()));
    let text = code.code.get(..text_end).unwrap_or(&code.code);
    let mut native = match arch {
        Arch::X86 => decode_x86(text),
        Arch::Arm64 => decode_arm64(text)?,
    };
    let mut off = text_end;
    while let Some(entry) = code.code.get(off..off + 8) {
        let mut v = [0u8; 8];
        v.copy_from_slice(entry);
        native.push(NativeLine {
            off: off as u32,
            len: 8,
            text: format!(".quad {:#x}", u64::from_le_bytes(v)),
        });
        off += 8;
    }
    let _ = writeln!(
        out,
        "{head}: {}, {} bytes, {} function{}",
        arch.title(),
        code.code.len(),
        code.entries.len(),
        if code.entries.len() == 1 { "" } else { "s" }
    );
    interleave(out, prog, &code, names, &native, dis, arch);
    Ok(())
}

/// One heading of the listing, at a byte offset of the image.
enum Event {
    /// Subprogram `k`'s entry (its prologue follows).
    Entry(usize),
    /// eBPF instruction at position `pos`.
    Insn(usize),
    /// Code or data after the last instruction: its heading.
    Tail(&'static str),
}

/// Headings of what follows the last instruction's code, by offset: the
/// `ld_abs` failure exit, the backend's deferred code, padding and the
/// `callx` helper table (only the parts that have bytes).
fn tail_events(code: &CompiledCode, arch: Arch) -> Vec<(u32, Event)> {
    let len = code.code.len() as u32;
    let table = code.helper_table.unwrap_or(len).min(len);
    let mut v = Vec::new();
    if code.insns_end < code.deferred {
        v.push((
            code.insns_end,
            Event::Tail("out-of-line: ld_abs/ld_ind failure exit"),
        ));
    }
    if code.deferred < table {
        // Up to the table, the image may end in alignment padding.
        let pad = match arch {
            Arch::X86 => 0xcc,
            Arch::Arm64 => 0,
        };
        let rest = code
            .code
            .get(code.deferred as usize..table as usize)
            .unwrap_or(&[]);
        let body = rest.iter().rposition(|&b| b != pad).map_or(0, |i| i + 1);
        if body > 0 {
            let what = match arch {
                Arch::X86 => "out-of-line: division checks",
                Arch::Arm64 => "out-of-line: deferred code",
            };
            v.push((code.deferred, Event::Tail(what)));
        }
        if body < rest.len() {
            v.push((code.deferred + body as u32, Event::Tail("padding")));
        }
    }
    if table < len {
        v.push((table, Event::Tail("callx helper table")));
    }
    v
}

fn interleave(
    out: &mut String,
    prog: &Program,
    code: &CompiledCode,
    names: &[(usize, &str)],
    native: &[NativeLine],
    dis: &DisasmOptions,
    arch: Arch,
) {
    let mut events: Vec<(u32, Event)> = Vec::with_capacity(prog.len() + code.entries.len() + 4);
    let mut k = 0;
    for pos in 0..prog.len() {
        if code.subprog_starts.get(k) == Some(&pos) {
            events.push((code.entries.get(k).copied().unwrap_or(0), Event::Entry(k)));
            k += 1;
        }
        events.push((
            code.insn_offsets.get(pos).copied().unwrap_or(0),
            Event::Insn(pos),
        ));
    }
    events.extend(tail_events(code, arch));
    // Patchable parts of direct tail-call sites, ascending by offset.
    let mut marks: Vec<(u32, &'static str, usize, u32)> = code
        .direct_tail_calls
        .iter()
        .flat_map(|d| {
            d.layout
                .parts()
                .into_iter()
                .map(move |(off, kind)| (off, kind.name(), d.slot, d.index))
        })
        .collect();
    marks.sort_unstable_by_key(|m| m.0);
    let mut marks = marks.into_iter().peekable();
    let mut ev = events.iter().peekable();
    let heading = |out: &mut String, e: &Event| match *e {
        Event::Entry(k) => {
            let slot = code
                .subprog_starts
                .get(k)
                .and_then(|&p| prog.starts().get(p))
                .map(|&s| s as usize);
            let name = slot.and_then(|s| names.iter().find(|n| n.0 == s).map(|n| n.1));
            match (name, slot) {
                (Some(n), _) => {
                    let _ = writeln!(out, "{n}:");
                }
                (None, Some(s)) if k > 0 => {
                    let _ = writeln!(out, "subprogram at slot {s}:");
                }
                _ => {}
            }
            let _ = writeln!(out, "  ; prologue");
        }
        Event::Insn(pos) => {
            let slot = prog.starts().get(pos).copied().unwrap_or(0);
            if let Some(insn) = prog.insns().get(pos) {
                let _ = writeln!(out, "  {slot}: {}", fmt_insn(insn, dis));
            }
        }
        Event::Tail(what) => {
            let _ = writeln!(out, "  ; {what}");
        }
    };
    for line in native {
        while let Some((_, e)) = ev.next_if(|(off, _)| *off <= line.off) {
            heading(out, e);
        }
        while let Some((_, kind, slot, index)) = marks.next_if(|m| m.0 < line.off + line.len) {
            let _ = writeln!(out, "    ; patch site: {kind} (slot {slot}, index {index})");
        }
        let bytes = code
            .code
            .get(line.off as usize..(line.off + line.len) as usize)
            .unwrap_or(&[]);
        let mut hex = String::with_capacity(3 * bytes.len());
        for b in bytes {
            let _ = write!(hex, "{b:02x} ");
        }
        let _ = writeln!(
            out,
            "    {:04x}:  {:<30} {}",
            line.off,
            hex.trim_end(),
            line.text
        );
    }
    for (_, e) in ev {
        heading(out, e);
    }
}

/// Decodes x86-64 code with iced-x86 (Intel syntax).
fn decode_x86(code: &[u8]) -> Vec<NativeLine> {
    use iced_x86::{Decoder, DecoderOptions, Formatter as _, Instruction, IntelFormatter};
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    fmt.options_mut().set_hex_prefix("0x");
    fmt.options_mut().set_hex_suffix("");
    fmt.options_mut().set_uppercase_hex(false);
    fmt.options_mut().set_space_after_operand_separator(true);
    let mut insn = Instruction::default();
    let mut v = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        let mut text = String::new();
        if insn.is_invalid() {
            text.push_str("(bad)");
        } else {
            fmt.format(&insn, &mut text);
        }
        v.push(NativeLine {
            off: insn.ip() as u32,
            len: insn.len() as u32,
            text,
        });
    }
    v
}

/// The first of `names` that runs (`--version` succeeds).
fn find_tool(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|n| {
            Command::new(n)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|n| (*n).to_string())
}

/// Decodes AArch64 code with LLVM: `llvm-objcopy -I binary` wraps it in an
/// ELF file (section `.data`), `llvm-objdump --triple=aarch64 -D -z -j .data`
/// lists it (`-z`: zero words too).
fn decode_arm64(code: &[u8]) -> Result<Vec<NativeLine>> {
    let objcopy = find_tool(&["llvm-objcopy", "llvm-objcopy-19", "llvm-objcopy-14"]);
    let objdump = find_tool(&["llvm-objdump", "llvm-objdump-19", "llvm-objdump-14"]);
    let (Some(objcopy), Some(objdump)) = (objcopy, objdump) else {
        bail!(
            "--arch arm64 needs llvm-objcopy and llvm-objdump on PATH to decode AArch64 \
             (bpfkit has no built-in AArch64 decoder)"
        );
    };
    let dir = std::env::temp_dir().join(format!("bpfkit-dump-jited-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let res = (|| {
        let bin = dir.join("code.bin");
        let elf = dir.join("code.o");
        std::fs::write(&bin, code).with_context(|| format!("writing {}", bin.display()))?;
        let st = Command::new(&objcopy)
            .args(["-I", "binary", "-O", "elf64-littleaarch64"])
            .arg(&bin)
            .arg(&elf)
            .output()
            .with_context(|| format!("running {objcopy}"))?;
        if !st.status.success() {
            bail!("{objcopy} failed: {}", String::from_utf8_lossy(&st.stderr));
        }
        let o = Command::new(&objdump)
            .args([
                "--triple=aarch64",
                "-D",
                "-z",
                "-j",
                ".data",
                "--no-show-raw-insn",
            ])
            .arg(&elf)
            .output()
            .with_context(|| format!("running {objdump}"))?;
        if !o.status.success() {
            bail!("{objdump} failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(parse_objdump(&String::from_utf8_lossy(&o.stdout)))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let lines = res?;
    if lines.len() * 4 != code.len() {
        bail!(
            "llvm-objdump listed {} instructions for {} bytes of AArch64 code",
            lines.len(),
            code.len()
        );
    }
    Ok(lines)
}

/// Parses `llvm-objdump -D --no-show-raw-insn` lines `  <hex offset>: <text>`.
fn parse_objdump(text: &str) -> Vec<NativeLine> {
    let mut v = Vec::new();
    for line in text.lines() {
        let Some((addr, rest)) = line.split_once(':') else {
            continue;
        };
        let addr = addr.trim();
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(off) = u32::from_str_radix(addr, 16) else {
            continue;
        };
        let text = rest.trim().replace('\t', " ");
        v.push(NativeLine { off, len: 4, text });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objdump_lines() {
        let text = "\ncode.o:\tfile format elf64-littleaarch64\n\nDisassembly of section .data:\n\n\
                    0000000000000000 <_binary_code_bin_start>:\n       0: \tnop\n       4: \tmov\tx0, #0x2a\n";
        let v = parse_objdump(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].off, 4);
        assert_eq!(v[1].text, "mov x0, #0x2a");
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            placeholder(LdImm64Src::MapIdxValue { idx: 2, off: 8 }),
            Some(MAP_BASE + (2 << 32) + 8)
        );
        assert_eq!(placeholder(LdImm64Src::BtfId(1)), None);
    }
}
