// SPDX-License-Identifier: MIT
/* Zombies. The deadline tracker: a pid-keyed open-addressing table of exited-but-unreaped
 * processes and a min-heap of their deadlines, reaped entries skipped lazily at its head. The
 * watcher: turns exit/reap records into zombie decisions at the deadline, on the agent's loop. */
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "agent/metrics.h"
#include "agent/zombie.h"
#include "lib/util.h"

struct due {
	uint64_t deadline_ns;
	uint64_t start_ns;
	pid_t pid;
};

struct ztrack {
	uint64_t grace_ns;
	size_t max;
	struct zrec *slots; /* pid 0 = empty */
	size_t cap, count;
	struct due *heap;
	size_t hcap, hlen;
};

static size_t hash_pid(pid_t pid, size_t cap)
{
	return ((uint32_t)pid * 2654435761u) & (cap - 1);
}

struct ztrack *ztrack_new(uint64_t grace_ns, size_t max_entries)
{
	struct ztrack *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->grace_ns = grace_ns;
	t->max = max_entries;
	t->cap = 1024;
	t->slots = calloc(t->cap, sizeof(*t->slots));
	t->hcap = 1024;
	t->heap = calloc(t->hcap, sizeof(*t->heap));
	if (!t->slots || !t->heap) {
		ztrack_free(t);
		errno = ENOMEM;
		return NULL;
	}
	return t;
}

void ztrack_free(struct ztrack *t)
{
	if (!t)
		return;
	free(t->slots);
	free(t->heap);
	free(t);
}

static struct zrec *lookup(const struct ztrack *t, pid_t pid)
{
	for (size_t i = hash_pid(pid, t->cap);; i = (i + 1) & (t->cap - 1)) {
		if (!t->slots[i].pid)
			return NULL;
		if (t->slots[i].pid == pid)
			return &t->slots[i];
	}
}

const struct zrec *ztrack_find(const struct ztrack *t, pid_t pid)
{
	return lookup(t, pid);
}

size_t ztrack_count(const struct ztrack *t)
{
	return t->count;
}

static void insert_slot(struct zrec *slots, size_t cap, const struct zrec *r)
{
	size_t i = hash_pid(r->pid, cap);

	while (slots[i].pid)
		i = (i + 1) & (cap - 1);
	slots[i] = *r;
}

static int grow(struct ztrack *t)
{
	size_t ncap = t->cap * 2;
	struct zrec *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].pid)
			insert_slot(n, ncap, &t->slots[i]);
	free(t->slots);
	t->slots = n;
	t->cap = ncap;
	return 0;
}

