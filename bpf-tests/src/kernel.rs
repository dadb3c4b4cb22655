//! A small wrapper over the raw `bpf(2)` system call, used as a conformance
//! oracle: load a program into the running kernel (its verifier decides
//! whether it is acceptable), run it with `BPF_PROG_TEST_RUN`, and read back
//! what the kernel made of it (`BPF_OBJ_GET_INFO_BY_FD`).
//!
//! Only the commands the tests need are wrapped, with the attribute layouts
//! of `include/uapi/linux/bpf.h`. File descriptors are [`OwnedFd`]s and are
//! closed when dropped.
//!
//! Programs with subprograms need BTF `func_info` for some features (tail
//! calls from subprograms, callback references such as `bpf_loop`'s):
//! [`func_btf`] builds a minimal BTF with one `FUNC` per subprogram,
//! [`btf_load`] hands it to the kernel, [`func_infos`] pairs the subprogram
//! starts with its type ids, and [`ProgLoad::btf_fd`] / [`ProgLoad::func_info`]
//! pass both to `BPF_PROG_LOAD`.
//!
//! ```no_run
//! use bpf_tests::kernel::{self, ProgLoad, prog_type};
//!
//! // r0 = 42; exit
//! let insns = [0xb7, 0, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
//! kernel::available().expect("bpf() works here");
//! let prog = kernel::prog_load(&ProgLoad::new(prog_type::SOCKET_FILTER, &insns))
//!     .expect("the verifier accepts it");
//! let run = kernel::prog_test_run(&prog, &[0u8; 64], 1).expect("test run");
//! assert_eq!(run.retval, 42);
//! ```

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `enum bpf_prog_type` values used by the tests.
pub mod prog_type {
    /// `BPF_PROG_TYPE_SOCKET_FILTER`: r1 = `struct __sk_buff *`.
    pub const SOCKET_FILTER: u32 = 1;
    /// `BPF_PROG_TYPE_SCHED_CLS` (tc).
    pub const SCHED_CLS: u32 = 3;
    /// `BPF_PROG_TYPE_XDP`: r1 = `struct xdp_md *`.
    pub const XDP: u32 = 6;
}

/// `enum bpf_cmd` values used here.
mod cmd {
    pub const MAP_CREATE: libc::c_int = 0;
    pub const MAP_LOOKUP_ELEM: libc::c_int = 1;
    pub const MAP_UPDATE_ELEM: libc::c_int = 2;
    pub const PROG_LOAD: libc::c_int = 5;
    pub const PROG_TEST_RUN: libc::c_int = 10;
    pub const OBJ_GET_INFO_BY_FD: libc::c_int = 15;
    pub const BTF_LOAD: libc::c_int = 18;
}

/// A failed `bpf()` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// The command failed with `errno` (for `BPF_PROG_LOAD`, `log` holds the
    /// verifier's log, possibly empty).
    Failed {
        /// Which command (`"BPF_PROG_LOAD"`, ...).
        cmd: &'static str,
        /// The positive `errno` value.
        errno: i32,
        /// The verifier log (`BPF_PROG_LOAD` only; empty otherwise).
        log: String,
    },
    /// An argument the kernel cannot take (a length beyond `u32`, ...).
    BadArgument(&'static str),
}

impl KernelError {
    /// The `errno` of a failed call, if it was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Failed { errno, .. } => Some(*errno),
            KernelError::BadArgument(_) => None,
        }
    }

    /// The first non-empty line of the verifier log that states the error
    /// (the last non-empty line of the log, where the kernel puts it), or the
    /// errno's description when there is no log.
    pub fn reason(&self) -> String {
        match self {
            KernelError::Failed { log, errno, .. } => log
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && !l.starts_with("processed "))
                .map(str::to_string)
                .unwrap_or_else(|| errno_text(*errno)),
            KernelError::BadArgument(w) => (*w).to_string(),
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Failed { cmd, errno, log } => {
                write!(f, "{cmd} failed: {}", errno_text(*errno))?;
                if !log.is_empty() {
                    write!(f, "\n{log}")?;
                }
                Ok(())
            }
            KernelError::BadArgument(w) => write!(f, "bad argument: {w}"),
        }
    }
}

impl std::error::Error for KernelError {}

fn errno_text(errno: i32) -> String {
    format!(
        "{} (errno {errno})",
        std::io::Error::from_raw_os_error(errno)
    )
}

