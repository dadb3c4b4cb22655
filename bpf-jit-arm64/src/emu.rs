//! Running AArch64 images on any Linux host: a small C harness
//! (`harness/harness.c`, built on first use with `aarch64-linux-gnu-gcc
//! -static`) runs under `qemu-aarch64` and executes requests from this
//! process over a pipe: write bytes into its memory, read them back, call
//! an address with five or eight arguments, time a loop of calls.
//!
//! The harness maps three 4 MiB regions and reports their addresses: *near*
//! code (read+write+exec, within ±128 MiB of the harness's own text, so
//! compiled code reaches its helpers with `bl`), *far* code (out of `bl`
//! range: helper calls must be `movz/movk` + `blr`) and *data*. It offers
//! seven helpers ([`HarnessHelper`]). A program that faults (e.g. a bad
//! load) is reported as [`EmuError::Fault`] with the signal number; the
//! harness stays usable.
//!
//! Upcalls let emulated code call back into this process: a stub
//! ([`upcall_stub`]) written into a code region enters the harness's
//! `upcall` function, which sends the stub's id and arguments to the host;
//! [`Emulator::call_with_upcalls`] runs a handler for each and returns its
//! value to the code (the handler may make nested calls meanwhile).
//! [`Emulator::map_shared`] maps a file (e.g. a `memfd` the host has mapped
//! too) at the same address in the harness, so both processes share
//! memory at identical addresses, and [`Emulator::call_on_stack`] runs code
//! on a stack there (so upcalls can reach the code's stack).
//!
//! Needs `qemu-aarch64` (Debian: `qemu-user`) and `aarch64-linux-gnu-gcc`
//! (Debian: `gcc-aarch64-linux-gnu`, `libc6-dev-arm64-cross`).
//!
//! The harness binary is cached in `$BPFKIT_ARM64_HARNESS_DIR`, else in
//! the system temporary directory, under a name derived from its source.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The harness source.
pub const HARNESS_SOURCE: &str = include_str!("../harness/harness.c");

const MAGIC: u64 = 0x6270_6661_726d_3634;

/// Why the emulator could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    /// A required tool is not installed.
    #[error("{0} not found (install it: Debian packages qemu-user, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)")]
    ToolMissing(&'static str),
    /// Building the harness failed (compiler output attached).
    #[error("building the harness failed: {0}")]
    Build(String),
    /// Talking to the harness failed (it died, or a pipe broke).
    #[error("emulator i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The harness answered something unexpected.
    #[error("emulator protocol: {0}")]
    Protocol(&'static str),
    /// The called code raised a signal (SIGSEGV 11, SIGILL 4, SIGBUS 7, ...).
    #[error("emulated code raised signal {0}")]
    Fault(u32),
    /// The harness could not map shared memory (its errno).
    #[error("the harness could not map the shared memory (errno {0})")]
    Map(u32),
    /// An address range outside the harness's regions.
    #[error("address range {addr:#x}+{len} outside the harness's regions")]
    OutOfRange {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },
}

/// The harness's helpers, by their index in [`Layout::helpers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HarnessHelper {
    /// Returns its first argument (the bpf_conformance suite's helper 5).
    ReturnArg1 = 0,
    /// Returns `a + 2b + 3c + 4d + 5e` (checks argument order).
    WeightedSum = 1,
    /// `((u64 *)a)[b] += c`, returns the new value (a map update).
    MapAdd = 2,
    /// Calls the function at `a` with `(b, 10, 20, 30, 40)`, returns its result + 1.
    CallCallback = 3,
    /// A native function of eight arguments: returns `a + 2b + 3c + ... + 8h`
    /// (an original function for trampolines; call it with [`Emulator::call8`]).
    WeightedSum8 = 4,
    /// `bpf_map_lookup_elem` on an array map (`a`: the map, `b`: pointer to
    /// a `u32` key): the map is laid out as [`ARRAY_MAP_VALUES_OFFSET`]
    /// bytes of header (`u32 max_entries`, `u32 value_size`, padding) and
    /// then the values, each padded to a multiple of 8 bytes; returns the
    /// address of value `key`, or 0 when `key >= max_entries`.
    ArrayLookup = 5,
    /// A `ld_abs`/`ld_ind` packet-load function ([`bpf_jit::JitOptions::ld_abs`]):
    /// `a` points at `{u64 data; u64 len}`; returns the `c` (1, 2 or 4)
    /// big-endian bytes at the signed 32-bit offset `b` as a number, or
    /// `-14` (`-EFAULT`) when they are not all inside the packet.
    SkbLoad = 6,
    /// The upcall entry: not a helper to call directly, but the target of
    /// the stubs [`upcall_stub`] encodes (`x5` = an id): it hands
    /// `x0`-`x4` and the id to the host's handler of
    /// [`Emulator::call_with_upcalls`] / [`Emulator::call_on_stack`] and
    /// returns the handler's value.
    Upcall = 7,
}

