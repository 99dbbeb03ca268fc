// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Process exits and reaps: a thread group whose last thread exits is a zombie until its leader is
 * freed. Two ways, one chosen at load: the kernel keeps the grace (a slot per pending exit with a
 * bpf_timer; only a timer that finds the process still a zombie wakes userspace), or every exit
 * and reap goes to userspace, which pairs them by (pid, start time) and owns the deadline. */
#include "common.bpf.h"
#include "core_fixes.bpf.h"
#include "zombie_rec.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define CLOCK_MONOTONIC_ 1
#define EXIT_ZOMBIE_ 0x20
/* A process still inside do_exit at its deadline (a large address space to tear down) is looked
 * at again; one whose pid now names another process, or that is being reaped, is let go. */
#define MAX_RECHECKS 64
/* A reported zombie is looked at this often until its free is seen: a free the tracepoint never
 * delivered (seen under exit storms here) still ends in a reap record. */
#define REPORTED_CHECK_NS (30ull * 1000000000ull)

/* Settings the agent changes while it runs (SIGHUP), through the skeleton's mmapped .data. */
__u64 zombie_grace_ns = 1000000000;
__u32 watch_exits = 1; /* monitoring.enabled */

/* Exits handed to userspace (their slot was taken, or its timer could not be set up), and how
 * many slots are in use (a gauge). */
__u64 rev_untracked = 0;
__s64 rev_pending = 0;
__s64 rev_evicted = 0; /* entries in `evicted` */

/* An array, not a hash: a hash element's timer is freed with the element and allocated again at
 * the next exit, and under an exit storm that allocation failed for a third of the exits here
 * (-ENOMEM from the no-lock allocator). A slot's timer is allocated once. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REV_ZOMBIE_SLOTS);
	__type(key, __u32);
	__type(value, struct zombie_slot);
} slots SEC(".maps");

/* Processes whose free must send a reap record though no slot holds them: reported zombies
 * whose slot a later exit needed (a zombie can outlive many pids' worth of exits), exits handed
 * to userspace's tracker, and zombies that predate the agent (written by it at start-up). Looked
 * at by the free program only while it holds something. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REV_ZOMBIE_SLOTS);
	__type(key, __u32);
	__type(value, struct exit_event);
} evicted SEC(".maps");

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

/* A reap record: pid freed; who it was comes from the task being freed, or from its slot. */
static __always_inline void send_reap(__u32 pid, __u64 start_ns, const char *comm, __u32 ppid,
				      __u32 uid, __s32 exit_code)
{
	struct exit_event *e = reserve_event(sizeof(*e));

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->type = REV_EV_REAP;
	e->pid = pid;
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = start_ns;
	e->ppid = ppid;
	e->uid = uid;
	e->exit_code = exit_code;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), comm);
	bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);

	if (pid != BPF_CORE_READ(p, tgid))
		return 0; /* a thread, not a process */
	send_reap(pid, BPF_CORE_READ(p, start_time), p->comm, 0, 0, BPF_CORE_READ(p, exit_code));
	return 0;
}

/* ---- kernel grace: a timer per pending exit ---- */

enum { GONE, ZOMBIE, EXITING };

/* What the process a slot stands for is now. The task is found by pid and held by a reference
 * for the look; the start time tells it from a newer process that got the pid. */
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

/* Give the slot of pid back, once: its free, its timer and a newer exit may race for it. */
static __always_inline bool release(struct zombie_slot *v, __u32 pid)
{
	if (__sync_val_compare_and_swap(&v->pid, pid, 0) != pid)
		return false;
	__sync_fetch_and_add(&rev_pending, -1);
	return true;
}

/* Release a reported zombie's slot and say it was reaped (at most once, whoever wins). */
static __always_inline void release_reported(struct zombie_slot *v, __u32 pid)
{
	char comm[REV_COMM_LEN];
	__u64 start = v->start_ns;
	__u32 ppid = v->ppid, uid = v->uid;
	__s32 code = v->exit_code;

	__builtin_memcpy(comm, v->comm, sizeof(comm));
	if (release(v, pid))
		send_reap(pid, start, comm, ppid, uid, code);
}

