/* SPDX-License-Identifier: MIT */
/* The supervisor: runs the configured services as a state machine per service (s6-supervise
 * style table), reacts to their exits, health, zombies and port collisions, and answers control
 * requests. Owns the services' pidfds, process groups, cgroups and the runtime state file. */
#ifndef REVENANT_SUPERVISOR_H
#define REVENANT_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/ports.h"
#include "agent/zombie.h"

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
	SE_CLEARED,   /* a process we waited for is gone and its port free */
	SE_HEALTHY,
	SE_UNHEALTHY,
	SE_EXIT,
	SE_TIMER,
	SE_COLLISION, /* the service's bind() hit EADDRINUSE */
	SVC_NEVENTS,
};

const char *svc_state_name(enum svc_state s);
/* The name of the action the table runs for (state, event), or NULL when it ignores it. */
const char *sup_action_name(enum svc_state s, enum svc_event e);

/* Restart accounting: the delay before restart `attempt` (1-based): 250 ms doubling, 30 s cap. */
unsigned sup_backoff_ms(int attempt);

/* Port choice, pure. owners[p] for each port: 0 free, >0 the owner's pid. Returns the port to use
 * or -1; *reason explains a refusal. The service's own port first; an alternative that is another
 * service's configured port is skipped. */
struct port_probe {
	int port;
	pid_t owner; /* 0 = free */
	bool own;    /* the owner is a leftover of this very service */
};
int sup_choose_port(const struct rev_config *cfg, int svc, const struct port_probe *probes,
		    size_t n, char *reason, size_t reason_len);

struct supervisor;

struct sup_hooks {
	struct evlog *log;
	int listeners_fd;
	uint32_t host_netns;
	/* The stack is finished: every service stopped after stop_all, or a critical one gave up. */
	void (*stack_done)(void *ctx, int exit_code);
	void *ctx;
};

struct supervisor *sup_new(struct loop *l, const struct rev_config *cfg, const struct sup_hooks *h);
void sup_free(struct supervisor *s);

void sup_start_all(struct supervisor *s);
void sup_stop_all(struct supervisor *s, bool force);

/* A child reaped by the agent's SIGCHLD handler. Returns true when it was a service's. */
bool sup_on_reaped(struct supervisor *s, pid_t pid, int status);
/* Kernel port events: releases complete stops; a collision of ours is resolved. Returns the
 * action taken for a collision ("migrate", "report") and sets *service / *owner_service. */
const char *sup_on_port(struct supervisor *s, const struct port_event *e, pid_t owner,
			const char **service, const char **owner_service);
/* A zombie: the service of its parent (or NULL) and the action taken under its policy. */
const char *sup_on_zombie(struct supervisor *s, const struct zrec *z, const char **service);
const char *sup_service_of(struct supervisor *s, pid_t pid);

/* A control request. Returns a response, or NULL when the answer is deferred: then reply(ctx,
 * resp) is called later (the supervisor keeps ctx until then). */
typedef void (*sup_reply_fn)(void *ctx, cJSON *resp);
cJSON *sup_control(struct supervisor *s, const cJSON *req, sup_reply_fn reply, void *ctx);
/* The status reply, as `status` gets it: {"ok", "agent_pid", "services": {NAME: {...}}}. */
cJSON *sup_status(struct supervisor *s);
/* The services' part of the metrics exposition (a metrics_services_fn). */
size_t sup_metrics(void *ctx, char *buf, size_t len);

/* Forget a deferred reply whose client went away. */
void sup_cancel_reply(struct supervisor *s, void *ctx);

#endif