/// Calls `bpf(cmd, attr, size_of(attr))`; returns the non-negative result.
fn sys_bpf<T>(cmd_no: libc::c_int, name: &'static str, attr: &mut T) -> Result<i64, KernelError> {
    // SAFETY: `attr` is a live, writable `#[repr(C)]` attribute block of the
    // given size laid out as the kernel expects for `cmd_no`; every pointer it
    // holds refers to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd_no,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return Err(KernelError::Failed {
            cmd: name,
            errno,
            log: String::new(),
        });
    }
    Ok(r)
}

fn fd_from(r: i64) -> Result<OwnedFd, KernelError> {
    let fd = RawFd::try_from(r).map_err(|_| KernelError::BadArgument("fd out of range"))?;
    // SAFETY: the kernel just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn len32(n: usize, what: &'static str) -> Result<u32, KernelError> {
    u32::try_from(n).map_err(|_| KernelError::BadArgument(what))
}

/// Whether `bpf()` can load programs here: loads `r0 = 0; exit` as a socket
/// filter. `Err` says why not (`EPERM`: not privileged; `ENOSYS`: no bpf()).
pub fn available() -> Result<(), KernelError> {
    let insns = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    prog_load(&ProgLoad::new(prog_type::SOCKET_FILTER, &insns)).map(drop)
}

/// Whether a live-kernel test should run: `true` when [`available`] says
/// `bpf()` works. Otherwise the test is skipped with a plain `SKIPPED` line
/// naming `what` and the reason — unless `BPFKIT_REQUIRE_TOOLS=1` is set
/// (`cargo xtask ci` sets it), in which case this panics, so that a CI run
/// never passes with the kernel oracle silently off.
pub fn available_or_skip(what: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var("BPFKIT_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "{what}: the live kernel is required (BPFKIT_REQUIRE_TOOLS=1) but bpf() does not work: {e}"
            );
            eprintln!("SKIPPED {what}: bpf() does not work here (needs root or CAP_BPF): {e}");
            false
        }
    }
}

/// Arguments of `BPF_PROG_LOAD`.
#[derive(Clone, Debug)]
pub struct ProgLoad<'a> {
    /// `enum bpf_prog_type` (see [`prog_type`]).
    pub prog_type: u32,
    /// Little-endian bytecode (a multiple of 8 bytes).
    pub insns: &'a [u8],
    /// License string; `"GPL"` unlocks the GPL-only helpers.
    pub license: &'a str,
    /// Verifier log level (0 = only on failure, 1 = basic, 2 = verbose).
    pub log_level: u32,
    /// Size of the log buffer in bytes.
    pub log_size: usize,
    /// `expected_attach_type`.
    pub expected_attach_type: u32,
    /// Program name (at most 15 bytes are passed).
    pub name: &'a str,
    /// `fd_array`: map descriptors that `BPF_PSEUDO_MAP_IDX` references index.
    pub fd_array: &'a [RawFd],
    /// `prog_btf_fd`: the BTF that [`func_info`](Self::func_info) refers to
    /// (see [`btf_load`]). Ignored when `func_info` is empty.
    pub btf_fd: Option<RawFd>,
    /// `func_info`: one record per subprogram, sorted by instruction offset,
    /// the first at offset 0 (see [`func_infos`]). Empty: no BTF is passed.
    pub func_info: &'a [FuncInfo],
}

/// `struct bpf_func_info`: a subprogram's first instruction slot and the
/// BTF id of its `FUNC` type.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Instruction slot (8-byte units) where the subprogram starts.
    pub insn_off: u32,
    /// BTF type id of the subprogram's `FUNC`.
    pub type_id: u32,
}

/// BTF type id of the first `FUNC` in a [`func_btf`] blob; function `i` has
/// id `FIRST_FUNC_TYPE_ID + i`.
pub const FIRST_FUNC_TYPE_ID: u32 = 3;

/// BTF kinds (`BTF_KIND_*`) used by [`func_btf`].
const BTF_KIND_INT: u32 = 1;
const BTF_KIND_FUNC: u32 = 12;
const BTF_KIND_FUNC_PROTO: u32 = 13;

