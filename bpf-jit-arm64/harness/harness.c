/* AArch64 execution harness for bpf-jit-arm64, run under qemu-aarch64.
 *
 * Protocol on stdin/stdout (all integers little-endian):
 *   hello (harness -> host): u64 magic, u64 near, u64 far, u64 data,
 *         u64 region_len, u64 nhelpers, u64 helper[nhelpers]
 *   request: u32 op
 *     0 EXIT
 *     1 WRITE u64 addr, u64 len, len bytes      -> u32 0
 *     2 READ  u64 addr, u64 len                 -> len bytes
 *     3 CALL  u64 addr, u64 a1..a5              -> u32 signal (0 = returned), u64 r0
 *     4 CALL8 u64 addr, u64 a1..a8              -> u32 signal (0 = returned), u64 r0
 *     5 START u64 addr, u64 a1..a5              -> u32 0 (a second thread calls
 *           addr(a1..a5) in a loop until STOP (at least once), counting results: r0 < 16 in
 *           counts[r0], anything else in counts[16])
 *     6 STOP                                    -> u64 calls, u64 counts[17]
 *     7 BENCH u64 addr, u64 iters, u64 a1..a8   -> u32 signal (0 = returned), u64 ns
 *           (calls addr(a1..a8) iters times; ns: CLOCK_MONOTONIC time around
 *           the whole loop)
 *     9 MAP_SHARED u64 addr, u64 len, u64 n, n bytes of a path
 *                                           -> u32 status (0, else errno)
 *           (maps the file at the path, e.g. the host's /proc/PID/fd/N of
 *           a memfd, shared, at exactly addr: the host maps it at the same
 *           address, so pointers into it are valid in both processes)
 *    10 CALL_ON u64 addr, u64 sp, u64 a1..a5   -> like CALL, with the stack
 *           pointer switched to sp (16-byte aligned) for the call
 *    11 RETURN u64 r0 (only while serving an upcall): the upcall returns r0
 *    12 CALL_ON6 u64 addr, u64 sp, u64 a1..a6  -> like CALL_ON, with a sixth
 *           argument in x5 (a private-stack entry's frame top)
 * Upcalls: the function `upcall` (the last helper of the hello) is entered
 * by a stub with a1..a5 in x0-x4 and an id in x5. It sends, in place of a
 * CALL/CALL_ON reply, u32 0xffffffff, u32 id, u64 a1..a5, then serves
 * requests (nested calls included) until RETURN, whose value it returns.
 * Regions: near code (RWX, mapped within 128 MiB of this binary's text, so
 * `bl` reaches the helpers), far code (RWX, out of `bl` range) and data (RW).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t u64;
typedef u64 (*fn5)(u64, u64, u64, u64, u64);
typedef u64 (*fn8)(u64, u64, u64, u64, u64, u64, u64, u64);

#define MAGIC 0x62706661726d3634ull /* "bpfarm64" */
#define REGION (4ull << 20)
#define NEAR_HINT 0x04000000ull
#define FAR_HINT 0x4000000000ull

