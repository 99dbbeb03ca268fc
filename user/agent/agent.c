// SPDX-License-Identifier: MIT
/* `revenant run`: owns the agent's lifetime and wiring, not its policy. Start-up is a list of
 * steps (config, lock, log, loop, signals, sensor, seed, supervisor); at run time kernel records
 * go to the zombie watcher and the supervisor, which decide, and this file logs each cause
 * before it applies the decision, so the event log reads in causal order. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/control.h"
#include "agent/metrics.h"
#include "agent/notify.h"
#include "agent/output.h"
#include "agent/sensor.h"
#include "agent/supervisor.h"
#include "agent/web.h"
#include "agent/zcensus.h"
#include "agent/zombie.h"
#include "cmd/cli.h"
#include "lib/agentrec.h"
#include "lib/events.h"
#include "lib/log.h"
#include "lib/loop.h"
#include "lib/ports.h"
#include "agent/sensor.h"
#include "lib/safefs.h"
#include "lib/snapshot.h"
#include "lib/state.h"
#include "lib/util.h"

#define OWNER_SNAP_TTL_NS (250 * NS_PER_MS)
#define ZOMBIE_TABLE_MAX (1u << 18) /* exited, unreaped processes tracked at once: ~40 MiB at worst */

struct agent {
	struct rev_config cfg;
	struct loop *loop;
	struct evlog *log;
	struct sensor *sensor;
	struct snap_pins *pins;
	struct supervisor *sup;
	struct control *ctl;
	struct metrics *metrics;
	struct web *web;
	struct zwatch *zw;
	struct outputs *output;
	uint32_t host_netns;
	bool stopping;
	char pin_dir[256];
	char mounted[64];
	int sigfd;
	int lockfd;
	int recfd; /* the host's agent record, while we are the host's agent */
	int verbose;
	int stop_reason; /* enum stop_reason, -1 until one is known */
	/* The last fd snapshot taken to name a collision's owner: a burst of collisions (a crash
	 * loop on a taken UDP port) shares one walk instead of stalling the loop with many. */
	struct snap owner_snap;
	uint64_t owner_snap_ns;
};

static void emit(struct agent *a, const struct event *e)
{
	ev_emit(a->log, e);
}

/* ---- zombies: the watcher decides when, the supervisor what, this logs and nudges ---- */

static enum ev_action on_zombie(void *ctx, const struct zrec *z, uint64_t now, bool act)
{
	struct agent *a = ctx;
	struct sup_zombie d = {.action = ACT_REPORT, .svc = -1};
	struct event e = {.type = EV_ZOMBIE};

	/* act false: the parent had its chance (a nudge) or has already reaped it. */
	if (act) {
		sup_decide_zombie(a->sup, z->ppid, &d);
	} else {
		d.service = sup_service_of(a->sup, z->ppid);
	}
	if (d.action == ACT_NUDGE && zombie_nudge(z->ppid))
		d.action = ACT_REPORT;
	e.zombie = (struct ev_zombie){.pid = z->pid,
				      .ppid = z->ppid,
				      .age_ms = (now - z->exit_ns) / NS_PER_MS,
				      .comm = z->comm,
				      .parent_comm = z->parent_comm,
				      .service = d.service,
				      .action = d.action,
				      .existing = z->seeded};
	emit(a, &e);
	zcensus_add(z->pid, z->parent_comm, d.service);
	if (d.action == ACT_RESTART_PARENT)
		sup_apply_zombie(a->sup, &d);
	return d.action;
}

/* reaped_ns: when it was reaped (a kernel timestamp, or now when we only know it is gone). */
static void on_zombie_reaped(void *ctx, const struct zrec *z, uint64_t reaped_ns)
{
	struct agent *a = ctx;
	struct event e = {.type = EV_ZOMBIE_REAPED, .ts_ns = reaped_ns};

	e.zombie_reaped = (struct ev_zombie_reaped){.pid = z->pid,
						    .ppid = z->ppid,
						    .age_ms = (reaped_ns - z->exit_ns) / NS_PER_MS,
						    .comm = z->comm,
						    .service = sup_service_of(a->sup, z->ppid)};
	emit(a, &e);
	zcensus_del(z->pid);
}

static void on_zombies_lost(void *ctx, uint64_t count)
{
	struct event e = {.type = EV_EVENTS_LOST};

	e.events_lost = (struct ev_events_lost){
		.count = count, .reason = "zombie table full: exits not watched"};
	emit(ctx, &e);
}

