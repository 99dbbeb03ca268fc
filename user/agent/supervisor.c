// SPDX-License-Identifier: MIT
/* The supervisor. Each service is a state machine driven through one table, on[state][event]
 * (after s6-supervise); actions spawn, signal (always through a pidfd, and the process group),
 * probe health, back off, migrate ports and report. Children are reaped by the agent's SIGCHLD
 * handler, which hands us their status. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/health.h"
#include "agent/metrics.h"
#include "lib/state.h"
#include "agent/supervisor.h"
#include "lib/util.h"

extern char **environ;

#define BACKOFF_BASE_MS 250u
#define BACKOFF_MAX_MS 30000u
#define STABLE_RUN_MS 10000u	 /* a run this long (and healthy) resets the restart count */
#define KILL_GRACE_MS 5000u	 /* after SIGKILL, how long to wait for the exit */
#define RELEASE_GRACE_MS 2000u /* after the exit, how long to wait for the kernel's port_release */
#define STARTUP_MS 30000u /* without health.grace_ms: how long a service may take to answer */

struct pending_reply {
	sup_reply_fn fn;
	void *ctx;
	enum svc_event until; /* SE_STOP: reply when stopped; SE_START: when running or failed */
	struct pending_reply *next;
};

struct service {
	struct supervisor *sup;
	const struct service_config *cfg;
	int idx;
	enum svc_state state;
	pid_t pid, pgid;
	int pidfd;
	uint64_t start_ticks;
	uint64_t started_ns;
	int port;	   /* the port it runs on now (may be an alternative) */
	int forced_port;   /* next start uses this port (a migration) */
	int restarts;	   /* consecutive restarts */
	int total_restarts;
	bool restart_after_stop;
	bool exited;	   /* in STOPPING: the main process is gone, waiting for the port */
	bool killed;	   /* in STOPPING: SIGKILL already sent */
	bool healthy, health_known;
	int health_fails;
	struct probe *probe;
	struct loop_timer timer;	/* back-off, stop escalation, release wait */
	struct loop_timer health_timer;
	struct pending_reply *replies;
	/* a leftover of ours from a previous agent, stopped before we start */
	pid_t leftover_pid;
	int leftover_pidfd;
	uint64_t leftover_ticks;
	bool stop_requested; /* a stop came while clearing: stay down once the leftover is gone */
	char give_up_reason[160]; /* set while stopping: give up once the process is gone */
	char cgroup[256];
};

struct supervisor {
	struct loop *loop;
	const struct rev_config *cfg;
	struct sup_hooks h;
	struct service *svcs;
	int n;
	int *order; /* start order */
	bool stopping_all;
	bool shutdown; /* the agent is exiting (not a `stop --all`) */
	bool force;
	bool done;
	struct pending_reply *all_replies; /* `stop --all` callers */
	int exit_code;
	char state_path[4200];
	char cgroup_root[256];
};

typedef void (*svc_action)(struct service *v);

const char *svc_state_name(enum svc_state s)
{
	static const char *names[] = {"stopped", "waiting", "clearing", "starting",
				      "running", "stopping", "backoff",	 "failed"};

	return s < SVC_NSTATES ? names[s] : "?";
}

unsigned sup_backoff_ms(int attempt)
{
	unsigned ms = BACKOFF_BASE_MS;

	for (int i = 1; i < attempt && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	return ms < BACKOFF_MAX_MS ? ms : BACKOFF_MAX_MS;
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

		if (is_other_service_port(cfg, svc, alt))
			continue;
		if (!q || !q->owner)
			return alt;
	}
	snprintf(reason, reason_len,
		 "port %d is held by pid %d, a process revenant does not manage, and no "
		 "alternative_ports entry is free",
		 sc->port, p->owner);
	return -1;
}

/* ---- helpers ---- */

static void emit(struct supervisor *s, cJSON *e)
{
	evlog_emit(s->h.log, e);
}

/* Who would block a service binding the wildcard address on port: 0 nobody, -1 a listener
 * whose owner no one can see (PID 1 here), else its pid. */
static pid_t owner_in(const struct supervisor *s, const struct listener *ls, size_t n, int port)
{
	struct sock_ident want = {0};
	int i;

	want.family = REV_AF_INET;
	want.proto = REV_PROTO_TCP;
	want.port = port;
	want.netns = s->h.host_netns;
	i = ports_best_listener(ls, n, &want);
	if (i < 0)
		return 0;
	return ls[i].v.pid ? (pid_t)ls[i].v.pid : -1;
}

static pid_t port_owner(struct supervisor *s, int port)
{
	struct listener *ls;
	size_t n;
	pid_t owner;

	if (ports_read_map(s->h.listeners_fd, &ls, &n))
		return 0;
	owner = owner_in(s, ls, n, port);
	free(ls);
	return owner;
}

/* The probes for a port choice: `first` (with its known owner, or looked up when 0), the
 * configured port when it is not `first`, then the alternatives. One read of the map. */
static size_t probe_ports(struct supervisor *s, const struct service *v, int first,
			  pid_t first_owner, struct port_probe *probes, size_t max)
{
	struct listener *ls = NULL;
	size_t n = 0, nls = 0;

	if (ports_read_map(s->h.listeners_fd, &ls, &nls))
		nls = 0;
	probes[n++] = (struct port_probe){.port = first,
					  .owner = first_owner ? first_owner
							       : owner_in(s, ls, nls, first)};
	if (first != v->cfg->port && v->cfg->port)
		probes[n++] = (struct port_probe){.port = v->cfg->port,
						  .owner = owner_in(s, ls, nls, v->cfg->port)};
	for (int i = 0; i < v->cfg->n_alt && n < max; i++)
		probes[n++] = (struct port_probe){.port = v->cfg->alt_ports[i],
						  .owner = owner_in(s, ls, nls, v->cfg->alt_ports[i])};
	free(ls);
	return n;
}

/* pgid: getpgid(pid), looked up once by the caller (this runs for every port event). */
static bool in_service(const struct service *v, pid_t pid, pid_t pgid)
{
	return pid > 0 &&
	       (pid == v->pid || pid == v->leftover_pid || (v->pgid > 1 && pgid == v->pgid));
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
		if (in_service(&s->svcs[i], pid, pgid))
			return &s->svcs[i];
	return NULL;
}