/// A minimal BTF blob for `func_info`: `[1] int` (signed, 32 bits),
/// `[2] int (void)` (a `FUNC_PROTO`), and `[3 + i]` one static `FUNC` named
/// `f<i>` of type `[2]` for each `i < nfuncs`.
///
/// Layout from `include/uapi/linux/btf.h`: a 24-byte header (magic
/// `0xeB9F`, version 1), the type section, then the string section.
pub fn func_btf(nfuncs: usize) -> Vec<u8> {
    let mut strs: Vec<u8> = b"\0int\0".to_vec();
    // Each type: name_off, info (kind << 24 | vlen), size or type.
    let mut words: Vec<u32> = vec![
        1, // "int"
        BTF_KIND_INT << 24,
        4,
        (1 << 24) | 32, // BTF_INT_SIGNED, offset 0, 32 bits
        0,
        BTF_KIND_FUNC_PROTO << 24, // no parameters
        1,                         // returns [1]
    ];
    for i in 0..nfuncs {
        words.push(u32::try_from(strs.len()).unwrap_or(u32::MAX));
        strs.extend_from_slice(format!("f{i}\0").as_bytes());
        words.extend_from_slice(&[BTF_KIND_FUNC << 24, 2]); // static linkage (vlen 0)
    }
    let type_len = u32::try_from(words.len() * 4).unwrap_or(u32::MAX);
    let str_len = u32::try_from(strs.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(24 + words.len() * 4 + strs.len());
    out.extend_from_slice(&0xEB9F_u16.to_le_bytes());
    out.extend_from_slice(&[1, 0]); // version, flags
    for v in [24u32, 0, type_len, type_len, str_len] {
        // hdr_len, type_off, type_len, str_off, str_len
        out.extend_from_slice(&v.to_le_bytes());
    }
    for w in &words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&strs);
    out
}

/// `func_info` records for subprograms starting at the slots `starts`
/// (ascending, the first 0), matching the types of [`func_btf`]`(starts.len())`.
pub fn func_infos(starts: &[u32]) -> Vec<FuncInfo> {
    (FIRST_FUNC_TYPE_ID..)
        .zip(starts)
        .map(|(type_id, &insn_off)| FuncInfo { insn_off, type_id })
        .collect()
}

#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
}

/// `BPF_BTF_LOAD`: the BTF object's descriptor, or [`KernelError::Failed`]
/// with the kernel's BTF log.
pub fn btf_load(blob: &[u8]) -> Result<OwnedFd, KernelError> {
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = BtfLoadAttr {
        btf: blob.as_ptr() as u64,
        btf_log_buf: log.as_mut_ptr() as u64,
        btf_size: len32(blob.len(), "BTF too large")?,
        btf_log_size: len32(log.len(), "log too large")?,
        btf_log_level: 1,
        ..BtfLoadAttr::default()
    };
    match sys_bpf(cmd::BTF_LOAD, "BPF_BTF_LOAD", &mut attr) {
        Ok(fd) => fd_from(fd),
        Err(KernelError::Failed { cmd, errno, .. }) => Err(KernelError::Failed {
            cmd,
            errno,
            log: log_text(&log),
        }),
        Err(e) => Err(e),
    }
}

/// The NUL-terminated text at the start of a log buffer.
fn log_text(log: &[u8]) -> String {
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    String::from_utf8_lossy(log.get(..end).unwrap_or_default()).into_owned()
}

