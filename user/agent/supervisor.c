// SPDX-License-Identifier: MIT
/* The supervisor. Each service is a state machine driven through one table, on[state][event]
 * (after s6-supervise): every input — a control request, an exit, a timer, a health result, a
 * decision about a collision or a zombie — is an event queued for a service, and an action's
 * return value is the only way a service's state changes. Actions spawn and signal through
 * sup_ops, probe health and log through the agent's hook. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/health.h"
#include "agent/metrics.h"
#include "agent/output.h"
#include "lib/safefs.h"
#include "agent/supervisor.h"
#include "lib/state.h"
#include "lib/util.h"

#define STABLE_RUN_MS 10000u	 /* a run this long (and healthy) resets the restart count */
#define KILL_GRACE_MS 5000u	 /* after SIGKILL, how long to wait for the exit */
#define RELEASE_GRACE_MS 2000u /* after the exit, how long to wait for the kernel's port_release */
#define STARTUP_MS 30000u /* without health.grace_ms: how long a service may take to answer */
#define MAX_DEPS 64	  /* dependencies whose port a service follows */

struct pending_reply {
	sup_reply_fn fn;
	void *ctx;
	enum svc_event until; /* SE_STOP: reply when stopped; SE_START: when running or failed */
	struct pending_reply *next;
};

struct service {
	struct supervisor *sup;
	const struct service_config *cfg;
	int idx; /* in the running config's services; -1 once removed by a reload */
	int dep_ports[MAX_DEPS]; /* each dependency's port when this one started */
	uint32_t tag;
	enum svc_state state;
	struct svc_proc proc;
	uint64_t started_ns;
	int port;	 /* the port it runs on now (may be an alternative) */
	int forced_port; /* next start uses this port (a migration) */
	int restarts;	 /* consecutive restarts */
	int total_restarts;
	unsigned resume_delay_ms; /* a restart's back-off, waited once the stop is complete */
	bool restart_after_stop;
	bool exited; /* in STOPPING: the main process is gone, waiting for the port */
	bool killed; /* in STOPPING: SIGKILL already sent */
	bool healthy, health_known;
	int health_fails;
	struct probe *probe;
	struct loop_timer timer; /* back-off, stop escalation, release wait */
	struct loop_timer health_timer;
	struct pending_reply *replies;
	/* a leftover of ours from a previous agent, stopped before we start */
	struct svc_proc leftover;
	bool stop_requested; /* a stop came while clearing: stay down once the leftover is gone */
	char give_up_reason[160]; /* why it enters FAILED */
	/* its last exit (status shows it), with the strings it points to */
	struct event last_exit;
	struct exit_cause last_cause;
	char last_signal[16];
	char last_name[72]; /* a reload may free the config its name was in */
	/* the input being handled */
	int in_status;
	enum restart_reason in_reason;
	struct service *in_from;
};

struct input {
	struct service *v;
	enum svc_event ev;
	int status;
	enum restart_reason reason;
	struct service *from; /* the dependency behind SE_DEP_FAILED, SE_RESTART */
};

struct supervisor {
	struct loop *loop;
	const struct rev_config *cfg;
	struct sup_hooks h;
	struct sup_ops ops;
	struct procs *procs;
	struct service **svcs; /* each allocated once: timers and fds point at them */
	int n;		       /* services: the config's first, in its order, then retired ones */
	int *order; /* start order */
	bool stopping_all;
	bool shutdown; /* the agent is exiting (not a `stop --all`) */
	bool force;
	bool done;
	struct pending_reply *all_replies; /* `stop --all` callers */
	int exit_code;
	uint64_t state_write_errors;
	char state_path[REV_PATH_BUF];
	/* Inputs waiting for the table: actions queue, never dispatch, so one runs at a time. */
	struct input *queue;
	size_t qhead, qlen, qcap;
	bool draining;
	uint32_t tags;
	/* configurations applied by reloads (the first is the agent's): services point into them */
	struct rev_config **owned;
	int n_owned;
	int state_err; /* the last failure to write state_path, said once */
};

typedef enum svc_state (*svc_action)(struct service *v);

static const char *const state_names[SVC_NSTATES] = {
	"stopped", "waiting", "clearing", "starting", "running", "stopping", "backoff", "failed",
};

static const char *const event_names[SVC_NEVENTS] = {
	[SE_START] = "START",	   [SE_STOP] = "STOP",	       [SE_DEPS_READY] = "DEPS_READY",
	[SE_CLEARED] = "CLEARED",  [SE_HEALTHY] = "HEALTHY",   [SE_UNHEALTHY] = "UNHEALTHY",
	[SE_EXIT] = "EXIT",	   [SE_TIMER] = "TIMER",       [SE_COLLISION] = "COLLISION",
	[SE_RESTART] = "RESTART",  [SE_KILL] = "KILL",	       [SE_DEP_FAILED] = "DEP_FAILED",
	[SE_RESUME] = "RESUME",
};

const char *svc_state_name(enum svc_state s)
{
	return s < SVC_NSTATES ? state_names[s] : "?";
}

const char *svc_event_name(enum svc_event e)
{
	return e < SVC_NEVENTS ? event_names[e] : "?";
}

unsigned sup_backoff_ms(int step, unsigned base, unsigned max)
{
	unsigned ms = base;

	for (int i = 1; i < step && ms < max; i++)
		ms = ms > UINT32_MAX / 2 ? max : ms * 2;
	return ms < max ? ms : max;
}

unsigned sup_restart_delay_ms(int restarts, unsigned base, unsigned max)
{
	return restarts <= 1 ? 0 : sup_backoff_ms(restarts - 1, base, max);
}

/* ---- port choice (pure) ---- */

static const struct port_probe *probe_of(const struct port_probe *p, size_t n, int port)
{
	for (size_t i = 0; i < n; i++)
		if (p[i].port == port)
			return &p[i];
	return NULL;
}

static bool is_other_service_port(const struct rev_config *cfg, int svc, int port)
{
	for (int i = 0; i < cfg->n_services; i++)
		if (i != svc && cfg->services[i].port == port)
			return true;
	return false;
}

int sup_choose_port(const struct rev_config *cfg, int svc, const struct port_probe *probes,
		    size_t n, char *reason, size_t reason_len)
{
	const struct service_config *sc = &cfg->services[svc];
	const struct port_probe *p = probe_of(probes, n, sc->port);
	bool migrate = cfg->conflict.allow_port_migration && strcmp(cfg->conflict.strategy, "fail");

	reason[0] = 0;
	if (!p || !p->owner || p->own)
		return sc->port; /* free, or held by our own leftover, which is stopped first */
	/* Foreign owners are never signalled here, whatever preserve_external_processes says:
	 * `revenant kill-port --force` is the one explicit way. */
	if (!migrate) {
		snprintf(reason, reason_len,
			 "port %d is held by pid %d, a process revenant does not manage, and port "
			 "migration is off (conflict_resolution.allow_port_migration)",
			 sc->port, p->owner);
		return -1;
	}
	for (int i = 0; i < sc->n_alt; i++) {
		int alt = sc->alt_ports[i];
		const struct port_probe *q = probe_of(probes, n, alt);

		/* An alternative nobody looked at is not known to be free. */
		if (is_other_service_port(cfg, svc, alt) || !q)
			continue;
		if (!q->owner)
			return alt;
	}
	snprintf(reason, reason_len,
		 "port %d is held by pid %d, a process revenant does not manage, and no "
		 "alternative_ports entry is free",
		 sc->port, p->owner);
	return -1;
}

/* ---- mechanism: the real sup_ops ---- */

static int real_spawn(void *ctx, const struct service_config *c, int port,
		      const struct svc_port *peers, size_t n_peers, struct svc_proc *out, char *warn,
		      size_t warnlen)
{
	struct supervisor *s = ctx;

	return procs_spawn(s->procs, c, port, peers, n_peers, out, warn, warnlen);
}

static void real_signal(void *ctx, const struct svc_proc *p, int sig, enum sig_scope scope)
{
	struct supervisor *s = ctx;

	procs_signal(s->procs, p, sig, scope);
}

static int real_count(void *ctx, const struct svc_proc *p)
{
	struct supervisor *s = ctx;

	return procs_count(s->procs, p);
}

static int real_listeners(void *ctx, struct listener **ls, size_t *n)
{
	struct supervisor *s = ctx;

	return ports_read_map(s->h.listeners_fd, ls, n);
}

static int real_exit_cause(void *ctx, const struct svc_proc *p, struct exit_cause *c)
{
	struct supervisor *s = ctx;

	return procs_exit_cause(s->procs, p, c);
}

/* ---- helpers ---- */

static void emit(struct supervisor *s, const struct event *e)
{
	if (s->h.event)
		s->h.event(s->h.ctx, e);
}

