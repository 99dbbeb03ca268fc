/* SPDX-License-Identifier: MIT */
/* The supervisor: runs the configured services as a state machine per service (s6-supervise
 * style table, the only way a service's state changes), decides what a collision or a zombie of a
 * service means for it, and answers control requests. Owns the services' processes (through
 * sup_ops), their health probes and the runtime state file. It logs through a hook; the agent
 * logs causes before it applies a decision, so the log reads in causal order. */
#ifndef REVENANT_SUPERVISOR_H
#define REVENANT_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#include "agent/cause.h"
#include "agent/proc.h"
#include "lib/config.h"
#include "lib/events.h"
#include "lib/loop.h"
#include "lib/ports.h"

enum svc_state {
	SVC_STOPPED,
	SVC_WAITING,  /* wanted; dependencies not ready yet */
	SVC_CLEARING, /* wanted; a leftover of ours is being stopped first */
	SVC_STARTING, /* running, health not confirmed yet */
	SVC_RUNNING,  /* running and healthy (or no health check) */
	SVC_STOPPING,
	SVC_BACKOFF, /* exited; restart timer armed */
	SVC_FAILED,  /* gave up */
	SVC_NSTATES,
};

enum svc_event {
	SE_START,
	SE_STOP,
	SE_DEPS_READY,
	SE_CLEARED, /* a process we waited for is gone and its port free */
	SE_HEALTHY,
	SE_UNHEALTHY,
	SE_EXIT,
	SE_TIMER,
	SE_COLLISION,  /* its port is taken: move to the port the decision chose */
	SE_RESTART,    /* a restart was asked for (control) or decided (zombie policy) */
	SE_KILL,       /* no more waiting for stop_timeout_ms (stop --force, a second SIGTERM) */
	SE_DEP_FAILED, /* a dependency gave up */
	SE_RESUME,     /* a stop that restarts is complete: start again (after any back-off) */
	SVC_NEVENTS,
};

const char *svc_state_name(enum svc_state s);
const char *svc_event_name(enum svc_event e);
/* The name of the action the table runs for (state, event), or NULL when it ignores it. */
const char *sup_action_name(enum svc_state s, enum svc_event e);

/* Back-off step `step` (1-based): base doubling each step, capped at max. */
unsigned sup_backoff_ms(int step, unsigned base, unsigned max);
/* The delay before a service's restart number `restarts` in a row: the first is at once (a
 * crash that happens once is restarted at once), then restart_delay_ms doubling, capped. */
unsigned sup_restart_delay_ms(int restarts, unsigned base, unsigned max);

/* Port choice, pure. probes[i]: a port and its owner (0 free, >0 its pid, -1 held by a process
 * nobody can name). Returns the port to use or -1; *reason explains a refusal. The service's own
 * port first; an alternative that is another service's configured port is skipped, and so is one
 * that was not probed (never taken as free unseen). */
struct port_probe {
	int port;
	pid_t owner; /* 0 = free */
	bool own;    /* the owner is a leftover of this very service */
};
int sup_choose_port(const struct rev_config *cfg, int svc, const struct port_probe *probes,
		    size_t n, char *reason, size_t reason_len);

struct supervisor;

/* The mechanism under the supervisor: NULL (sup_hooks.ops) is the real one — fork/exec, signals,
 * the listeners map at sup_hooks.listeners_fd. Unit tests inject their own, whole. */
struct sup_ops {
	int (*spawn)(void *ctx, const struct service_config *c, int port,
		     const struct svc_port *peers, size_t n_peers, struct svc_proc *out, char *warn,
		     size_t warnlen);
	void (*signal)(void *ctx, const struct svc_proc *p, int sig, enum sig_scope scope);
	/* How many of its processes are left besides the main one (cgroup or process tree). */
	int (*count)(void *ctx, const struct svc_proc *p);
	int (*listeners)(void *ctx, struct listener **ls, size_t *n);
	void *ctx;
	/* Why the reaped main process p died (bpf/cause); NULL or -ENOENT: nothing known. */
	int (*exit_cause)(void *ctx, const struct svc_proc *p, struct exit_cause *c);
};