const char *sup_service_of(struct supervisor *s, pid_t pid)
{
	struct service *v = s ? service_of_pid(s, pid) : NULL;

	return v ? v->cfg->name : NULL;
}

static void write_state(struct supervisor *s)
{
	struct rt_state st = {.agent_pid = getpid(), .n = s->n};
	struct svc_record arr[s->n > 0 ? s->n : 1];

	memset(arr, 0, sizeof(arr));
	st.svcs = arr;
	for (int i = 0; i < s->n; i++) {
		const struct service *v = &s->svcs[i];

		snprintf(arr[i].name, sizeof(arr[i].name), "%s", v->cfg->name);
		/* A leftover still being stopped stays on record, so a crash now loses nothing. */
		arr[i].pid = v->pid ? v->pid : v->leftover_pid;
		arr[i].pgid = v->pgid;
		arr[i].start_ticks = v->pid ? v->start_ticks : v->leftover_ticks;
		arr[i].port = v->port ? v->port : v->cfg->port;
		arr[i].restarts = v->total_restarts;
		snprintf(arr[i].state, sizeof(arr[i].state), "%s", svc_state_name(v->state));
		snprintf(arr[i].health, sizeof(arr[i].health), "%s",
			 !v->cfg->health.enabled ? "none"
			 : !v->health_known	 ? "unknown"
			 : v->healthy		 ? "ok"
						 : "failing");
	}
	state_write(s->state_path, &st);
}

/* Every process in the service's cgroup, also those that left its process group (setsid, a
 * daemonizing child): each through a pidfd. Returns how many were found. */
static int signal_cgroup(const struct service *v, int sig)
{
	char path[300];
	FILE *f;
	int pid, n = 0;

	if (!v->cgroup[0])
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", v->cgroup);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fscanf(f, "%d", &pid) == 1) {
		int fd = pidfd_open_pid(pid);

		if (fd < 0)
			continue;
		if (sig)
			pidfd_signal(fd, sig);
		close(fd);
		n++;
	}
	fclose(f);
	return n;
}

static void cgroup_kill(const struct service *v)
{
	char path[300];
	int fd;

	if (!v->cgroup[0])
		return;
	snprintf(path, sizeof(path), "%s/cgroup.kill", v->cgroup);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1)
		signal_cgroup(v, SIGKILL); /* before 5.14 there is no cgroup.kill */
	if (fd >= 0)
		close(fd);
}

static void signal_group(struct service *v, int sig)
{
	if (v->pidfd >= 0)
		pidfd_signal(v->pidfd, sig);
	/* The group reaches what the shell started; the pgid cannot be reused while any member
	 * lives, and we only signal it while our main process (its leader) was alive or just
	 * reaped by us. */
	if (v->pgid > 1)
		kill(-v->pgid, sig);
	if (sig == SIGKILL)
		cgroup_kill(v);
	else
		signal_cgroup(v, sig);
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

		if (!fire) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		{
			cJSON *resp = cJSON_CreateObject();

			cJSON_AddBoolToObject(resp, "ok", ok);
			cJSON_AddStringToObject(resp, "service", v->cfg->name);
			cJSON_AddStringToObject(resp, "state", svc_state_name(v->state));
			if (v->pid)
				cJSON_AddNumberToObject(resp, "pid", v->pid);
			if (v->state == SVC_FAILED)
				cJSON_AddStringToObject(resp, "error", "the service failed to start");
			else if (!ok)
				cJSON_AddStringToObject(resp, "error",
							"a stop came before the service was running");
			r->fn(r->ctx, resp);
		}
		free(r);
	}
}

static void dispatch(struct service *v, enum svc_event ev);
static void check_stack(struct supervisor *s);
static cJSON *status_json(struct supervisor *s);

static void set_state(struct service *v, enum svc_state st)
{
	v->state = st;
	write_state(v->sup);
	if (st == SVC_STOPPED || st == SVC_FAILED)
		reply_pending(v, true);
	if (st == SVC_RUNNING || st == SVC_FAILED)
		reply_pending(v, false);
}

/* ---- health ---- */

static void health_schedule(struct service *v, unsigned ms);

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
		   (mono_ns() - v->started_ns) / 1000000 < (h->grace_ms ? (unsigned)h->grace_ms
								 : STARTUP_MS)) {
		/* Still starting: not answering yet is not a failure. */
	} else if (++v->health_fails >= h->failures) {
		v->healthy = false;
		v->health_known = true;
	}
	if (v->health_known && (!was_known || was != v->healthy)) {
		cJSON *e = ev_new("health", 0);

		ev_add_str(e, "service", v->cfg->name);
		ev_add_num(e, "pid", v->pid);
		ev_add_num(e, "port", v->port);
		ev_add_bool(e, "ok", v->healthy);
		ev_add_str(e, "detail", detail);
		emit(v->sup, e);
		write_state(v->sup);
	}
	/* Until the first success, probe often: the kernel's port_listen usually beats this. */
	health_schedule(v, v->state == SVC_STARTING && !v->healthy && h->interval_ms > 200
				   ? 200
				   : h->interval_ms);
	if (v->health_known)
		dispatch(v, v->healthy ? SE_HEALTHY : SE_UNHEALTHY);
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

/* ---- spawning ---- */

static char *expand_command(const char *cmd, int port)
{
	size_t len = strlen(cmd) + 1;
	char *out, *w;

	for (const char *p = strstr(cmd, "{port}"); p; p = strstr(p + 6, "{port}"))
		len += 6;
	out = malloc(len);
	if (!out)
		return NULL;
	w = out;
	while (*cmd) {
		if (!strncmp(cmd, "{port}", 6)) {
			w += sprintf(w, "%d", port);
			cmd += 6;
		} else {
			*w++ = *cmd++;
		}
	}
	*w = 0;
	return out;
}

struct envv {
	char **v;
	size_t n, cap;
};

