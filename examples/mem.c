/* mem: a uBPF/rbpf-style program over plain memory (r1 = pointer, r2 =
 * length), in the "mem" section as the benchmark programs spell it.  Returns
 * the sum of the bytes mixed with an FNV-1a hash of them. */
#include "bpfkit.h"

static NOINLINE u64 fnv1a(const u8 *p, u64 len)
{
	u64 h = 0xcbf29ce484222325ULL;
	for (u64 i = 0; i < len && i < 4096; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

SEC("mem") u64 mem_sum(void *mem, u64 len)
{
	const u8 *p = mem;
	u64 sum = 0;
	for (u64 i = 0; i < len && i < 4096; i++)
		sum += p[i];
	return sum ^ fnv1a(p, len);
}

char _license[] SEC("license") = "GPL";
