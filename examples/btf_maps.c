/* btf_maps: maps declared with BTF in the ".maps" section, the way libbpf's
 * __uint/__type macros spell them. */
#include "bpfkit.h"

struct flow_key {
	u32 saddr;
	u32 daddr;
	u16 sport;
	u16 dport;
	u8 proto;
};

struct flow_stats {
	u64 packets;
	u64 bytes;
	u64 last_seen_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} flows SEC(".maps");

typedef u32 counter_index_t;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, counter_index_t);
	__type(value, u64[2]);
	__uint(max_entries, 8);
	__uint(pinning, 1);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(key_size, 8);
	__uint(value_size, 16);
	__uint(max_entries, 128);
} recent SEC(".maps");

SEC("xdp") int track_flows(struct xdp_md *ctx)
{
	void *data = (void *)(unsigned long)ctx->data;
	void *data_end = (void *)(unsigned long)ctx->data_end;
	struct flow_key key = {};
	counter_index_t idx = 0;

	if (data + 16 > data_end)
		return XDP_PASS;
	__builtin_memcpy(&key, data, 13);
	struct flow_stats *st = bpf_map_lookup_elem(&flows, &key);
	if (st) {
		st->packets++;
		st->bytes += data_end - data;
		st->last_seen_ns = bpf_ktime_get_ns();
	} else {
		struct flow_stats fresh = { 1, data_end - data, bpf_ktime_get_ns() };
		bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST);
	}
	u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		c[0]++;
	u64 k8 = key.saddr;
	u64 v16[2] = { key.daddr, key.sport };
	bpf_map_update_elem(&recent, &k8, v16, BPF_ANY);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