static void env_set(struct envv *e, const char *kv)
{
	size_t klen = strcspn(kv, "=");

	for (size_t i = 0; i < e->n; i++) {
		if (!strncmp(e->v[i], kv, klen) && e->v[i][klen] == '=') {
			free(e->v[i]);
			e->v[i] = strdup(kv);
			return;
		}
	}
	if (e->n + 2 > e->cap) {
		e->cap = e->cap ? e->cap * 2 : 64;
		e->v = realloc(e->v, e->cap * sizeof(char *));
	}
	e->v[e->n++] = strdup(kv);
	e->v[e->n] = NULL;
}

static void env_free(struct envv *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
}

/* KEY=VALUE lines; '#' comments, blank lines, "export " and surrounding quotes allowed. */
static int env_file_load(struct envv *e, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[4096];

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *eq, *val, *end;

		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		if (!strncmp(p, "export ", 7))
			p += 7;
		eq = strchr(p, '=');
		if (!eq)
			continue;
		end = p + strlen(p);
		while (end > eq + 1 && isspace((unsigned char)end[-1]))
			*--end = 0;
		val = eq + 1;
		if ((*val == '"' || *val == '\'') && end > val + 1 && end[-1] == *val) {
			end[-1] = 0;
			memmove(val, val + 1, strlen(val + 1) + 1);
		}
		env_set(e, p);
	}
	fclose(f);
	return 0;
}

static void make_cgroup(struct service *v)
{
	struct supervisor *s = v->sup;

	v->cgroup[0] = 0;
	if (!s->cgroup_root[0])
		return;
	snprintf(v->cgroup, sizeof(v->cgroup), "%s/%s", s->cgroup_root, v->cfg->name);
	if (mkdir(v->cgroup, 0755) && errno != EEXIST)
		v->cgroup[0] = 0;
}

