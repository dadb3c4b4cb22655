//! Helper functions: the calling context they get, a registry keyed by the
//! kernel's helper ids, the kernel helpers this runtime provides and the
//! helpers of the bpf_conformance suite.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use smallvec::SmallVec;

use crate::error::HelperError;
use crate::maps::{current_cpu, errno, Map, MapKind};
use crate::mem::{KeepAlive, MemState};

/// `BPF_FUNC_map_lookup_elem`.
pub const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_map_update_elem`.
pub const BPF_FUNC_MAP_UPDATE_ELEM: i32 = 2;
/// `BPF_FUNC_map_delete_elem`.
pub const BPF_FUNC_MAP_DELETE_ELEM: i32 = 3;
/// `BPF_FUNC_ktime_get_ns`.
pub const BPF_FUNC_KTIME_GET_NS: i32 = 5;
/// `BPF_FUNC_trace_printk`.
pub const BPF_FUNC_TRACE_PRINTK: i32 = 6;
/// `BPF_FUNC_get_prandom_u32`.
pub const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
/// `BPF_FUNC_get_smp_processor_id`.
pub const BPF_FUNC_GET_SMP_PROCESSOR_ID: i32 = 8;
/// The `bpf_fastcall` helpers of Linux 6.18 (the list
/// `bpf_verifier::fastcall::FastcallTable::linux` holds) with the eBPF
/// registers a call to each must leave intact: bit `i` for `ri`, the
/// caller-saved `r0`-`r5` that are neither an argument nor the result.
/// [`LoadBuilder`](crate::LoadBuilder) registers them for the JIT engine by
/// default (the interpreter never touches `r1`-`r5` in a helper call), so
/// programs whose spill/fill brackets around these calls were removed run
/// correctly on every engine.
pub const FASTCALL_HELPERS: &[(i32, u16)] = &[
    // bpf_get_smp_processor_id(void) -> u32: clobbers r0 only.
    (BPF_FUNC_GET_SMP_PROCESSOR_ID, 0b11_1110),
];

/// `BPF_FUNC_tail_call` (executed by the interpreter itself).
pub const BPF_FUNC_TAIL_CALL: i32 = 12;
/// `BPF_FUNC_get_current_pid_tgid`: thread group id (the process id) in the
/// upper 32 bits, thread id in the lower, of the thread running the program.
pub const BPF_FUNC_GET_CURRENT_PID_TGID: i32 = 14;
/// `BPF_FUNC_ringbuf_output`.
pub const BPF_FUNC_RINGBUF_OUTPUT: i32 = 130;
/// `BPF_FUNC_ringbuf_reserve`.
pub const BPF_FUNC_RINGBUF_RESERVE: i32 = 131;
/// `BPF_FUNC_ringbuf_submit`.
pub const BPF_FUNC_RINGBUF_SUBMIT: i32 = 132;
/// `BPF_FUNC_ringbuf_discard`.
pub const BPF_FUNC_RINGBUF_DISCARD: i32 = 133;
/// `BPF_FUNC_ringbuf_query`.
pub const BPF_FUNC_RINGBUF_QUERY: i32 = 134;
/// `BPF_FUNC_loop` (executed by the interpreter itself).
pub const BPF_FUNC_LOOP: i32 = 181;

/// A helper: five argument registers in, `r0` out.
pub type HelperFn = dyn Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync;

/// What a helper may do besides computing: touch program memory (checked in
/// checked mode), find maps, hand out memory, stop the program.
pub struct HelperCtx<'a> {
    pub(crate) checked: bool,
    pub(crate) mem: &'a mut MemState,
    pub(crate) maps: &'a [Arc<Map>],
    pub(crate) unwind: Option<u64>,
}

impl HelperCtx<'_> {
    /// Whether the program runs in checked mode.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// Copies `out.len()` bytes of program memory at `addr` into `out`.
    ///
    /// In checked mode the range must lie in one region the program may read;
    /// in unchecked mode the caller of the run has promised the program (and so
    /// the pointers it passes) is verified.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), HelperError> {
        let size = out.len() as u64;
        if out.is_empty() {
            return Ok(());
        }
        if self.checked && !self.mem.allows(addr, size, false) {
            return Err(HelperError::MemoryFault {
                addr,
                size,
                write: false,
            });
        }
        // SAFETY: checked mode validated the range against live regions;
        // unchecked mode relies on the caller's promise (see `run_*_unchecked`).
        unsafe { std::ptr::copy(addr as *const u8, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Copies `data` into program memory at `addr` (same rules as [`HelperCtx::read`]).
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), HelperError> {
        let size = data.len() as u64;
        if data.is_empty() {
            return Ok(());
        }
        if self.checked && !self.mem.allows(addr, size, true) {
            return Err(HelperError::MemoryFault {
                addr,
                size,
                write: true,
            });
        }
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy(data.as_ptr(), addr as *mut u8, data.len()) };
        Ok(())
    }

    /// The map whose handle (the value an `ld_imm64` map reference loads) is `handle`.
    pub fn map(&self, handle: u64) -> Option<&Arc<Map>> {
        self.maps.iter().find(|m| Arc::as_ptr(m) as u64 == handle)
    }

    /// Makes `[ptr, ptr + len)` accessible to the program for the rest of the
    /// run and keeps `keep` (the owner of that memory) alive until then.
    pub fn expose(&mut self, ptr: u64, len: u64, writable: bool, keep: KeepAlive) {
        self.mem.add(ptr, len, writable);
        self.mem.keep.push(keep);
    }

    /// Ends the program after this helper returns, with `r0 = value`.
    pub fn unwind(&mut self, value: u64) {
        self.unwind = Some(value);
    }

    fn read_vec(&self, addr: u64, len: usize) -> Result<SmallVec<[u8; 64]>, HelperError> {
        let mut v: SmallVec<[u8; 64]> = SmallVec::from_elem(0, len);
        self.read(addr, &mut v)?;
        Ok(v)
    }

    fn map_or_err(&self, handle: u64) -> Result<Arc<Map>, HelperError> {
        self.map(handle)
            .cloned()
            .ok_or_else(|| HelperError::Other(format!("{handle:#x} is not a map of this program")))
    }
}

/// Where `bpf_trace_printk` output goes.
#[derive(Clone, Default)]
pub enum TraceSink {
    /// Standard error.
    #[default]
    Stderr,
    /// Collected lines.
    Collect(Arc<Mutex<Vec<String>>>),
}

/// Helpers by id. [`HelperRegistry::kernel`] provides the kernel helpers this
/// runtime implements (and makes the interpreter execute `bpf_tail_call` and
/// `bpf_loop` itself); [`HelperRegistry::conformance`] the ones of the
/// bpf_conformance suite; [`HelperRegistry::register`] adds user helpers.
#[derive(Clone, Default)]
pub struct HelperRegistry {
    helpers: BTreeMap<i32, Arc<HelperFn>>,
    builtins: bool,
}

impl std::fmt::Debug for HelperRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelperRegistry")
            .field("ids", &self.helpers.keys().collect::<Vec<_>>())
            .field("builtins", &self.builtins)
            .finish()
    }
}

fn ktime_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn prandom_u32() -> u32 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            x = ktime_ns() ^ 0x9e37_79b9_7f4a_7c15 ^ (current_cpu() as u64) << 32;
            x |= 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 16) as u32
    })
}

/// Formats a `bpf_trace_printk` format string with up to three arguments
/// (`%d %i %u %x %X %p %c %%` with `l`/`ll` modifiers; `%s` prints `(str)`).
pub fn format_trace(fmt: &[u8], args: [u64; 3]) -> String {
    let mut out = String::new();
    let mut it = fmt.iter().copied().take_while(|&b| b != 0).peekable();
    let mut argn = 0usize;
    while let Some(c) = it.next() {
        if c != b'%' {
            out.push(c as char);
            continue;
        }
        let mut longs = 0;
        while it.peek() == Some(&b'l') {
            it.next();
            longs += 1;
        }
        let Some(conv) = it.next() else { break };
        if conv == b'%' {
            out.push('%');
            continue;
        }
        let raw = args.get(argn).copied().unwrap_or(0);
        argn += 1;
        let v = if longs == 0 { raw as u32 as u64 } else { raw };
        match conv {
            b'd' | b'i' => {
                if longs == 0 {
                    out.push_str(&(v as u32 as i32).to_string())
                } else {
                    out.push_str(&(v as i64).to_string())
                }
            }
            b'u' => out.push_str(&v.to_string()),
            b'x' => out.push_str(&format!("{v:x}")),
            b'X' => out.push_str(&format!("{v:X}")),
            b'p' => out.push_str(&format!("0x{raw:x}")),
            b'c' => out.push(v as u8 as char),
            b's' => out.push_str("(str)"),
            other => {
                out.push('%');
                out.push(other as char);
            }
        }
    }
    out
}

impl HelperRegistry {
    /// An empty registry (no helpers, no built-ins).
    pub fn new() -> HelperRegistry {
        HelperRegistry::default()
    }

    /// The kernel helpers: map lookup/update/delete (1–3), ktime_get_ns (5),
    /// trace_printk (6, to stderr), get_prandom_u32 (7), get_smp_processor_id (8),
    /// get_current_pid_tgid (14),
    /// ringbuf output/reserve/submit/discard/query (130–134), plus the built-ins
    /// tail_call (12) and loop (181).
    pub fn kernel() -> HelperRegistry {
        HelperRegistry::kernel_with_trace(TraceSink::Stderr)
    }

    /// [`HelperRegistry::kernel`] with `bpf_trace_printk` output going to `sink`.
    pub fn kernel_with_trace(sink: TraceSink) -> HelperRegistry {
        let mut r = HelperRegistry {
            helpers: BTreeMap::new(),
            builtins: true,
        };
        r.register(BPF_FUNC_MAP_LOOKUP_ELEM, |cx, a| {
            let map = cx.map_or_err(a[0])?;
            let key = cx.read_vec(a[1], map.def().key_size as usize)?;
            Ok(match map.lookup_ptr(&key) {
                Some(v) => {
                    let p = v.ptr;
                    cx.expose(v.ptr, v.len, true, v.keep);
                    p
                }
                None => 0,
            })
        });
        r.register(BPF_FUNC_MAP_UPDATE_ELEM, |cx, a| {
            let map = cx.map_or_err(a[0])?;
            let key = cx.read_vec(a[1], map.def().key_size as usize)?;
            let value = cx.read_vec(a[2], map.def().value_size as usize)?;
            Ok(map.update_prog(&key, &value, a[3]) as u64)
        });
        r.register(BPF_FUNC_MAP_DELETE_ELEM, |cx, a| {
            let map = cx.map_or_err(a[0])?;
            let key = cx.read_vec(a[1], map.def().key_size as usize)?;
            Ok(map.delete_prog(&key) as u64)
        });
        r.register(BPF_FUNC_KTIME_GET_NS, |_, _| Ok(ktime_ns()));
        r.register(BPF_FUNC_GET_CURRENT_PID_TGID, |_, _| {
            // SAFETY: getpid and gettid take no arguments and cannot fail.
            let (tgid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
            Ok((u64::from(tgid as u32) << 32) | u64::from(tid as u32))
        });
        r.register(BPF_FUNC_TRACE_PRINTK, move |cx, a| {
            let len = (a[1] as usize).min(1024);
            let fmt = cx.read_vec(a[0], len)?;
            let line = format_trace(&fmt, [a[2], a[3], a[4]]);
            let n = line.len() as u64;
            match &sink {
                TraceSink::Stderr => eprint!("{line}"),
                TraceSink::Collect(v) => {
                    if let Ok(mut g) = v.lock() {
                        g.push(line);
                    }
                }
            }
            Ok(n)
        });
        r.register(BPF_FUNC_GET_PRANDOM_U32, |_, _| Ok(prandom_u32() as u64));
        r.register(BPF_FUNC_GET_SMP_PROCESSOR_ID, |_, _| {
            Ok(current_cpu() as u64)
        });
        r.register(BPF_FUNC_RINGBUF_OUTPUT, |cx, a| {
            let map = cx.map_or_err(a[0])?;
            let Some(rb) = map.as_ringbuf() else {
                return Ok((-errno::EINVAL) as u64);
            };
            if a[3] & !3 != 0 {
                return Ok((-errno::EINVAL) as u64);
            }
            let mut data = vec![0u8; a[2].min(u32::MAX as u64) as usize];
            cx.read(a[1], &mut data)?;
            match rb.reserve(a[2]) {
                Ok(rec) => {
                    rec.write(0, &data);
                    rb.finish(rec.ptr() as u64, false);
                    Ok(0)
                }
                Err(e) => Ok(e.to_errno() as u64),
            }
        });
        r.register(BPF_FUNC_RINGBUF_RESERVE, |cx, a| {
            let map = cx.map_or_err(a[0])?;
            let Some(rb) = map.as_ringbuf() else {
                return Ok(0);
            };
            if a[2] != 0 {
                return Ok(0);
            }
            match rb.reserve(a[1]) {
                Ok(rec) => {
                    let p = rec.ptr() as u64;
                    cx.expose(p, a[1], true, rec);
                    // The map itself must outlive the record's submission.
                    cx.mem.keep.push(map.clone());
                    Ok(p)
                }
                Err(_) => Ok(0),
            }
        });
        for (id, discard) in [
            (BPF_FUNC_RINGBUF_SUBMIT, false),
            (BPF_FUNC_RINGBUF_DISCARD, true),
        ] {
            r.register(id, move |cx, a| {
                let found = cx.mem.keep.iter().any(|k| {
                    k.clone()
                        .downcast::<Map>()
                        .ok()
                        .and_then(|m| match m.kind() {
                            MapKind::RingBuf(rb) => Some(rb.finish(a[0], discard)),
                            _ => None,
                        })
                        .unwrap_or(false)
                });
                if found {
                    Ok(0)
                } else {
                    Err(HelperError::Other(format!(
                        "{:#x} is not a reserved ring-buffer record",
                        a[0]
                    )))
                }
            });
        }
        r.register(BPF_FUNC_RINGBUF_QUERY, |cx, a| {
            let map = cx.map_or_err(a[0])?;
            Ok(map.as_ringbuf().map_or(0, |rb| rb.query(a[1])))
        });
        r
    }

    /// The helpers of the bpf_conformance suite's plugins: 0 gather_bytes,
    /// 1 memfrob, 2 no_op, 3 sqrti, 4 strcmp_ext, 5 unwind (returns its first
    /// argument and ends the program with `r0 = 0` when that argument is 0).
    pub fn conformance() -> HelperRegistry {
        let mut r = HelperRegistry::new();
        r.register(0, |_, a| {
            Ok(((a[0] & 0xff) << 32)
                | ((a[1] & 0xff) << 24)
                | ((a[2] & 0xff) << 16)
                | ((a[3] & 0xff) << 8)
                | (a[4] & 0xff))
        });
        r.register(1, |cx, a| {
            let mut buf = vec![0u8; a[1].min(1 << 24) as usize];
            cx.read(a[0], &mut buf)?;
            buf.iter_mut().for_each(|b| *b ^= 42);
            cx.write(a[0], &buf)?;
            Ok(0)
        });
        r.register(2, |_, _| Ok(0));
        r.register(3, |_, a| Ok((a[0] as f64).sqrt() as u64));
        r.register(4, |cx, a| {
            let s = |cx: &HelperCtx<'_>, p: u64| -> Result<Vec<u8>, HelperError> {
                let mut out = Vec::new();
                for i in 0..4096u64 {
                    let mut b = [0u8];
                    cx.read(p.wrapping_add(i), &mut b)?;
                    if b[0] == 0 {
                        break;
                    }
                    out.push(b[0]);
                }
                Ok(out)
            };
            let (x, y) = (s(cx, a[0])?, s(cx, a[1])?);
            Ok(match x.cmp(&y) {
                std::cmp::Ordering::Less => -1i64 as u64,
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 1,
            })
        });
        r.register(5, |cx, a| {
            if a[0] == 0 {
                cx.unwind(0);
            }
            Ok(a[0])
        });
        r
    }

    /// Registers (or replaces) helper `id`.
    pub fn register<F>(&mut self, id: i32, f: F) -> &mut HelperRegistry
    where
        F: Fn(&mut HelperCtx<'_>, [u64; 5]) -> Result<u64, HelperError> + Send + Sync + 'static,
    {
        self.helpers.insert(id, Arc::new(f));
        self
    }

    /// The helper registered under `id`.
    pub fn get(&self, id: i32) -> Option<Arc<HelperFn>> {
        self.helpers.get(&id).cloned()
    }

    /// Whether the interpreter executes `bpf_tail_call` (12) and `bpf_loop` (181) itself.
    pub fn kernel_builtins(&self) -> bool {
        self.builtins
    }
}
