/* SPDX-License-Identifier: MIT */
/* The services' processes, as mechanism: spawning one (environment, log file, process group,
 * cgroup), signalling what belongs to it, and the agent's cgroup directory. The supervisor
 * decides; this does, through the sup_ops the unit tests replace. */
#ifndef REVENANT_PROC_H
#define REVENANT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/config.h"

/* A running service's main process and what it reaches. */
struct svc_proc {
	pid_t pid, pgid;
	int pidfd;
	uint64_t start_ticks; /* /proc/PID/stat starttime: with pid, its identity */
	uint32_t tag;	      /* the service's mark in the process-tree map (no-cgroup hosts) */
	char cgroup[256];     /* its cgroup directory, "" when none */
};

struct procs;
struct outputs;
struct exit_cause;

/* Finds a writable cgroup hierarchy (v2, or v1's unified), removes the directories of dead agents
 * and makes this agent's own. Without one (or with REVENANT_NO_CGROUP=1 in the environment) a
 * service's processes are found through tree_fd, the sensor's process-tree map (-1: none; then
 * only the process group reaches what escaped it). tree_used: set before the first service
 * starts outside a cgroup (the sensor's probes skip the tree until then); may be NULL. */
struct procs *procs_new(int tree_fd, uint32_t *tree_used);
/* Removes the agent's cgroup directories (they are empty once the services are gone). */
void procs_free(struct procs *p);
/* bpf/cause's map of watched pids (-1: none): every main process is watched from before exec. */
void procs_set_causes(struct procs *p, int causes_fd);
/* Who reads the services' stdout and stderr (NULL: they write to log_file directly). */
void procs_set_output(struct procs *p, struct outputs *o);
/* The cause of the reaped main process sp (taken out of the kernel map). 0 or -ENOENT. */
int procs_exit_cause(struct procs *p, const struct svc_proc *sp, struct exit_cause *c);

/* The current port of every service, for {port:NAME} and REVENANT_PORT_<NAME>. */
struct svc_port {
	const char *name;
	int port; /* 0: none */
};

/* Forks and execs `/bin/sh -c COMMAND` for c on port (0: none) in its own process group and
 * cgroup, as its user, its stdout and stderr piped to the output reader (or, without one, to
 * its log file, opened here by root before the privileges go). 0 or -errno; warn gets what the
 * service should be told about (an unreadable env_file, output that cannot be read), "" when
 * nothing. */
int procs_spawn(struct procs *p, const struct service_config *c, int port,
		const struct svc_port *peers, size_t n_peers, struct svc_proc *out, char *warn,
		size_t warnlen);
enum sig_scope {
	SCOPE_ALL,   /* the main process (pidfd), its process group, the rest */
	SCOPE_MAIN,  /* the main process only (kill_mode main) */
	SCOPE_GROUP, /* its process group only */
	SCOPE_REST,  /* its process group and what is in its cgroup or tree (cgroup.kill: SIGKILL) */
};
void procs_signal(struct procs *p, const struct svc_proc *sp, int sig, enum sig_scope scope);
/* How many of its processes are alive in its cgroup or tree (0 without either). */
int procs_count(struct procs *p, const struct svc_proc *sp);
/* Close the pidfd, forget the pid (the cgroup directory stays for the next start). */
void procs_release(struct svc_proc *sp);

/* s with {port} replaced by port and {port:NAME} by that service's port; a reference to no
 * known service is left as written. NULL when out of memory. */
char *procs_expand(const char *s, int port, const struct svc_port *peers, size_t n_peers);

#endif