static struct service *svc_named(struct supervisor *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->svcs[i]->cfg->name, name) && s->svcs[i]->idx >= 0)
			return s->svcs[i];
	return NULL;
}

static bool depends_on(const struct service *w, const struct service *v)
{
	for (int k = 0; k < w->cfg->n_deps; k++)
		if (!strcmp(w->cfg->depends_on[k], v->cfg->name))
			return true;
	return false;
}

/* Who would block a service binding the wildcard address on port: 0 nobody, -1 a listener whose
 * owner no one can see (PID 1 here), else its pid. */
static pid_t owner_in(const struct supervisor *s, const struct listener *ls, size_t n, int port)
{
	struct sock_ident want = {.family = REV_AF_INET, .proto = REV_PROTO_TCP};
	struct port_owner o;

	want.port = port;
	want.netns = s->h.host_netns;
	if (!ports_owner(ls, n, NULL, &want, 0, &o))
		return 0;
	return o.pid ? o.pid : -1;
}

static pid_t port_owner(struct supervisor *s, int port)
{
	struct listener *ls;
	size_t n;
	pid_t owner;

	if (s->ops.listeners(s->ops.ctx, &ls, &n))
		return 0;
	owner = owner_in(s, ls, n, port);
	free(ls);
	return owner;
}

/* The probes for a port choice: `first` (with its known owner, or looked up when 0), the
 * configured port when it is not `first`, then every alternative. One read of the map. *out is
 * allocated; the count is returned (0 when out of memory). */
static size_t probe_ports(struct supervisor *s, const struct service *v, int first,
			  pid_t first_owner, struct port_probe **out)
{
	struct listener *ls = NULL;
	struct port_probe *p = calloc(v->cfg->n_alt + 2, sizeof(*p));
	size_t n = 0, nls = 0;

	*out = p;
	if (!p)
		return 0;
	if (s->ops.listeners(s->ops.ctx, &ls, &nls))
		nls = 0;
	p[n++] = (struct port_probe){.port = first,
				     .owner = first_owner ? first_owner : owner_in(s, ls, nls, first)};
	if (first != v->cfg->port && v->cfg->port)
		p[n++] = (struct port_probe){.port = v->cfg->port,
					     .owner = owner_in(s, ls, nls, v->cfg->port)};
	for (int i = 0; i < v->cfg->n_alt; i++)
		p[n++] = (struct port_probe){.port = v->cfg->alt_ports[i],
					     .owner = owner_in(s, ls, nls, v->cfg->alt_ports[i])};
	free(ls);
	return n;
}

/* pgid: getpgid(pid), looked up once by the caller (this runs for every port event). */
static bool in_service(const struct service *v, pid_t pid, pid_t pgid)
{
	return pid > 0 && (pid == v->proc.pid || pid == v->leftover.pid ||
			   (v->proc.pgid > 1 && pgid == v->proc.pgid));
}

static bool pid_in_service(const struct service *v, pid_t pid)
{
	return pid > 0 && in_service(v, pid, getpgid(pid));
}

static struct service *service_of_pid(struct supervisor *s, pid_t pid)
{
	pid_t pgid;

	if (pid <= 0 || !s->n)
		return NULL;
	pgid = getpgid(pid);
	for (int i = 0; i < s->n; i++)
		if (in_service(s->svcs[i], pid, pgid))
			return s->svcs[i];
	return NULL;
}

const char *sup_service_of(struct supervisor *s, pid_t pid)
{
	struct service *v = s ? service_of_pid(s, pid) : NULL;

	return v ? v->cfg->name : NULL;
}

static const char *health_name(const struct service *v)
{
	return !v->cfg->health.enabled ? "none"
	       : !v->health_known      ? "unknown"
	       : v->healthy	       ? "ok"
				       : "failing";
}

static void write_state(struct supervisor *s)
{
	struct rt_state st = {.agent_pid = getpid(), .n = s->n};
	int rc;
	struct svc_record arr[s->n > 0 ? s->n : 1];

	memset(arr, 0, sizeof(arr));
	st.svcs = arr;
	for (int i = 0; i < s->n; i++) {
		const struct service *v = s->svcs[i];
		/* A leftover still being stopped stays on record, so a crash now loses nothing. */
		const struct svc_proc *p = v->proc.pid ? &v->proc : &v->leftover;

		snprintf(arr[i].name, sizeof(arr[i].name), "%s", v->cfg->name);
		arr[i].pid = p->pid;
		arr[i].pgid = v->proc.pgid ? v->proc.pgid : v->leftover.pgid;
		arr[i].start_ticks = p->start_ticks;
		arr[i].port = v->port ? v->port : v->cfg->port;
		arr[i].restarts = v->total_restarts;
		snprintf(arr[i].state, sizeof(arr[i].state), "%s", svc_state_name(v->state));
		snprintf(arr[i].health, sizeof(arr[i].health), "%s", health_name(v));
	}
	/* The crash-recovery record: a failure is counted (status, metrics) and said once per kind
	 * (the runtime directory turned unsafe, a full disk); the next change tries again. */
	rc = state_write(s->state_path, &st);
	if (rc)
		s->state_write_errors++;
	if (rc && rc != s->state_err) {
		struct event e = {.type = EV_AGENT_WARNING};
		char d[4400];

		snprintf(d, sizeof(d),
			 "cannot write %s: %s (a restarted agent or cleanup will not know the "
			 "services' processes; stderr says why)",
			 s->state_path, strerror(-rc));
		e.agent_warning.detail = d;
		emit(s, &e);
	}
	s->state_err = rc;
}

static void reply_pending(struct service *v, bool stopped)
{
	struct pending_reply **pp = &v->replies;

	while (*pp) {
		struct pending_reply *r = *pp;
		/* A start that ends in STOPPED was overtaken by a stop: answer it too. */
		bool fire = stopped ? r->until == SE_STOP ||
					      (r->until == SE_START && v->state == SVC_STOPPED &&
					       !v->restart_after_stop)
				    : r->until == SE_START &&
					      (v->state == SVC_RUNNING || v->state == SVC_FAILED);
		bool ok = v->state != SVC_FAILED && !(r->until == SE_START && v->state == SVC_STOPPED);
		cJSON *resp;

		if (!fire) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		resp = cJSON_CreateObject();
		cJSON_AddBoolToObject(resp, "ok", ok);
		cJSON_AddStringToObject(resp, "service", v->cfg->name);
		cJSON_AddStringToObject(resp, "state", svc_state_name(v->state));
		if (v->proc.pid)
			cJSON_AddNumberToObject(resp, "pid", v->proc.pid);
		if (v->state == SVC_FAILED)
			cJSON_AddStringToObject(resp, "error", "the service failed to start");
		else if (!ok)
			cJSON_AddStringToObject(resp, "error",
						"a stop came before the service was running");
		r->fn(r->ctx, resp);
		free(r);
	}
}

/* ---- the input queue ---- */

static void post_input(struct supervisor *s, const struct input *in)
{
	if (s->qlen == s->qcap) {
		size_t ncap = s->qcap ? s->qcap * 2 : 64;
		struct input *q = malloc(ncap * sizeof(*q));

		if (!q) {
			/* Nothing sane is left to do with a lost input: say it loudly. */
			fprintf(stderr, "revenant: out of memory: service %s lost event %s\n",
				in->v->cfg->name, svc_event_name(in->ev));
			return;
		}
		for (size_t i = 0; i < s->qlen; i++)
			q[i] = s->queue[(s->qhead + i) % s->qcap];
		free(s->queue);
		s->queue = q;
		s->qcap = ncap;
		s->qhead = 0;
	}
	s->queue[(s->qhead + s->qlen) % s->qcap] = *in;
	s->qlen++;
}

static void post(struct service *v, enum svc_event ev)
{
	post_input(v->sup, &(struct input){.v = v, .ev = ev});
}

static void run_queue(struct supervisor *s);

/* ---- health ---- */

static void health_schedule(struct service *v, unsigned ms)
{
	if (!v->cfg->health.enabled || !v->port)
		return;
	loop_timer_after_ms(v->sup->loop, &v->health_timer, ms);
}

static void health_stop(struct service *v)
{
	probe_cancel(v->probe);
	v->probe = NULL;
	loop_timer_cancel(v->sup->loop, &v->health_timer);
}

