//! `bpfkit run FILE [--section S | --prog NAME] [--engine interp|x86|x86-baseline|arm64] [--data F]
//! [--repeat N] [--prog-array MAP=IDX:PROG,...] [--read-global NAME] [--json] [--trace]`.
//!
//! Runs one program and prints `r0` (and, for kernel context types, the
//! kernel's `retval`: the low 32 bits, as `BPF_PROG_TEST_RUN` reports it)
//! and the mean time per run. Engines:
//!
//! * `interp` (default): the interpreter in checked mode — a bad memory
//!   access is an error, never a crash.
//! * `x86`: the x86-64 JIT through [`bpf_vm::Engine::X86`], with the same
//!   maps, helpers, program arrays and global data as the interpreter, for
//!   every context (`mem`, XDP, `struct __sk_buff`). The code runs natively
//!   and unchecked: only for programs you trust to be memory-safe. Fields of
//!   `struct __sk_buff` the runtime does not model (past `tc_classid`,
//!   besides the packet pointers) read as 0 here; the interpreter refuses
//!   them.
//! * `x86-baseline`: as `x86`, through [`bpf_vm::Engine::X86Baseline`]: the
//!   x86-64 JIT's one-pass baseline tier (`bpf_jit_x86::Baseline`, quicker
//!   to compile, slower code), which leaves what it does not handle (tail
//!   calls, function references, private stacks, ...) to the optimizing
//!   compiler.
//! * `arm64`: the AArch64 JIT through [`bpf_vm::Engine::Arm64`], run in the
//!   qemu-user harness of `bpf_jit_arm64::emu` (a separate process: a fault
//!   is an error, never a crash of `bpfkit`), with the same maps, helpers,
//!   program arrays and global data as the other engines (they live in a
//!   memory arena shared with the emulator), for every context, as `x86`.
//!   The time per run includes the round trips to the emulator.
//!   `--private-stack` works on both JIT engines, maps and helpers included.
//!
//! * An ELF object: the program is chosen with `--prog` / `--section` (or is
//!   the only one). Its maps are created empty, global data (`.data`,
//!   `.rodata`, `.bss`) is reset to its initial value before every run, and
//!   `--prog-array` fills prog-array slots with other programs of the object.
//!   The context follows the program type: XDP programs get `struct xdp_md`
//!   over the data, socket-filter / tc / cgroup-skb programs a
//!   `struct __sk_buff`, everything else `r1` = data, `r2` = its length.
//! * Anything else: a bpf_conformance `.data` file (its `-- asm` and, unless
//!   `--data` is given, its `-- mem`), assembly text (LLVM syntax, then uBPF
//!   syntax) or raw little-endian bytecode, run with `r1` = data, `r2` = length.
//!
//! Helpers: the kernel set of `bpf_vm::HelperRegistry::kernel` (conformance
//! helpers for `.data` files), plus `bpf_get_current_pid_tgid` (14) answering
//! this process's id in both halves; `--helper-ret ID=VALUE` makes helper `ID`
//! return `VALUE`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bpf_isa::{fmt_insn, DisasmOptions, Program};
use bpf_object::{MapKind, ObjProgram, Object, ProgType};
use bpf_vm::{
    Engine, HelperRegistry, Interpreter, LoadedProgram, Map, MapDef, MapType, SkbMd, Tracer, XdpMd,
};

use crate::files;

