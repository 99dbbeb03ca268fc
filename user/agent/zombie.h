/* SPDX-License-Identifier: MIT */
/* Zombies: the deadline tracker (pure: an exited process not reaped within the grace period is a
 * zombie) and the agent half that turns exit/reap records into zombie / zombie_reaped events. */
#ifndef REVENANT_ZOMBIE_H
#define REVENANT_ZOMBIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "zombie_rec.h"

struct zrec {
	uint64_t start_ns; /* with pid: the identity of the process */
	uint64_t exit_ns;
	uint64_t deadline_ns;
	pid_t pid;
	pid_t ppid;
	uint32_t uid;
	bool reported;
	bool seeded; /* found by the start-up snapshot: exit time is an estimate */
	bool nudged;	/* its parent got SIGCHLD; the next deadline reports it as persisting */
	bool announced; /* a zombie event was logged: its reap gets a zombie_reaped */
	uint8_t rechecks; /* deadlines passed while the process was exiting but not yet a zombie */
	char comm[16];
	char parent_comm[16];
};

struct ztrack;

struct ztrack *ztrack_new(uint64_t grace_ns, size_t max_entries);
void ztrack_free(struct ztrack *t);

/* Track an exited process. 0, -EEXIST (same pid and start time already tracked) or -ENOSPC. A
 * tracked entry with the same pid but another start time (pid reuse) is replaced. */
int ztrack_exit(struct ztrack *t, const struct zrec *r);

/* The process was reaped. Returns 1 and fills *out when it had been reported as a zombie, 0 when it
 * was reaped within the grace period, -ENOENT when it was not tracked. */
int ztrack_reap(struct ztrack *t, pid_t pid, uint64_t start_ns, struct zrec *out);

/* Pops one entry whose deadline has passed and that is still unreaped; marks it reported.
 * 1 and *out filled, or 0 when nothing is due. */
int ztrack_pop_due(struct ztrack *t, uint64_t now_ns, struct zrec *out);

/* Earliest pending deadline, 0 when none. */
uint64_t ztrack_next_deadline(struct ztrack *t);

/* Forget a reported zombie without an event (its reap was lost). */
void ztrack_forget(struct ztrack *t, pid_t pid);

size_t ztrack_count(const struct ztrack *t);
/* New grace period, for exits from now on. */
void ztrack_set_grace(struct ztrack *t, uint64_t grace_ns);
const struct zrec *ztrack_find(const struct ztrack *t, pid_t pid);

#endif
