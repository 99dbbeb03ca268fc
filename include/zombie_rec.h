/* SPDX-License-Identifier: MIT */
/* Records of bpf/zombie.bpf.c: process exit, zombie and reap records, the table of pending exits
 * the kernel keeps when it owns the grace period, and the zombie rows of the task iterator. */
#ifndef REVENANT_ZOMBIE_REC_H
#define REVENANT_ZOMBIE_REC_H

#include "event.h"

/* Exited, unreaped processes the kernel watches at once: one slot per pid modulo
 * REV_ZOMBIE_SLOTS (a power of two), and an overflow table of REV_MAX_PENDING for pids whose slot
 * is taken; past both, exits go to userspace's tracker. The deadline's sweep reads every slot's
 * 16-byte head (64 KiB) before the zombie record goes out: with whole slots (384 KiB) that was
 * ~0.1 ms of a zombie's latency here, and with 1024 slots the storm's zombies took slots that
 * other exits then missed (the overflow table costs ~1 us more per exit). */
#define REV_ZOMBIE_SLOTS 4096
/* A reported zombie is looked at this often until its free is seen: a free the tracepoint never
 * delivered (seen under exit storms here) still ends in a reap record within this. */
#define REPORTED_CHECK_NS (5ull * 1000000000ull)
#define REV_MAX_PENDING 4096

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

/* One exited process whose grace the kernel keeps (in its slot, or in the overflow map `pending`,
 * keyed by pid). Userspace writes entries (in `pending`) only for zombies that predate the agent
 * (notify set), so their free is reported. */
struct zombie_pending {
	__u64 exit_ns;
	__u64 deadline_ns; /* when the timer's sweep looks at it next */
	__u64 start_ns;
	__u32 ppid;
	__u32 uid;
	__s32 exit_code;
	__u8 notify;   /* a zombie record went out (or userspace asked): the free sends a reap */
	__u8 rechecks; /* deadlines passed while the process was still in do_exit */
	__u16 pad;
	char comm[REV_COMM_LEN];
	char parent_comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct zombie_pending) == 72, "zombie_pending layout");

#endif