/// Arguments of `bpfkit run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// ELF object, bpf_conformance `.data` file, assembly text or raw bytecode.
    pub file: PathBuf,
    /// The program in section S (ELF objects only).
    #[arg(long, value_name = "S", conflicts_with = "prog")]
    pub section: Option<String>,
    /// The program whose entry symbol is NAME (ELF objects only).
    #[arg(long, value_name = "NAME")]
    pub prog: Option<String>,
    /// Execution engine: `interp` (checked interpreter), `x86` (x86-64 JIT,
    /// native and unchecked), `x86-baseline` (as `x86`, compiled by the
    /// JIT's one-pass baseline tier where it can), `arm64` (AArch64 JIT under
    /// qemu-user).
    #[arg(long, default_value = "interp")]
    pub engine: String,
    /// Input bytes: the packet, or the memory `r1` points to (default: none).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Number of timed runs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: u32,
    /// Fills prog array MAP: slot IDX runs program PROG (repeatable).
    #[arg(long = "prog-array", value_name = "MAP=IDX:PROG[,IDX:PROG...]")]
    pub prog_array: Vec<String>,
    /// Prints global variable NAME after the runs (repeatable).
    #[arg(long = "read-global", value_name = "NAME")]
    pub read_global: Vec<String>,
    /// Makes helper ID return VALUE (repeatable; e.g. `14=0x2a0000002a`).
    #[arg(long = "helper-ret", value_name = "ID=VALUE")]
    pub helper_ret: Vec<String>,
    /// Prints one JSON object: `r0`, `ns_per_run`, `runs`, `globals`.
    #[arg(long)]
    pub json: bool,
    /// Before the timed runs, runs once printing every executed instruction
    /// and the registers it changed.
    #[arg(long)]
    pub trace: bool,
    /// JIT engines: keep the program's eBPF frames in a private region
    /// (guard words checked after every run) instead of on the native
    /// stack. Programs with callbacks (`bpf_loop`) are refused.
    #[arg(long = "private-stack")]
    pub private_stack: bool,
}

/// How `r1` is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    Mem,
    Xdp,
    Skb,
}

/// A global variable to read after the run.
struct Global {
    name: String,
    map: Arc<Map>,
    offset: usize,
    size: usize,
}

/// Which engine `--engine` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EngineChoice {
    Interp,
    X86,
    X86Baseline,
    Arm64,
}

impl EngineChoice {
    fn parse(s: &str) -> Result<EngineChoice> {
        match s {
            "interp" | "interpreter" => Ok(EngineChoice::Interp),
            "x86" | "x86_64" | "x86-64" => Ok(EngineChoice::X86),
            "x86-baseline" | "baseline" => Ok(EngineChoice::X86Baseline),
            "arm64" | "aarch64" => Ok(EngineChoice::Arm64),
            other => bail!(
                "engine `{other}` is not available; use `interp`, `x86`, `x86-baseline` or `arm64`"
            ),
        }
    }

    /// The `bpf_vm` JIT engine it names (`None`: the interpreter).
    fn jit(self) -> Option<Engine> {
        match self {
            EngineChoice::Interp => None,
            EngineChoice::X86 => Some(Engine::X86),
            EngineChoice::X86Baseline => Some(Engine::X86Baseline),
            EngineChoice::Arm64 => Some(Engine::Arm64),
        }
    }
}

/// The loaded program, per engine.
enum Vm {
    Interp(Interpreter),
    /// A program of `bpf_vm`'s JIT engines (`x86`, `x86-baseline`, `arm64`).
    Jit(LoadedProgram),
}

/// Everything needed to run.
struct Loaded {
    vm: Vm,
    ctx: Ctx,
    data: Vec<u8>,
    /// Global-data maps and their initial values, reset before every run.
    resets: Vec<(Arc<Map>, Vec<u8>)>,
    globals: Vec<Global>,
    /// The object's maps, kept alive for the runs: a program array owns the
    /// programs in its slots and is emptied when its map is dropped.
    _maps: Vec<Arc<Map>>,
}