/* ---- ports ---- */

static void sock_of(struct ev_sock *es, const struct port_event *r, char *addr, size_t addrlen)
{
	addr_format(addr, addrlen, r->family, r->addr);
	*es = (struct ev_sock){.port = r->port,
			       .proto = proto_name(r->proto),
			       .addr = addr,
			       .family = family_name(r->family),
			       .netns = r->netns};
}

/* Who holds the port a collision wanted: the listeners map, then (UDP, or a TCP socket bound but
 * not listening) a socket snapshot, shared by a burst of collisions. */
static void find_owner(struct agent *a, const struct port_event *r, struct port_owner *o)
{
	struct sock_ident want = {.netns = r->netns,
				  .port = r->port,
				  .family = r->family,
				  .proto = r->proto,
				  .v6only = r->v6only};
	pid_t loser = r->syscall == REV_SYS_LISTEN ? (pid_t)r->pid : 0;
	struct listener *ls = NULL;
	size_t n = 0;
	struct snap *s = &a->owner_snap;
	char err[256];
	uint64_t now = mono_ns();
	bool fresh = a->owner_snap_ns && now - a->owner_snap_ns <= OWNER_SNAP_TTL_NS;
	bool held;

	memcpy(want.addr, r->addr, sizeof(want.addr));
	if (ports_read_map(sensor_listeners_fd(a->sensor), &ls, &n))
		n = 0;
	held = ports_owner(ls, n, fresh ? s : NULL, &want, loser, o);
	/* Not in a snapshot older than the collision: the owner may be newer; look again. */
	if ((!held || !o->pid) && !(fresh && r->ts_ns <= a->owner_snap_ns)) {
		snapshot_free(s);
		a->owner_snap_ns = 0;
		if (snapshot_take(s, SNAP_SOCK_FDS, a->pin_dir, err, sizeof(err)) == 0) {
			a->owner_snap_ns = now;
			ports_owner(ls, n, s, &want, loser, o);
		}
	}
	free(ls);
}

static void on_collision(struct agent *a, const struct port_event *r)
{
	char comm[REV_COMM_LEN + 1], addr[64];
	struct port_owner o;
	struct sup_collision d;
	struct event e = {.type = EV_PORT_COLLISION, .ts_ns = r->ts_ns};

	find_owner(a, r, &o);
	sup_decide_collision(a->sup, r, o.pid, o.comm, &d);
	snprintf(comm, sizeof(comm), "%.*s", REV_COMM_LEN, r->comm);
	sock_of(&e.port_collision.sock, r, addr, sizeof(addr));
	e.port_collision.pid = r->pid;
	e.port_collision.ppid = r->ppid;
	e.port_collision.comm = comm;
	e.port_collision.service = d.service;
	e.port_collision.owner_pid = o.pid;
	e.port_collision.owner_comm = o.pid ? o.comm : NULL;
	e.port_collision.owner_service = d.owner_service;
	e.port_collision.syscall = r->syscall == REV_SYS_LISTEN ? EVSYS_LISTEN : EVSYS_BIND;
	e.port_collision.action = d.action;
	emit(a, &e);
	sup_apply_collision(a->sup, &d); /* port_migrated, then the restart: after the cause */
}

static void on_listen_release(struct agent *a, const struct port_event *r)
{
	char comm[REV_COMM_LEN + 1], addr[64];
	struct event e = {.type = r->type == REV_EV_LISTEN ? EV_PORT_LISTEN : EV_PORT_RELEASE,
			  .ts_ns = r->ts_ns};

	snprintf(comm, sizeof(comm), "%.*s", REV_COMM_LEN, r->comm);
	sock_of(&e.port.sock, r, addr, sizeof(addr));
	e.port.pid = r->pid;
	e.port.comm = comm;
	e.port.service = sup_service_of(a->sup, r->pid);
	emit(a, &e);
	/* After the event: a stop waiting for this release may now finish and log its own, and a
	 * starting service may be probed at once. */
	sup_on_port(a->sup, r);
}