static int spawn(struct service *v)
{
	const struct service_config *c = v->cfg;
	struct envv env = {0};
	char *cmd = expand_command(c->command, v->port), portkv[32];
	int logfd, devnull, err;
	pid_t pid;

	if (!cmd)
		return -ENOMEM;
	for (char **e = environ; *e; e++)
		env_set(&env, *e);
	if (c->env_file) {
		err = env_file_load(&env, c->env_file);
		if (err) {
			cJSON *e = ev_new("service_warning", 0);
			char d[512];

			snprintf(d, sizeof(d), "cannot read env_file %s: %s; starting without it",
				 c->env_file, strerror(-err));
			ev_add_str(e, "service", c->name);
			ev_add_str(e, "detail", d);
			emit(v->sup, e);
		}
	}
	for (int i = 0; i < c->n_env; i++)
		env_set(&env, c->env[i]);
	if (v->port) {
		snprintf(portkv, sizeof(portkv), "PORT=%d", v->port);
		env_set(&env, portkv);
	}
	{
		char kv[100];

		snprintf(kv, sizeof(kv), "REVENANT_SERVICE=%s", c->name);
		env_set(&env, kv);
	}
	mkdir_p_parent(c->log_file, 0755);
	logfd = open(c->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	make_cgroup(v);

	pid = fork();
	if (pid == 0) {
		sigset_t none;
		char *argv[] = {"/bin/sh", "-c", cmd, NULL};

		/* The child must not inherit the agent's blocked signals or ignored SIGPIPE. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, 0);
		nofile_restore(); /* the agent's raised fd limit is not the service's */
		if (v->cgroup[0]) {
			char path[300];
			int fd;

			snprintf(path, sizeof(path), "%s/cgroup.procs", v->cgroup);
			fd = open(path, O_WRONLY);
			if (fd >= 0) {
				if (write(fd, "0", 1) < 0) {
					/* not fatal: the process group still reaches the service */
				}
				close(fd);
			}
		}
		if (devnull >= 0)
			dup2(devnull, 0);
		if (logfd >= 0) {
			dup2(logfd, 1);
			dup2(logfd, 2);
		}
		if (chdir(c->cwd)) {
			dprintf(2, "revenant: %s: cannot chdir to %s: %s\n", c->name, c->cwd,
				strerror(errno));
			_exit(126);
		}
		execve("/bin/sh", argv, env.v);
		dprintf(2, "revenant: %s: cannot run /bin/sh: %s\n", c->name, strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	err = pid < 0 ? -errno : 0;
	if (logfd >= 0)
		close(logfd);
	if (devnull >= 0)
		close(devnull);
	free(cmd);
	env_free(&env);
	if (err)
		return err;
	setpgid(pid, pid); /* both sides set it: whichever runs first wins the race */
	v->pid = pid;
	v->pgid = pid;
	v->pidfd = pidfd_open_pid(pid);
	v->start_ticks = proc_start_ticks(pid);
	v->started_ns = mono_ns();
	v->healthy = v->health_known = false;
	v->health_fails = 0;
	v->exited = v->killed = false;
	{
		cJSON *e = ev_new("service_start", 0);

		ev_add_str(e, "service", c->name);
		ev_add_num(e, "pid", pid);
		if (v->port)
			ev_add_num(e, "port", v->port);
		else
			cJSON_AddNullToObject(e, "port");
		ev_add_str(e, "command", c->command);
		emit(v->sup, e);
	}
	return 0;
}

/* ---- actions ---- */

static bool deps_ready(struct service *v)
{
	for (int i = 0; i < v->cfg->n_deps; i++) {
		const struct service_config *dc = config_service(v->sup->cfg, v->cfg->depends_on[i]);
		struct service *d = &v->sup->svcs[dc - v->sup->cfg->services];

		if (d->state != SVC_RUNNING)
			return false;
	}
	return true;
}

static void give_up(struct service *v, const char *reason)
{
	cJSON *e = ev_new("service_give_up", 0);

	ev_add_str(e, "service", v->cfg->name);
	ev_add_num(e, "restarts", v->restarts);
	ev_add_str(e, "reason", reason);
	ev_add_bool(e, "critical", v->cfg->critical);
	emit(v->sup, e);
	health_stop(v);
	loop_timer_cancel(v->sup->loop, &v->timer);
	set_state(v, SVC_FAILED);
	/* Whatever waits for this service would wait forever: it fails too, saying why. */
	for (int i = 0; i < v->sup->n; i++) {
		struct service *w = &v->sup->svcs[i];

		if (w->state != SVC_WAITING)
			continue;
		for (int k = 0; k < w->cfg->n_deps; k++) {
			if (strcmp(w->cfg->depends_on[k], v->cfg->name))
				continue;
			{
				char why[128];

				snprintf(why, sizeof(why), "dependency %s gave up", v->cfg->name);
				give_up(w, why);
			}
			break;
		}
	}
	if (v->cfg->critical && !v->sup->shutdown) {
		v->sup->exit_code = 1;
		sup_stop_all(v->sup, false);
	}
	check_stack(v->sup);
}

static void on_leftover_exit(struct loop *l, int fd, uint32_t events, void *ctx);

static void try_start(struct service *v)
{
	struct supervisor *s = v->sup;
	struct port_probe probes[1 + 64];
	size_t n = 0;
	char reason[512];
	int port;

	if (s->stopping_all) {
		set_state(v, SVC_STOPPED);
		return;
	}
	if (!deps_ready(v)) {
		/* Like systemd's Requires=: starting a service starts what it depends on. */
		set_state(v, SVC_WAITING);
		for (int i = 0; i < v->cfg->n_deps; i++) {
			const struct service_config *dc = config_service(s->cfg, v->cfg->depends_on[i]);
			struct service *d = &s->svcs[dc - s->cfg->services];

			if (d->state == SVC_STOPPED || d->state == SVC_FAILED)
				dispatch(d, SE_START);
		}
		return;
	}
	if (v->leftover_pid) {
		/* Ours from a previous agent: replace it, never migrate away from it. */
		if (v->leftover_pidfd >= 0) {
			pidfd_signal(v->leftover_pidfd, v->cfg->stop_signal);
			loop_add_fd(s->loop, v->leftover_pidfd, EPOLLIN, on_leftover_exit, v);
		}
		kill(-v->leftover_pid, v->cfg->stop_signal);
		set_state(v, SVC_CLEARING);
		loop_timer_after_ms(s->loop, &v->timer, v->cfg->stop_timeout_ms);
		return;
	}
	if (v->forced_port) {
		port = v->forced_port;
		v->forced_port = 0;
	} else if (v->cfg->port) {
		n = probe_ports(s, v, v->cfg->port, 0, probes, ARRAY_SIZE(probes));
		if (probes[0].owner && pid_in_service(v, probes[0].owner))
			probes[0].own = true;
		port = sup_choose_port(s->cfg, v->idx, probes, n, reason, sizeof(reason));
		if (port < 0) {
			give_up(v, reason);
			return;
		}
		if (port != v->cfg->port) {
			cJSON *e = ev_new("port_migrated", 0);
			char comm[32];

			ev_add_str(e, "service", v->cfg->name);
			ev_add_num(e, "from", v->cfg->port);
			ev_add_num(e, "to", port);
			if (probes[0].owner > 0) {
				proc_comm(probes[0].owner, comm, sizeof(comm));
				ev_add_num(e, "owner_pid", probes[0].owner);
				ev_add_str(e, "owner_comm", comm);
			} else { /* held by a process no tool can see (PID 1 here) */
				cJSON_AddNullToObject(e, "owner_pid");
				cJSON_AddNullToObject(e, "owner_comm");
			}
			emit(s, e);
		}
	} else {
		port = 0;
	}
	v->port = port;
	if (spawn(v)) {
		give_up(v, "cannot fork");
		return;
	}
	if (v->cfg->health.enabled && v->port) {
		set_state(v, SVC_STARTING);
		health_schedule(v, v->cfg->health.grace_ms ? v->cfg->health.grace_ms : 100);
	} else {
		set_state(v, SVC_RUNNING);
		check_stack(s);
	}
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

		if (owner && getpgid(owner) == v->leftover_pid)
			return; /* a descendant still holds the port: wait for its release */
	}
	dispatch(v, SE_CLEARED);
}

static void act_start(struct service *v)
{
	v->restarts = 0;
	try_start(v);
}

static void act_running(struct service *v)
{
	set_state(v, SVC_RUNNING);
	check_stack(v->sup);
}

static void begin_stop(struct service *v, bool restart)
{
	v->restart_after_stop = restart;
	health_stop(v);
	set_state(v, SVC_STOPPING);
	if (v->exited) {
		dispatch(v, SE_EXIT);
		return;
	}
	signal_group(v, v->cfg->stop_signal);
	loop_timer_after_ms(v->sup->loop, &v->timer, v->cfg->stop_timeout_ms);
}

static void act_stop(struct service *v)
{
	begin_stop(v, false);
}

static void act_restart_unhealthy(struct service *v)
{
	if (v->restarts >= v->cfg->max_restarts) {
		/* Give up once it is gone: FAILED ignores EXIT, so giving up now would drop the
		 * SIGKILL escalation and leave the pidfd and pid behind. */
		snprintf(v->give_up_reason, sizeof(v->give_up_reason),
			 "unhealthy after %d restarts in a row (max_restarts %d)", v->restarts,
			 v->cfg->max_restarts);
		begin_stop(v, false);
		return;
	}
	v->restarts++;
	v->total_restarts++;
	{
		cJSON *e = ev_new("service_restart", 0);

		ev_add_str(e, "service", v->cfg->name);
		ev_add_num(e, "attempt", v->restarts);
		ev_add_num(e, "delay_ms", 0);
		ev_add_str(e, "reason", "unhealthy");
		emit(v->sup, e);
	}
	begin_stop(v, true);
}

static void act_cancel(struct service *v)
{
	loop_timer_cancel(v->sup->loop, &v->timer);
	set_state(v, SVC_STOPPED);
	check_stack(v->sup);
}

static void report_exit(struct service *v, int status)
{
	cJSON *e = ev_new("service_exit", 0);
	char buf[16];

	ev_add_str(e, "service", v->cfg->name);
	ev_add_num(e, "pid", v->pid);
	if (WIFSIGNALED(status)) {
		cJSON_AddNullToObject(e, "code");
		ev_add_str(e, "signal", signal_name(WTERMSIG(status), buf, sizeof(buf)));
	} else {
		ev_add_num(e, "code", WEXITSTATUS(status));
		cJSON_AddNullToObject(e, "signal");
	}
	ev_add_num(e, "uptime_ms", (double)((mono_ns() - v->started_ns) / 1000000));
	emit(v->sup, e);
}

static void release_process(struct service *v)
{
	if (v->pidfd >= 0)
		close(v->pidfd);
	v->pidfd = -1;
	v->pid = 0;
	v->start_ticks = 0;
}

/* Exited on its own (crash, or failed liveness turned into a restart). */
static void act_exited(struct service *v)
{
	uint64_t up_ms = (mono_ns() - v->started_ns) / 1000000;

	health_stop(v);
	/* What the main process started may outlive it and hold the port: end the group too. */
	if (v->pgid > 1)
		kill(-v->pgid, SIGTERM);
	release_process(v);
	if (up_ms >= STABLE_RUN_MS && (!v->cfg->health.enabled || v->healthy))
		v->restarts = 0;
	if (!v->cfg->auto_restart || v->sup->stopping_all) {
		set_state(v, SVC_STOPPED);
		check_stack(v->sup);
		return;
	}
	if (v->restarts >= v->cfg->max_restarts) {
		char reason[128];

		snprintf(reason, sizeof(reason), "exited %d times in a row (max_restarts %d)",
			 v->restarts + 1, v->cfg->max_restarts);
		give_up(v, reason);
		return;
	}
	v->restarts++;
	v->total_restarts++;
	{
		unsigned delay = sup_backoff_ms(v->restarts);
		cJSON *e = ev_new("service_restart", 0);

		ev_add_str(e, "service", v->cfg->name);
		ev_add_num(e, "attempt", v->restarts);
		ev_add_num(e, "delay_ms", delay);
		emit(v->sup, e);
		set_state(v, SVC_BACKOFF);
		loop_timer_after_ms(v->sup->loop, &v->timer, delay);
	}
}

static bool port_still_ours(struct service *v)
{
	pid_t owner;

	if (!v->port)
		return false;
	owner = port_owner(v->sup, v->port);
	/* The kernel closes the sockets before the exit is reported, so a holder now is a
	 * descendant still in the group. */
	return owner && (owner == v->pgid || getpgid(owner) == v->pgid);
}

static void finish_stop(struct service *v)
{
	loop_timer_cancel(v->sup->loop, &v->timer);
	v->exited = false;
	if (v->give_up_reason[0] && !v->restart_after_stop) {
		char why[sizeof(v->give_up_reason)];

		snprintf(why, sizeof(why), "%s", v->give_up_reason);
		v->give_up_reason[0] = 0;
		give_up(v, why);
		return;
	}
	v->give_up_reason[0] = 0;
	if (v->restart_after_stop && !v->sup->stopping_all) {
		/* The stop did complete: its callers are answered before the start begins. */
		set_state(v, SVC_STOPPED);
		v->restart_after_stop = false;
		try_start(v);
		return;
	}
	set_state(v, SVC_STOPPED);
	check_stack(v->sup);
}

/* The main process is gone while stopping: done once the kernel released its port. */
static void act_stopped_exit(struct service *v)
{
	release_process(v);
	v->exited = true;
	/* A stop ends the whole service: what escaped the group and outlived the main process
	 * (it had the stop signal already) is killed now, so nothing of ours stays behind. */
	if (signal_cgroup(v, 0))
		cgroup_kill(v);
	if (port_still_ours(v)) {
		loop_timer_after_ms(v->sup->loop, &v->timer, RELEASE_GRACE_MS);
		return;
	}
	finish_stop(v);
}

static void act_stop_timer(struct service *v)
{
	if (v->exited) {
		finish_stop(v); /* the release never came: a descendant may still hold it */
		return;
	}
	if (!v->killed) {
		v->killed = true;
		signal_group(v, SIGKILL);
		loop_timer_after_ms(v->sup->loop, &v->timer, KILL_GRACE_MS);
	}
}

static void act_clear_timer(struct service *v)
{
	/* The leftover ignored the stop signal. */
	if (v->leftover_pidfd >= 0 && pidfd_signal(v->leftover_pidfd, SIGKILL) == 0) {
		kill(-v->leftover_pid, SIGKILL);
		loop_timer_after_ms(v->sup->loop, &v->timer, KILL_GRACE_MS);
		return;
	}
	dispatch(v, SE_CLEARED);
}

static void act_cleared(struct service *v)
{
	loop_timer_cancel(v->sup->loop, &v->timer);
	if (v->leftover_pidfd >= 0) {
		loop_del_fd(v->sup->loop, v->leftover_pidfd);
		close(v->leftover_pidfd);
	}
	v->leftover_pidfd = -1;
	v->leftover_pid = 0;
	v->leftover_ticks = 0;
	if (v->stop_requested) {
		v->stop_requested = false;
		set_state(v, SVC_STOPPED);
		check_stack(v->sup);
		return;
	}
	try_start(v);
}

static void act_clearing_stop(struct service *v)
{
	/* The leftover is being stopped already (with escalation): let that finish. */
	v->stop_requested = true;
}

static void act_clearing_start(struct service *v)
{
	v->stop_requested = false;
}

/* Stopping already: a stop cancels the restart that may follow, a start asks for one. */
static void act_stopping_stop(struct service *v)
{
	v->restart_after_stop = false;
}

static void act_stopping_start(struct service *v)
{
	v->restarts = 0;
	v->restart_after_stop = true;
}

static void act_release_done(struct service *v)
{
	if (v->exited)
		finish_stop(v);
}

static void act_collision(struct service *v)
{
	begin_stop(v, true); /* forced_port was set by the caller */
}

/* on[state][event]: NULL ignores the event in that state. */
static const svc_action on[SVC_NSTATES][SVC_NEVENTS] = {
	[SVC_STOPPED] = {[SE_START] = act_start},
	[SVC_FAILED] = {[SE_START] = act_start},
	[SVC_WAITING] = {[SE_DEPS_READY] = try_start, [SE_STOP] = act_cancel},
	[SVC_CLEARING] = {[SE_CLEARED] = act_cleared,
			  [SE_TIMER] = act_clear_timer,
			  [SE_STOP] = act_clearing_stop,
			  [SE_START] = act_clearing_start},
	[SVC_STARTING] = {[SE_HEALTHY] = act_running,
			  [SE_UNHEALTHY] = act_restart_unhealthy,
			  [SE_EXIT] = act_exited,
			  [SE_STOP] = act_stop,
			  [SE_COLLISION] = act_collision},
	[SVC_RUNNING] = {[SE_UNHEALTHY] = act_restart_unhealthy,
			 [SE_EXIT] = act_exited,
			 [SE_STOP] = act_stop,
			 [SE_COLLISION] = act_collision},
	[SVC_STOPPING] = {[SE_STOP] = act_stopping_stop,
			  [SE_START] = act_stopping_start,
			  [SE_EXIT] = act_stopped_exit,
			  [SE_TIMER] = act_stop_timer,
			  [SE_CLEARED] = act_release_done},
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
		{act_restart_unhealthy, "restart_unhealthy"},
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
	};

	if (s >= SVC_NSTATES || e >= SVC_NEVENTS || !on[s][e])
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].fn == on[s][e])
			return names[i].name;
	return "?";
}