/// Runs `bpfkit run`.
pub fn run(args: &Args) -> Result<()> {
    let engine = EngineChoice::parse(&args.engine)?;
    if args.trace && engine != EngineChoice::Interp {
        bail!("--trace needs `--engine interp`");
    }
    if args.private_stack && engine == EngineChoice::Interp {
        bail!("--private-stack needs a JIT engine (`--engine x86`, `x86-baseline` or `arm64`)");
    }
    if matches!(engine, EngineChoice::X86 | EngineChoice::X86Baseline)
        && !cfg!(target_arch = "x86_64")
    {
        bail!(
            "engine `{}` runs native code and needs an x86-64 host",
            args.engine
        );
    }
    let bytes = files::read(&args.file)?;
    let mut data = match &args.data {
        Some(p) => Some(files::read(p)?),
        None => None,
    };
    let mut helpers = None;
    let loaded = if files::is_elf(&bytes) {
        load_object(args, engine, &bytes, data.take().unwrap_or_default())?
    } else {
        if args.section.is_some() || args.prog.is_some() || !args.prog_array.is_empty() {
            bail!("--section, --prog and --prog-array apply to ELF objects only");
        }
        if !args.read_global.is_empty() {
            bail!("--read-global applies to ELF objects only");
        }
        let (prog, mem, conformance) =
            load_flat(&bytes).with_context(|| format!("{}: not runnable", args.file.display()))?;
        if conformance {
            helpers = Some(HelperRegistry::conformance());
        }
        let vm = {
            let reg =
                with_extra_helpers(helpers.take().unwrap_or_else(HelperRegistry::kernel), args)?;
            if let Some(jit) = engine.jit() {
                let mut b = LoadedProgram::builder(&prog, jit)
                    .helpers(reg)
                    .private_stack(args.private_stack);
                let kind = bpf_verifier::ProgKind::Mem {
                    size: u32::try_from(data.as_ref().unwrap_or(&mem).len()).unwrap_or(u32::MAX),
                };
                if let Some(d) = verified_stack_depths(&prog, kind, Vec::new()) {
                    b = b.stack_depths(d);
                }
                Vm::Jit(b.build()?)
            } else {
                Vm::Interp(Interpreter::builder(&prog).helpers(reg).build()?)
            }
        };
        Loaded {
            vm,
            ctx: Ctx::Mem,
            data: data.take().unwrap_or(mem),
            resets: Vec::new(),
            globals: Vec::new(),
            _maps: Vec::new(),
        }
    };

    let mut out = String::new();
    if args.trace {
        let mut t = TraceLines::new(&mut out);
        let r = run_once(&loaded, Some(&mut t));
        t.flush();
        let r0 = r?;
        let _ = writeln!(out, "traced run: r0 = {r0:#x}");
    }
    let mut total = Duration::ZERO;
    let mut r0 = 0;
    let runs = args.repeat.max(1);
    for _ in 0..runs {
        let start = Instant::now();
        r0 = run_once(&loaded, None)?;
        total += start.elapsed();
    }
    let ns = total.as_nanos() as f64 / f64::from(runs);
    let globals = read_globals(&loaded.globals)?;
    if args.json {
        let mut g = serde_json::Map::new();
        for (name, v) in &globals {
            g.insert(name.clone(), v.to_json());
        }
        let mut obj = serde_json::json!({
            "r0": r0,
            "ns_per_run": ns,
            "runs": runs,
            "globals": g,
        });
        if let (Some(rv), Some(o)) = (retval(&loaded.ctx, r0), obj.as_object_mut()) {
            o.insert("retval".into(), rv.into());
        }
        let _ = writeln!(out, "{obj}");
    } else {
        let _ = writeln!(out, "r0 = {r0:#x}");
        if let Some(rv) = retval(&loaded.ctx, r0) {
            let _ = writeln!(out, "retval = {rv:#x}");
        }
        let _ = writeln!(out, "ns/run = {ns:.1} (mean of {runs} runs)");
        for (name, v) in &globals {
            let _ = writeln!(out, "{name} = {v}");
        }
    }
    files::write_stdout(&out)
}

/// What the kernel reports for a program of a kernel context type
/// (`BPF_PROG_TEST_RUN`'s `retval` is the low 32 bits of `r0`, e.g. an XDP
/// action); `None` for the userspace `mem` type, whose result is all of `r0`.
fn retval(ctx: &Ctx, r0: u64) -> Option<u32> {
    match ctx {
        Ctx::Mem => None,
        Ctx::Xdp | Ctx::Skb => Some(r0 as u32),
    }
}

