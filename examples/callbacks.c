/* callbacks: bpf_loop with two static callbacks (ld_imm64 of a function
 * address, BPF_PSEUDO_FUNC after linking) and a plain bpf-to-bpf call. */
#include "bpfkit.h"

static NOINLINE long pad(u64 x)
{
	return x * 3;
}

static long step(u32 i, void *ctx)
{
	u64 *acc = ctx;
	*acc += i;
	return 0;
}

static long step2(u32 i, void *ctx)
{
	u64 *acc = ctx;
	*acc ^= i;
	return 0;
}

SEC("xdp") int looper(struct xdp_md *ctx)
{
	u64 acc = ctx->ingress_ifindex;

	bpf_loop(10, step, &acc, 0);
	bpf_loop(5, step2, &acc, 0);
	return pad(acc) & 3;
}

char _license[] SEC("license") = "GPL";
