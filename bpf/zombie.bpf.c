// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Process exits and reaps: a thread group whose last thread exits is a zombie until its leader is
 * freed. Two ways, one chosen at load: the kernel keeps the grace (a map of pending exits with a
 * bpf_timer each; only a timer that finds the process still a zombie wakes userspace), or every
 * exit and reap goes to userspace, which pairs them by (pid, start time) and owns the deadline. */
#include "common.bpf.h"
#include "core_fixes.bpf.h"
#include "zombie_rec.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define CLOCK_MONOTONIC_ 1
#define EXIT_ZOMBIE_ 0x20
/* A process still inside do_exit at its deadline (a large address space to tear down) is looked
 * at again; one whose pid now names another process, or that is being reaped, is let go. */
#define MAX_RECHECKS 64

/* Settings the agent changes while it runs (SIGHUP), through the skeleton's mmapped .data. */
__u64 zombie_grace_ns = 1000000000;
__u32 watch_exits = 1; /* monitoring.enabled */

/* Exits handed to userspace because `pending` was full, and how many entries it holds (a gauge). */
__u64 rev_untracked = 0;
__s64 rev_pending = 0;

/* Preallocated: an exit storm drains the per-CPU caches a BPF_F_NO_PREALLOC map allocates
 * from faster than they refill (1 exit in 7 found no element at 5000 exits/s here). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REV_MAX_PENDING);
	__type(key, __u32); /* tgid */
	__type(value, struct zombie_pending);
} pending SEC(".maps");

extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym __weak;
extern void bpf_task_release(struct task_struct *p) __ksym __weak;

static __always_inline void fill_parent(struct exit_event *e, struct task_struct *leader)
{
	struct task_struct *parent = BPF_CORE_READ(leader, real_parent);

	e->ppid = BPF_CORE_READ(parent, tgid);
	bpf_probe_read_kernel_str(e->parent_comm, sizeof(e->parent_comm), BPF_CORE_READ(parent, comm));
}

/* ---- userspace grace: every exit and reap is a record ---- */

/* An exit record for userspace's own deadline tracker. */
static __always_inline void send_exit(struct task_struct *p)
{
	struct task_struct *leader;
	struct exit_event *e;

	e = reserve_event(sizeof(*e));
	if (!e)
		return;
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
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (watch_exits && exit_group_dead(p, ctx))
		send_exit(p);
	return 0;
}

static __always_inline int send_reap(__u32 pid, __u64 start_ns, struct task_struct *p,
				     const struct zombie_pending *v)
{
	struct exit_event *e = reserve_event(sizeof(*e));

	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = REV_EV_REAP;
	e->pid = pid;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = start_ns;
	e->exit_code = BPF_CORE_READ(p, exit_code);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), BPF_CORE_READ(p, comm));
	if (v) {
		e->ppid = v->ppid;
		e->uid = v->uid;
		__builtin_memcpy(e->parent_comm, v->parent_comm, sizeof(e->parent_comm));
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);

	if (pid != BPF_CORE_READ(p, tgid))
		return 0; /* a thread, not a process */
	return send_reap(pid, BPF_CORE_READ(p, start_time), p, NULL);
}

/* ---- kernel grace: a timer per pending exit ---- */

enum { GONE, ZOMBIE, EXITING };

/* What the process a pending entry stands for is now. The task is found by pid and held by a
 * reference for the look; the start time tells it from a newer process that got the pid. */
static __always_inline int task_now(__u32 pid, __u64 start_ns)
{
	struct task_struct *t = bpf_task_from_pid(pid);
	int st = GONE;

	if (!t)
		return GONE; /* reaped: its pid is unhashed an RCU grace period before the free */
	if (t->start_time == start_ns) {
		if (t->exit_state & EXIT_ZOMBIE_)
			st = ZOMBIE;
		else if (!t->exit_state)
			st = EXITING;
	}
	bpf_task_release(t);
	return st;
}

