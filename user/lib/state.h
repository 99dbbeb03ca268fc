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
#define STATE_MAX_BYTES (16 << 20)

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

struct sdir;

/* <dir of control socket>/NAME */
void state_runtime_path(const char *control_socket, const char *name, char *buf, size_t len);
/* Opens the runtime directory (control.socket's): created 0700, tightened to 0700 when it holds
 * nothing but the agent's files, refused when another user can write it and it is not sticky.
 * 0 or -errno with err filled. */
int state_runtime_dir(const char *control_socket, struct sdir *d, char *err, size_t errlen);
/* The agent's lock file in that directory (O_NOFOLLOW, a regular file of root's): the fd or
 * -errno with err filled. */
int runtime_open_lock(const char *control_socket, char *err, size_t errlen);
/* Written through a fresh temporary (O_EXCL) in the checked directory, then renamed. */
int state_write(const char *path, const struct rt_state *st);
/* 0, -ENOENT when there is none, -EINVAL when damaged; a file that is not root's regular file is
 * refused (-EPERM, -ELOOP...), with a warning on stderr. */
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