static void on_record(void *ctx, const void *rec, size_t len)
{
	struct agent *a = ctx;
	uint32_t type;

	if (len < sizeof(type))
		return;
	memcpy(&type, rec, sizeof(type));
	metrics_count_record(type);
	switch (type) {
	case REV_EV_EXIT:
		/* monitoring.enabled false: no zombie watch; ports stay watched for supervision */
		if (len >= sizeof(struct exit_event) && a->cfg.monitoring.enabled)
			zwatch_exit(a->zw, rec);
		break;
	case REV_EV_ZOMBIE: /* the kernel kept the grace: only real zombies come this way */
		if (len >= sizeof(struct exit_event) && a->cfg.monitoring.enabled)
			zwatch_zombie(a->zw, rec, mono_ns());
		break;
	case REV_EV_REAP:
		if (len >= sizeof(struct exit_event))
			zwatch_reap(a->zw, rec);
		break;
	case REV_EV_LISTEN:
	case REV_EV_RELEASE:
		if (len >= sizeof(struct port_event))
			on_listen_release(a, rec);
		break;
	case REV_EV_COLLISION:
		if (len >= sizeof(struct port_event))
			on_collision(a, rec);
		break;
	}
}

static void on_lost(void *ctx, uint64_t lost)
{
	struct event e = {.type = EV_EVENTS_LOST};

	e.events_lost = (struct ev_events_lost){.count = lost, .reason = "ring buffer full"};
	emit(ctx, &e);
}

/* ---- signals and reload ---- */

static bool differs(const char *a, const char *b)
{
	return (a || b) && (!a || !b || strcmp(a, b));
}

/* What a reload cannot change in a running agent, named for the operator. */
static void needs_restart(const struct rev_config *cur, const struct rev_config *next, char *buf,
			  size_t len)
{
	size_t n = strlen(buf);

	if (differs(cur->log.path, next->log.path) || cur->log.max_bytes != next->log.max_bytes ||
	    cur->log.keep != next->log.keep || cur->log.compress != next->log.compress)
		n += snprintf(buf + n, len - n, "; log settings changed: applied at the next start");
	if (differs(cur->control.socket, next->control.socket) && n < len)
		n += snprintf(buf + n, len - n, "; control.socket changed: applied at the next start");
	if (differs(cur->metrics.listen, next->metrics.listen) && n < len)
		snprintf(buf + n, len - n, "; metrics.listen changed: applied at the next start");
}

/* SIGHUP and `revenant reload`: a valid file is applied — services through the supervisor, the
 * monitoring settings live, the rest named as needing a restart. A bad file changes nothing.
 * 0, -EINVAL (bad file) or -ENOMEM; what happened in detail, and in an agent_reload event. */
static int reload(struct agent *a, char *detail, size_t len)
{
	struct rev_config *next = calloc(1, sizeof(*next));
	struct event e = {.type = EV_AGENT_RELOAD};
	int rc;

	e.agent_reload.config = a->cfg.path;
	if (!next) {
		snprintf(detail, len, "out of memory: the running configuration is kept");
		rc = -ENOMEM;
	} else if ((rc = config_reload(a->cfg.path, next, detail, len)) ||
		   (rc = config_check_files(next, detail, len))) {
		config_free(next);
		free(next);
		rc = -EINVAL;
		cli_err("reload: %s (keeping the running configuration)", detail);
	} else if ((rc = sup_reload(a->sup, next, detail, len))) {
		config_free(next);
		free(next);
	} else {
		if (next->monitoring.zombie_grace_ms != a->cfg.monitoring.zombie_grace_ms) {
			zwatch_set_grace(a->zw, ms_to_ns(next->monitoring.zombie_grace_ms));
			sensor_set_grace(a->sensor, ms_to_ns(next->monitoring.zombie_grace_ms));
		}
		if (next->monitoring.enabled != a->cfg.monitoring.enabled)
			sensor_set_watch_exits(a->sensor, next->monitoring.enabled);
		a->cfg.monitoring = next->monitoring;
		needs_restart(&a->cfg, next, detail, len);
	}
	e.agent_reload.ok = rc == 0;
	e.agent_reload.detail = detail;
	emit(a, &e);
	return rc;
}

static int on_reload_request(void *ctx, char *detail, size_t len)
{
	return reload(ctx, detail, len);
}

/* Services are ours to account for; orphans that re-parented to us (we are a subreaper) are
 * reaped at once so none lingers as a zombie. */
static void reap_children(struct agent *a)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		/* What it printed before it died comes before its exit in the timeline. */
		outputs_drain(a->output, pid);
		if (!sup_on_reaped(a->sup, pid, status))
			zwatch_reaped_by_us(a->zw, pid);
	}
}

