//! The x86-64 JIT against the running kernel's JIT and rbpf's JIT, in one run.
//!
//! Per `../shared/bench/` program, one criterion group (`run/<prog>`) with
//! ns/run of:
//! - `bpfkit-x86`: our JIT through `bpf-vm` (`Engine::X86`, the `mem` entry
//!   on `packet.bin`), with the frame sizes `bpf-verifier` computes for the
//!   program (as the kernel's JIT gets them from its verifier; 512 bytes
//!   per frame if ours rejects it). These programs call no helper, so
//!   `bpf-vm` runs them as a plain native call, as rbpf's raw entry does;
//! - `kernel-jit`: the kernel's JIT, `BPF_PROG_TEST_RUN` of the `xdp` entry
//!   with `repeat` = the iteration count criterion asks for; the time is the
//!   kernel's own per-run mean (`duration`) times that count, so syscall
//!   entry and packet copying are not counted;
//! - `rbpf-jit`: the `rbpf` crate's x86-64 JIT (`EbpfVmRaw`, with `r2 = len`
//!   prepended, since its raw entry only sets `r1`);
//! - `bpfkit-interp`: our interpreter (checked), for reference.
//!
//! Userspace engines are timed in thread CPU time (see `cpu_time`), the
//! kernel by its own timer, which also stops while the thread is scheduled
//! out; wall time on a loaded 2-CPU machine would charge other processes'
//! time to ours only.
//!
//! Every engine's result is checked against the bench README before it is
//! timed; an engine that gets it wrong or cannot run the program is
//! reported on stderr and left out (never timed).
//!
//! Then JIT compile time (`compile/<prog>`, throughput in instructions, so
//! criterion's elements/s gives ns per instruction = 1e9 / that): ours
//! (a reused `bpf_jit_x86::Compiler`: `compile_code`, to a byte vector,
//! and `compile`, mapped executable, both from a decoded `Program`;
//! `bpfkit-x86-decode-exec`, `Program::decode` of the bytecode and then
//! `compile`, the like-for-like counterpart of rbpf's, which decodes as it
//! compiles; and `bpf_jit_x86::compile` with a fresh compiler each time)
//! against rbpf's `jit_compile` (which takes the raw bytecode, and also
//! allocates and maps its page), on
//! the six programs and on generated straight-line-and-branch programs. rbpf's
//! JIT writes into one fixed 4 KiB page, so the largest generated program it
//! can take is small; the 4096-instruction one is timed for ours only.

use std::hint::black_box;
use std::time::Duration;

use bpf_isa::Program;
use bpf_jit::{HelperTable, JitOptions};
use bpf_tests::benchprogs::{self, Expected, EXPECTED};
use bpf_tests::kernel;
use bpf_vm::{Engine, LoadedProgram};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Runs `f`, turning a panic (rbpf asserts when its page overflows) into
/// `None`, without the panic message.
fn no_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    std::panic::set_hook(hook);
    r
}

/// This thread's CPU time (user + system) in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Times `iters` calls of `f` in thread CPU time rather than wall time:
/// like the kernel's `BPF_PROG_TEST_RUN` timer, which stops while the
/// thread is scheduled out, it does not count time other processes take
/// on a loaded machine.
fn cpu_time<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let t0 = thread_cpu_ns();
    for _ in 0..iters {
        black_box(f());
    }
    Duration::from_nanos(thread_cpu_ns().saturating_sub(t0))
}

fn run_benches(c: &mut Criterion) {
    let packet = match benchprogs::packet() {
        Ok(p) => p,
        Err(e) => panic!("bench data missing ({e}): nothing to measure"),
    };
    let kernel_ok = match kernel::available() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("kernel JIT NOT MEASURED: bpf() unavailable: {e}");
            false
        }
    };
    for e in EXPECTED {
        run_one(c, &e, &packet, kernel_ok);
    }
}

