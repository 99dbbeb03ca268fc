// SPDX-License-Identifier: MIT
/* The zombie deadline tracker: a pid-keyed open-addressing table of exited-but-unreaped processes
 * and a FIFO of their deadlines. With one grace period for all, exits arrive in deadline order, so
 * a FIFO is a priority queue here; reaped entries are skipped lazily when they reach its head. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/zombie.h"

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
	struct due *fifo;
	size_t fcap, fhead, flen;
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
	t->fcap = 1024;
	t->fifo = calloc(t->fcap, sizeof(*t->fifo));
	if (!t->slots || !t->fifo) {
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
	free(t->fifo);
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

static int fifo_push(struct ztrack *t, const struct zrec *r)
{
	if (t->flen == t->fcap) {
		size_t ncap = t->fcap * 2;
		struct due *n = malloc(ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		for (size_t i = 0; i < t->flen; i++)
			n[i] = t->fifo[(t->fhead + i) % t->fcap];
		free(t->fifo);
		t->fifo = n;
		t->fcap = ncap;
		t->fhead = 0;
	}
	t->fifo[(t->fhead + t->flen) % t->fcap] =
		(struct due){.deadline_ns = r->deadline_ns, .start_ns = r->start_ns, .pid = r->pid};
	t->flen++;
	return 0;
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
	if ((rc = fifo_push(t, &rec)))
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
	while (t->flen) {
		struct due d = t->fifo[t->fhead];
		struct zrec *s;

		if (d.deadline_ns > now_ns)
			return 0;
		t->fhead = (t->fhead + 1) % t->fcap;
		t->flen--;
		s = lookup(t, d.pid);
		if (!s || s->start_ns != d.start_ns || s->reported)
			continue; /* reaped in time, or replaced by a newer process with this pid */
		s->reported = true;
		*out = *s;
		return 1;
	}
	return 0;
}

uint64_t ztrack_next_deadline(struct ztrack *t)
{
	/* Drop heads that no longer matter so the timer is not armed for them. */
	while (t->flen) {
		struct due d = t->fifo[t->fhead];
		struct zrec *s = lookup(t, d.pid);

		if (s && s->start_ns == d.start_ns && !s->reported)
			return d.deadline_ns;
		t->fhead = (t->fhead + 1) % t->fcap;
		t->flen--;
	}
	return 0;
}

void ztrack_set_grace(struct ztrack *t, uint64_t grace_ns)
{
	t->grace_ns = grace_ns;
}