static void on_probe_done(void *ctx, bool ok, const char *detail)
{
	struct service *v = ctx;
	const struct health_config *h = &v->cfg->health;
	bool was_known = v->health_known, was = v->healthy;

	v->probe = NULL;
	if (ok) {
		v->health_fails = 0;
		v->healthy = v->health_known = true;
	} else if (v->state == SVC_STARTING &&
		   (mono_ns() - v->started_ns) / NS_PER_MS <
			   (h->grace_ms ? (unsigned)h->grace_ms : STARTUP_MS)) {
		/* Still starting: not answering yet is not a failure. */
	} else if (++v->health_fails >= h->failures) {
		v->healthy = false;
		v->health_known = true;
	}
	if (v->health_known && (!was_known || was != v->healthy)) {
		struct event e = {.type = EV_HEALTH};

		e.health = (struct ev_health){.service = v->cfg->name,
					      .pid = v->proc.pid,
					      .port = v->port,
					      .ok = v->healthy,
					      .detail = detail};
		emit(v->sup, &e);
		write_state(v->sup);
	}
	/* Until the first success, probe often: the kernel's port_listen usually beats this. */
	health_schedule(v, v->state == SVC_STARTING && !v->healthy && h->interval_ms > 200
				   ? 200
				   : h->interval_ms);
	if (v->health_known) {
		post(v, v->healthy ? SE_HEALTHY : SE_UNHEALTHY);
		run_queue(v->sup);
	}
}

static void on_health_timer(struct loop *l, void *ctx)
{
	struct service *v = ctx;

	if (v->state != SVC_STARTING && v->state != SVC_RUNNING)
		return;
	v->probe = probe_start(l, &v->cfg->health, v->port, on_probe_done, v);
	if (!v->probe)
		on_probe_done(v, false, strerror(errno));
}

/* ---- actions: each returns the state the service is in afterwards ---- */

static bool deps_ready(struct service *v)
{
	for (int i = 0; i < v->cfg->n_deps; i++)
		if (svc_named(v->sup, v->cfg->depends_on[i])->state != SVC_RUNNING)
			return false;
	return true;
}

static enum svc_state fail(struct service *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Into FAILED: the reason is logged by the table's entry into that state. */
static enum svc_state fail(struct service *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->give_up_reason, sizeof(v->give_up_reason), fmt, ap);
	va_end(ap);
	return SVC_FAILED;
}

static void on_leftover_exit(struct loop *l, int fd, uint32_t events, void *ctx);

/* owner_pid 0: held by a process nobody can name (owner_pid and owner_comm null). */
static void emit_migrated(struct service *v, int from, int to, pid_t owner_pid,
			  const char *owner_comm)
{
	struct event e = {.type = EV_PORT_MIGRATED};

	e.port_migrated = (struct ev_port_migrated){
		.service = v->cfg->name,
		.from = from,
		.to = to,
		.owner_pid = owner_pid,
		.owner_comm = owner_pid && owner_comm[0] ? owner_comm : NULL};
	emit(v->sup, &e);
}

/* The port a start uses: a migration's, the configured one when free (or ours), else an
 * alternative. -1 with v->give_up_reason set when none can be had. */
static int start_port(struct service *v)
{
	struct supervisor *s = v->sup;
	struct port_probe *probes;
	char comm[REV_COMM_LEN + 1] = "";
	size_t n;
	int port;

	if (v->forced_port) {
		port = v->forced_port;
		v->forced_port = 0;
		return port;
	}
	if (!v->cfg->port)
		return 0;
	n = probe_ports(s, v, v->cfg->port, 0, &probes);
	if (!n) {
		snprintf(v->give_up_reason, sizeof(v->give_up_reason), "out of memory");
		return -1;
	}
	if (probes[0].owner && pid_in_service(v, probes[0].owner))
		probes[0].own = true;
	port = sup_choose_port(s->cfg, v->idx, probes, n, v->give_up_reason,
			       sizeof(v->give_up_reason));
	if (port > 0 && port != v->cfg->port) {
		/* held by a process no tool can see (PID 1 here): owner null */
		if (probes[0].owner > 0)
			proc_comm(probes[0].owner, comm, sizeof(comm));
		emit_migrated(v, v->cfg->port, port, probes[0].owner > 0 ? probes[0].owner : 0, comm);
	}
	free(probes);
	return port;
}

/* The port a service is on, or will be on when it starts. */
static int current_port(const struct service *v)
{
	return v->port ? v->port : v->cfg->port;
}

static enum svc_state spawn(struct service *v)
{
	struct supervisor *s = v->sup;
	struct event e = {.type = EV_SERVICE_START};
	struct svc_port peers[s->n > 0 ? s->n : 1];
	size_t np = 0;
	char warn[512];
	int rc;

	for (int i = 0; i < s->n; i++)
		if (s->svcs[i]->idx >= 0)
			peers[np++] = (struct svc_port){s->svcs[i]->cfg->name,
							current_port(s->svcs[i])};
	/* What it is told of its dependencies' ports: a move later restarts it (dependents_follow). */
	for (int k = 0; k < v->cfg->n_deps && k < MAX_DEPS; k++) {
		const struct service *d = svc_named(s, v->cfg->depends_on[k]);

		v->dep_ports[k] = d ? current_port(d) : 0;
	}
	v->proc = (struct svc_proc){.pidfd = -1, .tag = v->tag};
	rc = s->ops.spawn(s->ops.ctx, v->cfg, v->port, peers, np, &v->proc, warn, sizeof(warn));
	if (warn[0]) {
		struct event w = {.type = EV_SERVICE_WARNING};

		w.service_warning = (struct ev_service_warning){.service = v->cfg->name,
								.detail = warn};
		emit(v->sup, &w);
	}
	if (rc)
		return fail(v, "cannot start: %s", strerror(-rc));
	v->started_ns = mono_ns();
	v->healthy = v->health_known = false;
	v->health_fails = 0;
	v->exited = v->killed = false;
	e.service_start = (struct ev_service_start){.service = v->cfg->name,
						    .command = v->cfg->command,
						    .pid = v->proc.pid,
						    .port = v->port};
	emit(v->sup, &e);
	if (v->cfg->health.enabled && v->port) {
		health_schedule(v, v->cfg->health.grace_ms ? v->cfg->health.grace_ms : 100);
		return SVC_STARTING;
	}
	return SVC_RUNNING;
}

static enum svc_state try_start(struct service *v)
{
	struct supervisor *s = v->sup;
	int port;

	if (s->stopping_all)
		return SVC_STOPPED;
	if (!deps_ready(v)) {
		/* Like systemd's Requires=: starting a service starts what it depends on. */
		for (int i = 0; i < v->cfg->n_deps; i++) {
			struct service *d = svc_named(s, v->cfg->depends_on[i]);

			if (d->state == SVC_STOPPED || d->state == SVC_FAILED)
				post(d, SE_START);
		}
		return SVC_WAITING;
	}
	if (v->leftover.pid) {
		/* Ours from a previous agent: replace it, never migrate away from it. */
		if (v->leftover.pidfd >= 0)
			loop_add_fd(s->loop, v->leftover.pidfd, EPOLLIN, on_leftover_exit, v);
		/* Its group only while it lives: by number once the leader is gone, the number may
		 * be another group's. */
		if (v->leftover.pidfd >= 0 && pidfd_signal(v->leftover.pidfd, 0) == 0)
			s->ops.signal(s->ops.ctx, &v->leftover, v->cfg->stop_signal, SCOPE_ALL);
		loop_timer_after_ms(s->loop, &v->timer, v->cfg->stop_timeout_ms);
		return SVC_CLEARING;
	}
	port = start_port(v);
	if (port < 0)
		return SVC_FAILED;
	v->port = port;
	return spawn(v);
}

/* The leftover's pidfd became readable: it exited (its parent, not us, reaps it). */
static void on_leftover_exit(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct service *v = ctx;

	(void)events;
	loop_del_fd(l, fd);
	if (v->state != SVC_CLEARING)
		return;
	if (v->cfg->port) {
		pid_t owner = port_owner(v->sup, v->cfg->port);

		if (owner > 0 && getpgid(owner) == v->leftover.pid)
			return; /* a descendant still holds the port: wait for its release */
	}
	post(v, SE_CLEARED);
	run_queue(v->sup);
}

static enum svc_state act_start(struct service *v)
{
	v->restarts = 0;
	return try_start(v);
}

static enum svc_state act_running(struct service *v)
{
	(void)v;
	return SVC_RUNNING;
}

/* What a stop signals: everything the service started, or its main process (kill_mode). */
static enum sig_scope stop_scope(const struct service *v)
{
	return v->cfg->kill_mode == KILL_MAIN ? SCOPE_MAIN : SCOPE_ALL;
}

/* Processes of the service still alive besides its main one (kill_mode group only: under main
 * they are not the service's business once started). */
static int rest_alive(struct service *v)
{
	return v->cfg->kill_mode == KILL_GROUP ? v->sup->ops.count(v->sup->ops.ctx, &v->proc) : 0;
}

