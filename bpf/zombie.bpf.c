// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Process exits and reaps: a thread group whose last thread exits is a zombie until its leader is
 * freed. Userspace pairs the two records by (pid, start time) and owns the grace deadline. */
#include "common.bpf.h"
#include "core_fixes.bpf.h"
#include "zombie_rec.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

static __always_inline void fill_parent(struct exit_event *e, struct task_struct *leader)
{
	struct task_struct *parent = BPF_CORE_READ(leader, real_parent);

	e->ppid = BPF_CORE_READ(parent, tgid);
	bpf_probe_read_kernel_str(e->parent_comm, sizeof(e->parent_comm), BPF_CORE_READ(parent, comm));
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	struct task_struct *leader;
	struct exit_event *e;

	if (!exit_group_dead(p, ctx))
		return 0;

	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	leader = BPF_CORE_READ(p, group_leader);
	e->type = REV_EV_EXIT;
	e->pid = BPF_CORE_READ(p, tgid);
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = BPF_CORE_READ(leader, start_time);
	e->uid = BPF_CORE_READ(leader, cred, uid.val);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), BPF_CORE_READ(leader, comm));
	fill_parent(e, leader);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free, struct task_struct *p)
{
	struct exit_event *e;
	__u32 pid = BPF_CORE_READ(p, pid);

	if (pid != BPF_CORE_READ(p, tgid))
		return 0; /* a thread, not a process */

	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = REV_EV_REAP;
	e->pid = pid;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = BPF_CORE_READ(p, start_time);
	e->exit_code = BPF_CORE_READ(p, exit_code);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), BPF_CORE_READ(p, comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}
