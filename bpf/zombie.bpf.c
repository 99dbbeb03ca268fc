// SPDX-License-Identifier: GPL-2.0 OR MIT
/* Process exits and reaps: a thread group whose last thread exits is a zombie until its leader is
 * freed. Two ways, one chosen at load: the kernel keeps the grace (pending exits in a map, one
 * bpf_timer armed for the earliest deadline; only a process still a zombie at its deadline wakes
 * userspace), or every exit and reap goes to userspace, which pairs them by (pid, start time) and
 * owns the deadline. */
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

/* Exits handed to userspace (slot and overflow table both taken); how many entries of the overflow
 * table there are (userspace counts the ones it writes); the entries userspace wrote (the exits
 * the kernel watches are this plus the per-CPU counts). */
__u64 rev_untracked = 0;
__s64 rev_overflow = 0;
__s64 rev_pending = 0;

/* Exits the kernel watches, counted per CPU (an exit and its free on two CPUs would pass one
 * shared counter's cache line back and forth at every exit of the host); the sum is the count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} pending_count SEC(".maps");

static __always_inline void count_pending(__s64 d)
{
	__u32 zero = 0;
	__s64 *n = bpf_map_lookup_elem(&pending_count, &zero);

	if (n) /* atomic: a preempted program and another on this CPU may both add */
		__sync_fetch_and_add(n, d);
}

/* Exited, unreaped processes, first in a slot chosen by pid: an array look-up is a few
 * instructions (the verifier inlines it), where a hash update costs ~1 us here (its bucket lock
 * and free list). A slot is a 16-byte head, what the free and the sweep read, and a body, what
 * the zombie record needs: the sweep that visits every head then reads 64 KiB, not every body.
 * `pid` is the slot's claim word (slot_claim, common.bpf.h): 0 free, SLOT_CLAIMING while an exit
 * fills it, then the pid; only the claimer stores to it, frees and the sweep give it back by
 * compare-and-swap, so none takes a slot another holds. */

/* Slots in use: REV_ZOMBIE_SLOTS, fewer when the agent is told so (REVENANT_ZOMBIE_SLOTS, for
 * the tests of the overflow table). By pid: consecutive pids share cache lines. (A hash of the
 * task pointer, which would spare the free its read of the freed task, scattered the slots:
 * exits cost twice as much here.) */
const volatile __u32 slot_mask = REV_ZOMBIE_SLOTS - 1;

struct head {
	__u32 pid;
	__u32 notify; /* the body's notify, where the free reads it */
	/* The leader's task_struct: the free tells its entry by this pointer, without reading the
	 * freed task's start time (a cache miss: the task was last touched at its exit). */
	__u64 task;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REV_ZOMBIE_SLOTS);
	__type(key, __u32);
	__type(value, struct head);
} heads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, REV_ZOMBIE_SLOTS);
	__type(key, __u32);
	__type(value, struct zombie_pending);
} bodies SEC(".maps");

/* The overflow: an exit whose slot another process holds (pids equal modulo the slot count; a
 * host keeping many zombies), and the zombies that predate the agent. Preallocated: an exit
 * storm drains the per-CPU caches a BPF_F_NO_PREALLOC map allocates from faster than they
 * refill. No timer in the entries: a bpf_timer is allocated when it is initialised
 * (kmalloc_nolock on 6.18), and under exit storms here that allocation failed for a third to
 * nine tenths of the exits, so one timer serves all. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, REV_MAX_PENDING);
	__type(key, __u32);
	__type(value, struct zombie_pending);
} pending SEC(".maps");

/* The one timer, armed for the earliest deadline in the slots and `pending` (as userspace's tracker
 * arms its timerfd for the head of its heap). armed_for: that deadline, 0 when not armed. */
struct clock {
	struct bpf_timer timer;
	__u64 armed_for;
	__u32 ready; /* the timer was allocated and its callback set */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clock);
} clock SEC(".maps");

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

/* ---- kernel grace: one timer for the earliest deadline ---- */

enum { GONE, ZOMBIE, EXITING };

