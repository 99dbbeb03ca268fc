/* SPDX-License-Identifier: MIT */
/* The agent's runtime state file (<control socket dir>/state.json): which services run under which
 * pid and process group. Written atomically on every change, so `scan`, `zombies`, `verify`,
 * `cleanup` and a restarted agent after a crash can tell our processes from foreign ones. */
#ifndef REVENANT_STATE_H
#define REVENANT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* In the control socket's directory: the state file, and the lock a running agent holds. */
#define REV_STATE_FILE "state.json"
#define REV_LOCK_FILE "agent.lock"

struct svc_record {
	char name[65];
	pid_t pid;
	pid_t pgid;
	uint64_t start_ticks; /* /proc/PID/stat starttime: with pid, the process's identity */
	int port;
	int restarts;
	char state[16];
	char health[16];
};

struct rt_state {
	pid_t agent_pid;
	struct svc_record *svcs;
	size_t n;
};

/* <dir of control socket>/NAME */
void state_runtime_path(const char *control_socket, const char *name, char *buf, size_t len);
int state_write(const char *path, const struct rt_state *st);
/* 0, -ENOENT when there is none, -EINVAL when damaged. */
int state_read(const char *path, struct rt_state *st);
void state_free(struct rt_state *st);
/* The recorded process still runs: its pid has the recorded start time. */
bool state_record_live(const struct svc_record *r);
/* The service pid belongs to (its main pid or its process group), or NULL. A record counts only
 * while its process is the one recorded (pid and start time): a reused pid is nobody's. */
const char *state_service_of(const struct rt_state *st, pid_t pid);
/* starttime field of /proc/PID/stat, 0 when gone. */
uint64_t proc_start_ticks(pid_t pid);

#endif