fn run_one(c: &mut Criterion, e: &Expected, packet: &[u8], kernel_ok: bool) {
    let name = e.name;
    let p = benchprogs::load(name).unwrap_or_else(|err| panic!("{err}"));
    let mut g = c.benchmark_group(format!("run/{name}"));

    // Ours, x86-64 JIT, with the verifier's stack depths when it accepts
    // the program.
    let kind = bpf_verifier::ProgKind::Mem {
        size: packet.len() as u32,
    };
    let mut builder = LoadedProgram::builder(&p.mem, Engine::X86);
    match bpf_verifier::verify(&p.mem, &bpf_verifier::Options::new(kind)) {
        Ok(vp) => builder = builder.stack_depths(vp.stack_depth),
        Err(err) => eprintln!("{name}: our verifier rejects it ({err}); 512-byte frames"),
    }
    let ours = builder
        .build()
        .unwrap_or_else(|err| panic!("{name}: x86 JIT: {err}"));
    let mut mem = packet.to_vec();
    // SAFETY: the bench programs only read the memory they are given (r1, r2
    // = its length), checked by the interpreter run below and by the kernel's
    // verifier on the same body; they call no helpers.
    let run_x86 = |m: &mut [u8]| unsafe { ours.run_mem(m) };
    let got = run_x86(&mut mem).unwrap_or_else(|err| panic!("{name}: x86 JIT run: {err}"));
    assert_eq!(got, e.mem, "{name}: x86 JIT result");
    g.bench_function("bpfkit-x86", |b| {
        b.iter_custom(|n| cpu_time(n, || run_x86(black_box(&mut mem))))
    });

    // Ours, the one-pass baseline tier (`bpf_jit_x86::Baseline`), from the
    // bytecode with 512-byte frames: the code quality of the fast compile.
    let helpers = bpf_jit::HelperTable::new();
    match bpf_jit_x86::Baseline::new()
        .try_compile(&p.mem.to_bytes(), &bpf_jit::JitOptions::new(&helpers))
    {
        Ok(Some(base)) => {
            // SAFETY: as for `run_x86` above (same program, same memory).
            let run_base = |m: &mut [u8]| unsafe { base.call_mem(m) };
            assert_eq!(run_base(&mut mem), e.mem, "{name}: baseline result");
            g.bench_function("bpfkit-x86-baseline", |b| {
                b.iter_custom(|n| cpu_time(n, || run_base(black_box(&mut mem))))
            });
        }
        Ok(None) => {
            eprintln!("{name}: the baseline left it to the optimizing compiler; NOT MEASURED")
        }
        Err(err) => eprintln!("{name}: baseline: {err}; NOT MEASURED"),
    }

    // The kernel's JIT.
    if kernel_ok {
        match benchprogs::kernel_load_xdp(&p.xdp, name) {
            Ok(fd) => match kernel::prog_test_run(&fd, packet, 1) {
                Ok(r) if r.retval == e.xdp => {
                    g.bench_function("kernel-jit", |b| {
                        b.iter_custom(|iters| {
                            let mut left = iters;
                            let mut ns = 0u64;
                            while left > 0 {
                                let n = left.min(1 << 24) as u32;
                                let r = kernel::prog_test_run(&fd, packet, n)
                                    .unwrap_or_else(|err| panic!("{name}: test run: {err}"));
                                ns += u64::from(r.duration_ns) * u64::from(n);
                                left -= u64::from(n);
                            }
                            Duration::from_nanos(ns)
                        })
                    });
                }
                Ok(r) => eprintln!(
                    "{name}: kernel returned {:#x}, expected {:#x}; NOT MEASURED",
                    r.retval, e.xdp
                ),
                Err(err) => eprintln!("{name}: kernel test run failed: {err}; NOT MEASURED"),
            },
            Err(err) => eprintln!("{name}: the kernel rejected the xdp entry: {err}; NOT MEASURED"),
        }
    }

    // rbpf's JIT.
    let code: &'static [u8] =
        Box::leak(benchprogs::with_len_prefix(&p.mem, packet.len() as u32).into_boxed_slice());
    match rbpf::EbpfVmRaw::new(Some(code)) {
        Ok(mut rvm) => match no_panic(|| rvm.jit_compile()) {
            Some(Ok(())) => {
                // SAFETY: as for ours: the program only touches `mem`.
                match unsafe { rvm.execute_program_jit(&mut mem) } {
                    Ok(r) if r == e.mem => {
                        g.bench_function("rbpf-jit", |b| {
                            // SAFETY: see above.
                            b.iter_custom(|n| {
                                cpu_time(n, || unsafe {
                                    rvm.execute_program_jit(black_box(&mut mem))
                                })
                            })
                        });
                    }
                    Ok(r) => eprintln!(
                        "{name}: rbpf JIT returned {r:#x}, expected {:#x}; NOT MEASURED",
                        e.mem
                    ),
                    Err(err) => eprintln!("{name}: rbpf JIT run failed: {err}; NOT MEASURED"),
                }
            }
            Some(Err(err)) => eprintln!("{name}: rbpf JIT refused: {err}; NOT MEASURED"),
            None => eprintln!("{name}: rbpf JIT panicked; NOT MEASURED"),
        },
        Err(err) => eprintln!("{name}: rbpf rejected the program: {err}; NOT MEASURED"),
    }

    // Ours, interpreter (checked), for reference.
    let interp = LoadedProgram::builder(&p.mem, Engine::Interp)
        .build()
        .unwrap_or_else(|err| panic!("{name}: interpreter: {err}"));
    // SAFETY: the interpreter checks every access.
    let run_interp = |m: &mut [u8]| unsafe { interp.run_mem(m) };
    let got = run_interp(&mut mem).unwrap_or_else(|err| panic!("{name}: interpreter: {err}"));
    assert_eq!(got, e.mem, "{name}: interpreter result");
    g.bench_function("bpfkit-interp", |b| {
        b.iter_custom(|n| cpu_time(n, || run_interp(black_box(&mut mem))))
    });
    g.finish();
}

