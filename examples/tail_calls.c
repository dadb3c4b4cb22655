/* tail_calls: a dispatcher that tail-calls through a program array into one of
 * two handlers (each in its own "socket/N" section), falling back when the
 * slot is empty. */
#include "bpfkit.h"

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
	__uint(max_entries, 4);
} jump_table SEC(".maps");

SEC("socket/1") int handle_small(struct __sk_buff *skb)
{
	return 1;
}

SEC("socket/2") int handle_large(struct __sk_buff *skb)
{
	return skb->len > 1500 ? 0 : 2;
}

SEC("socket") int dispatch(struct __sk_buff *skb)
{
	u32 slot = skb->len > 512 ? 2 : 1;
	bpf_tail_call(skb, &jump_table, slot);
	/* only reached when the slot is empty */
	return -1;
}

char _license[] SEC("license") = "GPL";