/* What the process an entry stands for is now. The task is found by pid and held by a reference
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

static __always_inline void forget(__u32 *pid)
{
	if (bpf_map_delete_elem(&pending, pid) == 0) {
		count_pending(-1);
		__sync_fetch_and_add(&rev_overflow, -1);
	}
}

static __always_inline void release(struct head *h, __u32 pid)
{
	if (__sync_val_compare_and_swap(&h->pid, pid, 0) == pid)
		count_pending(-1);
}

static __always_inline void send_zombie(const struct zombie_pending *v, __u32 pid)
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

struct sweep {
	__u64 now;
	__u64 next; /* the earliest deadline still ahead */
};

/* One pending exit, looked at when the timer fires; returns 1 when it is to be let go. Past its
 * deadline: only here does anything reach userspace, a zombie record, once; a process that is
 * gone (reaped, its free perhaps lost) or that is another one now is dropped, so a lost free
 * never makes a false zombie. A reported zombie is looked at every REPORTED_CHECK_NS in case its
 * free never comes. */
static __always_inline int visit(__u32 p, struct zombie_pending *v, struct sweep *sw)
{
	int st;

	if (v->deadline_ns > sw->now) {
		if (v->deadline_ns < sw->next)
			sw->next = v->deadline_ns;
		return 0;
	}
	st = task_now(p, v->start_ns);
	if (v->notify) {
		if (st != ZOMBIE) {
			/* reaped, and its free never reached us */
			send_reap(p, v->start_ns, v->comm, v->ppid, v->uid, v->exit_code);
			return 1;
		}
		v->deadline_ns = sw->now + REPORTED_CHECK_NS;
	} else if (st == EXITING && v->rechecks++ < MAX_RECHECKS) {
		v->deadline_ns = sw->now + zombie_grace_ns;
	} else if (st != ZOMBIE) {
		return 1;
	} else {
		/* Found hashed in this RCU read section (a softirq): its free cannot run before we
		 * return, so it will see `notify` and send the reap. */
		v->notify = 1;
		send_zombie(v, p);
		v->deadline_ns = sw->now + REPORTED_CHECK_NS;
	}
	if (v->deadline_ns < sw->next)
		sw->next = v->deadline_ns;
	return 0;
}

static long visit_slot(struct bpf_map *map, __u32 *key, struct head *h, struct sweep *sw)
{
	struct zombie_pending *v;
	__u32 p = h->pid;

	if (!p || p == SLOT_CLAIMING || *key > slot_mask)
		return 0;
	v = bpf_map_lookup_elem(&bodies, key);
	if (!v)
		return 0;
	if (visit(p, v, sw))
		release(h, p);
	else
		h->notify = v->notify; /* before this RCU section ends: see visit() */
	return 0;
}

static long visit_overflow(struct bpf_map *map, __u32 *pid, struct zombie_pending *v,
			   struct sweep *sw)
{
	__u32 p = *pid;

	if (visit(p, v, sw))
		forget(&p);
	return 0;
}

static int clock_due(void *map, __u32 *key, struct clock *c)
{
	struct sweep sw = {.now = bpf_ktime_get_ns(), .next = ~0ull};

	c->armed_for = 0;
	bpf_for_each_map_elem(&heads, visit_slot, &sw, 0);
	if (rev_overflow > 0)
		bpf_for_each_map_elem(&pending, visit_overflow, &sw, 0);
	if (sw.next != ~0ull && !c->armed_for) {
		/* Exits that came meanwhile armed it for their deadline, or not: the earliest. */
		c->armed_for = sw.next;
		bpf_timer_start(&c->timer, sw.next > sw.now ? sw.next - sw.now : 0, 0);
	}
	return 0;
}

static __always_inline struct clock *the_clock(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&clock, &zero);
}

/* Have the timer fire by `deadline`: armed now when it is not, or armed for later (a lowered
 * grace). Racing exits on two CPUs may both start it; the later start wins, and a sweep finds
 * whatever is due anyway. */
static __always_inline void arm_for(__u64 deadline, __u64 now)
{
	struct clock *c = the_clock();
	__u64 at;

	if (!c || !c->ready)
		return;
	at = c->armed_for;
	if (at && at <= deadline)
		return;
	c->armed_for = deadline;
	bpf_timer_start(&c->timer, deadline > now ? deadline - now : 0, 0);
}

/* Allocate and set up the timer, once, from the agent (BPF_PROG_TEST_RUN): the allocator the
 * timer comes from may fail (see `pending`), so the agent retries until this returns 1. Exits
 * before that wait in `pending` and are swept once it is armed. */
