/* SPDX-License-Identifier: MIT */
/* Zombies: the deadline tracker (pure: an exited process not reaped within the grace period is a
 * zombie) and the watcher that turns exit/reap records into zombie decisions at their deadlines.
 * What a zombie means for a service (its zombie_policy) is the supervisor's; logging, the agent's. */
#ifndef REVENANT_ZOMBIE_H
#define REVENANT_ZOMBIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/events.h"
#include "lib/loop.h"
#include "snapshot_rec.h"
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
	bool verified;	  /* the kernel found it a zombie at this deadline: no /proc look */
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

/* ---- the watcher: a tracker on the agent's loop ---- */

struct zwatch;

struct zwatch_hooks {
	/* A zombie at its deadline, or one found late at its reap (act false: it is reaped, no
	 * policy applies). Returns what was done: ACT_NUDGE watches it once more for a grace. */
	enum ev_action (*zombie)(void *ctx, const struct zrec *z, uint64_t now_ns, bool act);
	/* An announced zombie is gone: reaped at reaped_ns (kernel time, or now). */
	void (*reaped)(void *ctx, const struct zrec *z, uint64_t reaped_ns);
	/* The table is full: `count` exits were not tracked (said at the 1st, 2nd, 4th...). */
	void (*lost)(void *ctx, uint64_t count);
	/* Process state readers (NULL: /proc); tests inject their own. */
	char (*proc_state)(pid_t pid);
	unsigned (*proc_flags)(pid_t pid);
	void *ctx;
};

struct zwatch *zwatch_new(struct loop *l, uint64_t grace_ns, size_t max_entries,
			  const struct zwatch_hooks *h);
void zwatch_free(struct zwatch *w);
void zwatch_exit(struct zwatch *w, const struct exit_event *r);
void zwatch_reap(struct zwatch *w, const struct exit_event *r);
/* The kernel kept the grace and found r still a zombie at its deadline (REV_EV_ZOMBIE). */
void zwatch_zombie(struct zwatch *w, const struct exit_event *r, uint64_t now_ns);
/* The agent reaped pid itself (an orphan re-parented to it). */
void zwatch_reaped_by_us(struct zwatch *w, pid_t pid);
/* Zombies that predate the agent, from the task iterator. */
void zwatch_seed(struct zwatch *w, const struct snap_zombie *zs, size_t n, uint64_t now_ns);
/* New grace period, for exits from now on. */
void zwatch_set_grace(struct zwatch *w, uint64_t grace_ns);
size_t zwatch_count(const struct zwatch *w);
/* The deadline the watcher's timer is armed for, 0 when none. */
uint64_t zwatch_armed_for(const struct zwatch *w);
/* The nudge: SIGCHLD to the parent through a pidfd, so it remembers to wait(). 0 or -errno. */
int zombie_nudge(pid_t ppid);
/* Handle every deadline up to now_ns (the loop's timer does this; tests call it directly). */
void zwatch_run_due(struct zwatch *w, uint64_t now_ns);

#endif
