/* subprogs: bpf-to-bpf calls.  Two programs share one section ("tc"), a third
 * sits in "socket"; all call non-inlined subprograms in .text, static ones
 * (relocated against the .text section symbol) and a global one (relocated
 * against its own symbol), and one subprogram calls another. */
#include "bpfkit.h"

static NOINLINE u64 mix(u64 a, u64 b)
{
	return (a ^ b) * 0x100000001b3ULL;
}

static NOINLINE u64 rotate_add(u64 a, u64 i)
{
	return mix((a << 7) | (a >> 57), i) + i;
}

NOINLINE u64 global_sum(u64 a, u64 b)
{
	return a + b + 1;
}

SEC("tc") int classify_a(struct __sk_buff *skb)
{
	u64 acc = skb->len;
	acc = mix(acc, skb->mark);
	return (int)(acc & 1);
}

SEC("tc") int classify_b(struct __sk_buff *skb)
{
	u64 acc = skb->protocol;
	acc = rotate_add(acc, skb->len);
	acc = global_sum(acc, 3);
	return (int)(acc & 3);
}

SEC("socket") int sock_filter(struct __sk_buff *skb)
{
	return (int)global_sum(skb->len, 0);
}

char _license[] SEC("license") = "GPL";