static void dispatch(struct service *v, enum svc_event ev)
{
	svc_action a = on[v->state][ev];

	if (a)
		a(v);
}

static void on_timer(struct loop *l, void *ctx)
{
	(void)l;
	dispatch(ctx, SE_TIMER);
}

/* After any change: start waiting services whose dependencies are ready, advance a stop-all,
 * and tell the agent when the stack is finished. */
static void check_stack(struct supervisor *s)
{
	bool all_down = true;

	if (!s->stopping_all) {
		for (int i = 0; i < s->n; i++)
			if (s->svcs[i].state == SVC_WAITING && deps_ready(&s->svcs[i]))
				dispatch(&s->svcs[i], SE_DEPS_READY);
		return;
	}
	/* Reverse dependency order: a service stops once nothing that depends on it runs. */
	for (int k = s->n - 1; k >= 0; k--) {
		struct service *v = &s->svcs[s->order[k]];
		bool dependents_down = true;

		if (v->state == SVC_STOPPED || v->state == SVC_FAILED)
			continue;
		all_down = false;
		if (v->state == SVC_STOPPING)
			continue;
		for (int j = 0; j < s->n && !s->force; j++) {
			const struct service *d = &s->svcs[j];

			for (int q = 0; q < d->cfg->n_deps; q++)
				if (!strcmp(d->cfg->depends_on[q], v->cfg->name) &&
				    d->state != SVC_STOPPED && d->state != SVC_FAILED)
					dependents_down = false;
		}
		if (dependents_down)
			dispatch(v, SE_STOP);
	}
	if (!all_down)
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

/* ---- public ---- */

/* revenant-PID directories of agents that died without cleaning up: removed once empty (rmdir
 * fails on a cgroup that still has processes or children, which is the check we want). */
static void remove_stale_cgroups(const char *root)
{
	DIR *d = opendir(root);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[512];
		pid_t pid;
		DIR *sub;
		struct dirent *se;

		if (strncmp(de->d_name, "revenant-", 9))
			continue;
		pid = atoi(de->d_name + 9);
		if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, de->d_name);
		sub = opendir(path);
		while (sub && (se = readdir(sub))) {
			char child[800];

			if (se->d_type != DT_DIR || se->d_name[0] == '.')
				continue;
			snprintf(child, sizeof(child), "%s/%s", path, se->d_name);
			rmdir(child);
		}
		if (sub)
			closedir(sub);
		rmdir(path);
	}
	closedir(d);
}