static void on_signal(struct loop *l, int fd, uint32_t events, void *ctx)
{
	struct agent *a = ctx;
	struct signalfd_siginfo si;

	(void)events;
	(void)l;
	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			/* First signal: graceful stop of the stack; a second one: no more waiting. */
			if (a->stop_reason < 0)
				a->stop_reason = si.ssi_signo == SIGTERM ? STOP_SIGTERM : STOP_SIGINT;
			notify_stopping(stop_reason_name(a->stop_reason));
			sup_shutdown(a->sup, a->stopping);
			a->stopping = true;
			break;
		case SIGHUP: {
			char detail[2048];

			reload(a, detail, sizeof(detail));
			break;
		}
		case SIGCHLD:
			reap_children(a);
			break;
		default:
			break;
		}
	}
}

static void on_stack_done(void *ctx, int code)
{
	struct agent *a = ctx;

	if (code && a->stop_reason < 0)
		a->stop_reason = STOP_CRITICAL;
	loop_stop(a->loop, code);
}

/* The service manager's STATUS= line (notify.c sends it when it changes). */
static void status_line(void *ctx, char *buf, size_t len)
{
	struct agent *a = ctx;
	int total, up = sup_count_up(a->sup, &total);
	size_t z = zcensus_count();

	if (total)
		snprintf(buf, len, "%d/%d services up, %zu zombies", up, total, z);
	else
		snprintf(buf, len, "watching (no services), %zu zombies", z);
}

static void on_sup_event(void *ctx, const struct event *e)
{
	emit(ctx, e);
}

static void on_status(void *ctx, cJSON *status)
{
	struct agent *a = ctx;

	evlog_add_status(a->log, status);
}

/* ---- start-up steps: each prints what went wrong and returns an exit code, 0 to go on ---- */

static void usage(FILE *f)
{
	fprintf(f, "usage: revenant run [-c FILE] [-v]\n"
		   "\n"
		   "Run the agent in the foreground: load the BPF sensor, start the configured\n"
		   "services, watch for zombies and port collisions, react and log events.\n"
		   "SIGTERM/SIGINT stop it gracefully (exit 0); SIGHUP reloads the config.\n"
		   "\n"
		   "  -c, --config FILE  configuration (default %s, else %s)\n"
		   "  -v, --verbose      say more (twice: libbpf debug output)\n"
		   "  -h, --help         this help\n",
		   CONFIG_DEFAULT_PATH, CONFIG_FALLBACK_PATH);
}