SEC("syscall")
int start_clock(void *ctx)
{
	struct clock *c = the_clock();
	long rc;

	if (!c)
		return 0;
	if (c->ready)
		return 1;
	rc = bpf_timer_init(&c->timer, &clock, CLOCK_MONOTONIC_);
	if (rc && rc != -16 /* EBUSY: already allocated */)
		return 0;
	bpf_timer_set_callback(&c->timer, clock_due);
	c->ready = 1;
	c->armed_for = 0;
	return 1;
}

/* What the kernel keeps of an exit. Fields are read straight through the task's BTF pointers
 * (the JIT guards each load), which is cheaper than a helper call per field. */
static __always_inline void fill_pending(struct zombie_pending *v, struct task_struct *p, __u64 now)
{
	struct task_struct *leader = p->group_leader, *parent = leader->real_parent;

	v->exit_ns = now;
	v->deadline_ns = now + zombie_grace_ns;
	v->start_ns = leader->start_time;
	v->uid = leader->cred->uid.val;
	v->exit_code = p->exit_code;
	v->ppid = parent->tgid;
	v->notify = 0;
	v->rechecks = 0;
	v->pad = 0;
	__builtin_memcpy(v->comm, leader->comm, sizeof(v->comm));
	__builtin_memcpy(v->parent_comm, parent->comm, sizeof(v->parent_comm));
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit_timed, struct task_struct *p)
{
	struct zombie_pending v, *body;
	struct head *h;
	__u64 now;
	__u32 pid, k;
	int claim;
	long rc;

	if (!watch_exits || !exit_group_dead(p, ctx))
		return 0;
	pid = p->tgid;
	now = bpf_ktime_get_ns();
	k = pid & slot_mask;
	h = bpf_map_lookup_elem(&heads, &k);
	body = bpf_map_lookup_elem(&bodies, &k);
	if (!h || !body)
		return 0;
	/* A slot still holding this pid lost its free: the pid was reused, so that one is gone. */
	claim = slot_claim(&h->pid, pid);
	if (claim == SLOT_NEW)
		count_pending(1);
	if (claim != SLOT_BUSY) {
		fill_pending(body, p, now);
		h->task = (__u64)p->group_leader;
		h->notify = 0;
		h->pid = pid; /* published: the sweep and the free look at it from here on */
		arm_for(body->deadline_ns, now);
		return 0;
	}

	/* Another process holds the slot: the overflow table. */
	fill_pending(&v, p, now);
	rc = bpf_map_update_elem(&pending, &pid, &v, BPF_NOEXIST);
	if (rc == -17 /* EEXIST */) {
		rc = bpf_map_update_elem(&pending, &pid, &v, BPF_EXIST);
	} else if (!rc) {
		count_pending(1);
		__sync_fetch_and_add(&rev_overflow, 1);
	}
	if (rc) {
		/* Full: userspace's tracker takes this one (it checks /proc at the deadline). */
		__sync_fetch_and_add(&rev_untracked, 1);
		send_exit(p);
		return 0;
	}
	arm_for(v.deadline_ns, now);
	return 0;
}

/* Reaped: the entry goes; only a process reported as a zombie, or one userspace asked about,
 * sends a reap record. The timer is left alone: it fires for the earliest deadline and finds
 * this one gone. */
SEC("tp_btf/sched_process_free")
int BPF_PROG(on_free_timed, struct task_struct *p)
{
	struct zombie_pending *v;
	struct head *h;
	__u32 pid = p->pid, k;

	if (pid != p->tgid)
		return 0;
	k = pid & slot_mask;
	h = bpf_map_lookup_elem(&heads, &k);
	if (h && h->pid == pid && h->task == (__u64)p) {
		if (h->notify && (v = bpf_map_lookup_elem(&bodies, &k)))
			send_reap(pid, v->start_ns, p->comm, v->ppid, v->uid, p->exit_code);
		release(h, pid);
		return 0;
	}
	if (rev_overflow <= 0)
		return 0;
	v = bpf_map_lookup_elem(&pending, &pid);
	if (!v || v->start_ns != p->start_time)
		return 0; /* not watched, or the entry is a newer process's with this pid */
	if (v->notify)
		send_reap(pid, v->start_ns, p->comm, v->ppid, v->uid, BPF_CORE_READ(p, exit_code));
	forget(&pid);
	return 0;
}
