/* legacy_maps: maps declared the old way, as struct bpf_map_def in the
 * "maps" section, plus a kernel version in the "version" section. */
#include "bpfkit.h"

struct bpf_map_def SEC("maps") packet_count = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(u32),
	.value_size = sizeof(u64),
	.max_entries = 4,
	.map_flags = 0,
};

struct bpf_map_def SEC("maps") seen_marks = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(u32),
	.value_size = sizeof(u32),
	.max_entries = 256,
	.map_flags = BPF_F_NO_PREALLOC,
};

SEC("socket") int count_packets(struct __sk_buff *skb)
{
	u32 key = skb->pkt_type & 3;
	u64 *count = bpf_map_lookup_elem(&packet_count, &key);
	if (count)
		__sync_fetch_and_add(count, 1);
	u32 mark = skb->mark;
	u32 one = 1;
	bpf_map_update_elem(&seen_marks, &mark, &one, BPF_ANY);
	return 0;
}

char _license[] SEC("license") = "Dual MIT/GPL";
u32 _version SEC("version") = 0x060c00;