/* -1: go on; else the exit code. */
static int parse_args(struct agent *a, int argc, char **argv, const char **cfg_path)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			*cfg_path = optarg;
			break;
		case 'v':
			a->verbose++;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_err("run: unexpected argument '%s'", argv[optind]);
		usage(stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* Before anything forks: services must not inherit NOTIFY_SOCKET. Before any fd is opened: every
 * client, probe and service holds one, so the fd limit is raised to its hard limit first. */
static void prepare(void)
{
	long n;

	notify_init();
	n = nofile_raise();
	if (n < 0)
		cli_err("warning: cannot raise RLIMIT_NOFILE to its hard limit: %s", strerror((int)-n));
	if (!in_init_pid_ns())
		cli_err("warning: not in the host's PID namespace: the pids the kernel reports are "
			"not this /proc's, so zombies cannot be confirmed or nudged (run the agent "
			"with the host's PID namespace: --pid=host, hostPID: true)");
}

/* One agent per control socket: the lock is the truth `scan` and a second `run` consult. The
 * runtime directory is checked (and made 0700 when it is ours alone) first. */
static int take_lock(struct agent *a)
{
	char err[1024], pid[32] = "";
	ssize_t n;

	a->lockfd = runtime_open_lock(a->cfg.control.socket, err, sizeof(err));
	if (a->lockfd < 0) {
		cli_err("%s", err);
		/* a directory or file refused as unsafe is the config's to fix */
		return a->lockfd == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
	}
	if (flock(a->lockfd, LOCK_EX | LOCK_NB) == 0) {
		if (ftruncate(a->lockfd, 0) == 0)
			dprintf(a->lockfd, "%d\n", getpid());
		return 0;
	}
	n = pread(a->lockfd, pid, sizeof(pid) - 1, 0);
	if (n > 0)
		pid[n] = 0;
	pid[strcspn(pid, "\n")] = 0;
	cli_err("another agent (pid %s) already runs for control socket %s: stop it first, or give "
		"this one another control.socket",
		pid[0] ? pid : "?", a->cfg.control.socket);
	return EXIT_FAILED;
}

/* Every service's log directory, checked (and created) before anything starts: one another user
 * could write in would be refused at every start. 0, or -errno with err set. */
static int check_service_logs(const struct rev_config *cfg, char *err, size_t errlen)
{
	for (int i = 0; i < cfg->n_services; i++) {
		const struct service_config *c = &cfg->services[i];
		char dir[4096], name[256];
		struct sdir d;
		int rc = path_split(c->log_file, dir, sizeof(dir), name, sizeof(name));

		if (!rc)
			rc = sdir_open(&d, dir, SDIR_CREATE, 0755, err, errlen);
		if (rc) {
			size_t n = strlen(err);

			snprintf(err + n, errlen - n, " (services.%s.log_file %s)", c->name,
				 c->log_file);
			return rc;
		}
		sdir_close(&d);
	}
	return 0;
}

static int open_log(struct agent *a)
{
	struct evlog_opts lo = {.path = a->cfg.log.path,
				.max_bytes = a->cfg.log.max_bytes,
				.keep = a->cfg.log.keep,
				.compress = a->cfg.log.compress,
				.echo = a->verbose > 0};
	char err[1024];
	int rc = 0;

	a->log = evlog_open(&lo, err, sizeof(err));
	if (!a->log)
		rc = -errno;
	else
		rc = check_service_logs(&a->cfg, err, sizeof(err));
	metrics_watch_log(a->log);
	if (!rc)
		return 0;
	cli_err("%s", err);
	/* a path refused as unsafe, or one that cannot be made: the config's to fix */
	return rc == -ENOMEM || rc == -EIO ? EXIT_FAILED : EXIT_USAGE;
}

static int make_loop(struct agent *a)
{
	struct zwatch_hooks zh = {.zombie = on_zombie,
				  .reaped = on_zombie_reaped,
				  .lost = on_zombies_lost,
				  .ctx = a};
	struct stat st;

	a->loop = loop_new();
	a->zw = a->loop ? zwatch_new(a->loop, ms_to_ns(a->cfg.monitoring.zombie_grace_ms),
				     ZOMBIE_TABLE_MAX, &zh)
			: NULL;
	if (!a->zw) {
		cli_err("cannot set up the event loop: %s", strerror(errno));
		return EXIT_FAILED;
	}
	if (evlog_attach_loop(a->log, a->loop))
		cli_err("warning: cannot watch the log compressor; it is checked at each rotation");
	a->host_netns = stat("/proc/self/ns/net", &st) ? 0 : (uint32_t)st.st_ino;
	return 0;
}

/* Signals become a signalfd before anything can fork, so children inherit a known mask. */
static int watch_signals(struct agent *a)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	a->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->sigfd < 0 || loop_add_fd(a->loop, a->sigfd, EPOLLIN, on_signal, a)) {
		cli_err("cannot watch signals: %s", strerror(errno));
		return EXIT_FAILED;
	}
	return 0;
}

static int start_sensor(struct agent *a)
{
	struct sensor_opts so = {.pin_dir = a->pin_dir,
				 .grace_ns = ms_to_ns(a->cfg.monitoring.zombie_grace_ms),
				 .watch_exits = a->cfg.monitoring.enabled,
				 .on_record = on_record,
				 .on_lost = on_lost,
				 .ctx = a};
	char err[1024];

	sensor_set_verbose(a->verbose);
	ports_pin_dir(a->cfg.control.socket, a->pin_dir, sizeof(a->pin_dir));
	a->sensor = sensor_start(a->loop, &so, a->mounted, sizeof(a->mounted), err, sizeof(err));
	if (!a->sensor) {
		cli_err("%s", err);
		if (errno == EINVAL)
			return EXIT_USAGE; /* REVENANT_ZOMBIE_GRACE names no path */
		return errno == EPERM || errno == EACCES ? EXIT_NOT_PERMITTED : EXIT_FAILED;
	}
	if (a->mounted[0])
		cli_err("mounted %s (it was not mounted)", a->mounted);
	if (sensor_zombie_mode(a->sensor) == ZGRACE_KERNEL)
		metrics_watch_kernel_grace(sensor_unreaped, a->sensor);
	/* Pinned iterators let `scan`, `zombies` and our own look-ups skip loading BPF each time. */
	a->pins = snapshot_pin(a->pin_dir, err, sizeof(err));
	if (!a->pins)
		cli_err("warning: %s; scan will load its own iterators", err);
	return 0;
}

