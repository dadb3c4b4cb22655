/* global_data: .data, .rodata, .bss and a string literal (.rodata.str1.1),
 * used together with helper calls (map lookup/update, bpf_ktime_get_ns,
 * bpf_trace_printk) from a kprobe and a tracepoint program. */
#include "bpfkit.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1024);
} last_call SEC(".maps");

u64 call_count = 7;                       /* .data */
u32 sample_every = 3;                     /* .data */
const volatile u32 target_pid = 42;       /* .rodata */
const volatile u64 min_gap_ns = 1000;     /* .rodata */
u64 total_gap_ns;                         /* .bss */
static u64 dropped;                       /* .bss, static */

SEC("kprobe/do_sys_openat2") int trace_open(void *ctx)
{
	u32 pid = (u32)(bpf_get_current_pid_tgid() >> 32);
	u64 now = bpf_ktime_get_ns();

	if (pid != target_pid)
		return 0;
	call_count++;
	u64 *prev = bpf_map_lookup_elem(&last_call, &pid);
	if (prev) {
		u64 gap = now - *prev;
		if (gap < min_gap_ns)
			dropped++;
		total_gap_ns += gap;
	}
	bpf_map_update_elem(&last_call, &pid, &now, BPF_ANY);
	if (call_count % sample_every == 0)
		bpf_trace_printk("open by pid %u\n", sizeof("open by pid %u\n"), pid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close") int trace_close(void *ctx)
{
	bpf_trace_printk("close, dropped %llu\n", sizeof("close, dropped %llu\n"), dropped);
	return 0;
}

char _license[] SEC("license") = "GPL";