static enum svc_state begin_stop(struct service *v, bool restart, unsigned delay_ms)
{
	v->restart_after_stop = restart;
	v->resume_delay_ms = delay_ms;
	health_stop(v);
	if (v->exited) {
		post(v, SE_EXIT);
		return SVC_STOPPING;
	}
	v->sup->ops.signal(v->sup->ops.ctx, &v->proc, v->cfg->stop_signal, stop_scope(v));
	loop_timer_after_ms(v->sup->loop, &v->timer, v->cfg->stop_timeout_ms);
	return SVC_STOPPING;
}

static enum svc_state act_stop(struct service *v)
{
	return begin_stop(v, false, 0);
}

/* A restart the supervisor decided, logged with its reason. Crashes, failed health checks and
 * zombie policy count toward max_restarts and wait their back-off; a dependency's move or
 * restart and a reload do neither. false when max_restarts is reached (the caller gives up
 * instead). from: the dependency behind it. */
static bool count_restart(struct service *v, enum restart_reason why, const struct service *from,
			  unsigned *delay_ms)
{
	struct event e = {.type = EV_SERVICE_RESTART};
	bool counted = why == RESTART_EXIT || why == RESTART_UNHEALTHY ||
		       why == RESTART_ZOMBIE_POLICY;

	*delay_ms = 0;
	if (counted) {
		if (v->cfg->max_restarts >= 0 && v->restarts >= v->cfg->max_restarts)
			return false;
		v->restarts++;
		*delay_ms = sup_restart_delay_ms(v->restarts, v->cfg->restart_delay_ms,
						 v->cfg->restart_delay_max_ms);
	}
	v->total_restarts++;
	e.service_restart = (struct ev_service_restart){.service = v->cfg->name,
							.attempt = v->restarts,
							.delay_ms = *delay_ms,
							.reason = why,
							.dependency = from ? from->cfg->name : NULL,
							.dependency_port = from ? current_port(from) : 0};
	emit(v->sup, &e);
	return true;
}

static enum svc_state act_restart(struct service *v)
{
	unsigned delay = 0;

	if (v->in_reason == RESTART_REQUESTED) {
		v->restarts = 0;
		return begin_stop(v, true, 0);
	}
	if (!count_restart(v, v->in_reason, v->in_from, &delay)) {
		/* Give up once it is gone: FAILED ignores EXIT, so giving up now would drop the
		 * SIGKILL escalation and leave the pidfd and pid behind. */
		snprintf(v->give_up_reason, sizeof(v->give_up_reason),
			 "%s after %d restarts in a row (max_restarts %d)",
			 v->in_reason == RESTART_UNHEALTHY ? "unhealthy" : "leaking zombies",
			 v->restarts, v->cfg->max_restarts);
		return begin_stop(v, false, 0);
	}
	return begin_stop(v, true, delay);
}

static enum svc_state act_unhealthy(struct service *v)
{
	v->in_reason = RESTART_UNHEALTHY;
	return act_restart(v);
}

static enum svc_state act_cancel(struct service *v)
{
	loop_timer_cancel(v->sup->loop, &v->timer);
	return SVC_STOPPED;
}

/* service_exit with its cause, kept for `status` (the last exit of each service). */
static void report_exit(struct service *v, int status)
{
	struct supervisor *s = v->sup;
	struct event *e = &v->last_exit;

	memset(&v->last_cause, 0, sizeof(v->last_cause));
	if (s->ops.exit_cause)
		s->ops.exit_cause(s->ops.ctx, &v->proc, &v->last_cause);
	*e = (struct event){.type = EV_SERVICE_EXIT, .ts_ns = mono_ns()};
	snprintf(v->last_name, sizeof(v->last_name), "%s", v->cfg->name);
	e->service_exit = (struct ev_service_exit){
		.service = v->last_name,
		.pid = v->proc.pid,
		.code = WIFSIGNALED(status) ? -1 : WEXITSTATUS(status),
		.signal = WIFSIGNALED(status) ? signal_name(WTERMSIG(status), v->last_signal,
							    sizeof(v->last_signal))
					      : NULL,
		.uptime_ms = (e->ts_ns - v->started_ns) / NS_PER_MS};
	cause_describe(&v->last_cause, status, getpid(), &e->service_exit);
	emit(s, e);
}

/* Exited on its own (crash, or failed liveness turned into a restart). */
static enum svc_state act_exited(struct service *v)
{
	uint64_t up_ms = (mono_ns() - v->started_ns) / NS_PER_MS;
	bool again = v->cfg->auto_restart && !v->sup->stopping_all;
	unsigned delay = 0;

	health_stop(v);
	/* What the main process started may outlive it (a daemon that left the group with setsid)
	 * and hold the port: under kill_mode group, the service ends with its main process. */
	if (v->cfg->kill_mode == KILL_GROUP)
		v->sup->ops.signal(v->sup->ops.ctx, &v->proc, v->cfg->stop_signal, SCOPE_REST);
	procs_release(&v->proc);
	if (up_ms >= STABLE_RUN_MS && (!v->cfg->health.enabled || v->healthy))
		v->restarts = 0;
	if (again && !count_restart(v, RESTART_EXIT, NULL, &delay)) {
		again = false;
		fail(v, "exited %d times in a row (max_restarts %d)", v->restarts + 1,
		     v->cfg->max_restarts);
	}
	if (rest_alive(v)) {
		/* Down once the rest is gone (SIGKILL at stop_timeout_ms), then as decided. */
		v->exited = true;
		v->killed = false;
		v->restart_after_stop = again;
		v->resume_delay_ms = delay;
		loop_timer_after_ms(v->sup->loop, &v->timer, v->cfg->stop_timeout_ms);
		return SVC_STOPPING;
	}
	if (v->give_up_reason[0])
		return SVC_FAILED;
	if (!again)
		return SVC_STOPPED;
	loop_timer_after_ms(v->sup->loop, &v->timer, delay);
	return SVC_BACKOFF;
}

static bool port_still_ours(struct service *v)
{
	pid_t owner;

	if (!v->port)
		return false;
	owner = port_owner(v->sup, v->port);
	/* The kernel closes the sockets before the exit is reported, so a holder now is a
	 * descendant still in the group. */
	return owner > 0 && (owner == v->proc.pgid || getpgid(owner) == v->proc.pgid);
}

/* The stop is complete: down for good, down to give up, or down to come back (SE_RESUME, once
 * the stop's callers have their answer). */
static enum svc_state finish_stop(struct service *v)
{
	loop_timer_cancel(v->sup->loop, &v->timer);
	v->exited = false;
	if (v->give_up_reason[0] && !v->restart_after_stop)
		return SVC_FAILED;
	v->give_up_reason[0] = 0;
	if (v->restart_after_stop && !v->sup->stopping_all)
		post(v, SE_RESUME);
	else
		v->restart_after_stop = false;
	return SVC_STOPPED;
}

/* The main process is gone while stopping: done once the kernel released its port. */
static enum svc_state act_stopped_exit(struct service *v)
{
	procs_release(&v->proc);
	v->exited = true;
	/* A stop ends the whole service: what escaped the group and outlived the main process
	 * (it had the stop signal already) is killed now, so nothing of ours stays behind. */
	if (v->cfg->kill_mode == KILL_GROUP && rest_alive(v))
		v->sup->ops.signal(v->sup->ops.ctx, &v->proc, SIGKILL, SCOPE_REST);
	if (port_still_ours(v)) {
		loop_timer_after_ms(v->sup->loop, &v->timer, RELEASE_GRACE_MS);
		return SVC_STOPPING;
	}
	return finish_stop(v);
}

static enum svc_state act_stop_timer(struct service *v)
{
	if (v->exited) {
		/* The release never came, or the rest outlived its stop signal: what is left of
		 * ours dies now. */
		if (rest_alive(v))
			v->sup->ops.signal(v->sup->ops.ctx, &v->proc, SIGKILL, SCOPE_REST);
		return finish_stop(v);
	}
	if (!v->killed) {
		v->killed = true;
		v->sup->ops.signal(v->sup->ops.ctx, &v->proc, SIGKILL, stop_scope(v));
		loop_timer_after_ms(v->sup->loop, &v->timer, KILL_GRACE_MS);
	}
	return SVC_STOPPING;
}

static enum svc_state act_kill(struct service *v)
{
	if (v->killed || v->exited)
		return SVC_STOPPING;
	return act_stop_timer(v);
}

static enum svc_state act_resume(struct service *v)
{
	unsigned delay = v->resume_delay_ms;

	if (!v->restart_after_stop)
		return SVC_STOPPED; /* a stop came after all */
	v->restart_after_stop = false;
	v->resume_delay_ms = 0;
	if (delay && !v->sup->stopping_all) {
		loop_timer_after_ms(v->sup->loop, &v->timer, delay);
		return SVC_BACKOFF;
	}
	return try_start(v);
}