/// Byte offset of `max_entries` (a `u32`) in the array-map block that
/// [`HarnessHelper::ArrayLookup`] reads.
pub const ARRAY_MAP_MAX_ENTRIES_OFFSET: u64 = 0;
/// Byte offset of `value_size` (a `u32`) in that block.
pub const ARRAY_MAP_VALUE_SIZE_OFFSET: u64 = 4;
/// Byte offset of value 0 in that block; value `k` is at
/// `ARRAY_MAP_VALUES_OFFSET + k * round_up(value_size, 8)`.
pub const ARRAY_MAP_VALUES_OFFSET: u64 = 16;

/// Number of helpers the harness offers (the length of [`Layout::helpers`]).
pub const HARNESS_HELPERS: usize = 8;

/// Where the harness mapped its regions and helpers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Code region within `bl` range of the helpers.
    pub near_code: u64,
    /// Code region out of `bl` range of the helpers.
    pub far_code: u64,
    /// Data region.
    pub data: u64,
    /// Size of each region in bytes.
    pub region_len: u64,
    /// Helper addresses, indexed by [`HarnessHelper`].
    pub helpers: [u64; HARNESS_HELPERS],
}

impl Layout {
    /// Address of helper `h`.
    pub fn helper(&self, h: HarnessHelper) -> u64 {
        self.helpers[h as usize]
    }

    fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        [self.near_code, self.far_code, self.data]
            .iter()
            .any(|&r| addr >= r && end <= r + self.region_len)
    }
}

/// One running harness process.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    tx: BufWriter<ChildStdin>,
    rx: BufReader<ChildStdout>,
    layout: Layout,
    /// Ranges mapped with [`Emulator::map_shared`]: `(start, len)`.
    shared: Vec<(u64, u64)>,
}

/// What the harness sends in place of a call's reply when the called code
/// enters an upcall stub.
const UPCALL_KIND: u32 = 0xffff_ffff;

/// The host side of upcalls: called with the emulator (for nested calls,
/// reads and writes), the stub's id and the arguments `x0`-`x4`; its value
/// is what the upcall returns to the emulated code.
pub type UpcallHandler<'a> = dyn FnMut(&mut Emulator, u32, [u64; 5]) -> u64 + 'a;

/// Bytes of one stub made by [`upcall_stub`].
pub const UPCALL_STUB_BYTES: usize = 24;

