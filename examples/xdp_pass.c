/* xdp_pass: the smallest useful program, lets every packet through. */
#include "bpfkit.h"

SEC("xdp") int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