static enum svc_state act_clear_timer(struct service *v)
{
	/* The leftover ignored the stop signal. */
	if (v->leftover.pidfd >= 0 && pidfd_signal(v->leftover.pidfd, SIGKILL) == 0) {
		v->sup->ops.signal(v->sup->ops.ctx, &v->leftover, SIGKILL, SCOPE_GROUP);
		loop_timer_after_ms(v->sup->loop, &v->timer, KILL_GRACE_MS);
		return SVC_CLEARING;
	}
	post(v, SE_CLEARED);
	return SVC_CLEARING;
}

static enum svc_state act_cleared(struct service *v)
{
	loop_timer_cancel(v->sup->loop, &v->timer);
	if (v->leftover.pidfd >= 0)
		loop_del_fd(v->sup->loop, v->leftover.pidfd);
	procs_release(&v->leftover);
	v->leftover.pgid = 0;
	if (v->stop_requested) {
		v->stop_requested = false;
		return SVC_STOPPED;
	}
	return try_start(v);
}

static enum svc_state act_clearing_stop(struct service *v)
{
	/* The leftover is being stopped already (with escalation): let that finish. */
	v->stop_requested = true;
	return SVC_CLEARING;
}

static enum svc_state act_clearing_start(struct service *v)
{
	v->stop_requested = false;
	return SVC_CLEARING;
}

/* Stopping already: a stop cancels the restart that may follow, a start asks for one. */
static enum svc_state act_stopping_stop(struct service *v)
{
	v->restart_after_stop = false;
	return SVC_STOPPING;
}

static enum svc_state act_stopping_start(struct service *v)
{
	v->restarts = 0;
	v->restart_after_stop = true;
	v->resume_delay_ms = 0;
	return SVC_STOPPING;
}

/* The port was released, or a process of the service's rest was reaped: done when the main
 * process is gone and nothing of ours is left. */
static enum svc_state act_release_done(struct service *v)
{
	return v->exited && !rest_alive(v) ? finish_stop(v) : SVC_STOPPING;
}

static enum svc_state act_collision(struct service *v)
{
	return begin_stop(v, true, 0); /* forced_port was set by the decision */
}

static enum svc_state act_dep_failed(struct service *v)
{
	/* Whatever waits for a service that gave up would wait forever: it fails too. */
	return fail(v, "dependency %s gave up", v->in_from->cfg->name);
}

/* on[state][event]: NULL ignores the event in that state. */
static const svc_action on[SVC_NSTATES][SVC_NEVENTS] = {
	[SVC_STOPPED] = {[SE_START] = act_start, [SE_RESUME] = act_resume},
	[SVC_FAILED] = {[SE_START] = act_start},
	[SVC_WAITING] = {[SE_DEPS_READY] = try_start,
			 [SE_STOP] = act_cancel,
			 [SE_DEP_FAILED] = act_dep_failed},
	[SVC_CLEARING] = {[SE_CLEARED] = act_cleared,
			  [SE_TIMER] = act_clear_timer,
			  [SE_STOP] = act_clearing_stop,
			  [SE_START] = act_clearing_start},
	[SVC_STARTING] = {[SE_HEALTHY] = act_running,
			  [SE_UNHEALTHY] = act_unhealthy,
			  [SE_EXIT] = act_exited,
			  [SE_STOP] = act_stop,
			  [SE_COLLISION] = act_collision,
			  [SE_RESTART] = act_restart},
	[SVC_RUNNING] = {[SE_UNHEALTHY] = act_unhealthy,
			 [SE_EXIT] = act_exited,
			 [SE_STOP] = act_stop,
			 [SE_COLLISION] = act_collision,
			 [SE_RESTART] = act_restart},
	[SVC_STOPPING] = {[SE_STOP] = act_stopping_stop,
			  [SE_START] = act_stopping_start,
			  [SE_EXIT] = act_stopped_exit,
			  [SE_TIMER] = act_stop_timer,
			  [SE_CLEARED] = act_release_done,
			  [SE_KILL] = act_kill},
	[SVC_BACKOFF] = {[SE_TIMER] = try_start, [SE_STOP] = act_cancel},
};

const char *sup_action_name(enum svc_state s, enum svc_event e)
{
	static const struct {
		svc_action fn;
		const char *name;
	} names[] = {
		{act_start, "start"},
		{try_start, "try_start"},
		{act_cancel, "cancel"},
		{act_cleared, "cleared"},
		{act_clear_timer, "clear_timer"},
		{act_running, "running"},
		{act_unhealthy, "restart_unhealthy"},
		{act_exited, "exited"},
		{act_stop, "stop"},
		{act_collision, "collision"},
		{act_stopped_exit, "stopped_exit"},
		{act_stop_timer, "stop_timer"},
		{act_release_done, "release_done"},
		{act_stopping_stop, "stopping_stop"},
		{act_stopping_start, "stopping_start"},
		{act_clearing_stop, "clearing_stop"},
		{act_clearing_start, "clearing_start"},
		{act_restart, "restart"},
		{act_kill, "kill"},
		{act_resume, "resume"},
		{act_dep_failed, "dep_failed"},
	};

	if (s >= SVC_NSTATES || e >= SVC_NEVENTS || !on[s][e])
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].fn == on[s][e])
			return names[i].name;
	return "?";
}

static void stop_all(struct supervisor *s, bool shutdown, bool force);
static cJSON *status_json(struct supervisor *s);

/* What entering FAILED means: the give-up is logged, what waits for the service fails with it,
 * and a critical service takes the stack down. */
static void enter_failed(struct service *v)
{
	struct supervisor *s = v->sup;
	struct event e = {.type = EV_SERVICE_GIVE_UP};

	health_stop(v);
	loop_timer_cancel(s->loop, &v->timer);
	e.service_give_up = (struct ev_service_give_up){.service = v->cfg->name,
							.restarts = v->restarts,
							.reason = v->give_up_reason,
							.critical = v->cfg->critical};
	emit(s, &e);
	for (int i = 0; i < s->n; i++)
		if (s->svcs[i]->state == SVC_WAITING && depends_on(s->svcs[i], v))
			post_input(s, &(struct input){.v = s->svcs[i], .ev = SE_DEP_FAILED, .from = v});
	v->give_up_reason[0] = 0;
	if (v->cfg->critical && !s->shutdown) {
		s->exit_code = 1;
		stop_all(s, true, false);
	}
}

/* v is running (again): a dependent told another port of v than it has now restarts with the
 * new one; one that is part_of v and started before v's new run restarts after it. */
static void dependents_follow(struct service *v)
{
	struct supervisor *s = v->sup;

	for (int i = 0; i < s->n; i++) {
		struct service *d = s->svcs[i];
		enum restart_reason why = RESTART_N;

		if (d->idx < 0 || (d->state != SVC_RUNNING && d->state != SVC_STARTING))
			continue;
		for (int k = 0; k < d->cfg->n_deps && k < MAX_DEPS; k++)
			if (!strcmp(d->cfg->depends_on[k], v->cfg->name) &&
			    d->dep_ports[k] != current_port(v) &&
			    config_uses_port_of(d->cfg, v->cfg->name))
				why = RESTART_DEPENDENCY_MOVED;
		for (int k = 0; k < d->cfg->n_part_of && why == RESTART_N; k++)
			if (!strcmp(d->cfg->part_of[k], v->cfg->name) && d->started_ns < v->started_ns)
				why = RESTART_DEPENDENCY_RESTARTED;
		if (why != RESTART_N)
			post_input(s, &(struct input){.v = d, .ev = SE_RESTART, .reason = why,
						      .from = v});
	}
}

static void dispatch(struct service *v, const struct input *in)
{
	svc_action a = on[v->state][in->ev];
	enum svc_state old = v->state, next;

	if (!a)
		return;
	v->in_status = in->status;
	v->in_reason = in->reason;
	v->in_from = in->from;
	next = a(v);
	if (next == old)
		return;
	v->state = next;
	write_state(v->sup);
	if (next == SVC_FAILED && old != SVC_FAILED)
		enter_failed(v);
	if (next == SVC_STOPPED || next == SVC_FAILED)
		reply_pending(v, true);
	if (next == SVC_RUNNING || next == SVC_FAILED)
		reply_pending(v, false);
	if (next == SVC_RUNNING)
		dependents_follow(v);
}

/* A service a reload removed is forgotten once it is down and nobody waits for an answer. */
static void forget_retired(struct supervisor *s)
{
	int k = 0;

	for (int i = 0; i < s->n; i++) {
		struct service *v = s->svcs[i];

		if (v->idx < 0 && (v->state == SVC_STOPPED || v->state == SVC_FAILED) &&
		    !v->replies) {
			health_stop(v);
			loop_timer_cancel(s->loop, &v->timer);
			procs_release(&v->proc);
			free(v);
			continue;
		}
		s->svcs[k++] = v;
	}
	if (k != s->n) {
		s->n = k;
		write_state(s);
	}
}