static __always_inline void send_zombie(const struct zombie_slot *v, __u32 pid)
{
	struct exit_event *e = reserve_event(sizeof(*e));

	if (!e)
		return;
	e->type = REV_EV_ZOMBIE;
	e->pid = pid;
	e->ts_ns = v->exit_ns;
	e->start_ns = v->start_ns;
	e->ppid = v->ppid;
	e->uid = v->uid;
	e->exit_code = v->exit_code;
	e->pad = 0;
	__builtin_memcpy(e->comm, v->comm, sizeof(e->comm));
	__builtin_memcpy(e->parent_comm, v->parent_comm, sizeof(e->parent_comm));
	bpf_ringbuf_submit(e, 0);
}

/* A slot's timer. After the grace: only here does anything reach userspace, a zombie record,
 * once; a process that is gone (reaped, its free perhaps lost) or that is another one now is
 * let go, so a lost free never makes a false zombie. For a reported zombie: a periodic look, in
 * case its free never comes. */
static int slot_due(void *map, __u32 *idx, struct zombie_slot *v)
{
	__u32 pid = v->pid;
	int st;

	if (!pid)
		return 0; /* given back meanwhile */
	st = task_now(pid, v->start_ns);
	if (v->state == REV_SLOT_REPORTED) {
		if (st == ZOMBIE)
			bpf_timer_start(&v->timer, REPORTED_CHECK_NS, 0);
		else
			release_reported(v, pid); /* reaped, and its free never reached us */
		return 0;
	}
	if (st == EXITING && v->rechecks++ < MAX_RECHECKS) {
		bpf_timer_start(&v->timer, zombie_grace_ns, 0);
		return 0;
	}
	if (st != ZOMBIE) {
		release(v, pid);
		return 0;
	}
	/* Found hashed in this RCU read section (a softirq): its free cannot run before we
	 * return, so it will see REPORTED and send the reap. */
	v->state = REV_SLOT_REPORTED;
	send_zombie(v, pid);
	bpf_timer_start(&v->timer, REPORTED_CHECK_NS, 0);
	return 0;
}

static __always_inline struct zombie_slot *slot_of(__u32 pid)
{
	__u32 idx = pid & (REV_ZOMBIE_SLOTS - 1);

	return bpf_map_lookup_elem(&slots, &idx);
}

/* Have the free of pid send a reap record (an entry of `evicted`; one for a pid reused since
 * is replaced). 0 or -errno. */
static __always_inline long watch_free(__u32 pid, const struct exit_event *e)
{
	long rc = bpf_map_update_elem(&evicted, &pid, e, BPF_NOEXIST);

	if (!rc) {
		__sync_fetch_and_add(&rev_evicted, 1);
		return 0;
	}
	return rc == -17 /* EEXIST */ ? bpf_map_update_elem(&evicted, &pid, e, BPF_EXIST) : rc;
}

/* Move a reported zombie out of its slot into `evicted`, where its free still finds it. */
static __always_inline bool evict(struct zombie_slot *v, __u32 pid)
{
	struct exit_event e = {.type = REV_EV_ZOMBIE,
			       .pid = pid,
			       .ts_ns = v->exit_ns,
			       .start_ns = v->start_ns,
			       .ppid = v->ppid,
			       .uid = v->uid,
			       .exit_code = v->exit_code};

	__builtin_memcpy(e.comm, v->comm, sizeof(e.comm));
	__builtin_memcpy(e.parent_comm, v->parent_comm, sizeof(e.parent_comm));
	if (watch_free(pid, &e))
		return false;
	bpf_timer_cancel(&v->timer);
	if (!release(v, pid) && bpf_map_delete_elem(&evicted, &pid) == 0)
		__sync_fetch_and_add(&rev_evicted, -1); /* its free won the race */
	return true;
}

/* Take pid's slot. It may be free; held by an older process with this pid (gone, since the pid
 * was reused: its free was lost; a reported one gets its reap record now); or held by a
 * reported zombie, which moves to `evicted`. false when a process still in its grace holds it. */
static __always_inline bool claim(struct zombie_slot *v, __u32 pid)
{
	__u32 owner = v->pid;

	if (owner == pid) {
		bpf_timer_cancel(&v->timer);
		if (v->state == REV_SLOT_REPORTED)
			release_reported(v, pid);
		else
			release(v, pid);
	} else if (owner && v->state == REV_SLOT_REPORTED) {
		evict(v, owner);
	}
	if (__sync_val_compare_and_swap(&v->pid, 0, pid) != 0)
		return false;
	__sync_fetch_and_add(&rev_pending, 1);
	return true;
}