static void find_cgroup_root(struct supervisor *s)
{
	static const char *roots[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};

	for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
		char probe[300];

		snprintf(probe, sizeof(probe), "%s/cgroup.procs", roots[i]);
		if (access(probe, W_OK))
			continue;
		remove_stale_cgroups(roots[i]);
		snprintf(s->cgroup_root, sizeof(s->cgroup_root), "%s/revenant-%d", roots[i],
			 getpid());
		if (mkdir(s->cgroup_root, 0755) == 0)
			return;
	}
	s->cgroup_root[0] = 0;
}

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
		const struct service_config *c = config_service(s->cfg, o->name);
		struct service *v;

		if (!c || o->pid <= 1 || !o->start_ticks || proc_start_ticks(o->pid) != o->start_ticks)
			continue;
		v = &s->svcs[c - s->cfg->services];
		v->leftover_pid = o->pid;
		v->leftover_ticks = o->start_ticks;
		v->leftover_pidfd = pidfd_open_pid(o->pid);
		v->pgid = o->pgid; /* until we start our own, its group is this service's */
		{
			cJSON *e = ev_new("service_leftover", 0);

			ev_add_str(e, "service", c->name);
			ev_add_num(e, "pid", o->pid);
			ev_add_num(e, "port", o->port);
			ev_add_str(e, "action", "replace");
			emit(s, e);
		}
	}
	state_free(&st);
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
	s->order = calloc(s->n + 1, sizeof(int));
	if (!s->svcs || !s->order || config_start_order(cfg, s->order)) {
		sup_free(s);
		return NULL;
	}
	state_runtime_path(cfg->control.socket, REV_STATE_FILE, s->state_path, sizeof(s->state_path));
	for (int i = 0; i < s->n; i++) {
		struct service *v = &s->svcs[i];

		v->sup = s;
		v->cfg = &cfg->services[i];
		v->idx = i;
		v->pidfd = v->leftover_pidfd = -1;
		loop_timer_init(&v->timer, on_timer, v);
		loop_timer_init(&v->health_timer, on_health_timer, v);
	}
	/* Orphans of our services re-parent to us, and we reap them at once. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	find_cgroup_root(s);
	find_leftovers(s);
	write_state(s);
	return s;
}

void sup_free(struct supervisor *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		struct service *v = &s->svcs[i];

		health_stop(v);
		loop_timer_cancel(s->loop, &v->timer);
		if (v->pidfd >= 0)
			close(v->pidfd);
		if (v->leftover_pidfd >= 0)
			close(v->leftover_pidfd);
		while (v->replies) {
			struct pending_reply *r = v->replies;

			v->replies = r->next;
			free(r);
		}
		if (v->leftover_pidfd >= 0)
			loop_del_fd(s->loop, v->leftover_pidfd);
		if (v->cgroup[0])
			rmdir(v->cgroup);
	}
	if (s->cgroup_root[0])
		rmdir(s->cgroup_root);
	/* A clean stop leaves nothing of ours running: the state file goes with it. */
	if (s->done)
		unlink(s->state_path);
	free(s->svcs);
	free(s->order);
	free(s);
}