/* After the queue is empty: start waiting services whose dependencies are ready, advance a
 * stop-all, and tell the agent when the stack is finished. Queues what it decides. */
static void check_stack(struct supervisor *s)
{
	bool all_down = true;

	forget_retired(s);
	if (!s->stopping_all) {
		for (int i = 0; i < s->n; i++)
			if (s->svcs[i]->state == SVC_WAITING && deps_ready(s->svcs[i]))
				post(s->svcs[i], SE_DEPS_READY);
		return;
	}
	/* Reverse dependency order: a service stops once nothing that depends on it runs. */
	for (int k = s->n - 1; k >= 0; k--) {
		struct service *v = s->svcs[s->order[k]];
		bool dependents_down = true;

		if (v->state == SVC_STOPPED || v->state == SVC_FAILED)
			continue;
		all_down = false;
		if (v->state == SVC_STOPPING) {
			/* stop --force, a second SIGTERM: no more waiting for stop_timeout_ms */
			if (s->force && !v->killed && !v->exited)
				post(v, SE_KILL);
			continue;
		}
		if (v->state == SVC_CLEARING && v->stop_requested)
			continue; /* stops once its leftover is gone */
		for (int j = 0; j < s->n && !s->force; j++) {
			const struct service *d = s->svcs[j];

			if (depends_on(d, v) && d->state != SVC_STOPPED && d->state != SVC_FAILED)
				dependents_down = false;
		}
		if (dependents_down)
			post(v, SE_STOP);
	}
	for (int i = 0; i < s->n; i++) /* removed by a reload, still stopping */
		all_down &= s->svcs[i]->idx >= 0 || s->svcs[i]->state == SVC_STOPPED ||
			    s->svcs[i]->state == SVC_FAILED;
	if (!all_down || s->qlen)
		return;
	if (!s->shutdown) {
		/* `stop --all` finished: the agent stays, services can be started again. */
		s->stopping_all = s->force = false;
		while (s->all_replies) {
			struct pending_reply *r = s->all_replies;

			s->all_replies = r->next;
			r->fn(r->ctx, status_json(s));
			free(r);
		}
		return;
	}
	if (!s->done) {
		s->done = true;
		if (s->h.stack_done)
			s->h.stack_done(s->h.ctx, s->exit_code);
	}
}

/* Handles queued inputs one at a time until none is left (the only caller of dispatch). */
static void run_queue(struct supervisor *s)
{
	if (s->draining)
		return; /* an action's callee posted: the outer loop gets to it */
	s->draining = true;
	for (;;) {
		while (s->qlen) {
			struct input in = s->queue[s->qhead];

			s->qhead = (s->qhead + 1) % s->qcap;
			s->qlen--;
			dispatch(in.v, &in);
		}
		check_stack(s);
		if (!s->qlen)
			break;
	}
	s->draining = false;
}

static void on_timer(struct loop *l, void *ctx)
{
	struct service *v = ctx;

	(void)l;
	post(v, SE_TIMER);
	run_queue(v->sup);
}

/* ---- public ---- */

/* Services a crashed agent left running: recognised by pid and start time in the state file. */
static void find_leftovers(struct supervisor *s)
{
	struct rt_state st;

	if (state_read(s->state_path, &st))
		return;
	if (st.agent_pid && st.agent_pid != getpid() && kill(st.agent_pid, 0) == 0 &&
	    proc_state(st.agent_pid) != 'Z') {
		/* cannot happen while we hold the lock, but never touch a live agent's services */
		state_free(&st);
		return;
	}
	for (size_t i = 0; i < st.n; i++) {
		const struct svc_record *o = &st.svcs[i];
		struct service *v = svc_named(s, o->name);
		struct event e = {.type = EV_SERVICE_LEFTOVER};

		if (!v || o->pid <= 1 || !o->start_ticks || proc_start_ticks(o->pid) != o->start_ticks)
			continue;
		v->leftover = (struct svc_proc){.pid = o->pid,
						.pgid = o->pgid > 1 ? o->pgid : o->pid,
						.start_ticks = o->start_ticks,
						.pidfd = pidfd_open_pid(o->pid)};
		/* Until we start our own, its group is this service's. */
		v->proc.pgid = o->pgid;
		e.service_leftover = (struct ev_service_leftover){
			.service = o->name, .pid = o->pid, .port = o->port, .action = ACT_REPLACE};
		emit(s, &e);
	}
	state_free(&st);
}

static void service_init(struct supervisor *s, struct service *v, const struct service_config *c,
			 int idx)
{
	v->sup = s;
	v->cfg = c;
	v->idx = idx;
	v->tag = ++s->tags;
	v->proc.pidfd = v->leftover.pidfd = -1;
	loop_timer_init(&v->timer, on_timer, v);
	loop_timer_init(&v->health_timer, on_health_timer, v);
}

struct supervisor *sup_new(struct loop *l, const struct rev_config *cfg, const struct sup_hooks *h)
{
	struct supervisor *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->loop = l;
	s->cfg = cfg;
	s->h = *h;
	s->n = cfg->n_services;
	s->svcs = calloc(s->n + 1, sizeof(*s->svcs));
	for (int i = 0; s->svcs && i < s->n; i++)
		if (!(s->svcs[i] = calloc(1, sizeof(**s->svcs))))
			s->n = i; /* freed by sup_free below */
	s->order = calloc(s->n + 1, sizeof(int));
	if (h->ops) {
		s->ops = *h->ops;
	} else {
		s->procs = procs_new(h->tree_fd, h->tree_used);
		s->ops = (struct sup_ops){real_spawn, real_signal, real_count, real_listeners, s,
					  real_exit_cause};
		if (s->procs) {
			procs_set_causes(s->procs, h->causes_fd);
			procs_set_output(s->procs, h->output);
		}
	}
	if (!s->svcs || s->n != cfg->n_services || !s->order || (!h->ops && !s->procs) ||
	    config_start_order(cfg, s->order)) {
		sup_free(s);
		errno = ENOMEM;
		return NULL;
	}
	state_runtime_path(cfg->control.socket, REV_STATE_FILE, s->state_path, sizeof(s->state_path));
	for (int i = 0; i < s->n; i++) {
		struct service *v = s->svcs[i];

		service_init(s, v, &cfg->services[i], i);
	}
	/* Orphans of our services re-parent to us, and we reap them at once. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	find_leftovers(s);
	write_state(s);
	return s;
}

void sup_free(struct supervisor *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		struct service *v = s->svcs[i];

		if (!v->sup) { /* sup_new failed before it was set up */
			free(v);
			continue;
		}
		health_stop(v);
		loop_timer_cancel(s->loop, &v->timer);
		procs_release(&v->proc);
		if (v->leftover.pidfd >= 0)
			loop_del_fd(s->loop, v->leftover.pidfd);
		procs_release(&v->leftover);
		while (v->replies) {
			struct pending_reply *r = v->replies;

			v->replies = r->next;
			free(r);
		}
		free(v);
	}
	while (s->all_replies) {
		struct pending_reply *r = s->all_replies;

		s->all_replies = r->next;
		free(r);
	}
	procs_free(s->procs);
	for (int i = 0; i < s->n_owned; i++) {
		config_free(s->owned[i]);
		free(s->owned[i]);
	}
	free(s->owned);
	/* A clean stop leaves nothing of ours running: the state file goes with it. */
	if (s->done)
		unlink(s->state_path);
	free(s->queue);
	free(s->svcs);
	free(s->order);
	free(s);
}

void sup_start_all(struct supervisor *s)
{
	for (int k = 0; k < s->n; k++)
		post(s->svcs[s->order[k]], SE_START);
	run_queue(s);
}

/* The one stop-all: a shutdown (the agent exits when the stack is down) or `stop --all` (it
 * stays). Services that are not running stop now; running ones in reverse dependency order
 * (check_stack). force: no more waiting for stop_timeout_ms. */
static void stop_all(struct supervisor *s, bool shutdown, bool force)
{
	s->shutdown = s->shutdown || shutdown;
	s->stopping_all = true;
	s->force = s->force || force;
	for (int i = 0; i < s->n; i++) {
		struct service *v = s->svcs[i];

		if (v->state == SVC_WAITING || v->state == SVC_BACKOFF || v->state == SVC_CLEARING)
			post(v, SE_STOP);
	}
}

void sup_shutdown(struct supervisor *s, bool force)
{
	stop_all(s, true, force);
	run_queue(s);
}