static int get(void *p, size_t n) {
  char *c = p;
  while (n) {
    ssize_t r = read(0, c, n);
    if (r <= 0) return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

static int put(const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t r = write(1, c, n);
    if (r <= 0) return -1;
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

/* Helpers (their ids are the host's business). */
static u64 h_ret_arg1(u64 a, u64 b, u64 c, u64 d, u64 e) {
  (void)b; (void)c; (void)d; (void)e;
  return a;
}
static u64 h_weighted_sum(u64 a, u64 b, u64 c, u64 d, u64 e) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e;
}
/* ((u64 *)map)[idx] += val; returns the new value. */
static u64 h_map_add(u64 map, u64 idx, u64 val, u64 d, u64 e) {
  (void)d; (void)e;
  u64 *m = (u64 *)map;
  m[idx] += val;
  return m[idx];
}
/* Calls the callback cb(arg, 10, 20, 30, 40) and returns its result + 1. */
static u64 h_call_callback(u64 cb, u64 arg, u64 c, u64 d, u64 e) {
  (void)c; (void)d; (void)e;
  return ((fn5)cb)(arg, 10, 20, 30, 40) + 1;
}

/* bpf_map_lookup_elem on an array map laid out as
 * {u32 max_entries, u32 value_size, u64 pad, values...} with each value
 * padded to a multiple of 8 bytes: the value's address, or 0 (NULL) when the
 * u32 key is out of range (the kernel's array-map semantics). */
static u64 h_array_lookup(u64 map, u64 key_ptr, u64 c, u64 d, u64 e) {
  (void)c; (void)d; (void)e;
  const uint32_t *hdr = (const uint32_t *)map;
  uint32_t key = *(const uint32_t *)key_ptr;
  if (key >= hdr[0]) return 0;
  u64 stride = ((u64)hdr[1] + 7) & ~7ull;
  return map + 16 + (u64)key * stride;
}

/* a + 2b + 3c + ... + 8h: a native function of eight arguments. */
static u64 h_weighted_sum8(u64 a, u64 b, u64 c, u64 d, u64 e, u64 f, u64 g, u64 h) {
  return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}

/* The kernel's bpf_skb_load_helper_{8,16,32} contract over a context
 * {u64 data; u64 len}: `size` big-endian bytes at the signed 32-bit offset
 * `off` as a host number, or -14 (-EFAULT) when out of the packet. */
static u64 h_skb_load(u64 ctx, u64 off, u64 size, u64 d, u64 e) {
  (void)d; (void)e;
  const u64 *skb = (const u64 *)ctx;
  int32_t o = (int32_t)(uint32_t)off;
  if (o < 0 || (u64)o + size > skb[1]) return (u64)-14;
  const unsigned char *p = (const unsigned char *)skb[0] + o;
  u64 v = 0;
  for (u64 i = 0; i < size; i++) v = v << 8 | p[i];
  return v;
}


/* call_on_stack(fn, sp, a1..a6): calls fn(a1..a6) with SP = sp. */
u64 call_on_stack(u64 fn, u64 sp, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5, u64 a6);
__asm__(".text\n.global call_on_stack\n.type call_on_stack, %function\n"
        "call_on_stack:\n"
        "  stp x29, x30, [sp, #-16]!\n"
        "  mov x29, sp\n"
        "  mov x9, x0\n"
        "  mov sp, x1\n"
        "  mov x0, x2\n  mov x1, x3\n  mov x2, x4\n  mov x3, x5\n  mov x4, x6\n  mov x5, x7\n"
        "  blr x9\n"
        "  mov sp, x29\n"
        "  ldp x29, x30, [sp], #16\n"
        "  ret\n");

static int serve(int nested, u64 *ret);

/* Entered from a per-id stub (x5 = id): asks the host to run the helper. */
static u64 upcall(u64 a, u64 b, u64 c, u64 d, u64 e, u64 id) {
  struct { uint32_t kind; uint32_t id; u64 a[5]; } msg = {0xffffffffu, (uint32_t)id, {a, b, c, d, e}};
  if (put(&msg, sizeof msg)) _exit(5);
  u64 r0 = 0;
  int rc = serve(1, &r0);
  if (rc) _exit(rc);
  return r0;
}

/* The runner thread of START/STOP. */
static u64 run_args[6];
static volatile int run_stop;
static u64 run_calls, run_counts[17];
static void *runner(void *unused) {
  (void)unused;
  /* At least one call, however soon STOP comes. */
  do {
    u64 r = ((fn5)run_args[0])(run_args[1], run_args[2], run_args[3], run_args[4], run_args[5]);
    run_counts[r < 16 ? r : 16]++;
    run_calls++;
  } while (!__atomic_load_n(&run_stop, __ATOMIC_ACQUIRE));
  return NULL;
}

static sigjmp_buf jb;
static pthread_t main_thread;
/* A fault in the main thread returns to the request loop; one in the
 * runner thread (START) ends the harness, as its host-side doc says. */
static void on_signal(int sig) {
  if (!pthread_equal(pthread_self(), main_thread)) _exit(128 + sig);
  siglongjmp(jb, sig);
}

static pthread_t run_thread;
static int running;

/* The request loop: the harness's main loop (nested = 0), or an upcall's
 * (nested = 1: returns 0 with *ret set on RETURN). */
static int serve(int nested, u64 *ret) {
  for (;;) {
    uint32_t op;
    if (get(&op, 4)) return nested ? 4 : 0;
    if (op == 0) { if (nested) _exit(0); return 0; }
    if (op == 1) {
      u64 h[2];
      if (get(h, sizeof h)) return 4;
      if (get((void *)h[0], h[1])) return 4;
      __builtin___clear_cache((char *)h[0], (char *)(h[0] + h[1]));
      uint32_t ok = 0;
      if (put(&ok, 4)) return 5;
    } else if (op == 2) {
      u64 h[2];
      if (get(h, sizeof h)) return 4;
      if (put((void *)h[0], h[1])) return 5;
    } else if (op == 3) {
      u64 a[6];
      if (get(a, sizeof a)) return 4;
      volatile u64 r0 = 0;
      sigjmp_buf saved;
      memcpy(&saved, &jb, sizeof jb);
      int sig = sigsetjmp(jb, 1);
      if (sig == 0) r0 = ((fn5)a[0])(a[1], a[2], a[3], a[4], a[5]);
      memcpy(&jb, &saved, sizeof jb);
      struct { uint32_t sig; uint32_t pad; u64 r0; } reply = {(uint32_t)sig, 0, r0};
      if (put(&reply, sizeof reply)) return 5;
    } else if (op == 4) {
      u64 a[9];
      if (get(a, sizeof a)) return 4;
      volatile u64 r0 = 0;
      sigjmp_buf saved;
      memcpy(&saved, &jb, sizeof jb);
      int sig = sigsetjmp(jb, 1);
      if (sig == 0) r0 = ((fn8)a[0])(a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
      memcpy(&jb, &saved, sizeof jb);
      struct { uint32_t sig; uint32_t pad; u64 r0; } reply = {(uint32_t)sig, 0, r0};
      if (put(&reply, sizeof reply)) return 5;
    } else if (op == 5) {
      if (get(run_args, sizeof run_args)) return 4;
      uint32_t ok = 1;
      if (!running) {
        run_stop = 0;
        run_calls = 0;
        memset(run_counts, 0, sizeof run_counts);
        ok = pthread_create(&run_thread, NULL, runner, NULL) != 0;
        running = ok == 0;
      }
      if (put(&ok, 4)) return 5;
    } else if (op == 6) {
      u64 reply[18] = {0};
      if (running) {
        __atomic_store_n(&run_stop, 1, __ATOMIC_RELEASE);
        pthread_join(run_thread, NULL);
        running = 0;
        reply[0] = run_calls;
        memcpy(reply + 1, run_counts, sizeof run_counts);
      }
      if (put(reply, sizeof reply)) return 5;
    } else if (op == 7) {
      u64 a[10];
      if (get(a, sizeof a)) return 4;
      volatile u64 ns = 0, sink = 0;
      struct timespec t0, t1;
      sigjmp_buf saved;
      memcpy(&saved, &jb, sizeof jb);
      int sig = sigsetjmp(jb, 1);
      if (sig == 0) {
        fn8 f = (fn8)a[0];
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (u64 i = 0; i < a[1]; i++) sink += f(a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns = (u64)(t1.tv_sec - t0.tv_sec) * 1000000000ull + (u64)t1.tv_nsec - (u64)t0.tv_nsec;
      }
      (void)sink;
      memcpy(&jb, &saved, sizeof jb);
      struct { uint32_t sig; uint32_t pad; u64 ns; } reply = {(uint32_t)sig, 0, ns};
      if (put(&reply, sizeof reply)) return 5;
    } else if (op == 9) {
      u64 h[3];
      if (get(h, sizeof h)) return 4;
      char path[256];
      if (h[2] >= sizeof path) return 4;
      if (get(path, h[2])) return 4;
      path[h[2]] = 0;
      uint32_t st = 0;
      int fd = open(path, O_RDWR);
      if (fd < 0) {
        st = (uint32_t)errno;
      } else {
        void *p = mmap((void *)h[0], h[1], PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
        if (p == MAP_FAILED) st = (uint32_t)errno;
        else if (p != (void *)h[0]) { munmap(p, h[1]); st = EEXIST; }
        close(fd);
      }
      if (put(&st, 4)) return 5;
    } else if (op == 10 || op == 12) {
      u64 a[8] = {0};
      if (get(a, op == 12 ? sizeof a : 7 * sizeof(u64))) return 4;
      volatile u64 r0 = 0;
      sigjmp_buf saved;
      memcpy(&saved, &jb, sizeof jb);
      int sig = sigsetjmp(jb, 1);
      if (sig == 0) r0 = call_on_stack(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
      memcpy(&jb, &saved, sizeof jb);
      struct { uint32_t sig; uint32_t pad; u64 r0; } reply = {(uint32_t)sig, 0, r0};
      if (put(&reply, sizeof reply)) return 5;
    } else if (op == 11) {
      u64 r;
      if (get(&r, 8)) return 4;
      if (!nested) return 6;
      *ret = r;
      return 0;
    } else {
      return 6;
    }
  }
}

int main(void) {
  void *near = mmap((void *)NEAR_HINT, REGION, PROT_READ | PROT_WRITE | PROT_EXEC,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  void *far = mmap((void *)FAR_HINT, REGION, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void *data = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (near == MAP_FAILED || far == MAP_FAILED || data == MAP_FAILED) return 2;

  main_thread = pthread_self();
  static char altstack[65536];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_ONSTACK | SA_NODEFER;
  int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE};
  for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);

  u64 hello[14] = {MAGIC, (u64)near, (u64)far, (u64)data, REGION, 8,
                   (u64)h_ret_arg1, (u64)h_weighted_sum, (u64)h_map_add, (u64)h_call_callback,
                   (u64)h_weighted_sum8, (u64)h_array_lookup, (u64)h_skb_load, (u64)upcall};
  if (put(hello, sizeof hello)) return 3;
  return serve(0, NULL);
}