/* Listeners and zombies that predate the agent, before it announces itself: a `scan` that
 * waited for agent_start must see them. */
static void seed(struct agent *a)
{
	struct snap s;
	char err[256];
	int added;

	if (snapshot_take(&s, SNAP_SOCK_FDS | SNAP_SOCK_TABLES | SNAP_ZOMBIES, a->pin_dir, err,
			  sizeof(err))) {
		cli_err("warning: %s; listeners and zombies that predate the agent are not known", err);
		return;
	}
	added = ports_seed(sensor_listeners_fd(a->sensor), sensor_owners_fd(a->sensor),
			   sensor_owner_hints(a->sensor), sensor_bound_fd(a->sensor), &s);
	zwatch_seed(a->zw, s.zombies, s.n_zombies, mono_ns());
	sensor_watch_reaps(a->sensor, s.zombies, s.n_zombies);
	if (a->verbose)
		cli_err("seeded %d listeners and %zu zombies from the kernel", added, s.n_zombies);
	snapshot_free(&s);
}

/* Commands run without -c find us through the host's record, unless another agent already
 * holds it (several agents, each with its own control socket: the first one is the host's). */
static void claim_record(struct agent *a)
{
	struct agent_rec r = {.pid = getpid()};
	pid_t owner;

	if (!realpath(a->cfg.path, r.config))
		snprintf(r.config, sizeof(r.config), "%s", a->cfg.path);
	snprintf(r.control, sizeof(r.control), "%s", a->cfg.control.socket);
	snprintf(r.pin, sizeof(r.pin), "%s", a->pin_dir);
	snprintf(r.log, sizeof(r.log), "%s", a->cfg.log.path);
	a->recfd = agentrec_claim(&r, &owner);
	if (a->recfd == -EBUSY)
		cli_err("note: agent %d is the host's agent (%s): commands without -c find that one",
			owner, agentrec_path());
	else if (a->recfd < 0)
		cli_err("warning: cannot write %s: %s; commands need -c to find this agent",
			agentrec_path(), strerror(-a->recfd));
}

static void announce_start(struct agent *a)
{
	struct event e = {.type = EV_AGENT_START};

	e.agent_start = (struct ev_agent_start){.version = REVENANT_VERSION,
						.config = a->cfg.path,
						.pin = a->pin_dir,
						.pid = getpid(),
						.mounted = a->mounted,
						.zombie_grace = zgrace_mode_name(
							sensor_zombie_mode(a->sensor))};
	emit(a, &e);
}

static void on_output_warning(void *ctx, const char *service, const char *detail)
{
	struct event e = {.type = EV_SERVICE_WARNING};

	e.service_warning = (struct ev_service_warning){.service = service, .detail = detail};
	emit(ctx, &e);
}

/* The status page on the metrics listener; without it the agent runs on, metrics included. */
static void open_web(struct agent *a)
{
	struct web_opts wo = {.loop = a->loop,
			      .sup = a->sup,
			      .cfg = &a->cfg,
			      .log = a->log,
			      .listeners_fd = sensor_listeners_fd(a->sensor),
			      .pin_dir = a->pin_dir};
	char err[1024], warn[5000];

	a->web = web_open(metrics_httpd(a->metrics), &wo, warn, sizeof(warn), err, sizeof(err));
	if (!a->web)
		cli_err("warning: %s; no status page", err);
	else if (warn[0])
		cli_err("warning: %s", warn);
}

