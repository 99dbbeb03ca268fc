/* SPDX-License-Identifier: MIT */
/* Records of bpf/zombie.bpf.c: process exit, zombie and reap records, the table of pending exits
 * the kernel keeps when it owns the grace period, and the zombie rows of the task iterator. */
#ifndef REVENANT_ZOMBIE_REC_H
#define REVENANT_ZOMBIE_REC_H

#include "event.h"

/* The kernel's grace: one slot per pid modulo this (an array, so each slot's timer is allocated
 * once and reused). An exit whose slot another pending process holds, or whose timer could not
 * be allocated yet, goes to userspace's tracker instead. Power of two; ~0.9 MiB of kernel
 * memory with the timers. */
#define REV_ZOMBIE_SLOTS 4096

struct exit_event {
	__u32 type;	  /* REV_EV_EXIT, REV_EV_ZOMBIE or REV_EV_REAP */
	__u32 pid;	  /* thread-group id (the process) */
	__u64 ts_ns;	  /* CLOCK_MONOTONIC: of the exit (EXIT, ZOMBIE) or of the free (REAP) */
	__u64 start_ns;	  /* task->start_time: with pid, identifies the process across pid reuse */
	__u32 ppid;
	__u32 uid;
	__s32 exit_code;
	__u32 pad;
	char comm[REV_COMM_LEN];
	char parent_comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct exit_event) == 72, "exit_event layout");

enum rev_slot_state {
	REV_SLOT_ARMED = 1,	/* exited; the timer fires at the end of the grace */
	REV_SLOT_REPORTED = 2,	/* a zombie record went out: its free sends a reap record */
};

/* One exited process whose grace runs in the kernel (map `slots`, index pid % REV_ZOMBIE_SLOTS).
 * The timer is a struct bpf_timer, opaque to userspace, which never writes a slot (zombies that
 * predate the agent go in the `evicted` map, keyed by pid, as struct exit_event). */
struct zombie_slot {
#ifdef __VMLINUX_H__
	struct bpf_timer timer;
#else
	__u64 timer[2];
#endif
	__u64 exit_ns;
	__u64 start_ns;
	__u32 pid; /* the owner, 0 when free: claimed and given back by compare-and-swap */
	__u32 ppid;
	__u32 uid;
	__s32 exit_code;
	__u8 state;	  /* enum rev_slot_state */
	__u8 rechecks;	  /* deadlines passed while the process was still in do_exit */
	__u8 timer_ready; /* the timer was allocated (once per slot) */
	__u8 pad[5];
	char comm[REV_COMM_LEN];
	char parent_comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct zombie_slot) == 88, "zombie_slot layout");

#endif