struct sup_hooks {
	/* Every event the supervisor logs. */
	void (*event)(void *ctx, const struct event *e);
	/* The stack is finished: every service stopped after a shutdown, or a critical one gave
	 * up (exit_code 1). */
	void (*stack_done)(void *ctx, int exit_code);
	/* `revenant reload`: read and apply the config file again. 0, or -EINVAL when the file is
	 * bad (nothing changed); what happened in detail. */
	int (*reload)(void *ctx, char *detail, size_t len);
	/* Adds what the agent knows to a status answer (the event log's health). */
	void (*status)(void *ctx, cJSON *status);
	void *ctx;
	int listeners_fd;
	int tree_fd; /* the sensor's process-tree map, -1: none */
	uint32_t *tree_used; /* the sensor's switch for that map's probes, NULL: none */
	int causes_fd;		/* the sensor's exit-cause map, -1: none */
	struct outputs *output; /* reads the services' output; NULL: straight to log_file */
	uint32_t host_netns;
	const struct sup_ops *ops;
};

struct supervisor *sup_new(struct loop *l, const struct rev_config *cfg, const struct sup_hooks *h);
void sup_free(struct supervisor *s);

void sup_start_all(struct supervisor *s);
/* The agent is exiting: stop the stack in reverse dependency order (force: no more waiting). */
void sup_shutdown(struct supervisor *s, bool force);

/* A child reaped by the agent's SIGCHLD handler. Returns true when it was a service's. */
bool sup_on_reaped(struct supervisor *s, pid_t pid, int status);
/* port_listen and port_release: a release completes a stop, a listen confirms health early. */
void sup_on_port(struct supervisor *s, const struct port_event *e);
const char *sup_service_of(struct supervisor *s, pid_t pid);

/* What a collision means: which service lost (if ours), who holds the port, and whether the
 * service moves (ACT_MIGRATE, to `to`) or it is only reported. Decided without side effects. */
struct sup_collision {
	const char *service, *owner_service;
	enum ev_action action;
	int svc; /* the service that moves, or -1 */
	int from, to;
	pid_t owner_pid; /* 0: nobody can name it */
	char owner_comm[REV_COMM_LEN + 1];
};
void sup_decide_collision(struct supervisor *s, const struct port_event *e, pid_t owner_pid,
			  const char *owner_comm, struct sup_collision *d);
/* Carry out a migration: port_migrated, then the service restarts on the new port. */
void sup_apply_collision(struct supervisor *s, const struct sup_collision *d);

/* What a zombie means under its parent's service's zombie_policy. */
struct sup_zombie {
	const char *service;
	enum ev_action action; /* ACT_REPORT, ACT_NUDGE or ACT_RESTART_PARENT */
	int svc;
};
void sup_decide_zombie(struct supervisor *s, pid_t ppid, struct sup_zombie *d);
/* restart_parent: a service_restart (reason zombie_policy), counted and under back-off. */
void sup_apply_zombie(struct supervisor *s, const struct sup_zombie *d);

/* Apply a new configuration: added services start, removed ones stop (and are forgotten once
 * down), changed ones (any of their settings) restart in dependency order, unchanged ones are
 * not touched. Takes next (freed with the supervisor) on success. The summary goes to
 * detail. 0 or -ENOMEM (nothing changed). */
int sup_reload(struct supervisor *s, struct rev_config *next, char *detail, size_t len);

/* A control request. Returns a response, or NULL when the answer is deferred: then reply(ctx,
 * resp) is called later (the supervisor keeps ctx until then). */
typedef void (*sup_reply_fn)(void *ctx, cJSON *resp);
cJSON *sup_control(struct supervisor *s, const cJSON *req, sup_reply_fn reply, void *ctx);
/* The status reply, as `status` gets it: {"ok", "agent_pid", "services": {NAME: {...}}}. */
cJSON *sup_status(struct supervisor *s);

/* Forget a deferred reply whose client went away. */
void sup_cancel_reply(struct supervisor *s, void *ctx);
/* The services' part of the metrics exposition (a metrics_services_fn). */
size_t sup_metrics(void *ctx, char *buf, size_t len);

/* Queue ev for the service `name` and run the table: what a timer, a probe or a request does
 * (tests drive the machine this way). 0, or -ENOENT when there is no such service. */
int sup_input(struct supervisor *s, const char *name, enum svc_event ev);
/* For tests: a service's state by name (SVC_NSTATES when unknown), and its pid. */
enum svc_state sup_state_of(struct supervisor *s, const char *name);
pid_t sup_pid_of(struct supervisor *s, const char *name);
/* Services running (healthy, or without a check), as revenant_service_up counts them; *total
 * gets the number configured. For the service manager's STATUS= line. */
int sup_count_up(const struct supervisor *s, int *total);

#endif
