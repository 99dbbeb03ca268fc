/* SPDX-License-Identifier: MIT */
/* The userspace half of bpf/cause: a service's main process is watched from its start, and when
 * it is reaped its cause (who sent the fatal signal, the OOM killer) is taken from the kernel map
 * with one lookup and turned into service_exit's killed_by, oom and core_dumped. */
#ifndef REVENANT_CAUSE_H
#define REVENANT_CAUSE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"
#include "lib/events.h"

/* What the kernel recorded for a process until it was reaped. */
struct exit_cause {
	int sig;	  /* the last fatal signal sent to it; 0: none */
	pid_t sender_pid; /* 0: no process (a kernel signal in interrupt context) */
	uid_t sender_uid;
	char comm[REV_COMM_LEN + 1];
	bool kernel; /* the kernel sent it (OOM killer, a fault, a timer) */
	bool oom;    /* the OOM killer chose the process */
};

/* Watch pid (a zeroed entry in the map at fd, unless it is watched already). Safe between fork
 * and exec (one bpf(2) call). 0 or -errno; fd < 0 does nothing. */
int cause_watch(int fd, pid_t pid);
/* Take (read and delete) what was recorded for pid. 0, -ENOENT when it was not watched; *c is
 * zeroed first. */
int cause_take(int fd, pid_t pid, struct exit_cause *c);
/* service_exit's killed_by, oom and core_dumped for a process that ended with wait status
 * `status`: killed_by names the sender only when the process died of the very signal recorded
 * (a process that handled the signal and exited is no victim); agent_pid marks the agent's own
 * stops. e->killed_by.comm points into c. */
void cause_describe(const struct exit_cause *c, int status, pid_t agent_pid,
		    struct ev_service_exit *e);

#endif