void sup_start_all(struct supervisor *s)
{
	for (int k = 0; k < s->n; k++)
		dispatch(&s->svcs[s->order[k]], SE_START);
	if (!s->n && s->stopping_all)
		check_stack(s);
}

/* --force, or a second signal: no more waiting for stop_timeout_ms before SIGKILL. */
static void kill_stopping(struct supervisor *s)
{
	for (int i = 0; i < s->n; i++) {
		struct service *v = &s->svcs[i];

		if (v->state == SVC_STOPPING && !v->killed && !v->exited)
			act_stop_timer(v);
	}
}

void sup_stop_all(struct supervisor *s, bool force)
{
	s->shutdown = true;
	s->stopping_all = true;
	s->force = s->force || force;
	for (int i = 0; i < s->n; i++) {
		struct service *v = &s->svcs[i];

		if (v->state == SVC_WAITING || v->state == SVC_BACKOFF || v->state == SVC_CLEARING)
			dispatch(v, SE_STOP);
	}
	check_stack(s);
	if (force) /* a second SIGTERM/SIGINT */
		kill_stopping(s);
}

bool sup_on_reaped(struct supervisor *s, pid_t pid, int status)
{
	for (int i = 0; i < s->n; i++) {
		struct service *v = &s->svcs[i];

		if (v->pid == pid) {
			report_exit(v, status);
			if (v->state == SVC_STOPPING)
				v->exited = true;
			dispatch(v, SE_EXIT);
			return true;
		}
		if (v->leftover_pid == pid && v->state == SVC_CLEARING) {
			dispatch(v, SE_CLEARED);
			return true;
		}
	}
	return false;
}

const char *sup_on_port(struct supervisor *s, const struct port_event *e, pid_t owner,
			const char **service, const char **owner_service)
{
	struct service *v = service_of_pid(s, e->pid), *o = service_of_pid(s, owner);

	*service = v ? v->cfg->name : NULL;
	*owner_service = o ? o->cfg->name : NULL;
	if (e->type == REV_EV_LISTEN) {
		/* The service just started listening: confirm its health now, not at the next tick. */
		if (v && v->state == SVC_STARTING && !v->probe && v->port == e->port)
			health_schedule(v, 0);
		return NULL;
	}
	if (e->type == REV_EV_RELEASE) {
		for (int i = 0; i < s->n; i++) {
			struct service *w = &s->svcs[i];

			if (w->port == e->port && w->state == SVC_STOPPING && w->exited)
				dispatch(w, SE_CLEARED);
			if (w->state == SVC_CLEARING && e->port == w->cfg->port &&
			    (!w->leftover_pid || kill(w->leftover_pid, 0)))
				dispatch(w, SE_CLEARED);
		}
		return NULL;
	}
	if (e->type != REV_EV_COLLISION || !v)
		return NULL;
	if (!s->cfg->monitoring.auto_resolve_conflicts)
		return "report";
	if (o == v)
		return "report"; /* its own socket: a bug in the service, not a squatter */
	{
		struct port_probe probes[65];
		size_t n = 0;
		char reason[256];
		int port;

		if (e->port != v->cfg->port && e->port != v->port)
			return "report"; /* not the port we gave it: its business */
		/* The port it collided on is taken, whoever we could name; when it runs on an
		 * alternative, the configured port is a candidate again only if free now. */
		n = probe_ports(s, v, e->port, owner ? owner : -1, probes, ARRAY_SIZE(probes));
		port = sup_choose_port(s->cfg, v->idx, probes, n, reason, sizeof(reason));
		if (port < 0 || port == e->port)
			return "report";
		{
			cJSON *m = ev_new("port_migrated", 0);

			ev_add_str(m, "service", v->cfg->name);
			ev_add_num(m, "from", e->port);
			ev_add_num(m, "to", port);
			if (owner)
				ev_add_num(m, "owner_pid", owner);
			else
				cJSON_AddNullToObject(m, "owner_pid");
			emit(s, m);
		}
		v->forced_port = port;
		dispatch(v, SE_COLLISION);
		return "migrate";
	}
}

const char *sup_on_zombie(struct supervisor *s, const struct zrec *z, const char **service)
{
	struct service *v = s ? service_of_pid(s, z->ppid) : NULL;

	*service = NULL;
	if (!v)
		return "report";
	*service = v->cfg->name;
	switch (v->cfg->zombie_policy) {
	case ZOMBIE_NUDGE: {
		int fd = pidfd_open_pid(z->ppid);
		int rc = fd >= 0 ? pidfd_signal(fd, SIGCHLD) : -errno;

		if (fd >= 0)
			close(fd);
		return rc ? "report" : "nudge";
	}
	case ZOMBIE_RESTART_PARENT:
		if (v->state == SVC_RUNNING || v->state == SVC_STARTING) {
			v->restarts = 0;
			begin_stop(v, true);
			return "restart_parent";
		}
		return "report";
	default:
		return "report";
	}
}

/* ---- control ---- */

