// SPDX-License-Identifier: MIT
/* The census of announced zombies: a pid-keyed open-addressing table (linear probing, deletion by
 * backward shift, so no tombstones), grouped by (parent_comm, service) only when scraped. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/metrics.h"
#include "agent/zcensus.h"
#include "lib/util.h"

#define MAX_SERIES 100

struct zc_entry {
	pid_t pid; /* 0: empty slot */
	char parent_comm[16];
	char service[65];
};

static struct {
	struct zc_entry *slots;
	size_t cap, count;
} C;

static size_t slot_of(pid_t pid, size_t cap)
{
	return ((uint32_t)pid * 2654435761u) & (cap - 1);
}

static struct zc_entry *find(pid_t pid)
{
	if (!C.cap)
		return NULL;
	for (size_t i = slot_of(pid, C.cap);; i = (i + 1) & (C.cap - 1)) {
		if (!C.slots[i].pid)
			return NULL;
		if (C.slots[i].pid == pid)
			return &C.slots[i];
	}
}

static void place(struct zc_entry *slots, size_t cap, const struct zc_entry *e)
{
	size_t i = slot_of(e->pid, cap);

	while (slots[i].pid)
		i = (i + 1) & (cap - 1);
	slots[i] = *e;
}

static int grow(void)
{
	size_t cap = C.cap ? C.cap * 2 : 64;
	struct zc_entry *slots = calloc(cap, sizeof(*slots));

	if (!slots)
		return -ENOMEM;
	for (size_t i = 0; i < C.cap; i++)
		if (C.slots[i].pid)
			place(slots, cap, &C.slots[i]);
	free(C.slots);
	C.slots = slots;
	C.cap = cap;
	return 0;
}

int zcensus_add(pid_t pid, const char *parent_comm, const char *service)
{
	struct zc_entry e = {.pid = pid}, *old;

	if (pid <= 0)
		return -EINVAL;
	snprintf(e.parent_comm, sizeof(e.parent_comm), "%s", parent_comm ? parent_comm : "");
	snprintf(e.service, sizeof(e.service), "%s", service ? service : "");
	old = find(pid);
	if (old) {
		*old = e;
		return 0;
	}
	/* Half full at most: probes stay short. */
	if ((C.count + 1) * 2 > C.cap && grow())
		return -ENOMEM;
	place(C.slots, C.cap, &e);
	C.count++;
	return 0;
}

void zcensus_del(pid_t pid)
{
	struct zc_entry *e = find(pid);
	size_t hole, i;

	if (!e)
		return;
	hole = (size_t)(e - C.slots);
	C.slots[hole].pid = 0;
	C.count--;
	/* Move back every later entry of the run that may no longer be reachable past the hole. */
	for (i = (hole + 1) & (C.cap - 1); C.slots[i].pid; i = (i + 1) & (C.cap - 1)) {
		size_t mask = C.cap - 1, home = slot_of(C.slots[i].pid, C.cap);

		/* It may fill the hole when its home is not between the hole and it. */
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			C.slots[hole] = C.slots[i];
			C.slots[i].pid = 0;
			hole = i;
		}
	}
}

size_t zcensus_count(void)
{
	return C.count;
}

void zcensus_free(void)
{
	free(C.slots);
	memset(&C, 0, sizeof(C));
}

struct series {
	const char *parent_comm, *service;
	size_t n;
};

static int by_key(const void *a, const void *b)
{
	const struct zc_entry *x = *(const struct zc_entry *const *)a;
	const struct zc_entry *y = *(const struct zc_entry *const *)b;
	int c = strcmp(x->parent_comm, y->parent_comm);

	return c ? c : strcmp(x->service, y->service);
}

static int by_count(const void *a, const void *b)
{
	const struct series *x = a, *y = b;

	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return strcmp(x->parent_comm, y->parent_comm);
}

/* A label value Prometheus accepts whatever a comm holds: printable ASCII, \ and " escaped. */
static void label(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 3 < len; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '\\' || ch == '"') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else {
			out[o++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
	}
	out[o] = 0;
}

static size_t append_series(char *buf, size_t len, size_t n, const char *parent_comm,
			    const char *service, size_t count)
{
	char pc[40], sv[140];

	label(pc, sizeof(pc), parent_comm);
	label(sv, sizeof(sv), service);
	return metrics_appendf(buf, len, n,
			       "revenant_zombies{parent_comm=\"%s\",service=\"%s\"} %zu\n", pc, sv,
			       count);
}

size_t zcensus_metrics(char *buf, size_t len)
{
	struct zc_entry **all = NULL;
	struct series *ser = NULL;
	size_t n = 0, k = 0, ns = 0, other = 0;

	for (size_t i = 0; i < C.cap; i++) {
		pid_t pid = C.slots[i].pid;

		/* Gone, or no longer a zombie: its reap record was lost. */
		if (pid && proc_state(pid) != 'Z') {
			zcensus_del(pid);
			i--; /* the backward shift may have moved an unchecked entry here */
		}
	}
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_zombies Zombies the agent has reported and not seen "
			    "reaped, by parent command and service.\n"
			    "# TYPE revenant_zombies gauge\n");
	if (!C.count)
		return n;
	all = malloc(C.count * sizeof(*all));
	ser = malloc(C.count * sizeof(*ser));
	if (!all || !ser)
		goto out;
	for (size_t i = 0; i < C.cap; i++)
		if (C.slots[i].pid)
			all[k++] = &C.slots[i];
	qsort(all, k, sizeof(*all), by_key);
	for (size_t i = 0; i < k; i++) {
		if (ns && !by_key(&all[i], &all[i - 1])) {
			ser[ns - 1].n++;
			continue;
		}
		ser[ns++] = (struct series){all[i]->parent_comm, all[i]->service, 1};
	}
	qsort(ser, ns, sizeof(*ser), by_count);
	for (size_t i = 0; i < ns; i++) {
		if (i < MAX_SERIES)
			n = append_series(buf, len, n, ser[i].parent_comm, ser[i].service,
					  ser[i].n);
		else
			other += ser[i].n;
	}
	if (other)
		n = append_series(buf, len, n, "(other)", "", other);
out:
	free(all);
	free(ser);
	return n;
}