/// One run: reset globals, fresh copy of the data, run.
fn run_once(l: &Loaded, tracer: Option<&mut TraceLines<'_>>) -> Result<u64> {
    let key = 0u32.to_le_bytes();
    for (map, init) in &l.resets {
        map.update(&key, init, 0)
            .map_err(|e| anyhow!("resetting global data: {e}"))?;
    }
    let mut data = l.data.clone();
    let vm = match &l.vm {
        Vm::Interp(vm) => vm,
        Vm::Jit(vm) => {
            // SAFETY: not checked — `--engine x86` / `x86-baseline` / `arm64` are documented
            // as running the program as unchecked machine code, for programs
            // the user trusts to be memory-safe on this input (as the
            // kernel's verifier would establish). The data buffer and
            // context live across the call.
            let r = unsafe {
                match l.ctx {
                    Ctx::Mem => vm.run_mem(&mut data),
                    Ctx::Xdp => vm.run_xdp(&mut data, &XdpMd::default()),
                    Ctx::Skb => vm.run_skb(&mut data, &mut SkbMd::default()),
                }
            };
            return Ok(r?);
        }
    };
    let r = match (l.ctx, tracer) {
        (Ctx::Mem, None) => vm.run_mem(&mut data),
        (Ctx::Mem, Some(t)) => vm.run_mem_traced(&mut data, t),
        (Ctx::Xdp, None) => vm.run_xdp(&mut data, &XdpMd::default()),
        (Ctx::Xdp, Some(t)) => vm.run_xdp_traced(&mut data, &XdpMd::default(), t),
        (Ctx::Skb, None) => vm.run_skb(&mut data, &mut SkbMd::default()),
        (Ctx::Skb, Some(t)) => vm.run_skb_traced(&mut data, &mut SkbMd::default(), t),
    };
    Ok(r?)
}

/// A non-ELF input: `(program, memory from a .data file, is a .data file)`.
fn load_flat(bytes: &[u8]) -> Result<(Program, Vec<u8>, bool)> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.lines().any(|l| l.trim() == "-- asm") {
            let (asm, mem) = conformance_sections(text)?;
            let prog = bpf_isa::assemble_ubpf(&asm).map_err(|e| anyhow!("-- asm: {e}"))?;
            return Ok((prog, mem, true));
        }
        if !text.trim().is_empty() && !bytes.contains(&0) {
            return match bpf_isa::assemble(text) {
                Ok(p) => Ok((p, Vec::new(), false)),
                Err(e) => match bpf_isa::assemble_ubpf(text) {
                    Ok(p) => Ok((p, Vec::new(), false)),
                    Err(_) => Err(anyhow!("assembly text that does not assemble: {e}")),
                },
            };
        }
    }
    let prog = Program::decode(bytes).map_err(|e| anyhow!("raw bytecode: {e}"))?;
    Ok((prog, Vec::new(), false))
}

/// The `-- asm` text and `-- mem` bytes of a bpf_conformance `.data` file.
fn conformance_sections(text: &str) -> Result<(String, Vec<u8>)> {
    let (mut asm, mut mem, mut section) = (String::new(), Vec::new(), "");
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("-- ") {
            section = name.trim();
            continue;
        }
        match section {
            "asm" => {
                asm.push_str(line);
                asm.push('\n');
            }
            "mem" => {
                for tok in line.split_whitespace() {
                    mem.push(
                        u8::from_str_radix(tok, 16)
                            .map_err(|_| anyhow!("-- mem: bad byte `{tok}`"))?,
                    );
                }
            }
            _ => {}
        }
    }
    Ok((asm, mem))
}

/// Parses `VALUE` as decimal or `0x` hexadecimal (a leading `-` wraps).
fn parse_u64(s: &str) -> Option<u64> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s),
    };
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok()?,
        None => t.parse().ok()?,
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `base` plus the `--helper-ret` overrides.
fn with_extra_helpers(mut reg: HelperRegistry, args: &Args) -> Result<HelperRegistry> {
    for spec in &args.helper_ret {
        let (id, value) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--helper-ret `{spec}`: expected ID=VALUE"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| anyhow!("--helper-ret `{spec}`: bad helper id"))?;
        let v =
            parse_u64(value.trim()).ok_or_else(|| anyhow!("--helper-ret `{spec}`: bad value"))?;
        reg.register(id, move |_, _| Ok(v));
    }
    Ok(reg)
}

/// The program `args` selects.
fn select<'o>(obj: &'o Object, args: &Args) -> Result<&'o ObjProgram> {
    let matching: Vec<&ObjProgram> = obj
        .programs
        .iter()
        .filter(|p| args.prog.as_deref().is_none_or(|n| p.name == n))
        .filter(|p| args.section.as_deref().is_none_or(|s| p.section == s))
        .collect();
    let names = || {
        obj.programs
            .iter()
            .map(|p| format!("{} (section {})", p.name, p.section))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match matching.as_slice() {
        [one] => Ok(one),
        [] => bail!("no such program; the object has: {}", names()),
        _ => bail!(
            "{} programs match; choose one with --prog: {}",
            matching.len(),
            names()
        ),
    }
}