impl<'a> ProgLoad<'a> {
    /// A GPL-licensed load of `insns` with a 64 KiB log filled on failure.
    pub fn new(prog_type: u32, insns: &'a [u8]) -> ProgLoad<'a> {
        ProgLoad {
            prog_type,
            insns,
            license: "GPL",
            log_level: 0,
            log_size: 64 * 1024,
            expected_attach_type: 0,
            name: "",
            fd_array: &[],
            btf_fd: None,
            func_info: &[],
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}

/// `BPF_PROG_LOAD`: the program's descriptor, or the verifier's verdict
/// ([`KernelError::Failed`] with the log; when the first attempt fails with
/// `log_level` 0 the load is retried at level 1 so that the log is filled).
pub fn prog_load(p: &ProgLoad<'_>) -> Result<OwnedFd, KernelError> {
    prog_load_logged(p).map(|(fd, _)| fd)
}

/// [`prog_load`] that also returns the verifier log on success (empty when
/// `log_level` is 0). With `log_level` 4 (`BPF_LOG_STATS`) the log holds the
/// stats lines only (`verification time N usec`, `processed N insns ...`).
pub fn prog_load_logged(p: &ProgLoad<'_>) -> Result<(OwnedFd, String), KernelError> {
    if !p.insns.len().is_multiple_of(8) {
        return Err(KernelError::BadArgument(
            "bytecode length is not a multiple of 8",
        ));
    }
    let mut license = p.license.as_bytes().to_vec();
    license.push(0);
    let mut name = [0u8; 16];
    for (d, s) in name.iter_mut().zip(p.name.bytes().take(15)) {
        *d = s;
    }
    let (btf_fd, func_info) = match (p.btf_fd, p.func_info.is_empty()) {
        (_, true) => (0, 0),
        (Some(fd), false) => (
            u32::try_from(fd).map_err(|_| KernelError::BadArgument("negative BTF descriptor"))?,
            p.func_info.as_ptr() as u64,
        ),
        (None, false) => {
            return Err(KernelError::BadArgument(
                "func_info without a BTF descriptor",
            ))
        }
    };
    let func_info_cnt = len32(p.func_info.len(), "too many func_info records")?;
    let mut log = vec![0u8; p.log_size.max(1)];
    let attempt = |level: u32, log: &mut [u8]| {
        let mut attr = ProgLoadAttr {
            prog_type: p.prog_type,
            insn_cnt: len32(p.insns.len() / 8, "too many instructions")?,
            insns: p.insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: level,
            log_size: if level == 0 {
                0
            } else {
                len32(log.len(), "log too large")?
            },
            log_buf: if level == 0 {
                0
            } else {
                log.as_mut_ptr() as u64
            },
            prog_name: name,
            expected_attach_type: p.expected_attach_type,
            prog_btf_fd: btf_fd,
            func_info_rec_size: if func_info == 0 {
                0
            } else {
                std::mem::size_of::<FuncInfo>() as u32
            },
            func_info,
            func_info_cnt: if func_info == 0 { 0 } else { func_info_cnt },
            fd_array: if p.fd_array.is_empty() {
                0
            } else {
                p.fd_array.as_ptr() as u64
            },
            ..ProgLoadAttr::default()
        };
        sys_bpf(cmd::PROG_LOAD, "BPF_PROG_LOAD", &mut attr)
    };
    let level = p.log_level;
    let res = match attempt(level, &mut log) {
        Err(KernelError::Failed { errno, .. }) if level == 0 && errno != libc::EPERM => {
            attempt(1, &mut log)
        }
        other => other,
    };
    match res {
        Ok(fd) => {
            let text = if level == 0 {
                String::new()
            } else {
                log_text(&log)
            };
            Ok((fd_from(fd)?, text))
        }
        Err(KernelError::Failed { cmd, errno, .. }) => Err(KernelError::Failed {
            cmd,
            errno,
            log: log_text(&log),
        }),
        Err(e) => Err(e),
    }
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

/// `BPF_MAP_CREATE` of a map without BTF.
pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, KernelError> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        ..MapCreateAttr::default()
    };
    fd_from(sys_bpf(cmd::MAP_CREATE, "BPF_MAP_CREATE", &mut attr)?)
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_MAP_UPDATE_ELEM` (`flags`: 0 = `BPF_ANY`). `key` and `value` must
/// have the map's key and value sizes (checked by the caller's contract:
/// the kernel reads exactly that many bytes, so shorter slices are refused here
/// only when empty).
pub fn map_update(map: &OwnedFd, key: &[u8], value: &[u8], flags: u64) -> Result<(), KernelError> {
    if key.is_empty() || value.is_empty() {
        return Err(KernelError::BadArgument("empty key or value"));
    }
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags,
    };
    sys_bpf(cmd::MAP_UPDATE_ELEM, "BPF_MAP_UPDATE_ELEM", &mut attr).map(drop)
}

/// `BPF_MAP_LOOKUP_ELEM`: copies the value stored under `key` into `value`,
/// which must be at least the map's value size (the kernel writes exactly
/// that many bytes); empty slices are refused.
pub fn map_lookup(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> Result<(), KernelError> {
    if key.is_empty() || value.is_empty() {
        return Err(KernelError::BadArgument("empty key or value"));
    }
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    sys_bpf(cmd::MAP_LOOKUP_ELEM, "BPF_MAP_LOOKUP_ELEM", &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit so that it is zero: the kernel rejects non-zero bytes past `batch_size`.
    _pad: u32,
}

/// What `BPF_PROG_TEST_RUN` reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (`r0` truncated to 32 bits by the kernel).
    pub retval: u32,
    /// Mean nanoseconds per run as the kernel measured it.
    pub duration_ns: u32,
    /// The packet after the (last) run.
    pub data_out: Vec<u8>,
}

/// `BPF_PROG_TEST_RUN` with packet `data_in` (socket filters and XDP need
/// at least 14 bytes, an Ethernet header), `repeat` times (0 counts as 1).
pub fn prog_test_run(prog: &OwnedFd, data_in: &[u8], repeat: u32) -> Result<TestRun, KernelError> {
    let mut out = vec![0u8; data_in.len() + 512];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: len32(data_in.len(), "packet too large")?,
        data_size_out: len32(out.len(), "packet too large")?,
        data_in: data_in.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    sys_bpf(cmd::PROG_TEST_RUN, "BPF_PROG_TEST_RUN", &mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        retval: attr.retval,
        duration_ns: attr.duration,
        data_out: out,
    })
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to `verified_insns` and beyond (232 bytes).
#[repr(C)]
#[derive(Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
    verified_insns: u32,
    attach_btf_obj_id: u32,
    attach_btf_id: u32,
    _pad: u32,
}

/// What the kernel reports about a loaded program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgInfo {
    /// `enum bpf_prog_type`.
    pub prog_type: u32,
    /// The program id.
    pub id: u32,
    /// Bytes of the program after the verifier's rewrites.
    pub xlated_len: u32,
    /// Bytes of JIT-compiled machine code (0 when the JIT is off).
    pub jited_len: u32,
    /// The rewritten bytecode (empty if the kernel withheld it).
    pub xlated: Vec<u8>,
    /// The machine code (empty if the kernel withheld it).
    pub jited: Vec<u8>,
    /// Instructions the verifier processed.
    pub verified_insns: u32,
}

fn get_info(fd: &OwnedFd, info: &mut RawProgInfo) -> Result<(), KernelError> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<RawProgInfo>() as u32,
        info: info as *mut RawProgInfo as u64,
    };
    sys_bpf(cmd::OBJ_GET_INFO_BY_FD, "BPF_OBJ_GET_INFO_BY_FD", &mut attr).map(drop)
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program: lengths first, then the dumps.
pub fn prog_info(prog: &OwnedFd) -> Result<ProgInfo, KernelError> {
    let mut first = RawProgInfo::default();
    get_info(prog, &mut first)?;
    let mut xlated = vec![0u8; first.xlated_prog_len as usize];
    let mut jited = vec![0u8; first.jited_prog_len as usize];
    let mut second = RawProgInfo {
        xlated_prog_len: first.xlated_prog_len,
        xlated_prog_insns: if xlated.is_empty() {
            0
        } else {
            xlated.as_mut_ptr() as u64
        },
        jited_prog_len: first.jited_prog_len,
        jited_prog_insns: if jited.is_empty() {
            0
        } else {
            jited.as_mut_ptr() as u64
        },
        ..RawProgInfo::default()
    };
    get_info(prog, &mut second)?;
    xlated.truncate(second.xlated_prog_len.min(first.xlated_prog_len) as usize);
    jited.truncate(second.jited_prog_len.min(first.jited_prog_len) as usize);
    Ok(ProgInfo {
        prog_type: first.prog_type,
        id: first.id,
        xlated_len: first.xlated_prog_len,
        jited_len: first.jited_prog_len,
        xlated,
        jited,
        verified_insns: first.verified_insns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_uapi() {
        // Offsets from include/uapi/linux/bpf.h.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_btf_fd), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, func_info_rec_size), 76);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, func_info), 80);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, func_info_cnt), 88);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(std::mem::offset_of!(BtfLoadAttr, btf_log_level), 24);
        assert_eq!(std::mem::size_of::<FuncInfo>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_true_size), 140);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestRunAttr, batch_size), 72);
        assert_eq!(std::mem::offset_of!(RawProgInfo, verified_insns), 216);
        assert_eq!(std::mem::size_of::<RawProgInfo>(), 232);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_extra), 64);
    }

    #[test]
    fn func_btf_layout() {
        // Hand-computed from include/uapi/linux/btf.h: header 24 bytes,
        // types int (16) + proto (12) + 2 funcs (2 * 12) = 52, strings
        // "\0int\0f0\0f1\0" = 11.
        let b = func_btf(2);
        assert_eq!(b.len(), 24 + 52 + 11);
        assert_eq!(&b[..4], &[0x9f, 0xeb, 1, 0]);
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        assert_eq!(
            (word(4), word(8), word(12), word(16), word(20)),
            (24, 0, 52, 52, 11)
        );
        // [3] FUNC "f0" -> [2]: name_off 5, kind 12.
        assert_eq!(
            (word(24 + 28), word(24 + 32), word(24 + 36)),
            (5, 12 << 24, 2)
        );
        assert_eq!(&b[24 + 52..], b"\0int\0f0\0f1\0");
        assert_eq!(
            func_infos(&[0, 7]),
            [
                FuncInfo {
                    insn_off: 0,
                    type_id: 3
                },
                FuncInfo {
                    insn_off: 7,
                    type_id: 4
                }
            ]
        );
    }

    #[test]
    fn reason_is_last_log_line() {
        let e = KernelError::Failed {
            cmd: "BPF_PROG_LOAD",
            errno: 13,
            log: "0: (b7) r0 = 0\nR1 !read_ok\nprocessed 2 insns\n".into(),
        };
        assert_eq!(e.reason(), "R1 !read_ok");
    }
}
