/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/* Kernel-version differences, resolved by CO-RE at load time (as bcc's core_fixes.bpf.h does). */
#ifndef REVENANT_CORE_FIXES_BPF_H
#define REVENANT_CORE_FIXES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>

/* Since 6.16 sched_process_exit passes `bool group_dead` as a second argument; the perf
 * tracepoint record gained the same field, so its presence tells which prototype we run on. */
struct trace_event_raw_sched_process_exit___gd {
	bool group_dead;
} __attribute__((preserve_access_index));

static __always_inline bool exit_tp_has_group_dead(void)
{
	return bpf_core_field_exists(struct trace_event_raw_sched_process_exit___gd, group_dead);
}

/* In a tp_btf/sched_process_exit program (ctx its arguments): did the last thread of p's group
 * exit? Older kernels say so through signal->live. */
static __always_inline bool exit_group_dead(struct task_struct *p, unsigned long long *ctx)
{
	if (exit_tp_has_group_dead())
		return (bool)ctx[1];
	return BPF_CORE_READ(p, signal, live.counter) == 0;
}

#endif