static __always_inline void forget(void *map, __u32 *pid)
{
	if (bpf_map_delete_elem(map, pid) == 0)
		__sync_fetch_and_add(&rev_pending, -1);
}

/* The grace has passed. Only here does anything reach userspace: a zombie record, once. A
 * process that is gone (reaped, its free perhaps lost) or that is another one now is dropped,
 * so a lost free never makes a false zombie. */
static int grace_over(void *map, __u32 *pid, struct zombie_pending *v)
{
	struct exit_event *e;
	int st = task_now(*pid, v->start_ns);

	if (st == EXITING && v->rechecks++ < MAX_RECHECKS) {
		bpf_timer_start(&v->timer, zombie_grace_ns, 0);
		return 0;
	}
	if (st != ZOMBIE) {
		forget(map, pid);
		return 0;
	}
	/* The task was found hashed in this RCU read section (a softirq): its free cannot run
	 * before we return, so it will see `notify` and send the reap. */
	v->notify = 1;
	e = reserve_event(sizeof(*e));
	if (!e)
		return 0;
	e->type = REV_EV_ZOMBIE;
	e->pid = *pid;
	e->ts_ns = v->exit_ns;
	e->start_ns = v->start_ns;
	e->ppid = v->ppid;
	e->uid = v->uid;
	e->exit_code = v->exit_code;
	e->pad = 0;
	__builtin_memcpy(e->comm, v->comm, sizeof(e->comm));
	__builtin_memcpy(e->parent_comm, v->parent_comm, sizeof(e->parent_comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit_timed, struct task_struct *p)
{
	struct task_struct *leader, *parent;
	struct zombie_pending *v;
	__u32 pid;
	long rc;

	if (!watch_exits || !exit_group_dead(p, ctx))
		return 0;
	pid = p->tgid;
	leader = p->group_leader;
	/* A fresh entry (an old one for this pid lost its free: replaced, its timer freed). */
	rc = bpf_map_update_elem(&pending, &pid, &(struct zombie_pending){}, BPF_NOEXIST);
	if (rc == -17 /* EEXIST */)
		rc = bpf_map_update_elem(&pending, &pid, &(struct zombie_pending){}, BPF_EXIST);
	else if (!rc)
		__sync_fetch_and_add(&rev_pending, 1);
	v = rc ? NULL : bpf_map_lookup_elem(&pending, &pid);
	if (!v) {
		/* The table is full: userspace's tracker takes this one (and says so if full). */
		__sync_fetch_and_add(&rev_untracked, 1);
		send_exit(p);
		return 0;
	}
	v->exit_ns = bpf_ktime_get_ns();
	v->start_ns = leader->start_time;
	v->uid = BPF_CORE_READ(leader, cred, uid.val);
	v->exit_code = p->exit_code;
	parent = leader->real_parent;
	v->ppid = BPF_CORE_READ(parent, tgid);
	bpf_probe_read_kernel_str(v->comm, sizeof(v->comm), leader->comm);
	bpf_probe_read_kernel_str(v->parent_comm, sizeof(v->parent_comm), parent->comm);
	if (bpf_timer_init(&v->timer, &pending, CLOCK_MONOTONIC_) ||
	    bpf_timer_set_callback(&v->timer, grace_over) ||
	    bpf_timer_start(&v->timer, zombie_grace_ns, 0)) {
		forget(&pending, &pid);
		__sync_fetch_and_add(&rev_untracked, 1);
		send_exit(p);
	}
	return 0;
}

/* Reaped: the entry goes (and its timer with it); only a process reported as a zombie, or one
 * userspace asked about, sends a reap record. */
SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free_timed, struct task_struct *p)
{
	struct zombie_pending *v;
	__u32 pid = p->pid;

	if (pid != p->tgid)
		return 0;
	v = bpf_map_lookup_elem(&pending, &pid);
	if (!v || v->start_ns != p->start_time)
		return 0; /* not watched, or the entry is a newer process's with this pid */
	if (v->notify)
		send_reap(pid, v->start_ns, p, v);
	forget(&pending, &pid);
	return 0;
}