/* Linear-probing delete with backward shift, so lookups never need tombstones. */
static void remove_slot(struct ztrack *t, struct zrec *s)
{
	size_t i = s - t->slots, j = i;

	for (;;) {
		size_t k;

		j = (j + 1) & (t->cap - 1);
		if (!t->slots[j].pid)
			break;
		k = hash_pid(t->slots[j].pid, t->cap);
		/* Move j back into the hole at i unless its home k lies cyclically in (i, j]. */
		if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	memset(&t->slots[i], 0, sizeof(t->slots[i]));
	t->count--;
}

/* The deadlines form a binary min-heap: grace periods change on reload and a nudged zombie is
 * watched again from now, so deadlines do not arrive in order. */
static void heap_swap(struct due *a, struct due *b)
{
	struct due t = *a;

	*a = *b;
	*b = t;
}

static int heap_push(struct ztrack *t, const struct zrec *r)
{
	size_t i;

	if (t->hlen == t->hcap) {
		size_t ncap = t->hcap * 2;
		struct due *n = realloc(t->heap, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->heap = n;
		t->hcap = ncap;
	}
	i = t->hlen++;
	t->heap[i] =
		(struct due){.deadline_ns = r->deadline_ns, .start_ns = r->start_ns, .pid = r->pid};
	while (i && t->heap[(i - 1) / 2].deadline_ns > t->heap[i].deadline_ns) {
		heap_swap(&t->heap[(i - 1) / 2], &t->heap[i]);
		i = (i - 1) / 2;
	}
	return 0;
}

static void heap_pop(struct ztrack *t)
{
	size_t i = 0;

	t->heap[0] = t->heap[--t->hlen];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < t->hlen && t->heap[l].deadline_ns < t->heap[m].deadline_ns)
			m = l;
		if (r < t->hlen && t->heap[r].deadline_ns < t->heap[m].deadline_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(&t->heap[i], &t->heap[m]);
		i = m;
	}
}

/* The entry a heap node stands for, or NULL when it no longer matters (reaped in time, reported,
 * replaced by a newer process with this pid, or re-armed with another deadline). */
static struct zrec *live(const struct ztrack *t, const struct due *d)
{
	struct zrec *s = lookup(t, d->pid);

	if (!s || s->start_ns != d->start_ns || s->reported || s->deadline_ns != d->deadline_ns)
		return NULL;
	return s;
}

int ztrack_exit(struct ztrack *t, const struct zrec *r)
{
	struct zrec *old = lookup(t, r->pid), rec = *r;
	int rc;

	if (old && old->start_ns == r->start_ns)
		return -EEXIST;
	if (old)
		remove_slot(t, old);
	if (t->count >= t->max)
		return -ENOSPC;
	if ((t->count + 1) * 2 > t->cap && (rc = grow(t)))
		return rc;
	if (!rec.deadline_ns)
		rec.deadline_ns = rec.exit_ns + t->grace_ns;
	rec.reported = false;
	if ((rc = heap_push(t, &rec)))
		return rc;
	insert_slot(t->slots, t->cap, &rec);
	t->count++;
	return 0;
}

int ztrack_reap(struct ztrack *t, pid_t pid, uint64_t start_ns, struct zrec *out)
{
	struct zrec *s = lookup(t, pid);
	int reported;

	if (!s || (start_ns && s->start_ns != start_ns))
		return -ENOENT;
	reported = s->reported;
	if (out)
		*out = *s;
	remove_slot(t, s);
	return reported;
}

void ztrack_forget(struct ztrack *t, pid_t pid)
{
	struct zrec *s = lookup(t, pid);

	if (s)
		remove_slot(t, s);
}

int ztrack_pop_due(struct ztrack *t, uint64_t now_ns, struct zrec *out)
{
	while (t->hlen && t->heap[0].deadline_ns <= now_ns) {
		struct zrec *s = live(t, &t->heap[0]);

		heap_pop(t);
		if (!s)
			continue;
		s->reported = true;
		*out = *s;
		return 1;
	}
	return 0;
}

uint64_t ztrack_next_deadline(struct ztrack *t)
{
	/* Drop heads that no longer matter so the timer is not armed for them. */
	while (t->hlen && !live(t, &t->heap[0]))
		heap_pop(t);
	return t->hlen ? t->heap[0].deadline_ns : 0;
}

void ztrack_set_grace(struct ztrack *t, uint64_t grace_ns)
{
	t->grace_ns = grace_ns;
}

/* ---- the watcher ---- */

/* sched_process_free runs an RCU grace period after the reap: a reap record this much later than
 * the deadline still counts as reaped in time. */
#define REAP_SLACK_NS (50 * NS_PER_MS)
#define ZOMBIE_RECHECKS 5
#define PF_EXITING_FLAG 0x4

struct zwatch {
	struct ztrack *t;
	struct loop *loop;
	struct loop_timer timer;
	struct zwatch_hooks h;
	uint64_t grace_ns;
	uint64_t not_tracked; /* exits not tracked because the table was full */
};

static void zw_arm(struct zwatch *w)
{
	uint64_t d = ztrack_next_deadline(w->t);

	if (d)
		loop_timer_at(w->loop, &w->timer, d);
	else
		loop_timer_cancel(w->loop, &w->timer);
}

static void zw_gauge(struct zwatch *w)
{
	metrics_set_gauge_zombies(ztrack_count(w->t));
}

/* Watch z again for one grace period from now. */
static void zw_requeue(struct zwatch *w, struct zrec *z, uint64_t now)
{
	z->deadline_ns = now + w->grace_ns;
	z->verified = false; /* a later look is ours */
	ztrack_forget(w->t, z->pid);
	ztrack_exit(w->t, z);
}

/* A zombie we announced is gone but its free record has not come: the kernel frees a reaped task
 * from an RCU callback, often after the next deadline. Say so now; the late record then finds
 * nothing in the table, so there is no second zombie_reaped. */
static void zw_gone(struct zwatch *w, const struct zrec *z, uint64_t now)
{
	if (z->announced)
		w->h.reaped(w->h.ctx, z, now);
}

static void zw_report(struct zwatch *w, struct zrec *z, uint64_t now, bool act)
{
	if (w->h.zombie(w->h.ctx, z, now, act) == ACT_NUDGE) {
		/* Watch it once more: reaped after the nudge, or reported as persisting. */
		z->nudged = z->announced = true;
		zw_requeue(w, z, now);
	}
}

int zombie_nudge(pid_t ppid)
{
	int fd = pidfd_open_pid(ppid);
	int rc = fd >= 0 ? pidfd_signal(fd, SIGCHLD) : -errno;

	if (fd >= 0)
		close(fd);
	return rc;
}

void zwatch_run_due(struct zwatch *w, uint64_t now)
{
	struct zrec z;

	while (ztrack_pop_due(w->t, now, &z)) {
		/* One read at the deadline guards against a reap record lost in an overflow; the
		 * kernel's grace did that look itself, just now. */
		char st = z.verified ? 'Z' : w->h.proc_state(z.pid);

		if (!st) {
			zw_gone(w, &z, now);
			ztrack_forget(w->t, z.pid);
		} else if (st != 'Z') {
			/* Still tearing down (a large address space can outlast the grace), or the pid
			 * already reused: look again a few times before letting go. While do_exit
			 * runs (PF_EXITING) it is on its way: that wait is not counted. */
			if ((w->h.proc_flags(z.pid) & PF_EXITING_FLAG) || z.rechecks++ < ZOMBIE_RECHECKS) {
				zw_requeue(w, &z, now);
			} else {
				zw_gone(w, &z, now);
				ztrack_forget(w->t, z.pid);
			}
		} else {
			z.announced = true;
			zw_report(w, &z, now, !z.nudged);
		}
	}
	zw_arm(w);
}

static void on_deadline(struct loop *l, void *ctx)
{
	(void)l;
	zwatch_run_due(ctx, mono_ns());
}

struct zwatch *zwatch_new(struct loop *l, uint64_t grace_ns, size_t max_entries,
			  const struct zwatch_hooks *h)
{
	struct zwatch *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->t = ztrack_new(grace_ns, max_entries);
	if (!w->t) {
		free(w);
		errno = ENOMEM;
		return NULL;
	}
	w->loop = l;
	w->h = *h;
	if (!w->h.proc_state)
		w->h.proc_state = proc_state;
	if (!w->h.proc_flags)
		w->h.proc_flags = proc_flags;
	w->grace_ns = grace_ns;
	loop_timer_init(&w->timer, on_deadline, w);
	return w;
}

void zwatch_free(struct zwatch *w)
{
	if (!w)
		return;
	loop_timer_cancel(w->loop, &w->timer);
	ztrack_free(w->t);
	free(w);
}

static void zrec_of_exit(struct zrec *z, const struct exit_event *r)
{
	memset(z, 0, sizeof(*z));
	z->pid = r->pid;
	z->ppid = r->ppid;
	z->uid = r->uid;
	z->start_ns = r->start_ns;
	z->exit_ns = r->ts_ns;
	memcpy(z->comm, r->comm, sizeof(z->comm));
	memcpy(z->parent_comm, r->parent_comm, sizeof(z->parent_comm));
	z->comm[sizeof(z->comm) - 1] = z->parent_comm[sizeof(z->parent_comm) - 1] = 0;
}

/* Track r with its deadline (0: exit + grace); the table being full is said, never silently. */
static void zw_track(struct zwatch *w, const struct exit_event *r, uint64_t deadline_ns,
		     bool verified)
{
	struct zrec z;

	zrec_of_exit(&z, r);
	z.deadline_ns = deadline_ns;
	z.verified = verified;
	if (ztrack_exit(w->t, &z) == -ENOSPC) {
		/* Never silent, never a flood: said at the 1st, 2nd, 4th, 8th... exit not tracked. */
		w->not_tracked++;
		if (!(w->not_tracked & (w->not_tracked - 1)))
			w->h.lost(w->h.ctx, w->not_tracked);
	}
}

void zwatch_exit(struct zwatch *w, const struct exit_event *r)
{
	zw_track(w, r, 0, false);
	/* Deadlines do not arrive in order (a lowered grace, a nudge): re-arm for an earlier one. */
	if (!w->timer.armed || ztrack_next_deadline(w->t) < w->timer.deadline_ns)
		zw_arm(w);
	zw_gauge(w);
}

void zwatch_zombie(struct zwatch *w, const struct exit_event *r, uint64_t now_ns)
{
	/* Due now: the usual path decides (the policy, a nudge's second watch; no /proc look: the
	 * kernel checked at the deadline, by pid and start time, that it is still a zombie), and
	 * the entry stays until its reap record, which the kernel now sends. */
	zw_track(w, r, now_ns, true);
	zwatch_run_due(w, now_ns);
	zw_gauge(w);
}

void zwatch_reap(struct zwatch *w, const struct exit_event *r)
{
	struct zrec z;
	int rc = ztrack_reap(w->t, r->pid, r->start_ns, &z);

	if (rc == 0 && !z.announced && r->ts_ns > z.exit_ns + w->grace_ns + REAP_SLACK_NS) {
		/* A zombie for longer than the grace whose deadline we had not reached yet (the
		 * agent was behind its ring buffer): say so now rather than never. */
		w->h.zombie(w->h.ctx, &z, r->ts_ns, false);
		rc = 1;
	}
	if (rc == 1 || (rc == 0 && z.announced))
		w->h.reaped(w->h.ctx, &z, r->ts_ns);
	zw_gauge(w);
}

void zwatch_reaped_by_us(struct zwatch *w, pid_t pid)
{
	const struct zrec *z = ztrack_find(w->t, pid);

	/* An orphan zombie we announced, reaped by us just now: its free record may come after we
	 * have exited, so say it here. */
	if (z && (z->reported || z->announced)) {
		struct zrec copy = *z;

		copy.announced = true; /* in the table and reported: it was logged */
		ztrack_forget(w->t, pid);
		zw_gone(w, &copy, mono_ns());
		zw_gauge(w);
	}
}

void zwatch_seed(struct zwatch *w, const struct snap_zombie *zs, size_t n, uint64_t now)
{
	for (size_t i = 0; i < n; i++) {
		struct zrec z = {0};

		z.pid = zs[i].pid;
		z.ppid = zs[i].ppid;
		z.uid = zs[i].uid;
		z.start_ns = zs[i].start_ns;
		z.exit_ns = zs[i].age_ns < now ? now - zs[i].age_ns : 0;
		z.deadline_ns = z.exit_ns + w->grace_ns > now ? z.exit_ns + w->grace_ns : now;
		z.seeded = true;
		memcpy(z.comm, zs[i].comm, sizeof(z.comm));
		memcpy(z.parent_comm, zs[i].parent_comm, sizeof(z.parent_comm));
		ztrack_exit(w->t, &z);
	}
	zw_arm(w);
	zw_gauge(w);
}

void zwatch_set_grace(struct zwatch *w, uint64_t grace_ns)
{
	w->grace_ns = grace_ns;
	ztrack_set_grace(w->t, grace_ns);
}

uint64_t zwatch_armed_for(const struct zwatch *w)
{
	return w->timer.armed ? w->timer.deadline_ns : 0;
}

size_t zwatch_count(const struct zwatch *w)
{
	return ztrack_count(w->t);
}