/// A position-independent AArch64 stub that enters the harness's upcall
/// function (`upcall`: [`HarnessHelper::Upcall`]) with id `id`:
/// `movz x5, #id; movz x9, #upcall[15:0]; movk x9, ... (lsl 16, 32, 48);
/// br x9`. Written anywhere executable, its address serves as a helper's
/// address for compiled code: a call to it becomes an upcall with
/// `x0`-`x4` as arguments.
pub fn upcall_stub(id: u16, upcall: u64) -> [u8; UPCALL_STUB_BYTES] {
    const MOVZ_X: u32 = 0xd280_0000;
    const MOVK_X: u32 = 0xf280_0000;
    const BR_X9: u32 = 0xd61f_0120;
    let half = |hw: u32| ((upcall >> (16 * hw)) & 0xffff) as u32;
    let words = [
        MOVZ_X | u32::from(id) << 5 | 5,
        MOVZ_X | half(0) << 5 | 9,
        MOVK_X | 1 << 21 | half(1) << 5 | 9,
        MOVK_X | 2 << 21 | half(2) << 5 | 9,
        MOVK_X | 3 << 21 | half(3) << 5 | 9,
        BR_X9,
    ];
    let mut out = [0u8; UPCALL_STUB_BYTES];
    for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

fn find_tool(names: &[&'static str]) -> Result<&'static str, EmuError> {
    for &n in names {
        let ok = Command::new(n)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(n);
        }
    }
    Err(EmuError::ToolMissing(
        names.first().copied().unwrap_or("tool"),
    ))
}

/// Whether `qemu-aarch64` and `aarch64-linux-gnu-gcc` are installed.
pub fn tools_available() -> Result<(), EmuError> {
    find_tool(&["qemu-aarch64", "qemu-aarch64-static"])?;
    find_tool(&["aarch64-linux-gnu-gcc"])?;
    Ok(())
}

/// Builds the harness (once per source version) and returns its path.
pub fn harness_binary() -> Result<PathBuf, EmuError> {
    let dir = std::env::var_os("BPFKIT_ARM64_HARNESS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // FNV-1a of the source names the binary: a changed source rebuilds.
    let hash = HARNESS_SOURCE
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
    let bin = dir.join(format!("bpfkit-arm64-harness-{hash:016x}"));
    if bin.exists() {
        return Ok(bin);
    }
    let cc = find_tool(&["aarch64-linux-gnu-gcc"])?;
    std::fs::create_dir_all(&dir)?;
    // Unique per process and per call: threads of one process (parallel
    // tests) may build at the same time.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let pid = std::process::id();
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let src = dir.join(format!("bpfkit-arm64-harness-{hash:016x}.{pid}.{n}.c"));
    let tmp = dir.join(format!("bpfkit-arm64-harness-{hash:016x}.{pid}.{n}.tmp"));
    std::fs::write(&src, HARNESS_SOURCE)?;
    let out = Command::new(cc)
        .args(["-O2", "-static", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()?;
    let _ = std::fs::remove_file(&src);
    if !out.status.success() {
        return Err(EmuError::Build(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    // Atomic: concurrent builders all rename a complete binary.
    std::fs::rename(&tmp, &bin)?;
    Ok(bin)
}

impl Emulator {
    /// Starts a harness under `qemu-aarch64 -cpu max` (LSE atomics and
    /// everything else of ARMv8.x).
    pub fn spawn() -> Result<Emulator, EmuError> {
        let qemu = find_tool(&["qemu-aarch64", "qemu-aarch64-static"])?;
        let bin = harness_binary()?;
        Emulator::spawn_with(qemu, &bin)
    }

    fn spawn_with(qemu: &str, bin: &Path) -> Result<Emulator, EmuError> {
        let mut child = Command::new(qemu)
            .args(["-cpu", "max"])
            .arg(bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(tx), Some(rx)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(EmuError::Protocol("no pipes"));
        };
        let mut e = Emulator {
            child,
            tx: BufWriter::new(tx),
            rx: BufReader::new(rx),
            layout: Layout {
                near_code: 0,
                far_code: 0,
                data: 0,
                region_len: 0,
                helpers: [0; HARNESS_HELPERS],
            },
            shared: Vec::new(),
        };
        let mut hello = [0u64; 6 + HARNESS_HELPERS];
        for w in &mut hello {
            *w = e.get_u64()?;
        }
        let [magic, near, far, data, len, n, h0, h1, h2, h3, h4, h5, h6, h7] = hello;
        if magic != MAGIC || n != HARNESS_HELPERS as u64 {
            return Err(EmuError::Protocol("bad hello"));
        }
        e.layout = Layout {
            near_code: near,
            far_code: far,
            data,
            region_len: len,
            helpers: [h0, h1, h2, h3, h4, h5, h6, h7],
        };
        Ok(e)
    }

    /// Where the harness mapped its regions and helpers.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Sends request `cmd` to the harness: its 32-bit code, then `head`
    /// and `args` as little-endian `u64`s, then `bytes`; flushes.
    fn send(&mut self, cmd: u32, head: &[u64], args: &[u64], bytes: &[u8]) -> Result<(), EmuError> {
        self.tx.write_all(&cmd.to_le_bytes())?;
        for w in head.iter().chain(args) {
            self.tx.write_all(&w.to_le_bytes())?;
        }
        self.tx.write_all(bytes)?;
        self.tx.flush()?;
        Ok(())
    }

    fn get_u64(&mut self) -> Result<u64, EmuError> {
        let mut b = [0u8; 8];
        self.rx.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn get_u32(&mut self) -> Result<u32, EmuError> {
        let mut b = [0u8; 4];
        self.rx.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn check(&self, addr: u64, len: u64) -> Result<(), EmuError> {
        let in_shared = addr.checked_add(len).is_some_and(|end| {
            self.shared
                .iter()
                .any(|&(s, l)| addr >= s && end <= s.saturating_add(l))
        });
        if in_shared || self.layout.contains(addr, len) {
            Ok(())
        } else {
            Err(EmuError::OutOfRange { addr, len })
        }
    }

    /// A code address that may be called: inside a region or one of the
    /// harness's own functions.
    fn check_code(&self, addr: u64) -> Result<(), EmuError> {
        if self.layout.helpers.contains(&addr) {
            Ok(())
        } else {
            self.check(addr, 4)
        }
    }

    /// Copies `bytes` to `addr` in the harness (code regions: the
    /// instruction cache is synchronised).
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), EmuError> {
        let len = bytes.len() as u64;
        self.check(addr, len)?;
        self.send(1, &[addr, len], &[], bytes)?;
        match self.get_u32()? {
            0 => Ok(()),
            _ => Err(EmuError::Protocol("write refused")),
        }
    }

    /// Reads `len` bytes at `addr` in the harness.
    pub fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, EmuError> {
        self.check(addr, len as u64)?;
        self.send(2, &[addr, len as u64], &[], &[])?;
        let mut v = vec![0u8; len];
        self.rx.read_exact(&mut v)?;
        Ok(v)
    }

    /// Calls the code at `addr` (a C-ABI function of five `u64`) with
    /// `args`; returns what it returned.
    pub fn call(&mut self, addr: u64, args: [u64; 5]) -> Result<u64, EmuError> {
        self.call_with_upcalls(addr, args, &mut |_, _, _| 0)
    }

    /// A call's reply; upcalls on the way are handled by `h`.
    fn reply_with(&mut self, h: &mut UpcallHandler<'_>) -> Result<u64, EmuError> {
        loop {
            let sig = self.get_u32()?;
            if sig == UPCALL_KIND {
                let id = self.get_u32()?;
                let mut a = [0u64; 5];
                for x in &mut a {
                    *x = self.get_u64()?;
                }
                let r = h(self, id, a);
                self.send(11, &[r], &[], &[])?;
                continue;
            }
            let _pad = self.get_u32()?;
            let r0 = self.get_u64()?;
            if sig != 0 {
                return Err(EmuError::Fault(sig));
            }
            return Ok(r0);
        }
    }

    /// A call's reply; an upcall on the way (code that entered an upcall
    /// stub without a handler) returns 0.
    fn reply(&mut self) -> Result<u64, EmuError> {
        self.reply_with(&mut |_, _, _| 0)
    }

    /// Like [`Emulator::call`], with upcalls: each time the code enters an
    /// upcall stub ([`upcall_stub`]), `h` runs with the stub's id and the
    /// arguments, and may itself call into the emulator (nested calls run
    /// on the current emulated stack); its value is returned to the code.
    pub fn call_with_upcalls(
        &mut self,
        addr: u64,
        args: [u64; 5],
        h: &mut UpcallHandler<'_>,
    ) -> Result<u64, EmuError> {
        self.check_code(addr)?;
        self.send(3, &[addr], &args, &[])?;
        self.reply_with(h)
    }

    /// Like [`Emulator::call_with_upcalls`], with the stack pointer set to
    /// `sp` (16-byte aligned, the top of a stack the caller provides, e.g.
    /// in a [`Emulator::map_shared`] range) for the duration of the call.
    pub fn call_on_stack(
        &mut self,
        addr: u64,
        sp: u64,
        args: [u64; 5],
        h: &mut UpcallHandler<'_>,
    ) -> Result<u64, EmuError> {
        self.check_code(addr)?;
        if !sp.is_multiple_of(16) {
            return Err(EmuError::Protocol("stack pointer not 16-byte aligned"));
        }
        self.send(10, &[addr, sp], &args, &[])?;
        self.reply_with(h)
    }

    /// Like [`Emulator::call_on_stack`], with a sixth argument (`x5`), e.g.
    /// the frame top a private-stack entry
    /// ([`JitOptions::private_stack`](bpf_jit::JitOptions::private_stack))
    /// takes in [`FIN`](crate::FIN).
    pub fn call_on_stack6(
        &mut self,
        addr: u64,
        sp: u64,
        args: [u64; 6],
        h: &mut UpcallHandler<'_>,
    ) -> Result<u64, EmuError> {
        self.check_code(addr)?;
        if !sp.is_multiple_of(16) {
            return Err(EmuError::Protocol("stack pointer not 16-byte aligned"));
        }
        self.send(12, &[addr, sp], &args, &[])?;
        self.reply_with(h)
    }

    /// Maps the file at `path` (in the harness's view of the file system:
    /// e.g. `/proc/<host pid>/fd/<n>` of a `memfd` the host has mapped at
    /// `addr`) shared, read+write, at exactly `addr` in the harness, for
    /// `len` bytes. Afterwards the range is open to [`Emulator::read`],
    /// [`Emulator::write`] and calls, and memory written by either process
    /// is seen by the other at the same address. Fails with
    /// [`EmuError::Map`] (the harness's errno) if the range is taken.
    pub fn map_shared(&mut self, addr: u64, len: u64, path: &Path) -> Result<(), EmuError> {
        use std::os::unix::ffi::OsStrExt;
        let p = path.as_os_str().as_bytes();
        if p.len() >= 256 {
            return Err(EmuError::Protocol("shared-memory path too long"));
        }
        self.send(9, &[addr, len, p.len() as u64], &[], p)?;
        match self.get_u32()? {
            0 => {
                self.shared.push((addr, len));
                Ok(())
            }
            errno => Err(EmuError::Map(errno)),
        }
    }

    /// Calls the code at `addr` as a C-ABI function of eight `u64`
    /// arguments (`x0`-`x7`); returns what it returned.
    pub fn call8(&mut self, addr: u64, args: [u64; 8]) -> Result<u64, EmuError> {
        self.check_code(addr)?;
        self.send(4, &[addr], &args, &[])?;
        self.reply()
    }

    /// Calls the code at `addr` (a C-ABI function of eight `u64`) `iters`
    /// times with `args` and returns the nanoseconds the loop took, by the
    /// harness's `CLOCK_MONOTONIC` (under qemu: emulated time per call,
    /// loop overhead included).
    pub fn bench8(&mut self, addr: u64, iters: u64, args: [u64; 8]) -> Result<u64, EmuError> {
        self.check_code(addr)?;
        self.send(7, &[addr, iters], &args, &[])?;
        self.reply()
    }

    /// Starts a second harness thread that calls `addr(args)` in a loop,
    /// concurrently with the requests that follow (e.g. [`Emulator::write`]s
    /// that patch the code it runs), until [`Emulator::stop_runner`] (at least once).
    /// A fault in that thread ends the harness (later requests fail with
    /// [`EmuError::Io`]).
    pub fn start_runner(&mut self, addr: u64, args: [u64; 5]) -> Result<(), EmuError> {
        self.check_code(addr)?;
        self.send(5, &[addr], &args, &[])?;
        match self.get_u32()? {
            0 => Ok(()),
            _ => Err(EmuError::Protocol("runner already running or not started")),
        }
    }

    /// Stops the runner thread and returns what it saw: the number of
    /// calls, and how many returned each value `0..16` (index 16: any
    /// other value). All zero when no runner was running.
    pub fn stop_runner(&mut self) -> Result<RunnerCounts, EmuError> {
        self.send(6, &[], &[], &[])?;
        let calls = self.get_u64()?;
        let mut counts = [0u64; 17];
        for c in &mut counts {
            *c = self.get_u64()?;
        }
        Ok(RunnerCounts { calls, counts })
    }
}

/// What the runner thread of [`Emulator::start_runner`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunnerCounts {
    /// Calls made.
    pub calls: u64,
    /// `counts[v]`: calls that returned `v` (`v < 16`); `counts[16]`: the rest.
    pub counts: [u64; 17],
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.tx.write_all(&0u32.to_le_bytes());
        let _ = self.tx.flush();
        let _ = self.child.wait();
    }
}