static int start_supervisor(struct agent *a)
{
	struct sup_hooks h = {.event = on_sup_event,
			      .stack_done = on_stack_done,
			      .reload = on_reload_request,
			      .status = on_status,
			      .ctx = a,
			      .listeners_fd = sensor_listeners_fd(a->sensor),
			      .tree_fd = sensor_tree_fd(a->sensor),
			      .tree_used = sensor_tree_used(a->sensor),
			      .causes_fd = sensor_causes_fd(a->sensor),
			      .host_netns = a->host_netns};
	char err[1024];

	/* Without it the services write to their log files directly (unrotated), as before. */
	a->output = outputs_new(a->loop, a->cfg.log.compress, on_output_warning, a);
	if (!a->output)
		cli_err("warning: cannot set up the output reader: %s; services write to their "
			"log files unrotated", strerror(errno));
	h.output = a->output;
	a->sup = sup_new(a->loop, &a->cfg, &h);
	if (!a->sup) {
		cli_err("cannot set up the supervisor: %s", strerror(errno));
		return EXIT_FAILED;
	}
	a->ctl = control_open(a->loop, a->cfg.control.socket, a->sup, err, sizeof(err));
	if (!a->ctl) {
		cli_err("%s", err);
		return EXIT_FAILED;
	}
	if (a->cfg.metrics.listen) {
		a->metrics = metrics_open(a->loop, a->cfg.metrics.listen, err, sizeof(err));
		if (a->metrics)
			metrics_set_services(a->metrics, sup_metrics, a->sup);
		else
			cli_err("warning: %s; running without metrics", err);
		if (a->metrics)
			open_web(a);
	}
	sup_start_all(a->sup);
	/* Loading BPF parsed the kernel's BTF (megabytes, freed since): give those pages back, so
	 * the steady footprint is what the loop needs. */
	malloc_trim(0);
	notify_ready(a->loop, status_line, a);
	if (a->verbose)
		cli_err("agent running (pid %d), events in %s", getpid(), a->cfg.log.path);
	return 0;
}

static int run_loop(struct agent *a)
{
	int rc = loop_run(a->loop);

	if (rc >= 0)
		return rc;
	cli_err("event loop failed: %s", strerror(-rc));
	a->stop_reason = STOP_ERROR;
	return EXIT_FAILED;
}

/* Listeners closed and the ring buffer drained (nothing queued is lost) before the last line. */
static void announce_stop(struct agent *a)
{
	struct event e = {.type = EV_AGENT_STOP};

	agentrec_release(a->recfd); /* first: nobody new finds us while we go */
	a->recfd = -1;
	notify_stopping(a->stop_reason < 0 ? "error" : stop_reason_name(a->stop_reason));
	control_close(a->ctl);
	a->ctl = NULL;
	web_close(a->web); /* its routes live on the metrics listener */
	a->web = NULL;
	metrics_close(a->metrics);
	a->metrics = NULL;
	/* The services are down: their last lines (and any loss not told yet) come before ours. */
	outputs_free(a->output);
	a->output = NULL;
	snapshot_unpin(a->pins);
	a->pins = NULL;
	sensor_stop(a->sensor);
	a->sensor = NULL;
	e.agent_stop.reason = a->stop_reason < 0 ? STOP_ERROR : a->stop_reason;
	emit(a, &e);
}

static void teardown(struct agent *a)
{
	snapshot_free(&a->owner_snap);
	web_close(a->web);
	metrics_close(a->metrics);
	control_close(a->ctl);
	sup_free(a->sup);
	outputs_free(a->output); /* after the services: their last lines are in the pipes */
	snapshot_unpin(a->pins);
	sensor_stop(a->sensor);
	zwatch_free(a->zw);
	if (a->sigfd >= 0)
		close(a->sigfd);
	notify_close(); /* its watchdog hook is on the loop */
	loop_free(a->loop);
	metrics_watch_log(NULL);
	evlog_close(a->log);
	agentrec_release(a->recfd);
	if (a->lockfd >= 0)
		close(a->lockfd);
	zcensus_free();
	config_free(&a->cfg);
}

int cmd_run(int argc, char **argv)
{
	struct agent a = {.sigfd = -1, .lockfd = -1, .recfd = -1, .stop_reason = -1};
	const char *cfg_path = NULL;
	char err[1024];
	int rc = parse_args(&a, argc, argv, &cfg_path);

	if (rc >= 0)
		return rc;
	rc = cli_load_config(cfg_path, &a.cfg);
	if (rc)
		return rc;
	if (config_check_files(&a.cfg, err, sizeof(err))) {
		cli_err("%s", err);
		config_free(&a.cfg);
		return EXIT_USAGE;
	}
	if (!is_root()) {
		config_free(&a.cfg);
		return cli_need_root("run");
	}
	prepare();
	if ((rc = take_lock(&a)) || (rc = open_log(&a)) || (rc = make_loop(&a)) ||
	    (rc = watch_signals(&a)) || (rc = start_sensor(&a)))
		goto out;
	seed(&a);
	claim_record(&a);
	announce_start(&a);
	if ((rc = start_supervisor(&a)))
		goto out;
	rc = run_loop(&a);
	announce_stop(&a);
out:
	teardown(&a);
	return rc;
}
