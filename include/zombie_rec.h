/* SPDX-License-Identifier: MIT */
/* Records of bpf/zombie.bpf.c: process exit and reap, and the zombie rows of the task iterator. */
#ifndef REVENANT_ZOMBIE_REC_H
#define REVENANT_ZOMBIE_REC_H

#include "event.h"

struct exit_event {
	__u32 type;	  /* REV_EV_EXIT or REV_EV_REAP */
	__u32 pid;	  /* thread-group id (the process) */
	__u64 ts_ns;	  /* CLOCK_MONOTONIC */
	__u64 start_ns;	  /* task->start_time: with pid, identifies the process across pid reuse */
	__u32 ppid;
	__u32 uid;
	__s32 exit_code;
	__u32 pad;
	char comm[REV_COMM_LEN];
	char parent_comm[REV_COMM_LEN];
};
_Static_assert(sizeof(struct exit_event) == 72, "exit_event layout");

#endif