bool sup_on_reaped(struct supervisor *s, pid_t pid, int status)
{
	for (int i = 0; i < s->n; i++) {
		struct service *v = s->svcs[i];

		if (v->proc.pid == pid) {
			report_exit(v, status);
			if (v->state == SVC_STOPPING)
				v->exited = true;
			post_input(s, &(struct input){.v = v, .ev = SE_EXIT, .status = status});
			run_queue(s);
			return true;
		}
		if (v->leftover.pid == pid && v->state == SVC_CLEARING) {
			post(v, SE_CLEARED);
			run_queue(s);
			return true;
		}
	}
	/* An orphan (we are a subreaper): maybe the last of a service's rest after its main exit. */
	for (int i = 0; i < s->n; i++)
		if (s->svcs[i]->state == SVC_STOPPING && s->svcs[i]->exited)
			post(s->svcs[i], SE_CLEARED);
	run_queue(s);
	return false;
}

void sup_on_port(struct supervisor *s, const struct port_event *e)
{
	if (!s)
		return;
	if (e->type == REV_EV_LISTEN) {
		struct service *v = service_of_pid(s, e->pid);

		/* The service just started listening: confirm its health now, not at the next tick. */
		if (v && v->state == SVC_STARTING && !v->probe && v->port == e->port)
			health_schedule(v, 0);
		return;
	}
	if (e->type != REV_EV_RELEASE)
		return;
	for (int i = 0; i < s->n; i++) {
		struct service *w = s->svcs[i];

		if (w->port == e->port && w->state == SVC_STOPPING && w->exited)
			post(w, SE_CLEARED);
		if (w->state == SVC_CLEARING && e->port == w->cfg->port &&
		    (!w->leftover.pid || kill(w->leftover.pid, 0)))
			post(w, SE_CLEARED);
	}
	run_queue(s);
}

void sup_decide_collision(struct supervisor *s, const struct port_event *e, pid_t owner_pid,
			  const char *owner_comm, struct sup_collision *d)
{
	struct service *v = s ? service_of_pid(s, e->pid) : NULL;
	struct service *o = s ? service_of_pid(s, owner_pid) : NULL;
	struct port_probe *probes;
	char reason[256];
	size_t n;

	memset(d, 0, sizeof(*d));
	d->service = v ? v->cfg->name : NULL;
	d->owner_service = o ? o->cfg->name : NULL;
	d->action = ACT_REPORT;
	d->svc = -1;
	d->from = e->port;
	d->owner_pid = owner_pid;
	snprintf(d->owner_comm, sizeof(d->owner_comm), "%s", owner_comm ? owner_comm : "");
	/* Not ours, reported only, its own socket (a bug in the service, not a squatter), or not
	 * the port we gave it (its business). */
	if (!v || !s->cfg->monitoring.auto_resolve_conflicts || o == v ||
	    (e->port != v->cfg->port && e->port != v->port))
		return;
	/* The port it collided on is taken, whoever we could name; when it runs on an
	 * alternative, the configured port is a candidate again only if free now. */
	n = probe_ports(s, v, e->port, owner_pid ? owner_pid : -1, &probes);
	d->to = n ? sup_choose_port(s->cfg, v->idx, probes, n, reason, sizeof(reason)) : -1;
	free(probes);
	if (d->to > 0 && d->to != e->port) {
		d->action = ACT_MIGRATE;
		d->svc = v->idx;
	}
}

void sup_apply_collision(struct supervisor *s, const struct sup_collision *d)
{
	struct service *v;

	if (!s || d->action != ACT_MIGRATE || d->svc < 0 || d->svc >= s->n)
		return;
	v = s->svcs[d->svc];
	emit_migrated(v, d->from, d->to, d->owner_pid, d->owner_comm);
	v->forced_port = d->to;
	post(v, SE_COLLISION);
	run_queue(s);
}

void sup_decide_zombie(struct supervisor *s, pid_t ppid, struct sup_zombie *d)
{
	struct service *v = s ? service_of_pid(s, ppid) : NULL;

	d->service = v ? v->cfg->name : NULL;
	d->svc = v ? v->idx : -1;
	d->action = ACT_REPORT;
	if (!v)
		return;
	switch (v->cfg->zombie_policy) {
	case ZOMBIE_NUDGE:
		d->action = ACT_NUDGE;
		break;
	case ZOMBIE_RESTART_PARENT:
		if (v->state == SVC_RUNNING || v->state == SVC_STARTING)
			d->action = ACT_RESTART_PARENT;
		break;
	default:
		break;
	}
}

void sup_apply_zombie(struct supervisor *s, const struct sup_zombie *d)
{
	if (!s || d->action != ACT_RESTART_PARENT || d->svc < 0 || d->svc >= s->n)
		return;
	post_input(s, &(struct input){
			      .v = s->svcs[d->svc], .ev = SE_RESTART, .reason = RESTART_ZOMBIE_POLICY});
	run_queue(s);
}

/* ---- reload ---- */

static void add_name(char *buf, size_t len, const char *name)
{
	size_t n = strlen(buf);

	snprintf(buf + n, len - n, "%s%s", n ? ", " : "", name);
}

int sup_reload(struct supervisor *s, struct rev_config *next, char *detail, size_t len)
{
	int nn = next->n_services, n = 0, unchanged = 0;
	struct service **nv = calloc(nn + s->n + 1, sizeof(*nv));
	struct service **fresh = calloc(nn + 1, sizeof(*fresh));
	int *order = calloc(nn + 1, sizeof(int));
	struct rev_config **owned = realloc(s->owned, (s->n_owned + 1) * sizeof(*owned));
	bool *kept = calloc(s->n + 1, sizeof(*kept));
	char added[512] = "", removed[512] = "", changed[512] = "";

	if (owned)
		s->owned = owned;
	if (!nv || !fresh || !order || !owned || !kept || config_start_order(next, order))
		goto oom;
	for (int i = 0; i < nn; i++) {
		const struct service_config *c = &next->services[i];
		struct service *v = svc_named(s, c->name);

		if (!v) {
			if (!(v = calloc(1, sizeof(*v))))
				goto oom;
			fresh[i] = v;
			continue;
		}
		for (int j = 0; j < s->n; j++)
			kept[j] |= s->svcs[j] == v;
	}
	/* No failure from here on: the new set replaces the old one. */
	s->owned[s->n_owned++] = next;
	for (int i = 0; i < nn; i++) {
		const struct service_config *c = &next->services[i];
		struct service *v = fresh[i] ? fresh[i] : svc_named(s, c->name);

		if (fresh[i]) {
			service_init(s, v, c, i);
			add_name(added, sizeof(added), c->name);
		} else if (strcmp(v->cfg->fingerprint, c->fingerprint)) {
			add_name(changed, sizeof(changed), c->name);
		} else {
			unchanged++;
		}
		nv[i] = v;
	}
	n = nn;
	for (int j = 0; j < s->n; j++) {
		struct service *w = s->svcs[j];

		if (kept[j])
			continue;
		if (w->idx >= 0) {
			add_name(removed, sizeof(removed), w->cfg->name);
			w->idx = -1;
			post(w, SE_STOP);
		}
		nv[n++] = w;
	}
	/* Changed services take their new settings now; they restart, in dependency order. */
	for (int k = 0; k < nn; k++) {
		struct service *v = nv[order[k]];
		bool was_changed = !fresh[order[k]] && strcmp(v->cfg->fingerprint,
							      next->services[order[k]].fingerprint);

		v->cfg = &next->services[order[k]];
		v->idx = order[k];
		if (fresh[order[k]])
			post(v, SE_START);
		else if (was_changed && (v->state == SVC_RUNNING || v->state == SVC_STARTING))
			post_input(s, &(struct input){.v = v, .ev = SE_RESTART,
						      .reason = RESTART_RELOAD});
	}
	free(s->svcs);
	free(s->order);
	s->svcs = nv;
	s->order = order;
	s->n = n;
	s->cfg = next;
	free(fresh);
	free(kept);
	snprintf(detail, len, "added: %s; removed: %s; changed (restarted): %s; unchanged: %d",
		 added[0] ? added : "none", removed[0] ? removed : "none",
		 changed[0] ? changed : "none", unchanged);
	write_state(s);
	run_queue(s);
	return 0;
oom:
	for (int i = 0; fresh && i < nn; i++)
		free(fresh[i]);
	free(nv);
	free(fresh);
	free(order);
	free(kept);
	snprintf(detail, len, "out of memory: the running configuration is kept");
	return -ENOMEM;
}

/* ---- control ---- */

/* The last exit, as its service_exit event said it (null before the first), and what happened
 * to the service's output. */