fn compile_benches(c: &mut Criterion) {
    let helpers = HelperTable::new();
    let opts = JitOptions::new(&helpers);
    let mut progs: Vec<(String, Program)> = Vec::new();
    for e in EXPECTED {
        let p = benchprogs::load(e.name).unwrap_or_else(|err| panic!("{err}"));
        progs.push((e.name.to_string(), p.mem));
    }
    for blocks in [16usize, 24, 273] {
        let p = bpf_isa::arbitrary::initialized_bench_program(blocks);
        progs.push((format!("gen_{}", p.len()), p));
    }
    for (name, prog) in &progs {
        let mut g = c.benchmark_group(format!("compile/{name}"));
        // Per eBPF instruction (an ld_imm64 counts once), as both JITs see them.
        g.throughput(Throughput::Elements(prog.len() as u64));
        let code = bpf_jit_x86::compile_code(prog, &opts)
            .unwrap_or_else(|err| panic!("{name}: x86 JIT: {err}"));
        // One `Compiler` per bench, reused across iterations (its buffers
        // are sized by the first compile), as a loader compiling many
        // programs would use it; rbpf's `jit_compile` likewise reuses its VM.
        let mut jit = bpf_jit_x86::Compiler::new();
        g.bench_function("bpfkit-x86-code", |b| {
            b.iter_custom(|n| cpu_time(n, || jit.compile_code(black_box(prog), &opts)))
        });
        g.bench_function("bpfkit-x86-exec", |b| {
            b.iter_custom(|n| cpu_time(n, || jit.compile(black_box(prog), &opts)))
        });
        // From the bytecode, as rbpf's `jit_compile` starts (it decodes
        // each instruction as it goes): `Program::decode`, then the reused
        // compiler into executable memory.
        let bytecode = prog.to_bytes();
        g.bench_function("bpfkit-x86-decode-exec", |b| {
            b.iter_custom(|n| {
                cpu_time(n, || {
                    Program::decode(black_box(&bytecode))
                        .ok()
                        .map(|p| jit.compile(&p, &opts))
                })
            })
        });
        // The one-pass baseline compiler from the bytecode (reused), with
        // its fallback to the optimizing one: the same starting point as
        // rbpf's `jit_compile`.
        let mut baseline = bpf_jit_x86::Baseline::new();
        if baseline
            .try_compile(&bytecode, &opts)
            .ok()
            .flatten()
            .is_none()
        {
            eprintln!("compile/{name}: the baseline falls back to the optimizing compiler");
        }
        g.bench_function("bpfkit-x86-baseline", |b| {
            b.iter_custom(|n| cpu_time(n, || baseline.compile(black_box(&bytecode), &opts)))
        });
        // A fresh compiler each time (`bpf_jit_x86::compile`): its own
        // allocations included.
        g.bench_function("bpfkit-x86-exec-fresh", |b| {
            b.iter_custom(|n| cpu_time(n, || bpf_jit_x86::compile(black_box(prog), &opts)))
        });
        let bytes: &'static [u8] = Box::leak(prog.to_bytes().into_boxed_slice());
        match rbpf::EbpfVmRaw::new(Some(bytes)) {
            Ok(mut rvm) => match no_panic(|| rvm.jit_compile()) {
                Some(Ok(())) => {
                    g.bench_function("rbpf-jit", |b| {
                        b.iter_custom(|n| cpu_time(n, || rvm.jit_compile()))
                    });
                }
                Some(Err(err)) => eprintln!("compile/{name}: rbpf JIT refused: {err}"),
                None => eprintln!(
                    "compile/{name}: rbpf JIT panicked (its image is one 4 KiB page; ours is {} bytes); rbpf NOT MEASURED",
                    code.code.len()
                ),
            },
            Err(err) => eprintln!("compile/{name}: rbpf rejected the program: {err}"),
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = run_benches, compile_benches
}
criterion_main!(benches);