/// The stack bytes per subprogram our verifier computes for `prog` (what
/// the kernel's JIT sizes its frames by), or `None` when it rejects the
/// program: the JIT then gives every frame the default 512 bytes.
fn verified_stack_depths(
    prog: &Program,
    kind: bpf_verifier::ProgKind,
    maps: Vec<bpf_verifier::MapInfo>,
) -> Option<Vec<u32>> {
    let opts = bpf_verifier::Options::new(kind).with_maps(maps);
    bpf_verifier::verify(prog, &opts)
        .ok()
        .map(|vp| vp.stack_depth)
}

fn load_object(args: &Args, engine: EngineChoice, bytes: &[u8], data: Vec<u8>) -> Result<Loaded> {
    let obj = Object::parse(bytes)
        .with_context(|| format!("{}: not a usable BPF object", args.file.display()))?;
    let prog = select(&obj, args)?;
    let ctx = match prog.prog_type {
        ProgType::Xdp => Ctx::Xdp,
        ProgType::SocketFilter | ProgType::SchedCls | ProgType::SchedAct | ProgType::CgroupSkb => {
            Ctx::Skb
        }
        _ => Ctx::Mem,
    };
    if engine == EngineChoice::Arm64 {
        // The arm64 engine reaches only maps in the shared arena: enable
        // it before the maps are created.
        bpf_vm::shared::enable().context("engine `arm64`")?;
    }
    // One runtime map per object map, in object order (the fd_array).
    let mut maps = Vec::with_capacity(obj.maps.len());
    let mut resets = Vec::new();
    for m in &obj.maps {
        let map_type = MapType::from_kernel_id(m.map_type).ok_or_else(|| {
            anyhow!(
                "map `{}`: map type {} is not supported by the interpreter",
                m.name,
                m.map_type
            )
        })?;
        let map = Map::new(MapDef {
            map_type,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
        })
        .map_err(|e| anyhow!("map `{}`: {e}", m.name))?;
        if let (MapKind::GlobalData(_), Some(init)) = (m.kind, &m.initial_data) {
            resets.push((map.clone(), init.clone()));
        }
        maps.push(map);
    }

    let helpers = with_extra_helpers(HelperRegistry::kernel(), args)?;
    let build = |p: &ObjProgram| -> Result<Interpreter> {
        Interpreter::builder(&p.insns)
            .helpers(helpers.clone())
            .fd_array(maps.clone())
            .build()
            .with_context(|| format!("program `{}`", p.name))
    };
    let map_infos: Vec<bpf_verifier::MapInfo> = obj
        .maps
        .iter()
        .map(|m| bpf_verifier::MapInfo {
            name: m.name.clone(),
            map_type: m.map_type,
            key_size: m.key_size,
            value_size: m.value_size,
            max_entries: m.max_entries,
            flags: m.flags,
            fd: None,
        })
        .collect();
    let data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let build_jit = |p: &ObjProgram, jit: Engine| -> Result<LoadedProgram> {
        let mut b = LoadedProgram::builder(&p.insns, jit)
            .helpers(helpers.clone())
            .fd_array(maps.clone())
            .private_stack(args.private_stack);
        if let Some(kind) = super::verify::kind_of(p.prog_type, data_len) {
            if let Some(d) = verified_stack_depths(&p.insns, kind, map_infos.clone()) {
                b = b.stack_depths(d);
            }
        }
        b.build().with_context(|| format!("program `{}`", p.name))
    };
    let vm = match engine.jit() {
        Some(jit) => Vm::Jit(build_jit(prog, jit)?),
        None => Vm::Interp(build(prog)?),
    };

    for spec in &args.prog_array {
        let (name, slots) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--prog-array `{spec}`: expected MAP=IDX:PROG[,IDX:PROG...]"))?;
        let (mi, _) = obj
            .map(name)
            .ok_or_else(|| anyhow!("--prog-array: no map named `{name}`"))?;
        let pa_map = maps
            .get(mi)
            .ok_or_else(|| anyhow!("--prog-array: no map named `{name}`"))?;
        let pa = pa_map
            .as_prog_array()
            .ok_or_else(|| anyhow!("--prog-array: map `{name}` is not a prog array"))?;
        for slot in slots.split(',') {
            let (idx, pname) = slot
                .split_once(':')
                .ok_or_else(|| anyhow!("--prog-array `{spec}`: expected IDX:PROG, got `{slot}`"))?;
            let idx: u32 = idx
                .trim()
                .parse()
                .map_err(|_| anyhow!("--prog-array `{spec}`: bad index `{idx}`"))?;
            let target = obj
                .program(pname.trim())
                .ok_or_else(|| anyhow!("--prog-array: no program named `{pname}`"))?;
            let r = match engine.jit() {
                Some(jit) => pa.set_program(idx, Some(&build_jit(target, jit)?)),
                None => pa.set(idx, Some(Arc::new(build(target)?))),
            };
            r.map_err(|e| anyhow!("--prog-array {name}[{idx}]: {e}"))?;
        }
    }

    let mut globals = Vec::new();
    for name in &args.read_global {
        let g = obj
            .global(name)
            .ok_or_else(|| anyhow!("--read-global: no global variable named `{name}`"))?;
        let map = maps
            .get(g.map)
            .cloned()
            .ok_or_else(|| anyhow!("--read-global `{name}`: no map"))?;
        globals.push(Global {
            name: name.clone(),
            map,
            offset: g.offset as usize,
            size: g.size as usize,
        });
    }

    Ok(Loaded {
        vm,
        ctx,
        data,
        resets,
        globals,
        _maps: maps,
    })
}