static void status_exit_json(const struct supervisor *s, const struct service *v, cJSON *o)
{
	struct out_stats st;
	cJSON *out;

	if (v->last_exit.type == EV_SERVICE_EXIT)
		cJSON_AddItemToObject(o, "last_exit", ev_encode(&v->last_exit));
	else
		cJSON_AddNullToObject(o, "last_exit");
	if (!s->h.output)
		return;
	outputs_stats(s->h.output, v->cfg->name, &st);
	out = cJSON_AddObjectToObject(o, "output");
	cJSON_AddNumberToObject(out, "lines", (double)st.lines);
	cJSON_AddNumberToObject(out, "lost_bytes", (double)st.lost_bytes);
	cJSON_AddNumberToObject(out, "lost_lines", (double)st.lost_lines);
	cJSON_AddNumberToObject(out, "cut_lines", (double)st.cut_lines);
}

static cJSON *status_json(struct supervisor *s)
{
	cJSON *r = cJSON_CreateObject(), *svcs;

	cJSON_AddBoolToObject(r, "ok", true);
	cJSON_AddNumberToObject(r, "agent_pid", getpid());
	cJSON_AddNumberToObject(r, "state_write_errors", (double)s->state_write_errors);
	if (s->h.status)
		s->h.status(s->h.ctx, r);
	svcs = cJSON_AddObjectToObject(r, "services");
	for (int k = 0; k < s->n; k++) {
		const struct service *v = s->svcs[s->order[k]];
		cJSON *o = cJSON_AddObjectToObject(svcs, v->cfg->name);

		cJSON_AddStringToObject(o, "state", svc_state_name(v->state));
		cJSON_AddStringToObject(o, "user", v->cfg->user ? v->cfg->user : "root");
		if (v->proc.pid)
			cJSON_AddNumberToObject(o, "pid", v->proc.pid);
		else
			cJSON_AddNullToObject(o, "pid");
		if (v->port || v->cfg->port)
			cJSON_AddNumberToObject(o, "port", v->port ? v->port : v->cfg->port);
		else
			cJSON_AddNullToObject(o, "port");
		cJSON_AddNumberToObject(o, "restarts", v->total_restarts);
		cJSON_AddStringToObject(o, "health", health_name(v));
		if (v->proc.pid)
			cJSON_AddNumberToObject(o, "uptime_ms",
						(double)((mono_ns() - v->started_ns) / NS_PER_MS));
		status_exit_json(s, v, o);
	}
	return r;
}

cJSON *sup_status(struct supervisor *s)
{
	return status_json(s);
}

static cJSON *error_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static cJSON *error_json(const char *fmt, ...)
{
	cJSON *r = cJSON_CreateObject();
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cJSON_AddBoolToObject(r, "ok", false);
	cJSON_AddStringToObject(r, "error", msg);
	return r;
}

static int add_reply(struct pending_reply **list, enum svc_event until, sup_reply_fn fn, void *ctx)
{
	struct pending_reply *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->fn = fn;
	r->ctx = ctx;
	r->until = until;
	r->next = *list;
	*list = r;
	return 0;
}

static void drop_replies(struct pending_reply **pp, void *ctx)
{
	while (*pp) {
		if ((*pp)->ctx == ctx) {
			struct pending_reply *r = *pp;

			*pp = r->next;
			free(r);
		} else {
			pp = &(*pp)->next;
		}
	}
}

void sup_cancel_reply(struct supervisor *s, void *ctx)
{
	if (!s)
		return;
	drop_replies(&s->all_replies, ctx);
	for (int i = 0; i < s->n; i++)
		drop_replies(&s->svcs[i]->replies, ctx);
}

/* start, stop, restart of one service: the request becomes an input of its table; the answer
 * comes when the service is running (or failed), or stopped. */
static cJSON *control_service(struct supervisor *s, const char *cmd, struct service *v,
			      sup_reply_fn reply, void *ctx)
{
	bool stop = !strcmp(cmd, "stop");

	if (stop && (v->state == SVC_STOPPED || v->state == SVC_FAILED))
		return status_json(s);
	if (!strcmp(cmd, "start") && v->state == SVC_RUNNING)
		return status_json(s);
	if (add_reply(&v->replies, stop ? SE_STOP : SE_START, reply, ctx))
		return error_json("out of memory");
	if (!strcmp(cmd, "restart") && (v->state == SVC_RUNNING || v->state == SVC_STARTING))
		post_input(s, &(struct input){.v = v, .ev = SE_RESTART, .reason = RESTART_REQUESTED});
	else
		post(v, stop ? SE_STOP : SE_START);
	run_queue(s);
	return NULL;
}

cJSON *sup_control(struct supervisor *s, const cJSON *req, sup_reply_fn reply, void *ctx)
{
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "service");
	struct service *v;

	if (!cJSON_IsString(cmd))
		return error_json("request needs a \"cmd\" string");
	if (!strcmp(cmd->valuestring, "status"))
		return status_json(s);
	if (!strcmp(cmd->valuestring, "reload")) {
		char detail[2048];
		int rc = s->h.reload ? s->h.reload(s->h.ctx, detail, sizeof(detail)) : -ENOTSUP;
		cJSON *r;

		if (rc == -ENOTSUP)
			return error_json("this agent cannot reload");
		r = rc ? error_json("%s", detail) : cJSON_CreateObject();
		if (!rc) {
			cJSON_AddBoolToObject(r, "ok", true);
			cJSON_AddStringToObject(r, "detail", detail);
		}
		cJSON_AddBoolToObject(r, "config_error", rc == -EINVAL);
		return r;
	}
	if (!strcmp(cmd->valuestring, "stop_all")) {
		if (s->shutdown)
			return error_json("the agent is already stopping");
		if (add_reply(&s->all_replies, SE_STOP, reply, ctx))
			return error_json("out of memory");
		stop_all(s, false, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "force")));
		run_queue(s);
		return NULL;
	}
	if (strcmp(cmd->valuestring, "start") && strcmp(cmd->valuestring, "stop") &&
	    strcmp(cmd->valuestring, "restart"))
		return error_json("unknown command \"%s\" (status, start, stop, restart, stop_all, "
				  "reload)",
				  cmd->valuestring);
	if (!cJSON_IsString(name))
		return error_json("\"%s\" needs a \"service\" string", cmd->valuestring);
	v = svc_named(s, name->valuestring);
	if (!v)
		return error_json("no service named \"%s\" in the agent's config",
				  name->valuestring);
	if (s->stopping_all)
		return error_json("the agent is stopping; \"%s\" was not changed", v->cfg->name);
	return control_service(s, cmd->valuestring, v, reply, ctx);
}

size_t sup_metrics(void *ctx, char *buf, size_t len)
{
	struct supervisor *s = ctx;
	size_t n = 0;

	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_service_up 1 when the service runs (healthy or no "
			    "health check).\n# TYPE revenant_service_up gauge\n");
	for (int i = 0; i < s->n; i++)
		n = metrics_appendf(buf, len, n, "revenant_service_up{service=\"%s\"} %d\n",
				    s->svcs[i]->cfg->name, s->svcs[i]->state == SVC_RUNNING);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_service_restarts_total Restarts by the supervisor.\n"
			    "# TYPE revenant_service_restarts_total counter\n");
	for (int i = 0; i < s->n; i++)
		n = metrics_appendf(buf, len, n,
				    "revenant_service_restarts_total{service=\"%s\"} %d\n",
				    s->svcs[i]->cfg->name, s->svcs[i]->total_restarts);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_service_port The port the service runs on (0: none).\n"
			    "# TYPE revenant_service_port gauge\n");
	for (int i = 0; i < s->n; i++)
		n = metrics_appendf(buf, len, n, "revenant_service_port{service=\"%s\"} %d\n",
				    s->svcs[i]->cfg->name, s->svcs[i]->port);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_state_write_errors_total Failed writes of the runtime "
			    "state file (crash recovery).\n"
			    "# TYPE revenant_state_write_errors_total counter\n"
			    "revenant_state_write_errors_total %llu\n",
			    (unsigned long long)s->state_write_errors);
	return n;
}

int sup_input(struct supervisor *s, const char *name, enum svc_event ev)
{
	struct service *v = svc_named(s, name);

	if (!v || ev >= SVC_NEVENTS)
		return -ENOENT;
	post(v, ev);
	run_queue(s);
	return 0;
}

enum svc_state sup_state_of(struct supervisor *s, const char *name)
{
	struct service *v = svc_named(s, name);

	return v ? v->state : SVC_NSTATES;
}

pid_t sup_pid_of(struct supervisor *s, const char *name)
{
	struct service *v = svc_named(s, name);

	return v ? v->proc.pid : 0;
}

int sup_count_up(const struct supervisor *s, int *total)
{
	int up = 0;

	*total = 0;
	for (int i = 0; s && i < s->n; i++) {
		*total += s->svcs[i]->idx >= 0;
		up += s->svcs[i]->idx >= 0 && s->svcs[i]->state == SVC_RUNNING;
	}
	return up;
}