static __always_inline int arm(struct zombie_slot *v)
{
	if (!v->timer_ready) {
		long rc = bpf_timer_init(&v->timer, &slots, CLOCK_MONOTONIC_);

		if (rc && rc != -16 /* EBUSY: already allocated */)
			return rc;
		v->timer_ready = 1;
	}
	/* Every time: bpf_timer_cancel (the free, an eviction) drops the callback. */
	bpf_timer_set_callback(&v->timer, slot_due);
	return bpf_timer_start(&v->timer, zombie_grace_ns, 0);
}

/* Allocate the slots' timers ahead of the exits that need them. The allocator a timer comes
 * from (no locks: BPF may run anywhere) gives out only what its per-CPU caches hold: here ~80
 * at once, then ~160 per 100 ms, so an exit storm on cold slots finds none. The agent runs this
 * (BPF_PROG_TEST_RUN) at start-up until every slot has its timer; returns how many are ready.
 * The callback is set by the exit program, whose callback it is, each time it arms one. */
static long warm_one(__u32 i, __u32 *ready)
{
	struct zombie_slot *v = bpf_map_lookup_elem(&slots, &i);
	long rc;

	if (!v)
		return 1;
	if (v->timer_ready) {
		(*ready)++;
		return 0;
	}
	rc = bpf_timer_init(&v->timer, &slots, CLOCK_MONOTONIC_);
	if (rc && rc != -16)
		return 1; /* the caches are empty: stop, try again later */
	v->timer_ready = 1;
	(*ready)++;
	return 0;
}

SEC("syscall")
int warm_slots(void *ctx)
{
	__u32 ready = 0;

	bpf_loop(REV_ZOMBIE_SLOTS, warm_one, &ready, 0);
	return ready;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit_timed, struct task_struct *p)
{
	struct task_struct *leader, *parent;
	struct zombie_slot *v;
	__u32 pid;

	if (!watch_exits || !exit_group_dead(p, ctx))
		return 0;
	pid = p->tgid;
	v = slot_of(pid);
	if (!v || !claim(v, pid))
		goto to_userspace;
	leader = p->group_leader;
	parent = leader->real_parent;
	v->exit_ns = bpf_ktime_get_ns();
	v->start_ns = leader->start_time;
	v->uid = BPF_CORE_READ(leader, cred, uid.val);
	v->exit_code = p->exit_code;
	v->ppid = BPF_CORE_READ(parent, tgid);
	v->state = REV_SLOT_ARMED;
	v->rechecks = 0;
	bpf_probe_read_kernel_str(v->comm, sizeof(v->comm), leader->comm);
	bpf_probe_read_kernel_str(v->parent_comm, sizeof(v->parent_comm), parent->comm);
	if (!arm(v))
		return 0;
	release(v, pid);
to_userspace:
	/* Userspace's tracker takes this one (and its deadline): correct, only dearer. Its free
	 * must then be reported too, as in userspace mode. */
	__sync_fetch_and_add(&rev_untracked, 1);
	send_exit(p);
	{
		struct exit_event e = {.type = REV_EV_EXIT, .pid = pid};

		e.start_ns = BPF_CORE_READ(p, group_leader, start_time);
		watch_free(pid, &e);
	}
	return 0;
}

/* Reaped: the slot is given back (its timer stopped); only a process reported as a zombie, or
 * one userspace asked about, sends a reap record. */
SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free_timed, struct task_struct *p)
{
	struct zombie_slot *v;
	__u32 pid = p->pid;

	if (pid != p->tgid)
		return 0;
	v = slot_of(pid);
	if (!v || v->pid != pid || v->start_ns != p->start_time) {
		/* Not in its slot: perhaps a reported zombie moved out of it. */
		struct exit_event *e;

		if (!rev_evicted || !(e = bpf_map_lookup_elem(&evicted, &pid)) ||
		    e->start_ns != p->start_time)
			return 0;
		send_reap(pid, e->start_ns, e->comm, e->ppid, e->uid, e->exit_code);
		if (bpf_map_delete_elem(&evicted, &pid) == 0)
			__sync_fetch_and_add(&rev_evicted, -1);
		return 0;
	}
	bpf_timer_cancel(&v->timer); /* waits for a callback running elsewhere */
	if (v->state == REV_SLOT_REPORTED)
		release_reported(v, pid);
	else
		release(v, pid);
	return 0;
}