/// A global's value after the run.
enum Value {
    /// At most 8 bytes, little-endian.
    Int(u64),
    /// Larger: the bytes.
    Bytes(Vec<u8>),
}

impl Value {
    fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(v) => serde_json::Value::from(*v),
            Value::Bytes(b) => serde_json::Value::from(hex_bytes(b)),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v:#x} ({v})"),
            Value::Bytes(b) => f.write_str(&hex_bytes(b)),
        }
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read_globals(gs: &[Global]) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for g in gs {
        let value = g
            .map
            .lookup(&0u32.to_le_bytes())
            .map_err(|e| anyhow!("reading `{}`: {e}", g.name))?;
        let bytes = value
            .get(g.offset..g.offset + g.size)
            .ok_or_else(|| anyhow!("`{}` lies outside its section", g.name))?;
        let v = if bytes.len() <= 8 {
            let mut b = [0u8; 8];
            b.get_mut(..bytes.len())
                .ok_or_else(|| anyhow!("`{}`: bad size", g.name))?
                .copy_from_slice(bytes);
            Value::Int(u64::from_le_bytes(b))
        } else {
            Value::Bytes(bytes.to_vec())
        };
        out.insert(g.name.clone(), v);
    }
    Ok(out)
}

/// `--trace`: one line per executed instruction, `<slot>: <insn>` then the
/// registers whose value differs before the next instruction.
struct TraceLines<'o> {
    out: &'o mut String,
    /// The instruction seen last: (its program, its text, its slot) and the
    /// registers before it ran.
    pending: Option<(String, usize)>,
    regs: [u64; 11],
}

impl<'o> TraceLines<'o> {
    fn new(out: &'o mut String) -> TraceLines<'o> {
        TraceLines {
            out,
            pending: None,
            regs: [0; 11],
        }
    }

    /// Prints the pending instruction with the changes that led to `now`.
    fn emit(&mut self, now: Option<&[u64; 11]>) {
        let Some((text, slot)) = self.pending.take() else {
            return;
        };
        let _ = write!(self.out, "{slot:>5}: {text}");
        if let Some(now) = now {
            let mut first = true;
            for (i, (a, b)) in self.regs.iter().zip(now.iter()).enumerate() {
                if a != b {
                    let _ = write!(
                        self.out,
                        "{} r{i} = {b:#x}",
                        if first { "\t;" } else { "," }
                    );
                    first = false;
                }
            }
        }
        self.out.push('\n');
    }

    fn flush(&mut self) {
        self.emit(None);
    }
}

impl Tracer for TraceLines<'_> {
    fn step(&mut self, prog: &Interpreter, slot: usize, regs: &[u64; 11]) {
        self.emit(Some(regs));
        let text = prog
            .insn_at_slot(slot)
            .map(|i| fmt_insn(i, &DisasmOptions::default()))
            .unwrap_or_else(|| "<unknown>".to_string());
        self.pending = Some((text, slot));
        self.regs = *regs;
    }
}