static cJSON *status_json(struct supervisor *s)
{
	cJSON *r = cJSON_CreateObject(), *svcs;

	cJSON_AddBoolToObject(r, "ok", true);
	cJSON_AddNumberToObject(r, "agent_pid", getpid());
	svcs = cJSON_AddObjectToObject(r, "services");
	for (int k = 0; k < s->n; k++) {
		const struct service *v = &s->svcs[s->order[k]];
		cJSON *o = cJSON_AddObjectToObject(svcs, v->cfg->name);

		cJSON_AddStringToObject(o, "state", svc_state_name(v->state));
		if (v->pid)
			cJSON_AddNumberToObject(o, "pid", v->pid);
		else
			cJSON_AddNullToObject(o, "pid");
		if (v->port || v->cfg->port)
			cJSON_AddNumberToObject(o, "port", v->port ? v->port : v->cfg->port);
		else
			cJSON_AddNullToObject(o, "port");
		cJSON_AddNumberToObject(o, "restarts", v->total_restarts);
		cJSON_AddStringToObject(o, "health",
					!v->cfg->health.enabled ? "none"
					: !v->health_known	? "unknown"
					: v->healthy		? "ok"
								: "failing");
		if (v->pid)
			cJSON_AddNumberToObject(o, "uptime_ms",
						(double)((mono_ns() - v->started_ns) / 1000000));
	}
	return r;
}

cJSON *sup_status(struct supervisor *s)
{
	return status_json(s);
}

static cJSON *error_json(const char *fmt, const char *arg)
{
	cJSON *r = cJSON_CreateObject();
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, arg);
	cJSON_AddBoolToObject(r, "ok", false);
	cJSON_AddStringToObject(r, "error", msg);
	return r;
}

static void add_reply(struct service *v, enum svc_event until, sup_reply_fn fn, void *ctx)
{
	struct pending_reply *r = calloc(1, sizeof(*r));

	if (!r)
		return;
	r->fn = fn;
	r->ctx = ctx;
	r->until = until;
	r->next = v->replies;
	v->replies = r;
}

void sup_cancel_reply(struct supervisor *s, void *ctx)
{
	struct pending_reply **ap = s ? &s->all_replies : NULL;

	while (ap && *ap) {
		if ((*ap)->ctx == ctx) {
			struct pending_reply *r = *ap;

			*ap = r->next;
			free(r);
		} else {
			ap = &(*ap)->next;
		}
	}
	for (int i = 0; s && i < s->n; i++) {
		struct pending_reply **pp = &s->svcs[i].replies;

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
}

cJSON *sup_control(struct supervisor *s, const cJSON *req, sup_reply_fn reply, void *ctx)
{
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "service");
	const struct service_config *c;
	struct service *v;

	if (!cJSON_IsString(cmd))
		return error_json("request needs a \"cmd\" string%s", "");
	if (!strcmp(cmd->valuestring, "status"))
		return status_json(s);
	if (!strcmp(cmd->valuestring, "stop_all")) {
		const cJSON *force = cJSON_GetObjectItemCaseSensitive(req, "force");
		struct pending_reply *r;

		if (s->shutdown)
			return error_json("the agent is already stopping%s", "");
		r = calloc(1, sizeof(*r));
		if (!r)
			return error_json("out of memory%s", "");
		r->fn = reply;
		r->ctx = ctx;
		r->next = s->all_replies;
		s->all_replies = r;
		s->stopping_all = true;
		s->force = s->force || cJSON_IsTrue(force);
		for (int i = 0; i < s->n; i++) {
			struct service *v = &s->svcs[i];

			if (v->state == SVC_WAITING || v->state == SVC_BACKOFF ||
			    v->state == SVC_CLEARING)
				dispatch(v, SE_STOP);
		}
		check_stack(s);
		if (s->force)
			kill_stopping(s);
		return NULL;
	}
	if (strcmp(cmd->valuestring, "start") && strcmp(cmd->valuestring, "stop") &&
	    strcmp(cmd->valuestring, "restart"))
		return error_json("unknown command \"%s\" (status, start, stop, restart, stop_all)",
				  cmd->valuestring);
	if (!cJSON_IsString(name))
		return error_json("\"%s\" needs a \"service\" string", cmd->valuestring);
	c = config_service(s->cfg, name->valuestring);
	if (!c)
		return error_json("no service named \"%s\" in the agent's config", name->valuestring);
	v = &s->svcs[c - s->cfg->services];
	if (s->stopping_all)
		return error_json("the agent is stopping; \"%s\" was not changed", c->name);
	if (!strcmp(cmd->valuestring, "stop")) {
		if (v->state == SVC_STOPPED || v->state == SVC_FAILED)
			return status_json(s);
		add_reply(v, SE_STOP, reply, ctx);
		dispatch(v, SE_STOP);
		return NULL;
	}
	if (!strcmp(cmd->valuestring, "start")) {
		if (v->state == SVC_RUNNING)
			return status_json(s);
		add_reply(v, SE_START, reply, ctx);
		if (v->state == SVC_STOPPED || v->state == SVC_FAILED || v->state == SVC_STOPPING ||
		    v->state == SVC_CLEARING)
			dispatch(v, SE_START);
		return NULL;
	}
	/* restart */
	add_reply(v, SE_START, reply, ctx);
	if (v->state == SVC_RUNNING || v->state == SVC_STARTING) {
		v->restarts = 0;
		begin_stop(v, true);
	} else if (v->state == SVC_STOPPED || v->state == SVC_FAILED || v->state == SVC_STOPPING) {
		dispatch(v, SE_START);
	}
	return NULL;
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
				    s->svcs[i].cfg->name, s->svcs[i].state == SVC_RUNNING);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_service_restarts_total Restarts by the supervisor.\n"
			    "# TYPE revenant_service_restarts_total counter\n");
	for (int i = 0; i < s->n; i++)
		n = metrics_appendf(buf, len, n,
				    "revenant_service_restarts_total{service=\"%s\"} %d\n",
				    s->svcs[i].cfg->name, s->svcs[i].total_restarts);
	n = metrics_appendf(buf, len, n,
			    "# HELP revenant_service_port The port the service runs on (0: none).\n"
			    "# TYPE revenant_service_port gauge\n");
	for (int i = 0; i < s->n; i++)
		n = metrics_appendf(buf, len, n, "revenant_service_port{service=\"%s\"} %d\n",
				    s->svcs[i].cfg->name, s->svcs[i].port);
	return n;
}
